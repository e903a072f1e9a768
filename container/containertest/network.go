package containertest

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/berthlabs/berth/container/network"
)

// A Network connects the sandboxes of a test (WithNetwork): each reaches
// the others by name through the network's DNS server. It is internal: its
// sandboxes reach each other and nothing else, and names they do not know
// are not forwarded anywhere.
type Network struct {
	n *network.Network
}

var networks struct {
	once sync.Once
	m    *network.Manager
}

// manager is the process's network manager: its networks live in a
// network namespace only this process holds, so they go with it.
func manager() *network.Manager {
	networks.once.Do(func() {
		networks.m = network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	})
	return networks.m
}

// NewNetwork makes a network for the sandboxes of the test t; t.Cleanup
// removes it after them. It calls t.Fatal when the network cannot be
// made.
func NewNetwork(t testing.TB) *Network {
	t.Helper()
	n, err := CreateNetwork(context.Background(), t)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// CreateNetwork is NewNetwork returning its error.
func CreateNetwork(ctx context.Context, t testing.TB) (*Network, error) {
	m := manager()
	name := "ct-" + randomHex(6)
	n, err := m.Create(ctx, network.Config{Name: name, Internal: true})
	if err != nil {
		return nil, fmt.Errorf("containertest: network: %w", err)
	}
	t.Cleanup(func() {
		if err := m.Remove(context.Background(), name); err != nil {
			t.Errorf("containertest: remove network %s: %v", name, err)
		}
	})
	return &Network{n: n}, nil
}

// Name returns the network's name.
func (n *Network) Name() string { return n.n.Name() }

// Network returns the underlying network, for what Network does not wrap.
func (n *Network) Network() *network.Network { return n.n }
