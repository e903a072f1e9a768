package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"time"
)

// Result says whether and when to reconcile a key again. The zero Result
// means the key is reconciled: its backoff is reset and it is not queued
// again until something adds it. A Result returned with an error is
// ignored: the error decides.
type Result struct {
	// Requeue queues the key again after its rate-limited backoff (see
	// Queue.AddRateLimited), as an error would, but without reporting one.
	Requeue bool
	// RequeueAfter > 0 reconciles the key again after this long and resets
	// its backoff. It takes precedence over Requeue.
	RequeueAfter time.Duration
}

// Reconciler brings the state of the thing a key names closer to what it
// should be. A Controller never calls Reconcile twice at once for one
// key, though it does for different keys when it has several workers. An
// error queues the key again with its backoff, unless it is Terminal; a
// nil error and the Result say what to do next. ctx is cancelled when the
// Controller stops or the per-reconcile Timeout passes.
type Reconciler[K comparable] interface {
	Reconcile(ctx context.Context, key K) (Result, error)
}

// Func is a function that is a Reconciler.
type Func[K comparable] func(ctx context.Context, key K) (Result, error)

// Reconcile calls f(ctx, key).
func (f Func[K]) Reconcile(ctx context.Context, key K) (Result, error) { return f(ctx, key) }

// Terminal marks err as terminal: a Controller reports it (OnError,
// Metrics.Errors, the log) but does not retry the key. It returns nil for
// a nil err. The error's message is err's, and errors.Is and errors.As
// see err through it.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &terminalError{err}
}

// IsTerminal reports whether err, or an error it wraps, was marked with
// Terminal.
func IsTerminal(err error) bool {
	var t *terminalError
	return errors.As(err, &t)
}

type terminalError struct{ err error }

func (e *terminalError) Error() string { return e.err.Error() }
func (e *terminalError) Unwrap() error { return e.err }

// PanicError is the error a Controller reports for a Reconcile call that
// panicked. The key is retried with backoff like for any other error.
type PanicError struct {
	Value any    // what was passed to panic
	Stack []byte // the goroutine's stack at the panic
}

// Error returns "reconcile: panic: " and the panic value.
func (e *PanicError) Error() string { return fmt.Sprintf("reconcile: panic: %v", e.Value) }

// ErrStarted is returned by Run when the Controller has been run already
// (or is running), and by RunUntilIdle while Run or another RunUntilIdle
// is running or after Run has been called.
var ErrStarted = errors.New("reconcile: controller already started")

// Options configures a Controller; the zero value is one worker, no
// timeout, no resync, the real clock, default backoff and rate limit, no
// metrics and no logs.
type Options[K comparable] struct {
	// Name names the controller in logs and metrics.
	Name string
	// Workers is how many keys are reconciled at once (different keys);
	// 0 means 1.
	Workers int
	// Timeout > 0 bounds each Reconcile call: its context is cancelled
	// with context.DeadlineExceeded after Timeout on the Clock.
	Timeout time.Duration
	// Resync > 0 adds, every Resync while Run runs, every key that
	// ResyncKeys returns; an error from ResyncKeys is logged and the keys
	// it returned anyway are added.
	Resync time.Duration
	// ResyncKeys lists the keys to add at every resync; nil means no
	// resync.
	ResyncKeys func(ctx context.Context) ([]K, error)
	// Clock is the time source; nil means RealClock().
	Clock Clock
	// Backoff and RateLimit configure the queue's AddRateLimited.
	Backoff Backoff
	// RateLimit is the overall token bucket; zero fields take defaults.
	RateLimit RateLimit
	// Metrics are the hooks of the queue and the controller.
	Metrics Metrics
	// Logger receives the errors of reconciles (with the stack of a
	// panic) and of ResyncKeys; nil discards them.
	Logger *slog.Logger
	// OnError, if set, is called for every failed Reconcile, panics
	// included, with whether the error is terminal (not retried).
	OnError func(key K, err error, terminal bool)
}

// Controller runs a Reconciler over the keys of a Queue with a number of
// workers. Keys come from Add, AddAfter, Watch, Trigger, resync and the
// requeues the Reconciler asks for. The Queue guarantees that one key is
// never reconciled by two workers at once.
//
// A Controller is run once, by Run, until its context is done; or, in
// tests, any number of times by RunUntilIdle.
type Controller[K comparable] struct {
	r       Reconciler[K]
	opts    Options[K]
	q       *Queue[K]
	clock   Clock
	isReal  bool // clock is RealClock: use context.WithTimeout
	log     *slog.Logger
	name    string
	metrics Metrics

	mu      sync.Mutex
	state   runState
	stopped chan struct{} // closed when Run stops
	sources sync.WaitGroup
}

type runState int

const (
	stateNew runState = iota
	stateRunUntilIdle
	stateRunning
	stateStopped
)

// New returns a Controller that reconciles with r, configured by opts. It
// does nothing until Run or RunUntilIdle is called, but keys can be added
// before.
func New[K comparable](r Reconciler[K], opts Options[K]) *Controller[K] {
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.Workers <= 0 {
		opts.Workers = 1
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	_, isReal := opts.Clock.(realClock)
	return &Controller[K]{
		r:    r,
		opts: opts,
		q: NewQueue[K](QueueOptions{
			Clock:     opts.Clock,
			Backoff:   opts.Backoff,
			RateLimit: opts.RateLimit,
			Metrics:   opts.Metrics,
			Name:      opts.Name,
		}),
		clock:   opts.Clock,
		isReal:  isReal,
		log:     log.With("controller", opts.Name),
		name:    opts.Name,
		metrics: opts.Metrics,
		stopped: make(chan struct{}),
	}
}

// Queue returns the controller's queue.
func (c *Controller[K]) Queue() *Queue[K] { return c.q }

// Add queues k for reconciling.
func (c *Controller[K]) Add(k K) { c.q.Add(k) }

// AddAfter queues k for reconciling after d; of two deadlines for one key
// the earlier wins.
func (c *Controller[K]) AddAfter(k K, d time.Duration) { c.q.AddAfter(k, d) }

// Watch adds every key received from ch, until ch is closed or Run stops.
// It may be called before or after Run starts; it returns at once.
func (c *Controller[K]) Watch(ch <-chan K) {
	c.source(func(stop <-chan struct{}) {
		for {
			select {
			case k, ok := <-ch:
				if !ok {
					return
				}
				c.q.Add(k)
			case <-stop:
				return
			}
		}
	})
}

// Trigger adds, for every value received from ch, the keys mapFn returns
// for it, until ch is closed or c's Run stops. It is Watch for a channel
// of anything: events, objects, ticks. It returns at once.
func Trigger[T any, K comparable](c *Controller[K], ch <-chan T, mapFn func(T) []K) {
	c.source(func(stop <-chan struct{}) {
		for {
			select {
			case v, ok := <-ch:
				if !ok {
					return
				}
				for _, k := range mapFn(v) {
					c.q.Add(k)
				}
			case <-stop:
				return
			}
		}
	})
}

// source runs f in a goroutine that Run waits for, unless Run has stopped.
func (c *Controller[K]) source(f func(stop <-chan struct{})) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateStopped {
		return
	}
	c.sources.Add(1)
	go func() {
		defer c.sources.Done()
		f(c.stopped)
	}()
}

// Run reconciles keys with Options.Workers workers until ctx is done.
// Then it takes no new key, cancels the contexts of the reconciles in
// flight (they derive from ctx) and waits for them to return, stops the
// Watch and Trigger goroutines and shuts the queue down, and returns nil.
// A Controller runs once: a second Run returns ErrStarted.
func (c *Controller[K]) Run(ctx context.Context) error {
	if !c.start(stateRunning) {
		return ErrStarted
	}
	var wg sync.WaitGroup
	for range c.opts.Workers {
		wg.Go(func() { c.worker(ctx) })
	}
	if c.opts.Resync > 0 && c.opts.ResyncKeys != nil {
		wg.Go(func() { c.resync(ctx) })
	}
	<-ctx.Done()
	c.q.shutdown(false, true)
	c.mu.Lock()
	c.state = stateStopped
	close(c.stopped)
	c.mu.Unlock()
	wg.Wait()
	c.sources.Wait()
	return nil
}

// start moves the controller from stateNew to s.
func (c *Controller[K]) start(s runState) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateNew {
		return false
	}
	c.state = s
	return true
}

func (c *Controller[K]) worker(ctx context.Context) {
	done := ctx.Done()
	k, shutdown := c.q.Get()
	for !shutdown {
		select {
		case <-done:
			c.q.Done(k)
			return
		default:
		}
		act, after := c.process(ctx, k)
		// A panic in a hook (OnError, Metrics) ends the program: the key
		// need not be finished on the way.
		k, shutdown = c.q.finishAndGet(k, act, after)
	}
}

func (c *Controller[K]) resync(ctx context.Context) {
	t := c.clock.NewTimer(c.opts.Resync)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C():
		}
		keys, err := c.opts.ResyncKeys(ctx)
		if err != nil && ctx.Err() == nil {
			c.log.Error("resync failed", "error", err)
		}
		for _, k := range keys {
			c.q.Add(k)
		}
		t.Reset(c.opts.Resync)
	}
}

// RunUntilIdle reconciles keys with Options.Workers workers until the
// controller is idle: no key is queued, none is being reconciled and no
// delayed key is due at the Clock's current time (keys delayed to later
// stay pending). Then it returns nil; it returns ctx's error if ctx ends
// first. It does not resync, and keys that Watch and Trigger have not
// added yet do not count. It is meant for deterministic tests with a
// FakeClock: step the clock, call RunUntilIdle again. It returns
// ErrStarted once Run has been called.
func (c *Controller[K]) RunUntilIdle(ctx context.Context) error {
	if !c.start(stateRunUntilIdle) {
		return ErrStarted
	}
	defer func() {
		c.mu.Lock()
		c.state = stateNew
		c.mu.Unlock()
	}()
	stop := context.AfterFunc(ctx, c.q.wakeGetters)
	defer stop()
	work := func() {
		for {
			k, st := c.q.getUntilIdle(ctx)
			if st != gotKey {
				return
			}
			c.processAndFinish(ctx, k)
		}
	}
	if c.opts.Workers == 1 {
		work()
	} else {
		var wg sync.WaitGroup
		for range c.opts.Workers {
			wg.Go(work)
		}
		wg.Wait()
	}
	return ctx.Err()
}

// WaitIdle blocks until the controller is idle, as RunUntilIdle defines
// it, or ctx is done (and returns ctx's error). It is meant for tests
// that run Run in another goroutine.
func (c *Controller[K]) WaitIdle(ctx context.Context) error {
	return c.q.waitIdle(ctx)
}

// processAndFinish is process and then finish, which is done even if a
// hook panics: RunUntilIdle may run in the caller's goroutine, and a
// caller that recovers must find the key no longer being processed.
func (c *Controller[K]) processAndFinish(ctx context.Context, k K) {
	act, after := finishForget, time.Duration(0)
	defer func() { c.q.finish(k, act, after) }()
	act, after = c.process(ctx, k)
}

// process reconciles k, handed out by the queue, and says what to do with
// it next.
func (c *Controller[K]) process(ctx context.Context, k K) (act finishAction, after time.Duration) {
	var start time.Time
	if c.metrics.Duration != nil {
		start = c.clock.Now()
	}
	res, err := c.call(ctx, k)
	if c.metrics.Duration != nil {
		c.metrics.Duration(c.name, c.clock.Since(start), err)
	}
	switch {
	case err != nil:
		terminal := IsTerminal(err)
		if !terminal {
			act = finishRateLimited
		}
		c.report(k, err, terminal)
	case res.RequeueAfter > 0:
		act, after = finishForgetAfter, res.RequeueAfter
	case res.Requeue:
		act = finishRateLimited
	}
	return act, after
}

// call calls Reconcile with the per-reconcile timeout, turning a panic
// into a *PanicError.
func (c *Controller[K]) call(ctx context.Context, k K) (res Result, err error) {
	if c.opts.Timeout > 0 {
		var cancel context.CancelFunc
		if c.isReal {
			ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		} else {
			ctx, cancel = withClockTimeout(ctx, c.clock, c.opts.Timeout)
		}
		defer cancel()
	}
	defer func() {
		if v := recover(); v != nil {
			res, err = Result{}, &PanicError{Value: v, Stack: debug.Stack()}
		}
	}()
	return c.r.Reconcile(ctx, k)
}

func (c *Controller[K]) report(k K, err error, terminal bool) {
	if c.metrics.Errors != nil {
		c.metrics.Errors(c.name, err)
	}
	if p := (*PanicError)(nil); errors.As(err, &p) {
		c.log.Error("reconcile panicked", "key", k, "panic", p.Value, "stack", string(p.Stack))
	} else {
		c.log.Error("reconcile failed", "key", k, "error", err, "terminal", terminal)
	}
	if c.opts.OnError != nil {
		c.opts.OnError(k, err, terminal)
	}
}

// finishAction is what the queue does with a key when its reconcile ends.
type finishAction int

const (
	finishForget      finishAction = iota // success or terminal error
	finishRateLimited                     // error or Requeue
	finishForgetAfter                     // RequeueAfter
)

// finish does what act says with k and then Done(k), under one lock.
func (q *Queue[K]) finish(k K, act finishAction, after time.Duration) {
	q.mu.Lock()
	defer q.unlock()
	q.finishLocked(k, act, after)
}

// finishAndGet is finish and then Get, under one lock: a worker takes the
// lock once per key.
func (q *Queue[K]) finishAndGet(k K, act finishAction, after time.Duration) (K, bool) {
	q.mu.Lock()
	defer q.unlock()
	q.finishLocked(k, act, after)
	return q.get()
}

func (q *Queue[K]) finishLocked(k K, act finishAction, after time.Duration) {
	switch act {
	case finishForget:
		delete(q.failures, k)
	case finishRateLimited:
		q.addRateLimited(k)
	case finishForgetAfter:
		delete(q.failures, k)
		if !q.shuttingDown {
			q.addAt(k, q.now(), after)
		}
	}
	q.done(k)
}

// withClockTimeout is context.WithTimeout on a Clock other than the real
// one: ctx is cancelled with context.DeadlineExceeded when a timer of the
// clock fires.
func withClockTimeout(parent context.Context, clock Clock, d time.Duration) (context.Context, context.CancelFunc) {
	ctx := &clockTimeoutCtx{
		Context:  parent,
		deadline: clock.Now().Add(d),
		done:     make(chan struct{}),
	}
	if pd, ok := parent.Deadline(); ok && pd.Before(ctx.deadline) {
		ctx.deadline = pd
	}
	t := clock.NewTimer(d)
	stopParent := context.AfterFunc(parent, func() { ctx.cancel(parent.Err()) })
	go func() {
		select {
		case <-t.C():
			ctx.cancel(context.DeadlineExceeded)
		case <-ctx.done:
			t.Stop()
		}
	}()
	return ctx, func() {
		stopParent()
		ctx.cancel(context.Canceled)
	}
}

type clockTimeoutCtx struct {
	context.Context // the parent, for Value
	deadline        time.Time
	done            chan struct{}
	mu              sync.Mutex
	err             error
}

func (c *clockTimeoutCtx) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *clockTimeoutCtx) Done() <-chan struct{}       { return c.done }

func (c *clockTimeoutCtx) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *clockTimeoutCtx) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err == nil {
		c.err = err
		close(c.done)
	}
}
