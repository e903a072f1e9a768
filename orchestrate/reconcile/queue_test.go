package reconcile

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

// noJitter is a Backoff with client-go's figures and no jitter, for exact
// delays.
var noJitter = Backoff{Base: 5 * time.Millisecond, Max: 1000 * time.Second, Jitter: -1}

// noLimit disables the overall rate limit.
var noLimit = RateLimit{QPS: -1}

func newFakeQueue(t *testing.T, opts QueueOptions) (*Queue[string], *FakeClock) {
	t.Helper()
	clk := NewFakeClock(t0)
	opts.Clock = clk
	q := NewQueue[string](opts)
	t.Cleanup(q.ShutDown)
	return q, clk
}

// get returns the next key, failing if none is ready.
func get(t *testing.T, q *Queue[string]) string {
	t.Helper()
	if n := q.Len(); n == 0 {
		t.Fatal("Get: no key ready")
	}
	k, shutdown := q.Get()
	if shutdown {
		t.Fatal("Get: shut down")
	}
	return k
}

func wantLen(t *testing.T, q *Queue[string], want int) {
	t.Helper()
	if n := q.Len(); n != want {
		t.Fatalf("Len = %d, want %d", n, want)
	}
}

func TestQueueDedupAndFIFO(t *testing.T) {
	q, _ := newFakeQueue(t, QueueOptions{})
	for _, k := range []string{"a", "b", "a", "c", "b", "a"} {
		q.Add(k)
	}
	wantLen(t, q, 3)
	for _, want := range []string{"a", "b", "c"} {
		if k := get(t, q); k != want {
			t.Fatalf("Get = %q, want %q", k, want)
		}
	}
	wantLen(t, q, 0)
}

func TestQueueAddWhileProcessing(t *testing.T) {
	q, _ := newFakeQueue(t, QueueOptions{})
	q.Add("a")
	q.Add("b")
	if k := get(t, q); k != "a" {
		t.Fatalf("Get = %q", k)
	}
	q.Add("a") // dirty: not handed out while processed
	q.Add("a")
	wantLen(t, q, 1) // only b
	if k := get(t, q); k != "b" {
		t.Fatalf("Get = %q, want b", k)
	}
	wantLen(t, q, 0)
	q.Done("a")
	wantLen(t, q, 1)
	if k := get(t, q); k != "a" {
		t.Fatalf("Get = %q, want a again", k)
	}
	q.Done("a")
	q.Done("b")
	q.Done("zzz") // not processing: ignored
	wantLen(t, q, 0)
}

func TestQueueGetBlocksUntilAdd(t *testing.T) {
	q := NewQueue[int](QueueOptions{})
	defer q.ShutDown()
	got := make(chan int)
	go func() {
		k, _ := q.Get()
		got <- k
	}()
	select {
	case k := <-got:
		t.Fatalf("Get returned %d on an empty queue", k)
	case <-time.After(20 * time.Millisecond):
	}
	q.Add(7)
	if k := <-got; k != 7 {
		t.Fatalf("Get = %d", k)
	}
}

// TestQueueNeverConcurrent hammers the queue with producers and workers
// and checks that no key is processed by two workers at once and that
// every key added is processed after its last Add.
func TestQueueNeverConcurrent(t *testing.T) {
	const (
		keys      = 32
		workers   = 16
		producers = 8
		adds      = 4000
	)
	q := NewQueue[int](QueueOptions{})
	var (
		busy      [keys]atomic.Int32
		lastAdd   [keys]atomic.Int64 // sequence number of the last Add
		lastSeen  [keys]atomic.Int64 // the last Add seen at a Get
		seq       atomic.Int64
		overlaps  atomic.Int64
		processed atomic.Int64
	)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				k, shutdown := q.Get()
				if shutdown {
					return
				}
				if busy[k].Add(1) != 1 {
					overlaps.Add(1)
				}
				lastSeen[k].Store(lastAdd[k].Load())
				if rand.IntN(4) == 0 {
					time.Sleep(time.Microsecond)
				}
				processed.Add(1)
				busy[k].Add(-1)
				q.Done(k)
			}
		})
	}
	var pg sync.WaitGroup
	for range producers {
		pg.Go(func() {
			for range adds {
				k := rand.IntN(keys)
				lastAdd[k].Store(seq.Add(1))
				q.Add(k)
				runtime.Gosched()
			}
		})
	}
	pg.Wait()
	q.ShutDownWithDrain()
	wg.Wait()
	if n := overlaps.Load(); n != 0 {
		t.Fatalf("%d times a key was processed by two workers at once", n)
	}
	for k := range keys {
		if a, s := lastAdd[k].Load(), lastSeen[k].Load(); a != s {
			t.Errorf("key %d: last Add #%d not processed (last seen #%d)", k, a, s)
		}
	}
	t.Logf("%d adds, %d processed", producers*adds, processed.Load())
}

func TestQueueShutDown(t *testing.T) {
	q, _ := newFakeQueue(t, QueueOptions{})
	q.Add("a")
	q.Add("b")
	q.AddAfter("later", time.Hour)
	q.ShutDown()
	if !q.ShuttingDown() {
		t.Fatal("ShuttingDown = false")
	}
	q.Add("c") // ignored
	q.AddRateLimited("d")
	for _, want := range []string{"a", "b"} {
		if k, shutdown := q.Get(); shutdown || k != want {
			t.Fatalf("Get = %q, %v; want %q, false", k, shutdown, want)
		}
	}
	if k, shutdown := q.Get(); !shutdown {
		t.Fatalf("Get = %q, want shutdown", k)
	}

	// A blocked Get is woken by ShutDown.
	q2 := NewQueue[int](QueueOptions{})
	done := make(chan bool)
	go func() {
		_, shutdown := q2.Get()
		done <- shutdown
	}()
	time.Sleep(10 * time.Millisecond)
	q2.ShutDown()
	if !<-done {
		t.Fatal("blocked Get not shut down")
	}
}

func TestQueueShutDownWithDrain(t *testing.T) {
	q := NewQueue[string](QueueOptions{})
	q.Add("a")
	q.Add("b")
	k, _ := q.Get()
	drained := make(chan struct{})
	go func() {
		q.ShutDownWithDrain()
		close(drained)
	}()
	select {
	case <-drained:
		t.Fatal("ShutDownWithDrain returned with a key in flight")
	case <-time.After(20 * time.Millisecond):
	}
	q.Done(k)
	select {
	case <-drained:
		t.Fatal("ShutDownWithDrain returned with a key queued")
	case <-time.After(20 * time.Millisecond):
	}
	k, _ = q.Get()
	q.Done(k)
	<-drained
	if _, shutdown := q.Get(); !shutdown {
		t.Fatal("Get after drain: want shutdown")
	}

	// ShutDown stops a drain that would wait forever.
	q2 := NewQueue[string](QueueOptions{})
	q2.Add("x")
	q2.Get()
	drained = make(chan struct{})
	go func() {
		q2.ShutDownWithDrain()
		close(drained)
	}()
	time.Sleep(10 * time.Millisecond)
	q2.ShutDown()
	<-drained
}

func TestQueueAddAfter(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{})
	q.AddAfter("a", 10*time.Second)
	q.AddAfter("now", 0)
	wantLen(t, q, 1)
	if k := get(t, q); k != "now" {
		t.Fatalf("Get = %q", k)
	}
	clk.Step(10*time.Second - 1)
	wantLen(t, q, 0)
	clk.Step(1)
	wantLen(t, q, 1)
	if k := get(t, q); k != "a" {
		t.Fatalf("Get = %q", k)
	}
	clk.Step(time.Hour)
	wantLen(t, q, 0)
}

func TestQueueAddAfterEarlierDeadlineWins(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{})
	q.AddAfter("a", 10*time.Second)
	q.AddAfter("a", 5*time.Second)  // earlier: wins
	q.AddAfter("a", 20*time.Second) // later: ignored
	clk.Step(5*time.Second - 1)
	wantLen(t, q, 0)
	clk.Step(1)
	wantLen(t, q, 1)
	get(t, q)
	clk.Step(time.Hour) // nothing left of the 10s and 20s deadlines
	wantLen(t, q, 0)
}

func TestQueueStaleHeapEntriesCompacted(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{})
	for i := range 10000 {
		q.AddAfter("a", time.Duration(20000-i)*time.Millisecond)
	}
	q.mu.Lock()
	n := len(q.delayed)
	q.mu.Unlock()
	if n > 200 {
		t.Fatalf("%d heap entries for one key", n)
	}
	clk.Step(10001*time.Millisecond - 1)
	wantLen(t, q, 0)
	clk.Step(1)
	wantLen(t, q, 1)
}

// TestQueueDelayGoroutine checks that delayed keys reach a blocked Get
// through the timer goroutine, on the fake and the real clock.
func TestQueueDelayGoroutine(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{})
	got := make(chan string)
	go func() {
		k, _ := q.Get()
		got <- k
	}()
	q.AddAfter("b", 2*time.Second)
	q.AddAfter("a", time.Second)
	for !clk.HasWaiters() {
		time.Sleep(time.Millisecond)
	}
	clk.Step(time.Second)
	if k := <-got; k != "a" {
		t.Fatalf("Get = %q, want a", k)
	}

	rq := NewQueue[string](QueueOptions{})
	defer rq.ShutDown()
	start := time.Now()
	rq.AddAfter("x", 30*time.Millisecond)
	rq.AddAfter("y", 10*time.Millisecond)
	for _, want := range []string{"y", "x"} {
		k, _ := rq.Get()
		if k != want {
			t.Fatalf("Get = %q, want %q", k, want)
		}
		rq.Done(k)
	}
	if el := time.Since(start); el < 30*time.Millisecond {
		t.Fatalf("delayed keys came after %v, before their 30ms", el)
	}
}

// stepUntilReady steps clk in 1ns-precise increments: it checks that the
// single key of q becomes ready exactly d after now.
func wantReadyAfter(t *testing.T, q *Queue[string], clk *FakeClock, d time.Duration) {
	t.Helper()
	if d > 0 {
		clk.Step(d - 1)
		if n := q.Len(); n != 0 {
			t.Fatalf("key ready before its delay %v", d)
		}
		clk.Step(1)
	}
	if n := q.Len(); n != 1 {
		t.Fatalf("key not ready after its delay %v", d)
	}
	k, _ := q.Get()
	q.Done(k)
}

func TestQueueBackoffExponentialAndCapped(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{Backoff: Backoff{Base: 5 * time.Millisecond, Max: 10 * time.Second, Jitter: -1}, RateLimit: noLimit})
	want := 5 * time.Millisecond
	for n := range 16 {
		if got := q.NumRequeues("a"); got != n {
			t.Fatalf("NumRequeues = %d, want %d", got, n)
		}
		q.AddRateLimited("a")
		wantReadyAfter(t, q, clk, want)
		want = min(2*want, 10*time.Second)
	}
	// Per key: b starts at Base.
	q.AddRateLimited("b")
	wantReadyAfter(t, q, clk, 5*time.Millisecond)
	// Forget resets.
	q.Forget("a")
	if n := q.NumRequeues("a"); n != 0 {
		t.Fatalf("NumRequeues after Forget = %d", n)
	}
	q.AddRateLimited("a")
	wantReadyAfter(t, q, clk, 5*time.Millisecond)
}

func TestBackoffJitterBounds(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Minute, Jitter: 0.2}
	for n := range 10 {
		hi := min(time.Second<<n, time.Minute)
		lo := hi - hi/5
		seen := map[time.Duration]bool{}
		for range 200 {
			d := b.Delay(n)
			if d < lo || d > hi {
				t.Fatalf("Delay(%d) = %v, not in [%v, %v]", n, d, lo, hi)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Fatalf("Delay(%d): only %d distinct values in 200", n, len(seen))
		}
	}
	// Defaults: client-go's 5ms and 1000s, 10% jitter.
	var zero Backoff
	if d := zero.Delay(0); d > 5*time.Millisecond || d < 4500*time.Microsecond {
		t.Fatalf("default Delay(0) = %v", d)
	}
	if d := zero.Delay(1000); d > 1000*time.Second || d < 900*time.Second {
		t.Fatalf("default Delay(1000) = %v", d)
	}
	if d := (Backoff{Jitter: -1}).Delay(3); d != 40*time.Millisecond {
		t.Fatalf("Delay(3) without jitter = %v", d)
	}
}

func TestQueueBackoffWithJitterOnQueue(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{Backoff: Backoff{Base: time.Second, Max: time.Hour, Jitter: 0.5}, RateLimit: noLimit})
	for n := range 8 {
		q.AddRateLimited("a")
		hi := time.Second << n
		clk.Step(hi/2 - 1)
		wantLen(t, q, 0)
		clk.Step(hi/2 + 1)
		wantLen(t, q, 1)
		k, _ := q.Get()
		q.Done(k)
	}
}

func TestQueueRateLimit(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{
		Backoff:   Backoff{Base: time.Nanosecond, Max: time.Nanosecond, Jitter: -1},
		RateLimit: RateLimit{QPS: 10, Burst: 2},
	})
	for _, k := range []string{"a", "b", "c", "d"} {
		q.AddRateLimited(k)
	}
	clk.Step(time.Nanosecond) // a, b: burst, after their 1ns backoff
	wantLen(t, q, 2)
	clk.Step(100*time.Millisecond - 2)
	wantLen(t, q, 2)
	clk.Step(1) // c: 100ms for a token at 10 QPS
	wantLen(t, q, 3)
	clk.Step(100 * time.Millisecond) // d
	wantLen(t, q, 4)

	// The bucket refills: after a second 2 tokens again (burst), no more.
	clk.Step(10 * time.Second)
	for _, k := range []string{"w", "x", "y"} {
		q.AddRateLimited(k)
	}
	clk.Step(time.Nanosecond)
	wantLen(t, q, 6)
	clk.Step(100 * time.Millisecond)
	wantLen(t, q, 7)

	// Default: burst of 100, then 10 QPS.
	q2, clk2 := newFakeQueue(t, QueueOptions{Backoff: Backoff{Base: time.Nanosecond, Max: time.Nanosecond, Jitter: -1}})
	for i := range 101 {
		q2.AddRateLimited(string(rune('A' + i)))
	}
	clk2.Step(time.Nanosecond)
	wantLen(t, q2, 100)
	clk2.Step(100 * time.Millisecond)
	wantLen(t, q2, 101)
}

func TestQueueMetrics(t *testing.T) {
	var (
		mu      sync.Mutex
		depths  []int
		adds    int
		waited  []time.Duration
		retries int
	)
	m := Metrics{
		Depth:   func(name string, d int) { mu.Lock(); depths = append(depths, d); mu.Unlock() },
		Adds:    func(string) { mu.Lock(); adds++; mu.Unlock() },
		Latency: func(name string, w time.Duration) { mu.Lock(); waited = append(waited, w); mu.Unlock() },
		Retries: func(string) { mu.Lock(); retries++; mu.Unlock() },
	}
	q, clk := newFakeQueue(t, QueueOptions{Metrics: m, Backoff: noJitter, RateLimit: noLimit, Name: "q"})
	q.Add("a")
	q.Add("a") // dedup: not an add
	clk.Step(3 * time.Second)
	q.Add("b")
	clk.Step(time.Second)
	get(t, q) // a waited 4s
	get(t, q) // b waited 1s
	q.Done("a")
	q.AddRateLimited("b") // b processing: delayed 5ms, then dirty
	clk.Step(5 * time.Millisecond)
	q.Len()
	clk.Step(time.Second)
	q.Done("b") // requeued
	get(t, q)   // b waited 1s since it became due
	mu.Lock()
	defer mu.Unlock()
	if want := []int{1, 2, 1, 0, 1, 0}; !equal(depths, want) {
		t.Errorf("depths = %v, want %v", depths, want)
	}
	if adds != 3 {
		t.Errorf("adds = %d, want 3", adds)
	}
	if want := []time.Duration{4 * time.Second, time.Second, time.Second}; !equal(waited, want) {
		t.Errorf("latencies = %v, want %v", waited, want)
	}
	if retries != 1 {
		t.Errorf("retries = %d, want 1", retries)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestRing(t *testing.T) {
	var r ring[int]
	var model []int
	next := 0
	for i := range 200000 {
		// Grow to a few thousand, then shrink, with wrap-around.
		push := rand.IntN(100) < 60
		if i > 100000 {
			push = rand.IntN(100) < 40
		}
		if push || len(model) == 0 {
			r.push(next)
			model = append(model, next)
			next++
		} else {
			if got := r.pop(); got != model[0] {
				t.Fatalf("pop = %d, want %d", got, model[0])
			}
			model = model[1:]
		}
		if r.n != len(model) {
			t.Fatalf("n = %d, want %d", r.n, len(model))
		}
	}
	for len(model) > 10 {
		if got := r.pop(); got != model[0] {
			t.Fatalf("pop = %d, want %d", got, model[0])
		}
		model = model[1:]
	}
	if len(r.buf) > 2048 {
		t.Errorf("buffer of %d for %d keys: not shrunk", len(r.buf), r.n)
	}
}

func TestFakeClock(t *testing.T) {
	clk := NewFakeClock(t0)
	if clk.HasWaiters() {
		t.Fatal("HasWaiters on a new clock")
	}
	t1 := clk.NewTimer(time.Second)
	a := clk.After(2 * time.Second)
	if !clk.HasWaiters() {
		t.Fatal("no waiters")
	}
	clk.Step(time.Second)
	if got := <-t1.C(); !got.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer fired at %v", got)
	}
	select {
	case <-a:
		t.Fatal("After fired early")
	default:
	}
	if t1.Reset(time.Second) {
		t.Fatal("Reset of a fired timer reports active")
	}
	if !t1.Stop() {
		t.Fatal("Stop of an armed timer reports inactive")
	}
	clk.Set(t0.Add(time.Hour))
	<-a
	select {
	case <-t1.C():
		t.Fatal("stopped timer fired")
	default:
	}
	if clk.HasWaiters() {
		t.Fatal("waiters left")
	}
	if d := clk.Since(t0); d != time.Hour {
		t.Fatalf("Since = %v", d)
	}
	// Reset drops a value fired but not received.
	t2 := clk.NewTimer(time.Second)
	clk.Step(time.Second)
	t2.Reset(time.Second)
	select {
	case <-t2.C():
		t.Fatal("stale value after Reset")
	default:
	}
	if d := clk.NewTimer(0); len(d.C()) != 1 {
		t.Fatal("zero timer not fired")
	}
}

// TestQueueWaitIdlePromotesAndWakes: when waitIdle itself moves a due key
// into the queue, a getter blocked in Get must be woken for it.
func TestQueueWaitIdlePromotesAndWakes(t *testing.T) {
	q, clk := newFakeQueue(t, QueueOptions{})
	q.mu.Lock()
	q.looping = true // no delay goroutine: only waitIdle moves the key
	q.mu.Unlock()
	t.Cleanup(func() { // before ShutDown: no goroutine to wait for
		q.mu.Lock()
		q.looping = false
		q.mu.Unlock()
	})
	got := make(chan string)
	go func() {
		k, _ := q.Get()
		q.Done(k)
		got <- k
	}()
	time.Sleep(5 * time.Millisecond) // let Get block
	q.AddAfter("a", time.Minute)
	clk.Step(time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := q.waitIdle(ctx); err != nil {
		t.Fatalf("waitIdle: %v", err)
	}
	if k := <-got; k != "a" {
		t.Fatalf("Get = %q", k)
	}
}
