package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"testing"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// FuzzApply checks that no layer makes Apply panic or touch anything
// outside its root. Seeds are the hostile cases and a few well-formed
// layers, plain and compressed. The layer's length picks the options, so
// every seed runs in both whiteout modes as the fuzzer trims it.
//
//	go test -run '^$' -fuzz FuzzApply -fuzztime 60s -fuzzminimizetime 3s ./layer/archive/
//
// (Minimizing an input takes up to a minute by default, during which the
// fuzzer reports no progress.)
func FuzzApply(f *testing.F) {
	var seeds [][]byte
	for _, tc := range hostileCases() {
		// Absolute paths are confined whatever they name; the relative
		// escapes ("../outside") aim at the sandbox's sentinel.
		seeds = append(seeds, makeTar(f, tc.ents("/berth-archive-pwned")...))
	}
	seeds = append(seeds,
		makeTar(f,
			dirEnt("usr/", 0o755), file("usr/bin/busybox", "busybox", 0o4755), symlink("usr/bin/sh", "busybox"),
			hardlink("usr/bin/ls", "usr/bin/busybox"), withXattrs(file("ping", "p", 0o755), "user.x", "1"),
			device("fifo", tar.TypeFifo, 0, 0), dirEnt("ro/", 0o555), file("ro/f", "f", 0o444)),
		makeTar(f,
			file("a", "a", 0o644), whiteout(".wh.a"), whiteout(".wh.b"), dirEnt("d/", 0o755),
			whiteout("d/.wh..wh..opq"), file("d/x", "x", 0o644), whiteout(".wh.d"), file("d", "file over dir", 0o644)),
		makeTar(f, symlink("l", "d"), dirEnt("d/", 0o755), file("l/f", "through a symlink inside", 0o644), hardlink("h", "l/f")),
	)
	for _, s := range seeds {
		f.Add(s)
	}
	var gz, zst bytes.Buffer
	gw := kgzip.NewWriter(&gz)
	gw.Write(seeds[len(seeds)-2])
	gw.Close()
	zw, _ := zstd.NewWriter(&zst)
	zw.Write(seeds[len(seeds)-3])
	zw.Close()
	f.Add(gz.Bytes())
	f.Add(zst.Bytes())

	sb := newSandbox(f) // one per process: fuzzing is faster without making it each time
	f.Fuzz(func(t *testing.T, layer []byte) {
		if err := clearDir(sb.root); err != nil {
			t.Fatal(err)
		}
		opts := Options{
			OverlayWhiteouts: len(layer)&1 == 1,
			AllowDevices:     len(layer)&2 == 2,
			NoChown:          !isRoot(),
			MaxFiles:         4096,
			MaxBytes:         16 << 20,
		}
		Apply(context.Background(), sb.root, bytes.NewReader(layer), opts)
		sb.check(t)
	})
}
