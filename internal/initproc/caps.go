package initproc

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// capNames lists the Linux capabilities by number.
var capNames = []string{
	"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
	"SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
	"NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
	"SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
	"SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
	"SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
	"SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
	"BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE",
}

// CapSet is a bit set of capabilities (at most 64).
type CapSet uint64

// ParseCaps turns names like "CAP_NET_ADMIN", "net_admin" or "ALL" into a
// set.
func ParseCaps(names []string) (CapSet, error) {
	var s CapSet
	for _, n := range names {
		u := strings.ToUpper(strings.TrimSpace(n))
		if u == "ALL" || u == "CAP_ALL" {
			for i := 0; i <= lastCap(); i++ {
				s |= 1 << i
			}
			continue
		}
		u = strings.TrimPrefix(u, "CAP_")
		found := false
		for i, c := range capNames {
			if c == u {
				s |= 1 << i
				found = true
				break
			}
		}
		if !found {
			return 0, fmt.Errorf("unknown capability %q", n)
		}
	}
	return s, nil
}

var lastCapOnce = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/sys/kernel/cap_last_cap")
	if err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && n < 64 {
			return n
		}
	}
	return len(capNames) - 1
})

// lastCap is the highest capability number the kernel knows.
func lastCap() int { return lastCapOnce() }

// dropBounding drops every capability not in caps from the calling
// thread's bounding set. The thread must be locked and hold CAP_SETPCAP.
func dropBounding(caps CapSet) error {
	for i := 0; i <= lastCap(); i++ {
		if caps&(1<<i) != 0 {
			continue
		}
		if err := unix.Prctl(unix.PR_CAPBSET_DROP, uintptr(i), 0, 0, 0); err != nil && err != unix.EINVAL {
			return fmt.Errorf("drop capability %d from the bounding set: %w", i, err)
		}
	}
	return nil
}

// String lists the set's capabilities by name, like "CAP_KILL,CAP_CHOWN".
func (s CapSet) String() string {
	var names []string
	for i := 0; i < 64; i++ {
		if s&(1<<i) == 0 {
			continue
		}
		if i < len(capNames) {
			names = append(names, "CAP_"+capNames[i])
		} else {
			names = append(names, strconv.Itoa(i))
		}
	}
	if names == nil {
		return "none"
	}
	return strings.Join(names, ",")
}

// list returns the capability numbers in s.
func (s CapSet) list() []uintptr {
	var out []uintptr
	for i := 0; i < 64; i++ {
		if s&(1<<i) != 0 {
			out = append(out, uintptr(i))
		}
	}
	return out
}

// CheckCaps checks p's capability sets against one another, and, when p
// asks for exact permitted or effective sets, against what execve(2)
// gives a program run as uid with them: root gets the bounding,
// inheritable and ambient sets as its permitted and effective sets, any
// other user (running a file without file capabilities) its ambient set.
// The errors wrap ErrInvalid.
func (p *Proc) CheckCaps(uid uint32) error {
	if extra := p.Inh &^ p.Caps; extra != 0 {
		return fmt.Errorf("%w: inheritable capabilities %v are not in the bounding set", ErrInvalid, extra)
	}
	if extra := p.Amb &^ p.Caps; extra != 0 {
		return fmt.Errorf("%w: ambient capabilities %v are not in the bounding set", ErrInvalid, extra)
	}
	if p.Perm == nil && p.Eff == nil {
		return nil
	}
	got := p.Amb
	who := fmt.Sprintf("uid %d gets its ambient set", uid)
	if uid == 0 {
		got = p.Caps | p.Inh | p.Amb
		who = "root gets its bounding, inheritable and ambient sets"
	}
	for _, s := range []struct {
		name string
		want *CapSet
	}{{"permitted", p.Perm}, {"effective", p.Eff}} {
		if s.want != nil && *s.want != got {
			return fmt.Errorf("%w: %s capabilities %v: after execve %s as its %s set (%v)", ErrInvalid, s.name, *s.want, who, s.name, got)
		}
	}
	return nil
}

// setInheritable sets the calling thread's inheritable set to caps,
// keeping its other sets. Its children inherit it across fork and
// setuid. The thread must be locked; caps must be within its bounding
// set.
func setInheritable(caps CapSet) error {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("get capabilities: %w", err)
	}
	data[0].Inheritable, data[1].Inheritable = uint32(caps), uint32(caps>>32)
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("set inheritable capabilities to %v: %w", caps, err)
	}
	return nil
}
