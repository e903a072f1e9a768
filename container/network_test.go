package container

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/namespace"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
)

// netManager is a network manager whose embedded DNS forwards nothing
// (tests never query the machine's resolver).
func netManager(t *testing.T) *network.Manager {
	t.Helper()
	m := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	t.Cleanup(func() {
		if err := m.Close(); err != nil {
			t.Errorf("network Close: %v", err)
		}
	})
	return m
}

// www is a tmpfs for httpd's files: the tests' containers share one
// root filesystem directory, and would otherwise write each other's.
var www = []Mount{{Type: Tmpfs, Target: "/www"}}

// httpd serves "hello from NAME" on port 80 of every address, from www.
func httpd(name string) Process {
	return sh("mkdir -p /www && echo hello from " + name + " > /www/index.html && exec httpd -f -p 80 -h /www")
}

// get fetches url until it answers or ctx ends (the server may not be
// listening yet).
func get(ctx context.Context, t *testing.T, client *http.Client, url string) string {
	t.Helper()
	for {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := client.Do(req)
		if err == nil {
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil && resp.StatusCode == http.StatusOK {
				return string(b)
			}
			t.Logf("GET %s: %s %q %v", url, resp.Status, b, err)
		}
		select {
		case <-ctx.Done():
			t.Fatalf("GET %s: %v", url, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestNetworkByName(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	m := netManager(t)
	app, err := m.Create(ctx, network.Config{Name: "app"})
	if err != nil {
		t.Fatal(err)
	}
	db, _ := startIn(t, Default, &Spec{Process: httpd("db"), Mounts: www, Networks: []NetworkAttachment{{Network: app, Aliases: []string{"db", "database"}}}})
	eps := db.Endpoints()
	if len(eps) != 1 || eps[0].Interface() != "eth0" || !app.Config().Subnet.Contains(eps[0].IP()) {
		t.Fatalf("endpoints: %v", eps)
	}
	// The host reaches the container by its address.
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if got := get(hctx, t, http.DefaultClient, "http://"+eps[0].IP().String()+"/"); got != "hello from db\n" {
		t.Fatalf("from the host: %q", got)
	}
	out, st := run(t, &Spec{
		Hostname: "web",
		Process: sh(`wget -q -O - http://db/ && wget -q -O - http://database/ && cat /etc/resolv.conf /etc/hostname && ` +
			`grep -w web /etc/hosts && ip -o -4 addr show eth0 | grep -q "inet " && echo eth0 up`),
		Networks: []NetworkAttachment{{Network: app}},
	})
	if !st.Success() {
		t.Fatalf("%v: %s", st, out)
	}
	for _, want := range []string{"hello from db\nhello from db\n", "nameserver 127.0.0.11\n", "options ndots:0\n", "web\n", "\tweb\n", "eth0 up"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// After Delete the name is gone and the address free.
	if err := db.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(app.Endpoints()); n != 0 {
		t.Fatalf("%d endpoints left after Delete", n)
	}
	out, _ = run(t, &Spec{Process: sh(`nslookup db 127.0.0.11 >/dev/null 2>&1 && echo found || echo gone`), Networks: []NetworkAttachment{{Network: app}}})
	if !strings.Contains(out, "gone") {
		t.Fatalf("db still resolves after Delete: %s", out)
	}
}

func TestPublishedPort(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	m := netManager(t)
	n, err := m.Get(ctx, network.DefaultName)
	if err != nil {
		t.Fatal(err)
	}
	ports, err := network.ParsePort("127.0.0.1::80")
	if err != nil {
		t.Fatal(err)
	}
	c, _ := startIn(t, Default, &Spec{Process: httpd("web"), Mounts: www, Networks: []NetworkAttachment{{Network: n}}, Ports: ports})
	got := c.Ports()
	if len(got) != 1 || got[0].HostPort == 0 || got[0].ContainerPort != 80 {
		t.Fatalf("ports: %+v", got)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://127.0.0.1:%d/", got[0].HostPort)
	if s := get(hctx, t, http.DefaultClient, url); s != "hello from web\n" {
		t.Fatalf("through the published port: %q", s)
	}
	// The same host port for a second container fails its Start, and
	// leaves nothing attached.
	clash, err := Default.Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: httpd("x"), Mounts: www, Networks: []NetworkAttachment{{Network: n}}, Ports: got})
	if err != nil {
		t.Fatal(err)
	}
	defer clash.Delete(ctx)
	if err := clash.Start(ctx); !errors.Is(err, network.ErrPortInUse) {
		t.Fatalf("Start with a taken port: %v", err)
	}
	if k := len(n.Endpoints()); k != 1 {
		t.Fatalf("%d endpoints after a failed start, want 1", k)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.Dial("tcp", url[len("http://"):len(url)-1]); err == nil {
		conn.Close()
		t.Fatal("the host port is still bound after Delete")
	}
	if k := len(n.Endpoints()); k != 0 {
		t.Fatalf("%d endpoints after Delete", k)
	}
}

func TestDialAndPortForward(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	// Network none: only loopback, where httpd listens.
	c, _ := startIn(t, Default, &Spec{Process: sh("echo inside > /www/index.html && exec httpd -f -p 127.0.0.1:80 -h /www"), Mounts: www})
	client := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return c.Dial(ctx, "tcp", "127.0.0.1:80")
	}}}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if got := get(hctx, t, client, "http://container/"); got != "inside\n" {
		t.Fatalf("Dial: %q", got)
	}
	if _, err := c.Dial(ctx, "tcp", "localhost:80"); !errors.Is(err, network.ErrInvalidAddress) {
		t.Fatalf("Dial by name: %v", err)
	}
	f, err := c.PortForward(ctx, "127.0.0.1:0", 80)
	if err != nil {
		t.Fatal(err)
	}
	if got := get(hctx, t, http.DefaultClient, "http://"+f.Addr().String()+"/"); got != "inside\n" {
		t.Fatalf("PortForward: %q", got)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if conn, err := net.Dial("tcp", f.Addr().String()); err == nil {
		conn.Close()
		t.Fatal("port-forward still listening after Delete")
	}
}

func TestNetworkBadSpec(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	m := netManager(t)
	n, err := m.Create(ctx, network.Config{Name: "bad"})
	if err != nil {
		t.Fatal(err)
	}
	bad := []*Spec{
		{Networks: []NetworkAttachment{{Network: n}}, Namespaces: map[namespace.Kind]Namespace{namespace.Net: {Mode: NamespaceHost}}},
		{Ports: []network.PortMapping{{ContainerPort: 80}}},
		{Networks: []NetworkAttachment{{Network: n}}, Ports: []network.PortMapping{{ContainerPort: 0}}},
		{Networks: []NetworkAttachment{{Network: n}}, Ports: []network.PortMapping{{ContainerPort: 80, Protocol: "sctp"}}},
		{Networks: []NetworkAttachment{{Network: n}, {Network: n}}},
		{Networks: []NetworkAttachment{{}}},
	}
	for i, s := range bad {
		s.Rootfs, s.Process = testRootfs, sh("true")
		if _, err := Default.Create(ctx, testID(t), s); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("spec %d: %v", i, err)
		}
	}
	// A bad fixed address fails at Start and leaves nothing.
	c, err := Default.Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"),
		Networks: []NetworkAttachment{{Network: n, IP: netip.MustParseAddr("10.1.2.3")}}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); !errors.Is(err, network.ErrInvalidAddress) {
		t.Fatalf("Start with an address outside the subnet: %v", err)
	}
	if len(n.Endpoints()) != 0 {
		t.Fatal("endpoint left")
	}
}

func TestCNINetwork(t *testing.T) {
	needRoot(t)
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		t.Skip("needs Debian's containernetworking-plugins")
	}
	ctx := testCtx(t)
	dir := t.TempDir()
	bridge := fmt.Sprintf("bcc%d", os.Getpid()%100000)
	subnet := fmt.Sprintf("10.214.%d.0/24", os.Getpid()%250)
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(bridge); err == nil {
			netlink.LinkDel(l)
		}
	})
	cni, err := network.LoadCNI([]byte(fmt.Sprintf(`{"cniVersion": "1.0.0", "name": "berthctest%d", "plugins": [
		{"type": "bridge", "bridge": %q, "isGateway": true, "ipam": {"type": "host-local", "dataDir": %q, "ranges": [[{"subnet": %q}]]}}]}`,
		os.Getpid(), bridge, filepath.Join(dir, "leases"), subnet)), network.CNIOptions{CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	c, _ := startIn(t, Default, &Spec{Process: httpd("cni"), Mounts: www, Networks: []NetworkAttachment{{CNI: cni}}})
	atts := c.CNIAttachments()
	if len(atts) != 1 || len(atts[0].IPs()) != 1 {
		t.Fatalf("attachments: %v", atts)
	}
	ip := atts[0].IPs()[0].Addr()
	if !netip.MustParsePrefix(subnet).Contains(ip) {
		t.Fatalf("address %s outside %s", ip, subnet)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		t.Fatal(err)
	}
	if r, err := netlink.RouteGet(ip.AsSlice()); err != nil || len(r) == 0 || r[0].LinkIndex != br.Attrs().Index {
		t.Fatalf("the host does not route %s over %s", ip, bridge)
	}
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if got := get(hctx, t, http.DefaultClient, "http://"+ip.String()+"/"); got != "hello from cni\n" {
		t.Fatalf("over CNI: %q", got)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	leases, _ := filepath.Glob(filepath.Join(dir, "leases", "*", "10.*"))
	if len(leases) != 0 {
		t.Fatalf("leases left after Delete: %v", leases)
	}
}

func TestNetworked50(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	m := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	n, err := m.Create(ctx, network.Config{Name: "fifty"})
	if err != nil {
		t.Fatal(err)
	}
	link := m.HostLink()
	type res struct {
		c   *Container
		err error
	}
	results := make(chan res, 50)
	for i := range 50 {
		go func() {
			c, err := Create(ctx, fmt.Sprintf("%s-%d", testID(t), i), &Spec{Rootfs: testRootfs, Process: sh("exec sleep 60"),
				Networks: []NetworkAttachment{{Network: n, Aliases: []string{fmt.Sprintf("c%d", i)}}}})
			if err == nil {
				if err = c.Start(ctx); err != nil {
					c.Delete(ctx)
				}
			}
			results <- res{c, err}
		}()
	}
	seen := map[netip.Addr]bool{}
	var cs []*Container
	for range 50 {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		cs = append(cs, r.c)
		ip := r.c.Endpoints()[0].IP()
		if seen[ip] {
			t.Errorf("address %s given twice", ip)
		}
		seen[ip] = true
	}
	if t.Failed() {
		for _, c := range cs {
			c.Delete(ctx)
		}
		t.FailNow()
	}
	// One resolves another by its alias.
	var out strings.Builder
	p, err := cs[0].Exec(ctx, Process{Args: []string{"nslookup", "c17", "127.0.0.11"}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	if st, _ := p.Wait(ctx); !st.Success() || !strings.Contains(out.String(), "Address") {
		t.Fatalf("nslookup c17: %v\n%s", st, out.String())
	}
	for _, c := range cs {
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if k := len(n.Endpoints()); k != 0 {
		t.Fatalf("%d endpoints after deleting every container", k)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(link); err == nil {
		t.Fatalf("host link %s left after Close", link)
	}
	checkNoLeaks(t, before)
}

// netOwnerEnv makes the test binary a process that starts 10 networked
// containers with published ports and waits to be killed.
const netOwnerEnv = "BERTH_TEST_NET_OWNER_ROOTFS"

func init() {
	rootfs := os.Getenv(netOwnerEnv)
	if rootfs == "" {
		return
	}
	ctx := context.Background()
	fail := func(err error) {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	m := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	n, err := m.Create(ctx, network.Config{Name: "owned"})
	if err != nil {
		fail(err)
	}
	ports, _ := network.ParsePort("127.0.0.1::80")
	fmt.Println("link", m.HostLink(), n.Config().Subnet)
	for i := range 10 {
		c, err := Create(ctx, fmt.Sprintf("netowner-%d-%d", os.Getpid(), i), &Spec{Rootfs: rootfs, Process: httpd("x"), Mounts: www,
			Networks: []NetworkAttachment{{Network: n}}, Ports: ports})
		if err == nil {
			err = c.Start(ctx)
		}
		if err != nil {
			fail(err)
		}
		fmt.Println("container", c.Pid(), c.Ports()[0].HostPort)
	}
	fmt.Println("ready")
	select {}
}

func TestKilledOwnerNetworked(t *testing.T) {
	needRoot(t)
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), netOwnerEnv+"="+testRootfs)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Whatever happens to the test, the child goes.
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var link, subnet string
	var pids, ports []int
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "link":
			link, subnet = f[1], f[2]
		case len(f) == 3 && f[0] == "container":
			pid, _ := strconv.Atoi(f[1])
			port, _ := strconv.Atoi(f[2])
			pids, ports = append(pids, pid), append(ports, port)
		}
		if sc.Text() == "ready" || strings.HasPrefix(sc.Text(), "error") {
			break
		}
	}
	if len(pids) != 10 || link == "" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the owner did not start its containers: %q", sc.Text())
	}
	ctx := testCtx(t)
	hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if got := get(hctx, t, http.DefaultClient, fmt.Sprintf("http://127.0.0.1:%d/", ports[0])); got != "hello from x\n" {
		t.Fatalf("published port of the owner: %q", got)
	}
	l, err := netlink.LinkByName(link)
	if err != nil {
		t.Fatal(err)
	}
	linkIndex := l.Attrs().Index
	cmd.Process.Kill()
	cmd.Wait()
	for _, pid := range pids {
		waitFor(t, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); return err != nil }, "container to die with its owner")
	}
	waitFor(t, func() bool { _, err := netlink.LinkByName(link); return err != nil }, "the hub's host link to go")
	for _, port := range ports {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			t.Errorf("port %d still accepts after its owner died", port)
		}
	}
	// Only the dead owner's: another process may have the subnet by now.
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Dst: mustIPNet(subnet), LinkIndex: linkIndex}, netlink.RT_FILTER_DST|netlink.RT_FILTER_OIF)
	if err != nil || len(routes) != 0 {
		t.Errorf("routes to %s left: %v %v", subnet, routes, err)
	}
	// The host's table belonged to the owner's nftables socket: the
	// kernel removed it with the process.
	if hostTable(t, "berth-"+link) {
		t.Error("the dead owner's host table survived it")
	}
	for i := range 10 {
		if cg, err := cgroup.Load(fmt.Sprintf("/berth/netowner-%d-%d", cmd.Process.Pid, i)); err == nil {
			cg.Delete(context.Background())
		}
	}
}

func mustIPNet(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func hostTable(t *testing.T, name string) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseLasting()
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == name {
			return true
		}
	}
	return false
}

// TestResolvConfThroughDanglingLink runs a container whose rootfs has
// /etc/resolv.conf as a dangling symlink (as systemd images do): the
// generated file lands where the link points, and the rootfs directory
// itself is not written.
func TestResolvConfThroughDanglingLink(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	rootfs := t.TempDir()
	if err := busybox.Rootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(rootfs, "etc/resolv.conf")); err != nil {
		t.Fatal(err)
	}
	m := netManager(t)
	n, err := m.Create(ctx, network.Config{Name: "dangling"})
	if err != nil {
		t.Fatal(err)
	}
	out, st := run(t, &Spec{Rootfs: rootfs, Process: sh("cat /etc/resolv.conf"), Networks: []NetworkAttachment{{Network: n}}})
	if !st.Success() || !strings.Contains(out, "nameserver 127.0.0.11") {
		t.Fatalf("%v: %s", st, out)
	}
}
