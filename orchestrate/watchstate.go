package orchestrate

import (
	"slices"
	"strings"
	"sync"
)

// watchState is the latest state of every object the Manager's store
// watch has shown, by kind. The controllers' keysFor read it, as
// Kubernetes' event handlers read their informers' caches: mapping a
// watch event to the keys it concerns then needs no store round trip,
// which the one goroutine dispatching the watch would wait on for every
// event. It holds the state as of the event being dispatched, and is
// never written to by readers: the objects are shared, read-only.
type watchState struct {
	mu   sync.RWMutex
	objs map[string]map[watchKey]Object
}

func newWatchState() *watchState { return &watchState{objs: map[string]map[watchKey]Object{}} }

// watchKey identifies an object among all kinds.
type watchKey struct{ kind, namespace, name string }

func keyOfObject(o Object) watchKey {
	m := o.Meta()
	return watchKey{o.Kind(), NamespaceOf(o.Kind(), m.Namespace), m.Name}
}

func (w *watchState) set(o Object) {
	k := keyOfObject(o)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.objs[k.kind] == nil {
		w.objs[k.kind] = map[watchKey]Object{}
	}
	w.objs[k.kind][k] = o
}

// delete removes the object and returns it (nil if there was none).
func (w *watchState) delete(k watchKey) Object {
	w.mu.Lock()
	defer w.mu.Unlock()
	o := w.objs[k.kind][k]
	delete(w.objs[k.kind], k)
	return o
}

// get returns the object, or nil.
func (w *watchState) get(kind, namespace, name string) Object {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.objs[kind][watchKey{kind, NamespaceOf(kind, namespace), name}]
}

// keys returns the keys of every object.
func (w *watchState) keys() []watchKey {
	w.mu.RLock()
	defer w.mu.RUnlock()
	var out []watchKey
	for _, objs := range w.objs {
		for k := range objs {
			out = append(out, k)
		}
	}
	return out
}

// watched returns the objects of T's kind in namespace (every
// namespace for NamespaceAll), by namespace and name, as List has them.
func watched[T Object](w *watchState, namespace string) []T {
	var zero T
	kind := zero.Kind()
	ns := NamespaceOf(kind, namespace)
	w.mu.RLock()
	var out []T
	for k, o := range w.objs[kind] {
		if namespace == NamespaceAll || k.namespace == ns {
			if t, ok := o.(T); ok {
				out = append(out, t)
			}
		}
	}
	w.mu.RUnlock()
	slices.SortFunc(out, func(a, b T) int {
		if c := strings.Compare(a.Meta().Namespace, b.Meta().Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Meta().Name, b.Meta().Name)
	})
	return out
}
