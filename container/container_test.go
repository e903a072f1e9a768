package container

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/initproc"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/namespace"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestPID1AndNamespaces(t *testing.T) {
	needRoot(t)
	out, st := run(t, &Spec{
		Hostname: "berthbox",
		Process:  sh(`cat /proc/1/cmdline | tr '\0' ' '; echo; echo ppid=$PPID; hostname; ls /proc | grep -c '^[0-9]'; readlink /proc/self/ns/net`),
	})
	if !st.Success() {
		t.Fatalf("status %v, output %q", st, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) < 5 {
		t.Fatalf("output %q", out)
	}
	if !strings.HasPrefix(lines[0], "berth-init") {
		t.Errorf("PID 1 is %q, want berth's init", lines[0])
	}
	if lines[1] != "ppid=1" {
		t.Errorf("main process: %s, want ppid=1", lines[1])
	}
	if lines[2] != "berthbox" {
		t.Errorf("hostname %q, want berthbox", lines[2])
	}
	if n, _ := strconv.Atoi(lines[3]); n < 2 || n > 5 {
		t.Errorf("container sees %s processes, want only its own (2-4)", lines[3])
	}
	host, _ := os.Readlink("/proc/self/ns/net")
	if lines[4] == host {
		t.Errorf("container shares the host network namespace %s", host)
	}
}

func TestExitCodesAndSignals(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		script string
		code   int
		sig    syscall.Signal
	}{
		{"exit 0", 0, 0},
		{"exit 3", 3, 0},
		{"kill -KILL $$", 137, syscall.SIGKILL},
		{"kill -TERM $$", 143, syscall.SIGTERM},
	} {
		_, st := run(t, &Spec{Process: sh(tc.script)})
		if st.Code != tc.code || st.Signal != tc.sig || st.OOMKilled {
			t.Errorf("%q: got %+v, want code %d signal %v", tc.script, st, tc.code, tc.sig)
		}
	}
}

func TestMountIsolation(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	var out syncBuffer
	c, err := Create(ctx, testID(t), &Spec{
		Rootfs:       testRootfs,
		Capabilities: append([]string{"CAP_SYS_ADMIN"}, DefaultCapabilities...),
		Mounts:       []Mount{{Type: Tmpfs, Target: "/data", Options: []string{"size=1m"}}},
		Process:      Process{Args: []string{"sh", "-c", "mkdir /mnt; mount -t tmpfs inner /mnt && touch /mnt/x /data/y && echo ok && sleep 30"}, Stdout: &out, Stderr: &out},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "ok") }, "mount inside")
	mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
	if bytes.Contains(mi, []byte(" inner ")) || bytes.Contains(mi, []byte("/data ")) {
		t.Errorf("a mount made inside the container is visible on the host")
	}
	inner, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", c.Pid()))
	if err != nil || !bytes.Contains(inner, []byte(" /data ")) || !bytes.Contains(inner, []byte(" /mnt ")) {
		t.Errorf("container mounts /data and /mnt missing: %v", err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoLeaks(t, before)
}

func TestUserGroupsAndEnv(t *testing.T) {
	needRoot(t)
	out, st := run(t, &Spec{Process: Process{
		Args: []string{"sh", "-c", "id; echo $HOME $FOO; pwd"},
		User: "app", Env: []string{"FOO=bar"}, Dir: "/home/app/work",
	}})
	if !st.Success() {
		t.Fatalf("%v %q", st, out)
	}
	want := "uid=1000(app) gid=1000(app) groups=10(wheel)\n/home/app bar\n/home/app/work\n"
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	out, _ = run(t, &Spec{Process: Process{Args: []string{"id", "-u"}, User: "1234:65534"}})
	if out != "1234\n" {
		t.Errorf("numeric user: got %q", out)
	}
}

func TestCapabilitiesAndNoNewPrivs(t *testing.T) {
	needRoot(t)
	out, _ := run(t, &Spec{Process: sh("grep -E '^(CapEff|CapBnd|NoNewPrivs)' /proc/self/status")})
	caps, _ := initproc.ParseCaps(DefaultCapabilities)
	want := fmt.Sprintf("CapEff:\t%016x\nCapBnd:\t%016x\nNoNewPrivs:\t1\n", uint64(caps), uint64(caps))
	if out != want {
		t.Errorf("got %q, want %q", out, want)
	}
	out, _ = run(t, &Spec{
		AllowPrivilegeEscalation: true,
		Capabilities:             []string{"NET_ADMIN"},
		Process:                  Process{Args: []string{"sh", "-c", "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status"}, User: "app"},
	})
	if out != "CapEff:\t0000000000000000\nNoNewPrivs:\t0\n" {
		t.Errorf("non-root user: got %q", out)
	}
}

func TestHardening(t *testing.T) {
	needRoot(t)
	self, _ := os.Executable()
	sumBefore := fileSum(t, self)
	script := `
echo x >> /proc/1/exe && echo WROTE-INIT
echo x >> /proc/self/exe && echo WROTE-SELF
cat /proc/1/environ >/dev/null 2>&1 && echo READ-INIT-ENV
touch /sys/x 2>/dev/null && echo WROTE-SYS
echo 1 > /proc/sys/kernel/domainname 2>/dev/null && echo WROTE-PROC-SYS
[ -s /proc/kcore ] && echo KCORE
mknod /tmp/sda b 8 0 2>/dev/null && dd if=/tmp/sda of=/dev/null count=1 2>/dev/null && echo READ-DISK
rm -f /tmp/sda
ls /dev | tr '\n' ' '
`
	out, _ := run(t, &Spec{Process: sh(script)})
	for _, bad := range []string{"WROTE", "READ-", "KCORE"} {
		if strings.Contains(out, bad) {
			t.Errorf("container could do what it must not:\n%s", out)
		}
	}
	for _, dev := range []string{"null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "ptmx", "fd"} {
		if !strings.Contains(out, dev+" ") {
			t.Errorf("/dev lacks %s: %s", dev, out)
		}
	}
	if fileSum(t, self) != sumBefore {
		t.Fatal("the host binary changed")
	}
	out, st := run(t, &Spec{ReadonlyRootfs: true, Process: sh("touch /x && echo WROTE; touch /dev/shm/ok && echo shm-ok")})
	if strings.Contains(out, "WROTE") || !strings.Contains(out, "shm-ok") || !st.Success() {
		t.Errorf("read-only rootfs: %q %v", out, st)
	}
}

func fileSum(t *testing.T, p string) [32]byte {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

func TestRlimitsAndStdin(t *testing.T) {
	needRoot(t)
	var out bytes.Buffer
	spec := &Spec{
		Rootfs:  testRootfs,
		Rlimits: map[string]Rlimit{"nofile": {Soft: 321, Hard: 654}},
		Process: Process{Args: []string{"sh", "-c", "ulimit -n; ulimit -Hn; cat"}, Stdin: strings.NewReader("from stdin\n"), Stdout: &out},
	}
	ctx := testCtx(t)
	c, err := Create(ctx, testID(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := c.Wait(ctx); err != nil || !st.Success() {
		t.Fatalf("%v %v", st, err)
	}
	if out.String() != "321\n654\nfrom stdin\n" {
		t.Errorf("got %q", out.String())
	}
}

func TestMemoryLimitOOM(t *testing.T) {
	needRoot(t)
	out, st := run(t, &Spec{
		Resources: cgroup.Resources{MemoryLimit: 32 << 20, MemorySwap: 32 << 20},
		Process:   sh("exec dd if=/dev/zero of=/dev/null bs=128M count=1"),
	})
	if !st.OOMKilled {
		t.Fatalf("status %v (output %q), want OOM-killed", st, out)
	}
	if st.Signal != syscall.SIGKILL {
		t.Errorf("status %v, want killed by SIGKILL", st)
	}
}

func TestPidsLimitStopsForkBomb(t *testing.T) {
	needRoot(t)
	// Only shell built-ins after the bomb: every fork fails by then.
	out, st := run(t, &Spec{
		Resources: cgroup.Resources{PidsLimit: 16},
		Process:   sh("(for i in $(seq 64); do sleep 5 & done) 2>/dev/null; c=0; for p in /proc/[0-9]*; do c=$((c+1)); done; echo procs=$c"),
	})
	var n int
	if _, err := fmt.Sscanf(out, "procs=%d", &n); err != nil {
		t.Fatalf("output %q, status %v", out, st)
	}
	// init (outside the cgroup) + at most 16 in it.
	if n < 3 || n > 17 {
		t.Errorf("fork bomb under pids.max=16: %d processes in the container", n)
	}
}

func TestCPUQuotaInStats(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c, err := Create(ctx, testID(t), &Spec{
		Rootfs:    testRootfs,
		Resources: cgroup.Resources{CPUQuota: 10000, CPUPeriod: 100000},
		Process:   sh("timeout 1 sh -c 'while :; do :; done'; true"),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := c.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU.ThrottledPeriods == 0 {
		t.Errorf("no throttled periods under a 10%% quota: %+v", s.CPU)
	}
	if s.CPU.UsageNs > uint64(500*time.Millisecond) {
		t.Errorf("used %v of CPU in 1s under a 10%% quota", time.Duration(s.CPU.UsageNs))
	}
}

func startSleeper(t *testing.T, spec *Spec) *Container {
	t.Helper()
	if spec.Process.Args == nil {
		spec.Process = sh("echo started > /tmp/started; exec sleep 60")
	}
	if spec.Process.Stdout == nil {
		spec.Process.Stdout = io.Discard // stdout and stderr stay apart
	}
	c, _ := startIn(t, Default, spec)
	return c
}

func TestStopEscalates(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c := startSleeper(t, &Spec{Process: sh("trap 'echo ignored' TERM; echo ready > /tmp/ready; while :; do sleep 0.05; done")})
	waitFor(t, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/ready", c.Pid())); return err == nil }, "trap installed")
	start := time.Now()
	if err := c.Stop(ctx, 300*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	el := time.Since(start)
	st, _ := c.Wait(ctx)
	if st.Signal != syscall.SIGKILL || el < 300*time.Millisecond {
		t.Errorf("stop of a process ignoring SIGTERM: %v after %v, want SIGKILL after the 300ms grace", st, el)
	}

	c2 := startSleeper(t, &Spec{})
	start = time.Now()
	if err := c2.Stop(ctx, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	st, _ = c2.Wait(ctx)
	if st.Signal != syscall.SIGTERM || time.Since(start) > 5*time.Second {
		t.Errorf("stop of a process that obeys SIGTERM: %v after %v", st, time.Since(start))
	}
}

func TestSignalsReachWorkloadAndZombiesReaped(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	var out syncBuffer
	c := startSleeper(t, &Spec{Process: Process{
		Args:   []string{"sh", "-c", "trap 'echo got-usr1' USR1; (sleep 0.1 &); (sleep 0.1 &); echo ready; while :; do sleep 0.05; done"},
		Stdout: &out,
	}})
	waitFor(t, func() bool { return strings.Contains(out.String(), "ready") }, "ready")
	// A signal to the container's init from the host is forwarded.
	if err := syscall.Kill(c.Pid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return strings.Contains(out.String(), "got-usr1") }, "forwarded signal")
	time.Sleep(300 * time.Millisecond)
	var ps bytes.Buffer
	p, err := c.Exec(ctx, Process{Args: []string{"ps", "-o", "pid,stat,comm"}, Stdout: &ps})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait(ctx)
	for _, l := range strings.Split(ps.String(), "\n") {
		if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], "Z") {
			t.Errorf("zombie in the container: %s\n%s", l, ps.String())
		}
	}
}

func TestExec(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c := startSleeper(t, &Spec{Process: Process{Args: []string{"sh", "-c", "echo data > /tmp/shared; exec sleep 60"}, Env: []string{"FROM=main"}, User: "app"}})
	// The shell creates the file before it writes to it: wait for the
	// content, not the name.
	waitFor(t, func() bool {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/root/tmp/shared", c.Pid()))
		return err == nil && string(b) == "data\n"
	}, "file written")
	var out, errOut bytes.Buffer
	p, err := c.Exec(ctx, Process{
		Args:   []string{"sh", "-c", "cat /tmp/shared; until ps -o comm | grep -q sleep; do sleep 0.01; done; ps -o comm | grep -c sleep; echo $FROM $EXTRA; id -u; echo oops >&2; exit 4"},
		Env:    []string{"EXTRA=x"},
		Stdout: &out, Stderr: &errOut,
	})
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 4 || out.String() != "data\n1\nmain x\n1000\n" || errOut.String() != "oops\n" {
		t.Errorf("exec: %v stdout %q stderr %q", st, out.String(), errOut.String())
	}
	// Root exec, stdin, and a missing program.
	out.Reset()
	p, err = c.Exec(ctx, Process{Args: []string{"sh", "-c", "id -u; cat"}, User: "root", Stdin: strings.NewReader("in\n"), Stdout: &out})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Wait(ctx); !st.Success() || out.String() != "0\nin\n" {
		t.Errorf("root exec: %v %q", st, out.String())
	}
	if _, err := c.Exec(ctx, Process{Args: []string{"no-such-program"}}); err == nil || !strings.Contains(err.Error(), "no-such-program") {
		t.Errorf("exec of a missing program: %v", err)
	}
	// An exec'd process is killed with its container.
	p, err = c.Exec(ctx, Process{Args: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	c.Kill(ctx)
	if st, _ := p.Wait(ctx); st.Signal != syscall.SIGKILL {
		t.Errorf("exec process after Kill: %v", st)
	}
	if _, err := c.Exec(ctx, Process{Args: []string{"true"}}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("exec in a stopped container: %v, want ErrNotRunning", err)
	}
}

func TestPauseResume(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c := startSleeper(t, &Spec{Process: sh("i=0; while :; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done")})
	counter := filepath.Join(fmt.Sprintf("/proc/%d/root", c.Pid()), "tmp/n")
	read := func() string { b, _ := os.ReadFile(counter); return string(b) }
	waitFor(t, func() bool { return read() != "" }, "counter")
	if err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	if c.State() != Paused {
		t.Errorf("state %s", c.State())
	}
	v1 := read()
	time.Sleep(300 * time.Millisecond)
	if v2 := read(); v1 != v2 {
		t.Errorf("paused container kept running: %q -> %q", v1, v2)
	}
	if err := c.Resume(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return read() != v1 }, "counter after resume")
	// A paused container can still be stopped.
	if err := c.Pause(); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(ctx, time.Second); err != nil {
		t.Fatal(err)
	}
	if c.State() != Stopped {
		t.Errorf("state after stopping a paused container: %s", c.State())
	}
}

func TestDeleteLeavesNothing(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	c := startSleeper(t, &Spec{
		LogPath: logPath,
		Mounts:  []Mount{{Type: Bind, Source: t.TempDir(), Target: "/host", ReadOnly: true}},
		Process: sh("echo to-out; echo to-err >&2; touch /tmp/logged; exec sleep 60"),
		Resources: cgroup.Resources{
			MemoryLimit: 64 << 20, PidsLimit: 32,
		},
	})
	waitFor(t, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/logged", c.Pid())); return err == nil }, "output written")
	p, err := c.Exec(ctx, Process{Args: []string{"sleep", "60"}})
	if err != nil {
		t.Fatal(err)
	}
	cg := c.CgroupPath()
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := cgroup.Load(cg); !errors.Is(err, cgroup.ErrNotFound) {
		t.Errorf("cgroup %s still there: %v", cg, err)
	}
	checkNoLeaks(t, before)
	var o, e bytes.Buffer
	if err := ReadLogs(logPath, &o, &e); err != nil {
		t.Fatal(err)
	}
	if o.String() != "to-out\n" || e.String() != "to-err\n" {
		t.Errorf("logs: stdout %q stderr %q", o.String(), e.String())
	}
	// Every call on a deleted container says so.
	for name, err := range map[string]error{
		"Start":  c.Start(ctx),
		"Delete": c.Delete(ctx),
		"Signal": c.Signal(syscall.SIGTERM),
		"Pause":  c.Pause(),
	} {
		if !errors.Is(err, ErrDeleted) {
			t.Errorf("%s on a deleted container: %v, want ErrDeleted", name, err)
		}
	}
	if _, err := c.Exec(ctx, Process{Args: []string{"true"}}); !errors.Is(err, ErrDeleted) {
		t.Errorf("Exec on a deleted container: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	for _, tc := range []struct {
		name string
		spec Spec
		want string
	}{
		{"missing rootfs", Spec{Rootfs: "/nonexistent/rootfs", Process: sh("true")}, "rootfs /nonexistent/rootfs does not exist"},
		{"no args", Spec{Rootfs: testRootfs}, "no program to run"},
		{"program not in rootfs", Spec{Rootfs: testRootfs, Process: Process{Args: []string{"nginx"}}}, `executable "nginx" not found`},
		{"absolute program missing", Spec{Rootfs: testRootfs, Process: Process{Args: []string{"/usr/bin/python3"}}}, `executable "/usr/bin/python3" not found`},
		{"unknown user", Spec{Rootfs: testRootfs, Process: Process{Args: []string{"true"}, User: "mallory"}}, `unknown user "mallory"`},
		{"unknown group", Spec{Rootfs: testRootfs, Process: Process{Args: []string{"true"}, User: "app:nogrp"}}, `unknown group "nogrp"`},
		{"negative memory", Spec{Rootfs: testRootfs, Process: sh("true"), Resources: cgroup.Resources{MemoryLimit: -5}}, "memory"},
		{"bad env", Spec{Rootfs: testRootfs, Process: Process{Args: []string{"true"}, Env: []string{"NOEQUALS"}}}, "not KEY=value"},
		{"relative mount", Spec{Rootfs: testRootfs, Process: sh("true"), Mounts: []Mount{{Type: Tmpfs, Target: "data"}}}, "not an absolute path"},
		{"missing bind source", Spec{Rootfs: testRootfs, Process: sh("true"), Mounts: []Mount{{Type: Bind, Source: "/nonexistent", Target: "/x"}}}, "bind mount source"},
		{"unknown capability", Spec{Rootfs: testRootfs, Process: sh("true"), Capabilities: []string{"CAP_FLY"}}, `unknown capability "CAP_FLY"`},
		{"unknown rlimit", Spec{Rootfs: testRootfs, Process: sh("true"), Rlimits: map[string]Rlimit{"bogus": {}}}, `unknown rlimit "bogus"`},
		{"host mount namespace", Spec{Rootfs: testRootfs, Process: sh("true"), Namespaces: map[namespace.Kind]Namespace{namespace.Mount: {Mode: NamespaceHost}}}, "mount namespace must be new"},
	} {
		_, err := Create(ctx, testID(t), &tc.spec)
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want ErrInvalidSpec mentioning %q", tc.name, err, tc.want)
		}
	}
	if _, err := Create(ctx, "bad/id", &Spec{Rootfs: testRootfs, Process: sh("true")}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("bad ID: %v", err)
	}
	id := testID(t)
	c, err := Create(ctx, id, &Spec{Rootfs: testRootfs, Process: sh("true")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Create(ctx, id, &Spec{Rootfs: testRootfs, Process: sh("true")}); !errors.Is(err, ErrExists) {
		t.Errorf("duplicate ID: %v, want ErrExists", err)
	}
	if _, err := c.Wait(ctx); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Wait before Start: %v", err)
	}
	// A working directory that is a file fails at Start, leaving nothing.
	bad, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"true"}, Dir: "/etc/passwd"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := bad.Start(ctx); err == nil || !strings.Contains(err.Error(), "/etc/passwd") {
		t.Errorf("start with a file as working directory: %v", err)
	}
	// So does joining a namespace of the wrong kind (after stdio is set up).
	wrong, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"true"}, Stdout: io.Discard},
		Namespaces: map[namespace.Kind]Namespace{namespace.Net: {Mode: NamespaceJoin, Path: "/proc/self/ns/uts"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := wrong.Start(ctx); err == nil || !strings.Contains(err.Error(), "is a uts namespace") {
		t.Errorf("joining a uts namespace as the network namespace: %v", err)
	}
	for _, c := range []*Container{c, bad, wrong} {
		if err := c.Delete(ctx); err != nil {
			t.Error(err)
		}
	}
	checkNoLeaks(t, before)
}

func TestKilledParentTakesContainers(t *testing.T) {
	needRoot(t)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), parentHelperEnv+"="+testRootfs)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var line string
	buf := make([]byte, 64)
	n, _ := io.ReadAtLeast(stdout, buf, 1)
	line = strings.TrimSpace(string(buf[:n]))
	pid, err := strconv.Atoi(line)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q", line)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err != nil {
		t.Fatalf("container init %d not running: %v", pid, err)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); return err != nil }, "container to die with its owner")
	// Its empty cgroup stays (an owner can sweep it). Only that one is
	// removed here: a Sweep of /berth would also take the cgroups other
	// test binaries have just made for containers not started yet.
	cg, err := cgroup.Load(fmt.Sprintf("/berth/orphan-%d", cmd.Process.Pid))
	if err != nil {
		t.Fatalf("the dead owner's container cgroup: %v", err)
	}
	if err := cg.Delete(context.Background()); err != nil {
		t.Error(err)
	}
}

// parentHelperEnv makes the test binary a process that starts a container
// and waits to be killed.
const parentHelperEnv = "BERTH_TEST_PARENT_ROOTFS"

func init() {
	rootfs := os.Getenv(parentHelperEnv)
	if rootfs == "" {
		return
	}
	ctx := context.Background()
	c, err := Create(ctx, fmt.Sprintf("orphan-%d", os.Getpid()), &Spec{Rootfs: rootfs, Process: sh("sleep 60")})
	if err == nil {
		err = c.Start(ctx)
	}
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println(c.Pid())
	select {}
}

func TestConcurrent50(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var out bytes.Buffer
			c, err := Create(ctx, fmt.Sprintf("%s-%d", testID(t), i), &Spec{
				Rootfs:    testRootfs,
				Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
				Process:   Process{Args: []string{"sh", "-c", fmt.Sprintf("echo %d; exit %d", i, i%7)}, Stdout: &out},
			})
			if err != nil {
				errs <- err
				return
			}
			defer func() {
				if err := c.Delete(ctx); err != nil {
					errs <- err
				}
			}()
			if err := c.Start(ctx); err != nil {
				errs <- err
				return
			}
			st, err := c.Wait(ctx)
			if err != nil {
				errs <- err
				return
			}
			if st.Code != i%7 || out.String() != fmt.Sprintf("%d\n", i) {
				errs <- fmt.Errorf("container %d: %v %q", i, st, out.String())
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkNoLeaks(t, before)
}

func TestSharedNetworkNamespace(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	a := startSleeper(t, &Spec{})
	path, err := a.NamespacePath(namespace.Net)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.Readlink(path)
	out, st := run(t, &Spec{
		Namespaces: map[namespace.Kind]Namespace{namespace.Net: {Mode: NamespaceJoin, Path: path}},
		Process:    sh("readlink /proc/self/ns/net"),
	})
	if !st.Success() || strings.TrimSpace(out) != want {
		t.Errorf("joined net namespace %q, want %q (%v)", out, want, st)
	}
	out, _ = run(t, &Spec{
		Namespaces: map[namespace.Kind]Namespace{namespace.Net: {Mode: NamespaceHost}},
		Process:    sh("readlink /proc/self/ns/net"),
	})
	host, _ := os.Readlink("/proc/self/ns/net")
	if strings.TrimSpace(out) != host {
		t.Errorf("host net namespace: %q, want %q", out, host)
	}
	a.Kill(ctx)
}

func TestUserNamespace(t *testing.T) {
	needRoot(t)
	out, st := run(t, &Spec{
		Namespaces:  map[namespace.Kind]Namespace{namespace.User: {Mode: NamespaceNew}},
		UIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		Process:     sh("id -u; cat /proc/self/uid_map"),
	})
	if !st.Success() {
		t.Fatalf("%v %q", st, out)
	}
	if f := strings.Fields(out); len(f) != 4 || f[0] != "0" || f[1] != "0" || f[2] != "100000" || f[3] != "65536" {
		t.Errorf("user namespace: %q", out)
	}
}

func TestOCIBundle(t *testing.T) {
	needRoot(t)
	bundle := t.TempDir()
	os.Symlink(testRootfs, filepath.Join(bundle, "rootfs"))
	oci := `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"hostname":"oci",
	"process":{"args":["sh","-c","hostname; id -u; ulimit -n"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":1000,"gid":1000},
	"rlimits":[{"type":"RLIMIT_NOFILE","soft":512,"hard":512}],"noNewPrivileges":true,
	"capabilities":{"bounding":["CAP_KILL"]}},
	"mounts":[{"destination":"/proc","type":"proc","source":"proc"},{"destination":"/scratch","type":"tmpfs","source":"tmpfs","options":["size=1m"]}],
	"linux":{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"uts"},{"type":"ipc"},{"type":"network"}],
	"resources":{"memory":{"limit":67108864},"pids":{"limit":20}}}}`
	os.WriteFile(filepath.Join(bundle, "config.json"), []byte(oci), 0o644)
	spec, err := LoadBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if spec.Resources.MemoryLimit != 64<<20 || spec.Resources.PidsLimit != 20 || spec.Namespaces[namespace.Net].Mode != NamespaceNew || spec.Namespaces[namespace.Cgroup].Mode != NamespaceHost {
		t.Errorf("converted spec: %+v", spec)
	}
	out, st := run(t, spec)
	if !st.Success() || out != "oci\n1000\n512\n" {
		t.Errorf("OCI bundle run: %v %q", st, out)
	}
	if _, err := FromOCI(&specs.Spec{Root: &specs.Root{Path: "/"}, Process: &specs.Process{Args: []string{"x"}}, Mounts: []specs.Mount{{Destination: "/x", Type: "nfs"}}}, ""); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("nfs mount: %v", err)
	}
}

func waitFor(t testing.TB, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// A hostile rootfs whose mount targets are symlinks out of it: every
// mount must land inside the rootfs.
func TestHostileRootfsSymlinks(t *testing.T) {
	needRoot(t)
	rootfs := t.TempDir()
	if err := busybox.Rootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	victim := t.TempDir() // a host directory the rootfs points at
	os.WriteFile(filepath.Join(victim, "keep"), []byte("host"), 0o644)
	for _, l := range []string{"data", "tmp/link"} {
		os.Symlink("../../../../../../../.."+victim, filepath.Join(rootfs, l))
	}
	os.Remove(filepath.Join(rootfs, "sys"))
	os.Symlink(victim, filepath.Join(rootfs, "sys"))
	before := takeSnapshot(t)
	out, st := run(t, &Spec{
		Rootfs: rootfs,
		Mounts: []Mount{
			{Type: Tmpfs, Target: "/data"},
			{Type: Bind, Source: t.TempDir(), Target: "/tmp/link/sub"},
		},
		Process: sh("touch /data/inside && echo ok"),
	})
	if !st.Success() || out != "ok\n" {
		t.Fatalf("%v %q", st, out)
	}
	ents, _ := os.ReadDir(victim)
	if len(ents) != 1 || ents[0].Name() != "keep" {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("the host directory the symlinks point at was written: %v", names)
	}
	checkNoLeaks(t, before)
}
