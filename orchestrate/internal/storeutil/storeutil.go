// Package storeutil holds what every orchestrate.Store implementation
// does alike: checking what it is handed, telling an object's spec from
// its status, and making UIDs.
package storeutil

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"reflect"

	"github.com/berthlabs/berth/orchestrate"
)

// Check refuses what no store can hold: a nil object, one without a
// name, or one of a cluster-scoped kind that names a namespace
// (ErrInvalid).
func Check(obj orchestrate.Object) error {
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		return fmt.Errorf("nil object: %w", orchestrate.ErrInvalid)
	}
	m := obj.Meta()
	if m.Name == "" {
		return fmt.Errorf("%s: metadata.name: empty: %w", obj.Kind(), orchestrate.ErrInvalid)
	}
	if orchestrate.ClusterScoped(obj.Kind()) && m.Namespace != "" {
		return fmt.Errorf("%s %s: metadata.namespace: %q set on a cluster-scoped kind: %w", obj.Kind(), m.Name, m.Namespace, orchestrate.ErrInvalid)
	}
	return nil
}

// Namespace returns the namespace obj is stored in
// (orchestrate.NamespaceOf).
func Namespace(obj orchestrate.Object) string {
	return orchestrate.NamespaceOf(obj.Kind(), obj.Meta().Namespace)
}

// Graceful reports whether objects of a kind may be deleted gracefully
// (given a DeletionTime): a controller finishes the deletion of Pods and
// Namespaces, and of nothing else.
func Graceful(kind string) bool {
	return kind == orchestrate.KindPod || kind == orchestrate.KindNamespace
}

// NewUID returns a random UUID (version 4).
func NewUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// SpecEqual reports whether two objects of one kind have equal specs:
// their Spec fields, or for kinds without one (ConfigMap, Secret) every
// exported field but the metadata and status. Generation counts changes
// of it.
func SpecEqual(a, b orchestrate.Object) bool {
	return reflect.DeepEqual(specOf(a), specOf(b))
}

func specOf(obj orchestrate.Object) any {
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

// HasStatus reports whether obj's kind has a status (a Status field).
func HasStatus(obj orchestrate.Object) bool {
	return statusOf(obj).IsValid()
}

// StatusEqual reports whether two objects of one kind have equal
// statuses (true for kinds without one).
func StatusEqual(a, b orchestrate.Object) bool {
	sa, sb := statusOf(a), statusOf(b)
	if !sa.IsValid() || !sb.IsValid() {
		return sa.IsValid() == sb.IsValid()
	}
	return reflect.DeepEqual(sa.Interface(), sb.Interface())
}

// CopyStatus sets dst's status to a deep copy of src's (objects of one
// kind); it does nothing for kinds without a status.
func CopyStatus(dst, src orchestrate.Object) {
	f := statusOf(dst)
	if !f.IsValid() {
		return
	}
	st := statusOf(src.DeepCopy())
	if st.IsValid() {
		f.Set(st)
	}
}

// ClearStatus sets obj's status to its zero value.
func ClearStatus(obj orchestrate.Object) {
	if f := statusOf(obj); f.IsValid() {
		f.Set(reflect.Zero(f.Type()))
	}
}

// statusOf returns an object's Status field (the zero Value if it has
// none).
func statusOf(obj orchestrate.Object) reflect.Value {
	return reflect.ValueOf(obj).Elem().FieldByName("Status")
}

// Describe names an object in errors: "Pod default/web", or "Namespace
// team" for a cluster-scoped one.
func Describe(kind, namespace, name string) string {
	if namespace == "" {
		return kind + " " + name
	}
	return kind + " " + namespace + "/" + name
}

// CheckVersion refuses a conditional write (op, such as "update") of
// cur with the ResourceVersion and UID of meta: ErrConflict when either
// is set and not cur's.
func CheckVersion(op string, cur orchestrate.Object, meta *orchestrate.ObjectMeta) error {
	cm := cur.Meta()
	if meta.ResourceVersion != 0 && meta.ResourceVersion != cm.ResourceVersion {
		return fmt.Errorf("%s %s: version %d, stored %d: %w", op, Describe(cur.Kind(), cm.Namespace, cm.Name),
			meta.ResourceVersion, cm.ResourceVersion, orchestrate.ErrConflict)
	}
	if meta.UID != "" && meta.UID != cm.UID {
		return fmt.Errorf("%s %s: UID %s is not the stored object's: %w", op, Describe(cur.Kind(), cm.Namespace, cm.Name), meta.UID, orchestrate.ErrConflict)
	}
	return nil
}

// Updated returns what an Update of the stored object cur with obj
// stores: obj's metadata and spec, with cur's namespace, UID,
// CreationTime, ResourceVersion and status, Generation incremented when
// the spec changed, and a DeletionTime once set kept (ErrInvalid for a
// spec change of an object being deleted, and for a DeletionTime on a
// kind that is not deleted gracefully). The caller compares it with cur
// (reflect.DeepEqual) to tell a no-op, and sets the new version.
func Updated(cur, obj orchestrate.Object) (orchestrate.Object, error) {
	next := obj.DeepCopy()
	nm, cm := next.Meta(), cur.Meta()
	nm.Namespace = cm.Namespace
	nm.UID, nm.CreationTime, nm.Generation = cm.UID, cm.CreationTime, cm.Generation
	nm.ResourceVersion = cm.ResourceVersion
	CopyStatus(next, cur) // the status is kept
	specEqual := SpecEqual(next, cur)
	if cm.DeletionTime != nil {
		// A graceful delete cannot be undone, and what is being deleted
		// does not change its spec.
		t := *cm.DeletionTime
		nm.DeletionTime = &t
		if !specEqual {
			return nil, fmt.Errorf("update %s: the object is being deleted; its spec cannot change: %w", Describe(cur.Kind(), cm.Namespace, cm.Name), orchestrate.ErrInvalid)
		}
	} else if nm.DeletionTime != nil && !Graceful(cur.Kind()) {
		// Nothing would ever finish the deletion of another kind.
		return nil, fmt.Errorf("update %s: only pods and namespaces are deleted gracefully (DeletionTime); delete it instead: %w", Describe(cur.Kind(), cm.Namespace, cm.Name), orchestrate.ErrInvalid)
	}
	if !specEqual {
		nm.Generation++
	}
	return next, nil
}

// Created returns what a Create of obj stores, but for its UID,
// ResourceVersion and CreationTime: a copy in its namespace
// (Namespace), with Generation 1, no DeletionTime and no status.
func Created(obj orchestrate.Object) orchestrate.Object {
	stored := obj.DeepCopy()
	// Status is observed state: a new object has none, whatever the
	// caller sent (as the Kubernetes API server does).
	ClearStatus(stored)
	m := stored.Meta()
	m.Namespace = Namespace(obj)
	m.Generation = 1
	m.DeletionTime = nil
	return stored
}

// kinds makes an empty object of each kind a store can hold.
var kinds = map[string]func() orchestrate.Object{
	orchestrate.KindPod:        func() orchestrate.Object { return new(orchestrate.Pod) },
	orchestrate.KindReplicaSet: func() orchestrate.Object { return new(orchestrate.ReplicaSet) },
	orchestrate.KindDeployment: func() orchestrate.Object { return new(orchestrate.Deployment) },
	orchestrate.KindJob:        func() orchestrate.Object { return new(orchestrate.Job) },
	orchestrate.KindConfigMap:  func() orchestrate.Object { return new(orchestrate.ConfigMap) },
	orchestrate.KindSecret:     func() orchestrate.Object { return new(orchestrate.Secret) },
	orchestrate.KindNamespace:  func() orchestrate.Object { return new(orchestrate.Namespace) },
	orchestrate.KindService:    func() orchestrate.Object { return new(orchestrate.Service) },
	orchestrate.KindEndpoints:  func() orchestrate.Object { return new(orchestrate.Endpoints) },
	orchestrate.KindNode:       func() orchestrate.Object { return new(orchestrate.Node) },
	orchestrate.KindLease:      func() orchestrate.Object { return new(orchestrate.Lease) },
}

// NewObject returns an empty object of kind, nil for a kind no store
// holds: what a store that encodes objects decodes them into.
func NewObject(kind string) orchestrate.Object {
	if mk := kinds[kind]; mk != nil {
		return mk()
	}
	return nil
}
