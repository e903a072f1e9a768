package orchestrate

import (
	"context"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Objects written (and deleted) before the manager first runs: the
// initial watch events come in name order, and deletions leave no event,
// yet RunUntilIdle must know it has seen every write.
func TestRunUntilIdleWithObjectsStoredFirst(t *testing.T) {
	clock := reconcile.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	m, err := NewManager(Options{Clock: clock})
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
	if err := m.Delete(ctx, KindReplicaSet, "gone"); err != nil {
		t.Fatal(err)
	}
	d := newDeployment("site", 1)
	d.Spec.Template.Labels = map[string]string{"app": "site"}
	d.Spec.Selector = &LabelSelector{MatchLabels: map[string]string{"app": "site"}}
	if _, err := m.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := m.RunUntilIdle(ctx); err != nil {
		t.Fatalf("RunUntilIdle: %v", err)
	}
	pods, err := m.List(ctx, KindPod, &LabelSelector{MatchLabels: map[string]string{"app": "web"}})
	if err != nil || len(pods) != 2 {
		t.Errorf("pods of web: %d, %v", len(pods), err)
	}
}
