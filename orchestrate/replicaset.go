package orchestrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// replicaSetController keeps each ReplicaSet's pods at its replicas, as
// Kubernetes' pkg/controller/replicaset does.
type replicaSetController struct{ m *Manager }

func registerReplicaSet(m *Manager) {
	c := &replicaSetController{m: m}
	m.register(KindReplicaSet, reconcile.Func[string](c.reconcile), c.keysFor, c.validate)
}

// validate refuses a ReplicaSet that cannot work: a bad name, negative
// replicas, an empty selector or one that does not match the template,
// a pod spec that does not validate (unknown image, duplicate container
// names), or a changed selector.
func (c *replicaSetController) validate(ctx context.Context, obj Object) error {
	rs, ok := obj.(*ReplicaSet)
	if !ok {
		return fmt.Errorf("%w: %T is not a ReplicaSet", ErrInvalid, obj)
	}
	if err := c.m.validateWorkload(ctx, obj, rs.Spec.Replicas, rs.Spec.MinReadySeconds, rs.Spec.Selector, &rs.Spec.Template, true); err != nil {
		return err
	}
	return c.m.checkSelectorUnchanged(ctx, obj, rs.Spec.Selector, func(old Object) *LabelSelector { return old.(*ReplicaSet).Spec.Selector })
}

// validateWorkload checks what ReplicaSets and Deployments share.
// Errors wrap ErrInvalid and name the field.
func (m *Manager) validateWorkload(ctx context.Context, obj Object, replicas, minReady int, sel *LabelSelector, tmpl *PodTemplate, always bool) error {
	meta := obj.Meta()
	if err := validateName("metadata.name", meta.Name); err != nil {
		return err
	}
	if err := validateLabels("metadata.labels", meta.Labels); err != nil {
		return err
	}
	if replicas < 0 {
		return invalidf("spec.replicas", "%d must not be negative", replicas)
	}
	if minReady < 0 {
		return invalidf("spec.minReadySeconds", "%d must not be negative", minReady)
	}
	if err := validateTemplateSelector(sel, tmpl); err != nil {
		return err
	}
	if always && tmpl.Spec.RestartPolicy != "" && tmpl.Spec.RestartPolicy != RestartPolicyAlways {
		return invalidf("spec.template.spec.restartPolicy", "%q: only %q is allowed for a %s", tmpl.Spec.RestartPolicy, RestartPolicyAlways, obj.Kind())
	}
	return m.validatePodSpec(ctx, "spec.template.spec", &tmpl.Spec)
}

// validateTemplateSelector checks that sel is valid, not empty, and
// matches the template's labels, and that the template's labels and
// annotations are valid.
func validateTemplateSelector(sel *LabelSelector, tmpl *PodTemplate) error {
	if sel == nil || (len(sel.MatchLabels) == 0 && len(sel.MatchExpressions) == 0) {
		return invalidf("spec.selector", "must not be empty")
	}
	if err := validateSelector("spec.selector", sel); err != nil {
		return err
	}
	if err := validateLabels("spec.template.labels", tmpl.Labels); err != nil {
		return err
	}
	if err := validateAnnotations("spec.template.annotations", tmpl.Annotations); err != nil {
		return err
	}
	if !sel.Matches(tmpl.Labels) {
		return invalidf("spec.template.labels", "%v do not match spec.selector", tmpl.Labels)
	}
	return nil
}

// checkSelectorUnchanged refuses an update that changes the selector of
// a stored object (immutable, as in Kubernetes' apps/v1).
func (m *Manager) checkSelectorUnchanged(ctx context.Context, obj Object, sel *LabelSelector, selOf func(Object) *LabelSelector) error {
	old, err := m.store.Get(ctx, obj.Kind(), obj.Meta().Namespace, obj.Meta().Name)
	if err != nil {
		return nil // a new object (or the store will say why on write)
	}
	if !reflect.DeepEqual(normalize(reflect.ValueOf(selOf(old))).Interface(), normalize(reflect.ValueOf(sel)).Interface()) {
		return invalidf("spec.selector", "field is immutable")
	}
	return nil
}

// keysFor maps a change to the ReplicaSets it concerns: the ReplicaSet
// itself, a pod's controller, or for a pod no one controls, the
// ReplicaSets that would adopt it.
func (c *replicaSetController) keysFor(ev WatchEvent) []string {
	switch o := ev.Object.(type) {
	case *ReplicaSet:
		return []string{keyOf(o)}
	case *Pod:
		if ref := controllerOf(&o.ObjectMeta); ref != nil {
			if ref.Kind == KindReplicaSet {
				return []string{objectKey(o.Namespace, ref.Name)}
			}
			return nil
		}
		if ev.Type == WatchDeleted || !podActive(o) {
			return nil
		}
		var keys []string
		for _, rs := range watched[*ReplicaSet](c.m.watched, NamespaceOf(KindPod, o.Namespace)) {
			if rs.Spec.Selector.Matches(o.Labels) {
				keys = append(keys, keyOf(rs))
			}
		}
		return keys
	}
	return nil
}

// reconcile brings one ReplicaSet's pods to its replicas and writes its
// status.
func (c *replicaSetController) reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	m := c.m
	namespace, name := splitKey(key)
	rs, err := Get[*ReplicaSet](ctx, m.store, namespace, name)
	if errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, nil // deleted: the manager removes its pods
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	pods, err := m.claimPods(ctx, rs, rs.Spec.Selector)
	if err != nil {
		return reconcile.Result{}, err
	}
	active := slices.DeleteFunc(pods, func(p *Pod) bool { return !podActive(p) })
	active, manageErr := c.manageReplicas(ctx, rs, active)

	now := m.clock.Now()
	minReady := time.Duration(rs.Spec.MinReadySeconds) * time.Second
	st := ReplicaSetStatus{ObservedGeneration: rs.Generation, Replicas: len(active)}
	if manageErr != nil {
		st.ObservedGeneration = rs.Status.ObservedGeneration
	}
	var res reconcile.Result
	for _, p := range active {
		if !p.Status.Ready {
			continue
		}
		st.ReadyReplicas++
		if podAvailable(p, minReady, now) {
			st.AvailableReplicas++
		} else if !p.Status.ReadySince.IsZero() {
			// Look again when it will have been ready long enough.
			after := p.Status.ReadySince.Add(minReady).Sub(now)
			if res.RequeueAfter == 0 || after < res.RequeueAfter {
				res.RequeueAfter = after
			}
		}
	}
	if st != rs.Status {
		rs.Status = st
		if _, err := m.store.UpdateStatus(ctx, rs); err != nil && !errors.Is(err, ErrNotFound) {
			return reconcile.Result{}, fmt.Errorf("update status of ReplicaSet %s: %w", name, err)
		}
	}
	return res, manageErr
}

// manageReplicas creates or deletes pods so that active has
// rs.Spec.Replicas of them, and returns the pods it now has.
func (c *replicaSetController) manageReplicas(ctx context.Context, rs *ReplicaSet, active []*Pod) ([]*Pod, error) {
	m := c.m
	diff := len(active) - rs.Spec.Replicas
	switch {
	case diff < 0:
		for range -diff {
			p, err := m.createPod(ctx, rs, &rs.Spec.Template, nil)
			if err != nil {
				m.recordEvent(rs, EventWarning, "FailedCreate", "Error creating: %v", err)
				return active, err
			}
			m.recordEvent(rs, EventNormal, "SuccessfulCreate", "Created pod: %s", p.Name)
			active = append(active, p)
		}
	case diff > 0:
		victims := podsToDelete(active, diff)
		for _, p := range victims {
			if err := m.deletePod(ctx, p.Namespace, p.Name); err != nil {
				m.recordEvent(rs, EventWarning, "FailedDelete", "Error deleting: %v", err)
				return active, err
			}
			m.recordEvent(rs, EventNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
			active = slices.DeleteFunc(active, func(q *Pod) bool { return q == p })
		}
	}
	return active, nil
}

// claimPods returns the pods owner controls that sel matches: it adopts
// the active pods sel matches that no one controls, and releases the
// pods it controls that sel no longer matches (as Kubernetes'
// PodControllerRefManager).
func (m *Manager) claimPods(ctx context.Context, owner Object, sel *LabelSelector) ([]*Pod, error) {
	all, err := m.listPods(ctx, owner.Meta().Namespace, nil)
	if err != nil {
		return nil, err
	}
	uid := owner.Meta().UID
	var out []*Pod
	for _, p := range all {
		ref := controllerOf(&p.ObjectMeta)
		matches := sel.Matches(p.Labels)
		switch {
		case ref != nil && ref.Kind == owner.Kind() && ref.UID == uid:
			if matches {
				out = append(out, p)
				continue
			}
			p.OwnerReferences = slices.DeleteFunc(p.OwnerReferences, func(r OwnerReference) bool { return r.UID == uid })
			if _, err := m.store.Update(ctx, p); err != nil && !errors.Is(err, ErrNotFound) {
				return nil, fmt.Errorf("release pod %s: %w", p.Name, err)
			}
			m.log.Debug("released pod", "pod", p.Name, "owner", owner.Meta().Name)
		case ref == nil && matches && podActive(p):
			p.OwnerReferences = append(p.OwnerReferences, controllerRef(owner))
			adopted, err := storeUpdate(ctx, m.store, p)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("adopt pod %s: %w", p.Name, err)
			}
			m.log.Debug("adopted pod", "pod", p.Name, "owner", owner.Meta().Name)
			out = append(out, adopted)
		}
	}
	return out, nil
}

// podsToDelete returns the n pods to delete first when scaling down.
func podsToDelete(pods []*Pod, n int) []*Pod {
	sorted := slices.Clone(pods)
	slices.SortStableFunc(sorted, compareForDeletion)
	return sorted[:min(n, len(sorted))]
}

// compareForDeletion orders pods as Kubernetes' ActivePods does, the
// pod to delete first first: not yet running before running, not ready
// before ready, ready for less time before ready for longer, more
// container restarts before fewer, newer before older.
func compareForDeletion(a, b *Pod) int {
	if c := cmp.Compare(phaseRank(a.Status.Phase), phaseRank(b.Status.Phase)); c != 0 {
		return c
	}
	if a.Status.Ready != b.Status.Ready {
		if !a.Status.Ready {
			return -1
		}
		return 1
	}
	if a.Status.Ready {
		ra, rb := a.Status.ReadySince, b.Status.ReadySince
		switch {
		case ra.IsZero() != rb.IsZero():
			if ra.IsZero() {
				return -1
			}
			return 1
		case !ra.Equal(rb):
			return rb.Compare(ra) // ready since later: ready for less time
		}
	}
	if c := cmp.Compare(restarts(b), restarts(a)); c != 0 {
		return c
	}
	ca, cb := a.CreationTime, b.CreationTime
	if ca.IsZero() != cb.IsZero() {
		if ca.IsZero() {
			return -1
		}
		return 1
	}
	if c := cb.Compare(ca); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// phaseRank: pending (or not yet seen) < unknown < running.
func phaseRank(p PodPhase) int {
	switch p {
	case PodPending, "":
		return 0
	case PodRunning:
		return 2
	default:
		return 1
	}
}
