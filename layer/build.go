package layer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Layer is a layer that CommitSnapshot wrote from a snapshot.
type Layer struct {
	// Descriptor is the layer's gzip-compressed blob in the content store.
	Descriptor ocispec.Descriptor
	// DiffID is the digest of the uncompressed layer.
	DiffID digest.Digest
	// ChainID names the committed snapshot that holds the layer on top
	// of its parents.
	ChainID string
}

// CommitSnapshot writes what changed in the active snapshot key (against
// its parent) as a gzip-compressed layer blob, as Commit does, and then
// commits key itself as the committed snapshot named by the layer's chain
// ID, so that the next layer can be prepared on it at once, without
// unpacking the blob again: what an image builder does after each step.
// With overlayfs the layer is the snapshot's upper directory as it is, so
// the work is proportional to the change. Unmount key first.
//
// When a snapshot of that chain ID exists already (the same change was
// made before), key is removed and the existing one is used. On error key
// is left as it was. The blob is not named: hold the store (Hold) until
// an image or a root (SetRoot) that reaches it is written.
func (s *Store) CommitSnapshot(ctx context.Context, key string) (Layer, error) {
	fail := func(err error) (Layer, error) {
		return Layer{}, fmt.Errorf("commit snapshot %s: %w", key, err)
	}
	info, err := s.Snapshots.Stat(ctx, key)
	if err != nil {
		return fail(err)
	}
	if info.Kind != snapshot.KindActive {
		return fail(fmt.Errorf("%w: snapshot is %s, not active", snapshot.ErrInvalid, info.Kind))
	}
	ms, err := s.Snapshots.Mounts(ctx, key)
	if err != nil {
		return fail(err)
	}
	release, err := s.Hold(ctx)
	if err != nil {
		return fail(err)
	}
	defer release()
	var l Layer
	if upper, overlay, ok := directDir(ms, false); ok && overlay {
		l.Descriptor, l.DiffID, err = s.writeLayer(ctx, "", upper)
	} else {
		err = s.withView(ctx, info.Parent, func(lower string) error {
			return withDir(ms, false, func(upper string, _ bool) error {
				l.Descriptor, l.DiffID, err = s.writeLayer(ctx, lower, upper)
				return err
			})
		})
	}
	if err != nil {
		return fail(err)
	}
	l.ChainID = l.DiffID.String()
	if info.Parent != "" {
		l.ChainID = digest.FromString(info.Parent + " " + l.DiffID.String()).String()
	}
	err = s.Snapshots.Commit(ctx, l.ChainID, key, withoutOwner)
	if errors.Is(err, snapshot.ErrExists) {
		if rerr := s.Release(ctx, key); rerr != nil {
			return fail(rerr)
		}
		return l, nil
	}
	if err != nil {
		return fail(err)
	}
	return l, nil
}

// PutImage stores config, an image configuration as JSON (OCI's, or
// Docker's with its extra fields such as Healthcheck and OnBuild, kept as
// they are), and a manifest of layers, bottom first, and tags the manifest
// name unless name is "". It returns the manifest's descriptor. The
// config's rootfs.diff_ids must match layers; that is the caller's to
// ensure.
func (s *Store) PutImage(ctx context.Context, name string, config []byte, layers []ocispec.Descriptor) (ocispec.Descriptor, error) {
	release, err := s.Hold(ctx)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	defer release()
	if !json.Valid(config) {
		return ocispec.Descriptor{}, fmt.Errorf("put image %s: config is not JSON", name)
	}
	return s.putConfig(ctx, name, config, layers, nil)
}

// rootsDir holds the GC roots: ROOT/roots/NAME, each a descriptor as JSON.
const rootsDir = "roots"

// SetRoot records desc, an image manifest in the content store, as the GC
// root name: GC keeps it, the blobs it reaches and the unpacked layers of
// its image as it keeps those of a named image, but it is no image name
// (Content.Images does not list it). Roots are for what a tool keeps for
// itself, such as a build cache (container/build keeps its cache entries
// as roots whose names start with "build-cache-"). name is letters,
// digits, '.', '_' and '-'. Setting a root that exists replaces it.
func (s *Store) SetRoot(ctx context.Context, name string, desc ocispec.Descriptor) error {
	if err := checkRootName(name); err != nil {
		return err
	}
	b, err := json.Marshal(desc)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.root, rootsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("layer: set root %s: %w", name, err)
	}
	f, err := os.CreateTemp(dir, ".tmp-")
	if err != nil {
		return fmt.Errorf("layer: set root %s: %w", name, err)
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("layer: set root %s: %w", name, err)
	}
	return nil
}

// GetRoot returns the descriptor of the root name; a missing root is an
// error wrapping os.ErrNotExist.
func (s *Store) GetRoot(ctx context.Context, name string) (ocispec.Descriptor, error) {
	if err := checkRootName(name); err != nil {
		return ocispec.Descriptor{}, err
	}
	b, err := os.ReadFile(filepath.Join(s.root, rootsDir, name))
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer: root %s: %w", name, err)
	}
	var d ocispec.Descriptor
	if err := json.Unmarshal(b, &d); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer: root %s: %w", name, err)
	}
	if err := d.Digest.Validate(); err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("layer: root %s: %w", name, err)
	}
	return d, nil
}

// RemoveRoot removes the root name, if it exists; the next GC removes
// what only it kept.
func (s *Store) RemoveRoot(ctx context.Context, name string) error {
	if err := checkRootName(name); err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(s.root, rootsDir, name)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("layer: remove root %s: %w", name, err)
	}
	return nil
}

// Roots returns the names of the roots that start with prefix, in
// directory order.
func (s *Store) Roots(ctx context.Context, prefix string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(s.root, rootsDir))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("layer: roots: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasPrefix(n, prefix) && checkRootName(n) == nil {
			names = append(names, n)
		}
	}
	return names, nil
}

// rootDigests returns the digest of every root; a root that cannot be
// read keeps nothing.
func (s *Store) rootDigests(ctx context.Context) ([]digest.Digest, error) {
	names, err := s.Roots(ctx, "")
	if err != nil {
		return nil, err
	}
	var out []digest.Digest
	for _, n := range names {
		d, err := s.GetRoot(ctx, n)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d.Digest)
	}
	return out, nil
}

func checkRootName(name string) error {
	if name == "" || name[0] == '.' || len(name) > 200 {
		return fmt.Errorf("layer: bad root name %q", name)
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-') {
			return fmt.Errorf("layer: bad root name %q", name)
		}
	}
	return nil
}

// Root returns the store's root directory. Tools that keep their own
// state next to the store's (container/build's file-hash cache in
// ROOT/build) find it here; what is under it is the store's to manage
// otherwise.
func (s *Store) Root() string { return s.root }
