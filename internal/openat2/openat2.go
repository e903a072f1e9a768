// Package openat2 wraps openat2(2) with the retry its manual asks for:
// with RESOLVE_IN_ROOT or RESOLVE_BENEATH the kernel answers EAGAIN when
// a rename or mount anywhere on the system raced the lookup, which on a
// busy host (other containers starting) is a matter of time.
package openat2

import "golang.org/x/sys/unix"

// Open is unix.Openat2, retried on EAGAIN and EINTR (100 times at most).
func Open(dirfd int, path string, how *unix.OpenHow) (int, error) {
	for i := 0; ; i++ {
		fd, err := unix.Openat2(dirfd, path, how)
		if (err == unix.EAGAIN || err == unix.EINTR) && i < 100 {
			continue
		}
		return fd, err
	}
}
