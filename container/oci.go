package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/seccomp"
	"github.com/berthlabs/berth/internal/initproc"
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
// tmpfs mounts are converted with their options (see Mount.Options);
// linux.sysctl becomes Sysctls (and domainname kernel.domainname), the
// five capability sets Capabilities (the bounding set) and the
// *Capabilities fields, linux.resources Resources (see cgroup.FromOCI;
// its device rules come after DefaultDeviceRules, see Spec.Resources),
// linux.devices Devices (see ociDevices: the host must have each node),
// linux.seccomp Seccomp.Profile; a spec without linux.seccomp runs
// unfiltered (Seccomp.Unconfined), as the OCI spec has it and runc does.
// process.terminal and consoleSize become Process.TTY and ConsoleSize
// (no console socket: the caller sets Stdin and Stdout, which the
// terminal is relayed to). Annotations are ignored, as the OCI spec
// allows.
//
// What berth cannot do is refused, never dropped: the error names the
// field and matches ErrInvalidSpec and errors.ErrUnsupported. That is
// hooks, process.apparmorProfile, process.selinuxLabel, linux.mountLabel
// (berth applies no AppArmor profile or SELinux label), a linux.seccomp
// that seccomp.Compile refuses (matching seccomp.ErrInvalidProfile
// instead), linux.netDevices, the resources cgroup.FromOCI refuses,
// linux.cgroupsPath (a container's cgroup is
// Runtime.CgroupParent/ID), linux.rootfsPropagation other than private
// or rprivate, linux.intelRdt, linux.memoryPolicy, linux.personality,
// linux.timeOffsets, process.scheduler, process.ioPriority,
// process.execCPUAffinity, process.user.umask, other platforms' sections,
// mount types other than bind and tmpfs, id-mapped mounts, and mount
// options berth does not implement.
func FromOCI(s *specs.Spec, bundle string) (*Spec, error) {
	if s == nil || s.Root == nil || s.Process == nil {
		return nil, fmt.Errorf("%w: OCI spec needs root and process", ErrInvalidSpec)
	}
	if err := ociUnsupported(s); err != nil {
		return nil, err
	}
	out := &Spec{
		Rootfs:         s.Root.Path,
		ReadonlyRootfs: s.Root.Readonly,
		Hostname:       s.Hostname,
		Seccomp:        Seccomp{Unconfined: true},
	}
	if s.Linux != nil && s.Linux.Seccomp != nil {
		// Checked now, so a bad profile fails here and not at Create.
		if _, err := seccomp.Compile(s.Linux.Seccomp); err != nil {
			return nil, fmt.Errorf("%w: OCI linux.seccomp: %w", ErrInvalidSpec, err)
		}
		out.Seccomp = Seccomp{Profile: s.Linux.Seccomp}
	}
	if s.Domainname != "" {
		out.Sysctls = map[string]string{"kernel.domainname": s.Domainname}
	}
	if !filepath.IsAbs(out.Rootfs) {
		out.Rootfs = filepath.Join(bundle, out.Rootfs)
	}
	p := s.Process
	out.Process = Process{Args: p.Args, Env: p.Env, Dir: p.Cwd, TTY: p.Terminal}
	if cs := p.ConsoleSize; cs != nil && p.Terminal { // the OCI spec: ignored without terminal
		if cs.Height > 0xffff || cs.Width > 0xffff {
			return nil, fmt.Errorf("%w: OCI process.consoleSize %dx%d: more than 65535 rows or columns", ErrInvalidSpec, cs.Width, cs.Height)
		}
		out.Process.ConsoleSize = WindowSize{Rows: uint16(cs.Height), Cols: uint16(cs.Width)}
	}
	out.Process.User = fmt.Sprintf("%d:%d", p.User.UID, p.User.GID)
	if p.User.Username != "" {
		out.Process.User = p.User.Username
	}
	for _, g := range p.User.AdditionalGids {
		out.Process.AdditionalGroups = append(out.Process.AdditionalGroups, strconv.FormatUint(uint64(g), 10))
	}
	out.AllowPrivilegeEscalation = !p.NoNewPrivileges
	if c := p.Capabilities; c != nil {
		out.Capabilities = append([]string{}, c.Bounding...)
		out.InheritableCapabilities = slices.Clone(c.Inheritable)
		out.AmbientCapabilities = slices.Clone(c.Ambient)
		out.PermittedCapabilities = slices.Clone(c.Permitted)
		out.EffectiveCapabilities = slices.Clone(c.Effective)
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
	for i, m := range s.Mounts {
		if standardMounts[filepath.Clean(m.Destination)] {
			continue
		}
		mm, err := ociMount(i, m)
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
			if errors.Is(err, cgroup.ErrNotSupported) {
				return nil, fmt.Errorf("%w: OCI linux.resources: %w (%w)", ErrInvalidSpec, err, errors.ErrUnsupported)
			}
			if err != nil {
				return nil, fmt.Errorf("%w: OCI linux.resources: %w", ErrInvalidSpec, err)
			}
			out.Resources = *r
		}
		devs, err := ociDevices(l.Devices)
		if err != nil {
			return nil, err
		}
		out.Devices = devs
		for k, v := range l.Sysctl {
			if out.Sysctls == nil {
				out.Sysctls = map[string]string{}
			}
			if old, ok := out.Sysctls[k]; ok && old != v {
				return nil, fmt.Errorf("%w: OCI linux.sysctl %s = %q conflicts with domainname %q", ErrInvalidSpec, k, v, old)
			}
			out.Sysctls[k] = v
		}
	}
	return out, nil
}

// unsupportedOCI is FromOCI's error for a field berth cannot honour.
func unsupportedOCI(field, why string) error {
	return fmt.Errorf("%w: OCI %s: %s: %w", ErrInvalidSpec, field, why, errors.ErrUnsupported)
}

// ociField is a field of an OCI spec, and whether the spec sets it.
type ociField struct {
	name string
	set  bool
}

// ociUnsupported refuses, in the order of the OCI spec, the fields of s that berth cannot honour.
func ociUnsupported(s *specs.Spec) error {
	if h := s.Hooks; h != nil {
		//lint:ignore SA1019 a deprecated hook in a config is still one berth would not run
		prestart := h.Prestart
		for _, f := range []ociField{
			{"prestart", len(prestart) > 0}, {"createRuntime", len(h.CreateRuntime) > 0},
			{"createContainer", len(h.CreateContainer) > 0}, {"startContainer", len(h.StartContainer) > 0},
			{"poststart", len(h.Poststart) > 0}, {"poststop", len(h.Poststop) > 0},
		} {
			if f.set {
				return unsupportedOCI("hooks."+f.name, "berth runs no hooks")
			}
		}
	}
	for _, f := range []ociField{
		{"solaris", s.Solaris != nil}, {"windows", s.Windows != nil}, {"vm", s.VM != nil},
		{"zos", s.ZOS != nil}, {"freebsd", s.FreeBSD != nil},
	} {
		if f.set {
			return unsupportedOCI(f.name, "berth runs Linux containers only")
		}
	}
	p := s.Process
	if p.ApparmorProfile != "" {
		return unsupportedOCI("process.apparmorProfile", fmt.Sprintf("%q: berth applies no AppArmor profile (its confinement is namespaces, capabilities, seccomp and cgroups)", p.ApparmorProfile))
	}
	if p.SelinuxLabel != "" {
		return unsupportedOCI("process.selinuxLabel", fmt.Sprintf("%q: berth sets no SELinux labels", p.SelinuxLabel))
	}
	for _, f := range []ociField{
		{"process.scheduler", p.Scheduler != nil},
		{"process.ioPriority", p.IOPriority != nil},
		{"process.execCPUAffinity", p.ExecCPUAffinity != nil},
		{"process.user.umask", p.User.Umask != nil},
		{"process.commandLine", p.CommandLine != ""},
	} {
		if f.set {
			return unsupportedOCI(f.name, "not implemented")
		}
	}
	l := s.Linux
	if l == nil {
		return nil
	}
	if l.MountLabel != "" {
		return unsupportedOCI("linux.mountLabel", fmt.Sprintf("%q: berth sets no SELinux labels", l.MountLabel))
	}
	for _, f := range []ociField{
		{"linux.netDevices", len(l.NetDevices) > 0},
		{"linux.cgroupsPath", l.CgroupsPath != ""},
		{"linux.intelRdt", l.IntelRdt != nil},
		{"linux.memoryPolicy", l.MemoryPolicy != nil},
		{"linux.personality", l.Personality != nil},
		{"linux.timeOffsets", len(l.TimeOffsets) > 0},
	} {
		if f.set {
			return unsupportedOCI(f.name, "not implemented")
		}
	}
	switch l.RootfsPropagation {
	case "", "private", "rprivate":
	default:
		return unsupportedOCI("linux.rootfsPropagation", fmt.Sprintf("%q: a container's mounts are private", l.RootfsPropagation))
	}
	return nil
}

func ociMount(i int, m specs.Mount) (Mount, error) {
	field := fmt.Sprintf("mounts[%d] (%s)", i, m.Destination)
	if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
		return Mount{}, unsupportedOCI(field+".uidMappings", "id-mapped mounts are not implemented")
	}
	mm := Mount{Source: m.Source, Target: m.Destination, Options: slices.Clone(m.Options)}
	switch {
	case m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind"):
		mm.Type = Bind
	case m.Type == "tmpfs":
		mm.Type = Tmpfs
	default:
		return mm, unsupportedOCI(field, fmt.Sprintf("mount type %q (bind and tmpfs are supported)", m.Type))
	}
	for _, o := range m.Options {
		if _, err := initproc.NewMount(string(mm.Type), mm.Source, mm.Target, false, []string{o}); err != nil {
			return mm, unsupportedOCI(fmt.Sprintf("%s option %q", field, o), "not implemented")
		}
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
