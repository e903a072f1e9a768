package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// kindScheduler names the scheduler among the Manager's controllers (it
// reconciles pods, by key, on the leader).
const kindScheduler = "scheduler"

// ReasonFailedScheduling is the reason of the event, and of the status,
// of a pod that fits no node (Kubernetes' FailedScheduling): it stays
// Pending and is tried again when a node changes, and every 10 s.
const ReasonFailedScheduling = "FailedScheduling"

// schedulerRetry is how often a pod that fits no node is tried again.
const schedulerRetry = 10 * time.Second

// scheduler binds one pod at a time (mu), as Kubernetes' scheduler
// does: each binding reads the bindings before it, so that concurrent
// pods of one owner spread rather than all pick the same node.
type scheduler struct {
	m  *Manager
	mu sync.Mutex
}

// registerScheduler adds the scheduler of a node Manager.
func registerScheduler(m *Manager) {
	s := &scheduler{m: m}
	m.register(kindScheduler, s, s.keysFor, nil)
}

// keysFor: a pod that is not bound, or every unbound pod known when a
// node changes or a bound pod goes (room was made).
func (s *scheduler) keysFor(ev WatchEvent) []string {
	switch o := ev.Object.(type) {
	case *Pod:
		if ev.Type != WatchDeleted && o.Spec.NodeName == "" && o.DeletionTime == nil && !podFinished(o) {
			return []string{keyOf(o)}
		}
		if o.Spec.NodeName != "" && (ev.Type == WatchDeleted || podFinished(o)) {
			s.m.scheduleAll()
		}
	case *Node:
		s.m.scheduleAll()
	}
	return nil
}

// scheduleAll queues every unbound pod for the scheduler (in the
// background: it lists the store).
func (m *Manager) scheduleAll() {
	kc := m.kinds[kindScheduler]
	if kc == nil || kc.ctrl == nil {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(m.watchCtx, 10*time.Second)
		defer cancel()
		pods, err := List[*Pod](ctx, m.store, NamespaceAll, nil)
		if err != nil {
			return
		}
		for _, p := range pods {
			if p.Spec.NodeName == "" && p.DeletionTime == nil && !podFinished(p) {
				kc.ctrl.Add(keyOf(p))
			}
		}
	}()
}

// podRequests returns what a pod requests of a node: each container's
// CPU shares and memory reservation (Kubernetes' requests), or its
// limits where it requests nothing (as Kubernetes defaults requests to
// limits), summed; and one pod.
func podRequests(p *Pod) NodeResources {
	r := NodeResources{Pods: 1}
	for _, c := range p.Spec.Containers {
		res := c.Resources
		switch {
		case res.CPUShares > 0:
			r.MilliCPU += int64((res.CPUShares*1000 + 1023) / 1024)
		case res.CPUQuota > 0:
			period := int64(res.CPUPeriod)
			if period == 0 {
				period = 100000
			}
			r.MilliCPU += (res.CPUQuota*1000 + period - 1) / period
		}
		switch {
		case res.MemoryReservation > 0:
			r.Memory += res.MemoryReservation
		case res.MemoryLimit > 0:
			r.Memory += res.MemoryLimit
		}
	}
	return r
}

// Reconcile binds one pending pod to a node, and with it every other
// pending pod the same listing shows (as Kubernetes' scheduler binds
// from its cache, counting the pods it just bound): of the Ready,
// schedulable nodes whose labels match a pod's nodeSelector and whose
// allocatable holds its requests beside those of the pods bound there,
// the one with the fewest pods of the same owner (spreading a
// ReplicaSet's replicas), then the least requested, then by name.
func (s *scheduler) Reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	m := s.m
	s.mu.Lock()
	defer s.mu.Unlock()
	ns, name := splitKey(key)
	pod, err := Get[*Pod](ctx, m.store, ns, name)
	if errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if !pending(pod) {
		return reconcile.Result{}, nil
	}
	nodes, err := List[*Node](ctx, m.store, "", nil)
	if err != nil {
		return reconcile.Result{}, err
	}
	pods, err := List[*Pod](ctx, m.store, NamespaceAll, nil)
	if err != nil {
		return reconcile.Result{}, err
	}
	pl := newPlacement(nodes, pods)
	res, err := s.bind(ctx, pl, pod, true)
	if err != nil || res != (reconcile.Result{}) {
		return res, err
	}
	// The others pending in this listing, oldest first; each has its
	// own key queued too, which finds it bound.
	var more []*Pod
	for _, p := range pods {
		if pending(p) && keyOf(p) != key {
			more = append(more, p)
		}
	}
	slices.SortFunc(more, func(a, b *Pod) int {
		if c := a.CreationTime.Compare(b.CreationTime); c != 0 {
			return c
		}
		return strings.Compare(keyOf(a), keyOf(b))
	})
	for _, p := range more {
		if err := ctx.Err(); err != nil {
			return reconcile.Result{}, nil
		}
		if _, err := s.bind(ctx, pl, p, false); err != nil {
			m.log.Debug("scheduler: bind", "pod", keyOf(p), "err", err)
		}
	}
	return reconcile.Result{}, nil
}

// pending reports whether a pod waits for a node.
func pending(p *Pod) bool {
	return p.Spec.NodeName == "" && p.DeletionTime == nil && !podFinished(p)
}

// placement is what the nodes have bound: requests and pods per owner.
type placement struct {
	nodes []*Node
	used  map[string]NodeResources
	owned map[string]map[string]int // owner UID → node → pods
}

func newPlacement(nodes []*Node, pods []*Pod) *placement {
	pl := &placement{nodes: nodes, used: map[string]NodeResources{}, owned: map[string]map[string]int{}}
	for _, p := range pods {
		if p.Spec.NodeName != "" && !podFinished(p) {
			pl.add(p, p.Spec.NodeName)
		}
	}
	return pl
}

// add counts p as bound to node.
func (pl *placement) add(p *Pod, node string) {
	u, r := pl.used[node], podRequests(p)
	u.MilliCPU, u.Memory, u.Pods = u.MilliCPU+r.MilliCPU, u.Memory+r.Memory, u.Pods+r.Pods
	pl.used[node] = u
	if o := controllerOf(&p.ObjectMeta); o != nil {
		if pl.owned[o.UID] == nil {
			pl.owned[o.UID] = map[string]int{}
		}
		pl.owned[o.UID][node]++
	}
}

// fit returns the node pod goes to, or "" and why none fits.
func (pl *placement) fit(pod *Pod) (string, string) {
	want := podRequests(pod)
	var owned map[string]int
	if o := controllerOf(&pod.ObjectMeta); o != nil {
		owned = pl.owned[o.UID]
	}
	var fit []*Node
	reasons := map[string]int{}
	for _, n := range pl.nodes {
		u, alloc := pl.used[n.Name], n.Status.Allocatable
		switch {
		case n.Ready().Status != ConditionTrue:
			reasons["node(s) were not ready"]++
		case n.Spec.Unschedulable:
			reasons["node(s) were unschedulable"]++
		case !selectorMatches(pod.Spec.NodeSelector, n.Labels):
			reasons["node(s) didn't match Pod's node selector"]++
		case u.Pods+want.Pods > alloc.Pods:
			reasons["Too many pods"]++
		case u.MilliCPU+want.MilliCPU > alloc.MilliCPU:
			reasons["Insufficient cpu"]++
		case u.Memory+want.Memory > alloc.Memory:
			reasons["Insufficient memory"]++
		default:
			fit = append(fit, n)
		}
	}
	if len(fit) == 0 {
		var parts []string
		for r, n := range reasons {
			parts = append(parts, fmt.Sprintf("%d %s", n, r))
		}
		slices.Sort(parts)
		msg := fmt.Sprintf("0/%d nodes are available", len(pl.nodes))
		if len(parts) > 0 {
			msg += ": " + strings.Join(parts, ", ")
		}
		return "", msg + "."
	}
	score := func(n *Node) (int, int64) {
		u, a := pl.used[n.Name], n.Status.Allocatable
		var frac int64 // thousandths of the most requested resource
		if a.MilliCPU > 0 {
			frac = max(frac, (u.MilliCPU+want.MilliCPU)*1000/a.MilliCPU)
		}
		if a.Memory > 0 {
			frac = max(frac, (u.Memory+want.Memory)*1000/a.Memory)
		}
		if a.Pods > 0 {
			frac = max(frac, int64(u.Pods+want.Pods)*1000/int64(a.Pods))
		}
		return owned[n.Name], frac
	}
	slices.SortFunc(fit, func(a, b *Node) int {
		ao, af := score(a)
		bo, bf := score(b)
		if ao != bo {
			return ao - bo
		}
		if af != bf {
			if af < bf {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	return fit[0].Name, ""
}

// bind binds pod where pl fits it and counts it there. A pod that fits
// nowhere gets the FailedScheduling reason when report is set (it is
// the one the reconcile was for) and is retried later.
func (s *scheduler) bind(ctx context.Context, pl *placement, pod *Pod, report bool) (reconcile.Result, error) {
	m := s.m
	node, msg := pl.fit(pod)
	if node == "" {
		if !report {
			return reconcile.Result{}, nil
		}
		if pod.Status.Reason != ReasonFailedScheduling || pod.Status.Message != msg {
			pod.Status.Phase = PodPending
			pod.Status.Reason, pod.Status.Message = ReasonFailedScheduling, msg
			if _, err := m.store.UpdateStatus(ctx, pod); errors.Is(err, ErrConflict) {
				return reconcile.Result{Requeue: true}, nil
			} else if err != nil && !errors.Is(err, ErrNotFound) {
				return reconcile.Result{}, err
			}
			m.recordEvent(pod, EventWarning, ReasonFailedScheduling, "%s", msg)
		}
		return reconcile.Result{RequeueAfter: schedulerRetry}, nil
	}
	pod.Spec.NodeName = node
	if _, err := m.store.Update(ctx, pod); err != nil {
		if errors.Is(err, ErrConflict) {
			return reconcile.Result{Requeue: true}, nil
		}
		if errors.Is(err, ErrNotFound) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	pl.add(pod, node)
	m.recordEvent(pod, EventNormal, "Scheduled", "assigned %s/%s to %s", pod.Namespace, pod.Name, node)
	return reconcile.Result{}, nil
}

// selectorMatches reports whether labels has every key and value of sel.
func selectorMatches(sel, labels map[string]string) bool {
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}
