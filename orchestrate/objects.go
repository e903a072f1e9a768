package orchestrate

import (
	"errors"
	"time"

	"github.com/berthlabs/berth/cgroup"
)

// Kinds of the objects the built-in controllers know.
const (
	KindPod        = "Pod"
	KindReplicaSet = "ReplicaSet"
	KindDeployment = "Deployment"
	KindJob        = "Job"
	KindConfigMap  = "ConfigMap"
	KindSecret     = "Secret"
	KindNamespace  = "Namespace"
)

// Namespaces every Manager knows.
const (
	// NamespaceDefault is the namespace of objects that name none. It
	// exists without a Namespace object (one may be created, and then
	// it cannot be deleted).
	NamespaceDefault = "default"
	// NamespaceAll, as the namespace of List or WatchOptions.Namespace,
	// means every namespace.
	NamespaceAll = ""
)

// Errors callers branch on.
var (
	// ErrNotFound: no object of that kind and name.
	ErrNotFound = errors.New("orchestrate: object not found")
	// ErrExists: an object of that kind and name exists already.
	ErrExists = errors.New("orchestrate: object already exists")
	// ErrConflict: the object changed since it was read (its
	// ResourceVersion is stale); read it again and retry.
	ErrConflict = errors.New("orchestrate: object was modified")
	// ErrInvalid: the object failed validation; the error says which field.
	ErrInvalid = errors.New("orchestrate: invalid object")
	// ErrExpired: a Store no longer holds the changes a watch asked to
	// replay (WatchOptions.Since is older than its history); list the
	// objects again and watch from the store's revision then, as after
	// Kubernetes' 410 Gone.
	ErrExpired = errors.New("orchestrate: resource version too old")
)

// ObjectMeta is what every object has, as in Kubernetes' metadata.
type ObjectMeta struct {
	// Name identifies the object among those of its kind: lowercase
	// letters, digits and '-', at most 63 characters, starting and
	// ending with a letter or digit (a DNS label).
	Name string `json:"name,omitempty"`
	// Namespace is the namespace the object is in: names are unique per
	// kind and namespace, and selectors and owner references only reach
	// objects of the same namespace. Empty means NamespaceDefault when
	// the object is stored; cluster-scoped kinds (KindNamespace) have
	// none.
	Namespace string `json:"namespace,omitempty"`
	// Labels are identifying key/value pairs that selectors match.
	Labels map[string]string `json:"labels,omitempty"`
	// Annotations are free-form key/value pairs for tools.
	Annotations map[string]string `json:"annotations,omitempty"`
	// UID is set by the store on Create and never changes.
	UID string `json:"uid,omitempty"`
	// Generation is set to 1 on Create and incremented by the store on
	// every Update that changes the object's spec (not its status or
	// metadata).
	Generation int64 `json:"generation,omitempty"`
	// ResourceVersion is set by the store on every write; an Update or
	// UpdateStatus whose ResourceVersion is not the stored one fails with
	// ErrConflict (0 skips the check).
	ResourceVersion uint64 `json:"resourceVersion,omitempty,string"`
	// CreationTime is set by the store on Create.
	CreationTime time.Time `json:"creationTimestamp,omitzero"`
	// DeletionTime is set when a graceful delete began (Kubernetes'
	// deletionTimestamp); the object is removed once its finalization is
	// done — for Pods, when their containers and sandbox are torn down.
	// Once set it cannot be cleared or changed, and the object's spec
	// cannot be updated any more. Create clears it.
	DeletionTime *time.Time `json:"deletionTimestamp,omitempty"`
	// OwnerReferences name the objects this one belongs to (a Pod's
	// ReplicaSet, a ReplicaSet's Deployment).
	OwnerReferences []OwnerReference `json:"ownerReferences,omitempty"`
}

// OwnerReference points at the object that owns another one.
type OwnerReference struct {
	// Kind is the owner's kind, such as KindReplicaSet.
	Kind string `json:"kind"`
	// Name is the owner's name.
	Name string `json:"name"`
	// UID is the owner's UID: an object of that kind and name with
	// another UID (one deleted and created anew) is not the owner.
	UID string `json:"uid"`
	// Controller is true for the one owner that manages the object.
	Controller bool `json:"controller,omitempty"`
}

// Object is any object the Store holds. The built-in kinds are *Pod,
// *ReplicaSet, *Deployment, *Job, *ConfigMap, *Secret and *Namespace.
type Object interface {
	// Kind returns the object's kind, such as KindPod.
	Kind() string
	// Meta returns a pointer to the object's metadata.
	Meta() *ObjectMeta
	// DeepCopy returns an independent copy of the object.
	DeepCopy() Object
}

// LabelSelectorOperator is the operator of a LabelSelectorRequirement.
type LabelSelectorOperator string

// Selector operators, as in Kubernetes' matchExpressions.
const (
	LabelSelectorOpIn           LabelSelectorOperator = "In"
	LabelSelectorOpNotIn        LabelSelectorOperator = "NotIn"
	LabelSelectorOpExists       LabelSelectorOperator = "Exists"
	LabelSelectorOpDoesNotExist LabelSelectorOperator = "DoesNotExist"
)

// LabelSelector selects objects by labels: all of MatchLabels and all
// of MatchExpressions must hold. An empty selector matches everything
// (a nil one matches everything too).
type LabelSelector struct {
	// MatchLabels are key/value pairs a matching object's labels must
	// all have.
	MatchLabels map[string]string `json:"matchLabels,omitempty"`
	// MatchExpressions are requirements a matching object's labels must
	// all meet.
	MatchExpressions []LabelSelectorRequirement `json:"matchExpressions,omitempty"`
}

// LabelSelectorRequirement is one matchExpressions entry.
type LabelSelectorRequirement struct {
	// Key is the label key the requirement is about.
	Key string `json:"key"`
	// Operator relates the key's value to Values: In, NotIn, Exists or
	// DoesNotExist.
	Operator LabelSelectorOperator `json:"operator"`
	// Values must be non-empty for In and NotIn and empty for Exists and
	// DoesNotExist.
	Values []string `json:"values,omitempty"`
}

// RestartPolicy says when a Pod's containers are restarted after they exit.
type RestartPolicy string

// Restart policies, as in Kubernetes.
const (
	RestartPolicyAlways    RestartPolicy = "Always"
	RestartPolicyOnFailure RestartPolicy = "OnFailure"
	RestartPolicyNever     RestartPolicy = "Never"
)

// Pod is one or more containers that share network, IPC and UTS
// namespaces and volumes, started and stopped together.
type Pod struct {
	ObjectMeta `json:"metadata"`
	// Spec is the desired state, given by the caller; Manager.Apply
	// refuses to change it once the pod exists.
	Spec PodSpec `json:"spec"`
	// Status is the observed state, written by the Pod controller.
	Status PodStatus `json:"status,omitzero"`
}

// PodTemplate is the pod a ReplicaSet, Deployment or Job creates.
type PodTemplate struct {
	// Labels of the pods; the owner's selector must match them.
	Labels map[string]string `json:"-"`
	// Annotations of the pods.
	Annotations map[string]string `json:"-"`
	// Spec of the pods.
	Spec PodSpec `json:"spec"`
}

// PodSpec is the desired state of a Pod.
type PodSpec struct {
	// Containers run in the pod; at least one, names unique.
	Containers []Container `json:"containers"`
	// RestartPolicy defaults to RestartPolicyAlways (a Job's pods must say
	// OnFailure or Never).
	RestartPolicy RestartPolicy `json:"restartPolicy,omitempty"`
	// Volumes the containers can mount; names unique.
	Volumes []Volume `json:"volumes,omitempty"`
	// Hostname of the pod; defaults to the pod's name.
	Hostname string `json:"hostname,omitempty"`
	// TerminationGracePeriod is how long a container has to exit after
	// its stop signal before it is killed; 0 means 30 seconds.
	TerminationGracePeriod time.Duration `json:"-"`
	// NodeName is the node the pod is bound to, set by the scheduler
	// (or by the caller, which skips it) when the Managers run as nodes
	// of a cluster (Options.NodeName): each node runs only the pods
	// bound to it. Empty: not yet scheduled.
	NodeName string `json:"nodeName,omitempty"`
	// NodeSelector is the labels a node must have for the pod to be
	// scheduled there.
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
}

// Container is one container of a Pod.
type Container struct {
	// Name is unique within the pod (a DNS label).
	Name string `json:"name"`
	// Image is the image reference in the runtime's image store.
	Image string `json:"image"`
	// Command replaces the image's ENTRYPOINT (and drops its CMD).
	Command []string `json:"command,omitempty"`
	// Args replace the image's CMD.
	Args []string `json:"args,omitempty"`
	// Env adds or overrides environment variables.
	Env []EnvVar `json:"env,omitempty"`
	// EnvFrom adds every key of a ConfigMap or Secret as a variable.
	EnvFrom []EnvFromSource `json:"envFrom,omitempty"`
	// Ports are the ports the container serves: Services' named
	// targetPorts refer to them, and a HostPort publishes one on the
	// host.
	Ports []ContainerPort `json:"ports,omitempty"`
	// WorkingDir replaces the image's working directory.
	WorkingDir string `json:"workingDir,omitempty"`
	// User replaces the image's user ("uid[:gid]" or a name in the image).
	User string `json:"-"`
	// Resources are the container's cgroup limits.
	Resources cgroup.Resources `json:"-"`
	// VolumeMounts mount the pod's volumes into the container.
	VolumeMounts []VolumeMount `json:"volumeMounts,omitempty"`
	// LivenessProbe failing FailureThreshold times in a row restarts
	// the container (subject to the pod's RestartPolicy).
	LivenessProbe *Probe `json:"livenessProbe,omitempty"`
	// ReadinessProbe decides whether the container is ready; a pod is
	// ready when all its containers are.
	ReadinessProbe *Probe `json:"readinessProbe,omitempty"`
	// StartupProbe, while it has not succeeded, holds the other probes
	// back; failing FailureThreshold times restarts the container.
	StartupProbe *Probe `json:"startupProbe,omitempty"`
}

// EnvVar is one environment variable: a literal Value or one taken from
// a ConfigMap or Secret key.
type EnvVar struct {
	// Name of the variable; it wins over a variable of that name from
	// EnvFrom.
	Name string `json:"name"`
	// Value is the literal value; it must be empty when ValueFrom is set.
	Value string `json:"value,omitempty"`
	// ValueFrom, when set, takes the value from a ConfigMap or Secret key
	// when the container starts.
	ValueFrom *EnvVarSource `json:"valueFrom,omitempty"`
}

// EnvVarSource names the ConfigMap or Secret key an EnvVar comes from;
// exactly one of the two is set.
type EnvVarSource struct {
	ConfigMapKeyRef *KeySelector `json:"configMapKeyRef,omitempty"` // a key of a ConfigMap
	SecretKeyRef    *KeySelector `json:"secretKeyRef,omitempty"`    // a key of a Secret
}

// KeySelector selects one key of a ConfigMap or Secret.
type KeySelector struct {
	Name string `json:"name"` // the ConfigMap or Secret
	Key  string `json:"key"`  // the key whose value is taken
	// Optional: a missing object or key leaves the variable unset
	// instead of holding the container back.
	Optional bool `json:"optional,omitempty"`
}

// EnvFromSource imports every key of a ConfigMap or Secret (exactly one
// is set) as environment variables, each name prefixed with Prefix.
type EnvFromSource struct {
	// ConfigMap is the name of the ConfigMap to import.
	ConfigMap string `json:"-"`
	// Secret is the name of the Secret to import.
	Secret string `json:"-"`
	// Prefix is put before every key to make the variable's name; keys
	// that do not then make a valid name are skipped.
	Prefix string `json:"prefix,omitempty"`
	// Optional: a missing ConfigMap or Secret adds no variables instead
	// of holding the container back.
	Optional bool `json:"-"`
}

// Volume is storage the containers of a pod can mount; exactly one
// source is set.
type Volume struct {
	// Name is unique within the pod (a DNS label); VolumeMount.Name
	// refers to it.
	Name      string           `json:"name"`
	EmptyDir  *EmptyDirVolume  `json:"emptyDir,omitempty"`  // an empty directory made for the pod
	ConfigMap *ConfigMapVolume `json:"configMap,omitempty"` // a ConfigMap's keys as files (read-only)
	Secret    *SecretVolume    `json:"secret,omitempty"`    // a Secret's keys as files (read-only)
	HostPath  *HostPathVolume  `json:"hostPath,omitempty"`  // a directory of the host
}

// EmptyDirVolume is a directory that lives as long as the pod, shared by
// its containers.
type EmptyDirVolume struct {
	// Memory backs it by a tmpfs (sized by SizeLimit) instead of a
	// directory on the host's disk.
	Memory bool `json:"-"`
	// SizeLimit is the size of the tmpfs in bytes, with Memory (0 gives
	// no size option: the kernel's default); a directory on disk is not
	// limited.
	SizeLimit int64 `json:"-"`
}

// ConfigMapVolume shows a ConfigMap's keys as files.
type ConfigMapVolume struct {
	// Name of the ConfigMap.
	Name string `json:"name"`
	// Items selects keys and their file paths; empty: every key, as a
	// file named for the key.
	Items []KeyToPath `json:"items,omitempty"`
	Mode  uint32      `json:"defaultMode,omitempty"` // file mode; 0 means 0644
	// Optional: a missing ConfigMap gives an empty volume, and a missing
	// key of Items is left out, instead of failing the pod's start.
	Optional bool `json:"optional,omitempty"`
}

// SecretVolume shows a Secret's keys as files.
type SecretVolume struct {
	// Name of the Secret.
	Name string `json:"secretName,omitempty"`
	// Items selects keys and their file paths; empty: every key, as a
	// file named for the key.
	Items []KeyToPath `json:"items,omitempty"`
	Mode  uint32      `json:"defaultMode,omitempty"` // file mode; 0 means 0400
	// Optional: a missing Secret gives an empty volume, and a missing key
	// of Items is left out, instead of failing the pod's start.
	Optional bool `json:"optional,omitempty"`
}

// KeyToPath maps a key to a relative file path in the volume.
type KeyToPath struct {
	Key  string `json:"key"`  // a key of the ConfigMap or Secret
	Path string `json:"path"` // relative, without "." or ".." components
}

// HostPathVolume mounts a directory of the host.
type HostPathVolume struct {
	Path string `json:"path"` // absolute path of the host directory
}

// VolumeMount mounts a pod volume into a container.
type VolumeMount struct {
	Name      string `json:"name"`      // a Volume of the pod
	MountPath string `json:"mountPath"` // absolute path in the container
	// ReadOnly mounts the volume read-only (ConfigMap and Secret volumes
	// always are).
	ReadOnly bool `json:"readOnly,omitempty"`
}

// Probe checks a container; exactly one of Exec, HTTPGet and TCPSocket
// is set.
type Probe struct {
	Exec      *ExecAction      `json:"exec,omitempty"`      // run a command in the container
	HTTPGet   *HTTPGetAction   `json:"httpGet,omitempty"`   // send an HTTP GET
	TCPSocket *TCPSocketAction `json:"tcpSocket,omitempty"` // open a TCP connection
	// InitialDelay after the container started before the first probe.
	InitialDelay time.Duration `json:"-"`
	// Period between probes; 0 means 10 seconds.
	Period time.Duration `json:"-"`
	// Timeout of one probe; 0 means 1 second.
	Timeout time.Duration `json:"-"`
	// SuccessThreshold: consecutive successes after a failure to count
	// as passing; 0 means 1 (must be 1 for liveness and startup).
	SuccessThreshold int `json:"successThreshold,omitempty"`
	// FailureThreshold: consecutive failures to count as failed; 0 means 3.
	FailureThreshold int `json:"failureThreshold,omitempty"`
}

// ExecAction runs a command in the container; exit status 0 is success.
type ExecAction struct {
	// Command is the program and its arguments (no shell), run as the
	// container's user; its first element must not be empty.
	Command []string `json:"command,omitempty"`
}

// HTTPGetAction sends GET to the pod's network namespace; a status in
// 200..399 is success.
type HTTPGetAction struct {
	Path   string `json:"path,omitempty"`   // default "/"
	Port   int    `json:"port"`             // 1 to 65535
	Host   string `json:"host,omitempty"`   // default 127.0.0.1 in the pod's network namespace
	Scheme string `json:"scheme,omitempty"` // "HTTP" (default) or "HTTPS" (certificate not verified)
	// Headers are added to the request; a "Host" entry sets the Host
	// header.
	Headers map[string]string `json:"-"`
}

// TCPSocketAction connects to a port in the pod's network namespace;
// an established connection is success.
type TCPSocketAction struct {
	Port int    `json:"port"`           // 1 to 65535
	Host string `json:"host,omitempty"` // default 127.0.0.1
}

// PodPhase is the coarse state of a pod, as in Kubernetes.
type PodPhase string

// Pod phases.
const (
	PodPending   PodPhase = "Pending"
	PodRunning   PodPhase = "Running"
	PodSucceeded PodPhase = "Succeeded"
	PodFailed    PodPhase = "Failed"
)

// PodStatus is the observed state of a Pod.
type PodStatus struct {
	// ObservedGeneration is the pod's Generation when the status was
	// written.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Phase is Pending until every container has started once, then
	// Running, and Succeeded or Failed once all have finished for good
	// (Succeeded if every one exited 0 and none was OOM-killed).
	Phase PodPhase `json:"phase,omitempty"`
	// PodIP is the pod's IPv4 address on its network, once its sandbox
	// has one ("" without a network).
	PodIP string `json:"podIP,omitempty"`
	// PodIPs are all the pod's addresses, PodIP first.
	PodIPs []PodIP `json:"podIPs,omitempty"`
	// Ready: every container is running and passes its readiness probe.
	Ready bool `json:"ready,omitempty"`
	// ReadySince is when Ready last became true (zero while not ready);
	// minReadySeconds counts from it.
	ReadySince time.Time `json:"readySince,omitzero"`
	// StartTime is when the controller began to set the pod up (zero
	// before).
	StartTime time.Time `json:"startTime,omitzero"`
	// Reason says why the pod cannot start ("FailedMount",
	// "FailedCreatePodSandBox"); empty once its sandbox exists.
	Reason string `json:"reason,omitempty"`
	// Message details Reason.
	Message string `json:"message,omitempty"`
	// Containers are the states of the pod's containers, in the order
	// of its spec.
	Containers []ContainerStatus `json:"containerStatuses,omitempty"`
}

// ContainerStateKind is the state of one container of a pod.
type ContainerStateKind string

// Container states.
const (
	ContainerWaiting    ContainerStateKind = "Waiting"
	ContainerRunning    ContainerStateKind = "Running"
	ContainerTerminated ContainerStateKind = "Terminated"
)

// ContainerStatus is the observed state of one container of a pod.
type ContainerStatus struct {
	Name  string `json:"name,omitempty"`  // the container's name in the pod spec
	Image string `json:"image,omitempty"` // the image of the container's spec
	// ID is the runtime's container ID of the current instance, or of
	// the last one once it has ended.
	ID    string             `json:"containerID,omitempty"`
	State ContainerStateKind `json:"state,omitempty"` // Waiting, Running or Terminated
	// Reason for Waiting ("ContainerCreating", "CrashLoopBackOff",
	// "CreateContainerConfigError", "RunContainerError") or Terminated
	// ("Completed", "Error", "OOMKilled", "StartError",
	// "ContainerStatusUnknown").
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"` // details Reason
	// Ready: the container runs and passes its readiness probe (or,
	// without one, its startup probe passed).
	Ready   bool `json:"ready,omitempty"`
	Started bool `json:"started,omitempty"` // the startup probe passed (or there is none)
	// RestartCount counts the starts after the first one, failed starts
	// included.
	RestartCount int `json:"restartCount,omitempty"`
	// ExitCode is the last instance's exit code (128+signal if killed;
	// 128 for a StartError); 0 while the container runs.
	ExitCode int `json:"exitCode,omitempty"`
	// StartedAt is when the current or last instance started.
	StartedAt time.Time `json:"startedAt,omitzero"`
	// FinishedAt is when the last instance ended; zero while the
	// container runs.
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

// IntOrPercent is a count given as a number or as a percentage of a
// total, as maxSurge and maxUnavailable are.
type IntOrPercent struct {
	Value   int  `json:"-"` // the count, or the percentage with Percent; not negative
	Percent bool `json:"-"` // Value is a percentage
}

// ReplicaSet keeps Replicas pods matching Selector running from Template.
type ReplicaSet struct {
	ObjectMeta `json:"metadata"`
	// Spec is the desired state, given by the caller (or by the
	// Deployment that owns the ReplicaSet).
	Spec ReplicaSetSpec `json:"spec"`
	// Status is the observed state, written by the ReplicaSet controller.
	Status ReplicaSetStatus `json:"status,omitzero"`
}

// ReplicaSetSpec is the desired state of a ReplicaSet.
type ReplicaSetSpec struct {
	// Replicas is the number of pods wanted, 0 or more.
	Replicas int `json:"replicas"`
	// Selector must match Template.Labels; pods it matches that no
	// controller owns are adopted.
	Selector *LabelSelector `json:"selector,omitempty"`
	// Template is the pod created when pods are missing; its
	// RestartPolicy must be Always (or empty). Changing it does not
	// replace the pods that run.
	Template PodTemplate `json:"template"`
	// MinReadySeconds a pod must have been ready to count as available.
	MinReadySeconds int `json:"minReadySeconds,omitempty"`
}

// ReplicaSetStatus is the observed state of a ReplicaSet.
type ReplicaSetStatus struct {
	// ObservedGeneration is the Generation of the spec the controller
	// last acted on in full; it keeps its previous value when creating
	// or deleting pods failed.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	Replicas           int   `json:"replicas"`                // pods owned
	ReadyReplicas      int   `json:"readyReplicas,omitempty"` // owned pods that are ready
	// AvailableReplicas are owned pods ready for MinReadySeconds.
	AvailableReplicas int `json:"availableReplicas,omitempty"`
}

// DeploymentStrategyType is how a Deployment replaces old pods.
type DeploymentStrategyType string

// Deployment strategies.
const (
	RollingUpdateDeploymentStrategyType DeploymentStrategyType = "RollingUpdate"
	RecreateDeploymentStrategyType      DeploymentStrategyType = "Recreate"
)

// Deployment manages ReplicaSets to roll a pod template out.
type Deployment struct {
	ObjectMeta `json:"metadata"`
	// Spec is the desired state, given by the caller.
	Spec DeploymentSpec `json:"spec"`
	// Status is the observed state, written by the Deployment controller.
	Status DeploymentStatus `json:"status,omitzero"`
}

// DeploymentSpec is the desired state of a Deployment.
type DeploymentSpec struct {
	// Replicas is the number of pods wanted, 0 or more.
	Replicas int `json:"replicas"`
	// Selector must match Template.Labels and cannot be changed;
	// ReplicaSets it matches that no controller owns are adopted.
	Selector *LabelSelector `json:"selector,omitempty"`
	// Template is the pod to run; its RestartPolicy must be Always (or
	// empty). A change rolls out a new revision (a new ReplicaSet).
	Template PodTemplate `json:"template"`
	// Strategy defaults to RollingUpdate with 25% surge and 25%
	// unavailable.
	Strategy DeploymentStrategy `json:"strategy,omitzero"`
	// MinReadySeconds a pod must have been ready to count as available.
	MinReadySeconds int `json:"minReadySeconds,omitempty"`
	// RevisionHistoryLimit is how many old ReplicaSets are kept for
	// rollback; nil means 10.
	RevisionHistoryLimit *int `json:"revisionHistoryLimit,omitempty"`
	// Paused stops rollouts; changes to Template wait until it is false.
	Paused bool `json:"paused,omitempty"`
	// ProgressDeadline after which a rollout that made no progress is
	// reported failed (condition Progressing false, reason
	// ProgressDeadlineExceeded); 0 means 600 seconds.
	ProgressDeadline time.Duration `json:"-"`
}

// DeploymentStrategy is the strategy and its parameters.
type DeploymentStrategy struct {
	// Type is RollingUpdate (the default when empty) or Recreate.
	Type DeploymentStrategyType `json:"type,omitempty"`
	// MaxSurge: pods over Replicas allowed during a rolling update
	// (percent rounds up); nil means 25%.
	MaxSurge *IntOrPercent `json:"-"`
	// MaxUnavailable: pods under Replicas allowed during a rolling
	// update (percent rounds down); nil means 25%. Both 0 is invalid.
	MaxUnavailable *IntOrPercent `json:"-"`
}

// DeploymentStatus is the observed state of a Deployment.
type DeploymentStatus struct {
	// ObservedGeneration is the Deployment's Generation when the status
	// was computed.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Replicas counts the active pods of all its ReplicaSets.
	Replicas int `json:"replicas,omitempty"`
	// UpdatedReplicas counts the active pods of the current template's
	// ReplicaSet.
	UpdatedReplicas int `json:"updatedReplicas,omitempty"`
	// ReadyReplicas counts the ready ones among Replicas.
	ReadyReplicas int `json:"readyReplicas,omitempty"`
	// AvailableReplicas counts those ready for MinReadySeconds.
	AvailableReplicas int `json:"availableReplicas,omitempty"`
	// UnavailableReplicas is the replicas its ReplicaSets want in all,
	// less AvailableReplicas (not below 0).
	UnavailableReplicas int `json:"unavailableReplicas,omitempty"`
	// Revision of the current template (its ReplicaSet).
	Revision int64 `json:"revision,omitempty"`
	// Conditions: "Available" and "Progressing".
	Conditions []Condition `json:"conditions,omitempty"`
}

// Condition is one aspect of an object's state, as in Kubernetes.
type Condition struct {
	Type    string `json:"type"`              // such as "Available", "Progressing", "Complete", "Failed"
	Status  bool   `json:"-"`                 // whether the condition holds
	Reason  string `json:"reason,omitempty"`  // a CamelCase word, such as "NewReplicaSetAvailable"; may be empty
	Message string `json:"message,omitempty"` // details, for humans; may be empty
	// LastTransition is when Status last changed.
	LastTransition time.Time `json:"lastTransitionTime,omitzero"`
	// LastUpdate is when the condition was last set with a new status or
	// reason; for a Deployment's Progressing, also the last progress.
	LastUpdate time.Time `json:"lastUpdateTime,omitzero"`
}

// Job runs pods until Completions of them succeed.
type Job struct {
	ObjectMeta `json:"metadata"`
	// Spec is the desired state, given by the caller.
	Spec JobSpec `json:"spec"`
	// Status is the observed state, written by the Job controller.
	Status JobStatus `json:"status,omitzero"`
}

// JobSpec is the desired state of a Job.
type JobSpec struct {
	// Completions: successful pods needed. Nil makes a work-queue Job,
	// as in Kubernetes: Parallelism pods are started (nil means 1), none
	// is started once one has succeeded, and the Job is complete when at
	// least one pod succeeded and all its pods have ended. Immutable.
	Completions *int `json:"completions,omitempty"`
	// Parallelism: pods running at once at most; nil means 1.
	Parallelism *int `json:"parallelism,omitempty"`
	// BackoffLimit: failed pods (or container restarts under OnFailure)
	// before the job fails; nil means 6.
	BackoffLimit *int `json:"backoffLimit,omitempty"`
	// ActiveDeadline: the job fails and its pods are stopped after this
	// long; 0 means none.
	ActiveDeadline time.Duration `json:"-"`
	// Template's RestartPolicy must be OnFailure or Never.
	Template PodTemplate `json:"template"`
}

// JobStatus is the observed state of a Job.
type JobStatus struct {
	// ObservedGeneration is the Job's Generation when the status was
	// written.
	ObservedGeneration int64 `json:"observedGeneration,omitempty"`
	// Active is the number of pods running or yet to run (not
	// terminating).
	Active int `json:"active,omitempty"`
	// Succeeded and Failed count the Job's pods that succeeded and
	// failed (or were deleted before they succeeded). They only grow:
	// deleting a finished pod does not change them. A deleted pod of a
	// running Job stays in the store until the Job has counted it.
	Succeeded int `json:"succeeded,omitempty"`
	Failed    int `json:"failed,omitempty"` // see Succeeded
	// CountedPods are the UIDs of the Job's pods that still exist and
	// are already counted in Succeeded or Failed, so that they are
	// counted once; while the Job runs, UIDs of pods that are gone are
	// dropped (a finished Job's list is left as it was).
	CountedPods []string `json:"countedPods,omitempty"`
	// LastFailureTime is when the latest counted failure happened; the
	// delay before the next pod is created (10 s doubling per failure,
	// up to 6 min) counts from it, also once the failed pods are gone.
	LastFailureTime time.Time `json:"lastFailureTime,omitzero"`
	// StartTime is when the controller first handled the Job;
	// ActiveDeadline counts from it.
	StartTime time.Time `json:"startTime,omitzero"`
	// CompletionTime is when the Job completed; zero while it runs and
	// if it failed.
	CompletionTime time.Time `json:"completionTime,omitzero"`
	// Conditions: "Complete" or "Failed" (reason BackoffLimitExceeded or
	// DeadlineExceeded) once the job is finished.
	Conditions []Condition `json:"conditions,omitempty"`
}

// ConfigMap is non-secret configuration given to containers as files or
// environment variables.
type ConfigMap struct {
	ObjectMeta `json:"metadata"`
	// Data holds text values by key (1 to 253 alphanumerics, '-', '_'
	// and '.').
	Data map[string]string `json:"data,omitempty"`
	// BinaryData holds byte values by key; a key cannot be in both.
	BinaryData map[string][]byte `json:"binaryData,omitempty"`
}

// Secret is sensitive configuration given to containers as files or
// environment variables.
type Secret struct {
	ObjectMeta `json:"metadata"`
	// Type is the Secret's type, as in Kubernetes ("Opaque" when empty,
	// "kubernetes.io/tls", ...); berth does not check the keys a type
	// calls for.
	Type string `json:"type,omitempty"`
	// Data holds the values by key (1 to 253 alphanumerics, '-', '_'
	// and '.').
	Data map[string][]byte `json:"data,omitempty"`
}

// NamespacePhase is the state of a Namespace.
type NamespacePhase string

// Namespace phases, as in Kubernetes.
const (
	NamespaceActive      NamespacePhase = "Active"
	NamespaceTerminating NamespacePhase = "Terminating"
)

// Namespace is a scope for names: objects of one kind have unique names
// within a namespace. It is cluster-scoped (its own Namespace field is
// empty). Objects can only be applied in a namespace that exists
// (NamespaceDefault always does) and is not being deleted. Deleting a
// Namespace deletes every object in it, pods gracefully, and then the
// Namespace; meanwhile its phase is Terminating.
type Namespace struct {
	ObjectMeta `json:"metadata"`
	// Status is the observed state, written by the Namespace controller.
	Status NamespaceStatus `json:"status,omitzero"`
}

// NamespaceStatus is the observed state of a Namespace.
type NamespaceStatus struct {
	// Phase is Active, or Terminating once the Namespace is being
	// deleted (empty until the controller first saw it).
	Phase NamespacePhase `json:"phase,omitempty"`
}

// EventType is Normal or Warning, as in Kubernetes.
type EventType string

// Event types.
const (
	EventNormal  EventType = "Normal"
	EventWarning EventType = "Warning"
)

// Event records something that happened to an object: reasons include
// Created, Started, Killing, Unhealthy, BackOff, ScalingReplicaSet,
// SuccessfulCreate, SuccessfulDelete, Completed, Failed.
type Event struct {
	Time time.Time `json:"time,omitzero"`  // when it was recorded, on the Manager's clock
	Type EventType `json:"type,omitempty"` // Normal or Warning
	Kind string    `json:"kind,omitempty"` // of the object involved
	// Namespace of the object involved.
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`    // of the object involved
	Reason    string `json:"reason,omitempty"`  // a CamelCase word, such as "Started"
	Message   string `json:"message,omitempty"` // a sentence for humans
}
