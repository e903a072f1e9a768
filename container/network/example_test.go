package network_test

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"

	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/namespace"
)

// Two network namespaces on a user-defined network: one listens, the
// other dials it by the address Attach gave. Needs root.
func Example() {
	ctx := context.Background()
	m := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}}) // forward no names
	defer m.Close()
	n, err := m.Create(ctx, network.Config{Name: "example", Subnet: netip.MustParsePrefix("10.77.0.0/24")})
	if err != nil {
		fmt.Println(err)
		return
	}
	server, _ := namespace.NewNet("")
	defer server.Close()
	client, _ := namespace.NewNet("")
	defer client.Close()
	se, err := n.Attach(ctx, server, network.AttachOptions{Name: "server"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := n.Attach(ctx, client, network.AttachOptions{Name: "client"}); err != nil {
		fmt.Println(err)
		return
	}
	l, err := network.Listen(ctx, server, "tcp", netip.AddrPortFrom(se.IP(), 7).String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			fmt.Fprintf(c, "hello from %s\n", se.IP())
			c.Close()
		}
	}()
	c, err := network.Dial(ctx, client, "tcp", l.Addr().String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(line)
	// Output: hello from 10.77.0.2
}

// Docker's -p syntax.
func ExampleParsePort() {
	ports, err := network.ParsePort("127.0.0.1:8080-8081:80-81/tcp")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range ports {
		fmt.Println(p)
	}
	_, err = network.ParsePort("8080:0")
	fmt.Println(err)
	// Output:
	// 80/tcp -> 127.0.0.1:8080
	// 81/tcp -> 127.0.0.1:8081
	// network: invalid port mapping: "8080:0": container port: port 0
}

// A service: a virtual IP whose port 80 leads to a backend's port 8080,
// reached from another namespace on the network. Needs root.
func ExampleManager_SetService() {
	ctx := context.Background()
	m := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	defer m.Close()
	n, err := m.Create(ctx, network.Config{Name: "example", Subnet: netip.MustParsePrefix("10.78.0.0/24")})
	if err != nil {
		fmt.Println(err)
		return
	}
	server, _ := namespace.NewNet("")
	defer server.Close()
	client, _ := namespace.NewNet("")
	defer client.Close()
	se, err := n.Attach(ctx, server, network.AttachOptions{Name: "server"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if _, err := n.Attach(ctx, client, network.AttachOptions{Name: "client"}); err != nil {
		fmt.Println(err)
		return
	}
	l, err := network.Listen(ctx, server, "tcp", netip.AddrPortFrom(se.IP(), 8080).String())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err == nil {
			fmt.Fprintf(c, "hello from %s\n", se.IP())
			c.Close()
		}
	}()
	err = m.SetService(ctx, network.ServiceConfig{
		Name: "web", VIP: netip.MustParseAddr("10.96.0.10"),
		Ports: []network.ServicePort{{Port: 80, Backends: []netip.AddrPort{netip.AddrPortFrom(se.IP(), 8080)}}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	c, err := network.Dial(ctx, client, "tcp", "10.96.0.10:80")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(line)
	// Output: hello from 10.78.0.2
}

// One host of a two-host overlay: this host (at 198.51.100.10 on the
// network between the hosts) runs its containers on 10.244.1.0/24, the
// other (198.51.100.11) on 10.244.2.0/24 and makes the mirror call. Then
// containers of either reach the other's by their addresses, and a
// service may have backends on both. Not run: it needs a second host.
func ExampleNetwork_SetOverlay() {
	ctx := context.Background()
	m := network.New(network.Options{NodePortAddrs: []netip.Addr{netip.MustParseAddr("198.51.100.10")}})
	defer m.Close()
	n, err := m.Create(ctx, network.Config{Name: "pods", Subnet: netip.MustParsePrefix("10.244.1.0/24")})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = n.SetOverlay(ctx, network.OverlayConfig{
		Local: netip.MustParseAddr("198.51.100.10"),
		Peers: []network.Peer{{Name: "host-2", Addr: netip.MustParseAddr("198.51.100.11"), Subnet: netip.MustParsePrefix("10.244.2.0/24")}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	cfg, _ := n.Overlay()
	fmt.Println(len(cfg.Peers), cfg.Port, cfg.VNI)
}
