package container

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
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
	benchInterleaved(b, benchVariant{"plain", Default, func() *Spec {
		return &Spec{
			Rootfs:    testRootfs,
			Process:   Process{Args: []string{"/bin/true"}},
			Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
		}
	}})
}

// BenchmarkRunFromImage is BenchmarkRun from a busybox image in a layer
// store (already unpacked): what `docker run --rm busybox true` does
// after the first pull.
func BenchmarkRunFromImage(b *testing.B) {
	needRoot(b)
	store, fresh := newImageStore(b)
	importImage(b, store, "bench/busybox:1", ocispec.ImageConfig{Cmd: []string{"/bin/true"}}, fresh)
	if _, err := store.Unpack(context.Background(), "bench/busybox:1"); err != nil {
		b.Fatal(err)
	}
	rt := &Runtime{Images: store}
	benchInterleaved(b, benchVariant{"image", rt, func() *Spec {
		return &Spec{Image: "bench/busybox:1", Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64}}
	}})
}

// benchVariant is one kind of container an interleaved benchmark runs.
type benchVariant struct {
	name string
	rt   *Runtime
	spec func() *Spec
}

// benchInterleaved runs each variant once per iteration, in turn (the
// order shuffled), from Create to Delete, and reports each one's median
// and p90 in ms: variants measured side by side share the machine's
// noise. It returns the medians by name.
func benchInterleaved(b *testing.B, variants ...benchVariant) map[string]float64 {
	b.Helper()
	ctx := context.Background()
	if _, err := initPath(); err != nil {
		b.Fatal(err)
	}
	times := make([][]time.Duration, len(variants))
	// Shuffled each round (the same shuffles every run): a variant pays
	// for the background work of the one before it (removals, the pool's
	// refill), and a fixed rotation would have it always follow the same
	// one.
	rng := rand.New(rand.NewPCG(1, 2))
	order := make([]int, len(variants))
	for k := range order {
		order[k] = k
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		rng.Shuffle(len(order), func(a, c int) { order[a], order[c] = order[c], order[a] })
		for _, k := range order {
			v := variants[k]
			t0 := time.Now()
			c, err := v.rt.Create(ctx, fmt.Sprintf("bench-%s-%d-%d", v.name, i, b.N), v.spec())
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
			times[k] = append(times[k], time.Since(t0))
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for k, v := range variants {
		d := append([]time.Duration(nil), times[k]...)
		slices.Sort(d)
		ms := func(p int) float64 { return float64(d[(len(d)-1)*p/100]) / float64(time.Millisecond) }
		med[v.name] = ms(50)
		b.ReportMetric(ms(50), "ms-"+v.name)
		b.ReportMetric(ms(90), "p90ms-"+v.name)
	}
	return med
}

// BenchmarkStart runs /bin/true from a plain rootfs and from a busybox
// image, each with and without a warm init pool, interleaved, and
// reports the image path against the plain one.
func BenchmarkStart(b *testing.B) {
	needRoot(b)
	store, fresh := newImageStore(b)
	importImage(b, store, "bench/busybox:1", ocispec.ImageConfig{Cmd: []string{"/bin/true"}}, fresh)
	if _, err := store.Unpack(context.Background(), "bench/busybox:1"); err != nil {
		b.Fatal(err)
	}
	cold := &Runtime{Images: store}
	pool := &Runtime{Images: store, InitPool: 4}
	defer pool.Close()
	res := cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64}
	plain := func() *Spec {
		return &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"/bin/true"}}, Resources: res}
	}
	image := func() *Spec { return &Spec{Image: "bench/busybox:1", Resources: res} }
	m := benchInterleaved(b,
		benchVariant{"plain", cold, plain},
		benchVariant{"image", cold, image},
		benchVariant{"plain-pool", pool, plain},
		benchVariant{"image-pool", pool, image},
	)
	b.ReportMetric(m["image"]/m["plain"], "image/plain")
	b.ReportMetric(m["image-pool"]/m["plain-pool"], "image/plain-pool")
	b.ReportMetric(m["plain-pool"]/m["plain"], "pool/cold")
	if p := pool.initPool(); p != nil {
		hits, misses, gen := p.counts()
		b.ReportMetric(float64(hits)*100/float64(max(1, hits+misses)), "pool-hit%")
		b.ReportMetric(float64(gen), "mount-changes")
	}
}

// BenchmarkRunSeccomp is BenchmarkRun with Docker's default seccomp
// profile and unconfined, interleaved (see benchInterleaved), each with
// a cold init and from a warm init pool; it reports the difference of
// the medians (ms).
func BenchmarkRunSeccomp(b *testing.B) {
	needRoot(b)
	cold := &Runtime{}
	pool := &Runtime{InitPool: 4}
	defer pool.Close()
	spec := func(sc Seccomp) func() *Spec {
		return func() *Spec {
			return &Spec{
				Rootfs:    testRootfs,
				Process:   Process{Args: []string{"/bin/true"}},
				Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
				Seccomp:   sc,
			}
		}
	}
	m := benchInterleaved(b,
		benchVariant{"default", cold, spec(Seccomp{})},
		benchVariant{"unconfined", cold, spec(Seccomp{Unconfined: true})},
		benchVariant{"default-pool", pool, spec(Seccomp{})},
		benchVariant{"unconfined-pool", pool, spec(Seccomp{Unconfined: true})},
	)
	b.ReportMetric(m["default"]-m["unconfined"], "delta-ms")
	b.ReportMetric(m["default-pool"]-m["unconfined-pool"], "delta-pool-ms")
}

// BenchmarkBurst starts 100 containers at once (/bin/true on a plain
// rootfs, each from Create to Delete), with no pool and with a pool of 4
// in turn, and reports the median and p90 of one container's time in
// each: a burst larger than the pool must fall back to cold starts, not
// wait for the pool.
func BenchmarkBurst(b *testing.B) {
	needRoot(b)
	const n = 100
	cold := &Runtime{}
	pool := &Runtime{InitPool: 4}
	defer pool.Close()
	spec := &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"/bin/true"}},
		Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64}}
	if _, err := initPath(); err != nil {
		b.Fatal(err)
	}
	pool.initPool()
	times := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, v := range []struct {
			name string
			rt   *Runtime
		}{{"cold", cold}, {"pool", pool}} {
			if v.rt == pool {
				settledPool(b, pool) // full at the burst's start
			}
			ds := make([]time.Duration, n)
			var wg sync.WaitGroup
			errs := make(chan error, n)
			for j := range n {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					t0 := time.Now()
					c, err := v.rt.Create(ctx, fmt.Sprintf("burst-%s-%d-%d-%d", v.name, i, j, b.N), spec)
					if err != nil {
						errs <- err
						return
					}
					defer c.Delete(ctx)
					if err := c.Start(ctx); err != nil {
						errs <- err
						return
					}
					if st, err := c.Wait(ctx); err != nil || !st.Success() {
						errs <- fmt.Errorf("%v %v", st, err)
						return
					}
					c.Delete(ctx)
					ds[j] = time.Since(t0)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				b.Fatal(err)
			}
			times[v.name] = append(times[v.name], ds...)
		}
	}
	b.StopTimer()
	for name, d := range times {
		slices.Sort(d)
		ms := func(p int) float64 { return float64(d[(len(d)-1)*p/100]) / float64(time.Millisecond) }
		b.ReportMetric(ms(50), "ms-"+name)
		b.ReportMetric(ms(90), "p90ms-"+name)
	}
}
