package network

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"

	"github.com/berthlabs/berth/namespace"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// overlayHost is a "host" of TestOverlay: a network namespace the test
// made, with an address on a veth to the other host, and a Manager that
// runs in it (every call inside namespace.Do).
type overlayHost struct {
	ns   *namespace.Namespace
	addr netip.Addr
	m    *Manager
	n    *Network
}

// in runs fn on a thread in the host's namespace.
func (h *overlayHost) in(t testing.TB, fn func() error) {
	t.Helper()
	if err := namespace.Do(fn, h.ns); err != nil {
		t.Fatal(err)
	}
}

// newOverlayHosts makes two hosts joined by a veth (10.250.7.1 and
// .2/24), each with a Manager and a network on subnets[i].
func newOverlayHosts(t *testing.T, subnets ...string) []*overlayHost {
	t.Helper()
	var hosts []*overlayHost
	for i := range subnets {
		h := &overlayHost{ns: newNS(t), addr: netip.AddrFrom4([4]byte{10, 250, 7, byte(i + 1)})}
		hosts = append(hosts, h)
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "ovt-a", Namespace: netlink.NsFd(hosts[0].ns.Fd())},
		PeerName: "ovt-b", PeerNamespace: netlink.NsFd(hosts[1].ns.Fd())}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	lock := t.TempDir() + "/lock"
	for i, h := range hosts {
		nl, err := netlink.NewHandleAt(netns.NsHandle(h.ns.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"lo", []string{"ovt-a", "ovt-b"}[i]} {
			l, err := nl.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if name != "lo" {
				if err := nl.AddrAdd(l, &netlink.Addr{IPNet: addrNet(h.addr, 24)}); err != nil {
					t.Fatal(err)
				}
			}
			if err := nl.LinkSetUp(l); err != nil {
				t.Fatal(err)
			}
		}
		nl.Close()
		h.in(t, func() error {
			h.m = New(Options{LockFile: lock, DNSUpstreams: []netip.AddrPort{}})
			h.n, err = h.m.Create(context.Background(), Config{Name: "pods", Subnet: netip.MustParsePrefix(subnets[i])})
			return err
		})
		t.Cleanup(func() {
			h.in(t, func() error { return h.m.Close() })
		})
	}
	return hosts
}

// peerOf is h as a Peer of the others.
func peerOf(name string, h *overlayHost) Peer {
	return Peer{Name: name, Addr: h.addr, Subnet: h.n.Config().Subnet}
}

// serveSource accepts on l and writes each connection's source address.
func serveSource(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, c.RemoteAddr().(*net.TCPAddr).IP.String())
			c.Close()
		}
	}()
}

// threadFile reads a file of /proc/thread-self/net, so that it shows the
// namespace of the calling thread.
func threadFile(name string) (string, error) {
	b, err := os.ReadFile("/proc/thread-self/net/" + name)
	return string(b), err
}

// Two hosts in namespaces of the test, each with a Manager and a
// network, joined by overlays: a container of one reaches a container
// of the other by its address, without NAT; the host reaches the other
// host's containers; a service's backend may be the other host's
// container; removing the peer removes the routes; Close leaves no
// tunnel, route or socket in the host.
func TestOverlay(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	hosts := newOverlayHosts(t, "10.244.1.0/24", "10.244.2.0/24")
	a, b := hosts[0], hosts[1]
	var epA, epB *Endpoint
	cA, cB := newNS(t), newNS(t)
	a.in(t, func() (err error) { epA, err = a.n.Attach(ctx, cA, AttachOptions{}); return err })
	b.in(t, func() (err error) { epB, err = b.n.Attach(ctx, cB, AttachOptions{}); return err })
	l, err := Listen(ctx, cB, "tcp", netip.AddrPortFrom(epB.IP(), 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveSource(l)
	target := netip.AddrPortFrom(epB.IP(), 8080).String()

	// Without the overlay, A's container cannot reach B's (host A has
	// no route there).
	if got, err := fetchName(ctx, cA, target); err == nil {
		t.Fatalf("before the overlay, %s answered %q", target, got)
	}

	a.in(t, func() error {
		return a.n.SetOverlay(ctx, OverlayConfig{Local: a.addr, Peers: []Peer{peerOf("b", b)}})
	})
	b.in(t, func() error {
		return b.n.SetOverlay(ctx, OverlayConfig{Local: b.addr, Peers: []Peer{peerOf("a", a)}})
	})
	if got, err := fetchName(ctx, cA, target); err != nil || got != epA.IP().String() {
		t.Fatalf("container A → container B: %q, %v; want B to see A's own address %s", got, err, epA.IP())
	}
	a.in(t, func() error {
		got, err := fetchName(ctx, nil, target)
		if err != nil || got != a.n.HostAddr().String() {
			t.Errorf("host A → container B: %q, %v; want the host's address %s on its network", got, err, a.n.HostAddr())
		}
		return nil
	})
	if c, ok := a.n.Overlay(); !ok || c.Port != DefaultOverlayPort || c.VNI != DefaultOverlayVNI || c.MTU != DefaultOverlayMTU || len(c.Peers) != 1 {
		t.Errorf("Overlay() = %+v, %v", c, ok)
	}

	// A service on A whose backend is B's container: masqueraded
	// behind A's tunnel address, which B routes back to A.
	vip := netip.MustParseAddr("10.96.7.10")
	a.in(t, func() error {
		return a.m.SetService(ctx, ServiceConfig{Name: "web", VIP: vip,
			Ports: []ServicePort{{Port: 80, Backends: []netip.AddrPort{netip.AddrPortFrom(epB.IP(), 8080)}}}})
	})
	if got, err := fetchName(ctx, cA, vip.String()+":80"); err != nil || got != "10.244.1.0" {
		t.Fatalf("container A → VIP → container B: %q, %v; want the source 10.244.1.0 (A's tunnel address)", got, err)
	}

	// (NodePorts on a host's address, Options.NodePortAddrs, are tested
	// where each host is a process: the relay dials from the process's
	// namespace, not the thread's.)

	// Bad input: nothing changes.
	for _, tc := range []struct {
		cfg  OverlayConfig
		want error
		in   string
	}{
		{OverlayConfig{Local: a.addr, Peers: []Peer{{Name: "x", Addr: b.addr, Subnet: netip.MustParsePrefix("10.244.1.0/25")}}}, ErrSubnetOverlap, "network pods's"},
		{OverlayConfig{Local: a.addr, Peers: []Peer{peerOf("b", b), {Name: "c", Addr: netip.MustParseAddr("10.250.7.3"), Subnet: netip.MustParsePrefix("10.244.2.128/25")}}}, ErrSubnetOverlap, "peer b's"},
		{OverlayConfig{Local: a.addr, Peers: []Peer{{Name: "x", Addr: b.addr, Subnet: netip.MustParsePrefix("10.250.7.0/24")}}}, ErrSubnetOverlap, "host's route"},
		{OverlayConfig{Local: a.addr, Peers: []Peer{peerOf("b", b), peerOf("b", b)}}, ErrInvalidConfig, "unique"},
		{OverlayConfig{Local: a.addr, Peers: []Peer{{Name: "x", Addr: a.addr, Subnet: netip.MustParsePrefix("10.244.9.0/24")}}}, ErrInvalidConfig, "another host's"},
		{OverlayConfig{Local: a.addr, Peers: []Peer{{Name: "x", Addr: b.addr, Subnet: netip.MustParsePrefix("10.244.9.1/24")}}}, ErrInvalidConfig, "host bits"},
		{OverlayConfig{Local: netip.MustParseAddr("127.0.0.1")}, ErrInvalidConfig, "local address"},
		{OverlayConfig{Local: a.addr, VNI: 1 << 24}, ErrInvalidConfig, "VNI"},
		{OverlayConfig{Local: a.addr, MTU: 100}, ErrInvalidConfig, "MTU"},
	} {
		a.in(t, func() error {
			err := a.n.SetOverlay(ctx, tc.cfg)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("SetOverlay(%+v) = %v, want %v naming %q", tc.cfg, err, tc.want, tc.in)
			}
			return nil
		})
	}
	a.in(t, func() error {
		other, err := a.m.Create(ctx, Config{Name: "other", Subnet: netip.MustParsePrefix("10.244.5.0/24")})
		if err != nil {
			return err
		}
		if err := other.SetOverlay(ctx, OverlayConfig{Local: a.addr}); !errors.Is(err, ErrInUse) {
			t.Errorf("a second network's overlay: %v, want ErrInUse", err)
		}
		internal, err := a.m.Create(ctx, Config{Name: "internal", Internal: true, Subnet: netip.MustParsePrefix("10.244.6.0/24")})
		if err != nil {
			return err
		}
		if err := internal.SetOverlay(ctx, OverlayConfig{Local: a.addr}); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("an internal network's overlay: %v, want ErrInvalidConfig", err)
		}
		return errors.Join(a.m.Remove(ctx, "other"), a.m.Remove(ctx, "internal"))
	})
	if got, err := fetchName(ctx, cA, target); err != nil || got != epA.IP().String() {
		t.Fatalf("after the refused changes, container A → container B: %q, %v", got, err)
	}

	// Without its peer, A routes B's subnet nowhere.
	a.in(t, func() error { return a.n.SetOverlay(ctx, OverlayConfig{Local: a.addr}) })
	// (The hub asks the host for the address, which does not answer:
	// the dial fails once the hub gives up asking, in about 3 s.)
	if got, err := fetchName(ctx, cA, target); err == nil {
		t.Fatalf("without the peer, %s answered %q", target, got)
	}
	a.in(t, func() error {
		routes, err := netlink.RouteGet(epB.IP().AsSlice())
		if err == nil && len(routes) > 0 && routes[0].LinkIndex == a.m.hub.hostLink.Attrs().Index {
			t.Errorf("host A still routes %s into its hub", epB.IP())
		}
		return nil
	})

	// Close: nothing of the overlay in either host.
	epA.Detach()
	epB.Detach()
	for _, h := range hosts {
		h.in(t, func() error {
			if err := h.m.Close(); err != nil {
				return err
			}
			links, err := netlink.LinkList()
			if err != nil {
				return err
			}
			for _, l := range links {
				if n := l.Attrs().Name; n != "lo" && !strings.HasPrefix(n, "ovt-") {
					t.Errorf("host %s: link %s (%s) left behind", h.addr, n, l.Type())
				}
			}
			udp, err := threadFile("udp")
			if err != nil {
				return err
			}
			if strings.Contains(strings.ToUpper(udp), ":12B5 ") { // 4789
				t.Errorf("host %s: a UDP socket on port 4789 is left:\n%s", h.addr, udp)
			}
			return nil
		})
	}
}
