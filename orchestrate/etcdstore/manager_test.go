package etcdstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
)

// startManager runs a Manager on s with a fake runtime until t ends.
func startManager(t *testing.T, s orchestrate.Store) (*orchestrate.Manager, *fakeruntime.Runtime) {
	t.Helper()
	rt := fakeruntime.New(nil, "web:v1", "web:v2")
	m, err := orchestrate.NewManager(orchestrate.Options{Store: s, Runtime: rt, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := m.Close(cctx); err != nil {
			t.Error(err)
		}
	})
	return m, rt
}

// A Manager on etcd keeps a Deployment's pods running while etcd is
// away (its writes fail meanwhile), and converges again once it is
// back: a scale-up applied then is carried out.
func TestManagerSurvivesEtcdLoss(t *testing.T) {
	c := etcdtest.Start(t, 1)
	s := open(t, c)
	m, rt := startManager(t, s)
	ctx := context.Background()
	if _, err := m.Apply(ctx, fixture.Deployment("web", 3)); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, "3 running containers", func() bool { return rt.RunningImages("web:v1") == 3 })
	c.Members[0].Kill()
	time.Sleep(3 * time.Second)
	if n := rt.RunningImages("web:v1"); n != 3 {
		t.Errorf("%d containers running while etcd is away, want 3 kept", n)
	}
	actx, cancel := context.WithTimeout(ctx, time.Second)
	_, err := m.Apply(actx, fixture.Deployment("other", 1))
	cancel()
	if err == nil {
		t.Error("Apply succeeded with etcd away")
	}
	if err := c.Members[0].Restart(); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, "the scale-up after etcd came back", func() bool {
		d, err := orchestrate.Get[*orchestrate.Deployment](ctx, s, "", "web")
		if err != nil {
			return false
		}
		d.Spec.Replicas = 4
		_, err = m.Apply(ctx, d)
		return err == nil
	})
	fixture.WaitFor(t, "4 running containers and pods", func() bool { return rt.RunningImages("web:v1") == 4 && len(fixture.LivePods(t, s)) == 4 })
	t.Log(m.WatchRestarts())
}

// proxied returns a Store on c through a proxy the test can cut.
func proxied(t testing.TB, c *etcdtest.Cluster, prefix string) (*etcdstore.Store, *etcdtest.Proxy) {
	t.Helper()
	p, err := etcdtest.NewProxy(c.Endpoints()[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, []string{p.Addr}, etcdstore.WithPrefix(prefix))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, p
}

// When the Manager's watch breaks and etcd has compacted the changes
// since (its connection was cut meanwhile), the Manager lists again: a
// pod deleted meanwhile by someone else has its containers torn down,
// and the ReplicaSet makes a new one.
func TestManagerRelistsAfterCompaction(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	ms, proxy := proxied(t, c, "/relist/")
	other := open(t, c, etcdstore.WithPrefix("/relist/"))
	m, rt := startManager(t, ms)
	if _, err := m.Apply(ctx, fixture.Deployment("web", 2)); err != nil {
		t.Fatal(err)
	}
	fixture.WaitFor(t, "2 running containers", func() bool { return rt.RunningImages("web:v1") == 2 && len(fixture.LivePods(t, other)) == 2 })
	before := fixture.LivePods(t, other)
	proxy.Cut()
	// Behind the Manager's back: one pod goes, and etcd compacts.
	if err := other.Delete(ctx, orchestrate.KindPod, "", before[0].Name); err != nil {
		t.Fatal(err)
	}
	// One write more, so that the compaction takes the deletion too
	// (etcd keeps the revision compacted at).
	cm, err := other.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "later"}})
	if err != nil {
		t.Fatal(err)
	}
	rev := cm.Meta().ResourceVersion
	if _, err := other.Client().Compact(ctx, int64(rev)); err != nil {
		t.Fatal(err)
	}
	proxy.Heal()
	fixture.WaitFor(t, "a new pod in place of the deleted one", func() bool {
		ps := fixture.LivePods(t, other)
		return len(ps) == 2 && ps[0].Name != before[0].Name && ps[1].Name != before[0].Name
	})
	fixture.WaitFor(t, "the deleted pod's containers torn down", func() bool {
		_, sbs := rt.Live()
		for _, sb := range sbs {
			if sb == before[0].Name {
				return false
			}
		}
		return rt.RunningImages("web:v1") == 2
	})
	fixture.WaitFor(t, "the watch started again after the compaction", func() bool {
		n, why := m.WatchRestarts()
		return n > 0 && errors.Is(why, orchestrate.ErrExpired)
	})
	t.Log(m.WatchRestarts())
}
