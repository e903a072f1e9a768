package container

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/internal/initproc"
	"github.com/berthlabs/berth/internal/rootless"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// Rootless containers: see the package documentation's section on them.

// ErrNoCgroup is returned when a container has, or would have, no cgroup
// of its own: by Create for an unprivileged caller on a host that
// delegates it no cgroup subtree (set Runtime.NoCgroups to run without
// one), and by the calls that need a cgroup (Pause, Resume, Update,
// Stats) on a container created without one.
var ErrNoCgroup = errors.New("no cgroup for the container")

// unprivileged reports whether this process runs as a user other than
// root, and so makes rootless containers.
func unprivileged() bool { return os.Geteuid() != 0 }

// rootlessSpec adjusts and checks spec s for an unprivileged caller (see
// the comment at the top of this file); it does nothing for root.
func (r *Runtime) rootlessSpec(s *Spec) error {
	if !unprivileged() {
		return nil
	}
	if s.Namespaces == nil {
		s.Namespaces = map[namespace.Kind]Namespace{}
	}
	switch s.Namespaces[namespace.User].Mode {
	case 0:
		s.Namespaces[namespace.User] = Namespace{Mode: NamespaceNew}
	case NamespaceNew:
	default:
		return fmt.Errorf("%w: an unprivileged user's container needs a new user namespace (this process runs as UID %d)", ErrInvalidSpec, os.Geteuid())
	}
	if len(s.Networks) > 0 {
		return fmt.Errorf("%w: networks need root; an unprivileged user's container has network none (or the host's network namespace) and publishes Ports through a relay to its loopback", ErrInvalidSpec)
	}
	uid, gid := uint32(os.Geteuid()), uint32(os.Getegid())
	switch {
	case s.UIDMappings == nil && s.GIDMappings == nil:
		uids, gids, _, err := namespace.RootlessIDMaps(uid, gid)
		if err != nil {
			return err
		}
		s.UIDMappings, s.GIDMappings = uids, gids
	case s.UIDMappings == nil || s.GIDMappings == nil:
		return fmt.Errorf("%w: give both UIDMappings and GIDMappings, or neither", ErrInvalidSpec)
	default:
		if err := checkOwnMaps(s.UIDMappings, s.GIDMappings, uid, gid); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
	}
	if needsIDHelper(s) {
		for _, h := range []string{namespace.NewUIDMap, namespace.NewGIDMap} {
			if _, err := exec.LookPath(h); err != nil {
				return fmt.Errorf("%w: ID maps %v / %v: %w: %w", ErrInvalidSpec, s.UIDMappings, s.GIDMappings, namespace.ErrNoIDMapHelper, err)
			}
		}
	}
	if len(s.Ports) > 0 && s.Namespaces[namespace.Net].Mode != 0 && s.Namespaces[namespace.Net].Mode != NamespaceNew {
		return fmt.Errorf("%w: an unprivileged user's published ports need a new network namespace", ErrInvalidSpec)
	}
	return nil
}

// checkOwnMaps checks that maps given in a spec use the caller's own IDs
// and its subordinate IDs only.
func checkOwnMaps(uids, gids []namespace.IDMap, uid, gid uint32) error {
	name := strconv.FormatUint(uint64(uid), 10)
	if u, err := lookupUser(name); err == nil {
		name = u
	}
	us, err := namespace.ReadSubIDs(namespace.SubUIDFile, name, uid)
	if err != nil {
		return err
	}
	gs, err := namespace.ReadSubIDs(namespace.SubGIDFile, name, uid)
	if err != nil {
		return err
	}
	if err := namespace.CheckSubIDs("uid", namespace.SubUIDFile, name, uids, uid, us); err != nil {
		return err
	}
	return namespace.CheckSubIDs("gid", namespace.SubGIDFile, name, gids, gid, gs)
}

// lookupUser returns the name of the user with numeric ID id from the
// host's /etc/passwd.
func lookupUser(id string) (string, error) {
	b, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return "", err
	}
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Split(l, ":")
		if len(f) > 2 && f[2] == id {
			return f[0], nil
		}
	}
	return "", os.ErrNotExist
}

// needsIDHelper reports whether the spec's ID maps are more than an
// unprivileged process may write itself (its own UID and GID, once each):
// then newuidmap and newgidmap write them.
func needsIDHelper(s *Spec) bool {
	if !unprivileged() || s.Namespaces[namespace.User].Mode != NamespaceNew {
		return false
	}
	own := func(maps []namespace.IDMap, id uint32) bool {
		return len(maps) == 1 && maps[0].HostID == id && maps[0].Size == 1
	}
	return !own(s.UIDMappings, uint32(os.Geteuid())) || !own(s.GIDMappings, uint32(os.Getegid()))
}

// rootlessUserNS changes how init is started for an unprivileged caller
// and reports whether the host must write init's ID maps with
// newuidmap/newgidmap once it runs (then init waits for MsgIDMapped).
func (c *Container) rootlessUserNS(cmd *exec.Cmd) bool {
	if !unprivileged() || c.modes[namespace.User] != NamespaceNew {
		return false
	}
	if !needsIDHelper(&c.spec) {
		// Go writes the single-ID maps; an unprivileged gid_map needs
		// setgroups denied first.
		cmd.SysProcAttr.GidMappingsEnableSetgroups = false
		return false
	}
	cmd.SysProcAttr.UidMappings, cmd.SysProcAttr.GidMappings = nil, nil
	cmd.SysProcAttr.Credential = nil
	cmd.Env = append(cmd.Env, initproc.EnvAwaitIDMaps+"=1")
	return true
}

// writeIDMaps writes the maps of the started init's user namespace with
// newuidmap and newgidmap, and lets init go on.
func (c *Container) writeIDMaps() error {
	if err := namespace.WriteIDMapsHelper(c.initPid, c.spec.UIDMappings, c.spec.GIDMappings); err != nil {
		return fmt.Errorf("write the user namespace's ID maps: %w", err)
	}
	if err := initproc.Send(c.conn, &initproc.Message{Type: initproc.MsgIDMapped}); err != nil {
		return fmt.Errorf("tell init its ID maps are written: %w", err)
	}
	return nil
}

// cgroupHandle is what a container does with its cgroup: a
// *cgroup.Cgroup, or noCgroup for a rootless container without one.
type cgroupHandle interface {
	Path() string
	Version() cgroup.Version
	Dirs() []string
	OpenPlacement() ([]*os.File, error)
	Add(pid int) error
	Kill(ctx context.Context) error
	OOMKills() (uint64, error)
	Processes() ([]int, error)
	Freeze(ctx context.Context) error
	Thaw() error
	Stats() (*cgroup.Stats, error)
	Update(r *cgroup.Resources) error
	Delete(ctx context.Context) error
}

// newCgroup makes the container's cgroup: for root, CgroupParent/ID;
// for an unprivileged caller, one in its delegated subtree, or none with
// NoCgroups.
func (r *Runtime) newCgroup(id string, s *Spec, res *cgroup.Resources) (cgroupHandle, error) {
	if !unprivileged() {
		return cgroup.New(r.cgroupPath(id), res)
	}
	parent := r.CgroupParent
	if parent == "" {
		parent = delegatedCgroup()
		if parent != "" {
			parent += "/berth"
		}
	}
	if parent != "" {
		cg, err := cgroup.New(parent+"/"+id, res)
		if err != nil {
			return nil, fmt.Errorf("cgroup in the delegated subtree %s: %w", parent, err)
		}
		return cg, nil
	}
	why := fmt.Sprintf("this host's cgroups are %s, and an unprivileged user gets cgroups only from a delegated cgroup v2 subtree (systemd's user@%d.service with Delegate=yes)", cgroup.HostVersion(), os.Geteuid())
	if cgroup.HostVersion() == cgroup.V2 {
		why = fmt.Sprintf("no delegated cgroup v2 subtree was found for UID %d (systemd's user@%d.service with Delegate=yes; or set CgroupParent to one)", os.Geteuid(), os.Geteuid())
	}
	if !reflect.ValueOf(s.Resources).IsZero() {
		return nil, fmt.Errorf("%w: the spec sets resource limits, and %s: limits cannot be applied", ErrNoCgroup, why)
	}
	if !r.NoCgroups {
		return nil, fmt.Errorf("%w: %s; set Runtime.NoCgroups to run containers without limits", ErrNoCgroup, why)
	}
	if s.Namespaces[namespace.PID].Mode != 0 && s.Namespaces[namespace.PID].Mode != NamespaceNew {
		return nil, fmt.Errorf("%w: a container without a cgroup needs a new PID namespace: its processes are found and killed through it", ErrInvalidSpec)
	}
	return &noCgroup{}, nil
}

// delegatedCgroup returns the cgroup v2 path of this process's delegated
// systemd user subtree (user@UID.service, owned by us and with a
// writable cgroup.subtree_control), or "".
func delegatedCgroup() string {
	if cgroup.HostVersion() != cgroup.V2 {
		return ""
	}
	b, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return ""
	}
	var own string
	for _, l := range strings.Split(string(b), "\n") {
		if p, ok := strings.CutPrefix(l, "0::"); ok {
			own = p
		}
	}
	want := fmt.Sprintf("user@%d.service", os.Geteuid())
	parts := strings.Split(own, "/")
	i := slices.Index(parts, want)
	if i < 0 {
		return ""
	}
	p := strings.Join(parts[:i+1], "/")
	dir := filepath.Join("/sys/fs/cgroup", p)
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil || st.Uid != uint32(os.Geteuid()) {
		return ""
	}
	if unix.Access(filepath.Join(dir, "cgroup.subtree_control"), unix.W_OK) != nil {
		return ""
	}
	return p
}

// noCgroup stands for the cgroup of a rootless container that has none
// (Runtime.NoCgroups): its processes are those of its PID namespace,
// killed by killing its init.
type noCgroup struct {
	mu   sync.Mutex
	init *os.Process
}

// started records the container's init.
func (n *noCgroup) started(p *os.Process) {
	n.mu.Lock()
	n.init = p
	n.mu.Unlock()
}

func (n *noCgroup) errNo(op string) error {
	return fmt.Errorf("%s: %w (created with Runtime.NoCgroups)", op, ErrNoCgroup)
}

func (n *noCgroup) Path() string                       { return "" }
func (n *noCgroup) Version() cgroup.Version            { return 0 }
func (n *noCgroup) Dirs() []string                     { return nil }
func (n *noCgroup) OpenPlacement() ([]*os.File, error) { return nil, nil }
func (n *noCgroup) Add(int) error                      { return n.errNo("add a process") }
func (n *noCgroup) OOMKills() (uint64, error)          { return 0, n.errNo("OOM kills") }
func (n *noCgroup) Freeze(context.Context) error       { return n.errNo("freeze") }
func (n *noCgroup) Thaw() error                        { return n.errNo("thaw") }
func (n *noCgroup) Stats() (*cgroup.Stats, error)      { return nil, n.errNo("stats") }
func (n *noCgroup) Delete(context.Context) error       { return nil }

// Update accepts only Resources without limits: there is nothing to
// apply them to.
func (n *noCgroup) Update(r *cgroup.Resources) error {
	if reflect.ValueOf(*r).IsZero() {
		return nil
	}
	return n.errNo("update resource limits")
}

// Kill kills init, which is PID 1 of the container's PID namespace: the
// kernel kills every other process in it before init is reaped.
func (n *noCgroup) Kill(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	n.mu.Lock()
	p := n.init
	n.mu.Unlock()
	if p == nil {
		return nil
	}
	if err := p.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("kill the container's init: %w", err)
	}
	return nil
}

// Processes lists the processes in init's PID namespace but init, by
// host PID: those of /proc whose ns/pid is init's.
func (n *noCgroup) Processes() ([]int, error) {
	n.mu.Lock()
	p := n.init
	n.mu.Unlock()
	if p == nil {
		return nil, nil
	}
	want, err := os.Readlink(namespace.ProcPath(p.Pid, namespace.PID))
	if err != nil {
		return nil, fmt.Errorf("the container's PID namespace: %w", err)
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == p.Pid {
			continue
		}
		if ns, err := os.Readlink(namespace.ProcPath(pid, namespace.PID)); err == nil && ns == want {
			out = append(out, pid)
		}
	}
	return out, nil
}

// RootlessDataDir returns the directory an unprivileged user's berth data
// lives in by default: $XDG_DATA_HOME/berth, or $HOME/.local/share/berth
// when XDG_DATA_HOME is unset or not absolute (the XDG base directory
// rule, which rootless podman follows too). It is not created.
func RootlessDataDir() (string, error) {
	if d := os.Getenv("XDG_DATA_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "berth"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("rootless data directory: %w", err)
	}
	return filepath.Join(home, ".local", "share", "berth"), nil
}

func init() {
	rootless.RemoveAll = removeAllInUserNS
	rootless.Chown = chownInUserNS
}

// removeAllInUserNS removes the tree at path from inside a user
// namespace that maps the user's own and subordinate IDs, where it may
// remove what those IDs own, which this process may not (the upper
// directory of a rootless container whose processes wrote as users other
// than root).
func removeAllInUserNS(path string) error {
	h, err := startIDHelper()
	if err != nil {
		return fmt.Errorf("remove %s in a user namespace: %w", path, err)
	}
	defer h.close()
	if err := h.do(&initproc.Message{Type: initproc.MsgRemoveAll, Path: path}); err != nil {
		return fmt.Errorf("remove %s in a user namespace: %w", path, err)
	}
	return nil
}

// chownInUserNS gives the files of dir their owners, IDs inside a user
// namespace that maps the user's own and subordinate IDs (from inside
// one). Without subordinate IDs it does nothing: every file stays the
// user's, root inside its containers.
func chownInUserNS(dir string, owners []rootless.Owner) error {
	if _, _, sub, err := namespace.RootlessIDMaps(uint32(os.Geteuid()), uint32(os.Getegid())); err != nil || !sub {
		return err
	}
	h, err := startIDHelper()
	if err != nil {
		return err
	}
	defer h.close()
	const chunk = 4096 // entries per message, well within MaxMessage
	for len(owners) > 0 {
		n := min(chunk, len(owners))
		if err := h.do(&initproc.Message{Type: initproc.MsgChown, Path: dir, Owners: owners[:n]}); err != nil {
			return err
		}
		owners = owners[n:]
	}
	return nil
}

// idHelper is berth's init running as a helper in a new user namespace
// that maps the user's own and subordinate IDs (namespace.RootlessIDMaps),
// with every capability there, for work on files those IDs own.
type idHelper struct {
	cmd  *exec.Cmd
	conn *net.UnixConn
	buf  []byte
}

func startIDHelper() (*idHelper, error) {
	if !unprivileged() {
		return nil, errors.New("a user namespace helper is for unprivileged callers")
	}
	uids, gids, sub, err := namespace.RootlessIDMaps(uint32(os.Geteuid()), uint32(os.Getegid()))
	if err != nil {
		return nil, err
	}
	if !sub {
		return nil, fmt.Errorf("%w: the user has none to map", namespace.ErrNoSubIDs)
	}
	exe, err := initPath()
	if err != nil {
		return nil, err
	}
	hostConn, childSock, err := initproc.SocketPair()
	if err != nil {
		return nil, err
	}
	cmd := &exec.Cmd{
		Path:       exe,
		Args:       []string{"berth-init", "helper"},
		Env:        []string{initproc.Env + "=1", "GOMAXPROCS=1", initproc.EnvAwaitIDMaps + "=1"},
		ExtraFiles: []*os.File{childSock},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: unix.CLONE_NEWUSER,
			Pdeathsig:  syscall.SIGKILL,
		},
	}
	err = onForkThread(cmd.Start)
	childSock.Close()
	if err != nil {
		hostConn.Close()
		return nil, fmt.Errorf("start the helper: %w", err)
	}
	h := &idHelper{cmd: cmd, conn: hostConn, buf: make([]byte, 64<<10)}
	if err := namespace.WriteIDMapsHelper(cmd.Process.Pid, uids, gids); err != nil {
		h.close()
		return nil, err
	}
	if err := initproc.Send(hostConn, &initproc.Message{Type: initproc.MsgIDMapped}); err != nil {
		h.close()
		return nil, err
	}
	return h, nil
}

// do sends one request and waits for its answer.
func (h *idHelper) do(m *initproc.Message) error {
	if err := initproc.Send(h.conn, m); err != nil {
		return fmt.Errorf("the helper: %w", err)
	}
	h.conn.SetReadDeadline(time.Now().Add(5 * time.Minute))
	r, files, err := initproc.Recv(h.conn, h.buf, make([]byte, 256))
	initproc.CloseFiles(files)
	if err != nil {
		return fmt.Errorf("the helper: %w", err)
	}
	if r.Type != initproc.MsgRemoved {
		return errors.New(r.Error)
	}
	return nil
}

// close ends the helper and reaps it.
func (h *idHelper) close() {
	h.conn.Close() // the helper exits when its socket closes
	done := make(chan struct{})
	go func() {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			h.cmd.Process.Kill()
		}
	}()
	h.cmd.Wait()
	close(done)
}
