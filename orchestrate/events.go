package orchestrate

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// EventFilter selects events; empty fields match anything.
type EventFilter struct {
	Kind      string // the kind of the object involved, such as KindPod
	Namespace string // the namespace of the object involved
	Name      string // the name of the object involved
	Reason    string // the event's reason, such as "BackOff"
	// Since, when set, keeps events at or after this time.
	Since time.Time
}

// Matches reports whether ev passes the filter.
func (f EventFilter) Matches(ev Event) bool {
	return (f.Kind == "" || f.Kind == ev.Kind) &&
		(f.Namespace == "" || f.Namespace == ev.Namespace) &&
		(f.Name == "" || f.Name == ev.Name) &&
		(f.Reason == "" || f.Reason == ev.Reason) &&
		(f.Since.IsZero() || !ev.Time.Before(f.Since))
}

// defaultEventCapacity is how many events a recorder keeps.
const defaultEventCapacity = 4096

// eventRecorder keeps the latest events in a ring buffer and hands new
// ones to subscribers.
type eventRecorder struct {
	mu   sync.Mutex
	ring []Event
	next int  // where the next event goes
	full bool // the ring has wrapped
	subs map[*eventSub]struct{}
}

type eventSub struct {
	filter EventFilter
	ch     chan Event
}

func newEventRecorder(capacity int) *eventRecorder {
	if capacity <= 0 {
		capacity = defaultEventCapacity
	}
	return &eventRecorder{ring: make([]Event, capacity), subs: map[*eventSub]struct{}{}}
}

// record stores ev and offers it to the subscribers (a subscriber whose
// buffer is full misses it).
func (r *eventRecorder) record(ev Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ring[r.next] = ev
	r.next++
	if r.next == len(r.ring) {
		r.next, r.full = 0, true
	}
	for s := range r.subs {
		if s.filter.Matches(ev) {
			select {
			case s.ch <- ev:
			default:
			}
		}
	}
}

// list returns the stored events that match f, oldest first.
func (r *eventRecorder) list(f EventFilter) []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Event
	add := func(evs []Event) {
		for _, ev := range evs {
			if f.Matches(ev) {
				out = append(out, ev)
			}
		}
	}
	if r.full {
		add(r.ring[r.next:])
	}
	add(r.ring[:r.next])
	return out
}

// subscribe returns a channel of the events recorded from now on that
// match f, closed when ctx ends.
func (r *eventRecorder) subscribe(ctx context.Context, f EventFilter, buffer int) <-chan Event {
	s := &eventSub{filter: f, ch: make(chan Event, buffer)}
	r.mu.Lock()
	r.subs[s] = struct{}{}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		delete(r.subs, s)
		r.mu.Unlock()
		close(s.ch)
	})
	return s.ch
}

// recordEvent records an event about obj at the manager's clock's time
// and logs it.
func (m *Manager) recordEvent(obj Object, typ EventType, reason, format string, args ...any) {
	ev := Event{
		Time:      m.clock.Now(),
		Type:      typ,
		Kind:      obj.Kind(),
		Namespace: obj.Meta().Namespace,
		Name:      obj.Meta().Name,
		Reason:    reason,
		Message:   fmt.Sprintf(format, args...),
	}
	m.events.record(ev)
	m.log.Debug("event", "kind", ev.Kind, "namespace", ev.Namespace, "name", ev.Name, "type", ev.Type, "reason", ev.Reason, "message", ev.Message)
}

// Events returns the events recorded so far (the latest few thousand)
// that match filter, oldest first.
func (m *Manager) Events(filter EventFilter) []Event { return m.events.list(filter) }

// SubscribeEvents returns a channel that receives every event recorded
// from now on that matches filter, until ctx ends; then it is closed. The
// channel holds up to 256 events; a subscriber that falls further behind
// misses events (Events still has them).
func (m *Manager) SubscribeEvents(ctx context.Context, filter EventFilter) <-chan Event {
	return m.events.subscribe(ctx, filter, 256)
}
