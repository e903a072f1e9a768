package orchestrate

import (
	"net/netip"
	"time"
)

// Kinds of the cluster objects.
const (
	KindNode  = "Node"  // a machine that runs pods: a Manager with Options.NodeName
	KindLease = "Lease" // a holder's claim, renewed while it lives
)

// Namespaces of the cluster's own objects.
const (
	// NamespaceNodeLease holds one Lease per node, renewed by the node
	// as its heartbeat (Kubernetes' kube-node-lease).
	NamespaceNodeLease = "berth-node-lease"
	// NamespaceSystem holds the Lease of the elected leader that runs
	// the cluster's controllers and the scheduler.
	NamespaceSystem = "berth-system"
)

// LeaderLeaseName is the name of the leader's Lease in NamespaceSystem.
const LeaderLeaseName = "berth-controller"

// NodeResources is an amount of what pods use on a node.
type NodeResources struct {
	// MilliCPU is CPU in thousandths of a core (Kubernetes' "cpu: 500m").
	MilliCPU int64 `json:"cpu,omitempty"`
	// Memory is in bytes.
	Memory int64 `json:"memory,omitempty"`
	// Pods is a number of pods.
	Pods int `json:"pods,omitempty"`
}

// Node is a machine of the cluster: a Manager that runs the pods bound
// to it (Options.NodeName). Cluster-scoped. The node writes it when it
// joins and keeps its Ready condition; the leader's node lifecycle
// controller marks it not ready when its Lease lapses.
type Node struct {
	ObjectMeta `json:"metadata"`
	// Spec is the desired state.
	Spec NodeSpec `json:"spec"`
	// Status is the observed state.
	Status NodeStatus `json:"status"`
}

// NodeSpec is the desired state of a Node.
type NodeSpec struct {
	// Unschedulable keeps new pods off the node (kubectl cordon).
	Unschedulable bool `json:"unschedulable,omitempty"`
	// PodCIDR is the range the node's pods get their addresses from
	// (its Runtime's NodeNetwork.PodCIDR), in CIDR notation; no two
	// nodes have overlapping ranges.
	PodCIDR string `json:"podCIDR,omitempty"`
}

// NodeStatus is the observed state of a Node.
type NodeStatus struct {
	// Capacity is what the machine has.
	Capacity NodeResources `json:"capacity"`
	// Allocatable is what pods may request of it: the scheduler binds
	// a pod only where the requests of the pods bound there, with the
	// pod's, fit in it.
	Allocatable NodeResources `json:"allocatable"`
	// Conditions: NodeReady.
	Conditions []NodeCondition `json:"conditions,omitempty"`
	// Addresses are where the node is reached: NodeInternalIP
	// (Options.NodeIP) and NodeHostname.
	Addresses []NodeAddress `json:"addresses,omitempty"`
}

// Types of NodeAddress, as Kubernetes names them.
const (
	NodeInternalIP = "InternalIP" // the address other nodes reach it at
	NodeHostname   = "Hostname"   // its name
)

// NodeAddress is one address of a Node.
type NodeAddress struct {
	// Type is NodeInternalIP or NodeHostname.
	Type string `json:"type"`
	// Address is the address or name.
	Address string `json:"address"`
}

// InternalIP returns the node's NodeInternalIP address, or the zero
// Addr.
func (n *Node) InternalIP() netip.Addr {
	for _, a := range n.Status.Addresses {
		if a.Type == NodeInternalIP {
			if ip, err := netip.ParseAddr(a.Address); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}

// NodeReady is the type of a Node's condition saying whether it is
// healthy and runs its pods.
const NodeReady = "Ready"

// ConditionStatus is the status of a NodeCondition, as Kubernetes'.
type ConditionStatus string

// Condition statuses.
const (
	ConditionTrue    ConditionStatus = "True"
	ConditionFalse   ConditionStatus = "False"
	ConditionUnknown ConditionStatus = "Unknown" // the node stopped renewing its Lease
)

// NodeCondition is one condition of a Node.
type NodeCondition struct {
	Type    string          `json:"type"`
	Status  ConditionStatus `json:"status"`
	Reason  string          `json:"reason,omitempty"`
	Message string          `json:"message,omitempty"`
	// LastHeartbeat is when the node last wrote the condition.
	LastHeartbeat time.Time `json:"lastHeartbeatTime,omitzero"`
	// LastTransition is when Status last changed.
	LastTransition time.Time `json:"lastTransitionTime,omitzero"`
}

// Ready returns the node's Ready condition (the zero value, status "",
// if it has none).
func (n *Node) Ready() NodeCondition {
	for _, c := range n.Status.Conditions {
		if c.Type == NodeReady {
			return c
		}
	}
	return NodeCondition{}
}

// setCondition sets the node's condition of c.Type to c, keeping its
// LastTransition when the status does not change.
func (n *Node) setCondition(c NodeCondition) {
	for i, old := range n.Status.Conditions {
		if old.Type == c.Type {
			if old.Status == c.Status && !old.LastTransition.IsZero() {
				c.LastTransition = old.LastTransition
			}
			n.Status.Conditions[i] = c
			return
		}
	}
	n.Status.Conditions = append(n.Status.Conditions, c)
}

// Lease is a claim held by one holder while it renews it (Kubernetes'
// coordination.k8s.io Lease): a node's heartbeat in
// NamespaceNodeLease, or the leader's claim in NamespaceSystem. A
// Lease is taken over with a conditional Update (the ResourceVersion
// read), so that of two contenders exactly one wins, on every Store.
type Lease struct {
	ObjectMeta `json:"metadata"`
	// Spec is the claim.
	Spec LeaseSpec `json:"spec"`
}

// LeaseSpec is the claim of a Lease.
type LeaseSpec struct {
	// Holder identifies who holds the lease (one Manager).
	Holder string `json:"holderIdentity,omitempty"`
	// Duration is how long the lease holds after its renewal.
	Duration time.Duration `json:"-"`
	// AcquireTime is when the holder took it.
	AcquireTime time.Time `json:"acquireTime,omitzero"`
	// RenewTime is when the holder last renewed it.
	RenewTime time.Time `json:"renewTime,omitzero"`
	// Transitions counts the changes of holder.
	Transitions int `json:"leaseTransitions,omitempty"`
}

// Kind returns KindNode.
func (n *Node) Kind() string { return KindNode }

// Meta returns the Node's metadata.
func (n *Node) Meta() *ObjectMeta { return &n.ObjectMeta }

// DeepCopy returns an independent copy of the Node.
func (n *Node) DeepCopy() Object { return deepCopy(n) }

// Kind returns KindLease.
func (l *Lease) Kind() string { return KindLease }

// Meta returns the Lease's metadata.
func (l *Lease) Meta() *ObjectMeta { return &l.ObjectMeta }

// DeepCopy returns an independent copy of the Lease.
func (l *Lease) DeepCopy() Object { return deepCopy(l) }
