package orchestrate

// What the external tests (package orchestrate_test, which can import
// memstore and fakeruntime) need of the package's internals.

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
)

const (
	ReasonStartError  = reasonStartError
	ReasonRunError    = reasonRunError
	ReasonFailedMount = reasonFailedMount
	ReasonError       = reasonError
	ReasonCrashLoop   = reasonCrashLoop
	ReasonConfigError = reasonConfigError
	ReasonCompleted   = reasonCompleted
)
