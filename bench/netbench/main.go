// Command netbench measures berth's networking beside its peers, all
// interleaved in one run, and prints medians and ratios
// (bench/network.sh installs the peers and runs it):
//
//   - start: start-to-exit of /bin/true with network none, and attached
//     to a bridge network with one published port; podman run --rm -p
//     (its CNI bridge and portmap) beside them.
//   - attach: attach and detach of a network namespace with one
//     published port: berth's Attach+Publish+Close+Detach against the
//     same through libcni with Debian's bridge, host-local and portmap
//     plugins (ADD and DEL).
//   - data: TCP throughput (1 GiB per transfer) and connections per
//     second to a server in a container: at its address directly,
//     through berth's published port, through a socat relay, and
//     through podman's published port (kernel DNAT by CNI portmap).
//   - dns: p50 and p99 of resolving another container's name from inside
//     a container, through the embedded server.
//
// The server in the containers is this binary ("netbench serve"), copied
// into a busybox root filesystem, so every path talks to the same
// program. Needs root. Traffic stays on loopback and in namespaces this
// program makes.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/namespace"
	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
)

var (
	rounds   = flag.Int("rounds", 5, "interleaved rounds")
	starts   = flag.Int("starts", 20, "container starts per runtime per round")
	attaches = flag.Int("attaches", 20, "attach/detach cycles per implementation per round")
	gib      = flag.Int64("bytes", 1<<30, "bytes per throughput transfer")
	conns    = flag.Int("conns", 1000, "connections per connections/s measurement")
	queries  = flag.Int("queries", 2000, "DNS queries")
	podman   = flag.Bool("podman", true, "time podman too")
	what     = flag.String("what", "start,attach,data,dns", "comma-separated measurements")
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "serve" {
		serve()
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "dnsbench" {
		dnsbench(os.Args[2], os.Args[3])
		return
	}
	flag.Parse()
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "netbench:", err)
		os.Exit(1)
	}
}

// serve is the server inside the containers: on each connection, 'T'
// then bytes until EOF gets "ok" back (throughput); 'C' gets "ok" at
// once (connections).
func serve() {
	l, err := net.Listen("tcp", ":80")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for {
		c, err := l.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			b := make([]byte, 1)
			if _, err := io.ReadFull(c, b); err != nil {
				return
			}
			if b[0] == 'T' {
				io.Copy(io.Discard, c)
			}
			io.WriteString(c, "ok")
		}()
	}
}

// dnsbench resolves name at server n times from inside a container and
// prints p50 and p99 in microseconds.
func dnsbench(name, n string) {
	count, _ := strconv.Atoi(n)
	c := dns.Client{Net: "udp", Timeout: 2 * time.Second}
	var d []time.Duration
	for range count {
		q := new(dns.Msg)
		q.SetQuestion(dns.Fqdn(name), dns.TypeA)
		t0 := time.Now()
		r, _, err := c.Exchange(q, "127.0.0.11:53")
		if err != nil || len(r.Answer) == 0 {
			fmt.Println("error", err)
			os.Exit(1)
		}
		d = append(d, time.Since(t0))
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	fmt.Println(d[len(d)/2].Microseconds(), d[len(d)*99/100].Microseconds())
}

type samples map[string][]float64

func (s samples) add(k string, v float64) { s[k] = append(s[k], v) }

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	c := append([]float64(nil), v...)
	sort.Float64s(c)
	return c[len(c)/2]
}

func run() error {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "berth-netbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	if err := copyFile(self, filepath.Join(rootfs, "bin/netbench")); err != nil {
		return err
	}
	nets := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	defer nets.Close()
	app, err := nets.Create(ctx, network.Config{Name: "bench"})
	if err != nil {
		return err
	}
	haveP := *podman && podmanImage(rootfs) == nil
	if *podman && !haveP {
		fmt.Println("podman: not available, skipped")
	}
	for _, w := range strings.Split(*what, ",") {
		switch w {
		case "start":
			err = benchStart(ctx, rootfs, app, haveP)
		case "attach":
			err = benchAttach(ctx, app, dir)
		case "data":
			err = benchData(ctx, rootfs, app, haveP)
		case "dns":
			err = benchDNS(ctx, rootfs, app)
		default:
			err = fmt.Errorf("unknown measurement %q", w)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", w, err)
		}
	}
	return nil
}

func copyFile(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return os.WriteFile(dst, b, 0o755)
}

const podmanImageName = "localhost/berth-netbench:latest"

// runc: crun refuses hybrid cgroup hosts.
var podmanFlags = []string{"--cgroup-manager=cgroupfs", "--runtime", "runc"}

func podmanRun(args ...string) *exec.Cmd {
	a := append(append([]string{}, podmanFlags...), "run", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
	return exec.Command("podman", append(a, args...)...)
}

// podmanImage imports rootfs as a podman image.
func podmanImage(rootfs string) error {
	if _, err := exec.LookPath("podman"); err != nil {
		return err
	}
	tar := exec.Command("tar", "-C", rootfs, "-c", ".")
	imp := exec.Command("podman", append(append([]string{}, podmanFlags...), "import", "-", podmanImageName)...)
	pipe, err := tar.StdoutPipe()
	if err != nil {
		return err
	}
	imp.Stdin = pipe
	if err := tar.Start(); err != nil {
		return err
	}
	out, err := imp.CombinedOutput()
	tar.Wait()
	if err != nil {
		return fmt.Errorf("podman import: %v: %s", err, out)
	}
	// One run to check that it works here at all.
	if out, err := podmanRun("--rm", podmanImageName, "/bin/true").CombinedOutput(); err != nil {
		return fmt.Errorf("podman run: %v: %s", err, out)
	}
	return nil
}

func benchStart(ctx context.Context, rootfs string, app *network.Network, haveP bool) error {
	s := samples{}
	ports, _ := network.ParsePort("127.0.0.1::80")
	seq := 0
	berth := func(key string, spec container.Spec) error {
		seq++
		spec.Rootfs = rootfs
		spec.Process = container.Process{Args: []string{"/bin/true"}}
		t0 := time.Now()
		c, err := container.Create(ctx, fmt.Sprintf("nb-%d-%d", os.Getpid(), seq), &spec)
		if err != nil {
			return err
		}
		if err := c.Start(ctx); err != nil {
			c.Delete(ctx)
			return err
		}
		if _, err := c.Wait(ctx); err != nil {
			return err
		}
		if err := c.Delete(ctx); err != nil {
			return err
		}
		s.add(key, ms(time.Since(t0)))
		return nil
	}
	for r := 0; r < *rounds; r++ {
		for range *starts {
			if err := berth("berth, network none", container.Spec{}); err != nil {
				return err
			}
			if err := berth("berth, bridge + 1 published port", container.Spec{Networks: []container.NetworkAttachment{{Network: app}}, Ports: ports}); err != nil {
				return err
			}
		}
		if haveP {
			for i := range *starts / 4 {
				t0 := time.Now()
				out, err := podmanRun("--rm", "-p", fmt.Sprintf("127.0.0.1:%d:80", 18000+i), podmanImageName, "/bin/true").CombinedOutput()
				if err != nil {
					return fmt.Errorf("podman: %v: %s", err, out)
				}
				s.add("podman run --rm -p (CNI bridge, portmap)", ms(time.Since(t0)))
			}
		}
	}
	base := median(s["berth, network none"])
	fmt.Printf("\nstart to exit of /bin/true, %d rounds, medians\n", *rounds)
	for _, k := range []string{"berth, network none", "berth, bridge + 1 published port", "podman run --rm -p (CNI bridge, portmap)"} {
		if len(s[k]) == 0 {
			continue
		}
		fmt.Printf("  %-42s %8.2f ms  (+%.2f ms over network none, n=%d)\n", k, median(s[k]), median(s[k])-base, len(s[k]))
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func benchAttach(ctx context.Context, app *network.Network, dir string) error {
	s := samples{}
	cacheDir := filepath.Join(dir, "cni-cache")
	bridge := fmt.Sprintf("bnb%d", os.Getpid()%100000)
	defer func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			netlink.LinkDel(l)
		}
	}()
	cni, err := network.LoadCNI([]byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "berthbench%d", "plugins": [
		{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": false,
		 "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": "10.215.%d.0/24"}]]}},
		{"type": "portmap", "capabilities": {"portMappings": true}}]}`,
		os.Getpid(), bridge, filepath.Join(dir, "leases"), os.Getpid()%250)), network.CNIOptions{CacheDir: cacheDir})
	if err != nil {
		return err
	}
	for r := 0; r < *rounds; r++ {
		for i := range *attaches {
			ns, err := namespace.NewNet("")
			if err != nil {
				return err
			}
			t0 := time.Now()
			e, err := app.Attach(ctx, ns, network.AttachOptions{})
			if err != nil {
				return err
			}
			p, err := network.Publish(ctx, e.IP(), []network.PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80}}, nil)
			if err != nil {
				return err
			}
			p.Close()
			if err := e.Detach(); err != nil {
				return err
			}
			s.add("berth", ms(time.Since(t0)))
			// The container exit path: the namespace goes, the veth with
			// it, and the endpoint is released.
			ns2, err := namespace.NewNet("")
			if err != nil {
				return err
			}
			t0 = time.Now()
			e2, err := app.Attach(ctx, ns2, network.AttachOptions{})
			if err != nil {
				return err
			}
			p2, err := network.Publish(ctx, e2.IP(), []network.PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80}}, nil)
			if err != nil {
				return err
			}
			p2.Close()
			ns2.Close()
			e2.Release()
			s.add("berth release", ms(time.Since(t0)))
			t0 = time.Now()
			a, err := cni.Attach(ctx, ns, "eth0", []network.PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: uint16(19000 + i), ContainerPort: 80}})
			if err != nil {
				return err
			}
			if err := a.Detach(ctx); err != nil {
				return err
			}
			s.add("libcni", ms(time.Since(t0)))
			ns.Close()
		}
	}
	b, br, c := median(s["berth"]), median(s["berth release"]), median(s["libcni"])
	fmt.Printf("\nattach + detach with one published port, %d rounds, medians\n", *rounds)
	fmt.Printf("  %-58s %8.2f ms  %.3fx libcni\n", "berth Attach+Publish+Close+Detach (removes the veth)", b, b/c)
	fmt.Printf("  %-58s %8.2f ms  %.3fx libcni\n", "berth, container exit path (Release; veth goes with netns)", br, br/c)
	fmt.Printf("  %-58s %8.2f ms\n", "libcni ADD+DEL: bridge + host-local + portmap", c)
	return nil
}

// serverIn starts a berth container serving on port 80, published on
// 127.0.0.1.
func serverIn(ctx context.Context, rootfs string, app *network.Network) (*container.Container, error) {
	ports, _ := network.ParsePort("127.0.0.1::80")
	c, err := container.Create(ctx, fmt.Sprintf("nbsrv-%d", os.Getpid()), &container.Spec{
		Rootfs: rootfs, Process: container.Process{Args: []string{"/bin/netbench", "serve"}},
		Networks: []container.NetworkAttachment{{Network: app, Aliases: []string{"server"}}}, Ports: ports,
	})
	if err != nil {
		return nil, err
	}
	if err := c.Start(ctx); err != nil {
		c.Delete(ctx)
		return nil, err
	}
	return c, nil
}

func waitTCP(addr string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			io.WriteString(c, "C")
			b := make([]byte, 2)
			_, err = io.ReadFull(c, b)
			c.Close()
			if err == nil {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s does not answer: %w", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// throughput sends n bytes and waits for the server's "ok"; it returns
// Gbit/s.
func throughput(addr string, n int64) (float64, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	buf := make([]byte, 256<<10)
	buf[0] = 'T'
	t0 := time.Now()
	for sent := int64(0); sent < n; {
		k := int64(len(buf))
		if n-sent < k {
			k = n - sent
		}
		w, err := c.Write(buf[:k])
		if err != nil {
			return 0, err
		}
		sent += int64(w)
		buf[0] = 0
	}
	c.(*net.TCPConn).CloseWrite()
	b := make([]byte, 2)
	if _, err := io.ReadFull(c, b); err != nil {
		return 0, err
	}
	return float64(n) * 8 / time.Since(t0).Seconds() / 1e9, nil
}

// connRate opens n connections one after another, each answered, and
// returns connections per second.
func connRate(addr string, n int) (float64, error) {
	b := make([]byte, 2)
	t0 := time.Now()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, err
		}
		if _, err := io.WriteString(c, "C"); err != nil {
			c.Close()
			return 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			c.Close()
			return 0, err
		}
		c.Close()
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

func benchData(ctx context.Context, rootfs string, app *network.Network, haveP bool) error {
	srv, err := serverIn(ctx, rootfs, app)
	if err != nil {
		return err
	}
	defer srv.Delete(ctx)
	paths := map[string]string{
		"direct to the container's address": netip.AddrPortFrom(srv.Endpoints()[0].IP(), 80).String(),
		"berth published port":              fmt.Sprintf("127.0.0.1:%d", srv.Ports()[0].HostPort),
	}
	order := []string{"direct to the container's address", "berth published port"}
	if _, err := exec.LookPath("socat"); err == nil {
		port := 17000 + os.Getpid()%1000
		socat := exec.Command("socat", fmt.Sprintf("TCP-LISTEN:%d,bind=127.0.0.1,fork,reuseaddr", port), "TCP:"+paths[order[0]])
		if err := socat.Start(); err != nil {
			return err
		}
		defer func() { socat.Process.Kill(); socat.Wait() }()
		paths["socat relay"] = fmt.Sprintf("127.0.0.1:%d", port)
		order = append(order, "socat relay")
	} else {
		fmt.Println("socat: not installed, skipped")
	}
	if haveP {
		port := 16000 + os.Getpid()%1000
		name := fmt.Sprintf("nbsrv-%d", os.Getpid())
		out, err := podmanRun("-d", "--rm", "--name", name, "-p", fmt.Sprintf("127.0.0.1:%d:80", port), podmanImageName, "/bin/netbench", "serve").CombinedOutput()
		if err != nil {
			return fmt.Errorf("podman: %v: %s", err, out)
		}
		defer exec.Command("podman", append(append([]string{}, podmanFlags...), "rm", "-f", "-t", "0", name)...).Run()
		paths["podman published port (CNI portmap, DNAT)"] = fmt.Sprintf("127.0.0.1:%d", port)
		order = append(order, "podman published port (CNI portmap, DNAT)")
	}
	for _, p := range order {
		if err := waitTCP(paths[p]); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	gbps, cps := samples{}, samples{}
	for r := 0; r < *rounds; r++ {
		for _, p := range order {
			g, err := throughput(paths[p], *gib)
			if err != nil {
				return fmt.Errorf("%s: throughput: %w", p, err)
			}
			gbps.add(p, g)
			c, err := connRate(paths[p], *conns)
			if err != nil {
				return fmt.Errorf("%s: connections: %w", p, err)
			}
			cps.add(p, c)
		}
	}
	direct := order[0]
	fmt.Printf("\ndata path to a server in a container, %d rounds, medians (ratio to the direct path)\n", *rounds)
	fmt.Printf("  %-44s %12s %8s %14s %8s\n", "path", "Gbit/s", "ratio", "connections/s", "ratio")
	for _, p := range order {
		fmt.Printf("  %-44s %12.2f %8.2f %14.0f %8.2f\n", p, median(gbps[p]), median(gbps[p])/median(gbps[direct]), median(cps[p]), median(cps[p])/median(cps[direct]))
	}
	if _, ok := gbps["socat relay"]; ok {
		pub := "berth published port"
		fmt.Printf("  berth published port / socat: %.2fx throughput, %.2fx connections/s\n",
			median(gbps[pub])/median(gbps["socat relay"]), median(cps[pub])/median(cps["socat relay"]))
	}
	return nil
}

func benchDNS(ctx context.Context, rootfs string, app *network.Network) error {
	srv, err := serverIn(ctx, rootfs, app)
	if err != nil {
		return err
	}
	defer srv.Delete(ctx)
	var p50s, p99s []float64
	for r := 0; r < *rounds; r++ {
		var out strings.Builder
		c, err := container.Create(ctx, fmt.Sprintf("nbdns-%d-%d", os.Getpid(), r), &container.Spec{
			Rootfs: rootfs, Process: container.Process{Args: []string{"/bin/netbench", "dnsbench", "server", strconv.Itoa(*queries)}, Stdout: &out, Stderr: &out},
			Networks: []container.NetworkAttachment{{Network: app}},
		})
		if err != nil {
			return err
		}
		if err := c.Start(ctx); err != nil {
			c.Delete(ctx)
			return err
		}
		st, err := c.Wait(ctx)
		c.Delete(ctx)
		if err != nil || !st.Success() {
			return fmt.Errorf("dnsbench: %v %v: %s", st, err, out.String())
		}
		var p50, p99 float64
		if _, err := fmt.Sscan(out.String(), &p50, &p99); err != nil {
			return fmt.Errorf("dnsbench said %q", out.String())
		}
		p50s, p99s = append(p50s, p50), append(p99s, p99)
	}
	fmt.Printf("\nresolving another container's name from inside a container (%d queries per round, %d rounds): p50 %.0f us, p99 %.0f us (medians of the rounds)\n",
		*queries, *rounds, median(p50s), median(p99s))
	return nil
}
