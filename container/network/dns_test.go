package network

import (
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/miekg/dns"
)

// fakeUpstream serves DNS on loopback: other.example. is 198.51.100.7,
// every other name NXDOMAIN. It counts the queries it got.
func fakeUpstream(t *testing.T) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	count := new(atomic.Int64)
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		count.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		if q.Question[0].Name == "other.example." && q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: "other.example.", Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(198, 51, 100, 7)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	started := make(chan struct{})
	srv.NotifyStartedFunc = func() { close(started) }
	go srv.ActivateAndServe()
	<-started
	t.Cleanup(func() { srv.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String()), count
}

// query asks the embedded server inside ns.
func query(t *testing.T, ns *namespace.Namespace, netw, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c, err := Dial(context.Background(), ns, netw, ResolverAddr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	co := &dns.Conn{Conn: c}
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), qtype)
	if err := co.WriteMsg(q); err != nil {
		t.Fatal(err)
	}
	r, err := co.ReadMsg()
	if err != nil {
		t.Fatalf("query %s: %v", name, err)
	}
	return r
}

func answerA(r *dns.Msg) []string {
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	return out
}

func TestEmbeddedDNS(t *testing.T) {
	requireRoot(t)
	up, count := fakeUpstream(t)
	m := New(Options{DNSUpstreams: []netip.AddrPort{up}})
	t.Cleanup(func() { m.Close() })
	ctx := context.Background()
	app, err := m.Create(ctx, Config{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := m.Create(ctx, Config{Name: "other"})
	if err != nil {
		t.Fatal(err)
	}
	nsDB, nsWeb, nsOther := newNS(t), newNS(t), newNS(t)
	db, err := app.Attach(ctx, nsDB, AttachOptions{Name: "db", Aliases: []string{"database"}})
	if err != nil {
		t.Fatal(err)
	}
	web, err := app.Attach(ctx, nsWeb, AttachOptions{Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Attach(ctx, nsOther, AttachOptions{Name: "lonely"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ netw, name, want string }{
		{"udp", "db", db.IP().String()},
		{"udp", "DB.", db.IP().String()},
		{"tcp", "database", db.IP().String()},
		{"udp", "web", web.IP().String()},
	} {
		r := query(t, nsWeb, c.netw, c.name, dns.TypeA)
		if got := answerA(r); r.Rcode != dns.RcodeSuccess || len(got) != 1 || got[0] != c.want {
			t.Errorf("%s %s: rcode %d, %v; want %s", c.netw, c.name, r.Rcode, got, c.want)
		}
	}
	if r := query(t, nsWeb, "udp", "db", dns.TypeAAAA); r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 {
		t.Errorf("AAAA of a v4-only name: rcode %d, %v", r.Rcode, r.Answer)
	}
	arpa, _ := dns.ReverseAddr(db.IP().String())
	if r := query(t, nsWeb, "udp", arpa, dns.TypePTR); len(r.Answer) != 1 || r.Answer[0].(*dns.PTR).Ptr != "db." {
		t.Errorf("PTR: %v", r.Answer)
	}
	if n := count.Load(); n != 0 {
		t.Fatalf("%d queries reached the upstream for local names", n)
	}
	// Other names go to the upstream, from the host's side.
	if r := query(t, nsWeb, "udp", "other.example", dns.TypeA); len(answerA(r)) != 1 || answerA(r)[0] != "198.51.100.7" {
		t.Errorf("forwarded: %v", r)
	}
	// Another network's names are not visible.
	if r := query(t, nsOther, "udp", "db", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("db from another network: rcode %d %v", r.Rcode, r.Answer)
	}
	// An internal network forwards no name: no way out.
	internal, err := m.Create(ctx, Config{Name: "walled", Internal: true})
	if err != nil {
		t.Fatal(err)
	}
	nsInt := newNS(t)
	if _, err := internal.Attach(ctx, nsInt, AttachOptions{Name: "inside"}); err != nil {
		t.Fatal(err)
	}
	before := count.Load()
	if r := query(t, nsInt, "udp", "other.example", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Errorf("an internal network's query: rcode %d %v", r.Rcode, r.Answer)
	}
	if r := query(t, nsInt, "udp", "inside", dns.TypeA); len(r.Answer) != 1 {
		t.Errorf("an internal network's own name: %v", r.Answer)
	}
	if count.Load() != before {
		t.Error("an internal network's query reached the upstream")
	}
	// After Detach the record is gone.
	if err := db.Detach(); err != nil {
		t.Fatal(err)
	}
	if r := query(t, nsWeb, "udp", "db", dns.TypeA); r.Rcode != dns.RcodeNameError {
		t.Errorf("db after detach: rcode %d %v", r.Rcode, r.Answer)
	}
	// The detached namespace's server is gone.
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if c, err := Dial(dctx, nsDB, "tcp", ResolverAddr.String()); err == nil {
		c.Close()
		t.Error("embedded DNS still served in a detached namespace")
	}
	// The default network has no embedded server, as in Docker.
	def, err := m.Get(ctx, DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	nsDef := newNS(t)
	if _, err := def.Attach(ctx, nsDef, AttachOptions{Name: "plain"}); err != nil {
		t.Fatal(err)
	}
	if c, err := Dial(dctx, nsDef, "tcp", ResolverAddr.String()); err == nil {
		c.Close()
		t.Error("embedded DNS on the default network")
	}
}

func TestNoUpstreamRefuses(t *testing.T) {
	requireRoot(t)
	m := New(Options{DNSUpstreams: []netip.AddrPort{}})
	t.Cleanup(func() { m.Close() })
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	ns := newNS(t)
	if _, err := n.Attach(ctx, ns, AttachOptions{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if r := query(t, ns, "udp", "nowhere.example", dns.TypeA); r.Rcode != dns.RcodeRefused {
		t.Errorf("rcode %d", r.Rcode)
	}
}

func TestResolvConfAndHosts(t *testing.T) {
	host := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(host, []byte("# comment\nnameserver 127.0.0.53\nnameserver 198.51.100.53\nsearch corp.example\noptions ndots:2 edns0\n"), 0o644)
	m := New(Options{ResolvConf: host})
	user := &Endpoint{n: &Network{m: m, cfg: Config{Name: "app"}}, ip: netip.MustParseAddr("172.30.0.2")}
	def := &Endpoint{n: &Network{m: m, cfg: Config{Name: DefaultName}}, ip: netip.MustParseAddr("172.17.0.2")}
	if got, want := string(ResolvConf([]*Endpoint{user})), "nameserver 127.0.0.11\nsearch corp.example\noptions edns0 ndots:0\n"; got != want {
		t.Errorf("user network:\n%s\nwant\n%s", got, want)
	}
	if got, want := string(ResolvConf([]*Endpoint{def})), "nameserver 198.51.100.53\nsearch corp.example\noptions ndots:2 edns0\n"; got != want {
		t.Errorf("default network:\n%s\nwant\n%s", got, want)
	}
	if got := m.upstreams(); len(got) != 2 || got[0].String() != "127.0.0.53:53" {
		t.Errorf("upstreams from the host: %v", got)
	}
	h := string(HostsFile("web", []netip.Addr{user.IP()}))
	if !strings.HasPrefix(h, "127.0.0.1\tlocalhost\n") || !strings.Contains(h, "172.30.0.2\tweb\n") {
		t.Errorf("hosts:\n%s", h)
	}
}
