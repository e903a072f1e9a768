// Package orchestrate keeps containers converged to a declared desired
// state, in-process, the way Kubernetes controllers do, without a
// cluster.
//
// Objects (Pod, ReplicaSet, Deployment, Job, ConfigMap, Secret) are kept
// in a Store: an in-memory one by default (NewMemoryStore), behind an
// interface so that another can be plugged in. Each object has metadata
// (name, labels, owner references, a Generation that counts changes of
// its spec), a spec saying what is wanted and a status saying what is.
// A LabelSelector picks objects by labels, with matchLabels and the
// matchExpressions operators In, NotIn, Exists and DoesNotExist.
//
// A Manager runs one controller per kind over the store, each a
// reconcile loop (package reconcile) fed by a watch of the store:
//
//   - the Pod controller runs a pod's containers through a Runtime
//     (NewContainerRuntime runs them with package container): the
//     containers share network, IPC and UTS namespaces and volumes, are
//     started and stopped together, restart as the pod's RestartPolicy
//     says with the kubelet's crash-loop backoff (immediately, then 10 s
//     doubling to 5 minutes, reset after 10 minutes of running), and are
//     checked by exec, HTTP GET and TCP probes (liveness restarts,
//     readiness marks ready, startup holds the others back);
//   - the ReplicaSet, Deployment and Job controllers create and delete
//     pods to reach their replicas, roll out new templates and run pods
//     to completion.
//
// Manager.Apply validates an object and creates or updates it; an
// invalid one is refused with an error wrapping ErrInvalid that names
// the field, and nothing changes. Deleting an object deletes the objects
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
// Every timer of the controllers (probe periods, backoff, requeues)
// reads the Manager's Clock, so tests can drive it with a
// reconcile.FakeClock and Manager.RunUntilIdle. Close stops and removes
// every container the Manager started: a test harness leaves nothing
// behind.
package orchestrate
