package orchestrate_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// Two nodes running real containers: a Deployment's two pods, one per
// node; the node that does not lead is cut off from the store: its pod
// is replaced on the other (a real container started there) while its
// own container keeps running, and once it is back it stops and removes
// that container, and the pod's object.
func TestE2EClusterNodeLost(t *testing.T) {
	store := memstore.New()
	cs1, cs2 := &cuttable{Store: store}, &cuttable{Store: store}
	cluster := orchestrate.Options{NodeLeaseDuration: time.Second, NodeLostGrace: time.Second, LeaderLeaseDuration: time.Second}
	o1 := cluster
	o1.Store, o1.NodeName = cs1, "n1"
	e := newPodE2E(t, o1)
	o2 := cluster
	o2.Store, o2.NodeName, o2.Runtime, o2.StateDir = cs2, "n2", containerruntime.New(e.crt), t.TempDir()
	m2, err := orchestrate.NewManager(o2)
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- m2.Run(ctx) }()
	closeM2 := func() {
		cs2.Heal()
		stop()
		<-done
		if err := m2.Close(context.Background()); err != nil {
			t.Errorf("close n2: %v", err)
		}
	}
	defer func() {
		if stop != nil {
			closeM2()
		}
	}()
	stores := map[string]*cuttable{"n1": cs1, "n2": cs2}
	e.waitFor("a leader and two ready nodes", func() bool {
		ns, _ := orchestrate.List[*orchestrate.Node](e.ctx, store, "", nil)
		return len(ns) == 2 && ns[0].Ready().Status == orchestrate.ConditionTrue && ns[1].Ready().Status == orchestrate.ConditionTrue &&
			(e.m.IsLeader() || m2.IsLeader())
	})
	d := webDeployment(2)
	d.Name = "oe-web"
	d.Spec.Template.Spec.Containers[0].Image = "busybox"
	d.Spec.Template.Spec.Containers[0].Command = []string{"sleep", "1000"}
	if _, err := e.m.Apply(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	running := func() map[string]string { // pod → node, of the Running ones
		out := map[string]string{}
		for _, p := range livePods(t, store) {
			if p.Status.Phase == orchestrate.PodRunning {
				out[p.Name] = p.Spec.NodeName
			}
		}
		return out
	}
	containersOf := func(pod string) int {
		n := 0
		for _, c := range e.crt.List() {
			if strings.HasPrefix(c.ID(), pod) {
				n++
			}
		}
		return n
	}
	e.waitFor("one Running pod per node", func() bool {
		r := running()
		per := map[string]int{}
		for _, n := range r {
			per[n]++
		}
		return per["n1"] == 1 && per["n2"] == 1
	})
	lost := "n1"
	if e.m.IsLeader() {
		lost = "n2"
	}
	var stale string
	for p, n := range running() {
		if n == lost {
			stale = p
		}
	}
	stores[lost].Cut()
	e.waitFor("the lost node's pod replaced by a Running one on the other", func() bool {
		r := running()
		if len(r) != 2 {
			return false
		}
		for _, n := range r {
			if n == lost {
				return false
			}
		}
		return true
	})
	if containersOf(stale) != 1 {
		t.Errorf("the cut-off node's pod %s has %d containers, want its 1 kept while it cannot reach the store", stale, containersOf(stale))
	}
	stores[lost].Heal()
	e.waitFor("the returned node to remove its stale container", func() bool { return containersOf(stale) == 0 })
	// A ReplicaSet's lost pod, torn down, is removed from the store.
	e.waitFor("the stale pod's object removed", func() bool {
		_, err := orchestrate.Get[*orchestrate.Pod](e.ctx, store, "", stale)
		return errors.Is(err, orchestrate.ErrNotFound)
	})
	closeM2()
	stop = nil
	e.closeAndCheck()
}
