package snapshottest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/layer/snapshot"
	"golang.org/x/sys/unix"
)

// openFunc opens a Snapshotter in root.
type openFunc = func(root string) (snapshot.Snapshotter, error)

// Run checks that the Snapshotter that open returns keeps the contract
// written in the doc comment of snapshot.Snapshotter, in subtests of t:
// chains of layers seen through their mounts, read-only views, what
// Commit and Remove accept, the errors, Walk, labels and reopening, Usage,
// file metadata (hard links, devices, owners, modes, xattrs, times),
// concurrent use, two Snapshotters sharing a root, 150 layers under a long
// root, and Close.
//
// open is called with an empty directory of the test's, and again with
// the same directory after the Snapshotter from it was closed, where it
// must open what is stored there. open is also called on a root that
// another Snapshotter from it has open, and must open it: several
// Snapshotters, in one process or many, share a root.
//
// Run mounts the snapshots it makes with snapshot.MountAll, so it needs
// root (CAP_SYS_ADMIN) and skips t otherwise; it fails a subtest that
// leaves a mount behind. The tests write through the mounts only, so an
// implementation is tested as its users see it.
func Run(t *testing.T, open func(root string) (snapshot.Snapshotter, error)) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, openFunc)
	}{
		{"Chain", testChain},
		{"ViewReadOnly", testViewReadOnly},
		{"CommitActiveOnly", testCommitActiveOnly},
		{"Errors", testErrors},
		{"Remove", testRemove},
		{"Walk", testWalk},
		{"LabelsAndReopen", testLabelsAndReopen},
		{"Usage", testUsage},
		{"Metadata", testMetadata},
		{"Concurrent", testConcurrent},
		{"Shared", testShared},
		{"Ephemeral", testEphemeral},
		{"ManyLayers", testManyLayers},
		{"Closed", testClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkNoLeakedMounts(t)
			tc.fn(t, open)
		})
	}
}

// testChain prepares and commits three layers with changes and deletions,
// and checks each level through views and active snapshots.
func testChain(t *testing.T, open openFunc) {
	sn := mustOpen(t, open, t.TempDir())
	l1 := map[string]string{
		"a.txt": "1", "dir/": "", "dir/x": "x", "del.txt": "d",
		"deldir/": "", "deldir/y": "y", "keep/": "", "keep/k": "k",
	}
	withMount(t, prepare(t, sn, "a", ""), func(dir string) {
		checkTree(t, "empty snapshot", dir, map[string]string{})
		writeFiles(t, dir, l1)
	})
	commit(t, sn, "L1", "a")

	l2 := map[string]string{
		"a.txt": "2", "dir/": "", "dir/x": "x", "keep/": "", "keep/k": "k",
		"deldir/": "", "deldir/z": "z", "new.txt": "n",
	}
	withMount(t, prepare(t, sn, "b", "L1"), func(dir string) {
		checkTree(t, "b on L1", dir, l1)
		writeFiles(t, dir, map[string]string{"a.txt": "2", "new.txt": "n"})
		for _, p := range []string{"del.txt", "deldir"} {
			if err := os.RemoveAll(filepath.Join(dir, p)); err != nil {
				t.Fatal(err)
			}
		}
		writeFiles(t, dir, map[string]string{"deldir/z": "z"}) // opaque dir on overlay
		checkTree(t, "b after changes", dir, l2)
	})
	commit(t, sn, "L2", "b")

	l3 := map[string]string{
		"a.txt": "2", "dir/": "", "dir/x": "x3", "keep/": "", "keep/k": "k",
		"deldir/": "", "deldir/z": "z", "c.txt": "c", "del.txt": "back",
	}
	withMount(t, prepare(t, sn, "c", "L2"), func(dir string) {
		checkTree(t, "c on L2", dir, l2)
		writeFiles(t, dir, map[string]string{"dir/x": "x3", "c.txt": "c", "del.txt": "back"})
		if err := os.Remove(filepath.Join(dir, "new.txt")); err != nil {
			t.Fatal(err)
		}
	})
	commit(t, sn, "L3", "c")

	// Every level is still what it was.
	for _, lv := range []struct {
		name string
		want map[string]string
	}{{"L1", l1}, {"L2", l2}, {"L3", l3}} {
		withMount(t, view(t, sn, "view-"+lv.name, lv.name), func(dir string) {
			checkTree(t, "view of "+lv.name, dir, lv.want)
		})
		withMount(t, prepare(t, sn, "active-"+lv.name, lv.name), func(dir string) {
			checkTree(t, "active on "+lv.name, dir, lv.want)
		})
	}
	// Mounts returns the same mounts again.
	ms, err := sn.Mounts(context.Background(), "active-L3")
	if err != nil {
		t.Fatal(err)
	}
	withMount(t, ms, func(dir string) { checkTree(t, "Mounts of active-L3", dir, l3) })
	// Two active snapshots on one parent do not see each other's writes.
	withMount(t, prepare(t, sn, "sib1", "L3"), func(d1 string) {
		withMount(t, prepare(t, sn, "sib2", "L3"), func(d2 string) {
			writeFiles(t, d1, map[string]string{"only1": "1"})
			if _, err := os.Stat(filepath.Join(d2, "only1")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sibling sees the other's write: %v", err)
			}
		})
	})
}

// testViewReadOnly checks views of no parent, one layer and a chain cannot
// be written.
func testViewReadOnly(t *testing.T, open openFunc) {
	sn := mustOpen(t, open, t.TempDir())
	withMount(t, prepare(t, sn, "a", ""), func(dir string) {
		writeFiles(t, dir, map[string]string{"f": "1"})
	})
	commit(t, sn, "L1", "a")
	withMount(t, prepare(t, sn, "b", "L1"), func(dir string) {
		writeFiles(t, dir, map[string]string{"g": "2"})
	})
	commit(t, sn, "L2", "b")

	for _, tc := range []struct{ parent, want string }{{"", ""}, {"L1", "f"}, {"L2", "f g"}} {
		key := "view-of-" + tc.parent
		withMount(t, view(t, sn, key, tc.parent), func(dir string) {
			var names []string
			for n := range tree(t, dir) {
				names = append(names, n)
			}
			slices.Sort(names)
			if got := strings.Join(names, " "); got != tc.want {
				t.Errorf("view of %q holds %q, want %q", tc.parent, got, tc.want)
			}
			err := os.WriteFile(filepath.Join(dir, "new"), nil, 0o644)
			wantErr(t, "create a file in view of "+tc.parent, err, syscall.EROFS)
			if tc.want != "" {
				err := os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644)
				wantErr(t, "write a file in view of "+tc.parent, err, syscall.EROFS)
				wantErr(t, "remove a file in view of "+tc.parent, os.Remove(filepath.Join(dir, "f")), syscall.EROFS)
			}
		})
		info, err := sn.Stat(context.Background(), key)
		if err != nil || info.Kind != snapshot.KindView || info.Parent != tc.parent {
			t.Errorf("Stat(%q) = %+v, %v; want a view on %q", key, info, err, tc.parent)
		}
	}
}

// testCommitActiveOnly checks Commit takes only active snapshots, and that
// the committed snapshot replaces the key.
func testCommitActiveOnly(t *testing.T, open openFunc) {
	ctx := context.Background()
	sn := mustOpen(t, open, t.TempDir())
	prepare(t, sn, "a", "")
	commit(t, sn, "L1", "a")
	view(t, sn, "v", "L1")
	wantErr(t, "commit a view", sn.Commit(ctx, "x", "v"), snapshot.ErrInvalid)
	wantErr(t, "commit a committed snapshot", sn.Commit(ctx, "x", "L1"), snapshot.ErrInvalid)
	wantErr(t, "commit a gone key", sn.Commit(ctx, "x", "a"), snapshot.ErrNotFound)
	if _, err := sn.Stat(ctx, "x"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("a failed commit left %q: %v", "x", err)
	}
	info, err := sn.Stat(ctx, "L1")
	if err != nil || info.Kind != snapshot.KindCommitted || info.Name != "L1" || info.Parent != "" {
		t.Errorf("Stat(L1) = %+v, %v", info, err)
	}
	if !info.Updated.After(info.Created) && !info.Updated.Equal(info.Created) {
		t.Errorf("Updated %v before Created %v", info.Updated, info.Created)
	}
	_, err = sn.Mounts(ctx, "L1")
	wantErr(t, "Mounts of a committed snapshot", err, snapshot.ErrInvalid)
	// A key can be committed again after its name is removed; its data
	// is the same directory.
	prepare(t, sn, "b", "L1")
	commit(t, sn, "L2", "b")
	prepare(t, sn, "b", "L2") // the key is free again
	info, err = sn.Stat(ctx, "b")
	if err != nil || info.Kind != snapshot.KindActive || info.Parent != "L2" {
		t.Errorf("Stat(b) = %+v, %v", info, err)
	}
}

// testErrors checks the errors for unknown and duplicate keys and bad
// arguments.
func testErrors(t *testing.T, open openFunc) {
	ctx := context.Background()
	sn := mustOpen(t, open, t.TempDir())
	prepare(t, sn, "active", "")
	prepare(t, sn, "c", "")
	commit(t, sn, "committed", "c")
	view(t, sn, "view", "committed")
	before := walk(t, sn)

	for _, tc := range []struct {
		what string
		err  error
		want error
	}{
		{"Prepare with an empty key", second(sn.Prepare(ctx, "", "")), snapshot.ErrInvalid},
		{"View with an empty key", second(sn.View(ctx, "", "")), snapshot.ErrInvalid},
		{"Prepare on an unknown parent", second(sn.Prepare(ctx, "k", "nope")), snapshot.ErrNotFound},
		{"View on an unknown parent", second(sn.View(ctx, "k", "nope")), snapshot.ErrNotFound},
		{"Prepare on an active parent", second(sn.Prepare(ctx, "k", "active")), snapshot.ErrInvalid},
		{"Prepare on a view", second(sn.Prepare(ctx, "k", "view")), snapshot.ErrInvalid},
		{"Prepare an existing active key", second(sn.Prepare(ctx, "active", "")), snapshot.ErrExists},
		{"Prepare a committed name", second(sn.Prepare(ctx, "committed", "")), snapshot.ErrExists},
		{"View an existing view key", second(sn.View(ctx, "view", "committed")), snapshot.ErrExists},
		{"View an existing active key", second(sn.View(ctx, "active", "committed")), snapshot.ErrExists},
		{"Commit an unknown key", sn.Commit(ctx, "n", "nope"), snapshot.ErrNotFound},
		{"Commit under an existing name", sn.Commit(ctx, "committed", "active"), snapshot.ErrExists},
		{"Commit under an existing key", sn.Commit(ctx, "view", "active"), snapshot.ErrExists},
		{"Commit under its own key", sn.Commit(ctx, "active", "active"), snapshot.ErrExists},
		{"Commit with an empty name", sn.Commit(ctx, "", "active"), snapshot.ErrInvalid},
		{"Mounts of an unknown key", second(sn.Mounts(ctx, "nope")), snapshot.ErrNotFound},
		{"Stat of an unknown key", second(sn.Stat(ctx, "nope")), snapshot.ErrNotFound},
		{"Usage of an unknown key", second(sn.Usage(ctx, "nope")), snapshot.ErrNotFound},
		{"Remove of an unknown key", sn.Remove(ctx, "nope"), snapshot.ErrNotFound},
		{"Prepare with a cancelled context", second(sn.Prepare(cancelled(), "k", "")), context.Canceled},
		{"Stat with a cancelled context", second(sn.Stat(cancelled(), "active")), context.Canceled},
		{"Walk with a cancelled context", sn.Walk(cancelled(), func(snapshot.Info) error { return nil }), context.Canceled},
		{"Prepare with a failing option", second(sn.Prepare(ctx, "k", "", func(*snapshot.Info) error { return snapshot.ErrInvalid })), snapshot.ErrInvalid},
	} {
		wantErr(t, tc.what, tc.err, tc.want)
	}
	// Failures leave no snapshot behind and change none.
	if _, err := sn.Stat(ctx, "k"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("a failed Prepare left key %q: %v", "k", err)
	}
	if after := walk(t, sn); fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("failed operations changed the snapshots: %v, then %v", before, after)
	}
	// The failing operations did not lock anything up.
	prepare(t, sn, "k", "committed")
	// Views are still usable after errors on them.
	withMount(t, mountsOf(t, sn, "view"), func(string) {})
}

// second returns the error of a two-value call.
func second[T any](_ T, err error) error { return err }

// cancelled returns a cancelled context.
func cancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// mountsOf calls Mounts and fails tb on error.
func mountsOf(tb testing.TB, sn snapshot.Snapshotter, key string) []snapshot.Mount {
	tb.Helper()
	ms, err := sn.Mounts(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}

// testRemove checks Remove refuses parents and deletes the rest.
func testRemove(t *testing.T, open openFunc) {
	ctx := context.Background()
	sn := mustOpen(t, open, t.TempDir())
	withMount(t, prepare(t, sn, "a", ""), func(dir string) {
		writeFiles(t, dir, map[string]string{"f": "1"})
	})
	commit(t, sn, "L1", "a")
	prepare(t, sn, "child-active", "L1")
	view(t, sn, "child-view", "L1")
	prepare(t, sn, "b", "L1")
	commit(t, sn, "child-committed", "b")
	prepare(t, sn, "grandchild", "child-committed")

	for _, child := range []string{"child-active", "child-view", "grandchild", "child-committed"} {
		wantErr(t, "Remove of L1 with children", sn.Remove(ctx, "L1"), snapshot.ErrInUse)
		before := len(walk(t, sn))
		if err := sn.Remove(ctx, child); err != nil {
			t.Fatalf("Remove(%q): %v", child, err)
		}
		if after := len(walk(t, sn)); after != before-1 {
			t.Errorf("Remove(%q) left %d snapshots, want %d", child, after, before-1)
		}
		if _, err := sn.Stat(ctx, child); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("Stat(%q) after Remove: %v", child, err)
		}
		wantErr(t, "second Remove of "+child, sn.Remove(ctx, child), snapshot.ErrNotFound)
	}
	// A removed active snapshot takes its data: the key prepared again
	// starts from its parent.
	withMount(t, prepare(t, sn, "gone", "L1"), func(dir string) {
		writeFiles(t, dir, map[string]string{"data": "x"})
	})
	if err := sn.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	withMount(t, prepare(t, sn, "gone", "L1"), func(dir string) {
		checkTree(t, "gone prepared again", dir, map[string]string{"f": "1"})
	})
	must(t, sn.Remove(ctx, "gone"))
	if err := sn.Remove(ctx, "L1"); err != nil {
		t.Fatalf("Remove(L1) with no children: %v", err)
	}
	if got := walk(t, sn); len(got) != 0 {
		t.Errorf("snapshots left: %v", got)
	}
	// Names are free again.
	prepare(t, sn, "L1", "")
}

// testWalk checks Walk sees every snapshot as Stat does, in order, and
// stops at an error.
func testWalk(t *testing.T, open openFunc) {
	ctx := context.Background()
	sn := mustOpen(t, open, t.TempDir())
	var infos []snapshot.Info
	collect := func(i snapshot.Info) error { infos = append(infos, i); return nil }
	if err := sn.Walk(ctx, collect); err != nil || len(infos) != 0 {
		t.Fatalf("Walk of an empty store: %v, %v", infos, err)
	}
	prepare(t, sn, "x-base", "", snapshot.WithLabels(map[string]string{"l": "1"}))
	commit(t, sn, "base", "x-base")
	prepare(t, sn, "active", "base")
	view(t, sn, "view", "base", snapshot.WithLabels(map[string]string{"v": "2"}))
	prepare(t, sn, "empty", "")
	if err := sn.Walk(ctx, collect); err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		kind   snapshot.Kind
		parent string
	}{"active": {snapshot.KindActive, "base"}, "base": {snapshot.KindCommitted, ""}, "empty": {snapshot.KindActive, ""}, "view": {snapshot.KindView, "base"}}
	var names []string
	for _, i := range infos {
		names = append(names, i.Name)
		w, ok := want[i.Name]
		if !ok || i.Kind != w.kind || i.Parent != w.parent {
			t.Errorf("Walk gave %+v", i)
		}
		st, err := sn.Stat(ctx, i.Name)
		if err != nil || fmt.Sprint(st) != fmt.Sprint(i) {
			t.Errorf("Walk gave %+v, Stat %+v, %v", i, st, err)
		}
	}
	if !slices.Equal(names, []string{"active", "base", "empty", "view"}) {
		t.Errorf("Walk order %v", names)
	}
	stop := errors.New("stop")
	n := 0
	err := sn.Walk(ctx, func(snapshot.Info) error { n++; return stop })
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("Walk with a failing fn: %d calls, %v", n, err)
	}
}

// testLabelsAndReopen checks labels and the whole store survive Close and
// New.
func testLabelsAndReopen(t *testing.T, open openFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn, err := open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { sn.Close() }()
	withMount(t, prepare(t, sn, "a", "", snapshot.WithLabels(map[string]string{"k1": "a", "k2": "a"})), func(dir string) {
		writeFiles(t, dir, map[string]string{"f": "1"})
	})
	commit(t, sn, "L1", "a", snapshot.WithLabels(map[string]string{"k2": "c", "k3": "c"}))
	prepare(t, sn, "active", "L1", snapshot.WithLabels(map[string]string{"role": "ctr"}))
	view(t, sn, "view", "L1")
	infos := map[string]snapshot.Info{}
	for _, k := range []string{"L1", "active", "view"} {
		infos[k], err = sn.Stat(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := fmt.Sprint(infos["L1"].Labels); got != "map[k1:a k2:c k3:c]" {
		t.Errorf("labels of L1: %s", got)
	}
	if got := fmt.Sprint(infos["active"].Labels); got != "map[role:ctr]" {
		t.Errorf("labels of active: %s", got)
	}
	if infos["view"].Labels != nil {
		t.Errorf("labels of view: %v", infos["view"].Labels)
	}
	// Labels returned are copies.
	infos["L1"].Labels["k1"] = "changed"
	if i, _ := sn.Stat(ctx, "L1"); i.Labels["k1"] != "a" {
		t.Errorf("changing a returned label changed the snapshot")
	}
	infos["L1"].Labels["k1"] = "a"

	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	sn, err = open(root)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range infos {
		got, err := sn.Stat(ctx, k)
		if err != nil || fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("after reopening, Stat(%q) = %+v, %v; want %+v", k, got, err, want)
		}
	}
	withMount(t, prepare(t, sn, "after", "L1"), func(dir string) {
		checkTree(t, "prepared after reopening", dir, map[string]string{"f": "1"})
	})
	withMount(t, mountsOf(t, sn, "view"), func(dir string) {
		checkTree(t, "view after reopening", dir, map[string]string{"f": "1"})
	})
	wantErr(t, "Remove of L1 after reopening", sn.Remove(ctx, "L1"), snapshot.ErrInUse)
}

// testUsage checks Usage counts blocks and inodes, hard links once.
func testUsage(t *testing.T, open openFunc) {
	ctx := context.Background()
	sn := mustOpen(t, open, t.TempDir())
	prepare(t, sn, "a", "")
	u0, err := sn.Usage(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if u0.Inodes != 1 {
		t.Errorf("Usage of an empty snapshot: %+v, want 1 inode (its root)", u0)
	}
	const size = 1 << 20
	withMount(t, mountsOf(t, sn, "a"), func(dir string) {
		writeFiles(t, dir, map[string]string{"big": strings.Repeat("x", size), "sub/small": "s"})
		must(t, os.Link(filepath.Join(dir, "big"), filepath.Join(dir, "sub/big-link")))
		must(t, os.Symlink("big", filepath.Join(dir, "sym")))
	})
	u, err := sn.Usage(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	// root, big (twice linked), sub, small, sym
	if u.Inodes != 5 {
		t.Errorf("Usage inodes = %d, want 5", u.Inodes)
	}
	if u.Size < size || u.Size > size+64<<10 {
		t.Errorf("Usage size = %d, want %d and a few blocks", u.Size, size)
	}
	commit(t, sn, "L1", "a")
	if uc, err := sn.Usage(ctx, "L1"); err != nil || uc != u {
		t.Errorf("Usage of the committed snapshot = %+v, %v; want %+v", uc, err, u)
	}
	view(t, sn, "v", "L1")
	if uv, err := sn.Usage(ctx, "v"); err != nil || uv.Inodes > 1 {
		t.Errorf("Usage of a view = %+v, %v; want its empty directory at most", uv, err)
	}
}

// testMetadata checks what a layer holds besides file contents is seen in
// snapshots on it: hard links, symbolic links, special files, modes,
// owners, extended attributes and times.
func testMetadata(t *testing.T, open openFunc) {
	sn := mustOpen(t, open, t.TempDir())
	mtime := time.Date(2001, 2, 3, 4, 5, 6, 7000, time.UTC)
	atime := time.Date(2002, 2, 3, 4, 5, 6, 0, time.UTC)
	withMount(t, prepare(t, sn, "a", ""), func(dir string) {
		p := func(n string) string { return filepath.Join(dir, n) }
		writeFiles(t, dir, map[string]string{"file": "data", "d/": "", "d/inner": "in", "setuid": "#!"})
		must(t, os.Link(p("file"), p("d/hardlink")))
		must(t, os.Symlink("../file", p("d/symlink")))
		must(t, os.Symlink("/nowhere", p("dangling")))
		must(t, unix.Mkfifo(p("fifo"), 0o640))
		must(t, unix.Mknod(p("null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, os.Chown(p("file"), 1234, 5678))
		must(t, os.Lchown(p("d/symlink"), 42, 43))
		must(t, os.Chown(p("setuid"), 1000, 1000))
		must(t, os.Chmod(p("setuid"), 0o755|os.ModeSetuid))
		must(t, os.Chmod(p("d"), 0o750))
		must(t, unix.Setxattr(p("file"), "user.berth", []byte("v"), 0))
		must(t, unix.Setxattr(p("d"), "trusted.berth", []byte("t"), 0))
		must(t, os.Chtimes(p("file"), atime, mtime))
		must(t, os.Chtimes(p("d"), atime, mtime))
		must(t, unix.Lutimes(p("d/symlink"), []unix.Timeval{unix.NsecToTimeval(atime.UnixNano()), unix.NsecToTimeval(mtime.UnixNano())}))
	})
	commit(t, sn, "L1", "a")
	prepare(t, sn, "b", "L1")
	commit(t, sn, "L2", "b") // Copy copies twice to get here
	check := func(dir string) {
		p := func(n string) string { return filepath.Join(dir, n) }
		st := func(n string) *unix.Stat_t {
			var s unix.Stat_t
			if err := unix.Lstat(p(n), &s); err != nil {
				t.Fatal(err)
			}
			return &s
		}
		f, h := st("file"), st("d/hardlink")
		if f.Ino != h.Ino || f.Nlink != 2 {
			t.Errorf("hard link: inodes %d and %d, %d links", f.Ino, h.Ino, f.Nlink)
		}
		if f.Uid != 1234 || f.Gid != 5678 || f.Mode&0o7777 != 0o644 {
			t.Errorf("file: owner %d:%d mode %#o", f.Uid, f.Gid, f.Mode&0o7777)
		}
		if got := time.Unix(f.Mtim.Unix()).UTC(); !got.Equal(mtime) {
			t.Errorf("file mtime %v, want %v", got, mtime)
		}
		if got := time.Unix(st("d").Mtim.Unix()).UTC(); !got.Equal(mtime) {
			t.Errorf("directory mtime %v, want %v", got, mtime)
		}
		if s := st("d"); s.Mode&0o7777 != 0o750 {
			t.Errorf("directory mode %#o", s.Mode&0o7777)
		}
		if s := st("setuid"); s.Mode&0o7777 != 0o4755 || s.Uid != 1000 {
			t.Errorf("setuid file: mode %#o owner %d", s.Mode&0o7777, s.Uid)
		}
		if s := st("d/symlink"); s.Uid != 42 || s.Gid != 43 || time.Unix(s.Mtim.Unix()).Unix() != mtime.Unix() {
			t.Errorf("symlink: owner %d:%d mtime %v", s.Uid, s.Gid, time.Unix(s.Mtim.Unix()))
		}
		if tgt, err := os.Readlink(p("d/symlink")); err != nil || tgt != "../file" {
			t.Errorf("symlink target %q, %v", tgt, err)
		}
		if tgt, err := os.Readlink(p("dangling")); err != nil || tgt != "/nowhere" {
			t.Errorf("dangling symlink target %q, %v", tgt, err)
		}
		if s := st("fifo"); s.Mode&unix.S_IFMT != unix.S_IFIFO || s.Mode&0o777 != 0o640 {
			t.Errorf("fifo mode %#o", s.Mode)
		}
		if s := st("null"); s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != unix.Mkdev(1, 3) {
			t.Errorf("device: mode %#o rdev %d", s.Mode, s.Rdev)
		}
		for _, x := range []struct{ path, name, value string }{{"file", "user.berth", "v"}, {"d", "trusted.berth", "t"}} {
			b := make([]byte, 16)
			n, err := unix.Lgetxattr(p(x.path), x.name, b)
			if err != nil || string(b[:n]) != x.value {
				t.Errorf("xattr %s of %s = %q, %v", x.name, x.path, b[:max(n, 0)], err)
			}
		}
		if b, err := os.ReadFile(p("d/hardlink")); err != nil || string(b) != "data" {
			t.Errorf("hard link holds %q, %v", b, err)
		}
	}
	withMount(t, prepare(t, sn, "c", "L2"), func(dir string) { check(dir) })
	withMount(t, view(t, sn, "v", "L2"), func(dir string) { check(dir) })
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// testConcurrent runs 50 goroutines preparing, committing, viewing and
// removing, some on the same keys, and checks the store afterwards.
func testConcurrent(t *testing.T, open openFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn := mustOpen(t, open, root)
	withMount(t, prepare(t, sn, "x-base", ""), func(dir string) {
		writeFiles(t, dir, map[string]string{"base": "b"})
	})
	commit(t, sn, "base", "x-base")
	mnt := t.TempDir() // mount points, one per goroutine

	const workers, rounds = 50, 4
	var sharedWins, nameWins, removedBase atomic.Int32
	var wg sync.WaitGroup
	errc := make(chan error, workers*rounds*8)
	fail := func(format string, args ...any) { errc <- fmt.Errorf(format, args...) }
	for w := range workers {
		wg.Go(func() {
			// Everyone races for one key and one name.
			_, err := sn.Prepare(ctx, "shared", "base")
			switch {
			case err == nil:
				sharedWins.Add(1)
			case !errors.Is(err, snapshot.ErrExists):
				fail("Prepare(shared): %v", err)
			}
			key := fmt.Sprintf("race-%d", w)
			if _, err := sn.Prepare(ctx, key, "base"); err != nil {
				fail("Prepare(%s): %v", key, err)
				return
			}
			switch err := sn.Commit(ctx, "race-name", key); {
			case err == nil:
				nameWins.Add(1)
			case errors.Is(err, snapshot.ErrExists):
				if err := sn.Remove(ctx, key); err != nil {
					fail("Remove(%s): %v", key, err)
				}
			default:
				fail("Commit(race-name): %v", err)
			}
			// Nobody may remove a parent with children.
			switch err := sn.Remove(ctx, "base"); {
			case err == nil:
				removedBase.Add(1)
			case !errors.Is(err, snapshot.ErrInUse):
				fail("Remove(base): %v", err)
			}
			for r := range rounds {
				k := fmt.Sprintf("k-%d-%d", w, r)
				n := fmt.Sprintf("n-%d-%d", w, r)
				v := fmt.Sprintf("v-%d-%d", w, r)
				ms, err := sn.Prepare(ctx, k, "base", snapshot.WithLabels(map[string]string{"w": strconv.Itoa(w)}))
				if err != nil {
					fail("Prepare(%s): %v", k, err)
					continue
				}
				if err := writeThrough(ms, filepath.Join(mnt, k), k, k); err != nil {
					fail("write %s: %v", k, err)
				}
				if err := sn.Commit(ctx, n, k); err != nil {
					fail("Commit(%s): %v", n, err)
					continue
				}
				if _, err := sn.View(ctx, v, n); err != nil {
					fail("View(%s): %v", v, err)
				}
				if i, err := sn.Stat(ctx, n); err != nil || i.Kind != snapshot.KindCommitted || i.Parent != "base" || i.Labels["w"] != strconv.Itoa(w) {
					fail("Stat(%s) = %+v, %v", n, i, err)
				}
				if _, err := sn.Usage(ctx, n); err != nil {
					fail("Usage(%s): %v", n, err)
				}
				if err := sn.Remove(ctx, n); !errors.Is(err, snapshot.ErrInUse) {
					fail("Remove(%s) with a view: %v", n, err)
				}
				if err := sn.Walk(ctx, func(snapshot.Info) error { return nil }); err != nil {
					fail("Walk: %v", err)
				}
				if err := sn.Remove(ctx, v); err != nil {
					fail("Remove(%s): %v", v, err)
				}
				if r%2 == 0 { // keep half
					if err := sn.Remove(ctx, n); err != nil {
						fail("Remove(%s): %v", n, err)
					}
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if sharedWins.Load() != 1 || nameWins.Load() != 1 || removedBase.Load() != 0 {
		t.Errorf("Prepare(shared) won %d times, Commit(race-name) %d, Remove(base) %d; want 1, 1, 0",
			sharedWins.Load(), nameWins.Load(), removedBase.Load())
	}
	var names []string
	if err := sn.Walk(ctx, func(i snapshot.Info) error { names = append(names, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	want := workers*rounds/2 + 3 // the kept n-*, base, shared, race-name
	if len(names) != want {
		t.Errorf("%d snapshots after the race, want %d", len(names), want)
	}
	// The store on disk is what was in memory.
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	sn2 := mustOpen(t, open, root)
	var names2 []string
	if err := sn2.Walk(ctx, func(i snapshot.Info) error { names2 = append(names2, i.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(names, names2) {
		t.Errorf("after reopening: %v, want %v", names2, names)
	}
	withMount(t, view(t, sn2, "check", "n-7-1"), func(dir string) {
		checkTree(t, "n-7-1", dir, map[string]string{"base": "b", "k-7-1": "k-7-1"})
	})
}

// testShared opens two Snapshotters on one root, as two processes would,
// and checks each sees what the other makes and removes, that keys and
// names stay unique between them, and that neither removes a parent
// while the other has children of it, or is making one.
func testShared(t *testing.T, open openFunc) {
	ctx := context.Background()
	root := t.TempDir()
	a := mustOpen(t, open, root)
	b := mustOpen(t, open, root)
	withMount(t, prepare(t, a, "x-base", ""), func(dir string) {
		writeFiles(t, dir, map[string]string{"base": "b"})
	})
	commit(t, a, "base", "x-base")

	// b sees what a made after b was opened, and can build on it.
	if i, err := b.Stat(ctx, "base"); err != nil || i.Kind != snapshot.KindCommitted {
		t.Fatalf("b: Stat(base) = %+v, %v", i, err)
	}
	withMount(t, prepare(t, b, "b-active", "base"), func(dir string) {
		checkTree(t, "b's snapshot on a's layer", dir, map[string]string{"base": "b"})
	})
	if i, err := a.Stat(ctx, "b-active"); err != nil || i.Kind != snapshot.KindActive || i.Parent != "base" {
		t.Errorf("a: Stat(b-active) = %+v, %v", i, err)
	}
	if got := len(walk(t, a)); got != 2 {
		t.Errorf("a walks %d snapshots, want 2", got)
	}

	// Keys and names are unique across both.
	wantErr(t, "a: Prepare of b's key", second(a.Prepare(ctx, "b-active", "")), snapshot.ErrExists)
	prepare(t, a, "a-active", "base")
	wantErr(t, "b: Commit as a's key", b.Commit(ctx, "a-active", "b-active"), snapshot.ErrExists)

	// A parent with a child of the other's is in use; so is one whose
	// child the other is making right now.
	wantErr(t, "b: Remove(base) with a's child", b.Remove(ctx, "base"), snapshot.ErrInUse)
	must(t, b.Remove(ctx, "b-active"))
	wantErr(t, "b: Remove(base) with a's child", b.Remove(ctx, "base"), snapshot.ErrInUse)
	must(t, a.Remove(ctx, "a-active"))
	if _, err := a.Stat(ctx, "b-active"); !errors.Is(err, snapshot.ErrNotFound) {
		t.Errorf("a: Stat of what b removed: %v, want ErrNotFound", err)
	}

	const workers = 8
	var wg sync.WaitGroup
	var removed, won, prepared atomic.Int32
	errc := make(chan error, 4*workers)
	for w := range workers {
		sn := []snapshot.Snapshotter{a, b}[w%2]
		wg.Go(func() {
			if w < workers/2 {
				switch err := sn.Remove(ctx, "base"); {
				case err == nil:
					removed.Add(1)
				case !errors.Is(err, snapshot.ErrInUse) && !errors.Is(err, snapshot.ErrNotFound):
					errc <- fmt.Errorf("Remove(base): %v", err)
				}
				return
			}
			if _, err := sn.Prepare(ctx, fmt.Sprintf("c-%d", w), "base"); err == nil {
				prepared.Add(1)
			} else if !errors.Is(err, snapshot.ErrNotFound) {
				errc <- fmt.Errorf("Prepare(c-%d): %v", w, err)
			}
			key := fmt.Sprintf("r-%d", w)
			if _, err := sn.Prepare(ctx, key, ""); err != nil {
				errc <- fmt.Errorf("Prepare(%s): %v", key, err)
				return
			}
			switch err := sn.Commit(ctx, "one-name", key); {
			case err == nil:
				won.Add(1)
			case errors.Is(err, snapshot.ErrExists):
			default:
				errc <- fmt.Errorf("Commit(one-name): %v", err)
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if won.Load() != 1 {
		t.Errorf("Commit(one-name) won %d times across two Snapshotters, want 1", won.Load())
	}
	_, err := a.Stat(ctx, "base")
	switch {
	case removed.Load() == 1 && prepared.Load() != 0:
		t.Errorf("base was removed, and %d children were prepared on it", prepared.Load())
	case removed.Load() == 0 && err != nil:
		t.Errorf("base was not removed, but Stat(base): %v", err)
	case removed.Load() > 1:
		t.Errorf("base was removed %d times", removed.Load())
	}
	// Every child's parent exists, seen from either side.
	for _, sn := range []snapshot.Snapshotter{a, b} {
		names := map[string]bool{}
		infos := walk(t, sn)
		for _, i := range infos {
			names[i.Name] = true
		}
		for _, i := range infos {
			if i.Parent != "" && !names[i.Parent] {
				t.Errorf("%s has parent %s, which is gone", i.Name, i.Parent)
			}
		}
	}
	must(t, a.Close())
	must(t, b.Close())
}

// layers is how many layers testManyLayers stacks: enough that their
// lowerdir option is far longer than a page under a long root.
const layers = 150

// testManyLayers stacks 150 layers under a long root path, and mounts the
// top one.
func testManyLayers(t *testing.T, open openFunc) {
	root := filepath.Join(t.TempDir(), strings.Repeat("long-root-", 10))
	sn := mustOpen(t, open, root)
	want := map[string]string{}
	parent := ""
	for i := 1; i <= layers; i++ {
		key := fmt.Sprintf("extract-%d", i)
		ms := prepare(t, sn, key, parent)
		f := fmt.Sprintf("f%03d", i)
		want[f] = strconv.Itoa(i)
		withMount(t, ms, func(dir string) {
			if i == layers/2 {
				// A deletion: an overlay records a whiteout.
				must(t, os.Remove(filepath.Join(dir, "f010")))
				delete(want, "f010")
			}
			writeFiles(t, dir, map[string]string{f: strconv.Itoa(i)})
		})
		name := fmt.Sprintf("layer-%d", i)
		commit(t, sn, name, key)
		parent = name
	}
	ms := prepare(t, sn, "top", parent)
	withMount(t, ms, func(dir string) {
		checkTree(t, "top of 150 layers", dir, want)
		writeFiles(t, dir, map[string]string{"written": "w"})
	})
	withMount(t, view(t, sn, "top-view", parent), func(dir string) {
		checkTree(t, "view of 150 layers", dir, want)
	})
}

// testClosed checks a closed Snapshotter refuses work.
func testClosed(t *testing.T, open openFunc) {
	ctx := context.Background()
	sn, err := open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	prepare(t, sn, "a", "")
	must(t, sn.Close())
	must(t, sn.Close())
	for _, tc := range []struct {
		what string
		err  error
	}{
		{"Prepare", second(sn.Prepare(ctx, "b", ""))},
		{"View", second(sn.View(ctx, "b", ""))},
		{"Mounts", second(sn.Mounts(ctx, "a"))},
		{"Commit", sn.Commit(ctx, "n", "a")},
		{"Remove", sn.Remove(ctx, "a")},
		{"Stat", second(sn.Stat(ctx, "a"))},
		{"Usage", second(sn.Usage(ctx, "a"))},
		{"Walk", sn.Walk(ctx, func(snapshot.Info) error { return nil })},
	} {
		wantErr(t, tc.what+" after Close", tc.err, snapshot.ErrClosed)
	}
}

// testEphemeral: an ephemeral snapshot works as any other, keeps its label
// while active, and Commit makes a committed snapshot without it.
func testEphemeral(t *testing.T, open openFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn := mustOpen(t, open, root)
	if _, err := sn.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	commit(t, sn, "L1", "base")
	ms, err := sn.Prepare(ctx, "eph", "L1", snapshot.Ephemeral())
	if err != nil {
		t.Fatal(err)
	}
	withMount(t, ms, func(dir string) { writeFiles(t, dir, map[string]string{"f": "eph"}) })
	info, err := sn.Stat(ctx, "eph")
	if err != nil || info.Labels[snapshot.LabelEphemeral] == "" {
		t.Fatalf("Stat of an ephemeral snapshot: %+v, %v", info, err)
	}
	commit(t, sn, "L2", "eph")
	if info, err := sn.Stat(ctx, "L2"); err != nil || info.Labels[snapshot.LabelEphemeral] != "" {
		t.Fatalf("committed from an ephemeral snapshot: %+v, %v", info, err)
	}
	if _, err := sn.View(ctx, "v", "L2", snapshot.Ephemeral()); err != nil {
		t.Fatal(err)
	}
	if err := sn.Remove(ctx, "v"); err != nil {
		t.Fatal(err)
	}
	// A reopened root has the committed snapshot.
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	sn = mustOpen(t, open, root)
	withMount(t, prepare(t, sn, "again", "L2"), func(dir string) {
		checkTree(t, "on L2", dir, map[string]string{"f": "eph"})
	})
}
