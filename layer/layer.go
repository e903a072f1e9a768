// Package layer is berth's image and layer storage, what Docker calls its
// image store and storage driver: a content store in the OCI image-layout
// format (layer/content), layers unpacked once per chain and shared as
// committed snapshots (layer/archive onto layer/snapshot), and writable
// copy-on-write root filesystems for containers.
//
// A layer is unpacked into the snapshot named by its chain ID (the OCI
// image-spec's identity of a layer on top of its parents), so every image
// and container that shares a chain of layers shares one copy on disk.
package layer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berthlabs/berth/layer/archive"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store holds images and their unpacked layers under one directory:
// ROOT/content is an OCI image layout, ROOT/snapshots the snapshots.
type Store struct {
	// Content is the blob and image store.
	Content *content.Store
	// Snapshots holds unpacked layers and containers' root filesystems.
	Snapshots snapshot.Snapshotter

	root string

	mu        sync.Mutex
	unpacking map[string]*call // chain ID -> unpack in progress
}

type call struct {
	done chan struct{}
	err  error
}

// Open opens (creating if needed) the store at root.
func Open(root string) (*Store, error) {
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	sn, err := snapshot.New(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	s := &Store{Content: cs, Snapshots: sn, root: root, unpacking: map[string]*call{}}
	if err := s.cleanLeftovers(context.Background()); err != nil {
		sn.Close()
		return nil, fmt.Errorf("layer: %w", err)
	}
	return s, nil
}

// extractPrefix names the active snapshots layers are unpacked into
// before they are committed under their chain ID; viewPrefix the views
// Commit reads a base image's tree through.
const (
	extractPrefix = "extract-"
	viewPrefix    = "commit-base-"
)

// cleanLeftovers removes the half-unpacked layers and the views of a
// process that died while unpacking or committing. The snapshot store is
// locked to one Store at a time, so any such snapshot found at Open is a
// leftover.
func (s *Store) cleanLeftovers(ctx context.Context) error {
	var stale []string
	err := s.Snapshots.Walk(ctx, func(i snapshot.Info) error {
		if i.Kind == snapshot.KindActive && strings.HasPrefix(i.Name, extractPrefix) ||
			i.Kind == snapshot.KindView && strings.HasPrefix(i.Name, viewPrefix) {
			stale = append(stale, i.Name)
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range stale {
		if err := s.Snapshots.Remove(ctx, k); err != nil && !errors.Is(err, snapshot.ErrNotFound) {
			return fmt.Errorf("remove leftover snapshot %s: %w", k, err)
		}
	}
	return nil
}

// Close releases the store.
func (s *Store) Close() error { return s.Snapshots.Close() }

// Image is an image resolved and unpacked in the store.
type Image struct {
	// Name is the image's normalized name.
	Name string
	// Manifest is the image manifest (for the host's platform when the
	// name leads to an index).
	Manifest ocispec.Manifest
	// Config is the image configuration: Entrypoint, Cmd, Env, ...
	Config ocispec.Image
	// ChainID names the committed snapshot of the image's top layer; ""
	// for an image without layers.
	ChainID string
}

// ChainIDs returns the chain ID of each layer given the layers' diff IDs
// (the digests of their uncompressed tars), as the OCI image spec
// defines them.
func ChainIDs(diffIDs []digest.Digest) []digest.Digest {
	out := make([]digest.Digest, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d
			continue
		}
		out[i] = digest.FromString(out[i-1].String() + " " + d.String())
	}
	return out
}

// Unpack makes sure every layer of the image called name is unpacked, each
// once per chain, verified against the config's diff IDs, and returns the
// image. Concurrent calls for the same layers unpack them once.
func (s *Store) Unpack(ctx context.Context, name string) (*Image, error) {
	desc, err := s.Content.Resolve(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", name, err)
	}
	m, cfg, err := s.Content.Manifest(ctx, desc, nil)
	if err != nil {
		return nil, fmt.Errorf("unpack %s: %w", name, err)
	}
	if len(m.Layers) != len(cfg.RootFS.DiffIDs) {
		return nil, fmt.Errorf("unpack %s: %d layers but %d diff IDs in the config", name, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}
	img := &Image{Name: name, Manifest: m, Config: cfg}
	chain := ChainIDs(cfg.RootFS.DiffIDs)
	parent := ""
	for i, l := range m.Layers {
		id := chain[i].String()
		if err := s.unpackOnce(ctx, id, parent, l, cfg.RootFS.DiffIDs[i], nil); err != nil {
			return nil, fmt.Errorf("unpack %s: layer %d (%s): %w", name, i, l.Digest, err)
		}
		parent = id
	}
	img.ChainID = parent
	return img, nil
}

// UnpackLayer unpacks one layer on top of the committed snapshot parent
// ("" for a first layer) unless that chain is unpacked already, and
// returns the layer's chain ID: the snapshot to use as the next layer's
// parent. It is Unpack one layer at a time, for a puller that unpacks
// layers while later ones still download.
//
// The layer's blob is read from r, or from the content store when r is
// nil; a puller passes the download itself to unpack while it arrives.
// The unpacked layer is kept only if its uncompressed content matches
// diffID (which vouches for it whatever r yields). r is not read at all
// when the chain exists already and may be left unread after the end of
// the tar stream: the caller drains or closes it.
func (s *Store) UnpackLayer(ctx context.Context, parent string, l ocispec.Descriptor, diffID digest.Digest, r io.Reader) (string, error) {
	id := diffID
	if parent != "" {
		id = digest.FromString(parent + " " + diffID.String())
	}
	if err := s.unpackOnce(ctx, id.String(), parent, l, diffID, r); err != nil {
		return "", fmt.Errorf("unpack layer %s: %w", l.Digest, err)
	}
	return id.String(), nil
}

// unpackOnce unpacks one layer into the committed snapshot id, unless it
// exists or another goroutine is doing it.
func (s *Store) unpackOnce(ctx context.Context, id, parent string, l ocispec.Descriptor, diffID digest.Digest, r io.Reader) error {
	for {
		if _, err := s.Snapshots.Stat(ctx, id); err == nil {
			return nil
		}
		s.mu.Lock()
		c, busy := s.unpacking[id]
		if !busy {
			c = &call{done: make(chan struct{})}
			s.unpacking[id] = c
		}
		s.mu.Unlock()
		if busy {
			select {
			case <-c.done:
				// Done or failed: look again, and unpack it ourselves
				// if it is not there. Another caller's failure (its
				// context ended, its stream broke) is not ours.
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		c.err = s.unpack(ctx, id, parent, l, diffID, r)
		s.mu.Lock()
		delete(s.unpacking, id)
		s.mu.Unlock()
		close(c.done)
		return c.err
	}
}

func (s *Store) unpack(ctx context.Context, id, parent string, l ocispec.Descriptor, diffID digest.Digest, r io.Reader) (err error) {
	key := extractPrefix + randomID() + "-" + id
	ms, err := s.Snapshots.Prepare(ctx, key, parent)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.Snapshots.Remove(context.Background(), key)
		}
	}()
	if r == nil {
		blob, err := s.Content.Open(ctx, l.Digest)
		if err != nil {
			return err
		}
		defer blob.Close()
		r = blob
	}
	// Write into the snapshot's own directory where its mounts name one
	// (an overlay's upper directory takes the layer with overlayfs
	// whiteouts), else through the mounts.
	err = withDir(ms, true, func(dir string, overlay bool) error {
		st, err := archive.Apply(ctx, dir, r, archive.Options{OverlayWhiteouts: overlay})
		if err != nil {
			return err
		}
		if st.DiffID != diffID {
			return fmt.Errorf("uncompressed layer is %s, the config says %s", st.DiffID, diffID)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.Snapshots.Commit(ctx, id, key)
	if errors.Is(err, snapshot.ErrExists) {
		// Someone else (another process) committed it first.
		s.Snapshots.Remove(context.Background(), key)
		return nil
	}
	return err
}

// Prepare unpacks the image called name and prepares a writable
// snapshot on it under key, for a container's root filesystem. It
// returns the image and the mounts that make the root filesystem.
func (s *Store) Prepare(ctx context.Context, key, name string) (*Image, []snapshot.Mount, error) {
	img, err := s.Unpack(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	mounts, err := s.Snapshots.Prepare(ctx, key, img.ChainID)
	if err != nil {
		return nil, nil, fmt.Errorf("prepare root filesystem %s of %s: %w", key, name, err)
	}
	return img, mounts, nil
}

// MountPoint returns an empty directory under the store for mounting the
// snapshot key on (ROOT/mounts/KEY), creating it.
func (s *Store) MountPoint(key string) (string, error) {
	if key == "" || strings.ContainsAny(key, "/\x00") || key == "." || key == ".." {
		return "", fmt.Errorf("layer: bad mount point key %q", key)
	}
	dir := filepath.Join(s.root, "mounts", key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("layer: %w", err)
	}
	return dir, nil
}

// Release removes the snapshot key and its mount point (nothing may be
// mounted on it any more).
func (s *Store) Release(ctx context.Context, key string) error {
	err := s.Snapshots.Remove(ctx, key)
	if errors.Is(err, snapshot.ErrNotFound) {
		err = nil
	}
	if rerr := os.Remove(filepath.Join(s.root, "mounts", key)); rerr != nil && !os.IsNotExist(rerr) && err == nil {
		err = rerr
	}
	return err
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
