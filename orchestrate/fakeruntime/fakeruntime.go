// Package fakeruntime is an orchestrate.Runtime that runs nothing, for
// tests of controllers and of programs that use a Manager: containers
// are records that "run" from StartContainer until the test ends them
// with Exit (or the controller stops them), on the test's clock.
//
//	clock := reconcile.NewFakeClock(time.Now())
//	rt := fakeruntime.New(clock, "busybox") // the images that exist
//	m, _ := orchestrate.NewManager(orchestrate.Options{Store: memstore.New(), Runtime: rt, Clock: clock})
//	... m.Apply(ctx, pod); m.RunUntilIdle(ctx)
//	c := rt.Running("web", "app") // the running instance of container app of pod web
//	rt.Exit(c.ID, 1)              // it crashes; OnExit tells the controller
//
// Exec probes answer with the exit code SetExec's function returns (0
// without one); TCP and HTTP probes dial what SetDial's function returns
// (an error without one). Stopping a container ends it with exit code
// 143 (SetStopExitCode changes it); removing a running one, 137.
package fakeruntime

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Runtime is the fake orchestrate.Runtime. All methods are safe for
// concurrent use.
type Runtime struct {
	clock reconcile.Clock

	mu         sync.Mutex
	images     map[string]bool
	sandboxes  map[string]*Sandbox
	containers map[string]*Container
	seq        int
	// execFunc answers exec probes: container is the pod's container
	// name (orchestrate.ContainerConfig.Name without its instance suffix).
	execFunc func(pod, container string, cmd []string) int
	// dialFunc answers Dial for HTTP and TCP probes.
	dialFunc func(ctx context.Context, pod, address string) (net.Conn, error)
	// startErr, when set, makes StartContainer fail.
	startErr     error
	stopExitCode int
	// stopGate, when set (holdStops), holds StopContainer (once recorded
	// in calls, before the container ends) until releaseStops closes it or
	// ctx ends: a stop that takes time.
	stopGate chan struct{}
	// onStart, when set, is called by StartContainer (f.mu held) with the
	// image to start and the images of the containers running then.
	onStart func(image string, running []string)
	// removeSandboxFailures makes that many RemoveSandbox calls fail
	// (a negative number: all of them).
	removeSandboxFailures int
	// history of calls, for assertions: "start POD/NAME", "stop ID", ...
	calls []string
}

// Sandbox is a pod's sandbox as the fake recorded it.
type Sandbox struct {
	ID       string                    // the ID CreateSandbox returned
	Pod      string                    // orchestrate.SandboxConfig.Name up to its last '-' (the pod's name)
	Config   orchestrate.SandboxConfig // as given to CreateSandbox
	Removed  bool                      // RemoveSandbox removed it
	IP       netip.Addr                // its fake address, 10.244.0.0/16 by creation order
	Contents []string                  // IDs of the containers started in it
}

// Container is one container instance as the fake recorded it.
type Container struct {
	ID         string                      // the ID StartContainer returned
	Sandbox    string                      // the ID of its sandbox
	Pod        string                      // the pod's name
	Name       string                      // the pod's container name (orchestrate.ContainerConfig.Name without its instance suffix)
	Config     orchestrate.ContainerConfig // as given to StartContainer
	Running    bool                        // Started and not ended
	Removed    bool                        // RemoveContainer removed it
	ExitCode   int                         // once ended: its exit code
	StartedAt  time.Time                   // on the fake's clock
	FinishedAt time.Time                   // on the fake's clock; zero while it runs
}

// New returns a Runtime in which the images named exist, whose times
// come from clock (nil: the real clock).
func New(clock reconcile.Clock, images ...string) *Runtime {
	if clock == nil {
		clock = reconcile.RealClock()
	}
	f := &Runtime{
		clock:        clock,
		images:       map[string]bool{},
		sandboxes:    map[string]*Sandbox{},
		containers:   map[string]*Container{},
		stopExitCode: 143,
	}
	for _, i := range images {
		f.images[i] = true
	}
	return f
}

// ImageExists reports whether image is one of those New was given.
func (f *Runtime) ImageExists(ctx context.Context, image string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[image], nil
}

// CreateSandbox records a sandbox and returns its ID ("sandbox-N").
func (f *Runtime) CreateSandbox(ctx context.Context, cfg orchestrate.SandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("sandbox-%d", f.seq)
	pod := cfg.Name
	if i := strings.LastIndexByte(pod, '-'); i > 0 {
		pod = pod[:i]
	}
	ip := netip.AddrFrom4([4]byte{10, 244, byte(f.seq >> 8), byte(f.seq)})
	f.sandboxes[id] = &Sandbox{ID: id, Pod: pod, Config: cfg, IP: ip}
	f.calls = append(f.calls, "sandbox "+pod)
	return id, nil
}

// SandboxStatus returns the sandbox's fake address.
func (f *Runtime) SandboxStatus(ctx context.Context, id string) (orchestrate.SandboxInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb := f.sandboxes[id]
	if sb == nil || sb.Removed {
		return orchestrate.SandboxInfo{}, fmt.Errorf("sandbox %s: %w", id, orchestrate.ErrNotFound)
	}
	return orchestrate.SandboxInfo{IPs: []netip.Addr{sb.IP}}, nil
}

// RemoveSandbox marks a sandbox removed; it fails while a container
// started in it is not removed, and as FailRemoveSandbox says.
func (f *Runtime) RemoveSandbox(ctx context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb := f.sandboxes[id]
	if sb == nil {
		return nil
	}
	if f.removeSandboxFailures != 0 {
		if f.removeSandboxFailures > 0 {
			f.removeSandboxFailures--
		}
		f.calls = append(f.calls, "remove-sandbox-failed "+sb.Pod)
		return fmt.Errorf("fake: remove sandbox %s: device or resource busy", id)
	}
	for _, cid := range sb.Contents {
		if !f.containers[cid].Removed {
			return fmt.Errorf("fake: remove sandbox %s: container %s not removed", id, cid)
		}
	}
	sb.Removed = true
	f.calls = append(f.calls, "remove-sandbox "+sb.Pod)
	return nil
}

// StartContainer records a running container and returns its ID
// ("ctr-N"); it fails for an image that does not exist and as
// SetStartError says.
func (f *Runtime) StartContainer(ctx context.Context, sandboxID string, cfg orchestrate.ContainerConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb := f.sandboxes[sandboxID]
	if sb == nil || sb.Removed {
		return "", fmt.Errorf("fake: no sandbox %s", sandboxID)
	}
	name := cfg.Name
	if i := strings.LastIndexByte(name, '-'); i > 0 {
		name = name[:i]
	}
	if f.startErr != nil {
		f.calls = append(f.calls, "start-failed "+sb.Pod+"/"+name)
		return "", f.startErr
	}
	if !f.images[cfg.Image] {
		return "", fmt.Errorf("fake: no image %s", cfg.Image)
	}
	if f.onStart != nil {
		var running []string
		for _, c := range f.containers {
			if c.Running {
				running = append(running, c.Config.Image)
			}
		}
		f.onStart(cfg.Image, running)
	}
	f.seq++
	c := &Container{
		ID: fmt.Sprintf("ctr-%d", f.seq), Sandbox: sandboxID, Pod: sb.Pod, Name: name,
		Config: cfg, Running: true, StartedAt: f.clock.Now(),
	}
	f.containers[c.ID] = c
	sb.Contents = append(sb.Contents, c.ID)
	f.calls = append(f.calls, "start "+sb.Pod+"/"+name)
	return c.ID, nil
}

// end marks c ended with code and returns its OnExit; f.mu is held.
func (f *Runtime) end(c *Container, code int) func() {
	if !c.Running {
		return nil
	}
	c.Running, c.ExitCode, c.FinishedAt = false, code, f.clock.Now()
	return c.Config.OnExit
}

// StopContainer ends a container with the stop exit code (see
// SetStopExitCode) and calls its OnExit; HoldStops holds it first.
func (f *Runtime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	c := f.containers[id]
	if c == nil {
		f.mu.Unlock()
		return fmt.Errorf("fake: stop %s: %w", id, orchestrate.ErrNotFound)
	}
	f.calls = append(f.calls, "stop "+c.Pod+"/"+c.Name)
	if gate := f.stopGate; gate != nil {
		f.mu.Unlock()
		select {
		case <-gate:
		case <-ctx.Done():
		}
		f.mu.Lock()
	}
	onExit := f.end(c, f.stopExitCode)
	f.mu.Unlock()
	if onExit != nil {
		onExit()
	}
	return nil
}

// RemoveContainer marks a container removed, ending it with 137 if it
// still ran.
func (f *Runtime) RemoveContainer(ctx context.Context, id string) error {
	f.mu.Lock()
	c := f.containers[id]
	if c == nil || c.Removed {
		f.mu.Unlock()
		return nil
	}
	onExit := f.end(c, 137)
	c.Removed = true
	f.calls = append(f.calls, "remove "+c.Pod+"/"+c.Name)
	f.mu.Unlock()
	if onExit != nil {
		onExit()
	}
	return nil
}

// ContainerStatus returns a container's recorded state;
// orchestrate.ErrNotFound (wrapped) once it is removed.
func (f *Runtime) ContainerStatus(ctx context.Context, id string) (orchestrate.ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil || c.Removed {
		return orchestrate.ContainerInfo{}, fmt.Errorf("fake: container %s: %w", id, orchestrate.ErrNotFound)
	}
	return orchestrate.ContainerInfo{Running: c.Running, ExitCode: c.ExitCode, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt}, nil
}

// Exec answers with the function SetExec set (0 without one) in a
// running container.
func (f *Runtime) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	f.mu.Lock()
	c := f.containers[id]
	fn := f.execFunc
	f.mu.Unlock()
	if c == nil || !c.Running {
		return 0, nil, fmt.Errorf("fake: exec in %s: not running", id)
	}
	if fn == nil {
		return 0, nil, nil
	}
	code := fn(c.Pod, c.Name, cmd)
	return code, []byte(fmt.Sprintf("exit %d", code)), nil
}

// Dial answers with the function SetDial set (refused without one).
func (f *Runtime) Dial(ctx context.Context, sandboxID, network, address string) (net.Conn, error) {
	f.mu.Lock()
	sb := f.sandboxes[sandboxID]
	fn := f.dialFunc
	f.mu.Unlock()
	if sb == nil || sb.Removed {
		return nil, fmt.Errorf("fake: dial in %s: no sandbox", sandboxID)
	}
	if fn == nil {
		return nil, fmt.Errorf("fake: dial %s: connection refused", address)
	}
	return fn(ctx, sb.Pod, address)
}

// Exit ends the running container id with code, as if its process had
// exited, and calls its OnExit.
func (f *Runtime) Exit(id string, code int) {
	f.mu.Lock()
	c := f.containers[id]
	var onExit func()
	if c != nil {
		onExit = f.end(c, code)
	}
	f.mu.Unlock()
	if onExit != nil {
		onExit()
	}
}

// Running returns the running instance of container name of pod, or nil.
func (f *Runtime) Running(pod, name string) *Container {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.containers {
		if c.Pod == pod && c.Name == name && c.Running {
			cp := *c
			return &cp
		}
	}
	return nil
}

// Live returns the IDs of the containers not yet removed and the pods
// of the sandboxes not yet removed, sorted: what would leak.
func (f *Runtime) Live() (containers, sandboxes []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for id, c := range f.containers {
		if !c.Removed {
			containers = append(containers, id)
		}
	}
	for _, sb := range f.sandboxes {
		if !sb.Removed {
			sandboxes = append(sandboxes, sb.Pod)
		}
	}
	slices.Sort(containers)
	slices.Sort(sandboxes)
	return containers, sandboxes
}

// Started returns how many instances of container name of pod were started.
func (f *Runtime) Started(pod, name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.containers {
		if c.Pod == pod && c.Name == name {
			n++
		}
	}
	return n
}

// HoldStops makes StopContainer wait, once it has recorded its call,
// until releaseStops. Tests that hold stops must release them on every
// path, failures included (newPodTest's cleanup does, before Close):
// Close stops containers, and a held stop would keep it waiting.
func (f *Runtime) HoldStops() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopGate == nil {
		f.stopGate = make(chan struct{})
	}
}

// ReleaseStops lets the held stops and every later one through. It may
// be called more than once.
func (f *Runtime) ReleaseStops() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopGate != nil {
		close(f.stopGate)
		f.stopGate = nil
	}
}

// Calls returns the calls recorded so far, in order, that start with
// prefix ("" for all): "sandbox POD", "start POD/NAME",
// "start-failed POD/NAME", "stop POD/NAME", "remove POD/NAME",
// "remove-sandbox POD", "remove-sandbox-failed POD".
func (f *Runtime) Calls(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// RunningImages counts the running containers of image.
func (f *Runtime) RunningImages(image string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.containers {
		if c.Running && c.Config.Image == image {
			n++
		}
	}
	return n
}

// SetExec sets the function that answers Exec (exec probes) in the
// running containers: pod and container are the pod's and the
// container's names; it returns the exit code. Nil answers 0.
func (f *Runtime) SetExec(fn func(pod, container string, cmd []string) int) {
	f.mu.Lock()
	f.execFunc = fn
	f.mu.Unlock()
}

// SetDial sets the function that answers Dial (HTTP and TCP probes) in
// the sandbox of pod. Nil refuses every connection.
func (f *Runtime) SetDial(fn func(ctx context.Context, pod, address string) (net.Conn, error)) {
	f.mu.Lock()
	f.dialFunc = fn
	f.mu.Unlock()
}

// SetStartError makes every StartContainer fail with err (nil: start
// again).
func (f *Runtime) SetStartError(err error) {
	f.mu.Lock()
	f.startErr = err
	f.mu.Unlock()
}

// SetStopExitCode sets the exit code of a container StopContainer ends
// (143 to begin with: killed by SIGTERM).
func (f *Runtime) SetStopExitCode(code int) {
	f.mu.Lock()
	f.stopExitCode = code
	f.mu.Unlock()
}

// SetOnStart sets a function StartContainer calls, before it starts
// anything, with the image to start and the images of the containers
// running then (to check, say, that a Recreate rollout stopped the old
// pods first). It must not call the Runtime.
func (f *Runtime) SetOnStart(fn func(image string, running []string)) {
	f.mu.Lock()
	f.onStart = fn
	f.mu.Unlock()
}

// FailRemoveSandbox makes the next n RemoveSandbox calls fail (n < 0:
// all of them), as a busy mount would.
func (f *Runtime) FailRemoveSandbox(n int) {
	f.mu.Lock()
	f.removeSandboxFailures = n
	f.mu.Unlock()
}

// Sandbox returns a copy of the sandbox of that ID, or nil.
func (f *Runtime) Sandbox(id string) *Sandbox {
	f.mu.Lock()
	defer f.mu.Unlock()
	sb := f.sandboxes[id]
	if sb == nil {
		return nil
	}
	cp := *sb
	cp.Contents = slices.Clone(sb.Contents)
	return &cp
}

var _ orchestrate.Runtime = (*Runtime)(nil)
