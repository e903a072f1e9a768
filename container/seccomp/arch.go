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
	names map[string]int
}

var abis = map[specs.Arch]*abi{
	specs.ArchX86_64:  {name: specs.ArchX86_64, audit: uint32(arch.X86_64.ID), names: arch.X86_64.SyscallNames},
	specs.ArchX86:     {name: specs.ArchX86, audit: uint32(arch.I386.ID), is32: true, names: arch.I386.SyscallNames},
	specs.ArchX32:     {name: specs.ArchX32, audit: uint32(arch.X32.ID), x32: true, is32: true, names: arch.X32.SyscallNames},
	specs.ArchAARCH64: {name: specs.ArchAARCH64, audit: uint32(arch.AARCH64.ID), names: arch.AARCH64.SyscallNames},
	specs.ArchARM:     {name: specs.ArchARM, audit: uint32(arch.ARM.ID), is32: true, names: arch.ARM.SyscallNames},
}

// hostABIs are, for each GOARCH berth filters on, the native ABI and the
// others its processes may use.
var hostABIs = map[string][]specs.Arch{
	"amd64": {specs.ArchX86_64, specs.ArchX86, specs.ArchX32},
	"arm64": {specs.ArchAARCH64, specs.ArchARM},
}

// knownName tells whether any architecture's table has the system call.
func knownName(name string) bool {
	for _, a := range abis {
		if _, ok := a.names[name]; ok {
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
