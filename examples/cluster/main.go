// Command cluster runs a cluster of three berth nodes on one machine,
// each node a process of its own in a network namespace of its own, as
// if each were a machine on a LAN: an etcd server (Debian's
// etcd-server) on 127.0.0.1, relayed onto the LAN, and three
// orchestrate Managers, each a node (Options.NodeName, Options.NodeIP)
// running real busybox containers on a pod network of its own subnet,
// routed to the others' (containerruntime's network overlay). It
// applies a Deployment of web servers and a NodePort Service, shows on
// which node each pod runs and which pods answer through each node's
// NodePort, kills one node with SIGKILL (as a machine that dies) and
// shows its pods move to the others once its lease has lapsed and the
// grace period passed, still reachable through the NodePorts.
//
//	go run .                # in examples/cluster (a module of its own)
//	go run . -etcd /usr/bin/etcd -replicas 6
//
// It needs root (namespaces, cgroups, mounts, links) and removes
// everything it made before it exits. The LAN is 10.250.0.0/24 and the
// pod networks 10.244.N.0/24, inside namespaces of its own; nothing
// leaves the machine.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
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
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	lease    = 2 * time.Second // node and leader leases
	grace    = 2 * time.Second // after a lapsed lease, before the pods move
	nodePort = 30080
	nodeEnv  = "BERTH_CLUSTER_EXAMPLE_NODE" // set in a node process: its nodeConfig
)

var lanAddr = netip.MustParseAddr("10.250.0.254") // the LAN's own address, where etcd is relayed

func main() {
	if cfg := os.Getenv(nodeEnv); cfg != "" {
		if err := runNode(cfg); err != nil {
			fmt.Fprintln(os.Stderr, "cluster: node:", err)
			os.Exit(1)
		}
		return
	}
	etcdBin := flag.String("etcd", "etcd", "the etcd server binary")
	replicas := flag.Int("replicas", 3, "pods of the Deployment")
	timeout := flag.Duration("timeout", 120*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*etcdBin, *replicas, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

var start = time.Now()

func stamp() string { return fmt.Sprintf("%6.2fs", time.Since(start).Seconds()) }

// nodeConfig is what a node process is told, as JSON in nodeEnv.
type nodeConfig struct {
	Name     string
	Etcd     string // the etcd client address on the LAN
	NodeIP   string
	Subnet   string // its pod network
	Dir      string // its layers, state and sandboxes
	Cgroup   string // its containers' cgroup parent
	ParentID int    // the example's process: the node stops when it is gone
}

// runNode is a node process, in the network namespace the example made
// for it: a layer store with a busybox image, a pod network on its
// subnet whose NodePorts are published on the node's address, and a
// Manager that is the node, until SIGTERM.
func runNode(cfgJSON string) error {
	var cfg nodeConfig
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go func() {
		for os.Getppid() == cfg.ParentID {
			time.Sleep(200 * time.Millisecond)
		}
		stop()
	}()
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
	nets := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}, NodePortAddrs: []netip.Addr{nodeIP}})
	defer nets.Close()
	pods, err := nets.Create(ctx, network.Config{Name: "pods", Subnet: netip.MustParsePrefix(cfg.Subnet)})
	if err != nil {
		return err
	}
	store, err := etcdstore.Open(ctx, []string{cfg.Etcd})
	if err != nil {
		return err
	}
	defer store.Close()
	rt := containerruntime.New(&container.Runtime{Images: images, CgroupParent: cfg.Cgroup},
		containerruntime.WithNetwork(pods), containerruntime.WithSandboxDir(filepath.Join(cfg.Dir, "sandboxes")))
	m, err := orchestrate.NewManager(orchestrate.Options{
		Store: store, Runtime: rt, StateDir: filepath.Join(cfg.Dir, "state"),
		NodeName: cfg.Name, NodeIP: nodeIP,
		NodeLeaseDuration: lease, NodeLostGrace: grace, LeaderLeaseDuration: lease,
	})
	if err != nil {
		return err
	}
	err = m.Run(ctx)
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return errors.Join(err, m.Close(cctx))
}

// node is a node process, seen from the example.
type node struct {
	cfg  nodeConfig
	cmd  *exec.Cmd
	done chan struct{}
}

func (n *node) alive() bool {
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// stop ends the node with SIGTERM, or SIGKILL when kill is set.
func (n *node) stop(kill bool) {
	if !n.alive() {
		return
	}
	if kill {
		n.cmd.Process.Kill()
	} else {
		n.cmd.Process.Signal(syscall.SIGTERM)
	}
	select {
	case <-n.done:
	case <-time.After(60 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
	}
}

// sweep removes what a killed node leaves for its next start: its
// sandboxes' namespace mounts and its containers' empty cgroups.
func (n *node) sweep() {
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	var mounts []string
	for _, l := range strings.Split(string(mi), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], n.cfg.Dir+"/") {
			mounts = append(mounts, f[4])
		}
	}
	slices.Reverse(mounts)
	for _, m := range mounts {
		unix.Unmount(m, unix.MNT_DETACH)
	}
	// The containers' cgroups empty once their inits have ended.
	for range 50 {
		cgroup.Sweep(n.cfg.Cgroup)
		if cg, err := cgroup.Load(n.cfg.Cgroup); err != nil || cg.Delete(context.Background()) == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func run(etcdBin string, replicas int, timeout time.Duration) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: containers use namespaces, cgroups and mounts; the LAN needs links")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	dir, err := os.MkdirTemp("", "berth-cluster-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	endpoint, stopEtcd, err := startEtcd(ctx, etcdBin, filepath.Join(dir, "etcd"))
	if err != nil {
		return err
	}
	defer stopEtcd()
	store, err := etcdstore.Open(ctx, []string{endpoint})
	if err != nil {
		return err
	}
	defer store.Close()

	lan, err := newLAN()
	if err != nil {
		return err
	}
	defer lan.close()
	relayed, err := lan.relay(endpoint)
	if err != nil {
		return err
	}
	fmt.Printf("%s  etcd serves %s, relayed to the LAN at %s\n", stamp(), endpoint, relayed)

	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.stop(false)
			n.sweep()
		}
	}()
	for i := 1; i <= 3; i++ {
		cfg := nodeConfig{Name: fmt.Sprintf("node-%d", i), Etcd: relayed,
			NodeIP: fmt.Sprintf("10.250.0.%d", i), Subnet: fmt.Sprintf("10.244.%d.0/24", i),
			Dir: filepath.Join(dir, fmt.Sprint("node-", i)), Cgroup: fmt.Sprintf("/berth-cluster-%d-node-%d", os.Getpid(), i), ParentID: os.Getpid()}
		n, err := lan.startNode(cfg)
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
		fmt.Printf("%s  %s: address %s, pods on %s\n", stamp(), cfg.Name, cfg.NodeIP, cfg.Subnet)
	}
	if err := waitFor(ctx, func() (bool, error) {
		ns, err := orchestrate.List[*orchestrate.Node](ctx, store, "", nil)
		ready := 0
		for _, n := range ns {
			if n.Ready().Status == orchestrate.ConditionTrue {
				ready++
			}
		}
		return ready == 3 && leader(ctx, store) != "", err
	}); err != nil {
		return err
	}
	fmt.Printf("%s  3 nodes ready; %s leads (runs the scheduler and the controllers)\n", stamp(), leader(ctx, store))

	d := &orchestrate.Deployment{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec: orchestrate.DeploymentSpec{
			Replicas: replicas,
			Selector: &orchestrate.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: orchestrate.PodTemplate{
				Labels: map[string]string{"app": "web"},
				Spec: orchestrate.PodSpec{TerminationGracePeriod: time.Second, Containers: []orchestrate.Container{{
					Name: "web", Image: "busybox",
					Command: []string{"sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"},
					Ports:   []orchestrate.ContainerPort{{Name: "http", ContainerPort: 8080}},
					ReadinessProbe: &orchestrate.Probe{TCPSocket: &orchestrate.TCPSocketAction{Port: 8080},
						Period: 500 * time.Millisecond, FailureThreshold: 1},
				}}},
			},
		},
	}
	svc := &orchestrate.Service{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec: orchestrate.ServiceSpec{Type: orchestrate.ServiceTypeNodePort, Selector: map[string]string{"app": "web"},
			Ports: []orchestrate.ServicePort{{Port: 80, TargetPort: "http", NodePort: nodePort}}},
	}
	for _, o := range []orchestrate.Object{d, svc} {
		if _, err := store.Create(ctx, o); err != nil {
			return err
		}
	}
	fmt.Printf("%s  applied Deployment web (%d replicas) and Service web (NodePort %d)\n", stamp(), replicas, nodePort)
	if err := show(ctx, store, replicas, ""); err != nil {
		return err
	}
	for _, n := range nodes {
		if err := lan.sample(ctx, n); err != nil {
			return err
		}
	}

	var victim *node
	for _, n := range nodes {
		if n.cfg.Name != leader(ctx, store) {
			victim = n
			break
		}
	}
	fmt.Printf("%s  killing %s (SIGKILL, as a machine that dies)\n", stamp(), victim.cfg.Name)
	victim.stop(true)
	lost := time.Now()
	if err := show(ctx, store, replicas, victim.cfg.Name); err != nil {
		return err
	}
	fmt.Printf("%s  the pods of %s run elsewhere, %.1fs after it died (lease %v + grace %v)\n",
		stamp(), victim.cfg.Name, time.Since(lost).Seconds(), lease, grace)
	for _, n := range nodes {
		if n.alive() {
			if err := lan.sample(ctx, n); err != nil {
				return err
			}
		}
	}
	return nil
}

// lan is the example's LAN: a bridge in a network namespace of its own,
// and a "host" namespace per node on it.
type lan struct {
	ns  *namespace.Namespace
	nl  *netlink.Handle
	br  netlink.Link
	lns []net.Listener
	nss []*namespace.Namespace
}

func newLAN() (_ *lan, err error) {
	l := &lan{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	if l.ns, err = namespace.NewNet(""); err != nil {
		return nil, err
	}
	if l.nl, err = netlink.NewHandleAt(netns.NsHandle(l.ns.Fd())); err != nil {
		return nil, err
	}
	if err := l.nl.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "lan"}}); err != nil {
		return nil, err
	}
	if l.br, err = l.nl.LinkByName("lan"); err != nil {
		return nil, err
	}
	if err := l.nl.AddrAdd(l.br, &netlink.Addr{IPNet: &net.IPNet{IP: lanAddr.AsSlice(), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return nil, err
	}
	return l, upLinks(l.nl, "lo", "lan")
}

func upLinks(nl *netlink.Handle, names ...string) error {
	for _, name := range names {
		link, err := nl.LinkByName(name)
		if err != nil {
			return err
		}
		if err := nl.LinkSetUp(link); err != nil {
			return err
		}
	}
	return nil
}

// close removes the LAN and the nodes' namespaces (the kernel removes
// their links with them).
func (l *lan) close() {
	for _, ln := range l.lns {
		ln.Close()
	}
	for _, ns := range l.nss {
		ns.Close()
	}
	if l.nl != nil {
		l.nl.Close()
	}
	if l.ns != nil {
		l.ns.Close()
	}
}

// relay makes target, on this process's loopback, reachable on the LAN
// at lanAddr, and returns where.
func (l *lan) relay(target string) (string, error) {
	ln, err := network.Listen(context.Background(), l.ns, "tcp", netip.AddrPortFrom(lanAddr, 0).String())
	if err != nil {
		return "", err
	}
	l.lns = append(l.lns, ln)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer up.Close()
				done := make(chan struct{}, 2)
				go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				go func() { io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
				<-done
				<-done
			}()
		}
	}()
	return ln.Addr().String(), nil
}

// startNode makes the node's host namespace, with eth0 on the LAN at
// its address, and starts this program in it as the node.
func (l *lan) startNode(cfg nodeConfig) (*node, error) {
	ns, err := namespace.NewNet("")
	if err != nil {
		return nil, err
	}
	l.nss = append(l.nss, ns)
	port := "lan-" + strings.TrimPrefix(cfg.Name, "node-")
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: l.br.Attrs().Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.Fd())}
	if err := l.nl.LinkAdd(veth); err != nil {
		return nil, err
	}
	if err := upLinks(l.nl, port); err != nil {
		return nil, err
	}
	nl, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()))
	if err != nil {
		return nil, err
	}
	defer nl.Close()
	eth0, err := nl.LinkByName("eth0")
	if err != nil {
		return nil, err
	}
	if err := nl.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP(cfg.NodeIP), Mask: net.CIDRMask(24, 32)}}); err != nil {
		return nil, err
	}
	if err := upLinks(nl, "lo", "eth0"); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(cfg)
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), nodeEnv+"="+string(b))
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	// Forked from a thread in the node's namespace, the node runs there.
	if err := namespace.Do(cmd.Start, ns); err != nil {
		return nil, err
	}
	n := &node{cfg: cfg, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(n.done) }()
	return n, nil
}

// sample fetches the Service through n's NodePort, from the LAN, until
// every pod answered or 30 requests were made, and prints who answered.
func (l *lan) sample(ctx context.Context, n *node) error {
	addr := fmt.Sprintf("%s:%d", n.cfg.NodeIP, nodePort)
	count := map[string]int{}
	for range 30 {
		body, err := fetch(ctx, l.ns, addr)
		if err != nil {
			return fmt.Errorf("through %s's NodePort %s: %w", n.cfg.Name, addr, err)
		}
		count[body]++
	}
	var parts []string
	for pod, c := range count {
		parts = append(parts, fmt.Sprintf("%s×%d", pod, c))
	}
	slices.Sort(parts)
	fmt.Printf("%s  30 requests through %s's NodePort %s answered by %s\n", stamp(), n.cfg.Name, addr, strings.Join(parts, " "))
	return nil
}

// fetch GETs / from addr, dialed in ns, and returns the body.
func fetch(ctx context.Context, ns *namespace.Namespace, addr string) (string, error) {
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	c, err := network.Dial(dctx, ns, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return strings.TrimSpace(string(b)), err
}

// leader returns the node whose Manager holds the leader's Lease.
func leader(ctx context.Context, s orchestrate.Store) string {
	l, err := orchestrate.Get[*orchestrate.Lease](ctx, s, orchestrate.NamespaceSystem, orchestrate.LeaderLeaseName)
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(l.Spec.Holder, "_")
	return name
}

// show prints where the pods run whenever it changes, until replicas
// of them are ready, none on gone.
func show(ctx context.Context, s orchestrate.Store, replicas int, gone string) error {
	last := ""
	return waitFor(ctx, func() (bool, error) {
		pods, err := orchestrate.List[*orchestrate.Pod](ctx, s, "", nil)
		if err != nil {
			return false, err
		}
		per := map[string][]string{}
		ready := 0
		for _, p := range pods {
			switch {
			case p.Status.Reason == orchestrate.ReasonNodeLost:
				per[p.Spec.NodeName] = append(per[p.Spec.NodeName], p.Name+"(lost)")
			case p.Status.Phase == orchestrate.PodRunning && p.DeletionTime == nil:
				name := p.Name + " " + p.Status.PodIP
				if !p.Status.Ready {
					name += "(not ready)"
				} else if p.Spec.NodeName != gone {
					ready++
				}
				per[p.Spec.NodeName] = append(per[p.Spec.NodeName], name)
			}
		}
		var lines []string
		for n, ps := range per {
			if n == "" {
				n = "(unscheduled)"
			}
			slices.Sort(ps)
			lines = append(lines, fmt.Sprintf("    %s: %s", n, strings.Join(ps, ", ")))
		}
		slices.Sort(lines)
		if now := strings.Join(lines, "\n"); now != last {
			fmt.Printf("%s  pods:\n%s\n", stamp(), now)
			last = now
		}
		return ready == replicas, nil
	})
}

func waitFor(ctx context.Context, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
			}
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// startEtcd runs one etcd member on 127.0.0.1 with its data in dir and
// returns its client address once it answers /health.
func startEtcd(ctx context.Context, bin, dir string) (string, func(), error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", nil, fmt.Errorf("etcd: %w (apt-get install etcd-server, or -etcd PATH)", err)
	}
	ports := make([]int, 2)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", nil, err
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		l.Close()
	}
	client := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	peer := fmt.Sprintf("http://127.0.0.1:%d", ports[1])
	cmd := exec.Command(path, "--name", "m0", "--data-dir", dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "m0="+peer, "--log-level", "warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	stop := func() {
		cmd.Process.Kill()
		cmd.Wait()
	}
	err = waitFor(ctx, func() (bool, error) {
		resp, err := http.Get(client + "/health")
		if err != nil {
			return false, err
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
	if err != nil {
		stop()
		return "", nil, fmt.Errorf("etcd did not start: %w", err)
	}
	return strings.TrimPrefix(client, "http://"), stop, nil
}
