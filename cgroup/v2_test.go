package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The v2 code is tested here without a v2 host: its parsing against files
// in the kernel's formats, the subtree_control logic against a directory
// tree that imitates the hierarchy, and, as root on a v1 host, the rest
// against a cgroup2 file system mounted for the test (it has the
// controllers v1 does not use, often none, but the core files: procs,
// freeze, kill, cpu.stat). The shared suite in cgroup_test.go covers a
// real v2 host.

func TestDetectVersion(t *testing.T) {
	if got := detectVersion(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Errorf("detectVersion(missing) = %v, want none", got)
	}
	if got := detectVersion(t.TempDir()); got != V1 {
		t.Errorf("detectVersion(a plain directory) = %v, want v1", got)
	}
	// What this host has: cgroup2 mounts are v2, the others v1.
	all, _ := hostMounts(t)
	for _, m := range all {
		var st unix.Statfs_t
		if unix.Statfs(m, &st) != nil {
			continue
		}
		want := V1
		if st.Type == unix.CGROUP2_SUPER_MAGIC {
			want = V2
		}
		if got := detectVersion(m); got != want {
			t.Errorf("detectVersion(%s) = %v, want %v", m, got, want)
		}
	}
	if HostVersion() != detectVersion("/sys/fs/cgroup") {
		t.Errorf("HostVersion() = %v, detectVersion = %v", HostVersion(), detectVersion("/sys/fs/cgroup"))
	}
}

func TestParseKeyed(t *testing.T) {
	in := "usage_usec 120\nuser_usec 100\nsystem_usec 20\ncore_sched.force_idle_usec 0\nnr_periods 7\nbad x\n\nnr_throttled 18446744073709551615\n"
	got := parseKeyed([]byte(in), "nr_periods", "usage_usec", "absent", "bad", "nr_throttled", "usage")
	want := []uint64{7, 120, 0, 0, 1<<64 - 1, 0}
	if !slices.Equal(got, want) {
		t.Errorf("parseKeyed = %v, want %v", got, want)
	}
}

// writeFiles creates the files in dir with the contents given.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, s := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestV2Stats(t *testing.T) {
	dir := t.TempDir()
	// The kernel's formats (Linux 6.x), trimmed.
	writeFiles(t, dir, map[string]string{
		"cpu.stat": "usage_usec 5000123\nuser_usec 4000100\nsystem_usec 1000023\n" +
			"core_sched.force_idle_usec 0\nnr_periods 420\nnr_throttled 17\nthrottled_usec 250000\nnr_bursts 0\nburst_usec 0\n",
		"memory.current":      "104857600\n",
		"memory.peak":         "209715200\n",
		"memory.max":          "268435456\n",
		"memory.swap.current": "4096\n",
		"memory.stat": "anon_thp 0\nfile_mapped 999\nanon 73400320\nfile 31457280\nkernel 1234\n" +
			"kernel_stack 65536\nshmem 0\nfile_dirty 8192\nfile_writeback 0\ninactive_anon 0\n",
		"memory.events": "low 0\nhigh 0\nmax 40\noom 3\noom_kill 2\noom_group_kill 0\n",
		"pids.current":  "12\n",
		"pids.max":      "100\n",
	})
	s, err := v2Stats(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := &Stats{}
	want.CPU.UsageNs, want.CPU.UserNs, want.CPU.SystemNs = 5000123000, 4000100000, 1000023000
	want.CPU.Periods, want.CPU.ThrottledPeriods, want.CPU.ThrottledNs = 420, 17, 250000000
	want.Memory.Usage, want.Memory.MaxUsage, want.Memory.Limit = 100<<20, 200<<20, 256<<20
	want.Memory.Cache, want.Memory.RSS, want.Memory.Swap = 30<<20, 70<<20, 4096
	want.Memory.OOMEvents, want.Memory.OOMKills = 3, 2
	want.Pids.Current, want.Pids.Limit = 12, 100
	if !reflect.DeepEqual(s, want) {
		t.Errorf("v2Stats =\n%+v, want\n%+v", s, want)
	}

	// Unlimited reads as 0; memory.peak (before 5.19) and the files of
	// controllers not enabled may be absent.
	writeFiles(t, dir, map[string]string{"memory.max": "max\n", "pids.max": "max\n"})
	for _, f := range []string{"memory.peak", "memory.swap.current", "memory.events"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	if s, err = v2Stats(dir); err != nil {
		t.Fatal(err)
	}
	want.Memory.MaxUsage, want.Memory.Limit, want.Memory.Swap, want.Pids.Limit = 0, 0, 0, 0
	want.Memory.OOMEvents, want.Memory.OOMKills = 0, 0
	if !reflect.DeepEqual(s, want) {
		t.Errorf("v2Stats with unlimited and absent files =\n%+v, want\n%+v", s, want)
	}

	// Only the core cpu.stat: no controller enabled.
	empty := t.TempDir()
	writeFiles(t, empty, map[string]string{"cpu.stat": "usage_usec 7\nuser_usec 5\nsystem_usec 2\n"})
	if s, err = v2Stats(empty); err != nil {
		t.Fatal(err)
	}
	want = &Stats{}
	want.CPU.UsageNs, want.CPU.UserNs, want.CPU.SystemNs = 7000, 5000, 2000
	if !reflect.DeepEqual(s, want) {
		t.Errorf("v2Stats with cpu.stat only =\n%+v, want\n%+v", s, want)
	}

	writeFiles(t, empty, map[string]string{"pids.current": "many\n"})
	if _, err := v2Stats(empty); err == nil {
		t.Error("v2Stats with an unparsable pids.current: no error")
	}
}

func TestV2HierAt(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"cgroup.controllers": "cpuset cpu io memory hugetlb pids rdma misc\n"})
	h, err := v2HierAt(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"cpu", "cpuset", "memory", "pids", "io"}; h.mount != dir || !slices.Equal(h.controllers, want) {
		t.Errorf("v2HierAt = %+v, want controllers %v", h, want)
	}
	writeFiles(t, dir, map[string]string{"cgroup.controllers": "memory pids\n"})
	if h, err = v2HierAt(dir); err != nil || !slices.Equal(h.controllers, []string{"memory", "pids"}) {
		t.Errorf("v2HierAt = %+v, %v; want memory and pids", h, err)
	}
	if _, err := v2HierAt(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("v2HierAt(missing) error = %v", err)
	}
}

// fakeV2 imitates a v2 hierarchy in a directory tree: each cgroup
// directory has cgroup.controllers (what its parent enabled) and
// cgroup.subtree_control, and write acts on subtree_control as the kernel
// does.
type fakeV2 struct {
	t      *testing.T
	root   string
	busy   map[string]bool // cgroups that hold processes
	denied map[string]bool // cgroups whose subtree_control cannot be written
	writes []string        // "dir: value", dir relative to root
}

func newFakeV2(t *testing.T, controllers string) *fakeV2 {
	f := &fakeV2{t: t, root: t.TempDir(), busy: map[string]bool{}, denied: map[string]bool{}}
	writeFiles(t, f.root, map[string]string{"cgroup.controllers": controllers, "cgroup.subtree_control": ""})
	return f
}

func (f *fakeV2) fields(dir, name string) []string {
	b, err := os.ReadFile(filepath.Join(f.root, dir, name))
	if err != nil {
		f.t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// mkdir creates the cgroup rel (and its parents), whose cgroup.controllers
// is its parent's subtree_control.
func (f *fakeV2) mkdir(rel string) {
	parent := filepath.Dir(rel)
	if parent != "." && parent != "/" {
		if _, err := os.Stat(filepath.Join(f.root, parent)); err != nil {
			f.mkdir(parent)
		}
	}
	if err := os.Mkdir(filepath.Join(f.root, rel), 0o755); err != nil {
		f.t.Fatal(err)
	}
	writeFiles(f.t, filepath.Join(f.root, rel), map[string]string{
		"cgroup.controllers":     strings.Join(f.fields(parent, "cgroup.subtree_control"), " "),
		"cgroup.subtree_control": "",
	})
}

// set sets the subtree_control of the cgroup rel, and its children's
// cgroup.controllers.
func (f *fakeV2) set(rel string, ctrl []string) {
	s := strings.Join(ctrl, " ")
	writeFiles(f.t, filepath.Join(f.root, rel), map[string]string{"cgroup.subtree_control": s})
	ents, _ := os.ReadDir(filepath.Join(f.root, rel))
	for _, e := range ents {
		if e.IsDir() {
			writeFiles(f.t, filepath.Join(f.root, rel, e.Name()), map[string]string{"cgroup.controllers": s})
		}
	}
}

func (f *fakeV2) write(path, s string) error {
	fail := func(errno unix.Errno) error {
		return &fs.PathError{Op: "write " + s + " to", Path: path, Err: errno}
	}
	dir, err := filepath.Rel(f.root, filepath.Dir(path))
	if err != nil || filepath.Base(path) != "cgroup.subtree_control" {
		f.t.Fatalf("write %q to %s, outside the subtree_control files of %s", s, path, f.root)
	}
	f.writes = append(f.writes, dir+": "+s)
	if f.denied[dir] {
		return fail(unix.EPERM)
	}
	avail, have := f.fields(dir, "cgroup.controllers"), f.fields(dir, "cgroup.subtree_control")
	// All or nothing, as the kernel.
	for _, tok := range strings.Fields(s) {
		if !strings.HasPrefix(tok, "+") {
			f.t.Fatalf("write %q to %s: only enabling is expected", s, path)
		}
		if !slices.Contains(avail, tok[1:]) {
			return fail(unix.ENOENT)
		}
		if !slices.Contains(have, tok[1:]) {
			have = append(have, tok[1:])
		}
	}
	if dir != "." && f.busy[dir] {
		return fail(unix.EBUSY)
	}
	f.set(dir, have)
	return nil
}

// enable runs enableControllers for the cgroup rel and returns its error
// and the writes it made.
func (f *fakeV2) enable(rel string, want ...string) ([]string, error) {
	f.writes = nil
	err := enableControllers(f.root, filepath.Join(f.root, rel), want, f.write)
	return f.writes, err
}

func TestEnableControllers(t *testing.T) {
	all := []string{"cpu", "cpuset", "memory", "pids", "io"}
	const allOn = "+cpu +cpuset +memory +pids +io"

	t.Run("Fresh", func(t *testing.T) {
		f := newFakeV2(t, "cpuset cpu io memory hugetlb pids rdma misc")
		f.mkdir("berth/a/c")
		w, err := f.enable("berth/a/c", all...)
		if want := []string{".: " + allOn, "berth: " + allOn, "berth/a: " + allOn}; err != nil || !slices.Equal(w, want) {
			t.Errorf("writes %q, error %v; want %q", w, err, want)
		}
		for _, d := range []string{".", "berth", "berth/a"} {
			if got := f.fields(d, "cgroup.subtree_control"); !slices.Equal(got, all) {
				t.Errorf("%s: subtree_control %v, want %v", d, got, all)
			}
		}
		if got := f.fields("berth/a/c", "cgroup.subtree_control"); len(got) != 0 {
			t.Errorf("the cgroup's own subtree_control = %v, want empty", got)
		}
		// The parent has them all now: nothing to write.
		f.mkdir("berth/a/d")
		if w, err := f.enable("berth/a/d", all...); err != nil || len(w) != 0 {
			t.Errorf("second cgroup: writes %q, error %v; want none", w, err)
		}
		// Directly below the root.
		f.mkdir("top")
		if w, err := f.enable("top", all...); err != nil || len(w) != 0 {
			t.Errorf("cgroup below the root: writes %q, error %v; want none", w, err)
		}
	})

	t.Run("Partial", func(t *testing.T) {
		f := newFakeV2(t, "cpuset cpu io memory pids")
		f.mkdir("berth/a")
		f.set(".", []string{"memory", "cpu", "pids"})
		f.set("berth", []string{"cpu"})
		f.mkdir("berth/a/c")
		w, err := f.enable("berth/a/c", all...)
		want := []string{".: +cpuset +io", "berth: +cpuset +memory +pids +io", "berth/a: " + allOn}
		if err != nil || !slices.Equal(w, want) {
			t.Errorf("writes %q, error %v; want %q", w, err, want)
		}
		if got := f.fields("berth/a/c", "cgroup.controllers"); !slices.Equal(got, all) {
			t.Errorf("the cgroup's controllers = %v, want %v", got, all)
		}
	})

	t.Run("NoneWanted", func(t *testing.T) {
		f := newFakeV2(t, "")
		f.mkdir("berth/c")
		if w, err := f.enable("berth/c"); err != nil || len(w) != 0 {
			t.Errorf("writes %q, error %v; want none", w, err)
		}
	})

	t.Run("Unavailable", func(t *testing.T) {
		// A controller the root does not offer fails the cgroup
		// (v2HierAt keeps it out of what is wanted).
		f := newFakeV2(t, "cpu memory")
		f.mkdir("berth/c")
		w, err := f.enable("berth/c", "cpu", "memory", "pids")
		if !errors.Is(err, unix.ENOENT) || len(w) != 2 {
			t.Errorf("writes %q, error %v; want two writes and ENOENT", w, err)
		}
	})

	t.Run("ParentBusy", func(t *testing.T) {
		f := newFakeV2(t, "cpu memory pids")
		f.mkdir("berth/c")
		f.busy["berth"] = true
		w, err := f.enable("berth/c", "cpu", "memory", "pids")
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "holds processes") {
			t.Errorf("error %v; want EBUSY explained", err)
		}
		if want := []string{".: +cpu +memory +pids", "berth: +cpu +memory +pids"}; !slices.Equal(w, want) {
			t.Errorf("writes %q, want %q", w, want)
		}
	})

	t.Run("Delegated", func(t *testing.T) {
		// Rootless on a delegated subtree: the ancestors above it
		// cannot be written, but need not be when they have the
		// controllers enabled already.
		f := newFakeV2(t, "cpuset cpu io memory pids")
		f.mkdir("user/deleg/c")
		f.set(".", []string{"cpu", "memory", "pids", "io"})
		f.set("user", []string{"cpu", "memory", "pids", "io"})
		f.denied["."], f.denied["user"] = true, true
		want := []string{"cpu", "memory", "pids", "io"}
		w, err := f.enable("user/deleg/c", want...)
		if err != nil || !slices.Equal(w, []string{"user/deleg: +cpu +memory +pids +io"}) {
			t.Errorf("writes %q, error %v; want only user/deleg's", w, err)
		}
		// One they lack fails at the last level, which cannot have it.
		f.mkdir("user/deleg/d")
		w, err = f.enable("user/deleg/d", "cpuset")
		if !errors.Is(err, unix.ENOENT) || !strings.Contains(err.Error(), filepath.Join(f.root, "user/deleg/cgroup.subtree_control")) {
			t.Errorf("error %v; want ENOENT from user/deleg", err)
		}
		if want := []string{".: +cpuset", "user: +cpuset", "user/deleg: +cpuset"}; !slices.Equal(w, want) {
			t.Errorf("writes %q, want %q", w, want)
		}
	})

	t.Run("OutsideMount", func(t *testing.T) {
		f := newFakeV2(t, "cpu")
		other := t.TempDir()
		writeFiles(t, other, map[string]string{"cgroup.subtree_control": ""})
		err := enableControllers(f.root, filepath.Join(other, "c"), []string{"cpu"}, f.write)
		if err == nil || len(f.writes) != 0 {
			t.Errorf("writes %q, error %v; want an error and no writes", f.writes, err)
		}
	})

	t.Run("WriteFile", func(t *testing.T) {
		// The real writer on plain files, which start empty here.
		f := newFakeV2(t, "cpu memory")
		f.mkdir("berth/c")
		if err := enableControllers(f.root, filepath.Join(f.root, "berth/c"), []string{"cpu", "memory"}, writeFile); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{".", "berth"} {
			if b, _ := os.ReadFile(filepath.Join(f.root, d, "cgroup.subtree_control")); string(b) != "+cpu +memory" {
				t.Errorf("%s: wrote %q, want %q", d, b, "+cpu +memory")
			}
		}
	})
}

// mountV2 mounts a cgroup2 file system for the test and returns its
// hierarchy, with the controllers its root offers (those no v1 hierarchy
// uses: often hugetlb, or none). It skips unless it runs as root on a v1
// host: on a v2 host the shared suite tests the real hierarchy.
func mountV2(t *testing.T) *v2Hier {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting cgroup2 needs root")
	}
	if HostVersion() != V1 {
		t.Skipf("for v1 hosts (this one uses %v, tested by the shared suite)", HostVersion())
	}
	dir := t.TempDir()
	if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
		t.Skipf("mount cgroup2: %v", err)
	}
	rootCtl := filepath.Join(dir, "cgroup.subtree_control")
	before, err := os.ReadFile(rootCtl)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The hierarchy outlives the mount: disable in the root what
		// the test enabled.
		after, _ := os.ReadFile(rootCtl)
		var off []string
		for _, c := range strings.Fields(string(after)) {
			if !slices.Contains(strings.Fields(string(before)), c) {
				off = append(off, "-"+c)
			}
		}
		if len(off) > 0 {
			if err := writeFile(rootCtl, strings.Join(off, " ")); err != nil {
				t.Errorf("restore the root's subtree_control: %v", err)
			}
		}
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	if got := detectVersion(dir); got != V2 {
		t.Errorf("detectVersion(cgroup2 mount) = %v, want v2", got)
	}
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		t.Fatal(err)
	}
	return &v2Hier{mount: dir, controllers: strings.Fields(string(b))}
}

// fieldsOf returns the words of the file at path.
func fieldsOf(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// TestV2Kernel drives the v2 code against the kernel's cgroup2.
func TestV2Kernel(t *testing.T) {
	h := mountV2(t)
	top := fmt.Sprintf("/berth-v2test-%d", os.Getpid())
	t.Cleanup(func() {
		if err := rmdirTree(context.Background(), h.mount+top); err != nil {
			t.Errorf("remove %s: %v", top, err)
		}
	})
	t.Logf("controllers offered: %v", h.controllers)
	newCg := func(p string, r *Resources) (*Cgroup, error) { return newCgroup(p, V2, newV2(h, p), r) }
	start := func(name string, arg ...string) *exec.Cmd {
		cmd := exec.Command(name, arg...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	v2Path := func(pid int) string {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Fatal(err)
		}
		for line := range strings.SplitSeq(string(b), "\n") {
			if p, ok := strings.CutPrefix(line, "0::"); ok {
				return p
			}
		}
		return ""
	}

	p := top + "/a/b"
	c, err := newCg(p, &Resources{})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"", top, top + "/a"} {
		got := fieldsOf(t, filepath.Join(h.mount, d, "cgroup.subtree_control"))
		for _, ctl := range h.controllers {
			if !slices.Contains(got, ctl) {
				t.Errorf("%s: subtree_control %v lacks %s", d, got, ctl)
			}
		}
	}
	if got := fieldsOf(t, filepath.Join(h.mount, p, "cgroup.controllers")); !slices.Equal(got, h.controllers) {
		t.Errorf("the cgroup's controllers = %v, want %v", got, h.controllers)
	}
	if _, err := newCg(top+"/a/b2", &Resources{}); err != nil {
		t.Errorf("sibling: %v", err)
	}

	// Limits of controllers the mount does not offer.
	if err := c.Update(&Resources{MemoryLimit: 64 << 20}); !errors.Is(err, ErrNotSupported) {
		t.Errorf("Update(MemoryLimit) = %v, want ErrNotSupported", err)
	}
	if err := c.Update(&Resources{}); err != nil {
		t.Errorf("Update(none) = %v", err)
	}
	if _, err := c.OOMKills(); !errors.Is(err, ErrNotSupported) {
		t.Errorf("OOMKills = %v, want ErrNotSupported", err)
	}
	if _, err := c.WatchOOM(context.Background()); !errors.Is(err, ErrNotSupported) {
		t.Errorf("WatchOOM = %v, want ErrNotSupported", err)
	}

	// Add, and a child started inside through OpenDir.
	sleeper := start("sleep", "600")
	if err := c.Add(sleeper.Process.Pid); err != nil {
		t.Fatal(err)
	}
	dir, err := c.OpenDir()
	if err != nil {
		t.Fatal(err)
	}
	busy := exec.Command("sh", "-c", "while :; do :; done")
	busy.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(dir.Fd())}
	err = busy.Start()
	dir.Close()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = busy.Process.Kill(); _ = busy.Wait() })
	for _, pid := range []int{sleeper.Process.Pid, busy.Process.Pid} {
		if got := v2Path(pid); got != p {
			t.Errorf("pid %d is in %q, want %q", pid, got, p)
		}
	}
	procs, err := c.Processes()
	if want := []int{sleeper.Process.Pid, busy.Process.Pid}; err != nil || !slices.Equal(procs, slices.Sorted(slices.Values(want))) {
		t.Errorf("Processes() = %v, %v; want %v", procs, err, want)
	}

	var s *Stats
	if !waitFor(5*time.Second, func() bool {
		s, err = c.Stats()
		return err != nil || s.CPU.UsageNs >= 20e6 && s.CPU.UserNs > 0
	}) || err != nil {
		t.Errorf("Stats() = %+v, %v; want 20 ms of CPU", s, err)
	}
	if s != nil && s.CPU.UsageNs < s.CPU.UserNs {
		t.Errorf("Stats: usage %d < user %d", s.CPU.UsageNs, s.CPU.UserNs)
	}

	if err := c.Freeze(context.Background()); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Frozen(); !f || err != nil {
		t.Errorf("Frozen() = %v, %v after Freeze", f, err)
	}
	s1, _ := c.Stats()
	time.Sleep(50 * time.Millisecond)
	if s2, _ := c.Stats(); s1 == nil || s2 == nil || s2.CPU.UsageNs-s1.CPU.UsageNs > 5e6 {
		t.Errorf("CPU use went on while frozen: %+v then %+v", s1, s2)
	}
	if err := c.Thaw(); err != nil {
		t.Fatal(err)
	}
	if f, err := c.Frozen(); f || err != nil {
		t.Errorf("Frozen() = %v, %v after Thaw", f, err)
	}

	// A cgroup below one that holds processes cannot have controllers.
	if len(h.controllers) > 0 {
		q := top + "/busy"
		if _, err := newCg(q, &Resources{}); err != nil {
			t.Fatal(err)
		}
		other := start("sleep", "600")
		if err := newV2(h, q).add(other.Process.Pid); err != nil {
			t.Fatal(err)
		}
		_, err := newCg(q+"/child", &Resources{})
		if !errors.Is(err, unix.EBUSY) || !strings.Contains(err.Error(), "holds processes") {
			t.Errorf("New below a cgroup with processes: %v, want EBUSY explained", err)
		}
		if exists(h.mount + q + "/child") {
			t.Error("the failed New left its directory")
		}
		if err := newV2(h, q).kill(context.Background()); err != nil {
			t.Error(err)
		}
	}

	if err := c.Kill(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []*exec.Cmd{sleeper, busy} {
		if err := cmd.Wait(); err == nil || cmd.ProcessState.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("%v: %v, want killed", cmd.Args, err)
		}
	}
	if procs, err := c.Processes(); err != nil || len(procs) != 0 {
		t.Errorf("Processes() after Kill = %v, %v", procs, err)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if exists(h.mount + p) {
		t.Error("Delete left the directory")
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Errorf("second Delete = %v", err)
	}
	if _, err := c.Stats(); !errors.Is(err, ErrNotFound) {
		t.Errorf("Stats after Delete = %v, want ErrNotFound", err)
	}
}
