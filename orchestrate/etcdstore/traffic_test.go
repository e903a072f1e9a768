package etcdstore_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/namespace"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// trafficNodeEnv holds the JSON trafficNode of a node process of
// TestClusterTraffic.
const trafficNodeEnv = "BERTH_ETCDSTORE_TRAFFIC_NODE"

// trafficNode configures a node process of TestClusterTraffic: a
// Manager with real containers on a network of its own subnet, in the
// network namespace the test made for it.
type trafficNode struct {
	Name      string
	Endpoints []string // etcd, relayed into the test's "LAN"
	NodeIP    string
	Subnet    string
	Dir       string // layers, state and sandboxes
	Cgroup    string // the containers' cgroup parent
	Parent    int    // the test process: the node exits when it is gone
}

const trafficNodePort = 30080

// runTrafficNode is a node process of TestClusterTraffic, until SIGTERM
// (or SIGKILL).
func runTrafficNode(cfgJSON string) int {
	var cfg trafficNode
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := trafficNodeMain(cfg); err != nil {
		fmt.Fprintf(os.Stderr, "node %s: %v\n", cfg.Name, err)
		return 1
	}
	return 0
}

func trafficNodeMain(cfg trafficNode) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	go func() { // no Pdeathsig (the test forks from a thread it moves): watch the parent
		for os.Getppid() == cfg.Parent {
			time.Sleep(200 * time.Millisecond)
		}
		stop()
	}()
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return err
	}
	lf, err := os.Create(filepath.Join(cfg.Dir, "node.log")) // startTrafficNode's cleanup prints it when the test fails
	if err != nil {
		return err
	}
	defer lf.Close()
	log := slog.New(slog.NewTextHandler(lf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	images, err := layer.Open(filepath.Join(cfg.Dir, "layers"))
	if err != nil {
		return err
	}
	defer images.Close()
	rootfs := filepath.Join(cfg.Dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	if _, err := images.ImportDirs(ctx, "busybox", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, rootfs); err != nil {
		return err
	}
	nodeIP := netip.MustParseAddr(cfg.NodeIP)
	nm := network.New(network.Options{LockFile: filepath.Join(cfg.Dir, "network.lock"), DNSUpstreams: []netip.AddrPort{},
		NodePortAddrs: []netip.Addr{nodeIP}, Logger: log})
	defer nm.Close()
	n, err := nm.Create(ctx, network.Config{Name: "pods", Subnet: netip.MustParsePrefix(cfg.Subnet)})
	if err != nil {
		return err
	}
	s, err := etcdstore.Open(ctx, cfg.Endpoints)
	if err != nil {
		return err
	}
	defer s.Close()
	crt := &container.Runtime{Images: images, CgroupParent: cfg.Cgroup}
	m, err := orchestrate.NewManager(orchestrate.Options{
		Store: s, StateDir: filepath.Join(cfg.Dir, "state"), Logger: log,
		Runtime:  containerruntime.New(crt, containerruntime.WithNetwork(n), containerruntime.WithSandboxDir(filepath.Join(cfg.Dir, "sandboxes"))),
		NodeName: cfg.Name, NodeIP: nodeIP,
		NodeLeaseDuration: clusterLease, NodeLostGrace: clusterGrace, LeaderLeaseDuration: clusterLease,
	})
	if err != nil {
		return err
	}
	err = m.Run(ctx)
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cerr := m.Close(cctx); err == nil {
		err = cerr
	}
	return err
}

// lan is the test's network between the nodes: a bridge in a namespace
// of its own, at 10.250.0.254/24, where etcd is relayed to.
type lan struct {
	ns *namespace.Namespace
	nl *netlink.Handle
	br netlink.Link
}

func newLAN(t *testing.T) *lan {
	t.Helper()
	l := &lan{}
	var err error
	if l.ns, err = namespace.NewNet(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.ns.Close() })
	if l.nl, err = netlink.NewHandleAt(netns.NsHandle(l.ns.Fd())); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.nl.Close)
	if err := l.nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "lan"}}); err != nil {
		t.Fatal(err)
	}
	if l.br, err = l.nl.LinkByName("lan"); err != nil {
		t.Fatal(err)
	}
	if err := l.nl.AddrAdd(l.br, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 250, 0, 254), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := setLinks(l.nl, true, "lo", "lan"); err != nil {
		t.Fatal(err)
	}
	return l
}

// setLinks sets the links named up or down, in nl's namespace.
func setLinks(nl *netlink.Handle, up bool, names ...string) error {
	for _, name := range names {
		link, err := nl.LinkByName(name)
		if err == nil && up {
			err = nl.LinkSetUp(link)
		} else if err == nil {
			err = nl.LinkSetDown(link)
		}
		if err != nil {
			return fmt.Errorf("link %s: %w", name, err)
		}
	}
	return nil
}

// relay makes target (a loopback address of this namespace) reachable
// from the LAN at 10.250.0.254, on a port it picks.
func (l *lan) relay(t *testing.T, target string) string {
	t.Helper()
	ln, err := network.Listen(context.Background(), l.ns, "tcp", "10.250.0.254:0")
	if err != nil {
		t.Fatal(err)
	}
	p := etcdtest.ServeProxy(ln, target)
	t.Cleanup(p.Close)
	return p.Addr
}

// host makes a node's "host" namespace, with eth0 at addr/24 on the LAN.
func (l *lan) host(t *testing.T, i int, addr netip.Addr) *namespace.Namespace {
	t.Helper()
	ns, err := namespace.NewNet("")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	port := fmt.Sprintf("lan%d", i)
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: l.br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.Fd())}
	if err := l.nl.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	if err := setLinks(l.nl, true, port); err != nil {
		t.Fatal(err)
	}
	nl, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	eth0, err := nl.LinkByName("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if err := nl.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	if err := setLinks(nl, true, "lo", "eth0"); err != nil {
		t.Fatal(err)
	}
	return ns
}

// setLink sets node i's port on the LAN up or down (a partition).
func (l *lan) setLink(i int, up bool) error {
	return setLinks(l.nl, up, fmt.Sprintf("lan%d", i))
}

// hostLeftovers lists what a node left in its host namespace: links
// other than lo and eth0, and the overlay's UDP socket.
func hostLeftovers(ns *namespace.Namespace) ([]string, error) {
	var left []string
	err := namespace.Do(func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			if n := l.Attrs().Name; n != "lo" && n != "eth0" {
				left = append(left, "link "+n+" ("+l.Type()+")")
			}
		}
		udp, err := os.ReadFile("/proc/thread-self/net/udp")
		if err != nil {
			return err
		}
		if port := fmt.Sprintf(":%04X ", network.DefaultOverlayPort); strings.Contains(string(udp), port) {
			left = append(left, "UDP socket on port 4789")
		}
		return nil
	}, ns)
	return left, err
}

// trafficProc is a node process of TestClusterTraffic.
type trafficProc struct {
	cfg  trafficNode
	ns   *namespace.Namespace
	cmd  *exec.Cmd
	done chan struct{}
}

func startTrafficNode(t *testing.T, cfg trafficNode, ns *namespace.Namespace) *trafficProc {
	t.Helper()
	b, _ := json.Marshal(cfg)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), trafficNodeEnv+"="+string(b))
	cmd.Stderr = os.Stderr
	if err := namespace.Do(cmd.Start, ns); err != nil {
		t.Fatal(err)
	}
	p := &trafficProc{cfg: cfg, ns: ns, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.stop(t)
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(cfg.Dir, "node.log"))
			t.Logf("node %s's log:\n%s", cfg.Name, b)
		}
	})
	return p
}

// stop ends the node with SIGTERM, as a node is shut down.
func (p *trafficProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Errorf("node %s did not stop on SIGTERM", p.cfg.Name)
		p.cmd.Process.Kill()
		<-p.done
	}
}

// sweep removes what a node killed with -9 leaves on the host for its
// next start to tear down: its sandboxes' namespace mounts and its
// containers' (empty) cgroups.
func (p *trafficProc) sweep(t *testing.T) {
	mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
	var mounts []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], p.cfg.Dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	slices.Reverse(mounts)
	for _, m := range mounts {
		unix.Unmount(m, unix.MNT_DETACH)
	}
	// The containers' cgroups empty once their inits have ended.
	for range 50 {
		cgroup.Sweep(p.cfg.Cgroup)
		if cg, err := cgroup.Load(p.cfg.Cgroup); err != nil || cg.Delete(context.Background()) == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// firstAnswer waits up to 10 s for addr, dialed inside ns, to answer.
func firstAnswer(t *testing.T, ns *namespace.Namespace, addr string) {
	t.Helper()
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err = fetch(context.Background(), ns, addr, time.Second); err == nil {
			return
		}
	}
	t.Fatalf("%s did not answer in 10 s: %v", addr, err)
}

// fetch GETs / from addr, dialed inside ns, and returns the body.
func fetch(ctx context.Context, ns *namespace.Namespace, addr string, timeout time.Duration) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := network.Dial(dctx, ns, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	r := bufio.NewReader(c)
	status, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	if !strings.Contains(status, " 200 ") {
		return "", fmt.Errorf("%s: %q", addr, status)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		return "", err
	}
	_, body, _ := strings.Cut(string(b), "\r\n\r\n")
	return strings.TrimSpace(body), nil
}

// Three node processes with real containers, each in a "host" network
// namespace of the test on a LAN of the test (a bridge in another), on
// a 3-member etcd relayed into the LAN. A Deployment of three web
// servers spreads over the nodes, and a NodePort Service leads to them:
// every node's NodePort reaches the pods of all three nodes (the pod
// networks are routed between the nodes). kill -9 of a node: its pod
// runs elsewhere within lease + grace + a few seconds, and a client
// loop through another node's NodePort sees errors only inside that
// window; the killed node's host namespace keeps nothing of berth's
// network (tunnel, routes, socket). A partitioned node (its LAN link
// down): its pod is replaced, and once healed it tears the stale pod
// down and its NodePort leads to the live pods. The nodes' host
// namespaces keep nothing once they are stopped.
func TestClusterTraffic(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes with containers and waits for leases")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers, network namespaces")
	}
	if err := containertest.BusyboxRootfs(filepath.Join(t.TempDir(), "probe")); err != nil {
		t.Skip(err)
	}
	ctx := context.Background()
	c := etcdtest.Start(t, 3)
	s := open(t, c, etcdstore.WithPrefix(etcdstore.DefaultPrefix))
	l := newLAN(t)
	var relayed []string
	for _, e := range c.Endpoints() {
		relayed = append(relayed, l.relay(t, e))
	}
	dir := t.TempDir()
	procs := map[string]*trafficProc{}
	names := []string{"n1", "n2", "n3"}
	for i, name := range names {
		addr := netip.AddrFrom4([4]byte{10, 250, 0, byte(i + 1)})
		cfg := trafficNode{Name: name, Endpoints: relayed, NodeIP: addr.String(), Subnet: fmt.Sprintf("10.244.%d.0/24", i+1),
			Dir: filepath.Join(dir, name), Cgroup: fmt.Sprintf("/berth-et-%d-%s", os.Getpid(), name), Parent: os.Getpid()}
		procs[name] = startTrafficNode(t, cfg, l.host(t, i+1, addr))
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.stop(t)
			p.sweep(t)
		}
	})
	fixture.WaitFor(t, "a leader and 3 ready nodes", func() bool {
		ns, _ := orchestrate.List[*orchestrate.Node](ctx, s, "", nil)
		ready := 0
		for _, n := range ns {
			if n.Ready().Status == orchestrate.ConditionTrue && n.Spec.PodCIDR != "" {
				ready++
			}
		}
		return ready == 3 && leaderNode(t, s) != ""
	})
	d := &orchestrate.Deployment{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec: orchestrate.DeploymentSpec{
			Replicas: 3,
			Selector: &orchestrate.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: orchestrate.PodTemplate{Labels: map[string]string{"app": "web"}, Spec: orchestrate.PodSpec{
				TerminationGracePeriod: time.Second,
				Containers: []orchestrate.Container{{Name: "web", Image: "busybox",
					Command: []string{"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"},
					Ports:   []orchestrate.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &orchestrate.Probe{TCPSocket: &orchestrate.TCPSocketAction{Port: 8080},
						Period: 500 * time.Millisecond, FailureThreshold: 1},
				}},
			}},
		},
	}
	svc := &orchestrate.Service{ObjectMeta: orchestrate.ObjectMeta{Name: "web"}, Spec: orchestrate.ServiceSpec{
		Type: orchestrate.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
		Ports: []orchestrate.ServicePort{{Port: 80, TargetPort: "http", NodePort: trafficNodePort}}}}
	for _, o := range []orchestrate.Object{d, svc} {
		if _, err := s.Create(ctx, o); err != nil {
			t.Fatal(err)
		}
	}
	defer func() {
		if t.Failed() {
			for _, p := range fixture.LivePods(t, s) {
				t.Logf("pod %s node %q phase %s ready %v ip %s reason %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Ready, p.Status.PodIP, p.Status.Reason, p.Status.Message)
			}
		}
	}()
	readyOn := func() map[string]string { // ready pod → node
		out := map[string]string{}
		for _, p := range fixture.LivePods(t, s) {
			if p.Status.Phase == orchestrate.PodRunning && p.Status.Ready && p.Status.Reason == "" {
				out[p.Name] = p.Spec.NodeName
			}
		}
		return out
	}
	fixture.WaitFor(t, "3 ready pods, one per node", func() bool {
		per := map[string]int{}
		for _, n := range readyOn() {
			per[n]++
		}
		return per["n1"] == 1 && per["n2"] == 1 && per["n3"] == 1
	})
	pods := readyOn()

	// Every node's NodePort reaches the pods of all three nodes.
	// (A pod's readiness reaches the other nodes' proxies through the
	// leader's Endpoints a moment later: wait for each NodePort's first
	// answer.)
	for i, through := range names {
		addr := fmt.Sprintf("10.250.0.%d:%d", i+1, trafficNodePort)
		firstAnswer(t, l.ns, addr)
		seen := map[string]bool{}
		for try := 0; try < 60 && len(seen) < 3; try++ {
			body, err := fetch(ctx, l.ns, addr, 3*time.Second)
			if err != nil {
				t.Fatalf("through %s's NodePort %s: %v", through, addr, err)
			}
			if _, ok := pods[body]; !ok {
				t.Fatalf("through %s's NodePort: answered %q, not one of the pods %v", through, body, pods)
			}
			seen[body] = true
		}
		if len(seen) != 3 {
			t.Errorf("through %s's NodePort, only %v answered in 60 requests; pods %v", through, seen, pods)
		}
	}

	// kill -9 of a node that does not lead; a client loop through the
	// leader's NodePort.
	leader := leaderNode(t, s)
	victim := "n1"
	if leader == victim {
		victim = "n2"
	}
	leaderAddr := fmt.Sprintf("%s:%d", procs[leader].cfg.NodeIP, trafficNodePort)
	type result struct {
		at  time.Duration
		err error
	}
	stopLoop := make(chan struct{})
	results := make(chan []result)
	start := time.Now()
	go func() {
		var rs []result
		for {
			select {
			case <-stopLoop:
				results <- rs
				return
			case <-time.After(50 * time.Millisecond):
			}
			at := time.Since(start)
			_, err := fetch(ctx, l.ns, leaderAddr, time.Second)
			rs = append(rs, result{at, err})
		}
	}()
	time.Sleep(500 * time.Millisecond)
	kill := time.Since(start)
	procs[victim].cmd.Process.Kill()
	<-procs[victim].done
	fixture.WaitFor(t, "the killed node's pod ready elsewhere", func() bool {
		per := map[string]int{}
		for _, n := range readyOn() {
			per[n]++
		}
		return per[victim] == 0 && len(readyOn()) == 3
	})
	moved := time.Since(start)
	time.Sleep(3 * time.Second)
	close(stopLoop)
	rs := <-results
	var failed []result
	for _, r := range rs {
		if r.err != nil {
			failed = append(failed, r)
		}
	}
	t.Logf("kill -9 of %s at %.2fs, its pod ready elsewhere at %.2fs (%.2fs; lease %v, grace %v); %d requests through %s's NodePort, %d failed",
		victim, kill.Seconds(), moved.Seconds(), (moved - kill).Seconds(), clusterLease, clusterGrace, len(rs), leader, len(failed))
	if moved-kill > clusterLease+clusterGrace+5*time.Second {
		t.Errorf("failover took %v, more than lease + grace + 5 s", moved-kill)
	}
	for _, r := range failed {
		if r.at < kill || r.at > moved {
			t.Errorf("request at %.2fs failed outside the window %.2fs-%.2fs: %v", r.at.Seconds(), kill.Seconds(), moved.Seconds(), r.err)
		}
	}
	if len(rs) < 20 {
		t.Errorf("only %d requests in the loop", len(rs))
	}

	// The killed node's host namespace: its hub went with it.
	var left []string
	for range 100 { // the kernel destroys the hub's namespace in the background
		var err error
		if left, err = hostLeftovers(procs[victim].ns); err != nil {
			t.Fatal(err)
		}
		if len(left) == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(left) > 0 {
		t.Errorf("kill -9 of %s left in its host namespace: %v", victim, left)
	}
	// A partition: the other survivor's LAN link goes down. Its pod is
	// replaced on the leader's node; once the link is back, the node
	// tears the stale pod down, and the Service answers through both
	// NodePorts from the live pods only.
	cutNode := ""
	for _, n := range names {
		if n != victim && n != leader {
			cutNode = n
		}
	}
	cutIndex := slices.Index(names, cutNode) + 1
	stale, staleIP := "", ""
	for _, p := range fixture.LivePods(t, s) {
		if p.Spec.NodeName == cutNode && p.Status.Ready {
			stale, staleIP = p.Name, p.Status.PodIP+":8080"
		}
	}
	if err := l.setLink(cutIndex, false); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, "the partitioned node's pod replaced on "+leader, func() bool {
		per := map[string]int{}
		for _, n := range readyOn() {
			per[n]++
		}
		return per[leader] == 3
	})
	// Cut off, the node keeps its pod running (seen from its own host).
	if body, err := fetch(ctx, procs[cutNode].ns, staleIP, 3*time.Second); err != nil || body != stale {
		t.Errorf("the partitioned node's pod %s at %s: %q, %v; want it kept running", stale, staleIP, body, err)
	}
	if err := l.setLink(cutIndex, true); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, "the healed node's stale pod torn down, the node Ready", func() bool {
		if _, err := fetch(ctx, procs[cutNode].ns, staleIP, time.Second); err == nil {
			return false
		}
		n, err := orchestrate.Get[*orchestrate.Node](ctx, s, "", cutNode)
		return err == nil && n.Ready().Status == orchestrate.ConditionTrue
	})
	live := readyOn()
	for _, through := range []string{leader, cutNode} {
		addr := fmt.Sprintf("%s:%d", procs[through].cfg.NodeIP, trafficNodePort)
		firstAnswer(t, l.ns, addr)
		for range 10 {
			body, err := fetch(ctx, l.ns, addr, 3*time.Second)
			if err != nil {
				t.Fatalf("after the partition healed, through %s's NodePort: %v", through, err)
			}
			if live[body] != leader {
				t.Fatalf("after the partition healed, through %s's NodePort: answered by %q, not one of the live pods %v", through, body, live)
			}
		}
	}

	for _, name := range names {
		p := procs[name]
		p.stop(t)
		if name == victim {
			continue
		}
		if left, err := hostLeftovers(p.ns); err != nil || len(left) > 0 {
			t.Errorf("node %s stopped, its host namespace keeps %v (%v)", name, left, err)
		}
	}
}
