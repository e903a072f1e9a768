package orchestrate

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// NodeNetwork is the pod network of a node across a cluster: a Runtime
// that implements it (containerruntime with a network does) reports the
// range its pods get addresses from, which the Manager publishes as its
// Node's spec.podCIDR, and is given the other nodes' ranges and
// addresses (their status InternalIP), so that pods, Services and
// NodePorts reach the pods of every node. It is used only by a Manager
// that is a node (Options.NodeName) with an address (Options.NodeIP).
type NodeNetwork interface {
	// PodCIDR returns the range of this node's pod addresses; the zero
	// Prefix if the Runtime has no pod network.
	PodCIDR() netip.Prefix
	// SetNodeRoutes routes the pod ranges of the other nodes to their
	// addresses, replacing the routes it was given before; local is
	// this node's address.
	SetNodeRoutes(ctx context.Context, local netip.Addr, routes []NodeRoute) error
}

// NodeRoute is another node's pod range and where it is reached.
type NodeRoute struct {
	Node    string       // the Node's name
	NodeIP  netip.Addr   // its InternalIP
	PodCIDR netip.Prefix // its spec.podCIDR
}

// nodeRoutesKey is the one key of the node route controller: every
// Node change recomputes all the routes.
const nodeRoutesKey = "routes"

// nodeRoutes keeps the Runtime's routes to the other nodes' pods in line
// with the Node objects, on every node.
type nodeRoutes struct {
	m   *Manager
	net NodeNetwork

	mu   sync.Mutex
	last []NodeRoute // what SetNodeRoutes was given last; nil: never
}

func registerNodeRoutes(m *Manager) {
	nn, ok := m.runtime.(NodeNetwork)
	if !ok || m.cluster == nil || !m.cluster.nodeIP.IsValid() || !nn.PodCIDR().IsValid() {
		m.register(KindNode, nil, nil, nil)
		return
	}
	nr := &nodeRoutes{m: m, net: nn}
	m.register(KindNode, nr, func(ev WatchEvent) []string {
		if _, ok := ev.Object.(*Node); ok {
			return []string{nodeRoutesKey}
		}
		return nil
	}, nil)
}

// Reconcile routes every other node with a pod range and an address.
func (nr *nodeRoutes) Reconcile(ctx context.Context, _ string) (reconcile.Result, error) {
	nodes, err := List[*Node](ctx, nr.m.store, "", nil)
	if err != nil {
		return reconcile.Result{}, err
	}
	routes := []NodeRoute{}
	for _, n := range nodes {
		if n.Name == nr.m.cluster.node {
			continue
		}
		cidr, err := netip.ParsePrefix(n.Spec.PodCIDR)
		ip := n.InternalIP()
		if err != nil || !ip.IsValid() {
			continue // not routed: a node of no pod network, or not joined yet
		}
		routes = append(routes, NodeRoute{Node: n.Name, NodeIP: ip, PodCIDR: cidr})
	}
	slices.SortFunc(routes, func(a, b NodeRoute) int { return strings.Compare(a.Node, b.Node) })
	nr.mu.Lock()
	defer nr.mu.Unlock()
	if nr.last != nil && slices.Equal(nr.last, routes) {
		return reconcile.Result{}, nil
	}
	if err := nr.net.SetNodeRoutes(ctx, nr.m.cluster.nodeIP, routes); err != nil {
		nr.m.log.Warn("routes to other nodes' pods", "node", nr.m.cluster.node, "err", err)
		return reconcile.Result{}, fmt.Errorf("node %s: routes to other nodes' pods: %w", nr.m.cluster.node, err)
	}
	nr.last = routes
	nr.m.log.Debug("routes to other nodes' pods", "node", nr.m.cluster.node, "routes", len(routes))
	return reconcile.Result{}, nil
}

// checkNodeNetwork refuses a node whose pod range overlaps another
// node's, or whose address another node has: their pods would be
// unreachable, or worse, reached on the wrong node.
func (m *Manager) checkNodeNetwork(ctx context.Context, cidr netip.Prefix) error {
	c := m.cluster
	nodes, err := List[*Node](ctx, m.store, "", nil)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		if n.Name == c.node {
			continue
		}
		if other, err := netip.ParsePrefix(n.Spec.PodCIDR); err == nil && cidr.IsValid() && other.Overlaps(cidr) {
			return fmt.Errorf("%w: its pod range %s overlaps node %s's %s: give each node's pod network a subnet of its own",
				ErrInvalid, cidr, n.Name, other)
		}
		if c.nodeIP.IsValid() && n.InternalIP() == c.nodeIP {
			return fmt.Errorf("%w: its address %s is node %s's too (Options.NodeIP)", ErrInvalid, c.nodeIP, n.Name)
		}
	}
	return nil
}
