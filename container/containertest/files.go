package containertest

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// copyTo makes dst, the sandbox's private copy of f.
func (f *File) copyTo(dst string) error {
	fail := func(err error) error { return fmt.Errorf("file %s: %w", f.Target, err) }
	if f.HostPath == "" {
		mode := f.Mode
		if mode == 0 {
			mode = 0o644
		}
		if err := os.WriteFile(dst, f.Content, 0o600); err != nil {
			return fail(err)
		}
		if err := os.Chmod(dst, mode); err != nil {
			return fail(err)
		}
		if f.UID > 0 || f.GID > 0 {
			if err := os.Lchown(dst, max(f.UID, -1), max(f.GID, -1)); err != nil {
				return fail(err)
			}
		}
		return nil
	}
	if err := copyTree(f.HostPath, dst); err != nil {
		return fail(fmt.Errorf("copy %s: %w", f.HostPath, err))
	}
	if f.Mode != 0 {
		if err := os.Chmod(dst, f.Mode); err != nil {
			return fail(err)
		}
	}
	if f.UID >= 0 || f.GID >= 0 {
		if err := os.Lchown(dst, f.UID, f.GID); err != nil {
			return fail(err)
		}
	}
	return nil
}

// copyTree copies src (a file, symlink or directory tree) to dst with
// modes, owners and modification times; other kinds of files (devices,
// sockets) are refused.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		switch m := fi.Mode(); {
		case m.IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		case m&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(l, target); err != nil {
				return err
			}
		case m.IsRegular():
			if err := copyFile(p, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %v files are not copied", p, m.Type())
		}
		return copyMeta(target, fi)
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// copyMeta gives target fi's owner, mode and times. Owners are kept
// only when running as root.
func copyMeta(target string, fi fs.FileInfo) error {
	st, _ := fi.Sys().(*syscall.Stat_t)
	if st != nil && os.Geteuid() == 0 {
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil
	}
	if err := os.Chmod(target, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
		return err
	}
	return os.Chtimes(target, fi.ModTime(), fi.ModTime())
}
