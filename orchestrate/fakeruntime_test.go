package orchestrate

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// fakeRuntime is a Runtime that runs nothing: containers are records
// that "run" from StartContainer until the test ends them with exit (or
// the controller stops them). It is for controller tests of this package
// (pods, ReplicaSets, Deployments, Jobs) with a reconcile.FakeClock:
//
//	rt := newFakeRuntime(clock, "busybox")   // images that exist
//	m, _ := NewManager(Options{Runtime: rt, Clock: clock})
//	... m.Apply(ctx, pod); m.RunUntilIdle(ctx)
//	c := rt.running("web", "app")            // the running instance of container app of pod web
//	rt.exit(c.ID, 1)                         // it crashes; OnExit tells the controller
//
// Exec probes answer with the exit code execFunc returns (0 when it is
// nil); TCP and HTTP probes dial what dialFunc returns (an error when it
// is nil). Stopping a container ends it with exit code 143 (137 when
// stopExitCode says so). All methods are safe for concurrent use.
type fakeRuntime struct {
	clock reconcile.Clock

	mu         sync.Mutex
	images     map[string]bool
	sandboxes  map[string]*fakeSandbox
	containers map[string]*fakeContainer
	seq        int
	// execFunc answers exec probes: container is the pod's container
	// name (ContainerConfig.Name without its instance suffix).
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

type fakeSandbox struct {
	ID       string
	Pod      string // SandboxConfig.Name up to its last '-' (the pod's name)
	Config   SandboxConfig
	Removed  bool
	Contents []string // container IDs made in it
}

// fakeContainer is one container instance.
type fakeContainer struct {
	ID, Sandbox, Pod, Name string // Name is the pod's container name
	Config                 ContainerConfig
	Running                bool
	Removed                bool
	ExitCode               int
	StartedAt, FinishedAt  time.Time
}

// newFakeRuntime returns a fakeRuntime whose images are those named.
func newFakeRuntime(clock reconcile.Clock, images ...string) *fakeRuntime {
	f := &fakeRuntime{
		clock:        clock,
		images:       map[string]bool{},
		sandboxes:    map[string]*fakeSandbox{},
		containers:   map[string]*fakeContainer{},
		stopExitCode: 143,
	}
	for _, i := range images {
		f.images[i] = true
	}
	return f
}

func (f *fakeRuntime) ImageExists(ctx context.Context, image string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.images[image], nil
}

func (f *fakeRuntime) CreateSandbox(ctx context.Context, cfg SandboxConfig) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	id := fmt.Sprintf("sandbox-%d", f.seq)
	pod := cfg.Name
	if i := strings.LastIndexByte(pod, '-'); i > 0 {
		pod = pod[:i]
	}
	f.sandboxes[id] = &fakeSandbox{ID: id, Pod: pod, Config: cfg}
	f.calls = append(f.calls, "sandbox "+pod)
	return id, nil
}

func (f *fakeRuntime) RemoveSandbox(ctx context.Context, id string) error {
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

func (f *fakeRuntime) StartContainer(ctx context.Context, sandboxID string, cfg ContainerConfig) (string, error) {
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
	c := &fakeContainer{
		ID: fmt.Sprintf("ctr-%d", f.seq), Sandbox: sandboxID, Pod: sb.Pod, Name: name,
		Config: cfg, Running: true, StartedAt: f.clock.Now(),
	}
	f.containers[c.ID] = c
	sb.Contents = append(sb.Contents, c.ID)
	f.calls = append(f.calls, "start "+sb.Pod+"/"+name)
	return c.ID, nil
}

// end marks c ended with code and returns its OnExit; f.mu is held.
func (f *fakeRuntime) end(c *fakeContainer, code int) func() {
	if !c.Running {
		return nil
	}
	c.Running, c.ExitCode, c.FinishedAt = false, code, f.clock.Now()
	return c.Config.OnExit
}

func (f *fakeRuntime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	f.mu.Lock()
	c := f.containers[id]
	if c == nil {
		f.mu.Unlock()
		return fmt.Errorf("fake: stop %s: %w", id, ErrNotFound)
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

func (f *fakeRuntime) RemoveContainer(ctx context.Context, id string) error {
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

func (f *fakeRuntime) ContainerStatus(ctx context.Context, id string) (ContainerInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.containers[id]
	if c == nil || c.Removed {
		return ContainerInfo{}, fmt.Errorf("fake: container %s: %w", id, ErrNotFound)
	}
	return ContainerInfo{Running: c.Running, ExitCode: c.ExitCode, StartedAt: c.StartedAt, FinishedAt: c.FinishedAt}, nil
}

func (f *fakeRuntime) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
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

func (f *fakeRuntime) Dial(ctx context.Context, sandboxID, network, address string) (net.Conn, error) {
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

// exit ends the running container id with code, as if its process had
// exited, and calls its OnExit.
func (f *fakeRuntime) exit(id string, code int) {
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

// running returns the running instance of container name of pod, or nil.
func (f *fakeRuntime) running(pod, name string) *fakeContainer {
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

// live returns the IDs of the containers not yet removed and the pods
// of the sandboxes not yet removed, sorted: what would leak.
func (f *fakeRuntime) live() (containers, sandboxes []string) {
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

// started returns how many instances of container name of pod were started.
func (f *fakeRuntime) started(pod, name string) int {
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

// holdStops makes StopContainer wait, once it has recorded its call,
// until releaseStops. Tests that hold stops must release them on every
// path, failures included (newPodTest's cleanup does, before Close):
// Close stops containers, and a held stop would keep it waiting.
func (f *fakeRuntime) holdStops() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopGate == nil {
		f.stopGate = make(chan struct{})
	}
}

// releaseStops lets the held stops and every later one through. It may
// be called more than once.
func (f *fakeRuntime) releaseStops() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopGate != nil {
		close(f.stopGate)
		f.stopGate = nil
	}
}

// callsWith returns the calls recorded so far that start with prefix.
func (f *fakeRuntime) callsWith(prefix string) []string {
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

// runningImages counts the running containers of image.
func (f *fakeRuntime) runningImages(image string) int {
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

// setExec sets execFunc.
func (f *fakeRuntime) setExec(fn func(pod, container string, cmd []string) int) {
	f.mu.Lock()
	f.execFunc = fn
	f.mu.Unlock()
}

// checkNoFakeLeaks fails t if a container or sandbox is left.
func checkNoFakeLeaks(t *testing.T, f *fakeRuntime) {
	t.Helper()
	if cs, sbs := f.live(); len(cs) > 0 || len(sbs) > 0 {
		t.Errorf("left behind: containers %v, sandboxes %v", cs, sbs)
	}
}

var _ Runtime = (*fakeRuntime)(nil)

// waitFor polls cond (in real time) until it holds, failing t after a
// few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// podsByDeletion splits the pods of the store into those being deleted
// and the others.
func podsByDeletion(t *testing.T, m *Manager) (terminating, live []*Pod) {
	t.Helper()
	pods, err := m.listPods(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.DeletionTime != nil {
			terminating = append(terminating, p)
		} else {
			live = append(live, p)
		}
	}
	return terminating, live
}
