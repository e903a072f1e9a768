package main

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkCycle: one goroutine doing Add, Get, Done over 10k keys.
func BenchmarkCycle(b *testing.B) {
	ints, strs := intKeys(10000), stringKeys(10000)
	for _, im := range impls {
		b.Run(im.name+"/int", func(b *testing.B) { benchCycle(b, im.newInt(), ints) })
		b.Run(im.name+"/string", func(b *testing.B) { benchCycle(b, im.newString(), strs) })
	}
}

func benchCycle[K comparable](b *testing.B, q queue[K], keys []K) {
	defer q.ShutDown()
	b.ReportAllocs()
	for i := range b.N {
		q.Add(keys[i%len(keys)])
		k, _ := q.Get()
		q.Done(k)
	}
}

// BenchmarkProducersConsumers: P producers add b.N keys in all while C
// consumers Get and Done; the clock stops when the queue is drained.
// ns/op is per Add; gets/op is the share of adds not deduplicated.
func BenchmarkProducersConsumers(b *testing.B) {
	for _, tc := range []struct{ p, c, keys int }{
		{1, 1, 10000},
		{4, 4, 10000},
		{4, 4, 16},
	} {
		for _, im := range impls {
			b.Run(fmt.Sprintf("%s/p=%d/c=%d/keys=%d", im.name, tc.p, tc.c, tc.keys), func(b *testing.B) {
				q := im.newInt()
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
}

// BenchmarkAddAfter: one goroutine doing AddAfter with 0-63µs delays over
// 10k keys while one consumer takes them.
func BenchmarkAddAfter(b *testing.B) {
	for _, im := range impls {
		b.Run(im.name, func(b *testing.B) {
			q := im.newInt()
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
		})
	}
}
