package orchestrate

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"reflect"
	"slices"
	"strconv"
	"time"
)

// Labels and annotations the workload controllers set.
const (
	// LabelPodTemplateHash is set on a Deployment's ReplicaSets, their
	// selectors and their pods: the hash of the pod template, which tells
	// the pods of one revision from another's (Kubernetes'
	// pod-template-hash).
	LabelPodTemplateHash = "pod-template-hash"
	// LabelJobName is set on a Job's pods: the Job's name.
	LabelJobName = "berth.dev/job-name"
	// AnnotationRevision on a Deployment's ReplicaSet is the revision of
	// its template (Kubernetes' deployment.kubernetes.io/revision).
	AnnotationRevision = "berth.dev/revision"
	// AnnotationDesiredReplicas on a Deployment's ReplicaSet is the
	// Deployment's replicas when the ReplicaSet was last scaled; a
	// different value marks a scaling event.
	AnnotationDesiredReplicas = "berth.dev/desired-replicas"
	// AnnotationMaxReplicas on a Deployment's ReplicaSet is the
	// Deployment's replicas plus its surge when the ReplicaSet was last
	// scaled, the base of proportional scaling.
	AnnotationMaxReplicas = "berth.dev/max-replicas"
)

// nameAlphabet is what random name suffixes and template hashes are made
// of: no vowels (no words), no 0, 1 or 3 (read as letters), as in
// Kubernetes.
const nameAlphabet = "bcdfghjklmnpqrstvwxz2456789"

// maxNameLen is the longest object name (a DNS label).
const maxNameLen = 63

// randomSuffix returns n random characters of nameAlphabet.
func randomSuffix(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = nameAlphabet[int(b[i])%len(nameAlphabet)]
	}
	return string(b)
}

// generateName returns base, cut to leave room, followed by "-" and 5
// random characters.
func generateName(base string) string {
	const suffix = 5
	if len(base) > maxNameLen-suffix-1 {
		base = base[:maxNameLen-suffix-1]
	}
	return base + "-" + randomSuffix(suffix)
}

// controllerOf returns the owner reference of meta that is its
// controller, or nil.
func controllerOf(meta *ObjectMeta) *OwnerReference {
	for i := range meta.OwnerReferences {
		if meta.OwnerReferences[i].Controller {
			return &meta.OwnerReferences[i]
		}
	}
	return nil
}

// controllerRef returns the owner reference that makes owner the
// controller of an object.
func controllerRef(owner Object) OwnerReference {
	m := owner.Meta()
	return OwnerReference{Kind: owner.Kind(), Name: m.Name, UID: m.UID, Controller: true}
}

// isControlledBy reports whether owner is the controller of meta.
func isControlledBy(meta *ObjectMeta, owner Object) bool {
	ref := controllerOf(meta)
	return ref != nil && ref.Kind == owner.Kind() && ref.UID == owner.Meta().UID
}

// copyLabels returns a copy of l with extra added.
func copyLabels(l map[string]string, extra map[string]string) map[string]string {
	out := make(map[string]string, len(l)+len(extra))
	for k, v := range l {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// createPod stores a new pod from tmpl, controlled by owner and named
// after it, with extra labels added to the template's.
func (m *Manager) createPod(ctx context.Context, owner Object, tmpl *PodTemplate, extra map[string]string) (*Pod, error) {
	for range 5 {
		p := &Pod{
			ObjectMeta: ObjectMeta{
				Name:            generateName(owner.Meta().Name),
				Namespace:       owner.Meta().Namespace,
				Labels:          copyLabels(tmpl.Labels, extra),
				OwnerReferences: []OwnerReference{controllerRef(owner)},
			},
			Spec: tmpl.Spec, // the store keeps a copy
		}
		if len(tmpl.Annotations) > 0 {
			p.Annotations = copyLabels(tmpl.Annotations, nil)
		}
		created, err := storeCreate(ctx, m.store, p)
		if errors.Is(err, ErrExists) {
			continue // the random name is taken: draw another
		}
		if err != nil {
			return nil, fmt.Errorf("create pod for %s %s: %w", owner.Kind(), owner.Meta().Name, err)
		}
		return created, nil
	}
	return nil, fmt.Errorf("create pod for %s %s: no free name: %w", owner.Kind(), owner.Meta().Name, ErrExists)
}

// deepCopyTemplate returns an independent copy of t.
func deepCopyTemplate(t PodTemplate) PodTemplate {
	return deepCopy(&ReplicaSet{Spec: ReplicaSetSpec{Template: t}}).Spec.Template
}

// podActive reports whether a pod still runs or is yet to run: it has not
// succeeded or failed for good and is not being deleted (Kubernetes'
// IsPodActive, which FilterActivePods uses).
func podActive(p *Pod) bool {
	return !podFinished(p) && p.DeletionTime == nil
}

// podFinished reports whether a pod succeeded or failed for good.
func podFinished(p *Pod) bool {
	return p.Status.Phase == PodSucceeded || p.Status.Phase == PodFailed
}

// podTerminating reports whether a pod is being deleted while its
// containers may still run: it has a DeletionTime and has not finished.
// Such a pod is not active, but its containers are not gone either.
func podTerminating(p *Pod) bool {
	return p.DeletionTime != nil && !podFinished(p)
}

// podAvailable reports whether a pod has been ready for minReady by now.
func podAvailable(p *Pod, minReady time.Duration, now time.Time) bool {
	if !p.Status.Ready {
		return false
	}
	if minReady <= 0 {
		return true
	}
	return !p.Status.ReadySince.IsZero() && !p.Status.ReadySince.Add(minReady).After(now)
}

// restarts returns the highest restart count of a pod's containers.
func restarts(p *Pod) int {
	n := 0
	for _, c := range p.Status.Containers {
		n = max(n, c.RestartCount)
	}
	return n
}

// listPods returns the pods of the store in namespace.
func (m *Manager) listPods(ctx context.Context, namespace string, sel *LabelSelector) ([]*Pod, error) {
	return List[*Pod](ctx, m.store, namespace, sel)
}

// deletePod deletes a pod gracefully (see startPodDeletion); one already
// gone is not an error.
func (m *Manager) deletePod(ctx context.Context, namespace, name string) error {
	if err := m.startPodDeletion(ctx, namespace, name); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("delete pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

// startPodDeletion begins the graceful deletion of a pod, as the
// Kubernetes API server does: it sets the pod's DeletionTime (unless it
// is set already), and the Pod controller stops its containers, tears
// its sandbox down and then removes the object. Without a runtime no Pod
// controller would ever do that, so the pod is removed at once. A pod
// that does not exist gives an error wrapping ErrNotFound.
func (m *Manager) startPodDeletion(ctx context.Context, namespace, name string) error {
	if m.runtime == nil {
		return m.store.Delete(ctx, KindPod, namespace, name)
	}
	for {
		p, err := Get[*Pod](ctx, m.store, namespace, name)
		if err != nil {
			return err
		}
		if p.DeletionTime != nil {
			return nil // being deleted already
		}
		now := m.clock.Now()
		p.DeletionTime = &now
		_, err = m.store.Update(ctx, p)
		if errors.Is(err, ErrConflict) && ctx.Err() == nil {
			continue // changed since read: read it again
		}
		return err
	}
}

// getCondition returns the condition of type typ, or nil.
func getCondition(conds []Condition, typ string) *Condition {
	for i := range conds {
		if conds[i].Type == typ {
			return &conds[i]
		}
	}
	return nil
}

// setCondition puts c into conds as Kubernetes does: a condition of the
// same type, status and reason is left as it is; one of the same status
// keeps its LastTransition. LastUpdate is now.
func setCondition(conds []Condition, c Condition, now time.Time) []Condition {
	c.LastUpdate = now
	c.LastTransition = now
	if cur := getCondition(conds, c.Type); cur != nil {
		if cur.Status == c.Status && cur.Reason == c.Reason {
			return conds
		}
		if cur.Status == c.Status {
			c.LastTransition = cur.LastTransition
		}
		conds = removeCondition(conds, c.Type)
	}
	return append(conds, c)
}

// removeCondition returns conds without the condition of type typ.
func removeCondition(conds []Condition, typ string) []Condition {
	return slices.DeleteFunc(slices.Clone(conds), func(c Condition) bool { return c.Type == typ })
}

// templateHash returns a short hash of a pod template (and of collisions,
// when the name it gives is taken), as Kubernetes' pod-template-hash.
func templateHash(t PodTemplate, collisions int) string {
	h := fnv.New64a()
	b, err := json.Marshal(normalize(reflect.ValueOf(t)).Interface())
	if err != nil {
		panic("orchestrate: hash pod template: " + err.Error())
	}
	h.Write(b)
	if collisions > 0 {
		h.Write([]byte(strconv.Itoa(collisions)))
	}
	v := h.Sum64()
	out := make([]byte, 10)
	for i := range out {
		out[i] = nameAlphabet[v%uint64(len(nameAlphabet))]
		v /= uint64(len(nameAlphabet))
	}
	return string(out)
}

// templatesEqual reports whether two pod templates are the same, with
// the pod-template-hash label left out and empty maps and slices taken as
// nil.
func templatesEqual(a, b PodTemplate) bool {
	a.Labels = withoutLabel(a.Labels, LabelPodTemplateHash)
	b.Labels = withoutLabel(b.Labels, LabelPodTemplateHash)
	return semanticEqual(a, b)
}

// semanticEqual reports whether a and b are deeply equal, with empty
// maps and slices taken as nil (as after a JSON round trip).
func semanticEqual[T any](a, b T) bool {
	return reflect.DeepEqual(normalize(reflect.ValueOf(a)).Interface(), normalize(reflect.ValueOf(b)).Interface())
}

// withoutLabel returns l without key (a copy when key is there).
func withoutLabel(l map[string]string, key string) map[string]string {
	if _, ok := l[key]; !ok {
		return l
	}
	out := copyLabels(l, nil)
	delete(out, key)
	return out
}

// normalize returns a copy of v in which empty maps and slices are nil,
// so that templates that mean the same compare and hash the same.
func normalize(v reflect.Value) reflect.Value {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return v
		}
		n := reflect.New(v.Elem().Type())
		n.Elem().Set(normalize(v.Elem()))
		return n
	case reflect.Struct:
		n := reflect.New(v.Type()).Elem()
		n.Set(v)
		for i := range v.NumField() {
			if n.Field(i).CanSet() {
				n.Field(i).Set(normalize(v.Field(i)))
			}
		}
		return n
	case reflect.Slice:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		n := reflect.MakeSlice(v.Type(), v.Len(), v.Len())
		for i := range v.Len() {
			n.Index(i).Set(normalize(v.Index(i)))
		}
		return n
	case reflect.Map:
		if v.Len() == 0 {
			return reflect.Zero(v.Type())
		}
		n := reflect.MakeMapWithSize(v.Type(), v.Len())
		it := v.MapRange()
		for it.Next() {
			n.SetMapIndex(it.Key(), normalize(it.Value()))
		}
		return n
	default:
		return v
	}
}

// revisionOf returns the revision annotation of a ReplicaSet (0 if none).
func revisionOf(rs *ReplicaSet) int64 {
	n, _ := strconv.ParseInt(rs.Annotations[AnnotationRevision], 10, 64)
	return n
}
