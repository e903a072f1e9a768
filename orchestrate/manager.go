package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/berthlabs/berth/internal/mountinfo"
	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Options configures a Manager. Only Store is required; the zero values
// of the others mean no runtime (pods are stored but never run), the
// real clock, no logs, 4 workers, a temporary state directory and the
// kubelet's crash-loop backoff.
type Options struct {
	// Store holds the declared objects: memstore.New() for a store in
	// memory. It is required (NewManager fails without one): package
	// orchestrate holds only the interface, and its implementations,
	// which import it, cannot be its default.
	Store Store
	// Runtime runs the pods' containers. Nil means pods are never
	// started and their status is never written, which suits unit tests
	// of the workload controllers.
	Runtime Runtime
	// Clock is the time source of every controller, probe and backoff;
	// nil means the real clock. Tests pass a reconcile.FakeClock.
	Clock reconcile.Clock
	// Logger receives the controllers' logs; nil discards them.
	Logger *slog.Logger
	// Workers is how many objects of one kind are reconciled at once;
	// 0 means 4.
	Workers int
	// StateDir is the host directory under which pods' volumes and logs
	// are kept. Empty means a new directory in os.TempDir(), removed by
	// Close; a given directory is kept, and only what the Manager made
	// in it is removed.
	StateDir string
	// CrashLoop tunes the crash-loop backoff of restarting containers;
	// its zero fields take the kubelet's values.
	CrashLoop CrashLoopBackoff
	// ServiceCIDR is the IPv4 range Services' ClusterIPs are allocated
	// from; zero means DefaultServiceCIDR.
	ServiceCIDR netip.Prefix
	// ServiceDrainDelay is how long a deleted pod that was a Service
	// backend keeps running after it was taken out of its Services'
	// proxy entries, before its containers get the stop signal, so that
	// connections made just before finish: zero means
	// DefaultServiceDrainDelay, a negative value none. It is capped at
	// the pod's grace period, and waited in real time (the data path's,
	// not the Clock's), as the containers' stop is.
	ServiceDrainDelay time.Duration

	// NodeName, when set, makes the Manager a node of a cluster of
	// Managers sharing one Store (etcdstore): it registers a Node of that
	// name (refused, with ErrExists, while another live Manager holds
	// it), renews the node's Lease in NamespaceNodeLease every quarter of
	// NodeLeaseDuration, and runs only the pods bound to it
	// (PodSpec.NodeName). The Managers elect a leader (a Lease in
	// NamespaceSystem) that alone runs the workload controllers, the
	// garbage collector, the scheduler and the node lifecycle
	// controller. Run is needed: RunUntilIdle does not join a cluster.
	NodeName string
	// NodeLabels are the Node's labels (nodeSelector matches them);
	// kubernetes.io/hostname is NodeName.
	NodeLabels map[string]string
	// NodeAllocatable is what pods may request of the node; zero fields
	// are the machine's CPUs, its memory and DefaultNodePods.
	NodeAllocatable NodeResources
	// NodeLeaseDuration is how long a node's Lease holds
	// (DefaultNodeLeaseDuration when 0): a node that has not renewed it
	// for that long is marked Ready Unknown.
	NodeLeaseDuration time.Duration
	// NodeLostGrace is how long a node stays Ready Unknown before its
	// pods are marked failed (ReasonNodeLost) and replaced elsewhere
	// (DefaultNodeLostGrace when 0).
	NodeLostGrace time.Duration
	// LeaderLeaseDuration is how long the leader's Lease holds
	// (DefaultLeaderLeaseDuration when 0): when the leader dies another
	// Manager takes over within about that long.
	LeaderLeaseDuration time.Duration
	// NodeIP is the node's address, where the other nodes reach it (the
	// kubelet's --node-ip): the Node's InternalIP. With a Runtime that is
	// a NodeNetwork, the pods of every node reach each other's by their
	// addresses through it, and so do Services and NodePorts; without
	// one, pods reach only the pods of their own node.
	NodeIP netip.Addr
}

// DefaultServiceDrainDelay is Options.ServiceDrainDelay when zero.
const DefaultServiceDrainDelay = 100 * time.Millisecond

// CrashLoopBackoff is how long a container that keeps exiting waits
// before it is restarted: its first restart is immediate, the next waits
// Initial, and each further one twice as long as the one before, up to
// Max; a container that ran for Reset before it exited starts over.
type CrashLoopBackoff struct {
	Initial time.Duration // 0 means 10 s
	Max     time.Duration // 0 means 5 minutes
	Reset   time.Duration // 0 means 10 minutes
}

func (b CrashLoopBackoff) withDefaults() CrashLoopBackoff {
	if b.Initial <= 0 {
		b.Initial = crashBackoffInitial
	}
	if b.Max <= 0 {
		b.Max = crashBackoffMax
	}
	if b.Reset <= 0 {
		b.Reset = crashBackoffReset
	}
	b.Max = max(b.Max, b.Initial)
	return b
}

// Manager keeps the objects of a Store converged: it runs one
// reconcile.Controller per kind (Pod, ReplicaSet, Deployment, Job), fed
// by one watch of the store, records events, and deletes the dependents
// of deleted objects (owner references). Apply, Get, List and Delete are
// the way in for callers; Run runs the controllers; Close stops and
// removes every container the Manager started.
type Manager struct {
	store    Store
	runtime  Runtime
	clock    reconcile.Clock
	drain    time.Duration // Options.ServiceDrainDelay, with its default
	log      *slog.Logger
	workers  int
	stateDir string
	ownState bool // stateDir was made by NewManager: Close removes it
	events   *eventRecorder
	crash    CrashLoopBackoff

	services    *serviceController
	cluster     *cluster // nil unless Options.NodeName is set
	serviceCIDR netip.Prefix

	kinds     map[string]*kindController
	kindOrder []string
	gc        *reconcile.Controller[gcKey]
	// gcRefs is the controller UID of each object ("Kind/name") that has
	// one, as last dispatched; only the dispatching goroutine uses it.
	gcRefs map[string]string
	pods   *podController
	// watched is what the store watch has shown, for keysFor (only the
	// dispatching goroutine writes it).
	watched *watchState
	// watchSynced is set once the watch's first listing is dispatched:
	// watched holds every object from then on.
	watchSynced atomic.Bool

	// The watch that feeds the controllers, started by the first Run or
	// RunUntilIdle and stopped by Close.
	watchOnce sync.Once
	// watchRestarts counts the store watch's restarts, lastWatchErr
	// is why it broke last.
	watchRestarts atomic.Int64
	lastWatchErr  atomic.Pointer[error]
	watchErr      error
	watchCtx      context.Context
	watchCancel   context.CancelFunc
	watchDone     chan struct{}
	dispatched    atomic.Uint64 // ResourceVersion of the last event handed out

	mu      sync.Mutex
	running bool
	closed  bool
}

// kindController is the controller of one kind.
type kindController struct {
	kind     string
	ctrl     *reconcile.Controller[string]
	keysFor  func(ev WatchEvent) []string
	validate func(ctx context.Context, obj Object) error
}

// NewManager returns a Manager configured by opts, with the Pod
// controller and the built-in workload controllers registered. Nothing
// runs until Run (or RunUntilIdle) is called.
func NewManager(opts Options) (*Manager, error) {
	m := &Manager{
		store:   opts.Store,
		runtime: opts.Runtime,
		clock:   opts.Clock,
		log:     opts.Logger,
		workers: opts.Workers,
		events:  newEventRecorder(0),
		crash:   opts.CrashLoop.withDefaults(),
		drain:   opts.ServiceDrainDelay,
		kinds:   map[string]*kindController{},
		gcRefs:  map[string]string{},
		watched: newWatchState(),
	}
	if m.store == nil {
		return nil, errors.New("orchestrate: new manager: Options.Store is nil: pass a Store, such as memstore.New()")
	}
	if m.clock == nil {
		m.clock = reconcile.RealClock()
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.workers <= 0 {
		m.workers = 4
	}
	if m.drain == 0 {
		m.drain = DefaultServiceDrainDelay
	}
	if opts.StateDir != "" {
		m.stateDir = opts.StateDir
		if err := os.MkdirAll(m.stateDir, 0o700); err != nil {
			return nil, fmt.Errorf("orchestrate: state directory: %w", err)
		}
	} else {
		dir, err := os.MkdirTemp("", "berth-orchestrate-")
		if err != nil {
			return nil, fmt.Errorf("orchestrate: state directory: %w", err)
		}
		m.stateDir, m.ownState = dir, true
	}
	c, err := newCluster(opts)
	if err != nil {
		return nil, err
	}
	m.cluster = c
	m.watchCtx, m.watchCancel = context.WithCancel(context.Background())
	m.watchDone = make(chan struct{})
	collect := m.collect
	if m.cluster != nil {
		collect = func(ctx context.Context, k gcKey) (reconcile.Result, error) {
			if !m.IsLeader() {
				return reconcile.Result{}, nil // the leader's resync brings it back
			}
			return m.collect(ctx, k)
		}
	}
	m.gc = reconcile.New[gcKey](reconcile.Func[gcKey](collect), reconcile.Options[gcKey]{
		Name: "gc", Workers: 1, Clock: m.clock, Logger: m.log,
	})
	// The controllers, in the order each watch event is handed to them.
	registerPods(m)
	registerConfigKinds(m)
	registerNamespaces(m)
	registerDeployment(m)
	registerJob(m)
	registerReplicaSet(m)
	m.serviceCIDR = opts.ServiceCIDR
	if !m.serviceCIDR.IsValid() {
		m.serviceCIDR = DefaultServiceCIDR
	}
	if !m.serviceCIDR.Addr().Is4() || m.serviceCIDR.Bits() > 28 || m.serviceCIDR != m.serviceCIDR.Masked() {
		return nil, fmt.Errorf("orchestrate: new manager: Options.ServiceCIDR %s: want an IPv4 range of /28 or more, host bits clear", m.serviceCIDR)
	}
	registerServices(m, m.serviceCIDR)
	registerNodeRoutes(m)
	m.register(KindLease, nil, nil, nil)
	if m.cluster != nil {
		registerScheduler(m)
	}
	return m, nil
}

// leaderOnly runs a cluster-wide controller's reconciles only on the
// leader; the others drop their keys (a new leader lists everything
// again).
type leaderOnly struct {
	m *Manager
	r reconcile.Reconciler[string]
}

func (l leaderOnly) Reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	if !l.m.IsLeader() {
		return reconcile.Result{}, nil
	}
	return l.r.Reconcile(ctx, key)
}

// register adds the controller of a kind: r reconciles objects of the
// kind by name; keysFor maps every change the store's watch sees (of any
// kind) to names of this kind to reconcile (nil: none); validate, if not
// nil, checks objects of the kind in Apply.
func (m *Manager) register(kind string, r reconcile.Reconciler[string], keysFor func(ev WatchEvent) []string, validate func(ctx context.Context, obj Object) error) {
	kc := &kindController{kind: kind, keysFor: keysFor, validate: validate}
	// Pods, the routes to other nodes' pods and the Services' data path
	// are every node's own; the rest is the leader's.
	if r != nil && m.cluster != nil && kind != KindPod && kind != KindNode && kind != KindService {
		r = leaderOnly{m, r}
	}
	if r != nil {
		kc.ctrl = reconcile.New[string](r, reconcile.Options[string]{
			Name:    kind,
			Workers: m.workers,
			Clock:   m.clock,
			Logger:  m.log,
			Backoff: reconcile.Backoff{Base: 100 * time.Millisecond, Max: 30 * time.Second},
		})
	}
	if _, ok := m.kinds[kind]; !ok {
		m.kindOrder = append(m.kindOrder, kind)
	}
	m.kinds[kind] = kc
}

// controller returns the reconcile controller of kind, or nil.
func (m *Manager) controller(kind string) *reconcile.Controller[string] {
	if kc := m.kinds[kind]; kc != nil {
		return kc.ctrl
	}
	return nil
}

// Store returns the Manager's store. Writing to it directly skips the
// validation Apply does.
func (m *Manager) Store() Store { return m.store }

// StateDir returns the host directory that holds the pods' volumes and
// logs.
func (m *Manager) StateDir() string { return m.stateDir }

// checkObject refuses what no store can hold.
func checkObject(obj Object) error {
	if obj == nil || reflect.ValueOf(obj).IsNil() {
		return fmt.Errorf("nil object: %w", ErrInvalid)
	}
	if obj.Meta().Name == "" {
		return fmt.Errorf("%s: metadata.name: empty: %w", obj.Kind(), ErrInvalid)
	}
	return nil
}

// Apply creates obj, or, when an object of its kind, namespace and name
// exists, replaces that object's labels, annotations, owner references
// and spec (its status is kept; Generation is incremented when the spec
// changed). obj is checked first, as Validate does; an invalid one gives
// an error wrapping ErrInvalid that names the field, and nothing
// changes. An empty namespace is NamespaceDefault; any other must be a
// Namespace that exists, and a new object cannot be created in one being
// deleted. A non-zero ResourceVersion in obj makes the update
// conditional (ErrConflict). A Pod's spec cannot change once created:
// delete and recreate the pod. Apply returns the object as stored.
func (m *Manager) Apply(ctx context.Context, obj Object) (Object, error) {
	if err := m.check(ctx, obj, nil); err != nil {
		return nil, err
	}
	return m.write(ctx, obj)
}

// ApplyAll applies objs as one change, as kubectl apply -f does with a
// file of several objects: every object is checked first, as Apply
// checks it (a namespace may be one of objs), and if one is refused
// nothing is written. Then the Namespaces among objs are applied, then
// the others in order. A store error midway (a conflict, a lost
// connection) leaves the writes before it: a Store has no transactions.
// ApplyAll returns the objects as stored, in the order of objs.
func (m *Manager) ApplyAll(ctx context.Context, objs ...Object) ([]Object, error) {
	pending := map[string]bool{}
	for _, obj := range objs {
		if obj != nil && !reflect.ValueOf(obj).IsNil() && obj.Kind() == KindNamespace {
			pending[obj.Meta().Name] = true
		}
	}
	for i, obj := range objs {
		if err := m.check(ctx, obj, pending); err != nil {
			return nil, fmt.Errorf("object %d: %w", i, err)
		}
	}
	out := make([]Object, len(objs))
	for _, nsFirst := range []bool{true, false} {
		for i, obj := range objs {
			if (obj.Kind() == KindNamespace) != nsFirst {
				continue
			}
			stored, err := m.write(ctx, obj)
			if err != nil {
				return nil, fmt.Errorf("object %d: %w", i, err)
			}
			out[i] = stored
		}
	}
	return out, nil
}

// Validate reports whether Apply would accept obj, without writing: its
// metadata and spec are valid for its kind, its namespace exists (and,
// for a new object, is not being deleted), and, for a Pod that exists,
// its spec is unchanged. The error wraps ErrInvalid and names the field.
func (m *Manager) Validate(ctx context.Context, obj Object) error {
	return m.check(ctx, obj, nil)
}

// check is Validate; the namespaces in pending count as existing.
func (m *Manager) check(ctx context.Context, obj Object, pending map[string]bool) error {
	if err := checkObject(obj); err != nil {
		return err
	}
	kind, meta := obj.Kind(), obj.Meta()
	ns := NamespaceOf(kind, meta.Namespace)
	what := kind + " " + objectKey(ns, meta.Name)
	kc := m.kinds[kind]
	if kc == nil {
		return fmt.Errorf("apply %s: unknown kind: %w", what, ErrInvalid)
	}
	err := validateName("metadata.name", meta.Name)
	if err == nil && ClusterScoped(kind) && meta.Namespace != "" {
		err = invalidf("metadata.namespace", "%s is cluster-scoped: it has no namespace (%q given)", kind, meta.Namespace)
	}
	if err == nil && !ClusterScoped(kind) {
		err = validateName("metadata.namespace", ns)
	}
	if err == nil {
		err = validateLabels("metadata.labels", meta.Labels)
	}
	if err == nil {
		err = validateAnnotations("metadata.annotations", meta.Annotations)
	}
	if err == nil && kc.validate != nil {
		err = kc.validate(ctx, obj)
	}
	if err != nil {
		return fmt.Errorf("apply %s: %w", what, err)
	}
	cur, err := m.store.Get(ctx, kind, ns, meta.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		cur = nil
	case err != nil:
		return fmt.Errorf("apply %s: %w", what, err)
	}
	if !ClusterScoped(kind) && ns != NamespaceDefault && !pending[ns] {
		n, err := m.store.Get(ctx, KindNamespace, "", ns)
		switch {
		case errors.Is(err, ErrNotFound):
			return fmt.Errorf("apply %s: %w", what, invalidf("metadata.namespace", "namespace %q does not exist", ns))
		case err != nil:
			return fmt.Errorf("apply %s: read namespace %s: %w", what, ns, err)
		case cur == nil && n.Meta().DeletionTime != nil:
			return fmt.Errorf("apply %s: %w", what, invalidf("metadata.namespace", "namespace %q is being deleted", ns))
		}
	}
	if p, ok := obj.(*Pod); ok && cur != nil && !semanticEqual(p.Spec, cur.(*Pod).Spec) {
		if cur.Meta().DeletionTime != nil {
			return fmt.Errorf("apply %s: %w", what, invalidf("spec", "the pod is being deleted; wait until it is gone and create it again"))
		}
		return fmt.Errorf("apply %s: %w", what, invalidf("spec", "a pod's spec cannot be changed; delete the pod and create it again"))
	}
	return nil
}

// write creates or updates obj, checked already, as Apply says.
func (m *Manager) write(ctx context.Context, obj Object) (Object, error) {
	meta := obj.Meta()
	ns := NamespaceOf(obj.Kind(), meta.Namespace)
	for {
		cur, err := m.store.Get(ctx, obj.Kind(), ns, meta.Name)
		if errors.Is(err, ErrNotFound) {
			created, err := m.store.Create(ctx, obj)
			if errors.Is(err, ErrExists) {
				continue // created meanwhile: update it
			}
			return created, err
		}
		if err != nil {
			return nil, err
		}
		if p, ok := obj.(*Pod); ok && !semanticEqual(p.Spec, cur.(*Pod).Spec) {
			// Changed since check: refuse as check would have.
			return nil, fmt.Errorf("apply %s %s: %w", obj.Kind(), objectKey(ns, meta.Name),
				invalidf("spec", "a pod's spec cannot be changed; delete the pod and create it again"))
		}
		next := obj.DeepCopy()
		if p, ok := next.(*Pod); ok {
			p.Spec = cur.(*Pod).Spec // the same, but nil and empty may differ
		}
		nm := next.Meta()
		nm.UID = cur.Meta().UID
		// Only Delete starts a deletion; Apply neither starts nor undoes one.
		nm.DeletionTime = cur.Meta().DeletionTime
		if nm.ResourceVersion == 0 {
			nm.ResourceVersion = cur.Meta().ResourceVersion
		}
		updated, err := m.store.Update(ctx, next)
		if errors.Is(err, ErrConflict) && meta.ResourceVersion == 0 {
			continue // changed between Get and Update: read it again
		}
		return updated, err
	}
}

// Get returns the object of a kind, namespace ("" is NamespaceDefault;
// ignored for a cluster-scoped kind) and name, or an error wrapping
// ErrNotFound.
func (m *Manager) Get(ctx context.Context, kind, namespace, name string) (Object, error) {
	return m.store.Get(ctx, kind, namespace, name)
}

// List returns the objects of a kind in namespace (NamespaceAll: every
// namespace) whose labels match sel (nil: all), sorted by namespace and
// name.
func (m *Manager) List(ctx context.Context, kind, namespace string, sel *LabelSelector) ([]Object, error) {
	return m.store.List(ctx, kind, namespace, sel)
}

// Delete deletes an object (namespace "" is NamespaceDefault; ignored
// for a cluster-scoped kind). The objects it controls (through an
// OwnerReference with Controller set) are deleted after it, in the
// background, and theirs in turn.
//
// Deleting a Pod is graceful, as in Kubernetes: Delete sets the pod's
// DeletionTime and returns; the Pod controller then stops its containers
// (each with the pod's grace period), removes them and the sandbox, and
// only then removes the object from the store (a pod of a running Job
// once the Job has counted it, see JobStatus). Deleting a pod that is
// being deleted already does nothing. Without a runtime (Options.Runtime
// nil) pods never run, and a deleted pod is removed at once.
//
// Deleting a Namespace is graceful too: Delete sets its DeletionTime,
// and the Namespace controller marks it Terminating, deletes every
// object in it (pods gracefully) and then the Namespace.
// NamespaceDefault cannot be deleted (ErrInvalid).
func (m *Manager) Delete(ctx context.Context, kind, namespace, name string) error {
	switch kind {
	case KindPod:
		return m.startPodDeletion(ctx, namespace, name)
	case KindNamespace:
		return m.startNamespaceDeletion(ctx, name)
	}
	return m.store.Delete(ctx, kind, namespace, name)
}

// startWatch starts, once, the store watch that feeds the controllers.
// When the watch breaks (a WatchError, or its channel closes while the
// Manager runs), it is started again from the last version seen, or
// from a fresh list when the store no longer holds the changes since
// (ErrExpired): then the objects deleted meanwhile are dispatched as
// deletions. Failing watches are retried after 100 ms, doubling to 5 s.
func (m *Manager) startWatch() error {
	m.watchOnce.Do(func() {
		ch, err := m.store.Watch(m.watchCtx, "", WatchOptions{SendInitial: true})
		if err != nil {
			m.watchErr = fmt.Errorf("orchestrate: watch store: %w", err)
			close(m.watchDone)
			return
		}
		go func() {
			defer close(m.watchDone)
			m.followWatch(ch)
		}()
	})
	return m.watchErr
}

// followWatch dispatches the events of ch, a watch with SendInitial,
// and starts it again whenever it breaks, until the Manager closes.
func (m *Manager) followWatch(ch <-chan WatchEvent) {
	// m.watched holds the last state of every object seen, also for
	// the deletions a list after a broken watch cannot show.
	known := m.watched
	listing := true             // ch begins with initial events
	seen := map[watchKey]bool{} // what the list being read holds
	wait := 100 * time.Millisecond
	for {
		var broke error
		for ev := range ch {
			if ev.Type == WatchError {
				broke = ev.Err
				continue
			}
			if ev.Type == WatchBookmark {
				if listing {
					for _, k := range known.keys() {
						if !seen[k] {
							obj := known.delete(k)
							m.dispatch(WatchEvent{Type: WatchDeleted, Object: obj, ResourceVersion: ev.ResourceVersion}, false)
						}
					}
					listing, seen = false, map[watchKey]bool{}
					m.watchSynced.Store(true)
				}
				m.observe(ev.ResourceVersion)
				continue
			}
			k := keyOfObject(ev.Object)
			if ev.Type == WatchDeleted {
				known.delete(k)
			} else {
				known.set(ev.Object)
			}
			if listing {
				seen[k] = true
			}
			m.dispatch(ev, !listing)
			wait = 100 * time.Millisecond
		}
		for {
			if m.watchCtx.Err() != nil {
				return
			}
			if broke == nil {
				broke = errors.New("the watch ended")
			}
			since := m.dispatched.Load()
			var err error
			if since == 0 || listing || errors.Is(broke, ErrExpired) {
				listing, seen = true, map[watchKey]bool{}
				ch, err = m.store.Watch(m.watchCtx, "", WatchOptions{SendInitial: true})
			} else {
				ch, err = m.store.Watch(m.watchCtx, "", WatchOptions{Since: since})
			}
			if err == nil {
				m.recordWatchRestart(broke)
				break
			}
			broke = err
			select {
			case <-m.watchCtx.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, 5*time.Second)
		}
	}
}

// recordWatchRestart counts a watch started again after it broke.
func (m *Manager) recordWatchRestart(why error) {
	m.watchRestarts.Add(1)
	m.lastWatchErr.Store(&why)
}

// WatchRestarts returns how many times the Manager's store watch broke
// and was started again, and why it broke last (nil if never).
func (m *Manager) WatchRestarts() (int64, error) {
	var err error
	if p := m.lastWatchErr.Load(); p != nil {
		err = *p
	}
	return m.watchRestarts.Load(), err
}

// dispatch hands one watch event to every controller's keysFor and to
// the garbage collector, and with observe records its version as seen
// (not for initial events, which come in name order).
func (m *Manager) dispatch(ev WatchEvent, observe bool) {
	for _, kind := range m.kindOrder {
		kc := m.kinds[kind]
		if kc.ctrl == nil || kc.keysFor == nil {
			continue
		}
		for _, k := range kc.keysFor(ev) {
			kc.ctrl.Add(k)
		}
	}
	for _, k := range m.gcKeysFor(ev) {
		m.gc.Add(k)
	}
	if observe {
		m.observe(ev.ResourceVersion)
	}
}

// observe records that writes up to rev have been dispatched.
func (m *Manager) observe(rev uint64) {
	for {
		cur := m.dispatched.Load()
		if rev <= cur || m.dispatched.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// waitDispatched waits until every write to the store so far has been
// dispatched; it returns the store's revision then.
func (m *Manager) waitDispatched(ctx context.Context) (uint64, error) {
	for {
		rev, err := m.store.Revision(ctx)
		if err != nil {
			return 0, fmt.Errorf("orchestrate: store revision: %w", err)
		}
		if m.dispatched.Load() >= rev {
			return rev, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-m.watchDone:
			return 0, errors.New("orchestrate: the manager is closed")
		case <-time.After(200 * time.Microsecond):
		}
	}
}

// Run runs every controller until ctx ends, then waits for the
// reconciles in flight to finish and returns nil. Pods keep running
// after Run returns; Close stops them. Run may be called once.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return errors.New("orchestrate: run: the manager is closed")
	}
	if m.running {
		m.mu.Unlock()
		return errors.New("orchestrate: run: already running")
	}
	m.running = true
	m.mu.Unlock()
	if m.cluster != nil {
		if err := m.joinCluster(ctx); err != nil {
			return err
		}
	}
	if err := m.startWatch(); err != nil {
		return err
	}
	var wg sync.WaitGroup
	if m.cluster != nil {
		wg.Go(func() { m.heartbeat(ctx) })
		wg.Go(func() { m.elect(ctx) })
		wg.Go(func() { m.nodeLifecycle(ctx) })
	}
	errs := make([]error, len(m.kindOrder)+1)
	for i, kind := range m.kindOrder {
		if c := m.kinds[kind].ctrl; c != nil {
			wg.Go(func() { errs[i] = c.Run(ctx) })
		}
	}
	wg.Go(func() { errs[len(errs)-1] = m.gc.Run(ctx) })
	wg.Wait()
	return errors.Join(errs...)
}

// RunUntilIdle runs every controller until none has work due at the
// clock's current time and every change to the store has been seen,
// then returns. It is for tests with a reconcile.FakeClock: step the
// clock, call RunUntilIdle, check the state. It fails once Run has
// been called.
func (m *Manager) RunUntilIdle(ctx context.Context) error {
	m.mu.Lock()
	closed, running := m.closed, m.running
	m.mu.Unlock()
	if closed || running {
		return errors.New("orchestrate: run until idle: the manager is closed or running")
	}
	if err := m.startWatch(); err != nil {
		return err
	}
	for range 10000 {
		rev, err := m.waitDispatched(ctx)
		if err != nil {
			return err
		}
		for _, kind := range m.kindOrder {
			if c := m.kinds[kind].ctrl; c != nil {
				if err := c.RunUntilIdle(ctx); err != nil {
					return err
				}
			}
		}
		if err := m.gc.RunUntilIdle(ctx); err != nil {
			return err
		}
		// Deleted pods' teardowns run in the background; each brings its
		// pod back to the controller when it ends.
		if err := m.pods.waitFinalizing(ctx); err != nil {
			return err
		}
		after, err := m.waitDispatched(ctx)
		if err != nil {
			return err
		}
		if after == rev && m.allIdle() {
			return nil
		}
	}
	return errors.New("orchestrate: run until idle: the controllers do not settle")
}

// allIdle reports whether no controller has a key due now.
func (m *Manager) allIdle() bool {
	for _, kind := range m.kindOrder {
		if c := m.kinds[kind].ctrl; c != nil && c.Queue().Len() > 0 {
			return false
		}
	}
	return m.gc.Queue().Len() == 0
}

// Close stops the store watch and then stops and removes every container
// and sandbox the Manager started, each container with its pod's grace
// period (bounded by ctx), removes the pods being deleted (DeletionTime
// set) whose teardown is done from the store, and removes the state
// directory (when the Manager made it; else what it made in it), unless
// a file system is still mounted there: then the error says so. Call it
// after Run has returned. Other objects of the store are left as they
// are.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.watchCancel()
	m.watchOnce.Do(func() { close(m.watchDone) })
	<-m.watchDone
	// Stop the queues' delay timers (Run stops them itself; RunUntilIdle
	// does not).
	for _, kind := range m.kindOrder {
		if c := m.kinds[kind].ctrl; c != nil {
			c.Queue().ShutDown()
		}
	}
	m.gc.Queue().ShutDown()
	err := m.pods.closeAll(ctx)
	dir := filepath.Join(m.stateDir, "pods")
	if m.ownState {
		dir = m.stateDir
	}
	// A pod whose teardown failed may still have a tmpfs mounted in its
	// directory: removing the tree would empty that file system (and
	// fail on the mount point). Leave the tree and say why.
	if mounts, merr := mountsUnder(dir); merr != nil {
		err = errors.Join(err, fmt.Errorf("orchestrate: state directory %s not removed: %w", dir, merr))
	} else if len(mounts) > 0 {
		err = errors.Join(err, fmt.Errorf("orchestrate: state directory %s not removed: still mounted: %s", dir, strings.Join(mounts, ", ")))
	} else if rerr := os.RemoveAll(dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return err
}

// mountsUnder returns the mount points at or under dir, from this mount
// namespace's table.
func mountsUnder(dir string) ([]string, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	} else if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	data, err := os.ReadFile(mountinfo.Path)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		mp := mountinfo.Unescape(f[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out, nil
}
