package container

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/initproc"
	"github.com/berthlabs/berth/namespace"
)

// NetworkAttachment is one network a container joins (`docker run
// --network`, `docker network connect`). The container's name on the
// network (what other containers resolve) is its ID.
type NetworkAttachment struct {
	// Network is the network to join, from a network.Manager. Exactly one
	// of Network and CNI is set.
	Network *network.Network
	// CNI is a CNI network (network.LoadCNI) to join instead: its
	// plugins make the interface; Aliases, IP and MAC do not apply.
	// Published ports go to its portmap plugin when it is the first
	// network.
	CNI *network.CNI
	// Aliases are more names the container is resolved by on this
	// network (--network-alias).
	Aliases []string
	// IP is a fixed address (--ip); zero allocates one.
	IP netip.Addr
	// IP6 is a fixed IPv6 address on a dual-stack network (--ip6).
	IP6 netip.Addr
	// MAC is a fixed MAC address (--mac-address); nil derives one from
	// the IP address.
	MAC net.HardwareAddr
}

// checkNetworking refuses networks and ports the container cannot have.
func (s *Spec) checkNetworking(modes map[namespace.Kind]NamespaceMode) error {
	if len(s.Networks) > 0 && modes[namespace.Net] != NamespaceNew {
		return fmt.Errorf("%w: networks need a new network namespace (this container shares or joins one)", ErrInvalidSpec)
	}
	if len(s.Ports) > 0 && len(s.Networks) == 0 && !unprivileged() {
		return fmt.Errorf("%w: published ports need a network (Spec.Networks)", ErrInvalidSpec)
	}
	for i, a := range s.Networks {
		switch {
		case a.Network == nil && a.CNI == nil:
			return fmt.Errorf("%w: Networks[%d]: no network", ErrInvalidSpec, i)
		case a.Network != nil && a.CNI != nil:
			return fmt.Errorf("%w: Networks[%d]: both a network and a CNI network", ErrInvalidSpec, i)
		case a.CNI != nil && (len(a.Aliases) > 0 || a.IP.IsValid() || a.IP6.IsValid() || a.MAC != nil):
			return fmt.Errorf("%w: Networks[%d]: aliases, IP and MAC do not apply to CNI network %s", ErrInvalidSpec, i, a.CNI.Name())
		}
		for _, b := range s.Networks[:i] {
			if a.Network != nil && b.Network == a.Network || a.CNI != nil && b.CNI == a.CNI {
				return fmt.Errorf("%w: Networks[%d]: network given twice", ErrInvalidSpec, i)
			}
		}
	}
	for _, p := range s.Ports {
		if err := p.Validate(); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidSpec, err)
		}
	}
	return nil
}

// connect attaches the new network namespace of init (not yet running
// the workload) to the spec's networks, publishes its ports, and adds the
// /etc/hosts, /etc/hostname and /etc/resolv.conf that go with them to
// cfg. A failure undoes what it made.
func (c *Container) connect(ctx context.Context, cfg *initproc.Config) (err error) {
	ns, err := namespace.OpenPID(c.initPid, namespace.Net)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	defer ns.Close()
	defer func() {
		if err != nil {
			c.disconnect()
		}
	}()
	var addrs []netip.Addr
	var first *network.Endpoint
	for i, a := range c.spec.Networks {
		ifname := "eth" + strconv.Itoa(i)
		if a.CNI != nil {
			var ports []network.PortMapping
			if i == 0 {
				ports = c.spec.Ports
			}
			att, err := a.CNI.Attach(ctx, ns, ifname, ports)
			if err != nil {
				return err
			}
			c.cniAtts = append(c.cniAtts, att)
			for _, p := range att.IPs() {
				addrs = append(addrs, p.Addr())
			}
			continue
		}
		e, err := a.Network.Attach(ctx, ns, network.AttachOptions{
			Name: c.id, Aliases: a.Aliases, IP: a.IP, IP6: a.IP6, MAC: a.MAC, Interface: ifname,
		})
		if err != nil {
			return err
		}
		c.endpoints = append(c.endpoints, e)
		addrs = append(addrs, e.IP())
		if e.IP6().IsValid() {
			addrs = append(addrs, e.IP6())
		}
		if i == 0 {
			first = e
		}
	}
	if len(c.spec.Ports) > 0 && first != nil {
		if c.published, err = first.Publish(ctx, c.spec.Ports, c.rt.logger()); err != nil {
			return err
		}
	}
	var resolv []byte
	if len(c.endpoints) > 0 {
		resolv = network.ResolvConf(c.endpoints)
	} else {
		resolv = network.CNIResolvConf(c.cniAtts)
	}
	cfg.Files = append(cfg.Files,
		initproc.File{Target: "/etc/hosts", Content: network.HostsFile(cfg.Hostname, addrs), Mode: 0o644},
		initproc.File{Target: "/etc/hostname", Content: []byte(cfg.Hostname + "\n"), Mode: 0o644},
		initproc.File{Target: "/etc/resolv.conf", Content: resolv, Mode: 0o644},
	)
	return nil
}

// disconnect unpublishes the ports and releases the endpoints: the
// container's names stop resolving at once, and the veths go with its
// network namespace (init has exited, or is about to be killed). c.mu is
// held, or the container is not shared yet.
func (c *Container) disconnect() error {
	var errs []error
	if c.published != nil {
		errs = append(errs, c.published.Close())
		c.published = nil
	}
	for _, e := range c.endpoints {
		e.Release()
	}
	c.endpoints = nil
	for _, a := range c.cniAtts {
		errs = append(errs, a.Detach(context.Background()))
	}
	c.cniAtts = nil
	for _, f := range c.forwards {
		errs = append(errs, f.Close())
	}
	c.forwards = nil
	return errors.Join(errs...)
}

// CNIAttachments returns the container's attachments to CNI networks,
// in the order of Spec.Networks, while it runs.
func (c *Container) CNIAttachments() []*network.CNIAttachment {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.cniAtts)
}

// Endpoints returns the container's endpoints on its berth networks, in
// the order of Spec.Networks, while it runs.
func (c *Container) Endpoints() []*network.Endpoint {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.endpoints)
}

// Ports returns the container's published ports with the host ports
// that were bound (`docker port`), while it runs.
func (c *Container) Ports() []network.PortMapping {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.published == nil {
		if len(c.cniAtts) > 0 && c.state != Stopped {
			return slices.Clone(c.spec.Ports) // given to the CNI network's portmap
		}
		return nil
	}
	return c.published.Ports()
}

// netns opens the running container's network namespace.
func (c *Container) netns() (*namespace.Namespace, error) {
	c.mu.Lock()
	pid, st := c.initPid, c.state
	c.mu.Unlock()
	if st != Running && st != Paused || pid == 0 {
		return nil, fmt.Errorf("%s: %w", c.id, ErrNotRunning)
	}
	return namespace.OpenPID(pid, namespace.Net)
}

// Dial connects from the embedding process to address inside the
// container's network namespace, as network.Dial does: it works with
// any network mode, network none included, and reaches services bound to
// the container's 127.0.0.1. address must be an IP literal and a port.
func (c *Container) Dial(ctx context.Context, netw, address string) (net.Conn, error) {
	if c.rootlessNet() {
		return c.dialRootless(ctx, netw, address)
	}
	ns, err := c.netns()
	if err != nil {
		return nil, fmt.Errorf("dial: %w", err)
	}
	defer ns.Close()
	return network.Dial(ctx, ns, netw, address)
}

// PortForward listens on the host at listen ("127.0.0.1:0" for a free
// port) and connects each TCP connection it accepts to port on the
// container's loopback (127.0.0.1), like `kubectl port-forward`: no
// network or published port is needed. It ends with Close or when the
// container is deleted.
func (c *Container) PortForward(ctx context.Context, listen string, port uint16) (*network.Forwarder, error) {
	var f *network.Forwarder
	if c.rootlessNet() {
		if c.State() != Running {
			return nil, fmt.Errorf("port-forward: %s: %w", c.id, ErrNotRunning)
		}
		var err error
		if f, err = network.ForwardWith(ctx, listen, netip.AddrPortFrom(loopback4, port), c.dialInside); err != nil {
			return nil, err
		}
	} else {
		ns, err := c.netns()
		if err != nil {
			return nil, fmt.Errorf("port-forward: %w", err)
		}
		defer ns.Close()
		f, err = network.Forward(ctx, ns, listen, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
		if err != nil {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == Deleted {
		f.Close()
		return nil, fmt.Errorf("port-forward: %s: %w", c.id, ErrDeleted)
	}
	c.forwards = append(c.forwards, f)
	return f, nil
}
