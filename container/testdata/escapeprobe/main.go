// escapeprobe makes system calls a container must not be able to make
// and prints, one line each, "name=result": "ok" or the error's name
// (EPERM, ENOSYS, ...). TestEscape builds it static and runs it inside a
// container. With arguments, it makes only the calls named;
// ESCAPEPROBE_NO_I386=1 leaves out the i386 calls (for kernels without
// IA32 emulation, where int $0x80 is a segmentation fault).
package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"unsafe"

	"golang.org/x/sys/unix"
)

type probe struct {
	name string
	call func() error
}

func raw(nr uintptr, args ...uintptr) error {
	var a [6]uintptr
	copy(a[:], args)
	_, _, e := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
	if e != 0 {
		return e
	}
	return nil
}

// extra are the probes of this architecture only.
var extra []probe

func main() {
	runtime.LockOSThread()
	var attr [128]byte   // zeroed perf_event_attr / bpf_attr
	var handle [136]byte // struct file_handle, handle_bytes 128
	*(*uint32)(unsafe.Pointer(&handle[0])) = 128
	*(*uint32)(unsafe.Pointer(&attr[4])) = 128 // perf_event_attr.size
	probes := []probe{
		{"unshare-user", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWUSER) }},
		{"unshare-mount", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWNS) }},
		{"unshare-net", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWNET) }},
		{"unshare-pid", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWPID) }},
		{"unshare-ipc", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWIPC) }},
		{"unshare-uts", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWUTS) }},
		{"unshare-cgroup", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWCGROUP) }},
		{"unshare-time", func() error { return raw(unix.SYS_UNSHARE, unix.CLONE_NEWTIME) }},
		{"clone-user", func() error {
			// A new user namespace through clone; a child that is made
			// exits at once.
			pid, _, e := unix.RawSyscall6(unix.SYS_CLONE, unix.CLONE_NEWUSER|uintptr(unix.SIGCHLD), 0, 0, 0, 0, 0)
			if e != 0 {
				return e
			}
			if pid == 0 {
				unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
			}
			var ws unix.WaitStatus
			unix.Wait4(int(pid), &ws, 0, nil)
			return nil
		}},
		{"clone3", func() error {
			var args [88]byte // struct clone_args, flags CLONE_NEWUSER
			*(*uint64)(unsafe.Pointer(&args[0])) = unix.CLONE_NEWUSER
			*(*uint64)(unsafe.Pointer(&args[32])) = uint64(unix.SIGCHLD)
			pid, _, e := unix.RawSyscall(unix.SYS_CLONE3, uintptr(unsafe.Pointer(&args[0])), unsafe.Sizeof(args), 0)
			if e != 0 {
				return e
			}
			if pid == 0 {
				unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
			}
			var ws unix.WaitStatus
			unix.Wait4(int(pid), &ws, 0, nil)
			return nil
		}},
		{"mount-tmpfs", func() error { return unix.Mount("none", "/tmp", "tmpfs", 0, "") }},
		{"keyctl", func() error {
			return raw(unix.SYS_KEYCTL, unix.KEYCTL_GET_KEYRING_ID, uintptr(0xfffffffd) /* KEY_SPEC_SESSION_KEYRING */, 1)
		}},
		{"add_key", func() error {
			t, d := []byte("user\x00"), []byte("k\x00")
			return raw(unix.SYS_ADD_KEY, uintptr(unsafe.Pointer(&t[0])), uintptr(unsafe.Pointer(&d[0])), uintptr(unsafe.Pointer(&d[0])), 1, uintptr(0xfffffffd))
		}},
		{"bpf", func() error {
			// BPF_MAP_CREATE of an array map: 4-byte keys and values, 1 entry.
			var a [72]byte
			*(*uint32)(unsafe.Pointer(&a[0])) = unix.BPF_MAP_TYPE_ARRAY
			*(*uint32)(unsafe.Pointer(&a[4])) = 4
			*(*uint32)(unsafe.Pointer(&a[8])) = 4
			*(*uint32)(unsafe.Pointer(&a[12])) = 1
			return raw(unix.SYS_BPF, unix.BPF_MAP_CREATE, uintptr(unsafe.Pointer(&a[0])), unsafe.Sizeof(a))
		}},
		{"perf_event_open", func() error {
			// A software CPU clock event on this process.
			*(*uint32)(unsafe.Pointer(&attr[0])) = unix.PERF_TYPE_SOFTWARE
			return raw(unix.SYS_PERF_EVENT_OPEN, uintptr(unsafe.Pointer(&attr[0])), 0, ^uintptr(0), ^uintptr(0), 0)
		}},
		{"open_by_handle_at", func() error {
			fd := unix.AT_FDCWD
			return raw(unix.SYS_OPEN_BY_HANDLE_AT, uintptr(fd), uintptr(unsafe.Pointer(&handle[0])), unix.O_RDONLY)
		}},
		{"ptrace-init", func() error { return raw(unix.SYS_PTRACE, unix.PTRACE_ATTACH, 1) }},
		{"settimeofday", func() error {
			var tv unix.Timeval
			unix.Gettimeofday(&tv)
			return raw(unix.SYS_SETTIMEOFDAY, uintptr(unsafe.Pointer(&tv)), 0)
		}},
		{"clock_settime", func() error {
			var ts unix.Timespec
			unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
			return raw(unix.SYS_CLOCK_SETTIME, unix.CLOCK_REALTIME, uintptr(unsafe.Pointer(&ts)))
		}},
		{"init_module", func() error { return raw(unix.SYS_INIT_MODULE, 0, 0, 0) }},
		{"kexec_load", func() error { return raw(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0) }},
		{"reboot", func() error {
			// LINUX_REBOOT_CMD_CAD_OFF: harmless even if it were allowed.
			return raw(unix.SYS_REBOOT, unix.LINUX_REBOOT_MAGIC1, unix.LINUX_REBOOT_MAGIC2, unix.LINUX_REBOOT_CMD_CAD_OFF)
		}},
		{"userfaultfd", func() error { return raw(unix.SYS_USERFAULTFD, 0) }},
	}
	if runtime.GOARCH == "amd64" {
		// The same unshare as an x32 call (number | 0x40000000): a filter
		// that checked numbers without the x32 bit would let it through
		// to the kernel, which runs it where x32 is enabled.
		probes = append(probes, probe{"x32-unshare-user", func() error { return raw(unix.SYS_UNSHARE|0x40000000, unix.CLONE_NEWUSER) }})
	}
	if os.Getenv("ESCAPEPROBE_NO_I386") == "" {
		probes = append(probes, extra...)
	}
	for _, p := range probes {
		if len(os.Args) > 1 && !slices.Contains(os.Args[1:], p.name) {
			continue
		}
		r := "ok"
		if err := p.call(); err != nil {
			r = unix.ErrnoName(err.(unix.Errno))
		}
		fmt.Printf("%s=%s\n", p.name, r)
	}
}
