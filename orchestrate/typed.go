package orchestrate

import (
	"context"
	"fmt"
	"reflect"
)

// Reader reads objects by kind: a Store and a *Manager are Readers. Get
// and List read one with the object's Go type instead of a kind.
type Reader interface {
	// Get returns the object of a kind, namespace ("" is
	// NamespaceDefault) and name, or an error wrapping ErrNotFound.
	Get(ctx context.Context, kind, namespace, name string) (Object, error)
	// List returns the objects of a kind in namespace (NamespaceAll:
	// every namespace) whose labels match sel (nil: all), sorted by
	// namespace and name.
	List(ctx context.Context, kind, namespace string, sel *LabelSelector) ([]Object, error)
}

// Get returns the object named name in namespace ("" is
// NamespaceDefault; ignored for a cluster-scoped kind) of T's kind from
// r, as a T:
//
//	pod, err := orchestrate.Get[*orchestrate.Pod](ctx, m, "default", "web")
//
// The error wraps ErrNotFound when there is none; a stored object that
// is not a T (another Go type registered under the same kind) is an
// error too.
func Get[T Object](ctx context.Context, r Reader, namespace, name string) (T, error) {
	var zero T
	kind := KindOf[T]()
	obj, err := r.Get(ctx, kind, namespace, name)
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("get %s %s: the stored object is a %T, not a %T", kind, name, obj, zero)
	}
	return t, nil
}

// List returns the objects of T's kind in r and namespace (NamespaceAll:
// every namespace) whose labels match sel (nil: all), sorted by
// namespace and name, as Ts:
//
//	pods, err := orchestrate.List[*orchestrate.Pod](ctx, m, "default", orchestrate.SelectorFromLabels(map[string]string{"app": "web"}))
func List[T Object](ctx context.Context, r Reader, namespace string, sel *LabelSelector) ([]T, error) {
	kind := KindOf[T]()
	objs, err := r.List(ctx, kind, namespace, sel)
	if err != nil {
		return nil, err
	}
	out := make([]T, 0, len(objs))
	for _, obj := range objs {
		t, ok := obj.(T)
		if !ok {
			var zero T
			return nil, fmt.Errorf("list %s: the stored object %s is a %T, not a %T", kind, obj.Meta().Name, obj, zero)
		}
		out = append(out, t)
	}
	return out, nil
}

// KindOf returns the kind of the objects of Go type T, such as KindPod
// for *Pod. T's Kind method is called on a new, empty T.
func KindOf[T Object]() string {
	var zero T
	if t := reflect.TypeFor[T](); t.Kind() == reflect.Pointer {
		zero = reflect.New(t.Elem()).Interface().(T)
	}
	return zero.Kind()
}

// The typed writes of the controllers: each returns the stored object
// with obj's type.

func storeCreate[T Object](ctx context.Context, s Store, obj T) (T, error) {
	return typed[T](s.Create(ctx, obj))
}

func storeUpdate[T Object](ctx context.Context, s Store, obj T) (T, error) {
	return typed[T](s.Update(ctx, obj))
}

// typed converts a store's answer to T.
func typed[T Object](obj Object, err error) (T, error) {
	var zero T
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("the store returned a %T, not a %T", obj, zero)
	}
	return t, nil
}
