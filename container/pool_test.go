package container

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/osthread"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// poolRuntime returns a runtime with a pool of n that is full, closed
// when the test ends.
func poolRuntime(t *testing.T, n int) *Runtime {
	t.Helper()
	rt := &Runtime{InitPool: n}
	t.Cleanup(func() { rt.Close() })
	if rt.initPool() == nil {
		t.Fatal("no pool")
	}
	settledPool(t, rt)
	return rt
}

// poolGen is rt's pool's mount generation: it changes when the pool
// retires its inits because the host's mount table changed.
func poolGen(rt *Runtime) uint64 {
	rt.mu.Lock()
	p := rt.pool
	rt.mu.Unlock()
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gen
}

// startPooled starts the spec mk makes in rt and requires its init to
// come from the full pool. Other test binaries mount and unmount on the
// host at the same time, which makes the pool retire its inits: then it
// tries again, a few times.
func startPooled(t *testing.T, rt *Runtime, mk func() *Spec) (*Container, *syncBuffer) {
	t.Helper()
	for attempt := 1; ; attempt++ {
		idle := settledPool(t, rt)
		gen := poolGen(rt)
		c, out := startIn(t, rt, mk())
		if idle[strconv.Itoa(c.Pid())] {
			return c, out
		}
		if poolGen(rt) == gen || attempt == 5 {
			t.Fatalf("init %d did not come from the pool %v (attempt %d)", c.Pid(), idle, attempt)
		}
		c.Delete(testCtx(t))
	}
}

func TestPoolServesContainers(t *testing.T) {
	needRoot(t)
	before := takeSnapshot(t)
	rt := poolRuntime(t, 2)
	c, out := startPooled(t, rt, func() *Spec {
		spec := &Spec{
			Hostname: "pooled",
			Process: sh(`echo "host=$(hostname) lo=$(cat /sys/class/net/lo/operstate) ` +
				`cg=$(cat /proc/self/cgroup | grep -c berth) nets=$(ls /sys/class/net | wc -l) ` +
				`in=$(cat) args=$*"; exit 7`),
		}
		spec.Process.Stdin = strings.NewReader("hello")
		return spec
	})
	st, err := c.Wait(testCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 7 {
		t.Errorf("exit %v, want code 7", st)
	}
	got := strings.TrimSpace(out.String())
	if want := "host=pooled lo=unknown"; !strings.HasPrefix(got, want) {
		// lo's operstate reads "unknown" once it is up (it has no carrier).
		t.Errorf("output %q, want it to begin %q", got, want)
	}
	if !strings.Contains(got, "nets=1 in=hello") {
		t.Errorf("output %q: want only lo and the stdin given", got)
	}
	if strings.Contains(got, "cg=0") && cgroupV1() {
		t.Errorf("output %q: the process is not in the container's cgroup", got)
	}
	if err := c.Delete(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	// The pool refills to its size; closing it leaves nothing.
	settledPool(t, rt)
	rt.Close()
	checkNoLeaks(t, before)
}

func cgroupV1() bool {
	_, err := os.Stat("/sys/fs/cgroup/memory")
	return err == nil
}

// A rootfs on a filesystem mounted after the pool filled, and a bind
// source on another, are seen by the container: the pool retired the
// inits whose mount namespaces were copied before those mounts.
func TestPoolAfterHostMount(t *testing.T) {
	needRoot(t)
	poolAfterHostMount(t)
}

// The same holds when the embedding program's own code has parked the
// main thread in a mount namespace of its own (a goroutine that unshared
// one and ended locked, on the main thread): /proc/self then shows that
// namespace, frozen, but berth's view of the host's table must not. Run
// in a child test binary, since the main thread stays parked for good.
func TestPoolMainThreadElsewhere(t *testing.T) {
	needRoot(t)
	if os.Getenv("BERTH_POOL_PARKED_MAIN") == "1" {
		parkMainThread(t)
		poolAfterHostMount(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPoolMainThreadElsewhere$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "BERTH_POOL_PARKED_MAIN=1", "BERTH_TEST_INIT_POOL=")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "main thread parked in mnt:") {
		t.Fatalf("child: %v\n%s", err, out)
	}
}

// parkMainThread leaves the process's main thread in a private mount
// namespace for the rest of the process, as a careless goroutine would:
// it unshares on the main thread and ends locked. A goroutine lands on
// the main thread when the goroutine that started it runs there and
// then blocks (the new one is run next on the same thread), so it waits
// until this goroutine runs on the main thread first.
func parkMainThread(t *testing.T) {
	host, err := os.Readlink("/proc/thread-self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	onMain := func() bool {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return osthread.OnMainThread()
	}
	for i := 0; i < 100000; i++ {
		if !onMain() {
			time.Sleep(time.Duration(i%10) * time.Microsecond)
			continue
		}
		parked := make(chan bool, 1)
		go func() {
			runtime.LockOSThread()
			if !osthread.OnMainThread() {
				runtime.UnlockOSThread()
				parked <- false
				return
			}
			// Ends locked: Go cannot end the main thread, so it parks it.
			parked <- unix.Unshare(unix.CLONE_NEWNS) == nil
		}()
		if <-parked {
			self, _ := os.Readlink("/proc/self/ns/mnt")
			if self == host {
				t.Fatalf("/proc/self/ns/mnt is still %s", host)
			}
			t.Logf("main thread parked in %s (the process's threads are in %s)", self, host)
			return
		}
	}
	t.Skip("no goroutine landed on the main thread in 100000 tries")
}

// poolAfterHostMount is TestPoolAfterHostMount's body.
func poolAfterHostMount(t *testing.T) {
	rt := poolRuntime(t, 2)
	idle := settledPool(t, rt)
	dir := t.TempDir()
	root, data := filepath.Join(dir, "root"), filepath.Join(dir, "data")
	for _, d := range []string{root, data} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "size=16m"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { unix.Unmount(d, unix.MNT_DETACH) })
	}
	if out, err := exec.Command("cp", "-a", testRootfs+"/.", root).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	if err := os.WriteFile(filepath.Join(data, "msg"), []byte("fresh mount"), 0o644); err != nil {
		t.Fatal(err)
	}
	spec := &Spec{
		Rootfs:  root,
		Process: sh("cat /data/msg"),
		Mounts:  []Mount{{Type: Bind, Source: data, Target: "/data"}},
	}
	c, out := startIn(t, rt, spec)
	if idle[strconv.Itoa(c.Pid())] {
		t.Errorf("init %d came from before the mounts", c.Pid())
	}
	if st, err := c.Wait(testCtx(t)); err != nil || !st.Success() {
		t.Fatalf("exit %v %v: %s", st, err, out)
	}
	if got := out.String(); got != "fresh mount" {
		t.Errorf("output %q", got)
	}
	// The stale inits are gone, and the new ones serve the new mounts.
	for pid := range idle {
		waitGone(t, pid)
	}
	c, out = startPooled(t, rt, func() *Spec {
		return &Spec{Rootfs: root, Process: sh("cat /data/msg"), Mounts: spec.Mounts}
	})
	if st, err := c.Wait(testCtx(t)); err != nil || !st.Success() || out.String() != "fresh mount" {
		t.Fatalf("exit %v %v: %q", st, err, out)
	}
}

// waitGone waits until process pid has been reaped.
func waitGone(t testing.TB, pid string) {
	t.Helper()
	for i := 0; ; i++ {
		if _, err := os.Stat("/proc/" + pid); os.IsNotExist(err) {
			return
		}
		if i == 250 {
			t.Fatalf("process %s still there after 5s", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitExited waits until child pid has exited, every thread of it (and
// waits to be reaped).
func waitExited(t testing.TB, pid int) {
	t.Helper()
	for i := 0; ; i++ {
		var info unix.Siginfo
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil)
		if err != nil || info.Signo != 0 {
			return
		}
		if i == 250 {
			t.Fatalf("process %d still running after 5s", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// More containers at once than the pool holds: the rest start cold, and
// every one runs as it should.
func TestPoolBurst(t *testing.T) {
	needRoot(t)
	before := takeSnapshot(t)
	rt := poolRuntime(t, 2)
	idle := settledPool(t, rt)
	gen := poolGen(rt) // another binary's mounts may retire the pool's inits
	const n = 12
	var wg sync.WaitGroup
	var mu sync.Mutex
	pooled := 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := testCtx(t)
			out := &syncBuffer{}
			c, err := rt.Create(ctx, fmt.Sprintf("%s-%d", testID(t), i), &Spec{
				Rootfs: testRootfs, Process: sh(fmt.Sprintf("echo %d", i)),
			})
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Delete(ctx)
			c.spec.Process.Stdout = out
			if err := c.Start(ctx); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			if idle[strconv.Itoa(c.Pid())] {
				pooled++
			}
			mu.Unlock()
			st, err := c.Wait(ctx)
			if err != nil || !st.Success() || out.String() != fmt.Sprintf("%d\n", i) {
				t.Errorf("container %d: %v %v %q", i, st, err, out)
			}
		}()
	}
	wg.Wait()
	if pooled > 2 || pooled == 0 && poolGen(rt) == gen {
		t.Errorf("%d of %d containers had a pooled init, want 1 or 2", pooled, n)
	}
	settledPool(t, rt)
	rt.Close()
	checkNoLeaks(t, before)
}

// A pooled init that died is not handed out, and is replaced.
func TestPoolReplacesDead(t *testing.T) {
	needRoot(t)
	rt := poolRuntime(t, 2)
	idle := settledPool(t, rt)
	for pid := range idle {
		p, _ := strconv.Atoi(pid)
		syscall.Kill(p, syscall.SIGKILL)
		waitExited(t, p)
	}
	for i := range 3 {
		out, st := runIn(t, rt, &Spec{Process: sh("echo ok")})
		if !st.Success() || out != "ok\n" {
			t.Fatalf("run %d: %v %q", i, st, out)
		}
	}
	now := settledPool(t, rt)
	for pid := range idle {
		if now[pid] {
			t.Errorf("killed init %s is still in the pool", pid)
		}
	}
}

// Specs of another shape than the pool's start their own init.
func TestPoolOtherShapes(t *testing.T) {
	needRoot(t)
	rt := poolRuntime(t, 1)
	idle := settledPool(t, rt)
	spec := &Spec{
		Process:    sh("echo $$"),
		Namespaces: map[namespace.Kind]Namespace{namespace.Net: {Mode: NamespaceHost}},
	}
	c, out := startIn(t, rt, spec)
	if idle[strconv.Itoa(c.Pid())] {
		t.Errorf("a host-network container got the pooled init")
	}
	if st, err := c.Wait(testCtx(t)); err != nil || !st.Success() || out.String() == "" {
		t.Fatalf("%v %v %q", st, err, out)
	}
}

// When the embedding process dies, its pooled inits die with it.
func TestPoolProcessDeath(t *testing.T) {
	needRoot(t)
	if os.Getenv("BERTH_POOL_CHILD") == "1" {
		rt := &Runtime{InitPool: 3}
		rt.initPool()
		pids := settledPool(t, rt)
		for pid := range pids {
			fmt.Println("pooled", pid)
		}
		fmt.Println("full")
		time.Sleep(time.Minute) // killed by the parent
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestPoolProcessDeath$")
	cmd.Env = append(os.Environ(), "BERTH_POOL_CHILD=1", "BERTH_TEST_INIT_POOL=")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []string
	buf := make([]byte, 4096)
	var text string
	for !strings.Contains(text, "full") {
		n, err := stdout.Read(buf)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child: %v (%q)", err, text)
		}
		text += string(buf[:n])
	}
	for _, l := range strings.Split(text, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == "pooled" {
			pids = append(pids, f[1])
		}
	}
	if len(pids) != 3 {
		t.Fatalf("child reported %q", text)
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range pids {
		waitGone(t, pid)
	}
}
