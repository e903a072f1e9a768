package orchestrate_test

import (
	"context"
	"errors"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"testing"
	"time"
)

func newJob(name string, completions, parallelism int) *Job {
	return &Job{
		ObjectMeta: ObjectMeta{Name: name},
		Spec: JobSpec{
			Completions: &completions,
			Parallelism: &parallelism,
			Template: PodTemplate{
				Labels: map[string]string{"app": "batch"},
				Spec: PodSpec{
					Containers:    []Container{{Name: "work", Image: "batch:v1", Command: []string{"true"}}},
					RestartPolicy: RestartPolicyNever,
				},
			},
		},
	}
}

func (h *wlHarness) job(name string) *Job {
	h.t.Helper()
	obj, err := Get[*Job](h.ctx, h.m.Store(), "", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj
}

// activeJobPods returns the job's pods that have not finished.
func (h *wlHarness) activeJobPods(name string) []*Pod {
	var out []*Pod
	for _, p := range h.pods(KindJob, name) {
		if PodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

// finish ends a pod as its container exiting would.
func (h *wlHarness) finish(name string, phase PodPhase) {
	now := h.clock.Now()
	h.setStatus(name, func(s *PodStatus) {
		s.Phase, s.Ready = phase, false
		s.Containers = []ContainerStatus{{Name: "work", State: ContainerTerminated, FinishedAt: now}}
	})
}

func TestJobCompletionsAndParallelism(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newJob("batch", 5, 2))
	h.settle()
	for done := 0; done < 5; done++ {
		active := h.activeJobPods("batch")
		want := min(2, 5-done)
		if len(active) != want {
			t.Fatalf("after %d completions: %d active pods, want %d", done, len(active), want)
		}
		for _, p := range active {
			if p.Labels[LabelJobName] != "batch" || p.Labels["app"] != "batch" || p.Spec.RestartPolicy != RestartPolicyNever {
				t.Errorf("pod %s: labels %v restart policy %s", p.Name, p.Labels, p.Spec.RestartPolicy)
			}
		}
		if st := h.job("batch").Status; st.Succeeded != done || st.Active != want || st.StartTime.IsZero() {
			t.Errorf("after %d completions: status %+v", done, st)
		}
		h.finish(active[0].Name, PodSucceeded)
		h.step(time.Second)
	}
	j := h.job("batch")
	c := GetCondition(j.Status.Conditions, JobComplete)
	if c == nil || !c.Status || j.Status.Succeeded != 5 || j.Status.Active != 0 || j.Status.CompletionTime.IsZero() {
		t.Fatalf("finished job: %+v", j.Status)
	}
	if len(h.events(KindJob, "batch", "Completed")) != 1 {
		t.Errorf("Completed events: %v", h.events(KindJob, "batch", "Completed"))
	}
	// Finished pods are kept (for their logs), and no more are made.
	h.step(time.Minute)
	if n := len(h.pods(KindJob, "batch")); n != 5 {
		t.Errorf("job has %d pods after completion, want its 5 finished ones", n)
	}
	// Deleting the job deletes them.
	if err := h.m.Delete(h.ctx, KindJob, "", "batch"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if n := len(h.pods(KindJob, "batch")); n != 0 {
		t.Errorf("%d pods left after the job was deleted", n)
	}
}

func TestJobBackoffLimitNever(t *testing.T) {
	h := newWLHarness(t)
	j := newJob("batch", 1, 1)
	limit := 1
	j.Spec.BackoffLimit = &limit
	h.apply(j)
	h.settle()
	h.finish(h.activeJobPods("batch")[0].Name, PodFailed)
	h.settle()
	if n := len(h.activeJobPods("batch")); n != 0 {
		t.Fatalf("a pod was made again at once after a failure (%d active), want a 10s back-off", n)
	}
	h.step(10 * time.Second)
	active := h.activeJobPods("batch")
	if len(active) != 1 {
		t.Fatalf("after the back-off: %d active pods, want 1", len(active))
	}
	if st := h.job("batch").Status; st.Failed != 1 || JobFinished(h.job("batch")) {
		t.Fatalf("after one failure: %+v", st)
	}
	h.finish(active[0].Name, PodFailed)
	h.settle()
	jb := h.job("batch")
	c := GetCondition(jb.Status.Conditions, JobFailed)
	if c == nil || !c.Status || c.Reason != ReasonBackoffLimitExceeded || jb.Status.Failed != 2 {
		t.Fatalf("after two failures with backoffLimit 1: %+v", jb.Status)
	}
	h.step(time.Minute)
	if n := len(h.activeJobPods("batch")); n != 0 {
		t.Errorf("failed job runs %d pods", n)
	}
}

func TestJobBackoffLimitOnFailure(t *testing.T) {
	h := newWLHarness(t)
	j := newJob("batch", 1, 1)
	limit := 3
	j.Spec.BackoffLimit = &limit
	j.Spec.Template.Spec.RestartPolicy = RestartPolicyOnFailure
	h.apply(j)
	h.settle()
	pod := h.activeJobPods("batch")[0].Name
	restart := func(n int) {
		h.setStatus(pod, func(s *PodStatus) {
			s.Phase = PodRunning
			s.Containers = []ContainerStatus{{Name: "work", State: ContainerRunning, RestartCount: n}}
		})
		h.settle()
	}
	restart(2)
	if JobFinished(h.job("batch")) {
		t.Fatalf("job failed after 2 restarts with backoffLimit 3")
	}
	restart(3)
	jb := h.job("batch")
	c := GetCondition(jb.Status.Conditions, JobFailed)
	if c == nil || c.Reason != ReasonBackoffLimitExceeded {
		t.Fatalf("after 3 restarts: %+v", jb.Status)
	}
	if n := len(h.activeJobPods("batch")); n != 0 {
		t.Errorf("the restarting pod was not deleted (%d active)", n)
	}
}

func TestJobActiveDeadline(t *testing.T) {
	h := newWLHarness(t)
	j := newJob("batch", 4, 2)
	j.Spec.ActiveDeadline = 30 * time.Second
	h.apply(j)
	h.settle()
	first := h.activeJobPods("batch")
	h.finish(first[0].Name, PodSucceeded)
	h.step(20 * time.Second)
	if JobFinished(h.job("batch")) || len(h.activeJobPods("batch")) != 2 {
		t.Fatalf("before the deadline: %+v", h.job("batch").Status)
	}
	h.step(10 * time.Second)
	jb := h.job("batch")
	c := GetCondition(jb.Status.Conditions, JobFailed)
	if c == nil || c.Reason != ReasonDeadlineExceeded {
		t.Fatalf("after the deadline: %+v", jb.Status)
	}
	if n := len(h.activeJobPods("batch")); n != 0 || jb.Status.Active != 0 || jb.Status.Succeeded != 1 || jb.Status.Failed != 2 {
		t.Errorf("after the deadline: %d active pods, status %+v", n, jb.Status)
	}
	if len(h.events(KindJob, "batch", ReasonDeadlineExceeded)) != 1 {
		t.Errorf("DeadlineExceeded events: %v", h.events(KindJob, "batch", ReasonDeadlineExceeded))
	}
}

func TestJobZeroCompletionsAndParallelismChange(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newJob("none", 0, 1))
	h.settle()
	if c := GetCondition(h.job("none").Status.Conditions, JobComplete); c == nil || len(h.pods(KindJob, "none")) != 0 {
		t.Errorf("job with 0 completions: %+v", h.job("none").Status)
	}
	h.apply(newJob("batch", 3, 0)) // parallelism 0: nothing runs
	h.settle()
	if n := len(h.activeJobPods("batch")); n != 0 {
		t.Fatalf("parallelism 0 runs %d pods", n)
	}
	h.apply(newJob("batch", 3, 3))
	h.settle()
	if n := len(h.activeJobPods("batch")); n != 3 {
		t.Fatalf("parallelism 3 runs %d pods", n)
	}
	h.apply(newJob("batch", 3, 1))
	h.settle()
	if n := len(h.activeJobPods("batch")); n != 1 {
		t.Errorf("parallelism lowered to 1 runs %d pods", n)
	}
}

// TestJobWithFakeRuntime runs a job through the Pod controller on a fake
// runtime whose containers exit when told to.
func TestJobWithFakeRuntime(t *testing.T) {
	h, rt := newWLHarnessRuntime(t, "batch:v1")

	h.apply(newJob("batch", 3, 2))
	h.settle()
	for round := 0; round < 10 && !JobFinished(h.job("batch")); round++ {
		active := h.activeJobPods("batch")
		if len(active) > 2 {
			t.Fatalf("%d pods at once, parallelism 2", len(active))
		}
		for _, p := range active {
			if c := rt.Running(p.Name, "work"); c != nil {
				rt.Exit(c.ID, 0)
				break
			}
		}
		h.step(time.Second)
	}
	j := h.job("batch")
	if c := GetCondition(j.Status.Conditions, JobComplete); c == nil || j.Status.Succeeded != 3 {
		t.Fatalf("job status %+v", j.Status)
	}
	if n := len(h.pods(KindJob, "batch")); n != 3 {
		t.Errorf("%d pods kept, want the 3 finished ones", n)
	}
}

// A Job's counts are cumulative: deleting its failed pods does not
// reset the backoff count, deleting succeeded ones does not re-run work.
func TestJobCountsSurvivePodDeletion(t *testing.T) {
	h := newWLHarness(t)
	j := newJob("batch", 2, 1)
	limit := 1
	j.Spec.BackoffLimit = &limit
	h.apply(j)
	h.settle()

	first := h.activeJobPods("batch")[0].Name
	h.finish(first, PodSucceeded)
	h.settle()
	if err := h.m.Delete(h.ctx, KindPod, "", first); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if st := h.job("batch").Status; st.Succeeded != 1 || st.Active != 1 {
		t.Fatalf("after the succeeded pod was deleted: %+v, want 1 succeeded, 1 active", st)
	}
	fail := func() {
		t.Helper()
		active := h.activeJobPods("batch")
		if len(active) != 1 {
			t.Fatalf("%d active pods, want 1", len(active))
		}
		h.finish(active[0].Name, PodFailed)
		h.settle()
		if err := h.m.Delete(h.ctx, KindPod, "", active[0].Name); err != nil {
			t.Fatal(err)
		}
		h.settle()
	}
	fail()
	if st := h.job("batch").Status; st.Failed != 1 || st.Succeeded != 1 || JobFinished(h.job("batch")) {
		t.Fatalf("after a failed pod was deleted: %+v", st)
	}
	if st := h.job("batch").Status; len(st.CountedPods) != 0 {
		t.Errorf("counted pods %v kept for pods that are gone", st.CountedPods)
	}
	h.step(10 * time.Second)
	fail()
	jb := h.job("batch")
	if c := GetCondition(jb.Status.Conditions, JobFailed); c == nil || jb.Status.Failed != 2 || jb.Status.Succeeded != 1 {
		t.Fatalf("after two failures (deleted) with backoffLimit 1: %+v", jb.Status)
	}
}

// A Job with Completions nil is a work queue: Parallelism pods run,
// none is started once one succeeded, and it completes when all ended.
func TestJobWorkQueue(t *testing.T) {
	h := newWLHarness(t)
	j := newJob("queue", 0, 3)
	j.Spec.Completions = nil
	h.apply(j)
	h.settle()
	active := h.activeJobPods("queue")
	if len(active) != 3 {
		t.Fatalf("%d pods, want parallelism 3", len(active))
	}
	h.finish(active[0].Name, PodSucceeded)
	h.step(time.Second)
	if n := len(h.activeJobPods("queue")); n != 2 {
		t.Fatalf("after one succeeded: %d active pods, want the 2 left running", n)
	}
	if JobFinished(h.job("queue")) {
		t.Fatal("complete while pods still run")
	}
	h.finish(active[1].Name, PodSucceeded)
	h.finish(active[2].Name, PodSucceeded)
	h.step(time.Second)
	jb := h.job("queue")
	if c := GetCondition(jb.Status.Conditions, JobComplete); c == nil || jb.Status.Succeeded != 3 || len(h.pods(KindJob, "queue")) != 3 {
		t.Errorf("work queue: %+v, %d pods", jb.Status, len(h.pods(KindJob, "queue")))
	}
}

// A Job's pod deleted while it runs counts as failed, as in Kubernetes,
// even with a runtime that stops it at once: the pod object stays until
// the Job has counted it. Deleting a pod that succeeded changes nothing.
func TestJobCountsDeletedPods(t *testing.T) {
	pt := newPodTest(t)
	two := 2
	pt.apply(&Job{ObjectMeta: ObjectMeta{Name: "batch"}, Spec: JobSpec{Completions: &two, Template: PodTemplate{
		Spec: PodSpec{RestartPolicy: RestartPolicyNever, Containers: []Container{{Name: "c", Image: "busybox"}}},
	}}})
	job := func() JobStatus {
		t.Helper()
		obj, err := Get[*Job](pt.ctx, pt.m, "", "batch")
		if err != nil {
			t.Fatal(err)
		}
		return obj.Status
	}
	onlyPod := func() *Pod {
		t.Helper()
		_, live := podsByDeletion(t, pt.m)
		if len(live) != 1 {
			t.Fatalf("%d pods, want 1", len(live))
		}
		return live[0]
	}
	if err := pt.m.Delete(pt.ctx, KindPod, "", onlyPod().Name); err != nil {
		t.Fatal(err)
	}
	pt.settle()
	if st := job(); st.Failed != 1 || st.Succeeded != 0 || st.LastFailureTime.IsZero() {
		t.Fatalf("after its running pod was deleted: %+v, want 1 failed", st)
	}
	// The replacement waits for the failure's back-off (10 s), although
	// the failed pod is gone.
	pt.step(9 * time.Second)
	if terminating, live := podsByDeletion(t, pt.m); len(terminating)+len(live) != 0 {
		t.Fatalf("%d pods 9 s after the failure, want none before the 10 s back-off", len(terminating)+len(live))
	}
	pt.step(time.Second)
	p := onlyPod()
	pt.rt.Exit(pt.mustRun(p.Name, "c").ID, 0)
	pt.settle()
	if err := pt.m.Delete(pt.ctx, KindPod, "", p.Name); err != nil {
		t.Fatal(err)
	}
	pt.settle()
	if st := job(); st.Failed != 1 || st.Succeeded != 1 || st.Active != 1 || len(st.CountedPods) != 0 {
		t.Errorf("after a pod that succeeded was deleted: %+v, want 1 failed, 1 succeeded, 1 active", st)
	}
	if terminating, _ := podsByDeletion(t, pt.m); len(terminating) != 0 {
		t.Errorf("%d deleted pods left", len(terminating))
	}
}

// A work-queue Job is not complete while a deleted pod of it is still
// stopping, only once that pod is gone.
func TestJobCompleteWaitsForTerminatingPods(t *testing.T) {
	pt := newPodTest(t)
	two := 2
	pt.apply(&Job{ObjectMeta: ObjectMeta{Name: "queue"}, Spec: JobSpec{Parallelism: &two, Template: PodTemplate{
		Spec: PodSpec{RestartPolicy: RestartPolicyNever, Containers: []Container{{Name: "c", Image: "busybox"}}},
	}}})
	_, live := podsByDeletion(t, pt.m)
	if len(live) != 2 {
		t.Fatalf("%d pods, want 2", len(live))
	}
	job := func() *Job {
		t.Helper()
		obj, err := Get[*Job](pt.ctx, pt.m, "", "queue")
		if err != nil {
			t.Fatal(err)
		}
		return obj
	}
	pt.rt.Exit(pt.mustRun(live[0].Name, "c").ID, 0)
	pt.settle()
	pt.rt.HoldStops()
	// The controllers run concurrently here (RunUntilIdle runs one kind
	// after the other: the Job would wait for the held stop).
	runCtx, stop := context.WithCancel(pt.ctx)
	errc := make(chan error, 1)
	go func() { errc <- pt.m.Run(runCtx) }()
	defer func() {
		pt.rt.ReleaseStops()
		stop()
		<-errc
	}()
	if err := pt.m.Delete(pt.ctx, KindPod, "", live[1].Name); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the deleted pod to be stopping", func() bool { return len(pt.rt.Calls("stop ")) == 1 })
	waitFor(t, "the Job to count the deleted pod", func() bool { return job().Status.Failed == 1 })
	if jb := job(); JobFinished(jb) || jb.Status.Succeeded != 1 {
		t.Fatalf("while a deleted pod is stopping: %+v, want 1 succeeded and not complete yet", jb.Status)
	}
	pt.rt.ReleaseStops()
	waitFor(t, "the Job to complete", func() bool { return GetCondition(job().Status.Conditions, JobComplete) != nil })
	// The pod controller removes the pod concurrently.
	waitFor(t, "the deleted pod to be gone", func() bool {
		_, err := Get[*Pod](pt.ctx, pt.m, "", live[1].Name)
		return errors.Is(err, ErrNotFound)
	})
}

// A deleted Job pod that its Job has not counted yet stays through Close
// (with how its container ended), and the next Manager on the store
// counts it and removes it.
func TestJobPodAwaitingCountSurvivesClose(t *testing.T) {
	pt := newPodTest(t)
	pt.apply(&Job{ObjectMeta: ObjectMeta{Name: "batch"}, Spec: JobSpec{Template: PodTemplate{
		Spec: PodSpec{RestartPolicy: RestartPolicyNever, Containers: []Container{{Name: "c", Image: "busybox"}}},
	}}})
	_, live := podsByDeletion(t, pt.m)
	if len(live) != 1 {
		t.Fatalf("%d pods, want 1", len(live))
	}
	name := live[0].Name
	if err := pt.m.Delete(pt.ctx, KindPod, "", name); err != nil {
		t.Fatal(err)
	}
	if err := pt.m.Close(pt.ctx); err != nil { // before the Job saw the deletion
		t.Fatal(err)
	}
	checkNoFakeLeaks(t, pt.rt)
	if p, err := Get[*Pod](pt.ctx, pt.m, "", name); err != nil || p.Meta().DeletionTime == nil {
		t.Fatalf("deleted pod not counted yet, after Close: %v; want it kept", err)
	}
	m2, err := NewManager(Options{Store: pt.m.Store(), Runtime: pt.rt, Clock: pt.clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	if err := m2.RunUntilIdle(pt.ctx); err != nil {
		t.Fatal(err)
	}
	obj, err := Get[*Job](pt.ctx, m2, "", "batch")
	if err != nil {
		t.Fatal(err)
	}
	if st := obj.Status; st.Failed != 1 {
		t.Errorf("Job status %+v, want the deleted pod counted as failed", st)
	}
	if _, err := Get[*Pod](pt.ctx, m2, "", name); !errors.Is(err, ErrNotFound) {
		t.Errorf("the counted pod: %v, want it removed", err)
	}
}

// Only pods are deleted gracefully: the store refuses a DeletionTime on
// another kind.
func TestStoreRefusesDeletionTimeOnOtherKinds(t *testing.T) {
	s := memstore.New()
	ctx := context.Background()
	obj, err := s.Create(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}})
	if err != nil {
		t.Fatal(err)
	}
	now := testEpoch
	obj.Meta().DeletionTime = &now
	if _, err := s.Update(ctx, obj); !errors.Is(err, ErrInvalid) {
		t.Errorf("DeletionTime on a ConfigMap: %v, want ErrInvalid", err)
	}
}
