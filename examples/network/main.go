// Command network shows Docker's networking with berth: a user-defined
// network with two containers, one serving HTTP as "web", the other
// fetching it by that name through the embedded DNS server; the same
// server published on a free port of the host's 127.0.0.1 (docker run
// -p 127.0.0.1::80) and fetched from this process; and a port-forward
// into a container's loopback.
//
//	go run ./examples/network
//
// It needs root (namespaces, veths, bridges, nftables) and Debian's
// busybox-static. Everything it makes goes when it exits, however it
// exits: the network lives in a namespace only this process holds.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/container/network"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "network:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(rootfs)

	// The embedded DNS answers the network's names; other names would go
	// to the host's resolvers, which this example never needs.
	nets := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	defer nets.Close()
	app, err := nets.Create(ctx, network.Config{Name: "app"})
	if err != nil {
		return err
	}
	fmt.Printf("network %s: subnet %s, gateway %s\n", app.Name(), app.Config().Subnet, app.Config().Gateway)

	ports, err := network.ParsePort("127.0.0.1::80")
	if err != nil {
		return err
	}
	web, err := container.Create(ctx, fmt.Sprintf("web-%d", os.Getpid()), &container.Spec{
		Rootfs:   rootfs,
		Hostname: "web",
		Process: container.Process{Args: []string{"sh", "-c",
			`mkdir -p /www && echo "hello from $(hostname) at $(ip -o -4 addr show eth0 | awk '{print $4}')" > /www/index.html && exec httpd -f -p 80 -h /www`}},
		Networks: []container.NetworkAttachment{{Network: app, Aliases: []string{"web"}}},
		Ports:    ports,
	})
	if err != nil {
		return err
	}
	defer web.Delete(ctx)
	if err := web.Start(ctx); err != nil {
		return err
	}
	fmt.Printf("web: %s on %s, published %s\n", web.Endpoints()[0].IP(), web.Endpoints()[0].Interface(), web.Ports()[0])

	// Another container fetches it by name (retrying while httpd starts).
	var out strings.Builder
	client, err := container.Create(ctx, fmt.Sprintf("client-%d", os.Getpid()), &container.Spec{
		Rootfs:   rootfs,
		Process:  container.Process{Args: []string{"sh", "-c", "for i in $(seq 50); do wget -q -O - http://web/ && exit 0; sleep 0.1; done; exit 1"}, Stdout: &out, Stderr: &out},
		Networks: []container.NetworkAttachment{{Network: app}},
	})
	if err != nil {
		return err
	}
	defer client.Delete(ctx)
	if err := client.Start(ctx); err != nil {
		return err
	}
	st, err := client.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("client, by name (%v): %s", st, out.String())

	// The host, through the published port.
	body, err := fetch(ctx, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/", web.Ports()[0].HostPort))
	if err != nil {
		return err
	}
	fmt.Printf("host, through 127.0.0.1:%d: %s", web.Ports()[0].HostPort, body)

	// And from this process straight into the container's namespace:
	// no route, no published port.
	f, err := web.PortForward(ctx, "127.0.0.1:0", 80)
	if err != nil {
		return err
	}
	defer f.Close()
	body, err = fetch(ctx, http.DefaultClient, "http://"+f.Addr().String()+"/")
	if err != nil {
		return err
	}
	fmt.Printf("port-forward %s: %s", f.Addr(), body)
	return nil
}

func fetch(ctx context.Context, c *http.Client, url string) (string, error) {
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := c.Do(req)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b), nil
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("GET %s: %w", url, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
