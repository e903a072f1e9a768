package seccomp_test

import (
	"errors"
	"fmt"
	"slices"

	"github.com/berthlabs/berth/container/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Docker's default profile has rules that depend on the capabilities of
// the process: with CAP_SYS_ADMIN, mount and unshare are allowed.
func ExampleDefault() {
	allows := func(p *specs.LinuxSeccomp, name string) bool {
		for _, r := range p.Syscalls {
			if r.Action == specs.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
				return true
			}
		}
		return false
	}
	for _, caps := range [][]string{{"CAP_CHOWN"}, {"CAP_CHOWN", "CAP_SYS_ADMIN"}} {
		p, err := seccomp.Default(caps)
		if err != nil {
			panic(err)
		}
		prog, err := seccomp.Compile(p)
		if err != nil {
			panic(err)
		}
		fmt.Println(caps, "read:", allows(p, "read"), "unshare:", allows(p, "unshare"), "compiled:", prog.Len() > 0)
	}
	// Output:
	// [CAP_CHOWN] read: true unshare: false compiled: true
	// [CAP_CHOWN CAP_SYS_ADMIN] read: true unshare: true compiled: true
}

// Compile refuses what it cannot honour, with an error that names it.
func ExampleCompile() {
	_, err := seccomp.Compile(&specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdri"}, Action: specs.ActErrno}},
	})
	fmt.Println(err)
	fmt.Println(errors.Is(err, seccomp.ErrInvalidProfile))
	// Output:
	// invalid seccomp profile: syscalls[0]: unknown system call "mkdri"
	// true
}
