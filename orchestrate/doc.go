// Package orchestrate keeps containers converged to a declared desired
// state, in-process, the way Kubernetes controllers do, without a
// cluster.
//
// Objects (Pod, ReplicaSet, Deployment, Job, ConfigMap, Secret,
// Namespace, Service, Endpoints) are kept in a Store. Each object has metadata (name,
// namespace, labels, owner references, a Generation that counts changes
// of its spec), a spec saying what is wanted and a status saying what
// is. Names are unique per kind and namespace, as in Kubernetes: an
// empty namespace is NamespaceDefault, any other must be a Namespace
// that exists, selectors and owner references reach only objects of
// their own namespace, and deleting a Namespace deletes what is in it.
// A LabelSelector picks objects by labels, with matchLabels and the
// matchExpressions operators (LabelSelectorOpIn, LabelSelectorOpNotIn,
// LabelSelectorOpExists, LabelSelectorOpDoesNotExist). Get and List read
// objects with their Go type (orchestrate.Get[*Pod](ctx, m, "default",
// "web")) from a Manager or a Store.
//
// The objects' JSON is Kubernetes' (metadata.name, spec.template,
// resources.limits.memory "64Mi", terminationGracePeriodSeconds, ...):
// package orchestrate/manifest reads Kubernetes YAML manifests into
// objects, applies them as kubectl apply does, and writes them back as
// kubectl get -o yaml does.
//
// # Layout
//
// This package holds what users program against: the objects, the
// Store and Runtime interfaces (their contracts are their doc
// comments), the Manager and its controllers (one file each: pod.go,
// replicaset.go, deployment.go, job.go, gc.go). Implementations live in
// sibling packages named for where they come from, which import this
// one:
//
//   - orchestrate/memstore: the Store in the process's memory;
//   - orchestrate/filestore: memstore's Store persisted in a directory
//     (an fsynced log), the default for one machine: a Manager that
//     restarts on it finds its objects and converges;
//   - orchestrate/etcdstore: the Store on etcd v3, kept as Kubernetes'
//     API server keeps objects there (a module of its own, so that the
//     etcd client's grpc stays out of the graph of other programs);
//   - orchestrate/containerruntime: the Runtime on package container;
//   - orchestrate/fakeruntime: a Runtime that runs nothing, for tests;
//   - orchestrate/storetest: the suite every Store must pass;
//   - orchestrate/manifest: Kubernetes YAML and JSON manifests;
//   - orchestrate/reconcile: the generic reconcile loop and work queue
//     the controllers are built on.
//
// Because the implementations import this package, it cannot import
// them: Options.Store has no default, and NewManager refuses a nil one
// with an error that names memstore.New. A Manager without a Runtime
// stores pods but never runs them.
//
// A Manager runs one controller per kind over the store, each a
// reconcile loop (package reconcile) fed by a watch of the store:
//
//   - the Pod controller runs a pod's containers through a Runtime
//     (containerruntime.New runs them with package container): the
//     containers share network, IPC and UTS namespaces and volumes, are
//     started and stopped together, restart as the pod's RestartPolicy
//     says with the kubelet's crash-loop backoff (immediately, then 10 s
//     doubling to 5 minutes, reset after 10 minutes of running), and are
//     checked by exec, HTTP GET and TCP probes (liveness restarts,
//     readiness marks ready, startup holds the others back);
//   - the ReplicaSet, Deployment and Job controllers create and delete
//     pods to reach their replicas, roll out new templates and run pods
//     to completion;
//   - the Service controller (service.go) allocates, keeps Endpoints
//     current and drives the ServiceProxy.
//
// A Service (KindService) is a stable name and virtual IP in front of
// the ready pods its selector picks; its Endpoints list their addresses
// (the user writes those of a Service without a selector). When the
// Runtime is also a ServiceProxy (containerruntime.WithNetwork), the
// Service controller gives Services ClusterIPs from
// DefaultServiceCIDR, NodePorts (on 127.0.0.1, or the addresses of
// network.Options.NodePortAddrs), and DNS names (svc,
// svc.ns, svc.ns.svc.cluster.local) in the pods' DNS server, and writes
// each Service's ready backends to the proxy whenever they change. A
// pod being deleted is drained before its containers are stopped: the
// proxy entries that lead to it are written again without it first, so
// that a rolling update behind a Service (maxUnavailable 0, readiness
// probes) refuses no new connection. Connections made just before get
// Options.ServiceDrainDelay (100 ms) to finish before the stop signal;
// longer ones are cut by a server that exits on it (there are no
// preStop hooks yet).
//
// Manager.Apply validates an object and creates or updates it; an
// invalid one is refused with an error wrapping ErrInvalid that names
// the field, and nothing changes. Manager.ApplyAll does that for many
// objects at once, all or nothing. Deleting an object deletes the objects
// it controls (owner references). Deleting a pod is graceful, as in
// Kubernetes: it gets a DeletionTime and is no longer ready, its
// containers are stopped with its grace period (in the background: a
// slow stop holds no worker) and removed, and only then does the object
// go; a pod being deleted no longer counts as active for its ReplicaSet
// or Job, and a Job is not complete while one of its pods still stops.
// What
// happens is recorded as Events (Started, Killing, Unhealthy, BackOff,
// ScalingReplicaSet, ...), read with Manager.Events or followed with
// Manager.SubscribeEvents.
//
// # Clusters
//
// Managers that share one Store (etcdstore, on an etcd cluster) and
// each have an Options.NodeName are the nodes of a cluster, each the
// embedding program itself (no kubelet, no daemon). A node registers a
// Node (cluster-scoped: capacity, allocatable, labels, a Ready
// condition) and renews a Lease of its name in NamespaceNodeLease, as
// kube-node-lease does; a second Manager with the name of a live node
// is refused (ErrExists). Each node runs only the pods bound to it
// (PodSpec.NodeName). The Managers elect a leader with a Lease in
// NamespaceSystem, taken over by a conditional Update (the version
// read), so that it works on every Store; only the leader runs the
// workload controllers, the garbage collector, the scheduler and the
// node lifecycle controller, and a new leader hands them every object
// again. The scheduler binds each pending pod to a Ready node whose
// labels match its NodeSelector and whose allocatable holds its
// requests (CPU shares and memory reservation, or its limits) beside
// those of the pods bound there, spreading the pods of one owner; a pod
// that fits nowhere stays Pending with the reason FailedScheduling and
// a message as Kubernetes' ("0/3 nodes are available: 3 Insufficient
// cpu."). A node whose Lease has not changed for NodeLeaseDuration is
// marked Ready Unknown; after NodeLostGrace more its pods are marked
// Failed with ReasonNodeLost, so that their ReplicaSets and Jobs
// replace them on other nodes; a node that comes back (a partition
// healed) stops and removes the containers of those pods. A node keeps
// its pods running while it cannot reach the store, and its watch
// resumes (or lists again) when it can.
//
// With Options.NodeIP and a Runtime that is a NodeNetwork
// (containerruntime with a network), a node's Node carries its pod range
// (spec.podCIDR) and its address (status InternalIP), a node whose range
// overlaps another's is refused, and every node routes the others' pod
// ranges to them, so that pods reach the pods of every node by their
// addresses. The Service controller runs on every node: the leader
// allocates ClusterIPs and NodePorts and keeps Endpoints, and each node
// programs its own data path and DNS from them, so that a ClusterIP or
// a NodePort on any node leads to the pods of all nodes.
//
// Every timer of the controllers (probe periods, backoff, requeues)
// reads the Manager's Clock, so tests can drive it with a
// reconcile.FakeClock and Manager.RunUntilIdle. Close stops and removes
// every container the Manager started: a test harness leaves nothing
// behind.
package orchestrate
