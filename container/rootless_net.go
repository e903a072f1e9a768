package container

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/initproc"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// An unprivileged process may not setns(2) into a network namespace that
// a container's user namespace owns: that needs CAP_SYS_ADMIN in its own
// user namespace too. So for rootless containers Dial, PortForward and the
// published ports' relay ask the container's init for a socket made in
// its network namespace (a socket stays in the namespace it was made in),
// receive it over the control socket, and connect it here.

// socketInside returns a socket made by init in the container's network
// namespace.
func (c *Container) socketInside(ctx context.Context, domain, typ int) (*os.File, error) {
	c.mu.Lock()
	if c.state != Running && c.state != Paused {
		c.mu.Unlock()
		return nil, fmt.Errorf("%s: %w", c.id, ErrNotRunning)
	}
	id, reply := c.requestLocked()
	err := initproc.Send(c.conn, &initproc.Message{Type: initproc.MsgSocket, ID: id, Socket: &initproc.Socket{Domain: domain, Type: typ}})
	if err != nil {
		delete(c.pending, id)
		c.mu.Unlock()
		return nil, fmt.Errorf("ask init for a socket: %w", err)
	}
	c.mu.Unlock()
	var m *initproc.Message
	select {
	case m = <-reply:
	case <-ctx.Done():
		go func() { initproc.CloseFiles((<-reply).Files) }()
		return nil, ctx.Err()
	}
	if m.Type != initproc.MsgSocketMade || len(m.Files) != 1 {
		initproc.CloseFiles(m.Files)
		if m.Error == ErrNotRunning.Error() {
			return nil, fmt.Errorf("%s: %w", c.id, ErrNotRunning)
		}
		return nil, fmt.Errorf("socket in the container: %s", m.Error)
	}
	return m.Files[0], nil
}

// dialInside connects to target from inside the container's network
// namespace, with a socket init made there: a network.DialFunc.
func (c *Container) dialInside(ctx context.Context, netw string, target netip.AddrPort) (net.Conn, error) {
	domain := unix.AF_INET
	if target.Addr().Is6() && !target.Addr().Is4In6() {
		domain = unix.AF_INET6
	}
	typ := unix.SOCK_STREAM
	switch netw {
	case "tcp", "tcp4", "tcp6":
	case "udp", "udp4", "udp6":
		typ = unix.SOCK_DGRAM
	default:
		return nil, fmt.Errorf("%w: network %q: want tcp or udp", network.ErrInvalidPort, netw)
	}
	if netw[len(netw)-1] == '4' && domain != unix.AF_INET || netw[len(netw)-1] == '6' && domain != unix.AF_INET6 {
		return nil, fmt.Errorf("%w: address %s is not for network %s", network.ErrInvalidAddress, target, netw)
	}
	f, err := c.socketInside(ctx, domain, typ)
	if err != nil {
		return nil, err
	}
	// A pollable descriptor of our own: one passed over SCM_RIGHTS is
	// blocking.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	s := os.NewFile(uintptr(fd), "socket")
	defer s.Close()
	var sa unix.Sockaddr
	if domain == unix.AF_INET {
		sa = &unix.SockaddrInet4{Port: int(target.Port()), Addr: target.Addr().Unmap().As4()}
	} else {
		sa = &unix.SockaddrInet6{Port: int(target.Port()), Addr: target.Addr().As16()}
	}
	if err := connect(ctx, s, sa); err != nil {
		return nil, fmt.Errorf("dial %s %s in container %s: %w", netw, target, c.id, err)
	}
	return net.FileConn(s)
}

// connect connects the non-blocking socket s to sa, waiting within ctx.
func connect(ctx context.Context, s *os.File, sa unix.Sockaddr) error {
	rc, err := s.SyscallConn()
	if err != nil {
		return err
	}
	var cerr error
	err = rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) })
	if err != nil {
		return err
	}
	if cerr == nil {
		return nil
	}
	if !errors.Is(cerr, unix.EINPROGRESS) && !errors.Is(cerr, unix.EINTR) {
		return cerr
	}
	if d, ok := ctx.Deadline(); ok {
		s.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { s.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	err = rc.Write(func(fd uintptr) bool {
		if _, err := unix.Getpeername(int(fd)); err == nil {
			cerr = nil
			return true
		}
		v, err := unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_ERROR)
		switch {
		case err != nil:
			cerr = err
			return true
		case v != 0:
			cerr = unix.Errno(v)
			return true
		}
		return false // still connecting: wait until writable
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return err
	}
	s.SetWriteDeadline(time.Time{})
	return cerr
}

// dialRootless is Dial for a rootless container.
func (c *Container) dialRootless(ctx context.Context, netw, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial: %w: address %q: want an IP literal and a port", network.ErrInvalidAddress, address)
	}
	return c.dialInside(ctx, netw, ap)
}

// rootlessNet reports whether the container's network namespace is one
// this process cannot enter: a new one, owned by the new user namespace
// of an unprivileged caller's container.
func (c *Container) rootlessNet() bool {
	return unprivileged() && c.modes[namespace.User] == NamespaceNew && c.modes[namespace.Net] == NamespaceNew
}

// loopback4 is where a rootless container's published ports go.
var loopback4 = netip.MustParseAddr("127.0.0.1")

// publishRootless binds the host ports of a rootless container's Ports
// and relays them to its loopback through sockets init makes.
func (c *Container) publishRootless(ctx context.Context) error {
	if len(c.spec.Ports) == 0 || len(c.spec.Networks) > 0 || !c.rootlessNet() {
		return nil
	}
	p, err := network.PublishWith(ctx, loopback4, c.spec.Ports, c.rt.logger(), c.dialInside)
	if err != nil {
		return err
	}
	c.published = p
	return nil
}
