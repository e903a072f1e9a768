package orchestrate_test

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// proxyRuntime is the fake runtime with a ServiceProxy that records what
// the Service controller programs.
type proxyRuntime struct {
	*fakeruntime.Runtime
	mu       sync.Mutex
	services map[string]ProxyService
	dns      map[string][]netip.Addr
	cnames   map[string]string
}

func (p *proxyRuntime) SetService(ctx context.Context, s ProxyService) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.services[s.Name] = s
	return nil
}

func (p *proxyRuntime) RemoveService(ctx context.Context, name string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.services, name)
	return nil
}

func (p *proxyRuntime) SetDNS(name string, addrs []netip.Addr, cname string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(addrs) == 0 && cname == "" {
		delete(p.dns, name)
		delete(p.cnames, name)
		return
	}
	p.dns[name], p.cnames[name] = addrs, cname
}

func (p *proxyRuntime) backends(key string) []netip.AddrPort {
	p.mu.Lock()
	defer p.mu.Unlock()
	s, ok := p.services[key]
	if !ok || len(s.Ports) == 0 {
		return nil
	}
	return slices.Clone(s.Ports[0].Backends)
}

// Services of the same name in two namespaces: each has its own ClusterIP,
// DNS names and endpoints, selects only its namespace's pods, and gets
// its namespace's environment variables; deleting one leaves the other.
func TestServicesPerNamespace(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := reconcile.NewFakeClock(testEpoch)
	rt := &proxyRuntime{Runtime: fakeruntime.New(clock, "busybox"), services: map[string]ProxyService{}, dns: map[string][]netip.Addr{}, cnames: map[string]string{}}
	m, err := NewManager(Options{Store: memstore.New(), Runtime: rt, Clock: clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	apply := func(o Object) {
		t.Helper()
		if _, err := m.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	settle := func() {
		t.Helper()
		if err := m.RunUntilIdle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, ns := range []string{"a", "b"} {
		apply(&Namespace{ObjectMeta: ObjectMeta{Name: ns}})
	}
	settle()
	// Two pods labelled app=web in a, one in b.
	for _, key := range [][2]string{{"a", "web-1"}, {"a", "web-2"}, {"b", "web-1"}} {
		p := &Pod{ObjectMeta: ObjectMeta{Name: key[1], Namespace: key[0], Labels: map[string]string{"app": "web"}}}
		p.Spec.Containers = []Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1000"}, Ports: []ContainerPort{{Name: "http", ContainerPort: 8080}}}}
		apply(p)
	}
	for _, ns := range []string{"a", "b"} {
		apply(&Service{ObjectMeta: ObjectMeta{Name: "web", Namespace: ns}, Spec: ServiceSpec{
			Selector: map[string]string{"app": "web"}, Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: "http"}}}})
	}
	settle()
	clock.Step(time.Second)
	settle()

	sa, err := Get[*Service](ctx, m, "a", "web")
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Get[*Service](ctx, m, "b", "web")
	if err != nil {
		t.Fatal(err)
	}
	if sa.Spec.ClusterIP == "" || sa.Spec.ClusterIP == sb.Spec.ClusterIP {
		t.Fatalf("ClusterIPs %q and %q", sa.Spec.ClusterIP, sb.Spec.ClusterIP)
	}
	podIPs := func(ns string) []netip.AddrPort {
		pods, err := List[*Pod](ctx, m, ns, nil)
		if err != nil {
			t.Fatal(err)
		}
		var out []netip.AddrPort
		for _, p := range pods {
			if p.Status.PodIP == "" {
				t.Fatalf("pod %s/%s has no IP", ns, p.Name)
			}
			out = append(out, netip.AddrPortFrom(netip.MustParseAddr(p.Status.PodIP), 8080))
		}
		slices.SortFunc(out, netip.AddrPort.Compare)
		return out
	}
	for _, ns := range []string{"a", "b"} {
		if got, want := rt.backends(ns+"/web"), podIPs(ns); !slices.Equal(got, want) {
			t.Errorf("service %s/web backends %v, want its namespace's pods %v", ns, got, want)
		}
		eps, err := Get[*Endpoints](ctx, m, ns, "web")
		if err != nil {
			t.Fatalf("endpoints %s/web: %v", ns, err)
		}
		n := 0
		for _, ss := range eps.Subsets {
			n += len(ss.Addresses)
		}
		if n != len(podIPs(ns)) {
			t.Errorf("endpoints %s/web: %+v", ns, eps.Subsets)
		}
	}
	if got := rt.dns["web.a.svc.cluster.local"]; len(got) != 1 || got[0].String() != sa.Spec.ClusterIP {
		t.Errorf("web.a.svc.cluster.local: %v, want %s", got, sa.Spec.ClusterIP)
	}
	if got := rt.dns["web.b"]; len(got) != 1 || got[0].String() != sb.Spec.ClusterIP {
		t.Errorf("web.b: %v, want %s", got, sb.Spec.ClusterIP)
	}
	if env := m.ServiceEnv(ctx, "b"); !slices.Contains(env, "WEB_SERVICE_HOST="+sb.Spec.ClusterIP) || slices.Contains(env, "WEB_SERVICE_HOST="+sa.Spec.ClusterIP) {
		t.Errorf("namespace b's service variables: %v", env)
	}
	if got := DNSSearch("b"); got[0] != "b.svc.cluster.local" {
		t.Errorf("search path of namespace b: %v", got)
	}

	if err := m.Delete(ctx, KindService, "a", "web"); err != nil {
		t.Fatal(err)
	}
	settle()
	if _, ok := rt.services["a/web"]; ok {
		t.Error("a/web still proxied after its deletion")
	}
	if _, ok := rt.dns["web.a.svc.cluster.local"]; ok {
		t.Error("a/web's DNS name outlived it")
	}
	if got := rt.backends("b/web"); len(got) == 0 {
		t.Error("deleting a/web took b/web")
	}
}

// Apply refuses a NodePort or ClusterIP another Service has, naming the
// field and the other Service; one out of range too.
func TestServiceApplyRefusesTaken(t *testing.T) {
	ctx := context.Background()
	m, err := NewManager(Options{Store: memstore.New(), Runtime: fakeruntime.New(reconcile.NewFakeClock(testEpoch), "busybox"), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	np := func(name string, port int, ip string) *Service {
		return &Service{ObjectMeta: ObjectMeta{Name: name}, Spec: ServiceSpec{Type: ServiceTypeNodePort, ClusterIP: ip,
			Selector: map[string]string{"app": "x"}, Ports: []ServicePort{{Port: 80, NodePort: port}}}}
	}
	if _, err := m.Apply(ctx, np("first", 30080, "10.96.0.50")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		svc  *Service
		want string
	}{
		{np("second", 30080, ""), "spec.ports[0].nodePort: 30080 is service default/first's"},
		{np("third", 0, "10.96.0.50"), "spec.clusterIP: 10.96.0.50 is service default/first's"},
		{np("fourth", 29999, ""), "spec.ports[0].nodePort"},
	} {
		_, err := m.Apply(ctx, tc.svc)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want %q", tc.svc.Name, err, tc.want)
		}
	}
	// The Service itself may apply again with its own port.
	if _, err := m.Apply(ctx, np("first", 30080, "10.96.0.50")); err != nil {
		t.Errorf("re-apply of the same Service: %v", err)
	}
}

// stopRecorder is a proxyRuntime that records the Service's backends
// each time a container is stopped.
type stopRecorder struct {
	*proxyRuntime
	key     string
	atStops [][]netip.AddrPort
}

func (s *stopRecorder) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	b := s.backends(s.key)
	s.mu.Lock()
	s.atStops = append(s.atStops, b)
	s.mu.Unlock()
	return s.proxyRuntime.StopContainer(ctx, id, grace)
}

// A deleted pod's address leaves its Services' backends before its
// containers are stopped, and comes back for no reconcile meanwhile.
func TestServiceDrainsPodBeforeStop(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := reconcile.NewFakeClock(testEpoch)
	rt := &stopRecorder{key: "default/web", proxyRuntime: &proxyRuntime{Runtime: fakeruntime.New(clock, "busybox"),
		services: map[string]ProxyService{}, dns: map[string][]netip.Addr{}, cnames: map[string]string{}}}
	m, err := NewManager(Options{Store: memstore.New(), Runtime: rt, Clock: clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	settle := func() {
		t.Helper()
		if err := m.RunUntilIdle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"web-1", "web-2"} {
		p := &Pod{ObjectMeta: ObjectMeta{Name: n, Labels: map[string]string{"app": "web"}}}
		p.Spec.Containers = []Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1000"}, Ports: []ContainerPort{{Name: "http", ContainerPort: 8080}}}}
		if _, err := m.Apply(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Apply(ctx, &Service{ObjectMeta: ObjectMeta{Name: "web"}, Spec: ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: "http"}}}}); err != nil {
		t.Fatal(err)
	}
	settle()
	clock.Step(time.Second)
	settle()
	if b := rt.backends("default/web"); len(b) != 2 {
		t.Fatalf("backends %v, want two", b)
	}
	victim, err := Get[*Pod](ctx, m, NamespaceDefault, "web-1")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr(victim.Status.PodIP)
	if err := m.Delete(ctx, KindPod, NamespaceDefault, "web-1"); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		settle()
		clock.Step(time.Second)
	}
	settle()
	rt.mu.Lock()
	atStops := slices.Clone(rt.atStops)
	rt.mu.Unlock()
	if len(atStops) == 0 {
		t.Fatal("no container was stopped")
	}
	for _, b := range atStops {
		if len(b) != 1 || b[0].Addr() == ip {
			t.Fatalf("backends when web-1's container stopped: %v, want web-2's only", b)
		}
	}
	if b := rt.backends("default/web"); len(b) != 1 || b[0].Addr() == ip {
		t.Fatalf("backends after: %v", b)
	}
}

// A named targetPort that the selected pods do not have: no endpoints
// for it (as in Kubernetes), and a warning event naming the pods.
func TestServiceTargetPortNotFound(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := reconcile.NewFakeClock(testEpoch)
	m, err := NewManager(Options{Store: memstore.New(), Runtime: fakeruntime.New(clock, "busybox"), Clock: clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	p := &Pod{ObjectMeta: ObjectMeta{Name: "web-1", Labels: map[string]string{"app": "web"}}}
	p.Spec.Containers = []Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1000"}, Ports: []ContainerPort{{Name: "http", ContainerPort: 8080}}}}
	for _, o := range []Object{p, &Service{ObjectMeta: ObjectMeta{Name: "web"}, Spec: ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []ServicePort{{Name: "x", Port: 80, TargetPort: "metrics"}}}}} {
		if _, err := m.Apply(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		if err := m.RunUntilIdle(ctx); err != nil {
			t.Fatal(err)
		}
		clock.Step(time.Second)
	}
	eps, err := Get[*Endpoints](ctx, m, NamespaceDefault, "web")
	if err != nil {
		t.Fatal(err)
	}
	if len(eps.Subsets) != 0 {
		t.Errorf("endpoints of an unresolved targetPort: %+v", eps.Subsets)
	}
	evs := m.Events(EventFilter{Kind: KindService, Name: "web"})
	if !slices.ContainsFunc(evs, func(e Event) bool {
		return e.Reason == "TargetPortNotFound" && strings.Contains(e.Message, `"metrics"`) && strings.Contains(e.Message, "web-1")
	}) {
		t.Errorf("events: %+v", evs)
	}
}

// Apply gives a new Service its ClusterIP (and NodePorts) at once, as
// Kubernetes' API server does, so that pods started right after it get
// its variables; two Services applied before the controller runs get
// different ones.
func TestServiceAllocatedAtApply(t *testing.T) {
	ctx := context.Background()
	clock := reconcile.NewFakeClock(testEpoch)
	m, err := NewManager(Options{Store: memstore.New(), Runtime: fakeruntime.New(clock, "busybox"), Clock: clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(ctx)
	var ips []string
	for _, name := range []string{"one", "two"} {
		got, err := m.Apply(ctx, &Service{ObjectMeta: ObjectMeta{Name: name}, Spec: ServiceSpec{Type: ServiceTypeNodePort,
			Selector: map[string]string{"app": name}, Ports: []ServicePort{{Port: 80}}}})
		if err != nil {
			t.Fatal(err)
		}
		s := got.(*Service)
		if s.Spec.ClusterIP == "" || s.Spec.Ports[0].NodePort == 0 {
			t.Fatalf("%s as applied: %+v", name, s.Spec)
		}
		ips = append(ips, s.Spec.ClusterIP)
	}
	if ips[0] == ips[1] {
		t.Fatalf("both got %s", ips[0])
	}
	if env := m.ServiceEnv(ctx, NamespaceDefault); !slices.Contains(env, "ONE_SERVICE_HOST="+ips[0]) {
		t.Errorf("variables before the controller ran: %v", env)
	}
	// Applied again, the Service keeps its address.
	got, err := m.Apply(ctx, &Service{ObjectMeta: ObjectMeta{Name: "one"}, Spec: ServiceSpec{Type: ServiceTypeNodePort,
		Selector: map[string]string{"app": "one"}, Ports: []ServicePort{{Port: 80}}}})
	if err != nil || got.(*Service).Spec.ClusterIP != ips[0] {
		t.Fatalf("re-applied: %v %v", got, err)
	}
}
