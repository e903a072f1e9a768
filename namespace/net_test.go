package namespace

import (
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestNewNet(t *testing.T) {
	requireRoot(t)
	host, err := Current(Net)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	ns, err := NewNet("")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ns.Kind() != Net || ns.Equal(host) {
		t.Errorf("NewNet gave %v; host is %v", ns, host)
	}
	if ifs := interfaces(t, ns); len(ifs) != 1 || !ifs["lo"] {
		t.Errorf("interfaces in the new namespace: %v, want lo, up", ifs)
	}
	everyThreadIn(t, host)
}

// TestNewNetPersisted creates a persisted network namespace, checks that
// it outlives its handle and that another tool (nsenter) finds it, and
// releases it.
func TestNewNetPersisted(t *testing.T) {
	requireRoot(t)
	dir := checkNoMountsLeft(t)
	target := filepath.Join(dir, "netns")
	ns, err := NewNet(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Release(target) })
	ns.Close()

	again, err := Open(target)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Equal(ns) {
		t.Errorf("persisted %v, NewNet returned %v", again, ns)
	}
	if ifs := interfaces(t, again); len(ifs) != 1 || !ifs["lo"] {
		t.Errorf("interfaces: %v, want lo, up", ifs)
	}
	again.Close()

	if _, err := NewNet(target); !errors.Is(err, ErrExists) {
		t.Errorf("NewNet onto a persisted namespace: %v, want ErrExists", err)
	}

	if nsenter, err := exec.LookPath("nsenter"); err != nil {
		t.Logf("nsenter not installed; not checking that other tools see the namespace")
	} else {
		out, err := exec.Command(nsenter, "--net="+target, "cat", "/proc/net/dev").CombinedOutput()
		if err != nil {
			t.Fatalf("nsenter: %v: %s", err, out)
		}
		if n := strings.Count(string(out), ":"); n != 1 || !strings.Contains(string(out), "lo:") {
			t.Errorf("/proc/net/dev seen through nsenter:\n%s", out)
		}
	}

	if err := Release(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Release: %v", err)
	}
}

// TestLoopbackUp brings up lo in a child's fresh network namespace.
func TestLoopbackUp(t *testing.T) {
	requireRoot(t)
	child := startSleeper(t, Net)
	ns, err := OpenPID(child.Process.Pid, Net)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if ifs := interfaces(t, ns); ifs["lo"] {
		t.Fatal("lo is up in a fresh namespace")
	}
	for range 2 { // the second time is a no-op
		if err := Do(LoopbackUp, ns); err != nil {
			t.Fatal(err)
		}
		if ifs := interfaces(t, ns); !ifs["lo"] {
			t.Error("lo is still down")
		}
	}
}
