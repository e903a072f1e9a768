package fakeruntime_test

import (
	"context"
	"fmt"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// A controller test without containers: the fake runs the pod, the test
// makes its container crash and steps the clock through the crash-loop
// backoff.
func Example() {
	ctx := context.Background()
	clock := reconcile.NewFakeClock(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))
	rt := fakeruntime.New(clock, "busybox")
	m, err := orchestrate.NewManager(orchestrate.Options{Store: memstore.New(), Runtime: rt, Clock: clock})
	if err != nil {
		panic(err)
	}
	defer m.Close(ctx)

	if _, err := m.Apply(ctx, &orchestrate.Pod{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec:       orchestrate.PodSpec{Containers: []orchestrate.Container{{Name: "app", Image: "busybox"}}},
	}); err != nil {
		panic(err)
	}
	if err := m.RunUntilIdle(ctx); err != nil {
		panic(err)
	}
	c := rt.Running("web", "app")
	fmt.Println("running:", c != nil)

	status := func() {
		pod, _ := orchestrate.Get[*orchestrate.Pod](ctx, m, "", "web")
		cs := pod.Status.Containers[0]
		fmt.Println(pod.Status.Phase, cs.State, cs.Reason, "restarts", cs.RestartCount)
	}
	rt.Exit(c.ID, 1) // the first crash restarts at once
	m.RunUntilIdle(ctx)
	status()
	rt.Exit(rt.Running("web", "app").ID, 1) // the next one waits 10 s
	m.RunUntilIdle(ctx)
	status()
	clock.Step(10 * time.Second)
	m.RunUntilIdle(ctx)
	status()
	fmt.Println("started", rt.Started("web", "app"), "times;", rt.Calls("start "))
	// Output:
	// running: true
	// Running Running  restarts 1
	// Running Waiting CrashLoopBackOff restarts 1
	// Running Running  restarts 2
	// started 3 times; [start web/app start web/app start web/app]
}
