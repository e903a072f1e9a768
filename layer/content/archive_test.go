package content

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// readTar returns the regular files of a tar by name.
func readTar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			out[h.Name], _ = io.ReadAll(tr)
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a := putImage(t, s, "", true, makeTar(t, file("a", "1")), makeTar(t, file("b", "2")))
	b := putImage(t, s, "", false, makeTar(t, file("a", "1")))
	other := putImage(t, s, "s390x", true, makeTar(t, file("z", "z")))
	idx := putIndex(t, s, withPlatform(a.manifest, "amd64"), withPlatform(a.manifest, "arm64"), withPlatform(other.manifest, "s390x"))
	for name, d := range map[string]ocispec.Descriptor{"busybox:1": a.manifest, "busybox:2": a.manifest, "quay.io/x/y:b": b.manifest, "multi": idx} {
		if err := s.Tag(ctx, name, d); err != nil {
			t.Fatal(err)
		}
	}
	var buf bytes.Buffer
	if err := s.Save(ctx, &buf, "busybox:1", "busybox:2", "quay.io/x/y:b", "multi"); err != nil {
		t.Fatal(err)
	}
	files := readTar(t, buf.Bytes())
	var mf []dockerManifest
	if err := json.Unmarshal(files["manifest.json"], &mf); err != nil {
		t.Fatal(err)
	}
	// a is saved once, for three names (the index resolves to it on the
	// host, when the host is amd64 or arm64).
	if len(mf) != 2 || !slices.Contains(mf[0].RepoTags, "busybox:1") || !slices.Contains(mf[0].RepoTags, "busybox:2") ||
		mf[1].RepoTags[0] != "quay.io/x/y:b" || len(mf[0].Layers) != 2 || mf[0].Config != "blobs/sha256/"+a.config.Digest.Encoded() {
		t.Errorf("manifest.json = %s", files["manifest.json"])
	}
	if _, ok := files["blobs/sha256/"+other.layers[0].Digest.Encoded()]; ok {
		t.Errorf("Save wrote a layer of another platform")
	}
	for _, d := range append(a.digests(), b.digests()...) {
		if _, ok := files["blobs/sha256/"+d.Encoded()]; !ok {
			t.Errorf("%s missing from the archive", d)
		}
	}
	if string(files["oci-layout"]) != `{"imageLayoutVersion":"1.0.0"}` || files["index.json"] == nil {
		t.Errorf("no OCI layout in the archive")
	}

	s2 := newStore(t)
	imgs, err := s2.Load(ctx, bytes.NewReader(buf.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 4 {
		t.Errorf("Load = %+v", imgs)
	}
	for _, n := range []string{"busybox:1", "busybox:2", "quay.io/x/y:b"} {
		want, _ := s.Resolve(ctx, n)
		got, err := s2.Resolve(ctx, n)
		if err != nil || got.Digest != want.Digest || got.MediaType != want.MediaType || got.Size != want.Size {
			t.Errorf("%s: loaded %+v, %v; saved %+v", n, got, err, want)
		}
	}
	if got, err := s2.Resolve(ctx, "multi"); err != nil || got.Digest != a.manifest.Digest {
		t.Errorf("multi loaded as %v, %v; want the host's manifest", got, err)
	}
	m1, c1, _ := s.Manifest(ctx, a.manifest, nil)
	m2, c2, err := s2.Manifest(ctx, a.manifest, nil)
	if err != nil || !jsonEqual(m1, m2) || !jsonEqual(c1, c2) {
		t.Errorf("manifest or config differ after the round trip: %v", err)
	}
	if got := len(blobSet(t, s2)); got != len(a.digests())+len(b.digests()) {
		t.Errorf("%d blobs after Load", got)
	}

	// Save then Load of a docker-style archive only (no OCI layout).
	plain := dropFiles(t, buf.Bytes(), "index.json", "oci-layout", "blobs/sha256/"+a.manifest.Digest.Encoded(), "blobs/sha256/"+b.manifest.Digest.Encoded())
	s3 := newStore(t)
	imgs, err = s3.Load(ctx, bytes.NewReader(plain))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 4 { // multi has a RepoTag too
		t.Errorf("Load(manifest.json) = %+v", imgs)
	}
	m3, c3, err := s3.Manifest(ctx, imgs[0].Target, nil)
	if err != nil || !jsonEqual(c1, c3) || !jsonEqual(m3.Layers, m1.Layers) {
		t.Errorf("Load from manifest.json: %+v, %v", m3, err)
	}

	if err := s.Save(ctx, io.Discard, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Save of an unknown name = %v", err)
	}
}

func jsonEqual(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// dropFiles rewrites a tar without the named members.
func dropFiles(t *testing.T, b []byte, names ...string) []byte {
	t.Helper()
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(names, h.Name) {
			continue
		}
		tw.WriteHeader(h)
		io.Copy(tw, tr)
	}
	tw.Close()
	return out.Bytes()
}

// legacyArchive builds a docker save archive as docker before 25 wrote it:
// <id>/layer.tar, <id>/json, <id>/VERSION, <config>.json, manifest.json,
// repositories, and a layer repeated as a symlink.
func legacyArchive(t *testing.T, mutate func(entries []tarEntry, mf []map[string]any) []tarEntry) ([]byte, []digest.Digest) {
	t.Helper()
	l1 := makeTar(t, file("bin/one", "1"))
	l2 := makeTar(t, file("bin/two", "2"))
	l2gz := gzipBytes(t, l2)
	diffIDs := []digest.Digest{digest.FromBytes(l1), digest.FromBytes(l2), digest.FromBytes(l1)}
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"}, RootFS: ocispec.RootFS{Type: "layers", DiffIDs: diffIDs}})
	cfgName := digest.FromBytes(cfg).Encoded() + ".json"
	mf := []map[string]any{{
		"Config":   cfgName,
		"RepoTags": []string{"busybox:latest", "myreg.example.com:5000/a/b:1"},
		"Layers":   []string{"id1/layer.tar", "id2/layer.tar", "id3/layer.tar"},
	}}
	entries := []tarEntry{
		{name: "id1/", typ: tar.TypeDir},
		{name: "id1/VERSION", body: []byte("1.0")},
		{name: "id1/json", body: []byte(`{"id":"id1"}`)},
		{name: "id1/layer.tar", body: l1},
		{name: "id2/", typ: tar.TypeDir},
		{name: "id2/VERSION", body: []byte("1.0")},
		{name: "id2/json", body: []byte(`{"id":"id2"}`)},
		{name: "id2/layer.tar", body: l2gz},
		{name: "id3/", typ: tar.TypeDir},
		{name: "id3/layer.tar", typ: tar.TypeSymlink, link: "../id1/layer.tar"},
		{name: cfgName, body: cfg},
		{name: "repositories", body: []byte(`{"busybox":{"latest":"id3"}}`)},
	}
	if mutate != nil {
		entries = mutate(entries, mf)
	}
	mfb, _ := json.Marshal(mf)
	entries = append(entries, tarEntry{name: "manifest.json", body: mfb})
	return makeTar(t, entries...), []digest.Digest{digest.FromBytes(cfg), digest.FromBytes(l1), digest.FromBytes(l2gz)}
}

func TestLoadLegacyDockerSave(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	ar, want := legacyArchive(t, nil)
	imgs, err := s.Load(ctx, bytes.NewReader(ar))
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 2 || imgs[0].Name != "docker.io/library/busybox:latest" || imgs[1].Name != "myreg.example.com:5000/a/b:1" || imgs[0].Target.Digest != imgs[1].Target.Digest {
		t.Fatalf("Load = %+v", imgs)
	}
	m, cfg, err := s.Manifest(ctx, imgs[0].Target, nil)
	if err != nil {
		t.Fatal(err)
	}
	mts := []string{m.Layers[0].MediaType, m.Layers[1].MediaType, m.Layers[2].MediaType}
	if !slices.Equal(mts, []string{ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayer}) {
		t.Errorf("layer media types %v", mts)
	}
	if m.Config.Digest != want[0] || m.Layers[0].Digest != want[1] || m.Layers[1].Digest != want[2] || m.Layers[2].Digest != want[1] || len(cfg.RootFS.DiffIDs) != 3 {
		t.Errorf("manifest %+v", m)
	}
	// No leftovers: the config, two layers and the new manifest.
	if got := blobSet(t, s); len(got) != 4 {
		t.Errorf("%d blobs after Load, want 4: %v", len(got), got)
	}
	if _, err := s.Resolve(ctx, "busybox"); err != nil {
		t.Error(err)
	}
	// Loading again is a no-op that gives the same manifest.
	imgs2, err := s.Load(ctx, bytes.NewReader(ar))
	if err != nil || imgs2[0].Target.Digest != imgs[0].Target.Digest {
		t.Errorf("second Load = %+v, %v", imgs2, err)
	}
}

func TestLoadBadInput(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := smallImage(t, s, "existing")
	s.Tag(ctx, "existing", img.manifest)
	before := snapshot(t, s)
	replace := func(name string, e tarEntry) func([]tarEntry, []map[string]any) []tarEntry {
		return func(entries []tarEntry, _ []map[string]any) []tarEntry {
			for i := range entries {
				if entries[i].name == name {
					entries[i] = e
				}
			}
			return entries
		}
	}
	add := func(e tarEntry) func([]tarEntry, []map[string]any) []tarEntry {
		return func(entries []tarEntry, _ []map[string]any) []tarEntry { return append([]tarEntry{e}, entries...) }
	}
	setMF := func(k string, v any) func([]tarEntry, []map[string]any) []tarEntry {
		return func(entries []tarEntry, mf []map[string]any) []tarEntry {
			mf[0][k] = v
			return entries
		}
	}
	good, _ := legacyArchive(t, nil)
	l1 := makeTar(t, file("bin/one", "1"))
	type tc struct {
		archive []byte
		want    error
		says    string
	}
	cases := map[string]tc{}
	for name, m := range map[string]struct {
		f    func([]tarEntry, []map[string]any) []tarEntry
		want error
		says string
	}{
		"dot-dot file":            {add(file("../../x", "x")), ErrInvalid, `unsafe path "../../x"`},
		"dot-dot inside":          {add(file("id1/../../x", "x")), ErrInvalid, "unsafe path"},
		"absolute file":           {add(file("/etc/x", "x")), ErrInvalid, "unsafe path"},
		"symlink out":             {replace("id3/layer.tar", tarEntry{name: "id3/layer.tar", typ: tar.TypeSymlink, link: "../../etc/passwd"}), ErrInvalid, "unsafe path"},
		"absolute symlink":        {replace("id3/layer.tar", tarEntry{name: "id3/layer.tar", typ: tar.TypeSymlink, link: "/etc/passwd"}), ErrInvalid, "absolute"},
		"hard link out":           {replace("id3/layer.tar", tarEntry{name: "id3/layer.tar", typ: tar.TypeLink, link: "../x"}), ErrInvalid, "unsafe path"},
		"device":                  {add(tarEntry{name: "dev", typ: tar.TypeChar}), ErrInvalid, "unsupported entry type"},
		"layer path out":          {setMF("Layers", []string{"../id1/layer.tar", "id2/layer.tar", "id3/layer.tar"}), ErrInvalid, "unsafe path"},
		"missing layer":           {setMF("Layers", []string{"id1/layer.tar", "id2/layer.tar", "id4/layer.tar"}), ErrInvalid, "not a file in the archive"},
		"missing config":          {setMF("Config", "nope.json"), ErrInvalid, "not a file in the archive"},
		"config not JSON":         {setMF("Config", "id1/VERSION"), ErrInvalid, "config"},
		"too few layers":          {setMF("Layers", []string{"id1/layer.tar"}), ErrInvalid, "diff IDs"},
		"diff ID mismatch":        {setMF("Layers", []string{"id2/layer.tar", "id1/layer.tar", "id3/layer.tar"}), ErrDigestMismatch, "diff ID"},
		"bad RepoTag":             {setMF("RepoTags", []string{"Bad:Tag!"}), ErrInvalid, "reference"},
		"layer not tar":           {replace("id1/layer.tar", file("id1/layer.tar", "BZh91AY")), ErrInvalid, "bzip2"},
		"broken gzip":             {replace("id2/layer.tar", file("id2/layer.tar", "\x1f\x8bjunk")), ErrInvalid, "gzip"},
		"blob under a wrong name": {add(tarEntry{name: "blobs/sha256/" + digest.FromString("x").Encoded(), body: l1}), ErrDigestMismatch, "digest"},
	} {
		ar, _ := legacyArchive(t, m.f)
		cases[name] = tc{ar, m.want, m.says}
	}
	cases["malformed manifest.json"] = tc{makeTar(t, file("id1/layer.tar", string(l1)), file("manifest.json", "[{")), ErrInvalid, "manifest.json"}
	cases["empty manifest.json"] = tc{makeTar(t, file("id1/layer.tar", string(l1)), file("manifest.json", "[]")), ErrInvalid, "no images"}
	cases["neither manifest.json nor index.json"] = tc{makeTar(t, file("id1/layer.tar", string(l1))), ErrInvalid, "no manifest.json or index.json"}
	cases["truncated archive"] = tc{good[:len(good)/2], ErrInvalid, "unexpected EOF"}
	cases["not a tar"] = tc{[]byte(strings.Repeat("garbage!", 200)), ErrInvalid, "read archive"}
	cases["index of unknown media type"] = tc{makeTar(t, file("blobs/sha256/"+digest.FromBytes(l1).Encoded(), string(l1)),
		file("index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/x-unknown","digest":"`+string(digest.FromBytes(l1))+`","size":`+itoa(len(l1))+`}]}`)), ErrInvalid, "not an image manifest or index"}
	cases["index names a missing manifest"] = tc{makeTar(t, file("index.json", `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"`+string(digest.FromString("m"))+`","size":1}]}`)), ErrNotFound, "not found"}
	cases["malformed index.json"] = tc{makeTar(t, file("index.json", `{"schemaVersion":2,"manifests":[{"digest":"sha256:zz"}]}`)), ErrInvalid, "index.json"}

	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			imgs, err := s.Load(ctx, bytes.NewReader(c.archive))
			if !errors.Is(err, c.want) || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("Load = %+v, %v; want %v saying %q", imgs, err, c.want, c.says)
			}
			t.Log(err)
			if after := snapshot(t, s); after != before {
				t.Errorf("a failed Load changed the store:\n%s\nwant\n%s", after, before)
			}
		})
	}
	if imgs, err := s.Load(ctx, bytes.NewReader(good)); err != nil || len(imgs) != 2 {
		t.Errorf("Load(good) after the bad ones = %v, %v", imgs, err)
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
