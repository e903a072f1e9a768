package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// namespaceRecheck is how long a terminating Namespace waits before it
// looks again for what is left in it, besides the deletions that bring
// it back.
const namespaceRecheck = 5 * time.Second

// namespaceController marks Namespaces Active, and empties and removes
// those being deleted (Kubernetes' namespace lifecycle controller).
type namespaceController struct {
	m *Manager
}

// registerNamespaces registers the Namespace controller.
func registerNamespaces(m *Manager) {
	c := &namespaceController{m: m}
	m.register(KindNamespace, reconcile.Func[string](c.reconcile), c.keysFor, c.validate)
}

func (c *namespaceController) validate(ctx context.Context, obj Object) error {
	if _, ok := obj.(*Namespace); !ok {
		return invalidf("kind", "%T is not a *Namespace", obj)
	}
	return nil
}

// keysFor maps a change to the Namespaces it concerns: the Namespace
// itself, and the namespace of an object added or deleted (a terminating
// one checks again what is left in it).
func (c *namespaceController) keysFor(ev WatchEvent) []string {
	if n, ok := ev.Object.(*Namespace); ok {
		return []string{n.Name}
	}
	if ns := ev.Object.Meta().Namespace; ns != "" && ev.Type != WatchModified {
		return []string{ns}
	}
	return nil
}

// startNamespaceDeletion sets a Namespace's DeletionTime (unless it is
// set already); the controller does the rest.
func (m *Manager) startNamespaceDeletion(ctx context.Context, name string) error {
	if name == NamespaceDefault {
		return fmt.Errorf("delete Namespace %s: the default namespace cannot be deleted: %w", name, ErrInvalid)
	}
	for {
		n, err := Get[*Namespace](ctx, m.store, "", name)
		if err != nil {
			return fmt.Errorf("delete Namespace %s: %w", name, err)
		}
		if n.DeletionTime != nil {
			return nil
		}
		now := m.clock.Now()
		n.DeletionTime = &now
		_, err = m.store.Update(ctx, n)
		if errors.Is(err, ErrConflict) && ctx.Err() == nil {
			continue
		}
		return err
	}
}

func (c *namespaceController) reconcile(ctx context.Context, name string) (reconcile.Result, error) {
	m := c.m
	// Most keys come from objects added to an active namespace, or to
	// the default one, which need not exist as an object: the watch's
	// state says so without a store read. (A Namespace's own change,
	// its first listing included, reaches the watch's state before the
	// reconcile its event brings.)
	switch w, ok := m.watched.get(KindNamespace, "", name).(*Namespace); {
	case !ok, w.DeletionTime == nil && w.Status.Phase == NamespaceActive:
		return reconcile.Result{}, nil
	}
	n, err := Get[*Namespace](ctx, m.store, "", name)
	if errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	phase := NamespaceActive
	if n.DeletionTime != nil {
		phase = NamespaceTerminating
	}
	if n.Status.Phase != phase {
		n.Status.Phase = phase
		if n, err = storeUpdateStatus(ctx, m.store, n); err != nil {
			return reconcile.Result{}, err
		}
	}
	if n.DeletionTime == nil {
		return reconcile.Result{}, nil
	}
	// Empty it: every kind the Manager knows, pods gracefully.
	left := 0
	var errs []error
	for _, kind := range m.kindOrder {
		if ClusterScoped(kind) {
			continue
		}
		objs, err := m.store.List(ctx, kind, name, nil)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, o := range objs {
			left++
			if kind == KindPod {
				err = m.startPodDeletion(ctx, name, o.Meta().Name)
			} else {
				err = m.store.Delete(ctx, kind, name, o.Meta().Name)
			}
			if err != nil && !errors.Is(err, ErrNotFound) {
				errs = append(errs, fmt.Errorf("delete %s %s/%s of a deleted namespace: %w", kind, name, o.Meta().Name, err))
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return reconcile.Result{}, err
	}
	if left > 0 {
		// The deletions bring it back; pods being deleted take their
		// grace period.
		return reconcile.Result{RequeueAfter: namespaceRecheck}, nil
	}
	if err := m.store.Delete(ctx, KindNamespace, "", name); err != nil && !errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, err
	}
	m.log.Debug("namespace deleted", "namespace", name)
	return reconcile.Result{}, nil
}

// storeUpdateStatus is UpdateStatus returning obj's type.
func storeUpdateStatus[T Object](ctx context.Context, s Store, obj T) (T, error) {
	return typed[T](s.UpdateStatus(ctx, obj))
}
