package container

import (
	"context"
	"fmt"
	"testing"

	"github.com/berthlabs/berth/cgroup"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkRun is the start-to-exit cost of a container: create (new
// PID, mount, UTS, IPC and network namespaces; memory and pids cgroup),
// start /bin/true on a busybox rootfs, wait, delete. bench/runtimes.sh
// times runc and crun doing the same work.
func BenchmarkRun(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	spec := &Spec{
		Rootfs:    testRootfs,
		Process:   Process{Args: []string{"/bin/true"}},
		Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
	}
	if _, err := initPath(); err != nil { // the sealed copy is made once per process
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := Create(ctx, fmt.Sprintf("bench-%d-%d", i, b.N), spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			b.Fatal(err)
		}
		st, err := c.Wait(ctx)
		if err != nil || !st.Success() {
			b.Fatal(st, err)
		}
		if err := c.Delete(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRunFromImage is BenchmarkRun from a busybox image in a layer
// store: a snapshot prepared on the image's layer, mounted by init,
// removed on Delete. bench/layers.sh does the same with a big image.
func BenchmarkRunFromImage(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	store, fresh := newImageStore(b)
	importImage(b, store, "bench/busybox:1", ocispec.ImageConfig{Cmd: []string{"/bin/true"}}, fresh)
	if _, err := store.Unpack(ctx, "bench/busybox:1"); err != nil {
		b.Fatal(err)
	}
	rt := &Runtime{Images: store}
	spec := &Spec{Image: "bench/busybox:1", Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := rt.Create(ctx, fmt.Sprintf("bench-img-%d-%d", i, b.N), spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			b.Fatal(err)
		}
		if st, err := c.Wait(ctx); err != nil || !st.Success() {
			b.Fatal(st, err)
		}
		if err := c.Delete(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
