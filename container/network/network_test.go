package network

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, veths and bridges")
	}
}

func newManager(t testing.TB) *Manager {
	t.Helper()
	requireRoot(t)
	m := New(Options{})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return m
}

func newNS(t testing.TB) *namespace.Namespace {
	t.Helper()
	ns, err := namespace.NewNet("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

// routedToHub fails the test unless the host routes ip through m's hub:
// a test must never send to a container subnet that the host would
// route anywhere else.
func routedToHub(t testing.TB, m *Manager, ip netip.Addr) {
	t.Helper()
	routes, err := netlink.RouteGet(ip.AsSlice())
	if err != nil {
		t.Fatalf("route to %s: %v", ip, err)
	}
	if len(routes) == 0 || routes[0].LinkIndex != m.hub.hostLink.Attrs().Index {
		t.Fatalf("the host does not route %s through the hub: %+v", ip, routes)
	}
}

// serveEcho accepts on l and echoes each connection's first line back.
func serveEcho(l net.Listener) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				line, _ := bufio.NewReader(c).ReadString('\n')
				io.WriteString(c, "echo "+line)
			}()
		}
	}()
}

func echo(t testing.TB, c net.Conn) string {
	t.Helper()
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "hi\n"); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestAttachReach(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "app", Labels: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := n.Config()
	if !cfg.Subnet.IsValid() || cfg.Gateway != cfg.Subnet.Addr().Next() || cfg.MTU != DefaultMTU || cfg.Labels["k"] != "v" {
		t.Fatalf("config: %+v", cfg)
	}
	ns1, ns2 := newNS(t), newNS(t)
	e1, err := n.Attach(ctx, ns1, AttachOptions{Name: "db", Aliases: []string{"database"}})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := n.Attach(ctx, ns2, AttachOptions{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if e1.IP() == e2.IP() || !cfg.Subnet.Contains(e1.IP()) || e1.Interface() != "eth0" {
		t.Fatalf("addresses %s %s, interface %s", e1.IP(), e2.IP(), e1.Interface())
	}
	l, err := Listen(ctx, ns1, "tcp", netip.AddrPortFrom(e1.IP(), 8080).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveEcho(l)
	// From the other namespace on the network.
	c, err := Dial(ctx, ns2, "tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got := echo(t, c); got != "echo hi\n" {
		t.Fatalf("from ns2: %q", got)
	}
	// From the host, through its route to the subnet.
	routedToHub(t, m, e1.IP())
	c, err = net.DialTimeout("tcp", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if got := echo(t, c); got != "echo hi\n" {
		t.Fatalf("from the host: %q", got)
	}
	// The container sees the host at the network's host address.
	hl, err := net.Listen("tcp", netip.AddrPortFrom(n.HostAddr(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	serveEcho(hl)
	c, err = Dial(ctx, ns1, "tcp", hl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if got := echo(t, c); got != "echo hi\n" {
		t.Fatalf("to the host: %q", got)
	}
	// Detach: the interface goes, the address is free again.
	if err := e2.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := e2.Detach(); err != nil {
		t.Fatalf("second Detach: %v", err)
	}
	err = namespace.Do(func() error {
		_, err := net.InterfaceByName("eth0")
		return err
	}, ns2)
	if err == nil {
		t.Fatal("eth0 is still in the detached namespace")
	}
	if got := len(n.Endpoints()); got != 1 {
		t.Fatalf("%d endpoints after detach", got)
	}
}

func TestNetworksIsolated(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	a, err := m.Create(ctx, Config{Name: "a"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Create(ctx, Config{Name: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if overlaps(a.Config().Subnet, b.Config().Subnet) {
		t.Fatalf("subnets overlap: %s %s", a.Config().Subnet, b.Config().Subnet)
	}
	nsA, nsB, nsAB := newNS(t), newNS(t), newNS(t)
	ea, err := a.Attach(ctx, nsA, AttachOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, nsB, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	// A namespace on both networks reaches both.
	if _, err := a.Attach(ctx, nsAB, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Attach(ctx, nsAB, AttachOptions{Interface: "eth1"}); err != nil {
		t.Fatal(err)
	}
	l, err := Listen(ctx, nsA, "tcp", netip.AddrPortFrom(ea.IP(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveEcho(l)
	c, err := Dial(ctx, nsAB, "tcp", l.Addr().String())
	if err != nil {
		t.Fatalf("from a namespace on both networks: %v", err)
	}
	echo(t, c)
	dctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if c, err := Dial(dctx, nsB, "tcp", l.Addr().String()); err == nil {
		c.Close()
		t.Fatal("network b reached network a")
	}
}

func TestBadInput(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "good", Subnet: netip.MustParsePrefix("10.231.0.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	bad := []struct {
		cfg  Config
		want error
	}{
		{Config{Name: ""}, ErrInvalidConfig},
		{Config{Name: "a/b"}, ErrInvalidConfig},
		{Config{Name: "good"}, ErrExists},
		{Config{Name: "v6", Subnet: netip.MustParsePrefix("fd00::/64")}, ErrInvalidConfig},
		{Config{Name: "hostbits", Subnet: netip.MustParsePrefix("10.232.0.1/24")}, ErrInvalidConfig},
		{Config{Name: "tiny", Subnet: netip.MustParsePrefix("10.232.0.0/31")}, ErrInvalidConfig},
		{Config{Name: "slash30", Subnet: netip.MustParsePrefix("10.232.0.0/30")}, ErrInvalidConfig},
		{Config{Name: "gw", Subnet: netip.MustParsePrefix("10.232.0.0/24"), Gateway: netip.MustParseAddr("10.233.0.1")}, ErrInvalidConfig},
		{Config{Name: "mtu", MTU: 10}, ErrInvalidConfig},
		{Config{Name: "overlap", Subnet: netip.MustParsePrefix("10.231.0.128/25")}, ErrSubnetOverlap},
		{Config{Name: "loop", Subnet: netip.MustParsePrefix("127.0.0.0/8")}, ErrInvalidConfig},
	}
	for _, c := range bad {
		if _, err := m.Create(ctx, c.cfg); !errors.Is(err, c.want) {
			t.Errorf("Create(%+v) = %v, want %v", c.cfg, err, c.want)
		}
	}
	if got := len(m.List()); got != 1 {
		t.Fatalf("%d networks after refusals", got)
	}
	ns := newNS(t)
	attach := []struct {
		opts AttachOptions
		want error
	}{
		{AttachOptions{IP: netip.MustParseAddr("10.9.9.9")}, ErrInvalidAddress},
		{AttachOptions{IP: netip.MustParseAddr("10.231.0.1")}, ErrAddressInUse}, // the gateway
		{AttachOptions{Aliases: []string{"a", "a"}}, ErrInvalidAlias},
		{AttachOptions{Aliases: []string{"not a name"}}, ErrInvalidAlias},
		{AttachOptions{MAC: net.HardwareAddr{1, 2, 3, 4, 5, 6}}, ErrInvalidAddress},
	}
	for _, c := range attach {
		if _, err := n.Attach(ctx, ns, c.opts); !errors.Is(err, c.want) {
			t.Errorf("Attach(%+v) = %v, want %v", c.opts, err, c.want)
		}
	}
	fixed := netip.MustParseAddr("10.231.0.50")
	e, err := n.Attach(ctx, ns, AttachOptions{IP: fixed, Aliases: []string{"svc"}, MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}})
	if err != nil {
		t.Fatal(err)
	}
	if e.IP() != fixed || e.MAC().String() != "02:00:00:00:00:09" {
		t.Fatalf("endpoint %s %s", e.IP(), e.MAC())
	}
	ns2 := newNS(t)
	if _, err := n.Attach(ctx, ns2, AttachOptions{IP: fixed}); !errors.Is(err, ErrAddressInUse) {
		t.Errorf("taken IP: %v", err)
	}
	if _, err := n.Attach(ctx, ns2, AttachOptions{Aliases: []string{"svc"}}); !errors.Is(err, ErrInvalidAlias) {
		t.Errorf("duplicate alias: %v", err)
	}
	if _, err := n.Attach(ctx, ns, AttachOptions{}); !errors.Is(err, ErrInUse) {
		t.Errorf("attached twice: %v", err)
	}
	// A failure inside the namespace rolls back: ns2 has an interface
	// named eth0 already after this attach, so a second one fails.
	if _, err := n.Attach(ctx, ns2, AttachOptions{}); err != nil {
		t.Fatal(err)
	}
	other, err := m.Create(ctx, Config{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	before := hubLinks(t, m)
	if _, err := other.Attach(ctx, ns2, AttachOptions{}); err == nil || !strings.Contains(err.Error(), "eth0") {
		t.Fatalf("second eth0: %v", err)
	}
	if after := hubLinks(t, m); after != before {
		t.Fatalf("a failed attach left links: %d before, %d after", before, after)
	}
	if len(other.Endpoints()) != 0 {
		t.Fatal("a failed attach left an endpoint")
	}
	if err := m.Remove(ctx, "good"); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove in use: %v", err)
	}
	if err := m.Remove(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Remove unknown: %v", err)
	}
	if _, err := m.Get(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get unknown: %v", err)
	}
	if _, err := Dial(ctx, ns, "tcp", "localhost:80"); !errors.Is(err, ErrInvalidAddress) {
		t.Errorf("Dial by name: %v", err)
	}
}

func hubLinks(t testing.TB, m *Manager) int {
	t.Helper()
	links, err := retryDump(m.hub.nl.LinkList)
	if err != nil {
		t.Fatal(err)
	}
	return len(links)
}

func TestManyAttachNothingLeft(t *testing.T) {
	m := New(Options{})
	requireRoot(t)
	ctx := context.Background()
	n, err := m.Get(ctx, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	subnet := n.Config().Subnet
	hostLink := m.hub.hostLink.Attrs().Name
	linkIndex := m.hub.hostLink.Attrs().Index
	seen := map[netip.Addr]bool{}
	type res struct {
		e   *Endpoint
		err error
	}
	results := make(chan res, 50)
	for range 50 {
		ns := newNS(t)
		go func() {
			e, err := n.Attach(ctx, ns, AttachOptions{})
			results <- res{e, err}
		}()
	}
	var eps []*Endpoint
	for range 50 {
		r := <-results
		if r.err != nil {
			t.Fatal(r.err)
		}
		if seen[r.e.IP()] {
			t.Fatalf("address %s given twice", r.e.IP())
		}
		seen[r.e.IP()] = true
		eps = append(eps, r.e)
	}
	for _, e := range eps[:25] {
		if err := e.Detach(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(hostLink); err == nil {
		t.Fatalf("host link %s left after Close", hostLink)
	}
	checkNoRoute(t, subnet, linkIndex)
}

// checkNoRoute fails if the host still has a route to subnet over the
// link with index link. (Another process's network may have the same
// subnet by now, over its own link.)
func checkNoRoute(t testing.TB, subnet netip.Prefix, link int) {
	t.Helper()
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: ipNet(subnet), LinkIndex: link}, netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(routes) > 0 {
		t.Fatalf("route to %s left: %+v", subnet, routes)
	}
}

// TestKilledOwnerLeavesNothing runs a child that makes networks and
// endpoints, kills it with SIGKILL, and checks from outside that its
// host link and routes are gone.
func TestKilledOwnerLeavesNothing(t *testing.T) {
	if os.Getenv("BERTH_NETWORK_CHILD") == "1" {
		childMain()
		return
	}
	requireRoot(t)
	cmd, sc := startChild(t, "BERTH_NETWORK_CHILD=1")
	var link string
	var subnets []netip.Prefix
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 2 && f[0] == "link" {
			link = f[1]
		}
		if len(f) == 2 && f[0] == "subnet" {
			subnets = append(subnets, netip.MustParsePrefix(f[1]))
		}
		if sc.Text() == "ready" {
			break
		}
	}
	if link == "" || len(subnets) != 3 {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("child did not report its network (link %q, %d subnets)", link, len(subnets))
	}
	l, err := netlink.LinkByName(link)
	if err != nil {
		t.Fatalf("child's link %s not there while it runs: %v", link, err)
	}
	linkIndex := l.Attrs().Index
	cmd.Process.Kill()
	cmd.Wait()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := netlink.LinkByName(link)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s still there 10 s after its owner died", link)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range subnets {
		checkNoRoute(t, s, linkIndex)
	}
	// The host's table belonged to the child's nftables socket: the
	// kernel removed it with the process.
	if hostTableExists(t, link) {
		t.Fatalf("the dead owner's host table %s%s is still there", hostTablePrefix, link)
	}
}

// startChild runs this test again in a child process with env added,
// and returns it and a scanner of its output. The child is killed when
// the test ends, whatever happens to the test.
func startChild(t *testing.T, env ...string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd, bufio.NewScanner(out)
}

func childMain() {
	m := New(Options{})
	ctx := context.Background()
	var nss []*namespace.Namespace
	for i := range 3 {
		n, err := m.Create(ctx, Config{Name: fmt.Sprint("net", i)})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		fmt.Println("subnet", n.Config().Subnet)
		for range 4 {
			ns, err := namespace.NewNet("")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			nss = append(nss, ns)
			if _, err := n.Attach(ctx, ns, AttachOptions{}); err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
		}
	}
	fmt.Println("link", m.hub.hostLink.Attrs().Name)
	fmt.Println("ready")
	runtime.KeepAlive(nss) // the namespaces stay open until the kill
	select {}
}

func TestDualStack(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	subnet6 := netip.MustParsePrefix(fmt.Sprintf("fd00:b:%x::/64", os.Getpid()%0xffff))
	n, err := m.Create(ctx, Config{Name: "dual", Subnet6: subnet6})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Create(ctx, Config{Name: "dual2", Subnet6: subnet6}); !errors.Is(err, ErrSubnetOverlap) {
		t.Fatalf("the same IPv6 subnet twice: %v", err)
	}
	for _, bad := range []Config{
		{Name: "v4as6", Subnet6: netip.MustParsePrefix("10.0.0.0/24")},
		{Name: "wide", Subnet6: netip.MustParsePrefix("fd00:c::/32")},
		{Name: "gw6", Subnet6: netip.MustParsePrefix("fd00:d::/64"), Gateway6: netip.MustParseAddr("fd00:e::1")},
	} {
		if _, err := m.Create(ctx, bad); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("Create(%+v) = %v", bad, err)
		}
	}
	ns1, ns2 := newNS(t), newNS(t)
	e1, err := n.Attach(ctx, ns1, AttachOptions{Name: "one"})
	if err != nil {
		t.Fatal(err)
	}
	fixed := subnet6.Addr().Next().Next().Next() // ::3
	e2, err := n.Attach(ctx, ns2, AttachOptions{Name: "two", IP6: fixed})
	if err != nil {
		t.Fatal(err)
	}
	if !subnet6.Contains(e1.IP6()) || e2.IP6() != fixed || !e1.IP().Is4() {
		t.Fatalf("addresses %s %s / %s", e1.IP(), e1.IP6(), e2.IP6())
	}
	l, err := Listen(ctx, ns1, "tcp6", netip.AddrPortFrom(e1.IP6(), 80).String())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	serveEcho(l)
	c, err := Dial(ctx, ns2, "tcp6", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("over IPv6 between containers: %q", s)
	}
	routedToHub(t, m, e1.IP6())
	c, err = net.DialTimeout("tcp6", l.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("from the host over IPv6: %q", s)
	}
	hl, err := net.Listen("tcp6", netip.AddrPortFrom(n.HostAddr6(), 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer hl.Close()
	serveEcho(hl)
	c, err = Dial(ctx, ns1, "tcp6", hl.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if s := echo(t, c); s != "echo hi\n" {
		t.Fatalf("to the host over IPv6: %q", s)
	}
	r := query(t, ns2, "udp", "one", dns.TypeAAAA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.AAAA).AAAA.String() != e1.IP6().String() {
		t.Fatalf("AAAA: %v", r.Answer)
	}
	arpa, _ := dns.ReverseAddr(e1.IP6().String())
	if r := query(t, ns2, "udp", arpa, dns.TypePTR); len(r.Answer) != 1 {
		t.Fatalf("IPv6 PTR: %v", r.Answer)
	}
	if err := e1.Detach(); err != nil {
		t.Fatal(err)
	}
	if err := m.Remove(ctx, "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestRelease(t *testing.T) {
	requireRoot(t)
	m := New(Options{DNSUpstreams: []netip.AddrPort{}})
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "rel", Subnet: netip.MustParsePrefix("10.232.0.0/29")}) // 4 addresses for endpoints
	if err != nil {
		t.Fatal(err)
	}
	base := hubLinks(t, m)
	var eps []*Endpoint
	for range 4 {
		ns, err := namespace.NewNet("")
		if err != nil {
			t.Fatal(err)
		}
		e, err := n.Attach(ctx, ns, AttachOptions{Name: fmt.Sprint("e", len(eps))})
		ns.Close() // the namespace lives on only through the veth's peer
		if err != nil {
			t.Fatal(err)
		}
		eps = append(eps, e)
	}
	if _, err := n.Attach(ctx, newNS(t), AttachOptions{}); !errors.Is(err, ErrAddressInUse) {
		t.Fatalf("a full subnet: %v", err)
	}
	for _, e := range eps {
		e.Release()
		e.Release()
	}
	if k := len(n.Endpoints()); k != 0 {
		t.Fatalf("%d endpoints after Release", k)
	}
	// The addresses come back once the links are gone.
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := n.Attach(ctx, newNS(t), AttachOptions{})
		if err == nil {
			e.Detach()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no address free 10 s after Release: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	m.pending.Wait()
	if got := hubLinks(t, m); got != base {
		t.Fatalf("%d links in the hub after Release, want %d", got, base)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
}

// A network removed and made again on the same subnet by one Manager
// (one hub): everything the first one put in the hub went with it.
func TestRecreateSameSubnet(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	cfg := Config{Name: "again", Subnet: netip.MustParsePrefix("10.213.7.0/24"), Subnet6: netip.MustParsePrefix("fd7b:213:7::/64")}
	for i := range 3 {
		n, err := m.Create(ctx, cfg)
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		ns := newNS(t)
		e, err := n.Attach(ctx, ns, AttachOptions{})
		if err != nil {
			t.Fatalf("attach %d: %v", i, err)
		}
		routedToHub(t, m, e.IP())
		if err := e.Detach(); err != nil {
			t.Fatal(err)
		}
		if err := m.Remove(ctx, cfg.Name); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
}
