package orchestrate

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Defaults of the cluster settings of Options.
const (
	DefaultNodeLeaseDuration   = 40 * time.Second // Kubernetes' node lease
	DefaultNodeLostGrace       = 5 * time.Minute  // Kubernetes' pod eviction timeout
	DefaultLeaderLeaseDuration = 15 * time.Second // Kubernetes' leader election lease
	// DefaultNodePods is a node's allocatable pods unless
	// Options.NodeAllocatable says otherwise (the kubelet's maxPods).
	DefaultNodePods = 110
)

// ReasonNodeLost is the Reason of a pod the node lifecycle controller
// marked failed because its node stopped renewing its Lease: its
// ReplicaSet or Job replaces it elsewhere, and the node, if it comes
// back, tears down its containers.
const ReasonNodeLost = "NodeLost"

// errLeaseTaken: another Manager holds this node's Lease.
var errLeaseTaken = errors.New("another Manager holds the node's lease")

// cluster is the state of a Manager that is a node of a cluster.
type cluster struct {
	node        string
	identity    string // this Manager, in Leases
	labels      map[string]string
	alloc       NodeResources
	nodeLease   time.Duration
	grace       time.Duration
	leaderLease time.Duration
	nodeIP      netip.Addr // Options.NodeIP

	mu     sync.Mutex
	leader bool
	// fenced is set when another Manager took this node's Lease (this
	// one was away longer than the lease): it then stops the pods it
	// runs, which the other runs now, and renews nothing.
	fenced bool
	// observed records, per Lease key, the version last seen and when
	// this Manager saw it change: a Lease has lapsed when its version
	// has not changed for its duration on this Manager's clock (as
	// Kubernetes' leader election does, so that clocks need not agree).
	observed map[string]observedLease
	// notReadySince is when this leader saw each node's lease lapse.
	notReadySince map[string]time.Time
}

type observedLease struct {
	version uint64
	at      time.Time
}

// newCluster returns the cluster state for opts, or nil when the Manager
// is no node (Options.NodeName empty).
func newCluster(opts Options) (*cluster, error) {
	if opts.NodeName == "" {
		return nil, nil
	}
	if err := validateName("Options.NodeName", opts.NodeName); err != nil {
		return nil, fmt.Errorf("orchestrate: new manager: %w", err)
	}
	var b [6]byte
	rand.Read(b[:])
	host, _ := os.Hostname()
	c := &cluster{
		node:        opts.NodeName,
		identity:    fmt.Sprintf("%s_%s_%d_%s", opts.NodeName, host, os.Getpid(), hex.EncodeToString(b[:])),
		labels:      map[string]string{"kubernetes.io/hostname": opts.NodeName},
		alloc:       opts.NodeAllocatable,
		nodeLease:   opts.NodeLeaseDuration,
		grace:       opts.NodeLostGrace,
		leaderLease: opts.LeaderLeaseDuration,
		nodeIP:      opts.NodeIP,
		observed:    map[string]observedLease{}, notReadySince: map[string]time.Time{},
	}
	for k, v := range opts.NodeLabels {
		c.labels[k] = v
	}
	if c.alloc.MilliCPU == 0 {
		c.alloc.MilliCPU = int64(goruntime.NumCPU()) * 1000
	}
	if c.alloc.Memory == 0 {
		c.alloc.Memory = memTotal()
	}
	if c.alloc.Pods == 0 {
		c.alloc.Pods = DefaultNodePods
	}
	if c.nodeLease <= 0 {
		c.nodeLease = DefaultNodeLeaseDuration
	}
	if c.grace <= 0 {
		c.grace = DefaultNodeLostGrace
	}
	if c.leaderLease <= 0 {
		c.leaderLease = DefaultLeaderLeaseDuration
	}
	if c.nodeIP.IsValid() && (!c.nodeIP.IsGlobalUnicast() && !c.nodeIP.IsPrivate() || c.nodeIP.Zone() != "") {
		return nil, fmt.Errorf("orchestrate: new manager: Options.NodeIP %s: want a unicast address of this node", c.nodeIP)
	}
	return c, nil
}

// memTotal returns the machine's memory in bytes (MemTotal of
// /proc/meminfo; 0 if unknown).
func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// IsLeader reports whether the Manager is a node of a cluster and now
// holds the leader's Lease: it runs the workload controllers, the
// scheduler and the node lifecycle controller.
func (m *Manager) IsLeader() bool {
	if m.cluster == nil {
		return false
	}
	m.cluster.mu.Lock()
	defer m.cluster.mu.Unlock()
	return m.cluster.leader
}

// isFenced reports whether another Manager took over the node's name.
func (c *cluster) isFenced() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fenced
}

// lapsed reports whether l has not been renewed for its duration, as
// this Manager observed it (see cluster.observed).
func (c *cluster) lapsed(l *Lease, now time.Time) bool {
	key := l.Namespace + "/" + l.Name
	c.mu.Lock()
	defer c.mu.Unlock()
	o, ok := c.observed[key]
	if !ok || o.version != l.ResourceVersion {
		c.observed[key] = observedLease{l.ResourceVersion, now}
		return false
	}
	d := l.Spec.Duration
	if d <= 0 {
		d = c.nodeLease
	}
	return now.Sub(o.at) > d
}

// ensureNamespace creates a namespace of the cluster's own if missing.
func (m *Manager) ensureNamespace(ctx context.Context, name string) error {
	_, err := m.store.Create(ctx, &Namespace{ObjectMeta: ObjectMeta{Name: name}})
	if err != nil && !errors.Is(err, ErrExists) {
		return err
	}
	return nil
}

// joinCluster registers the node: its Lease (refused if a live holder
// other than this Manager renews it) and its Node object, Ready.
func (m *Manager) joinCluster(ctx context.Context) error {
	c := m.cluster
	for _, ns := range []string{NamespaceNodeLease, NamespaceSystem} {
		if err := m.ensureNamespace(ctx, ns); err != nil {
			return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
		}
	}
	var cidr netip.Prefix
	if nn, ok := m.runtime.(NodeNetwork); ok {
		cidr = nn.PodCIDR()
	}
	if err := m.checkNodeNetwork(ctx, cidr); err != nil {
		return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
	}
	var podCIDR string
	if cidr.IsValid() {
		podCIDR = cidr.String()
	}
	now := m.clock.Now()
	lease := &Lease{ObjectMeta: ObjectMeta{Name: c.node, Namespace: NamespaceNodeLease},
		Spec: LeaseSpec{Holder: c.identity, Duration: c.nodeLease, AcquireTime: now, RenewTime: now}}
	if _, err := m.store.Create(ctx, lease); errors.Is(err, ErrExists) {
		cur, err := Get[*Lease](ctx, m.store, NamespaceNodeLease, c.node)
		if err != nil {
			return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
		}
		if cur.Spec.Holder != c.identity && !m.leaseLapsedNow(ctx, cur) {
			return fmt.Errorf("orchestrate: node %s: another node of that name is alive (its lease is held by %s, renewed %s): %w",
				c.node, cur.Spec.Holder, cur.Spec.RenewTime.Format(time.RFC3339), ErrExists)
		}
		cur.Spec.Holder, cur.Spec.Duration, cur.Spec.AcquireTime, cur.Spec.RenewTime = c.identity, c.nodeLease, now, now
		cur.Spec.Transitions++
		if _, err := m.store.Update(ctx, cur); err != nil {
			return fmt.Errorf("orchestrate: node %s: take over its lease: %w", c.node, err)
		}
	} else if err != nil {
		return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
	}
	node := &Node{ObjectMeta: ObjectMeta{Name: c.node, Labels: c.labels}, Spec: NodeSpec{PodCIDR: podCIDR}}
	if _, err := m.store.Create(ctx, node); err != nil && !errors.Is(err, ErrExists) {
		return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
	} else if errors.Is(err, ErrExists) {
		cur, err := Get[*Node](ctx, m.store, "", c.node)
		if err != nil {
			return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
		}
		cur.Labels, cur.Spec.PodCIDR = c.labels, podCIDR
		if _, err := m.store.Update(ctx, cur); err != nil {
			return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
		}
	}
	return m.writeNodeStatus(ctx)
}

// leaseLapsedNow reports whether a lease read at joining has lapsed: by
// its RenewTime (there is no earlier observation to go by), on this
// Manager's clock.
func (m *Manager) leaseLapsedNow(ctx context.Context, l *Lease) bool {
	d := l.Spec.Duration
	if d <= 0 {
		d = m.cluster.nodeLease
	}
	return m.clock.Now().Sub(l.Spec.RenewTime) > d
}

// writeNodeStatus writes the node's capacity and its Ready condition.
func (m *Manager) writeNodeStatus(ctx context.Context) error {
	c := m.cluster
	for {
		node, err := Get[*Node](ctx, m.store, "", c.node)
		if err != nil {
			return fmt.Errorf("orchestrate: node %s: %w", c.node, err)
		}
		now := m.clock.Now()
		node.Status.Capacity, node.Status.Allocatable = c.alloc, c.alloc
		node.Status.Addresses = []NodeAddress{{Type: NodeHostname, Address: c.node}}
		if c.nodeIP.IsValid() {
			node.Status.Addresses = append([]NodeAddress{{Type: NodeInternalIP, Address: c.nodeIP.String()}}, node.Status.Addresses...)
		}
		node.setCondition(NodeCondition{Type: NodeReady, Status: ConditionTrue, Reason: "NodeReady",
			Message: "the node renews its lease", LastHeartbeat: now, LastTransition: now})
		_, err = m.store.UpdateStatus(ctx, node)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("orchestrate: node %s: status: %w", c.node, err)
		}
		return nil
	}
}

// heartbeat renews the node's Lease every quarter of its duration until
// ctx ends, and marks the node Ready again when it was marked otherwise
// (the node came back). Failed renewals (the store away) are retried at
// the same pace; the node's pods keep running meanwhile.
func (m *Manager) heartbeat(ctx context.Context) {
	c := m.cluster
	every := c.nodeLease / 4
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(every):
		}
		if err := m.renewNodeLease(ctx); errors.Is(err, errLeaseTaken) {
			m.log.Error("another Manager took over this node's name; stopping its pods here", "node", c.node, "err", err)
			c.mu.Lock()
			c.fenced = true
			c.mu.Unlock()
			m.pods.requeueAll()
			return
		} else if err != nil {
			m.log.Warn("node lease renewal failed", "node", c.node, "err", err)
			continue
		}
		node, err := Get[*Node](ctx, m.store, "", c.node)
		if err == nil && node.Ready().Status != ConditionTrue {
			if err := m.writeNodeStatus(ctx); err != nil {
				m.log.Warn("node status failed", "node", c.node, "err", err)
			} else {
				m.recordEvent(node, EventNormal, "NodeReady", "node %s is ready again", c.node)
			}
		}
	}
}

// renewNodeLease renews the node's Lease once.
func (m *Manager) renewNodeLease(ctx context.Context) error {
	c := m.cluster
	rctx, cancel := context.WithTimeout(ctx, c.nodeLease/4)
	defer cancel()
	l, err := Get[*Lease](rctx, m.store, NamespaceNodeLease, c.node)
	if err != nil {
		return err
	}
	if l.Spec.Holder != c.identity {
		return fmt.Errorf("the lease of node %s is held by %s: %w", c.node, l.Spec.Holder, errLeaseTaken)
	}
	l.Spec.RenewTime = m.clock.Now()
	_, err = m.store.Update(rctx, l)
	return err
}

// elect takes and renews the leader's Lease until ctx ends: every third
// of the lease's duration it renews the Lease it holds, or takes one
// that has lapsed (a conditional Update: of two contenders one wins).
// A leader that cannot renew for two thirds of the duration steps down
// before another may take over.
func (m *Manager) elect(ctx context.Context) {
	c := m.cluster
	every := c.leaderLease / 3
	var renewed time.Time
	for {
		ok, err := m.tryLead(ctx)
		now := m.clock.Now()
		c.mu.Lock()
		was := c.leader
		switch {
		case ok:
			renewed = now
			c.leader = true
		case was && now.Sub(renewed) > 2*c.leaderLease/3:
			c.leader = false
		}
		is := c.leader
		c.mu.Unlock()
		if err != nil {
			m.log.Warn("leader election", "node", c.node, "err", err)
		}
		if is && !was {
			m.log.Info("leader elected", "node", c.node)
			m.resync(ctx)
		} else if was && !is {
			m.log.Warn("leadership lost", "node", c.node)
		}
		select {
		case <-ctx.Done():
			c.mu.Lock()
			c.leader = false
			c.mu.Unlock()
			m.stepDown()
			return
		case <-m.clock.After(every):
		}
	}
}

// tryLead renews or takes the leader's Lease once; it reports whether
// this Manager holds it now.
func (m *Manager) tryLead(ctx context.Context) (bool, error) {
	c := m.cluster
	if c.isFenced() {
		return false, nil // another Manager is this node now
	}
	rctx, cancel := context.WithTimeout(ctx, c.leaderLease/3)
	defer cancel()
	now := m.clock.Now()
	l, err := Get[*Lease](rctx, m.store, NamespaceSystem, LeaderLeaseName)
	if errors.Is(err, ErrNotFound) {
		_, err := m.store.Create(rctx, &Lease{ObjectMeta: ObjectMeta{Name: LeaderLeaseName, Namespace: NamespaceSystem},
			Spec: LeaseSpec{Holder: c.identity, Duration: c.leaderLease, AcquireTime: now, RenewTime: now}})
		if errors.Is(err, ErrExists) {
			return false, nil
		}
		return err == nil, err
	}
	if err != nil {
		return false, err
	}
	switch {
	case l.Spec.Holder == c.identity:
		l.Spec.RenewTime = now
	case l.Spec.Holder == "" || c.lapsed(l, now):
		l.Spec.Holder, l.Spec.AcquireTime, l.Spec.RenewTime, l.Spec.Duration = c.identity, now, now, c.leaderLease
		l.Spec.Transitions++
	default:
		return false, nil
	}
	_, err = m.store.Update(rctx, l) // conditional: l's ResourceVersion
	if errors.Is(err, ErrConflict) {
		return false, nil
	}
	return err == nil, err
}

// stepDown gives up the leader's Lease when the Manager stops, so that
// another takes over at once rather than after the lease lapses.
func (m *Manager) stepDown() {
	c := m.cluster
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l, err := Get[*Lease](ctx, m.store, NamespaceSystem, LeaderLeaseName)
	if err != nil || l.Spec.Holder != c.identity {
		return
	}
	l.Spec.Holder = ""
	m.store.Update(ctx, l)
}

// resync hands every object to the cluster-wide controllers: what
// changed while this Manager was not the leader was dropped by them.
func (m *Manager) resync(ctx context.Context) {
	for _, kind := range m.kindOrder {
		kc := m.kinds[kind]
		if kc.ctrl == nil || kind == KindPod {
			continue
		}
		listKind := kind
		if kind == kindScheduler {
			listKind = KindPod
		}
		objs, err := m.store.List(ctx, listKind, NamespaceAll, nil)
		if err != nil {
			m.log.Warn("leader resync", "kind", kind, "err", err)
			continue
		}
		for _, o := range objs {
			for _, k := range kc.keysFor(WatchEvent{Type: WatchAdded, Object: o, ResourceVersion: o.Meta().ResourceVersion}) {
				kc.ctrl.Add(k)
			}
			if kind == listKind {
				kc.ctrl.Add(keyOf(o))
			}
		}
	}
	for _, kind := range gcKinds {
		objs, err := m.store.List(ctx, kind, NamespaceAll, nil)
		if err != nil {
			continue
		}
		for _, o := range objs {
			if ref := controllerOf(o.Meta()); ref != nil {
				m.gc.Add(gcKey{Kind: ref.Kind, Namespace: o.Meta().Namespace, Name: ref.Name, UID: ref.UID})
			}
		}
	}
	m.scheduleAll()
}

// nodeLifecycle, on the leader, checks the nodes' Leases every eighth
// of their duration: a node whose Lease lapsed is marked Ready Unknown,
// and once it has been so for the grace period its pods are marked
// failed (ReasonNodeLost), for their ReplicaSets and Jobs to replace
// them elsewhere; its pods being deleted are removed.
func (m *Manager) nodeLifecycle(ctx context.Context) {
	c := m.cluster
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.clock.After(c.nodeLease / 8):
		}
		if !m.IsLeader() {
			continue
		}
		if err := m.checkNodes(ctx); err != nil {
			m.log.Warn("node lifecycle", "err", err)
		}
	}
}

// checkNodes is one pass of nodeLifecycle.
func (m *Manager) checkNodes(ctx context.Context) error {
	c := m.cluster
	nodes, err := List[*Node](ctx, m.store, "", nil)
	if err != nil {
		return err
	}
	leases, err := List[*Lease](ctx, m.store, NamespaceNodeLease, nil)
	if err != nil {
		return err
	}
	byName := map[string]*Lease{}
	for _, l := range leases {
		byName[l.Name] = l
	}
	now := m.clock.Now()
	for _, n := range nodes {
		l := byName[n.Name]
		if l != nil && !c.lapsed(l, now) {
			c.mu.Lock()
			delete(c.notReadySince, n.Name)
			c.mu.Unlock()
			continue
		}
		c.mu.Lock()
		since, ok := c.notReadySince[n.Name]
		if !ok {
			since = now
			c.notReadySince[n.Name] = now
		}
		c.mu.Unlock()
		if n.Ready().Status == ConditionTrue {
			n.setCondition(NodeCondition{Type: NodeReady, Status: ConditionUnknown, Reason: "NodeStatusUnknown",
				Message: "the node stopped renewing its lease", LastHeartbeat: n.Ready().LastHeartbeat, LastTransition: now})
			if _, err := m.store.UpdateStatus(ctx, n); err != nil && !errors.Is(err, ErrConflict) {
				return err
			}
			m.recordEvent(n, EventWarning, "NodeNotReady", "node %s stopped renewing its lease", n.Name)
		}
		if now.Sub(since) < c.grace {
			continue
		}
		if err := m.failNodePods(ctx, n.Name, since); err != nil {
			return err
		}
	}
	return nil
}

// failNodePods marks the active pods bound to a lost node failed and
// removes its pods being deleted (nothing will finish their deletion).
func (m *Manager) failNodePods(ctx context.Context, node string, since time.Time) error {
	pods, err := List[*Pod](ctx, m.store, NamespaceAll, nil)
	if err != nil {
		return err
	}
	for _, p := range pods {
		if p.Spec.NodeName != node {
			continue
		}
		if p.DeletionTime != nil {
			if err := m.store.Delete(ctx, KindPod, p.Namespace, p.Name); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			continue
		}
		if podFinished(p) {
			continue
		}
		p.Status.Phase = PodFailed
		p.Status.Ready = false
		p.Status.Reason = ReasonNodeLost
		p.Status.Message = fmt.Sprintf("node %s stopped renewing its lease (noticed %s)", node, since.Format(time.RFC3339))
		if _, err := m.store.UpdateStatus(ctx, p); err != nil && !errors.Is(err, ErrConflict) && !errors.Is(err, ErrNotFound) {
			return err
		}
		m.recordEvent(p, EventWarning, ReasonNodeLost, "marked failed: node %s is lost", node)
	}
	return nil
}
