package containertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/namespace"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// shellless returns an image holding only /busybox: no shell, no
// applet links, nothing a shell-based port check could run.
func shellless(t *testing.T) string {
	t.Helper()
	needRoot(t)
	ctx := context.Background()
	st, err := containertest.Store()
	if err != nil {
		t.Fatal(err)
	}
	bb, err := busybox.Path()
	if err != nil {
		t.Skip(err)
	}
	dir := t.TempDir()
	b, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "busybox"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(filepath.Join(dir, "www"), 0o755)
	name := "berth.test/shellless:" + digestOf(b)[:16]
	if _, err := st.Content.Resolve(ctx, name); err == nil {
		return name
	}
	cfg := ocispec.ImageConfig{Entrypoint: []string{"/busybox"}, Cmd: []string{"httpd", "-f", "-p", "8080", "-h", "/www"},
		ExposedPorts: map[string]struct{}{"8080/tcp": {}}}
	if _, err := st.ImportDirs(ctx, name, cfg, dir); err != nil {
		t.Fatal(err)
	}
	return name
}

// withHealthcheck returns a copy of image whose config has Docker's
// Healthcheck with test.
func withHealthcheck(t *testing.T, image string, test ...string) string {
	t.Helper()
	ctx := context.Background()
	st, err := containertest.Store()
	if err != nil {
		t.Fatal(err)
	}
	desc, err := st.Content.Resolve(ctx, image)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := st.Content.Manifest(ctx, desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := readBlob(st, m.Config.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := json.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	c := cfg["config"].(map[string]any)
	c["Healthcheck"] = map[string]any{"Test": test, "Interval": int64(30 * time.Second), "Timeout": int64(time.Second), "Retries": 3}
	b, _ := json.Marshal(cfg)
	cd, err := st.Content.Put(ctx, m.Config.MediaType, strings.NewReader(string(b)), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Config = cd
	mb, _ := json.Marshal(m)
	md, err := st.Content.Put(ctx, ocispec.MediaTypeImageManifest, strings.NewReader(string(mb)), "")
	if err != nil {
		t.Fatal(err)
	}
	name := "berth.test/health:" + md.Digest.Encoded()[:16]
	if err := st.Content.Tag(ctx, name, md); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestWaitStrategies(t *testing.T) {
	img := busyboxImage(t)
	sh := func(script string) containertest.Option { return containertest.WithCmd("sh", "-c", script) }
	cases := []struct {
		name  string
		image func(t *testing.T) string
		opts  []containertest.Option
	}{
		{"port on an image without a shell", shellless, []containertest.Option{
			containertest.WaitFor(containertest.ForListeningPort("8080/tcp"))}},
		{"exposed ports", shellless, []containertest.Option{
			containertest.WaitFor(containertest.ForExposedPorts())}},
		{"log occurrence", nil, []containertest.Option{sh("echo ready; sleep 0.05; echo not; echo ready >&2; exec sleep 100"),
			containertest.WaitFor(containertest.ForLog("^ready$").WithOccurrence(2))}},
		{"http status and body", nil, []containertest.Option{
			containertest.WithFile("/www/x/index.html", []byte("it works\n"), 0o644),
			sh("sleep 0.1; exec httpd -f -p 8000 -h /www"),
			containertest.WaitFor(containertest.ForHTTP("/nope").WithPort(8000).WithStatus(404),
				containertest.ForHTTP("/x/").WithPort(8000).WithBody("it w.rks"))}},
		{"exec", nil, []containertest.Option{sh("sleep 0.1; touch /tmp/ok; exec sleep 100"),
			containertest.WaitFor(containertest.ForExec("test", "-f", "/tmp/ok"))}},
		{"healthcheck CMD-SHELL", func(t *testing.T) string {
			return withHealthcheck(t, img, "CMD-SHELL", "test -f /tmp/healthy")
		}, []containertest.Option{sh("sleep 0.1; touch /tmp/healthy; exec sleep 100"),
			containertest.WaitFor(containertest.ForHealthcheck())}},
		{"exit", nil, []containertest.Option{sh("exit 3"),
			containertest.WaitFor(containertest.ForExit().WithExitCode(3))}},
		{"all of", nil, []containertest.Option{sh("echo up; exec httpd -f -p 81 -h /"),
			containertest.WaitFor(containertest.AllOf(containertest.ForLog("up"), containertest.ForListeningPort("81")))}},
		{"any of", nil, []containertest.Option{sh("exec httpd -f -p 82 -h /"),
			containertest.WaitFor(containertest.AnyOf(
				containertest.ForLog("never").WithTimeout(10*time.Second),
				containertest.ForListeningPort("82")))}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			image := img
			if tc.image != nil {
				image = tc.image(t)
			}
			start := time.Now()
			containertest.Run(t, image, tc.opts...)
			t.Logf("ready in %v", time.Since(start))
		})
	}
}

func TestWaitFailures(t *testing.T) {
	img := busyboxImage(t)
	sh := func(script string) containertest.Option { return containertest.WithCmd("sh", "-c", script) }
	cases := []struct {
		name string
		opts []containertest.Option
		want []string
	}{
		{"port never opens", []containertest.Option{sh("echo starting up; exec sleep 100"),
			containertest.WaitFor(containertest.ForListeningPort("81").WithTimeout(300 * time.Millisecond))},
			[]string{"wait for port 81/tcp", "not ready after", "starting up"}},
		{"log line never comes", []containertest.Option{sh("echo one; exec sleep 100"),
			containertest.WaitFor(containertest.ForLog("two").WithTimeout(200 * time.Millisecond))},
			[]string{`wait for log line "two"`, "not ready after", "0 of 1", "one"}},
		{"exits first", []containertest.Option{sh("echo boom >&2; exit 7"),
			containertest.WaitFor(containertest.ForListeningPort("80"))},
			[]string{"ended before it was ready", "exit status 7", "boom"}},
		{"exit code differs", []containertest.Option{sh("exit 2"),
			containertest.WaitFor(containertest.ForExit())},
			[]string{"exit status 2"}},
		{"exec program missing", []containertest.Option{sh("exec sleep 100"),
			containertest.WaitFor(containertest.ForExec("/no/such/program"))},
			[]string{"/no/such/program"}},
		{"no healthcheck", []containertest.Option{sh("exec sleep 100"),
			containertest.WaitFor(containertest.ForHealthcheck())},
			[]string{"has no HEALTHCHECK"}},
		{"HTTP port not given", []containertest.Option{sh("exec sleep 100"),
			containertest.WaitFor(containertest.ForHTTP("/"))},
			[]string{"exposes 0 TCP ports", "WithPort"}},
		{"all of fails with one", []containertest.Option{sh("exec httpd -f -p 83 -h /"),
			containertest.WaitFor(containertest.AllOf(containertest.ForListeningPort("83"),
				containertest.ForLog("never").WithTimeout(200*time.Millisecond)))},
			[]string{`wait for log line "never"`}},
		{"startup timeout", []containertest.Option{sh("exec sleep 100"), containertest.WithStartupTimeout(300 * time.Millisecond),
			containertest.WaitFor(containertest.ForListeningPort("84"))},
			[]string{"not ready after", "deadline exceeded"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, err := containertest.Start(context.Background(), t, img, tc.opts...)
			if err == nil {
				t.Fatalf("started %s", s.Name())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
	t.Cleanup(func() {
		if live := containertest.Live(); len(live) > 0 {
			t.Errorf("sandboxes left after failed starts: %v", live)
		}
	})
}

func TestBadInput(t *testing.T) {
	img := busyboxImage(t)
	cases := []struct {
		name  string
		image string
		opts  []containertest.Option
		want  string
		is    error
	}{
		{"image that does not exist", "127.0.0.1:1/no/such:image", nil, "127.0.0.1:1/no/such:image", nil},
		{"malformed image", "UPPER/case::x", nil, "invalid", content.ErrInvalid},
		{"archive missing", "docker-archive:/no/such.tar", nil, "/no/such.tar", os.ErrNotExist},
		{"file source missing", img, []containertest.Option{containertest.WithFiles(containertest.File{Target: "/etc/x", HostPath: "/no/such/file"})}, "the source to copy", os.ErrNotExist},
		{"file target relative", img, []containertest.Option{containertest.WithFile("etc/x", nil, 0)}, "absolute path", nil},
		{"bad log pattern", img, []containertest.Option{containertest.WaitFor(containertest.ForLog("(unclosed"))}, "log pattern", nil},
		{"bad occurrence", img, []containertest.Option{containertest.WaitFor(containertest.ForLog("x").WithOccurrence(0))}, "occurrence 0", nil},
		{"bad port", img, []containertest.Option{containertest.WaitFor(containertest.ForListeningPort("http"))}, `port "http"`, nil},
		{"bad protocol", img, []containertest.Option{containertest.WaitFor(containertest.ForListeningPort("80/sctp"))}, "protocol", nil},
		{"bad HTTP path", img, []containertest.Option{containertest.WaitFor(containertest.ForHTTP("index.html"))}, "starting with /", nil},
		{"bad HTTP status", img, []containertest.Option{containertest.WaitFor(containertest.ForHTTP("/").WithStatus(42))}, "status 42", nil},
		{"exec without command", img, []containertest.Option{containertest.WaitFor(containertest.ForExec())}, "no command", nil},
		{"empty all of", img, []containertest.Option{containertest.WaitFor(containertest.AllOf())}, "no strategies", nil},
		{"nil strategy", img, []containertest.Option{containertest.WaitFor(nil)}, "nil", nil},
		{"bad name", img, []containertest.Option{containertest.WithName("no_underscores")}, "DNS label", nil},
		{"aliases without network", img, []containertest.Option{containertest.WithNetwork(nil, "x")}, "without WithNetwork", nil},
		{"no such program", img, []containertest.Option{containertest.WithCmd("/no/such/program")}, "/no/such/program", nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			_, err := containertest.Start(ctx, t, tc.image, tc.opts...)
			if err == nil {
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q lacks %q", err, tc.want)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %q does not match %v", err, tc.is)
			}
		})
	}
	t.Cleanup(func() {
		if live := containertest.Live(); len(live) > 0 {
			t.Errorf("sandboxes left after failed starts: %v", live)
		}
	})
}

func TestUnusableCache(t *testing.T) {
	needRoot(t)
	t.Setenv(containertest.CacheEnv, "/proc/berth-cache")
	_, err := containertest.Start(context.Background(), t, "busybox")
	if err == nil || !strings.Contains(err.Error(), "cache directory /proc/berth-cache is not usable") || !strings.Contains(err.Error(), containertest.CacheEnv) {
		t.Fatalf("got %v", err)
	}
}

// A UDP socket: busybox has no UDP server to run, so the test opens one
// in the sandbox's network namespace; the wait reads the same kernel
// table either way.
func TestWaitUDPPort(t *testing.T) {
	img := busyboxImage(t)
	s := containertest.Run(t, img, containertest.WithCmd("sleep", "100"))
	ns, err := namespace.OpenPID(s.Container().Pid(), namespace.Net)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	ctx := context.Background()
	wait := containertest.ForListeningPort("5353/udp").WithTimeout(100 * time.Millisecond)
	if err := s.WaitFor(ctx, wait); err == nil || !strings.Contains(err.Error(), "not ready after") {
		t.Fatalf("before the socket: %v", err)
	}
	pc, err := network.ListenPacket(ctx, ns, "udp", "0.0.0.0:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	if err := s.WaitFor(ctx, containertest.ForListeningPort("5353/udp").WithTimeout(time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := s.WaitFor(ctx, containertest.ForListeningPort("5353/tcp").WithTimeout(50*time.Millisecond)); err == nil {
		t.Fatal("a UDP socket satisfied a TCP port wait")
	}
}
