package etcdstore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
)

// The child node processes of TestClusterProcesses.
const (
	nodeEnv      = "BERTH_ETCDSTORE_NODE"
	endpointsEnv = "BERTH_ETCDSTORE_ENDPOINTS"
	clusterLease = 2 * time.Second
	clusterGrace = 2 * time.Second
)

func TestMain(m *testing.M) {
	if cfg := os.Getenv(trafficNodeEnv); cfg != "" {
		os.Exit(runTrafficNode(cfg))
	}
	if name := os.Getenv(nodeEnv); name != "" {
		os.Exit(runNode(name, strings.Split(os.Getenv(endpointsEnv), ",")))
	}
	os.Exit(m.Run())
}

// runNode is a node process: a Manager with a fake runtime on the etcd
// at endpoints, until SIGTERM (or SIGKILL).
func runNode(name string, endpoints []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	s, err := etcdstore.Open(ctx, endpoints)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer s.Close()
	dir, err := os.MkdirTemp("", "node")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	m, err := orchestrate.NewManager(orchestrate.Options{
		Store: s, Runtime: fakeruntime.New(nil, "web:v1"), StateDir: dir,
		NodeName: name, NodeLeaseDuration: clusterLease, NodeLostGrace: clusterGrace, LeaderLeaseDuration: clusterLease,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = m.Run(ctx)
	m.Close(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// nodeProc is a node process of the test.
type nodeProc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
}

func startNodeProc(t testing.TB, name string, endpoints []string) *nodeProc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), nodeEnv+"="+name, endpointsEnv+"="+strings.Join(endpoints, ","))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &nodeProc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.kill)
	return p
}

func (p *nodeProc) kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// leaderNode returns the node whose Manager holds the leader's Lease.
func leaderNode(t testing.TB, s orchestrate.Store) string {
	l, err := orchestrate.Get[*orchestrate.Lease](context.Background(), s, orchestrate.NamespaceSystem, orchestrate.LeaderLeaseName)
	if err != nil {
		return ""
	}
	name, _, _ := strings.Cut(l.Spec.Holder, "_")
	return name
}

// runningPer counts the pods Running (and not failed, not being
// deleted) per node.
func runningPer(t testing.TB, s orchestrate.Store) map[string]int {
	out := map[string]int{}
	for _, p := range fixture.LivePods(t, s) {
		if p.Status.Phase == orchestrate.PodRunning {
			out[p.Spec.NodeName]++
		}
	}
	return out
}

// A 3-member etcd and three node processes: a Deployment spreads over
// them; kill -9 of a node: its pods Running elsewhere within lease +
// grace + a few seconds; kill -9 of the leader: another leads within
// about a lease; kill of one etcd member: the rest keeps working (a
// scale-up is carried out).
func TestClusterProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes and waits for leases")
	}
	c := etcdtest.Start(t, 3)
	s := open(t, c, etcdstore.WithPrefix(etcdstore.DefaultPrefix))
	ctx := context.Background()
	procs := map[string]*nodeProc{}
	for _, n := range []string{"n1", "n2", "n3"} {
		procs[n] = startNodeProc(t, n, c.Endpoints())
	}
	fixture.WaitFor(t, "a leader and 3 ready nodes", func() bool {
		ns, _ := orchestrate.List[*orchestrate.Node](ctx, s, "", nil)
		ready := 0
		for _, n := range ns {
			if n.Ready().Status == orchestrate.ConditionTrue {
				ready++
			}
		}
		return ready == 3 && leaderNode(t, s) != ""
	})
	d := fixture.Deployment("web", 6)
	if _, err := s.Create(ctx, d); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() {
			for _, p := range fixture.LivePods(t, s) {
				t.Logf("pod %s node %q phase %s reason %s %s", p.Name, p.Spec.NodeName, p.Status.Phase, p.Status.Reason, p.Status.Message)
			}
			ns, _ := orchestrate.List[*orchestrate.Node](ctx, s, "", nil)
			for _, n := range ns {
				t.Logf("node %s %+v %+v", n.Name, n.Ready(), n.Status.Allocatable)
			}
			rss, _ := orchestrate.List[*orchestrate.ReplicaSet](ctx, s, orchestrate.NamespaceAll, nil)
			t.Logf("%d replicasets; leader %s", len(rss), leaderNode(t, s))
		}
	}()
	fixture.WaitFor(t, "6 pods Running, 2 per node", func() bool {
		r := runningPer(t, s)
		return r["n1"] == 2 && r["n2"] == 2 && r["n3"] == 2
	})

	// kill -9 of a node that does not lead.
	leader := leaderNode(t, s)
	victim := "n1"
	if leader == victim {
		victim = "n2"
	}
	start := time.Now()
	procs[victim].kill()
	fixture.WaitFor(t, "the killed node's pods Running elsewhere", func() bool {
		r := runningPer(t, s)
		return r[victim] == 0 && r["n1"]+r["n2"]+r["n3"] == 6
	})
	took := time.Since(start)
	t.Logf("kill -9 of node %s → its pods Running elsewhere in %v (lease %v, grace %v)", victim, took, clusterLease, clusterGrace)
	if took > clusterLease+clusterGrace+5*time.Second {
		t.Errorf("failover took %v, more than lease + grace + 5 s", took)
	}

	// kill -9 of the leader.
	start = time.Now()
	procs[leader].kill()
	fixture.WaitFor(t, "another leader", func() bool {
		l := leaderNode(t, s)
		return l != "" && l != leader
	})
	took = time.Since(start)
	t.Logf("kill -9 of the leader %s → %s leads in %v (leader lease %v)", leader, leaderNode(t, s), took, clusterLease)
	if took > 2*clusterLease+time.Second {
		t.Errorf("takeover took %v, more than two leases and a second", took)
	}
	last := leaderNode(t, s)

	// kill of one etcd member: a scale-up still goes through, to the
	// one node left.
	c.Members[2].Kill()
	fixture.WaitFor(t, "a scale-up to 8 with one etcd member down", func() bool {
		d, err := orchestrate.Get[*orchestrate.Deployment](ctx, s, "", "web")
		if err != nil {
			return false
		}
		if d.Spec.Replicas != 8 {
			d.Spec.Replicas = 8
			if _, err := s.Update(ctx, d); err != nil {
				return false
			}
		}
		r := runningPer(t, s)
		return r[last] == 8
	})
	var names []string
	for n := range runningPer(t, s) {
		names = append(names, n)
	}
	slices.Sort(names)
	if fmt.Sprint(names) != "["+last+"]" {
		t.Errorf("pods Running on %v, want only %s", names, last)
	}
}
