package content

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerManifest is an entry of the manifest.json of a `docker save`
// archive.
type dockerManifest struct {
	Config   string
	RepoTags []string
	Layers   []string
}

// archiveMeta are the files of an archive read into memory, not stored as
// blobs.
var archiveMeta = map[string]bool{"manifest.json": true, indexFile: true, layoutFile: true, "repositories": true}

// archive is what Load learned from a tar stream: the blobs stored from its
// files, its links and its metadata files.
type archive struct {
	files map[string]ocispec.Descriptor
	links map[string]string
	meta  map[string][]byte
}

// lookup finds the blob stored from the file at name, following links.
func (a *archive) lookup(name string) (ocispec.Descriptor, error) {
	p, err := cleanArchivePath(name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for range 16 {
		if d, ok := a.files[p]; ok {
			return d, nil
		}
		t, ok := a.links[p]
		if !ok {
			return ocispec.Descriptor{}, fmt.Errorf("%w: %q is not a file in the archive", ErrInvalid, name)
		}
		p = t
	}
	return ocispec.Descriptor{}, fmt.Errorf("%w: %q: too many links", ErrInvalid, name)
}

// cleanArchivePath checks a name inside an archive: relative, and never
// out of the archive through "..".
func cleanArchivePath(name string) (string, error) {
	p := strings.TrimPrefix(name, "./")
	if p == "" || path.IsAbs(p) || strings.Contains(p, "\\") {
		return "", fmt.Errorf("%w: unsafe path %q in archive", ErrInvalid, name)
	}
	for _, e := range strings.Split(p, "/") {
		if e == ".." {
			return "", fmt.Errorf("%w: unsafe path %q in archive", ErrInvalid, name)
		}
	}
	return path.Clean(p), nil
}

// Load reads a `docker save` archive from r and adds its images to the
// store. Both forms docker writes are understood: manifest.json with a
// config and layer tars per image, and (docker 25 and later, and Save) an
// OCI layout inside the archive, which is preferred when present because
// it keeps the manifests' digests. From manifest.json an OCI manifest is
// made for each image, with layers stored as they are (media type
// application/vnd.oci.image.layer.v1.tar, or +gzip or +zstd when
// compressed) after checking them against the config's diff IDs; the
// images are named by their RepoTags. Images without a name are returned
// with an empty Name and not named. On any error (a path out of the
// archive, a missing or mismatching blob, malformed JSON) Load returns it
// and removes the blobs it had added; the store is as it was.
func (s *Store) Load(ctx context.Context, r io.Reader) (imgs []Image, err error) {
	var created []digest.Digest
	defer func() {
		if err != nil {
			s.rollback(created)
		}
	}()
	a := &archive{files: map[string]ocispec.Descriptor{}, links: map[string]string{}, meta: map[string][]byte{}}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("load: %w: read archive: %v", ErrInvalid, err)
		}
		name, err := cleanArchivePath(hdr.Name)
		if err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
		switch hdr.Typeflag {
		case tar.TypeDir, tar.TypeXGlobalHeader:
		case tar.TypeReg:
			if archiveMeta[name] {
				if hdr.Size > maxJSONSize {
					return nil, fmt.Errorf("load: %w: %s is larger than %d bytes", ErrInvalid, name, maxJSONSize)
				}
				b, err := io.ReadAll(tr)
				if err != nil {
					return nil, fmt.Errorf("load: %w: read %s: %v", ErrInvalid, name, err)
				}
				a.meta[name] = b
				continue
			}
			var expected digest.Digest
			if dir, enc := path.Split(name); strings.HasPrefix(dir, blobsDir+"/") && strings.Count(dir, "/") == 2 {
				if d := digest.NewDigestFromEncoded(digest.Algorithm(strings.TrimSuffix(dir[len(blobsDir)+1:], "/")), enc); d.Validate() == nil {
					expected = d
				}
			}
			if hdr.Size == 0 && expected == "" {
				expected = digest.Canonical.FromBytes(nil)
			}
			desc, made, err := s.put(ctx, "", tr, expected, hdr.Size)
			if err != nil {
				if errors.Is(err, io.ErrUnexpectedEOF) {
					err = fmt.Errorf("%w: %v", ErrInvalid, err)
				}
				return nil, fmt.Errorf("load: %s: %w", name, err)
			}
			if made {
				created = append(created, desc.Digest)
			}
			a.files[name] = desc
			delete(a.links, name)
		case tar.TypeSymlink:
			if path.IsAbs(hdr.Linkname) {
				return nil, fmt.Errorf("load: %w: symlink %s points to absolute path %q", ErrInvalid, name, hdr.Linkname)
			}
			t, err := cleanArchivePath(path.Join(path.Dir(name), hdr.Linkname))
			if err != nil {
				return nil, fmt.Errorf("load: symlink %s -> %s: %w", name, hdr.Linkname, err)
			}
			a.links[name] = t
			delete(a.files, name)
		case tar.TypeLink:
			t, err := cleanArchivePath(hdr.Linkname)
			if err != nil {
				return nil, fmt.Errorf("load: hard link %s: %w", name, err)
			}
			a.links[name] = t
			delete(a.files, name)
		default:
			return nil, fmt.Errorf("load: %w: %s: unsupported entry type %q", ErrInvalid, name, hdr.Typeflag)
		}
	}
	switch {
	case a.meta[indexFile] != nil:
		imgs, err = s.loadOCI(ctx, a)
	case a.meta["manifest.json"] != nil:
		imgs, err = s.loadDocker(ctx, a)
	default:
		err = fmt.Errorf("%w: not a docker save or OCI archive: no manifest.json or index.json", ErrInvalid)
	}
	if err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	// Keep what the images reach; drop the rest this call added (the
	// legacy <id>/json and VERSION files, layers nothing names).
	live := make(map[digest.Digest]bool)
	for _, img := range imgs {
		if err := walkGraph(ctx, s.dir, img.Target, false, func(d ocispec.Descriptor, _ bool) error {
			live[d.Digest] = true
			return nil
		}); err != nil {
			return nil, fmt.Errorf("load: %w", err)
		}
	}
	var unused []digest.Digest
	for _, d := range created {
		if !live[d] {
			unused = append(unused, d)
		}
	}
	if err := s.tag(ctx, named(imgs)); err != nil {
		return nil, fmt.Errorf("load: %w", err)
	}
	s.rollback(unused)
	return imgs, nil
}

// loadOCI takes the images of the OCI layout inside an archive, whose blobs
// are in the store by now.
func (s *Store) loadOCI(ctx context.Context, a *archive) ([]Image, error) {
	if b := a.meta[layoutFile]; b != nil {
		var lay ocispec.ImageLayout
		if err := json.Unmarshal(b, &lay); err != nil || lay.Version != ocispec.ImageLayoutVersion {
			return nil, fmt.Errorf("%w: %s in archive: want version %q", ErrInvalid, layoutFile, ocispec.ImageLayoutVersion)
		}
	}
	idx, err := parseIndex(indexFile+" in archive", a.meta[indexFile])
	if err != nil {
		return nil, err
	}
	// RepoTags name the entries that carry no name, by config.
	tags := make(map[digest.Digest][]string)
	if b := a.meta["manifest.json"]; b != nil {
		var mf []dockerManifest
		if err := json.Unmarshal(b, &mf); err != nil {
			return nil, fmt.Errorf("%w: manifest.json in archive: %v", ErrInvalid, err)
		}
		for _, e := range mf {
			if c, err := a.lookup(e.Config); err == nil {
				tags[c.Digest] = append(tags[c.Digest], e.RepoTags...)
			}
		}
	}
	now := time.Now().UTC()
	var imgs []Image
	for i, e := range idx.Manifests {
		if !isManifestType(e.MediaType) && !isIndexType(e.MediaType) {
			return nil, fmt.Errorf("%w: %s in archive: manifests[%d] (%s): media type %q is not an image manifest or index", ErrInvalid, indexFile, i, e.Digest, e.MediaType)
		}
		if err := walkGraph(ctx, s.dir, e, true, func(ocispec.Descriptor, bool) error { return nil }); err != nil {
			return nil, err
		}
		name, err := importName(e)
		if err != nil {
			return nil, fmt.Errorf("%s in archive: manifests[%d]: %w", indexFile, i, err)
		}
		img := toImage(e)
		if img.Created.IsZero() {
			img.Created = now
		}
		names := []string{name}
		if name == "" && isManifestType(e.MediaType) {
			if m, err := s.dir.readBlob(e); err == nil {
				if _, n, err := parseNode(e.Digest, e.MediaType, m); err == nil {
					if t := tags[n.Config.Digest]; len(t) > 0 {
						if names, err = normalizeAll(t); err != nil {
							return nil, fmt.Errorf("manifest.json in archive: %w", err)
						}
					}
				}
			}
		}
		for _, n := range names {
			img.Name = n
			imgs = append(imgs, img)
		}
	}
	return imgs, nil
}

func normalizeAll(names []string) ([]string, error) {
	out := make([]string, len(names))
	for i, n := range names {
		ref, err := ParseReference(n)
		if err != nil {
			return nil, err
		}
		out[i] = ref.String()
	}
	return out, nil
}

// loadDocker makes OCI manifests for the images of a docker save
// manifest.json.
func (s *Store) loadDocker(ctx context.Context, a *archive) ([]Image, error) {
	var mf []dockerManifest
	if err := json.Unmarshal(a.meta["manifest.json"], &mf); err != nil {
		return nil, fmt.Errorf("%w: manifest.json: %v", ErrInvalid, err)
	}
	if len(mf) == 0 {
		return nil, fmt.Errorf("%w: manifest.json lists no images", ErrInvalid)
	}
	type layerInfo struct {
		mediaType string
		diffID    digest.Digest
	}
	layers := make(map[digest.Digest]layerInfo) // each layer is looked at once
	now := time.Now().UTC()
	var imgs []Image
	for i, e := range mf {
		bad := func(err error) ([]Image, error) {
			return nil, fmt.Errorf("manifest.json[%d]: %w", i, err)
		}
		names, err := normalizeAll(e.RepoTags)
		if err != nil {
			return bad(err)
		}
		cd, err := a.lookup(e.Config)
		if err != nil {
			return bad(fmt.Errorf("config: %w", err))
		}
		cb, err := s.dir.readBlob(cd)
		if err != nil {
			return bad(fmt.Errorf("config: %w", err))
		}
		var cfg ocispec.Image
		if err := json.Unmarshal(cb, &cfg); err != nil {
			return bad(fmt.Errorf("%w: config %s: %v", ErrInvalid, e.Config, err))
		}
		if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
			return bad(fmt.Errorf("%w: %d layers, the config has %d diff IDs", ErrInvalid, len(e.Layers), len(cfg.RootFS.DiffIDs)))
		}
		m := ocispec.Manifest{
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd.Digest, Size: cd.Size},
			Layers:    make([]ocispec.Descriptor, 0, len(e.Layers)),
		}
		m.SchemaVersion = 2
		for j, l := range e.Layers {
			ld, err := a.lookup(l)
			if err != nil {
				return bad(fmt.Errorf("layer %d: %w", j, err))
			}
			li, ok := layers[ld.Digest]
			if !ok {
				li.mediaType, li.diffID, err = s.layerInfo(ld.Digest)
				if err != nil {
					return bad(fmt.Errorf("layer %s: %w", l, err))
				}
				layers[ld.Digest] = li
			}
			mt, diffID := li.mediaType, li.diffID
			if diffID != "" && diffID != cfg.RootFS.DiffIDs[j] {
				return bad(fmt.Errorf("%w: layer %s has diff ID %s, the config says %s", ErrDigestMismatch, l, diffID, cfg.RootFS.DiffIDs[j]))
			}
			m.Layers = append(m.Layers, ocispec.Descriptor{MediaType: mt, Digest: ld.Digest, Size: ld.Size})
		}
		mb, err := json.Marshal(m)
		if err != nil {
			return bad(err)
		}
		md, err := s.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
		if err != nil {
			return bad(err)
		}
		if len(names) == 0 {
			names = []string{""}
		}
		for _, n := range names {
			imgs = append(imgs, Image{Name: n, Target: md, Created: now})
		}
	}
	return imgs, nil
}

// layerInfo tells a layer's media type from its first bytes and computes
// its diff ID (the digest of the uncompressed tar), "" for zstd, which is
// stored unchecked.
func (s *Store) layerInfo(d digest.Digest) (string, digest.Digest, error) {
	f, err := s.dir.open(d)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var magic [4]byte
	n, _ := io.ReadFull(f, magic[:])
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return "", "", err
		}
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", "", fmt.Errorf("%w: gzip: %v", ErrInvalid, err)
		}
		diffID, err := digest.Canonical.FromReader(zr)
		if err != nil {
			return "", "", fmt.Errorf("%w: gzip: %v", ErrInvalid, err)
		}
		return ocispec.MediaTypeImageLayerGzip, diffID, nil
	case n == 4 && bytes.Equal(magic[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return ocispec.MediaTypeImageLayerZstd, "", nil
	case n >= 3 && string(magic[:3]) == "BZh", n == 4 && bytes.Equal(magic[:], []byte{0xfd, '7', 'z', 'X'}):
		return "", "", fmt.Errorf("%w: bzip2 and xz layers are not supported", ErrInvalid)
	}
	return ocispec.MediaTypeImageLayer, d, nil
}

// Save writes the named images to w as a `docker save` archive, which
// `docker load` and skopeo's docker-archive: read: manifest.json with
// RepoTags, and each config and layer once under blobs/sha256/. It also
// holds an OCI layout (oci-layout, index.json and the manifests), as docker
// 25 and later write, so oci-archive: readers and Load keep the manifests'
// digests. An index is saved as the manifest for the host's platform.
// Layers are written as stored (docker load decompresses them). No names
// means every named image; an unknown name is ErrNotFound. Blobs are
// verified as they are written.
func (s *Store) Save(ctx context.Context, w io.Writer, names ...string) error {
	imgs, err := s.selectImages(ctx, names)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	type saved struct {
		manifest ocispec.Descriptor
		m        ocispec.Manifest
		names    []string
	}
	var order []*saved
	byDigest := make(map[digest.Digest]*saved)
	for _, img := range imgs {
		md, m, _, err := s.manifest(ctx, img.Target, nil)
		if err != nil {
			return fmt.Errorf("save %s: %w", img.Name, err)
		}
		sv := byDigest[md.Digest]
		if sv == nil {
			sv = &saved{manifest: ocispec.Descriptor{MediaType: md.MediaType, Digest: md.Digest, Size: md.Size}, m: m}
			byDigest[md.Digest] = sv
			order = append(order, sv)
		}
		sv.names = append(sv.names, img.Name)
	}

	tw := tar.NewWriter(w)
	epoch := time.Unix(0, 0)
	dirs := make(map[string]bool)
	written := make(map[digest.Digest]bool)
	writeBlob := func(d ocispec.Descriptor) error {
		if written[d.Digest] {
			return nil
		}
		written[d.Digest] = true
		dir := blobsDir + "/" + string(d.Digest.Algorithm()) + "/"
		for _, p := range []string{blobsDir + "/", dir} {
			if !dirs[p] {
				dirs[p] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: p, Mode: 0o755, ModTime: epoch}); err != nil {
					return err
				}
			}
		}
		f, err := s.dir.open(d.Digest)
		if err != nil {
			return err
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + d.Digest.Encoded(), Mode: 0o644, Size: st.Size(), ModTime: epoch}); err != nil {
			return err
		}
		v := d.Digest.Verifier()
		if _, err := copyContext(ctx, io.MultiWriter(tw, v), io.LimitReader(f, st.Size())); err != nil {
			return err
		}
		if !v.Verified() {
			return fmt.Errorf("%w: blob %s in the store does not match its digest", ErrDigestMismatch, d.Digest)
		}
		return nil
	}
	writeFile := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: epoch}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}

	var mf []dockerManifest
	idx := newIndex()
	for _, sv := range order {
		e := dockerManifest{Config: blobName(sv.m.Config.Digest), RepoTags: []string{}, Layers: []string{}}
		if err := writeBlob(sv.m.Config); err != nil {
			return fmt.Errorf("save: %w", err)
		}
		for _, l := range sv.m.Layers {
			if err := writeBlob(l); err != nil {
				return fmt.Errorf("save: %w", err)
			}
			e.Layers = append(e.Layers, blobName(l.Digest))
		}
		if err := writeBlob(sv.manifest); err != nil {
			return fmt.Errorf("save: %w", err)
		}
		for _, n := range sv.names {
			d := sv.manifest
			d.Annotations = map[string]string{ocispec.AnnotationRefName: n, AnnotationName: n, annotationContainerdName: n}
			idx.Manifests = append(idx.Manifests, d)
			if ref, err := ParseReference(n); err == nil && ref.Tag != "" {
				ref.Digest = ""
				e.RepoTags = append(e.RepoTags, ref.Familiar())
			}
		}
		mf = append(mf, e)
	}
	mfb, err := json.Marshal(mf)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	ib, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("save: %w", err)
	}
	lb, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
	for _, f := range []struct {
		name string
		b    []byte
	}{{indexFile, ib}, {"manifest.json", mfb}, {layoutFile, lb}} {
		if err := writeFile(f.name, f.b); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func blobName(d digest.Digest) string {
	return blobsDir + "/" + string(d.Algorithm()) + "/" + d.Encoded()
}

// copyContext is io.Copy that stops when ctx is done.
func copyContext(ctx context.Context, w io.Writer, r io.Reader) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := r.Read(buf)
		if m > 0 {
			k, werr := w.Write(buf[:m])
			n += int64(k)
			if werr != nil {
				return n, werr
			}
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}
