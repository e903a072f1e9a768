package orchestrate_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// Objects are applied to a Manager, which validates them and keeps them
// in its store; with a Runtime (containerruntime.New) and Run, its
// controllers would run the pods.
func Example() {
	ctx := context.Background()
	m, err := orchestrate.NewManager(orchestrate.Options{Store: memstore.New()})
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)

	for _, tier := range []string{"front", "back"} {
		pod := &orchestrate.Pod{
			ObjectMeta: orchestrate.ObjectMeta{
				Name:   "web-" + tier,
				Labels: map[string]string{"app": "web", "tier": tier},
			},
			Spec: orchestrate.PodSpec{
				Containers: []orchestrate.Container{{Name: "httpd", Image: "busybox", Command: []string{"httpd", "-f"}}},
			},
		}
		if _, err := m.Apply(ctx, pod); err != nil {
			panic(err)
		}
	}

	// A bad spec is refused, naming the field; nothing is stored.
	bad := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: "bad"}}
	_, err = m.Apply(ctx, bad)
	fmt.Println(errors.Is(err, orchestrate.ErrInvalid), err)

	sel := &orchestrate.LabelSelector{
		MatchLabels: map[string]string{"app": "web"},
		MatchExpressions: []orchestrate.LabelSelectorRequirement{
			{Key: "tier", Operator: orchestrate.LabelSelectorOpIn, Values: []string{"front", "edge"}},
		},
	}
	pods, _ := orchestrate.List[*orchestrate.Pod](ctx, m, "", sel)
	for _, p := range pods {
		fmt.Println(sel, "matches", p.Name, "generation", p.Generation)
	}
	// Output:
	// true apply Pod default/bad: orchestrate: invalid object: spec.containers: a pod needs at least one container
	// app=web,tier in (edge,front) matches web-front generation 1
}

// Get and List read objects with their Go type: no kind to name, no
// type assertion.
func ExampleGet() {
	ctx := context.Background()
	store := memstore.New()
	if _, err := store.Create(ctx, &orchestrate.ConfigMap{
		ObjectMeta: orchestrate.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"mode": "fast"},
	}); err != nil {
		panic(err)
	}
	cm, err := orchestrate.Get[*orchestrate.ConfigMap](ctx, store, "", "settings")
	if err != nil {
		panic(err)
	}
	fmt.Println(cm.Name, cm.Data["mode"], cm.Generation)
	_, err = orchestrate.Get[*orchestrate.Secret](ctx, store, "", "settings")
	fmt.Println(errors.Is(err, orchestrate.ErrNotFound))
	// Output:
	// settings fast 1
	// true
}

// Two Managers on one store as the nodes of a cluster (a store shared
// by processes on several machines would be etcdstore's): one is
// elected leader and schedules a pod to a node, which runs it.
func ExampleManager_IsLeader() {
	store := memstore.New()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var managers []*orchestrate.Manager
	for _, name := range []string{"node-a", "node-b"} {
		m, err := orchestrate.NewManager(orchestrate.Options{
			Store: store, Runtime: fakeruntime.New(nil, "busybox"),
			NodeName: name, NodeLeaseDuration: time.Second, LeaderLeaseDuration: time.Second,
		})
		if err != nil {
			log.Fatal(err)
		}
		defer m.Close(context.Background())
		go m.Run(ctx)
		managers = append(managers, m)
	}
	_, err := managers[0].Apply(ctx, &orchestrate.Pod{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec:       orchestrate.PodSpec{Containers: []orchestrate.Container{{Name: "app", Image: "busybox"}}},
	})
	if err != nil {
		log.Fatal(err)
	}
	for {
		p, err := orchestrate.Get[*orchestrate.Pod](ctx, store, "", "web")
		if err == nil && p.Status.Phase == orchestrate.PodRunning {
			leaders := 0
			for _, m := range managers {
				if m.IsLeader() {
					leaders++
				}
			}
			fmt.Println("running on a node:", p.Spec.NodeName != "", "leaders:", leaders)
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Output: running on a node: true leaders: 1
}
