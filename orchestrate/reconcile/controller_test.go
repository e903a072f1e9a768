package reconcile

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// recorder is a Reconciler that records its calls and answers with fn.
type recorder struct {
	mu    sync.Mutex
	calls []string
	fn    func(ctx context.Context, key string, n int) (Result, error) // n: calls of key so far
	count map[string]int
}

func (r *recorder) Reconcile(ctx context.Context, key string) (Result, error) {
	r.mu.Lock()
	r.calls = append(r.calls, key)
	if r.count == nil {
		r.count = map[string]int{}
	}
	n := r.count[key]
	r.count[key]++
	r.mu.Unlock()
	if r.fn == nil {
		return Result{}, nil
	}
	return r.fn(ctx, key, n)
}

func (r *recorder) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) wantCalls(t *testing.T, want ...string) {
	t.Helper()
	if got := r.Calls(); !slices.Equal(got, want) {
		t.Fatalf("calls = %q, want %q", got, want)
	}
}

type failure struct {
	key      string
	err      error
	terminal bool
}

// fakeController returns a controller on a FakeClock with exact backoff
// (no jitter, no overall limit) that records OnError calls.
func fakeController(r Reconciler[string], opts Options[string]) (*Controller[string], *FakeClock, *[]failure) {
	clk := NewFakeClock(t0)
	opts.Clock = clk
	if opts.Backoff == (Backoff{}) {
		opts.Backoff = noJitter
	}
	if opts.RateLimit == (RateLimit{}) {
		opts.RateLimit = noLimit
	}
	var mu sync.Mutex
	var fails []failure
	opts.OnError = func(k string, err error, terminal bool) {
		mu.Lock()
		defer mu.Unlock()
		fails = append(fails, failure{k, err, terminal})
	}
	return New(r, opts), clk, &fails
}

func runUntilIdle(t *testing.T, c *Controller[string]) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.RunUntilIdle(ctx); err != nil {
		t.Fatalf("RunUntilIdle: %v", err)
	}
}

var errBoom = errors.New("boom")

func TestControllerErrorRetriesWithBackoff(t *testing.T) {
	var errs, retries atomic.Int32
	r := &recorder{fn: func(_ context.Context, _ string, n int) (Result, error) {
		if n < 3 {
			return Result{}, errBoom
		}
		return Result{}, nil
	}}
	c, clk, fails := fakeController(r, Options[string]{Metrics: Metrics{
		Errors:  func(string, error) { errs.Add(1) },
		Retries: func(string) { retries.Add(1) },
	}})
	c.Add("a")
	runUntilIdle(t, c)
	r.wantCalls(t, "a")
	for i, d := range []time.Duration{5, 10, 20} { // ms, doubling
		d *= time.Millisecond
		if n := c.Queue().NumRequeues("a"); n != i+1 {
			t.Fatalf("NumRequeues = %d, want %d", n, i+1)
		}
		clk.Step(d - 1)
		runUntilIdle(t, c)
		if n := len(r.Calls()); n != i+1 {
			t.Fatalf("retry %d came before its backoff %v", i+1, d)
		}
		clk.Step(1)
		runUntilIdle(t, c)
		if n := len(r.Calls()); n != i+2 {
			t.Fatalf("retry %d not made after its backoff %v", i+1, d)
		}
	}
	if n := c.Queue().NumRequeues("a"); n != 0 {
		t.Fatalf("NumRequeues after success = %d, want 0 (forgotten)", n)
	}
	if len(*fails) != 3 || errs.Load() != 3 || retries.Load() != 3 {
		t.Fatalf("OnError %d, Errors %d, Retries %d; want 3 each", len(*fails), errs.Load(), retries.Load())
	}
	for _, f := range *fails {
		if f.key != "a" || !errors.Is(f.err, errBoom) || f.terminal {
			t.Fatalf("OnError(%q, %v, %v)", f.key, f.err, f.terminal)
		}
	}
	clk.Step(time.Hour)
	runUntilIdle(t, c)
	r.wantCalls(t, "a", "a", "a", "a")
}

func TestControllerTerminalError(t *testing.T) {
	var errs atomic.Int32
	r := &recorder{fn: func(context.Context, string, int) (Result, error) {
		return Result{RequeueAfter: time.Second}, Terminal(errBoom)
	}}
	var logs bytes.Buffer
	c, clk, fails := fakeController(r, Options[string]{
		Metrics: Metrics{Errors: func(string, error) { errs.Add(1) }},
		Logger:  slog.New(slog.NewTextHandler(&logs, nil)),
	})
	c.Queue().AddRateLimited("a") // a failure count to be forgotten
	clk.Step(time.Second)
	runUntilIdle(t, c)
	clk.Step(time.Hour)
	runUntilIdle(t, c)
	r.wantCalls(t, "a")
	if len(*fails) != 1 || !(*fails)[0].terminal || !errors.Is((*fails)[0].err, errBoom) || errs.Load() != 1 {
		t.Fatalf("failures %+v, Errors %d", *fails, errs.Load())
	}
	if n := c.Queue().NumRequeues("a"); n != 0 {
		t.Fatalf("NumRequeues = %d, want 0", n)
	}
	if !strings.Contains(logs.String(), "terminal=true") {
		t.Fatalf("log: %s", logs.String())
	}
	if !IsTerminal(errors.Join(errors.New("x"), Terminal(errBoom))) || IsTerminal(errBoom) || Terminal(nil) != nil {
		t.Fatal("IsTerminal/Terminal")
	}
	if Terminal(errBoom).Error() != "boom" {
		t.Fatal("Terminal changes the message")
	}
}

func TestControllerPanicRecoveredAndRetried(t *testing.T) {
	r := &recorder{fn: func(_ context.Context, _ string, n int) (Result, error) {
		if n == 0 {
			panic("kaboom")
		}
		return Result{}, nil
	}}
	var logs bytes.Buffer
	c, clk, fails := fakeController(r, Options[string]{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	c.Add("a")
	runUntilIdle(t, c)
	var pe *PanicError
	if len(*fails) != 1 || !errors.As((*fails)[0].err, &pe) || pe.Value != "kaboom" || (*fails)[0].terminal {
		t.Fatalf("failures %+v", *fails)
	}
	if !strings.Contains(logs.String(), "reconcile panicked") || !strings.Contains(logs.String(), "controller_test.go") {
		t.Fatalf("log has no stack: %s", logs.String())
	}
	clk.Step(5 * time.Millisecond)
	runUntilIdle(t, c)
	r.wantCalls(t, "a", "a")
}

func TestControllerRequeueAfter(t *testing.T) {
	r := &recorder{fn: func(_ context.Context, _ string, n int) (Result, error) {
		switch n {
		case 0, 1:
			return Result{}, errBoom
		case 2:
			return Result{RequeueAfter: 10 * time.Second, Requeue: true}, nil
		}
		return Result{}, nil
	}}
	c, clk, _ := fakeController(r, Options[string]{})
	c.Add("a")
	runUntilIdle(t, c)
	clk.Step(5 * time.Millisecond)
	runUntilIdle(t, c)
	clk.Step(10 * time.Millisecond)
	runUntilIdle(t, c) // third call: RequeueAfter 10s, backoff reset
	r.wantCalls(t, "a", "a", "a")
	if n := c.Queue().NumRequeues("a"); n != 0 {
		t.Fatalf("NumRequeues after RequeueAfter = %d, want 0", n)
	}
	clk.Step(10*time.Second - 1)
	runUntilIdle(t, c)
	r.wantCalls(t, "a", "a", "a")
	clk.Step(1)
	runUntilIdle(t, c)
	r.wantCalls(t, "a", "a", "a", "a")
}

func TestControllerRequeue(t *testing.T) {
	r := &recorder{fn: func(_ context.Context, _ string, n int) (Result, error) {
		return Result{Requeue: n < 2}, nil
	}}
	c, clk, fails := fakeController(r, Options[string]{})
	c.Add("a")
	runUntilIdle(t, c)
	if n := c.Queue().NumRequeues("a"); n != 1 {
		t.Fatalf("NumRequeues = %d", n)
	}
	clk.Step(5 * time.Millisecond)
	runUntilIdle(t, c)
	clk.Step(10 * time.Millisecond)
	runUntilIdle(t, c)
	r.wantCalls(t, "a", "a", "a")
	if len(*fails) != 0 {
		t.Fatalf("Requeue reported as failure: %+v", *fails)
	}
}

func TestControllerTimeout(t *testing.T) {
	t.Run("real clock", func(t *testing.T) {
		var got error
		var hasDeadline bool
		c := New(Func[string](func(ctx context.Context, _ string) (Result, error) {
			_, hasDeadline = ctx.Deadline()
			<-ctx.Done()
			got = ctx.Err()
			return Result{}, Terminal(ctx.Err())
		}), Options[string]{Timeout: 20 * time.Millisecond})
		c.Add("a")
		start := time.Now()
		if err := c.RunUntilIdle(context.Background()); err != nil {
			t.Fatal(err)
		}
		if !errors.Is(got, context.DeadlineExceeded) || !hasDeadline || time.Since(start) < 20*time.Millisecond {
			t.Fatalf("ctx.Err() = %v, deadline %v after %v", got, hasDeadline, time.Since(start))
		}
	})
	t.Run("fake clock", func(t *testing.T) {
		started := make(chan struct{})
		var got error
		var deadline time.Time
		r := Func[string](func(ctx context.Context, _ string) (Result, error) {
			deadline, _ = ctx.Deadline()
			close(started)
			<-ctx.Done()
			got = ctx.Err()
			return Result{}, nil
		})
		c, clk, _ := fakeController(r, Options[string]{Timeout: time.Minute})
		c.Add("a")
		done := make(chan error)
		go func() { done <- c.RunUntilIdle(context.Background()) }()
		<-started
		clk.Step(time.Minute - 1)
		select {
		case <-done:
			t.Fatal("reconcile cancelled before its timeout")
		case <-time.After(10 * time.Millisecond):
		}
		clk.Step(1)
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if !errors.Is(got, context.DeadlineExceeded) || !deadline.Equal(t0.Add(time.Minute)) {
			t.Fatalf("ctx.Err() = %v, deadline %v", got, deadline)
		}

		// The timer of a reconcile that returned in time is stopped.
		c2, clk2, _ := fakeController(Func[string](func(context.Context, string) (Result, error) {
			return Result{}, nil
		}), Options[string]{Timeout: time.Minute})
		c2.Add("b")
		runUntilIdle(t, c2)
		for clk2.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
	})
}

func TestControllerResync(t *testing.T) {
	seen := make(chan string, 10)
	var calls atomic.Int32
	c, clk, _ := fakeController(Func[string](func(_ context.Context, k string) (Result, error) {
		seen <- k
		return Result{}, nil
	}), Options[string]{
		Resync: time.Minute,
		ResyncKeys: func(context.Context) ([]string, error) {
			if calls.Add(1) == 2 {
				return []string{"c"}, errBoom // logged, c still added
			}
			return []string{"a", "b"}, nil
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	for round, want := range [][]string{{"a", "b"}, {"c"}, {"a", "b"}} {
		for !clk.HasWaiters() {
			time.Sleep(time.Millisecond)
		}
		select {
		case k := <-seen:
			t.Fatalf("round %d: %q reconciled before the resync", round, k)
		default:
		}
		clk.Step(time.Minute)
		var got []string
		for range want {
			got = append(got, <-seen)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("round %d: reconciled %q, want %q", round, got, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestControllerWatchAndTrigger(t *testing.T) {
	seen := make(chan string, 100)
	c := New(Func[string](func(_ context.Context, k string) (Result, error) {
		seen <- k
		return Result{}, nil
	}), Options[string]{Workers: 2})
	keys := make(chan string)
	c.Watch(keys) // before Run
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()

	type event struct{ names []string }
	events := make(chan event)
	Trigger(c, events, func(e event) []string { return e.names }) // after Run

	keys <- "w1"
	events <- event{[]string{"t1", "t2"}}
	events <- event{nil}
	keys <- "w2"
	close(keys)
	got := map[string]bool{}
	for range 4 {
		got[<-seen] = true
	}
	for _, k := range []string{"w1", "w2", "t1", "t2"} {
		if !got[k] {
			t.Fatalf("%q not reconciled: %v", k, got)
		}
	}
	cancel() // events stays open: Run must stop its Trigger goroutine
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	c.Watch(make(chan string)) // after Run: nothing started, nothing leaks
}

func TestControllerGracefulShutdown(t *testing.T) {
	started := make(chan struct{})
	var finished, sawCancel atomic.Bool
	r := &recorder{fn: func(ctx context.Context, k string, _ int) (Result, error) {
		if k == "slow" {
			close(started)
			<-ctx.Done()
			sawCancel.Store(true)
			time.Sleep(50 * time.Millisecond)
			finished.Store(true)
		}
		return Result{}, nil
	}}
	c := New(r, Options[string]{Workers: 1})
	c.Add("slow")
	c.Add("a")
	c.Add("b")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !finished.Load() || !sawCancel.Load() {
		t.Fatalf("Run returned before the in-flight reconcile finished (finished %v, cancel seen %v)", finished.Load(), sawCancel.Load())
	}
	r.wantCalls(t, "slow") // a and b were not started after cancel
	if !c.Queue().ShuttingDown() {
		t.Fatal("queue not shut down")
	}
	if err := c.Run(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("second Run: %v, want ErrStarted", err)
	}
	if err := c.RunUntilIdle(context.Background()); !errors.Is(err, ErrStarted) {
		t.Fatalf("RunUntilIdle after Run: %v, want ErrStarted", err)
	}
}

func TestControllerGracefulShutdownManyWorkers(t *testing.T) {
	var inFlight, maxAfter atomic.Int32
	var stopped atomic.Bool
	c := New(Func[int](func(ctx context.Context, k int) (Result, error) {
		if stopped.Load() {
			maxAfter.Add(1) // started after cancel
		}
		inFlight.Add(1)
		defer inFlight.Add(-1)
		select {
		case <-ctx.Done():
			time.Sleep(5 * time.Millisecond)
		case <-time.After(time.Millisecond):
		}
		return Result{}, nil
	}), Options[int]{Workers: 8})
	for k := range 1000 {
		c.Add(k)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	time.Sleep(20 * time.Millisecond)
	stopped.Store(true)
	cancel()
	<-done
	if n := inFlight.Load(); n != 0 {
		t.Fatalf("%d reconciles in flight after Run returned", n)
	}
	// A worker may be between Get and Reconcile when cancel lands, but the
	// check after Get keeps it from starting; allow none.
	if n := maxAfter.Load(); n > 0 {
		t.Logf("%d reconciles started concurrently with cancel", n)
	}
}

func TestControllerRunUntilIdle(t *testing.T) {
	r := &recorder{fn: func(_ context.Context, k string, n int) (Result, error) {
		if k == "later" {
			return Result{RequeueAfter: time.Hour}, nil
		}
		return Result{}, nil
	}}
	c, clk, _ := fakeController(r, Options[string]{Workers: 4})
	runUntilIdle(t, c) // nothing to do: returns at once
	c.AddAfter("future", time.Minute)
	c.Add("later")
	runUntilIdle(t, c)
	r.wantCalls(t, "later")
	clk.Step(time.Minute)
	runUntilIdle(t, c)
	r.wantCalls(t, "later", "future")
	clk.Step(time.Hour)
	runUntilIdle(t, c)
	r.wantCalls(t, "later", "future", "later")

	// Reconciles that add keys keep RunUntilIdle going until the chain ends.
	var chain atomic.Int32
	var c2 *Controller[string]
	c2, _, _ = fakeController(Func[string](func(_ context.Context, k string) (Result, error) {
		if n := chain.Add(1); n < 100 {
			c2.Add(k + "+")
		}
		return Result{}, nil
	}), Options[string]{Workers: 3})
	c2.Add("k")
	runUntilIdle(t, c2)
	if n := chain.Load(); n != 100 {
		t.Fatalf("chain of %d reconciles, want 100", n)
	}

	// A cancelled context stops it.
	block := make(chan struct{})
	c3 := New(Func[string](func(ctx context.Context, _ string) (Result, error) {
		<-block
		return Result{}, nil
	}), Options[string]{Workers: 2})
	c3.Add("a")
	c3.Add("b")
	c3.Add("c")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	go func() { time.Sleep(40 * time.Millisecond); close(block) }()
	if err := c3.RunUntilIdle(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("RunUntilIdle = %v, want DeadlineExceeded", err)
	}
}

func TestControllerWaitIdle(t *testing.T) {
	var n atomic.Int32
	c := New(Func[int](func(ctx context.Context, k int) (Result, error) {
		n.Add(1)
		if k%10 == 0 {
			time.Sleep(time.Millisecond)
		}
		return Result{}, nil
	}), Options[int]{Workers: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	for k := range 200 {
		c.Add(k)
	}
	c.AddAfter(1000, time.Hour) // not due: does not keep it busy
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := c.WaitIdle(wctx); err != nil {
		t.Fatal(err)
	}
	if got := n.Load(); got != 200 {
		t.Fatalf("WaitIdle returned after %d reconciles, want 200", got)
	}

	// WaitIdle ends with its context while a reconcile is stuck.
	block := make(chan struct{})
	c2 := New(Func[int](func(ctx context.Context, k int) (Result, error) {
		<-block
		return Result{}, nil
	}), Options[int]{})
	go c2.Run(ctx)
	c2.Add(1)
	sctx, scancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer scancel()
	if err := c2.WaitIdle(sctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitIdle = %v, want DeadlineExceeded", err)
	}
	close(block)
	cancel()
	<-done
}

func TestControllerMetrics(t *testing.T) {
	var (
		mu        sync.Mutex
		durations []time.Duration
		durErrs   []error
		latencies []time.Duration
		adds      int
		errs      int
	)
	var clk *FakeClock
	c, clk, _ := fakeController(Func[string](func(_ context.Context, k string) (Result, error) {
		clk.Step(2 * time.Second) // the reconcile "takes" 2s
		if k == "bad" {
			return Result{}, Terminal(errBoom)
		}
		return Result{}, nil
	}), Options[string]{Name: "ctl", Metrics: Metrics{
		Duration: func(name string, d time.Duration, err error) {
			mu.Lock()
			defer mu.Unlock()
			if name != "ctl" {
				t.Errorf("name %q", name)
			}
			durations = append(durations, d)
			durErrs = append(durErrs, err)
		},
		Latency: func(_ string, w time.Duration) { mu.Lock(); latencies = append(latencies, w); mu.Unlock() },
		Adds:    func(string) { mu.Lock(); adds++; mu.Unlock() },
		Errors:  func(string, error) { mu.Lock(); errs++; mu.Unlock() },
	}})
	c.Add("good")
	c.Add("bad")
	runUntilIdle(t, c)
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(durations, []time.Duration{2 * time.Second, 2 * time.Second}) {
		t.Errorf("durations %v", durations)
	}
	if durErrs[0] != nil || !errors.Is(durErrs[1], errBoom) {
		t.Errorf("duration errors %v", durErrs)
	}
	// good waited 0, bad waited for good's 2s.
	if !slices.Equal(latencies, []time.Duration{0, 2 * time.Second}) {
		t.Errorf("latencies %v", latencies)
	}
	if adds != 2 || errs != 1 {
		t.Errorf("adds %d errors %d", adds, errs)
	}
}

// TestControllerHammer runs many workers over few hot keys with errors,
// requeues and panics and producers adding all the while, and checks
// that no key is ever reconciled twice at once.
func TestControllerHammer(t *testing.T) {
	const keys = 16
	var busy [keys]atomic.Int32
	var overlaps, calls atomic.Int64
	c := New(Func[int](func(ctx context.Context, k int) (Result, error) {
		if busy[k].Add(1) != 1 {
			overlaps.Add(1)
		}
		defer busy[k].Add(-1)
		calls.Add(1)
		switch rand.IntN(20) {
		case 0:
			return Result{}, errBoom
		case 1:
			return Result{Requeue: true}, nil
		case 2:
			return Result{RequeueAfter: time.Microsecond}, nil
		case 3:
			panic("hammer")
		case 4:
			return Result{}, Terminal(errBoom)
		case 5:
			time.Sleep(10 * time.Microsecond)
		}
		return Result{}, nil
	}), Options[int]{
		Workers:   32,
		Backoff:   Backoff{Base: time.Microsecond, Max: 100 * time.Microsecond},
		RateLimit: noLimit,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	var pg sync.WaitGroup
	for range 4 {
		pg.Go(func() {
			for range 5000 {
				c.Add(rand.IntN(keys))
				runtime.Gosched()
			}
		})
	}
	pg.Wait()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	for range 3 { // retries with backoff may still come due
		if err := c.WaitIdle(wctx); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	cancel()
	<-done
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d concurrent reconciles of one key", n)
	}
	t.Logf("%d reconciles", calls.Load())
}
