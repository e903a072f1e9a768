package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/internal/osthread"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/berthlabs/berth/namespace"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// The rootless tests run as a throwaway unprivileged user: TestRootless
// (as root) makes the user, with or without subordinate IDs, in private
// copies of /etc/passwd, /etc/group, /etc/subuid and /etc/subgid that are
// bound over the host's in a mount namespace of the child's alone (so
// newuidmap sees them, and the host's files are never written), makes a
// home it owns, copies this test binary there and runs its
// TestRootlessChild as that user; the child runs containers and checks
// what it sees. The parent then checks what the child left behind, and
// removes the home.

// Environment of the child run.
const (
	envRootlessChild = "BERTH_ROOTLESS_CHILD" // "single" or "subids"
	envRootlessUID   = "BERTH_ROOTLESS_SUBUID"
	envRootlessProbe = "BERTH_ROOTLESS_PROBE"   // TestEscape's probe, built by the parent
	envRootlessRO    = "BERTH_ROOTLESS_ROOTDIR" // a root-owned host directory
	envRootlessCg    = "BERTH_ROOTLESS_CGROUP"  // a cgroup delegated to the user
)

// delegateV1Cgroup makes, on a cgroup v1 (or hybrid) host, the cgroup
// /name in every v1 hierarchy berth uses and gives it to the user, as an
// administrator delegates a subtree on v1 (directory and files chowned).
// It returns the cgroup's path, "" elsewhere, and removes the cgroups when
// the test ends, failing if the child left any below.
func delegateV1Cgroup(t testing.TB, name string, uid, gid int) string {
	t.Helper()
	if cgroup.HostVersion() != cgroup.V1 {
		return ""
	}
	seen := map[string]bool{}
	var dirs []string
	for _, c := range []string{"cpuset", "cpu", "cpuacct", "memory", "pids", "blkio", "freezer", "devices"} {
		mnt, err := filepath.EvalSymlinks("/sys/fs/cgroup/" + c)
		if err != nil || seen[mnt] {
			continue
		}
		seen[mnt] = true
		dir := filepath.Join(mnt, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
		if c == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, _ := os.ReadFile(filepath.Join(mnt, f))
				if err := os.WriteFile(filepath.Join(dir, f), b, 0); err != nil {
					t.Fatal(err)
				}
			}
		}
		os.Chown(dir, uid, gid)
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			os.Chown(filepath.Join(dir, e.Name()), uid, gid)
		}
	}
	t.Cleanup(func() {
		for _, d := range dirs {
			var err error
			for i := 0; i < 50; i++ {
				if err = os.Remove(d); err == nil || os.IsNotExist(err) {
					err = nil
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				sub, _ := os.ReadDir(d)
				t.Errorf("remove the delegated cgroup %s: %v (left below it: %v)", d, err, sub)
			}
		}
	})
	return "/" + name
}

var userSeq atomic.Int64

// rootlessUser makes an unprivileged user: a UID and GID no entry of the
// host's /etc/passwd and /etc/group uses, a home of its own, and private
// copies of /etc/passwd, /etc/group, /etc/subuid and /etc/subgid with
// its entries added (the subordinate ID range subStart..+65535 when
// subStart is not 0), which withUserFiles mounts over the host's for the
// child alone. The host's files are never written: tests of other
// packages watch them, and other runs of this test add users at the same
// time.
func rootlessUser(t testing.TB, subStart uint32) (name string, uid, gid int, home string, files map[string]string) {
	t.Helper()
	name = fmt.Sprintf("berthrl%d-%d", os.Getpid(), userSeq.Add(1))
	used := map[int]bool{}
	for _, f := range []string{"/etc/passwd", "/etc/group"} {
		b, _ := os.ReadFile(f)
		for _, l := range strings.Split(string(b), "\n") {
			if fl := strings.Split(l, ":"); len(fl) > 2 {
				n, _ := strconv.Atoi(fl[2])
				used[n] = true
			}
		}
	}
	uid = 20000 + (os.Getpid()*7+int(userSeq.Load())*131)%40000
	for used[uid] || len(userProcs(uid, 0)) > 0 {
		uid++
	}
	gid = uid
	home, err := os.MkdirTemp(scratch, "rootless-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	if err := os.Chown(home, uid, gid); err != nil {
		t.Fatal(err)
	}
	os.Chmod(home, 0o700)
	etc := filepath.Join(scratch, "rootless-etc-"+name)
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(etc) })
	add := map[string]string{
		"/etc/passwd": fmt.Sprintf("%s:x:%d:%d::%s:/bin/false\n", name, uid, gid, home),
		"/etc/group":  fmt.Sprintf("%s:x:%d:\n", name, gid),
	}
	if subStart != 0 {
		add[namespace.SubUIDFile] = fmt.Sprintf("%s:%d:65536\n", name, subStart)
		add[namespace.SubGIDFile] = add[namespace.SubUIDFile]
	}
	files = map[string]string{}
	for _, f := range []string{"/etc/passwd", "/etc/group", namespace.SubUIDFile, namespace.SubGIDFile} {
		b, err := os.ReadFile(f)
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		priv := filepath.Join(etc, filepath.Base(f))
		if err := os.WriteFile(priv, append(b, add[f]...), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(f); err == nil {
			files[f] = priv
		}
	}
	return name, uid, gid, home, files
}

// withUserFiles runs fn on an OS thread of its own that has a private
// mount namespace in which files (host path -> private copy) are bound
// over the host's; a process fn starts inherits it. The thread is never
// given back to the Go scheduler.
func withUserFiles(files map[string]string, fn func() error) error {
	done := make(chan error, 1)
	osthread.Go(func() { // never unlocked: the thread ends with this goroutine
		done <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare the mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return err
			}
			for host, priv := range files {
				if err := unix.Mount(priv, host, "", unix.MS_BIND, ""); err != nil {
					return fmt.Errorf("bind %s over %s: %w", priv, host, err)
				}
			}
			return fn()
		}()
	})
	return <-done
}

// userProcs lists the processes running as uid or as a UID in
// [sub, sub+65536).
func userProcs(uid int, sub uint32) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/status")
		if err != nil {
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == "Uid:" {
				u, _ := strconv.Atoi(f[1])
				if u == uid || sub != 0 && uint32(u) >= sub && uint32(u) < sub+65536 {
					cmd, _ := os.ReadFile("/proc/" + e.Name() + "/cmdline")
					out = append(out, e.Name()+" "+string(bytes.ReplaceAll(cmd, []byte{0}, []byte{' '})))
				}
			}
		}
	}
	return out
}

// rootlessCase is one kind of unprivileged user the tests run as.
type rootlessCase struct {
	name string
	sub  uint32 // first subordinate ID, or 0 for none
}

var rootlessCases = []rootlessCase{
	{"single", 0},
	{"subids", 300000000 + uint32(os.Getpid()%2000)*65536},
}

// rootlessRun is a run of this test binary as a throwaway user.
type rootlessRun struct {
	name     string
	uid, gid int
	home     string
	out      []byte
}

// runAsRootlessUser creates a user of kind tc with a home, copies this
// test binary there and runs it with args as that user, with what
// TestRootlessChild needs in its environment. It fails tb if the run
// fails.
func runAsRootlessUser(tb testing.TB, tc rootlessCase, args ...string) *rootlessRun {
	tb.Helper()
	if _, err := exec.LookPath("newuidmap"); err != nil && tc.sub != 0 {
		tb.Skip("needs newuidmap (apt-get install uidmap)")
	}
	exe, err := os.Executable()
	if err != nil {
		tb.Fatal(err)
	}
	name, uid, gid, home, files := rootlessUser(tb, tc.sub)
	if tc.sub != 0 && (files[namespace.SubUIDFile] == "" || files[namespace.SubGIDFile] == "") {
		tb.Skipf("needs %s and %s to bind the test user's over", namespace.SubUIDFile, namespace.SubGIDFile)
	}
	bin := filepath.Join(home, "container.test")
	copyExe(tb, exe, bin, uid, gid)
	cg := delegateV1Cgroup(tb, name, uid, gid)
	// A host directory only root may write, for the child to bind into
	// a container read-write.
	rootDir := filepath.Join(home, "rootdir")
	if err := os.Mkdir(rootDir, 0o755); err != nil {
		tb.Fatal(err)
	}
	// An image layer with a file of another owner, for the child to
	// import and run.
	owned := filepath.Join(home, "imgextra", "srv", "owned33")
	os.MkdirAll(filepath.Dir(owned), 0o755)
	if err := os.WriteFile(owned, []byte("x"), 0o644); err != nil {
		tb.Fatal(err)
	}
	os.Chown(owned, 33, 33)
	tmp := filepath.Join(home, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		tb.Fatal(err)
	}
	os.Chown(tmp, uid, gid)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = home
	cmd.Env = []string{
		"HOME=" + home, "TMPDIR=" + tmp, "USER=" + name, "LOGNAME=" + name,
		"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
		envRootlessChild + "=" + tc.name,
		envRootlessUID + "=" + strconv.FormatUint(uint64(tc.sub), 10),
		envRootlessRO + "=" + rootDir,
		envRootlessCg + "=" + cg,
	}
	if t, ok := tb.(*testing.T); ok {
		cmd.Env = append(cmd.Env, envRootlessProbe+"="+escapeProbe(t))
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}},
		Setpgid:    true,
		Pdeathsig:  syscall.SIGKILL,
	}
	// On timeout the child dumps its goroutines (SIGQUIT).
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGQUIT) }
	cmd.WaitDelay = 10 * time.Second
	var out []byte
	err = withUserFiles(files, func() error {
		var err error
		out, err = cmd.CombinedOutput()
		if cmd.Process != nil {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the child's group, in case
		}
		return err
	})
	tb.Logf("child as %s (uid %d):\n%s", name, uid, out)
	if err != nil {
		tb.Fatalf("child: %v", err)
	}
	return &rootlessRun{name: name, uid: uid, gid: gid, home: home, out: out}
}

func TestRootless(t *testing.T) {
	needRoot(t)
	for _, tc := range rootlessCases {
		t.Run(tc.name, func(t *testing.T) {
			r := runAsRootlessUser(t, tc, "-test.run=^TestRootlessChild$", "-test.v", "-test.count=1")
			if !bytes.Contains(r.out, []byte("--- PASS: TestRootlessChild")) {
				t.Fatal("the child did not run TestRootlessChild")
			}
			uid, home := r.uid, r.home
			var left []string
			for i := 0; i < 50; i++ {
				if left = userProcs(uid, tc.sub); len(left) == 0 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if len(left) > 0 {
				t.Errorf("processes of the user left running: %v", left)
			}
			// The child wrote only in its home: nothing of the user's
			// remains in the shared temporary directories.
			for _, d := range []string{"/tmp", "/dev/shm", "/var/tmp", scratch} {
				ents, _ := os.ReadDir(d)
				for _, e := range ents {
					fi, err := e.Info()
					if err != nil || filepath.Join(d, e.Name()) == home {
						continue
					}
					if st, ok := fi.Sys().(*syscall.Stat_t); ok && (int(st.Uid) == uid || tc.sub != 0 && st.Uid >= tc.sub && st.Uid < tc.sub+65536) {
						t.Errorf("the user left %s", filepath.Join(d, e.Name()))
					}
				}
			}
			// The child checked the owners it could see; the host's view
			// of what the container made on the bind mount, once more.
			checkHostOwners(t, filepath.Join(home, "shared"), uid, tc.sub)
		})
	}
}

// BenchmarkRootlessRun is BenchmarkRun for an unprivileged user, without
// a cgroup (Runtime.NoCgroups): it runs this binary's
// BenchmarkRootlessChildRun as a throwaway user, with a single-ID map
// and with subordinate IDs (newuidmap, and init executed twice), and
// reports the child's figure as rootless-ns/op.
func BenchmarkRootlessRun(b *testing.B) {
	needRoot(b)
	for _, tc := range rootlessCases {
		b.Run(tc.name, func(b *testing.B) {
			r := runAsRootlessUser(b, tc, "-test.run=^$", "-test.bench=^BenchmarkRootlessChildRun$", fmt.Sprintf("-test.benchtime=%dx", b.N))
			for _, l := range strings.Split(string(r.out), "\n") {
				f := strings.Fields(l)
				if len(f) >= 4 && strings.HasPrefix(f[0], "BenchmarkRootlessChildRun") && f[3] == "ns/op" {
					ns, err := strconv.ParseFloat(f[2], 64)
					if err == nil {
						b.ReportMetric(ns, "rootless-ns/op")
						return
					}
				}
			}
			b.Fatal("no figure from the child")
		})
	}
}

// BenchmarkRootlessChildRun is run by BenchmarkRootlessRun as the
// unprivileged user.
func BenchmarkRootlessChildRun(b *testing.B) {
	if os.Getenv(envRootlessChild) == "" {
		b.Skip("run by BenchmarkRootlessRun as an unprivileged user")
	}
	rootfs := filepath.Join(os.Getenv("HOME"), "rootfs")
	if err := busybox.Rootfs(rootfs); err != nil {
		b.Fatal(err)
	}
	rt := &Runtime{NoCgroups: true}
	benchInterleaved(b, benchVariant{"rootless", rt, func() *Spec {
		return &Spec{Rootfs: rootfs, Process: Process{Args: []string{"/bin/true"}}}
	}})
}

// checkHostOwners checks, on the host, the owners of what the child's
// containers created in dir: "by-root" by the container's root (the
// user), "by-1" by its UID 1 (the first subordinate UID), when there.
func checkHostOwners(t *testing.T, dir string, uid int, sub uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "by-root"), &st); err != nil {
		t.Errorf("file the container's root made: %v", err)
	} else if int(st.Uid) != uid {
		t.Errorf("file the container's root made is owned by %d on the host, want the user %d", st.Uid, uid)
	}
	if sub == 0 {
		return
	}
	if err := syscall.Stat(filepath.Join(dir, "by-1"), &st); err != nil {
		t.Errorf("file the container's UID 1 made: %v", err)
	} else if st.Uid != sub || st.Gid != sub {
		t.Errorf("file the container's UID 1 made is owned by %d:%d on the host, want the first subordinate ID %d", st.Uid, st.Gid, sub)
	}
}

func copyExe(t testing.TB, src, dst string, uid, gid int) {
	t.Helper()
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	os.Chown(dst, uid, gid)
}

// TestRootlessChild is run by TestRootless as the unprivileged user.
func TestRootlessChild(t *testing.T) {
	mode := os.Getenv(envRootlessChild)
	if mode == "" {
		t.Skip("run by TestRootless as an unprivileged user")
	}
	if os.Geteuid() == 0 {
		t.Fatal("the rootless child runs as root")
	}
	sub64, _ := strconv.ParseUint(os.Getenv(envRootlessUID), 10, 32)
	sub := uint32(sub64)
	home := os.Getenv("HOME")
	rootfs := filepath.Join(home, "rootfs")
	if err := busybox.Rootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	shared := filepath.Join(home, "shared")
	if err := os.Mkdir(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	os.Chmod(shared, 0o777) // the container's UID 1 writes here too
	uid, gid := os.Geteuid(), os.Getegid()
	rt := &Runtime{NoCgroups: true}
	before := takeSnapshot(t)
	runOut := func(t *testing.T, rt *Runtime, spec *Spec) (string, *ExitStatus) {
		t.Helper()
		if spec.Rootfs == "" && spec.Image == "" {
			spec.Rootfs = rootfs
		}
		return runIn(t, rt, spec)
	}

	t.Run("id", func(t *testing.T) {
		out, st := runOut(t, rt, &Spec{Process: sh("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map")})
		if !st.Success() {
			t.Fatalf("exit %v: %s", st, out)
		}
		want := fmt.Sprintf("0\n0\n0 %d 1\n", uid)
		if sub != 0 {
			want += fmt.Sprintf("1 %d 65536\n", sub)
		}
		want += fmt.Sprintf("0 %d 1\n", gid)
		if sub != 0 {
			want += fmt.Sprintf("1 %d 65536\n", sub)
		}
		if norm := strings.Join(strings.Fields(out), " "); norm != strings.Join(strings.Fields(want), " ") {
			t.Errorf("inside: %q, want %q", out, want)
		}
	})

	t.Run("owners", func(t *testing.T) {
		out, st := runOut(t, rt, &Spec{
			Process: sh("touch /shared/by-root && ls -ln /shared/by-root"),
			Mounts:  []Mount{{Type: Bind, Source: shared, Target: "/shared"}},
		})
		if !st.Success() {
			t.Fatalf("exit %v: %s", st, out)
		}
		if f := strings.Fields(out); len(f) < 4 || f[2] != "0" || f[3] != "0" {
			t.Errorf("inside, the root's file is not owned by 0:0: %q", out)
		}
		var fst syscall.Stat_t
		if err := syscall.Stat(filepath.Join(shared, "by-root"), &fst); err != nil || int(fst.Uid) != uid || int(fst.Gid) != gid {
			t.Errorf("on the host the container root's file is owned by %d:%d (%v), want the user %d:%d", fst.Uid, fst.Gid, err, uid, gid)
		}
		if sub == 0 {
			// Only root is mapped: UID 1 does not exist inside.
			ctx := testCtx(t)
			c, err := rt.Create(ctx, testID(t), &Spec{Rootfs: rootfs, Process: Process{Args: []string{"true"}, User: "1:1"}})
			if err == nil {
				defer c.Delete(context.Background())
				err = c.Start(ctx)
			}
			if err == nil || !strings.Contains(err.Error(), "user ID 1 is not mapped") {
				t.Errorf("a process as UID 1 in a single-ID user namespace: %v, want an error saying it is not mapped", err)
			}
			return
		}
		out, st = runOut(t, rt, &Spec{
			Process: Process{Args: []string{"sh", "-c", "touch /shared/by-1 && ls -ln /shared/by-1"}, User: "1:1"},
			Mounts:  []Mount{{Type: Bind, Source: shared, Target: "/shared"}},
		})
		if !st.Success() {
			t.Fatalf("exit %v: %s", st, out)
		}
		if f := strings.Fields(out); len(f) < 4 || f[2] != "1" || f[3] != "1" {
			t.Errorf("inside, UID 1's file is not owned by 1:1: %q", out)
		}
		if err := syscall.Stat(filepath.Join(shared, "by-1"), &fst); err != nil || fst.Uid != sub || fst.Gid != sub {
			t.Errorf("on the host UID 1's file is owned by %d:%d (%v), want %d:%d", fst.Uid, fst.Gid, err, sub, sub)
		}
	})

	t.Run("host root dir", func(t *testing.T) {
		dir := os.Getenv(envRootlessRO)
		out, st := runOut(t, rt, &Spec{
			Process: sh("touch /hostroot/x 2>&1; echo rc=$?; ls -lnd /hostroot"),
			Mounts:  []Mount{{Type: Bind, Source: dir, Target: "/hostroot"}},
		})
		if !st.Success() {
			t.Fatalf("exit %v: %s", st, out)
		}
		if !strings.Contains(out, "rc=1") || !strings.Contains(out, "ermission denied") {
			t.Errorf("the container's root wrote to a host root's directory: %s", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
			t.Error("the file exists on the host")
		}
		// The host's root is not mapped: it shows as the overflow UID.
		if f := strings.Fields(out[strings.Index(out, "rc="):]); len(f) < 4 || f[3] != "65534" {
			t.Errorf("the host's root shows inside as %q, want 65534", out)
		}
	})

	t.Run("escapes", func(t *testing.T) {
		// Each attempt must fail; the script prints the ones that did not
		// (the control, which must succeed, shows that it would).
		script := `
try() { if sh -c "$2" >/dev/null 2>&1; then echo "ESCAPED: $1"; fi; }
try "control" 'echo x > /tmp/x'
try "write /proc/1/exe" 'echo x >> /proc/1/exe'
try "write /proc/self/exe" 'echo x >> /proc/self/exe'
try "sysrq-trigger" 'echo h > /proc/sysrq-trigger'
try "read /proc/kcore" 'head -c1 /proc/kcore | grep -q .'
try "mount tmpfs" 'mkdir -p /mnt/t && mount -t tmpfs t /mnt/t'
try "remount /proc/sys rw" 'mount -o remount,rw /proc/sys'
try "write /sys" 'echo 1 > /sys/kernel/profiling'
try "mknod a disk" 'mknod /tmp/sda b 8 0 && head -c1 /tmp/sda'
try "set the time" 'date -s 2000-01-01; [ "$(date +%Y)" = 2000 ]'
try "kill outside" 'kill -0 -1 && [ "$(ps -o pid= | wc -l)" -gt 10 ]'
echo done`
		out, st := runOut(t, rt, &Spec{Process: sh(script)})
		if !st.Success() || strings.TrimSpace(out) != "ESCAPED: control\ndone" {
			t.Errorf("escape attempts: %v:\n%s", st, out)
		}
	})

	t.Run("escape set", func(t *testing.T) {
		// TestEscape's attempts and raw system calls, in a rootless
		// container: all refused as in a root one.
		probe := os.Getenv(envRootlessProbe)
		if probe == "" {
			t.Skip("the parent built no escape probe")
		}
		host := exec.Command("sleep", "60")
		if err := host.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { host.Process.Kill(); host.Wait() }()
		env, want := escapeEnv(t, probe, host.Process.Pid)
		spec := escapeSpec(probe, env, "", Seccomp{})
		spec.Rootfs = rootfs
		out, _ := runIn(t, rt, spec)
		checkEscapes(t, out, want)
		if err := host.Process.Signal(syscall.Signal(0)); err != nil {
			t.Errorf("the host process died: %v", err)
		}
	})

	t.Run("network none", func(t *testing.T) {
		out, st := runOut(t, rt, &Spec{Process: sh("cat /proc/net/dev | tail -n +3 | cut -d: -f1; ping -c1 -W1 127.0.0.1 >/dev/null && echo pingok")})
		if !st.Success() {
			t.Fatalf("exit %v: %s", st, out)
		}
		if f := strings.Fields(out); len(f) != 2 || f[0] != "lo" || f[1] != "pingok" {
			t.Errorf("interfaces and loopback ping: %q, want lo and pingok", out)
		}
	})

	t.Run("ports", func(t *testing.T) {
		ctx := testCtx(t)
		c, _ := startIn(t, rt, &Spec{
			Rootfs:  rootfs,
			Process: sh("mkdir /tmp/www && echo hello-rootless > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www"),
			Ports:   []network.PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 8080}},
		})
		ports := c.Ports()
		if len(ports) != 1 || ports[0].HostPort == 0 {
			t.Fatalf("Ports: %v", ports)
		}
		get := func(dial func() (net.Conn, error)) string {
			var last error
			for i := 0; i < 100; i++ {
				conn, err := dial()
				if err == nil {
					conn.SetDeadline(time.Now().Add(5 * time.Second))
					fmt.Fprint(conn, "GET / HTTP/1.0\r\n\r\n")
					b, err := io.ReadAll(conn)
					conn.Close()
					if err == nil && bytes.Contains(b, []byte("hello-rootless")) {
						return "ok"
					}
					last = fmt.Errorf("read %q: %v", b, err)
				} else {
					last = err
				}
				time.Sleep(20 * time.Millisecond)
			}
			return last.Error()
		}
		hostAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[0].HostPort)))
		if r := get(func() (net.Conn, error) { return net.Dial("tcp", hostAddr) }); r != "ok" {
			t.Errorf("published port %s: %s", hostAddr, r)
		}
		if r := get(func() (net.Conn, error) { return c.Dial(ctx, "tcp", "127.0.0.1:8080") }); r != "ok" {
			t.Errorf("Dial: %s", r)
		}
		f, err := c.PortForward(ctx, "127.0.0.1:0", 8080)
		if err != nil {
			t.Fatal(err)
		}
		if r := get(func() (net.Conn, error) { return net.Dial("tcp", f.Addr().String()) }); r != "ok" {
			t.Errorf("PortForward: %s", r)
		}
		// A closed port inside is refused, not hung.
		if conn, err := c.Dial(ctx, "tcp", "127.0.0.1:8081"); err == nil || !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("Dial to a closed port: %v, want ECONNREFUSED", err)
			if conn != nil {
				conn.Close()
			}
		}
		// Why Dial cannot enter the namespace as it does for root.
		if ns, err := namespace.OpenPID(c.Pid(), namespace.Net); err == nil {
			_, err := network.Dial(ctx, ns, "tcp", "127.0.0.1:8080")
			t.Logf("setns into the container's network namespace: %v", err)
			ns.Close()
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if conn, err := net.Dial("tcp", hostAddr); err == nil {
			conn.Close()
			t.Errorf("host port %s still open after Delete", hostAddr)
		}
	})

	t.Run("image", func(t *testing.T) {
		data, err := RootlessDataDir()
		if err != nil || data != filepath.Join(home, ".local/share/berth") {
			t.Fatalf("RootlessDataDir: %q, %v", data, err)
		}
		store, err := layer.Open(filepath.Join(data, "images"))
		if err != nil {
			t.Fatal(err)
		}
		defer store.Close()
		// The parent made extra/srv/owned33 owned by 33:33.
		importImage(t, store, "example.com/rootless:v1", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, rootfs, filepath.Join(home, "imgextra"))
		irt := &Runtime{Images: store, NoCgroups: true}
		// Overlayfs, mounted by init inside the user namespace, where the
		// kernel allows it (5.11 and later); copies elsewhere.
		driver, _ := os.ReadFile(filepath.Join(data, "images", "snapshots", "driver"))
		wantFS := "overlay"
		if strings.TrimSpace(string(driver)) != "overlay-userns" {
			t.Logf("snapshot driver %q: no overlayfs in user namespaces here", driver)
			wantFS = "ext4|xfs|btrfs|tmpfs"
		}
		out, st := runIn(t, irt, &Spec{Image: "example.com/rootless:v1",
			Process: sh("id -u; stat -c %u:%g /srv/owned33 /bin/busybox; echo x > /written && cat /written; " +
				"rm /bin/ls && ! test -e /bin/ls && echo removed; awk '$2 == \"/\" {print $3}' /proc/mounts | tail -1")})
		// Without subordinate IDs (or on copy snapshots) every file is
		// root's inside; with them, on overlay, files have their image
		// owners.
		owner33 := "0:0"
		if sub != 0 && wantFS == "overlay" {
			owner33 = "33:33"
		}
		if f := strings.Fields(out); !st.Success() || len(f) != 6 || strings.Join(f[:5], " ") != "0 "+owner33+" 0:0 x removed" || !strings.Contains(wantFS, f[5]) {
			t.Errorf("image container: %v: %q, want uid 0, /srv/owned33 of %s, /bin/busybox of 0:0, a writable rootfs and a root of %s", st, out, owner33, wantFS)
		}
		// The image itself is unchanged: the next container has /bin/ls.
		out, st = runIn(t, irt, &Spec{Image: "example.com/rootless:v1", Process: sh("test -e /bin/ls && echo there")})
		if !st.Success() || strings.TrimSpace(out) != "there" {
			t.Errorf("second container: %v: %q", st, out)
		}
		if sub != 0 {
			// Files of a subordinate ID in the container's upper layer,
			// which this process may not remove: Delete removes them in a
			// user namespace.
			out, st := runIn(t, irt, &Spec{Image: "example.com/rootless:v1",
				Process: Process{Args: []string{"sh", "-c", "mkdir -m 700 /tmp/d && touch /tmp/d/f && stat -c %u /tmp/d/f"}, User: "1:1"}})
			if !st.Success() || strings.TrimSpace(out) != "1" {
				t.Errorf("container as 1:1: %v: %q", st, out)
			}
		}
		err = store.Snapshots.Walk(testCtx(t), func(i snapshot.Info) error {
			if i.Kind != snapshot.KindCommitted {
				t.Errorf("snapshot %s (%s) left after Delete", i.Name, i.Kind)
			}
			return nil
		})
		if err != nil {
			t.Error(err)
		}
		// The user can remove its image again, layers of subordinate IDs
		// included.
		if err := store.Content.Untag(testCtx(t), "example.com/rootless:v1"); err != nil {
			t.Fatal(err)
		}
		if _, err := store.GC(testCtx(t)); err != nil {
			t.Errorf("GC: %v", err)
		}
		n := 0
		store.Snapshots.Walk(testCtx(t), func(snapshot.Info) error { n++; return nil })
		if n != 0 {
			t.Errorf("%d snapshots left after GC", n)
		}
		// Close waits for the deletions it runs in the background and
		// removes its spare snapshot directories.
		store.Close()
		ents, _ := os.ReadDir(filepath.Join(data, "images", "snapshots", "snapshots"))
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), ".") {
				t.Errorf("left in the snapshot store: %s", e.Name())
			}
		}
		// Everything of the store is the user's on the host.
		filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			var st syscall.Stat_t
			if syscall.Lstat(p, &st) == nil && int(st.Uid) != uid {
				if sub != 0 && filepath.Base(p) == "owned33" && st.Uid == sub+32 && st.Gid == sub+32 {
					return nil // UID 33 inside
				}
				t.Errorf("%s is owned by %d", p, st.Uid)
			}
			return nil
		})
	})

	t.Run("cgroup limits", func(t *testing.T) {
		ctx := testCtx(t)
		spec := &Spec{Rootfs: rootfs, Process: Process{Args: []string{"true"}}, Resources: cgroup.Resources{MemoryLimit: 64 << 20}}
		for _, rt := range []*Runtime{{}, {NoCgroups: true}} {
			_, err := rt.Create(ctx, testID(t), spec)
			if !errors.Is(err, ErrNoCgroup) || !strings.Contains(err.Error(), "limits") {
				t.Errorf("NoCgroups %v: Create with a memory limit: %v, want ErrNoCgroup about limits", rt.NoCgroups, err)
			}
		}
		_, err := (&Runtime{}).Create(ctx, testID(t), &Spec{Rootfs: rootfs, Process: Process{Args: []string{"true"}}})
		if !errors.Is(err, ErrNoCgroup) || !strings.Contains(err.Error(), "NoCgroups") {
			t.Errorf("Create without NoCgroups: %v, want ErrNoCgroup naming Runtime.NoCgroups", err)
		}
		c, _ := startIn(t, rt, &Spec{Rootfs: rootfs, Process: Process{Args: []string{"sleep", "60"}}})
		if err := c.Pause(); !errors.Is(err, ErrNoCgroup) {
			t.Errorf("Pause: %v, want ErrNoCgroup", err)
		}
		if _, err := c.Stats(); !errors.Is(err, ErrNoCgroup) {
			t.Errorf("Stats: %v, want ErrNoCgroup", err)
		}
		if err := c.Update(cgroup.Resources{PidsLimit: 10}); !errors.Is(err, ErrNoCgroup) {
			t.Errorf("Update: %v, want ErrNoCgroup", err)
		}
		// Start returns once the process is forked: its command line is
		// there once it has executed sleep.
		var procs []ProcessInfo
		for i := 0; i < 100; i++ {
			if procs, err = c.Top(); err != nil || len(procs) == 1 && len(procs[0].Args) > 0 {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil || len(procs) != 1 || !strings.Contains(strings.Join(procs[0].Args, " "), "sleep 60") {
			t.Errorf("Top: %+v, %v; want the sleep alone", procs, err)
		}
		var eout bytes.Buffer
		p, err := c.Exec(ctx, Process{Args: []string{"sh", "-c", "id -u; cat /proc/1/comm"}, Stdout: &eout})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := p.Wait(ctx); err != nil || !st.Success() || strings.Join(strings.Fields(eout.String()), " ") != "0 berth-init" {
			t.Errorf("Exec: %v %v: %q", st, err, eout.String())
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("delegated cgroup", func(t *testing.T) {
		parent := os.Getenv(envRootlessCg)
		if parent == "" {
			t.Skip("no cgroup delegated to the user (not a cgroup v1 host)")
		}
		ctx := testCtx(t)
		c, _ := startIn(t, &Runtime{CgroupParent: parent}, &Spec{Rootfs: rootfs, Process: Process{Args: []string{"sleep", "60"}},
			Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 32}})
		if !strings.HasPrefix(c.CgroupPath(), parent+"/") {
			t.Errorf("CgroupPath %s is not under the delegated %s", c.CgroupPath(), parent)
		}
		lim, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/memory", c.CgroupPath(), "memory.limit_in_bytes"))
		if err != nil {
			t.Fatal(err)
		}
		if err != nil || strings.TrimSpace(string(lim)) != strconv.Itoa(64<<20) {
			t.Errorf("memory.limit_in_bytes: %q, %v", lim, err)
		}
		// On v1, init's thread that started the sleep stays in the
		// cgroup for a moment after: wait until it is gone.
		var procs []ProcessInfo
		for i := 0; i < 50; i++ {
			if procs, err = c.Top(); err != nil || len(procs) == 1 && procs[0].Command == "sleep" {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err != nil || len(procs) != 1 || procs[0].Command != "sleep" {
			t.Errorf("Top: %+v, %v; want the sleep, in the container's cgroup", procs, err)
		}
		if err := c.Pause(); err != nil {
			t.Errorf("Pause: %v", err)
		} else if err := c.Resume(); err != nil {
			t.Errorf("Resume: %v", err)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup/memory", c.CgroupPath())); !os.IsNotExist(err) {
			t.Errorf("the container's cgroup is left: %v", err)
		}
	})

	t.Run("bad maps", func(t *testing.T) {
		ctx := testCtx(t)
		spec := func(u, g []namespace.IDMap) *Spec {
			return &Spec{Rootfs: rootfs, Process: Process{Args: []string{"true"}}, UIDMappings: u, GIDMappings: g}
		}
		own := []namespace.IDMap{{ContainerID: 0, HostID: uint32(uid), Size: 1}}
		owng := []namespace.IDMap{{ContainerID: 0, HostID: uint32(gid), Size: 1}}
		far := []namespace.IDMap{{ContainerID: 0, HostID: uint32(uid), Size: 1}, {ContainerID: 1, HostID: 4000000000, Size: 1000}}
		if _, err := rt.Create(ctx, testID(t), spec(far, owng)); !errors.Is(err, namespace.ErrNoSubIDs) || !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("subordinate IDs the user lacks: %v, want ErrNoSubIDs", err)
		}
		overlap := []namespace.IDMap{{ContainerID: 0, HostID: uint32(uid), Size: 1}, {ContainerID: 0, HostID: sub + 1, Size: 10}}
		if _, err := rt.Create(ctx, testID(t), spec(overlap, owng)); !errors.Is(err, namespace.ErrInvalidIDMap) {
			t.Errorf("overlapping maps: %v, want ErrInvalidIDMap", err)
		}
		if _, err := rt.Create(ctx, testID(t), spec(own, nil)); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("a UID map without a GID map: %v, want ErrInvalidSpec", err)
		}
		if _, err := rt.Create(ctx, testID(t), &Spec{Rootfs: rootfs, Process: Process{Args: []string{"true"}},
			Namespaces: map[namespace.Kind]Namespace{namespace.User: {Mode: NamespaceHost}}}); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("the host's user namespace: %v, want ErrInvalidSpec", err)
		}
		if sub == 0 {
			return
		}
		ranged := []namespace.IDMap{{ContainerID: 0, HostID: uint32(uid), Size: 1}, {ContainerID: 1, HostID: sub, Size: 100}}
		rangedg := []namespace.IDMap{{ContainerID: 0, HostID: uint32(gid), Size: 1}, {ContainerID: 1, HostID: sub, Size: 100}}
		t.Setenv("PATH", t.TempDir()) // no newuidmap
		if _, err := rt.Create(ctx, testID(t), spec(ranged, rangedg)); !errors.Is(err, namespace.ErrNoIDMapHelper) {
			t.Errorf("without newuidmap: %v, want ErrNoIDMapHelper", err)
		}
	})

	t.Run("leaks", func(t *testing.T) {
		if rt.List() != nil && len(rt.List()) > 0 {
			t.Errorf("containers left in the runtime: %v", rt.List())
		}
		checkNoLeaks(t, before)
	})
}
