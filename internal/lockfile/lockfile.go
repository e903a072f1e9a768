// Package lockfile takes flock(2) locks on files, waiting for them under a
// context, and names the processes that own what they leave on disk.
//
// An flock belongs to an open file description: two opens of one file
// conflict even in one process, so each operation that locks opens its
// own File. The kernel drops the lock when the last descriptor of it is
// closed, which includes the death of the process, so a lock that can be
// taken has no live owner.
//
// Lock files may be removed: whoever holds the lock exclusively may unlink
// the file (Remove), and a waiter that then gets the lock of the unlinked
// file sees it is stale and opens the path again.
package lockfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Modes of a lock.
const (
	// Shared locks are held by many at once.
	Shared = unix.LOCK_SH
	// Exclusive locks are held by one at a time.
	Exclusive = unix.LOCK_EX
)

// ErrGone means the lock file does not exist (OpenFlags without
// os.O_CREATE) or was removed by its holder.
var ErrGone = errors.New("lock file is gone")

// maxDelay is the longest pause between two tries of a lock.
const maxDelay = 20 * time.Millisecond

// File is a locked lock file.
type File struct {
	f    *os.File
	path string
}

// Lock opens path (creating it when create is set) and locks it in mode,
// trying again after short pauses until it gets the lock or ctx is done. A
// file removed meanwhile by its holder is opened again; without create,
// a missing file is ErrGone.
func Lock(ctx context.Context, path string, mode int, create bool) (*File, error) {
	return lock(ctx, path, mode, create, true)
}

// TryLock is Lock without waiting: it returns nil, nil when someone else
// holds a conflicting lock.
func TryLock(path string, mode int, create bool) (*File, error) {
	return lock(context.Background(), path, mode, create, false)
}

func lock(ctx context.Context, path string, mode int, create, wait bool) (*File, error) {
	flags := os.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW
	if create {
		flags = os.O_RDWR | os.O_CREATE | unix.O_CLOEXEC | unix.O_NOFOLLOW
	}
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		f, err := os.OpenFile(path, flags, 0o600)
		if errors.Is(err, os.ErrNotExist) && !create {
			return nil, ErrGone
		}
		if err != nil {
			return nil, err
		}
		ok, err := flockWait(ctx, f, mode, wait)
		if err != nil || !ok {
			f.Close()
			return nil, err
		}
		// The holder before us may have removed the file.
		if same(f, path) {
			return &File{f: f, path: path}, nil
		}
		f.Close()
		if !create {
			return nil, ErrGone
		}
	}
}

// same reports whether path still names the file f has open.
func same(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Lstat(path, &b) != nil {
		return false
	}
	return a.Dev == b.Dev && a.Ino == b.Ino
}

// flockWait locks f in mode, polling while it is taken when wait is set.
func flockWait(ctx context.Context, f *os.File, mode int, wait bool) (bool, error) {
	for delay := 100 * time.Microsecond; ; {
		err := unix.Flock(int(f.Fd()), mode|unix.LOCK_NB)
		if err == nil {
			return true, nil
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			return false, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		if !wait {
			return false, nil
		}
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, ctx.Err()
		}
		delay = min(2*delay, maxDelay)
	}
}

// Fd returns the file descriptor of the lock.
func (l *File) Fd() uintptr { return l.f.Fd() }

// Unlock releases the lock. It may be called more than once.
func (l *File) Unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}

// Remove unlinks the lock file and releases the lock: waiters for it open
// the path afresh. Only the holder of an exclusive lock may call it.
func (l *File) Remove() {
	if l != nil && l.f != nil {
		os.Remove(l.path)
		l.Unlock()
	}
}

// Convert changes the mode of a held lock without waiting (the kernel
// drops the old lock before it takes the new one); false means another
// process took a conflicting lock in between and the lock is not held.
func (l *File) Convert(ctx context.Context, mode int, wait bool) (bool, error) {
	return flockWait(ctx, l.f, mode, wait)
}
