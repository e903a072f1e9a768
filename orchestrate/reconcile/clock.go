package reconcile

import (
	"slices"
	"sync"
	"time"
)

// Clock is the time source of a Queue and a Controller: delayed adds,
// backoff, the overall rate limit, resync, per-reconcile timeouts and the
// metrics' durations all read it. RealClock is the default; tests pass a
// FakeClock to move time by hand.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// Since returns the time elapsed since t.
	Since(t time.Time) time.Duration
	// NewTimer returns a Timer that sends the time on its channel once,
	// after d.
	NewTimer(d time.Duration) Timer
	// After returns a channel that receives the time once, after d.
	After(d time.Duration) <-chan time.Time
}

// Timer is a single event on a Clock, like time.Timer.
type Timer interface {
	// C returns the channel on which the time is sent when the timer fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether the call
	// stopped the timer (false if it had already fired or been stopped).
	// No value is received from C after Stop returns.
	Stop() bool
	// Reset changes the timer to fire after d, reporting whether the
	// timer had been active. No stale value is received from C after
	// Reset returns.
	Reset(d time.Duration) bool
}

// RealClock returns the Clock that reads the system's time (package time).
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) Since(t time.Time) time.Duration        { return time.Since(t) }
func (realClock) NewTimer(d time.Duration) Timer         { return realTimer{time.NewTimer(d)} }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time        { return t.t.C }
func (t realTimer) Stop() bool                 { return t.t.Stop() }
func (t realTimer) Reset(d time.Duration) bool { return t.t.Reset(d) }

// FakeClock is a Clock whose time moves only when Step or Set is called,
// for deterministic tests. Timers fire, in deadline order, inside the
// Step or Set call that reaches their deadline; a timer's channel has room
// for one value, so firing never blocks. The zero value is not usable; use
// NewFakeClock. A FakeClock is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer // active timers, in no particular order
}

// NewFakeClock returns a FakeClock that reads t until it is moved.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Since returns the fake time elapsed since t.
func (c *FakeClock) Since(t time.Time) time.Duration { return c.Now().Sub(t) }

// NewTimer returns a Timer that fires when the fake time reaches Now()+d;
// with d <= 0 it has fired already.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	t := &fakeTimer{c: c, ch: make(chan time.Time, 1)}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.arm(t, d)
	return t
}

// After returns the channel of a new Timer, as NewTimer(d).C().
func (c *FakeClock) After(d time.Duration) <-chan time.Time { return c.NewTimer(d).C() }

// Step advances the fake time by d and fires every timer whose deadline
// has been reached.
func (c *FakeClock) Step(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	c.fire()
}

// Set moves the fake time to t (forward or back) and fires every timer
// whose deadline has been reached.
func (c *FakeClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
	c.fire()
}

// HasWaiters reports whether any timer is waiting to fire.
func (c *FakeClock) HasWaiters() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers) > 0
}

// arm schedules t to fire after d; c.mu is held.
func (c *FakeClock) arm(t *fakeTimer, d time.Duration) {
	t.at = c.now.Add(d)
	if d <= 0 {
		t.send(c.now)
		return
	}
	t.active = true
	c.timers = append(c.timers, t)
}

// fire fires, in deadline order, the timers that are due; c.mu is held.
func (c *FakeClock) fire() {
	var due []*fakeTimer
	c.timers = slices.DeleteFunc(c.timers, func(t *fakeTimer) bool {
		if t.at.After(c.now) {
			return false
		}
		due = append(due, t)
		return true
	})
	slices.SortStableFunc(due, func(a, b *fakeTimer) int { return a.at.Compare(b.at) })
	for _, t := range due {
		t.active = false
		t.send(c.now)
	}
}

// remove takes t out of the waiting timers; c.mu is held.
func (c *FakeClock) remove(t *fakeTimer) bool {
	if !t.active {
		return false
	}
	t.active = false
	c.timers = slices.DeleteFunc(c.timers, func(x *fakeTimer) bool { return x == t })
	return true
}

type fakeTimer struct {
	c      *FakeClock
	ch     chan time.Time
	at     time.Time
	active bool // guarded by c.mu
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drain()
	return t.c.remove(t)
}

func (t *fakeTimer) Reset(d time.Duration) bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	t.drain()
	was := t.c.remove(t)
	t.c.arm(t, d)
	return was
}

// send delivers now unless a value is pending already.
func (t *fakeTimer) send(now time.Time) {
	select {
	case t.ch <- now:
	default:
	}
}

// drain discards a value fired but not received, so that none is seen
// after Stop or Reset (as with time.Timer since Go 1.23).
func (t *fakeTimer) drain() {
	select {
	case <-t.ch:
	default:
	}
}
