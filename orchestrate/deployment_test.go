package orchestrate_test

import (
	"context"
	"errors"
	"fmt"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"github.com/berthlabs/berth/orchestrate/reconcile"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func newDeployment(name string, replicas int) *Deployment {
	return &Deployment{
		ObjectMeta: ObjectMeta{Name: name},
		Spec: DeploymentSpec{
			Replicas: replicas,
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: webTemplate("web:v1"),
		},
	}
}

func (h *wlHarness) deployment(name string) *Deployment {
	h.t.Helper()
	obj, err := Get[*Deployment](h.ctx, h.m.Store(), "", name)
	if err != nil {
		h.t.Fatal(err)
	}
	return obj
}

// setImage applies the deployment with another image.
func (h *wlHarness) setImage(name, image string) {
	h.t.Helper()
	d := h.deployment(name)
	d.Spec.Template.Spec.Containers[0].Image = image
	h.apply(d)
}

// webPods returns the active pods labelled app=web.
func (h *wlHarness) webPods() []*Pod {
	h.t.Helper()
	pods, err := List[*Pod](h.ctx, h.m, "", &LabelSelector{MatchLabels: map[string]string{"app": "web"}})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*Pod
	for _, p := range pods {
		if PodActive(p) {
			out = append(out, p)
		}
	}
	return out
}

// rollout plays the kubelet, making every pod ready (and the clock
// move by step after each round) until the deployment is complete.
func (h *wlHarness) rollout(name string, step time.Duration) *Deployment {
	h.t.Helper()
	for range 200 {
		h.settle()
		d := h.deployment(name)
		if DeploymentComplete(d, &d.Status) {
			return d
		}
		h.readyAll(h.webPods())
		h.step(step)
	}
	h.t.Fatalf("deployment %s does not complete: %+v", name, h.deployment(name).Status)
	return nil
}

// ownedRS returns the deployment's ReplicaSets by revision.
func (h *wlHarness) ownedRS(d *Deployment) map[int64]*ReplicaSet {
	h.t.Helper()
	all, err := List[*ReplicaSet](h.ctx, h.m, "", nil)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[int64]*ReplicaSet{}
	for _, rs := range all {
		if IsControlledBy(&rs.ObjectMeta, d) {
			out[RevisionOf(rs)] = rs
		}
	}
	return out
}

// watchPods calls check with the store's pods after every change to
// them, from now until the test ends, and fails the test with what
// check returns (the first failure).
func (h *wlHarness) watchPods(check func(pods []*Pod) error) (stop func()) {
	ctx, cancel := context.WithCancel(h.ctx)
	ch, err := h.m.Store().Watch(ctx, KindPod, WatchOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	var wg sync.WaitGroup
	var first error
	seen := 0
	wg.Go(func() {
		for range ch {
			seen++
			all, err := List[*Pod](context.Background(), h.m, "", nil)
			if err != nil {
				continue
			}
			var active []*Pod
			for _, p := range all {
				if PodActive(p) {
					active = append(active, p)
				}
			}
			if err := check(active); err != nil && first == nil {
				first = err
			}
		}
	})
	return func() {
		h.t.Helper()
		cancel()
		wg.Wait()
		if first != nil {
			h.t.Error(first)
		}
		if seen == 0 {
			h.t.Error("the pod watch saw no change")
		}
	}
}

func TestDeploymentRollingUpdateBounds(t *testing.T) {
	for _, c := range []struct {
		replicas       int
		surge, unavail *IntOrPercent
		minReady       int
		wantS, wantU   int
	}{
		{5, Count(2), Count(1), 0, 2, 1},
		{10, nil, nil, 0, 3, 2}, // 25%: surge 2.5 up, unavailable 2.5 down
		{4, Count(0), Percent(50), 0, 0, 2},
		{3, Percent(100), Count(0), 0, 3, 0},
		{6, Count(1), Count(1), 5, 1, 1},
	} {
		t.Run(fmt.Sprintf("%d-surge%v-unavailable%v-minready%d", c.replicas, c.surge, c.unavail, c.minReady), func(t *testing.T) {
			h := newWLHarness(t)
			d := newDeployment("site", c.replicas)
			d.Spec.Strategy.MaxSurge, d.Spec.Strategy.MaxUnavailable = c.surge, c.unavail
			d.Spec.MinReadySeconds = c.minReady
			minReady := time.Duration(c.minReady) * time.Second
			h.apply(d)
			first := h.rollout("site", minReady)
			if first.Status.Revision != 1 || first.Status.AvailableReplicas != c.replicas {
				t.Fatalf("first rollout status %+v", first.Status)
			}

			stop := h.watchPods(func(pods []*Pod) error {
				now := h.clock.Now()
				avail := 0
				for _, p := range pods {
					if PodAvailable(p, minReady, now) {
						avail++
					}
				}
				if len(pods) > c.replicas+c.wantS {
					return fmt.Errorf("%d pods, more than %d replicas + %d surge", len(pods), c.replicas, c.wantS)
				}
				if avail < c.replicas-c.wantU {
					return fmt.Errorf("%d pods available, fewer than %d replicas - %d unavailable", avail, c.replicas, c.wantU)
				}
				return nil
			})
			h.setImage("site", "web:v2")
			// Make one pod ready at a time, the slowest kubelet there is.
			for i := 0; ; i++ {
				if i > 100 {
					t.Fatalf("rollout does not finish: %+v", h.deployment("site").Status)
				}
				h.settle()
				d := h.deployment("site")
				if DeploymentComplete(d, &d.Status) {
					break
				}
				for _, p := range h.webPods() {
					if !p.Status.Ready {
						h.ready(p.Name)
						break
					}
				}
				h.step(minReady)
			}
			stop()

			d = h.deployment("site")
			for _, p := range h.webPods() {
				if p.Spec.Containers[0].Image != "web:v2" {
					t.Errorf("pod %s still runs %s", p.Name, p.Spec.Containers[0].Image)
				}
			}
			rss := h.ownedRS(d)
			if len(rss) != 2 || rss[1].Spec.Replicas != 0 || rss[2].Spec.Replicas != c.replicas {
				t.Errorf("ReplicaSets after the rollout: %v", rss)
			}
			if d.Status.Revision != 2 || d.Status.UpdatedReplicas != c.replicas || d.Status.AvailableReplicas != c.replicas || d.Status.UnavailableReplicas != 0 {
				t.Errorf("status %+v", d.Status)
			}
			if cond := GetCondition(d.Status.Conditions, DeploymentProgressing); cond == nil || !cond.Status || cond.Reason != ReasonNewReplicaSetAvailable {
				t.Errorf("Progressing condition %+v", cond)
			}
			if cond := GetCondition(d.Status.Conditions, DeploymentAvailable); cond == nil || !cond.Status {
				t.Errorf("Available condition %+v", cond)
			}
			if len(h.events(KindDeployment, "site", "ScalingReplicaSet")) < 3 {
				t.Errorf("ScalingReplicaSet events: %v", h.events(KindDeployment, "site", "ScalingReplicaSet"))
			}
		})
	}
}

// TestDeploymentRollingUpdateUnhealthyOld checks that old pods that never
// became ready do not block a rollout (cleanupUnhealthyReplicas).
func TestDeploymentRollingUpdateUnhealthyOld(t *testing.T) {
	h := newWLHarness(t)
	d := newDeployment("site", 4)
	d.Spec.Strategy.MaxSurge, d.Spec.Strategy.MaxUnavailable = Count(0), Count(1)
	h.apply(d)
	h.settle() // v1's pods never become ready
	h.setImage("site", "web:v2")
	h.rollout("site", 0)
	for _, p := range h.webPods() {
		if p.Spec.Containers[0].Image != "web:v2" {
			t.Errorf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}
}

func TestDeploymentRecreate(t *testing.T) {
	h := newWLHarness(t)
	d := newDeployment("site", 3)
	d.Spec.Strategy.Type = RecreateDeploymentStrategyType
	h.apply(d)
	h.rollout("site", 0)
	stop := h.watchPods(func(pods []*Pod) error {
		images := map[string]int{}
		for _, p := range pods {
			images[p.Spec.Containers[0].Image]++
		}
		if images["web:v1"] > 0 && images["web:v2"] > 0 {
			return fmt.Errorf("old and new pods at once: %v", images)
		}
		return nil
	})
	h.setImage("site", "web:v2")
	h.settle()
	if pods := h.webPods(); len(pods) != 3 || pods[0].Spec.Containers[0].Image != "web:v2" {
		t.Errorf("after the old pods went: %d pods", len(pods))
	}
	d = h.rollout("site", 0)
	stop()
	if d.Status.Revision != 2 || d.Status.AvailableReplicas != 3 {
		t.Errorf("status %+v", d.Status)
	}
}

func TestDeploymentRevisionHistoryLimit(t *testing.T) {
	h := newWLHarness(t)
	d := newDeployment("site", 2)
	limit := 2
	d.Spec.RevisionHistoryLimit = &limit
	h.apply(d)
	h.rollout("site", 0)
	for v := 2; v <= 5; v++ {
		h.setImage("site", "web:v"+strconv.Itoa(v))
		h.rollout("site", 0)
	}
	h.settle()
	d = h.deployment("site")
	rss := h.ownedRS(d)
	if len(rss) != 3 || rss[5] == nil || rss[4] == nil || rss[3] == nil {
		t.Fatalf("ReplicaSets by revision %v, want revisions 3, 4 and 5", keys(rss))
	}
	if rss[5].Spec.Template.Spec.Containers[0].Image != "web:v5" || rss[5].Labels[LabelPodTemplateHash] == "" {
		t.Errorf("current ReplicaSet %+v", rss[5])
	}
}

func keys[V any](m map[int64]V) []int64 {
	var out []int64
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestDeploymentRollback(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newDeployment("site", 3))
	h.rollout("site", 0)
	v1 := h.ownedRS(h.deployment("site"))[1]
	h.setImage("site", "web:v2")
	h.rollout("site", 0)

	if err := h.m.Rollback(h.ctx, "", "site", 0); err != nil {
		t.Fatal(err)
	}
	d := h.rollout("site", 0)
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "web:v1" {
		t.Fatalf("template after rollback runs %s, want web:v1", img)
	}
	if _, ok := d.Spec.Template.Labels[LabelPodTemplateHash]; ok {
		t.Errorf("rollback copied the pod-template-hash label into the template")
	}
	rss := h.ownedRS(d)
	if d.Status.Revision != 3 || len(rss) != 2 || rss[3] == nil || rss[3].UID != v1.UID {
		t.Errorf("after rollback: revision %d, ReplicaSets %v; want v1's ReplicaSet as revision 3", d.Status.Revision, keys(rss))
	}
	for _, p := range h.webPods() {
		if p.Spec.Containers[0].Image != "web:v1" {
			t.Errorf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
		}
	}

	// To a named revision, then the errors.
	if err := h.m.Rollback(h.ctx, "", "site", 2); err != nil {
		t.Fatal(err)
	}
	d = h.rollout("site", 0)
	if img := d.Spec.Template.Spec.Containers[0].Image; img != "web:v2" || d.Status.Revision != 4 {
		t.Errorf("after rollback to 2: %s revision %d", img, d.Status.Revision)
	}
	gen := d.Generation
	if err := h.m.Rollback(h.ctx, "", "site", 4); err != nil {
		t.Errorf("rollback to the current revision: %v", err)
	}
	if h.deployment("site").Generation != gen {
		t.Errorf("rollback to the current revision changed the spec")
	}
	if err := h.m.Rollback(h.ctx, "", "site", 99); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback to a missing revision: %v", err)
	}
	if err := h.m.Rollback(h.ctx, "", "nosuch", 0); !errors.Is(err, ErrNotFound) {
		t.Errorf("rollback of a missing deployment: %v", err)
	}
	if len(h.events(KindDeployment, "site", "DeploymentRollback")) != 2 {
		t.Errorf("DeploymentRollback events: %v", h.events(KindDeployment, "site", "DeploymentRollback"))
	}
}

func TestDeploymentPauseResume(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newDeployment("site", 3))
	h.rollout("site", 0)
	d := h.deployment("site")
	d.Spec.Paused = true
	d.Spec.Template.Spec.Containers[0].Image = "web:v2"
	h.apply(d)
	h.settle()
	d = h.deployment("site")
	if rss := h.ownedRS(d); len(rss) != 1 {
		t.Errorf("paused deployment made a new ReplicaSet: %v", keys(rss))
	}
	if c := GetCondition(d.Status.Conditions, DeploymentProgressing); c == nil || c.Reason != ReasonDeploymentPaused {
		t.Errorf("paused: Progressing %+v", c)
	}
	if err := h.m.Rollback(h.ctx, "", "site", 0); err == nil {
		t.Errorf("rollback of a paused deployment succeeded")
	}
	// Scaling still applies while paused.
	d.Spec.Replicas = 5
	h.apply(d)
	h.settle()
	h.readyAll(h.webPods())
	h.settle()
	pods := h.webPods()
	if len(pods) != 5 || pods[0].Spec.Containers[0].Image != "web:v1" {
		t.Errorf("paused deployment scaled to %d pods", len(pods))
	}
	if d := h.deployment("site"); d.Status.Replicas != 5 || d.Status.AvailableReplicas != 5 {
		t.Errorf("paused status %+v", d.Status)
	}

	d = h.deployment("site")
	d.Spec.Paused = false
	h.apply(d)
	h.settle()
	if c := GetCondition(h.deployment("site").Status.Conditions, DeploymentProgressing); c == nil || !c.Status ||
		(c.Reason != ReasonDeploymentResumed && c.Reason != ReasonNewReplicaSetCreated && c.Reason != ReasonReplicaSetUpdated) {
		t.Errorf("resumed: Progressing %+v", c)
	}
	d = h.rollout("site", 0)
	if d.Status.Revision != 2 || d.Status.UpdatedReplicas != 5 {
		t.Errorf("after resume: %+v", d.Status)
	}
}

func TestDeploymentProgressDeadline(t *testing.T) {
	h := newWLHarness(t)
	d := newDeployment("site", 2)
	d.Spec.ProgressDeadline = time.Minute
	h.apply(d)
	h.rollout("site", 0)
	h.setImage("site", "web:v2") // its pods never become ready
	h.settle()
	h.step(30 * time.Second)
	if c := GetCondition(h.deployment("site").Status.Conditions, DeploymentProgressing); c == nil || !c.Status {
		t.Fatalf("before the deadline: Progressing %+v", c)
	}
	h.step(31 * time.Second)
	d = h.deployment("site")
	c := GetCondition(d.Status.Conditions, DeploymentProgressing)
	if c == nil || c.Status || c.Reason != ReasonProgressDeadlineExceeded {
		t.Fatalf("after the deadline: Progressing %+v", c)
	}
	if len(h.events(KindDeployment, "site", ReasonProgressDeadlineExceeded)) != 1 {
		t.Errorf("no ProgressDeadlineExceeded event")
	}
	// Still stuck later: the condition stays, no new event.
	h.step(5 * time.Minute)
	if len(h.events(KindDeployment, "site", ReasonProgressDeadlineExceeded)) != 1 {
		t.Errorf("ProgressDeadlineExceeded recorded more than once")
	}
	// Progress again clears it.
	d = h.rollout("site", 0)
	if c := GetCondition(d.Status.Conditions, DeploymentProgressing); c == nil || !c.Status || c.Reason != ReasonNewReplicaSetAvailable {
		t.Errorf("after progress: Progressing %+v", c)
	}
}

// TestDeploymentProportionalScaling scales a deployment in the middle of
// a rollout: both ReplicaSets grow, in proportion, within the surge.
func TestDeploymentProportionalScaling(t *testing.T) {
	h := newWLHarness(t)
	d := newDeployment("site", 10)
	h.apply(d)
	h.rollout("site", 0)
	h.setImage("site", "web:v2") // not ready: the rollout stalls
	h.settle()
	d = h.deployment("site")
	before := h.ownedRS(d)
	if before[1].Spec.Replicas+before[2].Spec.Replicas != 13 {
		t.Fatalf("mid-rollout sizes %d + %d, want 13 (10 + surge 3)", before[1].Spec.Replicas, before[2].Spec.Replicas)
	}
	d.Spec.Replicas = 20
	h.apply(d)
	h.settle()
	after := h.ownedRS(h.deployment("site"))
	sum := after[1].Spec.Replicas + after[2].Spec.Replicas
	if sum != 25 || after[1].Spec.Replicas <= before[1].Spec.Replicas || after[2].Spec.Replicas <= before[2].Spec.Replicas {
		t.Errorf("after scaling to 20: old %d->%d new %d->%d, want both up to 25 (20 + surge 5)",
			before[1].Spec.Replicas, after[1].Spec.Replicas, before[2].Spec.Replicas, after[2].Spec.Replicas)
	}
	d = h.rollout("site", 0)
	if d.Status.UpdatedReplicas != 20 {
		t.Errorf("after rollout: %+v", d.Status)
	}
}

func TestDeploymentCascadingDelete(t *testing.T) {
	h := newWLHarness(t)
	h.apply(newDeployment("site", 2))
	h.rollout("site", 0)
	if err := h.m.Delete(h.ctx, KindDeployment, "", "site"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if objs, _ := h.m.Store().List(h.ctx, KindReplicaSet, "", nil); len(objs) != 0 {
		t.Errorf("ReplicaSets left after delete: %d", len(objs))
	}
	if pods := h.webPods(); len(pods) != 0 {
		t.Errorf("pods left after delete: %d", len(pods))
	}
}

// TestDeploymentWithFakeRuntime runs a rollout through the Pod controller
// on a fake runtime (pods are ready once their container runs): the
// bounds hold at every change, and the old pods' containers are stopped
// and removed.
func TestDeploymentWithFakeRuntime(t *testing.T) {
	h, rt := newWLHarnessRuntime(t, "web:v1", "web:v2")

	d := newDeployment("site", 4)
	d.Spec.Strategy.MaxSurge, d.Spec.Strategy.MaxUnavailable = Count(1), Count(1)
	h.apply(d)
	h.settle()
	if d := h.deployment("site"); !DeploymentComplete(d, &d.Status) {
		t.Fatalf("first rollout: %+v", d.Status)
	}
	stop := h.watchPods(func(pods []*Pod) error {
		ready := 0
		for _, p := range pods {
			if p.Status.Ready {
				ready++
			}
		}
		if len(pods) > 5 || ready < 3 {
			return fmt.Errorf("%d pods, %d ready: outside 4+1 and 4-1", len(pods), ready)
		}
		return nil
	})
	h.setImage("site", "web:v2")
	for range 20 {
		h.step(time.Second)
	}
	stop()
	d = h.deployment("site")
	if !DeploymentComplete(d, &d.Status) || d.Status.Revision != 2 {
		t.Fatalf("rollout to v2: %+v", d.Status)
	}
	containers, _ := rt.Live()
	if len(containers) != 4 {
		t.Errorf("%d containers live after the rollout, want 4", len(containers))
	}
	for _, p := range h.webPods() {
		if c := rt.Running(p.Name, "web"); c == nil || c.Config.Image != "web:v2" {
			t.Errorf("pod %s: container %+v", p.Name, c)
		}
	}
	// An image the runtime does not have is refused.
	bad := h.deployment("site")
	bad.Spec.Template.Spec.Containers[0].Image = "web:nosuch"
	if _, err := h.m.Apply(h.ctx, bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "spec.template.spec.containers[0].image") {
		t.Errorf("unknown image: %v", err)
	}
	if err := h.m.Delete(h.ctx, KindDeployment, "", "site"); err != nil {
		t.Fatal(err)
	}
	h.step(time.Minute)
	checkNoFakeLeaks(t, rt)
}

// A Recreate Deployment starts its new pods only once the old pods'
// containers have stopped: deleting a pod is graceful, and the old pods
// stay (terminating) until then.
func TestRecreateWaitsForTerminatingPods(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := reconcile.NewFakeClock(testEpoch)
	rt := fakeruntime.New(clock, "web:v1", "web:v2")
	var mu sync.Mutex
	var overlaps []string
	rt.SetOnStart(func(image string, running []string) {
		for _, r := range running {
			if r != image {
				mu.Lock()
				overlaps = append(overlaps, image+" started while "+r+" runs")
				mu.Unlock()
			}
		}
	})
	m, err := NewManager(Options{Store: memstore.New(), Runtime: rt, Clock: clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() {
		rt.ReleaseStops() // on every path: Close stops containers
		stop()
		<-done
		if err := m.Close(context.Background()); err != nil {
			t.Error(err)
		}
		checkNoFakeLeaks(t, rt)
	}()

	d := newDeployment("site", 2)
	d.Spec.Strategy.Type = RecreateDeploymentStrategyType
	if _, err := m.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "2 v1 containers", func() bool { return rt.RunningImages("web:v1") == 2 })

	rt.HoldStops()
	obj, err := Get[*Deployment](ctx, m, "", "site")
	if err != nil {
		t.Fatal(err)
	}
	d = obj
	d.Spec.Template.Spec.Containers[0].Image = "web:v2"
	d.ResourceVersion = 0 // the controllers write its status meanwhile
	if _, err := m.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the old containers to be stopping", func() bool { return len(rt.Calls("stop ")) == 2 })
	time.Sleep(50 * time.Millisecond) // room for a wrong start
	terminating, live := podsByDeletion(t, m)
	if len(terminating) != 2 || len(live) != 0 {
		t.Errorf("while the old containers stop: %d terminating pods, %d others; want 2 and 0", len(terminating), len(live))
	}
	if n := rt.RunningImages("web:v2"); n != 0 {
		t.Errorf("%d new containers started while the old ones still run", n)
	}
	rt.ReleaseStops()
	waitFor(t, "2 v2 containers and the old pods gone", func() bool {
		terminating, live := podsByDeletion(t, m)
		return rt.RunningImages("web:v2") == 2 && rt.RunningImages("web:v1") == 0 && len(terminating) == 0 && len(live) == 2
	})
	mu.Lock()
	defer mu.Unlock()
	if len(overlaps) > 0 {
		t.Errorf("old and new containers alive at once: %v", overlaps)
	}
}
