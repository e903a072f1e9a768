// Package containertest runs sandboxes for go test, as net/http/httptest
// runs servers: a test starts a database or a service from an image in a
// container of its own, talks to it, and is sure that nothing of it
// outlives the test. No Docker daemon, no reaper container: the
// sandboxes are containers of the test binary itself.
//
//	func TestCache(t *testing.T) {
//		redis := containertest.Run(t, "docker-archive:/var/cache/berth/images/redis.tar",
//			containertest.WaitFor(containertest.ForListeningPort("6379")))
//		client := myredis.NewClient(redis.Endpoint(6379)) // "127.0.0.1:NNNNN"
//		...
//	}
//
// Run returns once the sandbox is ready and registers its removal with
// t.Cleanup, which happens whether the test passes, fails or panics; if
// the test binary is killed, the sandboxes' processes die with it and the
// next process to use the cache removes what they left on disk. When the
// test fails, the sandbox's last log lines are in the test's log; with
// go test -v its output is logged as it comes.
//
// Images come from a layer store kept on the machine (see CacheDir and
// Store) that every test binary of `go test ./...` opens at the same
// time, so an image is pulled and unpacked once per machine: from a
// registry, from a `docker save` archive ("docker-archive:PATH"), or
// made from the host's busybox (BusyboxImage).
//
// A sandbox has no network unless WithNetwork gives it one of the test's
// networks (NewNetwork), where the sandboxes reach each other by name.
// Either way the test reaches it: Dial and HTTPClient connect through the
// sandbox's network namespace, and Endpoint forwards a free loopback port
// of the host, so parallel tests never collide on ports.
//
// Wait strategies say when a sandbox is ready: a listening port
// (ForListeningPort reads the kernel's socket tables from the host, so
// images without a shell work), a log line (ForLog), an HTTP answer
// (ForHTTP), a command's success (ForExec), the image's HEALTHCHECK
// (ForHealthcheck), the end of a job (ForExit), and AllOf and AnyOf of
// them. A wait's timeout error shows the sandbox's last log lines.
//
// The package also provides what tests, examples and benchmarks need to
// get a container running without any image at all: a tiny root
// filesystem built from the host's static busybox (Debian's
// busybox-static).
package containertest

import (
	"github.com/berthlabs/berth/internal/busybox"
)

// ErrNoBusybox is returned when no static busybox is installed on the
// host (apt-get install busybox-static).
var ErrNoBusybox = busybox.ErrMissing

// BusyboxPath returns the host's static busybox: $BERTH_BUSYBOX when set,
// else /bin/busybox or /usr/bin/busybox when statically linked. It
// returns ErrNoBusybox when there is none.
func BusyboxPath() (string, error) { return busybox.Path() }

// BusyboxRootfs fills dir (created if missing) with a busybox root
// filesystem: /bin/busybox and a symlink per applet (/bin/sh, /bin/ls,
// httpd, nc, ...), /etc/passwd and /etc/group with root, app (1000) and
// nobody (65534), and the usual empty directories (/proc, /sys, /dev,
// /tmp, /run, /var, /root, /home/app). The result is about 2 MB.
func BusyboxRootfs(dir string) error { return busybox.Rootfs(dir) }

// TempBusyboxRootfs builds a busybox root filesystem in a new temporary
// directory and returns its path; the caller removes it with
// os.RemoveAll.
func TempBusyboxRootfs() (string, error) { return busybox.TempRootfs() }
