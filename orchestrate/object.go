package orchestrate

import "reflect"

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

// deepCopy copies a pointer to a struct of plain data (no cycles, no
// channels or funcs), recursing into pointers, slices and maps.
func deepCopy[T any](p *T) *T {
	if p == nil {
		return nil
	}
	return copyValue(reflect.ValueOf(p)).Interface().(*T)
}

func copyValue(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		n := reflect.New(v.Elem().Type())
		n.Elem().Set(copyValue(v.Elem()))
		return n
	case reflect.Struct:
		n := reflect.New(v.Type()).Elem()
		n.Set(v) // unexported and scalar fields (time.Time) as they are
		for i := range v.NumField() {
			if n.Field(i).CanSet() {
				n.Field(i).Set(copyValue(v.Field(i)))
			}
		}
		return n
	case reflect.Slice:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			n.Index(i).Set(copyValue(v.Index(i)))
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return v
		}
		n := reflect.MakeMapWithSize(v.Type(), v.Len())
		it := v.MapRange()
		for it.Next() {
			n.SetMapIndex(it.Key(), copyValue(it.Value()))
		}
		return n
	default:
		return v
	}
}
