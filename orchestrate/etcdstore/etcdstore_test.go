package etcdstore_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/storetest"
)

var prefixes atomic.Int64

// open returns a Store on c under a prefix of its own, closed when t
// ends.
func open(t testing.TB, c *etcdtest.Cluster, opts ...etcdstore.Option) *etcdstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	opts = append([]etcdstore.Option{etcdstore.WithPrefix(fmt.Sprintf("/t%d/", prefixes.Add(1)))}, opts...)
	s, err := etcdstore.Open(ctx, c.Endpoints(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The conformance suite, unchanged, on a real etcd: one server, each
// subtest under a prefix of its own.
func TestStore(t *testing.T) {
	c := etcdtest.Start(t, 1)
	storetest.Run(t, func(t *testing.T) orchestrate.Store { return open(t, c) })
}
