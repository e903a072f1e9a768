package container

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tarDir writes dir as an uncompressed layer tar.
func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&(fs.ModeDevice|fs.ModeNamedPipe|fs.ModeSocket) != 0 {
			return nil // what other tests left in the shared rootfs
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			link, _ = os.Readlink(p)
		}
		h, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		h.Name, _ = filepath.Rel(dir, p)
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tw.Close()
	return buf.Bytes()
}

// putImage stores an image of the given layer tars and config under name.
func putImage(t testing.TB, s *layer.Store, name string, cfg ocispec.ImageConfig, layers ...[]byte) {
	t.Helper()
	ctx := context.Background()
	img := ocispec.Image{Config: cfg, RootFS: ocispec.RootFS{Type: "layers"}}
	img.OS, img.Architecture = "linux", runtime.GOARCH
	var m ocispec.Manifest
	m.Versioned = specsv.Versioned{SchemaVersion: 2}
	m.MediaType = ocispec.MediaTypeImageManifest
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
		m.Layers = append(m.Layers, d)
	}
	cb, _ := json.Marshal(img)
	cd, err := s.Content.Put(ctx, ocispec.MediaTypeImageConfig, bytes.NewReader(cb), "")
	if err != nil {
		t.Fatal(err)
	}
	m.Config = cd
	mb, _ := json.Marshal(m)
	md, err := s.Content.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Content.Tag(ctx, name, md); err != nil {
		t.Fatal(err)
	}
}

func TestRunFromImage(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	store, err := layer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	fresh, err := busybox.TempRootfs() // testRootfs has other tests' files in /tmp
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(fresh)
	base := tarDir(t, fresh)
	extra := t.TempDir()
	os.MkdirAll(filepath.Join(extra, "etc"), 0o755)
	os.WriteFile(filepath.Join(extra, "etc/motd"), []byte("second layer\n"), 0o644)
	top := tarDir(t, extra)
	putImage(t, store, "example.com/app:v1", ocispec.ImageConfig{
		Entrypoint: []string{"sh", "-c"},
		Cmd:        []string{`echo "$GREETING from $(pwd) as $(id -un): $(cat /etc/motd)"; touch /tmp/written`},
		Env:        []string{"GREETING=hi", "PATH=/bin"},
		WorkingDir: "/home/app",
		User:       "app",
	}, base, top)
	putImage(t, store, "example.com/base:v1", ocispec.ImageConfig{Cmd: []string{"ls", "/tmp"}}, base)

	rt := &Runtime{Images: store}
	runImage := func(spec *Spec) (string, *ExitStatus) {
		t.Helper()
		var out bytes.Buffer
		spec.Process.Stdout, spec.Process.Stderr = &out, &out
		c, err := rt.Create(ctx, testID(t), spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			c.Delete(ctx)
			t.Fatal(err)
		}
		st, err := c.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Snapshots.Stat(ctx, snapshotKey(c.ID())); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("snapshot of %s after Delete: %v", c.ID(), err)
		}
		return out.String(), st
	}
	// The image's ENTRYPOINT, CMD, Env, WorkingDir and User.
	out, st := runImage(&Spec{Image: "example.com/app:v1"})
	if !st.Success() || out != "hi from /home/app as app: second layer\n" {
		t.Errorf("default command: %v %q", st, out)
	}
	// Args replace CMD; the spec's env wins.
	out, _ = runImage(&Spec{Image: "example.com/app:v1", Process: Process{Args: []string{"echo $GREETING; ls /tmp"}, Env: []string{"GREETING=hello"}}})
	if out != "hello\n" {
		t.Errorf("args override: %q (a container's writes must not reach the image)", out)
	}
	// --entrypoint drops CMD.
	out, _ = runImage(&Spec{Image: "example.com/app:v1", Entrypoint: []string{"id"}, Process: Process{User: "root"}})
	if !strings.HasPrefix(out, "uid=0(root)") {
		t.Errorf("entrypoint override: %q", out)
	}
	// An image sharing the base layer reuses its snapshot.
	out, st = runImage(&Spec{Image: "example.com/base:v1"})
	if !st.Success() || out != "" {
		t.Errorf("base image: %v %q", st, out)
	}
	// Bad input.
	for _, tc := range []struct {
		rt   *Runtime
		spec Spec
		want string
	}{
		{rt, Spec{Image: "example.com/missing:v1"}, "missing"},
		{rt, Spec{Image: "example.com/app:v1", Rootfs: testRootfs}, "either Rootfs or Image"},
		{&Runtime{}, Spec{Image: "example.com/app:v1"}, "no layer store"},
	} {
		if _, err := tc.rt.Create(ctx, testID(t), &tc.spec); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrInvalidSpec mentioning %q", tc.spec, err, tc.want)
		}
	}
	n := 0
	store.Snapshots.Walk(ctx, func(snapshot.Info) error { n++; return nil })
	if n != 2 {
		t.Errorf("%d snapshots for two images sharing a base layer, want 2", n)
	}
	store.Close()
	checkNoLeaks(t, before)
}
