package content

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func newStore(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// tarEntry is one member of a test tar.
type tarEntry struct {
	name string
	body []byte
	mode int64
	typ  byte
	link string
}

func file(name, body string) tarEntry { return tarEntry{name: name, body: []byte(body)} }

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Mode: e.mode, Typeflag: e.typ, Linkname: e.link, ModTime: time.Unix(1e9, 0)}
		if h.Typeflag == 0 {
			h.Typeflag = tar.TypeReg
		}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if h.Typeflag == tar.TypeReg {
			h.Size = int64(len(e.body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			if _, err := tw.Write(e.body); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	zw.Write(b)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// testImage is an image put into a store by putImage.
type testImage struct {
	manifest ocispec.Descriptor
	config   ocispec.Descriptor
	layers   []ocispec.Descriptor
	diffIDs  []digest.Digest
}

func (ti testImage) digests() []digest.Digest {
	out := []digest.Digest{ti.manifest.Digest, ti.config.Digest}
	for _, l := range ti.layers {
		out = append(out, l.Digest)
	}
	return out
}

// putImage stores an image of the given uncompressed layer tars (gzipped
// when gz) for linux/arch ("" = host) and returns its descriptors.
func putImage(t testing.TB, s *Store, arch string, gz bool, layers ...[]byte) testImage {
	t.Helper()
	ctx := context.Background()
	if arch == "" {
		arch = runtime.GOARCH
	}
	var ti testImage
	for _, l := range layers {
		ti.diffIDs = append(ti.diffIDs, digest.FromBytes(l))
		mt, data := ocispec.MediaTypeImageLayer, l
		if gz {
			mt, data = ocispec.MediaTypeImageLayerGzip, gzipBytes(t, l)
		}
		d, err := s.Put(ctx, mt, bytes.NewReader(data), "")
		if err != nil {
			t.Fatal(err)
		}
		ti.layers = append(ti.layers, d)
	}
	created := time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)
	cfg := ocispec.Image{
		Created:  &created,
		Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		Config:   ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: ti.diffIDs},
	}
	cb, _ := json.Marshal(cfg)
	var err error
	ti.config, err = s.Put(ctx, ocispec.MediaTypeImageConfig, bytes.NewReader(cb), "")
	if err != nil {
		t.Fatal(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ti.config, Layers: ti.layers}
	m.SchemaVersion = 2
	if ti.layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	mb, _ := json.Marshal(m)
	ti.manifest, err = s.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
	if err != nil {
		t.Fatal(err)
	}
	return ti
}

// putIndex stores an index of manifests, each given with its platform.
func putIndex(t testing.TB, s *Store, ms ...ocispec.Descriptor) ocispec.Descriptor {
	t.Helper()
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: ms}
	idx.SchemaVersion = 2
	b, _ := json.Marshal(idx)
	d, err := s.Put(context.Background(), ocispec.MediaTypeImageIndex, bytes.NewReader(b), "")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func withPlatform(d ocispec.Descriptor, arch string) ocispec.Descriptor {
	d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
	return d
}

// smallImage is a one-layer image with a few files, different for each
// seed.
func smallImage(t testing.TB, s *Store, seed string) testImage {
	t.Helper()
	return putImage(t, s, "", true, makeTar(t,
		tarEntry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		file("etc/hostname", seed+"\n"),
		file("seed", strings.Repeat(seed, 100)),
	))
}

// snapshot describes every file under a store: names, sizes and the
// content of index.json, to check that a failed operation changed nothing.
func snapshot(t testing.TB, s *Store) string {
	t.Helper()
	var lines []string
	filepath.WalkDir(s.Root(), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(s.Root(), p)
		info, _ := d.Info()
		line := fmt.Sprintf("%s %v", rel, info.Mode())
		if info.Mode().IsRegular() {
			line += fmt.Sprint(" ", info.Size())
		}
		if rel == indexFile {
			b, _ := os.ReadFile(p)
			line += " " + string(b)
		}
		lines = append(lines, line)
		return nil
	})
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func blobSet(t testing.TB, s *Store) map[digest.Digest]int64 {
	t.Helper()
	m := map[digest.Digest]int64{}
	if err := s.Walk(context.Background(), func(d digest.Digest, n int64) error {
		m[d] = n
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return m
}

// tempFiles lists the temporary files in a store.
func tempFiles(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	for _, dir := range []string{root, filepath.Join(root, blobsDir, "sha256")} {
		entries, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") {
				out = append(out, filepath.Join(dir, e.Name()))
			}
		}
	}
	return out
}

// checkBlobs verifies that every blob's content matches its name.
func checkBlobs(t testing.TB, root string) int {
	t.Helper()
	dir := filepath.Join(root, blobsDir, "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if hex.EncodeToString(sum[:]) != e.Name() {
			t.Errorf("blob %s has content of another digest (%d bytes): a partial blob is visible", e.Name(), len(b))
		}
		n++
	}
	return n
}
