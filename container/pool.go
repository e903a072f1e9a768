package container

import (
	"bytes"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthlabs/berth/internal/initproc"
	"github.com/berthlabs/berth/internal/mountinfo"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// The warm init pool (Runtime.InitPool). A container's init spends most
// of its start before it can read its config: the clone and exec, and
// the Go runtime's start-up. A pooled init has done that ahead, in new
// mount, PID, UTS, IPC and network namespaces, and waits on its control
// socket; Start hands it the config, the main process's stdio and the
// cgroup descriptors with one message.
//
// A pooled init holds no container's resources (no cgroup, rootfs or
// network) before it is taken, only its namespaces and a few MiB of
// memory. Pooled inits die with the Runtime's Close, with the embedding
// process (Pdeathsig, and init ends when its control socket closes) and
// when they go stale.
//
// Stale: a pooled init's mount namespace is a copy of the host's made
// when it started. A mount made on the host later (a rootfs or a bind
// source on a new filesystem) is not in that copy on a host whose
// mounts are private, and a filesystem unmounted on the host lives on
// in it. So the pool watches the host's mount table (poll(2) on
// mountinfo.Path): when it changes in anything other than
// namespace files (which pooled inits detach from their copies), the
// pooled inits are retired and new ones started. Start checks the table
// too, before it takes one, so a mount made just before a Create is
// never missed.

// poolRefillBackoff is how long the pool waits after an init it started
// failed before it tries again.
const poolRefillBackoff = time.Second

// poolReadyTimeout bounds how long a new pooled init may take to say it
// is ready.
const poolReadyTimeout = 10 * time.Second

// poolShape is the namespaces a pooled init has: a spec takes one only
// when it asks for exactly these (the cgroup namespace may be new or the
// host's: init unshares it per process).
var poolShape = map[namespace.Kind]NamespaceMode{
	namespace.Mount: NamespaceNew,
	namespace.PID:   NamespaceNew,
	namespace.UTS:   NamespaceNew,
	namespace.IPC:   NamespaceNew,
	namespace.Net:   NamespaceNew,
}

// poolable reports whether a container's init can come from the pool.
func (c *Container) poolable() bool {
	for _, k := range namespace.Kinds() {
		mode := c.modes[k]
		if mode == NamespaceHost {
			mode = 0
		}
		switch {
		case k == namespace.Cgroup:
			if mode == NamespaceJoin {
				return false
			}
		case mode != poolShape[k]:
			return false
		}
	}
	return true
}

type pooledInit struct {
	cmd  *exec.Cmd
	conn *net.UnixConn
	log  *initLog
	gen  uint64 // the pool's mount generation when it started
}

// alive reports whether the init still waits: it has not exited (the
// kernel closes its end of the socket a little after), and it has sent
// nothing after its MsgReady, so anything to read or a hang-up means it
// is gone.
func (p *pooledInit) alive() bool {
	var info unix.Siginfo
	err := unix.Waitid(unix.P_PID, p.cmd.Process.Pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
	if err != nil || info.Signo != 0 {
		return false
	}
	rc, err := p.conn.SyscallConn()
	if err != nil {
		return false
	}
	ok := false
	rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN | unix.POLLRDHUP}}
		n, err := unix.Poll(fds, 0)
		ok = err == nil && n == 0
	})
	return ok
}

// discard kills the init and reaps it.
func (p *pooledInit) discard() {
	p.cmd.Process.Kill()
	p.conn.Close()
	p.cmd.Wait()
}

type initPool struct {
	rt   *Runtime
	size int

	mu       sync.Mutex
	idle     []*pooledInit // oldest first
	starting int
	retiring int // inits being killed and reaped
	closed   bool
	gen      uint64        // bumped when the host's mount table changes
	hits     int           // takes that got an init
	misses   int           // takes that found none
	table    string        // the table (less namespace files) when gen began
	check    int           // mountinfo, polled by take and refill
	kick     chan struct{} // asks the refiller to look
	stop     chan struct{} // closed by close
	wakeW    int           // closed to stop the watcher
	wg       sync.WaitGroup
}

// takeInit returns a pooled init for c, or nil when c must start its own.
func (r *Runtime) takeInit(c *Container) *pooledInit {
	if r.InitPool <= 0 || !c.poolable() {
		return nil
	}
	p := r.initPool()
	if p == nil {
		return nil
	}
	pi := p.take()
	if pi != nil {
		pi.log.setID(c.id)
	}
	return pi
}

// initPool returns the runtime's pool, starting it on first use.
func (r *Runtime) initPool() *initPool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return nil
	}
	if r.pool == nil {
		p, err := newInitPool(r, r.InitPool)
		if err != nil {
			r.logger().Warn("init pool", "err", err)
			r.InitPool = 0
			return nil
		}
		r.pool = p
	}
	return r.pool
}

func newInitPool(r *Runtime, size int) (*initPool, error) {
	if _, err := initPath(); err != nil {
		return nil, err
	}
	// Raw descriptors: poll(2) on mountinfo reports a change once per
	// open file, and Go's netpoller, were the file registered with it,
	// would take that report first.
	var fds [4]int
	for i := range fds {
		fds[i] = -1
	}
	fail := func(err error) (*initPool, error) {
		for _, fd := range fds {
			if fd >= 0 {
				unix.Close(fd)
			}
		}
		return nil, err
	}
	for i := range 2 {
		fd, err := unix.Open(mountinfo.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fail(err)
		}
		fds[i] = fd
	}
	if err := unix.Pipe2(fds[2:], unix.O_CLOEXEC); err != nil {
		return fail(err)
	}
	check, watch, wakeR, wakeW := fds[0], fds[1], fds[2], fds[3]
	p := &initPool{rt: r, size: size, check: check, wakeW: wakeW, kick: make(chan struct{}, 1), stop: make(chan struct{})}
	p.table = mountTable()
	p.wg.Add(2)
	go p.refill()
	go p.watch(watch, wakeR)
	p.kick <- struct{}{}
	return p, nil
}

// take returns an idle, live, current init (and has the pool replace
// it), or nil at once when there is none: a burst larger than the pool
// starts cold rather than wait.
func (p *initPool) take() *pooledInit {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.kickLocked()
	if p.closed {
		return nil
	}
	p.checkLocked(p.check)
	for len(p.idle) > 0 {
		pi := p.idle[0]
		p.idle = p.idle[1:]
		if pi.alive() {
			p.hits++
			return pi
		}
		p.retireLocked(pi)
	}
	p.misses++
	return nil
}

// counts returns the takes that got an init and those that found none,
// and how often the host's mount table changed.
func (p *initPool) counts() (hits, misses int, gen uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits, p.misses, p.gen
}

func (p *initPool) kickLocked() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// checkLocked looks whether the host's mount table changed since f was
// last polled (poll(2) on mountinfo reports a change once per open
// file) and, if it did, refreshes.
func (p *initPool) checkLocked(fd int) {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}
	n, err := unix.Poll(fds, 0)
	for errors.Is(err, unix.EINTR) { // a signal, such as the runtime's preemption
		n, err = unix.Poll(fds, 0)
	}
	if err != nil || n > 0 && fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
		// A change, or no way to tell: compare the tables.
		p.refreshLocked()
	}
}

// refreshLocked retires the idle inits when the host's mount table
// differs, in more than namespace files, from the one they copied.
func (p *initPool) refreshLocked() {
	t := mountTable()
	if t == p.table {
		return
	}
	p.table = t
	p.gen++
	for _, pi := range p.idle {
		p.retireLocked(pi)
	}
	p.idle = nil
}

// retireLocked ends an init that is no longer wanted, in the background.
func (p *initPool) retireLocked(pi *pooledInit) {
	p.wg.Add(1)
	p.retiring++
	go func() {
		defer p.wg.Done()
		pi.discard()
		p.mu.Lock()
		p.retiring--
		p.mu.Unlock()
	}()
}

// mountTable is the host's mount table without namespace files, as
// text to compare.
func mountTable() string {
	b, err := os.ReadFile(mountinfo.Path)
	if err != nil {
		return ""
	}
	entries, _ := mountinfo.Read(bytes.NewReader(b))
	var sb strings.Builder
	for _, e := range entries {
		if e.FSType != "nsfs" {
			sb.WriteString(e.Line)
			sb.WriteByte('\n')
		}
	}
	return sb.String()
}

// watch retires stale inits as soon as the host's mount table changes,
// so that none keeps an unmounted filesystem alive, until wake closes.
func (p *initPool) watch(fd, wake int) {
	defer p.wg.Done()
	defer unix.Close(fd)
	defer unix.Close(wake)
	for {
		fds := []unix.PollFd{
			{Fd: int32(fd), Events: unix.POLLPRI},
			{Fd: int32(wake), Events: unix.POLLIN},
		}
		if _, err := unix.Poll(fds, -1); err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if fds[1].Revents != 0 {
			return
		}
		if fds[0].Revents&(unix.POLLPRI|unix.POLLERR) != 0 {
			p.mu.Lock()
			p.refreshLocked() // this poll consumed the event
			p.kickLocked()
			p.mu.Unlock()
		}
	}
}

// refill keeps the pool full, one init at a time, until Close.
func (p *initPool) refill() {
	defer p.wg.Done()
	for {
		select {
		case <-p.stop:
			return
		case <-p.kick:
		}
		for {
			p.mu.Lock()
			if p.closed {
				p.mu.Unlock()
				return
			}
			if len(p.idle)+p.starting >= p.size {
				p.mu.Unlock()
				break
			}
			p.checkLocked(p.check)
			gen := p.gen
			p.starting++
			p.mu.Unlock()

			pi, err := p.startInit(gen)

			p.mu.Lock()
			p.starting--
			switch {
			case err != nil:
				p.mu.Unlock()
				p.rt.logger().Warn("init pool: start an init", "err", err)
				select {
				case <-p.stop:
					return
				case <-time.After(poolRefillBackoff):
				}
				continue
			case p.closed || pi.gen != p.gen:
				p.retireLocked(pi)
			default:
				p.idle = append(p.idle, pi)
			}
			p.mu.Unlock()
		}
	}
}

// startInit starts one pooled init and waits until it is ready.
func (p *initPool) startInit(gen uint64) (*pooledInit, error) {
	exe, err := initPath()
	if err != nil {
		return nil, err
	}
	hostConn, childSock, err := initproc.SocketPair()
	if err != nil {
		return nil, err
	}
	defer childSock.Close()
	log := &initLog{log: p.rt.logger()}
	cmd := newInitCmd(exe, "", log, childSock)
	cmd.Env = append(cmd.Env, initproc.PoolEnv+"=1")
	for k := range poolShape {
		cmd.SysProcAttr.Cloneflags |= k.CloneFlag()
	}
	if err := onForkThread(cmd.Start); err != nil {
		hostConn.Close()
		return nil, err
	}
	pi := &pooledInit{cmd: cmd, conn: hostConn, log: log, gen: gen}
	hostConn.SetReadDeadline(time.Now().Add(poolReadyTimeout))
	m, files, err := initproc.Recv(hostConn, make([]byte, 4096), make([]byte, 64))
	initproc.CloseFiles(files)
	hostConn.SetReadDeadline(time.Time{})
	if err == nil && m.Type != initproc.MsgReady {
		err = errors.New("unexpected " + m.Type + " message")
	}
	if err != nil {
		pi.discard()
		return nil, err
	}
	return pi, nil
}

// close ends the pool: its inits are killed and reaped, its goroutines
// gone, when it returns.
func (p *initPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	for _, pi := range p.idle {
		p.retireLocked(pi)
	}
	p.idle = nil
	close(p.stop)
	unix.Close(p.wakeW)
	p.mu.Unlock()
	p.wg.Wait()
	unix.Close(p.check)
}

// newInitCmd is the command that starts an init: exe (the sealed init)
// with its control socket as fd 3 and extra as 4 on, killed if the
// forking thread dies.
func newInitCmd(exe, id string, log *initLog, sock *os.File, extra ...*os.File) *exec.Cmd {
	args := []string{"berth-init"}
	if id != "" {
		args = append(args, id)
	}
	return &exec.Cmd{
		Path:        exe,
		Args:        args,
		Env:         []string{initproc.Env + "=1", "GOMAXPROCS=1"},
		Stderr:      log,
		ExtraFiles:  append([]*os.File{sock}, extra...),
		SysProcAttr: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL},
	}
}
