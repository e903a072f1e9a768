package content

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportLayout copies the images of the OCI image layout in dir into the
// store: every blob they reach, verified against its digest, then their
// names, all in one update of index.json. Names come from AnnotationName,
// containerd's io.containerd.image.name or the OCI ref.name annotation,
// normalized with ParseReference; entries without a name are copied and
// returned with an empty Name but not named (GC will remove them unless
// they are tagged). When anything is wrong (a digest mismatch, a missing
// blob, a malformed manifest, an entry that is not an image manifest or
// index) it returns the error and removes the blobs it had added.
func (s *Store) ImportLayout(ctx context.Context, dir string) (imgs []Image, err error) {
	src := layoutDir(dir)
	if err := src.checkLayout(); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			err = fmt.Errorf("%w: %s is not an OCI image layout: no %s", ErrInvalid, dir, layoutFile)
		}
		return nil, fmt.Errorf("import layout: %w", err)
	}
	idx, err := src.readIndex()
	if err != nil {
		return nil, fmt.Errorf("import layout %s: %w", dir, err)
	}
	var created []digest.Digest
	defer func() {
		if err != nil {
			s.rollback(created)
		}
	}()
	now := time.Now().UTC()
	for i, e := range idx.Manifests {
		if !isManifestType(e.MediaType) && !isIndexType(e.MediaType) {
			return nil, fmt.Errorf("import layout %s: %w: manifests[%d] (%s): media type %q is not an image manifest or index", dir, ErrInvalid, i, e.Digest, e.MediaType)
		}
		name, err := importName(e)
		if err != nil {
			return nil, fmt.Errorf("import layout %s: manifests[%d]: %w", dir, i, err)
		}
		if err := s.copyGraph(ctx, src, e, &created); err != nil {
			return nil, fmt.Errorf("import layout %s: %w", dir, err)
		}
		img := toImage(e)
		img.Name = name
		if img.Created.IsZero() {
			img.Created = now
		}
		imgs = append(imgs, img)
	}
	if err := s.tag(ctx, named(imgs)); err != nil {
		return nil, fmt.Errorf("import layout %s: %w", dir, err)
	}
	return imgs, nil
}

// importName is the normalized name of an entry of another layout.
func importName(d ocispec.Descriptor) (string, error) {
	for _, k := range []string{AnnotationName, annotationContainerdName, ocispec.AnnotationRefName} {
		if n := d.Annotations[k]; n != "" {
			ref, err := ParseReference(n)
			if err != nil {
				return "", fmt.Errorf("annotation %s: %w", k, err)
			}
			return ref.String(), nil
		}
	}
	return "", nil
}

func named(imgs []Image) []Image {
	var out []Image
	for _, img := range imgs {
		if img.Name != "" {
			out = append(out, img)
		}
	}
	return out
}

// copyGraph copies root and what it reaches from src into s, verifying every
// blob, and appends the digests it added to created.
func (s *Store) copyGraph(ctx context.Context, src layoutDir, root ocispec.Descriptor, created *[]digest.Digest) error {
	return walkGraph(ctx, src, root, true, func(d ocispec.Descriptor, present bool) error {
		if !present {
			return nil
		}
		f, err := src.open(d.Digest)
		if err != nil {
			return err
		}
		defer f.Close()
		_, made, err := s.put(ctx, d.MediaType, f, d.Digest, d.Size)
		if err != nil {
			return err
		}
		if made {
			*created = append(*created, d.Digest)
		}
		return nil
	})
}

// rollback deletes the blobs a failed import added.
func (s *Store) rollback(created []digest.Digest) {
	ctx := context.Background()
	for _, d := range created {
		_ = s.Delete(ctx, d)
	}
}

// ExportLayout writes the named images into an OCI image layout in dir
// (created if missing; an existing layout there is added to), with just
// the blobs they reach and their names. No names means every named image.
// An unknown name is ErrNotFound.
func (s *Store) ExportLayout(ctx context.Context, dir string, names ...string) (err error) {
	imgs, err := s.selectImages(ctx, names)
	if err != nil {
		return fmt.Errorf("export layout: %w", err)
	}
	dst, err := Open(dir)
	if err != nil {
		return fmt.Errorf("export layout: %w", err)
	}
	var created []digest.Digest
	defer func() {
		if err != nil {
			dst.rollback(created)
		}
	}()
	for _, img := range imgs {
		if err := dst.copyGraph(ctx, s.dir, img.Target, &created); err != nil {
			return fmt.Errorf("export layout: %s: %w", img.Name, err)
		}
	}
	if err := dst.tag(ctx, imgs); err != nil {
		return fmt.Errorf("export layout: %w", err)
	}
	return nil
}

// selectImages resolves names, or lists every named image when there are
// none.
func (s *Store) selectImages(ctx context.Context, names []string) ([]Image, error) {
	if len(names) == 0 {
		return s.Images(ctx)
	}
	imgs := make([]Image, 0, len(names))
	for _, n := range names {
		img, err := s.resolve(ctx, n)
		if err != nil {
			return nil, err
		}
		imgs = append(imgs, img)
	}
	return imgs, nil
}
