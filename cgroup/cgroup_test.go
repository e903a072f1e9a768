package cgroup

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestCgroup runs the shared suite against every cgroup version; the ones
// the host does not use skip.
func TestCgroup(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(v.String(), func(t *testing.T) { runSuite(t, v) })
	}
}

// skipUnless skips t unless it runs as root on a host using cgroup v.
func skipUnless(t *testing.T, v Version) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("managing cgroups needs root")
	}
	switch h := HostVersion(); {
	case h == v:
	case v == V2:
		t.Skipf("no cgroup v2 controllers on this host (it uses cgroup %v)", h)
	default:
		t.Skipf("no cgroup %v hierarchies on this host (it uses cgroup %v)", v, h)
	}
}

// runSuite is the contract of a Cgroup, checked against the real kernel.
func runSuite(t *testing.T, v Version) {
	skipUnless(t, v)

	t.Run("CreateLoadDelete", func(t *testing.T) {
		p := testPath(t)
		r := &Resources{CPUShares: 512, CPUQuota: 20000, CPUPeriod: 50000, MemoryLimit: 64 << 20,
			MemoryReservation: 32 << 20, PidsLimit: 64}
		if runtime.NumCPU() > 1 {
			r.CPUs = "0" // read back only when it differs from the parent's
		}
		c, err := New(p, r)
		if err != nil {
			t.Fatal(err)
		}
		if c.Path() != p || c.Version() != v {
			t.Errorf("Path, Version = %q, %v; want %q, %v", c.Path(), c.Version(), p, v)
		}
		if got := c.Resources(); !reflect.DeepEqual(got, r) {
			t.Errorf("Resources() = %+v, want %+v", got, r)
		}
		dirs := dirsOf(t, p)
		if len(dirs) == 0 {
			t.Fatalf("no directory for %s in any hierarchy", p)
		}
		if v == V1 {
			// Only the hierarchies of berth's controllers: not
			// name=systemd, not the hybrid unified mount.
			_, ctrl := hostMounts(t)
			for _, d := range dirs {
				ok := false
				for _, c := range v1Controllers {
					ok = ok || ctrl[c] != "" && d == ctrl[c]+p
				}
				if !ok {
					t.Errorf("created %s, outside the hierarchies berth uses", d)
				}
			}
		}
		l, err := Load(p)
		if err != nil {
			t.Fatal(err)
		}
		want := *r
		if v == V2 { // read back in v2 units
			want.CPUShares, want.CPUWeight = 0, SharesToWeight(r.CPUShares)
		}
		if got := l.Resources(); !reflect.DeepEqual(*got, want) {
			t.Errorf("Load(...).Resources() = %+v, want %+v", got, want)
		}
		if err := l.Delete(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := dirsOf(t, p); len(d) > 0 {
			t.Errorf("after Delete, left %v", d)
		}
		if err := c.Delete(context.Background()); err != nil {
			t.Errorf("second Delete: %v, want nil", err)
		}
		if _, err := Load(p); !errors.Is(err, ErrNotFound) {
			t.Errorf("Load after Delete: %v, want ErrNotFound", err)
		}
		if _, err := c.Stats(); !errors.Is(err, ErrNotFound) {
			t.Errorf("Stats after Delete: %v, want ErrNotFound", err)
		}
	})

	t.Run("ExistsAndReuse", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{PidsLimit: 10, MemoryLimit: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		s := sleeper(t)
		if err := c.Add(s.pid); err != nil {
			t.Fatal(err)
		}
		if _, err := New(p, nil); !errors.Is(err, ErrExists) {
			t.Fatalf("New over a cgroup in use: %v, want ErrExists", err)
		}
		if len(dirsOf(t, p)) == 0 {
			t.Fatal("failed New removed the cgroup in use")
		}
		if err := c.Kill(context.Background()); err != nil {
			t.Fatal(err)
		}
		// Empty now: a leftover, reused with the new limits, the old
		// ones reset.
		c2, err := New(p, &Resources{PidsLimit: 20})
		if err != nil {
			t.Fatalf("New over an empty leftover: %v", err)
		}
		if got := readCg(t, v, p, "pids", "pids.max", "pids.max"); got != "20" {
			t.Errorf("pids.max = %s, want 20", got)
		}
		if got, err := Load(p); err != nil || got.Resources().MemoryLimit != 0 {
			t.Errorf("Load of the reused cgroup: %v, memory limit %+v; want reset to 0", err, got)
		}
		if err := c2.Delete(context.Background()); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		p := testPath(t)
		for _, tc := range []struct {
			r     Resources
			field string
		}{
			{Resources{CPUShares: 1}, "cpu shares"},
			{Resources{CPUShares: 300000}, "cpu shares"},
			{Resources{CPUWeight: 10001}, "cpu weight"},
			{Resources{CPUWeight: 100, CPUShares: 1024}, "cpu weight"},
			{Resources{CPUQuota: -5}, "cpu quota"},
			{Resources{CPUQuota: 999}, "cpu quota"},
			{Resources{CPUPeriod: 999}, "cpu period"},
			{Resources{CPUPeriod: 1000001}, "cpu period"},
			{Resources{CPUs: "0-"}, "cpus"},
			{Resources{CPUs: "1-0"}, "cpus"},
			{Resources{CPUs: "4096"}, "cpus"},
			{Resources{Mems: "x"}, "mems"},
			{Resources{Mems: "63"}, "mems"},
			{Resources{MemoryLimit: -5}, "memory limit"},
			{Resources{MemoryLimit: 1 << 20}, "memory limit"},
			{Resources{MemorySwap: 64 << 20}, "memory swap"},
			{Resources{MemoryLimit: 64 << 20, MemorySwap: 32 << 20}, "memory swap"},
			{Resources{MemoryLimit: 64 << 20, MemorySwap: -2}, "memory swap"},
			{Resources{MemoryReservation: -1}, "memory reservation"},
			{Resources{MemoryLimit: 64 << 20, MemoryReservation: 128 << 20}, "memory reservation"},
			{Resources{PidsLimit: -1}, "pids limit"},
			{Resources{IOWeight: 5}, "io weight"},
			{Resources{IOWeight: 1001}, "io weight"},
		} {
			_, err := New(p, &tc.r)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "invalid "+tc.field+" ") {
				t.Errorf("New(%+v) = %v; want ErrInvalid naming %q", tc.r, err, tc.field)
			}
			if d := dirsOf(t, p); len(d) > 0 {
				t.Fatalf("New(%+v) failed but left %v", tc.r, d)
			}
		}
		for _, bad := range []string{"", "/", "rel", "/a/../b", "/a/", "//a"} {
			if _, err := New(bad, nil); !errors.Is(err, ErrInvalid) {
				t.Errorf("New(%q) = %v, want ErrInvalid", bad, err)
			}
		}
	})

	t.Run("AddProcesses", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, b := sleeper(t), sleeper(t)
		for _, s := range []*proc{a, b} {
			if err := c.Add(s.pid); err != nil {
				t.Fatal(err)
			}
			if !inCgroup(t, s.pid, v, p) {
				t.Errorf("/proc/%d/cgroup does not place it in %s", s.pid, p)
			}
		}
		got, err := c.Processes()
		if err != nil {
			t.Fatal(err)
		}
		want := []int{a.pid, b.pid}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("Processes() = %v, want %v", got, want)
		}
		if err := c.Add(0); !errors.Is(err, ErrInvalid) {
			t.Errorf("Add(0) = %v, want ErrInvalid", err)
		}
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		// Memory is charged where it was allocated, before the
		// move: no expectation on it here.
		if st.Pids.Current != 2 {
			t.Errorf("Stats().Pids.Current = %d, want 2", st.Pids.Current)
		}
	})

	t.Run("UpdateLive", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{MemoryLimit: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Add(sleeper(t).pid); err != nil {
			t.Fatal(err)
		}
		swap := swapAccounted(t, v, p)
		r := &Resources{MemoryLimit: 128 << 20, PidsLimit: 50, CPUQuota: 50000, CPUWeight: 200}
		if swap {
			r.MemorySwap = 256 << 20
		}
		if err := c.Update(r); err != nil {
			t.Fatal(err)
		}
		check := func(ctrl, f1, want1, f2, want2 string) {
			t.Helper()
			want := want1
			if v == V2 {
				want = want2
			}
			if got := readCg(t, v, p, ctrl, f1, f2); got != want {
				t.Errorf("%s = %q, want %q", f1+f2, got, want)
			}
		}
		check("memory", "memory.limit_in_bytes", "134217728", "memory.max", "134217728")
		check("pids", "pids.max", "50", "pids.max", "50")
		check("cpu", "cpu.cfs_quota_us", "50000", "cpu.max", "50000 100000")
		check("cpu", "cpu.shares", strconv.FormatUint(WeightToShares(200), 10), "cpu.weight", "200")
		if r.MemorySwap != 0 {
			check("memory", "memory.memsw.limit_in_bytes", "268435456", "memory.swap.max", "134217728")
		}
		if got := c.Resources(); !reflect.DeepEqual(got, r) {
			t.Errorf("Resources() = %+v, want %+v", got, r)
		}
		// Lower the limit below the old swap limit: the order of
		// writes matters on v1.
		r = &Resources{MemoryLimit: 32 << 20}
		if swap {
			r.MemorySwap = 32 << 20
		}
		if err := c.Update(r); err != nil {
			t.Fatal(err)
		}
		check("memory", "memory.limit_in_bytes", "33554432", "memory.max", "33554432")
		// Everything unset: limits lifted.
		if err := c.Update(&Resources{}); err != nil {
			t.Fatal(err)
		}
		check("pids", "pids.max", "max", "pids.max", "max")
		check("cpu", "cpu.cfs_quota_us", "-1", "cpu.max", "max 100000")
		if l, err := Load(p); err != nil || !reflect.DeepEqual(*l.Resources(), Resources{}) {
			t.Errorf("after Update(&Resources{}), Load: %v, %+v", err, l)
		}
		if err := c.Update(&Resources{PidsLimit: -3}); !errors.Is(err, ErrInvalid) {
			t.Errorf("Update with an invalid limit: %v, want ErrInvalid", err)
		}
	})

	t.Run("OOM", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{MemoryLimit: 32 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if swapAccounted(t, v, p) { // no swapping instead of the OOM kill
			if err := c.Update(&Resources{MemoryLimit: 32 << 20, MemorySwap: 32 << 20}); err != nil {
				t.Fatal(err)
			}
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		events, err := c.WatchOOM(ctx)
		if err != nil {
			t.Fatal(err)
		}
		h, in := spawnAlloc(t)
		if err := c.Add(h.pid); err != nil {
			t.Fatal(err)
		}
		if _, err := in.Write([]byte{1}); err != nil {
			t.Fatal(err)
		}
		err, ok := h.wait(20 * time.Second)
		if !ok {
			t.Fatal("the allocating helper was not killed within 20s")
		}
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Fatalf("helper ended with %v, want SIGKILL", err)
		}
		select {
		case _, ok := <-events:
			if !ok {
				t.Fatal("WatchOOM channel closed before the OOM kill arrived")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no OOM event within 5s of the kill")
		}
		n, err := c.OOMKills()
		if err != nil || n < 1 {
			t.Errorf("OOMKills() = %d, %v; want at least 1", n, err)
		}
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Memory.OOMKills < 1 || st.Memory.OOMEvents < 1 || st.Memory.Limit != 32<<20 || st.Memory.MaxUsage < 16<<20 {
			t.Errorf("Stats().Memory = %+v; want OOM counts >= 1, Limit 32 MiB, MaxUsage near it", st.Memory)
		}
	})

	t.Run("WatchOOMEnds", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		goroutines, fds := runtime.NumGoroutine(), fdCount(t)
		ctx, cancel := context.WithCancel(context.Background())
		ch1, err := c.WatchOOM(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ch2, err := c.WatchOOM(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		cancel()
		if !closedWithin(ch1, 2*time.Second) {
			t.Error("WatchOOM channel open 2s after its context ended")
		}
		if err := c.Delete(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !closedWithin(ch2, 2*time.Second) {
			t.Error("WatchOOM channel open 2s after the cgroup was deleted")
		}
		if !waitFor(2*time.Second, func() bool { return runtime.NumGoroutine() <= goroutines && fdCount(t) <= fds }) {
			t.Errorf("leak: goroutines %d -> %d, fds %d -> %d", goroutines, runtime.NumGoroutine(), fds, fdCount(t))
		}
	})

	t.Run("PidsLimit", func(t *testing.T) {
		p := testPath(t)
		const limit = 5
		c, err := New(p, &Resources{PidsLimit: limit})
		if err != nil {
			t.Fatal(err)
		}
		// The shell waits to be moved in, then starts sleepers and
		// prints a count after each, until fork fails.
		cmd := exec.Command("sh", "-c", `read x; i=0; while [ $i -lt 20 ]; do sleep 60 >/dev/null 2>&1 & i=$((i+1)); echo $i; done`)
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		var stderr strings.Builder
		cmd.Stderr = &stderr
		sh := start(t, cmd)
		if err := c.Add(sh.pid); err != nil {
			t.Fatal(err)
		}
		in.Write([]byte("go\n"))
		started := 0
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			started, _ = strconv.Atoi(sc.Text())
		}
		err, ok := sh.wait(10 * time.Second)
		if !ok {
			t.Fatal("the forking shell did not end")
		}
		if err == nil || started >= limit || !strings.Contains(strings.ToLower(stderr.String()), "fork") {
			t.Errorf("shell started %d processes, exit %v, stderr %q; want fewer than %d and a fork failure",
				started, err, stderr.String(), limit)
		}
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.Pids.Limit != limit {
			t.Errorf("Stats().Pids.Limit = %d, want %d", st.Pids.Limit, limit)
		}
		t.Logf("shell started %d of %d; stderr %q", started, limit, strings.TrimSpace(stderr.String()))
	})

	t.Run("CPUThrottling", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{CPUQuota: 10000}) // 10% of a CPU
		if err != nil {
			t.Fatal(err)
		}
		s := spinner(t)
		if err := c.Add(s.pid); err != nil {
			t.Fatal(err)
		}
		const busy = 600 * time.Millisecond
		time.Sleep(busy)
		st, err := c.Stats()
		if err != nil {
			t.Fatal(err)
		}
		if st.CPU.ThrottledPeriods == 0 || st.CPU.Periods == 0 || st.CPU.ThrottledNs == 0 {
			t.Errorf("CPU stats %+v: want throttling under a 10%% quota", st.CPU)
		}
		if st.CPU.UsageNs == 0 || st.CPU.UsageNs > uint64(busy/3) {
			t.Errorf("CPU usage %v in %v under a 10%% quota", time.Duration(st.CPU.UsageNs), busy)
		}
		if st.CPU.UserNs+st.CPU.SystemNs == 0 {
			t.Errorf("CPU stats %+v: no user or system time", st.CPU)
		}
	})

	t.Run("FreezeThaw", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		s := spinner(t)
		if err := c.Add(s.pid); err != nil {
			t.Fatal(err)
		}
		if err := c.Freeze(context.Background()); err != nil {
			t.Fatal(err)
		}
		if f, err := c.Frozen(); !f || err != nil {
			t.Errorf("Frozen() = %v, %v after Freeze", f, err)
		}
		before := cpuTicks(t, s.pid)
		time.Sleep(200 * time.Millisecond)
		if after := cpuTicks(t, s.pid); after != before {
			t.Errorf("frozen spinner used CPU: %d -> %d ticks", before, after)
		}
		if err := c.Thaw(); err != nil {
			t.Fatal(err)
		}
		if f, err := c.Frozen(); f || err != nil {
			t.Errorf("Frozen() = %v, %v after Thaw", f, err)
		}
		if !waitFor(2*time.Second, func() bool { return cpuTicks(t, s.pid) > before }) {
			t.Error("thawed spinner does not run")
		}
		// A frozen cgroup can be deleted: its processes die.
		if err := c.Freeze(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(context.Background()); err != nil {
			t.Fatalf("Delete of a frozen cgroup: %v", err)
		}
		if _, ok := s.wait(5 * time.Second); !ok {
			t.Error("frozen process survived Delete")
		}
	})

	t.Run("IOWeight", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{IOWeight: 300})
		if errors.Is(err, ErrNotSupported) {
			t.Skipf("no IO weight here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		if l, err := Load(p); err != nil || l.Resources().IOWeight != 300 {
			t.Errorf("Load: %v, %+v; want IOWeight 300", err, l)
		}
		if err := c.Update(&Resources{}); err != nil {
			t.Fatal(err)
		}
		if l, err := Load(p); err != nil || l.Resources().IOWeight != 0 {
			t.Errorf("after reset, Load: %v, %+v; want IOWeight 0", err, l)
		}
	})

	t.Run("Kill", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		// A shell that keeps forking, and a plain sleeper.
		forker := start(t, exec.Command("sh", "-c", "while :; do sleep 60 & sleep 0.01; done"))
		s := sleeper(t)
		for _, h := range []*proc{forker, s} {
			if err := c.Add(h.pid); err != nil {
				t.Fatal(err)
			}
		}
		time.Sleep(50 * time.Millisecond)
		if err := c.Kill(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Processes(); len(got) != 0 || err != nil {
			t.Errorf("after Kill, Processes() = %v, %v", got, err)
		}
		for _, h := range []*proc{forker, s} {
			if _, ok := h.wait(5 * time.Second); !ok {
				t.Errorf("pid %d survived Kill", h.pid)
			}
		}
		if len(dirsOf(t, p)) == 0 {
			t.Error("Kill removed the cgroup")
		}
	})

	t.Run("DeleteRunning", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{MemoryLimit: 64 << 20})
		if err != nil {
			t.Fatal(err)
		}
		s := sleeper(t)
		if err := c.Add(s.pid); err != nil {
			t.Fatal(err)
		}
		// A child cgroup made by someone else goes too.
		if err := os.Mkdir(cgFile(t, v, p, "memory", "sub", "sub"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(context.Background()); err != nil {
			t.Fatal(err)
		}
		if d := dirsOf(t, p); len(d) > 0 {
			t.Errorf("after Delete, left %v", d)
		}
		if _, ok := s.wait(5 * time.Second); !ok {
			t.Error("process survived Delete")
		}
	})

	t.Run("Sweep", func(t *testing.T) {
		parent := testPath(t)
		for _, n := range []string{"empty", "busy", "nested"} {
			if _, err := New(parent+"/"+n, nil); err != nil {
				t.Fatal(err)
			}
		}
		busy, _ := Load(parent + "/busy")
		if err := busy.Add(sleeper(t).pid); err != nil {
			t.Fatal(err)
		}
		if _, err := New(parent+"/nested/child", nil); err != nil {
			t.Fatal(err)
		}
		// A partial leftover: only in one hierarchy.
		if err := os.Mkdir(cgFile(t, v, parent+"/partial", "pids", "", ""), 0o755); err != nil {
			t.Fatal(err)
		}
		if got, err := SweepOlder(parent, time.Hour); len(got) != 0 || err != nil {
			t.Errorf("SweepOlder(1h) of fresh cgroups = %v, %v; want nothing", got, err)
		}
		removed, err := Sweep(parent)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{parent + "/empty", parent + "/nested", parent + "/partial"}
		if !slices.Equal(removed, want) {
			t.Errorf("Sweep removed %v, want %v", removed, want)
		}
		for _, w := range want {
			if d := dirsOf(t, w); len(d) > 0 {
				t.Errorf("Sweep left %v", d)
			}
		}
		if procs, err := busy.Processes(); len(procs) != 1 || err != nil {
			t.Errorf("busy cgroup after Sweep: %v, %v", procs, err)
		}
		if got, err := Sweep(parent + "/missing"); len(got) != 0 || err != nil {
			t.Errorf("Sweep of a missing parent = %v, %v", got, err)
		}
	})

	t.Run("BareParent", func(t *testing.T) {
		// A parent made by someone else with a plain mkdir: on v1 its
		// cpuset is empty, and must be filled for a child to run.
		p := testPath(t)
		if err := os.MkdirAll(cgFile(t, v, p, "cpuset", "", ""), 0o755); err != nil {
			t.Fatal(err)
		}
		c, err := New(p+"/child", &Resources{PidsLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Add(sleeper(t).pid); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Placement", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, nil)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(c.Dirs()), len(dirsOf(t, p)); got != want || got == 0 {
			t.Errorf("Dirs() = %v, want the %d directories of %s", c.Dirs(), want, p)
		}
		files, err := c.OpenPlacement()
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			for _, f := range files {
				f.Close()
			}
		}()
		var s *proc
		if v == V2 {
			cmd := exec.Command("sleep", "60")
			cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(files[0].Fd())}
			s = start(t, cmd)
		} else {
			// Writing the thread ID of the sleeper's only thread.
			s = sleeper(t)
			for _, f := range files {
				if _, err := f.WriteString(strconv.Itoa(s.pid)); err != nil {
					t.Fatal(err)
				}
			}
		}
		if got, err := c.Processes(); !slices.Equal(got, []int{s.pid}) || err != nil {
			t.Errorf("Processes() = %v, %v; want [%d]", got, err, s.pid)
		}
	})

	t.Run("OpenDir", func(t *testing.T) {
		p := testPath(t)
		c, err := New(p, &Resources{PidsLimit: 10})
		if err != nil {
			t.Fatal(err)
		}
		f, err := c.OpenDir()
		if v == V1 {
			if !errors.Is(err, ErrNotSupported) {
				t.Errorf("OpenDir on v1 = %v, want ErrNotSupported", err)
			}
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cmd := exec.Command("sleep", "60")
		cmd.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(f.Fd())}
		s := start(t, cmd)
		if got, err := c.Processes(); !slices.Equal(got, []int{s.pid}) || err != nil {
			t.Errorf("Processes() = %v, %v; want the child born in it, %d", got, err, s.pid)
		}
	})
}

// swapAccounted reports whether the kernel accounts swap for the cgroup at p.
func swapAccounted(t *testing.T, v Version, p string) bool {
	return exists(cgFile(t, v, p, "memory", "memory.memsw.limit_in_bytes", "memory.swap.max"))
}

// closedWithin reports whether ch is closed within d, draining it.
func closedWithin(ch <-chan struct{}, d time.Duration) bool {
	timeout := time.After(d)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return true
			}
		case <-timeout:
			return false
		}
	}
}
