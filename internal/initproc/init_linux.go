package initproc

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strconv"
	"syscall"
	"unsafe"

	"github.com/berthlabs/berth/internal/osthread"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// Env marks a process as a container init: this package's init function
// then runs Main, before the program's own main or TestMain. The
// container package sets it for the embedded berth-init (cmd/berth-init)
// and, where none is embedded for the architecture, for the embedding
// program re-executed from a sealed copy: that works in any program that
// imports this package, test binaries included.
const Env = "_BERTH_CONTAINER_INIT"

func init() {
	if os.Getenv(Env) != "1" {
		return
	}
	Main()
}

// initState is the container init's own state. One goroutine (the main
// loop) owns it.
type initState struct {
	conn *net.UnixConn
	cg   []int // descriptors that place a process into the container's cgroup
	// cgFiles hold cg open when they came with the config (pooled).
	cgFiles []*os.File
	loUp    bool // loopback is up already (a pooled init did it ahead)
	pid1    bool
	procs   map[int]uint64 // pid -> process ID (0: main)
	byID    map[uint64]int // process ID -> pid
	cfg     *Config
	pts     int // the container's /dev/pts, for TTYs (-1: none)
	// rootfsMnt is the root filesystem mounted ahead (see
	// Config.RootfsDetached), or nil.
	rootfsMnt *os.File
}

// Main is PID 1 of a container. It builds the root filesystem, starts
// the main process, then stays to reap zombies, forward signals, start
// Exec'd processes and report exits to the host. It never returns.
func Main() {
	// Our comm would be the memfd's descriptor number otherwise.
	unix.Prctl(unix.PR_SET_NAME, uintptr(unsafe.Pointer(&[]byte("berth-init\x00")[0])), 0, 0, 0)
	debug.SetGCPercent(50)
	awaitIDMaps()
	unix.CloseOnExec(3)
	conn, err := FileConn(3)
	if err != nil {
		os.Exit(121)
	}
	// Signals for the main process are forwarded. Setting that up costs
	// milliseconds (a thread and a goroutine of the runtime's): it runs
	// while the config arrives and the rootfs is built, and must be done
	// before Start returns to the host, so that no signal sent after
	// that is lost (or, for SIGTERM, ends init).
	sigs := make(chan os.Signal, 64)
	notified := make(chan struct{})
	go func() {
		signal.Notify(sigs, forwardSignals...)
		close(notified)
	}()
	s := &initState{conn: conn, pid1: os.Getpid() == 1, procs: map[int]uint64{}, byID: map[uint64]int{}, pts: -1}
	if os.Getenv(PoolEnv) == "1" {
		s.pooled()
	}
	buf, oob := make([]byte, MaxMessage), make([]byte, 4096)
	m, files, err := Recv(conn, buf, oob)
	if err == nil && (m.Type == MsgRemoveAll || m.Type == MsgChown) {
		CloseFiles(files)
		helper(conn, m, buf, oob) // exits
	}
	if err != nil || m.Type != MsgStart || m.Config == nil {
		os.Exit(122)
	}
	s.cfg = m.Config
	if s.cfg.RootfsDetached && len(files) > 0 {
		s.rootfsMnt, files = files[len(files)-1], files[:len(files)-1]
	}
	// The main process's stdio and the cgroup descriptors were inherited
	// (fds 4, 5 and 6, then 7 on) by an init started for its container,
	// or come with the config to one started ahead (a pooled init). Our
	// own 0-2 are the host's log of init itself.
	var stdio []*os.File
	switch {
	case len(files) == 0:
		for i := 0; i < s.cfg.CgroupFDs; i++ {
			unix.CloseOnExec(7 + i)
			s.cg = append(s.cg, 7+i)
		}
		for fd := 4; fd <= 6; fd++ {
			unix.CloseOnExec(fd)
			stdio = append(stdio, os.NewFile(uintptr(fd), "stdio"))
		}
	case len(files) == 3+s.cfg.CgroupFDs:
		stdio = files[:3]
		s.cgFiles = files[3:]
		for _, f := range s.cgFiles {
			s.cg = append(s.cg, int(f.Fd()))
		}
	default:
		os.Exit(122)
	}
	if err := s.setup(); err != nil {
		Send(conn, &Message{Type: MsgError, Error: err.Error()})
		os.Exit(123)
	}
	pid, master, err := s.start(&s.cfg.Main, stdio)
	CloseFiles(stdio)
	if err != nil {
		Send(conn, &Message{Type: MsgError, Error: err.Error()})
		os.Exit(124)
	}
	s.procs[pid], s.byID[0] = 0, pid
	<-notified
	s.sendStarted(0, pid, master)

	// Children are reaped by a goroutine blocked in wait4 (SIGCHLD is
	// not needed).
	type exited struct {
		pid int
		ws  unix.WaitStatus
	}
	reaped := make(chan exited, 64)
	go func() {
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, 0, nil)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return // ECHILD: main has been reaped, init is exiting
			}
			reaped <- exited{pid, ws}
		}
	}()
	type recv struct {
		m     *Message
		files []*os.File
		err   error
	}
	msgs := make(chan recv)
	go func() {
		for {
			m, files, err := Recv(conn, buf, oob)
			msgs <- recv{m, files, err}
			if err != nil {
				return
			}
		}
	}()
	for {
		select {
		case e := <-reaped:
			s.exited(e.pid, e.ws)
		case sig := <-sigs:
			if p, ok := s.byID[0]; ok {
				unix.Kill(p, sig.(syscall.Signal))
			}
		case r := <-msgs:
			if r.err != nil {
				// The host is gone: nothing may outlive it.
				s.killAll()
				os.Exit(125)
			}
			s.handle(r.m, r.files)
		}
	}
}

func (s *initState) handle(m *Message, files []*os.File) {
	defer CloseFiles(files)
	switch m.Type {
	case MsgExec:
		if m.Proc == nil || (len(files) != 3 && !(m.Proc.TTY && len(files) == 0)) {
			Send(s.conn, &Message{Type: MsgError, ID: m.ID, Error: "malformed exec request"})
			return
		}
		pid, master, err := s.start(m.Proc, files)
		if err != nil {
			Send(s.conn, &Message{Type: MsgError, ID: m.ID, Error: err.Error()})
			return
		}
		s.procs[pid], s.byID[m.ID] = m.ID, pid
		s.sendStarted(m.ID, pid, master)
	case MsgSocket:
		s.socket(m)
	case MsgSignal:
		if pid, ok := s.byID[m.ID]; ok {
			unix.Kill(pid, unix.Signal(m.Signal))
		}
	}
}

// exited handles a reaped child: those berth started are reported;
// orphans that were re-parented to init need nothing more.
func (s *initState) exited(pid int, ws unix.WaitStatus) {
	id, ok := s.procs[pid]
	if !ok {
		return
	}
	delete(s.procs, pid)
	delete(s.byID, id)
	Send(s.conn, &Message{Type: MsgExit, ID: id, Status: int(ws)})
	if id == 0 {
		// The main process ended: so does the container.
		s.killAll()
		os.Exit(0)
	}
}

// killAll kills every process of the container. As PID 1 our own exit
// does that; otherwise we kill what we started.
func (s *initState) killAll() {
	if s.pid1 {
		unix.Kill(-1, unix.SIGKILL)
		return
	}
	for pid := range s.procs {
		unix.Kill(pid, unix.SIGKILL)
	}
}

// setup builds the container around init: root filesystem, host name,
// loopback, rlimits. init runs as root with every capability until here;
// the processes it starts get the spec's restricted set.
func (s *initState) setup() error {
	c := s.cfg
	unix.Umask(0)
	err := setupRootfs(c, s.rootfsMnt)
	if s.rootfsMnt != nil {
		s.rootfsMnt.Close()
		s.rootfsMnt = nil
	}
	if err != nil {
		return err
	}
	s.pts = openDevpts()
	if c.Hostname != "" {
		if err := unix.Sethostname([]byte(c.Hostname)); err != nil {
			return fmt.Errorf("set hostname: %w", err)
		}
	}
	if c.NewNet && !s.loUp {
		if err := namespace.LoopbackUp(); err != nil {
			return fmt.Errorf("bring up loopback: %w", err)
		}
	}
	for _, l := range c.Rlimits {
		// syscall.Setrlimit, so that Go's own NOFILE handling knows.
		if err := syscall.Setrlimit(l.Resource, &syscall.Rlimit{Cur: l.Soft, Max: l.Hard}); err != nil {
			return fmt.Errorf("set rlimit %d: %w", l.Resource, err)
		}
	}
	if c.OOMScoreAdj != 0 {
		if err := os.WriteFile("/proc/self/oom_score_adj", []byte(strconv.Itoa(c.OOMScoreAdj)), 0); err != nil {
			return fmt.Errorf("set oom_score_adj: %w", err)
		}
	}
	if !s.pid1 {
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	// Nothing in the container may open our /proc entries (exe, mem, fds).
	unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0)
	unix.Umask(0o022)
	return nil
}

// spawn starts p with the given stdio, on a fresh OS thread that takes on
// the process's credentials and capabilities first (they are per thread
// on Linux, and a forked child inherits its thread's). The thread is
// never handed back to the Go scheduler: it ends with its goroutine.
func (s *initState) spawn(p *Proc, stdio []*os.File) (int, error) {
	root, err := OpenRoot("/")
	if err != nil {
		return 0, err
	}
	defer root.Close()
	dir := p.Dir
	if dir == "" {
		dir = "/"
	}
	if p.MkDir {
		if fd, err := secureMkdirAll(root.fd, dir); err == nil {
			unix.Close(fd)
		}
	}
	if ok, err := isDir(dir); err != nil {
		return 0, fmt.Errorf("working directory: %w", err)
	} else if !ok {
		return 0, fmt.Errorf("working directory %s is not a directory", dir)
	}
	path, err := root.LookPath(p.Args[0], LookupEnv(p.Env, "PATH"), dir)
	if err != nil {
		return 0, err
	}
	user, err := root.ResolveUser(p.User, p.Groups)
	if err != nil {
		return 0, err
	}
	if err := p.CheckCaps(user.UID); err != nil {
		return 0, err
	}
	if err := checkMapped(user); err != nil {
		return 0, err
	}
	if err := giveTTY(p, stdio, user.UID); err != nil {
		return 0, err
	}
	env := p.Env
	if LookupEnv(env, "HOME") == "" {
		env = append(env, "HOME="+user.Home)
	}
	type result struct {
		pid int
		err error
	}
	ch := make(chan result, 1)
	// Never unlocked: the thread, which may have entered the
	// container's cgroups, dies with this goroutine (and is never the
	// main thread, which could not die and would stay there).
	osthread.Go(func() {
		pid, err := s.spawnOnThread(p, path, dir, env, user, stdio)
		ch <- result{pid, err}
	})
	r := <-ch
	return r.pid, r.err
}

func (s *initState) spawnOnThread(p *Proc, path, dir string, env []string, u IDs, stdio []*os.File) (int, error) {
	// A TTY's slave is fd 0: the new session's controlling terminal.
	sys := &syscall.SysProcAttr{Setsid: true, Setctty: p.TTY}
	switch {
	case len(s.cg) == 0:
		// init is in the container's cgroup itself: children inherit it.
	case s.cfg.CgroupV2:
		// Born in the container's cgroup (CLONE_INTO_CGROUP).
		sys.UseCgroupFD, sys.CgroupFD = true, s.cg[0]
	default:
		// cgroup v1 places single threads: move this one, and the child
		// it forks is born in the container's cgroups. The thread dies
		// after, never to run anything else.
		tid := []byte(strconv.Itoa(unix.Gettid()))
		for _, fd := range s.cg {
			if _, err := unix.Write(fd, tid); err != nil {
				return 0, fmt.Errorf("enter the container's cgroup: %w", err)
			}
		}
	}
	if s.cfg.CgroupNS {
		// The child's cgroup namespace is rooted at its cgroup.
		if s.cfg.CgroupV2 && len(s.cg) > 0 {
			// It is born there (CLONE_INTO_CGROUP): it unshares after.
			sys.Unshareflags = unix.CLONE_NEWCGROUP
		} else if err := unix.Unshare(unix.CLONE_NEWCGROUP); err != nil {
			// This thread is in the container's cgroup already: its new
			// namespace is the child's. (A seccomp filter would refuse
			// the child's own unshare.)
			return 0, fmt.Errorf("unshare cgroup namespace: %w", err)
		}
	}
	if p.NNP {
		if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
			return 0, fmt.Errorf("set no_new_privs: %w", err)
		}
	}
	if err := dropBounding(p.Caps); err != nil {
		return 0, err
	}
	// Groups first, while this thread may. Raw syscalls: Go's own
	// Setgroups and friends change every thread of the process.
	groups := u.Groups
	if groups == nil {
		groups = []uint32{}
	}
	var gp uintptr
	if len(groups) > 0 {
		gp = uintptr(unsafe.Pointer(&groups[0]))
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(groups)), gp, 0); e != 0 {
		if e != unix.EPERM || !setgroupsDenied() {
			return 0, fmt.Errorf("set supplementary groups %v: %w", groups, e)
		}
		if len(p.Groups) > 0 {
			return 0, fmt.Errorf("%w: additional groups %v: setgroups is denied in this user namespace (a single-ID map; give the user subordinate GIDs in /etc/subgid)", ErrInvalid, p.Groups)
		}
		// A user namespace without setgroups (an unprivileged user's
		// single-ID map): the process keeps init's groups, which the
		// namespace does not map. Only groups asked for explicitly fail.
	}
	if _, _, e := unix.RawSyscall(unix.SYS_SETRESGID, uintptr(u.GID), uintptr(u.GID), uintptr(u.GID)); e != 0 {
		return 0, fmt.Errorf("set gid %d: %w", u.GID, e)
	}
	// The thread keeps its effective capabilities: the child may need
	// them before it executes (to unshare its cgroup namespace). What the
	// program gets is decided by execve: root gets the bounding set just
	// dropped to the spec's capabilities with the inheritable and ambient
	// sets, any other user its ambient set (none by default, as with
	// Docker). The child inherits this thread's inheritable set; Go's
	// fork raises the ambient set in the child after setuid.
	if err := setInheritable(p.Inh | p.Amb); err != nil {
		return 0, err
	}
	if p.Amb != 0 {
		sys.AmbientCaps = p.Amb.list()
	}
	if u.UID != 0 {
		// The child becomes the user after it is forked and placed.
		sys.Credential = &syscall.Credential{Uid: u.UID, Gid: u.GID, NoSetGroups: true}
	}
	if s.cfg.Seccomp != nil {
		// Last, after no_new_privs: the child inherits the filter, and its
		// program runs under it from execve on. Everything the fork does
		// here and in the child before execve must pass it (Docker's
		// profile allows a plain clone, setsid, setuid and the like; on
		// cgroup v2 the host keeps this fork off clone3, see Start).
		if err := InstallSeccomp(s.cfg.Seccomp); err != nil {
			return 0, err
		}
	}
	proc, err := os.StartProcess(path, p.Args, &os.ProcAttr{
		Dir:   dir,
		Env:   env,
		Files: stdio,
		Sys:   sys,
	})
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) && pe.Op == "chdir" {
			return 0, fmt.Errorf("working directory %s: %w", dir, pe.Err)
		}
		return 0, fmt.Errorf("start %s: %w", path, err)
	}
	pid := proc.Pid
	proc.Release()
	return pid, nil
}

// forwardSignals are the signals init passes on to the main process.
var forwardSignals = []os.Signal{
	unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGQUIT,
	unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH, unix.SIGALRM, unix.SIGCONT,
	unix.SIGPWR, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU,
}

// isDir tells whether path is a directory.
func isDir(path string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false, err
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR, nil
}
