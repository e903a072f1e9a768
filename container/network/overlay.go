package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Overlays: one network's subnet routed to other hosts' berth networks
// (Kubernetes' pod network across nodes, as flannel's VXLAN backend does
// it). The network's hub holds a VXLAN device whose UDP socket stays in
// the host's namespace, where the device was made before it was moved
// into the hub: encapsulated packets are the host's own traffic, to and
// from its underlay address, and need no forwarding, NAT or route on
// the host. In the hub, each peer's subnet is routed through the device
// to a next hop, the peer's subnet's network address, whose MAC address
// is derived from that address (so that no MAC addresses need to be
// told around), and the device's forwarding database sends that MAC
// address to the peer's underlay address. The device's own address is
// the network's subnet's network address, so masqueraded service
// traffic to a peer's backends comes from an address the peer routes
// back. The host reaches the peers' subnets through the hub, over
// routes on the hub's link. All of it is in the hub or on its link:
// it goes with the process, kill -9 included.

// Defaults of OverlayConfig.
const (
	DefaultOverlayPort = 4789 // the IANA VXLAN port
	DefaultOverlayVNI  = 4242
	// DefaultOverlayMTU is the tunnel's MTU: a 1500-byte underlay less
	// VXLAN's 50 bytes. Larger packets from the network's containers
	// get "fragmentation needed" back (path MTU discovery).
	DefaultOverlayMTU = 1450
)

// Peer is another host's berth network that a network's overlay routes
// to (OverlayConfig.Peers).
type Peer struct {
	// Name identifies the peer in errors and logs (a node's name, say);
	// unique among the peers.
	Name string
	// Addr is the peer host's underlay address, where its overlay's
	// UDP socket listens (its OverlayConfig.Local).
	Addr netip.Addr
	// Subnet is the peer's network's IPv4 subnet (its Config.Subnet):
	// it must not overlap any other peer's, any network of this
	// Manager, or a route of this host.
	Subnet netip.Prefix
}

// OverlayConfig connects a network to networks on other hosts
// (Network.SetOverlay). Every host of an overlay uses the same Port and
// VNI, and a subnet of its own.
type OverlayConfig struct {
	// Local is this host's underlay address, the one the peers reach it
	// at: the tunnel's UDP socket binds it, in the host's namespace.
	Local netip.Addr
	// Port is the tunnel's UDP port; 0 means DefaultOverlayPort.
	Port uint16
	// VNI is the VXLAN network identifier, 1 to 16777215; 0 means
	// DefaultOverlayVNI.
	VNI uint32
	// MTU of the tunnel, 576 to 65535; 0 means DefaultOverlayMTU.
	MTU int
	// Peers are the networks routed to; none is allowed (the tunnel
	// then only answers).
	Peers []Peer
}

// overlay is the Manager's one overlay.
type overlay struct {
	n    *Network
	cfg  OverlayConfig
	link netlink.Link // in the hub
	name string
}

// vtepMAC is the MAC address of the tunnel endpoint whose address is a
// (a subnet's network address): locally administered, 0e:62 and a's
// four bytes.
func vtepMAC(a netip.Addr) net.HardwareAddr {
	b := a.As4()
	return net.HardwareAddr{0x0e, 0x62, b[0], b[1], b[2], b[3]}
}

// SetOverlay routes the network's subnet to the peers' subnets over a
// VXLAN tunnel, or changes the peers of the tunnel it has, so that its
// containers and this host reach the peers' containers by their
// addresses, and services' backends may be the peers' containers. Peers
// that are gone lose their routes; connections to them fail. A Manager
// has one overlay, on one network that is not internal. A change of
// Local, Port, VNI or MTU makes a new tunnel in place of the old one.
// Errors match ErrInvalidConfig, ErrSubnetOverlap, ErrInUse (another
// network has the overlay) or ErrClosed; the overlay is then as it was,
// except that a new tunnel that failed leaves the network with none.
// IPv4 only.
func (n *Network) SetOverlay(ctx context.Context, cfg OverlayConfig) error {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if n.removed {
		return fmt.Errorf("%w: network %q", ErrNotFound, n.cfg.Name)
	}
	if err := n.checkOverlay(&cfg); err != nil {
		return err
	}
	old := m.overlay
	if old != nil && old.n != n {
		return fmt.Errorf("%w: overlay of network %s: network %s has this Manager's overlay", ErrInUse, n.cfg.Name, old.n.cfg.Name)
	}
	if old != nil && (old.cfg.Local != cfg.Local || old.cfg.Port != cfg.Port || old.cfg.VNI != cfg.VNI || old.cfg.MTU != cfg.MTU) {
		if err := m.removeOverlay(); err != nil {
			return fmt.Errorf("overlay of network %s: %w", n.cfg.Name, err)
		}
		old = nil
	}
	o := old
	if o == nil {
		var err error
		if o, err = n.makeOverlay(cfg); err != nil {
			return fmt.Errorf("overlay of network %s: %w", n.cfg.Name, err)
		}
		m.overlay = o
		if err := m.syncRules(); err != nil {
			m.removeOverlay()
			return fmt.Errorf("overlay of network %s: %w", n.cfg.Name, err)
		}
	}
	prev := o.cfg.Peers // none for a new tunnel
	if err := o.setPeers(prev, cfg.Peers); err != nil {
		// Put back what was there: a peer half set is worse than one
		// not set yet.
		if rerr := o.setPeers(cfg.Peers, prev); rerr != nil {
			err = errors.Join(err, rerr)
		}
		if old == nil {
			m.removeOverlay()
		}
		return fmt.Errorf("overlay of network %s: %w", n.cfg.Name, err)
	}
	o.cfg = cfg
	m.log.Debug("overlay set", "network", n.cfg.Name, "local", cfg.Local, "peers", len(cfg.Peers))
	return nil
}

// Overlay returns the network's overlay configuration, and whether it
// has one.
func (n *Network) Overlay() (OverlayConfig, bool) {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	if o := n.m.overlay; o != nil && o.n == n {
		c := o.cfg
		c.Peers = slices.Clone(c.Peers)
		return c, true
	}
	return OverlayConfig{}, false
}

// RemoveOverlay removes the network's overlay, if it has one: the
// tunnel and every route to the peers.
func (n *Network) RemoveOverlay(ctx context.Context) error {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.overlay == nil || m.overlay.n != n {
		return nil
	}
	if err := m.removeOverlay(); err != nil {
		return fmt.Errorf("remove overlay of network %s: %w", n.cfg.Name, err)
	}
	return nil
}

// checkOverlay validates cfg for n and fills in its defaults; the peers
// are cloned. m.mu is held.
func (n *Network) checkOverlay(cfg *OverlayConfig) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: overlay of network %s: %s", ErrInvalidConfig, n.cfg.Name, fmt.Sprintf(format, args...))
	}
	cfg.Peers = slices.Clone(cfg.Peers)
	if n.cfg.Internal {
		return bad("an internal network reaches no other host")
	}
	if !cfg.Local.Is4() || !cfg.Local.IsGlobalUnicast() && !cfg.Local.IsPrivate() {
		return bad("local address %s: want a unicast IPv4 address of this host", cfg.Local)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultOverlayPort
	}
	if cfg.VNI == 0 {
		cfg.VNI = DefaultOverlayVNI
	}
	if cfg.VNI > 1<<24-1 {
		return bad("VNI %d: want 1 to 16777215", cfg.VNI)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultOverlayMTU
	}
	if cfg.MTU < 576 || cfg.MTU > 65535 {
		return bad("MTU %d: want 576 to 65535", cfg.MTU)
	}
	routes, err := n.m.hub.hostRoutesExcept(n.m.hub.hostLink.Attrs().Index)
	if err != nil {
		return err
	}
	names := map[string]bool{}
	for i, p := range cfg.Peers {
		if p.Name == "" || names[p.Name] {
			return bad("peer %d: name %q: want a unique, non-empty name", i, p.Name)
		}
		names[p.Name] = true
		if !p.Addr.Is4() || p.Addr == cfg.Local || !p.Addr.IsGlobalUnicast() && !p.Addr.IsPrivate() {
			return bad("peer %s: address %s: want another host's unicast IPv4 address", p.Name, p.Addr)
		}
		if !p.Subnet.IsValid() || !p.Subnet.Addr().Is4() || p.Subnet != p.Subnet.Masked() || p.Subnet.Bits() > 30 || p.Subnet.Bits() < 8 {
			return bad("peer %s: subnet %s: want an IPv4 subnet of /8 to /30, host bits clear", p.Name, p.Subnet)
		}
		for _, q := range cfg.Peers[:i] {
			if overlaps(p.Subnet, q.Subnet) {
				return fmt.Errorf("%w: overlay of network %s: peer %s's subnet %s overlaps peer %s's %s", ErrSubnetOverlap, n.cfg.Name, p.Name, p.Subnet, q.Name, q.Subnet)
			}
		}
		for _, other := range n.m.networks {
			if overlaps(p.Subnet, other.cfg.Subnet) {
				return fmt.Errorf("%w: overlay of network %s: peer %s's subnet %s overlaps network %s's %s", ErrSubnetOverlap, n.cfg.Name, p.Name, p.Subnet, other.cfg.Name, other.cfg.Subnet)
			}
		}
		if j := slices.IndexFunc(routes, func(r netip.Prefix) bool { return overlaps(r, p.Subnet) }); j >= 0 {
			return fmt.Errorf("%w: overlay of network %s: peer %s's subnet %s overlaps the host's route to %s", ErrSubnetOverlap, n.cfg.Name, p.Name, p.Subnet, routes[j])
		}
	}
	return nil
}

// makeOverlay makes the tunnel: in the host's namespace, where its
// socket stays, then moved into the hub with its address. m.mu is held.
func (n *Network) makeOverlay(cfg OverlayConfig) (_ *overlay, err error) {
	h := n.m.hub
	var rnd [4]byte
	rand.Read(rnd[:])
	o := &overlay{n: n, cfg: OverlayConfig{Local: cfg.Local, Port: cfg.Port, VNI: cfg.VNI, MTU: cfg.MTU}, name: "bv" + hex.EncodeToString(rnd[:])}
	vx := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: o.name, MTU: cfg.MTU, HardwareAddr: vtepMAC(n.cfg.Subnet.Addr())},
		VxlanId:   int(cfg.VNI), SrcAddr: cfg.Local.AsSlice(), Port: int(cfg.Port), Learning: false,
	}
	if err := h.host.LinkAdd(vx); err != nil {
		if errors.Is(err, unix.EADDRINUSE) || errors.Is(err, unix.EEXIST) {
			return nil, fmt.Errorf("%w: VXLAN port %d (VNI %d) is taken on this host: %v", ErrInUse, cfg.Port, cfg.VNI, err)
		}
		return nil, fmt.Errorf("create VXLAN device: %w", err)
	}
	link, err := h.host.LinkByName(o.name)
	if err != nil {
		h.host.LinkDel(vx)
		return nil, fmt.Errorf("VXLAN device: %w", err)
	}
	if err := h.host.LinkSetNsFd(link, h.ns.Fd()); err != nil {
		h.host.LinkDel(link)
		return nil, fmt.Errorf("move the VXLAN device into the hub: %w", err)
	}
	defer func() {
		if err != nil && o.link != nil {
			h.nl.LinkDel(o.link)
		}
	}()
	if o.link, err = h.nl.LinkByName(o.name); err != nil {
		return nil, fmt.Errorf("VXLAN device in the hub: %w", err)
	}
	if err := h.nl.AddrAdd(o.link, &netlink.Addr{IPNet: addrNet(n.cfg.Subnet.Addr(), 32)}); err != nil {
		return nil, fmt.Errorf("VXLAN device's address %s: %w", n.cfg.Subnet.Addr(), err)
	}
	if err := h.nl.LinkSetUp(o.link); err != nil {
		return nil, fmt.Errorf("set the VXLAN device up: %w", err)
	}
	// A port in use shows when the device comes up, which opens its
	// socket: it failed above then.
	return o, nil
}

// setPeers goes from the routes of peers prev to those of next. m.mu is
// held.
func (o *overlay) setPeers(prev, next []Peer) error {
	var errs []error
	for _, p := range prev {
		if !slices.Contains(next, p) {
			errs = append(errs, o.delPeer(p))
		}
	}
	for _, p := range next {
		if !slices.Contains(prev, p) {
			if err := o.addPeer(p); err != nil {
				return errors.Join(append(errs, fmt.Errorf("peer %s (%s at %s): %w", p.Name, p.Subnet, p.Addr, err))...)
			}
		}
	}
	return errors.Join(errs...)
}

// addPeer routes p's subnet: in the hub through the tunnel to p's next
// hop, whose MAC address the tunnel sends to p's underlay address; on
// the host into the hub.
func (o *overlay) addPeer(p Peer) error {
	h := o.n.m.hub
	hop := p.Subnet.Addr()
	idx := o.link.Attrs().Index
	err := h.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, State: netlink.NUD_PERMANENT,
		IP: hop.AsSlice(), HardwareAddr: vtepMAC(hop)})
	if err != nil {
		return fmt.Errorf("neighbour entry: %w", err)
	}
	err = h.nl.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT, Flags: netlink.NTF_SELF,
		IP: p.Addr.AsSlice(), HardwareAddr: vtepMAC(hop)})
	if err != nil {
		return fmt.Errorf("forwarding entry: %w", err)
	}
	err = h.nl.RouteReplace(&netlink.Route{LinkIndex: idx, Dst: ipNet(p.Subnet), Gw: hop.AsSlice(), Flags: int(netlink.FLAG_ONLINK), Protocol: unix.RTPROT_STATIC})
	if err != nil {
		return fmt.Errorf("hub route: %w", err)
	}
	err = h.host.RouteReplace(&netlink.Route{
		LinkIndex: h.hostLink.Attrs().Index, Dst: ipNet(p.Subnet), Src: o.n.hostAddr.AsSlice(),
		Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC,
	})
	if err != nil {
		return fmt.Errorf("host route: %w", err)
	}
	return nil
}

// delPeer removes what addPeer made; what is not there is no error.
func (o *overlay) delPeer(p Peer) error {
	h := o.n.m.hub
	hop := p.Subnet.Addr()
	idx := o.link.Attrs().Index
	errs := []error{o.delHostRoute(p)}
	gone := func(err error) bool {
		return err == nil || errors.Is(err, unix.ESRCH) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV)
	}
	if err := h.nl.RouteDel(&netlink.Route{LinkIndex: idx, Dst: ipNet(p.Subnet)}); !gone(err) {
		errs = append(errs, fmt.Errorf("remove hub route to %s: %w", p.Subnet, err))
	}
	if err := h.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, Flags: netlink.NTF_SELF, IP: p.Addr.AsSlice(), HardwareAddr: vtepMAC(hop)}); !gone(err) {
		errs = append(errs, fmt.Errorf("remove forwarding entry of %s: %w", p.Name, err))
	}
	if err := h.nl.NeighDel(&netlink.Neigh{LinkIndex: idx, Family: netlink.FAMILY_V4, IP: hop.AsSlice()}); !gone(err) {
		errs = append(errs, fmt.Errorf("remove neighbour entry of %s: %w", p.Name, err))
	}
	return errors.Join(errs...)
}

// removeOverlay removes the Manager's overlay (dropOverlay) and the
// hub's rule that lets its network send to the tunnel. m.mu is held.
func (m *Manager) removeOverlay() error {
	return errors.Join(m.dropOverlay(), m.syncRules())
}

// dropOverlay removes the host's routes to the peers and the tunnel,
// with everything on it, leaving the hub's rules to the caller. m.mu is
// held.
func (m *Manager) dropOverlay() error {
	o := m.overlay
	if o == nil {
		return nil
	}
	m.overlay = nil
	var errs []error
	for _, p := range o.cfg.Peers {
		errs = append(errs, o.delHostRoute(p))
	}
	if err := m.hub.nl.LinkDel(o.link); err != nil && !errors.Is(err, unix.ENODEV) {
		errs = append(errs, fmt.Errorf("remove VXLAN device: %w", err))
	}
	return errors.Join(errs...)
}

// delHostRoute removes the host's route to p's subnet through the hub;
// one that is not there is no error.
func (o *overlay) delHostRoute(p Peer) error {
	h := o.n.m.hub
	err := h.host.RouteDel(&netlink.Route{LinkIndex: h.hostLink.Attrs().Index, Dst: ipNet(p.Subnet), Scope: netlink.SCOPE_LINK})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("remove host route to %s: %w", p.Subnet, err)
	}
	return nil
}
