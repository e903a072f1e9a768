package network

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// UDPIdleTimeout is how long a published UDP port keeps a client's flow
// (its socket to the container) without traffic, as docker-proxy does.
const UDPIdleTimeout = 90 * time.Second

// Limits of the relay, per published port: beyond them new TCP
// connections are closed at once and datagrams of new UDP clients are
// dropped, so that a flood (spoofed UDP sources, say) cannot take every
// descriptor of the embedding process.
const (
	MaxRelayConns = 4096
	MaxUDPFlows   = 1024
)

// MaxPortRange is the most ports one -p string may publish.
const MaxPortRange = 1024

// relayDialTimeout bounds the relay's connection to the container.
const relayDialTimeout = 10 * time.Second

// A PortMapping publishes a container port on the host (`docker run -p`).
type PortMapping struct {
	// HostIP is the host address to listen on; zero means every
	// address (0.0.0.0). 127.0.0.1 keeps the port to this host.
	HostIP netip.Addr
	// HostPort is the host port; 0 picks a free one, which Publish
	// reports.
	HostPort uint16
	// HostPortEnd, if not zero, makes HostPort-HostPortEnd a range to
	// pick a free port from (-p 8000-8010:80).
	HostPortEnd uint16
	// ContainerPort is the port inside the container, never 0.
	ContainerPort uint16
	// Protocol is "tcp" or "udp"; empty means "tcp".
	Protocol string
}

// String formats m in `docker port`'s manner: "80/tcp -> 0.0.0.0:32768".
func (m PortMapping) String() string {
	host := "0.0.0.0"
	if m.HostIP.IsValid() {
		host = m.HostIP.String()
	}
	return fmt.Sprintf("%d/%s -> %s", m.ContainerPort, m.proto(), net.JoinHostPort(host, strconv.Itoa(int(m.HostPort))))
}

func (m PortMapping) proto() string {
	if m.Protocol == "" {
		return "tcp"
	}
	return m.Protocol
}

// ParsePort parses Docker's -p syntax,
// [host-ip:][host-port[-end]:]container-port[-end][/protocol]: "80",
// "8080:80", "127.0.0.1:8080:80", "127.0.0.1::80", "[::1]:8080:80",
// "8000-8010:80-90", "8000-8010:80", "53:53/udp". A container port range
// gives one mapping per port; a host range for one container port gives
// a mapping that picks a free port from the range. Errors match
// ErrInvalidPort and quote the input.
func ParsePort(s string) ([]PortMapping, error) {
	bad := func(why string) ([]PortMapping, error) {
		return nil, fmt.Errorf("%w: %q: %s", ErrInvalidPort, s, why)
	}
	rest, proto := s, "tcp"
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		rest, proto = rest[:i], strings.ToLower(rest[i+1:])
	}
	if proto != "tcp" && proto != "udp" {
		return bad("protocol " + strconv.Quote(proto) + ": want tcp or udp")
	}
	var hostIP netip.Addr
	if strings.HasPrefix(rest, "[") {
		end := strings.Index(rest, "]:")
		if end < 0 {
			return bad("unterminated [IPv6 address]")
		}
		a, err := netip.ParseAddr(rest[1:end])
		if err != nil || !a.Is6() {
			return bad("host IP " + strconv.Quote(rest[1:end]) + " is not an IPv6 address")
		}
		hostIP, rest = a, rest[end+2:]
	}
	parts := strings.Split(rest, ":")
	if len(parts) > 3 || (hostIP.IsValid() && len(parts) != 2) {
		return bad("want [host-ip:][host-port:]container-port")
	}
	if len(parts) == 3 {
		a, err := netip.ParseAddr(parts[0])
		if err != nil || !a.Is4() {
			return bad("host IP " + strconv.Quote(parts[0]) + " is not an IPv4 address")
		}
		hostIP, parts = a, parts[1:]
	}
	cLo, cHi, err := portRange(parts[len(parts)-1], false)
	if err != nil {
		return bad("container port: " + err.Error())
	}
	var hLo, hHi uint16
	if len(parts) == 2 && parts[0] != "" {
		if hLo, hHi, err = portRange(parts[0], true); err != nil {
			return bad("host port: " + err.Error())
		}
	}
	var out []PortMapping
	switch {
	case cLo == cHi:
		m := PortMapping{HostIP: hostIP, HostPort: hLo, ContainerPort: cLo, Protocol: proto}
		if hHi != hLo {
			m.HostPortEnd = hHi
		}
		return append(out, m), nil
	case int(cHi-cLo) >= MaxPortRange:
		return bad(fmt.Sprintf("more than %d ports", MaxPortRange))
	case hLo == 0 && hHi == 0:
		for p := int(cLo); p <= int(cHi); p++ {
			out = append(out, PortMapping{HostIP: hostIP, ContainerPort: uint16(p), Protocol: proto})
		}
		return out, nil
	case hHi-hLo != cHi-cLo:
		return bad("host and container port ranges differ in length")
	}
	for i := 0; i <= int(cHi-cLo); i++ {
		out = append(out, PortMapping{HostIP: hostIP, HostPort: hLo + uint16(i), ContainerPort: cLo + uint16(i), Protocol: proto})
	}
	return out, nil
}

func portRange(s string, zeroOK bool) (lo, hi uint16, err error) {
	a, b, isRange := strings.Cut(s, "-")
	l, err := strconv.ParseUint(a, 10, 16)
	if err != nil {
		return 0, 0, fmt.Errorf("%q is not a port number", a)
	}
	h := l
	if isRange {
		if h, err = strconv.ParseUint(b, 10, 16); err != nil {
			return 0, 0, fmt.Errorf("%q is not a port number", b)
		}
		if h < l {
			return 0, 0, fmt.Errorf("range %s ends before it starts", s)
		}
	}
	if l == 0 && (!zeroOK || isRange) {
		return 0, 0, errors.New("port 0")
	}
	return uint16(l), uint16(h), nil
}

// A Publication is a set of published ports relaying to one container
// address. The host ports are bound before Publish returns, so two
// containers never get the same one.
type Publication struct {
	target netip.Addr
	ports  []PortMapping
	log    *slog.Logger

	dial    DialFunc        // nil: dial from this process's network namespace
	onClose func()          // removes the local DNATs of Endpoint.Publish
	ctx     context.Context // cancelled by Close: the relay's dials end
	cancel  context.CancelFunc
	relayed atomic.Int64 // TCP connections and UDP flows the relay served
	active  atomic.Int64 // TCP connections being relayed

	mu      sync.Mutex
	closers []io.Closer
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

// Publish binds the host ports of ports and relays what they receive to
// target, the container's address: TCP connection by connection (the
// kernel's splice moves the bytes), UDP flow by flow (a flow idle for
// UDPIdleTimeout is dropped). A host port in use fails with ErrPortInUse,
// and then nothing stays bound. The relay runs in the embedding process:
// it ends with Close, or with the process.
func Publish(ctx context.Context, target netip.Addr, ports []PortMapping, log *slog.Logger) (_ *Publication, err error) {
	return publish(ctx, target, ports, log, nil)
}

func publish(ctx context.Context, target netip.Addr, ports []PortMapping, log *slog.Logger, dial DialFunc) (_ *Publication, err error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	p := &Publication{target: target, log: log, conns: map[net.Conn]bool{}, dial: dial}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			p.Close()
		}
	}()
	for _, m := range ports {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if err := m.Validate(); err != nil {
			return nil, err
		}
		m.Protocol = m.proto()
		if err := p.bind(&m); err != nil {
			return nil, err
		}
		p.ports = append(p.ports, m)
	}
	return p, nil
}

// Publish publishes ports for the endpoint's address, as the package
// function Publish does, and also sends this host's own clients' IPv4
// connections and datagrams to the container in the kernel (DNAT in the
// output hook of the hub's host table), so that they skip the relay:
// the relay then serves clients on other hosts and in containers.
// Close removes both.
func (e *Endpoint) Publish(ctx context.Context, ports []PortMapping, log *slog.Logger) (*Publication, error) {
	p, err := Publish(ctx, e.ip, ports, log)
	if err != nil {
		return nil, err
	}
	var nats []localNAT
	for _, m := range p.ports {
		if m.HostIP.IsValid() && !m.HostIP.Is4() {
			continue // IPv6 clients use the relay
		}
		hostIP := m.HostIP
		if hostIP.IsUnspecified() {
			hostIP = netip.Addr{}
		}
		nats = append(nats, localNAT{hostIP: hostIP, port: m.HostPort, proto: m.Protocol, target: netip.AddrPortFrom(e.ip, m.ContainerPort)})
	}
	mgr := e.n.m
	mgr.mu.Lock()
	if mgr.closed || !e.n.endpoints[e] {
		mgr.mu.Unlock()
		p.Close()
		return nil, fmt.Errorf("publish: %w: the endpoint was detached", ErrNotFound)
	}
	mgr.nats[p] = natEntry{e: e, rules: nats}
	if err := mgr.syncNATs(); err != nil {
		delete(mgr.nats, p)
		mgr.syncNATs()
		mgr.mu.Unlock()
		p.Close()
		return nil, fmt.Errorf("publish: %w", err)
	}
	p.onClose = func() {
		mgr.mu.Lock()
		defer mgr.mu.Unlock()
		if _, ok := mgr.nats[p]; ok && !mgr.closed {
			delete(mgr.nats, p)
			if err := mgr.syncNATs(); err != nil {
				mgr.log.Debug("unpublish: host rules", "err", err)
			}
		}
	}
	mgr.mu.Unlock()
	return p, nil
}

// bind listens for m, on the first free port of its range if it has one,
// and starts its relay.
func (p *Publication) bind(m *PortMapping) error {
	host := "0.0.0.0"
	if m.HostIP.IsValid() {
		host = m.HostIP.String()
	}
	lo, hi := m.HostPort, m.HostPort
	if m.HostPortEnd != 0 {
		hi = m.HostPortEnd
	}
	var err error
	for port := int(lo); port <= int(hi); port++ {
		addr := net.JoinHostPort(host, strconv.Itoa(port))
		if m.Protocol == "tcp" {
			var l net.Listener
			if l, err = net.Listen("tcp", addr); err == nil {
				m.HostPort, m.HostPortEnd = uint16(l.Addr().(*net.TCPAddr).Port), 0
				p.closers = append(p.closers, l)
				p.wg.Add(1)
				go p.serveTCP(l, netip.AddrPortFrom(p.target, m.ContainerPort))
				return nil
			}
		} else {
			var pc net.PacketConn
			if pc, err = net.ListenPacket("udp", addr); err == nil {
				m.HostPort, m.HostPortEnd = uint16(pc.LocalAddr().(*net.UDPAddr).Port), 0
				p.closers = append(p.closers, pc)
				p.wg.Add(1)
				go p.serveUDP(pc.(*net.UDPConn), netip.AddrPortFrom(p.target, m.ContainerPort))
				return nil
			}
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w: publish %s: %v", ErrPortInUse, m, err)
	}
	return fmt.Errorf("publish %s: %w", m, err)
}

// Ports returns the published ports with the host ports that were bound
// (`docker port`).
func (p *Publication) Ports() []PortMapping { return append([]PortMapping(nil), p.ports...) }

// track adds c to the open connections, or refuses it after Close.
func (p *Publication) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	p.conns[c] = true
	return true
}

func (p *Publication) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

func (p *Publication) serveTCP(l net.Listener, target netip.AddrPort) {
	defer p.wg.Done()
	for {
		c, err := l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Debug("published port: accept", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if p.active.Load() >= MaxRelayConns {
			c.Close()
			continue
		}
		p.relayed.Add(1)
		p.active.Add(1)
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer p.active.Add(-1)
			p.relayTCP(c.(*net.TCPConn), target)
		}()
	}
}

func (p *Publication) relayTCP(c *net.TCPConn, target netip.AddrPort) {
	defer c.Close()
	if !p.track(c) {
		return
	}
	defer p.untrack(c)
	uc, err := p.dialTarget("tcp", target)
	if err != nil {
		p.log.Debug("published port: dial container", "target", target, "err", err)
		c.SetLinger(0) // a reset, as the kernel gives for a closed port
		return
	}
	u := uc.(*net.TCPConn)
	defer u.Close()
	if !p.track(u) {
		return
	}
	defer p.untrack(u)
	Splice(c, u)
}

// Splice copies between two TCP connections in both directions until
// both have ended, passing each half-close on. On Linux the bytes move
// with splice(2), without entering user space.
func Splice(a, b *net.TCPConn) {
	done := make(chan struct{})
	go func() {
		io.Copy(b, a)
		b.CloseWrite()
		close(done)
	}()
	io.Copy(a, b)
	a.CloseWrite()
	<-done
}

func (p *Publication) serveUDP(pc *net.UDPConn, target netip.AddrPort) {
	defer p.wg.Done()
	type flow struct {
		up   *net.UDPConn
		last time.Time
	}
	var mu sync.Mutex
	flows := map[netip.AddrPort]*flow{}
	defer func() {
		mu.Lock()
		for _, f := range flows {
			f.up.Close()
		}
		mu.Unlock()
	}()
	buf := make([]byte, 65535)
	for {
		n, client, err := pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		mu.Lock()
		f := flows[client]
		if f == nil && len(flows) >= MaxUDPFlows {
			mu.Unlock()
			continue
		}
		if f == nil {
			uc, err := p.dialTarget("udp", target)
			var up *net.UDPConn
			if err == nil {
				up = uc.(*net.UDPConn)
			}
			if err != nil {
				mu.Unlock()
				p.log.Debug("published port: dial container", "target", target, "err", err)
				continue
			}
			f = &flow{up: up}
			flows[client] = f
			p.relayed.Add(1)
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				b := make([]byte, 65535)
				for {
					f.up.SetReadDeadline(time.Now().Add(UDPIdleTimeout))
					n, err := f.up.Read(b)
					if err != nil {
						mu.Lock()
						idle := time.Since(f.last) >= UDPIdleTimeout
						if idle || !errors.Is(err, syscall.ECONNREFUSED) && !isTimeout(err) {
							delete(flows, client)
							f.up.Close()
							mu.Unlock()
							return
						}
						mu.Unlock()
						continue
					}
					pc.WriteToUDPAddrPort(b[:n], client)
				}
			}()
		}
		f.last = time.Now()
		mu.Unlock()
		f.up.Write(buf[:n])
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Close stops listening, ends the relayed connections and flows, and
// waits for the relay's goroutines. Closing twice is not an error.
func (p *Publication) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.cancel()
	if p.onClose != nil {
		p.onClose()
	}
	for _, c := range p.closers {
		if l, ok := c.(*net.TCPListener); ok {
			stopListening(l)
		}
		c.Close()
	}
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return nil
}

// stopListening takes l out of the listening state (shutdown(2) of its
// reading side) before it is closed. Closing alone ends the socket only
// with its last descriptor: a process this one forks holds copies of
// every descriptor until it executes its program, and meanwhile the
// port would go on accepting connections after Close returned.
func stopListening(l *net.TCPListener) {
	if rc, err := l.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) { unix.Shutdown(int(fd), unix.SHUT_RD) })
	}
}

// Validate checks m as Publish would, without binding anything: a
// container port, tcp or udp, a host range that ends after it starts.
func (m PortMapping) Validate() error {
	if m.ContainerPort == 0 {
		return fmt.Errorf("%w: %s: container port 0", ErrInvalidPort, m)
	}
	if m.Protocol != "" && m.Protocol != "tcp" && m.Protocol != "udp" {
		return fmt.Errorf("%w: protocol %q: want tcp or udp", ErrInvalidPort, m.Protocol)
	}
	if m.HostPortEnd != 0 && (m.HostPort == 0 || m.HostPortEnd < m.HostPort) {
		return fmt.Errorf("%w: host port range %d-%d: want a first port, and an end after it", ErrInvalidPort, m.HostPort, m.HostPortEnd)
	}
	return nil
}
