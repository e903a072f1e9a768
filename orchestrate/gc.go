package orchestrate

import (
	"context"
	"errors"
	"fmt"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// gcKey names an owner whose dependents the garbage collector checks.
type gcKey struct {
	Kind, Namespace, Name, UID string
}

// gcKinds are the kinds whose objects can have a controlling owner.
var gcKinds = []string{KindPod, KindReplicaSet, KindDeployment, KindJob, KindConfigMap, KindSecret}

// gcKeysFor maps a watch event to the owners to check: a deleted object
// (its dependents must go), and the controller of an added object, or of
// a modified one whose controller changed (the owner may have been
// deleted before it was set: an adoption racing the owner's deletion).
// It remembers each object's controller UID to tell; it is called from
// the one goroutine that dispatches the watch.
func (m *Manager) gcKeysFor(ev WatchEvent) []gcKey {
	meta := ev.Object.Meta()
	id := ev.Object.Kind() + "/" + meta.Namespace + "/" + meta.Name
	switch ev.Type {
	case WatchDeleted:
		delete(m.gcRefs, id)
		return []gcKey{{Kind: ev.Object.Kind(), Namespace: meta.Namespace, Name: meta.Name, UID: meta.UID}}
	case WatchAdded, WatchModified:
		ref := controllerOf(meta)
		if ref == nil {
			delete(m.gcRefs, id)
			return nil
		}
		prev, seen := m.gcRefs[id]
		m.gcRefs[id] = ref.UID
		if ev.Type == WatchAdded || !seen || prev != ref.UID {
			// Owner references reach the object's own namespace only.
			return []gcKey{{Kind: ref.Kind, Namespace: meta.Namespace, Name: ref.Name, UID: ref.UID}}
		}
	}
	return nil
}

// collect deletes the objects controlled by the owner k names, unless
// that owner (with that UID) still exists. The deletions cascade: each
// one is a Deleted event that brings its own dependents here.
func (m *Manager) collect(ctx context.Context, k gcKey) (res reconcile.Result, err error) {
	owner, err := m.store.Get(ctx, k.Kind, k.Namespace, k.Name)
	switch {
	case err == nil && owner.Meta().UID == k.UID:
		return res, nil // the owner lives
	case err != nil && !errors.Is(err, ErrNotFound):
		return res, err
	}
	var errs []error
	for _, kind := range gcKinds {
		if k.Namespace == "" {
			break // a cluster-scoped owner owns nothing (as namespaced objects' owners are in their namespace)
		}
		objs, err := m.store.List(ctx, kind, k.Namespace, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range objs {
			ref := controllerOf(o.Meta())
			if ref == nil || ref.UID != k.UID {
				continue
			}
			var err error
			if kind == KindPod {
				err = m.startPodDeletion(ctx, k.Namespace, o.Meta().Name) // graceful
			} else {
				err = m.store.Delete(ctx, kind, k.Namespace, o.Meta().Name)
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("garbage-collect %s %s: %w", kind, o.Meta().Name, err))
				continue
			}
			m.log.Debug("garbage-collected", "kind", kind, "name", o.Meta().Name, "namespace", k.Namespace, "owner", k.Kind+"/"+k.Name)
		}
	}
	return res, errors.Join(errs...)
}
