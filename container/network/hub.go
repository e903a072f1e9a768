package network

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/namespace"
	"github.com/google/nftables"
	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The hub is a network namespace that only this process holds (it is
// never bind-mounted): it holds one bridge per network, the veths to the
// containers, the firewall rules that isolate networks, and one veth pair
// to the host. When the process dies, however it dies, the kernel
// destroys the hub with everything in it, the pair to the host included,
// and with the host's end go its address and its routes.
type hub struct {
	ns       *namespace.Namespace
	nl       *netlink.Handle // in the hub
	host     *netlink.Handle // in the host's (the process's) namespace
	hostLink netlink.Link    // the host's end of the pair
	up       netlink.Link    // the hub's end, uplinkName

	acceptsInstalled bool            // in other tables' forward chains
	nft              *nftables.Conn  // owns the host table
	hubNft           *nftables.Conn  // in the hub
	rawNft           *mdnetlink.Conn // nft's socket
	tableMade        bool            // the host table exists
	svcTableMade     bool            // the hub's service table exists
	noOwner          bool            // the kernel has no owned tables
	ipv6             bool            // the host has IPv6: dual-stack networks work
}

// The uplink's static IPv6 link-local addresses, next hops of the IPv6
// routes between host and hub (no DAD, so that they work at once).
var (
	hubLL  = netip.MustParseAddr("fe80::b:1")
	hostLL = netip.MustParseAddr("fe80::b:2")
)

const (
	uplinkName = "up0"
	// hostLinkPrefix starts the name of the host's end of a hub's uplink
	// ("bh" and 8 random hex digits).
	hostLinkPrefix = "bh"
	// linkAlias is set as the alias of the host's end, so that tools see
	// whose link it is.
	linkAlias = "berth network hub"
)

func newHub() (_ *hub, err error) {
	h := &hub{}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if h.ns, err = namespace.NewNet(""); err != nil {
		return nil, fmt.Errorf("create hub namespace: %w", err)
	}
	if h.nl, err = netlink.NewHandleAt(netns.NsHandle(h.ns.Fd())); err != nil {
		return nil, fmt.Errorf("netlink in hub: %w", err)
	}
	if h.host, err = netlink.NewHandle(); err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	name := hostLinkPrefix + hex.EncodeToString(rnd[:])
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: name, Alias: linkAlias},
		PeerName:      uplinkName,
		PeerNamespace: netlink.NsFd(h.ns.Fd()),
	}
	if err := h.host.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("create hub uplink %s: %w", name, err)
	}
	if h.hostLink, err = h.host.LinkByName(name); err != nil {
		return nil, fmt.Errorf("hub uplink %s: %w", name, err)
	}
	if err := h.host.LinkSetAlias(h.hostLink, linkAlias); err != nil {
		return nil, fmt.Errorf("hub uplink %s: alias: %w", name, err)
	}
	if h.up, err = h.nl.LinkByName(uplinkName); err != nil {
		return nil, fmt.Errorf("hub uplink %s: %w", uplinkName, err)
	}
	err = namespace.Do(func() error {
		for _, s := range []struct{ path, value string }{
			{"ipv4/ip_forward", "1"},
			{"ipv4/conf/" + uplinkName + "/proxy_arp", "1"},
			{"ipv4/neigh/" + uplinkName + "/proxy_delay", "0"}, // answer ARP at once, not after up to 0.8 s
			{"ipv4/conf/all/rp_filter", "0"},
			{"ipv4/conf/" + uplinkName + "/rp_filter", "0"},
		} {
			if err := writeSysctl(s.path, s.value); err != nil {
				return err
			}
		}
		return nil
	}, h.ns)
	if err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if _, err := os.Stat("/proc/sys/net/ipv6/conf/" + name); err == nil {
		h.ipv6 = true
		// No duplicate address detection in the hub: its interfaces'
		// link-local addresses would be tentative for a second or two
		// after each bridge comes up, delaying its first neighbour
		// solicitations; nothing else can hold addresses there.
		err := namespace.Do(func() error {
			for _, s := range [][2]string{{"ipv6/conf/all/forwarding", "1"}, {"ipv6/conf/default/accept_dad", "0"}, {"ipv6/conf/all/accept_dad", "0"}} {
				if err := writeSysctl(s[0], s[1]); err != nil {
					return err
				}
			}
			return nil
		}, h.ns)
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		if err := h.nl.AddrAdd(h.up, &netlink.Addr{IPNet: addrNet(hubLL, 64), Flags: unix.IFA_F_NODAD}); err != nil {
			return nil, fmt.Errorf("hub: link-local address: %w", err)
		}
		if err := h.host.AddrAdd(h.hostLink, &netlink.Addr{IPNet: addrNet(hostLL, 64), Flags: unix.IFA_F_NODAD}); err != nil {
			return nil, fmt.Errorf("hub: link-local address: %w", err)
		}
	}
	if err := h.nl.LinkSetUp(h.up); err != nil {
		return nil, fmt.Errorf("hub: set %s up: %w", uplinkName, err)
	}
	if err := h.host.LinkSetUp(h.hostLink); err != nil {
		return nil, fmt.Errorf("hub: set %s up: %w", name, err)
	}
	// The hub sends what leaves it to the host without a gateway
	// address: the host answers its ARP requests for any address
	// (proxy ARP on its end, at once).
	if err := h.nl.RouteAdd(&netlink.Route{LinkIndex: h.up.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("0.0.0.0/0")), Scope: netlink.SCOPE_LINK}); err != nil {
		return nil, fmt.Errorf("hub: default route: %w", err)
	}
	if err := writeSysctl("ipv4/conf/"+name+"/proxy_arp", "1"); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if err := writeSysctl("ipv4/neigh/"+name+"/proxy_delay", "0"); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	// Local clients' connections to published ports are DNATed to the
	// containers with their 127.0.0.1 source (masqueraded on the way out).
	if err := writeSysctl("ipv4/conf/"+name+"/route_localnet", "1"); err != nil {
		return nil, fmt.Errorf("hub: %w", err)
	}
	if err := sweepDead(h.host); err != nil {
		return nil, fmt.Errorf("hub: sweep the rules of dead processes: %w", err)
	}
	return h, nil
}

// writeSysctl writes a /proc/sys/net sysctl of the calling thread's
// network namespace.
func writeSysctl(path, value string) error {
	if err := os.WriteFile(filepath.Join("/proc/sys/net", path), []byte(value), 0); err != nil {
		return fmt.Errorf("sysctl net.%s=%s: %w", filepath.ToSlash(path), value, err)
	}
	return nil
}

// close removes the pair to the host at once (the kernel would do it
// when the namespace goes, but asynchronously) and lets go of the hub.
func (h *hub) close() error {
	var errs []error
	if h.host != nil && h.hostLink != nil {
		errs = append(errs, h.removeHostRules())
		if err := h.host.LinkDel(h.hostLink); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove hub uplink %s: %w", h.hostLink.Attrs().Name, err))
		}
	}
	if h.nft != nil {
		h.nft.CloseLasting()
	}
	if h.hubNft != nil {
		h.hubNft.CloseLasting()
	}
	if h.nl != nil {
		h.nl.Close()
	}
	if h.host != nil {
		h.host.Close()
	}
	if h.ns != nil {
		h.ns.Close()
	}
	return errors.Join(errs...)
}

// hostRoutesExcept lists the host's IPv4 and IPv6 routes to prefixes of
// every table, the default routes and those on the link of index skip
// (if not 0) left out.
func (h *hub) hostRoutesExcept(skip int) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := retryDump(func() ([]netlink.Route, error) {
			return h.host.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return nil, fmt.Errorf("list host routes: %w", err)
		}
		for _, r := range routes {
			if r.Dst == nil || skip != 0 && r.LinkIndex == skip {
				continue
			}
			p, ok := prefixOf(r.Dst)
			if !ok || p.Bits() == 0 || r.Table == unix.RT_TABLE_LOCAL {
				continue
			}
			if fam == netlink.FAMILY_V6 && p.Addr().IsLinkLocalUnicast() || p.Addr().IsMulticast() {
				continue
			}
			out = append(out, p)
		}
	}
	return out, nil
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), ones).Masked(), true
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func addrNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, a.BitLen())}
}
