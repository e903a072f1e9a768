package network

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Services: a virtual IP (Kubernetes' ClusterIP) whose ports are spread
// over backends by the kernel, as kube-proxy's nftables mode does it,
// inside the hub. The hub's table svcTable holds, rebuilt in one
// transaction on every change:
//
//	chain prerouting (nat, dstnat): jump services
//	chain services: one rule per (VIP, protocol, port): goto svc-ID-P
//	chain svc-ID-P: mark for masquerade; with ClientIP affinity, one
//	    "ip saddr @aff-ID-P-K goto ep-ID-P-K" per backend; then
//	    numgen random mod N vmap { 0: goto ep-ID-P-0, ... }
//	chain ep-ID-P-K: with affinity, update @aff-ID-P-K { ip saddr };
//	    dnat to the backend
//	chain postrouting (nat, srcnat): marked packets are masqueraded
//	chain forward (filter): what is still addressed to a VIP was not
//	    DNATed (no backend, or a port the service does not have): TCP is
//	    refused with a reset, the rest with ICMP port unreachable
//
// Every service connection is masqueraded behind the bridge's gateway
// address (kube-proxy's masquerade-all): a backend on the client's own
// bridge would otherwise answer the client directly, around the hub's
// conntrack, and a pod reaching itself through its VIP (hairpin) needs
// it anyway.

// svcTable is the hub's nftables table of services.
const svcTable = "berth-svc"

// masqMark marks packets that postrouting masquerades.
const masqMark = 0x4000

// DefaultAffinityTimeout is how long ClientIP affinity keeps a client on
// its backend after its last new connection when ServiceConfig leaves it
// zero: Kubernetes' default, 3 hours.
const DefaultAffinityTimeout = 3 * time.Hour

// Affinity says how a service picks the backend of a client's new
// connections.
type Affinity string

// Affinities, as Kubernetes' sessionAffinity.
const (
	// AffinityNone picks a backend at random for every connection.
	AffinityNone Affinity = ""
	// AffinityClientIP sends a client (by source address) to the backend
	// it had last, for ServiceConfig.AffinityTimeout after its last new
	// connection.
	AffinityClientIP Affinity = "ClientIP"
)

// ServiceConfig describes a service: a virtual IP whose ports lead to
// backends (SetService).
type ServiceConfig struct {
	// Name identifies the service in the Manager (SetService replaces the
	// service of that name, RemoveService removes it): 1 to 253 bytes.
	Name string
	// VIP is the service's virtual IPv4 address (Kubernetes' ClusterIP).
	// It must not be an address of any network of the host: a range
	// apart, such as 10.96.0.0/12, is where it belongs.
	VIP netip.Addr
	// Ports are the service's ports; at least one, (Protocol, Port)
	// unique.
	Ports []ServicePort
	// Affinity is AffinityNone or AffinityClientIP.
	Affinity Affinity
	// AffinityTimeout is how long ClientIP affinity lasts;
	// zero means DefaultAffinityTimeout.
	AffinityTimeout time.Duration
}

// ServicePort is one port of a service.
type ServicePort struct {
	// Name of the port (informational; Kubernetes' port name).
	Name string
	// Protocol is "tcp" or "udp"; empty means "tcp".
	Protocol string
	// Port is the port on the VIP, 1 to 65535.
	Port uint16
	// NodePort, if not zero, is also published on this host at
	// NodePort of each of Options.NodePortAddrs (127.0.0.1 unless set),
	// relayed to VIP:Port (Kubernetes' NodePort). A port in use fails
	// with ErrPortInUse.
	NodePort uint16
	// Backends are the addresses new connections are spread over, at
	// random; none refuses connections at once (TCP reset, ICMP port
	// unreachable). They must be reachable from the hub: addresses of
	// endpoints of this Manager's networks, or of its overlay's peers'
	// networks (Network.SetOverlay).
	Backends []netip.AddrPort
}

type service struct {
	cfg  ServiceConfig
	id   int
	pubs []*Publication // NodePorts
}

// SetService makes the service cfg.Name, or replaces it, in one
// transaction: connections to cfg.VIP on a port of cfg.Ports are
// DNATed to one of its backends, from containers of this Manager's
// networks and from this host (a route to the VIP goes to the hub).
// Connections already made keep their backend. It needs a network to
// exist (ErrInvalidConfig otherwise); errors match ErrInvalidConfig for
// a bad configuration and ErrPortInUse for a NodePort in use, and then
// the service is as it was.
func (m *Manager) SetService(ctx context.Context, cfg ServiceConfig) (err error) {
	if err := checkService(&cfg); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.stopResolvers()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if m.hub == nil || len(m.networks) == 0 {
		return fmt.Errorf("%w: service %s: no network exists yet", ErrInvalidConfig, cfg.Name)
	}
	for name, s := range m.services {
		if name != cfg.Name && s.cfg.VIP == cfg.VIP {
			return fmt.Errorf("%w: service %s: VIP %s is service %s's", ErrAddressInUse, cfg.Name, cfg.VIP, name)
		}
	}
	for _, n := range m.networks {
		if n.cfg.Subnet.Contains(cfg.VIP) {
			return fmt.Errorf("%w: service %s: VIP %s is in network %s's subnet", ErrInvalidConfig, cfg.Name, cfg.VIP, n.cfg.Name)
		}
	}
	old := m.services[cfg.Name]
	s := &service{cfg: cfg}
	if old != nil {
		s.id = old.id
	} else {
		m.nextSvc++
		s.id = m.nextSvc
	}
	// NodePorts: keep the publications that stay, bind the new ones
	// before anything changes.
	var keep []*Publication
	defer func() {
		if err != nil {
			for _, p := range s.pubs {
				if !slices.Contains(keep, p) {
					p.Close()
				}
			}
		}
	}()
	for _, p := range cfg.Ports {
		if p.NodePort == 0 {
			continue
		}
		for _, addr := range m.opts.NodePortAddrs {
			mp := PortMapping{HostIP: addr, HostPort: p.NodePort, ContainerPort: p.Port, Protocol: p.Protocol}
			var reuse *Publication
			if old != nil && old.cfg.VIP == cfg.VIP {
				for _, op := range old.pubs {
					if q := op.ports[0]; q.HostIP == mp.HostIP && q.HostPort == mp.HostPort && q.ContainerPort == mp.ContainerPort && q.Protocol == mp.Protocol {
						reuse = op
					}
				}
			}
			if reuse != nil {
				keep = append(keep, reuse)
				s.pubs = append(s.pubs, reuse)
				continue
			}
			pub, err := Publish(ctx, cfg.VIP, []PortMapping{mp}, m.log)
			if err != nil {
				return fmt.Errorf("service %s: node port: %w", cfg.Name, err)
			}
			s.pubs = append(s.pubs, pub)
		}
	}
	m.services[cfg.Name] = s
	if err := m.syncServices(); err != nil {
		if old != nil {
			m.services[cfg.Name] = old
		} else {
			delete(m.services, cfg.Name)
		}
		m.syncServices()
		return fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	if err := m.hub.serviceRoute(cfg.VIP, m.networkList()[0].hostAddr); err != nil {
		return fmt.Errorf("service %s: %w", cfg.Name, err)
	}
	if old != nil {
		for _, p := range old.pubs {
			if !slices.Contains(keep, p) {
				m.orphans = append(m.orphans, p)
			}
		}
		if old.cfg.VIP != cfg.VIP {
			m.hub.removeServiceRoute(old.cfg.VIP)
		}
	}
	if m.log.Enabled(ctx, slog.LevelDebug) {
		var ports []string
		for _, p := range cfg.Ports {
			ports = append(ports, fmt.Sprintf("%s/%d:%v", p.Protocol, p.Port, p.Backends))
		}
		m.log.Debug("service set", "name", cfg.Name, "vip", cfg.VIP, "ports", ports)
	}
	return nil
}

// RemoveService removes the service name: its rules, its route and its
// node ports. It fails with ErrNotFound.
func (m *Manager) RemoveService(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.stopResolvers()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	s, ok := m.services[name]
	if !ok {
		return fmt.Errorf("%w: service %q", ErrNotFound, name)
	}
	delete(m.services, name)
	m.orphans = append(m.orphans, s.pubs...)
	err := m.syncServices()
	if rerr := m.hub.removeServiceRoute(s.cfg.VIP); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("remove service %s: %w", name, err)
	}
	return nil
}

// Services returns the configurations of the services, sorted by name.
func (m *Manager) Services() []ServiceConfig {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []ServiceConfig
	for _, s := range m.services {
		out = append(out, cloneService(s.cfg))
	}
	slices.SortFunc(out, func(a, b ServiceConfig) int { return compareStrings(a.Name, b.Name) })
	return out
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func cloneService(c ServiceConfig) ServiceConfig {
	c.Ports = slices.Clone(c.Ports)
	for i := range c.Ports {
		c.Ports[i].Backends = slices.Clone(c.Ports[i].Backends)
	}
	return c
}

// checkService validates cfg and fills in its defaults; cfg is cloned.
func checkService(cfg *ServiceConfig) error {
	*cfg = cloneService(*cfg)
	if cfg.Name == "" || len(cfg.Name) > 253 {
		return fmt.Errorf("%w: service name %q: want 1 to 253 bytes", ErrInvalidConfig, cfg.Name)
	}
	if !cfg.VIP.Is4() || cfg.VIP.IsLoopback() || cfg.VIP.IsMulticast() || cfg.VIP.IsUnspecified() || cfg.VIP.IsLinkLocalUnicast() {
		return fmt.Errorf("%w: service %s: VIP %s is not a unicast IPv4 address", ErrInvalidConfig, cfg.Name, cfg.VIP)
	}
	switch cfg.Affinity {
	case AffinityNone, AffinityClientIP:
	default:
		return fmt.Errorf("%w: service %s: affinity %q: want None or ClientIP", ErrInvalidConfig, cfg.Name, cfg.Affinity)
	}
	if cfg.AffinityTimeout < 0 {
		return fmt.Errorf("%w: service %s: negative affinity timeout", ErrInvalidConfig, cfg.Name)
	}
	if cfg.AffinityTimeout == 0 {
		cfg.AffinityTimeout = DefaultAffinityTimeout
	}
	if len(cfg.Ports) == 0 {
		return fmt.Errorf("%w: service %s: no ports", ErrInvalidConfig, cfg.Name)
	}
	seen := map[string]bool{}
	for i := range cfg.Ports {
		p := &cfg.Ports[i]
		if p.Protocol == "" {
			p.Protocol = "tcp"
		}
		if p.Protocol != "tcp" && p.Protocol != "udp" {
			return fmt.Errorf("%w: service %s: protocol %q: want tcp or udp", ErrInvalidConfig, cfg.Name, p.Protocol)
		}
		if p.Port == 0 {
			return fmt.Errorf("%w: service %s: port 0", ErrInvalidConfig, cfg.Name)
		}
		k := p.Protocol + "/" + strconv.Itoa(int(p.Port))
		if seen[k] {
			return fmt.Errorf("%w: service %s: port %s given twice", ErrInvalidConfig, cfg.Name, k)
		}
		seen[k] = true
		for _, b := range p.Backends {
			if !b.Addr().Is4() || b.Port() == 0 {
				return fmt.Errorf("%w: service %s: backend %s: want an IPv4 address and a port", ErrInvalidConfig, cfg.Name, b)
			}
		}
	}
	return nil
}

// serviceList returns the services, sorted by id. m.mu is held.
func (m *Manager) serviceList() []*service {
	var out []*service
	for _, s := range m.services {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *service) int { return a.id - b.id })
	return out
}

// syncServices rewrites the hub's service table. m.mu is held.
func (m *Manager) syncServices() error {
	return m.hub.syncServices(m.serviceList())
}

// syncServices replaces the service table with the rules for svcs in
// one transaction.
func (h *hub) syncServices(svcs []*service) error {
	if h.hubNft == nil {
		return errors.New("nftables in hub: no network made")
	}
	c := h.hubNft
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: svcTable}
	if h.svcTableMade {
		c.DelTable(t)
	}
	if len(svcs) == 0 {
		if err := c.Flush(); err != nil {
			return fmt.Errorf("nftables in hub: services: %w", err)
		}
		h.svcTableMade = false
		return nil
	}
	t = c.AddTable(t)
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	dispatch := c.AddChain(&nftables.Chain{Name: "services", Table: t})
	c.AddRule(&nftables.Rule{Table: t, Chain: pre, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: dispatch.Name}}})
	post := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource})
	c.AddRule(&nftables.Rule{Table: t, Chain: post, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryLE(masqMark), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Masq{},
	}})
	policy := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy})
	for _, s := range svcs {
		vip := s.cfg.VIP.AsSlice()
		toVIP := []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: vip},
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(slices.Clone(toVIP),
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Reject{Type: unix.NFT_REJECT_TCP_RST},
		)})
		c.AddRule(&nftables.Rule{Table: t, Chain: fwd, Exprs: append(slices.Clone(toVIP),
			&expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3}, // port unreachable
		)})
		for pi, p := range s.cfg.Ports {
			if len(p.Backends) == 0 {
				continue // the forward chain refuses it
			}
			base := "svc-" + strconv.Itoa(s.id) + "-" + strconv.Itoa(pi)
			svcCh := c.AddChain(&nftables.Chain{Name: base, Table: t})
			proto := byte(unix.IPPROTO_TCP)
			if p.Protocol == "udp" {
				proto = unix.IPPROTO_UDP
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: dispatch, Exprs: append(slices.Clone(toVIP),
				&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p.Port >> 8), byte(p.Port)}},
				&expr.Verdict{Kind: expr.VerdictGoto, Chain: svcCh.Name},
			)})
			c.AddRule(&nftables.Rule{Table: t, Chain: svcCh, Exprs: []expr.Any{
				&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
				&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryLE(^uint32(masqMark)), Xor: binaryLE(masqMark)},
				&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: 1},
			}})
			vmap := &nftables.Set{Table: t, Anonymous: true, Constant: true, IsMap: true,
				KeyType: nftables.TypeInteger, DataType: nftables.TypeVerdict}
			var elems []nftables.SetElement
			for bi, b := range p.Backends {
				epCh := c.AddChain(&nftables.Chain{Name: "ep-" + strconv.Itoa(s.id) + "-" + strconv.Itoa(pi) + "-" + strconv.Itoa(bi), Table: t})
				var ep []expr.Any
				if s.cfg.Affinity == AffinityClientIP {
					aff := &nftables.Set{Table: t, Name: "aff-" + strconv.Itoa(s.id) + "-" + strconv.Itoa(pi) + "-" + strconv.Itoa(bi),
						KeyType: nftables.TypeIPAddr, HasTimeout: true, Timeout: s.cfg.AffinityTimeout, Dynamic: true}
					if err := c.AddSet(aff, nil); err != nil {
						return fmt.Errorf("nftables in hub: affinity set: %w", err)
					}
					saddr := &expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
					c.AddRule(&nftables.Rule{Table: t, Chain: svcCh, Exprs: []expr.Any{
						saddr,
						&expr.Lookup{SourceRegister: 1, SetName: aff.Name, SetID: aff.ID},
						&expr.Verdict{Kind: expr.VerdictGoto, Chain: epCh.Name},
					}})
					ep = append(ep, saddr, &expr.Dynset{SrcRegKey: 1, SetName: aff.Name, SetID: aff.ID,
						Operation: uint32(unix.NFT_DYNSET_OP_UPDATE), Timeout: s.cfg.AffinityTimeout})
				}
				ep = append(ep,
					&expr.Immediate{Register: 1, Data: b.Addr().AsSlice()},
					&expr.Immediate{Register: 2, Data: []byte{byte(b.Port() >> 8), byte(b.Port())}},
					&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
				)
				c.AddRule(&nftables.Rule{Table: t, Chain: epCh, Exprs: ep})
				elems = append(elems, nftables.SetElement{Key: binaryLE(uint32(bi)), VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: epCh.Name}})
			}
			if err := c.AddSet(vmap, elems); err != nil {
				return fmt.Errorf("nftables in hub: backend map: %w", err)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: svcCh, Exprs: []expr.Any{
				&expr.Numgen{Register: 1, Modulus: uint32(len(p.Backends)), Type: unix.NFT_NG_RANDOM},
				&expr.Lookup{SourceRegister: 1, DestRegister: 0, IsDestRegSet: true, SetName: vmap.Name, SetID: vmap.ID},
			}})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables in hub: services: %w", err)
	}
	h.svcTableMade = true
	return nil
}

// serviceRoute routes vip from the host to the hub, from the host's
// address src on the hub's link (never from the host's own uplink
// address).
func (h *hub) serviceRoute(vip, src netip.Addr) error {
	err := h.host.RouteReplace(&netlink.Route{
		LinkIndex: h.hostLink.Attrs().Index, Dst: addrNet(vip, 32), Src: src.AsSlice(),
		Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC,
	})
	if err != nil {
		return fmt.Errorf("host route to %s: %w", vip, err)
	}
	// The hub routes the VIP nowhere but back (it is DNATed before it is
	// routed), so it would not answer the host's ARP requests for it by
	// proxy: the host is told its uplink's MAC address.
	err = h.host.NeighSet(&netlink.Neigh{
		LinkIndex: h.hostLink.Attrs().Index, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: vip.AsSlice(), HardwareAddr: h.up.Attrs().HardwareAddr,
	})
	if err != nil {
		return fmt.Errorf("host neighbour entry for %s: %w", vip, err)
	}
	return nil
}

func (h *hub) removeServiceRoute(vip netip.Addr) error {
	h.host.NeighDel(&netlink.Neigh{LinkIndex: h.hostLink.Attrs().Index, Family: netlink.FAMILY_V4, IP: vip.AsSlice()})
	err := h.host.RouteDel(&netlink.Route{LinkIndex: h.hostLink.Attrs().Index, Dst: addrNet(vip, 32), Scope: netlink.SCOPE_LINK})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove host route to %s: %w", vip, err)
	}
	return nil
}
