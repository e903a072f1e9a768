package containertest_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	digest "github.com/opencontainers/go-digest"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandboxes need root (namespaces, cgroups, mounts)")
	}
}

func busyboxImage(t testing.TB) string {
	t.Helper()
	needRoot(t)
	img, err := containertest.BusyboxImage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestHTTPSandbox(t *testing.T) {
	img := busyboxImage(t)
	start := time.Now()
	s := containertest.Run(t, img,
		containertest.WithFile("/www/index.html", []byte("hello\n"), 0o644),
		containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/www"),
		containertest.WaitFor(containertest.ForHTTP("/").WithPort(80)))
	t.Logf("ready in %v", time.Since(start))
	resp, err := s.HTTPClient().Get("http://busybox/index.html")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello\n" {
		t.Fatalf("body %q", b)
	}
	ep := s.Endpoint(80)
	if !strings.HasPrefix(ep, "127.0.0.1:") {
		t.Fatalf("endpoint %s", ep)
	}
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func readBlob(st *layer.Store, d string) ([]byte, error) {
	r, err := st.Content.Open(context.Background(), digest.Digest(d))
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestNetworkByName(t *testing.T) {
	img := busyboxImage(t)
	n := containertest.NewNetwork(t)
	containertest.Run(t, img, containertest.WithName("web"), containertest.WithNetwork(n, "www"),
		containertest.WithFile("/srv/index.html", []byte("from web\n"), 0o644),
		containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/srv"),
		containertest.WaitFor(containertest.ForListeningPort("80")))
	for _, host := range []string{"web", "www"} {
		c := containertest.Run(t, img, containertest.WithName("client-"+host), containertest.WithNetwork(n),
			containertest.WithCmd("wget", "-q", "-O", "-", "http://"+host+"/index.html"),
			containertest.WaitFor(containertest.ForExit()))
		if got := c.Logs(); got != "from web\n" {
			t.Errorf("wget http://%s/: %q", host, got)
		}
	}
}

func TestParallelEndpoints(t *testing.T) {
	img := busyboxImage(t)
	const n = 20
	addrs := make(chan string, n)
	t.Run("group", func(t *testing.T) {
		for i := range n {
			t.Run(strconv.Itoa(i), func(t *testing.T) {
				t.Parallel()
				body := fmt.Sprintf("sandbox %d\n", i)
				s := containertest.Run(t, img,
					containertest.WithFile("/www/index.html", []byte(body), 0o644),
					containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/www"),
					containertest.WaitFor(containertest.ForListeningPort("80")))
				ep := s.Endpoint(80)
				if again := s.Endpoint(80); again != ep {
					t.Errorf("second Endpoint(80) %s, first %s", again, ep)
				}
				addrs <- ep
				resp, err := http.Get("http://" + ep + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != body {
					t.Errorf("%s answered %q, want %q", ep, b, body)
				}
			})
		}
	})
	close(addrs)
	seen := map[string]bool{}
	for a := range addrs {
		if seen[a] {
			t.Errorf("endpoint %s given twice", a)
		}
		seen[a] = true
	}
}

func TestFiles(t *testing.T) {
	img := busyboxImage(t)
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "conf/sub"), 0o750)
	os.WriteFile(filepath.Join(src, "conf/app.conf"), []byte("port=1\n"), 0o640)
	os.Symlink("app.conf", filepath.Join(src, "conf/link"))
	os.Chown(filepath.Join(src, "conf/app.conf"), 1000, 1000)
	os.WriteFile(filepath.Join(src, "single"), []byte("one file\n"), 0o600)
	s := containertest.Run(t, img,
		containertest.WithFiles(
			containertest.File{Target: "/etc/app", HostPath: filepath.Join(src, "conf"), UID: -1, GID: -1},
			containertest.File{Target: "/opt/single", HostPath: filepath.Join(src, "single"), Mode: 0o644, UID: 1000, GID: 1000},
			containertest.File{Target: "/usr/local/bin/hello", Content: []byte("#!/bin/sh\necho hello\n"), Mode: 0o755, UID: 0, GID: 1000},
		),
		containertest.WithCmd("sleep", "100"))
	ctx := context.Background()
	for _, c := range []struct{ args, want string }{
		{"stat -c %a:%u:%g /etc/app /etc/app/app.conf /etc/app/sub /opt/single /usr/local/bin/hello",
			"750:0:0\n640:1000:1000\n750:0:0\n644:1000:1000\n755:0:1000\n"},
		{"readlink /etc/app/link", "app.conf\n"},
		{"cat /etc/app/link /opt/single", "port=1\none file\n"},
		{"/usr/local/bin/hello", "hello\n"},
	} {
		code, out, err := s.Exec(ctx, "sh", "-c", c.args)
		if err != nil || code != 0 || string(out) != c.want {
			t.Errorf("%s: code %d err %v output %q, want %q", c.args, code, err, out, c.want)
		}
	}
	// The sandbox has a copy: its writes do not reach the source.
	if code, out, err := s.Exec(ctx, "sh", "-c", "echo changed > /etc/app/app.conf"); err != nil || code != 0 {
		t.Fatalf("write: %d %v %s", code, err, out)
	}
	if b, _ := os.ReadFile(filepath.Join(src, "conf/app.conf")); string(b) != "port=1\n" {
		t.Errorf("the source changed: %q", b)
	}
}

// recorder is a testing.TB that keeps what is logged and runs its
// cleanups when told, to see what a failing test shows.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	logs     []string
	cleanups []func()
	failed   bool
}

func (r *recorder) Logf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.logs = append(r.logs, fmt.Sprintf(format, args...))
}
func (r *recorder) Cleanup(f func()) { r.cleanups = append(r.cleanups, f) }
func (r *recorder) Failed() bool     { return r.failed }
func (r *recorder) Errorf(format string, args ...any) {
	r.failed = true
	r.Logf(format, args...)
}
func (r *recorder) finish() {
	for i := len(r.cleanups) - 1; i >= 0; i-- {
		r.cleanups[i]()
	}
}

func TestFailedTestShowsLogs(t *testing.T) {
	img := busyboxImage(t)
	for _, failed := range []bool{false, true} {
		r := &recorder{TB: t, failed: failed}
		s, err := containertest.Start(context.Background(), r, img,
			containertest.WithCmd("sh", "-c", "for i in 1 2 3 4 5; do echo line $i; done; echo ready; exec sleep 100"),
			containertest.WithLogLines(3),
			containertest.WaitFor(containertest.ForLog("ready")))
		if err != nil {
			t.Fatal(err)
		}
		id := s.Container().ID()
		r.finish()
		got := strings.Join(r.logs, "\n")
		if failed != strings.Contains(got, "last 3 lines") {
			t.Errorf("failed=%v: logged %q", failed, got)
		}
		if failed && (!strings.Contains(got, "line 4\n  line 5\n  ready") || strings.Contains(got, "line 3")) {
			t.Errorf("logged %q, want the last 3 lines", got)
		}
		if slices.Contains(containertest.Live(), id) {
			t.Errorf("sandbox %s left after the test's cleanup", id)
		}
	}
}

func TestVolumes(t *testing.T) {
	img := busyboxImage(t)
	vol := containertest.NewVolume(t)
	ctx := context.Background()
	w := containertest.Run(t, img, containertest.WithVolume(vol, "/data"),
		containertest.WithCmd("sh", "-c", "echo first > /data/note"), containertest.WaitFor(containertest.ForExit()))
	w.Terminate(ctx)
	// A later sandbox finds it; two at once share it.
	a := containertest.Run(t, img, containertest.WithVolume(vol, "/data"), containertest.WithCmd("sleep", "100"))
	b := containertest.Run(t, img, containertest.WithVolume(vol, "/mnt/v", "ro"), containertest.WithCmd("sleep", "100"))
	if _, out, _ := b.Exec(ctx, "cat", "/mnt/v/note"); string(out) != "first\n" {
		t.Fatalf("a later sandbox reads %q", out)
	}
	if code, out, err := a.Exec(ctx, "sh", "-c", "echo second >> /data/note"); code != 0 || err != nil {
		t.Fatalf("append: %d %v %s", code, err, out)
	}
	if _, out, _ := b.Exec(ctx, "cat", "/mnt/v/note"); string(out) != "first\nsecond\n" {
		t.Fatalf("the other sandbox reads %q", out)
	}
	if code, _, _ := b.Exec(ctx, "sh", "-c", "echo x > /mnt/v/note"); code == 0 {
		t.Fatal("wrote through a read-only volume mount")
	}
}
