package namespace

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ErrNotNamespace is returned, wrapped, when a path or file that should
// be a namespace (a /proc/PID/ns file or a bind mount of one) is not.
var ErrNotNamespace = errors.New("namespace: not a namespace file")

// ErrMultiThreaded is returned by [Namespace.Enter] and [Do] for a mount,
// user or time namespace: the kernel lets only a single-threaded process
// join those, and a Go process always has several threads. berth runs
// such work inside a process that is already in the namespace (the
// container's own init, which forks it there) instead.
var ErrMultiThreaded = errors.New("namespace: a multi-threaded Go process cannot join a mount, user or time namespace; " +
	"berth runs such work inside the container's own init instead")

// Namespace is an open handle (a file descriptor) on one namespace. While
// it is open the namespace stays alive, even with no process in it. A
// Namespace is safe for concurrent use; Close it when done.
type Namespace struct {
	f    *os.File
	kind Kind
	dev  uint64
	ino  uint64
}

// Open opens the namespace file at path: a /proc/PID/ns/KIND file, a bind
// mount of one (see [Persist]), or /proc/self/fd/N for a descriptor on
// one. Its kind is asked of the kernel (ioctl NS_GET_NSTYPE). A path that
// is not a namespace gives an error wrapping [ErrNotNamespace].
func Open(path string) (*Namespace, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	n, err := fromFile(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("namespace: open %s: %w", path, err)
	}
	return n, nil
}

// fromFile makes a Namespace of an open file, checking that it is one.
func fromFile(f *os.File) (*Namespace, error) {
	fd := int(f.Fd())
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(fd, &sfs); err != nil {
		return nil, fmt.Errorf("fstatfs: %w", err)
	}
	if sfs.Type != unix.NSFS_MAGIC {
		return nil, ErrNotNamespace
	}
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return nil, fmt.Errorf("ioctl NS_GET_NSTYPE: %w", err)
	}
	k, ok := kindOfCloneFlag(uintptr(t))
	if !ok {
		return nil, fmt.Errorf("unknown namespace type %#x", t)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("fstat: %w", err)
	}
	return &Namespace{f: f, kind: k, dev: st.Dev, ino: st.Ino}, nil
}

// OpenPID opens the namespace of kind k that process pid is in. An error
// wrapping [os.ErrNotExist] means there is no such process (or the kernel
// lacks that kind of namespace).
func OpenPID(pid int, k Kind) (*Namespace, error) {
	return openKind(ProcPath(pid, k), k)
}

// Current opens the calling OS thread's namespace of kind k
// (/proc/thread-self/ns/KIND). Unless the goroutine has called
// [runtime.LockOSThread], that is whichever thread it happens to run on;
// all threads share the process's namespaces except while one is inside
// [Do].
func Current(k Kind) (*Namespace, error) {
	if !k.valid() {
		return nil, fmt.Errorf("namespace: open current: invalid kind %v", k)
	}
	return openKind("/proc/thread-self/ns/"+k.String(), k)
}

func openKind(path string, k Kind) (*Namespace, error) {
	n, err := Open(path)
	if err != nil {
		return nil, err
	}
	if n.kind != k {
		n.Close()
		return nil, fmt.Errorf("namespace: open %s: is a %v namespace, want %v", path, n.kind, k)
	}
	return n, nil
}

// Kind returns the namespace's kind.
func (n *Namespace) Kind() Kind { return n.kind }

// Fd returns the open file descriptor, valid until Close. It is close-on-exec.
func (n *Namespace) Fd() int { return int(n.f.Fd()) }

// Inode returns the namespace's inode number, the number in "net:[N]".
// Together with the device (the same for all namespaces on one kernel)
// it identifies the namespace; use [Namespace.Equal] to compare.
func (n *Namespace) Inode() uint64 { return n.ino }

// Equal reports whether n and o are handles on the same namespace.
func (n *Namespace) Equal(o *Namespace) bool {
	if n == nil || o == nil {
		return n == o
	}
	return n.dev == o.dev && n.ino == o.ino
}

// String returns the namespace as readlink of /proc/PID/ns/KIND shows it:
// "net:[4026531840]".
func (n *Namespace) String() string {
	return fmt.Sprintf("%v:[%d]", n.kind, n.ino)
}

// Close closes the handle. The namespace itself lives on while any
// process, handle or bind mount still refers to it.
func (n *Namespace) Close() error {
	if err := n.f.Close(); err != nil {
		return fmt.Errorf("namespace: close %v: %w", n, err)
	}
	return nil
}

// Enter moves the calling OS thread into the namespace with setns(2).
// The caller must hold [runtime.LockOSThread] and must put the thread back
// (or let it die by never unlocking it) before the goroutine unlocks;
// [Do] does all of that and is what most callers want.
//
// Entering a PID namespace changes only the namespace of the thread's
// future children. For a mount, user or time namespace Enter returns
// [ErrMultiThreaded] without trying.
func (n *Namespace) Enter() error {
	switch n.kind {
	case Mount, User, Time:
		return fmt.Errorf("namespace: enter %v: %w", n, ErrMultiThreaded)
	}
	if err := unix.Setns(n.Fd(), int(n.kind.CloneFlag())); err != nil {
		if errors.Is(err, unix.EUSERS) {
			err = ErrMultiThreaded
		}
		return fmt.Errorf("namespace: enter %v: setns: %w", n, err)
	}
	return nil
}
