package main

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// result is what one run of a load measured.
type result struct {
	adds    int64           // Add (or AddAfter) calls in the window
	gets    int64           // keys handed out by Get in the window
	elapsed time.Duration   // length of the window
	lat     []time.Duration // sampled per-key latencies; nil if not measured
}

func (r result) addsPerSec() float64 { return float64(r.adds) / r.elapsed.Seconds() }
func (r result) getsPerSec() float64 { return float64(r.gets) / r.elapsed.Seconds() }

// load is a synthetic workload run against one implementation for about d.
type load struct {
	name string
	desc string
	run  func(im impl, d time.Duration) result
}

var loads = []load{
	{"cycle-int", "1 goroutine: Add, Get, Done; 10k int keys", func(im impl, d time.Duration) result {
		return cycle(im.newInt(), intKeys(10000), d)
	}},
	{"cycle-string", "1 goroutine: Add, Get, Done; 10k string keys", func(im impl, d time.Duration) result {
		return cycle(im.newString(), stringKeys(10000), d)
	}},
	{"1p1c-10k", "batches of 10k distinct keys, each added once: 1 producer, 1 consumer; a batch ends when all are Done", func(im impl, d time.Duration) result {
		return batches(im.newInt(), spec{producers: 1, consumers: 1, keys: 10000}, d)
	}},
	{"4p4c-10k", "batches of 10k distinct keys, each added once: 4 producers, 4 consumers", func(im impl, d time.Duration) result {
		return batches(im.newInt(), spec{producers: 4, consumers: 4, keys: 10000}, d)
	}},
	{"4p4c-hot", "batches of 10k adds of 16 hot keys (dedup-heavy), 4 producers, 4 consumers; a batch ends when every key's last add has been processed", func(im impl, d time.Duration) result {
		return hotBatches(im.newInt(), spec{producers: 4, consumers: 4, keys: 16}, 10000, d)
	}},
	{"4p4c-paced", "4 producers adding every ~50µs (sleeps: the rate is the runtime's timers'), 4 consumers, 10k keys; latency at light load", func(im impl, d time.Duration) result {
		return flatOut(im.newInt(), spec{producers: 4, consumers: 4, keys: 10000, pace: 50 * time.Microsecond, sampleAll: true}, d)
	}},
	{"4p4c-addafter", "batches of 10k keys, each AddAfter(key, 0.1-0.8ms) once, 4 producers, 4 consumers; latency = lateness past the deadline", func(im impl, d time.Duration) result {
		return batches(im.newInt(), spec{producers: 4, consumers: 4, keys: 10000, after: true}, d)
	}},
	{"4p4c-addafter-paced", "4 producers AddAfter(key, 0.1-0.8ms) every ~50µs (rate set by sleeps), 4 consumers, 10k keys; latency = lateness past the deadline at light load", func(im impl, d time.Duration) result {
		return flatOut(im.newInt(), spec{producers: 4, consumers: 4, keys: 10000, pace: 50 * time.Microsecond, after: true, sampleAll: true}, d)
	}},
	{"4p4c-retry", "batches of 10k keys, 4 producers, 4 consumers; consumers AddRateLimited even keys twice (1µs, 2µs backoff), Forget the rest", func(im impl, d time.Duration) result {
		return batches(im.newInt(), spec{producers: 4, consumers: 4, keys: 10000, retry: true}, d)
	}},
}

func intKeys(n int) []int {
	k := make([]int, n)
	for i := range k {
		k[i] = i
	}
	return k
}

func stringKeys(n int) []string {
	k := make([]string, n)
	for i := range k {
		k[i] = "default/object-" + strconv.Itoa(i)
	}
	return k
}

// cycle runs Add, Get, Done in one goroutine for about d.
func cycle[K comparable](q queue[K], keys []K, d time.Duration) result {
	defer q.ShutDown()
	start := time.Now()
	n := 0
	for {
		for range 256 {
			q.Add(keys[n%len(keys)])
			k, _ := q.Get()
			q.Done(k)
			n++
		}
		if el := time.Since(start); el >= d {
			return result{adds: int64(n), gets: int64(n), elapsed: el}
		}
	}
}

// spec describes a producers/consumers load over int keys 0..keys-1.
type spec struct {
	producers, consumers, keys int
	pace                       time.Duration // > 0: a producer sleeps this long after each add
	after                      bool          // producers use AddAfter with 0.1-0.8ms delays
	retry                      bool          // consumers AddRateLimited even keys up to twice
	sampleAll                  bool          // measure the latency of every key, not 1 in 16
}

// sampleMask selects the keys whose latency is measured: 1 in 16, so
// that reading the clock costs the producers little.
const sampleMask = 15

// counter is a per-goroutine counter on its own cache line.
type counter struct {
	n atomic.Int64
	_ [56]byte
}

// bench is the state that the producers and consumers of a load share.
type bench struct {
	q      queue[int]
	s      spec
	base   time.Time
	stamps []atomic.Int64 // for sampled keys: when added (or due); 0: not queued
	gets   []counter
	lats   [][]time.Duration
	// batches: a consumer whose Get makes processed reach target signals
	// batchDone.
	processed atomic.Int64
	target    atomic.Int64
	batchDone chan struct{}
	cg        sync.WaitGroup
	mask      int // keys with k&mask == 0 are sampled
	// hot batches: lastAdd[k] is a token stored before each Add of k,
	// seen[k] the token a Get of k read. A batch is done when the
	// producers are and seen equals lastAdd for every key.
	// Batches are numbered from 1: cur is the batch running,
	// producersDone the last whose producers are done, signaled the last
	// found done.
	hot                          bool
	lastAdd, seen                []atomic.Int64
	cur, producersDone, signaled atomic.Int64
}

func newBench(q queue[int], s spec) *bench {
	b := &bench{
		q:         q,
		s:         s,
		base:      time.Now(),
		stamps:    make([]atomic.Int64, s.keys),
		gets:      make([]counter, s.consumers),
		lats:      make([][]time.Duration, s.consumers),
		batchDone: make(chan struct{}, 1),
	}
	b.target.Store(-1)
	if !s.sampleAll {
		b.mask = sampleMask
	}
	for c := range s.consumers {
		b.lats[c] = make([]time.Duration, 0, 1<<16)
		b.cg.Go(func() { b.consume(c) })
	}
	return b
}

func (b *bench) now() int64 { return int64(time.Since(b.base)) }

func (b *bench) consume(c int) {
	q, s := b.q, b.s
	var n int64
	for {
		k, shutdown := q.Get()
		if shutdown {
			return
		}
		if k&b.mask == 0 {
			if t := b.stamps[k].Swap(0); t != 0 {
				b.lats[c] = append(b.lats[c], time.Duration(b.now()-t))
			}
		}
		if b.hot {
			b.seen[k].Store(b.lastAdd[k].Load())
		}
		if s.retry {
			if k&1 == 0 && q.NumRequeues(k) < 2 {
				q.AddRateLimited(k)
			} else {
				q.Forget(k)
			}
		}
		n++
		b.gets[c].n.Store(n)
		q.Done(k)
		if b.hot {
			if b.checkHot() {
				b.batchDone <- struct{}{}
			}
		} else if b.processed.Add(1) == b.target.Load() {
			b.batchDone <- struct{}{}
		}
	}
}

// add adds k the way the load says, stamping sampled keys.
func (b *bench) add(k, i int) {
	if !b.s.after {
		if k&b.mask == 0 && b.stamps[k].Load() == 0 {
			b.stamps[k].CompareAndSwap(0, b.now())
		}
		b.q.Add(k)
		return
	}
	delay := time.Duration(100*(1+i%8)) * time.Microsecond
	if k&b.mask == 0 {
		due := b.now() + int64(delay)
		for {
			old := b.stamps[k].Load()
			if old != 0 && old <= due || b.stamps[k].CompareAndSwap(old, due) {
				break
			}
		}
	}
	b.q.AddAfter(k, delay)
}

// finish shuts the queue down, waits for the consumers and returns the
// result with the latency samples.
func (b *bench) finish(r result) result {
	b.q.ShutDown()
	b.cg.Wait()
	for _, l := range b.lats {
		r.lat = append(r.lat, l...)
	}
	return r
}

// batches runs batches for about d: in each, the producers add every key
// once (key k by producer k mod P), and the batch ends when the consumers
// have processed all of them (with retry, each even key 3 times).
func batches(q queue[int], s spec, d time.Duration) result {
	b := newBench(q, s)
	perBatch := int64(s.keys)
	if s.retry {
		perBatch += int64(s.keys/2) * 2
	}
	start := make([]chan bool, s.producers)
	var pg sync.WaitGroup
	for p := range s.producers {
		start[p] = make(chan bool, 1)
		pg.Go(func() {
			for range start[p] {
				for k := p; k < s.keys; k += s.producers {
					b.add(k, k)
				}
			}
		})
	}
	t0 := time.Now()
	var n int64
	for time.Since(t0) < d {
		n++
		b.target.Store(n * perBatch)
		for _, c := range start {
			c <- true
		}
		<-b.batchDone
	}
	elapsed := time.Since(t0)
	for _, c := range start {
		close(c)
	}
	pg.Wait()
	items := n * int64(s.keys)
	return b.finish(result{adds: items, gets: n * perBatch, elapsed: elapsed})
}

// hotBatches runs batches for about d: in each, the producers add keys
// of the small key space adds times in all, and the batch ends when the
// last add of every key has been seen by a Get.
func hotBatches(q queue[int], s spec, adds int, d time.Duration) result {
	b := newBench(q, s)
	b.hot = true
	b.lastAdd = make([]atomic.Int64, s.keys)
	b.seen = make([]atomic.Int64, s.keys)
	start := make([]chan int64, s.producers)
	var pg sync.WaitGroup
	var batch sync.WaitGroup
	for p := range s.producers {
		start[p] = make(chan int64, 1)
		pg.Go(func() {
			for base := range start[p] {
				for i := p; i < adds; i += s.producers {
					k := i % s.keys
					b.lastAdd[k].Store(base + int64(i) + 1)
					b.add(k, i)
				}
				batch.Done()
			}
		})
	}
	t0 := time.Now()
	var n int64
	for time.Since(t0) < d {
		batch.Add(s.producers)
		b.cur.Store(n + 1)
		for _, c := range start {
			c <- n * int64(adds)
		}
		n++
		batch.Wait()
		b.producersDone.Store(n)
		if !b.checkHot() {
			<-b.batchDone
		}
	}
	elapsed := time.Since(t0)
	for _, c := range start {
		close(c)
	}
	pg.Wait()
	r := result{adds: n * int64(adds), elapsed: elapsed}
	for i := range b.gets {
		r.gets += b.gets[i].n.Load()
	}
	return b.finish(r)
}

// checkHot reports whether the running hot batch is done and no one has
// found it done before: the caller that gets true ends the batch.
func (b *bench) checkHot() bool {
	c := b.cur.Load()
	if b.producersDone.Load() != c {
		return false
	}
	for k := range b.lastAdd {
		if b.seen[k].Load() != b.lastAdd[k].Load() {
			return false
		}
	}
	return b.signaled.CompareAndSwap(c-1, c)
}

// flatOut runs the producers flat out (or paced) for about d, then shuts
// the queue down with drain; the window ends when the consumers are done.
func flatOut(q queue[int], s spec, d time.Duration) result {
	b := newBench(q, s)
	var stop atomic.Bool
	adds := make([]counter, s.producers)
	var pg sync.WaitGroup
	t0 := time.Now()
	for p := range s.producers {
		pg.Go(func() {
			i := p
			var n int64
			for !stop.Load() {
				for range 64 {
					b.add(i%s.keys, i)
					i += s.producers
					if s.pace > 0 {
						time.Sleep(s.pace)
					}
				}
				n += 64
				adds[p].n.Store(n)
			}
		})
	}
	time.Sleep(d)
	stop.Store(true)
	pg.Wait()
	q.ShutDownWithDrain()
	b.cg.Wait()
	r := result{elapsed: time.Since(t0)}
	for i := range adds {
		r.adds += adds[i].n.Load()
	}
	for i := range b.gets {
		r.gets += b.gets[i].n.Load()
	}
	return b.finish(r)
}

// percentile returns the p-th percentile (0-100) of sorted samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p / 100)
	return sorted[i]
}

// latencies returns the median and p99 of a run's samples.
func latencies(r result) (p50, p99 time.Duration, ok bool) {
	if len(r.lat) == 0 {
		return 0, 0, false
	}
	s := slices.Clone(r.lat)
	slices.Sort(s)
	return percentile(s, 50), percentile(s, 99), true
}
