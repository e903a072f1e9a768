package content

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestExportImportLayout(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := smallImage(t, s, "a")
	b := smallImage(t, s, "b")
	arm := putImage(t, s, "arm64", false, makeTar(t, file("arm", "arm")))
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("not fetched"), Size: 11, Platform: &ocispec.Platform{OS: "linux", Architecture: "ppc64le"}}
	idx := putIndex(t, s, withPlatform(arm.manifest, "arm64"), missing)
	s.Tag(ctx, "a", a.manifest)
	s.Tag(ctx, "b", b.manifest)
	s.Tag(ctx, "multi", idx)

	out := filepath.Join(t.TempDir(), "export")
	if err := s.ExportLayout(ctx, out, "a", "multi"); err != nil {
		t.Fatal(err)
	}
	exported, err := Open(out)
	if err != nil {
		t.Fatal(err)
	}
	var want []digest.Digest
	want = append(want, a.digests()...)
	want = append(want, idx.Digest)
	want = append(want, arm.digests()...)
	var got []digest.Digest
	for d := range blobSet(t, exported) {
		got = append(got, d)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("exported blobs %v\nwant %v", got, want)
	}

	s2 := newStore(t)
	imgs, err := s2.ImportLayout(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 {
		t.Fatalf("ImportLayout = %+v", imgs)
	}
	for _, n := range []string{"a", "multi"} {
		want, _ := s.Resolve(ctx, n)
		got, err := s2.Resolve(ctx, n)
		if err != nil || !jsonEqual(got, want) {
			t.Errorf("%s: imported %+v, %v; want %+v", n, got, err, want)
		}
	}
	if _, err := s2.Resolve(ctx, "b"); !errors.Is(err, ErrNotFound) {
		t.Errorf("b was not exported, but resolves: %v", err)
	}
	orig, _ := s.Images(ctx)
	imported, _ := s2.Images(ctx)
	if !orig[0].Created.Equal(imported[0].Created) {
		t.Errorf("Created changed: %v, %v", orig[0].Created, imported[0].Created)
	}

	// All images when no names are given.
	all := filepath.Join(t.TempDir(), "all")
	if err := s.ExportLayout(ctx, all); err != nil {
		t.Fatal(err)
	}
	s3 := newStore(t)
	if imgs, err := s3.ImportLayout(ctx, all); err != nil || len(imgs) != 3 {
		t.Errorf("ImportLayout(all) = %v, %v", imgs, err)
	}
	if err := s.ExportLayout(ctx, t.TempDir(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ExportLayout of an unknown name = %v", err)
	}
}

// TestImportLayoutOtherNames reads names the way other tools write them.
func TestImportLayoutOtherNames(t *testing.T) {
	ctx := context.Background()
	src := newStore(t)
	a := smallImage(t, src, "a")
	src.updateIndex(ctx, func(idx *ocispec.Index) error {
		for _, ann := range []map[string]string{
			{ocispec.AnnotationRefName: "latest"},                                         // skopeo oci:dir:latest
			{ocispec.AnnotationRefName: "v1", annotationContainerdName: "quay.io/x/y:v1"}, // docker save >= 25
			nil, // no name
		} {
			d := a.manifest
			d.Annotations = ann
			idx.Manifests = append(idx.Manifests, d)
		}
		return nil
	})
	s := newStore(t)
	imgs, err := s.ImportLayout(ctx, src.Root())
	if err != nil {
		t.Fatal(err)
	}
	names := []string{imgs[0].Name, imgs[1].Name, imgs[2].Name}
	if !slices.Equal(names, []string{"docker.io/library/latest:latest", "quay.io/x/y:v1", ""}) {
		t.Errorf("names %q", names)
	}
	if list, _ := s.Images(ctx); len(list) != 2 {
		t.Errorf("Images = %+v", list)
	}
	if _, err := s.Resolve(ctx, "latest"); err != nil {
		t.Error(err)
	}
}

func TestImportLayoutBadInput(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	existing := smallImage(t, s, "existing")
	s.Tag(ctx, "existing", existing.manifest)
	before := snapshot(t, s)

	// make builds a good source layout and lets f break it.
	make := func(t *testing.T, f func(src *Store, img testImage)) string {
		src := newStore(t)
		img := putImage(t, src, "", true, makeTar(t, file("big", strings.Repeat("x", 100000))), makeTar(t, file("b", "b")))
		src.Tag(ctx, "img", img.manifest)
		f(src, img)
		return src.Root()
	}
	blob := func(src *Store, d digest.Digest) string {
		return filepath.Join(src.Root(), "blobs", "sha256", d.Encoded())
	}
	setIndex := func(src *Store, v string) {
		os.WriteFile(filepath.Join(src.Root(), "index.json"), []byte(v), 0o644)
	}
	tests := map[string]struct {
		f    func(*Store, testImage)
		want error
	}{
		"truncated layer": {func(src *Store, img testImage) {
			p := blob(src, img.layers[0].Digest)
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)/2], 0o644)
		}, ErrDigestMismatch},
		"corrupt layer": {func(src *Store, img testImage) {
			p := blob(src, img.layers[1].Digest)
			b, _ := os.ReadFile(p)
			b[len(b)-1] ^= 0xff
			os.WriteFile(p, b, 0o644)
		}, ErrDigestMismatch},
		"missing layer":  {func(src *Store, img testImage) { os.Remove(blob(src, img.layers[1].Digest)) }, ErrNotFound},
		"missing config": {func(src *Store, img testImage) { os.Remove(blob(src, img.config.Digest)) }, ErrNotFound},
		"malformed index.json": {func(src *Store, img testImage) {
			setIndex(src, `{"schemaVersion":2,"manifests":[{`)
		}, ErrInvalid},
		"unknown media type": {func(src *Store, img testImage) {
			d := img.manifest
			d.MediaType = "application/x-unknown"
			b, _ := json.Marshal(ocispec.Index{Versioned: ocispec.Index{}.Versioned, Manifests: []ocispec.Descriptor{img.manifest, d}})
			setIndex(src, strings.Replace(string(b), `"schemaVersion":0`, `"schemaVersion":2`, 1))
		}, ErrInvalid},
		"manifest of unknown media type": {func(src *Store, img testImage) {
			d, _ := src.Put(ctx, ocispec.MediaTypeImageManifest, strings.NewReader(`{"schemaVersion":2,"mediaType":"application/x-unknown"}`), "")
			d.Annotations = map[string]string{ocispec.AnnotationRefName: "x"}
			b, _ := json.Marshal([]ocispec.Descriptor{img.manifest, d})
			setIndex(src, `{"schemaVersion":2,"manifests":`+string(b)+`}`)
		}, ErrInvalid},
		"bad name": {func(src *Store, img testImage) {
			d := img.manifest
			d.Annotations = map[string]string{ocispec.AnnotationRefName: "Bad Name"}
			b, _ := json.Marshal([]ocispec.Descriptor{img.manifest, d})
			setIndex(src, `{"schemaVersion":2,"manifests":`+string(b)+`}`)
		}, ErrInvalid},
		"no oci-layout": {func(src *Store, img testImage) { os.Remove(filepath.Join(src.Root(), "oci-layout")) }, ErrInvalid},
		"blob is a symlink to a host file": {func(src *Store, img testImage) {
			p := blob(src, img.layers[1].Digest)
			os.Remove(p)
			os.Symlink("/etc/passwd", p)
		}, ErrInvalid},
		"blob is a FIFO": {func(src *Store, img testImage) {
			p := blob(src, img.layers[1].Digest)
			os.Remove(p)
			syscall.Mkfifo(p, 0o644)
		}, ErrInvalid},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := make(t, tt.f)
			imgs, err := s.ImportLayout(ctx, dir)
			if !errors.Is(err, tt.want) {
				t.Fatalf("ImportLayout = %+v, %v; want %v", imgs, err, tt.want)
			}
			t.Log(err)
			if after := snapshot(t, s); after != before {
				t.Errorf("a failed import changed the store:\n%s\nwant\n%s", after, before)
			}
		})
	}
	if _, err := s.ImportLayout(ctx, t.TempDir()); !errors.Is(err, ErrInvalid) {
		t.Errorf("ImportLayout of an empty directory = %v", err)
	}
}
