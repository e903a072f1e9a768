package network

import (
	"fmt"
	"net/netip"
)

// pool allocates the addresses of one IPv4 or IPv6 subnet: the network
// and broadcast addresses, the gateway and the host's address are never
// handed out. The zero value is not usable; see newPool.
type pool struct {
	subnet netip.Prefix
	used   map[netip.Addr]bool
	next   netip.Addr // where the next search starts: addresses are reused last
}

func newPool(subnet netip.Prefix, reserved ...netip.Addr) *pool {
	p := &pool{subnet: subnet.Masked(), used: map[netip.Addr]bool{}}
	p.used[p.subnet.Addr()] = true
	if last := lastAddr(p.subnet); subnet.Addr().Is4() {
		p.used[last] = true // broadcast
	}
	for _, a := range reserved {
		p.used[a] = true
	}
	p.next = p.subnet.Addr().Next()
	return p
}

// take reserves a, which must lie in the subnet and be free.
func (p *pool) take(a netip.Addr) error {
	if !p.subnet.Contains(a) {
		return fmt.Errorf("%w: %s is outside the subnet %s", ErrInvalidAddress, a, p.subnet)
	}
	if p.used[a] {
		return fmt.Errorf("%w: %s in %s", ErrAddressInUse, a, p.subnet)
	}
	p.used[a] = true
	return nil
}

// allocate reserves and returns the next free address after the last one
// handed out, wrapping around once, so that a released address is reused
// as late as possible (a stale ARP entry or connection then finds nobody).
func (p *pool) allocate() (netip.Addr, error) {
	size := poolSize(p.subnet)
	a := p.next
	for i := uint64(0); i < size; i++ {
		if !p.subnet.Contains(a) {
			a = p.subnet.Addr()
		}
		if !p.used[a] {
			p.used[a] = true
			p.next = a.Next()
			return a, nil
		}
		a = a.Next()
	}
	return netip.Addr{}, fmt.Errorf("%w: no free address left in %s", ErrAddressInUse, p.subnet)
}

func (p *pool) release(a netip.Addr) { delete(p.used, a) }

// poolSize is the number of addresses in subnet, capped at 1<<32 (a
// search over more is never needed: at most that many are in use).
func poolSize(subnet netip.Prefix) uint64 {
	bits := subnet.Addr().BitLen() - subnet.Bits()
	if bits >= 32 {
		return 1 << 32
	}
	return 1 << bits
}

// lastAddr is the highest address of prefix (its broadcast address in
// IPv4).
func lastAddr(prefix netip.Prefix) netip.Addr {
	prefix = prefix.Masked()
	b := prefix.Addr().AsSlice()
	for i := prefix.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 1 << (7 - i%8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// overlaps reports whether two prefixes share an address.
func overlaps(a, b netip.Prefix) bool {
	return a.Addr().Is4() == b.Addr().Is4() && a.Overlaps(b)
}
