package container

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/namespace"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// standardMounts are the OCI mounts berth sets up itself for every
// container; FromOCI skips them.
var standardMounts = map[string]bool{
	"/proc": true, "/dev": true, "/dev/pts": true, "/dev/shm": true,
	"/dev/mqueue": true, "/sys": true, "/sys/fs/cgroup": true,
}

// FromOCI converts an OCI runtime spec (runc's config.json) into a Spec,
// so that runc bundle users can switch. bundle is the directory a
// relative root.path is relative to. Namespaces the OCI spec does not
// list are the host's, as in the OCI spec. Mounts of /proc, /dev, /sys
// and their usual sub-mounts are set up by berth and skipped; bind and
// tmpfs mounts are converted; any other mount type is an error.
func FromOCI(s *specs.Spec, bundle string) (*Spec, error) {
	if s == nil || s.Root == nil || s.Process == nil {
		return nil, fmt.Errorf("%w: OCI spec needs root and process", ErrInvalidSpec)
	}
	out := &Spec{
		Rootfs:         s.Root.Path,
		ReadonlyRootfs: s.Root.Readonly,
		Hostname:       s.Hostname,
	}
	if !filepath.IsAbs(out.Rootfs) {
		out.Rootfs = filepath.Join(bundle, out.Rootfs)
	}
	p := s.Process
	out.Process = Process{Args: p.Args, Env: p.Env, Dir: p.Cwd}
	out.Process.User = fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)
	if p.User.Username != "" {
		out.Process.User = p.User.Username
	}
	for _, g := range p.User.AdditionalGids {
		out.Process.AdditionalGroups = append(out.Process.AdditionalGroups, strconv.FormatUint(uint64(g), 10))
	}
	out.AllowPrivilegeEscalation = !p.NoNewPrivileges
	if p.Capabilities != nil {
		out.Capabilities = append([]string{}, p.Capabilities.Bounding...)
	}
	if p.OOMScoreAdj != nil {
		out.OOMScoreAdj = *p.OOMScoreAdj
	}
	for _, r := range p.Rlimits {
		if out.Rlimits == nil {
			out.Rlimits = map[string]Rlimit{}
		}
		out.Rlimits[r.Type] = Rlimit{Soft: r.Soft, Hard: r.Hard}
	}
	for _, m := range s.Mounts {
		if standardMounts[filepath.Clean(m.Destination)] {
			continue
		}
		mm, err := ociMount(m)
		if err != nil {
			return nil, err
		}
		out.Mounts = append(out.Mounts, mm)
	}
	if l := s.Linux; l != nil {
		out.Namespaces = map[namespace.Kind]Namespace{}
		for _, k := range namespace.Kinds() {
			out.Namespaces[k] = Namespace{Mode: NamespaceHost}
		}
		for _, ns := range l.Namespaces {
			k, err := namespace.ParseKind(string(ns.Type))
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
			}
			if ns.Path != "" {
				out.Namespaces[k] = Namespace{Mode: NamespaceJoin, Path: ns.Path}
			} else {
				out.Namespaces[k] = Namespace{Mode: NamespaceNew}
			}
		}
		out.UIDMappings = namespace.FromOCIIDMaps(l.UIDMappings)
		out.GIDMappings = namespace.FromOCIIDMaps(l.GIDMappings)
		if l.MaskedPaths != nil {
			out.MaskedPaths = l.MaskedPaths
		}
		if l.ReadonlyPaths != nil {
			out.ReadonlyPaths = l.ReadonlyPaths
		}
		if l.Resources != nil {
			r, err := cgroup.FromOCI(l.Resources)
			if err != nil {
				return nil, fmt.Errorf("%w: %w", ErrInvalidSpec, err)
			}
			out.Resources = *r
		}
	}
	return out, nil
}

func ociMount(m specs.Mount) (Mount, error) {
	opts := map[string]bool{}
	var rest []string
	for _, o := range m.Options {
		switch o {
		case "bind", "rbind", "ro", "rw", "nosuid", "nodev", "noexec", "private", "rprivate":
			opts[o] = true
		default:
			rest = append(rest, o)
		}
	}
	mm := Mount{Source: m.Source, Target: m.Destination, ReadOnly: opts["ro"]}
	switch {
	case m.Type == "bind" || opts["bind"] || opts["rbind"]:
		mm.Type = Bind
	case m.Type == "tmpfs":
		mm.Type = Tmpfs
		mm.Options = rest
	default:
		return mm, fmt.Errorf("%w: OCI mount of type %q on %s is not supported (bind and tmpfs are)", ErrInvalidSpec, m.Type, m.Destination)
	}
	return mm, nil
}

// LoadBundle reads an OCI bundle directory (config.json and its rootfs),
// as `runc run` does, and converts it with FromOCI.
func LoadBundle(dir string) (*Spec, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("load bundle: %w", err)
	}
	var s specs.Spec
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: load bundle %s: config.json: %w", ErrInvalidSpec, dir, err)
	}
	return FromOCI(&s, dir)
}

// ParseSignal parses a signal name ("SIGTERM", "TERM", "term") or number.
func ParseSignal(s string) (syscall.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), nil
	}
	u := strings.TrimPrefix(strings.ToUpper(s), "SIG")
	for i := 1; i < 32; i++ {
		sig := syscall.Signal(i)
		if unix.SignalName(sig) == "SIG"+u {
			return sig, nil
		}
	}
	return 0, fmt.Errorf("unknown signal %q", s)
}
