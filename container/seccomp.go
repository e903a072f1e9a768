package container

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/seccomp"
	"github.com/berthlabs/berth/internal/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Seccomp selects the system call filter of a container's processes, as
// `docker run --security-opt seccomp=...` does. The zero value is
// Docker's default profile, with its rules chosen for the container's
// capabilities (seccomp.Default): as with Docker, root in a default
// container cannot unshare namespaces, mount, load BPF programs, use
// keyctl, perf_event_open, open_by_handle_at and the rest the profile
// refuses. At most one field may be set.
//
// The filter is installed on the thread of init that starts each process
// (the main one and every Exec), after no_new_privs, just before the
// fork: init's own setup is never filtered, and the program runs under
// the filter from its execve on. A profile is compiled to BPF once per
// content and reused.
type Seccomp struct {
	// Unconfined turns filtering off (seccomp=unconfined).
	Unconfined bool
	// Profile is a profile in the OCI runtime spec's form (a config.json's
	// linux.seccomp), used as it is.
	Profile *specs.LinuxSeccomp
	// Docker is a profile in Docker's JSON form, the file of
	// seccomp=profile.json: its archMap and the rules it includes or
	// excludes by capability are resolved at Create for the container's
	// capabilities and the host's architecture. A profile with neither a
	// default action nor rules means no filter, as with Docker.
	Docker []byte
}

func (s Seccomp) clone() Seccomp {
	s.Docker = slices.Clone(s.Docker)
	if s.Profile != nil {
		b, err := json.Marshal(s.Profile)
		if err == nil {
			var p specs.LinuxSeccomp
			if json.Unmarshal(b, &p) == nil {
				s.Profile = &p
			}
		}
	}
	return s
}

// defaultPrograms caches Docker's default profile compiled, by bounding
// set.
var defaultPrograms sync.Map // initproc.CapSet -> *initproc.Seccomp

// program compiles the spec's filter for a process whose bounding set is
// caps; nil means unconfined. Errors match ErrInvalidSpec.
func (s *Spec) program(caps initproc.CapSet) (*initproc.Seccomp, error) {
	sc := &s.Seccomp
	n := 0
	for _, set := range []bool{sc.Unconfined, sc.Profile != nil, sc.Docker != nil} {
		if set {
			n++
		}
	}
	if n > 1 {
		return nil, fmt.Errorf("%w: Seccomp: set one of Unconfined, Profile and Docker", ErrInvalidSpec)
	}
	if sc.Unconfined {
		return nil, nil
	}
	var names []string
	if caps != 0 {
		names = strings.Split(caps.String(), ",")
	}
	p := sc.Profile
	switch {
	case sc.Docker != nil:
		var err error
		if p, err = seccomp.FromDocker(sc.Docker, names); err != nil {
			return nil, fmt.Errorf("%w: Seccomp.Docker: %w", ErrInvalidSpec, err)
		}
		if p == nil {
			return nil, nil
		}
	case p == nil:
		if f, ok := defaultPrograms.Load(caps); ok {
			return f.(*initproc.Seccomp), nil
		}
		var err error
		if p, err = seccomp.Default(names); err != nil {
			return nil, err
		}
		f, err := compileFilter(p)
		if err != nil {
			return nil, fmt.Errorf("the default seccomp profile (Docker's): %w", err)
		}
		defaultPrograms.Store(caps, f)
		return f, nil
	}
	f, err := compileFilter(p)
	if err != nil {
		return nil, fmt.Errorf("%w: Seccomp: %w", ErrInvalidSpec, err)
	}
	return f, nil
}

func compileFilter(p *specs.LinuxSeccomp) (*initproc.Seccomp, error) {
	prog, err := seccomp.Compile(p)
	if err != nil {
		return nil, err
	}
	return &initproc.Seccomp{Filter: prog.Bytes(), Flags: prog.Flags()}, nil
}

// seccompInCgroup reports whether the container's init must be in the
// container's cgroup because of its seccomp filter: on cgroup v2 a
// process is placed at its birth only by clone3 (CLONE_INTO_CGROUP),
// which Docker's profile refuses (ENOSYS, so that programs fall back to
// clone, whose flags it can check), and the filter is inherited from the
// init thread that forks. Children of an init inside the cgroup are born
// there with a plain clone. On cgroup v1 init places the forking thread
// alone and stays outside.
func (c *Container) seccompInCgroup() bool {
	return c.cfg.Seccomp != nil && c.cg.Version() == cgroup.V2
}
