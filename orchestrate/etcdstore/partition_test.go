package etcdstore_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
)

// etcdNode is a node Manager of the test process whose connection to
// etcd goes through a proxy the test can cut.
type etcdNode struct {
	name  string
	m     *orchestrate.Manager
	rt    *fakeruntime.Runtime
	proxy *etcdtest.Proxy
}

func startEtcdNode(t testing.TB, c *etcdtest.Cluster, name string) *etcdNode {
	t.Helper()
	s, proxy := proxied(t, c, etcdstore.DefaultPrefix)
	rt := fakeruntime.New(nil, "web:v1")
	m, err := orchestrate.NewManager(orchestrate.Options{
		Store: s, Runtime: rt, StateDir: t.TempDir(),
		NodeName: name, NodeLeaseDuration: clusterLease, NodeLostGrace: clusterGrace, LeaderLeaseDuration: clusterLease,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		proxy.Heal()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node %s: %v", name, err)
		}
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		m.Close(cctx)
	})
	return &etcdNode{name: name, m: m, rt: rt, proxy: proxy}
}

// A node partitioned from etcd (its connection cut): its pods keep
// running there, are replaced on the others, and once the partition
// heals the node tears its stale pods down and is Ready again.
func TestPartitionedNode(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c, etcdstore.WithPrefix(etcdstore.DefaultPrefix))
	ctx := context.Background()
	var nodes []*etcdNode
	for i := range 3 {
		nodes = append(nodes, startEtcdNode(t, c, fmt.Sprintf("n%d", i+1)))
	}
	fixture.WaitFor(t, "3 ready nodes and a leader", func() bool { return readyNodes(s) == 3 && leaderNode(t, s) != "" })
	if _, err := s.Create(ctx, fixture.Deployment("web", 6)); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, "2 pods running per node", func() bool {
		for _, n := range nodes {
			if n.rt.RunningImages("web:v1") != 2 {
				return false
			}
		}
		return true
	})
	var lost *etcdNode
	for _, n := range nodes {
		if n.name != leaderNode(t, s) {
			lost = n
			break
		}
	}
	start := time.Now()
	lost.proxy.Cut()
	fixture.WaitFor(t, "the partitioned node's pods Running elsewhere", func() bool {
		r := runningPer(t, s)
		return r[lost.name] == 0 && total(r) == 6
	})
	t.Logf("partition of %s → its pods Running elsewhere in %v (lease %v, grace %v)", lost.name, time.Since(start), clusterLease, clusterGrace)
	if n := lost.rt.RunningImages("web:v1"); n != 2 {
		t.Errorf("the partitioned node runs %d containers, want its 2 kept", n)
	}
	lost.proxy.Heal()
	fixture.WaitFor(t, "the healed node to tear its stale pods down", func() bool { return lost.rt.RunningImages("web:v1") == 0 })
	fixture.WaitFor(t, "the healed node Ready", func() bool { return readyNodes(s) == 3 })
	running := 0
	for _, n := range nodes {
		running += n.rt.RunningImages("web:v1")
	}
	if running != 6 {
		t.Errorf("%d containers running in the cluster after the heal, want 6", running)
	}
}
