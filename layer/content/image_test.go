package content

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestTagResolve(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := smallImage(t, s, "a"), smallImage(t, s, "b")
	before := time.Now()
	if err := s.Tag(ctx, "busybox", a.manifest); err != nil {
		t.Fatal(err)
	}
	// A descriptor with only a digest gets its media type and size.
	if err := s.Tag(ctx, "quay.io/x/y:1", ocispec.Descriptor{Digest: b.manifest.Digest}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"busybox", "busybox:latest", "docker.io/library/busybox", "library/busybox:latest", "busybox@" + string(a.manifest.Digest)} {
		d, err := s.Resolve(ctx, name)
		if err != nil || d.Digest != a.manifest.Digest || d.MediaType != ocispec.MediaTypeImageManifest || d.Size != a.manifest.Size {
			t.Errorf("Resolve(%q) = %+v, %v", name, d, err)
		}
	}
	if d, err := s.Resolve(ctx, "quay.io/x/y:1"); err != nil || d.Digest != b.manifest.Digest || d.MediaType != ocispec.MediaTypeImageManifest {
		t.Errorf("Resolve = %+v, %v", d, err)
	}
	for _, name := range []string{"busybox:2", "quay.io/x/y", "busybox@" + string(b.manifest.Digest)} {
		if _, err := s.Resolve(ctx, name); !errors.Is(err, ErrNotFound) {
			t.Errorf("Resolve(%q) = %v, want ErrNotFound", name, err)
		}
	}
	if _, err := s.Resolve(ctx, "Bad Name"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Resolve of a malformed name = %v, want ErrInvalid", err)
	}

	// index.json carries the OCI ref.name and berth's name.
	var idx ocispec.Index
	raw, _ := os.ReadFile(filepath.Join(s.Root(), "index.json"))
	json.Unmarshal(raw, &idx)
	if len(idx.Manifests) != 2 || idx.Manifests[0].Annotations[ocispec.AnnotationRefName] != "docker.io/library/busybox:latest" ||
		idx.Manifests[0].Annotations[AnnotationName] != "docker.io/library/busybox:latest" {
		t.Errorf("index.json = %s", raw)
	}

	// Retagging replaces.
	if err := s.Tag(ctx, "busybox:latest", b.manifest); err != nil {
		t.Fatal(err)
	}
	imgs, err := s.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Name != "docker.io/library/busybox:latest" || imgs[0].Target.Digest != b.manifest.Digest ||
		imgs[1].Name != "quay.io/x/y:1" || imgs[0].Target.Annotations != nil {
		t.Errorf("Images = %+v", imgs)
	}
	if imgs[0].Created.Before(before.Add(-time.Second)) || imgs[0].Created.After(time.Now()) {
		t.Errorf("Created = %v", imgs[0].Created)
	}
	if err := s.Untag(ctx, "busybox"); err != nil {
		t.Fatal(err)
	}
	if err := s.Untag(ctx, "busybox"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Untag = %v", err)
	}
	if imgs, _ := s.Images(ctx); len(imgs) != 1 {
		t.Errorf("Images after Untag = %+v", imgs)
	}
	// User annotations are kept.
	d := a.manifest
	d.Annotations = map[string]string{"org.example": "x"}
	if err := s.Tag(ctx, "annotated", d); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Resolve(ctx, "annotated"); got.Annotations["org.example"] != "x" || len(got.Annotations) != 1 {
		t.Errorf("annotations %v", got.Annotations)
	}
}

func TestTagErrors(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := smallImage(t, s, "a")
	other, _ := s.Put(ctx, "application/x-foo", strings.NewReader(`{"schemaVersion":2,"mediaType":"application/x-foo"}`), "")
	before := snapshot(t, s)
	tests := []struct {
		name string
		desc ocispec.Descriptor
		want error
	}{
		{"Bad:Name", img.manifest, ErrInvalid},
		{"ok", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("missing")}, ErrNotFound},
		{"ok", img.config, ErrInvalid},                               // a config is not a manifest
		{"ok", img.layers[0], ErrInvalid},                            // nor a layer
		{"ok", other, ErrInvalid},                                    // unknown media type
		{"ok", ocispec.Descriptor{Digest: other.Digest}, ErrInvalid}, // sniffed: unknown
		{"ok@" + string(other.Digest), img.manifest, ErrInvalid},     // pinned digest differs
		{"ok", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.manifest.Digest, Size: 3}, ErrInvalid},
		{"ok", ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: "sha256:short"}, ErrInvalid},
	}
	for _, tt := range tests {
		err := s.Tag(ctx, tt.name, tt.desc)
		if !errors.Is(err, tt.want) {
			t.Errorf("Tag(%q, %+v) = %v, want %v", tt.name, tt.desc, err, tt.want)
		} else {
			t.Log(err)
		}
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("failed tags changed the store")
	}
}

func TestConcurrentTags(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := smallImage(t, s, "a")
	// A second Store on the same directory stands for another process.
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			if err := st.Tag(ctx, fmt.Sprintf("img%d", i), img.manifest); err != nil {
				t.Error(err)
			}
			if err := st.Tag(ctx, "same", img.manifest); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	imgs, err := s.Images(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 51 {
		t.Errorf("%d images after 50 concurrent tags and one shared name, want 51", len(imgs))
	}
	if tf := tempFiles(t, s.Root()); len(tf) != 0 {
		t.Errorf("left %v", tf)
	}
}

func TestManifestPlatforms(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	amd := putImage(t, s, "amd64", true, makeTar(t, file("arch", "amd64")))
	arm := putImage(t, s, "arm64", false, makeTar(t, file("arch", "arm64")))
	idx := putIndex(t, s, withPlatform(amd.manifest, "amd64"), withPlatform(arm.manifest, "arm64"))

	m, cfg, err := s.Manifest(ctx, idx, &ocispec.Platform{OS: "linux", Architecture: "arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if m.Layers[0].Digest != arm.layers[0].Digest || cfg.Architecture != "arm64" || cfg.Config.Cmd[0] != "sh" {
		t.Errorf("Manifest(arm64) = %+v, %+v", m, cfg)
	}
	if _, _, err := s.Manifest(ctx, idx, &ocispec.Platform{OS: "linux", Architecture: "arm64", Variant: "v8"}); err != nil {
		t.Errorf("arm64/v8 matches arm64: %v", err)
	}
	if _, _, err := s.Manifest(ctx, idx, &ocispec.Platform{OS: "linux", Architecture: "s390x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Manifest(s390x) = %v, want ErrNotFound", err)
	}
	if _, _, err := s.Manifest(ctx, amd.manifest, &ocispec.Platform{OS: "linux", Architecture: "arm64"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Manifest of an amd64 manifest for arm64 = %v, want ErrNotFound", err)
	}
	// The host's platform by default; a nested index is followed.
	if runtime.GOARCH == "amd64" || runtime.GOARCH == "arm64" {
		outer := putIndex(t, s, idx)
		m, cfg, err := s.Manifest(ctx, outer, nil)
		if err != nil || cfg.Architecture != runtime.GOARCH {
			t.Errorf("Manifest(nested, host) = %+v, %+v, %v", m, cfg, err)
		}
	}
	// A docker manifest list and schema 2 manifest.
	dm := ocispec.Manifest{MediaType: mediaTypeDockerManifest, Config: amd.config, Layers: amd.layers}
	dm.SchemaVersion = 2
	dm.Config.MediaType = mediaTypeDockerConfig
	b, _ := json.Marshal(dm)
	dmd, _ := s.Put(ctx, mediaTypeDockerManifest, bytes.NewReader(b), "")
	list := ocispec.Index{MediaType: mediaTypeDockerManifestList, Manifests: []ocispec.Descriptor{withPlatform(dmd, "amd64")}}
	list.SchemaVersion = 2
	b, _ = json.Marshal(list)
	ld, _ := s.Put(ctx, mediaTypeDockerManifestList, bytes.NewReader(b), "")
	if m, _, err := s.Manifest(ctx, ld, &ocispec.Platform{OS: "linux", Architecture: "amd64"}); err != nil || m.MediaType != mediaTypeDockerManifest {
		t.Errorf("Manifest(docker list) = %+v, %v", m, err)
	}
	if err := s.Tag(ctx, "docker-list", ld); err != nil {
		t.Errorf("Tag(docker list): %v", err)
	}
}

func TestManifestBadInput(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := smallImage(t, s, "a")
	put := func(mt, body string) ocispec.Descriptor {
		d, err := s.Put(ctx, mt, strings.NewReader(body), "")
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cfg, _ := json.Marshal(img.config)
	tests := map[string]struct {
		desc ocispec.Descriptor
		want error
	}{
		"unknown media type":      {put("application/x-unknown", `{"schemaVersion":2}`), ErrInvalid},
		"schema 1":                {put("", `{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+json"}`), ErrInvalid},
		"not JSON":                {put(ocispec.MediaTypeImageManifest, `not json`), ErrInvalid},
		"media type disagrees":    {put(ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`), ErrInvalid},
		"config not a config":     {put(ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":{"mediaType":"application/x-foo","digest":"`+string(img.config.Digest)+`","size":1}}`), ErrInvalid},
		"missing config":          {put(ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"`+string(digest.FromString("nope"))+`","size":4}}`), ErrNotFound},
		"bad layer digest":        {put(ocispec.MediaTypeImageManifest, `{"schemaVersion":2,"config":`+string(cfg)+`,"layers":[{"mediaType":"x","digest":"sha256:../../etc","size":1}]}`), ErrInvalid},
		"missing manifest":        {ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("x")}, ErrNotFound},
		"wrong size":              {ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: img.manifest.Digest, Size: 1}, ErrDigestMismatch},
		"index without platforms": {putIndex(t, s), ErrNotFound},
	}
	for name, tt := range tests {
		_, _, err := s.Manifest(ctx, tt.desc, nil)
		if !errors.Is(err, tt.want) {
			t.Errorf("%s: Manifest = %v, want %v", name, err, tt.want)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
	// A blob corrupted on disk is caught.
	p := filepath.Join(s.Root(), "blobs", "sha256", img.config.Digest.Encoded())
	os.Chmod(p, 0o644)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, bytes.ToUpper(b), 0o644)
	if _, _, err := s.Manifest(ctx, img.manifest, nil); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Manifest with a corrupt config = %v, want ErrDigestMismatch", err)
	}
	// A truncated one too.
	os.WriteFile(p, b[:len(b)/2], 0o644)
	if _, _, err := s.Manifest(ctx, img.manifest, nil); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Manifest with a truncated config = %v, want ErrDigestMismatch", err)
	}
}

func TestReferences(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	amd := putImage(t, s, "amd64", true, makeTar(t, file("a", "1")), makeTar(t, file("b", "2")))
	arm := putImage(t, s, "arm64", true, makeTar(t, file("a", "1")), makeTar(t, file("c", "3")))
	missing := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromString("not fetched"), Size: 11, Platform: &ocispec.Platform{OS: "linux", Architecture: "ppc64le"}}
	idx := putIndex(t, s, withPlatform(amd.manifest, "amd64"), withPlatform(arm.manifest, "arm64"), missing)
	got, err := s.References(ctx, idx)
	if err != nil {
		t.Fatal(err)
	}
	want := []digest.Digest{idx.Digest}
	want = append(want, amd.digests()...)
	want = append(want, arm.manifest.Digest, arm.config.Digest, arm.layers[1].Digest, missing.Digest) // layer a is shared
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("References = %v\nwant %v", got, want)
	}
	if _, err := s.References(ctx, ocispec.Descriptor{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("gone")}); !errors.Is(err, ErrNotFound) {
		t.Errorf("References of a missing index = %v", err)
	}
	// A layer is a leaf.
	if got, err := s.References(ctx, amd.layers[0]); err != nil || len(got) != 1 {
		t.Errorf("References(layer) = %v, %v", got, err)
	}
}

func TestGC(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	tagged := smallImage(t, s, "tagged")
	kept := smallImage(t, s, "kept")
	garbage := smallImage(t, s, "garbage")
	multi := putImage(t, s, "arm64", false, makeTar(t, file("m", "m")))
	idx := putIndex(t, s, withPlatform(multi.manifest, "arm64"))
	loose, _ := s.Put(ctx, "", strings.NewReader("loose"), "")
	keptLayer, _ := s.Put(ctx, "", strings.NewReader("kept layer"), "")
	if err := s.Tag(ctx, "tagged", tagged.manifest); err != nil {
		t.Fatal(err)
	}
	if err := s.Tag(ctx, "multi", idx); err != nil {
		t.Fatal(err)
	}
	// An unnamed entry another tool wrote is kept too.
	unnamed := smallImage(t, s, "unnamed")
	if err := s.updateIndex(ctx, func(ix *ocispec.Index) error {
		ix.Manifests = append(ix.Manifests, unnamed.manifest)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	removed, err := s.GC(ctx, kept.manifest.Digest, keptLayer.Digest)
	if err != nil {
		t.Fatal(err)
	}
	wantRemoved := append(garbage.digests(), loose.Digest)
	slices.Sort(removed)
	slices.Sort(wantRemoved)
	// smallImage layers differ by seed, so nothing is shared with garbage.
	if !slices.Equal(removed, wantRemoved) {
		t.Errorf("GC removed %v\nwant %v", removed, wantRemoved)
	}
	left := blobSet(t, s)
	for _, ti := range []testImage{tagged, kept, multi, unnamed} {
		for _, d := range ti.digests() {
			if _, ok := left[d]; !ok {
				t.Errorf("GC removed %s, which is reachable", d)
			}
		}
	}
	for _, d := range []digest.Digest{idx.Digest, keptLayer.Digest} {
		if _, ok := left[d]; !ok {
			t.Errorf("GC removed %s", d)
		}
	}
	if _, _, err := s.Manifest(ctx, tagged.manifest, nil); err != nil {
		t.Errorf("tagged image after GC: %v", err)
	}
	// Untag and collect again: now it goes, what is shared stays.
	s.Untag(ctx, "tagged")
	removed, err = s.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 3+3+1 { // tagged, kept, keptLayer
		t.Errorf("second GC removed %d blobs: %v", len(removed), removed)
	}
	// A named manifest that cannot be read stops GC before it removes
	// anything.
	before := blobSet(t, s)
	bad, _ := s.Put(ctx, ocispec.MediaTypeImageManifest, strings.NewReader(`{"schemaVersion":2,"config":{"digest":"bad"}}`), "")
	s.Tag(ctx, "broken", bad)
	s.Put(ctx, "", strings.NewReader("more garbage"), "")
	if _, err := s.GC(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("GC with a broken named manifest = %v, want ErrInvalid", err)
	}
	if after := blobSet(t, s); len(after) != len(before)+2 {
		t.Errorf("a failed GC removed blobs")
	}
}
