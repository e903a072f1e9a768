package namespace

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

// interfaces lists the network interfaces of ns by name, with whether
// each is up.
func interfaces(t *testing.T, ns *Namespace) map[string]bool {
	t.Helper()
	got := map[string]bool{}
	err := Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			got[i.Name] = i.Flags&net.FlagUp != 0
		}
		return err
	}, ns)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// TestPersistNet keeps a child's network namespace alive after the child
// is gone, and releases it.
func TestPersistNet(t *testing.T) {
	requireRoot(t)
	dir := checkNoMountsLeft(t)
	target := filepath.Join(dir, "sub", "netns")
	t.Cleanup(func() { Release(target); os.Remove(filepath.Dir(target)) })

	child := startSleeper(t, Net)
	orig, err := OpenPID(child.Process.Pid, Net)
	if err != nil {
		t.Fatal(err)
	}
	orig.Close()
	if err := Persist(child.Process.Pid, Net, target); err != nil {
		t.Fatal(err)
	}
	stopSleeper(child)

	ns, err := Open(target)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Kind() != Net || !ns.Equal(orig) {
		t.Errorf("persisted namespace is %v, want %v", ns, orig)
	}
	if ifs := interfaces(t, ns); len(ifs) != 1 || ifs["lo"] {
		t.Errorf("interfaces in the persisted namespace: %v, want lo, down", ifs)
	}
	ns.Close()

	other := startSleeper(t, Net)
	if err := Persist(other.Process.Pid, Net, target); !errors.Is(err, ErrExists) {
		t.Errorf("Persist onto a persisted namespace: %v, want ErrExists", err)
	}

	if err := Release(target); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Release, target: %v", err)
	}
	for _, mp := range mountPoints(t) {
		if mp == target {
			t.Errorf("after Release, %s is still mounted", mp)
		}
	}
	if err := Release(target); err != nil {
		t.Errorf("Release of a missing target: %v", err)
	}
	os.Remove(filepath.Dir(target))
}

// TestPersistFailures checks that Persist cleans up after itself and that
// Release leaves alone what it did not make.
func TestPersistFailures(t *testing.T) {
	requireRoot(t)
	dir := checkNoMountsLeft(t)
	target := filepath.Join(dir, "ns")
	if err := Persist(-1, Net, target); err == nil {
		t.Error("Persist of a missing process succeeded")
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("failed Persist left its target behind: %v", err)
	}

	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Release(plain); !errors.Is(err, ErrNotNamespace) {
		t.Errorf("Release of a plain file: %v, want ErrNotNamespace", err)
	}
	if _, err := os.Stat(plain); err != nil {
		t.Errorf("Release removed a plain file: %v", err)
	}
	os.Remove(plain)
	if err := Release("/proc/self/ns/net"); err == nil {
		t.Error("Release of /proc/self/ns/net succeeded")
	}

	// An existing empty file is used as it is, and kept by a failed Persist.
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Persist(-1, Net, target); err == nil {
		t.Error("Persist of a missing process succeeded")
	}
	if _, err := os.Stat(target); err != nil {
		t.Errorf("failed Persist removed a file it did not create: %v", err)
	}
	child := startSleeper(t, UTS)
	if err := Persist(child.Process.Pid, UTS, target); err != nil {
		t.Fatal(err)
	}
	if err := Release(target); err != nil {
		t.Fatal(err)
	}
}

// TestPersistMount persists a mount namespace. Its target must be on a
// mount that does not propagate into that namespace: the test makes a
// private bind mount of its directory first, as the doc of Persist says.
func TestPersistMount(t *testing.T) {
	requireRoot(t)
	dir := checkNoMountsLeft(t)
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Error(err)
		}
	})
	if err := unix.Mount("", dir, "", unix.MS_PRIVATE, ""); err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(dir, "mntns")
	child := startSleeper(t, Mount)
	want, err := OpenPID(child.Process.Pid, Mount)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if err := Persist(child.Process.Pid, Mount, target); err != nil {
		t.Fatal(err)
	}
	stopSleeper(child)
	ns, err := Open(target)
	if err != nil {
		t.Fatal(err)
	}
	if ns.Kind() != Mount || !ns.Equal(want) {
		t.Errorf("persisted %v, want %v", ns, want)
	}
	ns.Close()
	if err := Release(target); err != nil {
		t.Fatal(err)
	}
}
