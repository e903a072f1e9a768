package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// v2Mount is where the unified hierarchy is mounted on a v2 host.
const v2Mount = "/sys/fs/cgroup"

// v2Controllers are the v2 controllers berth enables for its cgroups.
var v2Controllers = []string{"cpu", "cpuset", "memory", "pids", "io"}

// v2Hier is the v2 layout of this host.
type v2Hier struct {
	mount       string
	controllers []string // of v2Controllers, those the root offers
}

var v2Hierarchy = sync.OnceValues(func() (*v2Hier, error) { return v2HierAt(v2Mount) })

// v2HierAt reads the controllers the unified hierarchy mounted at mount
// offers.
func v2HierAt(mount string) (*v2Hier, error) {
	b, err := readFile(filepath.Join(mount, "cgroup.controllers"))
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	h := &v2Hier{mount: mount}
	have := strings.Fields(string(b))
	for _, c := range v2Controllers {
		if slices.Contains(have, c) {
			h.controllers = append(h.controllers, c)
		}
	}
	return h, nil
}

// v2 is a cgroup on a v2 (unified) host.
type v2 struct {
	h    *v2Hier
	path string
	dir  string
	// fresh is set by create when it made the directory, until the first
	// apply: no device program is attached to it yet.
	fresh bool
}

func newV2(h *v2Hier, path string) *v2 {
	return &v2{h: h, path: path, dir: h.mount + path}
}

func (c *v2) file(name string) string { return filepath.Join(c.dir, name) }

func (c *v2) exists() bool { return exists(c.dir) }

func (c *v2) create() (bool, func(), error) {
	created, err := mkdirAll(c.dir)
	if err != nil {
		return false, nil, err
	}
	undo := func() { removeDirs(created) }
	if err := c.enableControllers(); err != nil {
		undo()
		return false, nil, err
	}
	c.fresh = len(created) > 0
	return len(created) == 0, undo, nil
}

// enableControllers makes the controllers berth uses available to the
// cgroup by enabling them in the cgroup.subtree_control of every ancestor.
func (c *v2) enableControllers() error {
	return enableControllers(c.h.mount, c.dir, c.h.controllers, writeFile)
}

// enableControllers enables the controllers want in the
// cgroup.subtree_control of each ancestor of the cgroup directory dir, from
// the mount root down to dir's parent, writing "+cpu +memory" for the ones
// an ancestor lacks; write is writeFile but in tests. It costs one read
// when the parent has them all already (then so do the ancestors above it,
// as the kernel offers a cgroup only what its parent enabled).
//
// As in containerd, a failure at one level is forgiven if a level below
// succeeds (rootless, an ancestor may refuse writes but have the
// controllers enabled already); the last level's failure is returned. The
// kernel enables all of a write's controllers or none.
func enableControllers(mount, dir string, want []string, write func(path, s string) error) error {
	if len(want) == 0 {
		return nil
	}
	// missing returns the controllers of want that the subtree_control
	// file of the cgroup directory d lacks.
	missing := func(d string) ([]string, error) {
		b, err := readFile(filepath.Join(d, "cgroup.subtree_control"))
		if err != nil {
			return nil, err
		}
		have := strings.Fields(string(b))
		var out []string
		for _, c := range want {
			if !slices.Contains(have, c) {
				out = append(out, c)
			}
		}
		return out, nil
	}
	parent := filepath.Dir(dir)
	if m, err := missing(parent); err != nil || len(m) == 0 {
		return err
	}
	rel, err := filepath.Rel(mount, parent)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("cgroup directory %s is not below the mount %s", dir, mount)
	}
	// The ancestors, top-down: mount, mount/a, mount/a/b, ..., parent.
	levels := []string{mount}
	if rel != "." {
		d := mount
		for name := range strings.SplitSeq(rel, "/") {
			d = filepath.Join(d, name)
			levels = append(levels, d)
		}
	}
	var last error
	for _, d := range levels {
		m, err := missing(d)
		if err == nil && len(m) > 0 {
			err = write(filepath.Join(d, "cgroup.subtree_control"), "+"+strings.Join(m, " +"))
			if errors.Is(err, unix.EBUSY) {
				err = fmt.Errorf("%w (%s holds processes, which cgroup v2 forbids once controllers are enabled below it)", err, d)
			}
		}
		last = err
	}
	return last
}

// set writes value to a file of the cgroup. A missing file (its
// controller is not enabled, or the kernel is too old) fails only if must
// is set (a limit was asked for), with an error matching ErrNotSupported.
func (c *v2) set(name, value string, must bool) error {
	err := writeFile(c.file(name), value)
	if errors.Is(err, fs.ErrNotExist) && c.exists() {
		if !must {
			return nil
		}
		return fmt.Errorf("%s: the controller is not available: %w", name, ErrNotSupported)
	}
	return err
}

func (c *v2) apply(r, prev *Resources) error {
	changed := func(differs bool) bool { return prev == nil || differs }
	old := prev
	if old == nil {
		old = &Resources{}
	}
	if w := r.weight(); changed(w != old.weight()) {
		v := w
		if v == 0 {
			v = 100
		}
		if err := c.set("cpu.weight", strconv.FormatUint(v, 10), w != 0); err != nil {
			return err
		}
	}
	if changed(r.CPUQuota != old.CPUQuota || r.CPUPeriod != old.CPUPeriod) {
		quota, period := "max", uint64(DefaultPeriod)
		if r.CPUQuota != 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		if r.CPUPeriod != 0 {
			period = r.CPUPeriod
		}
		v := quota + " " + strconv.FormatUint(period, 10)
		if err := c.set("cpu.max", v, r.CPUQuota != 0 || r.CPUPeriod != 0); err != nil {
			return err
		}
	}
	// "" in cpuset files means: the parent's.
	if changed(r.CPUs != old.CPUs) {
		if err := c.set("cpuset.cpus", r.CPUs, r.CPUs != ""); err != nil {
			return err
		}
	}
	if changed(r.Mems != old.Mems) {
		if err := c.set("cpuset.mems", r.Mems, r.Mems != ""); err != nil {
			return err
		}
	}
	if changed(r.MemoryLimit != old.MemoryLimit) {
		if err := c.set("memory.max", maxOr(r.MemoryLimit), r.MemoryLimit != 0); err != nil {
			return err
		}
	}
	if changed(r.MemorySwap != old.MemorySwap || r.MemoryLimit != old.MemoryLimit) {
		// v2 limits swap alone: memory.swap.max = swap - memory.
		v := "max"
		if r.MemorySwap > 0 {
			v = strconv.FormatInt(r.MemorySwap-r.MemoryLimit, 10)
		}
		if err := c.set("memory.swap.max", v, r.MemorySwap > 0); err != nil {
			return err
		}
	}
	if changed(r.MemoryReservation != old.MemoryReservation) {
		if err := c.set("memory.low", strconv.FormatInt(r.MemoryReservation, 10), r.MemoryReservation != 0); err != nil {
			return err
		}
	}
	if changed(r.PidsLimit != old.PidsLimit) {
		if err := c.set("pids.max", maxOr(r.PidsLimit), r.PidsLimit != 0); err != nil {
			return err
		}
	}
	if changed(r.IOWeight != old.IOWeight) {
		if err := c.setIOWeight(r.IOWeight); err != nil {
			return err
		}
	}
	fresh := c.fresh
	c.fresh = false
	if changed(!devicesEqual(r.Devices, old.Devices)) {
		if err := attachDeviceFilter(c.dir, r.Devices, fresh); err != nil {
			return err
		}
	}
	return nil
}

// maxOr formats a limit, 0 meaning "max".
func maxOr(n int64) string {
	if n == 0 {
		return "max"
	}
	return strconv.FormatInt(n, 10)
}

// setIOWeight writes the block IO weight, 0 meaning the default 100, to
// io.bfq.weight (same scale) or else io.weight (mapped to 1..10000), as
// runc does.
func (c *v2) setIOWeight(w uint16) error {
	if exists(c.file("io.bfq.weight")) {
		v := uint64(w)
		if v == 0 {
			v = 100
		}
		return writeFile(c.file("io.bfq.weight"), strconv.FormatUint(v, 10))
	}
	if exists(c.file("io.weight")) {
		v := uint64(100)
		if w != 0 {
			v = ioWeightV2(w)
		}
		return writeFile(c.file("io.weight"), "default "+strconv.FormatUint(v, 10))
	}
	if w != 0 {
		return fmt.Errorf("io weight: no io.bfq.weight or io.weight (needs the io controller and the BFQ scheduler or io cost): %w", ErrNotSupported)
	}
	return nil
}

func (c *v2) read() (*Resources, error) {
	r := &Resources{}
	// get reads an integer file; an absent one reads as def.
	get := func(name string, def int64) (int64, error) {
		n, err := readInt(c.file(name))
		if errors.Is(err, fs.ErrNotExist) && c.exists() {
			return def, nil
		}
		return n, err
	}
	n, err := get("cpu.weight", 100)
	if err != nil {
		return nil, err
	}
	if n != 100 {
		r.CPUWeight = uint64(n)
	}
	if s, err := readString(c.file("cpu.max")); err == nil {
		q, p, _ := strings.Cut(s, " ")
		if q != "max" {
			r.CPUQuota, _ = strconv.ParseInt(q, 10, 64)
		}
		if pn, _ := strconv.ParseUint(p, 10, 64); pn != DefaultPeriod {
			r.CPUPeriod = pn
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	for _, s := range []struct {
		name string
		dst  *string
	}{{"cpuset.cpus", &r.CPUs}, {"cpuset.mems", &r.Mems}} {
		v, err := readString(c.file(s.name))
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
		*s.dst = v
	}
	if n, err = get("memory.max", -1); err != nil {
		return nil, err
	}
	r.MemoryLimit = limitValue(n)
	if n, err = get("memory.swap.max", -1); err != nil {
		return nil, err
	}
	if r.MemoryLimit != 0 && n >= 0 { // unlimited reads as unset
		r.MemorySwap = r.MemoryLimit + n
	}
	if n, err = get("memory.low", 0); err != nil {
		return nil, err
	}
	r.MemoryReservation = limitValue(n)
	if n, err = get("pids.max", -1); err != nil {
		return nil, err
	}
	r.PidsLimit = limitValue(n)
	// io.bfq.weight (same scale) and io.weight (1..10000) read
	// "default N", then per-device lines.
	for _, f := range []string{"io.bfq.weight", "io.weight"} {
		s, err := readString(c.file(f))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		first, _, _ := strings.Cut(s, "\n")
		v, err := strconv.ParseUint(strings.TrimPrefix(first, "default "), 10, 64)
		if err != nil {
			return nil, &fs.PathError{Op: "parse", Path: c.file(f), Err: err}
		}
		if v != 100 {
			if f == "io.weight" { // the inverse of ioWeightV2, rounded
				v = 10 + ((v-1)*990+9999/2)/9999
			}
			r.IOWeight = uint16(v)
		}
		break
	}
	return r, nil
}

func (c *v2) add(pid int) error { return addProc(c.dir, pid) }

func (c *v2) procs() ([]int, error) {
	set := map[int]struct{}{}
	if err := readProcs(c.dir, set); err != nil {
		return nil, err
	}
	return sortedPids(set), nil
}

func (c *v2) setFrozen(frozen bool) error {
	v := "0"
	if frozen {
		v = "1"
	}
	err := writeFile(c.file("cgroup.freeze"), v)
	if errors.Is(err, fs.ErrNotExist) && c.exists() {
		return fmt.Errorf("cgroup.freeze: needs Linux 5.2: %w", ErrNotSupported)
	}
	return err
}

func (c *v2) frozen() (bool, error) {
	v, err := readKeyed(c.file("cgroup.events"), "frozen")
	if err != nil {
		return false, err
	}
	return v[0] == 1, nil
}

// kill writes cgroup.kill (Linux 5.14), which kills every process of the
// cgroup and its descendants at once, new forks included; before 5.14 it
// freezes, kills each process and thaws.
func (c *v2) kill(ctx context.Context) error {
	err := writeFile(c.file("cgroup.kill"), "1")
	if !errors.Is(err, fs.ErrNotExist) || !c.exists() {
		return err
	}
	frozen := c.setFrozen(true) == nil
	if frozen {
		_, _ = poll(ctx, freezeTimeout/5, c.frozen)
	}
	pids, err := c.procs()
	if err == nil {
		err = killAll(pids)
	}
	if frozen {
		if terr := c.setFrozen(false); terr != nil && err == nil && c.exists() {
			err = terr
		}
	}
	return err
}

func (c *v2) remove(ctx context.Context) error { return rmdirTree(ctx, c.dir) }

func (c *v2) stats() (*Stats, error) {
	if !c.exists() {
		return nil, &fs.PathError{Op: "stat", Path: c.dir, Err: fs.ErrNotExist}
	}
	return v2Stats(c.dir)
}

// v2Stats reads the stats of the v2 cgroup directory dir. A file that is
// absent (its controller is not enabled, or the kernel is too old, as for
// memory.peak before 5.19) reads as zeros.
func v2Stats(dir string) (*Stats, error) {
	s := &Stats{}
	// read returns a one-value file ("max" as 0), 0 if absent.
	read := func(name string) (uint64, error) {
		n, err := readInt(filepath.Join(dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return uint64(limitValue(n)), err
	}
	keyed := func(name string, keys ...string) ([]uint64, error) {
		v, err := readKeyed(filepath.Join(dir, name), keys...)
		if errors.Is(err, fs.ErrNotExist) {
			return make([]uint64, len(keys)), nil
		}
		return v, err
	}
	v, err := keyed("cpu.stat", "usage_usec", "user_usec", "system_usec", "nr_periods", "nr_throttled", "throttled_usec")
	if err != nil {
		return nil, err
	}
	s.CPU.UsageNs, s.CPU.UserNs, s.CPU.SystemNs = v[0]*1000, v[1]*1000, v[2]*1000
	s.CPU.Periods, s.CPU.ThrottledPeriods, s.CPU.ThrottledNs = v[3], v[4], v[5]*1000

	for _, f := range []struct {
		name string
		dst  *uint64
	}{
		{"memory.current", &s.Memory.Usage},
		{"memory.peak", &s.Memory.MaxUsage},
		{"memory.max", &s.Memory.Limit},
		{"memory.swap.current", &s.Memory.Swap},
		{"pids.current", &s.Pids.Current},
		{"pids.max", &s.Pids.Limit},
	} {
		if *f.dst, err = read(f.name); err != nil {
			return nil, err
		}
	}
	if v, err = keyed("memory.stat", "file", "anon"); err != nil {
		return nil, err
	}
	s.Memory.Cache, s.Memory.RSS = v[0], v[1]
	if v, err = keyed("memory.events", "oom", "oom_kill"); err != nil {
		return nil, err
	}
	s.Memory.OOMEvents, s.Memory.OOMKills = v[0], v[1]
	return s, nil
}

func (c *v2) oomKills() (uint64, error) {
	v, err := readKeyed(c.file("memory.events"), "oom_kill")
	if errors.Is(err, fs.ErrNotExist) && c.exists() {
		return 0, fmt.Errorf("memory.events: the memory controller is not available: %w", ErrNotSupported)
	}
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// watchOOM watches memory.events with inotify (the kernel signals a
// modification when a counter in it grows) and the parent directory, for
// the removal of the cgroup.
func (c *v2) watchOOM(ctx context.Context, ch chan<- struct{}) error {
	base, err := c.oomKills()
	if err != nil {
		return err
	}
	fd, err := unix.InotifyInit1(unix.IN_CLOEXEC | unix.IN_NONBLOCK)
	if err != nil {
		return os.NewSyscallError("inotify_init1", err)
	}
	if _, err := unix.InotifyAddWatch(fd, c.file("memory.events"), unix.IN_MODIFY); err != nil {
		unix.Close(fd)
		return &fs.PathError{Op: "inotify_add_watch", Path: c.file("memory.events"), Err: err}
	}
	if _, err := unix.InotifyAddWatch(fd, filepath.Dir(c.dir), unix.IN_DELETE|unix.IN_ONLYDIR); err != nil {
		unix.Close(fd)
		return &fs.PathError{Op: "inotify_add_watch", Path: filepath.Dir(c.dir), Err: err}
	}
	in := os.NewFile(uintptr(fd), "inotify") // non-blocking: read through the poller
	go func() {
		defer close(ch)
		defer in.Close()
		stop := context.AfterFunc(ctx, func() { _ = in.Close() })
		defer stop()
		buf := make([]byte, 4096)
		for {
			if _, err := in.Read(buf); err != nil {
				return
			}
			if ctx.Err() != nil || !c.exists() {
				return
			}
			if !sendOOMKills(ctx, ch, &base, c.oomKills, false) {
				return
			}
		}
	}()
	return nil
}

func (c *v2) openDir() (*os.File, error) {
	fd, err := open(c.dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(fd), c.dir), nil
}
