package orchestrate

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"
)

// NewMemoryStore returns a Store that keeps objects in memory, the
// default Store of a Manager. It is safe for concurrent use. Writes
// never wait for watchers: each watch has its own unbounded buffer, so a
// slow reader delays only itself.
func NewMemoryStore() Store {
	return &memoryStore{objects: map[string]map[string]Object{}}
}

type memoryStore struct {
	mu       sync.Mutex
	objects  map[string]map[string]Object // kind → name → stored copy
	rev      uint64                       // last ResourceVersion handed out
	watchers []*storeWatcher
	now      func() time.Time // for CreationTime; nil means time.Now
}

// storeWatcher buffers the events of one Watch and feeds its channel.
type storeWatcher struct {
	kind  string
	mu    sync.Mutex
	queue []WatchEvent
	wake  chan struct{} // 1-buffered: there is something in queue
	out   chan WatchEvent
}

// revision returns the ResourceVersion of the latest write: the Manager
// uses it to know when its watch has seen every write.
func (s *memoryStore) revision() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rev
}

func (s *memoryStore) Create(ctx context.Context, obj Object) (Object, error) {
	if err := checkObject(obj); err != nil {
		return nil, err
	}
	kind, meta := obj.Kind(), obj.Meta()
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.objects[kind][meta.Name]; ok {
		return nil, fmt.Errorf("create %s %s: %w", kind, meta.Name, ErrExists)
	}
	stored := obj.DeepCopy()
	// Status is observed state: a new object has none, whatever the
	// caller sent (as the Kubernetes API server does).
	if f := reflect.ValueOf(stored).Elem().FieldByName("Status"); f.IsValid() {
		f.Set(reflect.Zero(f.Type()))
	}
	m := stored.Meta()
	m.UID = newUID()
	m.Generation = 1
	m.DeletionTime = nil
	s.rev++
	m.ResourceVersion = s.rev
	if s.now != nil {
		m.CreationTime = s.now()
	} else {
		m.CreationTime = time.Now()
	}
	if s.objects[kind] == nil {
		s.objects[kind] = map[string]Object{}
	}
	s.objects[kind][m.Name] = stored
	s.notify(WatchAdded, stored)
	return stored.DeepCopy(), nil
}

func (s *memoryStore) Update(ctx context.Context, obj Object) (Object, error) {
	if err := checkObject(obj); err != nil {
		return nil, err
	}
	kind, meta := obj.Kind(), obj.Meta()
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.current(kind, meta, "update")
	if err != nil {
		return nil, err
	}
	next := obj.DeepCopy()
	nm, cm := next.Meta(), cur.Meta()
	nm.UID, nm.CreationTime, nm.Generation = cm.UID, cm.CreationTime, cm.Generation
	nm.ResourceVersion = cm.ResourceVersion
	setStatus(next, statusOf(cur.DeepCopy())) // the status is kept
	if cm.DeletionTime != nil {
		// A graceful delete cannot be undone, and what is being deleted
		// does not change its spec.
		t := *cm.DeletionTime
		nm.DeletionTime = &t
		if !reflect.DeepEqual(specOf(next), specOf(cur)) {
			return nil, fmt.Errorf("update %s %s: the object is being deleted; its spec cannot change: %w", kind, meta.Name, ErrInvalid)
		}
	} else if nm.DeletionTime != nil && kind != KindPod {
		// Nothing would ever finish the deletion of another kind.
		return nil, fmt.Errorf("update %s %s: only pods are deleted gracefully (DeletionTime); delete it instead: %w", kind, meta.Name, ErrInvalid)
	}
	if !reflect.DeepEqual(specOf(next), specOf(cur)) {
		nm.Generation++
	}
	if reflect.DeepEqual(next, cur) {
		return cur.DeepCopy(), nil // nothing changed: no write, no event
	}
	s.rev++
	nm.ResourceVersion = s.rev
	s.objects[kind][nm.Name] = next
	s.notify(WatchModified, next)
	return next.DeepCopy(), nil
}

func (s *memoryStore) UpdateStatus(ctx context.Context, obj Object) (Object, error) {
	if err := checkObject(obj); err != nil {
		return nil, err
	}
	kind, meta := obj.Kind(), obj.Meta()
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.current(kind, meta, "update status")
	if err != nil {
		return nil, err
	}
	st := statusOf(obj)
	if !st.IsValid() {
		return nil, fmt.Errorf("update status of %s %s: the kind has no status: %w", kind, meta.Name, ErrInvalid)
	}
	if reflect.DeepEqual(st.Interface(), statusOf(cur).Interface()) {
		return cur.DeepCopy(), nil
	}
	next := cur.DeepCopy()
	setStatus(next, statusOf(obj.DeepCopy()))
	s.rev++
	next.Meta().ResourceVersion = s.rev
	s.objects[kind][meta.Name] = next
	s.notify(WatchModified, next)
	return next.DeepCopy(), nil
}

func (s *memoryStore) Delete(ctx context.Context, kind, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.objects[kind][name]
	if !ok {
		return fmt.Errorf("delete %s %s: %w", kind, name, ErrNotFound)
	}
	delete(s.objects[kind], name)
	s.rev++
	cur.Meta().ResourceVersion = s.rev // the deletion's version, as Kubernetes does
	s.notify(WatchDeleted, cur)
	return nil
}

func (s *memoryStore) Get(ctx context.Context, kind, name string) (Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, ok := s.objects[kind][name]
	if !ok {
		return nil, fmt.Errorf("get %s %s: %w", kind, name, ErrNotFound)
	}
	return cur.DeepCopy(), nil
}

func (s *memoryStore) List(ctx context.Context, kind string, sel *LabelSelector) ([]Object, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Object
	for _, o := range s.objects[kind] {
		if sel.Matches(o.Meta().Labels) {
			out = append(out, o.DeepCopy())
		}
	}
	slices.SortFunc(out, func(a, b Object) int { return strings.Compare(a.Meta().Name, b.Meta().Name) })
	return out, nil
}

func (s *memoryStore) Watch(ctx context.Context, kind string, sendInitial bool) (<-chan WatchEvent, error) {
	ch, _, _ := s.watchAt(ctx, kind, sendInitial)
	return ch, nil
}

// watchAt is Watch that also returns the store's revision when the watch
// began and how many initial events come first: once those are
// received, the watcher has seen every write up to that revision.
func (s *memoryStore) watchAt(ctx context.Context, kind string, sendInitial bool) (<-chan WatchEvent, uint64, int) {
	w := &storeWatcher{kind: kind, wake: make(chan struct{}, 1), out: make(chan WatchEvent)}
	s.mu.Lock()
	rev := s.rev
	if sendInitial {
		var initial []Object
		for k, objs := range s.objects {
			if kind != "" && k != kind {
				continue
			}
			for _, o := range objs {
				initial = append(initial, o)
			}
		}
		slices.SortFunc(initial, func(a, b Object) int {
			if c := strings.Compare(a.Kind(), b.Kind()); c != 0 {
				return c
			}
			return strings.Compare(a.Meta().Name, b.Meta().Name)
		})
		for _, o := range initial {
			w.queue = append(w.queue, WatchEvent{Type: WatchAdded, Object: o.DeepCopy()})
		}
		if len(w.queue) > 0 {
			w.wake <- struct{}{}
		}
	}
	s.watchers = append(s.watchers, w)
	n := len(w.queue)
	s.mu.Unlock()
	go s.pump(ctx, w)
	return w.out, rev, n
}

// pump sends w's buffered events on its channel until ctx ends.
func (s *memoryStore) pump(ctx context.Context, w *storeWatcher) {
	defer func() {
		s.mu.Lock()
		s.watchers = slices.DeleteFunc(s.watchers, func(x *storeWatcher) bool { return x == w })
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
			w.queue[0] = WatchEvent{}
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

// notify queues an event for every watcher of obj's kind; s.mu is held.
func (s *memoryStore) notify(typ WatchEventType, obj Object) {
	for _, w := range s.watchers {
		if w.kind != "" && w.kind != obj.Kind() {
			continue
		}
		w.mu.Lock()
		w.queue = append(w.queue, WatchEvent{Type: typ, Object: obj.DeepCopy()})
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// current returns the stored object that meta names, checking its
// ResourceVersion; s.mu is held.
func (s *memoryStore) current(kind string, meta *ObjectMeta, op string) (Object, error) {
	cur, ok := s.objects[kind][meta.Name]
	if !ok {
		return nil, fmt.Errorf("%s %s %s: %w", op, kind, meta.Name, ErrNotFound)
	}
	if meta.ResourceVersion != 0 && meta.ResourceVersion != cur.Meta().ResourceVersion {
		return nil, fmt.Errorf("%s %s %s: version %d, stored %d: %w", op, kind, meta.Name,
			meta.ResourceVersion, cur.Meta().ResourceVersion, ErrConflict)
	}
	if meta.UID != "" && meta.UID != cur.Meta().UID {
		return nil, fmt.Errorf("%s %s %s: UID %s is not the stored object's: %w", op, kind, meta.Name, meta.UID, ErrConflict)
	}
	return cur, nil
}

// checkObject refuses what no store can hold.
func checkObject(obj Object) error {
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		return fmt.Errorf("nil object: %w", ErrInvalid)
	}
	if obj.Meta().Name == "" {
		return fmt.Errorf("%s: metadata.name: empty: %w", obj.Kind(), ErrInvalid)
	}
	return nil
}

// newUID returns a random UUID (version 4).
func newUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// specOf returns what counts as an object's spec for Generation: its
// Spec field, or for kinds without one (ConfigMap, Secret) every field
// but the metadata and status.
func specOf(obj Object) any {
	v := reflect.ValueOf(obj).Elem()
	if f := v.FieldByName("Spec"); f.IsValid() {
		return f.Interface()
	}
	var parts []any
	for i := range v.NumField() {
		switch v.Type().Field(i).Name {
		case "ObjectMeta", "Status":
		default:
			if v.Type().Field(i).IsExported() {
				parts = append(parts, v.Field(i).Interface())
			}
		}
	}
	return parts
}

// statusOf returns an object's Status field (the zero Value if it has none).
func statusOf(obj Object) reflect.Value {
	return reflect.ValueOf(obj).Elem().FieldByName("Status")
}

// setStatus sets an object's Status field to st, if it has one.
func setStatus(obj Object, st reflect.Value) {
	if f := reflect.ValueOf(obj).Elem().FieldByName("Status"); f.IsValid() && st.IsValid() {
		f.Set(st)
	}
}
