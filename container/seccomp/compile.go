package seccomp

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// ErrInvalidProfile is matched (errors.Is) by every error about a
// profile: malformed JSON, an unknown action, operator, flag or system
// call, architectures that exclude the host's, conflicting rules.
var ErrInvalidProfile = errors.New("invalid seccomp profile")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidProfile, fmt.Sprintf(format, args...))
}

// Return values of a filter (SECCOMP_RET_*).
const (
	retKillProcess = 0x80000000
	retKillThread  = 0x00000000
	retTrap        = 0x00030000
	retErrno       = 0x00050000
	retTrace       = 0x7ff00000
	retLog         = 0x7ffc0000
	retAllow       = 0x7fff0000
)

// Filter flags (SECCOMP_FILTER_FLAG_*).
const (
	flagLog       = 1 << 1
	flagSpecAllow = 1 << 2
)

// Offsets in struct seccomp_data (little-endian hosts: amd64, arm64).
const (
	offNr   = 0
	offArch = 4
	offArgs = 16
)

// Program is a profile compiled for the host's architecture: the BPF
// instructions to install with seccomp(2) and the flags to install them
// with. A Program is immutable and safe for concurrent use.
type Program struct {
	insns []unix.SockFilter
	flags uint
}

// Instructions returns a copy of the program's instructions.
func (p *Program) Instructions() []unix.SockFilter { return slices.Clone(p.insns) }

// Flags returns the SECCOMP_FILTER_FLAG_* bits to install the program
// with.
func (p *Program) Flags() uint { return p.flags }

// Len returns the number of instructions.
func (p *Program) Len() int { return len(p.insns) }

// Bytes returns the instructions in the kernel's struct sock_filter
// layout, 8 bytes each in the host's byte order: what a process hands
// to seccomp(2) in a struct sock_fprog.
func (p *Program) Bytes() []byte {
	b := make([]byte, 0, 8*len(p.insns))
	for _, in := range p.insns {
		b = binary.NativeEndian.AppendUint16(b, in.Code)
		b = append(b, in.Jt, in.Jf)
		b = binary.NativeEndian.AppendUint32(b, in.K)
	}
	return b
}

var cache sync.Map // sha256 of the profile's JSON and host arch -> *Program

// Compile checks p and compiles it for the host's architecture. The
// result is cached by p's content: compiling an equal profile again
// returns the same Program.
func Compile(p *specs.LinuxSeccomp) (*Program, error) {
	if p == nil {
		return nil, invalid("no profile")
	}
	b, err := json.Marshal(p)
	if err != nil {
		return nil, invalid("%v", err)
	}
	key := sha256.Sum256(append([]byte(hostArch+"\x00"), b...))
	if prog, ok := cache.Load(key); ok {
		return prog.(*Program), nil
	}
	prog, err := compile(p)
	if err != nil {
		return nil, err
	}
	actual, _ := cache.LoadOrStore(key, prog)
	return actual.(*Program), nil
}

// action returns the filter's return value for a profile's action.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	var v uint32
	data := false
	switch a {
	case specs.ActKill, specs.ActKillThread:
		v = retKillThread
	case specs.ActKillProcess:
		v = retKillProcess
	case specs.ActTrap:
		v = retTrap
	case specs.ActErrno:
		v, data = retErrno, true
	case specs.ActTrace:
		v, data = retTrace, true
	case specs.ActLog:
		v = retLog
	case specs.ActAllow:
		v = retAllow
	case specs.ActNotify:
		return 0, invalid("action %s: user notification is not supported", a)
	case "":
		return 0, invalid("no action")
	default:
		return 0, invalid("unknown action %q", a)
	}
	if errnoRet != nil {
		if !data {
			return 0, invalid("errnoRet is only for %s and %s, not %s", specs.ActErrno, specs.ActTrace, a)
		}
		if *errnoRet > 0xffff {
			return 0, invalid("errnoRet %d does not fit 16 bits", *errnoRet)
		}
		v |= uint32(*errnoRet)
	} else if data {
		v |= uint32(unix.EPERM)
	}
	return v, nil
}

// cond is one argument comparison.
type cond struct {
	index         uint
	op            specs.LinuxSeccompOperator
	value, value2 uint64
}

// rule is a conditional rule of one system call.
type rule struct {
	conds []cond
	ret   uint32
}

// entry is what one system call number does.
type entry struct {
	nr     uint32
	rules  []rule  // conditional, in profile order
	uncond *uint32 // the rule without conditions
	label  int
}

func compile(p *specs.LinuxSeccomp) (*Program, error) {
	def, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("defaultAction: %w", err)
	}
	if p.ListenerPath != "" || p.ListenerMetadata != "" {
		return nil, invalid("listenerPath: user notification is not supported")
	}
	prog := &Program{}
	for _, f := range p.Flags {
		switch f {
		case specs.LinuxSeccompFlagLog:
			prog.flags |= flagLog
		case specs.LinuxSeccompFlagSpecAllow:
			prog.flags |= flagSpecAllow
		case "SECCOMP_FILTER_FLAG_TSYNC":
			// The filter is installed on the one thread that starts the
			// process, before it exists: there is nothing to synchronise.
		default:
			return nil, invalid("flag %q is not supported", f)
		}
	}
	host := hostABIs[hostArch]
	if host == nil {
		return nil, invalid("no seccomp support for architecture %s (amd64 and arm64 are supported)", hostArch)
	}
	use := []specs.Arch{host[0]}
	if len(p.Architectures) > 0 {
		use = nil
		for _, a := range p.Architectures {
			if !knownArch(a) {
				return nil, invalid("unknown architecture %q", a)
			}
			if slices.Contains(host, a) && !slices.Contains(use, a) {
				use = append(use, a)
			}
		}
		if !slices.Contains(use, host[0]) {
			return nil, invalid("architectures %v exclude the host's %s", p.Architectures, host[0])
		}
		slices.SortFunc(use, func(a, b specs.Arch) int { return slices.Index(host, a) - slices.Index(host, b) })
	}
	// Rules by ABI and number.
	tables := map[specs.Arch]map[uint32]*entry{}
	for _, a := range use {
		tables[a] = map[uint32]*entry{}
	}
	for i, sc := range p.Syscalls {
		ret, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d] %v: %w", i, sc.Names, err)
		}
		if len(sc.Names) == 0 {
			return nil, invalid("syscalls[%d]: no names", i)
		}
		rules, err := conditions(sc.Args)
		if err != nil {
			return nil, fmt.Errorf("syscalls[%d] %v: %w", i, sc.Names, err)
		}
		for _, name := range sc.Names {
			if !knownName(name) {
				return nil, invalid("syscalls[%d]: unknown system call %q", i, name)
			}
		}
		if ret == def {
			// What the filter does anyway (libseccomp refuses such a
			// rule; runc skips it).
			continue
		}
		for _, a := range use {
			for _, name := range sc.Names {
				for _, nr := range abis[a].nrs[name] { // none: not a call of this ABI
					if abis[a].x32 {
						nr |= x32Bit
					}
					e := tables[a][nr]
					if e == nil {
						e = &entry{nr: nr}
						tables[a][nr] = e
					}
					if len(rules) == 0 {
						if e.uncond != nil && *e.uncond != ret {
							return nil, invalid("syscalls[%d]: %s has two unconditional rules with different actions", i, name)
						}
						r := ret
						e.uncond = &r
						continue
					}
					for _, cs := range rules {
						e.rules = append(e.rules, rule{conds: cs, ret: ret})
					}
				}
			}
		}
	}
	insns, err := generate(use, tables, def)
	if err != nil {
		return nil, err
	}
	prog.insns = insns
	return prog, nil
}

// conditions turns a rule's arguments into the condition sets that each
// make it match (one set, or one per condition when an argument is named
// twice).
func conditions(args []specs.LinuxSeccompArg) ([][]cond, error) {
	if len(args) == 0 {
		return nil, nil
	}
	var cs []cond
	seen := map[uint]bool{}
	repeated := false
	for _, a := range args {
		if a.Index > 5 {
			return nil, invalid("argument index %d: system calls have 6 arguments (0 to 5)", a.Index)
		}
		switch a.Op {
		case specs.OpEqualTo, specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual,
			specs.OpGreaterThan, specs.OpGreaterEqual, specs.OpMaskedEqual:
		default:
			return nil, invalid("unknown operator %q", a.Op)
		}
		repeated = repeated || seen[a.Index]
		seen[a.Index] = true
		cs = append(cs, cond{index: a.Index, op: a.Op, value: a.Value, value2: a.ValueTwo})
	}
	if !repeated {
		return [][]cond{cs}, nil
	}
	out := make([][]cond, len(cs))
	for i, c := range cs {
		out[i] = []cond{c}
	}
	return out, nil
}

func knownArch(a specs.Arch) bool {
	switch a {
	case specs.ArchX86, specs.ArchX86_64, specs.ArchX32, specs.ArchARM, specs.ArchAARCH64,
		specs.ArchMIPS, specs.ArchMIPS64, specs.ArchMIPS64N32, specs.ArchMIPSEL, specs.ArchMIPSEL64,
		specs.ArchMIPSEL64N32, specs.ArchPPC, specs.ArchPPC64, specs.ArchPPC64LE, specs.ArchS390,
		specs.ArchS390X, specs.ArchPARISC, specs.ArchPARISC64, specs.ArchRISCV64, specs.ArchLOONGARCH64,
		specs.ArchM68K, specs.ArchSH, specs.ArchSHEB:
		return true
	}
	return false
}
