package initproc

import (
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// copyUp copies the tree at the mount target (open at tfd, an O_PATH
// descriptor resolved inside the root) into the empty directory
// m.Source, keeping owners, modes, times, symlinks and hardlinks, as
// Docker fills a new volume from the image. Nothing is copied when
// m.Source holds anything. Every name is opened relative to a directory
// descriptor without following symlinks, so nothing outside the target
// is read and nothing outside m.Source is written.
func copyUp(tfd int, m Mount) error {
	if m.CopyLock != "" {
		lfd, err := unix.Open(m.CopyLock, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		switch {
		case err == unix.ENOENT: // made without one: fill it unlocked
		case err != nil:
			return fmt.Errorf("open %s: %w", m.CopyLock, err)
		default:
			defer unix.Close(lfd)
			if err := unix.Flock(lfd, unix.LOCK_EX); err != nil {
				return fmt.Errorf("lock %s: %w", m.CopyLock, err)
			}
		}
	}
	dst, err := unix.Open(m.Source, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dst)
	names, err := dirNames(dst)
	if err != nil || len(names) > 0 {
		return err
	}
	src, err := unix.Openat(tfd, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(src)
	c := &copier{links: map[[2]uint64]linkDst{}}
	defer func() {
		for _, l := range c.links {
			unix.Close(l.dirfd)
		}
	}()
	return c.dir(src, dst)
}

// linkDst is where the first copy of a hardlinked file went.
type linkDst struct {
	dirfd int
	name  string
}

type copier struct {
	links map[[2]uint64]linkDst // by device and inode of the source
}

// dirNames lists the names in the directory open at fd.
func dirNames(fd int) ([]string, error) {
	dfd, err := unix.Dup(fd)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(dfd), "dir")
	defer f.Close()
	return f.Readdirnames(-1)
}

// dir copies the entries of directory src into directory dst.
func (c *copier) dir(src, dst int) error {
	names, err := dirNames(src)
	if err != nil {
		return err
	}
	for _, name := range names {
		if err := c.entry(src, dst, name); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func (c *copier) entry(src, dst int, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(src, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return err
	}
	mode := st.Mode & 0o7777
	times := []unix.Timespec{st.Atim, st.Mtim}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		if err := unix.Mkdirat(dst, name, 0o700); err != nil {
			return err
		}
		sfd, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(sfd)
		dfd, err := unix.Openat(dst, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		if err := c.dir(sfd, dfd); err != nil {
			return err
		}
		if err := unix.Fchown(dfd, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Fchmod(dfd, mode); err != nil {
			return err
		}
		return unix.UtimesNanoAt(dst, name, times, unix.AT_SYMLINK_NOFOLLOW)
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if l, ok := c.links[key]; ok && st.Nlink > 1 {
			return unix.Linkat(l.dirfd, l.name, dst, name, 0)
		}
		sfd, err := unix.Openat(src, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		sf := os.NewFile(uintptr(sfd), name)
		defer sf.Close()
		dfd, err := unix.Openat(dst, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return err
		}
		df := os.NewFile(uintptr(dfd), name)
		defer df.Close()
		if _, err := io.Copy(df, sf); err != nil {
			return err
		}
		if err := unix.Fchown(dfd, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		if err := unix.Fchmod(dfd, mode); err != nil {
			return err
		}
		if err := unix.UtimesNanoAt(dst, name, times, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if st.Nlink > 1 {
			keep, err := unix.Dup(dst)
			if err != nil {
				return err
			}
			unix.CloseOnExec(keep)
			c.links[key] = linkDst{keep, name}
		}
		return nil
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(src, name, buf)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(string(buf[:n]), dst, name); err != nil {
			return err
		}
		if err := unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		return unix.UtimesNanoAt(dst, name, times, unix.AT_SYMLINK_NOFOLLOW)
	case unix.S_IFIFO, unix.S_IFCHR, unix.S_IFBLK:
		if err := unix.Mknodat(dst, name, st.Mode&unix.S_IFMT|mode, int(st.Rdev)); err != nil {
			return err
		}
		if err := unix.Fchownat(dst, name, int(st.Uid), int(st.Gid), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return err
		}
		if err := unix.Fchmodat(dst, name, mode, 0); err != nil {
			return err
		}
		return unix.UtimesNanoAt(dst, name, times, unix.AT_SYMLINK_NOFOLLOW)
	}
	return nil // sockets are not copied
}
