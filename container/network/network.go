package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// DefaultName is the name of the default network, which exists without
// being created, as Docker's "bridge" does. Like Docker's, it has no
// name resolution between containers.
const DefaultName = "bridge"

// DefaultMTU is the MTU of a network whose Config leaves it zero.
const DefaultMTU = 1500

// DefaultLockFile is the file a Manager locks (flock) while it chooses a
// subnet and adds its host route, so that berth processes on one machine
// never pick the same subnet.
const DefaultLockFile = "/run/berth/network.lock"

// DefaultPools are the ranges subnets are taken from when a Config names
// none, in order, as Docker's default address pools: 172.17.0.0/16 to
// 172.31.0.0/16, then 192.168.0.0/16 in /20s. A candidate that overlaps
// any route of the host is skipped.
var DefaultPools = func() []netip.Prefix {
	var out []netip.Prefix
	for i := 17; i <= 31; i++ {
		out = append(out, netip.MustParsePrefix("172."+strconv.Itoa(i)+".0.0/16"))
	}
	for i := 0; i < 256; i += 16 {
		out = append(out, netip.MustParsePrefix("192.168."+strconv.Itoa(i)+".0/20"))
	}
	return out
}()

// Config describes a network, as `docker network create` does.
type Config struct {
	// Name is the network's name: 1 to 64 of [a-zA-Z0-9_.-], starting
	// with a letter or digit.
	Name string
	// Subnet is the IPv4 subnet (--subnet), between /8 and /30. Zero
	// picks the first of DefaultPools that overlaps no route of the host.
	Subnet netip.Prefix
	// Gateway is the containers' default gateway (--gateway), an address
	// of Subnet. Zero means the subnet's first address.
	Gateway netip.Addr
	// Subnet6, if set, makes the network dual-stack (--ipv6 --subnet):
	// an IPv6 subnet between /48 and /120 whose addresses the containers
	// also get. There is no IPv6 egress (no NAT66): containers reach each
	// other and the host over IPv6.
	Subnet6 netip.Prefix
	// Gateway6 is the IPv6 gateway, an address of Subnet6; zero means
	// the subnet's first address after its network address.
	Gateway6 netip.Addr
	// MTU of the bridge and the containers' interfaces, 68 to 65535.
	// Zero means DefaultMTU.
	MTU int
	// Internal networks (--internal) have no way out: their containers
	// reach each other and the host's address on the network, nothing
	// else.
	Internal bool
	// Labels are free-form metadata (--label).
	Labels map[string]string
}

// Options configure a Manager. The zero value is ready to use.
type Options struct {
	// Logger receives debug logs; nil discards them.
	Logger *slog.Logger
	// LockFile is locked while a subnet is chosen; empty means
	// DefaultLockFile.
	LockFile string
	// Pools are the ranges automatic subnets come from; nil means
	// DefaultPools.
	Pools []netip.Prefix
	// DNSUpstreams are the servers the embedded DNS server forwards the
	// names it does not know to, from the host's side. nil means the
	// nameservers of the host's /etc/resolv.conf; an empty, non-nil
	// slice forwards nothing (such queries are answered REFUSED).
	DNSUpstreams []netip.AddrPort
	// ResolvConf is the host's resolver configuration, read for
	// DNSUpstreams and for containers' /etc/resolv.conf; empty means
	// /etc/resolv.conf.
	ResolvConf string
	// NodePortAddrs are the host's addresses services' NodePorts are
	// published on (kube-proxy's --nodeport-addresses); nil means
	// 127.0.0.1 only, and the unspecified address 0.0.0.0 means every
	// address.
	NodePortAddrs []netip.Addr
}

func (o *Options) resolvConfPath() string {
	if o.ResolvConf == "" {
		return "/etc/resolv.conf"
	}
	return o.ResolvConf
}

// A Manager owns this process's networks. Its bridges, veths and rules
// live in a network namespace (the hub) that only this process holds, so
// they go when the process dies, kill -9 included; what the host sees of
// them (one veth, its address and routes to the subnets) goes with the
// hub. Close removes everything at once. A Manager is safe for concurrent
// use.
type Manager struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	hub      *hub
	networks map[string]*Network
	nextBr   int
	nextVeth uint64
	closed   bool

	pending     sync.WaitGroup            // Release's background waits
	done        chan struct{}             // closed by Close
	nats        map[*Publication]natEntry // Endpoint.Publish's
	orphans     []*Publication            // to close once mu is released
	resolvers   map[uint64]*resolver      // by namespace inode
	stopping    []*resolver               // to stop once mu is released
	hostDNSOnce sync.Once
	hostDNS     []netip.AddrPort
	services    map[string]*service  // SetService's, by name
	nextSvc     int                  // the last service's id
	records     map[string]DNSRecord // SetDNS's, by lower-case name
	zones       []string             // SetDNSZones's
	overlay     *overlay             // Network.SetOverlay's
}

// New returns a Manager. Nothing is made until the first network is
// needed.
func New(opts Options) *Manager {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.LockFile == "" {
		opts.LockFile = DefaultLockFile
	}
	if opts.Pools == nil {
		opts.Pools = DefaultPools
	}
	if len(opts.NodePortAddrs) == 0 {
		opts.NodePortAddrs = []netip.Addr{netip.AddrFrom4([4]byte{127, 0, 0, 1})}
	}
	return &Manager{opts: opts, log: log, networks: map[string]*Network{}, resolvers: map[uint64]*resolver{}, nats: map[*Publication]natEntry{}, done: make(chan struct{}), services: map[string]*service{}, records: map[string]DNSRecord{}}
}

var nameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,63}$`)

// A Network is a bridge that containers attach to. Its methods are safe
// for concurrent use.
type Network struct {
	m          *Manager
	cfg        Config
	bridgeName string
	bridge     netlink.Link
	hostAddr   netip.Addr // the host's address on the network
	hostAddr6  netip.Addr // and its IPv6 address, on a dual-stack one
	pool       *pool
	pool6      *pool
	endpoints  map[*Endpoint]bool
	removed    bool
}

// Name returns the network's name.
func (n *Network) Name() string { return n.cfg.Name }

// Config returns the network's configuration, with the subnet, gateway
// and MTU that were chosen filled in.
func (n *Network) Config() Config {
	c := n.cfg
	c.Labels = maps.Clone(c.Labels)
	return c
}

// HostAddr returns the host's address on the network: the embedding
// process and other host processes reach containers from it, and
// containers reach the host (published ports included) at it.
func (n *Network) HostAddr() netip.Addr { return n.hostAddr }

// HostAddr6 returns the host's IPv6 address on a dual-stack network, or
// the zero Addr.
func (n *Network) HostAddr6() netip.Addr { return n.hostAddr6 }

// HostLink returns the name of the host's end of the hub's uplink (the
// one interface the host sees of this Manager's networks), or "" before
// the first network is made.
func (m *Manager) HostLink() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hub == nil {
		return ""
	}
	return m.hub.hostLink.Attrs().Name
}

// Endpoints returns the endpoints attached to the network.
func (n *Network) Endpoints() []*Endpoint {
	n.m.mu.Lock()
	defer n.m.mu.Unlock()
	return slices.Collect(maps.Keys(n.endpoints))
}

// Create makes a network. It fails with ErrExists if one of that name
// exists, ErrInvalidConfig for a configuration that cannot be made, and
// ErrSubnetOverlap if the subnet overlaps a route of the host (another
// berth process's networks included). A failure leaves nothing behind.
func (m *Manager) Create(ctx context.Context, cfg Config) (*Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.create(ctx, cfg)
}

func (m *Manager) create(ctx context.Context, cfg Config) (_ *Network, err error) {
	if m.closed {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := validate(&cfg); err != nil {
		return nil, err
	}
	if _, ok := m.networks[cfg.Name]; ok {
		return nil, fmt.Errorf("%w: network %q", ErrExists, cfg.Name)
	}
	if m.hub == nil {
		if m.hub, err = newHub(); err != nil {
			m.hub = nil
			return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
		}
	}
	unlock, err := lockFile(m.opts.LockFile)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	defer unlock()
	routes, err := m.hub.hostRoutesExcept(0)
	if err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	if !cfg.Subnet.IsValid() {
		for _, p := range m.opts.Pools {
			if !slices.ContainsFunc(routes, func(r netip.Prefix) bool { return overlaps(r, p) }) {
				cfg.Subnet = p
				break
			}
		}
		if !cfg.Subnet.IsValid() {
			return nil, fmt.Errorf("%w: network %s: every pool subnet overlaps a host route", ErrSubnetOverlap, cfg.Name)
		}
		if err := validate(&cfg); err != nil {
			return nil, fmt.Errorf("%w (from Options.Pools)", err)
		}
	} else if i := slices.IndexFunc(routes, func(r netip.Prefix) bool { return overlaps(r, cfg.Subnet) }); i >= 0 {
		return nil, fmt.Errorf("%w: network %s: subnet %s overlaps the host's route to %s", ErrSubnetOverlap, cfg.Name, cfg.Subnet, routes[i])
	}
	if cfg.Subnet6.IsValid() {
		if i := slices.IndexFunc(routes, func(r netip.Prefix) bool { return overlaps(r, cfg.Subnet6) }); i >= 0 {
			return nil, fmt.Errorf("%w: network %s: subnet %s overlaps the host's route to %s", ErrSubnetOverlap, cfg.Name, cfg.Subnet6, routes[i])
		}
		if !m.hub.ipv6 {
			return nil, fmt.Errorf("%w: network %s: IPv6 is disabled on this host", ErrInvalidConfig, cfg.Name)
		}
		if !cfg.Gateway6.IsValid() {
			cfg.Gateway6 = cfg.Subnet6.Addr().Next()
		}
	}
	if !cfg.Gateway.IsValid() {
		cfg.Gateway = cfg.Subnet.Addr().Next()
	}
	n := &Network{m: m, cfg: cfg, endpoints: map[*Endpoint]bool{}}
	n.hostAddr = lastAddr(cfg.Subnet).Prev()
	if n.hostAddr == cfg.Gateway {
		n.hostAddr = n.hostAddr.Prev()
	}
	n.pool = newPool(cfg.Subnet, cfg.Gateway, n.hostAddr)
	if cfg.Subnet6.IsValid() {
		n.hostAddr6 = lastAddr(cfg.Subnet6)
		if n.hostAddr6 == cfg.Gateway6 {
			n.hostAddr6 = n.hostAddr6.Prev()
		}
		n.pool6 = newPool(cfg.Subnet6, cfg.Gateway6, n.hostAddr6)
	}
	m.nextBr++
	n.bridgeName = "br" + strconv.Itoa(m.nextBr)
	defer func() {
		if err != nil {
			n.teardown()
		}
	}()
	if err := n.setup(); err != nil {
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	m.networks[cfg.Name] = n
	if err := m.syncRules(); err != nil {
		delete(m.networks, cfg.Name)
		m.syncRules()
		return nil, fmt.Errorf("network %s: %w", cfg.Name, err)
	}
	m.log.Debug("network created", "name", cfg.Name, "subnet", cfg.Subnet, "bridge", n.bridgeName)
	return n, nil
}

func validate(cfg *Config) error {
	if !nameRE.MatchString(cfg.Name) {
		return fmt.Errorf("%w: network name %q: want 1-64 of [a-zA-Z0-9_.-], starting with a letter or digit", ErrInvalidConfig, cfg.Name)
	}
	if cfg.Subnet.IsValid() {
		if !cfg.Subnet.Addr().Is4() {
			return fmt.Errorf("%w: network %s: subnet %s is not IPv4", ErrInvalidConfig, cfg.Name, cfg.Subnet)
		}
		if cfg.Subnet.Bits() < 8 || cfg.Subnet.Bits() > 29 {
			return fmt.Errorf("%w: network %s: subnet %s: want a prefix length between 8 and 29 (a /30 leaves no address after the gateway and the host's)", ErrInvalidConfig, cfg.Name, cfg.Subnet)
		}
		if cfg.Subnet != cfg.Subnet.Masked() {
			return fmt.Errorf("%w: network %s: subnet %s has host bits set (did you mean %s?)", ErrInvalidConfig, cfg.Name, cfg.Subnet, cfg.Subnet.Masked())
		}
		if a := cfg.Subnet.Addr(); a.IsLoopback() || a.IsMulticast() || a.IsUnspecified() || a.IsLinkLocalUnicast() {
			return fmt.Errorf("%w: network %s: subnet %s is not a unicast range", ErrInvalidConfig, cfg.Name, cfg.Subnet)
		}
	}
	if cfg.Gateway.IsValid() {
		if !cfg.Subnet.IsValid() {
			return fmt.Errorf("%w: network %s: a gateway needs a subnet", ErrInvalidConfig, cfg.Name)
		}
		if !cfg.Subnet.Contains(cfg.Gateway) || cfg.Gateway == cfg.Subnet.Addr() || cfg.Gateway == lastAddr(cfg.Subnet) {
			return fmt.Errorf("%w: network %s: gateway %s is not a host address of %s", ErrInvalidConfig, cfg.Name, cfg.Gateway, cfg.Subnet)
		}
	}
	if cfg.Subnet6.IsValid() {
		if !cfg.Subnet6.Addr().Is6() || cfg.Subnet6.Addr().Is4In6() {
			return fmt.Errorf("%w: network %s: subnet6 %s is not IPv6", ErrInvalidConfig, cfg.Name, cfg.Subnet6)
		}
		if cfg.Subnet6.Bits() < 48 || cfg.Subnet6.Bits() > 120 {
			return fmt.Errorf("%w: network %s: subnet6 %s: want a prefix length between 48 and 120", ErrInvalidConfig, cfg.Name, cfg.Subnet6)
		}
		if cfg.Subnet6 != cfg.Subnet6.Masked() {
			return fmt.Errorf("%w: network %s: subnet6 %s has host bits set (did you mean %s?)", ErrInvalidConfig, cfg.Name, cfg.Subnet6, cfg.Subnet6.Masked())
		}
		if a := cfg.Subnet6.Addr(); a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() || a.IsUnspecified() {
			return fmt.Errorf("%w: network %s: subnet6 %s is not a unicast range", ErrInvalidConfig, cfg.Name, cfg.Subnet6)
		}
	}
	if cfg.Gateway6.IsValid() && (!cfg.Subnet6.IsValid() || !cfg.Subnet6.Contains(cfg.Gateway6) || cfg.Gateway6 == cfg.Subnet6.Addr()) {
		return fmt.Errorf("%w: network %s: gateway6 %s is not a host address of subnet6 %s", ErrInvalidConfig, cfg.Name, cfg.Gateway6, cfg.Subnet6)
	}
	if cfg.MTU == 0 {
		cfg.MTU = DefaultMTU
	}
	if cfg.MTU < 68 || cfg.MTU > 65535 {
		return fmt.Errorf("%w: network %s: MTU %d out of 68-65535", ErrInvalidConfig, cfg.Name, cfg.MTU)
	}
	cfg.Labels = maps.Clone(cfg.Labels)
	return nil
}

// setup makes the bridge in the hub with the gateway address, the route
// back to the host's address, and the host's address and route.
func (n *Network) setup() error {
	h := n.m.hub
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridgeName, MTU: n.cfg.MTU}}
	if err := h.nl.LinkAdd(br); err != nil {
		return fmt.Errorf("create bridge: %w", err)
	}
	var err error
	if n.bridge, err = h.nl.LinkByName(n.bridgeName); err != nil {
		return fmt.Errorf("bridge: %w", err)
	}
	if err := h.nl.AddrAdd(n.bridge, &netlink.Addr{IPNet: addrNet(n.cfg.Gateway, n.cfg.Subnet.Bits())}); err != nil {
		return fmt.Errorf("gateway address %s: %w", n.cfg.Gateway, err)
	}
	if err := h.nl.LinkSetUp(n.bridge); err != nil {
		return fmt.Errorf("set bridge up: %w", err)
	}
	if err := h.nl.RouteAdd(&netlink.Route{LinkIndex: h.up.Attrs().Index, Dst: addrNet(n.hostAddr, 32), Scope: netlink.SCOPE_LINK}); err != nil {
		return fmt.Errorf("route to the host's address %s: %w", n.hostAddr, err)
	}
	err = namespaceDo(h, func() error {
		if err := writeSysctl("ipv4/conf/"+n.bridgeName+"/proxy_arp", "1"); err != nil {
			return err
		}
		return writeSysctl("ipv4/neigh/"+n.bridgeName+"/proxy_delay", "0")
	})
	if err != nil {
		return err
	}
	if err := h.host.AddrAdd(h.hostLink, &netlink.Addr{IPNet: addrNet(n.hostAddr, 32), Flags: unix.IFA_F_NOPREFIXROUTE}); err != nil {
		return fmt.Errorf("host address %s: %w", n.hostAddr, err)
	}
	err = h.host.RouteAdd(&netlink.Route{
		LinkIndex: h.hostLink.Attrs().Index, Dst: ipNet(n.cfg.Subnet), Src: n.hostAddr.AsSlice(),
		Scope: netlink.SCOPE_LINK, Protocol: unix.RTPROT_STATIC,
	})
	if err != nil {
		return fmt.Errorf("host route to %s: %w", n.cfg.Subnet, err)
	}
	if n.cfg.Subnet6.IsValid() {
		return n.setup6()
	}
	return nil
}

// setup6 adds a dual-stack network's IPv6 side: the gateway on the
// bridge, which answers neighbour solicitations for the host's address
// (proxy NDP), the host's address on its end of the uplink, and routes
// both ways over the uplink's static link-local addresses.
func (n *Network) setup6() error {
	h := n.m.hub
	if err := h.nl.AddrAdd(n.bridge, &netlink.Addr{IPNet: addrNet(n.cfg.Gateway6, n.cfg.Subnet6.Bits()), Flags: unix.IFA_F_NODAD}); err != nil {
		return fmt.Errorf("gateway address %s: %w", n.cfg.Gateway6, err)
	}
	err := namespaceDo(h, func() error {
		if err := writeSysctl("ipv6/conf/"+n.bridgeName+"/proxy_ndp", "1"); err != nil {
			return err
		}
		return writeSysctl("ipv6/neigh/"+n.bridgeName+"/proxy_delay", "0")
	})
	if err != nil {
		return err
	}
	err = h.nl.NeighAdd(&netlink.Neigh{LinkIndex: n.bridge.Attrs().Index, Family: netlink.FAMILY_V6, Flags: netlink.NTF_PROXY, IP: n.hostAddr6.AsSlice()})
	if err != nil {
		return fmt.Errorf("proxy NDP for %s: %w", n.hostAddr6, err)
	}
	if err := h.nl.RouteAdd(&netlink.Route{LinkIndex: h.up.Attrs().Index, Dst: addrNet(n.hostAddr6, 128), Gw: hostLL.AsSlice()}); err != nil {
		return fmt.Errorf("route to the host's address %s: %w", n.hostAddr6, err)
	}
	if err := h.host.AddrAdd(h.hostLink, &netlink.Addr{IPNet: addrNet(n.hostAddr6, 128), Flags: unix.IFA_F_NOPREFIXROUTE | unix.IFA_F_NODAD}); err != nil {
		return fmt.Errorf("host address %s: %w", n.hostAddr6, err)
	}
	err = h.host.RouteAdd(&netlink.Route{
		LinkIndex: h.hostLink.Attrs().Index, Dst: ipNet(n.cfg.Subnet6), Gw: hubLL.AsSlice(), Src: n.hostAddr6.AsSlice(), Protocol: unix.RTPROT_STATIC,
	})
	if err != nil {
		return fmt.Errorf("host route to %s: %w", n.cfg.Subnet6, err)
	}
	return nil
}

// teardown removes what setup made that is visible outside the hub and
// the bridge (its veths go with it).
func (n *Network) teardown() error {
	h := n.m.hub
	var errs []error
	if n.hostAddr.IsValid() {
		// The route goes with the address's removal only when it was
		// made from it; remove both. The hub's route back to the host's
		// address is on the uplink, which stays: a later network on the
		// same subnet adds it again.
		h.host.RouteDel(&netlink.Route{LinkIndex: h.hostLink.Attrs().Index, Dst: ipNet(n.cfg.Subnet)})
		if err := h.nl.RouteDel(&netlink.Route{LinkIndex: h.up.Attrs().Index, Dst: addrNet(n.hostAddr, 32), Scope: netlink.SCOPE_LINK}); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove the hub's route to %s: %w", n.hostAddr, err))
		}
		if err := h.host.AddrDel(h.hostLink, &netlink.Addr{IPNet: addrNet(n.hostAddr, 32)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove host address %s: %w", n.hostAddr, err))
		}
	}
	if n.hostAddr6.IsValid() {
		h.host.RouteDel(&netlink.Route{LinkIndex: h.hostLink.Attrs().Index, Dst: ipNet(n.cfg.Subnet6), Gw: hubLL.AsSlice()})
		if err := h.nl.RouteDel(&netlink.Route{LinkIndex: h.up.Attrs().Index, Dst: addrNet(n.hostAddr6, 128), Gw: hostLL.AsSlice()}); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("remove the hub's route to %s: %w", n.hostAddr6, err))
		}
		if err := h.host.AddrDel(h.hostLink, &netlink.Addr{IPNet: addrNet(n.hostAddr6, 128)}); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("remove host address %s: %w", n.hostAddr6, err))
		}
	}
	if n.bridge != nil {
		if err := h.nl.LinkDel(n.bridge); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove bridge: %w", err))
		}
	}
	return errors.Join(errs...)
}

// networkList returns the networks, sorted by name. m.mu is held.
func (m *Manager) networkList() []*Network {
	out := slices.Collect(maps.Values(m.networks))
	slices.SortFunc(out, func(a, b *Network) int {
		switch {
		case a.cfg.Name < b.cfg.Name:
			return -1
		case a.cfg.Name > b.cfg.Name:
			return 1
		}
		return 0
	})
	return out
}

// Get returns the network named name; DefaultName is created on first
// use. It fails with ErrNotFound.
func (m *Manager) Get(ctx context.Context, name string) (*Network, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	if n, ok := m.networks[name]; ok {
		return n, nil
	}
	if name == DefaultName {
		return m.create(ctx, Config{Name: DefaultName})
	}
	return nil, fmt.Errorf("%w: network %q", ErrNotFound, name)
}

// List returns the networks made so far, sorted by name (the default
// network only once it has been used).
func (m *Manager) List() []*Network {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.networkList()
}

// Remove removes the network named name. It fails with ErrInUse while
// endpoints are attached, and with ErrNotFound.
func (m *Manager) Remove(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	n, ok := m.networks[name]
	if !ok {
		return fmt.Errorf("%w: network %q", ErrNotFound, name)
	}
	if len(n.endpoints) > 0 {
		return fmt.Errorf("%w: network %s has %d endpoints attached", ErrInUse, name, len(n.endpoints))
	}
	var err error
	if m.overlay != nil && m.overlay.n == n {
		err = m.dropOverlay() // the rules are synced below
	}
	delete(m.networks, name)
	n.removed = true
	err = errors.Join(err, n.teardown())
	if rerr := m.syncRules(); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if err != nil {
		return fmt.Errorf("remove network %s: %w", name, err)
	}
	return nil
}

// Close detaches every endpoint, removes every network and the hub. The
// Manager cannot be used afterwards.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	m.mu.Unlock()
	m.pending.Wait() // Release's waits use the hub
	m.mu.Lock()
	defer m.stopResolvers()
	defer m.mu.Unlock()
	var errs []error
	for _, n := range m.networks {
		for e := range n.endpoints {
			errs = append(errs, e.detach())
		}
		errs = append(errs, n.teardown())
	}
	m.networks = nil
	for _, r := range m.resolvers {
		m.stopping = append(m.stopping, r)
	}
	m.resolvers = nil
	// A relay left running would dial addresses the host no longer
	// routes to the hub.
	for p := range m.nats {
		m.orphans = append(m.orphans, p)
	}
	m.nats = map[*Publication]natEntry{}
	for _, s := range m.services {
		m.orphans = append(m.orphans, s.pubs...)
		if m.hub != nil {
			errs = append(errs, m.hub.removeServiceRoute(s.cfg.VIP))
		}
	}
	m.services = nil
	if m.hub != nil && m.overlay != nil {
		// Its socket is in the host: delete it now rather than when
		// the kernel gets to the hub's namespace.
		errs = append(errs, m.dropOverlay())
	}
	if m.hub != nil {
		errs = append(errs, m.hub.close())
		m.hub = nil
	}
	return errors.Join(errs...)
}

// syncRules makes the hub's and the host's firewall rules fit the
// networks. m.mu is held.
func (m *Manager) syncRules() error {
	return errors.Join(m.hub.syncRules(m.networkList(), m.overlay), m.syncHostRules())
}

// syncHostRules makes the host's table fit the networks and published
// ports (the hub's rules depend on the networks only). m.mu is held.
func (m *Manager) syncHostRules() error {
	return m.hub.syncHostRules(m.networkList(), m.natList())
}

// syncNATs makes the host table's local DNATs fit the published ports.
// m.mu is held.
func (m *Manager) syncNATs() error {
	return m.hub.syncNATs(m.networkList(), m.natList())
}

func (m *Manager) natList() []localNAT {
	var nats []localNAT
	for _, ent := range m.nats {
		nats = append(nats, ent.rules...)
	}
	return nats
}

// natEntry is a publication of Endpoint.Publish: its endpoint and its
// local DNATs.
type natEntry struct {
	e     *Endpoint
	rules []localNAT
}

// stopResolvers stops the resolvers whose last endpoint went and closes
// the publications whose endpoint or Manager went; m.mu must not be held.
func (m *Manager) stopResolvers() {
	m.mu.Lock()
	rs, ps := m.stopping, m.orphans
	m.stopping, m.orphans = nil, nil
	m.mu.Unlock()
	for _, r := range rs {
		r.stop()
	}
	for _, p := range ps {
		p.Close()
	}
}

// lockFile takes an exclusive flock on path (made if missing) and
// returns its release.
func lockFile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// Manager returns the Manager the network belongs to.
func (n *Network) Manager() *Manager { return n.m }
