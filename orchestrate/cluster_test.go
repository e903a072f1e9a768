package orchestrate_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// cuttable is a Store that a test can cut off, as a network partition
// cuts a node from etcd: while cut every call fails and watches break.
type cuttable struct {
	orchestrate.Store
	cut atomic.Bool

	mu      sync.Mutex
	cancels []context.CancelFunc
}

var errCut = errors.New("test: the store is cut off")

func (c *cuttable) Cut() {
	c.cut.Store(true)
	c.mu.Lock()
	for _, cancel := range c.cancels {
		cancel()
	}
	c.cancels = nil
	c.mu.Unlock()
}

func (c *cuttable) Heal() { c.cut.Store(false) }

func (c *cuttable) check() error {
	if c.cut.Load() {
		return errCut
	}
	return nil
}

func (c *cuttable) Create(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Store.Create(ctx, obj)
}

func (c *cuttable) Update(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Store.Update(ctx, obj)
}

func (c *cuttable) UpdateStatus(ctx context.Context, obj orchestrate.Object) (orchestrate.Object, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Store.UpdateStatus(ctx, obj)
}

func (c *cuttable) Delete(ctx context.Context, kind, namespace, name string) error {
	if err := c.check(); err != nil {
		return err
	}
	return c.Store.Delete(ctx, kind, namespace, name)
}

func (c *cuttable) Get(ctx context.Context, kind, namespace, name string) (orchestrate.Object, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Store.Get(ctx, kind, namespace, name)
}

func (c *cuttable) List(ctx context.Context, kind, namespace string, sel *orchestrate.LabelSelector) ([]orchestrate.Object, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	return c.Store.List(ctx, kind, namespace, sel)
}

func (c *cuttable) Revision(ctx context.Context) (uint64, error) {
	if err := c.check(); err != nil {
		return 0, err
	}
	return c.Store.Revision(ctx)
}

// Watch breaks (a WatchError, then the channel closes) when the store
// is cut.
func (c *cuttable) Watch(ctx context.Context, kind string, opts orchestrate.WatchOptions) (<-chan orchestrate.WatchEvent, error) {
	if err := c.check(); err != nil {
		return nil, err
	}
	wctx, cancel := context.WithCancel(ctx)
	in, err := c.Store.Watch(wctx, kind, opts)
	if err != nil {
		cancel()
		return nil, err
	}
	c.mu.Lock()
	c.cancels = append(c.cancels, cancel)
	c.mu.Unlock()
	out := make(chan orchestrate.WatchEvent)
	go func() {
		defer close(out)
		defer cancel()
		for ev := range in {
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
		if ctx.Err() == nil {
			select {
			case out <- orchestrate.WatchEvent{Type: orchestrate.WatchError, Err: errCut}:
			case <-ctx.Done():
			}
		}
	}()
	return out, nil
}

// testNode is one Manager of a test cluster.
type testNode struct {
	name  string
	m     *orchestrate.Manager
	rt    *fakeruntime.Runtime
	store *cuttable
	stop  func()
}

const (
	testLease = time.Second
	testGrace = time.Second
)

// startNode runs a node Manager on store until the test ends.
func startNode(t *testing.T, store orchestrate.Store, name string, alloc orchestrate.NodeResources, labels map[string]string) *testNode {
	t.Helper()
	rt := fakeruntime.New(nil, "web:v1")
	n, err := startNodeWith(t, store, rt, rt, orchestrate.Options{NodeName: name, NodeLabels: labels, NodeAllocatable: alloc})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// startNodeWith runs a node Manager with opts (the store, runtime, state
// directory and leases filled in) on store until the test ends; fake is
// the fake runtime inside runtime.
func startNodeWith(t *testing.T, store orchestrate.Store, fake *fakeruntime.Runtime, runtime orchestrate.Runtime, opts orchestrate.Options) (*testNode, error) {
	t.Helper()
	cs := &cuttable{Store: store}
	rt, name := fake, opts.NodeName
	opts.Store, opts.Runtime, opts.StateDir = cs, runtime, t.TempDir()
	opts.NodeLeaseDuration, opts.NodeLostGrace, opts.LeaderLeaseDuration = testLease, testGrace, testLease
	m, err := orchestrate.NewManager(opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	n := &testNode{name: name, m: m, rt: rt, store: cs}
	n.stop = func() {
		once.Do(func() {
			cs.Heal()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node %s: Run: %v", name, err)
			}
			cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer ccancel()
			if err := m.Close(cctx); err != nil {
				t.Errorf("node %s: Close: %v", name, err)
			}
		})
	}
	t.Cleanup(n.stop)
	return n, nil
}

func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

func livePods(t *testing.T, s orchestrate.Store) []*orchestrate.Pod {
	t.Helper()
	ps, err := orchestrate.List[*orchestrate.Pod](context.Background(), s, orchestrate.NamespaceAll, nil)
	if err != nil {
		t.Fatal(err)
	}
	var out []*orchestrate.Pod
	for _, p := range ps {
		if p.DeletionTime == nil && p.Status.Phase != orchestrate.PodFailed && p.Status.Phase != orchestrate.PodSucceeded {
			out = append(out, p)
		}
	}
	return out
}

// perNode counts the live pods bound to each node ("" unbound).
func perNode(pods []*orchestrate.Pod) map[string]int {
	out := map[string]int{}
	for _, p := range pods {
		out[p.Spec.NodeName]++
	}
	return out
}

func leaders(nodes []*testNode) []*testNode {
	var out []*testNode
	for _, n := range nodes {
		if n.m.IsLeader() {
			out = append(out, n)
		}
	}
	return out
}

func webDeployment(replicas int) *orchestrate.Deployment {
	return &orchestrate.Deployment{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec: orchestrate.DeploymentSpec{
			Replicas: replicas,
			Selector: &orchestrate.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: orchestrate.PodTemplate{
				Labels: map[string]string{"app": "web"},
				Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{
					{Name: "app", Image: "web:v1", Command: []string{"serve"}},
				}},
			},
		},
	}
}

// Three node Managers on one store: one leader; a Deployment's six
// pods spread two per node, each run by its node only; a node cut off
// from the store is marked not ready, its pods failed and replaced on
// the others, and once it is back it tears its stale pods down; the
// leader cut off is replaced within about a lease; a second node of a
// taken name is refused.
func TestClusterFailover(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	var nodes []*testNode
	for i := range 3 {
		nodes = append(nodes, startNode(t, store, fmt.Sprintf("n%d", i+1), orchestrate.NodeResources{}, nil))
	}
	waitUntil(t, 10*time.Second, "one leader", func() bool { return len(leaders(nodes)) == 1 })
	if _, err := nodes[0].m.Apply(ctx, webDeployment(6)); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "6 pods running, 2 per node", func() bool {
		for _, n := range nodes {
			if n.rt.RunningImages("web:v1") != 2 {
				return false
			}
		}
		c := perNode(livePods(t, store))
		return c["n1"] == 2 && c["n2"] == 2 && c["n3"] == 2
	})

	// Cut a node that is not the leader.
	var lost *testNode
	for _, n := range nodes {
		if !n.m.IsLeader() {
			lost = n
			break
		}
	}
	cutAt := time.Now()
	lost.store.Cut()
	took := waitUntil(t, 20*time.Second, "the lost node's pods replaced on the others", func() bool {
		c := perNode(livePods(t, store))
		if c[lost.name] != 0 || c["n1"]+c["n2"]+c["n3"] != 6 {
			return false
		}
		running := 0
		for _, n := range nodes {
			if n != lost {
				running += n.rt.RunningImages("web:v1")
			}
		}
		return running == 6
	})
	t.Logf("node cut off → its pods running elsewhere: %v (lease %v, grace %v)", took, testLease, testGrace)
	node, err := orchestrate.Get[*orchestrate.Node](ctx, store, "", lost.name)
	if err != nil || node.Ready().Status != orchestrate.ConditionUnknown {
		t.Errorf("the lost node: %v, Ready %+v; want Unknown", err, node.Ready())
	}
	if n := lost.rt.RunningImages("web:v1"); n != 2 {
		t.Errorf("the cut-off node runs %d containers, want its 2 kept while it cannot reach the store", n)
	}
	lost.store.Heal()
	waitUntil(t, 20*time.Second, "the returned node to tear its replaced pods down", func() bool {
		return lost.rt.RunningImages("web:v1") == 0
	})
	waitUntil(t, 10*time.Second, "the returned node Ready", func() bool {
		node, err := orchestrate.Get[*orchestrate.Node](ctx, store, "", lost.name)
		return err == nil && node.Ready().Status == orchestrate.ConditionTrue
	})
	_ = cutAt

	// Cut the leader.
	old := leaders(nodes)
	if len(old) != 1 {
		t.Fatalf("%d leaders", len(old))
	}
	old[0].store.Cut()
	took = waitUntil(t, 10*time.Second, "another leader", func() bool {
		l := leaders(nodes)
		return len(l) == 1 && l[0] != old[0]
	})
	t.Logf("leader cut off → another leads: %v (leader lease %v)", took, testLease)
	if took > 3*testLease {
		t.Errorf("takeover took %v, more than 3 leases of %v", took, testLease)
	}
	old[0].store.Heal()
	healed := time.Now()
	waitUntil(t, 10*time.Second, "every node's lease renewed after the heal", func() bool {
		ls, _ := orchestrate.List[*orchestrate.Lease](ctx, store, orchestrate.NamespaceNodeLease, nil)
		fresh := 0
		for _, l := range ls {
			if l.Spec.RenewTime.After(healed) {
				fresh++
			}
		}
		return fresh == 3
	})

	// A second Manager for a live node's name is refused.
	dup, err := orchestrate.NewManager(orchestrate.Options{Store: store, Runtime: fakeruntime.New(nil), StateDir: t.TempDir(),
		NodeName: "n1", NodeLeaseDuration: testLease})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = dup.Run(rctx)
	cancel()
	dup.Close(ctx)
	if !errors.Is(err, orchestrate.ErrExists) || !strings.Contains(err.Error(), "n1") {
		t.Errorf("Run of a second node n1: %v, want refused with ErrExists", err)
	}
}

// The scheduler binds by requests against allocatable and by
// nodeSelector; a pod that fits no node stays Pending with a
// FailedScheduling reason saying why, and is bound once a node fits.
func TestSchedulerFit(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	small := orchestrate.NodeResources{MilliCPU: 1000, Memory: 1 << 30, Pods: 10}
	n1 := startNode(t, store, "n1", small, map[string]string{"disk": "hdd"})
	n2 := startNode(t, store, "n2", small, map[string]string{"disk": "ssd"})
	waitUntil(t, 10*time.Second, "two ready nodes", func() bool {
		ns, _ := orchestrate.List[*orchestrate.Node](ctx, store, "", nil)
		ready := 0
		for _, n := range ns {
			if n.Ready().Status == orchestrate.ConditionTrue {
				ready++
			}
		}
		return ready == 2
	})
	nodes := []*testNode{n1, n2}
	waitUntil(t, 10*time.Second, "a leader", func() bool { return len(leaders(nodes)) == 1 })
	pod := func(name string, cpuShares uint64, sel map[string]string) *orchestrate.Pod {
		return &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: name},
			Spec: orchestrate.PodSpec{NodeSelector: sel, Containers: []orchestrate.Container{{Name: "c", Image: "web:v1",
				Resources: cgroup.Resources{CPUShares: cpuShares}}}}}
	}
	for _, p := range []*orchestrate.Pod{
		pod("ssd", 0, map[string]string{"disk": "ssd"}),
		pod("big", 2048, nil),                               // 2 CPUs: no node has them
		pod("nvme", 0, map[string]string{"disk": "nvme"}),   // no such node
		pod("half", 512, map[string]string{"disk": "hdd"}),  // 500m on n1
		pod("half2", 512, map[string]string{"disk": "hdd"}), // 500m more on n1: full
		pod("third", 512, map[string]string{"disk": "hdd"}), // does not fit beside them
	} {
		if _, err := n1.m.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	get := func(name string) *orchestrate.Pod {
		p, err := orchestrate.Get[*orchestrate.Pod](ctx, store, "", name)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Of half, half2 and third (500m each, hdd only), two fit on n1,
	// whichever the scheduler takes first.
	var bound, left []string
	waitUntil(t, 20*time.Second, "the pods that fit bound", func() bool {
		bound, left = nil, nil
		for _, n := range []string{"half", "half2", "third"} {
			if get(n).Spec.NodeName == "n1" {
				bound = append(bound, n)
			} else {
				left = append(left, n)
			}
		}
		return get("ssd").Spec.NodeName == "n2" && len(bound) == 2
	})
	waitUntil(t, 25*time.Second, "FailedScheduling on the others", func() bool {
		for _, n := range []string{"big", "nvme", left[0]} {
			if get(n).Status.Reason != orchestrate.ReasonFailedScheduling {
				return false
			}
		}
		return true
	})
	for name, want := range map[string]string{
		"big":   "0/2 nodes are available: 2 Insufficient cpu.",
		"nvme":  "0/2 nodes are available: 2 node(s) didn't match Pod's node selector.",
		left[0]: "0/2 nodes are available: 1 Insufficient cpu, 1 node(s) didn't match Pod's node selector.",
	} {
		p := get(name)
		if p.Spec.NodeName != "" || p.Status.Phase != orchestrate.PodPending || p.Status.Message != want {
			t.Errorf("pod %s: node %q, %s %q; want Pending, unbound: %q", name, p.Spec.NodeName, p.Status.Phase, p.Status.Message, want)
		}
	}
	var evs []orchestrate.Event
	for _, n := range nodes {
		evs = append(evs, n.m.Events(orchestrate.EventFilter{Reason: orchestrate.ReasonFailedScheduling})...)
	}
	if len(evs) == 0 {
		t.Error("no FailedScheduling event on either node")
	}
	// Room made: the one left fits once a bound one goes.
	if err := n1.m.Delete(ctx, orchestrate.KindPod, "", bound[0]); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 20*time.Second, "the pod left bound once there is room", func() bool { return get(left[0]).Spec.NodeName == "n1" })
	waitUntil(t, 20*time.Second, "n1 runs two pods", func() bool { return n1.rt.RunningImages("web:v1") == 2 })
}

// A Job's pod on a node that is lost is marked failed and the Job runs
// a new one on another node (its failure counted against the backoff
// limit).
func TestClusterJobNodeLost(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	var nodes []*testNode
	for i := range 2 {
		nodes = append(nodes, startNode(t, store, fmt.Sprintf("n%d", i+1), orchestrate.NodeResources{}, nil))
	}
	waitUntil(t, 10*time.Second, "one leader", func() bool { return len(leaders(nodes)) == 1 })
	waitUntil(t, 10*time.Second, "two ready nodes", func() bool {
		ns, _ := orchestrate.List[*orchestrate.Node](ctx, store, "", nil)
		return len(ns) == 2 && ns[0].Ready().Status == orchestrate.ConditionTrue && ns[1].Ready().Status == orchestrate.ConditionTrue
	})
	// Keep the Job's pod off the leader, so that losing its node leaves
	// the leader to notice.
	follower := nodes[0]
	if follower.m.IsLeader() {
		follower = nodes[1]
	}
	limit := 3
	job := &orchestrate.Job{
		ObjectMeta: orchestrate.ObjectMeta{Name: "batch"},
		Spec: orchestrate.JobSpec{BackoffLimit: &limit, Template: orchestrate.PodTemplate{
			Labels: map[string]string{"job": "batch"},
			Spec: orchestrate.PodSpec{RestartPolicy: orchestrate.RestartPolicyNever, NodeSelector: map[string]string{"kubernetes.io/hostname": follower.name},
				Containers: []orchestrate.Container{{Name: "c", Image: "web:v1", Command: []string{"work"}}}},
		}},
	}
	if _, err := nodes[0].m.Apply(ctx, job); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the Job's pod running on "+follower.name, func() bool { return follower.rt.RunningImages("web:v1") == 1 })
	first := livePods(t, store)[0].Name
	follower.store.Cut()
	waitUntil(t, 20*time.Second, "the first pod failed NodeLost and counted", func() bool {
		p, err := orchestrate.Get[*orchestrate.Pod](ctx, store, "", first)
		if err != nil || p.Status.Reason != orchestrate.ReasonNodeLost {
			return false
		}
		j, err := orchestrate.Get[*orchestrate.Job](ctx, store, "", "batch")
		return err == nil && j.Status.Failed == 1
	})
	// The new pod wants the lost node (its selector), so it waits there
	// unscheduled until the node is back; then it runs there.
	follower.store.Heal()
	waitUntil(t, 20*time.Second, "a second pod running on the returned node, the first torn down", func() bool {
		ps := livePods(t, store)
		return len(ps) == 1 && ps[0].Name != first && follower.rt.Running(ps[0].Name, "c") != nil && follower.rt.Running(first, "c") == nil
	})
}

// A node away for longer than its lease can be taken over by a new
// Manager of its name; when the old one comes back it finds its Lease
// held by the other and stops the pods it ran (the other runs them).
func TestClusterNodeNameTakenOver(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	leaderNode := startNode(t, store, "n0", orchestrate.NodeResources{}, map[string]string{"role": "control"})
	waitUntil(t, 10*time.Second, "n0 leads", func() bool { return leaderNode.m.IsLeader() })
	old := startNode(t, store, "n1", orchestrate.NodeResources{}, nil)
	waitUntil(t, 10*time.Second, "n1 ready", func() bool {
		n, err := orchestrate.Get[*orchestrate.Node](ctx, store, "", "n1")
		return err == nil && n.Ready().Status == orchestrate.ConditionTrue
	})
	p := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: "pinned"},
		Spec: orchestrate.PodSpec{NodeName: "n1", Containers: []orchestrate.Container{{Name: "c", Image: "web:v1"}}}}
	if _, err := leaderNode.m.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "the pinned pod running on the old n1", func() bool { return old.rt.Running("pinned", "c") != nil })
	old.store.Cut()
	time.Sleep(testLease + 200*time.Millisecond) // its lease lapses
	repl := startNode(t, store, "n1", orchestrate.NodeResources{}, nil)
	old.store.Heal()
	waitUntil(t, 20*time.Second, "the old n1 stops the pod, the new n1 runs it", func() bool {
		return old.rt.Running("pinned", "c") == nil && repl.rt.Running("pinned", "c") != nil
	})
	l, err := orchestrate.Get[*orchestrate.Lease](ctx, store, orchestrate.NamespaceNodeLease, "n1")
	if err != nil || l.Spec.Transitions != 1 {
		t.Errorf("n1's lease: %v %+v; want taken over once", err, l)
	}
}
