package initproc

import (
	"errors"
	"path"

	"golang.org/x/sys/unix"
)

// makeDevice makes d in the container's /dev, a tmpfs init has just
// mounted: missing parent directories (mode 0755), then the node with
// mknod, its mode and owner; where mknod is refused (in a user namespace)
// an empty file with the host's node bind-mounted on it.
func makeDevice(rootfd int, d Device) error {
	dir, err := secureMkdirAll(rootfd, path.Dir(d.Path))
	if err != nil {
		return err
	}
	defer unix.Close(dir)
	name := path.Base(d.Path)
	err = unix.Mknodat(dir, name, d.Type|d.Mode, int(unix.Mkdev(d.Major, d.Minor)))
	if errors.Is(err, unix.EPERM) {
		fd, err := unix.Openat(dir, name, unix.O_CREAT|unix.O_EXCL|unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return mountOn(d.HostPath, fd, "", unix.MS_BIND, "")
	}
	if err != nil {
		return err
	}
	// mknod's mode passes through the umask, and may hold bits it drops.
	if err := unix.Fchmodat(dir, name, d.Mode, 0); err != nil {
		return err
	}
	return unix.Fchownat(dir, name, int(d.UID), int(d.GID), unix.AT_SYMLINK_NOFOLLOW)
}
