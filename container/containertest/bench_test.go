package containertest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
)

// forPing waits until redis answers PING, asked through the sandbox's
// network namespace.
var forPing = containertest.WaitFunc(func(ctx context.Context, s *containertest.Sandbox) error {
	for {
		if err := ping(ctx, s); err == nil {
			return nil
		} else if ctx.Err() != nil {
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		}
		time.Sleep(2 * time.Millisecond)
	}
})

func ping(ctx context.Context, s *containertest.Sandbox) error {
	c, err := s.Dial(ctx, "tcp", ":6379")
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}

// debianImage returns "docker-archive:PATH" of an image scripts/images.sh
// built, or skips.
func debianImage(tb testing.TB, name string) string {
	tb.Helper()
	dir, err := containertest.CacheDir()
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(dir, "images", name+".tar")
	if _, err := os.Stat(p); err != nil {
		tb.Skipf("no %s image (make images builds it): %v", name, err)
	}
	return "docker-archive:" + p
}

// BenchmarkRunReady is one sandbox from nothing running to ready, then
// removed: the number bench/sandbox.sh sets beside podman's.
func BenchmarkRunReady(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	run := func(b *testing.B, image string, opts ...containertest.Option) {
		// The first start brings the image into the cache and is not
		// timed: the peer's image is loaded beforehand too.
		s, err := containertest.New(ctx, image, opts...)
		if err != nil {
			b.Fatal(err)
		}
		s.Terminate(ctx)
		var ready []time.Duration
		b.ResetTimer()
		for b.Loop() {
			start := time.Now()
			s, err := containertest.New(ctx, image, opts...)
			if err != nil {
				b.Fatal(err)
			}
			ready = append(ready, time.Since(start))
			if err := s.Terminate(ctx); err != nil {
				b.Fatal(err)
			}
		}
		sort.Slice(ready, func(i, j int) bool { return ready[i] < ready[j] })
		b.ReportMetric(float64(ready[len(ready)/2].Microseconds())/1000, "ms-to-ready")
	}
	b.Run("httpd", func(b *testing.B) {
		img, err := containertest.BusyboxImage(ctx)
		if err != nil {
			b.Skip(err)
		}
		run(b, img, containertest.WithFile("/www/index.html", []byte("ok\n"), 0o644),
			containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/www"),
			containertest.WaitFor(containertest.ForHTTP("/").WithPort(80)))
	})
	b.Run("redis", func(b *testing.B) {
		run(b, debianImage(b, "redis"), containertest.WaitFor(forPing))
	})
}

// BenchmarkParallelReady is 20 sandboxes started at once, until all are
// ready (HTTP 200), then removed.
func BenchmarkParallelReady(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	img, err := containertest.BusyboxImage(ctx)
	if err != nil {
		b.Skip(err)
	}
	const n = 20
	var walls []time.Duration
	for b.Loop() {
		start := time.Now()
		boxes := make([]*containertest.Sandbox, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() {
				boxes[i], errs[i] = containertest.New(ctx, img,
					containertest.WithFile("/www/index.html", []byte("ok\n"), 0o644),
					containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/www"),
					containertest.WaitFor(containertest.ForHTTP("/").WithPort(80)))
			})
		}
		wg.Wait()
		walls = append(walls, time.Since(start))
		var failed []string
		for i, s := range boxes {
			if errs[i] != nil {
				failed = append(failed, errs[i].Error())
			}
			if s != nil {
				s.Terminate(ctx)
			}
		}
		if len(failed) > 0 {
			b.Fatal(strings.Join(failed, "\n"))
		}
	}
	sort.Slice(walls, func(i, j int) bool { return walls[i] < walls[j] })
	b.ReportMetric(float64(walls[len(walls)/2].Microseconds())/1000, "ms-all-20-ready")
}
