package filestore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/filestore"
	"github.com/berthlabs/berth/orchestrate/storetest"
)

func open(t *testing.T, dir string) *filestore.Store {
	t.Helper()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The conformance suite, unchanged.
func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestrate.Store { return open(t, t.TempDir()) })
}

// The conformance suite again, each store reopened from its directory
// before the subtest (empty again, at revision 2): a replayed store is
// a store like any other.
func TestStoreReopened(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestrate.Store {
		dir := t.TempDir()
		first, err := filestore.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		if _, err := first.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "before"}}); err != nil {
			t.Fatal(err)
		}
		if err := first.Delete(ctx, orchestrate.KindConfigMap, "", "before"); err != nil {
			t.Fatal(err)
		}
		first.Close()
		return open(t, dir)
	})
}

// What a store held comes back after Close and Open: objects with
// their metadata, and versions that go on growing (past a deletion).
func TestReopen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	p := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: "web", Labels: map[string]string{"app": "web"}},
		Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{{Name: "c", Image: "busybox"}}}}
	created, err := s.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	st := created.DeepCopy().(*orchestrate.Pod)
	st.Status.Phase = orchestrate.PodRunning
	running, err := s.UpdateStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, orchestrate.KindConfigMap, "", "gone"); err != nil {
		t.Fatal(err)
	}
	rev, _ := s.Revision(ctx)
	if _, err := filestore.Open(dir); err == nil || !strings.Contains(err.Error(), "another store has it open") {
		t.Errorf("a second Open of an open directory: %v, want refused", err)
	}
	s.Close()

	s2 := open(t, dir)
	got, err := orchestrate.Get[*orchestrate.Pod](ctx, s2, "", "web")
	if err != nil {
		t.Fatal(err)
	}
	if got.UID != created.Meta().UID || got.ResourceVersion != running.Meta().ResourceVersion || got.Status.Phase != orchestrate.PodRunning ||
		!got.CreationTime.Equal(created.Meta().CreationTime) || got.Generation != 1 {
		t.Errorf("after reopening: %+v %+v", got.ObjectMeta, got.Status)
	}
	if _, err := s2.Get(ctx, orchestrate.KindConfigMap, "", "gone"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("a deleted object after reopening: %v", err)
	}
	if r, _ := s2.Revision(ctx); r != rev {
		t.Errorf("revision after reopening %d, want %d", r, rev)
	}
	again, err := s2.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "next"}})
	if err != nil {
		t.Fatal(err)
	}
	if again.Meta().ResourceVersion <= rev {
		t.Errorf("a write after reopening got version %d, not after %d", again.Meta().ResourceVersion, rev)
	}
	if _, err := s2.Watch(ctx, "", orchestrate.WatchOptions{Since: 1}); !errors.Is(err, orchestrate.ErrExpired) {
		t.Errorf("a watch from before the reopening: %v, want ErrExpired", err)
	}
}

// A record cut short (a crash while it was written) is dropped; a
// corrupt one before others is an error naming its offset.
func TestTornAndCorruptLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"a", "b"} {
		if _, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	log := filepath.Join(dir, "store.log")
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(log, b[:len(b)-5], 0o600); err != nil {
		t.Fatal(err)
	}
	s2, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	list, _ := s2.List(ctx, orchestrate.KindConfigMap, "", nil)
	if len(list) != 1 || list[0].Meta().Name != "a" {
		t.Errorf("after a torn last record: %v, want a only", list)
	}
	if _, err := s2.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "c"}}); err != nil {
		t.Fatal(err)
	}
	s2.Close()
	s3 := open(t, dir)
	if list, _ := s3.List(ctx, orchestrate.KindConfigMap, "", nil); len(list) != 2 {
		t.Errorf("after a write following the torn record: %d objects, want 2", len(list))
	}
	s3.Close()
	b, _ = os.ReadFile(log)
	b[12] ^= 0xff // inside the first record
	os.WriteFile(log, b, 0o600)
	if _, err := filestore.Open(dir); err == nil || !strings.Contains(err.Error(), "offset 0") {
		t.Errorf("Open of a log with a corrupt first record: %v, want an error naming offset 0", err)
	}
}

// Many updates of few objects: the log is rewritten, and what it holds
// comes back, versions included.
func TestRewrite(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	cm, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "n"}, Data: map[string]string{"v": ""}})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 1500 {
		c := cm.(*orchestrate.ConfigMap)
		c.Data["v"] = fmt.Sprint(i)
		if cm, err = s.Update(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "gone"}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, orchestrate.KindConfigMap, "", "gone"); err != nil {
		t.Fatal(err)
	}
	rev, _ := s.Revision(ctx)
	s.Close()
	fi, err := os.Stat(filepath.Join(dir, "store.log"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() > 500*1000 {
		t.Errorf("log of %d bytes after 1500 updates of one object: not rewritten", fi.Size())
	}
	s2 := open(t, dir)
	got, err := orchestrate.Get[*orchestrate.ConfigMap](ctx, s2, "", "n")
	if err != nil || got.Data["v"] != "1499" || got.ResourceVersion != cm.Meta().ResourceVersion {
		t.Fatalf("after the rewrite: %v %v", err, got)
	}
	if r, _ := s2.Revision(ctx); r != rev {
		t.Errorf("revision after a rewrite and reopen %d, want %d", r, rev)
	}
}
