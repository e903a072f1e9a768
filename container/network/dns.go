package network

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/berthlabs/berth/namespace"
	"github.com/miekg/dns"
)

// ResolverAddr is where the embedded DNS server listens inside each
// container of a user-defined network, as Docker's does.
var ResolverAddr = netip.MustParseAddrPort("127.0.0.11:53")

// recordTTL is the TTL of the embedded server's answers (Docker's: 600 s
// would outlive a container; names change with containers).
const recordTTL = 10

// upstreamTimeout bounds one forwarded query to one upstream.
const upstreamTimeout = 3 * time.Second

// resolver is the embedded DNS server of one network namespace: UDP and
// TCP sockets on ResolverAddr inside it, served from this process. It
// answers the names and aliases of the endpoints on the namespace's
// user-defined networks and forwards other names to the upstreams, from
// the host's side (so a loopback upstream such as 127.0.0.53 works).
type resolver struct {
	m       *Manager
	ino     uint64
	servers []*dns.Server
	refs    int
}

// startResolver serves DNS in ns. m.mu is held.
func (m *Manager) startResolver(ns *namespace.Namespace) (_ *resolver, err error) {
	r := &resolver{m: m, ino: ns.Inode()}
	defer func() {
		if err != nil {
			r.stop()
		}
	}()
	// Both sockets on one trip into the namespace.
	var pc net.PacketConn
	var l net.Listener
	err = namespace.Do(func() error {
		var lc net.ListenConfig
		var err error
		if pc, err = lc.ListenPacket(context.Background(), "udp", ResolverAddr.String()); err != nil {
			return err
		}
		if l, err = lc.Listen(context.Background(), "tcp", ResolverAddr.String()); err != nil {
			pc.Close()
		}
		return err
	}, ns)
	if err != nil {
		return nil, fmt.Errorf("embedded DNS: listen on %s: %w", ResolverAddr, err)
	}
	r.servers = []*dns.Server{{PacketConn: pc, Handler: r}, {Listener: l, Handler: r}}
	for _, s := range r.servers {
		started := make(chan struct{})
		failed := make(chan error, 1)
		s.NotifyStartedFunc = func() { close(started) }
		go func() { failed <- s.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-failed:
			return nil, fmt.Errorf("embedded DNS: serve: %w", err)
		}
	}
	return r, nil
}

func (r *resolver) stop() {
	for _, s := range r.servers {
		// A forwarded query in flight may wait for its upstreams: give it
		// a moment, not its whole timeout.
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := s.ShutdownContext(ctx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			// Not started: close the sockets it was given.
			if s.PacketConn != nil {
				s.PacketConn.Close()
			}
			if s.Listener != nil {
				s.Listener.Close()
			}
		}
	}
}

// ServeDNS answers one query.
func (r *resolver) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	if len(q.Question) != 1 || q.Opcode != dns.OpcodeQuery {
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeFormatError)
		if q.Opcode != dns.OpcodeQuery {
			m.SetRcode(q, dns.RcodeNotImplemented)
		}
		w.WriteMsg(m)
		return
	}
	if resp, ok := r.local(q); ok {
		w.WriteMsg(resp)
		return
	}
	if r.internalOnly() {
		// No way out for internal networks, names included.
		m := new(dns.Msg)
		m.SetRcode(q, dns.RcodeRefused)
		w.WriteMsg(m)
		return
	}
	_, tcp := w.RemoteAddr().(*net.TCPAddr)
	resp := r.m.forward(q, tcp)
	if !tcp {
		size := dns.MinMsgSize
		if o := q.IsEdns0(); o != nil {
			size = int(o.UDPSize())
		}
		resp.Truncate(size) // an answer fetched over TCP may not fit
	}
	w.WriteMsg(resp)
}

// internalOnly reports whether every network of the namespace is
// internal.
func (r *resolver) internalOnly() bool {
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	nets := r.m.networksOf(r.ino)
	for _, n := range nets {
		if !n.cfg.Internal {
			return false
		}
	}
	return len(nets) > 0
}

// local answers q from the records of the networks the namespace is on,
// or reports that the name is not theirs.
func (r *resolver) local(q *dns.Msg) (*dns.Msg, bool) {
	question := q.Question[0]
	name := strings.ToLower(strings.TrimSuffix(question.Name, "."))
	resp := new(dns.Msg)
	resp.SetReply(q)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	r.m.mu.Lock()
	defer r.m.mu.Unlock()
	if question.Qtype == dns.TypePTR {
		a, ok := ptrAddr(name)
		if !ok {
			return nil, false
		}
		for _, n := range r.m.networksOf(r.ino) {
			for e := range n.endpoints {
				if (e.ip == a || e.ip6 == a) && isDNSName(e.name) {
					resp.Answer = append(resp.Answer, &dns.PTR{
						Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypePTR, Class: dns.ClassINET, Ttl: recordTTL},
						Ptr: dns.Fqdn(e.name),
					})
					return resp, true
				}
			}
		}
		return nil, false
	}
	found := false
	for _, n := range r.m.networksOf(r.ino) {
		for e := range n.endpoints {
			if !e.resolvesAs(name) {
				continue
			}
			found = true
			if question.Qtype == dns.TypeA || question.Qtype == dns.TypeANY {
				resp.Answer = append(resp.Answer, &dns.A{
					Hdr: dns.RR_Header{Name: question.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: recordTTL},
					A:   e.ip.AsSlice(),
				})
			}
			if (question.Qtype == dns.TypeAAAA || question.Qtype == dns.TypeANY) && e.ip6.IsValid() {
				resp.Answer = append(resp.Answer, &dns.AAAA{
					Hdr:  dns.RR_Header{Name: question.Name, Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: recordTTL},
					AAAA: e.ip6.AsSlice(),
				})
			}
		}
	}
	if !found {
		return r.m.record(q, name)
	}
	// A known name with no record of the type asked for: NOERROR with
	// no answer (NODATA), never a forward that could leak the name.
	slices.SortFunc(resp.Answer, func(a, b dns.RR) int { return strings.Compare(a.String(), b.String()) })
	return resp, true
}

func (e *Endpoint) resolvesAs(name string) bool {
	if isDNSName(e.name) && strings.EqualFold(e.name, name) {
		return true
	}
	return slices.ContainsFunc(e.aliases, func(a string) bool { return strings.EqualFold(a, name) })
}

// ptrAddr parses an in-addr.arpa or ip6.arpa name.
func ptrAddr(name string) (netip.Addr, bool) {
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		nib := strings.Split(rest, ".")
		if len(nib) != 32 {
			return netip.Addr{}, false
		}
		slices.Reverse(nib)
		var b strings.Builder
		for i, x := range nib {
			if i > 0 && i%4 == 0 {
				b.WriteByte(':')
			}
			b.WriteString(x)
		}
		a, err := netip.ParseAddr(b.String())
		return a, err == nil
	}
	rest, ok := strings.CutSuffix(name, ".in-addr.arpa")
	if !ok {
		return netip.Addr{}, false
	}
	p := strings.Split(rest, ".")
	if len(p) != 4 {
		return netip.Addr{}, false
	}
	slices.Reverse(p)
	a, err := netip.ParseAddr(strings.Join(p, "."))
	return a, err == nil
}

// networksOf returns the user-defined networks the namespace with inode
// ino has endpoints on. m.mu is held.
func (m *Manager) networksOf(ino uint64) []*Network {
	var out []*Network
	for _, n := range m.networks {
		if n.cfg.Name == DefaultName {
			continue
		}
		for e := range n.endpoints {
			if e.nsIno == ino {
				out = append(out, n)
				break
			}
		}
	}
	return out
}

// upstreams returns the servers other names are forwarded to.
func (m *Manager) upstreams() []netip.AddrPort {
	if m.opts.DNSUpstreams != nil {
		return m.opts.DNSUpstreams
	}
	m.hostDNSOnce.Do(func() {
		b, err := os.ReadFile(m.opts.resolvConfPath())
		if err != nil {
			m.log.Debug("embedded DNS: no host resolvers", "err", err)
			return
		}
		m.hostDNS = parseResolvConf(b).nameservers
	})
	return m.hostDNS
}

// forward sends q to the upstreams in turn and returns the first answer,
// or SERVFAIL (REFUSED when there is no upstream).
func (m *Manager) forward(q *dns.Msg, tcp bool) *dns.Msg {
	ups := m.upstreams()
	fail := new(dns.Msg)
	if len(ups) == 0 {
		fail.SetRcode(q, dns.RcodeRefused)
		return fail
	}
	fail.SetRcode(q, dns.RcodeServerFailure)
	netw := "udp"
	if tcp {
		netw = "tcp"
	}
	for _, up := range ups {
		c := dns.Client{Net: netw, Timeout: upstreamTimeout}
		resp, _, err := c.Exchange(q, up.String())
		if err == nil && resp.Truncated && !tcp {
			c.Net = "tcp"
			resp, _, err = c.Exchange(q, up.String())
		}
		if err != nil {
			m.log.Debug("embedded DNS: upstream", "upstream", up, "err", err)
			continue
		}
		return resp
	}
	return fail
}

// resolvConf is what berth reads of a resolv.conf.
type resolvConf struct {
	nameservers []netip.AddrPort
	search      []string
	options     []string
}

func parseResolvConf(b []byte) resolvConf {
	var rc resolvConf
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.HasPrefix(f[0], "#") || strings.HasPrefix(f[0], ";") {
			continue
		}
		switch f[0] {
		case "nameserver":
			if a, err := netip.ParseAddr(f[1]); err == nil {
				rc.nameservers = append(rc.nameservers, netip.AddrPortFrom(a, 53))
			}
		case "search", "domain":
			rc.search = f[1:]
		case "options":
			rc.options = append(rc.options, f[1:]...)
		}
	}
	return rc
}

// ResolvConf returns the /etc/resolv.conf for a container whose
// endpoints are eps, by Docker's rules: on a user-defined network the
// embedded server (nameserver 127.0.0.11, options ndots:0) with the
// host's search domains; otherwise the host's resolv.conf (the one of
// the endpoints' Manager) without its loopback nameservers, which a
// container cannot reach.
func ResolvConf(eps []*Endpoint) []byte {
	path := (&Options{}).resolvConfPath()
	if len(eps) > 0 && eps[0].n.m != nil {
		path = eps[0].n.m.opts.resolvConfPath()
	}
	host, _ := os.ReadFile(path)
	rc := parseResolvConf(host)
	return formatResolvConf(rc, slices.ContainsFunc(eps, func(e *Endpoint) bool { return e.n.cfg.Name != DefaultName }))
}

// CNIResolvConf returns the /etc/resolv.conf for a container on CNI
// networks: the DNS settings of the first result that has nameservers,
// or else the host's resolv.conf without its loopback nameservers.
func CNIResolvConf(atts []*CNIAttachment) []byte {
	for _, a := range atts {
		if d := a.result.DNS; len(d.Nameservers) > 0 {
			rc := resolvConf{search: d.Search, options: d.Options}
			if len(rc.search) == 0 && d.Domain != "" {
				rc.search = []string{d.Domain}
			}
			for _, ns := range d.Nameservers {
				if a, err := netip.ParseAddr(ns); err == nil {
					rc.nameservers = append(rc.nameservers, netip.AddrPortFrom(a, 53))
				}
			}
			return formatResolvConf(rc, false)
		}
	}
	host, _ := os.ReadFile((&Options{}).resolvConfPath())
	return formatResolvConf(parseResolvConf(host), false)
}

// formatResolvConf writes rc, or with embedded the embedded server with
// rc's search domains and options.
func formatResolvConf(rc resolvConf, embedded bool) []byte {
	var b strings.Builder
	if embedded {
		fmt.Fprintf(&b, "nameserver %s\n", ResolverAddr.Addr())
	} else {
		for _, ns := range rc.nameservers {
			if !ns.Addr().IsLoopback() {
				fmt.Fprintf(&b, "nameserver %s\n", ns.Addr())
			}
		}
	}
	if len(rc.search) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(rc.search, " "))
	}
	opts := slices.DeleteFunc(slices.Clone(rc.options), func(o string) bool { return embedded && strings.HasPrefix(o, "ndots:") })
	if embedded {
		opts = append(opts, "ndots:0")
	}
	if len(opts) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(opts, " "))
	}
	return []byte(b.String())
}

// HostsFile returns the /etc/hosts for a container named hostname with
// the addresses addrs: localhost, and the container's own name at each
// of its addresses (at 127.0.1.1 when it has none), as Docker writes it.
func HostsFile(hostname string, addrs []netip.Addr) []byte {
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n")
	if hostname == "" {
		return []byte(b.String())
	}
	for _, a := range addrs {
		fmt.Fprintf(&b, "%s\t%s\n", a, hostname)
	}
	if len(addrs) == 0 {
		fmt.Fprintf(&b, "127.0.1.1\t%s\n", hostname)
	}
	return []byte(b.String())
}
