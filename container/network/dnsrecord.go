package network

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/miekg/dns"
)

// A DNSRecord is what the embedded DNS servers answer for a name given
// to SetDNS: addresses (A and AAAA records, in order) or, instead, a
// CNAME to another name.
type DNSRecord struct {
	// Addrs are the name's addresses.
	Addrs []netip.Addr
	// CNAME, if set, makes the name an alias of this one; Addrs must
	// then be empty.
	CNAME string
}

// SetDNS makes every embedded DNS server of the Manager answer name
// with rec (Kubernetes' Service records, say: "web.default.svc.cluster.local"),
// over the names of the endpoints' networks; a zero rec (no address, no
// CNAME) removes the name. Names are compared without case and without
// a final dot.
func (m *Manager) SetDNS(name string, rec DNSRecord) {
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.records == nil {
		return // closed
	}
	if len(rec.Addrs) == 0 && rec.CNAME == "" {
		delete(m.records, name)
		return
	}
	rec.Addrs = slices.Clone(rec.Addrs)
	m.records[name] = rec
}

// SetDNSZones sets the zones (such as "cluster.local") the embedded DNS
// servers are authoritative for: a name in one that SetDNS did not give
// is answered NXDOMAIN, never forwarded upstream.
func (m *Manager) SetDNSZones(zones ...string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.zones = nil
	for _, z := range zones {
		m.zones = append(m.zones, strings.ToLower(strings.Trim(z, ".")))
	}
}

// DNSNames returns the names SetDNS gave records to, sorted.
func (m *Manager) DNSNames() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for n := range m.records {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// record answers q's question from SetDNS's records or zones, or
// reports that it is not theirs. m.mu is held.
func (m *Manager) record(q *dns.Msg, name string) (*dns.Msg, bool) {
	question := q.Question[0]
	resp := new(dns.Msg)
	resp.SetReply(q)
	resp.Authoritative = true
	resp.RecursionAvailable = true
	rec, ok := m.records[name]
	if !ok {
		for _, z := range m.zones {
			if name == z || strings.HasSuffix(name, "."+z) {
				resp.SetRcode(q, dns.RcodeNameError)
				resp.Authoritative = true
				return resp, true
			}
		}
		return nil, false
	}
	hdr := func(t uint16) dns.RR_Header {
		return dns.RR_Header{Name: question.Name, Rrtype: t, Class: dns.ClassINET, Ttl: recordTTL}
	}
	if rec.CNAME != "" {
		resp.Answer = append(resp.Answer, &dns.CNAME{Hdr: hdr(dns.TypeCNAME), Target: dns.Fqdn(rec.CNAME)})
		return resp, true
	}
	for _, a := range rec.Addrs {
		switch {
		case a.Is4() && (question.Qtype == dns.TypeA || question.Qtype == dns.TypeANY):
			resp.Answer = append(resp.Answer, &dns.A{Hdr: hdr(dns.TypeA), A: a.AsSlice()})
		case a.Is6() && (question.Qtype == dns.TypeAAAA || question.Qtype == dns.TypeANY):
			resp.Answer = append(resp.Answer, &dns.AAAA{Hdr: hdr(dns.TypeAAAA), AAAA: a.AsSlice()})
		}
	}
	return resp, true
}
