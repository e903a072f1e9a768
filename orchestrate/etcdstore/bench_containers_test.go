package etcdstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
	"github.com/berthlabs/berth/orchestrate/memstore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkReplicaSet50 again with real busybox containers (root): the
// issue's comparison of the etcd store against the in-memory one, where
// a pod costs what starting its container costs.
func BenchmarkReplicaSet50Containers(b *testing.B) {
	if os.Geteuid() != 0 {
		b.Skip("needs root: containers")
	}
	c := etcdtest.Start(b, 1)
	dir := b.TempDir()
	images, err := layer.Open(filepath.Join(dir, "layers"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { images.Close() })
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		b.Skip(err)
	}
	ctx := context.Background()
	if _, err := images.ImportDirs(ctx, "web:v1", ocispec.ImageConfig{Env: []string{"PATH=/bin"}}, rootfs); err != nil {
		b.Fatal(err)
	}
	crt := &container.Runtime{Images: images}
	for _, tc := range []struct {
		name  string
		store func(b *testing.B) orchestrate.Store
	}{
		{"memstore", func(b *testing.B) orchestrate.Store { return memstore.New() }},
		{"etcd", func(b *testing.B) orchestrate.Store { return open(b, c) }},
	} {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				s := tc.store(b)
				m, err := orchestrate.NewManager(orchestrate.Options{Store: s, Runtime: containerruntime.New(crt), StateDir: b.TempDir()})
				if err != nil {
					b.Fatal(err)
				}
				rctx, cancel := context.WithCancel(ctx)
				done := make(chan error, 1)
				go func() { done <- m.Run(rctx) }()
				rs := fixture.ReplicaSet("oe-bench", 50)
				rs.Spec.Template.Spec.Containers[0].Command = []string{"sleep", "3600"}
				if _, err := m.Apply(ctx, rs); err != nil {
					b.Fatal(err)
				}
				deadline := time.Now().Add(5 * time.Minute)
				for {
					got, err := orchestrate.Get[*orchestrate.ReplicaSet](ctx, s, "", "oe-bench")
					if err == nil && got.Status.ReadyReplicas == 50 {
						break
					}
					if time.Now().After(deadline) {
						b.Fatal("50 pods not ready in 5 minutes")
					}
					time.Sleep(20 * time.Millisecond)
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
