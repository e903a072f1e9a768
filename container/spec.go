package container

import (
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/initproc"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// Spec describes a container: its root filesystem, the process it runs,
// and how it is isolated and limited. The zero value of every optional
// field means what `docker run` does by default.
type Spec struct {
	// Rootfs is the host directory that becomes the container's "/".
	Rootfs string
	// Image, instead of Rootfs, names an image in the runtime's layer
	// store (Runtime.Images) to run: the root filesystem is a fresh
	// copy-on-write snapshot on the image's layers, and the image's
	// config supplies defaults as `docker run` does: ENTRYPOINT and CMD
	// (Process.Args, when set, replace CMD), Env (the spec's entries
	// win), WorkingDir, User and StopSignal.
	Image string
	// Entrypoint, when non-nil, replaces the image's ENTRYPOINT (an empty
	// slice clears it) and drops its CMD, like `docker run --entrypoint`.
	Entrypoint []string
	// KeepRootfs keeps an image container's snapshot after Delete, and
	// after this process ends (without it the snapshot is ephemeral and
	// owned by this process: see layer.WithOwner and
	// snapshot.LabelEphemeral).
	KeepRootfs bool
	// rootfsMounts make the root filesystem of an image container.
	rootfsMounts []snapshot.Mount
	// ReadonlyRootfs mounts the root filesystem read-only.
	ReadonlyRootfs bool

	// Process is the container's main process (PID 1's child, the
	// process whose exit ends the container).
	Process Process

	// Hostname is the container's host name (in its own UTS namespace).
	// Empty means the container ID, shortened to 12 characters.
	Hostname string

	// Mounts are added on top of the rootfs, in order, after /proc, /dev
	// and /sys.
	Mounts []Mount

	// Resources are the cgroup limits. Resources.Devices, unlike the
	// other fields, adds to what the container gets anyway: its cgroup
	// allows DefaultDeviceRules, then the rules of Devices, then these
	// (like `docker run --device-cgroup-rule`; see cgroup.ParseDeviceRule).
	Resources cgroup.Resources
	// Devices are host device nodes made available in the container
	// (`docker run --device`, see ParseDevice). A device that does not
	// exist on the host fails Create.
	Devices []Device

	// Networks are the networks the container joins, in order: eth0,
	// eth1, ... (`docker run --network`). The container needs a new
	// network namespace (the default); it is resolved by its ID and the
	// attachment's aliases on user-defined networks, and gets an
	// /etc/hosts, /etc/hostname and /etc/resolv.conf by Docker's rules.
	// Nil means network none: only a loopback interface.
	Networks []NetworkAttachment
	// Ports are published on the host (`docker run -p`, see
	// network.ParsePort) for the container's address on its first
	// network: this host's own IPv4 clients reach it through the kernel
	// (DNAT), clients on other hosts and in containers through an
	// in-process relay. The host ports are bound at Start, before the
	// container runs; a port in use fails Start with
	// network.ErrPortInUse. When the first network is a CNI network, its
	// portmap plugin publishes them instead. An unprivileged caller's
	// container, which has no networks, publishes them by relaying each
	// to its loopback (see the package documentation on rootless
	// containers).
	Ports []network.PortMapping

	// Namespaces overrides, per kind, whether the container gets a new
	// namespace, shares the host's, or joins an existing one. Kinds not
	// listed get Docker's defaults: new mount, PID, UTS, IPC and network
	// namespaces, and a new cgroup namespace on cgroup v2 hosts.
	Namespaces map[namespace.Kind]Namespace
	// UIDMappings and GIDMappings map IDs when a new user namespace is
	// requested.
	UIDMappings, GIDMappings []namespace.IDMap

	// Rlimits are resource limits for every process of the container,
	// keyed by name as in `docker run --ulimit` ("nofile", "nproc", ...).
	Rlimits map[string]Rlimit

	// Capabilities, when non-nil, is the bounding set of the container's
	// processes (names like "CAP_NET_ADMIN" or "NET_ADMIN"): with the
	// other sets left nil, what a process running as root has, and the
	// most any process of the container can gain. Nil means Docker's
	// default set (DefaultCapabilities).
	Capabilities []string
	// InheritableCapabilities is the processes' inheritable set, and
	// AmbientCapabilities their ambient set, which a program keeps across
	// execve(2) as a user other than root too (ambient capabilities are
	// added to the inheritable set, as the kernel requires). Both must be
	// within the bounding set. Nil means none, as with Docker.
	InheritableCapabilities, AmbientCapabilities []string
	// PermittedCapabilities and EffectiveCapabilities, when non-nil, are
	// the exact permitted and effective sets the main process must have.
	// The kernel computes both at execve(2): root gets the bounding,
	// inheritable and ambient sets together, any other user its ambient
	// set. A set that differs from that is an error (at Create, or at
	// Start for an image container whose user is known only then). Nil
	// means whatever execve gives.
	PermittedCapabilities, EffectiveCapabilities []string
	// AllowPrivilegeEscalation, when false (the default), sets
	// no_new_privs so that setuid binaries and file capabilities cannot
	// raise privileges.
	AllowPrivilegeEscalation bool
	// Seccomp is the system call filter of the container's processes (the
	// main one and every Exec): the zero value is Docker's default
	// profile for the container's capabilities; Seccomp{Unconfined: true}
	// turns filtering off, like `docker run --security-opt
	// seccomp=unconfined`. See Seccomp.
	Seccomp Seccomp

	// MaskedPaths are hidden from the container (bind-mounted over with
	// /dev/null or an empty read-only tmpfs). Nil means
	// DefaultMaskedPaths; an empty non-nil slice masks nothing.
	MaskedPaths []string
	// ReadonlyPaths are remounted read-only. Nil means
	// DefaultReadonlyPaths.
	ReadonlyPaths []string

	// OOMScoreAdj is written to the container's processes'
	// /proc/PID/oom_score_adj (-1000..1000).
	OOMScoreAdj int

	// Sysctls are kernel parameters set inside the container before its
	// processes run, like `docker run --sysctl`. Keys are as sysctl(8)
	// spells them ("net.ipv4.ip_forward"; slashes instead of dots work
	// too). Only parameters the kernel keeps per namespace are allowed,
	// as runc allows them: net.* with a network namespace that is not the
	// host's (new or joined), kernel.msgmax, kernel.msgmnb, kernel.msgmni,
	// kernel.sem, kernel.shmall, kernel.shmmax, kernel.shmmni,
	// kernel.shm_rmid_forced and fs.mqueue.* with an IPC namespace that is
	// not the host's, and kernel.domainname with a UTS namespace that is
	// not the host's. Any other key, kernel.hostname included (set
	// Hostname), is an error.
	Sysctls map[string]string

	// StopSignal is what Stop sends first. Zero means SIGTERM.
	StopSignal syscall.Signal
	// StopTimeout is Stop's grace period when its caller passes a
	// negative one. Zero means 10 seconds.
	StopTimeout time.Duration

	// LogPath, when set, is a file that receives the main process's
	// stdout and stderr as JSON lines in Docker's json-file format
	// ({"log":..., "stream":"stdout", "time":...}), each line as soon as
	// the process writes it; see Container.Logs and Logs.
	LogPath string
}

// Process describes a process to run in a container: the main one
// (Spec.Process) or one added with Exec.
type Process struct {
	// Args is the program and its arguments. Args[0] is looked up in the
	// container's PATH when it holds no slash.
	Args []string
	// Env holds KEY=value pairs. For Exec they are added to the
	// container's. PATH defaults to DefaultPath.
	Env []string
	// Dir is the working directory inside the container; "/" when
	// empty. For the main process it is created when missing, as Docker
	// does with WORKDIR.
	Dir string
	// User is "user", "user:group", "uid" or "uid:gid", resolved against
	// the container's /etc/passwd and /etc/group. Empty means root, or
	// for Exec the container's user.
	User string
	// AdditionalGroups are supplementary groups (names or numeric IDs)
	// added to those the user has in the container's /etc/group.
	AdditionalGroups []string

	// Stdin, Stdout and Stderr work as in os/exec.Cmd: nil means the null
	// device, an *os.File is handed to the process directly, anything
	// else is copied through a pipe (Stdout and Stderr that are the same
	// writer share one pipe, so that their order is kept).
	Stdin  io.Reader // the process's standard input
	Stdout io.Writer // the process's standard output
	Stderr io.Writer // the process's standard error

	// TTY runs the process on a new pseudo-terminal, like `docker run
	// -t` (and, with Stdin, `-it`) or `docker exec -it`: a terminal of
	// the container's own devpts (the process sees /dev/pts/N) that is
	// its stdin, stdout, stderr and controlling terminal, in a session of
	// its own. What Stdin yields is written to the terminal as typed
	// input (Stdin nil: nothing is, as with -t alone; when Stdin ends,
	// the terminal stays open), and the terminal's output, stdout and
	// stderr as one stream, goes to Stdout (and to the log, as stdout);
	// Stderr must be nil or Stdout. The terminal's line discipline works
	// as on a console: a ^C byte (0x03) in Stdin interrupts the
	// foreground process group, Container.Resize and ExecProcess.Resize
	// change the window size and send SIGWINCH. berth never changes the
	// caller's own terminal: to pass keys through unedited, the caller
	// puts it in raw mode (see the examples). Stdin need not be a
	// terminal (a pipe or a network connection works, as with Docker's
	// API); an *os.File Stdin is polled and no more of it is read once
	// the process has ended, any other reader is copied until its next
	// Read after that. Exit codes, Wait and logs work as without a TTY.
	TTY bool
	// ConsoleSize is the terminal's window size at start, with TTY
	// (`docker run --console-size`, the OCI process.consoleSize). Zero
	// means the kernel's default, 0 rows and 0 columns, until a Resize.
	ConsoleSize WindowSize
}

// Rlimit is a soft and hard resource limit.
type Rlimit struct {
	// Soft and Hard are the current and maximum values (setrlimit's
	// rlim_cur and rlim_max), in the resource's unit; Soft must not be
	// above Hard.
	Soft, Hard uint64
}

// NamespaceMode says where a container's namespace of one kind comes from.
type NamespaceMode int

// The namespace modes.
const (
	// NamespaceNew creates a new namespace for the container.
	NamespaceNew NamespaceMode = iota + 1
	// NamespaceHost shares the host's (the embedding process's) namespace.
	NamespaceHost
	// NamespaceJoin joins the namespace at Namespace.Path, for example
	// another container's (see Container.NamespacePath).
	NamespaceJoin
)

// Namespace is one entry of Spec.Namespaces.
type Namespace struct {
	// Mode is NamespaceNew, NamespaceHost or NamespaceJoin (0 is
	// invalid). The mount namespace must be new, and a user namespace
	// cannot be joined.
	Mode NamespaceMode
	// Path is the namespace to join, with NamespaceJoin:
	// /proc/PID/ns/KIND or a file a namespace is bind-mounted on.
	Path string
}

// MountType is the kind of an extra mount.
type MountType string

// The mount types.
const (
	// Bind mounts a host file or directory (Source) into the container.
	Bind MountType = "bind"
	// Tmpfs mounts an empty in-memory file system.
	Tmpfs MountType = "tmpfs"
	// VolumeMount mounts a named volume of the runtime (Source is its name),
	// like `docker run -v name:/path`. A volume that does not exist is
	// created, as docker run does. When the volume is empty at Start and
	// the container has files at Target, they are copied into it first
	// (owners, modes, times, symlinks and hardlinks kept; extended
	// attributes are not), as Docker fills a new volume; the option
	// "nocopy" (Docker's volume-nocopy) turns that off.
	VolumeMount MountType = "volume"
)

// Mount is an extra mount in the container, like `docker run -v` and
// `--tmpfs`.
type Mount struct {
	// Type is Bind, Tmpfs or VolumeMount.
	Type MountType
	// Source is the host path for Bind, the volume's name for VolumeMount;
	// ignored for Tmpfs.
	Source string
	// Target is the absolute path inside the container. Missing
	// directories (and, for a file bind mount, the file) are created.
	Target string
	// ReadOnly makes the mount read-only.
	ReadOnly bool
	// Options are mount(8) options. Those that are mount flags apply to
	// both types: "ro" (as ReadOnly) and "rw", "nosuid", "nodev",
	// "noexec", "noatime", "nodiratime", "relatime", "strictatime",
	// "lazytime", "nosymfollow", "sync", "dirsync", and their opposites
	// ("suid", "dev", "exec", "atime", ...). A VolumeMount takes the options
	// of a Bind, and "nocopy". A Tmpfs is nosuid and nodev
	// unless they say "suid" or "dev"; a Bind keeps the flags of the
	// mount it binds unless they say otherwise. "bind" makes a Bind
	// non-recursive (the mounts below Source are not bound with it;
	// "rbind" is the default). "defaults", "private" and "rprivate"
	// change nothing: every mount of a container is private. A Tmpfs
	// passes other options to the file system ("size=64m", "mode=1777");
	// for a Bind they are an error, as are propagation ("shared",
	// "slave", ...), recursive flag ("rro", "rnosuid", ...) and id-mapping
	// options.
	Options []string
}

// DefaultPath is the PATH a container's processes get when their Env sets
// none.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// DefaultCapabilities is Docker's default capability set.
var DefaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
	"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
	"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// DefaultMaskedPaths are the paths runc and Docker hide from containers.
var DefaultMaskedPaths = []string{
	"/proc/asound", "/proc/acpi", "/proc/interrupts", "/proc/kcore",
	"/proc/keys", "/proc/latency_stats", "/proc/timer_list",
	"/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// DefaultReadonlyPaths are the paths runc and Docker make read-only.
var DefaultReadonlyPaths = []string{
	"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger",
}

var rlimitNames = map[string]int{
	"as": 9, "core": 4, "cpu": 0, "data": 2, "fsize": 1, "locks": 10,
	"memlock": 8, "msgqueue": 12, "nice": 13, "nofile": 7, "nproc": 6,
	"rss": 5, "rtprio": 14, "rttime": 15, "sigpending": 11, "stack": 3,
}

// rlimitResource maps "nofile", "RLIMIT_NOFILE" and the like to the
// resource number.
func rlimitResource(name string) (int, bool) {
	n := strings.ToLower(strings.TrimPrefix(strings.ToUpper(name), "RLIMIT_"))
	r, ok := rlimitNames[n]
	return r, ok
}

// defaultNamespaces are the kinds a container gets new by default.
func defaultNamespaces() map[namespace.Kind]NamespaceMode {
	m := map[namespace.Kind]NamespaceMode{
		namespace.Mount: NamespaceNew,
		namespace.PID:   NamespaceNew,
		namespace.UTS:   NamespaceNew,
		namespace.IPC:   NamespaceNew,
		namespace.Net:   NamespaceNew,
	}
	if cgroup.HostVersion() == cgroup.V2 {
		m[namespace.Cgroup] = NamespaceNew
	}
	return m
}

// validate checks what can be checked without touching the rootfs.
func (s *Spec) validate() error {
	if s.Rootfs == "" {
		return fmt.Errorf("%w: no rootfs given", ErrInvalidSpec)
	}
	if err := s.Process.validate(); err != nil {
		return err
	}
	if err := s.Resources.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
	}
	for k, ns := range s.Namespaces {
		if !validKind(k) {
			return fmt.Errorf("%w: unknown namespace kind %d", ErrInvalidSpec, int(k))
		}
		switch ns.Mode {
		case NamespaceNew, NamespaceHost:
		case NamespaceJoin:
			if ns.Path == "" {
				return fmt.Errorf("%w: joining a %s namespace needs its path", ErrInvalidSpec, k)
			}
		default:
			return fmt.Errorf("%w: %s namespace: unknown mode %d", ErrInvalidSpec, k, ns.Mode)
		}
		switch {
		case k == namespace.Mount && ns.Mode != NamespaceNew:
			return fmt.Errorf("%w: the mount namespace must be new: a container pivots into its own root", ErrInvalidSpec)
		case k == namespace.User && ns.Mode == NamespaceJoin:
			return fmt.Errorf("%w: joining an existing user namespace is not supported: a multi-threaded Go process cannot setns into one; create a new one with UIDMappings", ErrInvalidSpec)
		}
	}
	if s.Namespaces[namespace.User].Mode == NamespaceNew {
		if len(s.UIDMappings) == 0 || len(s.GIDMappings) == 0 {
			return fmt.Errorf("%w: a new user namespace needs UIDMappings and GIDMappings", ErrInvalidSpec)
		}
		if err := namespace.ValidateIDMaps(s.UIDMappings); err != nil {
			return fmt.Errorf("%w: uid mappings: %w", ErrInvalidSpec, err)
		}
		if err := namespace.ValidateIDMaps(s.GIDMappings); err != nil {
			return fmt.Errorf("%w: gid mappings: %w", ErrInvalidSpec, err)
		}
	}
	for _, d := range s.Devices {
		if err := d.validate(); err != nil {
			return err
		}
	}
	for i, m := range s.Mounts {
		if err := m.validate(); err != nil {
			return fmt.Errorf("%w: mount %d (%s): %w", ErrInvalidSpec, i, m.Target, err)
		}
	}
	for name, l := range s.Rlimits {
		if _, ok := rlimitResource(name); !ok {
			return fmt.Errorf("%w: unknown rlimit %q", ErrInvalidSpec, name)
		}
		if l.Soft > l.Hard {
			return fmt.Errorf("%w: rlimit %s: soft limit %d above hard limit %d", ErrInvalidSpec, name, l.Soft, l.Hard)
		}
	}
	for _, caps := range [][]string{s.Capabilities, s.InheritableCapabilities, s.AmbientCapabilities, s.PermittedCapabilities, s.EffectiveCapabilities} {
		if _, err := initproc.ParseCaps(caps); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
	}
	for k := range s.Sysctls {
		if !sysctlKey.MatchString(strings.ReplaceAll(k, "/", ".")) {
			return fmt.Errorf("%w: sysctl %q: not a parameter name", ErrInvalidSpec, k)
		}
	}
	for _, p := range append(append([]string{}, s.MaskedPaths...), s.ReadonlyPaths...) {
		if !path.IsAbs(p) {
			return fmt.Errorf("%w: masked or read-only path %q is not absolute", ErrInvalidSpec, p)
		}
	}
	if s.OOMScoreAdj < -1000 || s.OOMScoreAdj > 1000 {
		return fmt.Errorf("%w: oom score adjustment %d out of range -1000..1000", ErrInvalidSpec, s.OOMScoreAdj)
	}
	if s.StopTimeout < 0 {
		return fmt.Errorf("%w: negative stop timeout %v", ErrInvalidSpec, s.StopTimeout)
	}
	if len(s.Hostname) > 64 {
		return fmt.Errorf("%w: hostname %q longer than 64 bytes", ErrInvalidSpec, s.Hostname)
	}
	return nil
}

func validKind(k namespace.Kind) bool {
	for _, v := range namespace.Kinds() {
		if v == k {
			return true
		}
	}
	return false
}

func (p *Process) validate() error {
	if len(p.Args) == 0 || p.Args[0] == "" {
		return fmt.Errorf("%w: no program to run (Process.Args is empty)", ErrInvalidSpec)
	}
	for _, e := range p.Env {
		if !strings.Contains(e, "=") {
			return fmt.Errorf("%w: environment entry %q is not KEY=value", ErrInvalidSpec, e)
		}
	}
	if p.Dir != "" && !path.IsAbs(p.Dir) {
		return fmt.Errorf("%w: working directory %q is not absolute", ErrInvalidSpec, p.Dir)
	}
	return p.validateTTY()
}

func (m *Mount) validate() error {
	if !path.IsAbs(m.Target) {
		return fmt.Errorf("target %q is not an absolute path", m.Target)
	}
	if path.Clean(m.Target) == "/" {
		return fmt.Errorf("cannot mount over the container's root")
	}
	switch m.Type {
	case Bind:
		if !path.IsAbs(m.Source) {
			return fmt.Errorf("bind source %q is not an absolute host path", m.Source)
		}
	case Tmpfs:
	case VolumeMount:
		if err := checkVolumeName(m.Source); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unknown mount type %q (want %q, %q or %q)", m.Type, Bind, Tmpfs, VolumeMount)
	}
	if _, _, err := m.initMount(m.Source); err != nil {
		return err
	}
	return nil
}

// initMount returns the mount init makes for m, with source as the host
// path it binds (a volume's data directory for a VolumeMount), and whether a
// volume is to be filled from the container's files.
func (m *Mount) initMount(source string) (initproc.Mount, bool, error) {
	typ, opts, copyUp := m.Type, m.Options, false
	if m.Type == VolumeMount {
		typ, copyUp = Bind, true
		opts = slices.DeleteFunc(slices.Clone(opts), func(o string) bool {
			if o == "nocopy" {
				copyUp = false
				return true
			}
			return false
		})
	}
	im, err := initproc.NewMount(string(typ), source, m.Target, m.ReadOnly, opts)
	return im, copyUp, err
}

// sysctlKey is what a sysctl parameter name looks like, with dots.
var sysctlKey = regexp.MustCompile(`^[a-zA-Z0-9_-]+(\.[a-zA-Z0-9_-]+)+$`)

// ipcSysctls are the IPC namespace's parameters besides fs.mqueue.*.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true,
	"kernel.sem": true, "kernel.shmall": true, "kernel.shmmax": true,
	"kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

// checkSysctls returns s's sysctls with dotted keys, after checking that
// each is kept per namespace and the container has that namespace of its
// own (runc's rules).
func (s *Spec) checkSysctls(modes map[namespace.Kind]NamespaceMode) (map[string]string, error) {
	out := make(map[string]string, len(s.Sysctls))
	for k, v := range s.Sysctls {
		key := strings.ReplaceAll(k, "/", ".")
		var kind namespace.Kind
		switch {
		case ipcSysctls[key] || strings.HasPrefix(key, "fs.mqueue."):
			kind = namespace.IPC
		case strings.HasPrefix(key, "net."):
			kind = namespace.Net
		case key == "kernel.domainname":
			kind = namespace.UTS
		case key == "kernel.hostname":
			return nil, fmt.Errorf("%w: sysctl %s: set Hostname instead", ErrInvalidSpec, k)
		default:
			return nil, fmt.Errorf("%w: sysctl %s is not kept per namespace: it would change the host", ErrInvalidSpec, k)
		}
		private, err := s.privateNamespace(kind, modes[kind])
		if err != nil {
			return nil, fmt.Errorf("%w: sysctl %s: %w", ErrInvalidSpec, k, err)
		}
		if !private {
			return nil, fmt.Errorf("%w: sysctl %s needs a %s namespace that is not the host's", ErrInvalidSpec, k, kind)
		}
		out[key] = v
	}
	return out, nil
}

// privateNamespace reports whether the container's namespace of kind k,
// in mode m, is not this process's.
func (s *Spec) privateNamespace(k namespace.Kind, m NamespaceMode) (bool, error) {
	switch m {
	case NamespaceNew:
		return true, nil
	case NamespaceJoin:
		var theirs, ours unix.Stat_t
		if err := unix.Stat(s.Namespaces[k].Path, &theirs); err != nil {
			return false, fmt.Errorf("%s namespace %s: %w", k, s.Namespaces[k].Path, err)
		}
		if err := unix.Stat(namespace.ProcPath(os.Getpid(), k), &ours); err != nil {
			return false, fmt.Errorf("this process's %s namespace: %w", k, err)
		}
		return theirs.Dev != ours.Dev || theirs.Ino != ours.Ino, nil
	}
	return false, nil
}

// envWithPath returns env with PATH set to DefaultPath when it has none.
func envWithPath(env []string) []string {
	for _, e := range env {
		if strings.HasPrefix(e, "PATH=") {
			return env
		}
	}
	return append(append([]string(nil), env...), "PATH="+DefaultPath)
}

// mergeEnv returns base with the entries of over added or replaced.
func mergeEnv(base, over []string) []string {
	out := make([]string, 0, len(base)+len(over))
	idx := map[string]int{}
	for _, list := range [][]string{base, over} {
		for _, e := range list {
			k, _, _ := strings.Cut(e, "=")
			if i, ok := idx[k]; ok {
				out[i] = e
				continue
			}
			idx[k] = len(out)
			out = append(out, e)
		}
	}
	return out
}

// clone returns a deep copy of s: its slices and maps are its own, nil
// ones staying nil (nil and empty mean different things in a Spec). The
// stdio readers and writers are shared.
func (s *Spec) clone() *Spec {
	c := *s
	c.Entrypoint = slices.Clone(s.Entrypoint)
	c.rootfsMounts = slices.Clone(s.rootfsMounts)
	for i := range c.rootfsMounts {
		c.rootfsMounts[i].Options = slices.Clone(s.rootfsMounts[i].Options)
	}
	c.Process = s.Process.clone()
	c.Mounts = slices.Clone(s.Mounts)
	for i := range c.Mounts {
		c.Mounts[i].Options = slices.Clone(s.Mounts[i].Options)
	}
	c.Namespaces = maps.Clone(s.Namespaces)
	c.UIDMappings = slices.Clone(s.UIDMappings)
	c.GIDMappings = slices.Clone(s.GIDMappings)
	c.Rlimits = maps.Clone(s.Rlimits)
	c.Capabilities = slices.Clone(s.Capabilities)
	c.InheritableCapabilities = slices.Clone(s.InheritableCapabilities)
	c.AmbientCapabilities = slices.Clone(s.AmbientCapabilities)
	c.PermittedCapabilities = slices.Clone(s.PermittedCapabilities)
	c.EffectiveCapabilities = slices.Clone(s.EffectiveCapabilities)
	c.Sysctls = maps.Clone(s.Sysctls)
	c.Networks = slices.Clone(s.Networks)
	for i := range c.Networks {
		c.Networks[i].Aliases = slices.Clone(s.Networks[i].Aliases)
		c.Networks[i].MAC = slices.Clone(s.Networks[i].MAC)
	}
	c.Ports = slices.Clone(s.Ports)
	c.MaskedPaths = slices.Clone(s.MaskedPaths)
	c.ReadonlyPaths = slices.Clone(s.ReadonlyPaths)
	c.Seccomp = s.Seccomp.clone()
	return &c
}

// clone returns a copy of p with slices of its own.
func (p Process) clone() Process {
	p.Args = slices.Clone(p.Args)
	p.Env = slices.Clone(p.Env)
	p.AdditionalGroups = slices.Clone(p.AdditionalGroups)
	return p
}

// capSets parses the spec's inheritable, ambient, permitted and
// effective capability sets into p.
func (s *Spec) capSets(p *initproc.Proc) error {
	var err error
	if p.Inh, err = initproc.ParseCaps(s.InheritableCapabilities); err != nil {
		return err
	}
	if p.Amb, err = initproc.ParseCaps(s.AmbientCapabilities); err != nil {
		return err
	}
	for _, set := range []struct {
		names []string
		dst   **initproc.CapSet
	}{{s.PermittedCapabilities, &p.Perm}, {s.EffectiveCapabilities, &p.Eff}} {
		if set.names == nil {
			continue
		}
		caps, err := initproc.ParseCaps(set.names)
		if err != nil {
			return err
		}
		*set.dst = &caps
	}
	return nil
}
