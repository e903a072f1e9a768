package network

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/berthlabs/berth/namespace"
)

// Dial connects to address from inside the network namespace ns, as the
// embedding process: the socket is made on an OS thread that has entered
// ns (and that is then put back), so it works with a namespace that has
// only its loopback (a container with network none) and reaches services
// bound to the container's 127.0.0.1. network is "tcp", "tcp4", "tcp6",
// "udp", "udp4" or "udp6"; address must be an IP literal and a port
// ("10.0.0.2:80", "[::1]:53"): a name would be resolved on other
// threads, outside ns.
func Dial(ctx context.Context, ns *namespace.Namespace, network, address string) (net.Conn, error) {
	if _, err := ipPort(network, address); err != nil {
		return nil, err
	}
	var c net.Conn
	err := namespace.Do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, network, address)
		return err
	}, ns)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s in %s: %w", network, address, ns, err)
	}
	return c, nil
}

// Listen listens on address inside the network namespace ns; the
// listener stays in ns for its life, whichever thread accepts. network
// and address are as for Dial; an empty host ("":80) listens on every
// address of ns.
func Listen(ctx context.Context, ns *namespace.Namespace, network, address string) (net.Listener, error) {
	if _, err := ipPort(network, address); err != nil {
		return nil, err
	}
	var l net.Listener
	err := namespace.Do(func() error {
		var lc net.ListenConfig
		var err error
		l, err = lc.Listen(ctx, network, address)
		return err
	}, ns)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, ns, err)
	}
	return l, nil
}

// ListenPacket is Listen for "udp", "udp4" and "udp6".
func ListenPacket(ctx context.Context, ns *namespace.Namespace, network, address string) (net.PacketConn, error) {
	if _, err := ipPort(network, address); err != nil {
		return nil, err
	}
	var pc net.PacketConn
	err := namespace.Do(func() error {
		var lc net.ListenConfig
		var err error
		pc, err = lc.ListenPacket(ctx, network, address)
		return err
	}, ns)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s in %s: %w", network, address, ns, err)
	}
	return pc, nil
}

// ipPort checks that address is an IP literal (or empty) and a port.
func ipPort(network, address string) (netip.AddrPort, error) {
	switch network {
	case "tcp", "tcp4", "tcp6", "udp", "udp4", "udp6":
	default:
		return netip.AddrPort{}, fmt.Errorf("%w: network %q: want tcp or udp", ErrInvalidPort, network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: address %q: %v", ErrInvalidAddress, address, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ap, err := netip.ParseAddrPort(net.JoinHostPort(host, port))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: address %q: want an IP literal and a port (names would be resolved outside the namespace)", ErrInvalidAddress, address)
	}
	return ap, nil
}
