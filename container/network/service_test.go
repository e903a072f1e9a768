package network

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

// serveName accepts on l and writes name to each connection.
func serveName(l net.Listener, name string) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			io.WriteString(c, name)
			c.Close()
		}
	}()
}

// fetchName dials addr from ns (or the host, with ns nil) and reads what
// the server wrote.
func fetchName(ctx context.Context, ns *namespace.Namespace, addr string) (string, error) {
	var c net.Conn
	var err error
	if ns == nil {
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
	} else {
		dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		c, err = Dial(dctx, ns, "tcp", addr)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func svcTableExists(t *testing.T, m *Manager) bool {
	t.Helper()
	return tableExists(t, m.hub.hubNft, svcTable)
}

func TestService(t *testing.T) {
	requireRoot(t)
	m := New(Options{DNSUpstreams: []netip.AddrPort{}})
	defer m.Close()
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "svc"})
	if err != nil {
		t.Fatal(err)
	}
	var backends []netip.AddrPort
	var nss []*namespace.Namespace
	for i := range 3 {
		ns := newNS(t)
		e, err := n.Attach(ctx, ns, AttachOptions{Name: "b" + string(rune('0'+i))})
		if err != nil {
			t.Fatal(err)
		}
		l, err := Listen(ctx, ns, "tcp", netip.AddrPortFrom(e.IP(), 8080).String())
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		serveName(l, e.IP().String())
		backends = append(backends, netip.AddrPortFrom(e.IP(), 8080))
		nss = append(nss, ns)
	}
	client := newNS(t)
	if _, err := n.Attach(ctx, client, AttachOptions{Name: "client"}); err != nil {
		t.Fatal(err)
	}
	vip := netip.MustParseAddr("10.96.0.10")
	cfg := ServiceConfig{Name: "web", VIP: vip, Ports: []ServicePort{{Name: "http", Port: 80, Backends: backends}}}
	if err := m.SetService(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	routedToHub(t, m, vip)
	vipAddr := netip.AddrPortFrom(vip, 80).String()

	// Spread: each backend gets a share.
	seen := map[string]int{}
	for range 60 {
		got, err := fetchName(ctx, client, vipAddr)
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if len(seen) != 3 {
		t.Fatalf("60 connections reached %v, want all 3 backends", seen)
	}
	// From the host.
	if _, err := fetchName(ctx, nil, vipAddr); err != nil {
		t.Fatalf("from the host: %v", err)
	}
	// Hairpin: a backend reaches itself through the VIP.
	for range 10 {
		if _, err := fetchName(ctx, nss[0], vipAddr); err != nil {
			t.Fatalf("hairpin: %v", err)
		}
	}
	// A port the service does not have, and no backends: refused at once.
	for _, addr := range []string{netip.AddrPortFrom(vip, 81).String()} {
		start := time.Now()
		_, err := fetchName(ctx, client, addr)
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
			t.Fatalf("%s: %v after %v, want connection refused at once", addr, err, time.Since(start))
		}
	}
	cfg.Ports[0].Backends = nil
	if err := m.SetService(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []*namespace.Namespace{client, nil} {
		start := time.Now()
		_, err := fetchName(ctx, ns, vipAddr)
		if !errors.Is(err, syscall.ECONNREFUSED) || time.Since(start) > time.Second {
			t.Fatalf("no backends: %v after %v, want connection refused at once", err, time.Since(start))
		}
	}
	// ClientIP affinity: one backend for every connection of a client.
	cfg.Ports[0].Backends = backends
	cfg.Affinity = AffinityClientIP
	if err := m.SetService(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	seen = map[string]int{}
	for range 20 {
		got, err := fetchName(ctx, client, vipAddr)
		if err != nil {
			t.Fatal(err)
		}
		seen[got]++
	}
	if len(seen) != 1 {
		t.Fatalf("with ClientIP affinity a client reached %v", seen)
	}
	// NodePort on the host's loopback.
	cfg.Affinity = AffinityNone
	cfg.Ports[0].NodePort = 30080
	if err := m.SetService(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchName(ctx, nil, "127.0.0.1:30080"); err != nil {
		t.Fatalf("node port: %v", err)
	}
	// DNS records.
	m.SetDNSZones("cluster.local")
	m.SetDNS("web.default.svc.cluster.local", DNSRecord{Addrs: []netip.Addr{vip}})
	m.SetDNS("ext.default.svc.cluster.local", DNSRecord{CNAME: "example.org"})
	if got := answerA(query(t, client, "udp", "web.default.svc.cluster.local.", dns.TypeA)); len(got) != 1 || got[0] != vip.String() {
		t.Fatalf("A web: %v", got)
	}
	r := query(t, client, "udp", "ext.default.svc.cluster.local.", dns.TypeA)
	if len(r.Answer) != 1 || !strings.Contains(r.Answer[0].String(), "CNAME\texample.org.") {
		t.Fatalf("CNAME: %v", r.Answer)
	}
	if r := query(t, client, "udp", "nope.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("unknown name in the zone: rcode %d", r.Rcode)
	}
	m.SetDNS("web.default.svc.cluster.local", DNSRecord{})
	if r := query(t, client, "udp", "web.default.svc.cluster.local.", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Fatalf("removed name: rcode %d", r.Rcode)
	}

	// Remove: no rules, no route, no node port.
	if err := m.RemoveService(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if err := m.RemoveService(ctx, "web"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	if svcTableExists(t, m) {
		t.Fatal("the service table is still in the hub")
	}
	routes, _ := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: addrNet(vip, 32)}, netlink.RT_FILTER_DST)
	if len(routes) != 0 {
		t.Fatalf("route to the VIP left: %v", routes)
	}
	time.Sleep(50 * time.Millisecond) // the node port's relay closes once m.mu is released
	if c, err := net.DialTimeout("tcp", "127.0.0.1:30080", time.Second); err == nil {
		c.Close()
		t.Fatal("the node port still accepts")
	}
}

func TestServiceBadConfig(t *testing.T) {
	m := newManager(t)
	ctx := context.Background()
	if err := m.SetService(ctx, ServiceConfig{Name: "x", VIP: netip.MustParseAddr("10.96.0.1"), Ports: []ServicePort{{Port: 80}}}); !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("no network: %v", err)
	}
	n, err := m.Create(ctx, Config{Name: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	for _, cfg := range []ServiceConfig{
		{Name: "", VIP: netip.MustParseAddr("10.96.0.1"), Ports: []ServicePort{{Port: 80}}},
		{Name: "x", VIP: netip.MustParseAddr("127.0.0.1"), Ports: []ServicePort{{Port: 80}}},
		{Name: "x", VIP: netip.MustParseAddr("10.96.0.1")},
		{Name: "x", VIP: netip.MustParseAddr("10.96.0.1"), Ports: []ServicePort{{Port: 80}, {Port: 80}}},
		{Name: "x", VIP: netip.MustParseAddr("10.96.0.1"), Ports: []ServicePort{{Port: 80, Protocol: "sctp"}}},
		{Name: "x", VIP: netip.MustParseAddr("10.96.0.1"), Affinity: "sticky", Ports: []ServicePort{{Port: 80}}},
		{Name: "x", VIP: n.Config().Gateway, Ports: []ServicePort{{Port: 80}}},
	} {
		if err := m.SetService(ctx, cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%+v: %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if got := m.Services(); len(got) != 0 {
		t.Fatalf("services after refusals: %v", got)
	}
}
