package etcdstore_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// A 50-replica ReplicaSet until all its pods are ready, on the
// in-memory store and on etcd (one member on loopback), interleaved
// with -count: the fake runtime runs nothing, so this is the cost of
// the store under the controllers.
func BenchmarkReplicaSet50(b *testing.B) {
	c := etcdtest.Start(b, 1)
	for _, tc := range []struct {
		name  string
		store func(b *testing.B) orchestrate.Store
	}{
		{"memstore", func(b *testing.B) orchestrate.Store { return memstore.New() }},
		{"etcd", func(b *testing.B) orchestrate.Store { return open(b, c) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for i := 0; b.Loop(); i++ {
				s := tc.store(b)
				rt := fakeruntime.New(nil, "web:v1")
				m, err := orchestrate.NewManager(orchestrate.Options{Store: s, Runtime: rt, StateDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan error, 1)
				go func() { done <- m.Run(ctx) }()
				if _, err := m.Apply(ctx, fixture.ReplicaSet("web", 50)); err != nil {
					b.Fatal(err)
				}
				for {
					rs, err := orchestrate.Get[*orchestrate.ReplicaSet](ctx, s, "", "web")
					if err == nil && rs.Status.ReadyReplicas == 50 {
						break
					}
					time.Sleep(5 * time.Millisecond)
				}
				b.StopTimer()
				cancel()
				<-done
				m.Close(context.Background())
				b.StartTimer()
			}
		})
	}
}

// Sequential writes to one etcd member: a Create through the berth
// store against a raw client Put of the same bytes' size, interleaved
// with -count.
func BenchmarkWrites(b *testing.B) {
	c := etcdtest.Start(b, 1)
	s := open(b, c)
	ctx := context.Background()
	cm := func(i int) *orchestrate.ConfigMap {
		return &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: fmt.Sprintf("c%d", i), Labels: map[string]string{"app": "x"}},
			Data: map[string]string{"k": "some value of a config map"}}
	}
	var seq int
	b.Run("berth-create", func(b *testing.B) {
		for b.Loop() {
			seq++
			if _, err := s.Create(ctx, cm(seq)); err != nil {
				b.Fatal(err)
			}
		}
	})
	value := string(make([]byte, 700)) // about a ConfigMap's gob encoding
	b.Run("raw-put", func(b *testing.B) {
		for b.Loop() {
			seq++
			if _, err := s.Client().Put(ctx, fmt.Sprintf("/raw/c%d", seq), value); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("berth-update", func(b *testing.B) {
		seq++
		obj, err := s.Create(ctx, cm(seq))
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; b.Loop(); i++ {
			c := obj.(*orchestrate.ConfigMap)
			c.Data["k"] = fmt.Sprint(i)
			if obj, err = s.Update(ctx, c); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Failover: kill -9 of a node process that runs pods, until they are
// all Running elsewhere; reports p50 and p90 over b.N kills (run with
// -benchtime 10x). The killed node is started again after each kill
// (it may rejoin once its lease lapsed).
func BenchmarkFailover(b *testing.B) {
	c := etcdtest.Start(b, 3)
	s := open(b, c, etcdstore.WithPrefix(etcdstore.DefaultPrefix))
	ctx := context.Background()
	procs := map[string]*nodeProc{}
	for _, n := range []string{"n1", "n2", "n3"} {
		procs[n] = startNodeProc(b, n, c.Endpoints())
	}
	b.Cleanup(func() {
		for _, p := range procs {
			p.kill()
		}
	})
	waitB(b, "3 ready nodes", func() bool { return readyNodes(s) == 3 && leaderNode(b, s) != "" })
	if _, err := s.Create(ctx, fixture.Deployment("web", 6)); err != nil {
		b.Fatal(err)
	}
	waitB(b, "6 pods running", func() bool { return total(runningPer(b, s)) == 6 })
	var times []time.Duration
	for b.Loop() {
		r := runningPer(b, s)
		leader := leaderNode(b, s)
		victim := ""
		for _, n := range []string{"n1", "n2", "n3"} {
			if n != leader && (victim == "" || r[n] > r[victim]) {
				victim = n
			}
		}
		start := time.Now()
		procs[victim].kill()
		waitB(b, "pods running elsewhere", func() bool {
			r := runningPer(b, s)
			return r[victim] == 0 && total(r) == 6
		})
		times = append(times, time.Since(start))
		b.StopTimer()
		for {
			p := startNodeProc(b, victim, c.Endpoints())
			time.Sleep(500 * time.Millisecond)
			select {
			case <-p.done: // refused: its old lease has yet to lapse
				time.Sleep(500 * time.Millisecond)
				continue
			default:
			}
			procs[victim] = p
			break
		}
		waitB(b, "3 ready nodes again", func() bool { return readyNodes(s) == 3 })
		b.StartTimer()
	}
	slices.Sort(times)
	b.ReportMetric(times[len(times)/2].Seconds(), "p50-s")
	b.ReportMetric(times[len(times)*9/10].Seconds(), "p90-s")
	b.Logf("failover times (lease %v, grace %v): %v", clusterLease, clusterGrace, times)
}

func total(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

func readyNodes(s orchestrate.Store) int {
	ns, _ := orchestrate.List[*orchestrate.Node](context.Background(), s, "", nil)
	ready := 0
	for _, n := range ns {
		if n.Ready().Status == orchestrate.ConditionTrue {
			ready++
		}
	}
	return ready
}

func waitB(b *testing.B, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// A 150-replica ReplicaSet until all its pods are ready, scheduled over
// three node Managers on one etcd member (fake runtimes).
func BenchmarkReplicaSet150ThreeNodes(b *testing.B) {
	c := etcdtest.Start(b, 1)
	s := open(b, c, etcdstore.WithPrefix(etcdstore.DefaultPrefix))
	for i := range 3 {
		startEtcdNode(b, c, fmt.Sprintf("n%d", i+1))
	}
	ctx := context.Background()
	waitB(b, "3 ready nodes and a leader", func() bool { return readyNodes(s) == 3 && leaderNode(b, s) != "" })
	for i := 0; b.Loop(); i++ {
		name := fmt.Sprintf("rs%d", i)
		if _, err := s.Create(ctx, fixture.ReplicaSet(name, 150)); err != nil {
			b.Fatal(err)
		}
		waitB(b, "150 ready", func() bool {
			rs, err := orchestrate.Get[*orchestrate.ReplicaSet](ctx, s, "", name)
			return err == nil && rs.Status.ReadyReplicas == 150
		})
		b.StopTimer()
		r := runningPer(b, s)
		b.Logf("per node: %v", r)
		if err := s.Delete(ctx, orchestrate.KindReplicaSet, "", name); err != nil {
			b.Fatal(err)
		}
		waitB(b, "the pods gone", func() bool { return len(fixture.LivePods(b, s)) == 0 })
		b.StartTimer()
	}
}
