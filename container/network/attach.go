package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// AttachOptions say how an endpoint joins a network (`docker network
// connect`, `docker run --network --ip --mac-address --network-alias`).
type AttachOptions struct {
	// Name is the container's name: other containers of the network
	// resolve it (user-defined networks only, as in Docker). Empty, or a
	// name that is not a DNS name (over 63 characters, say), is not
	// resolvable; Name is then only what Endpoint.Name reports.
	Name string
	// Aliases are more names the endpoint is resolved by on this
	// network (--network-alias); several endpoints may not share one,
	// nor use another's name.
	Aliases []string
	// IP is a fixed address (--ip); zero allocates the next free one.
	IP netip.Addr
	// IP6 is a fixed IPv6 address on a dual-stack network (--ip6); zero
	// allocates one.
	IP6 netip.Addr
	// MAC is a fixed MAC address (--mac-address); nil derives one from
	// the IP address, 02:42 followed by its four bytes, as Docker does.
	MAC net.HardwareAddr
	// Interface is the interface's name inside the namespace; empty
	// means "eth0".
	Interface string
	// NoDefaultRoute leaves the namespace's routes alone; otherwise the
	// network's gateway becomes the default route if the namespace has
	// none yet (a container's first network).
	NoDefaultRoute bool
}

// An Endpoint is one network namespace's interface on a network.
type Endpoint struct {
	n       *Network
	name    string
	aliases []string
	ip      netip.Addr
	ip6     netip.Addr // on a dual-stack network
	mac     net.HardwareAddr
	iface   string
	hubName string
	nsIno   uint64
}

// Network returns the endpoint's network.
func (e *Endpoint) Network() *Network { return e.n }

// IP returns the endpoint's address.
func (e *Endpoint) IP() netip.Addr { return e.ip }

// IP6 returns the endpoint's IPv6 address on a dual-stack network, or
// the zero Addr.
func (e *Endpoint) IP6() netip.Addr { return e.ip6 }

// Prefix returns the endpoint's address with the subnet's prefix length.
func (e *Endpoint) Prefix() netip.Prefix { return netip.PrefixFrom(e.ip, e.n.cfg.Subnet.Bits()) }

// MAC returns the MAC address of the endpoint's interface.
func (e *Endpoint) MAC() net.HardwareAddr { return slices.Clone(e.mac) }

// Interface returns the interface's name inside the namespace.
func (e *Endpoint) Interface() string { return e.iface }

// Name returns the name the endpoint is resolved by (AttachOptions.Name).
func (e *Endpoint) Name() string { return e.name }

// Aliases returns the endpoint's aliases on its network.
func (e *Endpoint) Aliases() []string { return slices.Clone(e.aliases) }

var dnsLabelRE = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?)*$`)

var ifaceRE = regexp.MustCompile(`^[a-zA-Z0-9_.-]{1,15}$`)

// Attach connects the network namespace ns to the network: a veth pair
// with one end on the network's bridge and the other, named
// opts.Interface, inside ns with the endpoint's address, and a default
// route through the gateway if ns has none. A failure in the middle
// removes what was made. Errors match ErrInvalidAddress, ErrAddressInUse
// or ErrInvalidAlias for bad options.
func (n *Network) Attach(ctx context.Context, ns *namespace.Namespace, opts AttachOptions) (_ *Endpoint, err error) {
	m := n.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if n.removed {
		return nil, fmt.Errorf("%w: network %q was removed", ErrNotFound, n.cfg.Name)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if ns == nil || ns.Kind() != namespace.Net {
		return nil, fmt.Errorf("network %s: attach needs a network namespace", n.cfg.Name)
	}
	e := &Endpoint{n: n, name: opts.Name, aliases: slices.Clone(opts.Aliases), iface: opts.Interface, nsIno: ns.Inode()}
	if e.iface == "" {
		e.iface = "eth0"
	}
	if !ifaceRE.MatchString(e.iface) {
		return nil, fmt.Errorf("%w: network %s: interface name %q", ErrInvalidConfig, n.cfg.Name, e.iface)
	}
	if err := n.checkNames(e); err != nil {
		return nil, err
	}
	for o := range n.endpoints {
		if o.nsIno == e.nsIno {
			return nil, fmt.Errorf("%w: network %s: the namespace is attached already (as %s)", ErrInUse, n.cfg.Name, o.ip)
		}
	}
	if opts.IP.IsValid() {
		if opts.IP == n.cfg.Gateway || opts.IP == n.hostAddr {
			return nil, fmt.Errorf("%w: network %s: %s is the network's gateway or host address", ErrAddressInUse, n.cfg.Name, opts.IP)
		}
		if err := n.pool.take(opts.IP.Unmap()); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.cfg.Name, err)
		}
		e.ip = opts.IP.Unmap()
	} else if e.ip, err = n.pool.allocate(); err != nil {
		return nil, fmt.Errorf("network %s: %w", n.cfg.Name, err)
	}
	defer func() {
		if err != nil {
			n.pool.release(e.ip)
		}
	}()
	switch {
	case opts.IP6.IsValid() && n.pool6 == nil:
		return nil, fmt.Errorf("%w: network %s: an IPv6 address on a network without Subnet6", ErrInvalidAddress, n.cfg.Name)
	case opts.IP6.IsValid():
		if opts.IP6 == n.cfg.Gateway6 || opts.IP6 == n.hostAddr6 {
			return nil, fmt.Errorf("%w: network %s: %s is the network's gateway or host address", ErrAddressInUse, n.cfg.Name, opts.IP6)
		}
		if err := n.pool6.take(opts.IP6); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.cfg.Name, err)
		}
		e.ip6 = opts.IP6
	case n.pool6 != nil:
		if e.ip6, err = n.pool6.allocate(); err != nil {
			return nil, fmt.Errorf("network %s: %w", n.cfg.Name, err)
		}
	}
	defer func() {
		if err != nil && e.ip6.IsValid() {
			n.pool6.release(e.ip6)
		}
	}()
	e.mac = slices.Clone(opts.MAC)
	if e.mac == nil {
		b := e.ip.As4()
		e.mac = net.HardwareAddr{0x02, 0x42, b[0], b[1], b[2], b[3]}
	} else if len(e.mac) != 6 || e.mac[0]&1 != 0 {
		return nil, fmt.Errorf("%w: network %s: MAC address %s is not a 6-byte unicast address", ErrInvalidAddress, n.cfg.Name, e.mac)
	}
	m.nextVeth++
	e.hubName = "v" + strconv.FormatUint(m.nextVeth, 10)
	if err := e.plumb(ns, !opts.NoDefaultRoute); err != nil {
		if derr := m.hub.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.hubName}}); derr != nil && !linkGone(derr) {
			err = errors.Join(err, fmt.Errorf("roll back: remove veth: %w", derr))
		}
		return nil, fmt.Errorf("network %s: attach: %w", n.cfg.Name, err)
	}
	if n.cfg.Name != DefaultName {
		if r := m.resolvers[e.nsIno]; r != nil {
			r.refs++
		} else {
			r, err := m.startResolver(ns)
			if err != nil {
				m.hub.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.hubName}})
				return nil, fmt.Errorf("network %s: attach: %w", n.cfg.Name, err)
			}
			r.refs = 1
			m.resolvers[e.nsIno] = r
		}
	}
	n.endpoints[e] = true
	m.log.Debug("endpoint attached", "network", n.cfg.Name, "ip", e.ip, "interface", e.iface)
	return e, nil
}

// checkNames refuses names and aliases that are not DNS names or that
// another endpoint of the network resolves by.
func (n *Network) checkNames(e *Endpoint) error {
	taken := map[string]bool{}
	for o := range n.endpoints {
		for _, s := range append([]string{o.name}, o.aliases...) {
			if s != "" {
				taken[strings.ToLower(s)] = true
			}
		}
	}
	seen := map[string]bool{}
	for i, s := range append([]string{e.name}, e.aliases...) {
		if i == 0 && !isDNSName(s) {
			continue // not resolvable, which is no error for a name
		}
		if !isDNSName(s) {
			return fmt.Errorf("%w: network %s: %q is not a DNS name", ErrInvalidAlias, n.cfg.Name, s)
		}
		l := strings.ToLower(s)
		if seen[l] {
			return fmt.Errorf("%w: network %s: %q given twice", ErrInvalidAlias, n.cfg.Name, s)
		}
		seen[l] = true
		if taken[l] {
			if i == 0 {
				return fmt.Errorf("%w: network %s: name %q is taken by another endpoint", ErrInvalidAlias, n.cfg.Name, s)
			}
			return fmt.Errorf("%w: network %s: alias %q is taken by another endpoint", ErrInvalidAlias, n.cfg.Name, s)
		}
	}
	return nil
}

func isDNSName(s string) bool {
	if len(s) > 253 || !dnsLabelRE.MatchString(s) {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if len(l) > 63 {
			return false
		}
	}
	return true
}

// plumb makes the veth pair and configures both ends.
func (e *Endpoint) plumb(ns *namespace.Namespace, defaultRoute bool) error {
	h := e.n.m.hub
	veth := &netlink.Veth{
		// LinkAdd fills in the index (it looks the link up) and
		// enslaves it to the bridge.
		LinkAttrs:        netlink.LinkAttrs{Name: e.hubName, MTU: e.n.cfg.MTU, MasterIndex: e.n.bridge.Attrs().Index},
		PeerName:         e.iface,
		PeerNamespace:    netlink.NsFd(ns.Fd()),
		PeerHardwareAddr: e.mac,
		PeerMTU:          uint32(e.n.cfg.MTU),
	}
	if err := h.nl.LinkAdd(veth); err != nil {
		if errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("create veth: the namespace has an interface named %s already", e.iface)
		}
		return fmt.Errorf("create veth: %w", err)
	}
	if err := h.nl.LinkSetHairpin(veth, true); err != nil {
		return fmt.Errorf("veth hairpin: %w", err)
	}
	if err := h.nl.LinkSetUp(veth); err != nil {
		return fmt.Errorf("set veth up: %w", err)
	}
	in, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		return fmt.Errorf("netlink in the container's namespace: %w", err)
	}
	defer in.Close()
	peer, err := in.LinkByName(e.iface)
	if err != nil {
		return fmt.Errorf("%s: %w", e.iface, err)
	}
	if err := in.AddrAdd(peer, &netlink.Addr{IPNet: addrNet(e.ip, e.n.cfg.Subnet.Bits())}); err != nil {
		return fmt.Errorf("address %s on %s: %w", e.ip, e.iface, err)
	}
	if e.ip6.IsValid() {
		if err := in.AddrAdd(peer, &netlink.Addr{IPNet: addrNet(e.ip6, e.n.cfg.Subnet6.Bits()), Flags: unix.IFA_F_NODAD}); err != nil {
			return fmt.Errorf("address %s on %s: %w", e.ip6, e.iface, err)
		}
	}
	if err := in.LinkSetUp(peer); err != nil {
		return fmt.Errorf("set %s up: %w", e.iface, err)
	}
	if lo, err := in.LinkByName("lo"); err == nil {
		in.LinkSetUp(lo)
	}
	if !defaultRoute {
		return nil
	}
	// A default route that exists (a first network's) stays: the kernel
	// answers EEXIST, without a dump of the table first.
	if err := in.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Gw: e.n.cfg.Gateway.AsSlice()}); err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("default route via %s: %w", e.n.cfg.Gateway, err)
	}
	if e.ip6.IsValid() {
		err := in.RouteAdd(&netlink.Route{LinkIndex: peer.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("::/0")), Gw: e.n.cfg.Gateway6.AsSlice()})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("default route via %s: %w", e.n.cfg.Gateway6, err)
		}
	}
	return nil
}

// Detach removes the endpoint from its network: its veth pair goes (the
// interface inside the namespace with it), its address is released and
// its names no longer resolve. Detaching twice is not an error.
func (e *Endpoint) Detach() error {
	m := e.n.m
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	err := e.detach()
	m.mu.Unlock()
	m.stopResolvers()
	return err
}

// Release detaches an endpoint whose namespace is gone or going (its
// container has exited): its names stop resolving at once, and its
// addresses are free again once its veth is gone. The veth is left to
// the kernel, which removes it with the namespace, in the same batch as
// the namespace's loopback; removing it here would hold the kernel's
// RTNL lock for its RCU grace periods (tens of milliseconds on small
// machines) and stall every attach meanwhile. If the namespace is still
// held elsewhere after releaseTimeout, the veth is removed explicitly.
// Releasing twice, or after Detach, is not an error.
func (e *Endpoint) Release() {
	m := e.n.m
	m.mu.Lock()
	if m.closed || !e.n.endpoints[e] {
		m.mu.Unlock()
		return
	}
	e.forget()
	m.pending.Add(1)
	nl, done := m.hub.nl, m.done
	m.mu.Unlock()
	m.stopResolvers()
	go func() {
		defer m.pending.Done()
		deadline := time.Now().Add(releaseTimeout)
		for wait := time.Millisecond; ; wait = min(2*wait, 100*time.Millisecond) {
			_, err := nl.LinkByName(e.hubName)
			var gone netlink.LinkNotFoundError
			if errors.As(err, &gone) {
				break
			}
			if time.Now().After(deadline) {
				if err := nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.hubName}}); err != nil && !linkGone(err) {
					m.log.Debug("release endpoint: remove veth", "network", e.n.cfg.Name, "ip", e.ip, "err", err)
				}
				break
			}
			select {
			case <-done:
				return // Close removes the hub, and every veth with it
			case <-time.After(wait):
			}
		}
		m.mu.Lock()
		e.releaseAddrs()
		m.mu.Unlock()
	}()
}

// releaseTimeout is how long Release waits for the kernel to remove an
// endpoint's veth with its namespace before removing it itself.
const releaseTimeout = 10 * time.Second

// forget takes e out of its network: no name, no resolver reference.
// m.mu is held.
func (e *Endpoint) forget() {
	n := e.n
	delete(n.endpoints, e)
	changed := false
	for p, ent := range n.m.nats {
		if ent.e == e {
			delete(n.m.nats, p)
			n.m.orphans = append(n.m.orphans, p)
			changed = true
		}
	}
	if changed {
		if err := n.m.syncNATs(); err != nil {
			n.m.log.Debug("endpoint gone: host rules", "err", err)
		}
	}
	if r := n.m.resolvers[e.nsIno]; r != nil && n.cfg.Name != DefaultName {
		if r.refs--; r.refs == 0 {
			// Stopped once m.mu is released: a query being answered
			// waits for m.mu, and stopping waits for the query.
			n.m.stopping = append(n.m.stopping, r)
			delete(n.m.resolvers, e.nsIno)
		}
	}
}

// releaseAddrs returns e's addresses to the pools. m.mu is held.
func (e *Endpoint) releaseAddrs() {
	e.n.pool.release(e.ip)
	if e.ip6.IsValid() {
		e.n.pool6.release(e.ip6)
	}
}

func (e *Endpoint) detach() error {
	n := e.n
	if !n.endpoints[e] {
		return nil
	}
	err := n.m.hub.nl.LinkDel(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: e.hubName}})
	if err != nil && !linkGone(err) {
		// The namespace may be gone already, and the pair with it.
		if _, lerr := n.m.hub.nl.LinkByName(e.hubName); lerr == nil {
			return fmt.Errorf("network %s: detach %s: %w", n.cfg.Name, e.ip, err)
		}
	}
	// The addresses go back only once the veth that held them is gone.
	e.forget()
	e.releaseAddrs()
	n.m.log.Debug("endpoint detached", "network", n.cfg.Name, "ip", e.ip)
	return nil
}

// linkGone reports whether a LinkDel failed because the link is not
// there: ENODEV, or EINVAL when the name lookup before it found nothing
// and the request went out without an index.
func linkGone(err error) bool {
	return errors.Is(err, unix.ENODEV) || errors.Is(err, unix.EINVAL)
}

func namespaceDo(h *hub, fn func() error) error { return namespace.Do(fn, h.ns) }
