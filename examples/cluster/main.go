// Command cluster runs a cluster of three berth nodes on one machine:
// an etcd server (Debian's etcd-server) on 127.0.0.1, and three
// orchestrate Managers, each a node (Options.NodeName) with its own
// connection to etcd, running real busybox containers. It applies a
// Deployment of six replicas, shows on which node each pod runs, stops
// one node (its Manager and its containers, as a machine that dies)
// and shows its pods move to the others once its lease has lapsed and
// the grace period passed.
//
//	go run .                # in examples/cluster (a module of its own)
//	go run . -etcd /usr/bin/etcd -replicas 6
//
// The nodes share one process here, so that the example needs no
// network setup; each could as well be a process on its own machine
// pointed at the same etcd. It needs root (namespaces, cgroups,
// mounts) and removes everything it made before it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const (
	lease = 2 * time.Second // node and leader leases
	grace = 2 * time.Second // after a lapsed lease, before the pods move
)

func main() {
	etcdBin := flag.String("etcd", "etcd", "the etcd server binary")
	replicas := flag.Int("replicas", 6, "pods of the Deployment")
	timeout := flag.Duration("timeout", 90*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*etcdBin, *replicas, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}

var start = time.Now()

func stamp() string { return fmt.Sprintf("%6.2fs", time.Since(start).Seconds()) }

// node is one Manager of the cluster.
type node struct {
	name  string
	m     *orchestrate.Manager
	store *etcdstore.Store
	stop  func()
}

func run(etcdBin string, replicas int, timeout time.Duration) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root: containers use namespaces, cgroups and mounts")
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
	fmt.Printf("%s  etcd serves %s\n", stamp(), endpoint)

	images, err := layer.Open(filepath.Join(dir, "layers"))
	if err != nil {
		return err
	}
	defer images.Close()
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	if _, err := images.ImportDirs(ctx, "busybox", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, rootfs); err != nil {
		return err
	}
	crt := &container.Runtime{Images: images}

	var nodes []*node
	defer func() {
		for _, n := range nodes {
			n.stop()
		}
	}()
	for _, name := range []string{"node-1", "node-2", "node-3"} {
		n, err := startNode(ctx, name, endpoint, crt, filepath.Join(dir, name))
		if err != nil {
			return err
		}
		nodes = append(nodes, n)
	}
	watcher := nodes[0].store
	if err := waitFor(ctx, func() (bool, error) {
		ns, err := orchestrate.List[*orchestrate.Node](ctx, watcher, "", nil)
		ready := 0
		for _, n := range ns {
			if n.Ready().Status == orchestrate.ConditionTrue {
				ready++
			}
		}
		return ready == 3 && leader(nodes) != nil, err
	}); err != nil {
		return err
	}
	fmt.Printf("%s  3 nodes ready; %s leads (runs the scheduler and the controllers)\n", stamp(), leader(nodes).name)

	d := &orchestrate.Deployment{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec: orchestrate.DeploymentSpec{
			Replicas: replicas,
			Selector: &orchestrate.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: orchestrate.PodTemplate{
				Labels: map[string]string{"app": "web"},
				Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{
					{Name: "web", Image: "busybox", Command: []string{"sleep", "3600"}},
				}},
			},
		},
	}
	if _, err := nodes[0].m.Apply(ctx, d); err != nil {
		return err
	}
	fmt.Printf("%s  applied Deployment web, %d replicas\n", stamp(), replicas)
	if err := show(ctx, watcher, replicas, ""); err != nil {
		return err
	}

	var victim *node
	for _, n := range nodes {
		if n != leader(nodes) {
			victim = n
			break
		}
	}
	fmt.Printf("%s  stopping %s (its Manager and its containers, as a machine that dies)\n", stamp(), victim.name)
	victim.stop()
	lost := time.Now()
	if err := show(ctx, watcher, replicas, victim.name); err != nil {
		return err
	}
	fmt.Printf("%s  the pods of %s run elsewhere, %.1fs after it stopped (lease %v + grace %v)\n",
		stamp(), victim.name, time.Since(lost).Seconds(), lease, grace)
	return nil
}

// startNode runs a node Manager with its own etcd connection.
func startNode(ctx context.Context, name, endpoint string, crt *container.Runtime, dir string) (*node, error) {
	s, err := etcdstore.Open(ctx, []string{endpoint})
	if err != nil {
		return nil, err
	}
	m, err := orchestrate.NewManager(orchestrate.Options{
		Store: s, Runtime: containerruntime.New(crt), StateDir: dir,
		NodeName: name, NodeLeaseDuration: lease, NodeLostGrace: grace, LeaderLeaseDuration: lease,
	})
	if err != nil {
		s.Close()
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	stopped := false
	return &node{name: name, m: m, store: s, stop: func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintf(os.Stderr, "cluster: %s: %v\n", name, err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if err := m.Close(cctx); err != nil {
			fmt.Fprintf(os.Stderr, "cluster: close %s: %v\n", name, err)
		}
		s.Close()
	}}, nil
}

func leader(nodes []*node) *node {
	for _, n := range nodes {
		if n.m.IsLeader() {
			return n
		}
	}
	return nil
}

// show prints where the pods run whenever it changes, until replicas
// of them are Running, none on gone.
func show(ctx context.Context, s orchestrate.Store, replicas int, gone string) error {
	last := ""
	return waitFor(ctx, func() (bool, error) {
		pods, err := orchestrate.List[*orchestrate.Pod](ctx, s, "", nil)
		if err != nil {
			return false, err
		}
		per := map[string][]string{}
		running := 0
		for _, p := range pods {
			switch {
			case p.Status.Reason == orchestrate.ReasonNodeLost:
				per[p.Spec.NodeName] = append(per[p.Spec.NodeName], p.Name+"(lost)")
			case p.Status.Phase == orchestrate.PodRunning && p.DeletionTime == nil:
				per[p.Spec.NodeName] = append(per[p.Spec.NodeName], p.Name)
				if p.Spec.NodeName != gone {
					running++
				}
			}
		}
		var lines []string
		for n, ps := range per {
			if n == "" {
				n = "(unscheduled)"
			}
			slices.Sort(ps)
			lines = append(lines, fmt.Sprintf("    %s: %s", n, strings.Join(ps, " ")))
		}
		slices.Sort(lines)
		if now := strings.Join(lines, "\n"); now != last {
			fmt.Printf("%s  pods:\n%s\n", stamp(), now)
			last = now
		}
		return running == replicas, nil
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
