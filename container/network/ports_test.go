package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func TestParsePort(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	good := map[string][]PortMapping{
		"80":                {{ContainerPort: 80, Protocol: "tcp"}},
		"8080:80":           {{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"127.0.0.1:8080:80": {{HostIP: lo, HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"127.0.0.1::80":     {{HostIP: lo, ContainerPort: 80, Protocol: "tcp"}},
		"[::1]:8080:80":     {{HostIP: netip.IPv6Loopback(), HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}},
		"53:53/udp":         {{HostPort: 53, ContainerPort: 53, Protocol: "udp"}},
		"53/UDP":            {{ContainerPort: 53, Protocol: "udp"}},
		"8000-8001:80-81": {
			{HostPort: 8000, ContainerPort: 80, Protocol: "tcp"},
			{HostPort: 8001, ContainerPort: 81, Protocol: "tcp"},
		},
		"80-81":            {{ContainerPort: 80, Protocol: "tcp"}, {ContainerPort: 81, Protocol: "tcp"}},
		"8000-8010:80":     {{HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80, Protocol: "tcp"}},
		"0:80":             {{ContainerPort: 80, Protocol: "tcp"}},
		"1.2.3.4:0:80/tcp": {{HostIP: netip.MustParseAddr("1.2.3.4"), ContainerPort: 80, Protocol: "tcp"}},
	}
	for in, want := range good {
		got, err := ParsePort(in)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParsePort(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "80:0", "x", "80/sctp", "1.2.3:80:80", "a:b:c:d", "70000", "8000-8002:80-81",
		"90-80", "[::1:80:80", "[1.2.3.4]:80:80", "::1:80:80", "1.2.3.4:80", "-1", "1-65535"} {
		if _, err := ParsePort(in); !errors.Is(err, ErrInvalidPort) {
			t.Errorf("ParsePort(%q) = %v, want ErrInvalidPort", in, err)
		}
	}
	if err := (PortMapping{ContainerPort: 80, HostPortEnd: 90}).Validate(); !errors.Is(err, ErrInvalidPort) {
		t.Errorf("a host range from port 0: %v", err)
	}
	if s := (PortMapping{ContainerPort: 80, HostPort: 32768}).String(); s != "80/tcp -> 0.0.0.0:32768" {
		t.Errorf("String: %q", s)
	}
}

// attached makes a network with one namespace on it serving TCP and UDP
// echo on port 80 of its address.
func attached(t *testing.T) (*Manager, *Network, *Endpoint, *namespace.Namespace) {
	m := newManager(t)
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNS(t)
	e, err := n.Attach(ctx, ns, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ctx, ns, "tcp", netip.AddrPortFrom(e.IP(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	serveEcho(l)
	pc, err := ListenPacket(ctx, ns, "udp", netip.AddrPortFrom(e.IP(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		b := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(b)
			if err != nil {
				return
			}
			pc.WriteTo(append([]byte("echo "), b[:n]...), from)
		}
	}()
	return m, n, e, ns
}

func udpEcho(t *testing.T, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hi\n")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 100)
	n, err := c.Read(b)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:n])
}

func TestPublish(t *testing.T) {
	_, n, e, ns := attached(t)
	ctx := context.Background()
	ports, err := ParsePort("127.0.0.1::80")
	if err != nil {
		t.Fatal(err)
	}
	udp, _ := ParsePort("0:80/udp")
	all, _ := ParsePort("80")
	p, err := Publish(ctx, e.IP(), append(append(ports, udp...), all...), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := p.Ports()
	if len(got) != 3 || got[0].HostPort == 0 || got[1].HostPort == 0 || got[1].Protocol != "udp" {
		t.Fatalf("ports: %+v", got)
	}
	local := net.JoinHostPort("127.0.0.1", itoa(got[0].HostPort))
	c, err := net.Dial("tcp", local)
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("tcp through %s: %q", local, s)
	}
	c, err = net.Dial("udp", net.JoinHostPort("127.0.0.1", itoa(got[1].HostPort)))
	if err != nil {
		t.Fatal(err)
	}
	if s := udpEcho(t, c); s != "echo hi\n" {
		t.Fatalf("udp: %q", s)
	}
	// Hairpin: the container reaches its own port published on every
	// address at the host's address on the network; a port published on
	// 127.0.0.1 is not reachable from it.
	c, err = Dial(ctx, ns, "tcp", netip.AddrPortFrom(n.HostAddr(), got[2].HostPort).String())
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("hairpin: %q", s)
	}
	dctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if c, err := Dial(dctx, ns, "tcp", netip.AddrPortFrom(n.HostAddr(), got[0].HostPort).String()); err == nil {
		c.Close()
		t.Fatal("a port published on 127.0.0.1 was reachable from the container")
	}
	// A client on another interface: a test host with a veth to the host.
	client := testHost(t, "203.0.113.1", "203.0.113.2")
	c, err = Dial(ctx, client, "tcp", net.JoinHostPort("203.0.113.1", itoa(got[2].HostPort)))
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("from another interface: %q", s)
	}
	dctx, cancel = context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if c, err := Dial(dctx, client, "tcp", net.JoinHostPort("203.0.113.1", itoa(got[0].HostPort))); err == nil {
		c.Close()
		t.Fatal("a port published on 127.0.0.1 was reachable from another interface")
	}
	// A clash: the same host port again fails and binds nothing.
	clash := []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 81}, got[0]}
	if _, err := Publish(ctx, e.IP(), clash, nil); !errors.Is(err, ErrPortInUse) {
		t.Fatalf("clash: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", local); err == nil {
		c.Close()
		t.Fatal("port still bound after Close")
	}
	for _, bad := range [][]PortMapping{{{ContainerPort: 0}}, {{ContainerPort: 80, Protocol: "sctp"}}} {
		if _, err := Publish(ctx, e.IP(), bad, nil); !errors.Is(err, ErrInvalidPort) {
			t.Errorf("Publish(%+v) = %v", bad, err)
		}
	}
}

var testHosts int

func itoa(p uint16) string { return netip.AddrPortFrom(netip.IPv4Unspecified(), p).String()[8:] }

// testHost makes a network namespace with a veth to the host: hostAddr
// on the host's end, addr inside, both /30. It is the "client on another
// interface" of the traffic rules: an address the test made.
func testHost(t *testing.T, hostAddr, addr string) *namespace.Namespace {
	t.Helper()
	ns := newNS(t)
	testHosts++
	name := fmt.Sprintf("bt%d-%d", os.Getpid()%100000, testHosts)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.Fd())}
	if err := netlink.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { netlink.LinkDel(veth) })
	link, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := netlink.AddrAdd(link, &netlink.Addr{IPNet: addrNet(netip.MustParseAddr(hostAddr), 30)}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	in, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	peer, err := in.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := in.AddrAdd(peer, &netlink.Addr{IPNet: addrNet(netip.MustParseAddr(addr), 30)}); err != nil {
		t.Fatal(err)
	}
	if err := in.LinkSetUp(peer); err != nil {
		t.Fatal(err)
	}
	return ns
}

// TestEndpointPublish checks that this host's own clients reach a
// published port through the kernel (the relay sees none of them),
// while a client on another interface is served by the relay, and that
// Close removes the rules.
func TestEndpointPublish(t *testing.T) {
	m, _, e, _ := attached(t)
	ctx := context.Background()
	ports, _ := ParsePort("80")
	udp, _ := ParsePort("127.0.0.1::80/udp")
	p, err := e.Publish(ctx, append(ports, udp...), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	got := p.Ports()
	for _, addr := range []string{"127.0.0.1", "127.0.0.2"} {
		c, err := net.Dial("tcp", net.JoinHostPort(addr, itoa(got[0].HostPort)))
		if err != nil {
			t.Fatal(err)
		}
		if s := echo(t, c); s != "echo hi\n" {
			t.Fatalf("local client at %s: %q", addr, s)
		}
	}
	c, err := net.Dial("udp", net.JoinHostPort("127.0.0.1", itoa(got[1].HostPort)))
	if err != nil {
		t.Fatal(err)
	}
	if s := udpEcho(t, c); s != "echo hi\n" {
		t.Fatalf("local UDP client: %q", s)
	}
	if n := p.relayed.Load(); n != 0 {
		t.Fatalf("the relay served %d local clients; the kernel should have", n)
	}
	client := testHost(t, "203.0.113.5", "203.0.113.6")
	c, err = Dial(ctx, client, "tcp", net.JoinHostPort("203.0.113.5", itoa(got[0].HostPort)))
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("remote client: %q", s)
	}
	if n := p.relayed.Load(); n != 1 {
		t.Fatalf("the relay served %d connections, want the remote client's 1", n)
	}
	// The host forwards for egress, yet a neighbour that routes the
	// subnet through it does not reach the container directly.
	in, err := netlink.NewHandleAt(netns.NsHandle(client.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	eth0, err := in.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	subnet := e.Network().Config().Subnet
	if err := in.RouteAdd(&netlink.Route{LinkIndex: eth0.Attrs().Index, Dst: ipNet(subnet), Gw: net.ParseIP("203.0.113.5")}); err != nil {
		t.Fatal(err)
	}
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if c, err := Dial(dctx, client, "tcp", netip.AddrPortFrom(e.IP(), 80).String()); err == nil {
		c.Close()
		t.Fatal("a neighbour reached the container's address through the host")
	}
	// Detaching the endpoint closes what was published for it.
	p2, err := e.Publish(ctx, []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	link := m.HostLink()
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if n := outputRules(t, link); n != 1 {
		t.Fatalf("%d DNAT rules, want p2's 1", n)
	}
	if err := e.Detach(); err != nil {
		t.Fatal(err)
	}
	if n := outputRules(t, link); n != 0 {
		t.Fatalf("%d DNAT rules after the endpoint's Detach", n)
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(p2.Ports()[0].HostPort))); err == nil {
		c.Close()
		t.Fatal("a port published for a detached endpoint still answers")
	}
	if c, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", itoa(got[0].HostPort))); err == nil {
		c.Close()
		t.Fatal("the port still answers after Close")
	}
}

func outputRules(t *testing.T, link string) int {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tbl := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: hostTablePrefix + link}
	rules, err := c.GetRules(tbl, &nftables.Chain{Name: "output", Table: tbl})
	if err != nil {
		return 0 // no table, no chain: no rules
	}
	return len(rules)
}

// Close stops the published port accepting at once, even while another
// process holds a copy of its socket (as a child forked by this process
// does until it executes its program).
func TestPublishCloseWithForkedCopy(t *testing.T) {
	ctx := context.Background()
	p, err := Publish(ctx, netip.MustParseAddr("127.0.0.1"), []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 9}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(p.Ports()[0].HostPort)))
	var l *net.TCPListener
	for _, c := range p.closers {
		if tl, ok := c.(*net.TCPListener); ok {
			l = tl
		}
	}
	f, err := l.File() // a copy of the socket, as a forked child has
	if err != nil {
		t.Fatal(err)
	}
	child := exec.Command("sleep", "30")
	child.ExtraFiles = []*os.File{f}
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Cleanup(func() { child.Process.Kill(); child.Wait() })
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts after Close while a child holds the socket", addr)
	}
}
