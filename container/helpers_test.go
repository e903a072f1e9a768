package container

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/busybox"
)

var testRootfs string

// scratch holds every temporary directory of this test binary (TMPDIR
// points into it), so leak checks can tell this package's mounts from
// those of other packages' tests running at the same time.
var scratch string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "berth-container-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755) // user-namespaced containers bind rootfs dirs from here
		scratch = dir
		os.Setenv("TMPDIR", dir)
		if os.Geteuid() == 0 {
			dir, err := busybox.TempRootfs()
			if err == nil {
				testRootfs = dir
				defer os.RemoveAll(dir)
			} else {
				fmt.Fprintln(os.Stderr, "no busybox rootfs:", err)
			}
		}
		// BERTH_TEST_INIT_POOL=N runs the suite with the Default
		// runtime's init pool on: its containers must not differ.
		if n, _ := strconv.Atoi(os.Getenv("BERTH_TEST_INIT_POOL")); n > 0 {
			Default.InitPool = n
			defer Default.Close()
		}
		return m.Run()
	}()
	os.Exit(code)
}

// settledPool waits until rt's pool (if it has one) is full and starts
// nothing, and returns the PIDs of its idle inits: leak checks compare
// the processes and descriptors of a settled pool and leave its inits
// out.
func settledPool(t testing.TB, rt *Runtime) map[string]bool {
	t.Helper()
	return settledPoolDo(t, rt, nil)
}

// settledPoolDo is settledPool that also runs fn (when not nil) while
// the pool is settled: no init of the pool's is starting or being
// reaped, so the descriptors it holds stay as they are while fn runs.
func settledPoolDo(t testing.TB, rt *Runtime, fn func()) map[string]bool {
	t.Helper()
	rt.mu.Lock()
	p := rt.pool
	rt.mu.Unlock()
	if p == nil {
		return nil
	}
	for i := 0; ; i++ {
		p.mu.Lock()
		if len(p.idle) == p.size && p.starting == 0 && p.retiring == 0 || p.closed {
			if fn != nil {
				fn()
			}
			pids := map[string]bool{}
			for _, pi := range p.idle {
				pids[strconv.Itoa(pi.cmd.Process.Pid)] = true
			}
			p.mu.Unlock()
			return pids
		}
		p.mu.Unlock()
		if i == 500 {
			t.Fatalf("the init pool did not fill in 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// needRoot skips tests that need root and a busybox rootfs.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, cgroups and mounts")
	}
	if testRootfs == "" {
		t.Skip("needs a static busybox (apt-get install busybox-static)")
	}
}

var idSeq atomic.Int64

func testID(t testing.TB) string {
	name := strings.NewReplacer("/", "-", "_", "-").Replace(t.Name())
	if len(name) > 60 {
		name = name[:60]
	}
	return fmt.Sprintf("t%d-%s-%d", os.Getpid(), name, idSeq.Add(1))
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// startIn creates spec in rt (on testRootfs unless it names a rootfs or
// an image), capturing its output unless the spec has its own, and
// starts it. The container is
// deleted when the test ends, if the test has not done so.
func startIn(t testing.TB, rt *Runtime, spec *Spec) (*Container, *syncBuffer) {
	t.Helper()
	ctx := testCtx(t)
	out := &syncBuffer{}
	if spec.Process.Stdout == nil && spec.Process.Stderr == nil {
		spec.Process.Stdout, spec.Process.Stderr = out, out
	}
	if spec.Rootfs == "" && spec.Image == "" {
		spec.Rootfs = testRootfs
	}
	c, err := rt.Create(ctx, testID(t), spec)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() { c.Delete(context.Background()) })
	if err := c.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	return c, out
}

// run runs spec in the Default runtime to its end, deletes it, and
// returns its output and status.
func run(t *testing.T, spec *Spec) (string, *ExitStatus) {
	t.Helper()
	return runIn(t, Default, spec)
}

func sh(script string) Process {
	return Process{Args: []string{"sh", "-c", script}}
}

// snapshot records what a container could leave behind.
type leakSnapshot struct {
	mounts  string
	cgroups []string
	procs   map[string]bool
	fds     int
}

func takeSnapshot(t testing.TB) leakSnapshot {
	t.Helper()
	initPath() // the sealed init is made once per process and kept
	// The Default pool's inits hold descriptors: count them while it is
	// settled.
	countFDs := func() int {
		fds, _ := os.ReadDir("/proc/self/fd")
		return len(fds)
	}
	fds := -1
	pooled := settledPoolDo(t, Default, func() { fds = countFDs() })
	if fds < 0 {
		fds = countFDs()
	}
	mi, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var cgs []string
	for _, root := range []string{"/sys/fs/cgroup/memory/berth", "/sys/fs/cgroup/pids/berth", "/sys/fs/cgroup/berth"} {
		ents, _ := os.ReadDir(root)
		for _, e := range ents {
			if e.IsDir() && strings.HasPrefix(e.Name(), fmt.Sprintf("t%d-", os.Getpid())) {
				cgs = append(cgs, filepath.Join(root, e.Name()))
			}
		}
	}
	procs := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if e.Name()[0] >= '0' && e.Name()[0] <= '9' && !pooled[e.Name()] && isOurInit(e.Name()) {
			procs[e.Name()] = true
		}
	}
	return leakSnapshot{mounts: normalizeMounts(string(mi)), cgroups: cgs, procs: procs, fds: fds}
}

// isOurInit reports whether process pid is a container init started by
// this test binary (other packages' tests start theirs concurrently).
func isOurInit(pid string) bool {
	b, err := os.ReadFile("/proc/" + pid + "/cmdline")
	if err != nil || !bytes.HasPrefix(b, []byte("berth-init")) {
		return false
	}
	st, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(st, ')')
	f := strings.Fields(string(st[i+1:]))
	return len(f) > 1 && f[1] == strconv.Itoa(os.Getpid())
}

// normalizeMounts lists the mount points under this binary's scratch
// directory: the only place the package under test mounts on the host
// (root filesystems are mounted inside the containers' namespaces).
func normalizeMounts(mi string) string {
	var lines []string
	for _, l := range strings.Split(mi, "\n") {
		f := strings.Fields(l)
		if len(f) > 5 && (f[4] == scratch || strings.HasPrefix(f[4], scratch+"/")) {
			lines = append(lines, f[4]) // mount point
		}
	}
	return strings.Join(lines, "\n")
}

// checkNoLeaks compares against a snapshot taken before.
func checkNoLeaks(t testing.TB, before leakSnapshot) {
	t.Helper()
	var after leakSnapshot
	for i := 0; i < 50; i++ { // fds of finished goroutines close asynchronously
		after = takeSnapshot(t)
		if after.fds <= before.fds && len(after.procs) == 0 && len(after.cgroups) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if after.mounts != before.mounts {
		t.Errorf("mounts changed:\nbefore:\n%s\nafter:\n%s", before.mounts, after.mounts)
	}
	if len(after.cgroups) > len(before.cgroups) {
		t.Errorf("cgroups left: %v", after.cgroups)
	}
	for p := range after.procs {
		if !before.procs[p] {
			t.Errorf("container init %s still running", p)
		}
	}
	if after.fds > before.fds {
		t.Errorf("file descriptors leaked: %d before, %d after", before.fds, after.fds)
	}
}
