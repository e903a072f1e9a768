package namespace

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"golang.org/x/sys/unix"
)

// ErrExists is returned, wrapped, by [Persist] when target already holds
// a namespace.
var ErrExists = errors.New("namespace: target already holds a namespace")

// Persist keeps the namespace of kind k that process pid is in alive past
// its processes, by bind-mounting /proc/PID/ns/KIND onto target, as
// `ip netns add` and `unshare --net=FILE` do. Missing parent directories
// of target and target itself (an empty file) are created; [Release]
// undoes the mount and removes the file, but not the directories. Open
// the namespace again later with [Open] on target.
//
// pid must stay the same process until Persist returns: for a child of
// the caller, call it before Wait. [Namespace.Persist] persists an open
// handle without that race.
//
// Any mount may hold the target for every kind but Mount. A mount
// namespace cannot be bind-mounted onto a mount that propagates into that
// same namespace (the kernel refuses, to avoid reference loops): put such
// targets on a private mount, e.g. a directory bind-mounted onto itself
// and made private with `mount --make-private`. For network namespaces
// that other tools should find (`ip netns exec NAME`), use
// /run/netns/NAME; `ip netns` also makes /run/netns a shared mount so
// that namespaces added later are seen in mount namespaces made earlier,
// and Persist leaves that to the caller.
func Persist(pid int, k Kind, target string) error {
	if !k.valid() {
		return fmt.Errorf("namespace: persist pid %d to %s: invalid kind %v", pid, target, k)
	}
	if err := bind(ProcPath(pid, k), target); err != nil {
		return fmt.Errorf("namespace: persist %v namespace of pid %d: %w%s", k, pid, err, mountHint(k, err))
	}
	return nil
}

// Persist bind-mounts the namespace onto target, like [Persist] does
// for a process's namespace, so that it outlives this handle.
func (n *Namespace) Persist(target string) error {
	err := bind("/proc/self/fd/"+strconv.Itoa(n.Fd()), target)
	runtime.KeepAlive(n)
	if err != nil {
		return fmt.Errorf("namespace: persist %v: %w%s", n, err, mountHint(n.kind, err))
	}
	return nil
}

// mountHint explains the likely cause of EINVAL from bind-mounting a
// mount namespace.
func mountHint(k Kind, err error) string {
	if k != Mount || !errors.Is(err, unix.EINVAL) {
		return ""
	}
	return " (a mount namespace cannot be bind-mounted onto a mount that propagates into it; use a private mount for the target)"
}

// bind bind-mounts the namespace file src onto target, creating target
// (and its parents) if missing and removing what it created on failure.
func bind(src, target string) error {
	var sfs unix.Statfs_t
	if err := unix.Statfs(target, &sfs); err == nil && sfs.Type == unix.NSFS_MAGIC {
		return fmt.Errorf("bind onto %s: %w", target, ErrExists)
	}
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		return fmt.Errorf("bind onto %s: %w", target, err)
	}
	created := false
	f, err := os.OpenFile(target, os.O_RDONLY|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o444)
	switch {
	case err == nil:
		created = true
		f.Close()
	case !errors.Is(err, fs.ErrExist):
		return fmt.Errorf("bind onto %s: create: %w", target, err)
	}
	if err := unix.Mount(src, target, "", unix.MS_BIND, ""); err != nil {
		if created {
			os.Remove(target)
		}
		return fmt.Errorf("bind %s onto %s: %w", src, target, err)
	}
	return nil
}

// Release undoes [Persist]: it unmounts the namespace bind mount at target
// (lazily, MNT_DETACH, so open handles keep working) and removes the
// file. The namespace itself ends once nothing else refers to it. Release
// of a target that does not exist returns nil; of one that is not a
// namespace bind mount, an error wrapping [ErrNotNamespace] (a plain
// file) or the unmount error (a /proc/PID/ns file), leaving it alone.
func Release(target string) error {
	for i := 0; ; i++ {
		var sfs unix.Statfs_t
		err := unix.Statfs(target, &sfs)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("namespace: release %s: statfs: %w", target, err)
		}
		if sfs.Type != unix.NSFS_MAGIC {
			if i == 0 {
				return fmt.Errorf("namespace: release %s: %w", target, ErrNotNamespace)
			}
			break
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			return fmt.Errorf("namespace: release %s: unmount: %w", target, err)
		}
	}
	if err := os.Remove(target); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("namespace: release %s: %w", target, err)
	}
	return nil
}
