package archive_test

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/berthlabs/berth/layer/archive"
	"github.com/opencontainers/go-digest"
)

// Apply a layer onto a directory. The layer here is a tar built in
// memory; a real one comes gzip- or zstd-compressed from a blob store.
func ExampleApply() {
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: "etc/", Mode: 0o755, ModTime: time.Unix(0, 0)})
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/motd", Mode: 0o644, Size: 6, ModTime: time.Unix(0, 0)})
	tw.Write([]byte("hello\n"))
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "../escape", Mode: 0o644, ModTime: time.Unix(0, 0)})
	tw.Close()

	dir, err := os.MkdirTemp("", "rootfs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	// The first two entries apply; the third is refused.
	_, err = archive.Apply(context.Background(), dir, bytes.NewReader(layer.Bytes()), archive.Options{NoChown: true})
	fmt.Println(err)

	// Without the hostile entry, the whole layer applies.
	layer.Reset()
	tw = tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "etc/hostname", Mode: 0o644, Size: 6, ModTime: time.Unix(0, 0)})
	tw.Write([]byte("berth\n"))
	tw.Close()
	diffID := digest.FromBytes(layer.Bytes()) // what an image config lists for this layer
	stats, err := archive.Apply(context.Background(), dir, &layer, archive.Options{NoChown: true})
	if err != nil {
		log.Fatal(err)
	}
	motd, _ := os.ReadFile(filepath.Join(dir, "etc/motd"))
	hostname, _ := os.ReadFile(filepath.Join(dir, "etc/hostname"))
	fmt.Printf("%d entry, motd %q, hostname %q, DiffID matches: %v\n",
		stats.Files, motd, hostname, stats.DiffID == diffID)
	// Output:
	// archive: entry "../escape": path escapes the layer root
	// 1 entry, motd "hello\n", hostname "berth\n", DiffID matches: true
}
