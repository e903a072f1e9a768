package seccomp

import (
	"runtime"

	"github.com/elastic/go-seccomp-bpf/arch"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// x32Bit marks an x32 system call: it comes with the x86_64 audit
// architecture, its number ORed with this bit.
const x32Bit = 0x40000000

// abi is one system call ABI a filter can match: an audit architecture
// (and, for x32, the bit that tells it from x86_64) and its table.
type abi struct {
	name  specs.Arch
	audit uint32
	x32   bool // numbers carry x32Bit
	is32  bool // arguments are 32-bit
	nrs   map[string][]uint32
}

func newABI(name specs.Arch, info *arch.Info, x32, is32 bool) *abi {
	a := &abi{name: name, audit: uint32(info.ID), x32: x32, is32: is32, nrs: map[string][]uint32{}}
	for nr, call := range info.SyscallNumbers {
		if x32 && nr < x32Compat {
			// x32 shares x86_64's numbers below 512 (the filter checks
			// those calls with x86_64's rules); its own start at 512.
			continue
		}
		a.nrs[call] = append(a.nrs[call], uint32(nr))
	}
	return a
}

// x32Compat is the first number of the x32 ABI's own system calls.
const x32Compat = 512

var abis = map[specs.Arch]*abi{
	specs.ArchX86_64:  newABI(specs.ArchX86_64, arch.X86_64, false, false),
	specs.ArchX86:     newABI(specs.ArchX86, arch.I386, false, true),
	specs.ArchX32:     newABI(specs.ArchX32, arch.X32, true, false),
	specs.ArchAARCH64: newABI(specs.ArchAARCH64, arch.AARCH64, false, false),
	specs.ArchARM:     newABI(specs.ArchARM, arch.ARM, false, true),
}

// hostABIs are, for each GOARCH berth filters on, the native ABI and the
// others its processes may use.
var hostABIs = map[string][]specs.Arch{
	"amd64": {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	"arm64": {specs.ArchAARCH64, specs.ArchARM},
}

// knownName tells whether any architecture's table has the system call.
func knownName(name string) bool {
	for _, a := range []*arch.Info{arch.X86_64, arch.I386, arch.X32, arch.AARCH64, arch.ARM} {
		if _, ok := a.SyscallNames[name]; ok {
			return true
		}
	}
	// A call of an architecture berth does not filter (Docker's profile
	// lists those of s390x, riscv64, ...) is skipped, never an error.
	return allNames[name]
}

//go:generate go run mknames.go

// hostArch is the GOARCH the filter is compiled for (a variable for
// tests).
var hostArch = runtime.GOARCH
