package layer

import (
	"bytes"
	"context"
	"fmt"
	"github.com/berthlabs/berth/internal/owner"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/layer/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The multi-process tests run this test binary again as worker processes
// (TestStoreWorker, selected by the environment), which open one store
// root at the same time.
const (
	workerRootEnv  = "BERTH_LAYER_WORKER_ROOT"
	workerModeEnv  = "BERTH_LAYER_WORKER_MODE"
	workerItersEnv = "BERTH_LAYER_WORKER_ITERS"
	multiImage     = "example.com/multi:v1"
)

// startWorker starts a worker process in mode on root; its output goes to
// out.
func startWorker(t *testing.T, root, mode string, iters int, out *bytes.Buffer) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestStoreWorker$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), workerRootEnv+"="+root, workerModeEnv+"="+mode, workerItersEnv+"="+strconv.Itoa(iters))
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// makeMultiImage imports a three-layer image into a store at root.
func makeMultiImage(t *testing.T, root string) {
	t.Helper()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var dirs []string
	for l := range 3 {
		dir := t.TempDir()
		for f := range 50 {
			sub := filepath.Join(dir, fmt.Sprintf("l%d", l), fmt.Sprintf("d%d", f%5))
			must(t, os.MkdirAll(sub, 0o755))
			must(t, os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%d", f)), []byte(strings.Repeat("x", f*10)), 0o644))
		}
		dirs = append(dirs, dir)
	}
	if _, err := s.ImportDirs(context.Background(), multiImage, ocispec.ImageConfig{Cmd: []string{"sh"}}, dirs...); err != nil {
		t.Fatal(err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestStoreWorker is the worker process of the multi-process tests; run
// by itself it skips.
func TestStoreWorker(t *testing.T) {
	root := os.Getenv(workerRootEnv)
	if root == "" {
		t.Skip("the worker process of the multi-process tests")
	}
	iters, _ := strconv.Atoi(os.Getenv(workerItersEnv))
	ctx := context.Background()
	var unpacked atomic.Int32
	unpackHook = func(string) { unpacked.Add(1) }
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	switch mode := os.Getenv(workerModeEnv); mode {
	case "unpack":
		if _, err := s.Unpack(ctx, multiImage); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("UNPACKED %d\n", unpacked.Load())
	case "hammer":
		hammer(t, s, iters)
	default:
		t.Fatalf("mode %q", mode)
	}
}

// hammer does what a test binary sharing an image cache does, iters
// times: unpack the shared image, run a "container" on it and commit it
// as an image of its own, unpack that, import another image, make and
// remove snapshots directly, untag its own images and GC.
func hammer(t *testing.T, s *Store, iters int) {
	ctx := context.Background()
	pid := os.Getpid()
	var mine []string
	for i := range iters {
		img, err := s.Unpack(ctx, multiImage)
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("w-%d-%d", pid, i)
		_, ms, err := s.Prepare(ctx, key, multiImage, WithOwner())
		if err != nil {
			t.Fatal(err)
		}
		err = withDir(ms, true, func(dir string, _ bool) error {
			return os.WriteFile(filepath.Join(dir, key), []byte(key), 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("example.com/w%d:%d", pid, i)
		if _, err := s.Commit(ctx, key, img, CommitOptions{Name: name}); err != nil {
			t.Fatal(err)
		}
		mine = append(mine, name)
		if _, err := s.Unpack(ctx, name); err != nil {
			t.Fatal(err)
		}
		must(t, s.Release(ctx, key))

		dir := t.TempDir()
		must(t, os.WriteFile(filepath.Join(dir, "imported"), []byte(key), 0o644))
		imp := fmt.Sprintf("example.com/imp%d:%d", pid, i)
		if _, err := s.ImportDirs(ctx, imp, ocispec.ImageConfig{}, dir); err != nil {
			t.Fatal(err)
		}
		mine = append(mine, imp)

		// A committed snapshot no image names is GC's to take, in any
		// process, unless this one holds GC off while it uses it.
		release, err := s.Hold(ctx)
		must(t, err)
		raw := fmt.Sprintf("raw-%d-%d", pid, i)
		if _, err := s.Snapshots.Prepare(ctx, raw, img.ChainID); err != nil {
			t.Fatal(err)
		}
		must(t, s.Snapshots.Commit(ctx, raw+"-c", raw))
		if _, err := s.Snapshots.View(ctx, raw+"-v", raw+"-c"); err != nil {
			t.Fatal(err)
		}
		must(t, s.Snapshots.Remove(ctx, raw+"-v"))
		must(t, s.Snapshots.Remove(ctx, raw+"-c"))
		release()

		if i%2 == 1 {
			for _, n := range mine[:len(mine)-2] {
				must(t, s.Content.Untag(ctx, n))
			}
			mine = mine[len(mine)-2:]
			if _, err := s.GC(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestMultiProcessUnpackOnce checks processes sharing a store unpack each
// layer once: N at once unpack an image's layers once in all, and a
// process that comes later unpacks none.
func TestMultiProcessUnpackOnce(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	makeMultiImage(t, root)
	const n = 4
	outs := make([]bytes.Buffer, n)
	cmds := make([]*exec.Cmd, n)
	for i := range n {
		cmds[i] = startWorker(t, root, "unpack", 0, &outs[i])
	}
	total := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %d: %v\n%s", i, err, outs[i].String())
		}
		total += unpackedCount(t, outs[i].String())
	}
	if total != 3 {
		t.Errorf("%d processes unpacked %d layers in all, want each of the 3 once", n, total)
	}
	var out bytes.Buffer
	cmd := startWorker(t, root, "unpack", 0, &out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("late worker: %v\n%s", err, out.String())
	}
	if got := unpackedCount(t, out.String()); got != 0 {
		t.Errorf("a process that came after the image was unpacked unpacked %d layers again", got)
	}
}

func unpackedCount(t *testing.T, out string) int {
	t.Helper()
	for line := range strings.Lines(out) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "UNPACKED "); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no UNPACKED line in the worker's output:\n%s", out)
	return 0
}

// TestMultiProcessHammer runs workers that hammer one store at once, some
// of them killed with SIGKILL at random moments, and then checks the store
// is consistent, that its images unpack, and that GC works.
func TestMultiProcessHammer(t *testing.T) {
	needRoot(t)
	root := t.TempDir()
	makeMultiImage(t, root)
	const n, killed, iters = 5, 2, 6
	outs := make([]bytes.Buffer, n)
	cmds := make([]*exec.Cmd, n)
	start := time.Now()
	for i := range n {
		cmds[i] = startWorker(t, root, "hammer", iters, &outs[i])
	}
	var wg sync.WaitGroup
	for i := range killed {
		wg.Go(func() {
			time.Sleep(time.Duration(50+rand.IntN(1500)) * time.Millisecond)
			cmds[i].Process.Signal(syscall.SIGKILL)
		})
	}
	wg.Wait()
	for i, cmd := range cmds {
		err := cmd.Wait()
		t.Logf("worker %d: %v after %v", i, cmd.ProcessState, time.Since(start))
		if i >= killed && err != nil {
			t.Errorf("worker %d: %v\n%s", i, err, outs[i].String())
		}
	}
	checkStore(t, root)
}

// checkStore opens the store at root, which nobody else has open, and
// checks it: every snapshot's parent exists and is committed, no snapshot
// of a dead owner is left, the snapshot directories, records and names
// match, every named image has its blobs and unpacks, and GC works.
func checkStore(t *testing.T, root string) {
	t.Helper()
	ctx := context.Background()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	infos := map[string]snapshot.Info{}
	must(t, s.Snapshots.Walk(ctx, func(i snapshot.Info) error { infos[i.Name] = i; return nil }))
	for _, i := range infos {
		if i.Parent != "" {
			if p, ok := infos[i.Parent]; !ok || p.Kind != snapshot.KindCommitted {
				t.Errorf("snapshot %s: parent %s missing or not committed (%+v)", i.Name, i.Parent, p)
			}
		}
		if o, ok := i.Labels[LabelOwner]; ok && !owner.Alive(o) {
			t.Errorf("snapshot %s of a dead owner %s is left", i.Name, o)
		}
		if i.Kind != snapshot.KindCommitted && strings.HasPrefix(i.Name, extractPrefix) {
			t.Errorf("half-unpacked layer %s is left", i.Name)
		}
	}
	sroot := filepath.Join(root, "snapshots")
	for dir, want := range map[string]int{"snapshots": len(infos), "metadata": len(infos), "names": len(infos)} {
		es, err := os.ReadDir(filepath.Join(sroot, dir))
		must(t, err)
		if len(es) != want {
			var names []string
			for _, e := range es {
				names = append(names, e.Name())
			}
			t.Errorf("%s holds %d entries for %d snapshots: %v", dir, len(es), want, names)
		}
	}
	blobs, err := os.ReadDir(filepath.Join(root, "content", "blobs", "sha256"))
	must(t, err)
	for _, b := range blobs {
		if strings.HasPrefix(b.Name(), ".") {
			t.Errorf("blob directory holds %s after a solo open", b.Name())
		}
	}
	check := func(when string) {
		imgs, err := s.Content.Images(ctx)
		must(t, err)
		for _, img := range imgs {
			m, _, err := s.Content.Manifest(ctx, img.Target, nil)
			if err != nil {
				t.Errorf("%s: image %s: %v", when, img.Name, err)
				continue
			}
			for _, d := range append([]ocispec.Descriptor{m.Config}, m.Layers...) {
				if _, err := s.Content.Info(ctx, d.Digest); err != nil {
					t.Errorf("%s: image %s: %v", when, img.Name, err)
				}
			}
			if _, err := s.Unpack(ctx, img.Name); err != nil {
				t.Errorf("%s: unpack %s: %v", when, img.Name, err)
			}
		}
	}
	check("after the workers")
	if _, err := s.GC(ctx); err != nil {
		t.Fatalf("GC: %v", err)
	}
	check("after GC")
}
