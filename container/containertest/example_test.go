package containertest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthlabs/berth/container/containertest"
	goredis "github.com/redis/go-redis/v9"
)

// A busybox root filesystem to run containers on, without an image.
func ExampleTempBusyboxRootfs() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		fmt.Println(err) // containertest.ErrNoBusybox without busybox-static
		return
	}
	defer os.RemoveAll(rootfs)
	target, _ := os.Readlink(filepath.Join(rootfs, "bin/sh"))
	fmt.Println("/bin/sh ->", target)
	// Output: /bin/sh -> busybox
}

// A web server in a sandbox, asked through the sandbox's own HTTP
// client: no port is published on the host. In a test, Run(t, ...)
// does the same and removes the sandbox when the test ends. Needs root
// and a static busybox.
func ExampleNew() {
	ctx := context.Background()
	image, err := containertest.BusyboxImage(ctx)
	if err != nil {
		panic(err)
	}
	s, err := containertest.New(ctx, image,
		containertest.WithFile("/www/index.html", []byte("hello from a sandbox\n"), 0o644),
		containertest.WithCmd("httpd", "-f", "-p", "8080", "-h", "/www"),
		containertest.WaitFor(containertest.ForHTTP("/").WithPort(8080)))
	if err != nil {
		panic(err)
	}
	defer s.Terminate(ctx)

	resp, err := s.HTTPClient().Get("http://web:8080/index.html")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Status, ": ", string(body))
	// Output: 200 OK: hello from a sandbox
}

// A test of code that talks to redis, against the real thing: the image
// `make images` builds from Debian's redis-server package, started in a
// sandbox of the test's own, reached on a free loopback port. (Not run
// by go test: it needs that image; TestRedis runs the same.)
func ExampleRun_redis() {
	// In a test file: func TestCounter(t *testing.T) { ... } with t
	// the test's *testing.T.
	var t *testing.T

	cache, _ := containertest.CacheDir()
	redis := containertest.Run(t, "docker-archive:"+filepath.Join(cache, "images/redis.tar"),
		containertest.WaitFor(containertest.ForListeningPort("6379")))

	client := goredis.NewClient(&goredis.Options{Addr: redis.Endpoint(6379)})
	defer client.Close()
	n, err := client.Incr(context.Background(), "hits").Result()
	if err != nil || n != 1 {
		t.Fatalf("INCR hits: %d, %v", n, err)
	}
}
