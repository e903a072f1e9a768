package containertest_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
	"github.com/jackc/pgx/v5"
)

// pingConn asks redis PING on c.
func pingConn(c net.Conn) error {
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
// removed: the figures bench/sandbox.sh sets beside podman's. Ready is
// what podman's side checks too: the service answers through a port
// published on the host's loopback (Endpoint), polled until it does.
func BenchmarkRunReady(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	run := func(b *testing.B, image string, port uint16, answers func(ctx context.Context, addr string) error, opts ...containertest.Option) {
		once := func() (ready, total time.Duration) {
			start := time.Now()
			s, err := containertest.New(ctx, image, opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer s.Terminate(ctx)
			addr, err := s.Forward(port)
			if err != nil {
				b.Fatal(err)
			}
			for tries := 0; ; tries++ {
				err := answers(ctx, addr)
				if err == nil {
					break
				}
				if tries > 5000 {
					b.Fatalf("%s not ready: %v\n%s", image, err, s.Logs())
				}
				time.Sleep(time.Millisecond)
			}
			ready = time.Since(start)
			if err := s.Terminate(ctx); err != nil {
				b.Fatal(err)
			}
			return ready, time.Since(start)
		}
		// The first start brings the image into the cache and is not
		// timed: the peer's images are loaded beforehand too.
		once()
		var readies, totals []time.Duration
		b.ResetTimer()
		for b.Loop() {
			r, t := once()
			readies, totals = append(readies, r), append(totals, t)
		}
		b.ReportMetric(medianMS(readies), "ms-ready")
		b.ReportMetric(medianMS(totals), "ms-total")
	}
	b.Run("httpd", func(b *testing.B) {
		img, err := containertest.BusyboxImage(ctx)
		if err != nil {
			b.Skip(err)
		}
		run(b, img, 80, httpOK, containertest.WithFile("/www/index.html", []byte("hello from busybox httpd\n"), 0o644),
			containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/www"))
	})
	b.Run("redis", func(b *testing.B) {
		run(b, debianImage(b, "redis"), 6379, pingAt)
	})
	b.Run("postgres", func(b *testing.B) {
		run(b, debianImage(b, "postgres"), 5432, selectOne)
	})
}

func medianMS(d []time.Duration) float64 {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return float64(d[len(d)/2].Microseconds()) / 1000
}

func httpOK(ctx context.Context, addr string) error {
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("status %s", resp.Status)
	}
	return nil
}

func pingAt(ctx context.Context, addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	return pingConn(c)
}

func selectOne(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, "postgres://postgres@"+addr+"/postgres?sslmode=disable")
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	var one int
	return conn.QueryRow(ctx, "select 1").Scan(&one)
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
