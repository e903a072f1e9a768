package reconcile_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// A controller that brings the number of replicas of each app to what is
// desired. Keys are app names; adding a key twice before it is
// reconciled reconciles it once.
func Example() {
	desired := map[string]int{"web": 3, "db": 1}
	actual := map[string]int{}

	c := reconcile.New(reconcile.Func[string](func(ctx context.Context, app string) (reconcile.Result, error) {
		if have, want := actual[app], desired[app]; have != want {
			fmt.Printf("%s: %d -> %d replicas\n", app, have, want)
			actual[app] = want
		}
		return reconcile.Result{}, nil
	}), reconcile.Options[string]{Name: "replicas"})

	c.Add("web")
	c.Add("db")
	c.Add("web") // still queued: stored once
	if err := c.RunUntilIdle(context.Background()); err != nil {
		fmt.Println(err)
	}

	desired["db"] = 2
	c.Add("db")
	if err := c.RunUntilIdle(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// web: 0 -> 3 replicas
	// db: 0 -> 1 replicas
	// db: 1 -> 2 replicas
}

// Run runs a controller until its context ends; WaitIdle waits for the
// work queued so far to settle.
func ExampleController_Run() {
	c := reconcile.New(reconcile.Func[int](func(ctx context.Context, id int) (reconcile.Result, error) {
		fmt.Println("reconciled", id)
		return reconcile.Result{}, nil
	}), reconcile.Options[int]{Name: "jobs"})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	c.Add(1)
	c.Add(2)
	if err := c.WaitIdle(ctx); err != nil {
		fmt.Println(err)
	}
	cancel() // in-flight reconciles finish before Run returns
	fmt.Println("Run:", <-done)
	// Output:
	// reconciled 1
	// reconciled 2
	// Run: <nil>
}

// A test moves a FakeClock to see a failing key retried with exponential
// backoff (jitter off for exact times), then succeed.
func ExampleFakeClock() {
	clock := reconcile.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	start := clock.Now()
	failures := 2
	c := reconcile.New(reconcile.Func[string](func(ctx context.Context, key string) (reconcile.Result, error) {
		fmt.Printf("%v: reconcile %s\n", clock.Since(start), key)
		if failures > 0 {
			failures--
			return reconcile.Result{}, errors.New("not yet")
		}
		return reconcile.Result{}, nil
	}), reconcile.Options[string]{
		Clock:     clock,
		Backoff:   reconcile.Backoff{Base: time.Second, Jitter: -1},
		RateLimit: reconcile.RateLimit{QPS: -1},
	})

	ctx := context.Background()
	c.Add("a")
	for range 4 {
		if err := c.RunUntilIdle(ctx); err != nil {
			fmt.Println(err)
		}
		clock.Step(time.Second)
	}
	// Output:
	// 0s: reconcile a
	// 1s: reconcile a
	// 3s: reconcile a
}
