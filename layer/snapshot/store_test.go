package snapshot

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
	"testing"
	"time"
)

// TestStore checks what the suite cannot see from outside, for both
// implementations: the directories and records on disk, and recovery
// from a crash.
func TestStore(t *testing.T) {
	requireRoot(t)
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, newFunc)
	}{
		{"RemoveDeletesDirectories", testRemoveDirs},
		{"FailuresLeaveNoDirectory", testFailuresLeaveNoDirectory},
		{"ConcurrentRecords", testConcurrentRecords},
		{"Crash", testCrash},
	} {
		for _, kind := range []struct {
			name string
			fn   newFunc
		}{{"overlay", newOverlay}, {"copy", newCopy}} {
			t.Run(tc.name+"/"+kind.name, func(t *testing.T) {
				if kind.name == "overlay" {
					requireOverlay(t)
				}
				checkNoLeakedMounts(t)
				tc.fn(t, kind.fn)
			})
		}
	}
}

// testRemoveDirs checks Remove deletes a snapshot's directory and record,
// and a removed active snapshot's data with it.
func testRemoveDirs(t *testing.T, newFn newFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn := open(t, newFn, root)
	withMount(t, prepare(t, sn, "a", ""), func(dir string) {
		writeFiles(t, dir, map[string]string{"f": "1"})
	})
	commit(t, sn, "L1", "a")
	prepare(t, sn, "child-active", "L1")
	view(t, sn, "child-view", "L1")
	prepare(t, sn, "b", "L1")
	commit(t, sn, "child-committed", "b")
	for _, child := range []string{"child-active", "child-view", "child-committed"} {
		dir := filepath.Join(root, snapshotsDir)
		before := len(entries(t, dir))
		if err := sn.Remove(ctx, child); err != nil {
			t.Fatalf("Remove(%q): %v", child, err)
		}
		if after := len(entries(t, dir)); after != before-1 {
			t.Errorf("Remove(%q) left %d snapshot directories, want %d", child, after, before-1)
		}
	}
	prepare(t, sn, "gone", "L1")
	dir := dirOf(t, sn, "gone")
	writeFiles(t, dir, map[string]string{"data": "x"})
	if err := sn.Remove(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(dir)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the directory of a removed snapshot is still there: %v", err)
	}
	if err := sn.Remove(ctx, "L1"); err != nil {
		t.Fatal(err)
	}
	if got := entries(t, filepath.Join(root, snapshotsDir)); len(got) != 0 {
		t.Errorf("snapshot directories left: %v", got)
	}
	if got := entries(t, filepath.Join(root, metadataDir)); len(got) != 0 {
		t.Errorf("records left: %v", got)
	}
}

// testFailuresLeaveNoDirectory checks failed operations leave no
// directory behind.
func testFailuresLeaveNoDirectory(t *testing.T, newFn newFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn := open(t, newFn, root)
	prepare(t, sn, "active", "")
	prepare(t, sn, "c", "")
	commit(t, sn, "committed", "c")
	view(t, sn, "view", "committed")
	before := entries(t, filepath.Join(root, snapshotsDir))
	failing := func(*Info) error { return ErrInvalid }
	for _, err := range []error{
		second(sn.Prepare(ctx, "k", "nope")),
		second(sn.Prepare(ctx, "k", "active")),
		second(sn.Prepare(ctx, "active", "")),
		second(sn.View(ctx, "view", "committed")),
		second(sn.Prepare(ctx, "k", "", failing)),
		second(sn.View(ctx, "k", "committed", failing)),
		sn.Commit(ctx, "committed", "active"),
	} {
		if err == nil {
			t.Fatal("an operation that must fail did not")
		}
	}
	if after := entries(t, filepath.Join(root, snapshotsDir)); !slices.Equal(before, after) {
		t.Errorf("failed operations changed %s: %v, then %v", snapshotsDir, before, after)
	}
}

// second returns the error of a two-value call.
func second[T any](_ T, err error) error { return err }

// testConcurrentRecords checks a directory and a record per snapshot
// remain after goroutines race to prepare, commit and remove.
func testConcurrentRecords(t *testing.T, newFn newFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn := open(t, newFn, root)
	prepare(t, sn, "x-base", "")
	commit(t, sn, "base", "x-base")
	var wg sync.WaitGroup
	errc := make(chan error, 20*4)
	for w := range 20 {
		wg.Go(func() {
			for r := range 4 {
				k, n := fmt.Sprintf("k-%d-%d", w, r), fmt.Sprintf("n-%d-%d", w, r)
				if _, err := sn.Prepare(ctx, k, "base"); err != nil {
					errc <- err
					continue
				}
				if err := sn.Commit(ctx, n, k); err != nil {
					errc <- err
					continue
				}
				if _, err := sn.Prepare(ctx, "shared", n); err == nil {
					continue // the one winner keeps n
				}
				if r%2 == 0 {
					if err := sn.Remove(ctx, n); err != nil {
						errc <- err
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
	n := 0
	if err := sn.Walk(ctx, func(Info) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if got := len(entries(t, filepath.Join(root, snapshotsDir))); got != n {
		t.Errorf("%d snapshot directories for %d snapshots", got, n)
	}
	if got := len(entries(t, filepath.Join(root, metadataDir))); got != n {
		t.Errorf("%d records for %d snapshots", got, n)
	}
}

// testCrash leaves what a process killed between the steps of operations
// would, and checks the next open cleans it up and works.
func testCrash(t *testing.T, newFn newFunc) {
	ctx := context.Background()
	root := t.TempDir()
	sn, err := newFn(root)
	if err != nil {
		t.Fatal(err)
	}
	withMount(t, prepare(t, sn, "a", ""), func(dir string) {
		writeFiles(t, dir, map[string]string{"f": "1"})
	})
	commit(t, sn, "L1", "a")
	prepare(t, sn, "active", "L1")
	activeDir := dirOf(t, sn, "active")
	if err := sn.Close(); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{
		// Killed while writing a record: the temporary file.
		filepath.Join(root, metadataDir, tmpPrefix+"7.json-123"),
		// Killed after making a snapshot's directories, before its
		// record (Prepare), or after removing the record (Remove). Its
		// ID is higher than any in use.
		filepath.Join(root, snapshotsDir, "500", "fs", "half-copied"),
		filepath.Join(root, snapshotsDir, "500", "work", "work", "x"),
		// Killed during the check of a new root.
		filepath.Join(root, tmpPrefix+"check-1", "upper", "f"),
		// Killed while reserving IDs.
		filepath.Join(root, tmpPrefix+idsFile+"-9"),
	}
	for _, p := range leftovers {
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(`{"id": 7, "ki`), 0o644))
	}
	// Killed while committing "active" as "L2", after writing the new
	// record to a temporary file, before renaming it: still active.
	b, err := os.ReadFile(filepath.Join(root, metadataDir, "2.json"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(root, metadataDir, tmpPrefix+"2.json-77"),
		[]byte(strings.Replace(string(b), `"active"`, `"committed"`, 1)), 0o644))

	sn = open(t, newFn, root)
	for _, p := range leftovers {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("leftover %s is still there: %v", p, err)
		}
	}
	if got := entries(t, filepath.Join(root, metadataDir)); !slices.Equal(got, []string{"1.json", "2.json"}) {
		t.Errorf("records after reopening: %v", got)
	}
	if i, err := sn.Stat(ctx, "active"); err != nil || i.Kind != KindActive {
		t.Errorf("Stat(active) = %+v, %v", i, err)
	}
	if d := dirOf(t, sn, "active"); d != activeDir {
		t.Errorf("active moved from %s to %s", activeDir, d)
	}
	// IDs are never reused, even those of leftovers.
	prepare(t, sn, "new", "L1")
	id, err := strconv.Atoi(filepath.Base(filepath.Dir(dirOf(t, sn, "new"))))
	if err != nil || id <= 500 {
		t.Errorf("new snapshot ID %d, %v; want more than 500", id, err)
	}
	withMount(t, mountsOf(t, sn, "new"), func(dir string) {
		checkTree(t, "new after the crash", dir, map[string]string{"f": "1"})
	})
	commit(t, sn, "L2", "active")
}

// An ephemeral snapshot whose directories a power loss took (they were
// never synced) is dropped by the next solo open; a durable one that lost
// them is an error.
func TestEphemeralPowerLoss(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	root := t.TempDir()
	sn := open(t, newOverlay, root)
	if _, err := sn.Prepare(ctx, "eph", "", Ephemeral()); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "dur", ""); err != nil {
		t.Fatal(err)
	}
	sn.Close()
	fsOf := func(key string) string {
		id, err := os.Readlink(filepath.Join(root, namesDir, nameFile(key)))
		if err != nil {
			t.Fatal(err)
		}
		return filepath.Join(root, snapshotsDir, id)
	}
	if err := os.RemoveAll(fsOf("eph")); err != nil {
		t.Fatal(err)
	}
	sn = open(t, newOverlay, root)
	if _, err := sn.Stat(ctx, "eph"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("the lost ephemeral snapshot: %v", err)
	}
	if _, err := sn.Stat(ctx, "dur"); err != nil {
		t.Fatal(err)
	}
	if _, err := sn.Prepare(ctx, "eph", ""); err != nil {
		t.Fatalf("its key again: %v", err)
	}
	sn.Close()
	if err := os.RemoveAll(fsOf("dur")); err != nil {
		t.Fatal(err)
	}
	if s, err := NewOverlay(root); err == nil {
		s.Close()
		t.Fatal("a durable snapshot lost its directories and the open did not say so")
	}
}

// An ephemeral snapshot on a parent takes a spare directory, whose record
// is written into the spare and renamed into place, and leaves its record
// in its own directory when removed. A process killed between those steps
// leaves a directory that the next open removes, with its name and the
// parent's child entry, and the key and the parent stay usable.
func TestEphemeralSpareCrash(t *testing.T) {
	requireRoot(t)
	requireOverlay(t)
	ctx := context.Background()
	root := t.TempDir()
	sn := open(t, newOverlay, root)
	prepare(t, sn, "base-work", "")
	commit(t, sn, "base", "base-work")
	// The first ephemeral Prepare has the spares made; the next ones
	// take them.
	prepare(t, sn, "first", "base", Ephemeral())
	must(t, sn.Remove(ctx, "first"))
	idOf := func(key string) string {
		id, err := os.Readlink(filepath.Join(root, namesDir, nameFile(key)))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	var halfMade, halfRemoved string
	for _, key := range []string{"half-made", "half-removed"} {
		deadline := time.Now().Add(10 * time.Second)
		for {
			if ents, _ := filepath.Glob(filepath.Join(root, snapshotsDir, tmpPrefix+"*spare-*", spareRecord)); len(ents) > 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		prepare(t, sn, key, "base", Ephemeral())
		id := idOf(key)
		if _, err := os.Stat(filepath.Join(root, snapshotsDir, id, spareRecord)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s: the spare's record file is still in its directory (err %v): it did not take a spare, or kept it", key, err)
		}
		rec := filepath.Join(root, metadataDir, id+".json")
		switch key {
		case "half-made": // killed before the rename of its record
			must(t, os.Rename(rec, filepath.Join(root, snapshotsDir, id, spareRecord)))
			halfMade = id
		case "half-removed": // killed after the first step of Remove
			must(t, os.Rename(rec, filepath.Join(root, snapshotsDir, id, goneRecord)))
			halfRemoved = id
		}
	}
	sn.Close()
	sn = open(t, newOverlay, root)
	for key, id := range map[string]string{"half-made": halfMade, "half-removed": halfRemoved} {
		if _, err := sn.Stat(ctx, key); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s after reopening: %v, want ErrNotFound", key, err)
		}
		if _, err := os.Lstat(filepath.Join(root, snapshotsDir, id)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: directory %s is still there (err %v)", key, id, err)
		}
		prepare(t, sn, key, "base", Ephemeral())
		must(t, sn.Remove(ctx, key))
	}
	must(t, sn.Remove(ctx, "base"))
}
