package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/berthlabs/berth/namespace"
)

// A Forwarder accepts TCP connections on the host and connects each to a
// target inside a network namespace (`kubectl port-forward`).
type Forwarder struct {
	l      net.Listener
	ns     *namespace.Namespace // nil with ForwardWith
	dial   DialFunc             // ForwardWith's
	target string

	mu     sync.Mutex
	conns  map[net.Conn]bool
	closed bool
	wg     sync.WaitGroup
}

// Forward listens on the host at listen ("127.0.0.1:0" for a free port)
// and relays each connection to target ("127.0.0.1:8080": an IP literal
// and a port) dialled inside ns. The Forwarder keeps its own handle on
// ns until Close.
func Forward(ctx context.Context, ns *namespace.Namespace, listen, target string) (*Forwarder, error) {
	if _, err := ipPort("tcp", target); err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", target, err)
	}
	own, err := namespace.Open(fmt.Sprintf("/proc/self/fd/%d", ns.Fd()))
	if err != nil {
		return nil, fmt.Errorf("port-forward to %s: %w", target, err)
	}
	var lc net.ListenConfig
	l, err := lc.Listen(ctx, "tcp", listen)
	if err != nil {
		own.Close()
		return nil, fmt.Errorf("port-forward to %s: %w", target, err)
	}
	f := &Forwarder{l: l, ns: own, target: target, conns: map[net.Conn]bool{}}
	f.wg.Add(1)
	go f.serve()
	return f, nil
}

// Addr returns the host address the Forwarder listens on.
func (f *Forwarder) Addr() net.Addr { return f.l.Addr() }

func (f *Forwarder) track(c net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.conns[c] = true
	return true
}

func (f *Forwarder) untrack(c net.Conn) {
	f.mu.Lock()
	delete(f.conns, c)
	f.mu.Unlock()
}

func (f *Forwarder) serve() {
	defer f.wg.Done()
	for {
		c, err := f.l.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond)
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			if !f.track(c) {
				return
			}
			defer f.untrack(c)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var u net.Conn
			var err error
			if f.dial != nil {
				u, err = f.dial(ctx, "tcp", netip.MustParseAddrPort(f.target))
			} else {
				u, err = Dial(ctx, f.ns, "tcp", f.target)
			}
			cancel()
			if err != nil {
				c.(*net.TCPConn).SetLinger(0)
				return
			}
			defer u.Close()
			if !f.track(u) {
				return
			}
			defer f.untrack(u)
			Splice(c.(*net.TCPConn), u.(*net.TCPConn))
		}()
	}
}

// Close stops listening, ends the forwarded connections, waits for them
// and lets go of the namespace. Closing twice is not an error.
func (f *Forwarder) Close() error {
	f.mu.Lock()
	if f.closed {
		f.mu.Unlock()
		return nil
	}
	f.closed = true
	if l, ok := f.l.(*net.TCPListener); ok {
		stopListening(l)
	}
	f.l.Close()
	for c := range f.conns {
		c.Close()
	}
	f.mu.Unlock()
	f.wg.Wait()
	if f.ns == nil {
		return nil
	}
	return f.ns.Close()
}
