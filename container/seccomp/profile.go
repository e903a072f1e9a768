package seccomp

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"

	moby "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

var defaults sync.Map // sorted capabilities -> *specs.LinuxSeccomp

// Default returns Docker's default profile for a process whose bounding
// set holds caps (names like "CAP_SYS_ADMIN"), on the host's
// architecture and kernel: the rules Docker adds for a capability (mount
// and unshare for CAP_SYS_ADMIN, ptrace for CAP_SYS_PTRACE, ...) are in
// it only when caps has that capability. The profile is computed once
// per set of capabilities; the caller gets its own copy.
func Default(caps []string) (*specs.LinuxSeccomp, error) {
	caps = slices.Clone(caps)
	slices.Sort(caps)
	key := strings.Join(caps, ",")
	if p, ok := defaults.Load(key); ok {
		return clone(p.(*specs.LinuxSeccomp)), nil
	}
	p, err := moby.GetDefaultProfile(forCaps(caps))
	if err != nil {
		return nil, fmt.Errorf("the default seccomp profile (Docker's): %w", err)
	}
	defaults.Store(key, p)
	return clone(p), nil
}

// FromDocker converts a profile in Docker's JSON form (the file of
// `docker run --security-opt seccomp=profile.json`, with archMap and
// rules included or excluded by capability, architecture and kernel) for
// a process whose bounding set holds caps, on the host's architecture.
// An empty profile (no default action, no rules) means no filter: the
// result is nil, as for Docker.
func FromDocker(profile []byte, caps []string) (*specs.LinuxSeccomp, error) {
	var d moby.Seccomp
	dec := json.NewDecoder(strings.NewReader(string(profile)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&d); err != nil {
		return nil, invalid("Docker profile: %v", err)
	}
	p, err := moby.LoadProfile(string(profile), forCaps(caps))
	if err != nil {
		return nil, invalid("Docker profile: %v", err)
	}
	if p != nil && len(d.ArchMap) > 0 && len(p.Architectures) == 0 {
		var have []specs.Arch
		for _, a := range d.ArchMap {
			have = append(have, a.Arch)
		}
		return nil, invalid("Docker profile: archMap %v has no entry for the host's %s", have, hostABIs[hostArch][0])
	}
	return p, nil
}

func forCaps(caps []string) *specs.Spec {
	return &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{Bounding: caps}}}
}

// clone deep-copies p through JSON (profiles are plain data).
func clone(p *specs.LinuxSeccomp) *specs.LinuxSeccomp {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	var c specs.LinuxSeccomp
	if err := json.Unmarshal(b, &c); err != nil {
		panic(err)
	}
	return &c
}
