package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Crash-loop backoff, as the kubelet does it (Options.CrashLoop changes
// it): the first restart of a container is immediate, the next waits
// 10 s, then 20 s, 40 s and so on up to 5 minutes; a container that ran
// 10 minutes before it exited starts over.
const (
	crashBackoffInitial = 10 * time.Second
	crashBackoffMax     = 5 * time.Minute
	crashBackoffReset   = 10 * time.Minute
	// configRetry is how often a container waiting for a missing
	// ConfigMap or Secret looks again (a change to one is seen at once).
	configRetry = 10 * time.Second
	// defaultGrace is a pod's termination grace period when it sets none.
	defaultGrace = 30 * time.Second
)

// Container exit reasons in ContainerStatus.Reason.
const (
	reasonCompleted = "Completed"
	reasonError     = "Error"
	reasonOOMKilled = "OOMKilled"
	// reasonStatusUnknown: a container of a deleted pod that was not
	// running (Kubernetes' ContainerStatusUnknown).
	reasonStatusUnknown = "ContainerStatusUnknown"
	reasonCrashLoop     = "CrashLoopBackOff"
	reasonCreating      = "ContainerCreating"
	reasonConfigError   = "CreateContainerConfigError"
	reasonRunError      = "RunContainerError"
	reasonSandboxFailed = "FailedCreatePodSandBox"
	reasonFailedMount   = "FailedMount"
	// reasonStartError: the runtime could not start the container; it
	// counts as terminated with exit code startErrorCode.
	reasonStartError = "StartError"
	startErrorCode   = 128
)

// podController runs the containers of Pod objects through the Runtime
// and writes their status. It tracks the pods it runs in memory, so that
// a pod deleted from the store is still torn down.
type podController struct {
	m    *Manager
	rt   Runtime
	ctrl *reconcile.Controller[string]

	mu   sync.Mutex
	pods map[string]*podState // by pod key ("namespace/name")
	// awaiting holds the pods being deleted whose teardown is done but
	// whose Job has yet to count them (see awaitJob): the Job's UID by
	// pod name. A change to that Job brings them back.
	awaiting map[string]string
	// finals are the teardowns of deleted pods running in the background
	// (see finalize), by pod name; finalWG counts their goroutines, which
	// use bgCtx, cancelled when Close runs out of time.
	finals   map[string]*finalization
	finalWG  sync.WaitGroup
	bgCtx    context.Context
	bgCancel context.CancelFunc
	closed   bool
}

// finalization is the background teardown of a deleted pod.
type finalization struct {
	uid  string
	done bool  // it ended; err says how
	err  error // guarded by podController.mu, as done
}

// podState is what the controller knows of one pod it runs.
type podState struct {
	mu        sync.Mutex
	name      string
	namespace string
	key       string // "namespace/name", the controller's key
	uid       string
	spec      PodSpec      // as the pod was created (a pod's spec does not change)
	dir       string       // host directory of its volumes and logs
	sandbox   string       // sandbox ID; "" before it is made and after it is removed
	ips       []netip.Addr // the sandbox's addresses
	tmpfs     []string
	garbage   []string // IDs of exited containers not yet removed
	start     time.Time
	ctrs      []*ctrState
	// reason and message explain a pod that cannot start.
	reason, message string
	readySince      time.Time
	done            bool // every container finished for good and the teardown succeeded
	closed          bool // Close tore it down: no more work
}

// ctrState is one container of a pod across its restarts.
type ctrState struct {
	spec *Container
	// The current instance.
	id        string // "" when none runs
	lastID    string
	running   bool
	startedAt time.Time
	instances int // instances started, for unique runtime names
	// The last termination.
	finishedAt  time.Time
	exitCode    int
	termReason  string
	termMessage string
	// Restarts.
	everStarted  bool
	restartCount int
	finished     bool // terminated and not to be restarted
	backoff      time.Duration
	restartAt    time.Time
	waitReason   string
	waitMessage  string
	// Probes.
	started                     bool // the startup probe passed (or there is none)
	ready                       bool
	startup, liveness, readines probeState
}

// registerPods registers the Pod controller of m.
func registerPods(m *Manager) {
	pc := &podController{
		m: m, rt: m.runtime,
		pods: map[string]*podState{}, awaiting: map[string]string{}, finals: map[string]*finalization{},
	}
	pc.bgCtx, pc.bgCancel = context.WithCancel(context.Background())
	m.pods = pc
	if m.runtime == nil {
		m.register(KindPod, nil, nil, m.validatePod)
		return
	}
	m.register(KindPod, pc, pc.keysFor, m.validatePod)
	pc.ctrl = m.controller(KindPod)
}

// keysFor maps a store change to the pods to reconcile: the pod itself,
// the pods that use a ConfigMap or Secret that changed, or the deleted
// pods waiting for a Job that changed to count them.
func (pc *podController) keysFor(ev WatchEvent) []string {
	switch o := ev.Object.(type) {
	case *Pod:
		return []string{keyOf(o)}
	case *Job:
		pc.mu.Lock()
		defer pc.mu.Unlock()
		var keys []string
		for pname, uid := range pc.awaiting {
			if uid == o.UID {
				keys = append(keys, pname)
				delete(pc.awaiting, pname) // Reconcile puts it back if it must wait on
			}
		}
		slices.Sort(keys)
		return keys
	case *ConfigMap, *Secret:
		if ev.Type == WatchDeleted {
			return nil
		}
		kind, name, ns := ev.Object.Kind(), ev.Object.Meta().Name, ev.Object.Meta().Namespace
		pc.mu.Lock()
		defer pc.mu.Unlock()
		var keys []string
		for pname, st := range pc.pods {
			if st.namespace == ns && usesConfig(&st.spec, kind, name) {
				keys = append(keys, pname)
			}
		}
		slices.Sort(keys)
		return keys
	}
	return nil
}

// Reconcile brings the containers of one pod in line with its object.
func (pc *podController) Reconcile(ctx context.Context, name string) (reconcile.Result, error) {
	// name is the pod's key, "namespace/name": the key of the maps below.
	ns, pname := splitKey(name)
	pod, err := Get[*Pod](ctx, pc.m.store, ns, pname)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return reconcile.Result{}, err
	}
	pc.mu.Lock()
	if pc.closed {
		pc.mu.Unlock()
		return reconcile.Result{}, nil
	}
	st := pc.pods[name]
	pc.mu.Unlock()

	if c := pc.m.cluster; c != nil && pod != nil && (pod.Spec.NodeName != c.node || c.isFenced()) {
		if pod.Spec.NodeName == "" && pod.DeletionTime != nil && pc.m.IsLeader() {
			// Never scheduled: no node will finish its deletion.
			return reconcile.Result{}, pc.removeObject(ctx, ns, pname, pod.UID)
		}
		pod = nil // another node's, or not yet scheduled
	}
	if st != nil && (pod == nil || pod.UID != st.uid || lostPod(pod)) {
		// Deleted (or deleted and created anew), or marked failed when
		// this node was lost and replaced elsewhere: tear the old one
		// down.
		st.mu.Lock()
		err := pc.teardown(ctx, st, true)
		st.mu.Unlock()
		if err != nil {
			return reconcile.Result{}, err
		}
		pc.mu.Lock()
		if pc.pods[name] == st {
			delete(pc.pods, name)
		}
		if f := pc.finals[name]; f != nil && f.uid == st.uid {
			delete(pc.finals, name)
		}
		pc.mu.Unlock()
		st = nil
	}
	if pod == nil {
		return reconcile.Result{}, nil
	}
	if lostPod(pod) {
		if ref := controllerOf(&pod.ObjectMeta); ref != nil && ref.Kind == KindReplicaSet {
			// Replaced by its ReplicaSet and torn down: nothing needs
			// the object any more (a Job's stays: it counts it).
			return reconcile.Result{}, pc.removeObject(ctx, ns, pname, pod.UID)
		}
		return reconcile.Result{}, nil
	}
	if pod.DeletionTime != nil {
		return reconcile.Result{}, pc.finalize(ctx, pod, st)
	}
	if st == nil {
		if pod.Status.Phase == PodSucceeded || pod.Status.Phase == PodFailed {
			return reconcile.Result{}, nil // finished before this manager knew it
		}
		st = pc.newPodState(pod)
		pc.mu.Lock()
		if pc.closed {
			pc.mu.Unlock()
			return reconcile.Result{}, nil
		}
		pc.pods[name] = st
		pc.mu.Unlock()
	}

	st.mu.Lock()
	defer st.mu.Unlock()
	if st.closed {
		return reconcile.Result{}, nil
	}
	res, syncErr := pc.sync(ctx, st, pod)
	if err := pc.writeStatus(ctx, st, pod); err != nil {
		return reconcile.Result{}, errors.Join(syncErr, err)
	}
	return res, syncErr
}

// lostPod reports whether the node lifecycle controller marked pod
// failed because its node was lost.
func lostPod(pod *Pod) bool {
	return pod.Status.Phase == PodFailed && pod.Status.Reason == ReasonNodeLost
}

// finalize ends the graceful deletion of a pod: it stops its containers
// (with the grace period), removes them, the sandbox and the volumes, and
// then removes the pod from the store. The teardown runs in the
// background, as the kubelet's pod workers do, so that pods stopping
// slowly do not hold the controller's workers; when it ends the pod is
// reconciled again. A failed teardown is returned then, and the
// controller tries again with backoff; the object stays until the
// teardown succeeds.
func (pc *podController) finalize(ctx context.Context, pod *Pod, st *podState) error {
	if st != nil {
		pc.mu.Lock()
		f := pc.finals[keyOf(pod)]
		switch {
		case f == nil || f.uid != pod.UID:
			if pc.closed {
				pc.mu.Unlock()
				return nil // Close tears it down and removes it
			}
			f = &finalization{uid: pod.UID}
			pc.finals[keyOf(pod)] = f
			pc.finalWG.Add(1)
			pc.mu.Unlock()
			go pc.finalizeInBackground(pod, st, f)
			return nil
		case !f.done:
			pc.mu.Unlock()
			return nil // it brings the pod back when it ends
		}
		delete(pc.finals, keyOf(pod))
		err := f.err
		if err == nil && pc.pods[keyOf(pod)] == st {
			delete(pc.pods, keyOf(pod))
		}
		pc.mu.Unlock()
		if err != nil {
			return err // a new teardown on the next try, after backoff
		}
	}
	wait, err := pc.awaitJob(ctx, pod)
	if err != nil {
		return err
	}
	if wait {
		return nil // until its Job has counted it: a change to the Job brings it back
	}
	return pc.removeObject(ctx, pod.Namespace, pod.Name, pod.UID)
}

// finalizeInBackground stops and removes the containers, sandbox and
// volumes of pod, being deleted, records how that went in f and brings
// the pod back to the controller.
func (pc *podController) finalizeInBackground(pod *Pod, st *podState, f *finalization) {
	defer pc.finalWG.Done()
	ctx := pc.bgCtx
	// No new Service connections to a pod whose containers are about to
	// stop, and a moment for those just made.
	if ip, err := netip.ParseAddr(pod.Status.PodIP); err == nil && pc.m.services != nil {
		if pc.m.services.drain(ctx, ip) && pc.m.drain > 0 {
			grace := pod.Spec.TerminationGracePeriod
			if grace <= 0 {
				grace = defaultGrace
			}
			select {
			case <-time.After(min(pc.m.drain, grace)):
			case <-ctx.Done():
			}
		}
		defer pc.m.services.undrain(ip)
	}
	st.mu.Lock()
	var err error
	if !st.closed { // else Close tears it down
		// As the kubelet: a pod being deleted is not ready any more, for
		// the whole of its grace period.
		for _, c := range st.ctrs {
			c.ready = false
		}
		// Status writes that fail are logged: the teardown goes on.
		logStatus := func(err error) {
			if err != nil {
				pc.m.log.Warn("pod being deleted", "pod", keyOf(pod), "error", err)
			}
		}
		logStatus(pc.writeStatus(ctx, st, pod))
		if err = pc.teardown(ctx, st, true); err == nil {
			st.done = true
			logStatus(pc.writeStatus(ctx, st, pod)) // how its containers ended
		}
	}
	st.mu.Unlock()
	pc.mu.Lock()
	f.done, f.err = true, err
	pc.mu.Unlock()
	if pc.ctrl != nil {
		pc.ctrl.Add(keyOf(pod))
	}
}

// waitFinalizing waits until no teardown of a deleted pod runs in the
// background (RunUntilIdle calls it when no reconcile runs, so none
// starts meanwhile).
func (pc *podController) waitFinalizing(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		pc.finalWG.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writeStatus writes the status of pod computed from st, if it changed;
// st.mu is held. A pod gone meanwhile is not an error.
func (pc *podController) writeStatus(ctx context.Context, st *podState, pod *Pod) error {
	status := pc.status(st, pod)
	if reflect.DeepEqual(status, pod.Status) {
		return nil
	}
	pod.Status = status
	if pc.m.cluster == nil {
		pod.ResourceVersion = 0 // the controller is the only writer of a pod's status
	} // in a cluster the node lifecycle controller writes it too (ReasonNodeLost)
	if _, err := pc.m.store.UpdateStatus(ctx, pod); err != nil && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrConflict) {
		return fmt.Errorf("update status of pod %s: %w", pod.Name, err)
	}
	return nil
}

// awaitJob reports whether pod, being deleted, must stay because the Job
// that controls it is still running and has yet to count it
// (JobStatus.CountedPods), as Kubernetes' Job tracking finalizer keeps
// it: a pod removed before its Job saw it would never be counted (as
// succeeded, or as failed for one deleted while it ran). Such a pod is
// put in awaiting before the Job is read, so that a change to the Job
// made after the read is sure to bring it back.
func (pc *podController) awaitJob(ctx context.Context, pod *Pod) (bool, error) {
	ref := controllerOf(&pod.ObjectMeta)
	if ref == nil || ref.Kind != KindJob {
		return false, nil
	}
	pc.mu.Lock()
	pc.awaiting[keyOf(pod)] = ref.UID
	pc.mu.Unlock()
	wait, err := func() (bool, error) {
		j, err := Get[*Job](ctx, pc.m.store, pod.Namespace, ref.Name)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return j.UID == ref.UID && !jobFinished(j) && !slices.Contains(j.Status.CountedPods, pod.UID), nil
	}()
	if !wait {
		pc.mu.Lock()
		delete(pc.awaiting, keyOf(pod))
		pc.mu.Unlock()
	}
	return wait, err
}

// removeObject removes the pod name of namespace from the store if it is
// still the one with uid; one gone already is not an error.
func (pc *podController) removeObject(ctx context.Context, namespace, name, uid string) error {
	obj, err := pc.m.store.Get(ctx, KindPod, namespace, name)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if obj.Meta().UID != uid {
		return nil // another pod of that name
	}
	if err := pc.m.store.Delete(ctx, KindPod, namespace, name); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("remove deleted pod %s/%s: %w", namespace, name, err)
	}
	return nil
}

func (pc *podController) newPodState(pod *Pod) *podState {
	uid8 := pod.UID
	if len(uid8) > 8 {
		uid8 = uid8[:8]
	}
	spec := deepCopy(&Pod{Spec: pod.Spec}).Spec
	st := &podState{
		name:      pod.Name,
		namespace: pod.Namespace,
		key:       keyOf(pod),
		uid:       pod.UID,
		spec:      spec,
		dir:       filepath.Join(pc.m.stateDir, "pods", pod.Name+"-"+uid8),
	}
	for i := range st.spec.Containers {
		c := &st.spec.Containers[i]
		cs := &ctrState{spec: c}
		st.ctrs = append(st.ctrs, cs)
	}
	return st
}

// sync does what is due now for one pod and says when to come back.
func (pc *podController) sync(ctx context.Context, st *podState, pod *Pod) (reconcile.Result, error) {
	now := pc.m.clock.Now()
	if st.done {
		return reconcile.Result{}, nil
	}
	if st.allFinished() {
		// Finished, but an earlier teardown failed: try it again.
		return pc.finish(ctx, st)
	}
	if st.sandbox == "" {
		if st.start.IsZero() {
			st.start = now
		}
		if err := pc.prepareVolumes(ctx, st); err != nil {
			st.reason, st.message = reasonFailedMount, err.Error()
			pc.m.recordEvent(pod, EventWarning, reasonFailedMount, "%v", err)
			return reconcile.Result{}, err
		}
		hostname := st.spec.Hostname
		if hostname == "" {
			hostname = st.name
		}
		var ports []ContainerPort
		for _, c := range st.spec.Containers {
			ports = append(ports, c.Ports...)
		}
		id, err := pc.rt.CreateSandbox(ctx, SandboxConfig{Name: filepath.Base(st.dir), Hostname: hostname, Ports: ports, DNSSearch: dnsSearch(st.namespace)})
		if err != nil {
			st.reason, st.message = reasonSandboxFailed, err.Error()
			pc.m.recordEvent(pod, EventWarning, reasonSandboxFailed, "create pod sandbox: %v", err)
			return reconcile.Result{}, err
		}
		st.sandbox = id
		if info, err := pc.rt.SandboxStatus(ctx, id); err == nil {
			st.ips = info.IPs
		} else {
			pc.m.log.Warn("sandbox status", "pod", st.name, "error", err)
		}
		st.reason, st.message = "", ""
	}
	pc.collectGarbage(ctx, st)

	// Exits since the last look.
	for _, c := range st.ctrs {
		if !c.running {
			continue
		}
		info, err := pc.rt.ContainerStatus(ctx, c.id)
		if errors.Is(err, ErrNotFound) {
			info, err = ContainerInfo{ExitCode: 137}, nil // gone behind our back
		}
		if err != nil {
			return reconcile.Result{}, fmt.Errorf("status of container %s of pod %s: %w", c.spec.Name, st.name, err)
		}
		if !info.Running {
			pc.exited(ctx, st, pod, c, info, false, now)
		}
	}
	// Probes of the running containers.
	for _, c := range st.ctrs {
		if c.running {
			pc.probe(ctx, st, pod, c, now)
		}
	}
	// Starts and restarts that are due.
	for _, c := range st.ctrs {
		// A container waiting for a ConfigMap or Secret tries again on
		// every reconcile: a change to one brings it here.
		if c.running || c.finished || c.restartAt.After(now) && c.waitReason != reasonConfigError {
			continue
		}
		pc.start(ctx, st, pod, c, now)
	}
	// A pod whose containers have all finished for good frees its
	// sandbox and volumes; its status stays.
	if st.allFinished() {
		return pc.finish(ctx, st)
	}
	return pc.nextWake(st, now), nil
}

// allFinished reports whether every container of the pod has finished
// for good.
func (st *podState) allFinished() bool {
	return !slices.ContainsFunc(st.ctrs, func(c *ctrState) bool { return !c.finished })
}

// finish tears down a pod whose containers have all finished. The pod is
// done only once that succeeded: an error brings the controller back,
// with backoff, to try again, so that a sandbox or volume is not left
// behind until Close.
func (pc *podController) finish(ctx context.Context, st *podState) (reconcile.Result, error) {
	if err := pc.teardown(ctx, st, false); err != nil {
		pc.m.log.Warn("tear down finished pod", "pod", st.name, "error", err)
		return reconcile.Result{}, err
	}
	st.done = true
	return reconcile.Result{}, nil
}

// nextWake returns the Result that brings the controller back for the
// next restart or probe.
func (pc *podController) nextWake(st *podState, now time.Time) reconcile.Result {
	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, c := range st.ctrs {
		switch {
		case c.running:
			for _, p := range c.activeProbes() {
				consider(p.state.next)
			}
		case !c.finished:
			consider(c.restartAt)
		}
	}
	if next.IsZero() {
		return reconcile.Result{}
	}
	return reconcile.Result{RequeueAfter: next.Sub(now)}
}

// start starts a new instance of c.
func (pc *podController) start(ctx context.Context, st *podState, pod *Pod, c *ctrState, now time.Time) {
	cfg, err := pc.containerConfig(ctx, st, c)
	if err != nil {
		if c.waitReason != reasonConfigError || c.waitMessage != err.Error() {
			pc.m.recordEvent(pod, EventWarning, "Failed", "container %s: %v", c.spec.Name, err)
		}
		c.waitReason, c.waitMessage = reasonConfigError, err.Error()
		c.restartAt = now.Add(configRetry)
		return
	}
	c.instances++
	cfg.Name = fmt.Sprintf("%s-%d", c.spec.Name, c.instances)
	if c.everStarted {
		c.restartCount++ // every attempt after the first, failed ones too
	}
	c.everStarted = true
	key := st.key
	cfg.OnExit = func() {
		if pc.ctrl != nil {
			pc.ctrl.Add(key)
		}
	}
	id, err := pc.rt.StartContainer(ctx, st.sandbox, cfg)
	if err != nil {
		// As the kubelet: the container terminated with a StartError
		// (exit code 128); the restart policy decides what comes next.
		pc.m.recordEvent(pod, EventWarning, "Failed", "start container %s: %v", c.spec.Name, err)
		c.running, c.ready = false, false
		c.startedAt, c.finishedAt = now, now
		c.exitCode, c.termReason, c.termMessage = startErrorCode, reasonStartError, err.Error()
		c.waitReason, c.waitMessage = "", ""
		pc.afterExit(pod, st, c, true, true, now)
		if !c.finished {
			c.waitReason, c.waitMessage = reasonRunError, err.Error()
		}
		return
	}
	pc.m.recordEvent(pod, EventNormal, "Created", "created container %s", c.spec.Name)
	c.running = true
	c.id, c.lastID, c.startedAt = id, id, now
	c.waitReason, c.waitMessage = "", ""
	c.started = c.spec.StartupProbe == nil
	c.ready = false
	c.startup = newProbeState(c.spec.StartupProbe, now)
	c.liveness = newProbeState(c.spec.LivenessProbe, now)
	c.readines = newProbeState(c.spec.ReadinessProbe, now)
	pc.m.recordEvent(pod, EventNormal, "Started", "started container %s", c.spec.Name)
}

// exited records the end of c's current instance and decides whether
// and when it restarts. killedByProbe says the controller stopped it for
// a failed liveness or startup probe: then it is restarted under any
// policy but Never, whatever its exit code (as the kubelet does).
func (pc *podController) exited(ctx context.Context, st *podState, pod *Pod, c *ctrState, info ContainerInfo, killedByProbe bool, now time.Time) {
	c.running = false
	c.finishedAt = now
	c.exitCode = info.ExitCode
	c.termMessage = ""
	c.termReason = terminationReason(info)
	c.ready = false
	if err := pc.rt.RemoveContainer(ctx, c.id); err != nil {
		pc.m.log.Warn("remove exited container", "pod", st.name, "container", c.spec.Name, "error", err)
		st.garbage = append(st.garbage, c.id)
	}
	c.id = ""
	failed := info.ExitCode != 0 || info.OOMKilled || killedByProbe
	pc.afterExit(pod, st, c, failed, false, now)
}

// terminationReason is the reason shown for a container that ended as
// info says.
func terminationReason(info ContainerInfo) string {
	switch {
	case info.OOMKilled:
		return reasonOOMKilled
	case info.ExitCode == 0:
		return reasonCompleted
	default:
		return reasonError
	}
}

// afterExit decides, by the pod's restart policy, whether and when c
// runs again after its instance ended (failed: not a success) or could
// not start (startError). A start error waits at least the initial
// crash-loop delay before the next try.
func (pc *podController) afterExit(pod *Pod, st *podState, c *ctrState, failed, startError bool, now time.Time) {
	policy := st.spec.RestartPolicy
	if policy == "" {
		policy = RestartPolicyAlways
	}
	if policy == RestartPolicyNever || policy == RestartPolicyOnFailure && !failed {
		c.finished = true
		typ := EventNormal
		if failed {
			typ = EventWarning
		}
		pc.m.recordEvent(pod, typ, c.termReason, "container %s exited with code %d", c.spec.Name, c.exitCode)
		return
	}
	b := pc.m.crash
	if now.Sub(c.startedAt) >= b.Reset {
		c.backoff = 0
	}
	if startError {
		c.backoff = max(c.backoff, b.Initial)
	}
	c.restartAt = now.Add(c.backoff)
	if c.backoff > 0 {
		pc.m.recordEvent(pod, EventWarning, "BackOff", "back-off %v restarting failed container %s (exit code %d)", c.backoff, c.spec.Name, c.exitCode)
	}
	c.backoff = min(max(2*c.backoff, b.Initial), b.Max)
}

// kill stops c (for a failed liveness or startup probe) and records its
// end.
func (pc *podController) kill(ctx context.Context, st *podState, pod *Pod, c *ctrState, why string, now time.Time) {
	pc.m.recordEvent(pod, EventNormal, "Killing", "container %s %s, will be restarted", c.spec.Name, why)
	if err := pc.rt.StopContainer(ctx, c.id, st.grace()); err != nil {
		pc.m.log.Warn("stop container", "pod", st.name, "container", c.spec.Name, "error", err)
	}
	info, err := pc.rt.ContainerStatus(ctx, c.id)
	if err != nil || info.Running {
		info = ContainerInfo{ExitCode: 137}
	}
	pc.exited(ctx, st, pod, c, info, true, now)
}

func (st *podState) grace() time.Duration {
	if st.spec.TerminationGracePeriod > 0 {
		return st.spec.TerminationGracePeriod
	}
	return defaultGrace
}

// collectGarbage retries removing exited containers.
func (pc *podController) collectGarbage(ctx context.Context, st *podState) {
	st.garbage = slices.DeleteFunc(st.garbage, func(id string) bool {
		return pc.rt.RemoveContainer(ctx, id) == nil
	})
}

// teardown stops and removes every container of a pod (all at once,
// each with the pod's grace period), its sandbox and its volumes.
// stopping says whether the pod is being deleted (events are recorded).
func (pc *podController) teardown(ctx context.Context, st *podState, stopping bool) error {
	var wg sync.WaitGroup
	errs := make([]error, len(st.ctrs))
	for i, c := range st.ctrs {
		if c.id == "" {
			continue
		}
		if stopping {
			pc.m.recordEvent(&Pod{ObjectMeta: ObjectMeta{Name: st.name, Namespace: st.namespace}}, EventNormal, "Killing", "stopping container %s", c.spec.Name)
		}
		id := c.id
		wg.Go(func() { // each goroutine touches its own c only
			if c.running {
				if err := pc.rt.StopContainer(ctx, id, st.grace()); err != nil {
					pc.m.log.Warn("stop container", "pod", st.name, "container", c.spec.Name, "error", err)
				}
			}
			if stopping && !c.finished {
				// Keep how it ended, for the status of a pod that stays
				// after its deletion (see awaitJob).
				info, err := pc.rt.ContainerStatus(ctx, id)
				if err != nil || info.Running {
					info = ContainerInfo{ExitCode: 137}
				}
				c.running, c.finished = false, true
				c.finishedAt, c.exitCode, c.termMessage = pc.m.clock.Now(), info.ExitCode, ""
				c.termReason = terminationReason(info)
			}
			errs[i] = pc.rt.RemoveContainer(ctx, id)
		})
	}
	wg.Wait()
	for i, c := range st.ctrs {
		if c.id != "" && errs[i] == nil {
			c.id, c.running = "", false
		}
		if stopping && !c.finished && c.id == "" {
			// Not running when the pod was deleted (waiting to start or
			// to restart): it ends with its last exit, or, never started,
			// as the kubelet reports a container it did not find.
			c.finished = true
			if !c.everStarted {
				c.finishedAt, c.exitCode = pc.m.clock.Now(), 137
				c.termReason, c.termMessage = reasonStatusUnknown, "the container was not running when the pod was deleted"
			}
		}
	}
	pc.collectGarbage(ctx, st)
	err := errors.Join(errs...)
	if len(st.garbage) > 0 {
		err = errors.Join(err, fmt.Errorf("%d exited containers could not be removed", len(st.garbage)))
	}
	if err != nil {
		return fmt.Errorf("tear down pod %s: %w", st.name, err)
	}
	if st.sandbox != "" {
		if err := pc.rt.RemoveSandbox(ctx, st.sandbox); err != nil {
			return fmt.Errorf("tear down pod %s: %w", st.name, err)
		}
		st.sandbox = ""
	}
	if err := pc.removeVolumes(st); err != nil {
		return fmt.Errorf("tear down pod %s: %w", st.name, err)
	}
	return nil
}

// closeAll tears down every pod, for Manager.Close.
func (pc *podController) closeAll(ctx context.Context) error {
	pc.mu.Lock()
	pc.closed = true
	pods := make([]*podState, 0, len(pc.pods))
	for _, st := range pc.pods {
		pods = append(pods, st)
	}
	pc.mu.Unlock()
	// Let the teardowns of deleted pods finish, within ctx: then they are
	// cut short, and the teardowns below finish the job.
	if pc.waitFinalizing(ctx) != nil {
		pc.bgCancel()
		pc.waitFinalizing(context.Background())
	}
	defer pc.bgCancel()
	errs := make([]error, len(pods))
	var wg sync.WaitGroup
	for i, st := range pods {
		wg.Go(func() {
			st.mu.Lock()
			defer st.mu.Unlock()
			st.closed = true
			errs[i] = pc.teardown(ctx, st, false)
		})
	}
	wg.Wait()
	// The pods being deleted are finalized: their teardown is done (or
	// they never ran here), so they are removed from the store. One whose
	// teardown failed stays, for a later Manager on the same store.
	failed := map[string]bool{}
	for i, st := range pods {
		if errs[i] != nil {
			failed[st.uid] = true
		}
	}
	stored, err := List[*Pod](ctx, pc.m.store, NamespaceAll, nil)
	if err != nil {
		errs = append(errs, err)
	}
	for _, p := range stored {
		meta := p.Meta()
		if meta.DeletionTime == nil || failed[meta.UID] {
			continue
		}
		// One whose Job has yet to count it stays for the next Manager.
		wait, err := pc.awaitJob(ctx, p)
		pc.mu.Lock()
		delete(pc.awaiting, keyOf(p))
		pc.mu.Unlock()
		if err != nil || wait {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, pc.removeObject(ctx, meta.Namespace, meta.Name, meta.UID))
	}
	return errors.Join(errs...)
}

// status computes a pod's status from what the controller knows.
func (pc *podController) status(st *podState, pod *Pod) PodStatus {
	now := pc.m.clock.Now()
	s := PodStatus{
		ObservedGeneration: pod.Generation,
		StartTime:          st.start,
		Reason:             st.reason,
		Message:            st.message,
	}
	if st.sandbox != "" {
		for _, ip := range st.ips {
			s.PodIPs = append(s.PodIPs, PodIP{IP: ip.String()})
		}
		if len(s.PodIPs) > 0 {
			s.PodIP = s.PodIPs[0].IP
		}
	}
	allFinished, allOK, pending, ready := true, true, false, true
	for _, c := range st.ctrs {
		cs := ContainerStatus{
			Name:         c.spec.Name,
			Image:        c.spec.Image,
			ID:           c.lastID,
			RestartCount: c.restartCount,
			ExitCode:     c.exitCode,
			FinishedAt:   c.finishedAt,
			StartedAt:    c.startedAt,
		}
		switch {
		case c.running:
			cs.State = ContainerRunning
			cs.Started = c.started
			cs.Ready = c.ready
			cs.ExitCode, cs.FinishedAt = 0, time.Time{}
		case c.finished:
			cs.State = ContainerTerminated
			cs.Reason, cs.Message = c.termReason, c.termMessage
		default:
			cs.State = ContainerWaiting
			switch {
			case c.waitReason != "":
				cs.Reason, cs.Message = c.waitReason, c.waitMessage
			case c.everStarted && c.restartAt.After(now):
				cs.Reason = reasonCrashLoop
				cs.Message = fmt.Sprintf("back-off %v restarting failed container %s", c.restartAt.Sub(c.finishedAt).Round(time.Second), c.spec.Name)
			default:
				cs.Reason = reasonCreating
			}
		}
		if !c.finished {
			allFinished = false
		} else if c.exitCode != 0 || c.termReason == reasonOOMKilled {
			allOK = false
		}
		if !c.everStarted {
			pending = true
		}
		if !cs.Ready {
			ready = false
		}
		s.Containers = append(s.Containers, cs)
	}
	switch {
	case allFinished && allOK:
		s.Phase = PodSucceeded
	case allFinished:
		s.Phase = PodFailed
	case pending:
		s.Phase = PodPending
	default:
		s.Phase = PodRunning
	}
	s.Ready = ready && s.Phase == PodRunning
	if s.Ready {
		if st.readySince.IsZero() {
			st.readySince = now
		}
		s.ReadySince = st.readySince
	} else {
		st.readySince = time.Time{}
	}
	return s
}

// requeueAll reconciles again every pod the controller runs.
func (pc *podController) requeueAll() {
	if pc.ctrl == nil {
		return
	}
	pc.mu.Lock()
	keys := make([]string, 0, len(pc.pods))
	for k := range pc.pods {
		keys = append(keys, k)
	}
	pc.mu.Unlock()
	for _, k := range keys {
		pc.ctrl.Add(k)
	}
}
