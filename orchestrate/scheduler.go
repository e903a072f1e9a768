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

// Reconcile binds one pending pod to a node: of the Ready, schedulable
// nodes whose labels match its nodeSelector and whose allocatable holds
// its requests beside those of the pods bound there, the one with the
// fewest pods of the same owner (spreading a ReplicaSet's replicas),
// then the least requested, then by name.
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
	if pod.Spec.NodeName != "" || pod.DeletionTime != nil || podFinished(pod) {
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
	used := map[string]NodeResources{}
	owned := map[string]int{} // pods of the same owner per node
	owner := controllerOf(&pod.ObjectMeta)
	for _, p := range pods {
		if p.Spec.NodeName == "" || podFinished(p) {
			continue
		}
		u, r := used[p.Spec.NodeName], podRequests(p)
		u.MilliCPU, u.Memory, u.Pods = u.MilliCPU+r.MilliCPU, u.Memory+r.Memory, u.Pods+r.Pods
		used[p.Spec.NodeName] = u
		if o := controllerOf(&p.ObjectMeta); owner != nil && o != nil && o.UID == owner.UID {
			owned[p.Spec.NodeName]++
		}
	}
	want := podRequests(pod)
	var fit []*Node
	reasons := map[string]int{}
	for _, n := range nodes {
		u, alloc := used[n.Name], n.Status.Allocatable
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
		msg := fmt.Sprintf("0/%d nodes are available", len(nodes))
		if len(parts) > 0 {
			msg += ": " + strings.Join(parts, ", ")
		}
		msg += "."
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
	score := func(n *Node) (int, int64) {
		u, a := used[n.Name], n.Status.Allocatable
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
	pod.Spec.NodeName = fit[0].Name
	if _, err := m.store.Update(ctx, pod); err != nil {
		if errors.Is(err, ErrConflict) {
			return reconcile.Result{Requeue: true}, nil
		}
		if errors.Is(err, ErrNotFound) {
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	m.recordEvent(pod, EventNormal, "Scheduled", "assigned %s/%s to %s", pod.Namespace, pod.Name, fit[0].Name)
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
