package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Condition types and reasons of a Job, as in Kubernetes.
const (
	// JobComplete: Completions pods succeeded (for a work-queue Job, one
	// did and all have ended).
	JobComplete = "Complete"
	// JobFailed: the Job gave up (ReasonBackoffLimitExceeded or
	// ReasonDeadlineExceeded).
	JobFailed = "Failed"

	// ReasonBackoffLimitExceeded: more pods failed (or, under
	// OnFailure, containers restarted) than the backoff limit allows.
	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	// ReasonDeadlineExceeded: the job ran longer than its ActiveDeadline.
	ReasonDeadlineExceeded = "DeadlineExceeded"
	// ReasonCompletionsReached: the Job is Complete, enough pods (or,
	// for a work-queue Job, one) succeeded.
	ReasonCompletionsReached = "CompletionsReached"
)

// Defaults of a JobSpec's nil fields, and the delay before a pod is
// created again after a failure (doubled each failure, capped).
const (
	defaultBackoffLimit = 6
	jobBackoffBase      = 10 * time.Second
	jobBackoffMax       = 6 * time.Minute
)

// jobController runs each Job's pods to completion, as Kubernetes'
// pkg/controller/job does.
type jobController struct{ m *Manager }

func registerJob(m *Manager) {
	c := &jobController{m: m}
	m.register(KindJob, reconcile.Func[string](c.reconcile), c.keysFor, c.validate)
}

// intOr returns *p, or def when p is nil.
func intOr(p *int, def int) int {
	if p == nil {
		return def
	}
	return *p
}

// validate refuses a Job that cannot work: a bad name, a restart policy
// other than OnFailure or Never, negative completions, parallelism,
// backoff limit or deadline, a pod spec that does not validate, or a
// change to the template or completions of a stored Job (immutable).
func (c *jobController) validate(ctx context.Context, obj Object) error {
	j, ok := obj.(*Job)
	if !ok {
		return fmt.Errorf("%w: %T is not a Job", ErrInvalid, obj)
	}
	if err := validateName("metadata.name", j.Name); err != nil {
		return err
	}
	if err := validateLabels("metadata.labels", j.Labels); err != nil {
		return err
	}
	for _, f := range []struct {
		field string
		p     *int
	}{{"spec.completions", j.Spec.Completions}, {"spec.parallelism", j.Spec.Parallelism}, {"spec.backoffLimit", j.Spec.BackoffLimit}} {
		if f.p != nil && *f.p < 0 {
			return invalidf(f.field, "%d must not be negative", *f.p)
		}
	}
	if j.Spec.ActiveDeadline < 0 {
		return invalidf("spec.activeDeadline", "%v must not be negative", j.Spec.ActiveDeadline)
	}
	if rp := j.Spec.Template.Spec.RestartPolicy; rp != RestartPolicyOnFailure && rp != RestartPolicyNever {
		return invalidf("spec.template.spec.restartPolicy", "%q: a Job's must be %q or %q", rp, RestartPolicyOnFailure, RestartPolicyNever)
	}
	if err := validateLabels("spec.template.labels", j.Spec.Template.Labels); err != nil {
		return err
	}
	if err := validateAnnotations("spec.template.annotations", j.Spec.Template.Annotations); err != nil {
		return err
	}
	if err := c.m.validatePodSpec(ctx, "spec.template.spec", &j.Spec.Template.Spec); err != nil {
		return err
	}
	if old, err := c.m.store.Get(ctx, KindJob, j.Namespace, j.Name); err == nil {
		o := old.(*Job)
		if !templatesEqual(o.Spec.Template, j.Spec.Template) {
			return invalidf("spec.template", "field is immutable")
		}
		if (o.Spec.Completions == nil) != (j.Spec.Completions == nil) || intOr(o.Spec.Completions, 1) != intOr(j.Spec.Completions, 1) {
			return invalidf("spec.completions", "field is immutable")
		}
	}
	return nil
}

// keysFor maps a change to the Jobs it concerns: the Job itself or a
// pod's controller.
func (c *jobController) keysFor(ev WatchEvent) []string {
	switch o := ev.Object.(type) {
	case *Job:
		return []string{keyOf(o)}
	case *Pod:
		if ref := controllerOf(&o.ObjectMeta); ref != nil && ref.Kind == KindJob {
			return []string{objectKey(o.Namespace, ref.Name)}
		}
	}
	return nil
}

// jobFinished reports whether a Job has its Complete or Failed condition.
func jobFinished(j *Job) bool {
	for _, c := range j.Status.Conditions {
		if (c.Type == JobComplete || c.Type == JobFailed) && c.Status {
			return true
		}
	}
	return false
}

// reconcile makes one pass of Kubernetes' syncJob.
func (c *jobController) reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	m := c.m
	namespace, name := splitKey(key)
	j, err := Get[*Job](ctx, m.store, namespace, name)
	if errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, nil // deleted: the manager removes its pods
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if jobFinished(j) {
		return reconcile.Result{}, nil // its finished pods are kept for their logs
	}
	all, err := m.listPods(ctx, j.Namespace, nil)
	if err != nil {
		return reconcile.Result{}, err
	}
	// The counts are cumulative: a pod is counted once, when it is first
	// seen finished (or deleted before it succeeded, which counts as a
	// failure, as Kubernetes does), and its UID is kept in CountedPods
	// while it exists, so that deleting finished pods changes nothing.
	counted := make(map[string]bool, len(j.Status.CountedPods))
	for _, uid := range j.Status.CountedPods {
		counted[uid] = true
	}
	var active []*Pod
	var countedNow []string
	succeeded, failed := j.Status.Succeeded, j.Status.Failed
	lastFailure := j.Status.LastFailureTime
	terminating := 0
	for _, p := range all {
		if !isControlledBy(&p.ObjectMeta, j) {
			continue
		}
		if podTerminating(p) {
			terminating++
		}
		if p.Status.Phase == PodFailed {
			for _, cs := range p.Status.Containers {
				if cs.FinishedAt.After(lastFailure) {
					lastFailure = cs.FinishedAt
				}
			}
		} else if podTerminating(p) && p.DeletionTime.After(lastFailure) {
			lastFailure = *p.DeletionTime
		}
		if counted[p.UID] {
			countedNow = append(countedNow, p.UID)
			continue
		}
		switch {
		case p.Status.Phase == PodSucceeded:
			succeeded++
		case p.Status.Phase == PodFailed, p.DeletionTime != nil:
			failed++
		default:
			active = append(active, p)
			continue
		}
		countedNow = append(countedNow, p.UID)
	}

	now := m.clock.Now()
	st := j.Status
	st.Conditions = slices.Clone(j.Status.Conditions)
	st.ObservedGeneration = j.Generation
	if st.StartTime.IsZero() {
		st.StartTime = now
	}
	backoffLimit := intOr(j.Spec.BackoffLimit, defaultBackoffLimit)
	var res reconcile.Result

	var reason, msg string
	switch {
	case failed > backoffLimit || pastBackoffLimitOnFailure(j, active, backoffLimit):
		reason, msg = ReasonBackoffLimitExceeded, "Job has reached the specified backoff limit"
	case j.Spec.ActiveDeadline > 0 && !now.Before(st.StartTime.Add(j.Spec.ActiveDeadline)):
		reason, msg = ReasonDeadlineExceeded, "Job was active longer than specified deadline"
	}
	var manageErr error
	if reason != "" {
		// Stop what still runs; those pods count as failed.
		for _, p := range active {
			if err := m.deletePod(ctx, p.Namespace, p.Name); err != nil {
				return reconcile.Result{}, err
			}
			m.recordEvent(j, EventNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
			failed++
			countedNow = append(countedNow, p.UID)
		}
		active = nil
		st.Conditions = setCondition(st.Conditions, Condition{Type: JobFailed, Status: true, Reason: reason, Message: msg}, now)
		m.recordEvent(j, EventWarning, reason, "%s", msg)
	} else {
		active, res, manageErr = c.manageJob(ctx, j, active, succeeded, failed, lastFailure, now)
		if jobComplete(j, succeeded, len(active)+terminating) {
			st.Conditions = setCondition(st.Conditions, Condition{Type: JobComplete, Status: true, Reason: ReasonCompletionsReached, Message: "Reached expected number of succeeded pods"}, now)
			st.CompletionTime = now
			m.recordEvent(j, EventNormal, "Completed", "Job completed")
		} else if j.Spec.ActiveDeadline > 0 {
			// Look again when the deadline passes.
			after := st.StartTime.Add(j.Spec.ActiveDeadline).Sub(now)
			if res.RequeueAfter == 0 || after < res.RequeueAfter {
				res.RequeueAfter = after
			}
		}
	}
	st.Active, st.Succeeded, st.Failed = len(active), succeeded, failed
	st.LastFailureTime = lastFailure
	slices.Sort(countedNow)
	st.CountedPods = slices.Compact(countedNow)
	if !reflect.DeepEqual(st, j.Status) {
		j.Status = st
		if _, err := m.store.UpdateStatus(ctx, j); err != nil && !errors.Is(err, ErrNotFound) {
			return reconcile.Result{}, fmt.Errorf("update status of Job %s: %w", name, err)
		}
	}
	return res, manageErr
}

// jobComplete reports whether a Job with succeeded pods and active ones
// (running, or being deleted and still stopping) is complete:
// Completions pods succeeded, or for a work-queue Job (Completions nil),
// one did; and none is still active.
func jobComplete(j *Job, succeeded, active int) bool {
	if active > 0 {
		return false
	}
	if j.Spec.Completions == nil {
		return succeeded > 0
	}
	return succeeded >= *j.Spec.Completions
}

// pastBackoffLimitOnFailure reports whether, under RestartOnFailure, the
// container restarts of the active pods reach the backoff limit (any
// restart when the limit is 0).
func pastBackoffLimitOnFailure(j *Job, active []*Pod, limit int) bool {
	if j.Spec.Template.Spec.RestartPolicy != RestartPolicyOnFailure {
		return false
	}
	n := 0
	for _, p := range active {
		for _, cs := range p.Status.Containers {
			n += cs.RestartCount
		}
	}
	if limit == 0 {
		return n > 0
	}
	return n >= limit
}

// manageJob is Kubernetes' manageJob: it runs as many pods as are wanted
// (parallelism, but no more than completions still needed; for a
// work-queue Job, parallelism until one pod succeeded, then no new
// ones), deleting extras and creating the missing ones, after a
// back-off delay when pods have failed. It returns the active pods.
func (c *jobController) manageJob(ctx context.Context, j *Job, active []*Pod, succeeded, failed int, lastFailure, now time.Time) ([]*Pod, reconcile.Result, error) {
	m := c.m
	parallelism := intOr(j.Spec.Parallelism, 1)
	var want int
	switch {
	case j.Spec.Completions != nil:
		want = min(max(*j.Spec.Completions-succeeded, 0), parallelism)
	case succeeded > 0:
		want = min(len(active), parallelism) // let what runs finish
	default:
		want = parallelism
	}
	if extra := len(active) - want; extra > 0 {
		for _, p := range podsToDelete(active, extra) {
			if err := m.deletePod(ctx, p.Namespace, p.Name); err != nil {
				return active, reconcile.Result{}, err
			}
			m.recordEvent(j, EventNormal, "SuccessfulDelete", "Deleted pod: %s", p.Name)
			active = slices.DeleteFunc(active, func(q *Pod) bool { return q == p })
		}
		return active, reconcile.Result{}, nil
	}
	if len(active) >= want {
		return active, reconcile.Result{}, nil
	}
	if failed > 0 && !lastFailure.IsZero() {
		delay := jobBackoffMax
		if failed < 16 {
			delay = min(jobBackoffBase<<(failed-1), jobBackoffMax)
		}
		if wait := lastFailure.Add(delay).Sub(now); wait > 0 {
			return active, reconcile.Result{RequeueAfter: wait}, nil
		}
	}
	labels := map[string]string{LabelJobName: j.Name}
	for range want - len(active) {
		p, err := m.createPod(ctx, j, &j.Spec.Template, labels)
		if err != nil {
			m.recordEvent(j, EventWarning, "FailedCreate", "Error creating: %v", err)
			return active, reconcile.Result{}, err
		}
		m.recordEvent(j, EventNormal, "SuccessfulCreate", "Created pod: %s", p.Name)
		active = append(active, p)
	}
	return active, reconcile.Result{}, nil
}
