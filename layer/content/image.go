package content

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Image is a named image in the store: an entry of index.json.
type Image struct {
	// Name is the full normalized name, as ParseReference makes it:
	// "docker.io/library/busybox:latest".
	Name string
	// Target is the descriptor of the image manifest or index the name
	// leads to, with the annotations it was tagged with, less the ones
	// the store adds for the name.
	Target ocispec.Descriptor
	// Created is when the name was given, or zero when the entry was not
	// written by berth.
	Created time.Time
}

// entryName is the name of an index.json entry: AnnotationName,
// containerd's name, or the OCI ref.name, normalized when it parses as a
// reference; "" when it has none.
func entryName(d ocispec.Descriptor) string {
	if n := d.Annotations[AnnotationName]; n != "" {
		return n
	}
	for _, k := range []string{annotationContainerdName, ocispec.AnnotationRefName} {
		if n := d.Annotations[k]; n != "" {
			if ref, err := ParseReference(n); err == nil {
				return ref.String()
			}
			return n
		}
	}
	return ""
}

// stripNames returns d without the annotations that name it.
func stripNames(d ocispec.Descriptor) ocispec.Descriptor {
	if len(d.Annotations) == 0 {
		return d
	}
	a := maps.Clone(d.Annotations)
	for _, k := range []string{AnnotationName, AnnotationCreated, annotationContainerdName, ocispec.AnnotationRefName} {
		delete(a, k)
	}
	if len(a) == 0 {
		a = nil
	}
	d.Annotations = a
	return d
}

func toImage(d ocispec.Descriptor) Image {
	img := Image{Name: entryName(d), Target: stripNames(d)}
	if t, err := time.Parse(time.RFC3339Nano, d.Annotations[AnnotationCreated]); err == nil {
		img.Created = t
	}
	return img
}

// Tag names desc, a manifest or index already in the store, replacing what
// the name led to before. name is normalized with ParseReference; a name
// with a digest must carry desc's digest. A desc without a media type gets
// the one its JSON declares, and one without a size gets the blob's. A
// missing blob is ErrNotFound; a blob that is not an image manifest or
// index is ErrInvalid.
func (s *Store) Tag(ctx context.Context, name string, desc ocispec.Descriptor) error {
	ref, err := ParseReference(name)
	if err != nil {
		return fmt.Errorf("tag: %w", err)
	}
	if ref.Digest != "" && ref.Digest != desc.Digest {
		return fmt.Errorf("tag %s: %w: the name pins digest %s, the descriptor is %s", name, ErrInvalid, ref.Digest, desc.Digest)
	}
	desc, err = s.checkTarget(desc)
	if err != nil {
		return fmt.Errorf("tag %s: %w", name, err)
	}
	return s.tag(ctx, []Image{{Name: ref.String(), Target: desc, Created: time.Now().UTC()}})
}

// checkTarget checks that desc is a manifest or index in the store and fills
// in its media type and size.
func (s *Store) checkTarget(desc ocispec.Descriptor) (ocispec.Descriptor, error) {
	if err := checkDigest(desc.Digest); err != nil {
		return desc, err
	}
	n, err := s.dir.size(desc.Digest)
	if err != nil {
		return desc, err
	}
	if desc.Size == 0 {
		desc.Size = n
	} else if desc.Size != n {
		return desc, fmt.Errorf("%w: blob %s has %d bytes, the descriptor says %d", ErrInvalid, desc.Digest, n, desc.Size)
	}
	if desc.MediaType == "" {
		b, err := s.dir.readBlob(desc)
		if err != nil {
			return desc, err
		}
		desc.MediaType = sniffType(b)
	}
	if !isManifestType(desc.MediaType) && !isIndexType(desc.MediaType) {
		return desc, fmt.Errorf("%w: blob %s: media type %q is not an image manifest or index", ErrInvalid, desc.Digest, desc.MediaType)
	}
	return desc, nil
}

// tag writes names into index.json in one update. Each Name must be
// normalized already.
func (s *Store) tag(ctx context.Context, imgs []Image) error {
	if len(imgs) == 0 {
		return nil
	}
	return s.updateIndex(ctx, func(idx *ocispec.Index) error {
		for _, img := range imgs {
			// Under the index lock, so that GC cannot take the target
			// away between this check and the name.
			if _, err := s.dir.size(img.Target.Digest); err != nil {
				return fmt.Errorf("tag %s: %w", img.Name, err)
			}
			idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
				return entryName(d) == img.Name || d.Annotations[ocispec.AnnotationRefName] == img.Name
			})
			d := stripNames(img.Target)
			d.Annotations = maps.Clone(d.Annotations)
			if d.Annotations == nil {
				d.Annotations = make(map[string]string)
			}
			d.Annotations[ocispec.AnnotationRefName] = img.Name
			d.Annotations[AnnotationName] = img.Name
			if !img.Created.IsZero() {
				d.Annotations[AnnotationCreated] = img.Created.Format(time.RFC3339Nano)
			}
			idx.Manifests = append(idx.Manifests, d)
		}
		return nil
	})
}

// Resolve returns the descriptor a name leads to, normalized with
// ParseReference. A name with a digest also finds an image of that
// repository tagged by another name with that digest. A name that does not
// parse is looked up as it is in the entries' ref.name annotations, for
// layouts written by other tools. An unknown name is ErrNotFound.
func (s *Store) Resolve(ctx context.Context, name string) (ocispec.Descriptor, error) {
	img, err := s.resolve(ctx, name)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return img.Target, nil
}

func (s *Store) resolve(ctx context.Context, name string) (Image, error) {
	if err := ctx.Err(); err != nil {
		return Image{}, err
	}
	idx, err := s.readIndexCached()
	if err != nil {
		return Image{}, fmt.Errorf("resolve %s: %w", name, err)
	}
	ref, perr := ParseReference(name)
	var found *ocispec.Descriptor
	for i := range idx.Manifests {
		d := &idx.Manifests[i]
		switch {
		case perr == nil && entryName(*d) == ref.String():
			found = d
		case perr != nil && d.Annotations[ocispec.AnnotationRefName] == name:
			found = d
		}
	}
	if found == nil && perr == nil && ref.Digest != "" {
		for i := range idx.Manifests {
			d := &idx.Manifests[i]
			if d.Digest != ref.Digest {
				continue
			}
			if r, err := ParseReference(entryName(*d)); err == nil && r.Name() == ref.Name() {
				found = d
			}
		}
	}
	if found == nil {
		if perr != nil {
			return Image{}, fmt.Errorf("resolve: %w", perr)
		}
		return Image{}, fmt.Errorf("resolve %s: %w", ref, ErrNotFound)
	}
	img := toImage(*found)
	if p := img.Target.Platform; p != nil { // shared with readIndexCached's
		cp := *p
		img.Target.Platform = &cp
	}
	if perr == nil {
		img.Name = ref.String()
	} else {
		img.Name = name
	}
	return img, nil
}

// Images returns the named images, sorted by name. Entries of index.json
// without a name are left out.
func (s *Store) Images(ctx context.Context) ([]Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	idx, err := s.dir.readIndex()
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	var out []Image
	seen := make(map[string]bool)
	for i := len(idx.Manifests) - 1; i >= 0; i-- { // the last entry of a name wins
		img := toImage(idx.Manifests[i])
		if img.Name == "" || seen[img.Name] {
			continue
		}
		seen[img.Name] = true
		out = append(out, img)
	}
	slices.SortFunc(out, func(a, b Image) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	return out, nil
}

// Untag removes a name. Blobs stay until GC. An unknown name is
// ErrNotFound.
func (s *Store) Untag(ctx context.Context, name string) error {
	ref, perr := ParseReference(name)
	err := s.updateIndex(ctx, func(idx *ocispec.Index) error {
		n := len(idx.Manifests)
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(d ocispec.Descriptor) bool {
			if perr != nil {
				return d.Annotations[ocispec.AnnotationRefName] == name
			}
			return entryName(d) == ref.String()
		})
		if len(idx.Manifests) == n {
			if perr != nil {
				return perr
			}
			return fmt.Errorf("%s: %w", ref, ErrNotFound)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("untag: %w", err)
	}
	return nil
}
