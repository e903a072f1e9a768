package initproc

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Seccomp is a compiled filter for init to install on the thread that
// starts a process, before it forks: the child inherits it and its
// program runs under it from its execve on. init's own threads are never
// filtered.
type Seccomp struct {
	// Filter is the BPF program in struct sock_filter layout, 8 bytes an
	// instruction in the host's byte order (seccomp.Program.Bytes).
	Filter []byte `json:"filter"`
	// Flags are SECCOMP_FILTER_FLAG_* bits.
	Flags uint `json:"flags,omitempty"`
}

// InstallSeccomp installs the filter on the calling thread only (no
// TSYNC). The thread needs no_new_privs or CAP_SYS_ADMIN in its user
// namespace. The caller locks the thread and never hands it back.
func InstallSeccomp(s *Seccomp) error {
	n := len(s.Filter) / 8
	if n == 0 || len(s.Filter)%8 != 0 || n > unix.BPF_MAXINSNS {
		return fmt.Errorf("install seccomp filter: malformed program of %d bytes", len(s.Filter))
	}
	insns := make([]unix.SockFilter, n)
	for i := range insns {
		b := s.Filter[8*i:]
		insns[i] = unix.SockFilter{
			Code: binary.NativeEndian.Uint16(b),
			Jt:   b[2],
			Jf:   b[3],
			K:    binary.NativeEndian.Uint32(b[4:]),
		}
	}
	prog := unix.SockFprog{Len: uint16(n), Filter: &insns[0]}
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, uintptr(s.Flags), uintptr(unsafe.Pointer(&prog)))
	if e != 0 {
		return fmt.Errorf("install seccomp filter: %w", e)
	}
	return nil
}
