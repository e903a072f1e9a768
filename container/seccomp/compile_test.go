package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// call is a system call as a filter sees it (struct seccomp_data).
type call struct {
	arch uint32
	nr   uint32
	args [6]uint64
}

// run interprets a classic BPF seccomp program the way the kernel does
// for the instructions the compiler emits (anything else fails the test).
func run(t *testing.T, prog []unix.SockFilter, c call) uint32 {
	t.Helper()
	data := make([]byte, 64)
	binary.LittleEndian.PutUint32(data[0:], c.nr)
	binary.LittleEndian.PutUint32(data[4:], c.arch)
	for i, a := range c.args {
		binary.LittleEndian.PutUint64(data[16+8*i:], a)
	}
	var acc uint32
	for pc := 0; pc < len(prog); pc++ {
		in := prog[pc]
		switch in.Code {
		case unix.BPF_LD | unix.BPF_W | unix.BPF_ABS:
			if in.K%4 != 0 || in.K > 60 {
				t.Fatalf("pc %d: load at %d", pc, in.K)
			}
			acc = binary.LittleEndian.Uint32(data[in.K:])
		case unix.BPF_ALU | unix.BPF_AND | unix.BPF_K:
			acc &= in.K
		case unix.BPF_RET | unix.BPF_K:
			return in.K
		case unix.BPF_JMP | unix.BPF_JA:
			pc += int(in.K)
		case unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGT | unix.BPF_K, unix.BPF_JMP | unix.BPF_JGE | unix.BPF_K:
			var ok bool
			switch in.Code &^ (unix.BPF_JMP | unix.BPF_K) {
			case unix.BPF_JEQ:
				ok = acc == in.K
			case unix.BPF_JGT:
				ok = acc > in.K
			case unix.BPF_JGE:
				ok = acc >= in.K
			}
			if ok {
				pc += int(in.Jt)
			} else {
				pc += int(in.Jf)
			}
		default:
			t.Fatalf("pc %d: unexpected instruction %#x", pc, in.Code)
		}
	}
	t.Fatal("ran off the end of the program")
	return 0
}

const (
	auditX8664 = 0xc000003e
	auditI386  = 0x40000003
	auditARM64 = 0xc00000b7
)

func nr(t *testing.T, a specs.Arch, name string) uint32 {
	t.Helper()
	nrs := abis[a].nrs[name]
	if a == specs.ArchX32 && len(nrs) == 0 {
		// One of the calls x32 shares with x86_64.
		nrs = abis[specs.ArchX86_64].nrs[name]
	}
	if len(nrs) == 0 {
		t.Fatalf("%s has no %s", a, name)
	}
	n := nrs[0]
	if abis[a].x32 {
		n |= x32Bit
	}
	return n
}

func compileT(t *testing.T, p *specs.LinuxSeccomp) []unix.SockFilter {
	t.Helper()
	prog, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	return prog.Instructions()
}

func TestDefaultProfileAMD64(t *testing.T) {
	withArch(t, "amd64")
	dockerCaps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	p, err := Default(dockerCaps)
	if err != nil {
		t.Fatal(err)
	}
	prog := compileT(t, p)
	t.Logf("Docker's default profile: %d instructions", len(prog))
	eperm := uint32(retErrno | unix.EPERM)
	const newNS = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
	for _, tc := range []struct {
		what string
		c    call
		want uint32
	}{
		{"read", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "read")}, retAllow},
		{"execve", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "execve")}, retAllow},
		{"unshare", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "unshare"), args: [6]uint64{unix.CLONE_NEWUSER}}, eperm},
		{"mount", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "mount")}, eperm},
		{"keyctl", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "keyctl")}, eperm},
		{"bpf", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "bpf")}, eperm},
		// Allowed from kernel 4.8 on (before, ptrace could bypass seccomp):
		// CAP_SYS_PTRACE and init's non-dumpable state guard it.
		{"ptrace", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "ptrace")}, retAllow},
		{"clone3", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone3")}, uint32(retErrno | unix.ENOSYS)},
		{"clone for a thread", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone"), args: [6]uint64{unix.CLONE_VM | unix.CLONE_FS | unix.CLONE_FILES | unix.CLONE_SIGHAND | unix.CLONE_THREAD}}, retAllow},
		{"fork", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone"), args: [6]uint64{uint64(unix.SIGCHLD)}}, retAllow},
		{"clone of each namespace", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone"), args: [6]uint64{newNS | uint64(unix.SIGCHLD)}}, eperm},
		{"clone of a user namespace", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone"), args: [6]uint64{unix.CLONE_NEWUSER}}, eperm},
		{"clone, high bits", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone"), args: [6]uint64{1<<32 | unix.CLONE_NEWNET}}, eperm},
		{"personality(PER_LINUX)", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "personality"), args: [6]uint64{0}}, retAllow},
		{"personality query", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "personality"), args: [6]uint64{0xffffffff}}, retAllow},
		{"personality(PER_BSD)", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "personality"), args: [6]uint64{6}}, eperm},
		{"personality high bits", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "personality"), args: [6]uint64{1 << 32}}, eperm},
		{"socket(AF_INET)", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "socket"), args: [6]uint64{unix.AF_INET}}, retAllow},
		{"socket(AF_NETLINK)", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "socket"), args: [6]uint64{unix.AF_NETLINK}}, retAllow},
		{"socket(AF_VSOCK)", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "socket"), args: [6]uint64{unix.AF_VSOCK}}, eperm},
		{"no such call", call{arch: auditX8664, nr: 4000}, eperm},
		// x32: the x86_64 audit architecture with the x32 bit.
		{"x32 read", call{arch: auditX8664, nr: nr(t, specs.ArchX32, "read")}, retAllow},
		{"x32 unshare", call{arch: auditX8664, nr: nr(t, specs.ArchX32, "unshare")}, eperm},
		{"x32 keyctl", call{arch: auditX8664, nr: nr(t, specs.ArchX32, "keyctl")}, eperm},
		{"x32 beyond its table", call{arch: auditX8664, nr: x32Bit | 600}, eperm},
		{"x32 bit on an x86_64-only number", call{arch: auditX8664, nr: x32Bit | 13}, retAllow},
		{"x32's own rt_sigaction", call{arch: auditX8664, nr: x32Bit | 512}, retAllow},
		{"x32's own execve", call{arch: auditX8664, nr: x32Bit | 520}, retAllow},
		{"x32 clone of a namespace", call{arch: auditX8664, nr: nr(t, specs.ArchX32, "clone"), args: [6]uint64{unix.CLONE_NEWUSER}}, eperm},
		{"x32 clone for a thread", call{arch: auditX8664, nr: nr(t, specs.ArchX32, "clone"), args: [6]uint64{unix.CLONE_VM | unix.CLONE_THREAD}}, retAllow},
		{"both high bits", call{arch: auditX8664, nr: 0xc0000000}, eperm},
		// i386
		{"i386 read", call{arch: auditI386, nr: nr(t, specs.ArchX86, "read")}, retAllow},
		{"i386 unshare", call{arch: auditI386, nr: nr(t, specs.ArchX86, "unshare")}, eperm},
		{"i386 socketcall", call{arch: auditI386, nr: nr(t, specs.ArchX86, "socketcall")}, retAllow},
		{"i386 clone of a namespace", call{arch: auditI386, nr: nr(t, specs.ArchX86, "clone"), args: [6]uint64{unix.CLONE_NEWUSER}}, eperm},
		{"arm64 on amd64", call{arch: auditARM64, nr: 63}, retKillProcess},
	} {
		if got := run(t, prog, tc.c); got != tc.want {
			t.Errorf("%s: filter returns %#x, want %#x", tc.what, got, tc.want)
		}
	}

	admin, err := Default(append(dockerCaps, "CAP_SYS_ADMIN"))
	if err != nil {
		t.Fatal(err)
	}
	prog = compileT(t, admin)
	for _, tc := range []struct {
		what string
		c    call
		want uint32
	}{
		{"unshare with CAP_SYS_ADMIN", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "unshare")}, retAllow},
		{"mount with CAP_SYS_ADMIN", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "mount")}, retAllow},
		{"clone of a namespace with CAP_SYS_ADMIN", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone"), args: [6]uint64{unix.CLONE_NEWUSER}}, retAllow},
		{"clone3 with CAP_SYS_ADMIN", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "clone3")}, retAllow},
		{"keyctl with CAP_SYS_ADMIN", call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "keyctl")}, eperm},
	} {
		if got := run(t, prog, tc.c); got != tc.want {
			t.Errorf("%s: filter returns %#x, want %#x", tc.what, got, tc.want)
		}
	}
}

func TestDefaultProfileARM64(t *testing.T) {
	// Default chooses the rules for the GOARCH this test runs on; the
	// architectures are set by hand.
	p, err := Default([]string{"CAP_CHOWN"})
	if err != nil {
		t.Fatal(err)
	}
	p.Architectures = []specs.Arch{specs.ArchAARCH64, specs.ArchARM}
	withArch(t, "arm64")
	prog := compileT(t, p)
	const auditARM = 0x40000028
	for _, tc := range []struct {
		what string
		c    call
		want uint32
	}{
		{"read", call{arch: auditARM64, nr: nr(t, specs.ArchAARCH64, "read")}, retAllow},
		{"unshare", call{arch: auditARM64, nr: nr(t, specs.ArchAARCH64, "unshare")}, uint32(retErrno | unix.EPERM)},
		{"arm read", call{arch: auditARM, nr: nr(t, specs.ArchARM, "read")}, retAllow},
		{"arm unshare", call{arch: auditARM, nr: nr(t, specs.ArchARM, "unshare")}, uint32(retErrno | unix.EPERM)},
		{"x86_64 on arm64", call{arch: auditX8664, nr: 0}, retKillProcess},
	} {
		if got := run(t, prog, tc.c); got != tc.want {
			t.Errorf("%s: filter returns %#x, want %#x", tc.what, got, tc.want)
		}
	}
}

// withArch compiles for goarch during the test (the tables are data).
func withArch(t *testing.T, goarch string) {
	old := hostArch
	hostArch = goarch
	t.Cleanup(func() { hostArch = old })
}

// TestOperators checks each comparison on 64-bit and 32-bit ABIs against
// Go's, on values around the boundaries of both halves.
func TestOperators(t *testing.T) {
	withArch(t, "amd64")
	edges := []uint64{0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 1 << 32, 1<<32 + 1, 2<<32 | 5, 0xffffffff_fffffffe, 0xffffffff_ffffffff}
	r := rand.New(rand.NewPCG(1, 2))
	for range 8 {
		edges = append(edges, r.Uint64(), r.Uint64()&0xffffffff, r.Uint64()&^0xffffffff)
	}
	ops := map[specs.LinuxSeccompOperator]func(a, v, v2 uint64) bool{
		specs.OpEqualTo:      func(a, v, _ uint64) bool { return a == v },
		specs.OpNotEqual:     func(a, v, _ uint64) bool { return a != v },
		specs.OpLessThan:     func(a, v, _ uint64) bool { return a < v },
		specs.OpLessEqual:    func(a, v, _ uint64) bool { return a <= v },
		specs.OpGreaterThan:  func(a, v, _ uint64) bool { return a > v },
		specs.OpGreaterEqual: func(a, v, _ uint64) bool { return a >= v },
		specs.OpMaskedEqual:  func(a, v, v2 uint64) bool { return a&v == v2 },
	}
	for op, want := range ops {
		for _, v := range edges {
			v2 := v & 0x00ff00ff_00ff00ff
			p := &specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno,
				Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX86},
				Syscalls: []specs.LinuxSyscall{{
					Names: []string{"write"}, Action: specs.ActAllow,
					Args: []specs.LinuxSeccompArg{{Index: 3, Op: op, Value: v, ValueTwo: v2}},
				}},
			}
			prog := compileT(t, p)
			for _, a := range edges {
				c := call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, "write")}
				c.args[3] = a
				got := run(t, prog, c) == retAllow
				if got != want(a, v, v2) {
					t.Errorf("x86_64: %#x %s %#x (%#x): filter says %v", a, op, v, v2, got)
				}
				// On i386 only the low 32 bits count.
				c = call{arch: auditI386, nr: nr(t, specs.ArchX86, "write")}
				c.args[3] = a
				got = run(t, prog, c) == retAllow
				if w := want(a&0xffffffff, v&0xffffffff, v2&0xffffffff); got != w {
					t.Errorf("i386: %#x %s %#x (%#x): filter says %v, want %v", a, op, v, v2, got, w)
				}
			}
		}
	}
}

func TestRules(t *testing.T) {
	withArch(t, "amd64")
	u := func(v uint) *uint { return &v }
	p := &specs.LinuxSeccomp{
		DefaultAction:   specs.ActErrno,
		DefaultErrnoRet: u(uint(unix.ENOSYS)),
		Architectures:   []specs.Arch{specs.ArchX86_64},
		Syscalls: []specs.LinuxSyscall{
			// Two conditions on different arguments: both must hold.
			{Names: []string{"write"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 1}, {Index: 2, Op: specs.OpLessThan, Value: 100}}},
			// The same argument twice: either holds (runc's reading).
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 3}, {Index: 0, Op: specs.OpEqualTo, Value: 4}}},
			// Conditional rules first, then the unconditional one.
			{Names: []string{"close"}, Action: specs.ActErrno, ErrnoRet: u(9), Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 0}}},
			{Names: []string{"close"}, Action: specs.ActLog},
			{Names: []string{"getpid"}, Action: specs.ActKillProcess},
			{Names: []string{"gettid"}, Action: specs.ActKill},
			{Names: []string{"getppid"}, Action: specs.ActTrap},
			{Names: []string{"getuid"}, Action: specs.ActTrace, ErrnoRet: u(7)},
			{Names: []string{"getgid"}, Action: specs.ActErrno},
			// A set of values for one argument, checked as one.
			{Names: []string{"dup"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 5}}},
			{Names: []string{"dup"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 6}}},
			{Names: []string{"dup"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 1<<32 | 7}}},
			{Names: []string{"dup"}, Action: specs.ActLog, Args: []specs.LinuxSeccompArg{{Index: 0, Op: specs.OpEqualTo, Value: 8}}},
			// The default action itself: skipped.
			{Names: []string{"getegid"}, Action: specs.ActErrno, ErrnoRet: u(uint(unix.ENOSYS))},
			// A name amd64 lacks is skipped.
			{Names: []string{"socketcall", "set_tls"}, Action: specs.ActAllow},
		},
	}
	prog := compileT(t, p)
	x := func(name string, args ...uint64) call {
		c := call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, name)}
		copy(c.args[:], args)
		return c
	}
	enosys := uint32(retErrno | unix.ENOSYS)
	for _, tc := range []struct {
		what string
		c    call
		want uint32
	}{
		{"write(1, _, 10)", x("write", 1, 0, 10), retAllow},
		{"write(2, _, 10)", x("write", 2, 0, 10), enosys},
		{"write(1, _, 100)", x("write", 1, 0, 100), enosys},
		{"read(3)", x("read", 3), retAllow},
		{"read(4)", x("read", 4), retAllow},
		{"read(5)", x("read", 5), enosys},
		{"close(0)", x("close", 0), uint32(retErrno | 9)},
		{"dup(5)", x("dup", 5), retAllow},
		{"dup(6)", x("dup", 6), retAllow},
		{"dup(1<<32|7)", x("dup", 1<<32|7), retAllow},
		{"dup(7)", x("dup", 7), enosys},
		{"dup(1<<32|5)", x("dup", 1<<32|5), enosys},
		{"dup(8)", x("dup", 8), retLog},
		{"close(1)", x("close", 1), retLog},
		{"getpid", x("getpid"), retKillProcess},
		{"gettid", x("gettid"), retKillThread},
		{"getppid", x("getppid"), retTrap},
		{"getuid", x("getuid"), uint32(retTrace | 7)},
		{"getgid", x("getgid"), uint32(retErrno | unix.EPERM)},
		{"getegid", x("getegid"), enosys},
		// No X32 in the profile: an x32 call is killed, never matched
		// as x86_64.
		{"x32 write", call{arch: auditX8664, nr: nr(t, specs.ArchX32, "write"), args: [6]uint64{1}}, retKillProcess},
		{"i386 not listed", call{arch: auditI386, nr: 3}, retKillProcess},
	} {
		if got := run(t, prog, tc.c); got != tc.want {
			t.Errorf("%s: filter returns %#x, want %#x", tc.what, got, tc.want)
		}
	}
	again, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if first, _ := Compile(p); first != again {
		t.Error("an equal profile was compiled twice")
	}
}

func TestBadProfiles(t *testing.T) {
	withArch(t, "amd64")
	u := func(v uint) *uint { return &v }
	allow := specs.ActAllow
	for _, tc := range []struct {
		what string
		p    *specs.LinuxSeccomp
		want string
	}{
		{"nil", nil, "no profile"},
		{"no default action", &specs.LinuxSeccomp{}, "defaultAction: invalid seccomp profile: no action"},
		{"unknown default action", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, `unknown action "SCMP_ACT_MAYBE"`},
		{"unknown action", &specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: "SCMP_ACT_PERHAPS"}}}, `syscalls[0] [read]: invalid seccomp profile: unknown action "SCMP_ACT_PERHAPS"`},
		{"notify", &specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActNotify}}}, "user notification is not supported"},
		{"listener", &specs.LinuxSeccomp{DefaultAction: allow, ListenerPath: "/run/l.sock"}, "listenerPath"},
		{"unknown call", &specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read", "frobnicate"}, Action: specs.ActErrno}}}, `unknown system call "frobnicate"`},
		{"no names", &specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Action: specs.ActErrno}}}, "no names"},
		{"other architecture only", &specs.LinuxSeccomp{DefaultAction: allow, Architectures: []specs.Arch{specs.ArchAARCH64, specs.ArchARM}}, "exclude the host's SCMP_ARCH_X86_64"},
		{"i386 only", &specs.LinuxSeccomp{DefaultAction: allow, Architectures: []specs.Arch{specs.ArchX86}}, "exclude the host's"},
		{"unknown architecture", &specs.LinuxSeccomp{DefaultAction: allow, Architectures: []specs.Arch{"SCMP_ARCH_Z80"}}, `unknown architecture "SCMP_ARCH_Z80"`},
		{"errnoRet on allow", &specs.LinuxSeccomp{DefaultAction: allow, DefaultErrnoRet: u(1)}, "errnoRet is only for"},
		{"errnoRet too large", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: u(70000)}, "does not fit 16 bits"},
		{"argument 6", &specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, "argument index 6"},
		{"unknown operator", &specs.LinuxSeccomp{DefaultAction: allow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_ABOUT"}}}}}, `unknown operator "SCMP_CMP_ABOUT"`},
		{"unknown flag", &specs.LinuxSeccomp{DefaultAction: allow, Flags: []specs.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_FAST"}}, `flag "SECCOMP_FILTER_FLAG_FAST"`},
		{"conflict", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: allow}, {Names: []string{"read"}, Action: specs.ActLog}}}, "two unconditional rules"},
	} {
		_, err := Compile(tc.p)
		if err == nil || !errors.Is(err, ErrInvalidProfile) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an ErrInvalidProfile with %q", tc.what, err, tc.want)
		}
	}
	withArch(t, "riscv64")
	if _, err := Compile(&specs.LinuxSeccomp{DefaultAction: allow}); err == nil || !strings.Contains(err.Error(), "riscv64") {
		t.Errorf("riscv64: got %v", err)
	}
}

func TestFromDocker(t *testing.T) {
	withArch(t, "amd64")
	profile := `{
		"defaultAction": "SCMP_ACT_ERRNO",
		"defaultErrnoRet": 38,
		"archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
		"syscalls": [
			{"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
			{"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
			{"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "excludes": {"caps": ["CAP_SYS_ADMIN"]}}
		]
	}`
	p, err := FromDocker([]byte(profile), []string{"CAP_CHOWN"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Architectures) != 2 || p.Architectures[1] != specs.ArchX86 {
		t.Errorf("architectures %v, want x86_64 and x86 from archMap", p.Architectures)
	}
	prog := compileT(t, p)
	x := func(name string) call { return call{arch: auditX8664, nr: nr(t, specs.ArchX86_64, name)} }
	if got := run(t, prog, x("mount")); got != uint32(retErrno|unix.ENOSYS) {
		t.Errorf("mount without CAP_SYS_ADMIN: %#x", got)
	}
	if got := run(t, prog, x("ptrace")); got != retAllow {
		t.Errorf("ptrace without CAP_SYS_ADMIN: %#x", got)
	}
	p, err = FromDocker([]byte(profile), []string{"CAP_SYS_ADMIN"})
	if err != nil {
		t.Fatal(err)
	}
	prog = compileT(t, p)
	if got := run(t, prog, x("mount")); got != retAllow {
		t.Errorf("mount with CAP_SYS_ADMIN: %#x", got)
	}
	if got := run(t, prog, x("ptrace")); got != uint32(retErrno|unix.ENOSYS) {
		t.Errorf("ptrace with CAP_SYS_ADMIN: %#x", got)
	}
	for _, bad := range []string{`{"defaultAction": "SCMP_ACT_ERRNO",`, `{"defaultAction": "SCMP_ACT_ERRNO", "sycalls": []}`, `[]`} {
		if _, err := FromDocker([]byte(bad), nil); !errors.Is(err, ErrInvalidProfile) {
			t.Errorf("%s: got %v, want ErrInvalidProfile", bad, err)
		}
	}
}

func TestFromDockerOtherArchitecture(t *testing.T) {
	if hostABIs[hostArch] == nil {
		t.Skip("no seccomp support on", hostArch)
	}
	other := `{"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}`
	if hostArch == "arm64" {
		other = `{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}`
	}
	_, err := FromDocker([]byte(`{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [`+other+`], "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}]}`), nil)
	if !errors.Is(err, ErrInvalidProfile) || !strings.Contains(err.Error(), "no entry for the host's") {
		t.Errorf("a profile for another architecture only: %v", err)
	}
}

// Docker's default profile in its JSON form, through FromDocker, is the
// same filter as Default's.
func TestFromDockerDefaultJSON(t *testing.T) {
	if hostABIs[hostArch] == nil {
		t.Skip("no seccomp support on", hostArch)
	}
	b, err := json.Marshal(moby.DefaultProfile())
	if err != nil {
		t.Fatal(err)
	}
	caps := []string{"CAP_CHOWN", "CAP_NET_RAW"}
	p, err := FromDocker(b, caps)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Default(caps)
	if err != nil {
		t.Fatal(err)
	}
	a, err := Compile(p)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := Compile(d); err != nil || a != c {
		t.Errorf("FromDocker(default JSON) and Default differ (%v)", err)
	}
}
