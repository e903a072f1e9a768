package layer

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"time"

	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ImportDirs stores a new image named name (untagged when "") whose
// layers are the directory trees dirs, bottom first, each taken whole,
// with cfg as its configuration (ENTRYPOINT, CMD, Env, ...), for the
// host's platform. It is `docker import` of root filesystems, and how
// tests and examples build images without a registry.
func (s *Store) ImportDirs(ctx context.Context, name string, cfg ocispec.ImageConfig, dirs ...string) (ocispec.Descriptor, error) {
	empty, err := os.MkdirTemp("", "berth-import-")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import %s: %w", name, err)
	}
	defer os.Remove(empty)
	release, err := s.Hold(ctx)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("import %s: %w", name, err)
	}
	defer release()
	now := time.Now().UTC()
	img := ocispec.Image{
		Created:  &now,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		Config:   cfg,
		RootFS:   ocispec.RootFS{Type: "layers"},
	}
	var layers []ocispec.Descriptor
	for _, dir := range dirs {
		desc, diffID, err := s.writeLayer(ctx, empty, dir)
		if err != nil {
			return ocispec.Descriptor{}, fmt.Errorf("import %s: %s: %w", name, dir, err)
		}
		layers = append(layers, desc)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, diffID)
		img.History = append(img.History, ocispec.History{Created: &now, CreatedBy: "berth import " + dir})
	}
	return s.putImage(ctx, name, img, layers, nil)
}

// putImage stores the config img and a manifest of layers, and tags the
// manifest name unless name is "".
func (s *Store) putImage(ctx context.Context, name string, img ocispec.Image, layers []ocispec.Descriptor, annotations map[string]string) (ocispec.Descriptor, error) {
	cb, err := json.Marshal(img)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return s.putConfig(ctx, name, cb, layers, annotations)
}

// putConfig is putImage with the config as JSON.
func (s *Store) putConfig(ctx context.Context, name string, cb []byte, layers []ocispec.Descriptor, annotations map[string]string) (ocispec.Descriptor, error) {
	cfgDesc, err := s.Content.Put(ctx, ocispec.MediaTypeImageConfig, bytes.NewReader(cb), "")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store config: %w", err)
	}
	m := ocispec.Manifest{
		Versioned:   specsv.Versioned{SchemaVersion: 2},
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      cfgDesc,
		Layers:      layers,
		Annotations: annotations,
	}
	mb, err := json.Marshal(m)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	md, err := s.Content.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("store manifest: %w", err)
	}
	if name != "" {
		if err := s.Content.Tag(ctx, name, md); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return md, nil
}
