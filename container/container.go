package container

import (
	"context"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/initproc"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// State is where a container is in its life.
type State string

// The container states.
const (
	Created State = "created" // Create done, Start not yet
	Running State = "running" // the main process runs
	Paused  State = "paused"  // frozen by Pause
	Stopped State = "stopped" // the main process ended
	Deleted State = "deleted" // Delete done; every call fails with ErrDeleted
)

// ExitStatus tells how a process ended.
type ExitStatus struct {
	// Code is the exit code, or 128+signal for a process killed by a
	// signal, as shells and Docker report it.
	Code int
	// Signal is the signal that killed the process, or 0.
	Signal syscall.Signal
	// OOMKilled is true when the kernel's OOM killer killed a process of
	// the container (its memory limit was reached).
	OOMKilled bool
	// ExitedAt is when berth saw the process end.
	ExitedAt time.Time
}

// Success reports whether the process exited with code 0.
func (s *ExitStatus) Success() bool { return s.Code == 0 && s.Signal == 0 && !s.OOMKilled }

// String describes the status like "exit status 3" or "killed by
// signal killed (OOM)".
func (s *ExitStatus) String() string {
	var r string
	if s.Signal != 0 {
		r = "killed by signal " + s.Signal.String()
	} else {
		r = fmt.Sprintf("exit status %d", s.Code)
	}
	if s.OOMKilled {
		r += " (OOM)"
	}
	return r
}

func exitStatusOf(ws unix.WaitStatus) *ExitStatus {
	s := &ExitStatus{ExitedAt: time.Now()}
	switch {
	case ws.Signaled():
		s.Signal = ws.Signal()
		s.Code = 128 + int(s.Signal)
	default:
		s.Code = ws.ExitStatus()
	}
	return s
}

// Runtime owns a set of containers: their IDs (unique within it; Get and
// List find them) and the cgroup they are placed under. Images names the
// layer store that image containers (Spec.Image) come from. The zero
// value is ready to use; Default is the one the package-level Create
// uses. A Runtime is safe for concurrent use.
type Runtime struct {
	// CgroupParent is the cgroup under which each container gets
	// CgroupParent/ID. Empty means "/berth" (for an unprivileged caller,
	// its delegated cgroup v2 subtree's berth: see the package
	// documentation on rootless containers).
	CgroupParent string
	// Logger receives debug and warning records (such as what a
	// container's init writes to its stderr when it crashes). Nil
	// discards them.
	Logger *slog.Logger
	// Images is the layer store that Spec.Image names images in.
	Images *layer.Store
	// VolumeRoot is the directory holding the runtime's named volumes
	// (see Volume). Empty means DefaultVolumeRoot. Runtimes of any
	// process that share a VolumeRoot share its volumes.
	VolumeRoot string
	// InitPool, when above 0, is how many container inits the runtime
	// keeps started ahead of time, past their start-up and waiting in
	// new mount, PID, UTS, IPC and network namespaces (the default
	// shape): Start hands one its container, which saves most of what
	// starting an init costs. The pool fills in the background from the
	// first Create, holds no container's resources, and is emptied by
	// Close or the end of the process. Specs of another shape (a user
	// namespace, joined or host namespaces) and Starts that find the pool
	// empty start their init as without a pool. Set it before the first
	// Create.
	InitPool int
	// NoCgroups lets an unprivileged caller run containers without a
	// cgroup where the host delegates it none (see the package
	// documentation on rootless containers): without it, Create fails
	// there with ErrNoCgroup. A spec with Resources is refused either
	// way. Root's containers always have a cgroup.
	NoCgroups bool

	mu         sync.Mutex
	containers map[string]*Container
	pool       *initPool
	closed     bool
	// releasing are the root filesystems being released in the
	// background (see Container.releaseRoot), for Close to wait for.
	releasing map[chan struct{}]bool
}

// Close ends what the runtime keeps besides its containers: the inits
// of its pool are killed and reaped, and the root filesystems of exited
// image containers released, when it returns. Containers are not
// touched (Delete them); Create and Start still work, without a pool.
func (r *Runtime) Close() error {
	r.mu.Lock()
	p := r.pool
	r.pool, r.closed = nil, true
	r.mu.Unlock()
	if p != nil {
		p.close()
	}
	r.mu.Lock()
	var releasing []chan struct{}
	for ch := range r.releasing {
		releasing = append(releasing, ch)
	}
	r.mu.Unlock()
	for _, ch := range releasing {
		<-ch
	}
	return nil
}

// Default is the Runtime the package-level Create uses: containers
// created with it are found with Default.Get and Default.List.
var Default = &Runtime{}

// Create creates a container in the Default runtime; see Runtime.Create.
func Create(ctx context.Context, id string, spec *Spec) (*Container, error) {
	return Default.Create(ctx, id, spec)
}

var discardLogger = slog.New(slog.DiscardHandler)

var idPattern = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`)

func (r *Runtime) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return discardLogger
}

func (r *Runtime) cgroupPath(id string) string {
	parent := r.CgroupParent
	if parent == "" {
		parent = "/berth"
	}
	return parent + "/" + id
}

// Create checks spec against its rootfs (the program exists, the user
// is known), creates the container's cgroup with its limits and returns
// the container in state Created. Nothing runs until Start. On error
// nothing is left behind. The spec is copied; later changes to it do not
// affect the container.
func (r *Runtime) Create(ctx context.Context, id string, spec *Spec) (c *Container, err error) {
	if !idPattern.MatchString(id) {
		return nil, fmt.Errorf("%w: container ID %q: want 1 to 128 of [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalidSpec, id)
	}
	if spec == nil {
		return nil, fmt.Errorf("%w: nil spec", ErrInvalidSpec)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// The container keeps its own copy: the caller may change or reuse
	// spec, its slices and maps, as soon as Create returns.
	spec = spec.clone()
	r.mu.Lock()
	if r.containers == nil {
		r.containers = map[string]*Container{}
	}
	if _, ok := r.containers[id]; ok {
		r.mu.Unlock()
		return nil, fmt.Errorf("create %s: %w", id, ErrExists)
	}
	r.containers[id] = nil // reserved
	r.mu.Unlock()
	defer func() {
		if err != nil {
			r.mu.Lock()
			delete(r.containers, id)
			r.mu.Unlock()
		}
	}()
	if spec.Image != "" {
		if err := r.fromImage(ctx, id, spec); err != nil {
			return nil, fmt.Errorf("create %s: %w", id, err)
		}
		defer func() {
			if err != nil {
				r.Images.Release(context.Background(), snapshotKey(id))
			}
		}()
	}
	if err := r.rootlessSpec(spec); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}

	c = &Container{id: id, rt: r, spec: *spec, state: Created, done: make(chan struct{})}
	made := c // c is nil once an error is returned
	defer func() {
		if err != nil {
			made.releaseVolumes()
			made.closeDetachedRootfs()
		}
	}()
	if err := c.useVolumes(ctx); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	if err := c.prepare(); err != nil {
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	c.takeDetachedRootfs()
	res := c.cgroupResources(spec.Resources)
	cg, err := r.newCgroup(id, spec, &res)
	if err != nil {
		if errors.Is(err, cgroup.ErrExists) {
			err = fmt.Errorf("%w (its cgroup %s holds processes): %w", ErrExists, r.cgroupPath(id), err)
		}
		return nil, fmt.Errorf("create %s: %w", id, err)
	}
	c.cg = cg
	r.mu.Lock()
	r.containers[id] = c
	r.mu.Unlock()
	return c, nil
}

// Get returns the container with the given ID.
func (r *Runtime) Get(id string) (*Container, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.containers[id]
	if c == nil {
		return nil, fmt.Errorf("%s: %w", id, ErrNotFound)
	}
	return c, nil
}

// List returns the runtime's containers, sorted by ID.
func (r *Runtime) List() []*Container {
	r.mu.Lock()
	out := make([]*Container, 0, len(r.containers))
	for _, c := range r.containers {
		if c != nil {
			out = append(out, c)
		}
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Container is a container: created by Create, run by Start, ended by
// Wait/Stop/Kill, removed by Delete. Its methods are safe for concurrent
// use.
type Container struct {
	id   string
	rt   *Runtime
	spec Spec
	cfg  initproc.Config
	cg   cgroupHandle
	// devRules allow the devices of the spec's Devices (see
	// cgroupResources).
	devRules []cgroup.DeviceRule
	// modes is where each kind of namespace comes from: the spec's
	// choices over the defaults.
	modes map[namespace.Kind]NamespaceMode
	// volumes are the named volumes the container mounts, by name, and
	// volumeLocks the shared locks it holds on them until Delete.
	volumes     map[string]*Volume
	volumeLocks []*os.File

	mu sync.Mutex
	// rootMu is held shared while CopyTo or CopyFrom has a stopped image
	// container's snapshot mounted, and exclusively (under mu) by Start
	// and Delete.
	rootMu sync.RWMutex
	// rootfsMnt is an image container's root filesystem mounted ahead
	// by its snapshot store (a detached mount), for init, until Start
	// sends it (see takeDetachedRootfs).
	rootfsMnt *os.File
	// rootHold is an O_PATH descriptor of a running image container's
	// root filesystem, and rootReleased is closed once it is closed (see
	// holdRoot).
	rootHold     int
	rootReleased chan struct{}
	state        State
	cmd          *exec.Cmd
	conn         *net.UnixConn
	stdio        *stdio
	log          *logFile
	logs         []io.Closer
	initPid      int
	mainPid      int
	pending      map[uint64]chan *initproc.Message
	execs        map[uint64]*ExecProcess
	nextID       uint64
	done         chan struct{} // closed when the main process has ended and init is reaped
	exit         *ExitStatus
	// Networking, while the container runs: its endpoints (Spec.Networks
	// order), published ports and port-forwards.
	endpoints []*network.Endpoint
	published *network.Publication
	forwards  []*network.Forwarder
	cniAtts   []*network.CNIAttachment
}

// ID returns the container's ID.
func (c *Container) ID() string { return c.id }

// Spec returns a copy of the container's spec, with Resources as the
// last Update left them. The copy is deep: changing its slices and maps
// does not change the container.
func (c *Container) Spec() Spec {
	c.mu.Lock()
	defer c.mu.Unlock()
	return *c.spec.clone()
}

// State returns the container's current state.
func (c *Container) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Pid returns the host PID of the container's init (PID 1 inside), or 0
// when it is not running.
func (c *Container) Pid() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != Running && c.state != Paused {
		return 0
	}
	return c.initPid
}

// NamespacePath returns the path of the running container's namespace of
// kind k, for another container to join (Namespace{Mode: NamespaceJoin,
// Path: ...}), as Kubernetes pods share network and IPC.
func (c *Container) NamespacePath(k namespace.Kind) (string, error) {
	pid := c.Pid()
	if pid == 0 {
		return "", fmt.Errorf("%s: %w", c.id, ErrNotRunning)
	}
	return namespace.ProcPath(pid, k), nil
}

// CgroupPath returns the container's cgroup path within the hierarchy,
// or "" for a container without a cgroup (Runtime.NoCgroups).
func (c *Container) CgroupPath() string { return c.cg.Path() }

// prepare resolves the spec into init's configuration and checks it
// against the rootfs.
func (c *Container) prepare() error {
	s := &c.spec
	root, err := initproc.OpenRoot(s.Rootfs)
	if err != nil {
		return err
	}
	defer root.Close()
	p := &s.Process
	env := envWithPath(p.Env)
	dir := p.Dir
	if dir == "" {
		dir = "/"
	}
	if s.rootfsMounts == nil {
		// An image's root filesystem exists only once init has mounted
		// it: there init reports a missing program or user, at Start.
		if _, err := root.LookPath(p.Args[0], initproc.LookupEnv(env, "PATH"), dir); err != nil {
			return err
		}
	}
	caps, err := initproc.ParseCaps(DefaultCapabilities)
	if s.Capabilities != nil {
		caps, err = initproc.ParseCaps(s.Capabilities)
	}
	if err != nil {
		return err
	}
	modes := defaultNamespaces()
	for k, ns := range s.Namespaces {
		modes[k] = ns.Mode
	}
	c.modes = modes
	if err := s.checkNetworking(modes); err != nil {
		return err
	}
	main := initproc.Proc{
		Args: p.Args, Env: env, Dir: dir, MkDir: true,
		User: p.User, Groups: p.AdditionalGroups, Caps: caps,
		NNP: !s.AllowPrivilegeEscalation,
	}
	p.initTTY(&main)
	if err := s.capSets(&main); err != nil {
		return err
	}
	seccompFilter, err := s.program(caps)
	if err != nil {
		return err
	}
	if s.rootfsMounts == nil {
		u, err := root.ResolveUser(p.User, p.AdditionalGroups)
		if err != nil {
			return err
		}
		if err := main.CheckCaps(u.UID); err != nil {
			return err
		}
	} else {
		// The user is known at Start: check what can be checked now.
		early := main
		early.Perm, early.Eff = nil, nil
		if err := early.CheckCaps(0); err != nil {
			return err
		}
	}
	cfg := initproc.Config{
		Rootfs:        s.Rootfs,
		RootfsMounts:  s.rootfsMounts,
		Readonly:      s.ReadonlyRootfs,
		MaskedPaths:   s.MaskedPaths,
		ReadonlyPaths: s.ReadonlyPaths,
		OOMScoreAdj:   s.OOMScoreAdj,
		NewNet:        modes[namespace.Net] == NamespaceNew,
		NewIPC:        modes[namespace.IPC] == NamespaceNew,
		UserNS:        modes[namespace.User] == NamespaceNew,
		CgroupNS:      modes[namespace.Cgroup] == NamespaceNew,
		Seccomp:       seccompFilter,
		Main:          main,
	}
	if len(s.Sysctls) > 0 {
		if cfg.Sysctls, err = s.checkSysctls(modes); err != nil {
			return err
		}
	}
	if cfg.MaskedPaths == nil {
		cfg.MaskedPaths = DefaultMaskedPaths
	}
	if cfg.ReadonlyPaths == nil {
		cfg.ReadonlyPaths = DefaultReadonlyPaths
	}
	if modes[namespace.UTS] == NamespaceNew {
		cfg.Hostname = s.Hostname
		if cfg.Hostname == "" {
			cfg.Hostname = c.id
			if len(cfg.Hostname) > 12 {
				cfg.Hostname = cfg.Hostname[:12]
			}
		}
	} else if s.Hostname != "" {
		return fmt.Errorf("%w: a hostname needs a new UTS namespace", ErrInvalidSpec)
	}
	for name, l := range s.Rlimits {
		res, _ := rlimitResource(name)
		cfg.Rlimits = append(cfg.Rlimits, initproc.Rlimit{Resource: res, Soft: l.Soft, Hard: l.Hard})
	}
	for _, m := range s.Mounts {
		source := m.Source
		if m.Type == VolumeMount {
			source = c.volumes[m.Source].Mountpoint
		}
		im, copyUp, err := m.initMount(source)
		if err != nil {
			return err
		}
		if copyUp {
			im.CopyUp = true
			im.CopyLock = filepath.Join(filepath.Dir(source), "copyup.lock")
		}
		cfg.Mounts = append(cfg.Mounts, im)
		if m.Type == Bind {
			if _, err := os.Stat(m.Source); err != nil {
				return fmt.Errorf("%w: bind mount source: %w", ErrInvalidSpec, err)
			}
		}
	}
	if cfg.Devices, c.devRules, err = resolveDevices(s.Devices); err != nil {
		return err
	}
	c.cfg = cfg
	return nil
}

// checkUsable returns ErrDeleted for a deleted container.
func (c *Container) checkUsable() error {
	if c.state == Deleted {
		return fmt.Errorf("%s: %w", c.id, ErrDeleted)
	}
	return nil
}

// Start starts the container's init and main process. It returns once
// the main process runs, or with the error that kept it from running
// (a mount that failed, a program that cannot be executed, ...), in which
// case nothing of the attempt is left running.
func (c *Container) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	if c.state != Created {
		return fmt.Errorf("start %s: %w", c.id, ErrAlreadyStarted)
	}
	c.rootMu.Lock()
	err := c.start(ctx)
	c.rootMu.Unlock()
	if err != nil {
		return fmt.Errorf("start %s: %w", c.id, err)
	}
	c.state = Running
	go c.monitor()
	return nil
}

func (c *Container) start(ctx context.Context) (err error) {
	// An init from the runtime's pool (started ahead, in namespaces of
	// this container's shape) saves the init's own start; without one
	// (none idle, or a spec the pool cannot serve) init starts now.
	pooled := c.rt.takeInit(c)
	var exe string
	var hostConn *net.UnixConn
	var childSock *os.File
	if pooled != nil {
		hostConn = pooled.conn
	} else {
		if exe, err = initPath(); err != nil {
			return err
		}
		if hostConn, childSock, err = initproc.SocketPair(); err != nil {
			return err
		}
		defer childSock.Close()
	}
	// Until init runs, a failure undoes everything here; after, fail does.
	var sio *stdio
	started := false
	defer func() {
		if err != nil && !started {
			if pooled != nil {
				pooled.discard()
			} else {
				hostConn.Close()
			}
			if sio != nil {
				sio.handedOver()
				sio.wait()
			}
			c.closeLogs()
		}
	}()
	p := &c.spec.Process
	stdout, stderr := p.Stdout, p.Stderr
	if c.spec.LogPath != "" {
		lf, err := openLog(c.spec.LogPath)
		if err != nil {
			return err
		}
		c.log = lf
		ow := &streamWriter{log: lf, stream: "stdout", next: stdout}
		ew := &streamWriter{log: lf, stream: "stderr", next: stderr}
		c.logs = []io.Closer{ow, ew}
		stdout, stderr = ow, ew
		if p.Stdout != nil && p.Stdout == p.Stderr {
			// One writer for both: keep their order, log as stdout.
			stderr = ow
		}
	}
	sio, err = processStdio(p, stdout, stderr, true)
	if err != nil {
		return fmt.Errorf("stdio: %w", err)
	}
	defer sio.handedOver()
	var cmd *exec.Cmd
	var startFiles []*os.File // what a pooled init gets with its config
	awaitIDMaps := false      // newuidmap writes init's maps (rootless)
	if pooled != nil && c.seccompInCgroup() {
		// See startInit: the pooled init moves into the container's
		// cgroup before it starts anything.
		cmd = pooled.cmd
		if err := c.cg.Add(cmd.Process.Pid); err != nil {
			return fmt.Errorf("move init into the container's cgroup: %w", err)
		}
		startFiles = sio.child[:]
		c.setPlacement(0)
	} else if pooled != nil {
		cmd = pooled.cmd
		cgFiles, err := c.cg.OpenPlacement()
		if err != nil {
			return err
		}
		defer initproc.CloseFiles(cgFiles)
		startFiles = append(sio.child[:], cgFiles...)
		c.setPlacement(len(cgFiles))
	} else if cmd, awaitIDMaps, err = c.startInit(exe, childSock, sio); err != nil {
		return err
	}
	started = true
	c.cmd, c.conn, c.initPid, c.stdio = cmd, hostConn, cmd.Process.Pid, sio
	fail := func(err error) error {
		cmd.Process.Kill()
		hostConn.Close()
		cmd.Wait()
		sio.handedOver()
		sio.wait()
		c.cg.Kill(context.Background())
		c.closeLogs()
		c.disconnect()
		c.cmd, c.conn, c.initPid = nil, nil, 0
		return err
	}
	if nc, ok := c.cg.(*noCgroup); ok {
		nc.started(cmd.Process)
	}
	if awaitIDMaps {
		if err := c.writeIDMaps(); err != nil {
			return fail(err)
		}
	}
	if err := c.publishRootless(ctx); err != nil {
		return fail(err)
	}
	cfg := c.cfg
	if len(c.spec.Networks) > 0 {
		if err := c.connect(ctx, &cfg); err != nil {
			return fail(err)
		}
	}
	if c.rootfsMnt != nil {
		// Init gets its own copy.
		startFiles = append(startFiles, c.rootfsMnt)
		cfg.RootfsDetached = true
		defer c.closeDetachedRootfs()
	}
	if err := initproc.Send(hostConn, &initproc.Message{Type: initproc.MsgStart, Config: &cfg}, startFiles...); err != nil {
		return fail(fmt.Errorf("send config to init: %w", err))
	}
	stop := context.AfterFunc(ctx, func() { hostConn.SetReadDeadline(time.Unix(1, 0)) })
	m, files, err := initproc.Recv(hostConn, make([]byte, 64<<10), make([]byte, 256))
	stop()
	if err == nil && m.Type != initproc.MsgStarted {
		initproc.CloseFiles(files)
	}
	if err != nil {
		if ctx.Err() != nil {
			return fail(ctx.Err())
		}
		// init died before answering.
		return fail(fmt.Errorf("container init exited during setup: %w", err))
	}
	hostConn.SetReadDeadline(time.Time{})
	switch m.Type {
	case initproc.MsgStarted:
		c.mainPid = m.Pid
		c.holdRoot()
		if err := sio.attachTTY(files); err != nil {
			return fail(err)
		}
		return nil
	case initproc.MsgError:
		return fail(errors.New(m.Error))
	}
	return fail(fmt.Errorf("unexpected %q initproc.Message from init", m.Type))
}

// holdRoot opens the root filesystem that init mounted for an image
// container, through init (not yet reaped: its PID is still its own).
// The descriptor keeps the overlay's superblock alive after the
// container's mount namespace dies, so that its final unmount, which
// syncs the upper filesystem (~0.5 ms), is not in the path of the exit
// that Wait reports: releaseRoot closes it in the background. Without
// the descriptor (init already gone) the container ends as before.
// Copies from the stopped container and Runtime.Close wait for the
// release; Delete does not need to (its files are removed after).
func (c *Container) holdRoot() {
	if c.spec.rootfsMounts == nil {
		return
	}
	fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", c.initPid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return
	}
	c.rootHold, c.rootReleased = fd, make(chan struct{})
}

// releaseRoot closes the descriptor holdRoot opened, on a goroutine of
// the runtime's that Runtime.Close waits for; rootReleased is closed
// after. The thread that closes it does the overlay's final unmount.
func (c *Container) releaseRoot() {
	if c.rootReleased == nil {
		return
	}
	r, fd, done := c.rt, c.rootHold, c.rootReleased
	r.mu.Lock()
	if r.releasing == nil {
		r.releasing = map[chan struct{}]bool{}
	}
	r.releasing[done] = true
	r.mu.Unlock()
	go func() {
		unix.Close(fd)
		r.mu.Lock()
		delete(r.releasing, done)
		r.mu.Unlock()
		close(done)
	}()
}

// awaitRoot waits until the root filesystem holdRoot held is released,
// before it is mounted again or read as a diff.
func (c *Container) awaitRoot() {
	if c.rootReleased != nil {
		<-c.rootReleased
	}
}

// startInit starts an init for this container now, in its namespaces,
// with its stdio and cgroup placement descriptors.
func (c *Container) startInit(exe string, childSock *os.File, sio *stdio) (_ *exec.Cmd, awaitIDMaps bool, err error) {
	cmd := newInitCmd(exe, c.id, &initLog{log: c.rt.logger(), id: c.id}, childSock, sio.child[0], sio.child[1], sio.child[2])
	modes := c.modes
	var join []*namespace.Namespace
	defer func() {
		for _, ns := range join {
			ns.Close()
		}
	}()
	for _, k := range namespace.Kinds() {
		switch modes[k] {
		case NamespaceNew:
			if k == namespace.Cgroup {
				// Each process init starts unshares its own, once it is
				// in the container's cgroup.
				continue
			}
			cmd.SysProcAttr.Cloneflags |= k.CloneFlag()
		case NamespaceJoin:
			ns, err := namespace.Open(c.spec.Namespaces[k].Path)
			if err != nil {
				return nil, false, fmt.Errorf("join %s namespace: %w", k, err)
			}
			if ns.Kind() != k {
				ns.Close()
				return nil, false, fmt.Errorf("join %s namespace: %s is a %s namespace", k, c.spec.Namespaces[k].Path, ns.Kind())
			}
			join = append(join, ns)
		}
	}
	if modes[namespace.User] == NamespaceNew {
		cmd.SysProcAttr.UidMappings = namespace.SysProcIDMaps(c.spec.UIDMappings)
		cmd.SysProcAttr.GidMappings = namespace.SysProcIDMaps(c.spec.GIDMappings)
		cmd.SysProcAttr.GidMappingsEnableSetgroups = true
		// Become the namespace's root: our host UID is not mapped in it.
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: 0, Gid: 0}
	}
	awaitIDMaps = c.rootlessUserNS(cmd)
	// init stays outside the container's cgroup, as a shim would: its
	// threads and memory do not count against the container's limits,
	// and it can still act while the container is frozen or at its pids
	// limit. It places each process it starts into the cgroup before that
	// process runs, through these descriptors.
	cgFiles, err := c.cg.OpenPlacement()
	if err != nil {
		return nil, false, err
	}
	defer initproc.CloseFiles(cgFiles)
	if (modes[namespace.User] == NamespaceNew && c.cg.Version() == cgroup.V2) || c.seccompInCgroup() {
		// From inside a user namespace, cgroup v2 refuses to create a
		// process in a cgroup owned by the host's root (the common
		// ancestor's cgroup.procs is not writable there). Then init is
		// born in the container's cgroup itself, and its threads and
		// memory count against the limits. So with a seccomp filter.
		cmd.SysProcAttr.UseCgroupFD = true
		cmd.SysProcAttr.CgroupFD = int(cgFiles[0].Fd())
		cgFiles = nil
	}
	cmd.ExtraFiles = append(cmd.ExtraFiles, cgFiles...)
	c.setPlacement(len(cgFiles))
	if len(join) > 0 {
		// The forking thread enters the namespaces and is restored after;
		// a thread that cannot be restored is destroyed, which would fire
		// Pdeathsig, so the control socket alone ties init to us here.
		cmd.SysProcAttr.Pdeathsig = 0
		err = namespace.Do(cmd.Start, join...)
	} else {
		err = onForkThread(cmd.Start)
	}
	if err != nil {
		return nil, false, fmt.Errorf("start init: %w", err)
	}
	return cmd, awaitIDMaps, nil
}

// setPlacement records in init's config the n cgroup placement
// descriptors it gets.
func (c *Container) setPlacement(n int) {
	c.cfg.CgroupFDs = n
	c.cfg.CgroupV2 = c.cg.Version() == cgroup.V2
	if c.cfg.CgroupNS && c.cfg.CgroupV2 {
		c.cfg.CgroupDir = c.cg.Dirs()[0]
	}
}

func (c *Container) closeLogs() {
	for _, l := range c.logs {
		l.Close()
	}
	c.logs = nil
	if c.log != nil {
		c.log.Close()
		c.log = nil
	}
}

// monitor reads init's messages until init is gone, then records the
// exit status.
func (c *Container) monitor() {
	buf, oob := make([]byte, 64<<10), make([]byte, 256)
	var mainStatus *ExitStatus
	for {
		m, files, err := initproc.Recv(c.conn, buf, oob)
		if err != nil {
			break
		}
		switch m.Type {
		case initproc.MsgExit:
			initproc.CloseFiles(files)
			st := exitStatusOf(unix.WaitStatus(m.Status))
			if m.ID == 0 {
				mainStatus = st
				continue
			}
			c.mu.Lock()
			p := c.execs[m.ID]
			delete(c.execs, m.ID)
			c.mu.Unlock()
			if p != nil {
				p.finish(st)
			}
		default:
			c.mu.Lock()
			ch := c.pending[m.ID]
			delete(c.pending, m.ID)
			ep := c.execs[m.ID]
			c.mu.Unlock()
			if m.Type == initproc.MsgSocketMade {
				m.Files = files // a socket init made, for its requester
			} else {
				c.execStarted(m, ep, files) // a TTY's master, or closed
			}
			if ch != nil {
				ch <- m
			} else {
				initproc.CloseFiles(m.Files)
			}
		}
	}
	c.cmd.Wait() // reaps init
	c.releaseRoot()
	c.stdio.wait() // the output is copied once every holder has exited
	if mainStatus == nil {
		// init itself was killed (Kill, OOM, or from outside).
		mainStatus = &ExitStatus{Code: 128 + int(syscall.SIGKILL), Signal: syscall.SIGKILL, ExitedAt: time.Now()}
		if ws, ok := c.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			mainStatus.Signal = ws.Signal()
			mainStatus.Code = 128 + int(ws.Signal())
		}
	}
	if n, err := c.cg.OOMKills(); err == nil && n > 0 {
		mainStatus.OOMKilled = true
	}
	// With a PID namespace of its own, init's end killed everything in
	// it; with the host's (or another's), nothing did.
	if c.modes[namespace.PID] != NamespaceNew {
		if procs, err := c.cg.Processes(); err == nil && len(procs) > 0 {
			c.cg.Kill(context.Background())
		}
	}
	c.conn.Close()
	c.mu.Lock()
	c.closeLogs()
	if err := c.disconnect(); err != nil {
		c.rt.logger().Warn("container networks", "container", c.id, "err", err)
	}
	c.exit = mainStatus
	c.state = Stopped
	for id, ch := range c.pending {
		ch <- &initproc.Message{Type: initproc.MsgError, ID: id, Error: ErrNotRunning.Error()}
	}
	c.pending = nil
	execs := c.execs
	c.execs = nil
	c.mu.Unlock()
	for _, p := range execs {
		p.finish(&ExitStatus{Code: 137, Signal: syscall.SIGKILL, ExitedAt: time.Now()})
	}
	close(c.done)
}

// Wait waits for the main process to end and returns its exit status.
// Any number of callers may wait; each gets the same status.
func (c *Container) Wait(ctx context.Context) (*ExitStatus, error) {
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if c.state == Created {
		c.mu.Unlock()
		return nil, fmt.Errorf("wait %s: %w", c.id, ErrNotRunning)
	}
	c.mu.Unlock()
	select {
	case <-c.done:
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.exit, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done returns a channel closed when the main process has ended (after
// Start), for use in select.
func (c *Container) Done() <-chan struct{} { return c.done }

// Signal sends sig to the container's main process.
func (c *Container) Signal(sig syscall.Signal) error {
	return c.signalProc(0, sig)
}

func (c *Container) signalProc(id uint64, sig syscall.Signal) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	if c.state != Running && c.state != Paused {
		return fmt.Errorf("signal %s: %w", c.id, ErrNotRunning)
	}
	if sig == syscall.SIGKILL && id == 0 {
		// Works even while init is frozen.
		return c.cg.Kill(context.Background())
	}
	return initproc.Send(c.conn, &initproc.Message{Type: initproc.MsgSignal, ID: id, Signal: int(sig)})
}

// Kill kills every process of the container at once (SIGKILL through its
// cgroup, paused or not) and waits until the container has stopped. When
// ctx is done first, Kill returns an error matching ctx.Err(); the
// processes have been sent SIGKILL unless ctx was done at the call.
func (c *Container) Kill(ctx context.Context) error {
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return err
	}
	st := c.state
	c.mu.Unlock()
	if st != Running && st != Paused {
		return nil
	}
	if err := c.cg.Kill(ctx); err != nil {
		return fmt.Errorf("kill %s: %w", c.id, err)
	}
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("kill %s: wait for it to stop: %w", c.id, ctx.Err())
	}
}

// Stop asks the main process to end with the spec's StopSignal (SIGTERM
// by default), waits up to grace for it, then kills every process of the
// container, like `docker stop -t`. A negative grace means the spec's
// StopTimeout (10 s by default). Stop on a container that is not running
// does nothing.
func (c *Container) Stop(ctx context.Context, grace time.Duration) error {
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return err
	}
	st := c.state
	c.mu.Unlock()
	if st != Running && st != Paused {
		return nil
	}
	if grace < 0 {
		grace = c.spec.StopTimeout
		if grace == 0 {
			grace = 10 * time.Second
		}
	}
	sig := c.spec.StopSignal
	if sig == 0 {
		sig = syscall.SIGTERM
	}
	if st == Paused {
		// A frozen process cannot handle a signal: kill at once.
		grace = 0
	}
	if grace > 0 {
		if err := c.Signal(sig); err != nil && !errors.Is(err, ErrNotRunning) {
			return fmt.Errorf("stop %s: %w", c.id, err)
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-c.done:
			return nil
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return c.Kill(ctx)
}

// Pause freezes every process of the container (cgroup freezer).
func (c *Container) Pause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	if c.state != Running {
		return fmt.Errorf("pause %s: %w", c.id, ErrNotRunning)
	}
	if err := c.cg.Freeze(context.Background()); err != nil {
		return fmt.Errorf("pause %s: %w", c.id, err)
	}
	c.state = Paused
	return nil
}

// Resume thaws a paused container. On a container that is not paused it
// returns an error matching ErrNotPaused.
func (c *Container) Resume() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	if c.state != Paused {
		return fmt.Errorf("resume %s (%s): %w", c.id, c.state, ErrNotPaused)
	}
	if err := c.cg.Thaw(); err != nil {
		return fmt.Errorf("resume %s: %w", c.id, err)
	}
	c.state = Running
	return nil
}

// Stats returns the container's resource usage from its cgroup.
func (c *Container) Stats() (*cgroup.Stats, error) {
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	c.mu.Unlock()
	return c.cg.Stats()
}

// Update changes the container's resource limits while it runs.
func (c *Container) Update(r cgroup.Resources) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	res := c.cgroupResources(r)
	if err := c.cg.Update(&res); err != nil {
		return fmt.Errorf("update %s: %w", c.id, err)
	}
	c.spec.Resources = r
	return nil
}

// Delete removes the container: if it still runs, every process is
// killed first (like `docker rm -f`); then its cgroup is removed. Nothing
// of it remains: no process, mount, namespace, cgroup or file descriptor.
// After Delete every call on c returns ErrDeleted. When ctx is done
// first, Delete returns an error matching ctx.Err() and the container is
// not deleted (Delete can be called again).
func (c *Container) Delete(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("delete %s: %w", c.id, err)
	}
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return err
	}
	st := c.state
	c.mu.Unlock()
	if st == Running || st == Paused {
		if err := c.Kill(ctx); err != nil {
			return fmt.Errorf("delete %s: %w", c.id, err)
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	if err := c.cg.Delete(ctx); err != nil {
		return fmt.Errorf("delete %s: %w", c.id, err)
	}
	c.rootMu.Lock()
	err := c.releaseImage(ctx)
	c.rootMu.Unlock()
	if err != nil {
		return fmt.Errorf("delete %s: %w", c.id, err)
	}
	c.closeLogs()
	if err := c.disconnect(); err != nil {
		return fmt.Errorf("delete %s: %w", c.id, err)
	}
	c.releaseVolumes()
	c.state = Deleted
	c.rt.mu.Lock()
	if c.rt.containers[c.id] == c {
		delete(c.rt.containers, c.id)
	}
	c.rt.mu.Unlock()
	return nil
}

// initLog passes what a container's init writes to its own stderr (a Go
// runtime crash, say) to the runtime's logger.
type initLog struct {
	log *slog.Logger
	mu  sync.Mutex
	id  string // "" for a pooled init not taken yet
}

// setID names the container whose init this is.
func (l *initLog) setID(id string) {
	l.mu.Lock()
	l.id = id
	l.mu.Unlock()
}

// Write logs p as one record.
func (l *initLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	id := l.id
	l.mu.Unlock()
	l.log.Warn("container init", "container", id, "output", string(p))
	return len(p), nil
}
