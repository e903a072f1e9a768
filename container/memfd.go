package container

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// sealedExe is a sealed in-memory copy of this program's executable. The
// container init runs from it, so that nothing inside a container can
// reach the host's binary through /proc/PID/exe and overwrite it (the
// runc CVE-2019-5736 class): the copy cannot be written, grown or shrunk,
// and the seals cannot be removed.
var sealedExe = sync.OnceValues(func() (*os.File, error) {
	src, err := os.Open("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("%w: open own executable: %w", ErrInitUnavailable, err)
	}
	defer src.Close()
	fd, err := unix.MemfdCreate("berth-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("%w: memfd_create: %w", ErrInitUnavailable, err)
	}
	dst := os.NewFile(uintptr(fd), "berth-init")
	// io.Copy uses copy_file_range or sendfile where it can.
	_, err = io.Copy(dst, src)
	if err == nil {
		_, err = unix.FcntlInt(dst.Fd(), unix.F_ADD_SEALS,
			unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
	}
	if err != nil {
		dst.Close()
		return nil, fmt.Errorf("%w: copy own executable into a sealed memfd: %w", ErrInitUnavailable, err)
	}
	// Executed as /proc/self/fd/N after the child has arranged its own
	// descriptors 0..len(ExtraFiles)+2: keep N far above them.
	high, err := unix.FcntlInt(dst.Fd(), unix.F_DUPFD_CLOEXEC, 1000)
	dst.Close()
	if err != nil {
		return nil, fmt.Errorf("%w: duplicate memfd: %w", ErrInitUnavailable, err)
	}
	return os.NewFile(uintptr(high), "berth-init"), nil
})

// initPath returns a path that executes the sealed copy.
func initPath() (string, error) {
	f, err := sealedExe()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("/proc/self/fd/%d", f.Fd()), nil
}
