package orchestrate

import (
	"reflect"
	"sync"
)

// Kind returns KindPod.
func (p *Pod) Kind() string { return KindPod }

// Meta returns the pod's metadata.
func (p *Pod) Meta() *ObjectMeta { return &p.ObjectMeta }

// DeepCopy returns an independent copy of the pod.
func (p *Pod) DeepCopy() Object { return deepCopy(p) }

// Kind returns KindReplicaSet.
func (r *ReplicaSet) Kind() string { return KindReplicaSet }

// Meta returns the ReplicaSet's metadata.
func (r *ReplicaSet) Meta() *ObjectMeta { return &r.ObjectMeta }

// DeepCopy returns an independent copy of the ReplicaSet.
func (r *ReplicaSet) DeepCopy() Object { return deepCopy(r) }

// Kind returns KindDeployment.
func (d *Deployment) Kind() string { return KindDeployment }

// Meta returns the Deployment's metadata.
func (d *Deployment) Meta() *ObjectMeta { return &d.ObjectMeta }

// DeepCopy returns an independent copy of the Deployment.
func (d *Deployment) DeepCopy() Object { return deepCopy(d) }

// Kind returns KindJob.
func (j *Job) Kind() string { return KindJob }

// Meta returns the Job's metadata.
func (j *Job) Meta() *ObjectMeta { return &j.ObjectMeta }

// DeepCopy returns an independent copy of the Job.
func (j *Job) DeepCopy() Object { return deepCopy(j) }

// Kind returns KindConfigMap.
func (c *ConfigMap) Kind() string { return KindConfigMap }

// Meta returns the ConfigMap's metadata.
func (c *ConfigMap) Meta() *ObjectMeta { return &c.ObjectMeta }

// DeepCopy returns an independent copy of the ConfigMap.
func (c *ConfigMap) DeepCopy() Object { return deepCopy(c) }

// Kind returns KindSecret.
func (s *Secret) Kind() string { return KindSecret }

// Meta returns the Secret's metadata.
func (s *Secret) Meta() *ObjectMeta { return &s.ObjectMeta }

// DeepCopy returns an independent copy of the Secret.
func (s *Secret) DeepCopy() Object { return deepCopy(s) }

// Kind returns KindNamespace.
func (n *Namespace) Kind() string { return KindNamespace }

// Meta returns the Namespace's metadata.
func (n *Namespace) Meta() *ObjectMeta { return &n.ObjectMeta }

// DeepCopy returns an independent copy of the Namespace.
func (n *Namespace) DeepCopy() Object { return deepCopy(n) }

// deepCopy copies a pointer to a struct of plain data (no cycles, no
// channels or funcs), recursing into pointers, slices and maps reached
// through exported fields; unexported fields (inside time.Time) and
// interfaces are copied as they are.
func deepCopy[T any](p *T) *T {
	if p == nil {
		return nil
	}
	n := new(T)
	copyInto(reflect.ValueOf(n).Elem(), reflect.ValueOf(p).Elem())
	return n
}

// copyInto sets dst, which is settable and of src's type, to a deep copy
// of src. Values of flat types are assigned.
func copyInto(dst, src reflect.Value) {
	t := src.Type()
	if flat(t) {
		dst.Set(src)
		return
	}
	switch src.Kind() {
	case reflect.Pointer:
		if src.IsNil() {
			dst.Set(src)
			return
		}
		n := reflect.New(t.Elem())
		copyInto(n.Elem(), src.Elem())
		dst.Set(n)
	case reflect.Struct:
		dst.Set(src) // flat and unexported fields
		for i, f := range deepFields(t) {
			if f {
				copyInto(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Array:
		for i := range src.Len() {
			copyInto(dst.Index(i), src.Index(i))
		}
	case reflect.Slice:
		if src.IsNil() {
			dst.Set(src)
			return
		}
		n := reflect.MakeSlice(t, src.Len(), src.Len())
		if flat(t.Elem()) {
			reflect.Copy(n, src)
		} else {
			for i := range src.Len() {
				copyInto(n.Index(i), src.Index(i))
			}
		}
		dst.Set(n)
	case reflect.Map:
		if src.IsNil() {
			dst.Set(src)
			return
		}
		n := reflect.MakeMapWithSize(t, src.Len())
		elemFlat := flat(t.Elem())
		it := src.MapRange()
		for it.Next() {
			if elemFlat {
				n.SetMapIndex(it.Key(), it.Value())
				continue
			}
			e := reflect.New(t.Elem()).Elem()
			copyInto(e, it.Value())
			n.SetMapIndex(it.Key(), e)
		}
		dst.Set(n)
	default: // interfaces: as they are
		dst.Set(src)
	}
}

// flatTypes caches flat, deepFieldsOf caches deepFields, by type.
var flatTypes, deepFieldsOf sync.Map

// flat reports whether a value of type t is copied by assignment: no
// pointer, slice, map or interface is reachable through its exported
// fields (a struct's unexported fields are always assigned).
func flat(t reflect.Type) bool {
	if f, ok := flatTypes.Load(t); ok {
		return f.(bool)
	}
	f := true
	switch t.Kind() {
	case reflect.Pointer, reflect.Slice, reflect.Map, reflect.Interface:
		f = false
	case reflect.Array:
		f = flat(t.Elem())
	case reflect.Struct:
		for i := range t.NumField() {
			if sf := t.Field(i); sf.IsExported() && !flat(sf.Type) {
				f = false
				break
			}
		}
	}
	flatTypes.Store(t, f)
	return f
}

// deepFields reports, for each field of the struct type t, whether it
// must be copied deeply: exported and not flat.
func deepFields(t reflect.Type) []bool {
	if d, ok := deepFieldsOf.Load(t); ok {
		return d.([]bool)
	}
	d := make([]bool, t.NumField())
	for i := range d {
		sf := t.Field(i)
		d[i] = sf.IsExported() && !flat(sf.Type)
	}
	deepFieldsOf.Store(t, d)
	return d
}
