package containertest_test

import (
	"context"
	"io"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("sandboxes need root (namespaces, cgroups, mounts)")
	}
}

func busybox(t testing.TB) string {
	t.Helper()
	needRoot(t)
	img, err := containertest.BusyboxImage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func TestHTTPSandbox(t *testing.T) {
	img := busybox(t)
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
