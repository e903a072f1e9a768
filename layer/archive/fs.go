package archive

import (
	"errors"
	"fmt"
	safeopen "github.com/berthlabs/berth/internal/openat2"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	// resolveInRoot resolves a whole path inside the root descriptor:
	// "/" and ".." stop at the root, symlinks resolve as in a chroot,
	// magic links and other mounts are refused.
	resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV
	// resolveHere opens one component in a directory already resolved,
	// following nothing.
	resolveHere = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

	// maxCachedDirs bounds the open directory descriptors Apply keeps.
	maxCachedDirs = 256
)

// openat2 is unix.Openat2 with O_CLOEXEC, retried on EINTR and on the
// EAGAIN that RESOLVE_IN_ROOT returns when a rename raced the lookup.
func openat2(dirfd int, p string, flags, mode, resolve uint64) (int, error) {
	how := unix.OpenHow{Flags: flags | unix.O_CLOEXEC, Mode: mode, Resolve: resolve}
	fd, err := safeopen.Open(dirfd, p, &how)
	if err == unix.ENOSYS {
		return -1, errors.New("openat2 is not available (Linux 5.6 or later is needed)")
	}
	return fd, err
}

// cleanName turns a tar entry name into a path relative to the root with
// no empty, "." or ".." components: a leading "/" is dropped, a ".."
// component is refused. The root itself is "".
func cleanName(name string) (string, error) {
	if strings.IndexByte(name, 0) >= 0 {
		return "", unsafeErr("name has a NUL byte")
	}
	clean := true
	for rest := name; ; {
		c, more, found := strings.Cut(rest, "/")
		switch c {
		case "", ".":
			clean = false
		case "..":
			if c := path.Clean(strings.TrimLeft(name, "/")); c == ".." || strings.HasPrefix(c, "../") {
				return "", unsafeErr("path escapes the layer root")
			}
			return "", unsafeErr("path has a \"..\" component")
		}
		if !found {
			break
		}
		rest = more
	}
	if clean {
		return name, nil // the common case, without allocating
	}
	parts := strings.Split(name, "/")
	out := parts[:0]
	for _, c := range parts {
		if c != "" && c != "." {
			out = append(out, c)
		}
	}
	return strings.Join(out, "/"), nil
}

// split returns the parent directory ("" for the root) and last component
// of a clean path.
func split(p string) (dir, base string) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", p
	}
	return p[:i], p[i+1:]
}

// tree is the root of an Apply: a descriptor of it and a cache of
// descriptors of the directories below it, keyed by clean path.
type tree struct {
	fd      int
	dirs    map[string]int
	retired []int // descriptors dropped from dirs, closed at the end of the entry
}

func openTree(dir string) (*tree, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("archive: open %s: %w", dir, err)
	}
	return &tree{fd: fd, dirs: make(map[string]int)}, nil
}

func (t *tree) close() {
	t.forget()
	t.endEntry()
	unix.Close(t.fd)
}

// forget drops every cached directory. It is called whenever something is
// removed, since a path may resolve elsewhere afterwards. Descriptors the
// current entry holds stay open until endEntry.
func (t *tree) forget() {
	for _, fd := range t.dirs {
		t.retired = append(t.retired, fd)
	}
	clear(t.dirs)
}

// endEntry closes the descriptors forgotten while working on an entry.
func (t *tree) endEntry() {
	for _, fd := range t.retired {
		unix.Close(fd)
	}
	t.retired = t.retired[:0]
}

func (t *tree) remember(p string, fd int) {
	if old, ok := t.dirs[p]; ok {
		t.retired = append(t.retired, old)
	} else if len(t.dirs) >= maxCachedDirs {
		t.forget()
	}
	t.dirs[p] = fd
}

// dir returns a descriptor of directory p (resolved inside the root),
// owned by the tree and valid until the end of the current entry.
func (t *tree) dir(p string) (int, error) {
	if p == "" {
		return t.fd, nil
	}
	if fd, ok := t.dirs[p]; ok {
		return fd, nil
	}
	fd, err := openat2(t.fd, p, unix.O_PATH|unix.O_DIRECTORY, 0, resolveInRoot)
	if err != nil {
		return -1, err
	}
	t.remember(p, fd)
	return fd, nil
}

// mkdirAll is dir, creating missing directories (mode 0755) on the way.
func (t *tree) mkdirAll(p string) (int, error) {
	fd, err := t.dir(p)
	if err != unix.ENOENT {
		return fd, err
	}
	parent, base := split(p)
	pfd, err := t.mkdirAll(parent)
	if err != nil {
		return -1, err
	}
	if err := unix.Mkdirat(pfd, base, 0o755); err != nil && err != unix.EEXIST {
		return -1, err
	}
	if fd, err := openat2(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveHere); err == nil {
		unix.Fchmod(fd, 0o755) // not subject to the umask
		t.remember(p, fd)
		return fd, nil
	}
	// Something else is there: a dangling symlink, say. Resolve it the
	// normal way for the error.
	return t.dir(p)
}

// removeAt removes name in directory dirfd, and everything under it if it
// is a directory, never following symlinks.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || err == unix.ENOENT {
		return nil
	}
	if err != unix.EISDIR && err != unix.EPERM {
		return err
	}
	fd, err2 := openat2(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveHere)
	if err2 == unix.ENOTDIR || err2 == unix.ELOOP {
		return err // not a directory: the unlink's error stands
	}
	if err2 != nil {
		return err2
	}
	names, err := readNames(fd)
	if err == nil {
		for _, n := range names {
			err = removeAt(fd, n)
			if err == unix.EACCES || err == unix.EPERM {
				// A read-only directory of the caller's own, unprivileged.
				unix.Fchmod(fd, 0o700)
				err = removeAt(fd, n)
			}
			if err != nil {
				break
			}
		}
	}
	unix.Close(fd)
	if err != nil {
		return err
	}
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// readNames lists a directory open for reading, without "." and "..".
func readNames(fd int) ([]string, error) {
	buf := make([]byte, 32<<10)
	var names []string
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			return names, nil
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
}

// writeAll writes b to fd.
func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return unix.EIO
		}
		b = b[n:]
	}
	return nil
}
