package initproc

import (
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/openat2"
	"os"
	"path"
	"strings"

	"github.com/berthlabs/berth/layer/snapshot"
	"golang.org/x/sys/unix"
)

// The root filesystem is built inside the container's new mount
// namespace by init, before anything of the container runs. Every mount
// target is resolved inside the rootfs (openat2 with RESOLVE_IN_ROOT) and
// mounted through /proc/self/fd/N, so a hostile rootfs whose /proc, /dev
// or mount targets are symlinks cannot make us mount over host paths.

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

func relPath(p string) string { return strings.TrimPrefix(path.Clean("/"+p), "/") }

// openIn resolves p inside the root open at rootfd.
func openIn(rootfd int, p string, flags int) (int, error) {
	rel := relPath(p)
	if rel == "" {
		rel = "."
	}
	fd, err := openat2.Open(rootfd, rel, &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT,
	})
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: "/" + relPath(p), Err: err}
	}
	return fd, nil
}

// secureMkdirAll creates directory p and its parents inside the root and
// returns an O_PATH descriptor of it. A dangling symlink on the way is
// followed inside the root and its target created, as runc does.
func secureMkdirAll(rootfd int, p string) (int, error) {
	return mkdirAllDepth(rootfd, p, 0)
}

func mkdirAllDepth(rootfd int, p string, depth int) (int, error) {
	if depth > 40 {
		return -1, &os.PathError{Op: "mkdir", Path: "/" + relPath(p), Err: unix.ELOOP}
	}
	fd, err := openIn(rootfd, p, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, base := path.Split(relPath(p))
	pfd, err := mkdirAllDepth(rootfd, parent, depth+1)
	if err != nil {
		return -1, err
	}
	defer unix.Close(pfd)
	err = unix.Mkdirat(pfd, base, 0o755)
	if errors.Is(err, unix.EEXIST) {
		// Something is there yet does not resolve: a dangling symlink.
		buf := make([]byte, unix.PathMax)
		n, lerr := unix.Readlinkat(pfd, base, buf)
		if lerr != nil {
			return -1, &os.PathError{Op: "mkdir", Path: "/" + relPath(p), Err: err}
		}
		target := string(buf[:n])
		if !path.IsAbs(target) {
			target = path.Join("/", parent, target)
		}
		return mkdirAllDepth(rootfd, target, depth+1)
	}
	if err != nil {
		return -1, &os.PathError{Op: "mkdir", Path: "/" + relPath(p), Err: err}
	}
	return openIn(rootfd, p, unix.O_PATH|unix.O_DIRECTORY)
}

// secureCreateFile creates an empty file p (and its parent directories)
// inside the root unless something exists there, and returns an O_PATH
// descriptor of it.
func secureCreateFile(rootfd int, p string) (int, error) {
	fd, err := openIn(rootfd, p, unix.O_PATH)
	if err == nil || !errors.Is(err, unix.ENOENT) {
		return fd, err
	}
	parent, base := path.Split(relPath(p))
	pfd, err := secureMkdirAll(rootfd, parent)
	if err != nil {
		return -1, err
	}
	nfd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	unix.Close(pfd)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, &os.PathError{Op: "create", Path: "/" + relPath(p), Err: err}
	}
	if err == nil {
		unix.Close(nfd)
	}
	return openIn(rootfd, p, unix.O_PATH)
}

// fileMount bind-mounts a file holding f.Content over f.Target (created
// if missing). The file is made on the container's /dev tmpfs, bound,
// and unlinked again: it is on no disk, nothing else names it, and it
// goes with the container's mount namespace.
func fileMount(rootfd int, f File) error {
	dev, err := openIn(rootfd, "/dev", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	name := ".berth-" + path.Base(f.Target)
	fd, err := unix.Openat(dev, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDWR|unix.O_NOFOLLOW|unix.O_CLOEXEC, f.Mode&0o7777)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer unix.Close(fd)
	defer unix.Unlinkat(dev, name, 0)
	for b := f.Content; len(b) > 0; {
		n, err := unix.Write(fd, b)
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
	}
	if err := unix.Fchmod(fd, f.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	tfd, err := secureCreateFile(rootfd, f.Target)
	if errors.Is(err, unix.ENOENT) {
		// A dangling symlink (an image's /etc/resolv.conf pointing at
		// systemd's stub): create what it names, inside the root.
		if dest, lerr := readLinkIn(rootfd, f.Target); lerr == nil {
			tfd, err = secureCreateFile(rootfd, dest)
		}
	}
	if err != nil {
		return err
	}
	defer unix.Close(tfd)
	return mountOn(fdPath(fd), tfd, "", unix.MS_BIND, "")
}

// readLinkIn returns where the symlink p (inside the root) points, as a
// path inside the root.
func readLinkIn(rootfd int, p string) (string, error) {
	parent, base := path.Split(relPath(p))
	pfd, err := openIn(rootfd, "/"+parent, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return "", err
	}
	defer unix.Close(pfd)
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(pfd, base, buf)
	if err != nil {
		return "", err
	}
	dest := string(buf[:n])
	if !path.IsAbs(dest) {
		dest = path.Join("/", parent, dest)
	}
	return path.Clean(dest), nil
}

// mountOn mounts onto the object open at fd.
func mountOn(source string, fd int, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, fdPath(fd), fstype, flags, data)
}

// remountReadonly makes the mount at p (inside the root) read-only,
// keeping its other flags (keptFlags) and adding extra. It reopens p, so
// that it names the mount on top.
func remountReadonly(rootfd int, p string, extra uintptr) error {
	return remountBind(rootfd, p, true, extra, 0)
}

// remountBind changes the flags of the bind mount at p (inside the root):
// it sets flags (and read-only when ro), keeps those of keptFlags the
// mount has that clear does not name, and drops the other atime flags
// when flags holds one. It reopens p, so that it names the mount on top.
func remountBind(rootfd int, p string, ro bool, flags, clear uintptr) error {
	fd, err := openIn(rootfd, p, unix.O_PATH)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return err
	}
	keep := uintptr(st.Flags) & keptFlags &^ clear
	if flags&atimeFlags != 0 {
		keep &^= atimeFlags
	}
	if ro {
		flags |= unix.MS_RDONLY
	}
	if err := mountOn("", fd, "", unix.MS_BIND|unix.MS_REMOUNT|keep|flags, ""); err != nil {
		return fmt.Errorf("remount with flags %#x: %w", keep|flags, err)
	}
	return nil
}

// mountAt creates the directory p inside the root and mounts on it.
func mountAt(rootfd int, p, source, fstype string, flags uintptr, data string) error {
	fd, err := secureMkdirAll(rootfd, p)
	if err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, p, err)
	}
	defer unix.Close(fd)
	if err := mountOn(source, fd, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, p, err)
	}
	return nil
}

const mntNoExec = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC

// setupRootfs builds the container's root filesystem and enters it;
// detached, when not nil, is c.RootfsMounts mounted ahead.
func setupRootfs(c *Config, detached *os.File) error {
	// Nothing we mount may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	if detached != nil && unix.MoveMount(int(detached.Fd()), "", unix.AT_FDCWD, c.Rootfs, unix.MOVE_MOUNT_F_EMPTY_PATH) == nil {
		// Mounted ahead, by the host.
	} else if len(c.RootfsMounts) > 0 {
		if err := snapshot.MountAll(c.RootfsMounts, c.Rootfs); err != nil {
			return fmt.Errorf("mount the root filesystem: %w", err)
		}
	} else if err := unix.Mount(c.Rootfs, c.Rootfs, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		// pivot_root needs the new root to be a mount point.
		return fmt.Errorf("bind rootfs %s: %w", c.Rootfs, err)
	}
	rootfd, err := unix.Open(c.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(rootfd)

	if err := mountAt(rootfd, "/proc", "proc", "proc", mntNoExec, ""); err != nil {
		return err
	}
	if err := setupDev(rootfd, c); err != nil {
		return err
	}
	if err := mountAt(rootfd, "/sys", "sysfs", "sysfs", mntNoExec|unix.MS_RDONLY, ""); err != nil {
		// Without a network namespace of its own, a user namespace may not
		// mount sysfs: bind the host's, read-only.
		if err2 := mountAt(rootfd, "/sys", "/sys", "", unix.MS_BIND|unix.MS_REC, ""); err2 != nil {
			return err
		}
		if err := remountReadonly(rootfd, "/sys", 0); err != nil {
			return fmt.Errorf("remount /sys read-only: %w", err)
		}
	}
	if c.CgroupDir != "" {
		// What a cgroup namespace shows: the container's own cgroup as
		// the root, read-only.
		if err := mountAt(rootfd, "/sys/fs/cgroup", c.CgroupDir, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return err
		}
		if err := remountReadonly(rootfd, "/sys/fs/cgroup", mntNoExec); err != nil {
			return err
		}
	}
	for _, f := range c.Files {
		if err := fileMount(rootfd, f); err != nil {
			return fmt.Errorf("mount generated %s: %w", f.Target, err)
		}
	}
	for _, m := range c.Mounts {
		if err := userMount(rootfd, m); err != nil {
			return fmt.Errorf("mount %s on %s: %w", m.Type, m.Target, err)
		}
	}

	if err := unix.Fchdir(rootfd); err != nil {
		return fmt.Errorf("enter rootfs: %w", err)
	}
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach old root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	newRoot, err := unix.Open("/", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(newRoot)
	if err := setSysctls(newRoot, c.Sysctls); err != nil {
		return err
	}
	for _, p := range c.MaskedPaths {
		if err := maskPath(newRoot, p); err != nil {
			return fmt.Errorf("mask %s: %w", p, err)
		}
	}
	for _, p := range c.ReadonlyPaths {
		if err := readonlyPath(newRoot, p); err != nil {
			return fmt.Errorf("make %s read-only: %w", p, err)
		}
	}
	if c.Readonly {
		if err := remountReadonly(newRoot, "/", 0); err != nil {
			return fmt.Errorf("make rootfs read-only: %w", err)
		}
	}
	return nil
}

// setSysctls writes each value to /proc/sys/KEY (dots in the key are
// slashes in the path) of the container's /proc, before /proc/sys is
// made read-only.
func setSysctls(rootfd int, sysctls map[string]string) error {
	for k, v := range sysctls {
		fd, err := openIn(rootfd, "/proc/sys/"+strings.ReplaceAll(k, ".", "/"), unix.O_WRONLY|unix.O_TRUNC)
		if err == nil {
			_, err = unix.Write(fd, []byte(v))
			unix.Close(fd)
		}
		if err != nil {
			return fmt.Errorf("set sysctl %s to %q: %w", k, v, err)
		}
	}
	return nil
}

var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7},
	{"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// setupDev mounts a minimal /dev: a tmpfs with the usual character
// devices, pts, shm and mqueue.
func setupDev(rootfd int, c *Config) error {
	if err := mountAt(rootfd, "/dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	dev, err := openIn(rootfd, "/dev", unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	defer unix.Close(dev)
	for _, d := range devices {
		err := unix.Mknodat(dev, d.name, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor)))
		if errors.Is(err, unix.EPERM) {
			// In a user namespace mknod is refused: bind the host's node.
			err = bindHostDevice(dev, d.name)
		}
		if err != nil {
			return fmt.Errorf("create /dev/%s: %w", d.name, err)
		}
	}
	for _, l := range [][2]string{
		{"/proc/self/fd", "fd"}, {"/proc/self/fd/0", "stdin"}, {"/proc/self/fd/1", "stdout"},
		{"/proc/self/fd/2", "stderr"}, {"pts/ptmx", "ptmx"}, {"/proc/kcore", "core"},
	} {
		if err := unix.Symlinkat(l[0], dev, l[1]); err != nil {
			return fmt.Errorf("create /dev/%s: %w", l[1], err)
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := unix.Mkdirat(dev, d, 0o755); err != nil {
			return fmt.Errorf("create /dev/%s: %w", d, err)
		}
	}
	if err := mountAt(rootfd, "/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		// gid 5 may not be mapped in a user namespace.
		if err := mountAt(rootfd, "/dev/pts", "devpts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
			return err
		}
	}
	if err := mountAt(rootfd, "/dev/shm", "shm", "tmpfs", mntNoExec, "mode=1777,size=65536k"); err != nil {
		return err
	}
	if c.NewIPC {
		if err := mountAt(rootfd, "/dev/mqueue", "mqueue", "mqueue", mntNoExec, ""); err != nil {
			return err
		}
	}
	for _, d := range c.Devices {
		if err := makeDevice(rootfd, d); err != nil {
			return fmt.Errorf("create device %s: %w", d.Path, err)
		}
	}
	return nil
}

func bindHostDevice(dev int, name string) error {
	fd, err := unix.Openat(dev, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_CLOEXEC, 0o666)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return mountOn("/dev/"+name, fd, "", unix.MS_BIND, "")
}

func userMount(rootfd int, m Mount) error {
	switch m.Type {
	case "bind":
		var st unix.Stat_t
		if err := unix.Stat(m.Source, &st); err != nil {
			return fmt.Errorf("bind source: %w", err)
		}
		var fd int
		var err error
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			fd, err = secureMkdirAll(rootfd, m.Target)
		} else {
			fd, err = secureCreateFile(rootfd, m.Target)
		}
		if err != nil {
			return err
		}
		if m.CopyUp && st.Mode&unix.S_IFMT == unix.S_IFDIR {
			if err := copyUp(fd, m); err != nil {
				unix.Close(fd)
				return fmt.Errorf("copy the image's %s into the volume: %w", m.Target, err)
			}
		}
		rec := uintptr(unix.MS_REC)
		if m.NoRecursive {
			rec = 0
		}
		err = mountOn(m.Source, fd, "", unix.MS_BIND|rec, "")
		unix.Close(fd)
		if err != nil {
			return err
		}
		if m.ReadOnly || m.Flags != 0 || m.Clear != 0 {
			return remountBind(rootfd, m.Target, m.ReadOnly, uintptr(m.Flags), uintptr(m.Clear))
		}
		return nil
	case "tmpfs":
		flags := uintptr(unix.MS_NOSUID|unix.MS_NODEV)&^uintptr(m.Clear) | uintptr(m.Flags)
		if m.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		return mountAt(rootfd, m.Target, "tmpfs", "tmpfs", flags, m.Data)
	}
	return fmt.Errorf("unknown mount type %q", m.Type)
}

// maskPath hides p: a directory under an empty read-only tmpfs, a file
// under /dev/null. A missing path needs no mask.
func maskPath(rootfd int, p string) error {
	fd, err := openIn(rootfd, p, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return mountOn("tmpfs", fd, "tmpfs", unix.MS_RDONLY|mntNoExec, "size=0,mode=0555")
	}
	return mountOn("/dev/null", fd, "", unix.MS_BIND, "")
}

// readonlyPath bind-mounts p onto itself read-only.
func readonlyPath(rootfd int, p string) error {
	fd, err := openIn(rootfd, p, unix.O_PATH)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	err = mountOn(fdPath(fd), fd, "", unix.MS_BIND|unix.MS_REC, "")
	unix.Close(fd)
	if err != nil {
		return err
	}
	return remountReadonly(rootfd, p, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC)
}
