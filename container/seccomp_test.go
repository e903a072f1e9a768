package container

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strings"
	"testing"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/seccomp"
	"github.com/berthlabs/berth/namespace"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestSeccompDefaultAndUnconfined(t *testing.T) {
	needRoot(t)
	script := `unshare -U true && echo UNSHARED || echo REFUSED; grep Seccomp: /proc/self/status`
	out, _ := run(t, &Spec{Process: sh(script)})
	if !strings.Contains(out, "REFUSED") || !strings.Contains(out, "Seccomp:\t2") {
		t.Errorf("default profile: %q", out)
	}
	out, _ = run(t, &Spec{Process: sh(script), Seccomp: Seccomp{Unconfined: true}})
	if !strings.Contains(out, "UNSHARED") || !strings.Contains(out, "Seccomp:\t0") {
		t.Errorf("unconfined: %q", out)
	}
	// Without no_new_privs (init's thread installs the filter with its
	// CAP_SYS_ADMIN), in a user namespace, and with the cgroup namespace
	// (unshared by init's thread before the filter).
	for name, spec := range map[string]*Spec{
		"privilege escalation allowed": {AllowPrivilegeEscalation: true},
		"user namespace": {
			Namespaces:  map[namespace.Kind]Namespace{namespace.User: {Mode: NamespaceNew}},
			UIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
			GIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		},
		"cgroup namespace": {Namespaces: map[namespace.Kind]Namespace{namespace.Cgroup: {Mode: NamespaceNew}}},
	} {
		spec.Process = sh(script + `; grep NoNewPrivs: /proc/self/status; echo cg=$(grep -c /berth/ /proc/self/cgroup)`)
		out, st := run(t, spec)
		if !st.Success() || !strings.Contains(out, "REFUSED") || !strings.Contains(out, "Seccomp:\t2") {
			t.Errorf("%s: %v %q", name, st, out)
		}
		if spec.AllowPrivilegeEscalation && !strings.Contains(out, "NoNewPrivs:\t0") {
			t.Errorf("%s: %q", name, out)
		}
		// Rooted at the container's cgroup, the namespace hides its path.
		// (On cgroup v2 every container has one.)
		want := name == "cgroup namespace" || cgroup.HostVersion() == cgroup.V2
		if hidden := strings.Contains(out, "cg=0"); hidden != want {
			t.Errorf("%s: cgroup paths %q", name, out)
		}
	}
	// CAP_SYS_ADMIN brings the profile's rules for it (mount, unshare),
	// as with Docker.
	out, _ = run(t, &Spec{Process: sh(script), Capabilities: append([]string{"CAP_SYS_ADMIN"}, DefaultCapabilities...)})
	if !strings.Contains(out, "UNSHARED") || !strings.Contains(out, "Seccomp:\t2") {
		t.Errorf("default profile with CAP_SYS_ADMIN: %q", out)
	}
}

// mkdirProfile refuses mkdir and mkdirat with errno 39 and allows the
// rest.
func mkdirProfile() *specs.LinuxSeccomp {
	e := uint(unix.ENOTEMPTY)
	return &specs.LinuxSeccomp{
		DefaultAction: specs.ActAllow,
		Syscalls:      []specs.LinuxSyscall{{Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &e}},
	}
}

func TestSeccompProfiles(t *testing.T) {
	needRoot(t)
	script := `mkdir /tmp/d-$$ 2>&1; rmdir /tmp/d-$$ 2>/dev/null; unshare -U true && echo UNSHARED`
	out, st := run(t, &Spec{Process: sh(script), Seccomp: Seccomp{Profile: mkdirProfile()}})
	if !strings.Contains(out, "not empty") || !strings.Contains(out, "UNSHARED") || !st.Success() {
		t.Errorf("OCI profile: %q %v", out, st)
	}
	docker := `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
		{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 39, "excludes": {"caps": ["CAP_SYS_ADMIN"]}}]}`
	out, _ = run(t, &Spec{Process: sh(script), Seccomp: Seccomp{Docker: []byte(docker)}})
	if !strings.Contains(out, "not empty") {
		t.Errorf("Docker profile: %q", out)
	}
	// Its rule is excluded for a container with CAP_SYS_ADMIN.
	out, _ = run(t, &Spec{Process: sh(script), Seccomp: Seccomp{Docker: []byte(docker)}, Capabilities: []string{"CAP_SYS_ADMIN"}})
	if strings.Contains(out, "not empty") {
		t.Errorf("Docker profile, excluded by CAP_SYS_ADMIN: %q", out)
	}
	// An empty Docker profile means no filter, as with Docker.
	out, _ = run(t, &Spec{Process: sh(`grep Seccomp: /proc/self/status`), Seccomp: Seccomp{Docker: []byte(`{}`)}})
	if !strings.Contains(out, "Seccomp:\t0") {
		t.Errorf("empty Docker profile: %q", out)
	}
}

func TestSeccompExec(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c := startSleeper(t, &Spec{Process: Process{Args: []string{"sleep", "60"}}, Seccomp: Seccomp{Profile: mkdirProfile()}})
	var out strings.Builder
	p, err := c.Exec(ctx, Process{Args: []string{"sh", "-c", "mkdir /tmp/x 2>&1; grep Seccomp: /proc/self/status"}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "not empty") || !strings.Contains(out.String(), "Seccomp:\t2") {
		t.Errorf("exec under the container's profile: %q", out.String())
	}
	// init itself is never filtered.
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", c.Pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(status), "Seccomp:\t0") {
		t.Errorf("init is filtered:\n%s", status)
	}
}

func TestSeccompBadInput(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	other := specs.ArchAARCH64
	if runtime.GOARCH == "arm64" {
		other = specs.ArchX86_64
	}
	for _, tc := range []struct {
		name string
		sc   Seccomp
		want string
	}{
		{"unknown syscall", Seccomp{Profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"teleport"}, Action: specs.ActErrno}}}}, `unknown system call "teleport"`},
		{"unknown action", Seccomp{Profile: &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_SHRUG"}}, `unknown action "SCMP_ACT_SHRUG"`},
		{"other architecture only", Seccomp{Profile: &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{other}}}, "exclude the host's"},
		{"malformed Docker JSON", Seccomp{Docker: []byte(`{"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [`)}, "Docker profile"},
		{"Docker profile for another architecture", Seccomp{Docker: []byte(`{"defaultAction": "SCMP_ACT_ERRNO", "archMap": [{"architecture": "` + string(other) + `"}]}`)}, "no entry for the host's"},
		{"two at once", Seccomp{Unconfined: true, Profile: mkdirProfile()}, "set one of"},
	} {
		_, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"), Seccomp: tc.sc})
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidSpec mentioning %q", tc.name, err, tc.want)
		}
		if tc.sc.Profile != nil && !tc.sc.Unconfined && !errors.Is(err, seccomp.ErrInvalidProfile) {
			t.Errorf("%s: %v does not match seccomp.ErrInvalidProfile", tc.name, err)
		}
	}
	checkNoLeaks(t, before)
}

func TestFromOCISeccomp(t *testing.T) {
	base := func() *specs.Spec {
		return &specs.Spec{Root: &specs.Root{Path: "/"}, Process: &specs.Process{Args: []string{"x"}}, Linux: &specs.Linux{}}
	}
	s, err := FromOCI(base(), "")
	if err != nil {
		t.Fatal(err)
	}
	if !s.Seccomp.Unconfined {
		t.Errorf("no linux.seccomp: %+v, want Unconfined as in the OCI spec", s.Seccomp)
	}
	o := base()
	o.Linux.Seccomp = mkdirProfile()
	if s, err = FromOCI(o, ""); err != nil {
		t.Fatal(err)
	}
	if s.Seccomp.Unconfined || s.Seccomp.Profile == nil || s.Seccomp.Profile.Syscalls[0].Names[1] != "mkdirat" {
		t.Errorf("linux.seccomp: %+v", s.Seccomp)
	}
	o.Linux.Seccomp.Syscalls[0].Names = []string{"mkdir", "hyperjump"}
	if _, err := FromOCI(o, ""); !errors.Is(err, ErrInvalidSpec) || !errors.Is(err, seccomp.ErrInvalidProfile) || !strings.Contains(err.Error(), `linux.seccomp`) || !strings.Contains(err.Error(), `"hyperjump"`) {
		t.Errorf("unknown system call in linux.seccomp: %v", err)
	}
	for field, edit := range map[string]func(s *specs.Spec){
		"process.apparmorProfile": func(s *specs.Spec) { s.Process.ApparmorProfile = "docker-default" },
		"process.selinuxLabel":    func(s *specs.Spec) { s.Process.SelinuxLabel = "system_u:system_r:container_t:s0:c1,c2" },
		"linux.mountLabel":        func(s *specs.Spec) { s.Linux.MountLabel = "system_u:object_r:container_file_t:s0" },
	} {
		o := base()
		edit(o)
		_, err := FromOCI(o, "")
		if !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(fmt.Sprint(err), field) || !strings.Contains(fmt.Sprint(err), "berth") {
			t.Errorf("%s: %v, want a refusal naming it", field, err)
		}
	}
}
