package reconcile

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"
)

// Backoff is the per-key exponential backoff of Queue.AddRateLimited.
// After n failures of a key (n = NumRequeues before the call), the key
// waits d = min(Base·2ⁿ, Max), less a random part of at most Jitter·d:
// the delay lies in [(1−Jitter)·d, d], so it never exceeds Max and keys
// that fail together spread out. A zero field takes its default: Base
// 5ms, Max 1000s (client-go's), Jitter 0.1; a negative Jitter disables
// jitter.
type Backoff struct {
	Base   time.Duration // delay after the first failure
	Max    time.Duration // cap of the delay
	Jitter float64       // fraction of the delay taken off at random, 0 to 1
}

// Defaults of Backoff and RateLimit.
const (
	DefaultBackoffBase   = 5 * time.Millisecond
	DefaultBackoffMax    = 1000 * time.Second
	DefaultBackoffJitter = 0.1
	DefaultQPS           = 10
	DefaultBurst         = 100
)

func (b Backoff) withDefaults() Backoff {
	if b.Base <= 0 {
		b.Base = DefaultBackoffBase
	}
	if b.Max <= 0 {
		b.Max = DefaultBackoffMax
	}
	switch {
	case b.Jitter == 0:
		b.Jitter = DefaultBackoffJitter
	case b.Jitter < 0:
		b.Jitter = 0
	case b.Jitter > 1:
		b.Jitter = 1
	}
	return b
}

// Delay returns the delay before the retry that follows n failures, with
// the defaults applied to zero fields and a random jitter as described on
// Backoff.
func (b Backoff) Delay(n int) time.Duration {
	return b.withDefaults().delay(n)
}

// delay is Delay for a Backoff with the defaults applied.
func (b Backoff) delay(n int) time.Duration {
	n = max(n, 0)
	d := b.Max
	if n < 63 {
		if f := float64(b.Base) * math.Ldexp(1, n); f < float64(b.Max) {
			d = time.Duration(f)
		}
	}
	if b.Jitter > 0 {
		d -= time.Duration(rand.Float64() * b.Jitter * float64(d))
	}
	return d
}

// RateLimit is the overall token bucket of Queue.AddRateLimited: QPS
// tokens a second, at most Burst saved up; every AddRateLimited takes a
// token, waiting for it when there is none. The delay of a key is the
// larger of its Backoff and the wait for a token. A zero field takes its
// default, 10 QPS and a burst of 100 like client-go's; a negative QPS
// disables the limit.
type RateLimit struct {
	QPS   float64 // tokens added per second; < 0: no overall limit
	Burst int     // size of the bucket
}

// bucket is a token bucket in the manner of golang.org/x/time/rate's
// Reserve: tokens may go negative and the debt is the wait.
type bucket struct {
	qps    float64 // 0: disabled
	burst  float64
	tokens float64
	last   int64 // queue nanoseconds of the last update
}

func newBucket(r RateLimit) bucket {
	if r.QPS < 0 {
		return bucket{}
	}
	if r.QPS == 0 {
		r.QPS = DefaultQPS
	}
	if r.Burst <= 0 {
		r.Burst = DefaultBurst
	}
	return bucket{qps: r.QPS, burst: float64(r.Burst), tokens: float64(r.Burst)}
}

// take takes a token at now and returns how long to wait for it.
func (b *bucket) take(now int64) time.Duration {
	if b.qps == 0 {
		return 0
	}
	if now > b.last {
		b.tokens = min(b.burst, b.tokens+float64(now-b.last)/1e9*b.qps)
		b.last = now
	}
	b.tokens--
	if b.tokens >= 0 {
		return 0
	}
	return time.Duration(-b.tokens / b.qps * 1e9)
}

// Metrics are hooks a Queue and a Controller call to report what they do,
// all optional: a nil func is skipped. They are called synchronously, the
// Queue's hooks with the queue's lock held: they must be cheap and must
// not call back into the Queue or Controller. name is QueueOptions.Name
// (Options.Name for a Controller).
type Metrics struct {
	// Depth reports the number of keys ready in the queue (not counting
	// delayed keys), after every change.
	Depth func(name string, depth int)
	// Adds counts keys added to the queue (not counting an Add of a key
	// that is ready already).
	Adds func(name string)
	// Latency reports how long a key waited in the queue, from its Add (or
	// the end of its delay) to the Get that returned it.
	Latency func(name string, waited time.Duration)
	// Duration reports how long a Reconcile call took, and its error.
	Duration func(name string, took time.Duration, err error)
	// Retries counts AddRateLimited calls.
	Retries func(name string)
	// Errors counts failed Reconcile calls (panics and terminal errors
	// included).
	Errors func(name string, err error)
}

// QueueOptions configures a Queue; the zero value gives a working queue
// on the real clock with the default Backoff and RateLimit.
type QueueOptions struct {
	Clock     Clock     // nil: RealClock()
	Backoff   Backoff   // per-key backoff of AddRateLimited
	RateLimit RateLimit // overall token bucket of AddRateLimited
	Metrics   Metrics   // hooks; nil funcs are skipped
	Name      string    // passed to the Metrics hooks
}

type keyState uint8

const (
	stateDirty      keyState = 1 << iota // waiting to be processed
	stateProcessing                      // handed out by Get, Done not yet called
)

// noDeadline is the armed deadline when the delay timer is not armed.
const noDeadline = math.MaxInt64

// Queue is a work queue of keys with the guarantees of client-go's
// rate-limiting workqueue:
//
//   - A key added while it waits in the queue is stored once.
//   - A key handed out by Get is never handed out again before Done is
//     called for it: an Add meanwhile marks it dirty, and Done queues it
//     again. So no two workers process one key at the same time.
//   - Keys are handed out in the order they were added (FIFO); a key
//     added while it was processed takes its place at its Done, a
//     delayed key when it is due.
//   - AddAfter delays an add; of two delays for one key the earlier
//     deadline wins. AddRateLimited delays by the key's Backoff and the
//     overall RateLimit; Forget resets the key's backoff.
//
// A Queue must be made with NewQueue. Its methods are safe for concurrent
// use. A single goroutine, started at the first delayed add and stopped by
// ShutDown (call it when done with such a queue), moves delayed keys into
// the queue when they are due; Get, Len and a Controller's idle checks
// also move due keys themselves, so that with a FakeClock a Step is seen
// at once.
type Queue[K comparable] struct {
	mu       sync.Mutex
	getCond  sync.Cond // Get waiters: a key is ready, shut down, or (for idle getters) idle
	idleCond sync.Cond // WaitIdle and ShutDownWithDrain waiters

	fifo       ring[K]
	state      map[K]keyState
	processing int
	failures   map[K]int
	addedAt    map[K]time.Time // only with Metrics.Latency

	// Delayed keys: a min-heap of deadlines, and each key's live deadline.
	// An entry whose deadline differs from the key's in deadlines is stale
	// (the key got an earlier deadline) and is skipped when popped.
	delayed   []delayedKey[K]
	deadlines map[K]int64
	stale     int
	armedAt   int64 // deadline the delay goroutine waits for; noDeadline: none
	looping   bool  // delay goroutine started
	wake      chan struct{}
	stop      chan struct{}
	loopDone  chan struct{}

	// Getters are woken after the lock is released (see unlock): signals
	// counts the keys pushed meanwhile, getWaiters the goroutines in
	// getCond.Wait.
	signals    int
	getWaiters int

	shuttingDown bool
	drain        bool
	abandon      bool // Get returns shutdown even with keys left
	idleGetters  int
	idleWaiters  int

	clock   Clock
	epoch   time.Time // queue time 0: deadlines are nanoseconds since epoch
	backoff Backoff
	bucket  bucket
	metrics Metrics
	name    string
}

type delayedKey[K comparable] struct {
	at  int64
	key K
}

// NewQueue returns an empty queue configured by opts.
func NewQueue[K comparable](opts QueueOptions) *Queue[K] {
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	q := &Queue[K]{
		state:     make(map[K]keyState),
		failures:  make(map[K]int),
		deadlines: make(map[K]int64),
		armedAt:   noDeadline,
		wake:      make(chan struct{}, 1),
		stop:      make(chan struct{}),
		loopDone:  make(chan struct{}),
		clock:     opts.Clock,
		backoff:   opts.Backoff.withDefaults(),
		bucket:    newBucket(opts.RateLimit),
		metrics:   opts.Metrics,
		name:      opts.Name,
	}
	q.getCond.L = &q.mu
	q.idleCond.L = &q.mu
	q.epoch = q.clock.Now()
	if q.metrics.Latency != nil {
		q.addedAt = make(map[K]time.Time)
	}
	return q
}

// Add queues k, unless it is queued already or the queue is shutting
// down. If k is being processed it is marked dirty and queued again when
// Done(k) is called.
func (q *Queue[K]) Add(k K) {
	q.mu.Lock()
	defer q.unlock()
	q.add(k)
}

// add is Add with q.mu held.
func (q *Queue[K]) add(k K) {
	if q.shuttingDown {
		return
	}
	st := q.state[k]
	if st&stateDirty != 0 {
		return
	}
	q.state[k] = st | stateDirty
	if q.metrics.Adds != nil {
		q.metrics.Adds(q.name)
	}
	if q.addedAt != nil {
		q.addedAt[k] = q.clock.Now()
	}
	if st&stateProcessing != 0 {
		return
	}
	q.push(k)
}

// push appends k to the FIFO and wakes a getter; q.mu is held.
func (q *Queue[K]) push(k K) {
	q.fifo.push(k)
	if q.metrics.Depth != nil {
		q.metrics.Depth(q.name, q.fifo.n)
	}
	q.signals++
}

// unlock releases q.mu and then wakes a getter for every key pushed
// while it was held, up to the number waiting: a getter woken while the
// lock is still held would only block on it again.
func (q *Queue[K]) unlock() {
	n := min(q.signals, q.getWaiters)
	q.signals = 0
	q.mu.Unlock()
	for ; n > 0; n-- {
		q.getCond.Signal()
	}
}

// signalLocked wakes the getters owed a signal while q.mu is held: a
// cond's Wait releases the lock without going through unlock.
func (q *Queue[K]) signalLocked() {
	for n := min(q.signals, q.getWaiters); n > 0; n-- {
		q.getCond.Signal()
	}
	q.signals = 0
}

// wait waits on getCond; q.mu is held.
func (q *Queue[K]) wait() {
	q.signalLocked()
	q.getWaiters++
	q.getCond.Wait()
	q.getWaiters--
}

// AddAfter adds k after d (at once if d <= 0). If k is waiting for a
// delayed add already, the earlier deadline wins.
func (q *Queue[K]) AddAfter(k K, d time.Duration) {
	q.mu.Lock()
	defer q.unlock()
	if q.shuttingDown {
		return
	}
	if d <= 0 {
		q.add(k)
		return
	}
	q.addAt(k, q.now(), d)
}

// AddRateLimited adds k after the larger of its backoff (see Backoff) and
// the wait for a token of the overall RateLimit, and counts a failure of k
// (see NumRequeues).
func (q *Queue[K]) AddRateLimited(k K) {
	q.mu.Lock()
	defer q.unlock()
	q.addRateLimited(k)
}

// addRateLimited is AddRateLimited with q.mu held.
func (q *Queue[K]) addRateLimited(k K) {
	if q.shuttingDown {
		return
	}
	if q.metrics.Retries != nil {
		q.metrics.Retries(q.name)
	}
	n := q.failures[k]
	q.failures[k] = n + 1
	d := q.backoff.delay(n)
	now := q.now()
	if w := q.bucket.take(now); w > d {
		d = w
	}
	if d <= 0 {
		q.add(k)
		return
	}
	q.addAt(k, now, d)
}

// Forget resets the failure count (and so the backoff) of k. It does not
// remove k from the queue.
func (q *Queue[K]) Forget(k K) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.failures, k)
}

// NumRequeues returns how many times k was added with AddRateLimited
// since it was last forgotten.
func (q *Queue[K]) NumRequeues(k K) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.failures[k]
}

// Get blocks until a key is ready and returns it; the caller must call
// Done with it when it has finished processing it. Get returns
// shutdown=true once the queue is shutting down and no key is left.
func (q *Queue[K]) Get() (k K, shutdown bool) {
	q.mu.Lock()
	defer q.unlock()
	return q.get()
}

// get is Get with q.mu held.
func (q *Queue[K]) get() (k K, shutdown bool) {
	for {
		// Due keys join the FIFO now rather than when the delay goroutine
		// gets to run: they keep their place ahead of later adds.
		if len(q.delayed) > 0 && !q.shuttingDown {
			q.promote()
		}
		if q.fifo.n > 0 || q.shuttingDown {
			break
		}
		q.wait()
	}
	if q.fifo.n == 0 || q.abandon {
		return k, true
	}
	return q.pop(), false
}

// pop hands out the first key; q.mu is held and q.fifo is not empty.
func (q *Queue[K]) pop() K {
	k := q.fifo.pop()
	q.state[k] = stateProcessing
	q.processing++
	if q.metrics.Depth != nil {
		q.metrics.Depth(q.name, q.fifo.n)
	}
	if q.addedAt != nil {
		if t, ok := q.addedAt[k]; ok {
			delete(q.addedAt, k)
			q.metrics.Latency(q.name, q.clock.Since(t))
		}
	}
	return k
}

// Done marks k as processed. If k was added while it was processed, it is
// queued again. Done of a key not handed out by Get does nothing.
func (q *Queue[K]) Done(k K) {
	q.mu.Lock()
	defer q.unlock()
	q.done(k)
}

// done is Done with q.mu held.
func (q *Queue[K]) done(k K) {
	st := q.state[k]
	if st&stateProcessing == 0 {
		return
	}
	q.processing--
	if st&stateDirty != 0 {
		q.state[k] = stateDirty
		q.push(k)
		return
	}
	delete(q.state, k)
	if q.processing == 0 {
		if q.idleWaiters > 0 {
			q.idleCond.Broadcast()
		}
		if q.idleGetters > 0 && q.fifo.n == 0 {
			q.getCond.Broadcast()
		}
	}
}

// Len returns the number of keys ready to be handed out (not counting
// delayed keys that are not due and keys being processed).
func (q *Queue[K]) Len() int {
	q.mu.Lock()
	defer q.unlock()
	if len(q.delayed) > 0 {
		q.promote()
	}
	return q.fifo.n
}

// ShutDown makes the queue ignore new adds and drop the delayed ones. Get
// goes on handing out the keys that are queued and returns shutdown=true
// once none is left. ShutDown stops a ShutDownWithDrain waiting.
func (q *Queue[K]) ShutDown() {
	q.shutdown(false, false)
}

// ShutDownWithDrain is ShutDown, and then waits until every queued key has
// been handed out and Done has been called for it, or until ShutDown is
// called. Workers must call Done, or it waits forever.
func (q *Queue[K]) ShutDownWithDrain() {
	q.shutdown(true, false)
}

// shutdown shuts q down; with abandon, Get returns shutdown at once even
// though keys are queued (a Controller stopping takes no new work).
func (q *Queue[K]) shutdown(drain, abandon bool) {
	q.mu.Lock()
	first := !q.shuttingDown
	q.shuttingDown = true
	q.drain = drain
	q.abandon = q.abandon || abandon
	if first {
		close(q.stop)
	}
	looping := q.looping
	q.getCond.Broadcast()
	q.idleCond.Broadcast()
	if drain {
		q.idleWaiters++
		for q.drain && (q.processing > 0 || q.fifo.n > 0 && !q.abandon) {
			q.idleCond.Wait()
		}
		q.idleWaiters--
	}
	q.mu.Unlock()
	if looping {
		<-q.loopDone
	}
}

// ShuttingDown reports whether ShutDown or ShutDownWithDrain was called.
func (q *Queue[K]) ShuttingDown() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.shuttingDown
}

// getStatus says why getUntilIdle returned.
type getStatus int

const (
	gotKey getStatus = iota
	gotIdle
	gotStop // shut down or ctx done
)

// getUntilIdle is Get that also returns when the queue is idle: no key
// ready or due, and none being processed.
func (q *Queue[K]) getUntilIdle(ctx context.Context) (k K, st getStatus) {
	q.mu.Lock()
	defer q.unlock()
	q.idleGetters++
	defer func() { q.idleGetters-- }()
	for {
		if ctx.Err() != nil {
			return k, gotStop
		}
		if len(q.delayed) > 0 {
			q.promote()
		}
		switch {
		case q.fifo.n > 0 && !q.abandon:
			return q.pop(), gotKey
		case q.shuttingDown:
			return k, gotStop
		case q.processing == 0:
			return k, gotIdle
		}
		q.wait()
	}
}

// waitIdle waits until no key is ready or due and none is being
// processed, or ctx is done.
func (q *Queue[K]) waitIdle(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() {
		q.mu.Lock()
		defer q.mu.Unlock()
		q.idleCond.Broadcast()
	})
	defer stop()
	q.mu.Lock()
	defer q.unlock()
	q.idleWaiters++
	defer func() { q.idleWaiters-- }()
	for {
		if len(q.delayed) > 0 {
			q.promote()
		}
		if q.fifo.n == 0 && q.processing == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		q.signalLocked()
		q.idleCond.Wait()
	}
}

// wakeGetters wakes every Get waiting, to look at its context again.
func (q *Queue[K]) wakeGetters() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.getCond.Broadcast()
}

// now returns the queue time in nanoseconds.
func (q *Queue[K]) now() int64 { return int64(q.clock.Since(q.epoch)) }

// addAt schedules k at now+d, d > 0; q.mu is held and q is not shutting
// down.
func (q *Queue[K]) addAt(k K, now int64, d time.Duration) {
	at := now + int64(d)
	if at < now { // overflow
		at = noDeadline - 1
	}
	if old, ok := q.deadlines[k]; ok {
		if old <= at {
			return
		}
		q.stale++
	}
	q.deadlines[k] = at
	q.heapPush(delayedKey[K]{at, k})
	if q.stale > 64 && q.stale > len(q.delayed)/2 {
		q.compact()
	}
	if at < q.armedAt {
		q.armedAt = at
		if !q.looping {
			q.looping = true
			go q.delayLoop()
		}
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// promote moves the delayed keys that are due into the queue and returns
// how many it moved; q.mu is held.
func (q *Queue[K]) promote() int {
	return q.promoteAt(q.now())
}

func (q *Queue[K]) promoteAt(now int64) int {
	n := 0
	for len(q.delayed) > 0 && q.delayed[0].at <= now {
		e := q.heapPop()
		if at, ok := q.deadlines[e.key]; !ok || at != e.at {
			q.stale--
			continue
		}
		delete(q.deadlines, e.key)
		q.add(e.key)
		n++
	}
	return n
}

// delayLoop waits for the earliest deadline and moves due keys into the
// queue, until the queue shuts down.
func (q *Queue[K]) delayLoop() {
	defer close(q.loopDone)
	var t Timer
	var fired <-chan time.Time
	for {
		select {
		case <-q.stop:
			if t != nil {
				t.Stop()
			}
			return
		case <-q.wake:
		case <-fired:
		}
		q.mu.Lock()
		now := q.now()
		q.promoteAt(now)
		next := int64(noDeadline)
		if len(q.delayed) > 0 {
			next = q.delayed[0].at
		}
		q.armedAt = next
		q.unlock()
		switch {
		case next == noDeadline:
			if t != nil {
				t.Stop()
			}
			fired = nil
		case t == nil:
			t = q.clock.NewTimer(time.Duration(next - now))
			fired = t.C()
		default:
			t.Reset(time.Duration(next - now))
			fired = t.C()
		}
	}
}

// heapPush, heapPop and compact keep q.delayed a min-heap by deadline.
func (q *Queue[K]) heapPush(e delayedKey[K]) {
	h := append(q.delayed, e)
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 2
		if h[p].at <= e.at {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = e
	q.delayed = h
}

func (q *Queue[K]) heapPop() delayedKey[K] {
	h := q.delayed
	top := h[0]
	n := len(h) - 1
	last := h[n]
	h[n] = delayedKey[K]{}
	h = h[:n]
	if n > 0 {
		siftDown(h, 0, last)
	}
	q.delayed = h
	return top
}

func siftDown[K comparable](h []delayedKey[K], i int, e delayedKey[K]) {
	n := len(h)
	for {
		c := 2*i + 1
		if c >= n {
			break
		}
		if r := c + 1; r < n && h[r].at < h[c].at {
			c = r
		}
		if e.at <= h[c].at {
			break
		}
		h[i] = h[c]
		i = c
	}
	h[i] = e
}

// compact drops the stale entries of the heap.
func (q *Queue[K]) compact() {
	h := q.delayed[:0]
	for _, e := range q.delayed {
		if q.deadlines[e.key] == e.at {
			h = append(h, e)
		}
	}
	clear(q.delayed[len(h):])
	for i := len(h)/2 - 1; i >= 0; i-- {
		siftDown(h, i, h[i])
	}
	q.delayed = h
	q.stale = 0
}

// ring is a FIFO of keys in a power-of-two circular buffer.
type ring[K any] struct {
	buf  []K
	head int
	n    int
}

func (r *ring[K]) push(k K) {
	if r.n == len(r.buf) {
		r.resize(max(16, 2*len(r.buf)))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = k
	r.n++
}

func (r *ring[K]) pop() K {
	var zero K
	k := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if len(r.buf) > 1024 && r.n < len(r.buf)/8 {
		r.resize(len(r.buf) / 4)
	}
	return k
}

func (r *ring[K]) resize(size int) {
	buf := make([]K, size)
	if r.n > 0 {
		if end := r.head + r.n; end <= len(r.buf) {
			copy(buf, r.buf[r.head:end])
		} else {
			m := copy(buf, r.buf[r.head:])
			copy(buf[m:], r.buf[:r.n-m])
		}
	}
	r.buf = buf
	r.head = 0
}
