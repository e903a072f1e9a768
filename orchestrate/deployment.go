package orchestrate

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Condition types and reasons of a Deployment, as in Kubernetes.
const (
	// DeploymentAvailable: at least replicas minus maxUnavailable pods
	// are available.
	DeploymentAvailable = "Available"
	// DeploymentProgressing: the rollout makes progress (true), or has
	// not within the progress deadline (false, ReasonProgressDeadlineExceeded),
	// or is paused (false, ReasonDeploymentPaused).
	DeploymentProgressing = "Progressing"

	// ReasonMinimumReplicasAvailable: Available is true.
	ReasonMinimumReplicasAvailable = "MinimumReplicasAvailable"
	// ReasonMinimumReplicasUnavailable: Available is false.
	ReasonMinimumReplicasUnavailable = "MinimumReplicasUnavailable"
	// ReasonNewReplicaSetCreated: a rollout began with a new ReplicaSet.
	ReasonNewReplicaSetCreated = "NewReplicaSetCreated"
	// ReasonFoundNewReplicaSet: the ReplicaSet of the template exists.
	ReasonFoundNewReplicaSet = "FoundNewReplicaSet"
	// ReasonReplicaSetUpdated: the rollout made progress.
	ReasonReplicaSetUpdated = "ReplicaSetUpdated"
	// ReasonNewReplicaSetAvailable: the rollout is complete.
	ReasonNewReplicaSetAvailable = "NewReplicaSetAvailable"
	// ReasonProgressDeadlineExceeded: no progress within the deadline.
	ReasonProgressDeadlineExceeded = "ProgressDeadlineExceeded"
	// ReasonDeploymentPaused: Spec.Paused holds the rollout.
	ReasonDeploymentPaused = "DeploymentPaused"
	// ReasonDeploymentResumed: the rollout goes on after a pause.
	ReasonDeploymentResumed = "DeploymentResumed"
)

// defaultProgressDeadline is what a ProgressDeadline of 0 means.
const defaultProgressDeadline = 600 * time.Second

// defaultRevisionHistoryLimit is what a nil RevisionHistoryLimit means.
const defaultRevisionHistoryLimit = 10

// deploymentController rolls Deployments out through ReplicaSets, as
// Kubernetes' pkg/controller/deployment does.
type deploymentController struct{ m *Manager }

func registerDeployment(m *Manager) {
	c := &deploymentController{m: m}
	m.register(KindDeployment, reconcile.Func[string](c.reconcile), c.keysFor, c.validate)
}

// validate refuses a Deployment that cannot work: what validateWorkload
// checks, an unknown strategy, negative or both-zero maxSurge and
// maxUnavailable, maxUnavailable over 100%, rolling parameters with
// Recreate, a negative history limit or progress deadline, a deadline
// not longer than minReadySeconds, or a changed selector.
func (c *deploymentController) validate(ctx context.Context, obj Object) error {
	d, ok := obj.(*Deployment)
	if !ok {
		return fmt.Errorf("%w: %T is not a Deployment", ErrInvalid, obj)
	}
	s := d.Spec.Strategy
	switch s.Type {
	case "", RollingUpdateDeploymentStrategyType:
		if err := validateIntOrPercent("spec.strategy.maxSurge", s.MaxSurge, false); err != nil {
			return err
		}
		if err := validateIntOrPercent("spec.strategy.maxUnavailable", s.MaxUnavailable, true); err != nil {
			return err
		}
		if s.MaxSurge != nil && s.MaxUnavailable != nil && s.MaxSurge.Value == 0 && s.MaxUnavailable.Value == 0 {
			return invalidf("spec.strategy.maxUnavailable", "may not be 0 when maxSurge is 0")
		}
	case RecreateDeploymentStrategyType:
		if s.MaxSurge != nil || s.MaxUnavailable != nil {
			return invalidf("spec.strategy", "maxSurge and maxUnavailable may not be set with %s", RecreateDeploymentStrategyType)
		}
	default:
		return invalidf("spec.strategy.type", "%q is not %s or %s", s.Type, RollingUpdateDeploymentStrategyType, RecreateDeploymentStrategyType)
	}
	if d.Spec.RevisionHistoryLimit != nil && *d.Spec.RevisionHistoryLimit < 0 {
		return invalidf("spec.revisionHistoryLimit", "%d must not be negative", *d.Spec.RevisionHistoryLimit)
	}
	if d.Spec.ProgressDeadline < 0 {
		return invalidf("spec.progressDeadline", "%v must not be negative", d.Spec.ProgressDeadline)
	}
	if pd := progressDeadline(d); pd <= time.Duration(d.Spec.MinReadySeconds)*time.Second {
		return invalidf("spec.progressDeadline", "%v must be longer than minReadySeconds (%ds)", pd, d.Spec.MinReadySeconds)
	}
	if err := c.m.validateWorkload(ctx, obj, d.Spec.Replicas, d.Spec.MinReadySeconds, d.Spec.Selector, &d.Spec.Template, true); err != nil {
		return err
	}
	return c.m.checkSelectorUnchanged(ctx, obj, d.Spec.Selector, func(old Object) *LabelSelector { return old.(*Deployment).Spec.Selector })
}

// keysFor maps a change to the Deployments it concerns: the Deployment
// itself, a ReplicaSet's controller (or for one no one controls, the
// Deployments that would adopt it), and a pod's ReplicaSet's controller.
func (c *deploymentController) keysFor(ev WatchEvent) []string {
	switch o := ev.Object.(type) {
	case *Deployment:
		return []string{keyOf(o)}
	case *ReplicaSet:
		if ref := controllerOf(&o.ObjectMeta); ref != nil {
			if ref.Kind == KindDeployment {
				return []string{objectKey(o.Namespace, ref.Name)}
			}
			return nil
		}
		if ev.Type == WatchDeleted {
			return nil
		}
		var keys []string
		for _, d := range watched[*Deployment](c.m.watched, NamespaceOf(KindReplicaSet, o.Namespace)) {
			if d.Spec.Selector.Matches(o.Labels) {
				keys = append(keys, keyOf(d))
			}
		}
		return keys
	case *Pod:
		ref := controllerOf(&o.ObjectMeta)
		if ref == nil || ref.Kind != KindReplicaSet {
			return nil
		}
		obj := c.m.watched.get(KindReplicaSet, o.Namespace, ref.Name)
		if obj == nil {
			return nil
		}
		if ref := controllerOf(obj.Meta()); ref != nil && ref.Kind == KindDeployment {
			return []string{objectKey(o.Namespace, ref.Name)}
		}
	}
	return nil
}

// rsView is a Deployment's ReplicaSet with the pods it controls, read
// from the store in the same pass: the controller decides on pod counts,
// not on the ReplicaSet's status, which lags (see maxPods and
// availableCapped).
type rsView struct {
	rs   *ReplicaSet
	pods int // active pods
	// terminating pods are being deleted and their containers may still
	// run: a Recreate rollout waits for them (Kubernetes' oldPodsRunning).
	terminating int
	ready       int
	available   int
	// nextAvailable is the soonest a ready pod becomes available
	// (zero if none is waiting).
	nextAvailable time.Time
}

// replicas is the ReplicaSet's desired size.
func (v *rsView) replicas() int {
	if v == nil {
		return 0
	}
	return v.rs.Spec.Replicas
}

// maxPods is the most pods the ReplicaSet can have now or later
// without being scaled up: its replicas, or more while it still has to
// delete pods.
func (v *rsView) maxPods() int {
	if v == nil {
		return 0
	}
	return max(v.rs.Spec.Replicas, v.pods)
}

// availableCapped is how many available pods the ReplicaSet keeps at
// least: when it must still scale down, it deletes unavailable pods first.
func (v *rsView) availableCapped() int {
	if v == nil {
		return 0
	}
	return min(v.available, v.rs.Spec.Replicas)
}

// deploymentSync is one reconcile of one Deployment.
type deploymentSync struct {
	c       *deploymentController
	d       *Deployment
	orig    DeploymentStatus // d.Status as read, before conditions changed
	views   []*rsView
	now     time.Time
	requeue time.Duration
}

// reconcile makes one pass of Kubernetes' syncDeployment.
func (c *deploymentController) reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	m := c.m
	namespace, name := splitKey(key)
	d, err := Get[*Deployment](ctx, m.store, namespace, name)
	if errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, nil // deleted: the manager removes its ReplicaSets
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	s := &deploymentSync{c: c, d: d, now: m.clock.Now()}
	s.orig = d.Status
	s.orig.Conditions = slices.Clone(d.Status.Conditions)
	if err := s.load(ctx); err != nil {
		return reconcile.Result{}, err
	}
	s.checkPausedConditions()
	if d.Spec.Paused {
		err = s.sync(ctx)
	} else if s.isScalingEvent() {
		err = s.sync(ctx)
	} else if d.Spec.Strategy.Type == RecreateDeploymentStrategyType {
		err = s.rolloutRecreate(ctx)
	} else {
		err = s.rolloutRolling(ctx)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	return reconcile.Result{RequeueAfter: s.requeue}, nil
}

// load claims the Deployment's ReplicaSets (adopting orphans its
// selector matches, releasing those it no longer matches) and counts
// their pods.
func (s *deploymentSync) load(ctx context.Context) error {
	m, d := s.c.m, s.d
	all, err := List[*ReplicaSet](ctx, m.store, d.Namespace, nil)
	if err != nil {
		return err
	}
	var owned []*ReplicaSet
	for _, rs := range all {
		ref := controllerOf(&rs.ObjectMeta)
		matches := d.Spec.Selector.Matches(rs.Labels)
		switch {
		case ref != nil && ref.Kind == KindDeployment && ref.UID == d.UID:
			if matches {
				owned = append(owned, rs)
				continue
			}
			rs.OwnerReferences = slices.DeleteFunc(rs.OwnerReferences, func(r OwnerReference) bool { return r.UID == d.UID })
			if _, err := m.store.Update(ctx, rs); err != nil && !errors.Is(err, ErrNotFound) {
				return fmt.Errorf("release ReplicaSet %s: %w", rs.Name, err)
			}
		case ref == nil && matches:
			rs.OwnerReferences = append(rs.OwnerReferences, controllerRef(d))
			adopted, err := storeUpdate(ctx, m.store, rs)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("adopt ReplicaSet %s: %w", rs.Name, err)
			}
			owned = append(owned, adopted)
		}
	}
	pods, err := m.listPods(ctx, d.Namespace, nil)
	if err != nil {
		return err
	}
	byUID := make(map[string]*rsView, len(owned))
	s.views = s.views[:0]
	for _, rs := range owned {
		v := &rsView{rs: rs}
		byUID[rs.UID] = v
		s.views = append(s.views, v)
	}
	minReady := time.Duration(d.Spec.MinReadySeconds) * time.Second
	for _, p := range pods {
		ref := controllerOf(&p.ObjectMeta)
		if ref == nil || ref.Kind != KindReplicaSet {
			continue
		}
		v := byUID[ref.UID]
		if v == nil {
			continue
		}
		if podTerminating(p) {
			v.terminating++
		}
		if !podActive(p) {
			continue
		}
		v.pods++
		if !p.Status.Ready {
			continue
		}
		v.ready++
		if podAvailable(p, minReady, s.now) {
			v.available++
		} else if at := p.Status.ReadySince.Add(minReady); !p.Status.ReadySince.IsZero() && (v.nextAvailable.IsZero() || at.Before(v.nextAvailable)) {
			v.nextAvailable = at
		}
	}
	slices.SortFunc(s.views, func(a, b *rsView) int { return compareByCreation(a.rs, b.rs) })
	return nil
}

// compareByCreation orders ReplicaSets oldest first.
func compareByCreation(a, b *ReplicaSet) int {
	if c := a.CreationTime.Compare(b.CreationTime); c != 0 {
		return c
	}
	return cmp.Compare(a.Name, b.Name)
}

// split returns the ReplicaSet whose template is the Deployment's (the
// oldest such) and the others, oldest first.
func (s *deploymentSync) split() (newRS *rsView, old []*rsView) {
	for _, v := range s.views {
		if newRS == nil && templatesEqual(v.rs.Spec.Template, s.d.Spec.Template) {
			newRS = v
			continue
		}
		old = append(old, v)
	}
	return newRS, old
}

// maxSurge is the Deployment's surge in pods (0 unless rolling).
func maxSurge(d *Deployment) int {
	if d.Spec.Strategy.Type == RecreateDeploymentStrategyType {
		return 0
	}
	surge, _ := resolveFenceposts(d.Spec.Strategy, d.Spec.Replicas)
	return surge
}

// maxUnavailable is the Deployment's unavailable allowance in pods (0
// unless rolling), at most its replicas.
func maxUnavailable(d *Deployment) int {
	if d.Spec.Strategy.Type == RecreateDeploymentStrategyType || d.Spec.Replicas == 0 {
		return 0
	}
	_, u := resolveFenceposts(d.Spec.Strategy, d.Spec.Replicas)
	return min(u, d.Spec.Replicas)
}

// progressDeadline is the Deployment's progress deadline with its default.
func progressDeadline(d *Deployment) time.Duration {
	if d.Spec.ProgressDeadline == 0 {
		return defaultProgressDeadline
	}
	return d.Spec.ProgressDeadline
}

// syncRevision finds the new ReplicaSet, creating it when create is set,
// and gives it the revision after the old ones' (Kubernetes'
// getAllReplicaSetsAndSyncRevision).
func (s *deploymentSync) syncRevision(ctx context.Context, create bool) (*rsView, []*rsView, error) {
	m, d := s.c.m, s.d
	newRS, old := s.split()
	var maxOld int64
	for _, v := range old {
		maxOld = max(maxOld, revisionOf(v.rs))
	}
	revision := maxOld + 1
	if newRS != nil {
		rs := deepCopy(newRS.rs)
		changed := false
		if revisionOf(rs) < revision {
			setAnnotation(&rs.ObjectMeta, AnnotationRevision, strconv.FormatInt(revision, 10))
			changed = true
		}
		if rs.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
			rs.Spec.MinReadySeconds = d.Spec.MinReadySeconds
			changed = true
		}
		if changed {
			updated, err := storeUpdate(ctx, m.store, rs)
			if err != nil {
				return nil, nil, fmt.Errorf("update ReplicaSet %s: %w", rs.Name, err)
			}
			newRS.rs = updated
		}
		if getCondition(d.Status.Conditions, DeploymentProgressing) == nil {
			s.setProgressing(ReasonFoundNewReplicaSet, fmt.Sprintf("Found new replica set %q", newRS.rs.Name))
		}
		return newRS, old, nil
	}
	if !create {
		return nil, old, nil
	}
	replicas := s.newRSNewReplicas(nil)
	base := d.Name
	if len(base) > maxNameLen-11 {
		base = base[:maxNameLen-11]
	}
	for collisions := 0; collisions < 10; collisions++ {
		hash := templateHash(d.Spec.Template, collisions)
		tmpl := deepCopyTemplate(d.Spec.Template)
		tmpl.Labels = copyLabels(tmpl.Labels, map[string]string{LabelPodTemplateHash: hash})
		sel := copySelector(d.Spec.Selector)
		sel.MatchLabels = copyLabels(sel.MatchLabels, map[string]string{LabelPodTemplateHash: hash})
		rs := &ReplicaSet{
			ObjectMeta: ObjectMeta{
				Name:      base + "-" + hash,
				Namespace: d.Namespace,
				Labels:    copyLabels(tmpl.Labels, nil),
				Annotations: map[string]string{
					AnnotationRevision:        strconv.FormatInt(revision, 10),
					AnnotationDesiredReplicas: strconv.Itoa(d.Spec.Replicas),
					AnnotationMaxReplicas:     strconv.Itoa(d.Spec.Replicas + maxSurge(d)),
				},
				OwnerReferences: []OwnerReference{controllerRef(d)},
			},
			Spec: ReplicaSetSpec{Replicas: replicas, Selector: sel, Template: tmpl, MinReadySeconds: d.Spec.MinReadySeconds},
		}
		created, err := storeCreate(ctx, m.store, rs)
		if errors.Is(err, ErrExists) {
			continue // a ReplicaSet of that name is someone else's: hash again
		}
		if err != nil {
			return nil, nil, fmt.Errorf("create ReplicaSet for Deployment %s: %w", d.Name, err)
		}
		v := &rsView{rs: created}
		s.views = append(s.views, v)
		if replicas > 0 {
			m.recordEvent(d, EventNormal, "ScalingReplicaSet", "Scaled up replica set %s to %d", rs.Name, replicas)
		}
		s.setProgressing(ReasonNewReplicaSetCreated, fmt.Sprintf("Created new replica set %q", rs.Name))
		return v, old, nil
	}
	return nil, nil, fmt.Errorf("create ReplicaSet for Deployment %s: names taken: %w", d.Name, ErrExists)
}

// setProgressing sets the Progressing condition true with reason.
func (s *deploymentSync) setProgressing(reason, msg string) {
	s.d.Status.Conditions = setCondition(s.d.Status.Conditions, Condition{Type: DeploymentProgressing, Status: true, Reason: reason, Message: msg}, s.now)
}

// setAnnotation sets one annotation of meta.
func setAnnotation(meta *ObjectMeta, k, v string) {
	if meta.Annotations == nil {
		meta.Annotations = map[string]string{}
	}
	meta.Annotations[k] = v
}

// copySelector returns an independent copy of sel (an empty one for nil).
func copySelector(sel *LabelSelector) *LabelSelector {
	if sel == nil {
		return &LabelSelector{}
	}
	return deepCopy(sel)
}

// scaleRS scales one ReplicaSet, recording the Deployment's replicas and
// surge on it, and reports whether its size changed.
func (s *deploymentSync) scaleRS(ctx context.Context, v *rsView, replicas int) (bool, error) {
	m, d := s.c.m, s.d
	rs := deepCopy(v.rs)
	from := rs.Spec.Replicas
	sized := from != replicas
	desired, maxReplicas := strconv.Itoa(d.Spec.Replicas), strconv.Itoa(d.Spec.Replicas+maxSurge(d))
	annotated := rs.Annotations[AnnotationDesiredReplicas] != desired || rs.Annotations[AnnotationMaxReplicas] != maxReplicas
	if !sized && !annotated {
		return false, nil
	}
	rs.Spec.Replicas = replicas
	setAnnotation(&rs.ObjectMeta, AnnotationDesiredReplicas, desired)
	setAnnotation(&rs.ObjectMeta, AnnotationMaxReplicas, maxReplicas)
	scaled, err := storeUpdate(ctx, m.store, rs)
	if err != nil {
		return false, fmt.Errorf("scale ReplicaSet %s to %d: %w", rs.Name, replicas, err)
	}
	v.rs = scaled
	if sized {
		dir := "up"
		if replicas < from {
			dir = "down"
		}
		m.recordEvent(d, EventNormal, "ScalingReplicaSet", "Scaled %s replica set %s from %d to %d", dir, rs.Name, from, replicas)
	}
	return sized, nil
}

// newRSNewReplicas is the size the new ReplicaSet may have now
// (Kubernetes' NewRSNewReplicas): for a rolling update, as many more pods
// as the surge allows, counting the pods old ReplicaSets still have.
func (s *deploymentSync) newRSNewReplicas(newRS *rsView) int {
	d := s.d
	if d.Spec.Strategy.Type == RecreateDeploymentStrategyType {
		return d.Spec.Replicas
	}
	current := 0
	for _, v := range s.views {
		current += v.maxPods()
	}
	maxTotal := d.Spec.Replicas + maxSurge(d)
	if current >= maxTotal {
		return newRS.replicas()
	}
	up := min(maxTotal-current, d.Spec.Replicas-newRS.replicas())
	return newRS.replicas() + max(up, 0)
}

// rolloutRolling is Kubernetes' rolling.go: scale the new ReplicaSet up
// as far as the surge allows, else the old ones down as far as the
// unavailable allowance allows, unhealthy pods first.
func (s *deploymentSync) rolloutRolling(ctx context.Context) error {
	newRS, old, err := s.syncRevision(ctx, true)
	if err != nil {
		return err
	}
	scaledUp, err := s.reconcileNewReplicaSet(ctx, newRS)
	if err != nil {
		return err
	}
	if scaledUp {
		return s.syncRolloutStatus(ctx, newRS)
	}
	scaledDown, err := s.reconcileOldReplicaSets(ctx, newRS, old)
	if err != nil {
		return err
	}
	if scaledDown {
		return s.syncRolloutStatus(ctx, newRS)
	}
	if deploymentComplete(s.d, &s.orig) {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(ctx, newRS)
}

func (s *deploymentSync) reconcileNewReplicaSet(ctx context.Context, newRS *rsView) (bool, error) {
	d := s.d
	switch {
	case newRS.replicas() == d.Spec.Replicas:
		return false, nil
	case newRS.replicas() > d.Spec.Replicas:
		return s.scaleRS(ctx, newRS, d.Spec.Replicas)
	}
	return s.scaleRS(ctx, newRS, s.newRSNewReplicas(newRS))
}

func (s *deploymentSync) reconcileOldReplicaSets(ctx context.Context, newRS *rsView, old []*rsView) (bool, error) {
	d := s.d
	oldPods := 0
	for _, v := range old {
		oldPods += v.replicas()
	}
	if oldPods == 0 {
		return false, nil // can't scale down further
	}
	allPods := oldPods + newRS.replicas()
	minAvailable := d.Spec.Replicas - maxUnavailable(d)
	newRSUnavailable := newRS.replicas() - newRS.availableCapped()
	maxScaledDown := allPods - minAvailable - newRSUnavailable
	if maxScaledDown <= 0 {
		return false, nil
	}
	// Unhealthy replicas first: they would block the rollout otherwise.
	cleaned, err := s.cleanupUnhealthyReplicas(ctx, old, maxScaledDown)
	if err != nil {
		return false, err
	}
	scaled, err := s.scaleDownOldForRollingUpdate(ctx, newRS, old)
	if err != nil {
		return false, err
	}
	return cleaned+scaled > 0, nil
}

// cleanupUnhealthyReplicas scales old ReplicaSets down by their
// unavailable pods, oldest first, at most maxCleanup in all.
func (s *deploymentSync) cleanupUnhealthyReplicas(ctx context.Context, old []*rsView, maxCleanup int) (int, error) {
	total := 0
	for _, v := range old {
		if total >= maxCleanup {
			break
		}
		if v.replicas() == 0 || v.replicas() == v.availableCapped() {
			continue
		}
		n := min(maxCleanup-total, v.replicas()-v.availableCapped())
		if _, err := s.scaleRS(ctx, v, v.replicas()-n); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// scaleDownOldForRollingUpdate scales old ReplicaSets down, oldest first,
// by as many pods as are available beyond replicas minus maxUnavailable.
func (s *deploymentSync) scaleDownOldForRollingUpdate(ctx context.Context, newRS *rsView, old []*rsView) (int, error) {
	d := s.d
	minAvailable := d.Spec.Replicas - maxUnavailable(d)
	available := newRS.availableCapped()
	for _, v := range old {
		available += v.availableCapped()
	}
	if available <= minAvailable {
		return 0, nil
	}
	want := available - minAvailable
	total := 0
	for _, v := range old {
		if total >= want {
			break
		}
		if v.replicas() == 0 {
			continue
		}
		n := min(v.replicas(), want-total)
		if _, err := s.scaleRS(ctx, v, v.replicas()-n); err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

// rolloutRecreate is Kubernetes' recreate.go: scale every old
// ReplicaSet to zero, wait until their pods are gone (terminating ones
// included: a deleted pod stays until its containers have stopped), then
// create and scale up the new one.
func (s *deploymentSync) rolloutRecreate(ctx context.Context) error {
	newRS, old, err := s.syncRevision(ctx, false)
	if err != nil {
		return err
	}
	scaledDown := false
	for _, v := range old {
		if v.replicas() > 0 {
			if _, err := s.scaleRS(ctx, v, 0); err != nil {
				return err
			}
			scaledDown = true
		}
	}
	if scaledDown {
		return s.syncRolloutStatus(ctx, newRS)
	}
	for _, v := range old {
		if v.pods > 0 || v.terminating > 0 {
			// Old pods still running, or being deleted: their containers
			// may run until they are gone.
			return s.syncRolloutStatus(ctx, newRS)
		}
	}
	if newRS == nil {
		if newRS, old, err = s.syncRevision(ctx, true); err != nil {
			return err
		}
	}
	if newRS.replicas() != s.d.Spec.Replicas {
		if _, err := s.scaleRS(ctx, newRS, s.d.Spec.Replicas); err != nil {
			return err
		}
	}
	if deploymentComplete(s.d, &s.orig) {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	return s.syncRolloutStatus(ctx, newRS)
}

// isScalingEvent reports whether the Deployment's replicas changed since
// its active ReplicaSets were last scaled.
func (s *deploymentSync) isScalingEvent() bool {
	for _, v := range s.views {
		if v.replicas() == 0 {
			continue
		}
		desired, err := strconv.Atoi(v.rs.Annotations[AnnotationDesiredReplicas])
		if err == nil && desired != s.d.Spec.Replicas {
			return true
		}
	}
	return false
}

// sync scales without rolling out (a paused Deployment, or a change of
// replicas), cleans up old ReplicaSets when paused, and writes the status.
func (s *deploymentSync) sync(ctx context.Context) error {
	newRS, old, err := s.syncRevision(ctx, false)
	if err != nil {
		return err
	}
	if err := s.scale(ctx, newRS, old); err != nil {
		return err
	}
	if s.d.Spec.Paused {
		if err := s.cleanup(ctx, old); err != nil {
			return err
		}
	}
	return s.writeStatus(ctx, s.calculateStatus(newRS))
}

// scale is Kubernetes' proportional scaling: with one active ReplicaSet
// it gets all the replicas; with several, the change is shared out in
// proportion to their sizes, leftovers to the largest.
func (s *deploymentSync) scale(ctx context.Context, newRS *rsView, old []*rsView) error {
	d := s.d
	if v := activeOrLatest(newRS, old); v != nil {
		if v.replicas() == d.Spec.Replicas {
			return nil
		}
		_, err := s.scaleRS(ctx, v, d.Spec.Replicas)
		return err
	}
	if newRS != nil && newRS.rs.Annotations[AnnotationDesiredReplicas] == strconv.Itoa(d.Spec.Replicas) &&
		newRS.replicas() == d.Spec.Replicas && newRS.available == d.Spec.Replicas {
		for _, v := range old {
			if v.replicas() > 0 {
				if _, err := s.scaleRS(ctx, v, 0); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if d.Spec.Strategy.Type == RecreateDeploymentStrategyType {
		return nil
	}
	var active []*rsView
	total := 0
	for _, v := range append(slices.Clone(old), newRS) {
		if v != nil && v.replicas() > 0 {
			active = append(active, v)
			total += v.replicas()
		}
	}
	allowed := 0
	if d.Spec.Replicas > 0 {
		allowed = d.Spec.Replicas + maxSurge(d)
	}
	toAdd := allowed - total
	slices.SortStableFunc(active, func(a, b *rsView) int {
		if c := cmp.Compare(b.replicas(), a.replicas()); c != 0 {
			return c // larger first
		}
		if toAdd > 0 {
			return compareByCreation(b.rs, a.rs) // newer first
		}
		return compareByCreation(a.rs, b.rs) // older first
	})
	sizes := make([]int, len(active))
	added := 0
	for i, v := range active {
		sizes[i] = v.replicas()
		if toAdd != 0 {
			p := s.proportion(v, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	for i, v := range active {
		if i == 0 && toAdd != 0 {
			sizes[i] = max(sizes[i]+toAdd-added, 0)
		}
		if _, err := s.scaleRS(ctx, v, sizes[i]); err != nil {
			return err
		}
	}
	return nil
}

// proportion is Kubernetes' GetProportion: the share of toAdd for one
// ReplicaSet, given that added has been handed out already.
func (s *deploymentSync) proportion(v *rsView, toAdd, added int) int {
	if v.replicas() == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	d := s.d
	var fraction int
	if d.Spec.Replicas == 0 {
		fraction = -v.replicas()
	} else {
		target := d.Spec.Replicas + maxSurge(d)
		annotated, err := strconv.Atoi(v.rs.Annotations[AnnotationMaxReplicas])
		if err != nil || annotated <= 0 {
			annotated = max(s.orig.Replicas, 1)
		}
		fraction = int(math.Round(float64(v.replicas()*target)/float64(annotated))) - v.replicas()
	}
	allowed := toAdd - added
	if toAdd > 0 {
		return min(fraction, allowed)
	}
	return max(fraction, allowed)
}

// activeOrLatest returns the only ReplicaSet with replicas, or when none
// has any, the newest; nil when several have replicas.
func activeOrLatest(newRS *rsView, old []*rsView) *rsView {
	var active []*rsView
	for _, v := range append(slices.Clone(old), newRS) {
		if v != nil && v.replicas() > 0 {
			active = append(active, v)
		}
	}
	switch len(active) {
	case 0:
		if newRS != nil {
			return newRS
		}
		if len(old) > 0 {
			return old[len(old)-1] // old is oldest first
		}
		return nil
	case 1:
		return active[0]
	}
	return nil
}

// cleanup deletes the oldest old ReplicaSets with no replicas and no pods
// beyond the revision history limit.
func (s *deploymentSync) cleanup(ctx context.Context, old []*rsView) error {
	limit := defaultRevisionHistoryLimit
	if s.d.Spec.RevisionHistoryLimit != nil {
		limit = *s.d.Spec.RevisionHistoryLimit
	}
	diff := len(old) - limit
	if diff <= 0 {
		return nil
	}
	byRevision := slices.Clone(old)
	slices.SortStableFunc(byRevision, func(a, b *rsView) int {
		if c := cmp.Compare(revisionOf(a.rs), revisionOf(b.rs)); c != 0 {
			return c
		}
		return compareByCreation(a.rs, b.rs)
	})
	for _, v := range byRevision[:diff] {
		if v.replicas() != 0 || v.pods != 0 || v.rs.Status.Replicas != 0 || v.rs.Generation > v.rs.Status.ObservedGeneration {
			continue
		}
		if err := s.c.m.store.Delete(ctx, KindReplicaSet, v.rs.Namespace, v.rs.Name); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("delete old ReplicaSet %s: %w", v.rs.Name, err)
		}
		s.views = slices.DeleteFunc(s.views, func(x *rsView) bool { return x == v })
	}
	return nil
}

// calculateStatus counts the pods of the Deployment's ReplicaSets and sets
// the Available condition.
func (s *deploymentSync) calculateStatus(newRS *rsView) DeploymentStatus {
	d := s.d
	st := DeploymentStatus{
		ObservedGeneration: d.Generation,
		Revision:           s.orig.Revision,
		Conditions:         slices.Clone(d.Status.Conditions),
	}
	total := 0
	for _, v := range s.views {
		st.Replicas += v.pods
		st.ReadyReplicas += v.ready
		st.AvailableReplicas += v.available
		total += v.replicas()
		if !v.nextAvailable.IsZero() {
			s.requeueAt(v.nextAvailable)
		}
	}
	if newRS != nil {
		st.UpdatedReplicas = newRS.pods
		st.Revision = revisionOf(newRS.rs)
	}
	st.UnavailableReplicas = max(total-st.AvailableReplicas, 0)
	if st.AvailableReplicas >= d.Spec.Replicas-maxUnavailable(d) {
		st.Conditions = setCondition(st.Conditions, Condition{Type: DeploymentAvailable, Status: true, Reason: ReasonMinimumReplicasAvailable, Message: "Deployment has minimum availability."}, s.now)
	} else {
		st.Conditions = setCondition(st.Conditions, Condition{Type: DeploymentAvailable, Status: false, Reason: ReasonMinimumReplicasUnavailable, Message: "Deployment does not have minimum availability."}, s.now)
	}
	return st
}

// requeueAt asks for another pass at t.
func (s *deploymentSync) requeueAt(t time.Time) {
	after := max(t.Sub(s.now), time.Millisecond)
	if s.requeue == 0 || after < s.requeue {
		s.requeue = after
	}
}

// deploymentComplete reports whether every replica is updated and
// available (Kubernetes' DeploymentComplete).
func deploymentComplete(d *Deployment, st *DeploymentStatus) bool {
	return st.UpdatedReplicas == d.Spec.Replicas && st.Replicas == d.Spec.Replicas &&
		st.AvailableReplicas == d.Spec.Replicas && st.ObservedGeneration >= d.Generation
}

// deploymentProgressing reports whether st shows progress over the
// status last written: more updated, ready or available pods, or fewer
// old ones.
func deploymentProgressing(old, st *DeploymentStatus) bool {
	return st.UpdatedReplicas > old.UpdatedReplicas ||
		st.Replicas-st.UpdatedReplicas < old.Replicas-old.UpdatedReplicas ||
		st.ReadyReplicas > old.ReadyReplicas ||
		st.AvailableReplicas > old.AvailableReplicas
}

// syncRolloutStatus writes the status with the Progressing condition:
// complete, progressing, or past its deadline without progress (the
// condition's LastUpdate is the last progress).
func (s *deploymentSync) syncRolloutStatus(ctx context.Context, newRS *rsView) error {
	d := s.d
	st := s.calculateStatus(newRS)
	cur := getCondition(st.Conditions, DeploymentProgressing)
	complete := st.Replicas == st.UpdatedReplicas && cur != nil && cur.Reason == ReasonNewReplicaSetAvailable
	deadline := progressDeadline(d)
	if !complete {
		name := "Deployment " + d.Name
		if newRS != nil {
			name = "ReplicaSet " + newRS.rs.Name
		}
		switch {
		case deploymentComplete(d, &st):
			st.Conditions = setCondition(st.Conditions, Condition{Type: DeploymentProgressing, Status: true, Reason: ReasonNewReplicaSetAvailable, Message: name + " has successfully progressed."}, s.now)
		case deploymentProgressing(&s.orig, &st):
			c := Condition{Type: DeploymentProgressing, Status: true, Reason: ReasonReplicaSetUpdated, Message: name + " is progressing.", LastUpdate: s.now, LastTransition: s.now}
			if cur != nil && cur.Status {
				c.LastTransition = cur.LastTransition
			}
			st.Conditions = append(removeCondition(st.Conditions, DeploymentProgressing), c)
		case cur != nil && cur.Reason != ReasonProgressDeadlineExceeded && cur.Reason != ReasonNewReplicaSetAvailable &&
			cur.LastUpdate.Add(deadline).Before(s.now):
			st.Conditions = setCondition(st.Conditions, Condition{Type: DeploymentProgressing, Status: false, Reason: ReasonProgressDeadlineExceeded, Message: name + " has timed out progressing."}, s.now)
			s.c.m.recordEvent(d, EventWarning, ReasonProgressDeadlineExceeded, "%s has timed out progressing", name)
		}
	}
	// Look again when the deadline passes, unless done or past it already.
	if c := getCondition(st.Conditions, DeploymentProgressing); c != nil && !deploymentComplete(d, &st) &&
		c.Reason != ReasonProgressDeadlineExceeded && c.Reason != ReasonNewReplicaSetAvailable {
		s.requeueAt(c.LastUpdate.Add(deadline).Add(time.Millisecond))
	}
	return s.writeStatus(ctx, st)
}

// checkPausedConditions sets Progressing to DeploymentPaused when the
// Deployment is paused and to DeploymentResumed when it no longer is,
// leaving a ProgressDeadlineExceeded in place.
func (s *deploymentSync) checkPausedConditions() {
	d := s.d
	cur := getCondition(d.Status.Conditions, DeploymentProgressing)
	if cur != nil && cur.Reason == ReasonProgressDeadlineExceeded {
		return
	}
	paused := cur != nil && cur.Reason == ReasonDeploymentPaused
	switch {
	case d.Spec.Paused && !paused:
		d.Status.Conditions = setCondition(d.Status.Conditions, Condition{Type: DeploymentProgressing, Status: false, Reason: ReasonDeploymentPaused, Message: "Deployment is paused"}, s.now)
	case !d.Spec.Paused && paused:
		d.Status.Conditions = setCondition(d.Status.Conditions, Condition{Type: DeploymentProgressing, Status: true, Reason: ReasonDeploymentResumed, Message: "Deployment is resumed"}, s.now)
	}
}

// writeStatus stores st unless it is what was read.
func (s *deploymentSync) writeStatus(ctx context.Context, st DeploymentStatus) error {
	if deploymentStatusEqual(&s.orig, &st) {
		return nil
	}
	d := deepCopy(s.d)
	d.Status = st
	if _, err := s.c.m.store.UpdateStatus(ctx, d); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("update status of Deployment %s: %w", d.Name, err)
	}
	return nil
}

func deploymentStatusEqual(a, b *DeploymentStatus) bool {
	type counts struct {
		gen                                      int64
		replicas, updated, ready, avail, unavail int
		revision                                 int64
	}
	x := counts{a.ObservedGeneration, a.Replicas, a.UpdatedReplicas, a.ReadyReplicas, a.AvailableReplicas, a.UnavailableReplicas, a.Revision}
	y := counts{b.ObservedGeneration, b.Replicas, b.UpdatedReplicas, b.ReadyReplicas, b.AvailableReplicas, b.UnavailableReplicas, b.Revision}
	return x == y && slices.EqualFunc(a.Conditions, b.Conditions, func(p, q Condition) bool {
		return p.Type == q.Type && p.Status == q.Status && p.Reason == q.Reason && p.Message == q.Message &&
			p.LastTransition.Equal(q.LastTransition) && p.LastUpdate.Equal(q.LastUpdate)
	})
}

// Rollback rolls a Deployment back to an earlier revision, as kubectl
// rollout undo does: it copies the template of that revision's
// ReplicaSet into the Deployment's spec, so that the controller rolls it
// out again, under a new revision. Revision 0 means the one before the
// latest. Rolling back to the template in use changes nothing. A paused
// Deployment is refused; a revision that is not kept wraps ErrNotFound.
// namespace "" is NamespaceDefault.
func (m *Manager) Rollback(ctx context.Context, namespace, deployment string, revision int64) error {
	for range 5 {
		d, err := Get[*Deployment](ctx, m.store, namespace, deployment)
		if err != nil {
			return fmt.Errorf("rollback Deployment %s: %w", deployment, err)
		}
		if d.Spec.Paused {
			return fmt.Errorf("rollback Deployment %s: it is paused; resume it first", deployment)
		}
		all, err := List[*ReplicaSet](ctx, m.store, d.Namespace, nil)
		if err != nil {
			return fmt.Errorf("rollback Deployment %s: %w", deployment, err)
		}
		var latest, previous, target *ReplicaSet
		for _, rs := range all {
			if !isControlledBy(&rs.ObjectMeta, d) {
				continue
			}
			r := revisionOf(rs)
			switch {
			case revision != 0:
				if r == revision {
					target = rs
				}
			case latest == nil || r > revisionOf(latest):
				previous, latest = latest, rs
			case previous == nil || r > revisionOf(previous):
				previous = rs
			}
		}
		if revision == 0 {
			target = previous
		}
		if target == nil {
			if revision == 0 {
				return fmt.Errorf("rollback Deployment %s: no previous revision: %w", deployment, ErrNotFound)
			}
			return fmt.Errorf("rollback Deployment %s: revision %d: %w", deployment, revision, ErrNotFound)
		}
		if templatesEqual(d.Spec.Template, target.Spec.Template) {
			return nil // that revision is the one in use
		}
		tmpl := deepCopyTemplate(target.Spec.Template)
		tmpl.Labels = withoutLabel(tmpl.Labels, LabelPodTemplateHash)
		d.Spec.Template = tmpl
		_, err = m.store.Update(ctx, d)
		if errors.Is(err, ErrConflict) {
			continue // changed meanwhile: read it again
		}
		if err != nil {
			return fmt.Errorf("rollback Deployment %s: %w", deployment, err)
		}
		m.recordEvent(d, EventNormal, "DeploymentRollback", "Rolled back deployment %q to revision %d", deployment, revisionOf(target))
		return nil
	}
	return fmt.Errorf("rollback Deployment %s: %w", deployment, ErrConflict)
}
