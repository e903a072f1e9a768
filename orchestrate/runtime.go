package orchestrate

import (
	"context"
	"net"
	"net/netip"
	"time"

	"github.com/berthlabs/berth/cgroup"
)

// Runtime runs the containers of pods for the Pod controller. It is the
// one seam between orchestration and a container back end: package
// containerruntime implements it on package container, and package
// fakeruntime is a fake for tests.
//
// A pod is a sandbox (network, IPC and UTS namespaces and a hostname,
// which outlive any one container) holding containers that join it. A
// container, once started, runs until its main process exits or it is
// stopped; it is never restarted by the Runtime: the Pod controller
// starts a new one. All methods are safe for concurrent use.
type Runtime interface {
	// ImageExists reports whether image can be run: it is in the
	// runtime's image store. Apply refuses pods whose images do not
	// exist.
	ImageExists(ctx context.Context, image string) (bool, error)

	// CreateSandbox creates the shared namespaces of a pod and returns
	// the sandbox's ID.
	CreateSandbox(ctx context.Context, cfg SandboxConfig) (string, error)
	// RemoveSandbox removes a sandbox whose containers have all been
	// removed. Removing one that does not exist is not an error.
	RemoveSandbox(ctx context.Context, sandboxID string) error

	// StartContainer creates a container in a sandbox and starts it,
	// returning its ID once its main process runs. cfg.OnExit is called
	// when that process has ended.
	StartContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (string, error)
	// StopContainer sends the container's stop signal, waits up to grace
	// for it to exit, then kills it; it returns when the container has
	// ended (at once if it had). ctx bounds the wait.
	StopContainer(ctx context.Context, id string, grace time.Duration) error
	// RemoveContainer removes a container, killing it first if it still
	// runs. Removing one that does not exist is not an error.
	RemoveContainer(ctx context.Context, id string) error
	// ContainerStatus returns the state of a container; ErrNotFound
	// (wrapped) if there is no such container.
	ContainerStatus(ctx context.Context, id string) (ContainerInfo, error)

	// Exec runs cmd in a running container, as the container's user,
	// and returns its exit code; ctx bounds it (the process is killed
	// when ctx ends). output is its combined stdout and stderr, cut to a
	// few kilobytes.
	Exec(ctx context.Context, id string, cmd []string) (code int, output []byte, err error)
	// SandboxStatus returns what the runtime knows of a sandbox: its
	// addresses; ErrNotFound (wrapped) if there is no such sandbox.
	SandboxStatus(ctx context.Context, sandboxID string) (SandboxInfo, error)
	// Dial connects to address ("host:port") from inside the sandbox's
	// network namespace, as net.Dialer.DialContext does (network "tcp").
	Dial(ctx context.Context, sandboxID, network, address string) (net.Conn, error)
}

// SandboxConfig describes a pod's sandbox.
type SandboxConfig struct {
	// Name identifies the pod, unique among the runtime's sandboxes:
	// the pod's name and a part of its UID.
	Name string
	// Hostname is the pod's host name, in its UTS namespace.
	Hostname string
	// Ports are the ports of the pod's containers; those with a HostPort
	// are published on the host, as the kubelet does.
	Ports []ContainerPort
	// DNSSearch are the search domains of the pod's resolv.conf, with
	// "options ndots:5" (Kubernetes' ClusterFirst DNS policy), when the
	// runtime gives the pod an embedded DNS server.
	DNSSearch []string
}

// SandboxInfo is the state of a sandbox in a Runtime.
type SandboxInfo struct {
	// IPs are the sandbox's addresses, IPv4 first; none without a
	// network.
	IPs []netip.Addr
}

// ContainerConfig is a pod's container resolved for the runtime: the
// environment and volumes are final.
type ContainerConfig struct {
	// Name is unique within the sandbox for as long as the container
	// exists (the container's name and its restart count).
	Name string
	// Image is the image reference in the runtime's image store.
	Image string
	// Command, when non-nil, replaces the image's ENTRYPOINT (and drops
	// its CMD); Args, when non-nil, replace its CMD.
	Command    []string
	Args       []string         // see Command
	Env        []string         // KEY=value, added to the image's
	WorkingDir string           // when set, replaces the image's working directory
	User       string           // when set, replaces the image's user
	Mounts     []ContainerMount // bind mounts, in order
	Resources  cgroup.Resources // the container's cgroup limits
	// LogPath, when set, receives the container's output as JSON lines
	// (container.ReadLogs reads them).
	LogPath string
	// StopGrace is the default grace period of StopContainer.
	StopGrace time.Duration
	// OnExit, when set, is called once, from any goroutine, after the
	// container's main process has ended. It must not block.
	OnExit func()
}

// ContainerMount bind-mounts a host path into a container.
type ContainerMount struct {
	HostPath      string // the file or directory of the host
	ContainerPath string // absolute path in the container
	ReadOnly      bool   // mount it read-only
}

// ContainerInfo is the state of a container in a Runtime.
type ContainerInfo struct {
	Running   bool      // the main process has not ended yet
	ExitCode  int       // when not running: the main process's exit code (128+signal if killed)
	OOMKilled bool      // when not running: the kernel's OOM killer killed a process of it
	StartedAt time.Time // when StartContainer started it
	// FinishedAt is when the main process ended (zero while it runs).
	FinishedAt time.Time
}
