package orchestrate_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// netRuntime is the fake runtime with a recording ServiceProxy and a
// recording NodeNetwork.
type netRuntime struct {
	*proxyRuntime
	cidr netip.Prefix

	rmu    sync.Mutex
	local  netip.Addr
	routes []orchestrate.NodeRoute
	sets   int
}

func newNetRuntime(cidr string) *netRuntime {
	return &netRuntime{
		proxyRuntime: &proxyRuntime{Runtime: fakeruntime.New(nil, "web:v1"), services: map[string]orchestrate.ProxyService{},
			dns: map[string][]netip.Addr{}, cnames: map[string]string{}},
		cidr: netip.MustParsePrefix(cidr),
	}
}

func (r *netRuntime) PodCIDR() netip.Prefix { return r.cidr }

func (r *netRuntime) SetNodeRoutes(ctx context.Context, local netip.Addr, routes []orchestrate.NodeRoute) error {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	r.local, r.routes = local, slices.Clone(routes)
	r.sets++
	return nil
}

// routeString is the routes last set, as "node=ip:cidr ...".
func (r *netRuntime) routeString() string {
	r.rmu.Lock()
	defer r.rmu.Unlock()
	var s []string
	for _, rt := range r.routes {
		s = append(s, fmt.Sprintf("%s=%s:%s", rt.Node, rt.NodeIP, rt.PodCIDR))
	}
	return strings.Join(s, " ")
}

// Three nodes with pod networks: each Node shows its pod range and
// address, each node's runtime is given routes to the two others, every
// node (not only the leader) programs a Service whose backends are the
// pods of all nodes, a Node that is removed loses its routes, and a
// node whose pod range overlaps another's or whose address another has
// is refused.
func TestClusterNodeNetwork(t *testing.T) {
	ctx := context.Background()
	store := memstore.New()
	var nodes []*testNode
	rts := map[string]*netRuntime{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("n%d", i)
		rt := newNetRuntime(fmt.Sprintf("10.244.%d.0/24", i))
		n, err := startNodeWith(t, store, rt.Runtime, rt, orchestrate.Options{NodeName: name,
			NodeIP: netip.AddrFrom4([4]byte{10, 250, 0, byte(i)})})
		if err != nil {
			t.Fatal(err)
		}
		nodes, rts[name] = append(nodes, n), rt
	}
	want := map[string]string{
		"n1": "n2=10.250.0.2:10.244.2.0/24 n3=10.250.0.3:10.244.3.0/24",
		"n2": "n1=10.250.0.1:10.244.1.0/24 n3=10.250.0.3:10.244.3.0/24",
		"n3": "n1=10.250.0.1:10.244.1.0/24 n2=10.250.0.2:10.244.2.0/24",
	}
	waitUntil(t, 10*time.Second, "routes to the two other nodes on each", func() bool {
		for name, rt := range rts {
			if rt.routeString() != want[name] {
				return false
			}
		}
		return true
	})
	for i, n := range []string{"n1", "n2", "n3"} {
		node, err := orchestrate.Get[*orchestrate.Node](ctx, store, "", n)
		if err != nil {
			t.Fatal(err)
		}
		if node.Spec.PodCIDR != fmt.Sprintf("10.244.%d.0/24", i+1) || node.InternalIP() != netip.AddrFrom4([4]byte{10, 250, 0, byte(i + 1)}) {
			t.Errorf("node %s: podCIDR %q, addresses %+v", n, node.Spec.PodCIDR, node.Status.Addresses)
		}
		if rts[n].local != node.InternalIP() {
			t.Errorf("node %s: routes set with local address %s, want %s", n, rts[n].local, node.InternalIP())
		}
	}

	// A Service of a Deployment spread over the nodes: every node's
	// proxy leads to all three pods.
	if _, err := nodes[0].m.Apply(ctx, webDeployment(3)); err != nil {
		t.Fatal(err)
	}
	svc := &orchestrate.Service{ObjectMeta: orchestrate.ObjectMeta{Name: "web"}, Spec: orchestrate.ServiceSpec{
		Selector: map[string]string{"app": "web"}, Ports: []orchestrate.ServicePort{{Port: 80}}}}
	if _, err := nodes[0].m.Apply(ctx, svc); err != nil {
		t.Fatal(err)
	}
	var podIPs []netip.AddrPort
	waitUntil(t, 20*time.Second, "3 ready pods, one per node, in every node's proxy", func() bool {
		pods := livePods(t, store)
		per := perNode(pods)
		if len(pods) != 3 || per["n1"] != 1 || per["n2"] != 1 || per["n3"] != 1 {
			return false
		}
		podIPs = podIPs[:0]
		for _, p := range pods {
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if err != nil || !p.Status.Ready {
				return false
			}
			podIPs = append(podIPs, netip.AddrPortFrom(ip, 80))
		}
		slices.SortFunc(podIPs, netip.AddrPort.Compare)
		for _, rt := range rts {
			if !slices.Equal(rt.backends("default/web"), podIPs) {
				return false
			}
		}
		return true
	})

	// A Node that goes away (stopped, then deleted, as kubectl delete
	// node) loses its routes on the others.
	nodes[2].stop()
	if err := store.Delete(ctx, orchestrate.KindNode, "", "n3"); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 10*time.Second, "n3's routes gone", func() bool {
		return rts["n1"].routeString() == "n2=10.250.0.2:10.244.2.0/24" && rts["n2"].routeString() == "n1=10.250.0.1:10.244.1.0/24"
	})

	// Refused: a pod range that overlaps n2's, an address that is n1's.
	for _, tc := range []struct {
		cidr string
		ip   netip.Addr
		in   string
	}{
		{"10.244.2.128/25", netip.MustParseAddr("10.250.0.9"), "overlaps node n2's 10.244.2.0/24"},
		{"10.244.9.0/24", netip.MustParseAddr("10.250.0.1"), "10.250.0.1 is node n1's too"},
	} {
		rt := newNetRuntime(tc.cidr)
		m, err := orchestrate.NewManager(orchestrate.Options{Store: store, Runtime: rt, StateDir: t.TempDir(),
			NodeName: "bad", NodeIP: tc.ip, NodeLeaseDuration: testLease, LeaderLeaseDuration: testLease})
		if err != nil {
			t.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = m.Run(rctx)
		cancel()
		m.Close(ctx)
		if !errors.Is(err, orchestrate.ErrInvalid) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("a node with pod range %s and address %s: %v, want ErrInvalid naming %q", tc.cidr, tc.ip, err, tc.in)
		}
		if _, err := orchestrate.Get[*orchestrate.Node](ctx, store, "", "bad"); !errors.Is(err, orchestrate.ErrNotFound) {
			t.Errorf("the refused node left its Node object: %v", err)
		}
	}
	if _, err := orchestrate.NewManager(orchestrate.Options{Store: store, Runtime: newNetRuntime("10.244.9.0/24"),
		NodeName: "bad", NodeIP: netip.MustParseAddr("127.0.0.1")}); err == nil || !strings.Contains(err.Error(), "Options.NodeIP") {
		t.Errorf("NodeIP 127.0.0.1: %v, want an error naming Options.NodeIP", err)
	}
}
