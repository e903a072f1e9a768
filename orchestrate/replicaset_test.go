package orchestrate_test

import (
	"context"
	"errors"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// wlHarness runs a Manager with no runtime on a fake clock; the test
// plays the kubelet by writing pod statuses.
type wlHarness struct {
	t     *testing.T
	ctx   context.Context
	m     *Manager
	clock *reconcile.FakeClock
}

func newWLHarness(t *testing.T) *wlHarness {
	t.Helper()
	h, _ := newWLHarnessRuntime(t)
	return h
}

// newWLHarnessRuntime is newWLHarness with a fake runtime that has
// images (none: no runtime, pods never run and tests write their status).
func newWLHarnessRuntime(t *testing.T, images ...string) (*wlHarness, *fakeruntime.Runtime) {
	t.Helper()
	clock := reconcile.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	opts := Options{Store: memstore.New(), Clock: clock}
	var rt *fakeruntime.Runtime
	if len(images) > 0 {
		rt = fakeruntime.New(clock, images...)
		opts.Runtime, opts.StateDir = rt, t.TempDir()
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(func() {
		m.Close(context.Background())
		cancel()
	})
	h := &wlHarness{t: t, ctx: ctx, m: m, clock: clock}
	h.settle() // start the watch on an empty store
	return h, rt
}

// settle runs the controllers until nothing is due now.
func (h *wlHarness) settle() {
	h.t.Helper()
	if err := h.m.RunUntilIdle(h.ctx); err != nil {
		h.t.Fatal(err)
	}
}

// step moves the clock and settles.
func (h *wlHarness) step(d time.Duration) {
	h.t.Helper()
	h.clock.Step(d)
	h.settle()
}

func (h *wlHarness) apply(obj Object) Object {
	h.t.Helper()
	out, err := h.m.Apply(h.ctx, obj)
	if err != nil {
		h.t.Fatal(err)
	}
	return out
}

// pods returns the active pods whose controller is the object kind/name.
func (h *wlHarness) pods(kind, name string) []*Pod {
	h.t.Helper()
	all, err := List[*Pod](h.ctx, h.m, "", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*Pod
	for _, p := range all {
		if ref := ControllerOf(&p.ObjectMeta); ref != nil && ref.Kind == kind && ref.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// setStatus changes one pod's status as a kubelet would.
func (h *wlHarness) setStatus(name string, f func(*PodStatus)) {
	h.t.Helper()
	obj, err := Get[*Pod](h.ctx, h.m.Store(), "", name)
	if err != nil {
		h.t.Fatal(err)
	}
	p := obj
	f(&p.Status)
	if _, err := h.m.Store().UpdateStatus(h.ctx, p); err != nil {
		h.t.Fatal(err)
	}
}

// ready makes a pod running and ready from now.
func (h *wlHarness) ready(name string) {
	now := h.clock.Now()
	h.setStatus(name, func(s *PodStatus) {
		s.Phase, s.Ready, s.ReadySince, s.StartTime = PodRunning, true, now, now
	})
}

// readyAll makes every not-ready pod in pods ready.
func (h *wlHarness) readyAll(pods []*Pod) {
	for _, p := range pods {
		if !p.Status.Ready {
			h.ready(p.Name)
		}
	}
}

func (h *wlHarness) rs(name string) *ReplicaSet {
	h.t.Helper()
	obj, err := Get[*ReplicaSet](h.ctx, h.m.Store(), "", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj
}

func (h *wlHarness) events(kind, name, reason string) []Event {
	return h.m.Events(EventFilter{Kind: kind, Name: name, Reason: reason})
}

func webTemplate(image string) PodTemplate {
	return PodTemplate{
		Labels: map[string]string{"app": "web"},
		Spec:   PodSpec{Containers: []Container{{Name: "web", Image: image}}},
	}
}

func newRS(name string, replicas int) *ReplicaSet {
	return &ReplicaSet{
		ObjectMeta: ObjectMeta{Name: name},
		Spec: ReplicaSetSpec{
			Replicas: replicas,
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: webTemplate("web:v1"),
		},
	}
}

func podNames(pods []*Pod) []string {
	var names []string
	for _, p := range pods {
		names = append(names, p.Name)
	}
	slices.Sort(names)
	return names
}

func TestReplicaSetScaleUpAndDown(t *testing.T) {
	h := newWLHarness(t)
	rs := h.apply(newRS("web", 3)).(*ReplicaSet)
	h.settle()
	pods := h.pods(KindReplicaSet, "web")
	if len(pods) != 3 {
		t.Fatalf("pods after create: %d, want 3", len(pods))
	}
	for _, p := range pods {
		if !strings.HasPrefix(p.Name, "web-") || len(p.Name) != len("web-")+5 {
			t.Errorf("pod name %q, want web-<5 characters>", p.Name)
		}
		if p.Labels["app"] != "web" || p.Spec.Containers[0].Image != "web:v1" {
			t.Errorf("pod %s not made from the template: %v %+v", p.Name, p.Labels, p.Spec)
		}
		if ref := ControllerOf(&p.ObjectMeta); ref == nil || ref.UID != rs.UID {
			t.Errorf("pod %s controller %+v, want the ReplicaSet", p.Name, ref)
		}
	}
	if n := len(h.events(KindReplicaSet, "web", "SuccessfulCreate")); n != 3 {
		t.Errorf("SuccessfulCreate events: %d, want 3", n)
	}
	st := h.rs("web").Status
	if st.Replicas != 3 || st.ReadyReplicas != 0 || st.ObservedGeneration != 1 {
		t.Errorf("status %+v", st)
	}
	h.readyAll(pods)
	h.settle()
	if st := h.rs("web").Status; st.ReadyReplicas != 3 || st.AvailableReplicas != 3 {
		t.Errorf("status after ready %+v", st)
	}

	// A pod that goes away is replaced.
	if err := h.m.Store().Delete(h.ctx, KindPod, "", pods[0].Name); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if n := len(h.pods(KindReplicaSet, "web")); n != 3 {
		t.Errorf("pods after one was deleted: %d, want 3", n)
	}

	r := h.rs("web")
	r.Spec.Replicas = 1
	h.apply(r)
	h.settle()
	if n := len(h.pods(KindReplicaSet, "web")); n != 1 {
		t.Errorf("pods after scale down: %d, want 1", n)
	}
	if n := len(h.events(KindReplicaSet, "web", "SuccessfulDelete")); n != 2 {
		t.Errorf("SuccessfulDelete events: %d, want 2", n)
	}
	if st := h.rs("web").Status; st.Replicas != 1 || st.ObservedGeneration != 2 {
		t.Errorf("status after scale down %+v", st)
	}

	r = h.rs("web")
	r.Spec.Replicas = 0
	h.apply(r)
	h.settle()
	if n := len(h.pods(KindReplicaSet, "web")); n != 0 {
		t.Errorf("pods after scale to 0: %d", n)
	}

	// Deleting the ReplicaSet deletes its pods.
	r = h.rs("web")
	r.Spec.Replicas = 2
	h.apply(r)
	h.settle()
	if err := h.m.Delete(h.ctx, KindReplicaSet, "", "web"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if all, _ := List[*Pod](h.ctx, h.m, "", nil); len(all) != 0 {
		t.Errorf("pods after the ReplicaSet was deleted: %v", podNames(all))
	}
}

// TestReplicaSetScaleDownOrder checks which pods go first: pending, then
// not ready, then ready for less time, then more restarts, then newer.
func TestReplicaSetScaleDownOrder(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newRS("web", 6))
	h.settle()
	pods := h.pods(KindReplicaSet, "web")
	t0 := h.clock.Now()
	// 0 stays pending; 1 runs but is not ready; 2 ready since t0;
	// 3 ready since t0+10s; 4 ready since t0 with 2 restarts;
	// 5 ready since t0 like 2 (2 and 5 then differ by creation time).
	role := map[string]string{}
	names := podNames(pods)
	for i, name := range names {
		role[name] = []string{"pending", "notready", "old", "recent", "restarts", "twin"}[i]
	}
	h.setStatus(names[1], func(s *PodStatus) { s.Phase = PodRunning })
	for _, i := range []int{2, 3, 4, 5} {
		since := t0
		if i == 3 {
			since = t0.Add(10 * time.Second)
		}
		h.setStatus(names[i], func(s *PodStatus) {
			s.Phase, s.Ready, s.ReadySince = PodRunning, true, since
			if i == 4 {
				s.Containers = []ContainerStatus{{Name: "web", RestartCount: 2}}
			}
		})
	}
	h.settle()

	scaleTo := func(n int) []string {
		t.Helper()
		r := h.rs("web")
		r.Spec.Replicas = n
		h.apply(r)
		h.settle()
		var left []string
		for _, p := range h.pods(KindReplicaSet, "web") {
			left = append(left, role[p.Name])
		}
		slices.Sort(left)
		return left
	}
	if got, want := scaleTo(5), []string{"notready", "old", "recent", "restarts", "twin"}; !slices.Equal(got, want) {
		t.Errorf("after scale to 5: %v, want %v (pending first)", got, want)
	}
	if got, want := scaleTo(4), []string{"old", "recent", "restarts", "twin"}; !slices.Equal(got, want) {
		t.Errorf("after scale to 4: %v, want %v (not ready next)", got, want)
	}
	if got, want := scaleTo(3), []string{"old", "restarts", "twin"}; !slices.Equal(got, want) {
		t.Errorf("after scale to 3: %v, want %v (ready for less time next)", got, want)
	}
	if got, want := scaleTo(2), []string{"old", "twin"}; !slices.Equal(got, want) {
		t.Errorf("after scale to 2: %v, want %v (more restarts next)", got, want)
	}
}

func TestCompareForDeletion(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	pod := func(name string, phase PodPhase, ready bool, since time.Duration, restarts int, created time.Duration) *Pod {
		p := &Pod{ObjectMeta: ObjectMeta{Name: name, CreationTime: t0.Add(created)}}
		p.Status.Phase, p.Status.Ready = phase, ready
		if ready {
			p.Status.ReadySince = t0.Add(since)
		}
		p.Status.Containers = []ContainerStatus{{RestartCount: restarts}}
		return p
	}
	pods := []*Pod{
		pod("old-ready", PodRunning, true, 0, 0, 0),
		pod("new-ready", PodRunning, true, 0, 0, time.Second),
		pod("restarted", PodRunning, true, 0, 3, 0),
		pod("recent", PodRunning, true, time.Minute, 0, 0),
		pod("notready", PodRunning, false, 0, 0, 0),
		pod("pending", PodPending, false, 0, 0, 0),
		pod("unknown-phase", "Unknown", false, 0, 0, 0),
	}
	want := []string{"pending", "unknown-phase", "notready", "recent", "restarted", "new-ready", "old-ready"}
	for range 5 { // any input order gives the same ranking
		slices.Reverse(pods)
		got := PodsToDelete(pods, len(pods))
		var names []string
		for _, p := range got {
			names = append(names, p.Name)
		}
		if !slices.Equal(names, want) {
			t.Fatalf("deletion order %v, want %v", names, want)
		}
	}
}

func TestReplicaSetAdoptsAndReleases(t *testing.T) {
	h := newWLHarness(t)
	orphan := &Pod{ObjectMeta: ObjectMeta{Name: "stray", Labels: map[string]string{"app": "web"}}, Spec: webTemplate("web:v1").Spec}
	other := &Pod{ObjectMeta: ObjectMeta{Name: "other", Labels: map[string]string{"app": "db"}}, Spec: webTemplate("web:v1").Spec}
	for _, p := range []*Pod{orphan, other} {
		if _, err := h.m.Store().Create(h.ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	h.apply(newRS("web", 2))
	h.settle()
	pods := h.pods(KindReplicaSet, "web")
	if names := podNames(pods); len(names) != 2 || !slices.Contains(names, "stray") {
		t.Fatalf("pods %v, want the stray pod adopted and one more", names)
	}
	if p, _ := Get[*Pod](h.ctx, h.m.Store(), "", "other"); ControllerOf(p.Meta()) != nil {
		t.Errorf("a pod the selector does not match was adopted")
	}

	// Relabelled, the stray pod is released and replaced.
	obj, _ := Get[*Pod](h.ctx, h.m.Store(), "", "stray")
	p := obj
	p.Labels = map[string]string{"app": "debug"}
	if _, err := h.m.Store().Update(h.ctx, p); err != nil {
		t.Fatal(err)
	}
	h.settle()
	obj, _ = Get[*Pod](h.ctx, h.m.Store(), "", "stray")
	if ref := ControllerOf(obj.Meta()); ref != nil {
		t.Errorf("relabelled pod still controlled by %+v", ref)
	}
	if names := podNames(h.pods(KindReplicaSet, "web")); len(names) != 2 || slices.Contains(names, "stray") {
		t.Errorf("pods after release %v, want 2 others", names)
	}
}

func TestReplicaSetMinReadySeconds(t *testing.T) {
	h := newWLHarness(t)
	rs := newRS("web", 2)
	rs.Spec.MinReadySeconds = 10
	h.apply(rs)
	h.settle()
	pods := h.pods(KindReplicaSet, "web")
	h.ready(pods[0].Name)
	h.settle()
	h.step(5 * time.Second)
	h.ready(pods[1].Name)
	h.settle()
	if st := h.rs("web").Status; st.ReadyReplicas != 2 || st.AvailableReplicas != 0 {
		t.Fatalf("status right after ready: %+v, want 2 ready, 0 available", st)
	}
	h.step(5 * time.Second)
	if st := h.rs("web").Status; st.AvailableReplicas != 1 {
		t.Fatalf("status 10s after the first was ready: %+v, want 1 available", st)
	}
	h.step(5 * time.Second)
	if st := h.rs("web").Status; st.AvailableReplicas != 2 {
		t.Fatalf("status 10s after both were ready: %+v, want 2 available", st)
	}
}

// TestWorkloadsRefuseInvalid applies invalid specs over valid stored
// objects: each is refused with ErrInvalid naming the field, and the
// store does not change.
func TestWorkloadsRefuseInvalid(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newRS("web", 2))
	h.apply(newDeployment("site", 2))
	h.apply(newJob("batch", 1, 1))
	h.settle()
	rsOf := func(f func(*ReplicaSet)) Object { r := newRS("web", 2); f(r); return r }
	depOf := func(f func(*Deployment)) Object { d := newDeployment("site", 2); f(d); return d }
	jobOf := func(f func(*Job)) Object { j := newJob("batch", 1, 1); f(j); return j }
	neg := -1
	cases := []struct {
		name  string
		obj   Object
		field string
	}{
		{"rs negative replicas", rsOf(func(r *ReplicaSet) { r.Spec.Replicas = -1 }), "spec.replicas"},
		{"rs selector not matching", rsOf(func(r *ReplicaSet) { r.Spec.Template.Labels = map[string]string{"app": "db"} }), "spec.template.labels"},
		{"rs empty selector", rsOf(func(r *ReplicaSet) { r.Spec.Selector = nil }), "spec.selector"},
		{"rs changed selector", rsOf(func(r *ReplicaSet) {
			r.Spec.Selector.MatchLabels["tier"] = "x"
			r.Spec.Template.Labels["tier"] = "x"
		}), "spec.selector"},
		{"rs bad selector", rsOf(func(r *ReplicaSet) {
			r.Spec.Selector.MatchExpressions = []LabelSelectorRequirement{{Key: "app", Operator: "Near"}}
		}), "spec.selector"},
		{"rs restart policy", rsOf(func(r *ReplicaSet) { r.Spec.Template.Spec.RestartPolicy = RestartPolicyNever }), "spec.template.spec.restartPolicy"},
		{"rs duplicate container names", rsOf(func(r *ReplicaSet) {
			r.Spec.Template.Spec.Containers = append(r.Spec.Template.Spec.Containers, r.Spec.Template.Spec.Containers[0])
		}), "spec.template.spec.containers"},
		{"rs no containers", rsOf(func(r *ReplicaSet) { r.Spec.Template.Spec.Containers = nil }), "spec.template.spec.containers"},
		{"rs bad name", rsOf(func(r *ReplicaSet) { r.Name = "Web_1" }), "metadata.name"},
		{"deployment negative replicas", depOf(func(d *Deployment) { d.Spec.Replicas = -3 }), "spec.replicas"},
		{"deployment selector not matching", depOf(func(d *Deployment) { d.Spec.Template.Labels = nil }), "spec.template.labels"},
		{"deployment surge and unavailable 0", depOf(func(d *Deployment) {
			d.Spec.Strategy.MaxSurge, d.Spec.Strategy.MaxUnavailable = Count(0), Percent(0)
		}), "spec.strategy.maxUnavailable"},
		{"deployment negative surge", depOf(func(d *Deployment) { d.Spec.Strategy.MaxSurge = Count(-1) }), "spec.strategy.maxSurge"},
		{"deployment unavailable over 100%", depOf(func(d *Deployment) { d.Spec.Strategy.MaxUnavailable = Percent(150) }), "spec.strategy.maxUnavailable"},
		{"deployment negative percent", depOf(func(d *Deployment) { d.Spec.Strategy.MaxSurge = Percent(-5) }), "spec.strategy.maxSurge"},
		{"deployment recreate with surge", depOf(func(d *Deployment) {
			d.Spec.Strategy = DeploymentStrategy{Type: RecreateDeploymentStrategyType, MaxSurge: Count(1)}
		}), "spec.strategy"},
		{"deployment unknown strategy", depOf(func(d *Deployment) { d.Spec.Strategy.Type = "BlueGreen" }), "spec.strategy.type"},
		{"deployment negative history", depOf(func(d *Deployment) { d.Spec.RevisionHistoryLimit = &neg }), "spec.revisionHistoryLimit"},
		{"deployment deadline within minReady", depOf(func(d *Deployment) {
			d.Spec.MinReadySeconds, d.Spec.ProgressDeadline = 30, 10*time.Second
		}), "spec.progressDeadline"},
		{"deployment duplicate container names", depOf(func(d *Deployment) {
			d.Spec.Template.Spec.Containers = append(d.Spec.Template.Spec.Containers, d.Spec.Template.Spec.Containers[0])
		}), "spec.template.spec.containers"},
		{"job restart always", jobOf(func(j *Job) { j.Spec.Template.Spec.RestartPolicy = RestartPolicyAlways }), "spec.template.spec.restartPolicy"},
		{"job negative completions", jobOf(func(j *Job) { j.Spec.Completions = &neg }), "spec.completions"},
		{"job negative parallelism", jobOf(func(j *Job) { j.Spec.Parallelism = &neg }), "spec.parallelism"},
		{"job negative backoff limit", jobOf(func(j *Job) { j.Spec.BackoffLimit = &neg }), "spec.backoffLimit"},
		{"job negative deadline", jobOf(func(j *Job) { j.Spec.ActiveDeadline = -time.Second }), "spec.activeDeadline"},
		{"job changed template", jobOf(func(j *Job) { j.Spec.Template.Spec.Containers[0].Image = "other:v2" }), "spec.template"},
	}
	snapshot := func() map[string]uint64 {
		out := map[string]uint64{}
		for _, kind := range []string{KindPod, KindReplicaSet, KindDeployment, KindJob} {
			objs, err := h.m.Store().List(h.ctx, kind, "", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range objs {
				out[kind+"/"+o.Meta().Name] = o.Meta().ResourceVersion
			}
		}
		return out
	}
	before := snapshot()
	for _, c := range cases {
		_, err := h.m.Apply(h.ctx, c.obj)
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Apply error %v, want ErrInvalid", c.name, err)
			continue
		}
		if !strings.Contains(err.Error(), c.field) {
			t.Errorf("%s: error %q does not name %s", c.name, err, c.field)
		}
	}
	h.settle()
	if after := snapshot(); !mapsEqual(before, after) {
		t.Errorf("the store changed:\nbefore %v\nafter  %v", before, after)
	}
	// A new object that is invalid is not stored either.
	if _, err := h.m.Apply(h.ctx, rsOf(func(r *ReplicaSet) { r.Name = "fresh"; r.Spec.Replicas = -1 })); !errors.Is(err, ErrInvalid) {
		t.Errorf("new invalid ReplicaSet: %v", err)
	}
	if _, err := Get[*ReplicaSet](h.ctx, h.m.Store(), "", "fresh"); !errors.Is(err, ErrNotFound) {
		t.Errorf("invalid ReplicaSet stored: %v", err)
	}
}

func mapsEqual(a, b map[string]uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// Scaling a ReplicaSet down marks the victim pod deleted; the object
// stays, with its DeletionTime, until its containers have stopped, and
// the ReplicaSet does not count it.
func TestReplicaSetScaleDownGraceful(t *testing.T) {
	pt := newPodTest(t)
	rs := &ReplicaSet{ObjectMeta: ObjectMeta{Name: "web"}, Spec: ReplicaSetSpec{
		Replicas: 2,
		Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
		Template: PodTemplate{Labels: map[string]string{"app": "web"}, Spec: PodSpec{
			Containers: []Container{{Name: "c", Image: "busybox"}},
		}},
	}}
	pt.apply(rs)
	if _, live := podsByDeletion(t, pt.m); len(live) != 2 {
		t.Fatalf("%d pods, want 2", len(live))
	}
	pt.rt.HoldStops()
	obj, _ := Get[*ReplicaSet](pt.ctx, pt.m, "", "web")
	rs = obj
	rs.Spec.Replicas = 1
	if _, err := pt.m.Apply(pt.ctx, rs); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { errc <- pt.m.RunUntilIdle(pt.ctx) }()
	ran := false
	defer func() {
		if !ran { // failed early: let the stop and the run end before Close
			pt.rt.ReleaseStops()
			<-errc
		}
	}()
	waitFor(t, "a container to be stopping", func() bool { return len(pt.rt.Calls("stop ")) == 1 })
	terminating, live := podsByDeletion(t, pt.m)
	if len(terminating) != 1 || len(live) != 1 {
		t.Fatalf("while stopping: %d terminating pods, %d others; want 1 and 1", len(terminating), len(live))
	}
	victim := terminating[0]
	if victim.Status.Ready || len(victim.Status.Containers) != 1 || victim.Status.Containers[0].Ready {
		t.Errorf("a terminating pod is still ready: %+v", victim.Status)
	}
	if pt.rt.Running(victim.Name, "c") == nil {
		t.Error("the victim's container is not running any more, yet its stop has not returned")
	}
	if o, err := Get[*ReplicaSet](pt.ctx, pt.m, "", "web"); err != nil {
		t.Fatal(err)
	} else if got := o.Status.Replicas; got != 1 {
		t.Errorf("ReplicaSet status replicas %d, want 1 (a terminating pod is not counted)", got)
	}
	// A spec update of the terminating pod is refused.
	upd := victim.DeepCopy().(*Pod)
	upd.Spec.Containers[0].Image = "busybox:other"
	if _, err := pt.m.Store().Update(pt.ctx, upd); !errors.Is(err, ErrInvalid) {
		t.Errorf("spec update of a terminating pod: %v, want ErrInvalid", err)
	}
	// Apply keeps the DeletionTime.
	upd = victim.DeepCopy().(*Pod)
	upd.DeletionTime, upd.ResourceVersion = nil, 0
	upd.Labels = map[string]string{"app": "web", "extra": "x"}
	if got, err := pt.m.Apply(pt.ctx, upd); err != nil || got.Meta().DeletionTime == nil {
		t.Errorf("Apply to a terminating pod: %v, DeletionTime kept: %v", err, err == nil && got.Meta().DeletionTime != nil)
	}
	pt.rt.ReleaseStops()
	ran = true
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	pt.settle()
	if _, err := Get[*Pod](pt.ctx, pt.m, "", victim.Name); !errors.Is(err, ErrNotFound) {
		t.Errorf("victim after its containers stopped: %v, want it gone", err)
	}
	if _, live := podsByDeletion(t, pt.m); len(live) != 1 {
		t.Errorf("%d pods left, want 1", len(live))
	}
	if cs, sbs := pt.rt.Live(); len(cs) != 1 || len(sbs) != 1 {
		t.Errorf("live containers %v, sandboxes %v; want the survivor's only", cs, sbs)
	}
}
