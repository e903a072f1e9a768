// Package containertest provides what tests, examples and benchmarks of
// programs that embed berth need to get a container running without an
// image registry: a tiny root filesystem built from the host's static
// busybox (Debian's busybox-static), as net/http/httptest provides a
// server for tests of net/http code.
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
