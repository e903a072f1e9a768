package container

import (
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// sealedExe is a sealed in-memory copy of the container init: the
// embedded berth-init, or this program's own executable where none is
// embedded. The container init runs from it, so that nothing inside a container can
// reach the host's binary through /proc/PID/exe and overwrite it (the
// runc CVE-2019-5736 class): the copy cannot be written, grown or shrunk,
// and the seals cannot be removed.
var sealedExe = sync.OnceValues(func() (*os.File, error) {
	fd, err := unix.MemfdCreate("berth-init", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("%w: memfd_create: %w", ErrInitUnavailable, err)
	}
	dst := os.NewFile(uintptr(fd), "berth-init")
	if len(embeddedInit) > 0 {
		_, err = dst.Write(embeddedInit)
	} else {
		// No embedded init for this architecture: copy our own
		// executable; io.Copy uses copy_file_range or sendfile.
		var src *os.File
		if src, err = os.Open("/proc/self/exe"); err == nil {
			_, err = io.Copy(dst, src)
			src.Close()
		}
	}
	if err == nil {
		_, err = unix.FcntlInt(dst.Fd(), unix.F_ADD_SEALS,
			unix.F_SEAL_SEAL|unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE)
	}
	if err != nil {
		dst.Close()
		return nil, fmt.Errorf("%w: write the init into a sealed memfd: %w", ErrInitUnavailable, err)
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
