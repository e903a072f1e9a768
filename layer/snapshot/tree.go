package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// inode identifies a file, to find the other names of a hard link.
type inode struct{ dev, ino uint64 }

// copier copies a directory tree the way Copy needs it.
type copier struct {
	ctx     context.Context
	noClone *atomic.Bool
	links   map[inode]string // the copy of the first name of each hard link
	n       int
}

// copyTree copies the tree at src to dst, which must not exist, keeping
// hard links, symbolic links, special files, extended attributes, modes,
// owners and times. File data is cloned with FICLONE unless noClone is set;
// noClone is set when the filesystem cannot.
func copyTree(ctx context.Context, src, dst string, noClone *atomic.Bool) error {
	var st unix.Stat_t
	if err := unix.Lstat(src, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: src, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("copy %s: not a directory", src)
	}
	c := &copier{ctx: ctx, noClone: noClone, links: make(map[inode]string)}
	return c.copy(src, dst, &st)
}

func (c *copier) copy(src, dst string, st *unix.Stat_t) error {
	if c.n++; c.n%256 == 0 {
		if err := c.ctx.Err(); err != nil {
			return err
		}
	}
	typ := st.Mode & unix.S_IFMT
	if typ != unix.S_IFDIR && st.Nlink > 1 {
		id := inode{dev: uint64(st.Dev), ino: uint64(st.Ino)}
		if first, ok := c.links[id]; ok {
			return os.Link(first, dst)
		}
		c.links[id] = dst
	}
	switch typ {
	case unix.S_IFDIR:
		if err := unix.Mkdir(dst, 0o700); err != nil {
			return &os.PathError{Op: "mkdir", Path: dst, Err: err}
		}
		d, err := os.Open(src)
		if err != nil {
			return err
		}
		names, err := d.Readdirnames(-1)
		d.Close()
		if err != nil {
			return err
		}
		for _, name := range names {
			s, d := filepath.Join(src, name), filepath.Join(dst, name)
			var cst unix.Stat_t
			if err := unix.Lstat(s, &cst); err != nil {
				return &os.PathError{Op: "lstat", Path: s, Err: err}
			}
			if err := c.copy(s, d, &cst); err != nil {
				return err
			}
		}
	case unix.S_IFREG:
		if err := c.copyFile(src, dst, st.Size); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(target, dst); err != nil {
			return err
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknod(dst, typ|0o600, int(st.Rdev)); err != nil {
			return &os.PathError{Op: "mknod", Path: dst, Err: err}
		}
	default:
		return fmt.Errorf("copy %s: unknown file type %#o", src, typ)
	}
	return copyMetadata(src, dst, st)
}

// copyFile copies the data of the regular file src to the new file dst.
func (c *copier) copyFile(src, dst string, size int64) error {
	in, err := os.OpenFile(src, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if size > 0 {
		err = c.copyData(in, out)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// copyData clones in into out, or copies it where the filesystem cannot
// clone (copy_file_range(2), in the kernel).
func (c *copier) copyData(in, out *os.File) error {
	if !c.noClone.Load() {
		err := unix.IoctlFileClone(int(out.Fd()), int(in.Fd()))
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) &&
			!errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.EXDEV) {
			return fmt.Errorf("FICLONE: %w", err)
		}
		c.noClone.Store(true)
	}
	_, err := io.Copy(out, in)
	return err
}

// copyMetadata gives dst the owner, extended attributes, mode and times of
// src, in that order: chown clears set-user-ID bits and file capabilities.
func copyMetadata(src, dst string, st *unix.Stat_t) error {
	if err := unix.Lchown(dst, int(st.Uid), int(st.Gid)); err != nil {
		return &os.PathError{Op: "lchown", Path: dst, Err: err}
	}
	if err := copyXattrs(src, dst); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		if err := unix.Chmod(dst, st.Mode&0o7777); err != nil {
			return &os.PathError{Op: "chmod", Path: dst, Err: err}
		}
	}
	ts := []unix.Timespec{st.Atim, st.Mtim}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, dst, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: dst, Err: err}
	}
	return nil
}

// copyXattrs copies the extended attributes of src to dst.
func copyXattrs(src, dst string) error {
	names, err := xattrCall(func(b []byte) (int, error) { return unix.Llistxattr(src, b) })
	if err != nil {
		if errors.Is(err, unix.ENOTSUP) {
			return nil
		}
		return &os.PathError{Op: "llistxattr", Path: src, Err: err}
	}
	for name := range strings.SplitSeq(string(names), "\x00") {
		if name == "" {
			continue
		}
		v, err := xattrCall(func(b []byte) (int, error) { return unix.Lgetxattr(src, name, b) })
		if err != nil {
			if errors.Is(err, unix.ENODATA) {
				continue // removed meanwhile
			}
			return &os.PathError{Op: "lgetxattr " + name, Path: src, Err: err}
		}
		if err := unix.Lsetxattr(dst, name, v, 0); err != nil {
			return &os.PathError{Op: "lsetxattr " + name, Path: dst, Err: err}
		}
	}
	return nil
}

// xattrCall calls an extended attribute system call with a buffer large
// enough for its answer.
func xattrCall(call func([]byte) (int, error)) ([]byte, error) {
	for {
		n, err := call(nil)
		if err != nil || n == 0 {
			return nil, err
		}
		b := make([]byte, n)
		n, err = call(b)
		if errors.Is(err, unix.ERANGE) {
			continue // it grew meanwhile
		}
		if err != nil {
			return nil, err
		}
		return b[:n], nil
	}
}

// diskUsage adds up the blocks and inodes under dir, each hard-linked
// inode once.
func diskUsage(ctx context.Context, dir string) (Usage, error) {
	var u Usage
	seen := make(map[inode]struct{})
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if n++; n%256 == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return &os.PathError{Op: "lstat", Path: path, Err: err}
		}
		if !d.IsDir() && st.Nlink > 1 {
			id := inode{dev: uint64(st.Dev), ino: uint64(st.Ino)}
			if _, ok := seen[id]; ok {
				return nil
			}
			seen[id] = struct{}{}
		}
		u.Inodes++
		u.Size += st.Blocks * 512
		return nil
	})
	return u, err
}
