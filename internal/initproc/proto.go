package initproc

import (
	"encoding/json"
	"fmt"
	"net"
	"os"

	"github.com/berthlabs/berth/internal/rootless"
	"github.com/berthlabs/berth/layer/snapshot"
	"golang.org/x/sys/unix"
)

// The host and a container's init talk over a SOCK_SEQPACKET socket pair:
// one JSON Message per packet, file descriptors passed with SCM_RIGHTS.

// MaxMessage is the largest message either side sends.
const MaxMessage = 1 << 20

// Message is one packet of the protocol.
type Message struct {
	Type   string  `json:"type"`
	ID     uint64  `json:"id,omitempty"`
	Config *Config `json:"config,omitempty"`
	Proc   *Proc   `json:"proc,omitempty"`
	Signal int     `json:"signal,omitempty"`
	Pid    int     `json:"pid,omitempty"`
	Status int     `json:"status,omitempty"`
	Error  string  `json:"error,omitempty"`
	// Path is what MsgRemoveAll removes, and the directory whose files
	// MsgChown gives Owners.
	Path   string           `json:"path,omitempty"`
	Owners []rootless.Owner `json:"owners,omitempty"`
	// Socket is what MsgSocket asks for.
	Socket *Socket `json:"socket,omitempty"`
	// Files are the descriptors that came with the message (not sent
	// as JSON: Send takes them as arguments).
	Files []*os.File `json:"-"`
}

// Message types.
const (
	MsgStart      = "start"      // host -> init: set up and run the main process
	MsgStarted    = "started"    // init -> host: main (ID 0) or exec (ID) process runs, Pid; a TTY's master in SCM_RIGHTS
	MsgExec       = "exec"       // host -> init: run another process, stdio in SCM_RIGHTS (none with Proc.TTY)
	MsgSignal     = "signal"     // host -> init: signal process ID (0: main)
	MsgExit       = "exit"       // init -> host: process ID ended with wait status Status
	MsgError      = "error"      // init -> host: request ID failed
	MsgReady      = "ready"      // init -> host: a pooled init waits for its MsgStart
	MsgSocket     = "socket"     // host -> init: make Socket in the container's network namespace
	MsgSocketMade = "socketMade" // init -> host: the socket of request ID, in SCM_RIGHTS
	MsgRemoveAll  = "removeAll"  // host -> init, first: remove Path and exit (a helper in a user namespace)
	MsgChown      = "chown"      // host -> helper init: chown Owners in Path
	MsgRemoved    = "removed"    // init -> host: MsgRemoveAll or MsgChown is done
)

// Socket is a socket(2) call for init to make: the socket belongs to
// init's network namespace for its whole life, wherever it is used.
type Socket struct {
	Domain int `json:"domain"`
	Type   int `json:"type"`
	Proto  int `json:"proto,omitempty"`
}

// Config is what init needs to build the container.
type Config struct {
	Rootfs string `json:"rootfs"`
	// RootfsMounts, when set, make the root filesystem (a snapshot's
	// overlay or bind mount): init mounts them on Rootfs inside the
	// container's mount namespace, so they vanish with it.
	RootfsMounts []snapshot.Mount `json:"rootfsMounts,omitempty"`
	// RootfsDetached says that the last descriptor sent with MsgStart
	// is RootfsMounts mounted ahead, attached nowhere (a detached mount,
	// fsmount(2)): init moves it onto Rootfs instead of mounting them,
	// and mounts them if that fails.
	RootfsDetached bool     `json:"rootfsDetached,omitempty"`
	Readonly       bool     `json:"readonly,omitempty"`
	Hostname       string   `json:"hostname,omitempty"`
	Mounts         []Mount  `json:"mounts,omitempty"`
	MaskedPaths    []string `json:"masked,omitempty"`
	ReadonlyPaths  []string `json:"readonlyPaths,omitempty"`
	Rlimits        []Rlimit `json:"rlimits,omitempty"`
	OOMScoreAdj    int      `json:"oomScoreAdj,omitempty"`
	NewNet         bool     `json:"newNet,omitempty"`
	NewIPC         bool     `json:"newIPC,omitempty"`
	UserNS         bool     `json:"userNS,omitempty"`
	CgroupNS       bool     `json:"cgroupNS,omitempty"`
	CgroupV2       bool     `json:"cgroupV2,omitempty"`
	CgroupFDs      int      `json:"cgroupFDs,omitempty"` // from fd 7 on
	CgroupDir      string   `json:"cgroupDir,omitempty"` // v2: mounted as /sys/fs/cgroup
	// Sysctls are written to /proc/sys inside the container (keys with
	// dots, checked by CheckSysctl).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// Files are bind-mounted over their targets from in-memory files
	// with their contents (the /etc/hosts and /etc/resolv.conf of a
	// networked container), before Mounts, so that a user's mount wins.
	Files []File `json:"files,omitempty"`
	// Devices are device nodes for init to make in the container's /dev
	// after its standard ones.
	Devices []Device `json:"devices,omitempty"`
	// Seccomp, when set, is installed on the thread that starts each
	// process (Main and every Exec), just before it forks.
	Seccomp *Seccomp `json:"seccomp,omitempty"`
	Main    Proc     `json:"main"`
}

// Device is a device node for init to make: mknod of Type (S_IFCHR or
// S_IFBLK) with Major, Minor, Mode (permission bits), UID and GID at Path
// (below /dev), or, where mknod is refused, a bind mount of HostPath.
type Device struct {
	Path         string `json:"path"`
	HostPath     string `json:"hostPath"`
	Type         uint32 `json:"type"`
	Major, Minor uint32
	Mode         uint32 `json:"mode"`
	UID, GID     uint32
}

// File is a generated file for init to mount in the container.
type File struct {
	Target  string `json:"target"`
	Content []byte `json:"content"`
	Mode    uint32 `json:"mode"`
}

// Rlimit is a resource limit for init to set.
type Rlimit struct {
	Resource   int    `json:"resource"`
	Soft, Hard uint64 `json:",omitempty"`
}

// Proc is a process for init to start inside the container.
type Proc struct {
	Args   []string `json:"args"`
	Env    []string `json:"env,omitempty"`
	Dir    string   `json:"dir,omitempty"`
	MkDir  bool     `json:"mkdir,omitempty"`
	User   string   `json:"user,omitempty"`
	Groups []string `json:"groups,omitempty"`
	// Caps is the bounding set; Inh and Amb the inheritable and ambient
	// sets (Amb is added to Inh). Perm and Eff, when set, are the exact
	// permitted and effective sets the program must get (see CheckCaps).
	Caps CapSet  `json:"caps"`
	Inh  CapSet  `json:"inh,omitempty"`
	Amb  CapSet  `json:"amb,omitempty"`
	Perm *CapSet `json:"perm,omitempty"`
	Eff  *CapSet `json:"eff,omitempty"`
	NNP  bool    `json:"nnp,omitempty"`
	// TTY runs the process on a new terminal of the container's devpts
	// (see tty_linux.go): its master comes with MsgStarted. Winsize is
	// the terminal's size at start (nil: the kernel's 0x0).
	TTY     bool     `json:"tty,omitempty"`
	Winsize *Winsize `json:"winsize,omitempty"`
}

// Winsize is a terminal's size in character cells.
type Winsize struct {
	Rows uint16 `json:"rows"`
	Cols uint16 `json:"cols"`
}

// SocketPair returns the host's end as a net.UnixConn (served by the
// netpoller) and the child's end as a file to hand over.
func SocketPair() (*net.UnixConn, *os.File, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("socketpair: %w", err)
	}
	for _, fd := range fds {
		// Configs can be large; ignore failure, the default suffices for
		// ordinary specs.
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, MaxMessage*2)
	}
	host, err := FileConn(fds[0])
	if err != nil {
		unix.Close(fds[1])
		return nil, nil, err
	}
	return host, os.NewFile(uintptr(fds[1]), "berth-init-sock"), nil
}

// FileConn turns a socket fd into a *net.UnixConn, taking ownership.
func FileConn(fd int) (*net.UnixConn, error) {
	f := os.NewFile(uintptr(fd), "berth-sock")
	c, err := net.FileConn(f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		c.Close()
		return nil, fmt.Errorf("control socket: unexpected type %T", c)
	}
	return uc, nil
}

// Send writes one message, passing files with SCM_RIGHTS.
func Send(c *net.UnixConn, m *Message, files ...*os.File) error {
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("%s Message of %d bytes exceeds the %d-byte limit", m.Type, len(b), MaxMessage)
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	_, _, err = c.WriteMsgUnix(b, oob, nil)
	return err
}

// Recv reads one Message and the files passed with it.
func Recv(c *net.UnixConn, buf, oob []byte) (*Message, []*os.File, error) {
	n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
	if err != nil {
		return nil, nil, err
	}
	var files []*os.File
	if oobn > 0 {
		scms, err := unix.ParseSocketControlMessage(oob[:oobn])
		if err != nil {
			return nil, nil, fmt.Errorf("parse control Message: %w", err)
		}
		for _, scm := range scms {
			fds, err := unix.ParseUnixRights(&scm)
			if err != nil {
				continue
			}
			for _, fd := range fds {
				unix.CloseOnExec(fd)
				files = append(files, os.NewFile(uintptr(fd), "passed"))
			}
		}
	}
	if n == 0 {
		CloseFiles(files)
		return nil, nil, ErrClosed
	}
	m := new(Message)
	if err := json.Unmarshal(buf[:n], m); err != nil {
		CloseFiles(files)
		return nil, nil, fmt.Errorf("decode Message: %w", err)
	}
	return m, files, nil
}

// ErrClosed is returned by Recv when the peer has closed its end.
var ErrClosed = fmt.Errorf("control socket closed")

// CloseFiles closes every non-nil file.
func CloseFiles(files []*os.File) {
	for _, f := range files {
		if f != nil {
			f.Close()
		}
	}
}
