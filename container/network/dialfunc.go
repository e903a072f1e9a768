package network

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
)

// DialFunc connects to target over network ("tcp" or "udp"), the way a
// relay reaches a container: for a container whose network namespace the
// embedding process may not enter (an unprivileged user's), one that
// asks the container's init for a socket made inside it. A "udp"
// connection must be a *net.UDPConn and a "tcp" one a *net.TCPConn.
type DialFunc func(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error)

// relayDial is the relay's dial from this process's own network
// namespace.
func relayDial(ctx context.Context, network string, target netip.AddrPort) (net.Conn, error) {
	d := net.Dialer{Timeout: relayDialTimeout}
	return d.DialContext(ctx, network, target.String())
}

// dialTarget connects the relay to target, with the Publication's dial.
func (p *Publication) dialTarget(network string, target netip.AddrPort) (net.Conn, error) {
	dial := p.dial
	if dial == nil {
		dial = relayDial
	}
	ctx, cancel := context.WithTimeout(p.ctx, relayDialTimeout)
	defer cancel()
	return dial(ctx, network, target)
}

// PublishWith is Publish with the relay's connections to target made by
// dial instead of from this process's network namespace (the relay of
// an unprivileged user's container, to its loopback address).
func PublishWith(ctx context.Context, target netip.Addr, ports []PortMapping, log *slog.Logger, dial DialFunc) (*Publication, error) {
	if dial == nil {
		return nil, fmt.Errorf("publish: nil DialFunc")
	}
	p, err := publish(ctx, target, ports, log, dial)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// ForwardWith is Forward with each connection to target made by dial,
// instead of in a network namespace this process enters.
func ForwardWith(ctx context.Context, listen string, target netip.AddrPort, dial DialFunc) (*Forwarder, error) {
	if dial == nil {
		return nil, fmt.Errorf("port-forward to %s: nil DialFunc", target)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", target, err)
	}
	f := &Forwarder{l: l, dial: dial, target: target.String(), conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}
