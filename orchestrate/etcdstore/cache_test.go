package etcdstore_test

import (
	"context"
	"errors"
	"testing"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
)

// Two stores on one prefix: what one remembers goes stale when the
// other writes, and the first's updates still act on what is stored.
func TestStaleCache(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	a := open(t, c, etcdstore.WithPrefix("/stale/"))
	b := open(t, c, etcdstore.WithPrefix("/stale/"))
	p := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: "web", Labels: map[string]string{"v": "1"}},
		Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{{Name: "c", Image: "busybox"}}}}
	created, err := a.Create(ctx, p) // a remembers version 1
	if err != nil {
		t.Fatal(err)
	}
	st, err := orchestrate.Get[*orchestrate.Pod](ctx, b, "", "web")
	if err != nil {
		t.Fatal(err)
	}
	st.Status.Phase = orchestrate.PodRunning
	if _, err := b.UpdateStatus(ctx, st); err != nil {
		t.Fatal(err)
	}
	// An unconditional update through a: the stored status is kept, not
	// the one a remembers.
	upd := created.DeepCopy().(*orchestrate.Pod)
	upd.ResourceVersion = 0
	upd.Labels["v"] = "2"
	got, err := a.Update(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if g := got.(*orchestrate.Pod); g.Status.Phase != orchestrate.PodRunning || g.Labels["v"] != "2" {
		t.Errorf("update from a stale cache: status %q labels %v; want Running kept and v=2", g.Status.Phase, g.Labels)
	}
	// A conditional update at the version a created: a conflict.
	if _, err := a.Update(ctx, created); !errors.Is(err, orchestrate.ErrConflict) {
		t.Errorf("update at a stale version: %v, want ErrConflict", err)
	}
	// b changes the labels back; a writes what it remembers (v=2): no
	// no-op, a write.
	cur, _ := orchestrate.Get[*orchestrate.Pod](ctx, b, "", "web")
	cur.Labels["v"] = "1"
	if _, err := b.Update(ctx, cur); err != nil {
		t.Fatal(err)
	}
	again := got.DeepCopy().(*orchestrate.Pod)
	again.ResourceVersion = 0
	if _, err := a.Update(ctx, again); err != nil {
		t.Fatal(err)
	}
	if final, _ := orchestrate.Get[*orchestrate.Pod](ctx, b, "", "web"); final.Labels["v"] != "2" {
		t.Errorf("an update equal to a's stale state was taken for a no-op: labels %v", final.Labels)
	}
	// Deleted through b, a's update is NotFound; created anew, a's old
	// UID conflicts.
	if err := b.Delete(ctx, orchestrate.KindPod, "", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Update(ctx, again); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("update of a deleted pod through a stale cache: %v, want ErrNotFound", err)
	}
	if _, err := b.Create(ctx, p); err != nil {
		t.Fatal(err)
	}
	old := got.DeepCopy().(*orchestrate.Pod)
	old.ResourceVersion = 0
	if _, err := a.Update(ctx, old); !errors.Is(err, orchestrate.ErrConflict) {
		t.Errorf("update with the UID of a deleted pod: %v, want ErrConflict", err)
	}
}
