package container

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// escapeScript tries, with busybox, what a container must not do; each
// attempt prints name=refused or name=ESCAPED. HOSTPID is a host process
// outside the container's PID namespace; DISK the host's root disk as
// "major minor".
const escapeScript = `
try() { n=$1; shift; if "$@" >/dev/null 2>&1; then echo "$n=ESCAPED"; else echo "$n=refused"; fi; }
try unshare-U unshare -U true
try unshare-m unshare -m true
try unshare-n unshare -n true
try unshare-p unshare -p -f true
try unshare-i unshare -i true
try unshare-u unshare -u true
try unshare-r unshare -r true
W=/tmp/escape-$$; mkdir -p $W/m $W/u $W/w $W/cg
try mount-proc mount -t proc proc $W/m
try mount-tmpfs mount -t tmpfs tmpfs $W/m
try mount-overlay mount -t overlay overlay -o lowerdir=/bin,upperdir=$W/u,workdir=$W/w $W/m
try mount-bind mount --bind / $W/m
try remount-sys mount -o remount,rw /sys
try remount-proc-sys mount -o remount,rw /proc/sys
try sysrq sh -c 'echo h > /proc/sysrq-trigger'
try write-sys sh -c 'echo 1 > /sys/kernel/mm/ksm/run'
try create-sys touch /sys/escape
try write-proc-sys sh -c 'echo escape > /proc/sys/kernel/hostname'
try read-kcore sh -c 'head -c 16 /proc/kcore > '$W'/kcore && [ -s '$W'/kcore ]'
try read-keys sh -c 'cat /proc/keys > '$W'/keys && [ -s '$W'/keys ]'
try read-disk sh -c "mknod $W/disk b $DISK; head -c 512 $W/disk > $W/disk.out && [ -s $W/disk.out ]"
try read-mem sh -c "mknod $W/mem c 1 1; head -c 1 $W/mem > $W/mem.out && [ -s $W/mem.out ]"
try write-init-exe sh -c 'echo x >> /proc/1/exe'
try write-self-exe sh -c 'echo x >> /proc/self/exe'
try release-agent-mount sh -c "mount -t cgroup -o memory cgroup $W/cg && echo $W/x > $W/cg/release_agent"
try release-agent-rdma sh -c "mount -t cgroup -o rdma cgroup $W/cg && echo $W/x > $W/cg/release_agent"
try release-agent-sysfs sh -c 'for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do [ -e $f ] && echo /x > $f && exit 0; done; exit 1'
# busybox date exits 0 when it cannot set the clock: look at the clock.
try set-time sh -c "date -s '2001-02-03 04:05:06'; [ \$(date +%Y) = 2001 ]"
try kill-host kill -9 $HOSTPID
# A device the device rules do not allow: the kernel log (readable by
# root without CAP_SYSLOG where dmesg_restrict is 0).
try open-kmsg sh -c "mknod $W/kmsg c 1 11; head -c 1 $W/kmsg > $W/kmsg.out && [ -s $W/kmsg.out ]"
try open-tun sh -c "mknod $W/tun c 10 200; [ -c $W/tun ] && exec 3<> $W/tun"
rm -rf $W 2>/dev/null
echo done
`

var buildProbeOnce = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "escapeprobe-")
	if err != nil {
		return "", err
	}
	os.Chmod(dir, 0o755)
	bin := filepath.Join(dir, "escapeprobe")
	cmd := exec.Command("go", "build", "-o", bin, "./testdata/escapeprobe")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build escapeprobe: %v: %s", err, out)
	}
	return dir, nil
})

// escapeProbe builds testdata/escapeprobe (static, CGO_ENABLED=0) once
// and returns the directory that holds it.
func escapeProbe(t testing.TB) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs the go command to build the probe")
	}
	dir, err := buildProbeOnce()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// results parses name=result lines.
func results(out string) map[string]string {
	r := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(l), "="); ok {
			r[k] = v
		}
	}
	return r
}

// probeWant is what each raw system call of escapeprobe must get inside
// a default container: EPERM (the default profile's errno, or the
// kernel's for a call the profile allows but capabilities refuse) or
// ENOSYS for clone3, which Docker's profile answers so that programs
// fall back to clone, whose flags it can check.
var probeWant = map[string]string{
	"unshare-user": "EPERM", "unshare-mount": "EPERM", "unshare-net": "EPERM", "unshare-pid": "EPERM",
	"unshare-ipc": "EPERM", "unshare-uts": "EPERM", "unshare-cgroup": "EPERM", "unshare-time": "EPERM",
	"clone-user": "EPERM", "clone3": "ENOSYS", "mount-tmpfs": "EPERM",
	"keyctl": "EPERM", "add_key": "EPERM", "bpf": "EPERM", "perf_event_open": "EPERM",
	"open_by_handle_at": "EPERM", "ptrace-init": "EPERM", "settimeofday": "EPERM", "clock_settime": "EPERM",
	"init_module": "EPERM", "kexec_load": "EPERM", "reboot": "EPERM", "userfaultfd": "EPERM",
}

func init() {
	if runtime.GOARCH == "amd64" {
		// x32 and i386 calls (int $0x80) are filtered by their own
		// tables; getpid shows the i386 path works at all.
		probeWant["x32-unshare-user"] = "EPERM"
		probeWant["i386-getpid"] = "ok"
		probeWant["i386-unshare-user"] = "EPERM"
		probeWant["i386-keyctl"] = "EPERM"
	}
}

// TestEscape tries the known ways out of a container from inside a
// default one, as root and as another user, and requires each to fail:
// with busybox (namespaces, mounts, /proc and /sys, devices, the host
// binary, cgroup release_agent, the clock, host processes) and with raw
// system calls busybox cannot make (testdata/escapeprobe), on amd64 also
// as x32 and i386 (int $0x80) calls, which a filter must not let through
// by checking x86_64 numbers only. The same
// container unconfined shows that the filter is what refuses some of
// them, so the test can fail.
func TestEscape(t *testing.T) {
	needRoot(t)
	probeDir := escapeProbe(t)
	host := exec.Command("sleep", "60")
	if err := host.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { host.Process.Kill(); host.Wait() }()
	self, _ := os.Executable()
	sumBefore := fileSum(t, self)
	env, want := escapeEnv(t, probeDir, host.Process.Pid)
	for _, user := range []string{"", "1000:1000"} {
		name := "root"
		if user != "" {
			name = "user-" + strings.Split(user, ":")[0]
		}
		t.Run(name, func(t *testing.T) {
			out, _ := run(t, escapeSpec(probeDir, env, user, Seccomp{}))
			checkEscapes(t, out, want)
		})
	}
	if err := host.Process.Signal(unix.Signal(0)); err != nil {
		t.Errorf("the host process died: %v", err)
	}
	if fileSum(t, self) != sumBefore {
		t.Fatal("the host binary changed")
	}

	// Unconfined, root in the container creates a user namespace, and the
	// calls the filter answered reach the kernel.
	out, _ := run(t, escapeSpec(probeDir, env, "", Seccomp{Unconfined: true}))
	r := results(out)
	if r["unshare-U"] != "ESCAPED" {
		t.Errorf("unconfined: unshare -U: %q, want it to succeed (the default profile is what stops it)", r["unshare-U"])
	}
	for _, k := range []string{"clone3", "clone-user", "keyctl"} {
		if r[k] == probeWant[k] {
			t.Errorf("unconfined: %s: %s as with the filter", k, r[k])
		}
	}
	if runtime.GOARCH == "amd64" {
		for _, k := range []string{"x32-unshare-user", "i386-unshare-user", "i386-keyctl"} {
			if _, ok := want[k]; ok && r[k] == "EPERM" {
				t.Errorf("unconfined: %s: EPERM as with the filter", k)
			}
		}
	}
	if t.Failed() {
		t.Logf("unconfined output:\n%s", out)
	}
	// TestRootlessChild runs the same set in a rootless container.
}

// escapeEnv returns the environment escapeScript and the probe need
// (hostPid: a process outside the container; the host's root disk) and
// what each of the probe's calls must get on this kernel.
func escapeEnv(t *testing.T, probeDir string, hostPid int) ([]string, map[string]string) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat("/", &st); err != nil {
		t.Fatal(err)
	}
	env := []string{fmt.Sprintf("HOSTPID=%d", hostPid), fmt.Sprintf("DISK=%d %d", unix.Major(st.Dev), unix.Minor(st.Dev))}
	want := maps.Clone(probeWant)
	if _, ok := want["i386-getpid"]; ok {
		if out, _ := exec.Command(filepath.Join(probeDir, "escapeprobe"), "i386-getpid").Output(); string(out) != "i386-getpid=ok\n" {
			t.Logf("no i386 system calls on this kernel (%q): not probed", out)
			env = append(env, "ESCAPEPROBE_NO_I386=1")
			for k := range want {
				if strings.HasPrefix(k, "i386-") {
					delete(want, k)
				}
			}
		}
	}
	return env, want
}

// escapeSpec runs escapeScript, then the probe, as user.
func escapeSpec(probeDir string, env []string, user string, sc Seccomp) *Spec {
	return &Spec{
		Process: Process{
			Args: []string{"sh", "-c", escapeScript + "\n/probe/escapeprobe"},
			Env:  env, User: user,
		},
		Mounts:  []Mount{{Type: Bind, Source: probeDir, Target: "/probe", ReadOnly: true}},
		Seccomp: sc,
	}
}

// checkEscapes requires every attempt of escapeScript to be refused and
// each probe call to get what want says.
func checkEscapes(t *testing.T, out string, want map[string]string) {
	t.Helper()
	r := results(out)
	if r["done"] != "" || !strings.Contains(out, "\ndone\n") {
		t.Fatalf("the script did not finish:\n%s", out)
	}
	for k, v := range r {
		if _, raw := want[k]; !raw && v != "refused" {
			t.Errorf("%s: %s", k, v)
		}
	}
	for k, w := range want {
		if r[k] != w {
			t.Errorf("%s: %q, want %s", k, r[k], w)
		}
	}
	if t.Failed() {
		t.Logf("output:\n%s", out)
	}
}
