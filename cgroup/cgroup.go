package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Version is a cgroup version.
type Version int

// The cgroup versions.
const (
	V1 Version = 1 // legacy hierarchies, one per controller (also used on hybrid hosts)
	V2 Version = 2 // the unified hierarchy
)

// String returns "v1", "v2", or "none" for any other value.
func (v Version) String() string {
	switch v {
	case V1:
		return "v1"
	case V2:
		return "v2"
	}
	return "none"
}

// Errors that callers can match with errors.Is.
var (
	// ErrNotFound is returned when a cgroup does not exist.
	ErrNotFound = errors.New("cgroup: not found")
	// ErrExists is returned by New when the cgroup exists and holds
	// processes.
	ErrExists = errors.New("cgroup: exists and is in use")
	// ErrInvalid is matched by errors for invalid paths and resources
	// (see ResourceError).
	ErrInvalid = errors.New("cgroup: invalid argument")
	// ErrNotSupported is returned for what the host's cgroups cannot do,
	// such as OpenDir on v1, or a limit whose controller is missing.
	ErrNotSupported = errors.New("cgroup: not supported on this host")
)

var hostVersion = sync.OnceValue(func() Version { return detectVersion(v2Mount) })

// detectVersion tells the cgroup version from the file system mounted at
// dir, as containerd and runc do: cgroup2 there is a unified (v2) host;
// anything else, normally a tmpfs holding the v1 hierarchies (and on a
// hybrid host a cgroup2 mount at dir/unified, which berth leaves alone), is
// a v1 host. A dir that cannot be examined (missing) gives 0.
func detectVersion(dir string) Version {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return V2
	}
	return V1
}

// HostVersion returns the cgroup version this host uses: V2 on a pure
// cgroup v2 (unified) host, V1 on legacy and hybrid hosts, and 0 when no
// cgroup file system is mounted at /sys/fs/cgroup. The answer is computed
// once.
func HostVersion() Version { return hostVersion() }

// manager is what differs between cgroup v1 and v2.
type manager interface {
	// create makes the directories, reporting whether the cgroup
	// existed already, and returns a func that removes what it made.
	// On error nothing new is left behind.
	create() (existed bool, undo func(), err error)
	// exists reports whether the cgroup's directory exists.
	exists() bool
	// apply writes r; prev is what was applied before (nil: unknown),
	// so that limits it set and r does not are reset.
	apply(r, prev *Resources) error
	// read reads back the applied resources.
	read() (*Resources, error)
	add(pid int) error
	procs() ([]int, error)
	// setFrozen writes the freezer state, without waiting.
	setFrozen(frozen bool) error
	frozen() (bool, error)
	// kill sends SIGKILL to every process once.
	kill(ctx context.Context) error
	// remove removes the directories, children first.
	remove(ctx context.Context) error
	stats() (*Stats, error)
	oomKills() (uint64, error)
	watchOOM(ctx context.Context, ch chan<- struct{}) error
	openDir() (*os.File, error)
}

// Cgroup is a control group: a set of processes under common limits. A
// Cgroup is safe for concurrent use.
type Cgroup struct {
	path    string
	version Version
	m       manager

	mu  sync.Mutex
	res *Resources // last applied
}

// checkPath reports whether p is a usable cgroup path.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") || path.Clean(p) != p || p == "/" || strings.ContainsAny(p, "\x00\n") {
		return fmt.Errorf("cgroup: path %q: must be absolute, clean and not the root: %w", p, ErrInvalid)
	}
	return nil
}

func newManager(p string) (manager, Version, error) {
	if err := checkPath(p); err != nil {
		return nil, 0, err
	}
	switch v := HostVersion(); v {
	case V1:
		h, err := v1Hierarchy()
		if err != nil {
			return nil, 0, err
		}
		return newV1(h, p), v, nil
	case V2:
		h, err := v2Hierarchy()
		if err != nil {
			return nil, 0, err
		}
		return newV2(h, p), v, nil
	}
	return nil, 0, fmt.Errorf("cgroup: no cgroup file system at /sys/fs/cgroup: %w", ErrNotSupported)
}

// New creates the cgroup at path, which is absolute within the hierarchy
// (such as "/berth/ctr1"; parents are created as needed), and applies r
// (nil means no limits). On v1 it is created in every mounted hierarchy
// berth uses; on v2 the controllers it needs are enabled in its parents'
// cgroup.subtree_control.
//
// r is validated first. If the cgroup exists and holds processes, New
// returns an error matching ErrExists; if it exists and is empty (left
// behind by a process that died), it is reused with r's limits. On any
// failure, what New created is removed.
func New(path string, r *Resources) (*Cgroup, error) {
	if err := r.Validate(); err != nil {
		return nil, err
	}
	if r == nil {
		r = &Resources{}
	}
	m, v, err := newManager(path)
	if err != nil {
		return nil, err
	}
	return newCgroup(path, v, m, r)
}

// newCgroup is New after the choice of manager (tests pass their own).
func newCgroup(path string, v Version, m manager, r *Resources) (*Cgroup, error) {
	existed, undo, err := m.create()
	if err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", path, err)
	}
	c := &Cgroup{path: path, version: v, m: m}
	// A fresh cgroup has kernel defaults: only set limits need writing.
	prev := &Resources{}
	if existed {
		procs, err := m.procs()
		if err == nil && len(procs) > 0 {
			err = fmt.Errorf("holds %d processes: %w", len(procs), ErrExists)
		}
		if err != nil {
			undo()
			return nil, fmt.Errorf("cgroup: create %s: %w", path, err)
		}
		prev = nil // unknown: reset everything r leaves unset
	}
	if err := m.apply(r, prev); err != nil {
		undo()
		return nil, fmt.Errorf("cgroup: create %s: %w", path, err)
	}
	c.res = clone(r)
	return c, nil
}

// Load returns the existing cgroup at path. Its Resources are read back
// from the kernel, where limits at their defaults read as zero. The error
// matches ErrNotFound if it does not exist.
func Load(path string) (*Cgroup, error) {
	m, v, err := newManager(path)
	if err != nil {
		return nil, err
	}
	if !m.exists() {
		return nil, fmt.Errorf("cgroup: load %s: %w", path, ErrNotFound)
	}
	// A value that cannot be read back leaves Resources unknown (nil):
	// the next Update then writes every setting.
	r, _ := m.read()
	return &Cgroup{path: path, version: v, m: m, res: r}, nil
}

func clone(r *Resources) *Resources {
	c := *r
	if r.Devices != nil {
		c.Devices = slices.Clone(r.Devices)
	}
	return &c
}

// wrap adds what was being done to err, and turns "no such file or
// directory" into ErrNotFound when the cgroup is gone.
func (c *Cgroup) wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, os.ErrNotExist) && !c.m.exists() {
		return fmt.Errorf("cgroup: %s %s: %w", op, c.path, ErrNotFound)
	}
	return fmt.Errorf("cgroup: %s %s: %w", op, c.path, err)
}

// Path returns the cgroup's path within the hierarchy, as given to New or
// Load.
func (c *Cgroup) Path() string { return c.path }

// Version returns the cgroup version the cgroup lives in.
func (c *Cgroup) Version() Version { return c.version }

// Add moves the process pid, with all its threads, into the cgroup (in
// every hierarchy on v1). Children it forks afterwards are born inside.
func (c *Cgroup) Add(pid int) error {
	if pid <= 0 {
		return fmt.Errorf("cgroup: add pid %d to %s: %w", pid, c.path, ErrInvalid)
	}
	return c.wrap(fmt.Sprintf("add pid %d to", pid), c.m.add(pid))
}

// Update validates r and applies it to the running cgroup. r is the whole
// desired state: limits set before and left at zero in r are removed.
func (c *Cgroup) Update(r *Resources) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r == nil {
		r = &Resources{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.m.apply(r, c.res); err != nil {
		// What was applied is unknown now.
		c.res = nil
		if got, rerr := c.m.read(); rerr == nil {
			c.res = got
		}
		return c.wrap("update", err)
	}
	c.res = clone(r)
	return nil
}

// Resources returns a copy of the resources last applied by New or Update,
// or, after Load, read back from the kernel. After a failed Update they are
// read back too, and are zero if that fails.
func (c *Cgroup) Resources() *Resources {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.res == nil {
		return &Resources{}
	}
	return clone(c.res)
}

// Stats returns the cgroup's resource usage.
func (c *Cgroup) Stats() (*Stats, error) {
	s, err := c.m.stats()
	if err != nil {
		return nil, c.wrap("read stats of", err)
	}
	return s, nil
}

// Processes returns the IDs of the processes in the cgroup and its
// descendants, sorted (on v1, in any of its hierarchies).
func (c *Cgroup) Processes() ([]int, error) {
	p, err := c.m.procs()
	if err != nil {
		return nil, c.wrap("list processes of", err)
	}
	return p, nil
}

const (
	freezeTimeout = 5 * time.Second
	killTimeout   = 10 * time.Second
)

// poll calls done with growing pauses until it reports true or fails,
// until timeout passes, or until ctx is done; it reports whether done
// said true, and ctx's error when ctx ended the wait.
func poll(ctx context.Context, timeout time.Duration, done func() (bool, error)) (bool, error) {
	deadline := time.Now().Add(timeout)
	pause := 50 * time.Microsecond
	var timer *time.Timer
	for {
		ok, err := done()
		if ok || err != nil {
			return ok, err
		}
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if time.Now().After(deadline) {
			return false, nil
		}
		if timer == nil {
			timer = time.NewTimer(pause)
			defer timer.Stop()
		} else {
			timer.Reset(pause)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false, ctx.Err()
		}
		pause = min(pause*2, 10*time.Millisecond)
	}
}

// Freeze stops every process in the cgroup and returns once all are
// frozen, or with an error after about 5 seconds. When ctx is done first
// it returns an error matching ctx.Err(); the cgroup may then be frozen
// or on its way there (Thaw undoes either).
func (c *Cgroup) Freeze(ctx context.Context) error {
	return c.wrap("freeze", c.setFrozen(ctx, true))
}

// Thaw resumes the processes Freeze stopped and returns once they run.
func (c *Cgroup) Thaw() error {
	return c.wrap("thaw", c.setFrozen(context.Background(), false))
}

func (c *Cgroup) setFrozen(ctx context.Context, want bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := c.m.setFrozen(want); err != nil {
		return err
	}
	ok, err := poll(ctx, freezeTimeout, func() (bool, error) {
		f, err := c.m.frozen()
		return f == want, err
	})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("state did not settle in %v", freezeTimeout)
	}
	return nil
}

// Frozen reports whether the cgroup is frozen: true only once every
// process in it is stopped.
func (c *Cgroup) Frozen() (bool, error) {
	f, err := c.m.frozen()
	return f, c.wrap("read freezer state of", err)
}

// Kill sends SIGKILL to every process in the cgroup and its descendants,
// including ones forked while it runs, and returns once the cgroup is
// empty, or with an error after about 10 seconds. When ctx is done before
// the cgroup is empty it returns an error matching ctx.Err() (the
// processes have been sent SIGKILL unless ctx was done at the call).
// Killed processes that are children of the caller still need to be
// waited for.
func (c *Cgroup) Kill(ctx context.Context) error {
	return c.wrap("kill processes of", c.kill(ctx))
}

func (c *Cgroup) kill(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var last []int
	ok, err := poll(ctx, killTimeout, func() (bool, error) {
		procs, err := c.m.procs()
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				return true, nil
			}
			return false, err
		}
		if len(procs) == 0 {
			return true, nil
		}
		if slices.Equal(procs, last) {
			// Killed already, and on the way out.
			return false, nil
		}
		last = procs
		return false, c.m.kill(ctx)
	})
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("processes %v still running %v after SIGKILL", last, killTimeout)
	}
	return nil
}

// Delete kills the processes in the cgroup (see Kill), then removes it,
// with any child cgroups, from every hierarchy. Deleting a cgroup that is
// gone already returns nil. When ctx is done first it returns an error
// matching ctx.Err(), and the cgroup may remain (Delete again removes it).
func (c *Cgroup) Delete(ctx context.Context) error {
	if err := c.kill(ctx); err != nil {
		return c.wrap("delete", err)
	}
	return c.wrap("delete", c.m.remove(ctx))
}

// OOMKills returns how many processes the kernel's OOM killer has killed
// in the cgroup (v1 memory.oom_control oom_kill, v2 memory.events
// oom_kill).
func (c *Cgroup) OOMKills() (uint64, error) {
	n, err := c.m.oomKills()
	return n, c.wrap("read OOM kills of", err)
}

// WatchOOM returns a channel that receives once for every process the
// OOM killer kills in the cgroup from now on. The channel is closed when
// ctx is done or the cgroup is deleted; nothing of the watch remains after
// that.
func (c *Cgroup) WatchOOM(ctx context.Context) (<-chan struct{}, error) {
	ch := make(chan struct{}, 1)
	if err := c.m.watchOOM(ctx, ch); err != nil {
		return nil, c.wrap("watch OOM events of", err)
	}
	return ch, nil
}

// OpenDir opens the cgroup's directory as an O_PATH descriptor, for
// syscall.SysProcAttr.CgroupFD with UseCgroupFD set: the child is then
// created inside the cgroup (clone3 with CLONE_INTO_CGROUP). The caller
// closes it. Only on v2; on v1 the error matches ErrNotSupported.
func (c *Cgroup) OpenDir() (*os.File, error) {
	f, err := c.m.openDir()
	if err != nil {
		return nil, c.wrap("open directory of", err)
	}
	return f, nil
}
