package network

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Egress: containers of a network that is not internal reach the outside
// through the host, which forwards their packets and masquerades them
// behind its own address (Docker's NAT). The host's rules are this
// hub's own nftables table, named hostTablePrefix + the name of the
// hub's link on the host, plus, in every other table's forward base
// chain (iptables-nft's FORWARD with Docker's DROP policy, a firewalld
// table), two accept rules for that link at the head, marked with a
// comment. All of them are removed on Close and, after a crash, by the
// sweep of the next Manager that makes a hub on the machine: a table or
// rule whose link no longer exists belongs to a process that is gone.

// hostTablePrefix starts the names of berth's nftables tables on the
// host.
const hostTablePrefix = "berth-"

// ruleComment starts the comment of the accept rules berth puts in other
// tables' forward chains; the link's name follows.
const ruleComment = "berth:"

// tableFlagOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to
// the netlink socket that made it, and the kernel removes it when that
// socket closes, so when its process dies, however it dies.
const tableFlagOwner = 0x2

func (h *hub) hostTable() *nftables.Table {
	t := &nftables.Table{Family: nftables.TableFamilyIPv4, Name: hostTablePrefix + h.hostLink.Attrs().Name}
	if !h.noOwner {
		t.Flags = tableFlagOwner
	}
	return t
}

// hostConn is the hub's one nftables socket on the host, the owner of
// its host table for the hub's life.
func (h *hub) hostConn() (*nftables.Conn, error) {
	if h.nft == nil {
		var raw *mdnetlink.Conn
		c, err := nftables.New(nftables.AsLasting(), nftables.WithSockOptions(func(nc *mdnetlink.Conn) error {
			raw = nc
			return nil
		}))
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		h.nft, h.rawNft = c, raw
	}
	return h.nft, nil
}

// createOwnedTable makes the host table with NFT_TABLE_F_OWNER through
// the hub's nftables socket (google/nftables writes no table flags, so
// this one message is built here): the kernel then removes the table,
// DNATs, masquerading and guard included, when the socket closes.
func (h *hub) createOwnedTable() error {
	if _, err := h.hostConn(); err != nil {
		return err
	}
	nfgen := func(family byte, resID uint16) []byte {
		return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
	}
	attrs, err := mdnetlink.MarshalAttributes([]mdnetlink.Attribute{
		{Type: unix.NFTA_TABLE_NAME, Data: append([]byte(h.hostTable().Name), 0)},
		{Type: unix.NFTA_TABLE_FLAGS, Data: []byte{0, 0, 0, tableFlagOwner}},
	})
	if err != nil {
		return err
	}
	msgs := []mdnetlink.Message{
		{Header: mdnetlink.Header{Type: mdnetlink.HeaderType(unix.NFNL_MSG_BATCH_BEGIN), Flags: mdnetlink.Request},
			Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
		{Header: mdnetlink.Header{Type: mdnetlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: mdnetlink.Request | mdnetlink.Acknowledge | mdnetlink.Create | mdnetlink.Excl},
			Data: append(nfgen(unix.AF_INET, 0), attrs...)},
		{Header: mdnetlink.Header{Type: mdnetlink.HeaderType(unix.NFNL_MSG_BATCH_END), Flags: mdnetlink.Request},
			Data: nfgen(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES)},
	}
	if _, err := h.rawNft.SendMessages(msgs); err != nil {
		return fmt.Errorf("nftables: create owned table: %w", err)
	}
	if _, err := h.rawNft.Receive(); err != nil {
		return fmt.Errorf("nftables: create owned table: %w", err)
	}
	return nil
}

// A localNAT sends what this host's own processes send to a published
// port straight to the container (kernel DNAT in the output hook), so
// that local clients skip the relay; clients on other hosts and in
// containers still reach the relay's socket.
type localNAT struct {
	hostIP netip.Addr // zero: any local address
	port   uint16
	proto  string
	target netip.AddrPort
}

// syncHostRules makes the host's rules fit nets and nats: masquerading
// for each network that is not internal (and for loopback-sourced
// packets that a DNAT sent to a container), forwarding allowed through
// the hub's link, and the local DNATs. With none of these the host has
// no rule of this hub.
func (h *hub) syncHostRules(nets []*Network, nats []localNAT) error {
	var out []*Network
	for _, n := range nets {
		if !n.cfg.Internal {
			out = append(out, n)
		}
	}
	if len(out) == 0 && len(nats) == 0 {
		return h.removeHostRules()
	}
	if len(out) > 0 {
		if err := enableForwarding(); err != nil {
			return err
		}
	}
	err := h.writeHostRules(nets, out, nats)
	if err != nil && !h.tableMade && !h.noOwner && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)) {
		// (tableMade is still false only when the owned table itself
		// could not be made.)
		// A kernel older than 5.12 has no owned tables: the sweep of
		// the next hub removes the table of a process that died.
		h.noOwner = true
		err = h.writeHostRules(nets, out, nats)
	}
	if err != nil {
		return err
	}
	h.tableMade = true
	if len(out) > 0 {
		h.acceptsInstalled = true
	}
	return nil
}

// syncNATs rewrites only the local DNATs (the output chain), when the
// rest of the host table is in place already; publishing a port then
// costs one small transaction.
func (h *hub) syncNATs(nets []*Network, nats []localNAT) error {
	if !h.tableMade {
		return h.syncHostRules(nets, nats)
	}
	c, err := h.hostConn()
	if err != nil {
		return err
	}
	addNATChain(c, h.hostTable(), nats)
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: host rules: %w", err)
	}
	return nil
}

// addNATChain (re)writes the host table's output chain: the local DNATs.
func addNATChain(c *nftables.Conn, t *nftables.Table, nats []localNAT) {
	och := c.AddChain(&nftables.Chain{
		Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest,
	})
	c.FlushChain(och)
	for _, r := range nats {
		c.AddRule(&nftables.Rule{Table: t, Chain: och, Exprs: dnatExprs(r)})
	}
}

// writeHostRules writes the host table in one transaction.
func (h *hub) writeHostRules(nets, out []*Network, nats []localNAT) error {
	c, err := h.hostConn()
	if err != nil {
		return err
	}
	link := h.hostLink.Attrs().Name
	t := h.hostTable()
	if h.noOwner {
		c.AddTable(t)
	} else if !h.tableMade {
		if err := h.createOwnedTable(); err != nil {
			return err
		}
		h.tableMade = true
	}
	ch := c.AddChain(&nftables.Chain{
		Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource,
	})
	c.FlushChain(ch)
	for _, n := range out {
		mask := ipNet(n.cfg.Subnet).Mask
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: n.cfg.Subnet.Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(link)},
			&expr.Masq{},
		}})
	}
	// A local client's DNATed packet leaves with its source 127.0.0.1,
	// which the container cannot answer: masquerade it (route_localnet
	// on the link lets it out at all).
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{127}},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(link)},
		&expr.Masq{},
	}})
	addNATChain(c, t, nats)
	// A guard: nothing to a network's subnet leaves this host by another
	// interface than the hub's (with a route gone, a DNATed packet would
	// otherwise follow the default route off the machine). It sits in
	// postrouting: in the output hook the interface is still the one
	// from before the DNAT rerouted the packet.
	gch := c.AddChain(&nftables.Chain{
		Name: "guard", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityFilter,
	})
	c.FlushChain(gch)
	for _, n := range nets {
		c.AddRule(&nftables.Rule{Table: t, Chain: gch, Exprs: []expr.Any{
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: ipNet(n.cfg.Subnet).Mask, Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: n.cfg.Subnet.Addr().AsSlice()},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(link)},
			&expr.Verdict{Kind: expr.VerdictDrop},
		}})
	}
	// No new connection from another interface into the hub: the host
	// forwards for egress, which must not make the containers reachable
	// from the host's neighbours (published ports serve them through
	// the relay, on the host).
	fch := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter,
	})
	c.FlushChain(fch)
	c.AddRule(&nftables.Rule{Table: t, Chain: fch, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(link)},
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(link)},
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryLE(expr.CtStateBitNEW), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictDrop},
	}})
	if len(out) > 0 && !h.acceptsInstalled {
		if err := insertAccepts(c, link); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: host rules: %w", err)
	}
	return nil
}

// dnatExprs matches r's destination (r.hostIP, or any local address),
// protocol and port, and rewrites the destination to r.target.
func dnatExprs(r localNAT) []expr.Any {
	var e []expr.Any
	if r.hostIP.IsValid() {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: r.hostIP.AsSlice()})
	} else {
		e = append(e,
			&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryLE(unix.RTN_LOCAL)})
	}
	proto := byte(unix.IPPROTO_TCP)
	if r.proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	port := []byte{byte(r.port >> 8), byte(r.port)}
	tport := []byte{byte(r.target.Port() >> 8), byte(r.target.Port())}
	return append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: port},
		&expr.Immediate{Register: 1, Data: r.target.Addr().AsSlice()},
		&expr.Immediate{Register: 2, Data: tport},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	)
}

// insertAccepts puts, at the head of every forward base chain of the
// host's other IPv4 and inet tables, rules that accept what comes from
// link and the replies that go to it. In iptables-nft's own table (ip
// filter, where Docker's DROP policy lives) the rules are written as
// iptables writes them (interface names with their NUL, a counter, the
// conntrack match rather than a native ct expression), so that iptables
// can still read its table: "-i LINK -j ACCEPT" and "-o LINK -m conntrack
// --ctstate RELATED,ESTABLISHED -j ACCEPT", with a comment.
func insertAccepts(c *nftables.Conn, link string) error {
	chains, err := c.ListChains()
	if err != nil {
		return fmt.Errorf("nftables: list chains: %w", err)
	}
	comment := userdata.AppendString(nil, userdata.TypeComment, ruleComment+link)
	for _, ch := range forwardChains(chains) {
		name := ifname(link)
		established := []expr.Any{
			&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
				Mask: binaryLE(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED), Xor: make([]byte, 4)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		}
		if ch.Table.Family == nftables.TableFamilyIPv4 && ch.Table.Name == "filter" {
			name = append([]byte(link), 0)
			established = []expr.Any{&expr.Match{Name: "conntrack", Rev: 3, Info: &xt.ConntrackMtinfo3{
				ConntrackMtinfo2: xt.ConntrackMtinfo2{
					ConntrackMtinfoBase: xt.ConntrackMtinfoBase{MatchFlags: uint16(xt.ConntrackState)},
					StateMask:           uint16(expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED),
				},
			}}}
		}
		out := append([]expr.Any{
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
		}, established...)
		c.InsertRule(&nftables.Rule{Table: ch.Table, Chain: ch, UserData: comment,
			Exprs: append(out, &expr.Counter{}, &expr.Verdict{Kind: expr.VerdictAccept})})
		c.InsertRule(&nftables.Rule{Table: ch.Table, Chain: ch, UserData: comment, Exprs: []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
			&expr.Counter{},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	return nil
}

func binaryLE(v uint32) []byte { return []byte{byte(v), byte(v >> 8), byte(v >> 16), byte(v >> 24)} }

// forwardChains are the base chains on the forward hook of IPv4 and inet
// tables that are not berth's.
func forwardChains(chains []*nftables.Chain) []*nftables.Chain {
	var out []*nftables.Chain
	for _, ch := range chains {
		if ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookForward || ch.Type != nftables.ChainTypeFilter {
			continue
		}
		if ch.Table.Family != nftables.TableFamilyIPv4 && ch.Table.Family != nftables.TableFamilyINet {
			continue
		}
		if strings.HasPrefix(ch.Table.Name, hostTablePrefix) {
			continue
		}
		out = append(out, ch)
	}
	return out
}

// removeHostRules removes the hub's table and its accept rules.
func (h *hub) removeHostRules() error {
	if !h.tableMade {
		return nil
	}
	c, err := h.hostConn()
	if err != nil {
		return err
	}
	link := h.hostLink.Attrs().Name
	if err := sweepRules(c, func(l string) bool { return l == link }); err != nil {
		return err
	}
	h.acceptsInstalled, h.tableMade = false, false
	return nil
}

// sweepRules removes berth's host tables and accept rules whose link
// name dead reports as gone.
func sweepRules(c *nftables.Conn, dead func(link string) bool) error {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tables {
		if link, ok := strings.CutPrefix(t.Name, hostTablePrefix); ok && strings.HasPrefix(link, hostLinkPrefix) && dead(link) {
			c.DelTable(t)
		}
	}
	chains, err := c.ListChains()
	if err != nil {
		return fmt.Errorf("nftables: list chains: %w", err)
	}
	for _, ch := range forwardChains(chains) {
		rules, err := c.GetRules(ch.Table, ch)
		if err != nil {
			return fmt.Errorf("nftables: rules of %s %s: %w", ch.Table.Name, ch.Name, err)
		}
		for _, r := range rules {
			s, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			if link, ok := strings.CutPrefix(s, ruleComment); ok && dead(link) {
				if err := c.DelRule(r); err != nil {
					return fmt.Errorf("nftables: remove rule from %s %s: %w", ch.Table.Name, ch.Name, err)
				}
			}
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: remove host rules: %w", err)
	}
	return nil
}

// sweepDead removes the host rules of hubs whose link is gone: their
// processes died without Close.
func sweepDead(host *netlink.Handle) error {
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	return sweepRules(c, func(link string) bool {
		_, err := host.LinkByName(link)
		var notFound netlink.LinkNotFoundError
		return errors.As(err, &notFound)
	})
}

// enableForwarding turns on IPv4 forwarding on the host, as Docker does;
// it is left on.
func enableForwarding() error {
	const path = "/proc/sys/net/ipv4/ip_forward"
	b, err := os.ReadFile(path)
	if err == nil && strings.TrimSpace(string(b)) == "1" {
		return nil
	}
	if err := os.WriteFile(path, []byte("1"), 0); err != nil {
		return fmt.Errorf("enable IPv4 forwarding: %w", err)
	}
	return nil
}
