package container

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthlabs/berth/internal/initproc"
	"github.com/berthlabs/berth/namespace"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Mount flags in Options are applied: a noexec tmpfs or bind mount
// refuses to execute, and /proc/mounts shows nosuid, nodev, noexec and
// the atime choice.
func TestMountFlags(t *testing.T) {
	needRoot(t)
	host := t.TempDir()
	bb, err := os.ReadFile(filepath.Join(testRootfs, "bin/busybox"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(host, "busybox"), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	out, st := run(t, &Spec{
		Mounts: []Mount{
			{Type: Tmpfs, Target: "/noexec", Options: []string{"noexec", "size=8m", "noatime"}},
			{Type: Tmpfs, Target: "/exec", Options: []string{"exec", "dev", "size=8m"}},
			{Type: Bind, Source: host, Target: "/bindnoexec", Options: []string{"noexec", "nosuid", "nodev", "ro", "relatime"}},
			{Type: Bind, Source: host, Target: "/bindexec", Options: []string{"rbind"}},
		},
		Process: sh(`cp /bin/busybox /noexec/; cp /bin/busybox /exec/
/noexec/busybox true 2>/dev/null && echo noexec-tmpfs-ran
/exec/busybox true && echo exec-tmpfs-ran
/bindnoexec/busybox true 2>/dev/null && echo noexec-bind-ran
/bindexec/busybox true && echo exec-bind-ran
touch /bindnoexec/x 2>/dev/null && echo ro-bind-written
grep -E ' /(noexec|exec|bindnoexec) ' /proc/mounts | cut -d' ' -f2,4`),
	})
	if !st.Success() {
		t.Fatalf("%v %q", st, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 || lines[0] != "exec-tmpfs-ran" || lines[1] != "exec-bind-ran" {
		t.Fatalf("exec on mounts: %q", out)
	}
	opts := map[string][]string{}
	for _, l := range lines[2:] {
		f := strings.Fields(l)
		if len(f) == 2 {
			opts[f[0]] = strings.Split(f[1], ",")
		}
	}
	has := func(mnt string, want ...string) {
		t.Helper()
		for _, w := range want {
			found := false
			for _, o := range opts[mnt] {
				found = found || o == w
			}
			if !found {
				t.Errorf("%s mounted with %v, want %s", mnt, opts[mnt], w)
			}
		}
	}
	has("/noexec", "nosuid", "nodev", "noexec", "noatime")
	has("/bindnoexec", "ro", "nosuid", "nodev", "noexec", "relatime")
	for _, o := range opts["/exec"] {
		if o == "noexec" || o == "nodev" {
			t.Errorf("/exec mounted with %v", opts["/exec"])
		}
	}
	for _, bad := range [][]string{{"shared"}, {"rro"}, {"size=1m"}, {"tmpcopyup"}} {
		_, err := Default.Create(testCtx(t), testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"),
			Mounts: []Mount{{Type: Bind, Source: host, Target: "/x", Options: bad}}})
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("bind mount with options %v: %v, want ErrInvalidSpec", bad, err)
		}
	}
}

// Sysctls kept per namespace are set inside the container; others, and
// ones whose namespace is the host's, are refused.
func TestSysctls(t *testing.T) {
	needRoot(t)
	hostShm, _ := os.ReadFile("/proc/sys/kernel/shmmax")
	out, st := run(t, &Spec{
		Sysctls: map[string]string{
			"kernel.shmmax":                       "123456789",
			"net/ipv4/ip_unprivileged_port_start": "80",
			"kernel.domainname":                   "example.test",
			"fs.mqueue.msg_max":                   "20",
		},
		Process: sh("cat /proc/sys/kernel/shmmax /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/kernel/domainname /proc/sys/fs/mqueue/msg_max; (echo 1 > /proc/sys/kernel/shmmax) 2>/dev/null && echo writable; true"),
	})
	if want := "123456789\n80\nexample.test\n20\n"; !st.Success() || out != want {
		t.Errorf("sysctls inside: %v %q, want %q", st, out, want)
	}
	if after, _ := os.ReadFile("/proc/sys/kernel/shmmax"); string(after) != string(hostShm) {
		t.Errorf("the host's kernel.shmmax changed: %q -> %q", hostShm, after)
	}
	host := map[namespace.Kind]Namespace{namespace.Net: {Mode: NamespaceHost}, namespace.IPC: {Mode: NamespaceHost}, namespace.UTS: {Mode: NamespaceHost}}
	for key, ns := range map[string]map[namespace.Kind]Namespace{
		"vm.swappiness":           nil,
		"kernel.hostname":         nil,
		"kernel.pid_max":          nil,
		"net.ipv4.ip_forward":     host,
		"kernel.shmmax":           host,
		"fs.mqueue.queues_max":    host,
		"kernel.domainname":       host,
		"../../etc/passwd":        nil,
		"net.ipv4.ip_forward.":    nil,
		"net.ipv4.tcp_syncookies": {namespace.Net: {Mode: NamespaceJoin, Path: "/proc/self/ns/net"}},
	} {
		_, err := Default.Create(testCtx(t), testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"), Namespaces: ns, Sysctls: map[string]string{key: "1"}})
		if !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("sysctl %s with namespaces %v: %v, want ErrInvalidSpec", key, ns, err)
		}
	}
}

// The inheritable, ambient, permitted and effective sets reach the
// program: /proc/self/status shows them.
func TestCapabilitySets(t *testing.T) {
	needRoot(t)
	set := func(names ...string) string {
		c, err := initproc.ParseCaps(names)
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("%016x", uint64(c))
	}
	status := sh("grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status | tr -d '\\t'")
	two := []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW"}
	// A user other than root keeps its ambient set across execve.
	status.User = "1000:1000"
	out, st := run(t, &Spec{
		Capabilities:            []string{"CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_KILL"},
		InheritableCapabilities: two, AmbientCapabilities: two,
		PermittedCapabilities: two, EffectiveCapabilities: two,
		Process: status,
	})
	want := fmt.Sprintf("CapInh:%s\nCapPrm:%s\nCapEff:%s\nCapAmb:%s\n", set(two...), set(two...), set(two...), set(two...))
	if !st.Success() || out != want {
		t.Errorf("user 1000: %v\n%s\nwant\n%s", st, out, want)
	}
	// Root: permitted and effective are the bounding and inheritable sets.
	status.User = ""
	out, st = run(t, &Spec{
		Capabilities:            []string{"CAP_KILL", "CAP_CHOWN"},
		InheritableCapabilities: []string{"CAP_CHOWN"},
		PermittedCapabilities:   []string{"CAP_KILL", "CAP_CHOWN"},
		Process:                 status,
	})
	want = fmt.Sprintf("CapInh:%s\nCapPrm:%s\nCapEff:%s\nCapAmb:%016x\n", set("CAP_CHOWN"), set("CAP_KILL", "CAP_CHOWN"), set("CAP_KILL", "CAP_CHOWN"), 0)
	if !st.Success() || out != want {
		t.Errorf("root: %v\n%s\nwant\n%s", st, out, want)
	}
	// Sets execve cannot give, or outside the bounding set, are refused.
	for name, spec := range map[string]*Spec{
		"inheritable outside bounding":   {Capabilities: []string{"CAP_KILL"}, InheritableCapabilities: []string{"CAP_CHOWN"}},
		"ambient outside bounding":       {Capabilities: []string{"CAP_KILL"}, AmbientCapabilities: []string{"CAP_CHOWN"}},
		"root permitted below bounding":  {Capabilities: []string{"CAP_KILL", "CAP_CHOWN"}, PermittedCapabilities: []string{"CAP_KILL"}},
		"user effective without ambient": {Capabilities: []string{"CAP_KILL"}, EffectiveCapabilities: []string{"CAP_KILL"}, Process: Process{User: "1000"}},
		"unknown capability":             {AmbientCapabilities: []string{"CAP_FLY"}},
	} {
		spec.Rootfs = testRootfs
		spec.Process.Args = []string{"true"}
		if _, err := Default.Create(testCtx(t), testID(t), spec); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("%s: %v, want ErrInvalidSpec", name, err)
		}
	}
}

// FromOCI converts what berth does and refuses, naming the field, what
// it does not.
func TestFromOCIConverts(t *testing.T) {
	s := &specs.Spec{
		Root:       &specs.Root{Path: "rootfs"},
		Domainname: "example.test",
		Process: &specs.Process{Args: []string{"sh"}, Cwd: "/", Capabilities: &specs.LinuxCapabilities{
			Bounding: []string{"CAP_KILL", "CAP_CHOWN"}, Effective: []string{"CAP_KILL"}, Permitted: []string{"CAP_KILL"},
			Inheritable: []string{"CAP_CHOWN"}, Ambient: []string{"CAP_KILL"},
		}},
		Mounts: []specs.Mount{
			{Destination: "/data", Type: "bind", Source: "/srv", Options: []string{"rbind", "rprivate", "nosuid", "nodev", "noexec", "ro", "relatime"}},
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=1777", "size=1m"}},
		},
		Linux: &specs.Linux{
			Sysctl:            map[string]string{"net.ipv4.ip_forward": "1"},
			RootfsPropagation: "rprivate",
			Namespaces:        []specs.LinuxNamespace{{Type: "mount"}, {Type: "network"}, {Type: "uts"}},
		},
	}
	out, err := FromOCI(s, "/bundle")
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(out.Capabilities, out.EffectiveCapabilities, out.PermittedCapabilities, out.InheritableCapabilities, out.AmbientCapabilities) !=
		"[CAP_KILL CAP_CHOWN] [CAP_KILL] [CAP_KILL] [CAP_CHOWN] [CAP_KILL]" {
		t.Errorf("capabilities: %v %v %v %v %v", out.Capabilities, out.EffectiveCapabilities, out.PermittedCapabilities, out.InheritableCapabilities, out.AmbientCapabilities)
	}
	if len(out.Sysctls) != 2 || out.Sysctls["net.ipv4.ip_forward"] != "1" || out.Sysctls["kernel.domainname"] != "example.test" {
		t.Errorf("sysctls: %v", out.Sysctls)
	}
	if len(out.Mounts) != 2 || out.Mounts[0].Type != Bind || fmt.Sprint(out.Mounts[0].Options) != "[rbind rprivate nosuid nodev noexec ro relatime]" ||
		out.Mounts[1].Type != Tmpfs || fmt.Sprint(out.Mounts[1].Options) != "[nosuid strictatime mode=1777 size=1m]" {
		t.Errorf("mounts: %+v", out.Mounts)
	}
	m, err := initproc.NewMount(string(out.Mounts[0].Type), "/srv", "/data", out.Mounts[0].ReadOnly, out.Mounts[0].Options)
	if err != nil || !m.ReadOnly || m.NoRecursive || m.Flags == 0 || m.Data != "" {
		t.Errorf("bind mount for init: %+v %v", m, err)
	}
}

func TestFromOCIRefuses(t *testing.T) {
	base := func() *specs.Spec {
		return &specs.Spec{Root: &specs.Root{Path: "/"}, Process: &specs.Process{Args: []string{"x"}}, Linux: &specs.Linux{}}
	}
	seven := 7
	mode := uint32(0o22)
	for field, edit := range map[string]func(s *specs.Spec){
		"hooks.prestart":      func(s *specs.Spec) { s.Hooks = prestartHook() },
		"hooks.poststop":      func(s *specs.Spec) { s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}}} },
		"hooks.createRuntime": func(s *specs.Spec) { s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true"}}} },
		"linux.devices[0] (/dev/fifo)": func(s *specs.Spec) {
			s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fifo", Type: "p"}}
		},
		"linux.resources": func(s *specs.Spec) {
			s.Linux.Resources = &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}}
		},
		"process.apparmorProfile": func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" },
		"process.selinuxLabel":    func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0" },
		"linux.mountLabel":        func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" },
		"process.scheduler":       func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedFIFO} },
		"process.ioPriority":      func(s *specs.Spec) { s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_IDLE} },
		"process.user.umask":      func(s *specs.Spec) { s.Process.User.Umask = &mode },
		"process.execCPUAffinity": func(s *specs.Spec) { s.Process.ExecCPUAffinity = &specs.CPUAffinity{Initial: "0"} },
		"linux.cgroupsPath":       func(s *specs.Spec) { s.Linux.CgroupsPath = "/elsewhere" },
		"linux.rootfsPropagation": func(s *specs.Spec) { s.Linux.RootfsPropagation = "shared" },
		"linux.netDevices":        func(s *specs.Spec) { s.Linux.NetDevices = map[string]specs.LinuxNetDevice{"eth1": {}} },
		"linux.intelRdt":          func(s *specs.Spec) { s.Linux.IntelRdt = &specs.LinuxIntelRdt{} },
		"linux.personality":       func(s *specs.Spec) { s.Linux.Personality = &specs.LinuxPersonality{Domain: specs.PerLinux32} },
		"linux.memoryPolicy":      func(s *specs.Spec) { s.Linux.MemoryPolicy = &specs.LinuxMemoryPolicy{} },
		"linux.timeOffsets": func(s *specs.Spec) {
			s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: int64(seven)}}
		},
		"windows":        func(s *specs.Spec) { s.Windows = &specs.Windows{} },
		"mounts[0] (/x)": func(s *specs.Spec) { s.Mounts = []specs.Mount{{Destination: "/x", Type: "nfs"}} },
		`mounts[0] (/x) option "shared"`: func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "bind", Source: "/srv", Options: []string{"rbind", "shared"}}}
		},
		`mounts[0] (/x) option "rnoexec"`: func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "tmpfs", Options: []string{"rnoexec"}}}
		},
		"mounts[0] (/x).uidMappings": func(s *specs.Spec) {
			s.Mounts = []specs.Mount{{Destination: "/x", Type: "bind", Source: "/srv", UIDMappings: []specs.LinuxIDMapping{{Size: 1}}}}
		},
	} {
		s := base()
		edit(s)
		_, err := FromOCI(s, "")
		if !errors.Is(err, errors.ErrUnsupported) || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(fmt.Sprint(err), field) {
			t.Errorf("OCI %s: %v, want an error naming it and matching errors.ErrUnsupported and ErrInvalidSpec", field, err)
		}
	}
	// An empty Hooks section and annotations are fine.
	s := base()
	s.Hooks, s.Annotations = &specs.Hooks{}, map[string]string{"a": "b"}
	if _, err := FromOCI(s, ""); err != nil {
		t.Errorf("empty hooks: %v", err)
	}
}

// prestartHook is a Hooks with the deprecated prestart hook set.
func prestartHook() *specs.Hooks {
	//lint:ignore SA1019 configs still carry the deprecated prestart hooks
	return &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true"}}}
}
