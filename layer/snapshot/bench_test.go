package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// implementations are the Snapshotters the benchmarks compare.
var implementations = []struct {
	name string
	new  newFunc
}{{"overlay", newOverlay}, {"copy", newCopy}}

// makeImage commits a two-layer image, each layer with files small files
// in directories of 100, and returns the name of its top layer.
func makeImage(b *testing.B, sn Snapshotter, files int) string {
	b.Helper()
	parent := ""
	for l := 1; l <= 2; l++ {
		key := fmt.Sprintf("extract-%d", l)
		prepare(b, sn, key, parent)
		dir := dirOf(b, sn, key)
		data := make([]byte, 100)
		for i := range files {
			sub := filepath.Join(dir, fmt.Sprintf("layer%d-dir%d", l, i/100))
			if i%100 == 0 {
				must(b, os.Mkdir(sub, 0o755))
			}
			must(b, os.WriteFile(filepath.Join(sub, fmt.Sprintf("file%d", i)), data, 0o644))
		}
		parent = fmt.Sprintf("layer-%d", l)
		commit(b, sn, parent, key)
	}
	return parent
}

// BenchmarkPrepare times Prepare on the top of a two-layer image whose
// layers hold 10 or 10,000 files each: constant on overlayfs, in proportion
// to the files when copying.
func BenchmarkPrepare(b *testing.B) {
	requireRoot(b)
	ctx := context.Background()
	for _, impl := range implementations {
		for _, files := range []int{10, 10000} {
			b.Run(fmt.Sprintf("%s/files=%d", impl.name, files), func(b *testing.B) {
				if impl.name == "overlay" {
					requireOverlay(b)
				}
				sn := open(b, impl.new, b.TempDir())
				top := makeImage(b, sn, files)
				i := 0
				for b.Loop() {
					key := fmt.Sprintf("container-%d", i)
					i++
					if _, err := sn.Prepare(ctx, key, top); err != nil {
						b.Fatal(err)
					}
					b.StopTimer()
					must(b, sn.Remove(ctx, key))
					b.StartTimer()
				}
			})
		}
	}
}

// BenchmarkCommit times Commit of an active snapshot with one new file on a
// two-layer image of 10 files a layer.
func BenchmarkCommit(b *testing.B) {
	requireRoot(b)
	ctx := context.Background()
	for _, impl := range implementations {
		b.Run(impl.name, func(b *testing.B) {
			if impl.name == "overlay" {
				requireOverlay(b)
			}
			sn := open(b, impl.new, b.TempDir())
			top := makeImage(b, sn, 10)
			i := 0
			for b.Loop() {
				b.StopTimer()
				key, name := fmt.Sprintf("active-%d", i), fmt.Sprintf("committed-%d", i)
				i++
				prepare(b, sn, key, top)
				must(b, os.WriteFile(filepath.Join(dirOf(b, sn, key), "new"), []byte("x"), 0o644))
				b.StartTimer()
				if err := sn.Commit(ctx, name, key); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				must(b, sn.Remove(ctx, name))
				b.StartTimer()
			}
		})
	}
}

// BenchmarkEphemeral times Prepare and Remove of an ephemeral snapshot (a
// container's rootfs) on a two-layer image, as a container's Create and
// Delete do, and reports each half's median.
func BenchmarkEphemeral(b *testing.B) {
	requireRoot(b)
	requireOverlay(b)
	ctx := context.Background()
	sn := open(b, newOverlay, b.TempDir())
	top := makeImage(b, sn, 10)
	var prep, rm []time.Duration
	i := 0
	for b.Loop() {
		key := fmt.Sprintf("container-%d", i)
		i++
		t0 := time.Now()
		if _, err := sn.Prepare(ctx, key, top, Ephemeral()); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		must(b, sn.Remove(ctx, key))
		rm = append(rm, time.Since(t1))
		prep = append(prep, t1.Sub(t0))
	}
	for _, m := range []struct {
		unit string
		d    []time.Duration
	}{{"ms-prepare", prep}, {"ms-remove", rm}} {
		slices.Sort(m.d)
		b.ReportMetric(float64(m.d[len(m.d)/2])/float64(time.Millisecond), m.unit)
	}
}
