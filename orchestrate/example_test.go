package orchestrate_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/berthlabs/berth/orchestrate"
)

// Objects are applied to a Manager, which validates them and keeps them
// in its store; with a Runtime (orchestrate.NewContainerRuntime) and Run,
// its controllers would run the pods.
func Example() {
	ctx := context.Background()
	m, err := orchestrate.NewManager(orchestrate.Options{})
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
	pods, _ := m.List(ctx, orchestrate.KindPod, sel)
	for _, p := range pods {
		fmt.Println(sel, "matches", p.Meta().Name, "generation", p.Meta().Generation)
	}
	// Output:
	// true apply Pod bad: orchestrate: invalid object: spec.containers: a pod needs at least one container
	// app=web,tier in (edge,front) matches web-front generation 1
}
