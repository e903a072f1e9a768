package namespace

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenNotNamespace(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, "/proc/self/status", "/dev/null"} {
		if n, err := Open(p); !errors.Is(err, ErrNotNamespace) {
			t.Errorf("Open(%s) = %v, %v; want ErrNotNamespace", p, n, err)
		}
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Open of a missing file: %v, want fs.ErrNotExist", err)
	}
	if _, err := OpenPID(-5, Net); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenPID(-5): %v, want fs.ErrNotExist", err)
	}
}

// TestCurrent opens our own namespaces of every kind three ways and
// checks that they agree with each other and with readlink.
func TestCurrent(t *testing.T) {
	for _, k := range Kinds() {
		cur, err := Current(k)
		if err != nil {
			t.Fatalf("Current(%v): %v", k, err)
		}
		byPID, err := OpenPID(os.Getpid(), k)
		if err != nil {
			t.Fatalf("OpenPID(self, %v): %v", k, err)
		}
		byPath, err := Open("/proc/self/ns/" + k.String())
		if err != nil {
			t.Fatal(err)
		}
		link, err := os.Readlink("/proc/self/ns/" + k.String())
		if err != nil {
			t.Fatal(err)
		}
		if cur.Kind() != k || byPath.Kind() != k || cur.String() != link ||
			!cur.Equal(byPID) || !byPID.Equal(byPath) || cur.Inode() != byPath.Inode() || cur.Inode() == 0 {
			t.Errorf("%v: Current %v (kind %v), OpenPID %v, Open %v (kind %v), readlink %s",
				k, cur, cur.Kind(), byPID, byPath, byPath.Kind(), link)
		}
		if cur.Fd() < 0 || cur.Fd() == byPID.Fd() {
			t.Errorf("%v: fds %d, %d", k, cur.Fd(), byPID.Fd())
		}
		for _, n := range []*Namespace{cur, byPID, byPath} {
			if err := n.Close(); err != nil {
				t.Error(err)
			}
		}
		if err := cur.Close(); err == nil {
			t.Errorf("%v: second Close succeeded", k)
		}
	}
	var a, b *Namespace
	if !a.Equal(b) {
		t.Error("nil namespaces are not Equal")
	}
}

// TestOpenPIDChild starts a child in a new namespace of each kind and
// checks that it is in a different namespace of that kind than we are,
// and in the same one of every other kind.
func TestOpenPIDChild(t *testing.T) {
	requireRoot(t)
	for _, k := range Kinds() {
		t.Run(k.String(), func(t *testing.T) {
			cmd := startSleeper(t, k)
			for _, other := range Kinds() {
				child, err := OpenPID(cmd.Process.Pid, other)
				if err != nil {
					t.Fatal(err)
				}
				defer child.Close()
				ours, err := Current(other)
				if err != nil {
					t.Fatal(err)
				}
				defer ours.Close()
				link, err := os.Readlink(ProcPath(cmd.Process.Pid, other))
				if err != nil {
					t.Fatal(err)
				}
				if child.Kind() != other || child.String() != link {
					t.Errorf("child's %v namespace: kind %v, %v, readlink %s", other, child.Kind(), child, link)
				}
				same := child.Equal(ours) && child.Inode() == ours.Inode()
				if wantSame := other != k; same != wantSame {
					t.Errorf("child in new %v namespace: its %v namespace %v, ours %v", k, other, child, ours)
				}
			}
		})
	}
}

// TestEnterRefused checks that joining a mount, user or time namespace is
// refused up front with ErrMultiThreaded.
func TestEnterRefused(t *testing.T) {
	for _, k := range []Kind{Mount, User, Time} {
		n, err := Current(k)
		if err != nil {
			t.Fatal(err)
		}
		if err := n.Enter(); !errors.Is(err, ErrMultiThreaded) {
			t.Errorf("Enter(%v) = %v, want ErrMultiThreaded", k, err)
		}
		ran := false
		if err := Do(func() error { ran = true; return nil }, n); !errors.Is(err, ErrMultiThreaded) || ran {
			t.Errorf("Do in %v = %v (fn ran: %v), want ErrMultiThreaded", k, err, ran)
		}
		n.Close()
	}
}
