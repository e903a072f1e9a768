package cgroup

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// helperEnv selects a helper mode when the test binary re-executes itself.
const helperEnv = "BERTH_CGROUP_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "alloc":
		// Wait to be put in the cgroup, then use memory until the
		// OOM killer ends it.
		var b [1]byte
		if _, err := os.Stdin.Read(b[:]); err != nil {
			os.Exit(3)
		}
		var keep [][]byte
		for {
			chunk := make([]byte, 1<<20)
			for i := 0; i < len(chunk); i += 4096 {
				chunk[i] = 1
			}
			keep = append(keep, chunk)
			if len(keep) > 4096 { // 4 GiB: the limit did not hold
				os.Exit(4)
			}
		}
	default:
		os.Exit(5)
	}
}

// proc is a helper process the test owns.
type proc struct {
	*exec.Cmd
	pid  int
	done chan struct{} // closed once it has exited and been reaped
	err  error         // Wait's result, after done
}

// wait waits up to d for p to exit and returns Wait's error; ok is false
// on timeout.
func (p *proc) wait(d time.Duration) (err error, ok bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(d):
		return nil, false
	}
}

// start starts cmd and makes sure it is killed and reaped when the test
// ends.
func start(t *testing.T, cmd *exec.Cmd) *proc {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %v: %v", cmd.Args, err)
	}
	p := &proc{Cmd: cmd, pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
	})
	return p
}

// spawnAlloc starts the allocating helper; it waits for a byte on the
// returned writer before it starts.
func spawnAlloc(t *testing.T) (*proc, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=alloc")
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	return start(t, cmd), in
}

// sleeper starts /bin/sleep.
func sleeper(t *testing.T) *proc {
	return start(t, exec.Command("sleep", "60"))
}

// spinner starts a shell that spins on the CPU.
func spinner(t *testing.T) *proc {
	return start(t, exec.Command("sh", "-c", "while :; do :; done"))
}

// testRoot is the parent of every cgroup the tests make.
var testRoot = fmt.Sprintf("/berth-test-%d", os.Getpid())

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_.-]+`)

// testPath returns a cgroup path unique to t, and removes it, and the test
// root when it is empty, when t ends.
func testPath(t *testing.T) string {
	p := testRoot + "/" + unsafeName.ReplaceAllString(t.Name(), "_")
	t.Cleanup(func() {
		for _, q := range []string{p, testRoot} {
			if c, err := Load(q); err == nil {
				if q == testRoot {
					if n, _ := childNames(c.m); len(n) > 0 {
						continue
					}
				}
				if err := c.Delete(context.Background()); err != nil {
					t.Errorf("cleanup: %v", err)
				}
			}
		}
	})
	return p
}

// hostMounts reads the mount table independently of the package: every
// cgroup and cgroup2 mount point (name=systemd and the hybrid unified one
// included), and the mount point of each v1 controller.
func hostMounts(t *testing.T) (all []string, ctrl map[string]string) {
	t.Helper()
	b, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	ctrl = map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		a, f := strings.Fields(pre), strings.Fields(post)
		if f[0] != "cgroup" && f[0] != "cgroup2" {
			continue
		}
		all = append(all, a[4])
		if f[0] == "cgroup" {
			for _, o := range strings.Split(f[2], ",") {
				if _, ok := ctrl[o]; !ok {
					ctrl[o] = a[4]
				}
			}
		}
	}
	return all, ctrl
}

// cgFile returns the path of a control file of the cgroup at p: name1 in
// controller ctrl1's hierarchy on v1, name2 on v2.
func cgFile(t *testing.T, v Version, p, ctrl1, name1, name2 string) string {
	t.Helper()
	if v == V2 {
		return filepath.Join("/sys/fs/cgroup", p, name2)
	}
	_, ctrl := hostMounts(t)
	m, ok := ctrl[ctrl1]
	if !ok {
		t.Skipf("controller %s is not mounted", ctrl1)
	}
	return filepath.Join(m, p, name1)
}

// readCg reads a control file of the cgroup at p, trimmed.
func readCg(t *testing.T, v Version, p, ctrl1, name1, name2 string) string {
	t.Helper()
	b, err := os.ReadFile(cgFile(t, v, p, ctrl1, name1, name2))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// dirsOf returns every directory of the cgroup at p that exists in any
// cgroup hierarchy of the host.
func dirsOf(t *testing.T, p string) []string {
	t.Helper()
	all, _ := hostMounts(t)
	var out []string
	for _, m := range all {
		if _, err := os.Stat(filepath.Join(m, p)); err == nil {
			out = append(out, filepath.Join(m, p))
		}
	}
	return out
}

// cpuTicks returns utime+stime of pid, in clock ticks.
func cpuTicks(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the ")" closing the command name: state is the
	// 1st, utime the 12th, stime the 13th.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	u, _ := strconv.ParseUint(f[11], 10, 64)
	s, _ := strconv.ParseUint(f[12], 10, 64)
	return u + s
}

// inCgroup reports whether /proc/pid/cgroup places pid at p in every
// hierarchy that has p.
func inCgroup(t *testing.T, pid int, v Version, p string) bool {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, ctrl := hostMounts(t)
	found := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		parts := strings.SplitN(sc.Text(), ":", 3)
		switch {
		case v == V2 && parts[0] == "0":
			return parts[2] == p
		case v == V1 && parts[0] != "0":
			for _, c := range strings.Split(parts[1], ",") {
				if _, ok := ctrl[c]; ok && isV1Controller(c) {
					if parts[2] != p {
						return false
					}
					found++
					break
				}
			}
		}
	}
	return found > 0
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// fdCount returns how many descriptors this process has open.
func fdCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}
