// Package memstore is an orchestrate.Store that keeps objects in the
// memory of the process: what a Manager of one program needs, and what
// tests use. Nothing is persisted; the objects go with the process.
//
// It meets the whole contract of orchestrate.Store (package storetest
// checks it). Writes never wait for watchers: each watch has its own
// unbounded buffer, so a slow reader delays only itself. A watch can
// replay the last changes (WatchOptions.Since), as many as WithHistory
// says.
package memstore

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/internal/memhook"
	"github.com/berthlabs/berth/orchestrate/internal/storeutil"
)

// DefaultHistory is how many of the latest changes a store keeps for
// watches that replay them (WatchOptions.Since), unless WithHistory says
// otherwise.
const DefaultHistory = 1024

// Option configures a store made by New.
type Option func(*store)

// WithHistory sets how many of the latest changes the store keeps for
// watches that replay them (WatchOptions.Since); a watch from an older
// version fails with orchestrate.ErrExpired. 0 keeps none: only a watch
// from the store's current revision can replay. A negative n means
// DefaultHistory.
func WithHistory(n int) Option {
	return func(s *store) {
		if n < 0 {
			n = DefaultHistory
		}
		s.historyCap = n
	}
}

// New returns an empty store. It is safe for concurrent use.
func New(opts ...Option) orchestrate.Store {
	s := &store{objects: map[string]map[key]orchestrate.Object{}, historyCap: DefaultHistory}
	for _, o := range opts {
		o(s)
	}
	return s
}

type store struct {
	mu       sync.Mutex
	objects  map[string]map[key]orchestrate.Object // kind → namespace and name → stored copy
	rev      uint64                                // last ResourceVersion handed out
	watchers []*watcher

	// history holds the latest changes, oldest first, for watches with
	// Since; every change after historyFloor is in it.
	history      []orchestrate.WatchEvent
	historyCap   int
	historyFloor uint64

	// onWrite, when set (package filestore), is called with every write
	// before it is made, s.mu held; its error refuses the write.
	onWrite func(typ orchestrate.WatchEventType, obj orchestrate.Object) error
}

// persist hands a write to onWrite, if set.
func (s *store) persist(typ orchestrate.WatchEventType, obj orchestrate.Object) error {
	if s.onWrite == nil {
		return nil
	}
	return s.onWrite(typ, obj)
}

func init() {
	memhook.New = func(objs []orchestrate.Object, rev uint64, onWrite func(orchestrate.WatchEventType, orchestrate.Object) error) orchestrate.Store {
		s := New().(*store)
		for _, o := range objs {
			if s.objects[o.Kind()] == nil {
				s.objects[o.Kind()] = map[key]orchestrate.Object{}
			}
			s.objects[o.Kind()][keyOf(o)] = o.DeepCopy()
		}
		s.rev, s.historyFloor = rev, rev
		s.onWrite = onWrite
		return s
	}
}

// key identifies an object of one kind.
type key struct{ namespace, name string }

// keyOf returns obj's key, its namespace as stored.
func keyOf(obj orchestrate.Object) key {
	return key{storeutil.Namespace(obj), obj.Meta().Name}
}

// describe names an object in errors: "Pod default/web".
func describe(kind string, k key) string {
	if k.namespace == "" {
		return kind + " " + k.name
	}
	return kind + " " + k.namespace + "/" + k.name
}

// compareObjects orders objects by kind, namespace and name.
func compareObjects(a, b orchestrate.Object) int {
	if c := strings.Compare(a.Kind(), b.Kind()); c != 0 {
		return c
	}
	if c := strings.Compare(a.Meta().Namespace, b.Meta().Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Meta().Name, b.Meta().Name)
}

// watcher buffers the events of one Watch and feeds its channel.
type watcher struct {
	kind  string
	ns    string // NamespaceAll, or the one namespace watched
	after uint64 // changes up to this version are not sent
	mu    sync.Mutex
	queue []orchestrate.WatchEvent
	wake  chan struct{} // 1-buffered: there is something in queue
	out   chan orchestrate.WatchEvent
}

func (s *store) Create(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := storeutil.Check(obj); err != nil {
		return nil, err
	}
	kind, k := obj.Kind(), keyOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[kind][k]; ok {
		return nil, fmt.Errorf("create %s: %w", describe(kind, k), orchestrate.ErrExists)
	}
	stored := storeutil.Created(obj)
	m := stored.Meta()
	m.UID = storeutil.NewUID()
	m.ResourceVersion = s.rev + 1
	m.CreationTime = time.Now()
	if err := s.persist(orchestrate.WatchAdded, stored); err != nil {
		return nil, fmt.Errorf("create %s: %w", describe(kind, k), err)
	}
	s.rev++
	if s.objects[kind] == nil {
		s.objects[kind] = map[key]orchestrate.Object{}
	}
	s.objects[kind][k] = stored
	s.notify(orchestrate.WatchAdded, stored)
	return stored.DeepCopy(), nil
}

func (s *store) Update(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := storeutil.Check(obj); err != nil {
		return nil, err
	}
	kind, k := obj.Kind(), keyOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.current(kind, k, obj.Meta(), "update")
	if err != nil {
		return nil, err
	}
	next, err := storeutil.Updated(cur, obj)
	if err != nil {
		return nil, err
	}
	if reflect.DeepEqual(next, cur) {
		return cur.DeepCopy(), nil // nothing changed: no write, no event
	}
	next.Meta().ResourceVersion = s.rev + 1
	if err := s.persist(orchestrate.WatchModified, next); err != nil {
		return nil, fmt.Errorf("update %s: %w", describe(kind, k), err)
	}
	s.rev++
	s.objects[kind][k] = next
	s.notify(orchestrate.WatchModified, next)
	return next.DeepCopy(), nil
}

func (s *store) UpdateStatus(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := storeutil.Check(obj); err != nil {
		return nil, err
	}
	kind, k := obj.Kind(), keyOf(obj)
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.current(kind, k, obj.Meta(), "update status")
	if err != nil {
		return nil, err
	}
	if !storeutil.HasStatus(obj) {
		return nil, fmt.Errorf("update status of %s: the kind has no status: %w", describe(kind, k), orchestrate.ErrInvalid)
	}
	if storeutil.StatusEqual(obj, cur) {
		return cur.DeepCopy(), nil
	}
	next := cur.DeepCopy()
	storeutil.CopyStatus(next, obj)
	next.Meta().ResourceVersion = s.rev + 1
	if err := s.persist(orchestrate.WatchModified, next); err != nil {
		return nil, fmt.Errorf("update status of %s: %w", describe(kind, k), err)
	}
	s.rev++
	s.objects[kind][k] = next
	s.notify(orchestrate.WatchModified, next)
	return next.DeepCopy(), nil
}

func (s *store) Delete(ctx context.Context, kind, namespace, name string) error {
	k := key{orchestrate.NamespaceOf(kind, namespace), name}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.objects[kind][k]
	if !ok {
		return fmt.Errorf("delete %s: %w", describe(kind, k), orchestrate.ErrNotFound)
	}
	gone := cur.DeepCopy()
	gone.Meta().ResourceVersion = s.rev + 1 // the deletion's version, as Kubernetes does
	if err := s.persist(orchestrate.WatchDeleted, gone); err != nil {
		return fmt.Errorf("delete %s: %w", describe(kind, k), err)
	}
	cur = gone
	delete(s.objects[kind], k)
	s.rev++
	s.notify(orchestrate.WatchDeleted, cur)
	return nil
}

func (s *store) Get(ctx context.Context, kind, namespace, name string) (orchestrate.Object, error) {
	k := key{orchestrate.NamespaceOf(kind, namespace), name}
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.objects[kind][k]
	if !ok {
		return nil, fmt.Errorf("get %s: %w", describe(kind, k), orchestrate.ErrNotFound)
	}
	return cur.DeepCopy(), nil
}

func (s *store) List(ctx context.Context, kind, namespace string, sel *orchestrate.LabelSelector) ([]orchestrate.Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []orchestrate.Object
	for k, o := range s.objects[kind] {
		if namespace != orchestrate.NamespaceAll && k.namespace != namespace {
			continue
		}
		if sel.Matches(o.Meta().Labels) {
			out = append(out, o.DeepCopy())
		}
	}
	slices.SortFunc(out, compareObjects)
	return out, nil
}

func (s *store) Revision(ctx context.Context) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev, nil
}

func (s *store) Watch(ctx context.Context, kind string, opts orchestrate.WatchOptions) (<-chan orchestrate.WatchEvent, error) {
	if opts.SendInitial && opts.Since != 0 {
		return nil, fmt.Errorf("watch %s: SendInitial and Since together: %w", kindName(kind), orchestrate.ErrInvalid)
	}
	w := &watcher{kind: kind, ns: opts.Namespace, wake: make(chan struct{}, 1), out: make(chan orchestrate.WatchEvent)}
	s.mu.Lock()
	switch {
	case opts.SendInitial:
		var initial []orchestrate.Object
		for k, objs := range s.objects {
			if kind != "" && k != kind {
				continue
			}
			for _, o := range objs {
				if w.wants(o) {
					initial = append(initial, o)
				}
			}
		}
		slices.SortFunc(initial, compareObjects)
		for _, o := range initial {
			w.queue = append(w.queue, orchestrate.WatchEvent{Type: orchestrate.WatchAdded, Object: o.DeepCopy(), ResourceVersion: o.Meta().ResourceVersion})
		}
		w.queue = append(w.queue, orchestrate.WatchEvent{Type: orchestrate.WatchBookmark, ResourceVersion: s.rev})
		w.after = s.rev
	case opts.Since != 0:
		if opts.Since < s.historyFloor {
			floor, rev := s.historyFloor, s.rev
			s.mu.Unlock()
			return nil, fmt.Errorf("watch %s from version %d: the store keeps the changes after %d (now %d): %w",
				kindName(kind), opts.Since, floor, rev, orchestrate.ErrExpired)
		}
		for _, ev := range s.history {
			if ev.ResourceVersion > opts.Since && w.wants(ev.Object) {
				w.queue = append(w.queue, copyEvent(ev))
			}
		}
		w.after = max(opts.Since, s.rev)
	default:
		w.after = s.rev
	}
	if len(w.queue) > 0 {
		w.wake <- struct{}{}
	}
	s.watchers = append(s.watchers, w)
	s.mu.Unlock()
	go s.pump(ctx, w)
	return w.out, nil
}

// kindName names a watch's kind in errors.
func kindName(kind string) string {
	if kind == "" {
		return "all kinds"
	}
	return kind
}

// pump sends w's buffered events on its channel until ctx ends.
func (s *store) pump(ctx context.Context, w *watcher) {
	defer func() {
		s.mu.Lock()
		s.watchers = slices.DeleteFunc(s.watchers, func(x *watcher) bool { return x == w })
		s.mu.Unlock()
		close(w.out)
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.wake:
		}
		for {
			w.mu.Lock()
			if len(w.queue) == 0 {
				w.mu.Unlock()
				break
			}
			ev := w.queue[0]
			w.queue[0] = orchestrate.WatchEvent{}
			w.queue = w.queue[1:]
			w.mu.Unlock()
			select {
			case w.out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// notify records a change in the history and queues it for every
// watcher of obj's kind; s.mu is held.
func (s *store) notify(typ orchestrate.WatchEventType, obj orchestrate.Object) {
	ev := orchestrate.WatchEvent{Type: typ, Object: obj.DeepCopy(), ResourceVersion: obj.Meta().ResourceVersion}
	if s.historyCap > 0 {
		if len(s.history) >= s.historyCap {
			s.historyFloor = s.history[0].ResourceVersion
			s.history[0] = orchestrate.WatchEvent{}
			s.history = s.history[1:]
		}
		s.history = append(s.history, ev)
	} else {
		s.historyFloor = ev.ResourceVersion
	}
	for _, w := range s.watchers {
		if !w.wants(obj) || ev.ResourceVersion <= w.after {
			continue
		}
		w.mu.Lock()
		w.queue = append(w.queue, copyEvent(ev))
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// wants reports whether obj is of the kind and namespace w watches.
func (w *watcher) wants(obj orchestrate.Object) bool {
	return (w.kind == "" || w.kind == obj.Kind()) && (w.ns == orchestrate.NamespaceAll || w.ns == obj.Meta().Namespace)
}

// copyEvent returns ev with a copy of its object, for one watcher.
func copyEvent(ev orchestrate.WatchEvent) orchestrate.WatchEvent {
	if ev.Object != nil {
		ev.Object = ev.Object.DeepCopy()
	}
	return ev
}

// current returns the stored object of kind under k, checking meta's
// ResourceVersion and UID; s.mu is held.
func (s *store) current(kind string, k key, meta *orchestrate.ObjectMeta, op string) (orchestrate.Object, error) {
	cur, ok := s.objects[kind][k]
	if !ok {
		return nil, fmt.Errorf("%s %s: %w", op, describe(kind, k), orchestrate.ErrNotFound)
	}
	if err := storeutil.CheckVersion(op, cur, meta); err != nil {
		return nil, err
	}
	return cur, nil
}
