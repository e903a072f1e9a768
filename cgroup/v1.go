package cgroup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/berthlabs/berth/internal/mountinfo"
)

// v1Controllers are the v1 controllers berth uses. Others (net_cls,
// perf_event, hugetlb, rdma, the name=systemd hierarchy) are left alone.
var v1Controllers = []string{"cpuset", "cpu", "cpuacct", "memory", "pids", "blkio", "freezer", "devices"}

// v1Hier is the v1 layout of this host: where each controller is mounted.
type v1Hier struct {
	ctrl   map[string]string // controller -> mount point
	mounts []string          // distinct mount points, cpuset's first
}

// v1Hierarchy reads the mount table (mountinfo.Path) once. Controllers that are not
// mounted are skipped; co-mounted ones (cpu,cpuacct) share a mount point.
var v1Hierarchy = sync.OnceValues(func() (*v1Hier, error) {
	f, err := os.Open(mountinfo.Path)
	if err != nil {
		return nil, fmt.Errorf("cgroup: %w", err)
	}
	defer f.Close()
	h, err := parseV1Mounts(f)
	if err != nil {
		return nil, fmt.Errorf("cgroup: read %s: %w", mountinfo.Path, err)
	}
	if len(h.mounts) == 0 {
		return nil, fmt.Errorf("cgroup: no cgroup v1 controller is mounted: %w", ErrNotSupported)
	}
	return h, nil
})

func parseV1Mounts(f io.Reader) (*v1Hier, error) {
	h := &v1Hier{ctrl: map[string]string{}}
	root := map[string]string{} // controller -> mount root of the chosen mount
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 31 30 0:28 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		a, b := strings.Fields(pre), strings.Fields(post)
		if len(a) < 5 || len(b) < 3 || b[0] != "cgroup" {
			continue
		}
		mroot, point := mountinfo.Unescape(a[3]), mountinfo.Unescape(a[4])
		for opt := range strings.SplitSeq(b[2], ",") {
			if !isV1Controller(opt) {
				continue
			}
			// With several mounts of one hierarchy, prefer the one
			// of its root.
			if _, ok := h.ctrl[opt]; ok && (root[opt] == "/" || mroot != "/") {
				continue
			}
			h.ctrl[opt], root[opt] = point, mroot
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range v1Controllers {
		if p, ok := h.ctrl[c]; ok && !seen[p] {
			seen[p] = true
			h.mounts = append(h.mounts, p)
		}
	}
	return h, nil
}

func isV1Controller(s string) bool { return slices.Contains(v1Controllers, s) }

// v1 is a cgroup on a v1 (or hybrid) host.
type v1 struct {
	h    *v1Hier
	path string
}

func newV1(h *v1Hier, path string) *v1 { return &v1{h: h, path: path} }

// dir returns the cgroup's directory in the hierarchy of controller c, or
// "" when c is not mounted.
func (c *v1) dir(ctrl string) string {
	m, ok := c.h.ctrl[ctrl]
	if !ok {
		return ""
	}
	return m + c.path
}

// file returns the path of a controller file, or an error matching
// ErrNotSupported when the controller is not mounted.
func (c *v1) file(ctrl, name string) (string, error) {
	d := c.dir(ctrl)
	if d == "" {
		return "", fmt.Errorf("controller %s is not mounted: %w", ctrl, ErrNotSupported)
	}
	return filepath.Join(d, name), nil
}

func (c *v1) exists() bool {
	for _, m := range c.h.mounts {
		if exists(m + c.path) {
			return true
		}
	}
	return false
}

func (c *v1) create() (bool, func(), error) {
	var created []string
	undo := func() { removeDirs(created) }
	existed := false
	for _, m := range c.h.mounts {
		dirs, err := mkdirAll(m + c.path)
		if err != nil {
			undo()
			return false, nil, err
		}
		if len(dirs) == 0 {
			existed = true
		}
		created = append(created, dirs...)
		if m == c.h.ctrl["cpuset"] {
			// A new cpuset cgroup has no CPUs and no memory nodes:
			// nothing could run in it. Give it its parent's.
			var err error
			for _, d := range dirs {
				if err = cpusetInherit(d, m, true); err != nil {
					break
				}
			}
			if len(dirs) == 0 {
				err = cpusetInherit(m+c.path, m, false)
			}
			if err != nil {
				undo()
				return false, nil, err
			}
		}
	}
	return existed, undo, nil
}

// cpusetInherit copies the parent's cpus and mems into the cpuset cgroup
// dir (below the mount point mount) where they are empty, fixing empty
// ancestors first. A fresh dir is known to be empty.
func cpusetInherit(dir, mount string, fresh bool) error {
	parent := filepath.Dir(dir)
	for _, name := range []string{"cpuset.cpus", "cpuset.mems"} {
		if !fresh {
			cur, err := readString(filepath.Join(dir, name))
			if err != nil || cur != "" {
				return err
			}
		}
		v, err := readString(filepath.Join(parent, name))
		if err != nil {
			return err
		}
		if v == "" && len(parent) > len(mount) {
			if err := cpusetInherit(parent, mount, false); err != nil {
				return err
			}
			if v, err = readString(filepath.Join(parent, name)); err != nil {
				return err
			}
		}
		if err := writeFile(filepath.Join(dir, name), v); err != nil {
			return err
		}
	}
	return nil
}

// set writes value to a controller file. With the controller not mounted,
// or the file missing (a kernel built without the feature), it fails only
// if must is set (a limit was asked for), with an error matching
// ErrNotSupported.
func (c *v1) set(ctrl, name, value string, must bool) error {
	p, err := c.file(ctrl, name)
	if err == nil {
		err = writeFile(p, value)
		if errors.Is(err, fs.ErrNotExist) && exists(c.dir(ctrl)) {
			err = fmt.Errorf("%s: the kernel lacks it: %w", name, ErrNotSupported)
		}
	}
	if err != nil && (must || !errors.Is(err, ErrNotSupported)) {
		return err
	}
	return nil
}

func (c *v1) apply(r, prev *Resources) error {
	// changed reports whether a setting must be written: always when the
	// previous state is unknown, else when it differs.
	changed := func(differs bool) bool { return prev == nil || differs }
	old := prev
	if old == nil {
		old = &Resources{}
	}

	if s := r.shares(); changed(s != old.shares()) {
		v := s
		if v == 0 {
			v = 1024
		}
		if err := c.set("cpu", "cpu.shares", strconv.FormatUint(v, 10), s != 0); err != nil {
			return err
		}
	}
	if changed(r.CPUQuota != old.CPUQuota || r.CPUPeriod != old.CPUPeriod) {
		quota := "-1"
		if r.CPUQuota != 0 {
			quota = strconv.FormatInt(r.CPUQuota, 10)
		}
		must := r.CPUQuota != 0 || r.CPUPeriod != 0
		if changed(r.CPUPeriod != old.CPUPeriod) {
			// The quota is checked against the period in force:
			// lift it before changing the period.
			period := r.CPUPeriod
			if period == 0 {
				period = DefaultPeriod
			}
			if prev == nil || old.CPUQuota != 0 {
				if err := c.set("cpu", "cpu.cfs_quota_us", "-1", must); err != nil {
					return err
				}
			}
			if err := c.set("cpu", "cpu.cfs_period_us", strconv.FormatUint(period, 10), must); err != nil {
				return err
			}
		}
		if err := c.set("cpu", "cpu.cfs_quota_us", quota, must); err != nil {
			return err
		}
	}
	for _, s := range []struct{ name, val, old string }{
		{"cpuset.cpus", r.CPUs, old.CPUs},
		{"cpuset.mems", r.Mems, old.Mems},
	} {
		if !changed(s.val != s.old) {
			continue
		}
		v := s.val
		if v == "" {
			d := c.dir("cpuset")
			if d == "" {
				continue
			}
			var err error
			if v, err = readString(filepath.Join(filepath.Dir(d), s.name)); err != nil {
				return err
			}
		}
		if err := c.set("cpuset", s.name, v, s.val != ""); err != nil {
			return err
		}
	}
	if changed(r.MemoryLimit != old.MemoryLimit || r.MemorySwap != old.MemorySwap) {
		if err := c.setMemory(r, prev); err != nil {
			return err
		}
	}
	if changed(r.MemoryReservation != old.MemoryReservation) {
		v := "-1"
		if r.MemoryReservation != 0 {
			v = strconv.FormatInt(r.MemoryReservation, 10)
		}
		if err := c.set("memory", "memory.soft_limit_in_bytes", v, r.MemoryReservation != 0); err != nil {
			return err
		}
	}
	if changed(r.PidsLimit != old.PidsLimit) {
		v := "max"
		if r.PidsLimit != 0 {
			v = strconv.FormatInt(r.PidsLimit, 10)
		}
		if err := c.set("pids", "pids.max", v, r.PidsLimit != 0); err != nil {
			return err
		}
	}
	if changed(r.IOWeight != old.IOWeight) {
		if err := c.setIOWeight(r.IOWeight); err != nil {
			return err
		}
	}
	if changed(!devicesEqual(r.Devices, old.Devices)) {
		if err := c.setDevices(r.Devices); err != nil {
			return err
		}
	}
	return nil
}

// setDevices writes device rules: "a" to devices.deny, which removes
// every exception and denies by default, then each rule to devices.allow
// or devices.deny. nil rules write "a" to devices.allow instead (allow
// every device), unless devices.list says so already: the kernel refuses
// "a" in a cgroup with children.
func (c *v1) setDevices(rules []DeviceRule) error {
	d := c.dir("devices")
	if d == "" {
		if rules != nil {
			return fmt.Errorf("device rules: controller devices is not mounted: %w", ErrNotSupported)
		}
		return nil
	}
	if rules == nil {
		cur, err := readString(filepath.Join(d, "devices.list"))
		if err != nil {
			return err
		}
		if l, err := parseDevicesList(cur); err == nil && l == nil {
			return nil
		}
		return writeFile(filepath.Join(d, "devices.allow"), "a")
	}
	if err := writeFile(filepath.Join(d, "devices.deny"), "a"); err != nil {
		return err
	}
	for _, r := range rules {
		file := "devices.deny"
		if r.Allow {
			file = "devices.allow"
		}
		if err := writeFile(filepath.Join(d, file), r.line()); err != nil {
			return fmt.Errorf("device rule %s: %w", r, err)
		}
	}
	return nil
}

// setMemory writes the memory and memory+swap limits in an order the
// kernel accepts: it refuses, at every moment, a memory limit above the
// memory+swap limit.
func (c *v1) setMemory(r, prev *Resources) error {
	must := r.MemoryLimit != 0
	limit := "-1"
	if r.MemoryLimit != 0 {
		limit = strconv.FormatInt(r.MemoryLimit, 10)
	}
	d := c.dir("memory")
	if d == "" {
		if must || r.MemorySwap > 0 {
			return fmt.Errorf("controller memory is not mounted: %w", ErrNotSupported)
		}
		return nil
	}
	sw := int64(-1)
	if r.MemorySwap > 0 {
		sw = r.MemorySwap
	}
	if prev != nil && prev.MemorySwap <= 0 && r.MemorySwap <= 0 {
		// The memory+swap limit stays unlimited: the memory limit
		// alone changes.
		return writeFile(filepath.Join(d, "memory.limit_in_bytes"), limit)
	}
	swFile := filepath.Join(d, "memory.memsw.limit_in_bytes")
	cur, err := readInt(swFile)
	if errors.Is(err, fs.ErrNotExist) {
		if r.MemorySwap > 0 {
			return fmt.Errorf("swap limit: the kernel does not account swap (boot with swapaccount=1): %w", ErrNotSupported)
		}
		return writeFile(filepath.Join(d, "memory.limit_in_bytes"), limit)
	}
	if err != nil {
		return err
	}
	swapFirst := sw == -1 || (cur != -1 && sw >= cur)
	steps := []struct{ file, val string }{
		{"memory.limit_in_bytes", limit},
		{"memory.memsw.limit_in_bytes", strconv.FormatInt(sw, 10)},
	}
	if swapFirst {
		steps[0], steps[1] = steps[1], steps[0]
	}
	for _, s := range steps {
		if err := writeFile(filepath.Join(d, s.file), s.val); err != nil {
			return err
		}
	}
	return nil
}

// setIOWeight writes the block IO weight, 0 meaning the default 100, to
// blkio.weight or, with only BFQ's file present, blkio.bfq.weight.
func (c *v1) setIOWeight(w uint16) error {
	d := c.dir("blkio")
	file := ""
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if d != "" && exists(filepath.Join(d, f)) {
			file = filepath.Join(d, f)
			break
		}
	}
	if file == "" {
		if w != 0 {
			return fmt.Errorf("io weight: no blkio.weight or blkio.bfq.weight (needs the blkio controller and the BFQ scheduler): %w", ErrNotSupported)
		}
		return nil
	}
	if w == 0 {
		w = 100
	}
	return writeFile(file, strconv.FormatUint(uint64(w), 10))
}

func (c *v1) read() (*Resources, error) {
	r := &Resources{}
	// get reads an integer setting; a controller that is not mounted
	// reads as def.
	get := func(ctrl, name string, def int64) (int64, error) {
		p, err := c.file(ctrl, name)
		if err != nil {
			return def, nil
		}
		n, err := readInt(p)
		if errors.Is(err, fs.ErrNotExist) && exists(c.dir(ctrl)) {
			return def, nil // file absent (no swap accounting, no BFQ)
		}
		return n, err
	}
	var err error
	var n int64
	if n, err = get("cpu", "cpu.shares", 1024); err != nil {
		return nil, err
	}
	if n != 1024 {
		r.CPUShares = uint64(n)
	}
	if n, err = get("cpu", "cpu.cfs_quota_us", -1); err != nil {
		return nil, err
	}
	r.CPUQuota = max(n, 0)
	if n, err = get("cpu", "cpu.cfs_period_us", DefaultPeriod); err != nil {
		return nil, err
	}
	if n != DefaultPeriod {
		r.CPUPeriod = uint64(n)
	}
	if d := c.dir("cpuset"); d != "" {
		for _, s := range []struct {
			name string
			dst  *string
		}{{"cpuset.cpus", &r.CPUs}, {"cpuset.mems", &r.Mems}} {
			v, err := readString(filepath.Join(d, s.name))
			if err != nil {
				return nil, err
			}
			p, err := readString(filepath.Join(filepath.Dir(d), s.name))
			if err != nil {
				return nil, err
			}
			if v != p {
				*s.dst = v
			}
		}
	}
	if n, err = get("memory", "memory.limit_in_bytes", -1); err != nil {
		return nil, err
	}
	r.MemoryLimit = limitValue(n)
	if n, err = get("memory", "memory.memsw.limit_in_bytes", -1); err != nil {
		return nil, err
	}
	if r.MemoryLimit != 0 {
		r.MemorySwap = limitValue(n) // unlimited reads as unset
	}
	if n, err = get("memory", "memory.soft_limit_in_bytes", -1); err != nil {
		return nil, err
	}
	r.MemoryReservation = limitValue(n)
	if n, err = get("pids", "pids.max", -1); err != nil {
		return nil, err
	}
	r.PidsLimit = limitValue(n)
	for _, f := range []string{"blkio.weight", "blkio.bfq.weight"} {
		if n, err = get("blkio", f, -1); err != nil {
			return nil, err
		}
		if n != -1 {
			if n != 100 {
				r.IOWeight = uint16(n)
			}
			break
		}
	}
	if d := c.dir("devices"); d != "" {
		s, err := readString(filepath.Join(d, "devices.list"))
		if err != nil {
			return nil, err
		}
		if r.Devices, err = parseDevicesList(s); err != nil {
			return nil, fmt.Errorf("%s/devices.list: %w", d, err)
		}
	}
	return r, nil
}

func (c *v1) add(pid int) error {
	for _, m := range c.h.mounts {
		if err := addProc(m+c.path, pid); err != nil {
			return err
		}
	}
	return nil
}

func (c *v1) procs() ([]int, error) {
	set := map[int]struct{}{}
	found := false
	for _, m := range c.h.mounts {
		err := readProcs(m+c.path, set)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		found = true
	}
	if !found {
		return nil, &fs.PathError{Op: "open", Path: c.path, Err: fs.ErrNotExist}
	}
	return sortedPids(set), nil
}

func (c *v1) setFrozen(frozen bool) error {
	v := "THAWED"
	if frozen {
		v = "FROZEN"
	}
	return c.set("freezer", "freezer.state", v, true)
}

func (c *v1) frozen() (bool, error) {
	p, err := c.file("freezer", "freezer.state")
	if err != nil {
		return false, err
	}
	s, err := readString(p)
	return s == "FROZEN", err
}

// kill freezes the cgroup so that nothing in it can fork, sends SIGKILL to
// every process, and thaws it so that they die.
func (c *v1) kill(ctx context.Context) error {
	frozen := false
	if c.dir("freezer") != "" {
		if err := c.setFrozen(true); err == nil {
			frozen = true
			// Wait a little for the freeze; kill regardless.
			_, _ = poll(ctx, freezeTimeout/5, c.frozen)
		}
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

func (c *v1) remove(ctx context.Context) error {
	var errs []error
	for _, m := range c.h.mounts {
		if err := rmdirTree(ctx, m+c.path); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// userHz is USER_HZ, the unit of cpuacct.stat, fixed at 100 on Linux.
const userHz = 100

func (c *v1) stats() (*Stats, error) {
	if !c.exists() {
		return nil, &fs.PathError{Op: "stat", Path: c.path, Err: fs.ErrNotExist}
	}
	s := &Stats{}
	// read returns a setting, 0 if its controller or file is absent.
	read := func(ctrl, name string) (uint64, error) {
		p, err := c.file(ctrl, name)
		if err != nil {
			return 0, nil
		}
		n, err := readInt(p)
		if errors.Is(err, fs.ErrNotExist) {
			return 0, nil
		}
		return uint64(limitValue(n)), err
	}
	keyed := func(ctrl, name string, keys ...string) ([]uint64, error) {
		p, err := c.file(ctrl, name)
		if err == nil {
			var v []uint64
			if v, err = readKeyed(p, keys...); err == nil {
				return v, nil
			}
		}
		if errors.Is(err, ErrNotSupported) || errors.Is(err, fs.ErrNotExist) {
			return make([]uint64, len(keys)), nil
		}
		return nil, err
	}
	var err error
	if s.CPU.UsageNs, err = read("cpuacct", "cpuacct.usage"); err != nil {
		return nil, err
	}
	if s.CPU.UserNs, err = read("cpuacct", "cpuacct.usage_user"); err != nil {
		return nil, err
	}
	if s.CPU.SystemNs, err = read("cpuacct", "cpuacct.usage_sys"); err != nil {
		return nil, err
	}
	if s.CPU.UserNs == 0 && s.CPU.SystemNs == 0 {
		// Kernels before 4.16 have only cpuacct.stat, in USER_HZ.
		v, err := keyed("cpuacct", "cpuacct.stat", "user", "system")
		if err != nil {
			return nil, err
		}
		s.CPU.UserNs, s.CPU.SystemNs = v[0]*(1e9/userHz), v[1]*(1e9/userHz)
	}
	v, err := keyed("cpu", "cpu.stat", "nr_periods", "nr_throttled", "throttled_time")
	if err != nil {
		return nil, err
	}
	s.CPU.Periods, s.CPU.ThrottledPeriods, s.CPU.ThrottledNs = v[0], v[1], v[2]

	if s.Memory.Usage, err = read("memory", "memory.usage_in_bytes"); err != nil {
		return nil, err
	}
	if s.Memory.MaxUsage, err = read("memory", "memory.max_usage_in_bytes"); err != nil {
		return nil, err
	}
	if s.Memory.Limit, err = read("memory", "memory.limit_in_bytes"); err != nil {
		return nil, err
	}
	memsw, err := read("memory", "memory.memsw.usage_in_bytes")
	if err != nil {
		return nil, err
	}
	if memsw > s.Memory.Usage {
		s.Memory.Swap = memsw - s.Memory.Usage
	}
	if v, err = keyed("memory", "memory.stat", "total_cache", "total_rss"); err != nil {
		return nil, err
	}
	s.Memory.Cache, s.Memory.RSS = v[0], v[1]
	if v, err = keyed("memory", "memory.oom_control", "oom_kill"); err != nil {
		return nil, err
	}
	s.Memory.OOMKills, s.Memory.OOMEvents = v[0], v[0]

	if s.Pids.Current, err = read("pids", "pids.current"); err != nil {
		return nil, err
	}
	if s.Pids.Limit, err = read("pids", "pids.max"); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *v1) oomKills() (uint64, error) {
	p, err := c.file("memory", "memory.oom_control")
	if err != nil {
		return 0, err
	}
	v, err := readKeyed(p, "oom_kill")
	if err != nil {
		return 0, err
	}
	return v[0], nil
}

// watchOOM registers an eventfd for memory.oom_control through
// cgroup.event_control. The kernel signals it when the cgroup runs out of
// memory (just before the OOM killer picks a victim) and when the cgroup is
// removed.
func (c *v1) watchOOM(ctx context.Context, ch chan<- struct{}) error {
	ctlPath, err := c.file("memory", "memory.oom_control")
	if err != nil {
		return err
	}
	base, err := c.oomKills()
	if err != nil {
		return err
	}
	ctl, err := open(ctlPath, unix.O_RDONLY)
	if err != nil {
		return err
	}
	efd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(ctl)
		return os.NewSyscallError("eventfd", err)
	}
	reg := fmt.Sprintf("%d %d", efd, ctl)
	if err := writeFile(filepath.Join(c.dir("memory"), "cgroup.event_control"), reg); err != nil {
		unix.Close(efd)
		unix.Close(ctl)
		return err
	}
	ev := os.NewFile(uintptr(efd), "eventfd") // non-blocking: read through the poller
	go func() {
		defer close(ch)
		defer unix.Close(ctl)
		defer ev.Close() // unregisters the event
		stop := context.AfterFunc(ctx, func() { _ = ev.Close() })
		defer stop()
		buf := make([]byte, 8)
		for {
			if _, err := ev.Read(buf); err != nil {
				return
			}
			if ctx.Err() != nil || !exists(c.dir("memory")) {
				return
			}
			if !sendOOMKills(ctx, ch, &base, c.oomKills, true) {
				return
			}
		}
	}()
	return nil
}

// openDir: CLONE_INTO_CGROUP exists only for v2.
func (c *v1) openDir() (*os.File, error) {
	return nil, fmt.Errorf("starting a process inside a cgroup needs cgroup v2: %w", ErrNotSupported)
}
