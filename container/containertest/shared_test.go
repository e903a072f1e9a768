package containertest_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/internal/regtest"
	"github.com/berthlabs/berth/registry"
)

const sharedChildEnv = "CONTAINERTEST_SHARED_IMAGE"

// TestSharedChild is the other half of TestSharedCache: one test binary
// that runs a sandbox from a registry image through the cache.
func TestSharedChild(t *testing.T) {
	ref := os.Getenv(sharedChildEnv)
	if ref == "" {
		t.Skip("run by TestSharedCache")
	}
	start := time.Now()
	s := containertest.Run(t, ref, containertest.WithFile("/www/index.html", []byte("ok\n"), 0o644),
		containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/www"),
		containertest.WaitFor(containertest.ForHTTP("/").WithPort(80)))
	ready := time.Since(start)
	if code, out, err := s.Exec(context.Background(), "cat", "/www/index.html"); err != nil || code != 0 || string(out) != "ok\n" {
		t.Fatalf("exec: %d %v %q", code, err, out)
	}
	fmt.Printf("RESULT %d %d\n", containertest.DownloadedBytes(), ready.Microseconds())
}

// TestSharedCache runs test binaries at once on one fresh cache, as `go
// test ./...` does: the image is downloaded once in all, every process
// runs its sandbox, and later binaries download nothing.
func TestSharedCache(t *testing.T) {
	img := busyboxImage(t)
	reg := regtest.Start(t, regtest.Options{})
	ctx := context.Background()
	st, err := containertest.Store()
	if err != nil {
		t.Fatal(err)
	}
	ref := reg.Host + "/containertest/busybox:shared"
	pushed, err := registry.New().Push(ctx, ref, st, img, registry.WithPlainHTTP(reg.Host))
	if err != nil {
		t.Fatal(err)
	}
	_ = pushed
	desc, err := st.Content.Resolve(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := st.Content.Manifest(ctx, desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	size := m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}

	cache := t.TempDir()
	child := func() (int64, time.Duration, error) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestSharedChild$", "-test.v")
		cmd.Env = append(os.Environ(), sharedChildEnv+"="+ref, containertest.CacheEnv+"="+cache)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		sc := bufio.NewScanner(&out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "RESULT" {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				us, _ := strconv.ParseInt(f[2], 10, 64)
				return n, time.Duration(us) * time.Microsecond, err
			}
		}
		return 0, 0, fmt.Errorf("child: %v\n%s", err, out.String())
	}

	const n = 4
	var wg sync.WaitGroup
	bytesGot := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() { bytesGot[i], _, errs[i] = child() })
	}
	wg.Wait()
	var total int64
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("process %d: %v", i, errs[i])
		}
		total += bytesGot[i]
	}
	if total != size {
		t.Errorf("%d processes at once downloaded %v bytes in all, want the image's %d once", n, bytesGot, size)
	}
	for i := range 2 {
		got, ready, err := child()
		if err != nil {
			t.Fatal(err)
		}
		if got != 0 {
			t.Errorf("a later process downloaded %d bytes", got)
		}
		t.Logf("later process %d: ready in %v from the cache, %d bytes downloaded", i, ready, got)
	}
}
