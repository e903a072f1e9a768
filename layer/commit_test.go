package layer

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"

	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: unpacks layers with their owners and mounts snapshots")
	}
}

// mountedCopy is a Copy snapshotter whose mounts are a tmpfs with the
// snapshot bind-mounted on top: mounts the Store cannot use without
// mounting them, as a user's snapshotter may return.
type mountedCopy struct{ *snapshot.Copy }

func stacked(ms []snapshot.Mount, err error) ([]snapshot.Mount, error) {
	if err != nil {
		return nil, err
	}
	return append([]snapshot.Mount{{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=64k"}}}, ms...), nil
}

func (m mountedCopy) Prepare(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]snapshot.Mount, error) {
	return stacked(m.Copy.Prepare(ctx, key, parent, opts...))
}

func (m mountedCopy) View(ctx context.Context, key, parent string, opts ...snapshot.Opt) ([]snapshot.Mount, error) {
	return stacked(m.Copy.View(ctx, key, parent, opts...))
}

func (m mountedCopy) Mounts(ctx context.Context, key string) ([]snapshot.Mount, error) {
	return stacked(m.Copy.Mounts(ctx, key))
}

// openStore opens a store in a temporary directory on the overlay or the
// copy snapshotter, or ("mounted") on mountedCopy.
func openStore(t testing.TB, kind string) *Store {
	t.Helper()
	root := t.TempDir()
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		t.Fatal(err)
	}
	var sn snapshot.Snapshotter
	if kind == "overlay" {
		sn, err = snapshot.NewOverlay(filepath.Join(root, "snapshots"))
		if errors.Is(err, snapshot.ErrNotSupported) {
			t.Skip(err)
		}
	} else {
		var c *snapshot.Copy
		c, err = snapshot.NewCopy(filepath.Join(root, "snapshots"))
		sn = c
		if kind == "mounted" {
			sn = mountedCopy{c}
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &Store{Content: cs, Snapshots: sn, root: root, unpacking: map[string]*call{}}
	t.Cleanup(func() { s.Close() })
	return s
}

// layerTar makes an uncompressed layer of files (path -> content; a path
// ending in "/" is a directory).
func layerTar(t testing.TB, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range files {
			if !yield(k) {
				return
			}
		}
	})
	for _, n := range names {
		h := &tar.Header{Name: n, Mode: 0o644, Typeflag: tar.TypeReg, Size: int64(len(files[n]))}
		if n[len(n)-1] == '/' {
			h.Mode, h.Typeflag, h.Size = 0o755, tar.TypeDir, 0
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[n])
	}
	tw.Close()
	return buf.Bytes()
}

// putImage stores an image of the given layer tars and config under name
// and returns its manifest's descriptor.
func putImage(t testing.TB, s *Store, name string, cfg ocispec.ImageConfig, layers ...[]byte) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	img := ocispec.Image{Config: cfg, RootFS: ocispec.RootFS{Type: "layers"}}
	img.OS, img.Architecture = "linux", runtime.GOARCH
	var descs []ocispec.Descriptor
	for _, l := range layers {
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, digest.FromBytes(l))
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(l)
		zw.Close()
		d, err := s.Content.Put(ctx, ocispec.MediaTypeImageLayerGzip, &gz, "")
		if err != nil {
			t.Fatal(err)
		}
		descs = append(descs, d)
	}
	md, err := s.putImage(ctx, name, img, descs, nil)
	if err != nil {
		t.Fatal(err)
	}
	return md
}

// layerEntries lists the entry names of a gzip-compressed layer blob.
func layerEntries(t testing.TB, s *Store, d digest.Digest) []string {
	t.Helper()
	f, err := s.Content.Open(context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, hdr.Name)
	}
	return names
}

// mounted mounts the snapshot key on a temporary directory, runs fn on
// it, and unmounts it.
func mounted(t testing.TB, s *Store, key string, fn func(dir string)) {
	t.Helper()
	ms, err := s.Snapshots.Mounts(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := snapshot.MountAll(ms, dir); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := snapshot.Unmount(dir); err != nil {
			t.Error(err)
		}
	}()
	fn(dir)
}

func forEachSnapshotter(t *testing.T, fn func(t *testing.T, s *Store)) {
	for _, kind := range []string{"overlay", "copy", "mounted"} {
		t.Run(kind, func(t *testing.T) {
			needRoot(t)
			fn(t, openStore(t, kind))
		})
	}
}

// baseLayers is a two-layer image with many files, of which a commit
// changes three.
func baseLayers(t testing.TB) [][]byte {
	files := map[string]string{"bin/": "", "bin/vi": "vi", "bin/sh": "sh", "etc/": "", "etc/motd": "hello\n", "usr/": "", "usr/share/": ""}
	for i := range 300 {
		files[fmt.Sprintf("usr/share/f%03d", i)] = fmt.Sprint(i)
	}
	return [][]byte{layerTar(t, files), layerTar(t, map[string]string{"etc/": "", "etc/hostname": "base\n"})}
}

func TestCommit(t *testing.T) {
	forEachSnapshotter(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		putImage(t, s, "example.com/app:v1", ocispec.ImageConfig{
			Cmd: []string{"sh"}, Env: []string{"PATH=/bin", "A=1"}, Labels: map[string]string{"a": "1"},
		}, baseLayers(t)...)
		base, _, err := s.Prepare(ctx, "c1", "example.com/app:v1")
		if err != nil {
			t.Fatal(err)
		}
		defer s.Release(ctx, "c1")
		mounted(t, s, "c1", func(dir string) {
			os.Mkdir(filepath.Join(dir, "data"), 0o755)
			os.WriteFile(filepath.Join(dir, "data/new"), []byte("new\n"), 0o644)
			os.WriteFile(filepath.Join(dir, "etc/motd"), []byte("changed\n"), 0o644)
			if err := os.Remove(filepath.Join(dir, "bin/vi")); err != nil {
				t.Fatal(err)
			}
		})
		md, err := s.Commit(ctx, "c1", base, CommitOptions{
			Name: "example.com/app:v2", Cmd: []string{"cat", "/data/new"}, Env: []string{"A=2", "B=3"},
			Labels: map[string]string{"b": "2"}, ExposedPorts: []string{"80"}, Comment: "a test",
		})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := s.Content.Resolve(ctx, "example.com/app:v2"); err != nil || got.Digest != md.Digest {
			t.Fatalf("v2 resolves to %v, %v; want %s", got.Digest, err, md.Digest)
		}
		m, cfg, err := s.Content.Manifest(ctx, md, nil)
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 3 || len(cfg.RootFS.DiffIDs) != 3 || m.Layers[1].Digest != base.Manifest.Layers[1].Digest {
			t.Fatalf("manifest layers %v, diff IDs %v", m.Layers, cfg.RootFS.DiffIDs)
		}
		if got := m.Annotations[ocispec.AnnotationBaseImageName]; got != "example.com/app:v1" {
			t.Errorf("base image annotation %q", got)
		}
		names := layerEntries(t, s, m.Layers[2].Digest)
		want := []string{"bin/", "bin/.wh.vi", "data/", "data/new", "etc/", "etc/motd"}
		if !slices.Equal(names, want) {
			t.Errorf("layer entries %q, want %q", names, want)
		}
		c := cfg.Config
		if !slices.Equal(c.Cmd, []string{"cat", "/data/new"}) || !slices.Equal(c.Env, []string{"PATH=/bin", "A=2", "B=3"}) ||
			c.Labels["a"] != "1" || c.Labels["b"] != "2" || len(c.ExposedPorts) != 1 {
			t.Errorf("config %+v", c)
		}
		if n := len(cfg.History); n != 3 || cfg.History[2].Comment != "a test" || cfg.History[2].CreatedBy != "berth commit" {
			t.Errorf("history %+v", cfg.History)
		}

		// The new image unpacks (its diff ID checks out) and shows the
		// changes.
		if _, _, err := s.Prepare(ctx, "c2", "example.com/app:v2"); err != nil {
			t.Fatal(err)
		}
		defer s.Release(ctx, "c2")
		mounted(t, s, "c2", func(dir string) {
			for p, want := range map[string]string{"data/new": "new\n", "etc/motd": "changed\n", "etc/hostname": "base\n", "usr/share/f299": "299"} {
				if b, err := os.ReadFile(filepath.Join(dir, p)); err != nil || string(b) != want {
					t.Errorf("%s: %q, %v; want %q", p, b, err, want)
				}
			}
			if _, err := os.Lstat(filepath.Join(dir, "bin/vi")); !os.IsNotExist(err) {
				t.Errorf("bin/vi after commit of its deletion: %v", err)
			}
		})

		// Bad input.
		if _, err := s.Commit(ctx, base.ChainID, base, CommitOptions{}); !errors.Is(err, snapshot.ErrInvalid) {
			t.Errorf("commit of a committed snapshot: %v", err)
		}
		v2, err := s.Unpack(ctx, "example.com/app:v2")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Commit(ctx, "c1", v2, CommitOptions{}); !errors.Is(err, snapshot.ErrInvalid) {
			t.Errorf("commit on the wrong base: %v", err)
		}
		if _, err := s.Commit(ctx, "nope", base, CommitOptions{}); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("commit of a missing snapshot: %v", err)
		}
	})
}

func TestCommitConfig(t *testing.T) {
	base := ocispec.Image{RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromString("a"), digest.FromString("b")}}}
	base.Config.Entrypoint = []string{"ep"}
	base.Config.Cmd = []string{"cmd"}
	cfg, err := commitConfig(base, digest.FromString("c"), CommitOptions{Entrypoint: []string{"new"}, WorkingDir: "/w", User: "app", StopSignal: "SIGINT", Volumes: []string{"/v"}})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if !slices.Equal(c.Entrypoint, []string{"new"}) || c.Cmd != nil || c.WorkingDir != "/w" || c.User != "app" || c.StopSignal != "SIGINT" || len(c.Volumes) != 1 {
		t.Errorf("config %+v", c)
	}
	if len(cfg.History) != 3 || cfg.History[2].Created == nil || len(cfg.RootFS.DiffIDs) != 3 {
		t.Errorf("history %+v, diff IDs %v", cfg.History, cfg.RootFS.DiffIDs)
	}
	if len(base.RootFS.DiffIDs) != 2 || base.Config.Cmd == nil {
		t.Error("commitConfig changed its input")
	}
	if _, err := commitConfig(base, digest.FromString("c"), CommitOptions{Env: []string{"novalue"}}); err == nil {
		t.Error("env without =: no error")
	}
}
