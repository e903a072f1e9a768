package network

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// hubTable is the nftables table inside the hub; nothing outside the hub
// sees it, and it goes with the hub.
const hubTable = "berth"

// ifname is an interface name as nftables compares it: NUL-padded to
// IFNAMSIZ.
func ifname(s string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, s)
	return b
}

// syncRules replaces the hub's forward chain with the rules for nets in
// one transaction: traffic from a network's bridge may leave only to the
// same bridge or to the uplink (two networks are isolated), and an
// internal network's traffic reaches nothing through the uplink but the
// host's own address on it.
//
// The network with the overlay, vx (nil: none), may also send to its
// tunnel.
func (h *hub) syncRules(nets []*Network, vx *overlay) error {
	if h.hubNft == nil {
		// One socket in the hub for its life: opening one in another
		// namespace costs a trip of a thread into it each time.
		c, err := nftables.New(nftables.WithNetNSFd(h.ns.Fd()), nftables.AsLasting())
		if err != nil {
			return fmt.Errorf("nftables in hub: %w", err)
		}
		h.hubNft = c
	}
	c := h.hubNft
	t := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: hubTable})
	policy := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{
		Name: "forward", Table: t, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &policy,
	})
	c.FlushChain(ch)
	drop := &expr.Verdict{Kind: expr.VerdictDrop}
	for _, n := range nets {
		br := n.bridgeName
		isolate := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(br)},
			&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(br)},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(uplinkName)},
		}
		if vx != nil && vx.n == n {
			isolate = append(isolate, &expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(vx.name)})
		}
		c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append(isolate, drop)})
		if n.cfg.Internal {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append([]expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(br)},
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(uplinkName)},
			}, notToAddr(n.hostAddr, drop)...)})
			v6 := []expr.Any{ // no IPv6 address for the host: no IPv6 out at all
				&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
				drop,
			}
			if n.hostAddr6.IsValid() {
				v6 = notToAddr(n.hostAddr6, drop)
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: append([]expr.Any{
				&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(br)},
				&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname(uplinkName)},
			}, v6...)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables in hub: %w", err)
	}
	return nil
}

// notToAddr matches packets of a's family whose destination is not a,
// then applies v.
func notToAddr(a netip.Addr, v expr.Any) []expr.Any {
	proto, off, n := byte(unix.NFPROTO_IPV4), uint32(16), uint32(4)
	if a.Is6() {
		proto, off, n = unix.NFPROTO_IPV6, 24, 16
	}
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: n},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: a.AsSlice()},
		v,
	}
}
