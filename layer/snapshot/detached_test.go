package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/osthread"
	"golang.org/x/sys/unix"
)

// waitDetachedSpare waits until o has a spare mounted ahead on the
// parent named parent.
func waitDetachedSpare(t *testing.T, o *Overlay, parent string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		o.st.spareMu.Lock()
		ok := false
		for _, sp := range o.st.spares {
			ok = ok || sp.mnt != nil && sp.parentName == parent
		}
		o.st.spareMu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no spare mounted ahead on %q after 10s", parent)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attach moves the detached mount f onto a directory in a private mount
// namespace of a thread of its own and runs fn there with the mount's
// path; the namespace ends with the thread.
func attach(t *testing.T, f *os.File, fn func(dir string) error) {
	t.Helper()
	dir := t.TempDir()
	errc := make(chan error, 1)
	osthread.Go(func() { // ends locked: the thread takes its namespace along
		if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
			errc <- err
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			errc <- err
			return
		}
		if err := unix.MoveMount(int(f.Fd()), "", unix.AT_FDCWD, dir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			errc <- err
			return
		}
		errc <- fn(dir)
	})
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// An ephemeral snapshot on the parent of the one before it comes with a
// mount made ahead, which shows the parent and writes to the snapshot;
// one on another parent does not, and one not taken is closed by Remove.
// Nothing is left open after Close.
func TestDetachedMount(t *testing.T) {
	requireRoot(t)
	requireOverlay(t)
	ctx := context.Background()
	fds := func() int { ents, _ := os.ReadDir("/proc/self/fd"); return len(ents) }
	before := fds()
	root := t.TempDir()
	sn, err := NewOverlay(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"base", "other"} {
		prepare(t, sn, name+"-work", "")
		must(t, os.WriteFile(filepath.Join(dirOf(t, sn, name+"-work"), "f"), []byte(name), 0o644))
		commit(t, sn, name, name+"-work")
	}
	if f := sn.DetachedMount("base"); f != nil {
		t.Fatal("a committed snapshot has a detached mount")
	}
	prepare(t, sn, "first", "base", Ephemeral())
	must(t, sn.Remove(ctx, "first"))
	waitDetachedSpare(t, sn, "base")

	prepare(t, sn, "second", "base", Ephemeral())
	f := sn.DetachedMount("second")
	if f == nil {
		t.Fatal("no detached mount for an ephemeral snapshot on the last parent")
	}
	if again := sn.DetachedMount("second"); again != nil {
		t.Error("DetachedMount gave the mount twice")
	}
	attach(t, f, func(dir string) error {
		b, err := os.ReadFile(filepath.Join(dir, "f"))
		if err != nil {
			return err
		}
		if string(b) != "base" {
			t.Errorf("the mount shows f = %q, want the parent's", b)
		}
		return os.WriteFile(filepath.Join(dir, "new"), []byte("x"), 0o644)
	})
	f.Close()
	if _, err := os.Stat(filepath.Join(dirOf(t, sn, "second"), "new")); err != nil {
		t.Errorf("a write through the detached mount is not in the snapshot: %v", err)
	}
	must(t, sn.Remove(ctx, "second"))

	// Another parent: the spares were mounted on base.
	waitDetachedSpare(t, sn, "base")
	prepare(t, sn, "third", "other", Ephemeral())
	if f := sn.DetachedMount("third"); f != nil {
		f.Close()
		t.Error("a detached mount on the wrong parent was handed out")
	}
	must(t, sn.Remove(ctx, "third"))
	// Not taken: Remove closes it.
	waitDetachedSpare(t, sn, "other")
	prepare(t, sn, "fourth", "other", Ephemeral())
	sn.st.spareMu.Lock()
	kept := sn.st.detached["fourth"] != nil
	sn.st.spareMu.Unlock()
	if !kept {
		t.Fatal("no mount made ahead for fourth")
	}
	must(t, sn.Remove(ctx, "fourth"))
	if f := sn.DetachedMount("fourth"); f != nil {
		t.Error("a removed snapshot's mount is still there")
	}
	// Not taken either: Close closes it, and the spares' mounts.
	waitDetachedSpare(t, sn, "other")
	prepare(t, sn, "fifth", "other", Ephemeral())
	must(t, sn.Close())
	if after := fds(); after > before {
		t.Errorf("descriptors: %d before, %d after Close", before, after)
	}
}
