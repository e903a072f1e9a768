package reconcile

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkQueueCycle is one goroutine doing Add, Get, Done: the cost of
// the queue without contention.
func BenchmarkQueueCycle(b *testing.B) {
	for _, keys := range []int{1, 10000} {
		b.Run(fmt.Sprintf("keys=%d", keys), func(b *testing.B) {
			q := NewQueue[int](QueueOptions{})
			defer q.ShutDown()
			b.ReportAllocs()
			for i := range b.N {
				q.Add(i % keys)
				k, _ := q.Get()
				q.Done(k)
			}
		})
	}
}

// BenchmarkQueueCycleString is BenchmarkQueueCycle with string keys, as
// controllers use ("namespace/name").
func BenchmarkQueueCycleString(b *testing.B) {
	keys := make([]string, 10000)
	for i := range keys {
		keys[i] = "default/object-" + strconv.Itoa(i)
	}
	q := NewQueue[string](QueueOptions{})
	defer q.ShutDown()
	b.ReportAllocs()
	for i := range b.N {
		q.Add(keys[i%len(keys)])
		k, _ := q.Get()
		q.Done(k)
	}
}

// BenchmarkQueueProducersConsumers: P producers add b.N keys in all, C
// consumers Get and Done until the queue is drained. ns/op is per Add;
// gets/op says how many adds were not deduplicated.
func BenchmarkQueueProducersConsumers(b *testing.B) {
	for _, tc := range []struct{ p, c, keys int }{
		{1, 1, 10000},
		{4, 4, 10000},
		{4, 4, 16}, // hot keys: dedup-heavy
		{16, 16, 10000},
	} {
		b.Run(fmt.Sprintf("p=%d/c=%d/keys=%d", tc.p, tc.c, tc.keys), func(b *testing.B) {
			q := NewQueue[int](QueueOptions{})
			var gets atomic.Int64
			var cg sync.WaitGroup
			for range tc.c {
				cg.Go(func() {
					n := int64(0)
					for {
						k, shutdown := q.Get()
						if shutdown {
							gets.Add(n)
							return
						}
						n++
						q.Done(k)
					}
				})
			}
			b.ResetTimer()
			var pg sync.WaitGroup
			for p := range tc.p {
				pg.Go(func() {
					for i := p; i < b.N; i += tc.p {
						q.Add(i % tc.keys)
					}
				})
			}
			pg.Wait()
			q.ShutDownWithDrain()
			cg.Wait()
			b.ReportMetric(float64(gets.Load())/float64(b.N), "gets/op")
		})
	}
}

// BenchmarkQueueAddAfter measures delayed adds: the heap and the timer
// goroutine, each key due soon after it is added.
func BenchmarkQueueAddAfter(b *testing.B) {
	q := NewQueue[int](QueueOptions{})
	var cg sync.WaitGroup
	cg.Go(func() {
		for {
			k, shutdown := q.Get()
			if shutdown {
				return
			}
			q.Done(k)
		}
	})
	b.ReportAllocs()
	for i := range b.N {
		q.AddAfter(i%10000, time.Duration(i%64)*time.Microsecond)
	}
	b.StopTimer()
	q.ShutDown()
	cg.Wait()
}

// BenchmarkQueueAddRateLimited measures AddRateLimited and Forget of
// distinct keys with the default backoff and rate limit (the delays are
// long: this is the cost of the bookkeeping, not of waiting).
func BenchmarkQueueAddRateLimited(b *testing.B) {
	q := NewQueue[int](QueueOptions{})
	defer q.ShutDown()
	b.ReportAllocs()
	for i := range b.N {
		k := i % 10000
		q.AddRateLimited(k)
		q.Forget(k)
	}
}

// BenchmarkController: reconciles that do nothing, with 4 workers, b.N
// adds of 10k keys by one producer; ns/op is per add until idle,
// reconciles/op the share of adds not deduplicated.
func BenchmarkController(b *testing.B) {
	var n atomic.Int64
	c := New(Func[int](func(context.Context, int) (Result, error) { n.Add(1); return Result{}, nil }), Options[int]{Workers: 4})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Run(ctx) }()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		c.Add(i % 10000)
	}
	if err := c.WaitIdle(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(n.Load())/float64(b.N), "reconciles/op")
}
