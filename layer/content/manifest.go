package content

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's media types, which registries still serve and the store keeps as
// they are.
const (
	mediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
)

// maxDepth bounds how deep indexes may nest.
const maxDepth = 8

func isManifestType(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mediaTypeDockerManifest
}

func isIndexType(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mediaTypeDockerManifestList
}

func isConfigType(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == mediaTypeDockerConfig
}

// node is what the graph needs of a manifest or an index.
type node struct {
	SchemaVersion int                  `json:"schemaVersion"`
	MediaType     string               `json:"mediaType,omitempty"`
	Config        *ocispec.Descriptor  `json:"config,omitempty"`
	Layers        []ocispec.Descriptor `json:"layers,omitempty"`
	Manifests     []ocispec.Descriptor `json:"manifests,omitempty"`
}

// sniffType tells a manifest or index from its JSON, "" for anything else.
func sniffType(b []byte) string {
	var n node
	if json.Unmarshal(b, &n) != nil {
		return ""
	}
	switch {
	case n.MediaType != "":
		return n.MediaType
	case n.SchemaVersion != 2:
		return ""
	case n.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case n.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}

// parseNode decodes a manifest or index of media type mt (or the one its
// JSON declares when mt is empty) and checks its descriptors.
func parseNode(d digest.Digest, mt string, b []byte) (string, node, error) {
	var n node
	if err := json.Unmarshal(b, &n); err != nil {
		return "", n, fmt.Errorf("%w: manifest %s: %v", ErrInvalid, d, err)
	}
	switch {
	case mt == "":
		mt = sniffType(b)
	case n.MediaType != "" && n.MediaType != mt:
		return "", n, fmt.Errorf("%w: manifest %s: media type %q, its descriptor says %q", ErrInvalid, d, n.MediaType, mt)
	}
	if !isManifestType(mt) && !isIndexType(mt) {
		return "", n, fmt.Errorf("%w: blob %s: unsupported media type %q: not an image manifest or index", ErrInvalid, d, mt)
	}
	if n.SchemaVersion != 2 {
		return "", n, fmt.Errorf("%w: manifest %s: schemaVersion %d, want 2", ErrInvalid, d, n.SchemaVersion)
	}
	check := func(what string, c ocispec.Descriptor) error {
		if err := checkDigest(c.Digest); err != nil {
			return fmt.Errorf("manifest %s: %s: %w", d, what, err)
		}
		if c.Size < 0 {
			return fmt.Errorf("%w: manifest %s: %s: negative size", ErrInvalid, d, what)
		}
		return nil
	}
	if isManifestType(mt) {
		if n.Config == nil {
			return "", n, fmt.Errorf("%w: manifest %s: no config", ErrInvalid, d)
		}
		if err := check("config", *n.Config); err != nil {
			return "", n, err
		}
		for i, l := range n.Layers {
			if err := check(fmt.Sprintf("layers[%d]", i), l); err != nil {
				return "", n, err
			}
		}
		n.Manifests = nil
	} else {
		for i, m := range n.Manifests {
			if err := check(fmt.Sprintf("manifests[%d]", i), m); err != nil {
				return "", n, err
			}
		}
		n.Config, n.Layers = nil, nil
	}
	return mt, n, nil
}

// walkGraph visits root and every blob it reaches in l, each digest once,
// parents before children. A manifest or index that is present is read,
// verified and descended into; one of another media type is a leaf. visit
// learns whether each blob is present. strict makes a missing root, config
// or layer an ErrNotFound error and checks the leaves; a missing manifest
// of an index is never an error (an index often names platforms that were
// not fetched). A root without a media type is sniffed.
func walkGraph(ctx context.Context, l layoutDir, root ocispec.Descriptor, strict bool, visit func(d ocispec.Descriptor, present bool) error) error {
	seen := make(map[digest.Digest]bool)
	var walk func(d ocispec.Descriptor, depth int, required bool) error
	walk = func(d ocispec.Descriptor, depth int, required bool) error {
		if seen[d.Digest] {
			return nil
		}
		seen[d.Digest] = true
		if err := ctx.Err(); err != nil {
			return err
		}
		if depth > maxDepth {
			return fmt.Errorf("%w: indexes nested more than %d deep at %s", ErrInvalid, maxDepth, d.Digest)
		}
		mt := d.MediaType
		if mt == "" && depth == 0 {
			if n, err := l.size(d.Digest); err == nil && n <= maxJSONSize {
				if b, err := l.readBlob(d); err == nil {
					mt = sniffType(b)
					d.MediaType = mt
				}
			}
		}
		if !isManifestType(mt) && !isIndexType(mt) {
			present := true
			if strict || depth == 0 {
				if _, err := l.size(d.Digest); errors.Is(err, ErrNotFound) {
					if required {
						return err
					}
					present = false
				} else if err != nil {
					return err
				}
			}
			return visit(d, present)
		}
		b, err := l.readBlob(d)
		if errors.Is(err, ErrNotFound) {
			if required && (strict || depth == 0) {
				return err
			}
			return visit(d, false)
		}
		if err != nil {
			return err
		}
		_, n, err := parseNode(d.Digest, mt, b)
		if err != nil {
			return err
		}
		if err := visit(d, true); err != nil {
			return err
		}
		for _, c := range n.Manifests {
			if err := walk(c, depth+1, false); err != nil {
				return err
			}
		}
		if n.Config != nil {
			if err := walk(*n.Config, depth+1, true); err != nil {
				return fmt.Errorf("config of %s: %w", d.Digest, err)
			}
		}
		for _, c := range n.Layers {
			if err := walk(c, depth+1, true); err != nil {
				return fmt.Errorf("layer of %s: %w", d.Digest, err)
			}
		}
		return nil
	}
	if err := checkDigest(root.Digest); err != nil {
		return err
	}
	return walk(root, 0, true)
}

// References returns the digests of desc and of every blob it reaches: the
// manifests of an index, the config and layers of a manifest. Blobs that
// are named but missing (an index's platforms that were not fetched) are
// listed without being descended into. A missing desc is ErrNotFound; a
// malformed manifest is ErrInvalid.
func (s *Store) References(ctx context.Context, desc ocispec.Descriptor) ([]digest.Digest, error) {
	var out []digest.Digest
	err := walkGraph(ctx, s.dir, desc, false, func(d ocispec.Descriptor, _ bool) error {
		out = append(out, d.Digest)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("references of %s: %w", desc.Digest, err)
	}
	return out, nil
}

// GC removes every blob that no entry of index.json (named or not) and no
// digest in keep reaches, and returns the digests it removed. It holds the
// index lock, so names do not change meanwhile; blobs that are put but not
// yet named must be in keep to survive. It removes nothing when a named
// manifest cannot be read.
func (s *Store) GC(ctx context.Context, keep ...digest.Digest) ([]digest.Digest, error) {
	unlock, err := s.lockIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	defer unlock()
	idx, err := s.dir.readIndex()
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	roots := append([]ocispec.Descriptor(nil), idx.Manifests...)
	for _, k := range keep {
		if err := checkDigest(k); err != nil {
			return nil, fmt.Errorf("gc: keep: %w", err)
		}
		roots = append(roots, ocispec.Descriptor{Digest: k})
	}
	live := make(map[digest.Digest]bool)
	for _, r := range roots {
		err := walkGraph(ctx, s.dir, r, false, func(d ocispec.Descriptor, _ bool) error {
			live[d.Digest] = true
			return nil
		})
		if err != nil && !errors.Is(err, ErrNotFound) {
			return nil, fmt.Errorf("gc: %w", err)
		}
	}
	var removed []digest.Digest
	err = s.Walk(ctx, func(d digest.Digest, _ int64) error {
		if live[d] {
			return nil
		}
		if err := s.Delete(ctx, d); err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		removed = append(removed, d)
		return nil
	})
	if err != nil {
		return removed, fmt.Errorf("gc: %w", err)
	}
	if err := s.cleanBlobTemps(); err != nil {
		return removed, fmt.Errorf("gc: %w", err)
	}
	return removed, nil
}

// Manifest returns the image manifest desc leads to and its config. An
// index (or docker manifest list) is followed to the manifest for platform,
// or for the host's OS and architecture when platform is nil; a platform
// without a variant matches any variant. When platform is given and desc
// is a manifest, its config must be for that OS and architecture. No match
// is ErrNotFound; media types other than image manifests, indexes and
// configs (OCI or docker) are ErrInvalid. Every blob read is verified.
func (s *Store) Manifest(ctx context.Context, desc ocispec.Descriptor, platform *ocispec.Platform) (ocispec.Manifest, ocispec.Image, error) {
	_, m, img, err := s.manifest(ctx, desc, platform)
	return m, img, err
}

// manifest is Manifest, also returning the manifest's descriptor.
func (s *Store) manifest(ctx context.Context, desc ocispec.Descriptor, platform *ocispec.Platform) (ocispec.Descriptor, ocispec.Manifest, ocispec.Image, error) {
	fail := func(err error) (ocispec.Descriptor, ocispec.Manifest, ocispec.Image, error) {
		return ocispec.Descriptor{}, ocispec.Manifest{}, ocispec.Image{}, fmt.Errorf("manifest of %s: %w", desc.Digest, err)
	}
	want := platform
	if want == nil {
		want = &ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
	}
	cur := desc
	for depth := 0; ; depth++ {
		if err := ctx.Err(); err != nil {
			return fail(err)
		}
		if depth > maxDepth {
			return fail(fmt.Errorf("%w: indexes nested more than %d deep", ErrInvalid, maxDepth))
		}
		if err := checkDigest(cur.Digest); err != nil {
			return fail(err)
		}
		b, err := s.readBlobCached(cur)
		if err != nil {
			return fail(err)
		}
		mt, n, err := parseNode(cur.Digest, cur.MediaType, b)
		if err != nil {
			return fail(err)
		}
		cur.MediaType = mt
		if isIndexType(mt) {
			next, ok := MatchPlatform(n.Manifests, want)
			if !ok {
				return fail(fmt.Errorf("%w: no manifest for platform %s", ErrNotFound, platformString(want)))
			}
			cur = next
			continue
		}
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return fail(fmt.Errorf("%w: manifest %s: %v", ErrInvalid, cur.Digest, err))
		}
		if !isConfigType(m.Config.MediaType) {
			return fail(fmt.Errorf("%w: manifest %s: config media type %q is not an image config", ErrInvalid, cur.Digest, m.Config.MediaType))
		}
		cb, err := s.readBlobCached(m.Config)
		if err != nil {
			return fail(fmt.Errorf("config: %w", err))
		}
		var img ocispec.Image
		if err := json.Unmarshal(cb, &img); err != nil {
			return fail(fmt.Errorf("%w: config %s: %v", ErrInvalid, m.Config.Digest, err))
		}
		if platform != nil && (img.OS != platform.OS || img.Architecture != platform.Architecture) {
			return fail(fmt.Errorf("%w: image is for %s/%s, not %s", ErrNotFound, img.OS, img.Architecture, platformString(platform)))
		}
		return cur, m, img, nil
	}
}

// matchPlatform picks the first manifest of an index for p. Entries without
// a platform are taken when none has a matching one.
func MatchPlatform(ms []ocispec.Descriptor, p *ocispec.Platform) (ocispec.Descriptor, bool) {
	for _, m := range ms {
		if m.Platform != nil && (isManifestType(m.MediaType) || isIndexType(m.MediaType)) &&
			m.Platform.OS == p.OS && m.Platform.Architecture == p.Architecture &&
			(p.Variant == "" || normVariant(m.Platform) == normVariant(p)) {
			return m, true
		}
	}
	for _, m := range ms {
		if m.Platform == nil && (isManifestType(m.MediaType) || isIndexType(m.MediaType)) {
			return m, true
		}
	}
	return ocispec.Descriptor{}, false
}

func normVariant(p *ocispec.Platform) string {
	switch {
	case p.Architecture == "arm64" && p.Variant == "":
		return "v8"
	case p.Architecture == "arm" && p.Variant == "":
		return "v7"
	}
	return p.Variant
}

func platformString(p *ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}
