package etcdstore_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
)

// Open of an etcd that does not answer fails when its context ends,
// naming the endpoint, after a few attempts spaced by a growing wait
// (no busy loop).
func TestOpenUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	start := time.Now()
	_, err = etcdstore.Open(ctx, []string{addr})
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), addr) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Open of %s: %v; want an error naming it and the deadline", addr, err)
	}
	if took < 1500*time.Millisecond || took > 5*time.Second {
		t.Errorf("Open gave up after %v, want about the context's 2 s", took)
	}
	// 100 ms doubling: about 5 attempts in 2 s, not hundreds.
	var n int
	if i := strings.Index(err.Error(), " attempts"); i > 0 {
		f := strings.Fields(err.Error()[:i])
		if _, e := fmt.Sscan(f[len(f)-1], &n); e != nil {
			t.Fatalf("attempts in %q: %v", err, e)
		}
	}
	if n < 1 || n > 10 || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("%d attempts in 2 s, want a few, and the refused connection: %v", n, err)
	}
	t.Log(err)
}

// Open waits for an etcd that starts later.
func TestOpenWaitsForEtcd(t *testing.T) {
	c := etcdtest.Start(t, 1)
	m := c.Members[0]
	m.Kill()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := etcdstore.Open(ctx, c.Endpoints())
		if err == nil {
			s.Close()
		}
		done <- err
	}()
	time.Sleep(time.Second)
	select {
	case err := <-done:
		t.Fatalf("Open returned while etcd was down: %v", err)
	default:
	}
	if err := m.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Open after etcd came back: %v", err)
	}
}

// An object over the request limit is refused with an error giving its
// size, before it is sent; one the store lets through but the server
// refuses is ErrInvalid too.
func TestObjectTooLarge(t *testing.T) {
	c := etcdtest.Start(t, 1)
	ctx := context.Background()
	big := &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "big"}, Data: map[string]string{"k": strings.Repeat("x", 2<<20)}}
	s := open(t, c)
	_, err := s.Create(ctx, big)
	if !errors.Is(err, orchestrate.ErrInvalid) || !strings.Contains(err.Error(), "ConfigMap default/big") || !strings.Contains(err.Error(), "bytes") {
		t.Errorf("Create of a 2 MiB ConfigMap: %v; want ErrInvalid naming it and its size", err)
	}
	loose := open(t, c, etcdstore.WithMaxObjectSize(8<<20))
	_, err = loose.Create(ctx, big)
	if !errors.Is(err, orchestrate.ErrInvalid) || !strings.Contains(err.Error(), "too large") {
		t.Errorf("Create of a 2 MiB ConfigMap past the store's check: %v; want the server's refusal as ErrInvalid", err)
	}
	if _, err := s.Get(ctx, orchestrate.KindConfigMap, "", "big"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Get after the refused Create: %v", err)
	}
	bad := &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "a/b"}}
	if _, err := s.Create(ctx, bad); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("Create of a name with '/': %v, want ErrInvalid", err)
	}
}

// A watch from a compacted version fails with ErrExpired; a running
// watch whose next revision is compacted while its server was away ends
// with a WatchError matching ErrExpired.
func TestWatchCompacted(t *testing.T) {
	c := etcdtest.Start(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The watcher talks to member 0 only; the writer to the others.
	watcherStore, err := etcdstore.Open(ctx, c.Endpoints()[:1], etcdstore.WithPrefix("/c/"))
	if err != nil {
		t.Fatal(err)
	}
	defer watcherStore.Close()
	s, err := etcdstore.Open(ctx, c.Endpoints()[1:], etcdstore.WithPrefix("/c/"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cm := &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "a"}, Data: map[string]string{"k": "1"}}
	first, err := s.Create(ctx, cm)
	if err != nil {
		t.Fatal(err)
	}
	w, err := watcherStore.Watch(ctx, "", orchestrate.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	c.Members[0].Kill()
	var last uint64
	for i := range 5 {
		cm := first.DeepCopy().(*orchestrate.ConfigMap)
		cm.ResourceVersion = 0
		cm.Data["k"] = string(rune('a' + i))
		// While the two left elect a leader (member 0 may have been
		// it), etcd answers "request timed out": try again.
		var got orchestrate.Object
		var err error
		for deadline := time.Now().Add(15 * time.Second); ; {
			if got, err = s.Update(ctx, cm); err == nil || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
		last = got.Meta().ResourceVersion
	}
	if _, err := s.Client().Compact(ctx, int64(last)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Watch(ctx, "", orchestrate.WatchOptions{Since: first.Meta().ResourceVersion}); !errors.Is(err, orchestrate.ErrExpired) {
		t.Errorf("Watch from a compacted version: %v, want ErrExpired", err)
	}
	if err := c.Members[0].Restart(); err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case ev, ok := <-w:
			if !ok {
				t.Fatal("the watch closed without a WatchError")
			}
			if ev.Type == orchestrate.WatchError {
				if !errors.Is(ev.Err, orchestrate.ErrExpired) {
					t.Fatalf("WatchError %v, want ErrExpired", ev.Err)
				}
				t.Log(ev.Err)
				if _, ok := <-w; ok {
					t.Error("the watch sent more after its WatchError")
				}
				return
			}
			if ev.Type != orchestrate.WatchBookmark {
				t.Fatalf("the watch saw %s at %d, though etcd compacted it", ev.Type, ev.ResourceVersion)
			}
		case <-ctx.Done():
			t.Fatal("no WatchError after the compaction")
		}
	}
}
