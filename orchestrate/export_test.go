package orchestrate

import "context"

// The Manager and controller tests are package orchestrate_test: they
// need memstore and fakeruntime, which import orchestrate, so they
// cannot be part of it. They dot-import orchestrate (the form Go's
// review guide allows for such tests) and reach what they need of its
// internals through these names. Tests of internals alone (deepcopy,
// labels, intorpercent) stay in package orchestrate.

var (
	GetCondition        = getCondition
	JobFinished         = jobFinished
	DeploymentComplete  = deploymentComplete
	PodActive           = podActive
	PodAvailable        = podAvailable
	PodsToDelete        = podsToDelete
	ControllerRef       = controllerRef
	ControllerOf        = controllerOf
	IsControlledBy      = isControlledBy
	RevisionOf          = revisionOf
	MaxSurge            = maxSurge
	MaxUnavailable      = maxUnavailable
	ValidateName        = validateName
	ValidateHost        = validateHost
	ValidateAnnotations = validateAnnotations
	DNSSearch           = dnsSearch
)

// ServiceEnv returns the Service variables of a pod of namespace.
func (m *Manager) ServiceEnv(ctx context.Context, namespace string) []string {
	return m.serviceEnv(ctx, namespace)
}

const (
	ReasonStartError  = reasonStartError
	ReasonRunError    = reasonRunError
	ReasonFailedMount = reasonFailedMount
	ReasonError       = reasonError
	ReasonCrashLoop   = reasonCrashLoop
	ReasonConfigError = reasonConfigError
	ReasonCompleted   = reasonCompleted
)
