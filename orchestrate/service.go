package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
)

// Kinds of the Service objects.
const (
	KindService   = "Service"
	KindEndpoints = "Endpoints"
)

// ClusterDomain is the DNS domain of Services: a Service web is
// web.default.svc.ClusterDomain.
const ClusterDomain = "cluster.local"

// DefaultServiceCIDR is the range ClusterIPs come from, Kubernetes'
// default.
var DefaultServiceCIDR = netip.MustParsePrefix("10.96.0.0/12")

// NodePort range, Kubernetes' default.
const (
	NodePortMin = 30000
	NodePortMax = 32767
)

// ClusterIPNone in spec.clusterIP makes a Service headless: no virtual
// IP, its name resolves to the ready pods' addresses.
const ClusterIPNone = "None"

// ServiceType says how a Service is reached.
type ServiceType string

// Service types, as in Kubernetes.
const (
	// ServiceTypeClusterIP: a virtual IP reached from pods and the host.
	ServiceTypeClusterIP ServiceType = "ClusterIP"
	// ServiceTypeNodePort: a ClusterIP, and each port also on the node
	// at its nodePort (with containerruntime: on 127.0.0.1, or the
	// addresses of the network Manager's Options.NodePortAddrs).
	ServiceTypeNodePort ServiceType = "NodePort"
	// ServiceTypeExternalName: the name is a DNS CNAME to
	// spec.externalName; no virtual IP.
	ServiceTypeExternalName ServiceType = "ExternalName"
)

// SessionAffinity of a Service.
type SessionAffinity string

// Session affinities, as in Kubernetes.
const (
	SessionAffinityNone     SessionAffinity = "None"
	SessionAffinityClientIP SessionAffinity = "ClientIP"
)

// Service is a stable name and virtual IP in front of the ready pods its
// selector picks, as in Kubernetes.
type Service struct {
	ObjectMeta `json:"metadata"`
	// Spec is the desired state; the Service controller fills in
	// ClusterIP and NodePorts when they are left empty.
	Spec ServiceSpec `json:"spec"`
}

// ServiceSpec is the desired state of a Service.
type ServiceSpec struct {
	// Type is ServiceTypeClusterIP (the default, when empty),
	// ServiceTypeNodePort or ServiceTypeExternalName.
	Type ServiceType `json:"type,omitempty"`
	// Selector picks the pods (by labels) whose addresses the Service's
	// Endpoints list. Nil: the Endpoints object of the Service's name is
	// the user's to write.
	Selector map[string]string `json:"selector,omitempty"`
	// Ports of the Service; at least one, except for ExternalName.
	Ports []ServicePort `json:"ports,omitempty"`
	// ClusterIP is the virtual IP: empty allocates one from the
	// Manager's service range (kept for the Service's life), an address
	// of the range asks for it, and ClusterIPNone makes the Service
	// headless.
	ClusterIP string `json:"clusterIP,omitempty"`
	// SessionAffinity is SessionAffinityNone (the default, when empty)
	// or SessionAffinityClientIP.
	SessionAffinity SessionAffinity `json:"sessionAffinity,omitempty"`
	// SessionAffinityTimeout is ClientIP affinity's timeout; 0 means 3
	// hours. (Kubernetes' sessionAffinityConfig.clientIP.timeoutSeconds.)
	SessionAffinityTimeout time.Duration `json:"sessionAffinityTimeout,omitempty"`
	// ExternalName is the DNS name of an ExternalName Service.
	ExternalName string `json:"externalName,omitempty"`
}

// ServicePort is one port of a Service.
type ServicePort struct {
	// Name of the port; required, and unique, when there are several.
	Name string `json:"name,omitempty"`
	// Protocol is ProtocolTCP (the default, when empty) or ProtocolUDP.
	Protocol Protocol `json:"protocol,omitempty"`
	// Port is the port on the ClusterIP, 1 to 65535.
	Port int `json:"port"`
	// TargetPort is the pods' port: a number, or the name of a
	// containerPort. Empty means Port.
	TargetPort string `json:"targetPort,omitempty"`
	// NodePort of a NodePort Service, NodePortMin to NodePortMax: 0
	// allocates a free one.
	NodePort int `json:"nodePort,omitempty"`
}

// Endpoints are the addresses behind a Service (a mix of Kubernetes'
// Endpoints and EndpointSlice): the Endpoints controller writes those of
// Services with a selector; the user writes those of Services without
// one.
type Endpoints struct {
	ObjectMeta `json:"metadata"`
	// Subsets group addresses that share their ports.
	Subsets []EndpointSubset `json:"subsets,omitempty"`
}

// EndpointSubset is a set of addresses with the same ports.
type EndpointSubset struct {
	// Addresses of the subset.
	Addresses []EndpointAddress `json:"addresses,omitempty"`
	// Ports of the subset: Name matches the Service port's name.
	Ports []EndpointPort `json:"ports,omitempty"`
}

// EndpointAddress is one backend's address and conditions
// (EndpointSlice's conditions).
type EndpointAddress struct {
	// IP is the backend's address.
	IP string `json:"ip"`
	// Ready: the backend gets new connections. A user-written address
	// with Ready false gets none.
	Ready bool `json:"ready"`
	// Serving: the pod passes its readiness checks, even if it is
	// terminating.
	Serving bool `json:"serving"`
	// Terminating: the pod is being deleted.
	Terminating bool `json:"terminating"`
	// TargetRef names the pod ("" for user-written addresses).
	TargetRef string `json:"targetRef,omitempty"`
}

// EndpointPort is one port of an EndpointSubset.
type EndpointPort struct {
	Name     string   `json:"name,omitempty"`     // the Service port's name
	Port     int      `json:"port"`               // the backends' port
	Protocol Protocol `json:"protocol,omitempty"` // ProtocolTCP when empty
}

// Kind returns KindService.
func (s *Service) Kind() string { return KindService }

// Meta returns the Service's metadata.
func (s *Service) Meta() *ObjectMeta { return &s.ObjectMeta }

// DeepCopy returns an independent copy of the Service.
func (s *Service) DeepCopy() Object { return deepCopy(s) }

// Kind returns KindEndpoints.
func (e *Endpoints) Kind() string { return KindEndpoints }

// Meta returns the Endpoints' metadata.
func (e *Endpoints) Meta() *ObjectMeta { return &e.ObjectMeta }

// DeepCopy returns an independent copy of the Endpoints.
func (e *Endpoints) DeepCopy() Object { return deepCopy(e) }

// ServiceProxy is the data path of Services: a Runtime that also
// implements it (containerruntime with a network does) gets the
// Services' virtual IPs, rules and DNS records from the Service
// controller. Without one, Services and Endpoints are kept as objects
// only.
type ServiceProxy interface {
	// SetService makes or replaces the virtual IP of a Service.
	SetService(ctx context.Context, svc ProxyService) error
	// RemoveService removes it; one that does not exist is not an error.
	RemoveService(ctx context.Context, name string) error
	// SetDNS makes the pods' DNS server answer name with addrs or,
	// instead, a CNAME; neither removes the name.
	SetDNS(name string, addrs []netip.Addr, cname string)
}

// ProxyService is a Service resolved for a ServiceProxy.
type ProxyService struct {
	Name             string // the Service's key, "namespace/name"
	ClusterIP        netip.Addr
	Ports            []ProxyPort
	ClientIPAffinity bool
	AffinityTimeout  time.Duration // 0: the proxy's default
}

// ProxyPort is one port of a ProxyService, with its ready backends.
type ProxyPort struct {
	Name     string
	Protocol Protocol
	Port     uint16
	NodePort uint16 // 0: none
	Backends []netip.AddrPort
}

func (p ServicePort) protocol() Protocol {
	if p.Protocol == "" {
		return ProtocolTCP
	}
	return p.Protocol
}

// serviceController allocates ClusterIPs and NodePorts, keeps Endpoints
// current and drives the ServiceProxy.
type serviceController struct {
	m     *Manager
	proxy ServiceProxy // nil: objects only
	cidr  netip.Prefix

	// progMu serializes the proxy's service writes (program, forget,
	// drain), so that a write computed from a stale store cannot give a
	// draining pod back its traffic.
	progMu sync.Mutex

	mu       sync.Mutex                // allocation, known and draining
	known    map[string]serviceRecords // what the proxy has, by Service name
	draining map[netip.Addr]int        // IPs of pods being deleted: no new connections
	// reserved are the allocations Apply made for Services it may not
	// have written yet, by key, so that two Applies at once never get the
	// same ClusterIP or NodePort.
	reserved map[string]ServiceSpec
}

// serviceRecords are the DNS names and proxy entry of one Service.
type serviceRecords struct {
	names []string
	proxy bool
	ps    ProxyService // what the proxy has, when proxy
	dns   string       // the records of names, as setDNS wrote them
}

func registerServices(m *Manager, cidr netip.Prefix) {
	sc := &serviceController{m: m, cidr: cidr, known: map[string]serviceRecords{}, draining: map[netip.Addr]int{}}
	sc.proxy, _ = m.runtime.(ServiceProxy)
	m.services = sc
	m.register(KindService, sc, sc.keysFor, m.validateService)
	m.register(KindEndpoints, nil, nil, nil)
}

// keysFor: a Service or its Endpoints changed, or a pod (any Service may
// select it).
func (sc *serviceController) keysFor(ev WatchEvent) []string {
	switch o := ev.Object.(type) {
	case *Service:
		return []string{keyOf(o)}
	case *Endpoints:
		return []string{keyOf(o)}
	case *Pod:
		var keys []string
		for _, s := range watched[*Service](sc.m.watched, NamespaceOf(KindPod, o.Namespace)) {
			if s.Spec.Selector != nil {
				keys = append(keys, keyOf(s))
			}
		}
		return keys
	}
	return nil
}

// serviceDNSName is a Service's name in the cluster's DNS zone.
func serviceDNSName(namespace, name string) string {
	return name + "." + namespace + ".svc." + ClusterDomain
}

// Reconcile brings one Service's allocation, Endpoints, proxy entry and
// DNS records in line with its object.
func (sc *serviceController) Reconcile(ctx context.Context, key string) (reconcile.Result, error) {
	ns, name := splitKey(key)
	svc, err := Get[*Service](ctx, sc.m.store, ns, name)
	if errors.Is(err, ErrNotFound) || err == nil && svc.DeletionTime != nil {
		return reconcile.Result{}, sc.forget(ctx, key)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if svc.Spec.ClusterIP != "" || svc.Spec.Type == ServiceTypeExternalName {
		sc.mu.Lock()
		delete(sc.reserved, key) // the store has what Apply reserved
		sc.mu.Unlock()
	}
	if sc.m.cluster != nil && !sc.m.IsLeader() {
		// Allocation and Endpoints are the leader's; every node
		// programs its own data path from what the leader stored.
		return reconcile.Result{}, sc.programStored(ctx, svc)
	}
	if svc, err = sc.allocate(ctx, svc); err != nil {
		sc.m.recordEvent(svc, EventWarning, "AllocationFailed", "%v", err)
		return reconcile.Result{}, err
	}
	var eps *Endpoints
	if svc.Spec.Selector != nil {
		eps, err = sc.syncEndpoints(ctx, svc)
	} else {
		eps, err = sc.storedEndpoints(ctx, ns, name)
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if sc.proxy == nil {
		return reconcile.Result{}, nil
	}
	return reconcile.Result{}, sc.program(ctx, svc, eps)
}

// programStored programs the proxy from the Service and Endpoints as
// the store has them, on a node that does not lead. A Service the
// leader has not given its ClusterIP yet waits for that update.
func (sc *serviceController) programStored(ctx context.Context, svc *Service) error {
	if sc.proxy == nil || svc.Spec.ClusterIP == "" && svc.Spec.Type != ServiceTypeExternalName {
		return nil
	}
	eps, err := sc.storedEndpoints(ctx, svc.Namespace, svc.Name)
	if err != nil {
		return err
	}
	return sc.program(ctx, svc, eps)
}

// storedEndpoints returns the Endpoints of a Service as stored (written
// by the leader, or by the user for a Service without a selector), or
// none.
func (sc *serviceController) storedEndpoints(ctx context.Context, namespace, name string) (*Endpoints, error) {
	eps, err := Get[*Endpoints](ctx, sc.m.store, namespace, name)
	if errors.Is(err, ErrNotFound) {
		return &Endpoints{}, nil
	}
	return eps, err
}

// forget removes what the proxy has of a Service that is gone; key is
// its queue key, "namespace/name", which is also its name in the proxy.
func (sc *serviceController) forget(ctx context.Context, key string) error {
	sc.progMu.Lock()
	defer sc.progMu.Unlock()
	sc.mu.Lock()
	rec, ok := sc.known[key]
	delete(sc.known, key)
	delete(sc.reserved, key)
	sc.mu.Unlock()
	if !ok || sc.proxy == nil {
		return nil
	}
	for _, n := range rec.names {
		sc.proxy.SetDNS(n, nil, "")
	}
	if rec.proxy {
		return sc.proxy.RemoveService(ctx, key)
	}
	return nil
}

// program writes the Service's proxy entry and DNS records.
func (sc *serviceController) program(ctx context.Context, svc *Service, eps *Endpoints) error {
	key := keyOf(svc)
	dnsName := serviceDNSName(svc.Namespace, svc.Name)
	// "svc.ns" too, for resolvers that do not search names with a dot
	// (busybox's, musl's with ndots below 2).
	short := svc.Name + "." + svc.Namespace
	rec := serviceRecords{names: []string{dnsName, short}}
	var err error
	locked := false // progMu
	sc.mu.Lock()
	prev := sc.known[key] // reconciles of one key are serialized: it stays
	sc.mu.Unlock()
	// setDNS writes the records of the names, unless they are those
	// written last: every change of the Endpoints reconciles the
	// Service, most of them leave its DNS records as they were.
	setDNS := func(addrs []netip.Addr, cname string) {
		rec.dns = fmt.Sprint(addrs, cname)
		if rec.dns == prev.dns && slices.Equal(rec.names, prev.names) {
			return
		}
		for _, n := range rec.names {
			sc.proxy.SetDNS(n, addrs, cname)
		}
	}
	switch {
	case svc.Spec.Type == ServiceTypeExternalName:
		setDNS(nil, svc.Spec.ExternalName)
	case svc.Spec.ClusterIP == ClusterIPNone:
		var addrs []netip.Addr
		for _, ss := range eps.Subsets {
			for _, a := range ss.Addresses {
				if ip, perr := netip.ParseAddr(a.IP); perr == nil && a.Ready && !slices.Contains(addrs, ip) {
					addrs = append(addrs, ip)
				}
			}
		}
		slices.SortFunc(addrs, netip.Addr.Compare)
		setDNS(addrs, "")
	default:
		vip, perr := netip.ParseAddr(svc.Spec.ClusterIP)
		if perr != nil {
			return fmt.Errorf("service %s: clusterIP %q: %w", svc.Name, svc.Spec.ClusterIP, perr)
		}
		ps := ProxyService{Name: key, ClusterIP: vip, ClientIPAffinity: svc.Spec.SessionAffinity == SessionAffinityClientIP,
			AffinityTimeout: svc.Spec.SessionAffinityTimeout}
		for _, p := range svc.Spec.Ports {
			pp := ProxyPort{Name: p.Name, Protocol: p.protocol(), Port: uint16(p.Port), NodePort: uint16(p.NodePort)}
			for _, ss := range eps.Subsets {
				i := slices.IndexFunc(ss.Ports, func(ep EndpointPort) bool { return ep.Name == p.Name })
				if i < 0 && len(ss.Ports) == 1 && len(svc.Spec.Ports) == 1 {
					i = 0
				}
				if i < 0 {
					continue
				}
				for _, a := range ss.Addresses {
					if ip, perr := netip.ParseAddr(a.IP); perr == nil && a.Ready {
						pp.Backends = append(pp.Backends, netip.AddrPortFrom(ip, uint16(ss.Ports[i].Port)))
					}
				}
			}
			slices.SortFunc(pp.Backends, netip.AddrPort.Compare)
			ps.Ports = append(ps.Ports, pp)
		}
		sc.progMu.Lock()
		defer sc.progMu.Unlock()
		locked = true
		sc.mu.Lock()
		ps = sc.withoutDraining(ps)
		cur := sc.known[key] // prev, but a drain may have changed its ps
		sc.mu.Unlock()
		// The proxy has it already (a pod got an address but is not
		// ready yet, say): no rewrite of the rules.
		if cur.proxy && reflect.DeepEqual(cur.ps, ps) {
			rec.proxy, rec.ps = true, ps
		} else if err = sc.proxy.SetService(ctx, ps); err == nil {
			rec.proxy, rec.ps = true, ps
		}
		setDNS([]netip.Addr{vip}, "")
	}
	if !locked {
		sc.progMu.Lock()
		defer sc.progMu.Unlock()
	}
	sc.mu.Lock()
	old := sc.known[key]
	sc.known[key] = rec
	sc.mu.Unlock()
	if old.proxy && !rec.proxy && err == nil {
		err = sc.proxy.RemoveService(ctx, key)
	}
	return err
}

// withoutDraining returns ps without the backends of pods being
// deleted; sc.mu is held.
func (sc *serviceController) withoutDraining(ps ProxyService) ProxyService {
	if len(sc.draining) == 0 {
		return ps
	}
	ports := make([]ProxyPort, len(ps.Ports))
	for i, p := range ps.Ports {
		p.Backends = slices.DeleteFunc(slices.Clone(p.Backends), func(b netip.AddrPort) bool { return sc.draining[b.Addr()] > 0 })
		ports[i] = p
	}
	ps.Ports = ports
	return ps
}

// drain stops new Service connections to ip, a pod's address, before
// the pod's containers are stopped: the Services whose proxy entries
// lead to it are written again without it, at once, rather than when
// the Endpoints controller gets to the pod's deletion (which would race
// with the stop: connections refused). Connections already made are
// left alone. It lasts until undrain. A failed write is logged: the
// Endpoints controller removes the backend anyway. It reports whether
// ip was a backend of a Service.
func (sc *serviceController) drain(ctx context.Context, ip netip.Addr) bool {
	if sc.proxy == nil {
		return false
	}
	sc.progMu.Lock()
	defer sc.progMu.Unlock()
	sc.mu.Lock()
	sc.draining[ip]++
	var todo []string
	for key, rec := range sc.known {
		if rec.proxy && slices.ContainsFunc(rec.ps.Ports, func(p ProxyPort) bool {
			return slices.ContainsFunc(p.Backends, func(b netip.AddrPort) bool { return b.Addr() == ip })
		}) {
			todo = append(todo, key)
		}
	}
	sc.mu.Unlock()
	if len(todo) == 0 {
		return false
	}
	slices.Sort(todo)
	for _, key := range todo {
		sc.mu.Lock()
		rec := sc.known[key]
		ps := sc.withoutDraining(rec.ps)
		sc.mu.Unlock()
		if err := sc.proxy.SetService(ctx, ps); err != nil {
			sc.m.log.Warn("drain a pod's service connections", "service", key, "ip", ip, "error", err)
			continue
		}
		sc.mu.Lock()
		if cur, ok := sc.known[key]; ok && cur.proxy {
			cur.ps = ps
			sc.known[key] = cur
		}
		sc.mu.Unlock()
	}
	return true
}

// undrain ends a drain of ip (its pod is gone, and the address may be
// another pod's next): every Service is reconciled again.
func (sc *serviceController) undrain(ip netip.Addr) {
	if sc.proxy == nil {
		return
	}
	sc.mu.Lock()
	if sc.draining[ip]--; sc.draining[ip] <= 0 {
		delete(sc.draining, ip)
	}
	keys := make([]string, 0, len(sc.known))
	for key := range sc.known {
		keys = append(keys, key)
	}
	sc.mu.Unlock()
	if ctrl := sc.m.controller(KindService); ctrl != nil {
		for _, key := range keys {
			ctrl.Add(key)
		}
	}
}

// allocate fills in the Service's ClusterIP and NodePorts and writes
// them, if they were empty (a Service written to the store without
// Apply, which allocates them itself).
func (sc *serviceController) allocate(ctx context.Context, svc *Service) (*Service, error) {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	changed, err := sc.allocateLocked(ctx, svc)
	if err != nil || !changed {
		return svc, err
	}
	updated, err := sc.m.store.Update(ctx, svc)
	if err != nil {
		return svc, fmt.Errorf("service %s: write allocation: %w", svc.Name, err)
	}
	delete(sc.reserved, keyOf(svc))
	return updated.(*Service), nil
}

// reserve fills in the ClusterIP and NodePorts of a Service being
// applied, as Kubernetes' API server does on create, so that the pods
// started right after it get its variables; the reservation holds until
// the Service is stored or deleted.
func (sc *serviceController) reserve(ctx context.Context, svc *Service) error {
	sc.mu.Lock()
	defer sc.mu.Unlock()
	changed, err := sc.allocateLocked(ctx, svc)
	if err == nil && changed {
		if sc.reserved == nil {
			sc.reserved = map[string]ServiceSpec{}
		}
		sc.reserved[keyOf(svc)] = svc.Spec
	}
	return err
}

// allocateLocked fills in what svc lacks, avoiding what other Services
// have, stored or reserved; it reports whether it changed svc. sc.mu is
// held.
func (sc *serviceController) allocateLocked(ctx context.Context, svc *Service) (bool, error) {
	needIP := svc.Spec.Type != ServiceTypeExternalName && svc.Spec.ClusterIP == ""
	needPort := false
	if svc.Spec.Type == ServiceTypeNodePort {
		for _, p := range svc.Spec.Ports {
			needPort = needPort || p.NodePort == 0
		}
	}
	all, err := List[*Service](ctx, sc.m.store, NamespaceAll, nil) // ClusterIPs and NodePorts are the cluster's
	if err != nil {
		return false, err
	}
	usedIP := map[netip.Addr]string{}
	usedPort := map[int]string{}
	use := func(key string, sp *ServiceSpec) {
		if ip, err := netip.ParseAddr(sp.ClusterIP); err == nil {
			usedIP[ip] = key
		}
		for _, p := range sp.Ports {
			if p.NodePort != 0 && sp.Type == ServiceTypeNodePort {
				usedPort[p.NodePort] = key
			}
		}
	}
	self := keyOf(svc)
	for _, o := range all {
		if k := keyOf(o); k != self {
			use(k, &o.Spec)
		}
	}
	for k, sp := range sc.reserved {
		if k != self {
			use(k, &sp)
		}
	}
	if ip, err := netip.ParseAddr(svc.Spec.ClusterIP); err == nil {
		if o, ok := usedIP[ip]; ok {
			return false, invalidf("spec.clusterIP", "%s is service %s's", ip, o)
		}
	}
	for i, p := range svc.Spec.Ports {
		if o, ok := usedPort[p.NodePort]; ok && svc.Spec.Type == ServiceTypeNodePort {
			return false, invalidf(fmt.Sprintf("spec.ports[%d].nodePort", i), "%d is service %s's", p.NodePort, o)
		}
	}
	if !needIP && !needPort {
		return false, nil
	}
	if needIP {
		// The first address is the network's, the second kept (the
		// Kubernetes API's); take the next free one after them.
		ip := sc.cidr.Addr().Next().Next()
		for ; sc.cidr.Contains(ip) && usedIP[ip] != ""; ip = ip.Next() {
		}
		if !sc.cidr.Contains(ip) || ip == lastAddrOf(sc.cidr) {
			return false, invalidf("spec.clusterIP", "the service range %s is full", sc.cidr)
		}
		svc.Spec.ClusterIP = ip.String()
	}
	for i := range svc.Spec.Ports {
		p := &svc.Spec.Ports[i]
		if svc.Spec.Type != ServiceTypeNodePort || p.NodePort != 0 {
			continue
		}
		for n := NodePortMin; n <= NodePortMax; n++ {
			if usedPort[n] == "" && !slices.ContainsFunc(svc.Spec.Ports, func(q ServicePort) bool { return q.NodePort == n }) {
				p.NodePort = n
				break
			}
		}
		if p.NodePort == 0 {
			return false, invalidf(fmt.Sprintf("spec.ports[%d].nodePort", i), "no free node port")
		}
	}
	return true, nil
}

func lastAddrOf(p netip.Prefix) netip.Addr {
	a := p.Addr().As4()
	for i := p.Bits(); i < 32; i++ {
		a[i/8] |= 1 << (7 - i%8)
	}
	return netip.AddrFrom4(a)
}

// syncEndpoints writes the Endpoints of a Service with a selector from
// the pods it selects, and returns them.
func (sc *serviceController) syncEndpoints(ctx context.Context, svc *Service) (*Endpoints, error) {
	pods, err := List[*Pod](ctx, sc.m.store, svc.Namespace, nil)
	if err != nil {
		return nil, err
	}
	sel := &LabelSelector{MatchLabels: svc.Spec.Selector}
	bySig := map[string]*EndpointSubset{}
	var sigs []string
	unresolved := map[string][]string{} // a named targetPort -> pods without it
	for _, p := range pods {
		if p.Status.PodIP == "" || !sel.Matches(p.Labels) || p.Status.Phase == PodSucceeded || p.Status.Phase == PodFailed {
			continue
		}
		var ports []EndpointPort
		for _, sp := range svc.Spec.Ports {
			port, ok := targetPort(p, sp)
			if !ok {
				unresolved[sp.TargetPort] = append(unresolved[sp.TargetPort], p.Name)
				continue
			}
			ports = append(ports, EndpointPort{Name: sp.Name, Port: port, Protocol: sp.protocol()})
		}
		if len(ports) == 0 {
			continue
		}
		sig := fmt.Sprint(ports)
		ss := bySig[sig]
		if ss == nil {
			ss = &EndpointSubset{Ports: ports}
			bySig[sig] = ss
			sigs = append(sigs, sig)
		}
		terminating := p.DeletionTime != nil
		ss.Addresses = append(ss.Addresses, EndpointAddress{
			IP: p.Status.PodIP, Ready: p.Status.Ready && !terminating, Serving: p.Status.Ready, Terminating: terminating, TargetRef: p.Name,
		})
	}
	for _, name := range slices.Sorted(maps.Keys(unresolved)) {
		// As in Kubernetes, such pods are no endpoints of that port; say so.
		sc.m.recordEvent(svc, EventWarning, "TargetPortNotFound", "targetPort %q is no named port of pods %s", name, strings.Join(unresolved[name], ", "))
	}
	slices.Sort(sigs)
	want := &Endpoints{ObjectMeta: ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: map[string]string{"kubernetes.io/service-name": svc.Name},
		OwnerReferences: []OwnerReference{{Kind: KindService, Name: svc.Name, UID: svc.UID, Controller: true}}}}
	for _, s := range sigs {
		ss := bySig[s]
		slices.SortFunc(ss.Addresses, func(a, b EndpointAddress) int { return strings.Compare(a.IP, b.IP) })
		want.Subsets = append(want.Subsets, *ss)
	}
	cur, err := Get[*Endpoints](ctx, sc.m.store, svc.Namespace, svc.Name)
	switch {
	case errors.Is(err, ErrNotFound):
		if _, err := sc.m.store.Create(ctx, want); err != nil && !errors.Is(err, ErrExists) {
			return nil, err
		}
	case err != nil:
		return nil, err
	case !reflect.DeepEqual(cur.Subsets, want.Subsets) || !reflect.DeepEqual(cur.OwnerReferences, want.OwnerReferences):
		cur.Subsets, cur.OwnerReferences, cur.Labels = want.Subsets, want.OwnerReferences, want.Labels
		if _, err := sc.m.store.Update(ctx, cur); err != nil {
			return nil, err
		}
	}
	return want, nil
}

// targetPort resolves a Service port's targetPort on a pod.
func targetPort(p *Pod, sp ServicePort) (int, bool) {
	if sp.TargetPort == "" {
		return sp.Port, true
	}
	if n, err := strconv.Atoi(sp.TargetPort); err == nil {
		return n, true
	}
	for _, c := range p.Spec.Containers {
		for _, cp := range c.Ports {
			if cp.Name == sp.TargetPort && cp.protocol() == sp.protocol() {
				return cp.ContainerPort, true
			}
		}
	}
	return 0, false
}

// serviceEnv returns the Service variables of a pod of namespace started
// now, in Kubernetes' manner: for each Service of the namespace with a
// ClusterIP,
// NAME_SERVICE_HOST, NAME_SERVICE_PORT (and _SERVICE_PORT_PORTNAME) and
// the Docker-link style NAME_PORT, NAME_PORT_80_TCP{,_PROTO,_PORT,_ADDR}.
func (m *Manager) serviceEnv(ctx context.Context, namespace string) []string {
	// The watch's state once it has listed everything: a Service made
	// before the pod reached it before the pod's own event did.
	var svcs []*Service
	if m.watchSynced.Load() {
		svcs = watched[*Service](m.watched, NamespaceOf(KindService, namespace))
	} else {
		var err error
		if svcs, err = List[*Service](ctx, m.store, namespace, nil); err != nil {
			return nil
		}
	}
	var env []string
	for _, s := range svcs {
		ip, err := netip.ParseAddr(s.Spec.ClusterIP)
		if err != nil || len(s.Spec.Ports) == 0 || s.DeletionTime != nil {
			continue
		}
		n := strings.ToUpper(strings.ReplaceAll(s.Name, "-", "_"))
		first := s.Spec.Ports[0]
		env = append(env, n+"_SERVICE_HOST="+ip.String(), n+"_SERVICE_PORT="+strconv.Itoa(first.Port))
		env = append(env, fmt.Sprintf("%s_PORT=%s://%s:%d", n, strings.ToLower(string(first.protocol())), ip, first.Port))
		for _, p := range s.Spec.Ports {
			proto := string(p.protocol())
			if p.Name != "" {
				env = append(env, n+"_SERVICE_PORT_"+strings.ToUpper(strings.ReplaceAll(p.Name, "-", "_"))+"="+strconv.Itoa(p.Port))
			}
			k := fmt.Sprintf("%s_PORT_%d_%s", n, p.Port, proto)
			env = append(env,
				fmt.Sprintf("%s=%s://%s:%d", k, strings.ToLower(proto), ip, p.Port),
				k+"_PROTO="+strings.ToLower(proto), k+"_PORT="+strconv.Itoa(p.Port), k+"_ADDR="+ip.String())
		}
	}
	return env
}

// dnsSearch is the DNS search path of a pod of namespace (Kubernetes'
// ClusterFirst).
func dnsSearch(namespace string) []string {
	return []string{namespace + ".svc." + ClusterDomain, "svc." + ClusterDomain, ClusterDomain}
}

// validateService checks a Service in Apply.
func (m *Manager) validateService(ctx context.Context, obj Object) error {
	s := obj.(*Service)
	sp := &s.Spec
	switch sp.Type {
	case "", ServiceTypeClusterIP, ServiceTypeNodePort:
		if sp.Type == "" {
			sp.Type = ServiceTypeClusterIP
		}
		if len(sp.Ports) == 0 && sp.ClusterIP != ClusterIPNone {
			return invalidf("spec.ports", "a %s Service needs at least one port", sp.Type)
		}
	case ServiceTypeExternalName:
		if !isDNSSubdomain(sp.ExternalName) {
			return invalidf("spec.externalName", "%q is not a DNS name", sp.ExternalName)
		}
	default:
		return invalidf("spec.type", "%q: want ClusterIP, NodePort or ExternalName", sp.Type)
	}
	if sp.Type == ServiceTypeNodePort && sp.ClusterIP == ClusterIPNone {
		return invalidf("spec.clusterIP", "a NodePort Service cannot be headless")
	}
	if sp.ClusterIP != "" && sp.ClusterIP != ClusterIPNone {
		ip, err := netip.ParseAddr(sp.ClusterIP)
		if err != nil || !m.serviceCIDR.Contains(ip) {
			return invalidf("spec.clusterIP", "%q is not an address of the service range %s", sp.ClusterIP, m.serviceCIDR)
		}
	}
	switch sp.SessionAffinity {
	case "", SessionAffinityNone, SessionAffinityClientIP:
	default:
		return invalidf("spec.sessionAffinity", "%q: want None or ClientIP", sp.SessionAffinity)
	}
	if sp.SessionAffinityTimeout < 0 {
		return invalidf("spec.sessionAffinityTimeout", "negative")
	}
	names := map[string]bool{}
	ports := map[string]bool{}
	for i, p := range sp.Ports {
		f := fmt.Sprintf("spec.ports[%d]", i)
		if len(sp.Ports) > 1 && p.Name == "" {
			return invalidf(f+".name", "required when there are several ports")
		}
		if names[p.Name] && p.Name != "" {
			return invalidf(f+".name", "%q given twice", p.Name)
		}
		names[p.Name] = true
		if p.Protocol != "" && p.Protocol != ProtocolTCP && p.Protocol != ProtocolUDP {
			return invalidf(f+".protocol", "%q: want TCP or UDP", p.Protocol)
		}
		if p.Port < 1 || p.Port > 65535 {
			return invalidf(f+".port", "%d out of 1-65535", p.Port)
		}
		k := string(p.protocol()) + strconv.Itoa(p.Port)
		if ports[k] {
			return invalidf(f+".port", "%d/%s given twice", p.Port, p.protocol())
		}
		ports[k] = true
		if n, err := strconv.Atoi(p.TargetPort); p.TargetPort != "" && (err == nil && (n < 1 || n > 65535) || err != nil && !isDNSLabel(p.TargetPort)) {
			return invalidf(f+".targetPort", "%q: want a port number or a port name", p.TargetPort)
		}
		if p.NodePort != 0 && (sp.Type != ServiceTypeNodePort || p.NodePort < NodePortMin || p.NodePort > NodePortMax) {
			return invalidf(f+".nodePort", "%d: want %d-%d, on a NodePort Service", p.NodePort, NodePortMin, NodePortMax)
		}
	}
	// The ClusterIP and NodePorts are kept for the Service's life; a new
	// Service gets them now (below), as from Kubernetes' API server.
	if cur, err := Get[*Service](ctx, m.store, s.Namespace, s.Name); err == nil {
		if sp.ClusterIP == "" {
			sp.ClusterIP = cur.Spec.ClusterIP
		} else if cur.Spec.ClusterIP != "" && sp.ClusterIP != cur.Spec.ClusterIP {
			return invalidf("spec.clusterIP", "cannot change from %s", cur.Spec.ClusterIP)
		}
		for i := range sp.Ports {
			for _, cp := range cur.Spec.Ports {
				if sp.Ports[i].NodePort == 0 && cp.Name == sp.Ports[i].Name && sp.Type == ServiceTypeNodePort {
					sp.Ports[i].NodePort = cp.NodePort
				}
			}
		}
	}
	if m.services != nil {
		// Refuses a NodePort or ClusterIP another Service has.
		return m.services.reserve(ctx, s)
	}
	return nil
}

func isDNSLabel(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

func isDNSSubdomain(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !isDNSLabel(strings.ToLower(l)) {
			return false
		}
	}
	return true
}
