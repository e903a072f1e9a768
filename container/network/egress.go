package network

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/google/nftables/xt"
	"github.com/vishvananda/netlink"
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

func (h *hub) hostTable() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: hostTablePrefix + h.hostLink.Attrs().Name}
}

// syncHostRules makes the host's rules fit nets: masquerading for each
// network that is not internal, forwarding allowed through the hub's
// link. With no such network the host has no rule of this hub.
func (h *hub) syncHostRules(nets []*Network) error {
	var out []*Network
	for _, n := range nets {
		if !n.cfg.Internal {
			out = append(out, n)
		}
	}
	if len(out) == 0 {
		return h.removeHostRules()
	}
	if err := enableForwarding(); err != nil {
		return err
	}
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	link := h.hostLink.Attrs().Name
	t := c.AddTable(h.hostTable())
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
	if !h.acceptsInstalled {
		if err := insertAccepts(c, link); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: host rules: %w", err)
	}
	h.acceptsInstalled = true
	return nil
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
	c, err := nftables.New()
	if err != nil {
		return fmt.Errorf("nftables: %w", err)
	}
	defer c.CloseLasting()
	link := h.hostLink.Attrs().Name
	err = sweepRules(c, func(l string) bool { return l == link })
	h.acceptsInstalled = false
	return err
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
