package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
)

// benchLayer writes a gzip layer of about 20,000 small files in 1,000
// directories plus four big files (some 150 MB uncompressed, compressing
// about 3:1 like binaries and text do) and returns its path.
func benchLayer(b *testing.B, dir string) string {
	b.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 4096)
	for i := range words {
		w := make([]byte, 2+rng.IntN(10))
		for j := range w {
			w[j] = byte('a' + rng.IntN(26))
		}
		words[i] = string(w)
	}
	text := func(n int) []byte {
		var sb strings.Builder
		for sb.Len() < n {
			if rng.IntN(8) == 0 {
				sb.WriteByte(byte(rng.Uint32())) // some noise, as in binaries
			}
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		return []byte(sb.String()[:n])
	}
	p := filepath.Join(dir, "layer.tar.gz")
	f, err := os.Create(p)
	if err != nil {
		b.Fatal(err)
	}
	zw := kgzip.NewWriter(f)
	tw := tar.NewWriter(zw)
	mt := time.Unix(1700000000, 0)
	for d := range 1000 {
		dn := fmt.Sprintf("usr/share/pkg%03d/sub%d/", d/10, d%10)
		if d%10 == 0 {
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dn[:strings.Index(dn, "/sub")+1], Mode: 0o755, ModTime: mt})
		}
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dn, Mode: 0o755, ModTime: mt})
		for i := range 20 {
			body := text(rng.IntN(5000))
			tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("%sfile%02d.txt", dn, i), Mode: 0o644, Size: int64(len(body)), ModTime: mt})
			tw.Write(body)
		}
	}
	for i := range 4 {
		body := text(24 << 20)
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: fmt.Sprintf("usr/lib/big%d.so", i), Mode: 0o755, Size: int64(len(body)), ModTime: mt})
		tw.Write(body)
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	zw.Close()
	f.Close()
	return p
}

// BenchmarkApply unpacks a gzip layer with Apply and, in the same loop,
// with tar -xzf (GNU tar, gzip in a second process), and reports the
// median time of each and their ratio (ns/op is Apply's mean). BERTH_BENCH_LAYER names another .tar.gz to use, and
// BERTH_BENCH_DIR a directory to unpack in (a tmpfs, say, to leave the
// disk out) instead of the test's temporary directory.
//
//	go test -run '^$' -bench Apply -benchtime 5x ./layer/archive/
func BenchmarkApply(b *testing.B) {
	if _, err := exec.LookPath("tar"); err != nil {
		b.Skip("no tar to compare with")
	}
	tmp := b.TempDir()
	layer := os.Getenv("BERTH_BENCH_LAYER")
	if layer == "" {
		layer = benchLayer(b, tmp)
	}
	fi, err := os.Stat(layer)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(fi.Size())
	opts := Options{NoChown: !isRoot(), AllowDevices: isRoot()}
	var berth, gnu []time.Duration
	runBerth := func(dir string) {
		f, err := os.Open(layer)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		start := time.Now()
		b.StartTimer()
		_, err = Apply(context.Background(), dir, f, opts)
		b.StopTimer()
		berth = append(berth, time.Since(start))
		if err != nil {
			b.Fatal(err)
		}
	}
	runTar := func(dir string) {
		start := time.Now()
		out, err := exec.Command("tar", "-xzf", layer, "-C", dir).CombinedOutput()
		gnu = append(gnu, time.Since(start))
		if err != nil {
			b.Fatalf("tar: %v\n%s", err, out)
		}
	}
	unpack := tmp
	if base := os.Getenv("BERTH_BENCH_DIR"); base != "" {
		if unpack, err = os.MkdirTemp(base, "berth-bench-"); err != nil {
			b.Fatal(err)
		}
		defer os.RemoveAll(unpack)
	}
	b.StopTimer()
	b.ResetTimer()
	for i := range b.N {
		// Fresh directories, removed only at the end: on ext4 without a
		// journal, inodes freed in the last 30 seconds make creating
		// files slow, which would penalise whichever ran after a removal.
		d1, d2 := filepath.Join(unpack, fmt.Sprint("berth", i)), filepath.Join(unpack, fmt.Sprint("tar", i))
		os.Mkdir(d1, 0o755)
		os.Mkdir(d2, 0o755)
		exec.Command("sync").Run()
		if i%2 == 0 { // alternate, so that neither always runs on a busier disk
			runBerth(d1)
			exec.Command("sync").Run()
			runTar(d2)
		} else {
			runTar(d2)
			exec.Command("sync").Run()
			runBerth(d1)
		}
	}
	for i := range b.N {
		os.RemoveAll(filepath.Join(unpack, fmt.Sprint("berth", i)))
		os.RemoveAll(filepath.Join(unpack, fmt.Sprint("tar", i)))
	}
	// Medians: this kind of machine is noisy.
	bm, gm := median(berth), median(gnu)
	b.ReportMetric(bm.Seconds(), "berth-s/op")
	b.ReportMetric(gm.Seconds(), "tar-s/op")
	b.ReportMetric(bm.Seconds()/gm.Seconds(), "berth/tar")
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}
