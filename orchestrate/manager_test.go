package orchestrate_test

import (
	"context"
	"errors"
	"fmt"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"runtime"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Objects written (and deleted) before the manager first runs: the
// initial watch events come in name order, and deletions leave no event,
// yet RunUntilIdle must know it has seen every write.
func TestRunUntilIdleWithObjectsStoredFirst(t *testing.T) {
	goroutines := runtime.NumGoroutine()
	clock := reconcile.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	m, err := NewManager(Options{Store: memstore.New(), Clock: clock})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	defer m.Close(context.Background())
	if _, err := m.Apply(ctx, newRS("web", 2)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Apply(ctx, newRS("gone", 1)); err != nil {
		t.Fatal(err)
	}
	if err := m.Delete(ctx, KindReplicaSet, "", "gone"); err != nil {
		t.Fatal(err)
	}
	d := newDeployment("site", 1)
	d.Spec.Template.Labels = map[string]string{"app": "site"}
	d.Spec.Selector = &LabelSelector{MatchLabels: map[string]string{"app": "site"}}
	if _, err := m.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	// Many objects, and the last write sorting first.
	for i := range 300 {
		if _, err := m.Apply(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: fmt.Sprintf("z%03d", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Apply(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "a"}}); err != nil {
		t.Fatal(err)
	}
	j := newJob("deadline", 1, 1)
	j.Spec.ActiveDeadline = time.Hour // a delayed requeue: the queue's timer runs
	if _, err := m.Apply(ctx, j); err != nil {
		t.Fatal(err)
	}
	if err := m.RunUntilIdle(ctx); err != nil {
		t.Fatalf("RunUntilIdle: %v", err)
	}
	pods, err := m.List(ctx, KindPod, "", &LabelSelector{MatchLabels: map[string]string{"app": "web"}})
	if err != nil || len(pods) != 2 {
		t.Errorf("pods of web: %d, %v", len(pods), err)
	}
	pods, err = m.List(ctx, KindPod, "", &LabelSelector{MatchLabels: map[string]string{"app": "site"}})
	if err != nil || len(pods) != 1 {
		t.Errorf("pods of site: %d, %v", len(pods), err)
	}
	// Close stops every goroutine the manager started.
	m.Close(context.Background())
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Errorf("%d goroutines after Close, %d before", n, goroutines)
	}
}

// A pod given (through an Update) a controller that was deleted
// meanwhile is collected.
func TestGCOnAdoptionByDeletedOwner(t *testing.T) {
	h := newWLHarness(t)
	owner := h.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "owner"}})
	h.apply(&Pod{ObjectMeta: ObjectMeta{Name: "p"}, Spec: PodSpec{Containers: []Container{{Name: "c", Image: "x"}}}})
	h.settle()
	if err := h.m.Delete(h.ctx, KindConfigMap, "", "owner"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	obj, err := Get[*Pod](h.ctx, h.m, "", "p")
	if err != nil {
		t.Fatal(err)
	}
	p := obj
	p.OwnerReferences = []OwnerReference{ControllerRef(owner)}
	if _, err := h.m.Store().Update(h.ctx, p); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if _, err := Get[*Pod](h.ctx, h.m, "", "p"); !errors.Is(err, ErrNotFound) {
		t.Errorf("pod adopted by a deleted owner: %v, want it collected", err)
	}
}
