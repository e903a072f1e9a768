package etcdstore_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/etcdstore"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
)

// A Store on an etcd server (here one the example starts on 127.0.0.1):
// objects are keys under /berth/, their versions etcd's revisions.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	etcd, err := etcdtest.StartCluster(1, dir)
	if err != nil {
		log.Fatal(err)
	}
	defer etcd.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := etcdstore.Open(ctx, etcd.Endpoints())
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()

	cm, err := s.Create(ctx, &orchestrate.ConfigMap{
		ObjectMeta: orchestrate.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"mode": "fast"},
	})
	if err != nil {
		log.Fatal(err)
	}
	// The key holds the object; its ModRevision is the ResourceVersion.
	resp, err := s.Client().Get(ctx, "/berth/ConfigMap/default/settings")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Kvs[0].ModRevision == int64(cm.Meta().ResourceVersion))

	// An update from a stale version conflicts.
	stale := cm.DeepCopy().(*orchestrate.ConfigMap)
	cm.(*orchestrate.ConfigMap).Data["mode"] = "safe"
	if _, err := s.Update(ctx, cm); err != nil {
		log.Fatal(err)
	}
	stale.Data["mode"] = "other"
	_, err = s.Update(ctx, stale)
	fmt.Println(err)
	// Output:
	// true
	// update ConfigMap default/settings: version 2, stored 3: orchestrate: object was modified
}
