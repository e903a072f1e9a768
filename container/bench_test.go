package container

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

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

// BenchmarkRunSeccomp is BenchmarkRun with Docker's default seccomp
// profile and unconfined, interleaved run by run so that both share the
// machine's noise; it reports each one's median and the difference of
// the medians (ms). Its op is one run of each.
func BenchmarkRunSeccomp(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	if _, err := initPath(); err != nil {
		b.Fatal(err)
	}
	specs := map[string]*Spec{}
	for _, name := range []string{"default", "unconfined"} {
		specs[name] = &Spec{
			Rootfs:    testRootfs,
			Process:   Process{Args: []string{"/bin/true"}},
			Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
			Seccomp:   Seccomp{Unconfined: name == "unconfined"},
		}
	}
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := []string{"default", "unconfined"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, name := range order {
			start := time.Now()
			c, err := Create(ctx, fmt.Sprintf("bench-sc-%s-%d-%d", name, i, b.N), specs[name])
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
			times[name] = append(times[name], time.Since(start))
		}
	}
	b.StopTimer()
	med := func(d []time.Duration) float64 {
		d = slices.Clone(d)
		slices.Sort(d)
		return float64(d[len(d)/2]) / float64(time.Millisecond)
	}
	def, unc := med(times["default"]), med(times["unconfined"])
	b.ReportMetric(def, "default-ms")
	b.ReportMetric(unc, "unconfined-ms")
	b.ReportMetric(def-unc, "delta-ms")
}
