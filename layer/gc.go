package layer

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/berthlabs/berth/internal/lockfile"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// GCStats tells what GC removed.
type GCStats struct {
	// Snapshots are the names of the committed snapshots (unpacked
	// layers) removed, children before their parents.
	Snapshots []string
	// Blobs are the digests of the blobs removed from the content store.
	Blobs []digest.Digest
}

// GC removes what no named image needs, like `docker image prune`:
// first the unpacked layers (committed snapshots) whose chain ID no layer
// of a named image has (for the host's platform) and that have no
// children, repeatedly, so a chain goes from the top down; then every
// blob that no name reaches (content.Store.GC). Active snapshots and
// views of live owners, the root filesystems of containers, are never
// removed, and neither are the layers under them, even when their image
// is no longer named. Nor are snapshots committed while GC runs. The
// roots (SetRoot) keep what they reach as names do.
//
// GC first removes the active snapshots and views of owners that have
// died (see LabelOwner). It waits, within ctx, for every holder of the
// store (Hold: Commit, ImportDirs, Unpack, Prepare and the registry's
// Pull, in this process and in others) and holds new ones off until it is
// done, so that nothing written but not yet named is taken. It removes
// nothing when a named image cannot be read (ErrInvalid from the content
// store); a name whose image has no manifest for this platform keeps
// nothing.
func (s *Store) GC(ctx context.Context) (GCStats, error) {
	var st GCStats
	start := time.Now()
	l, err := lockfile.Lock(ctx, filepath.Join(s.root, gcLockFile), lockfile.Exclusive, true)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	defer l.Unlock()
	if err := s.Sweep(ctx); err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}

	roots, err := s.rootDigests(ctx)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	keep, err := s.chainIDs(ctx, roots)
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	var infos []snapshot.Info
	children := make(map[string]int)
	err = s.Snapshots.Walk(ctx, func(i snapshot.Info) error {
		infos = append(infos, i)
		if i.Parent != "" {
			children[i.Parent]++
		}
		return nil
	})
	if err != nil {
		return st, fmt.Errorf("gc: %w", err)
	}
	byName := make(map[string]snapshot.Info, len(infos))
	for _, i := range infos {
		byName[i.Name] = i
	}
	removable := func(i snapshot.Info) bool {
		return i.Kind == snapshot.KindCommitted && !keep[i.Name] && children[i.Name] == 0 && i.Updated.Before(start)
	}
	var queue []string
	for _, i := range infos {
		if removable(i) {
			queue = append(queue, i.Name)
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		err := s.Snapshots.Remove(ctx, name)
		if errors.Is(err, snapshot.ErrInUse) || errors.Is(err, snapshot.ErrNotFound) {
			continue // a child appeared, or someone else removed it
		}
		if err != nil {
			return st, fmt.Errorf("gc: %w", err)
		}
		st.Snapshots = append(st.Snapshots, name)
		if p := byName[name].Parent; p != "" {
			children[p]--
			if pi, ok := byName[p]; ok && removable(pi) {
				queue = append(queue, p)
			}
		}
	}
	blobs, err := s.Content.GC(ctx, roots...)
	st.Blobs = blobs
	if err != nil {
		return st, err
	}
	return st, nil
}

// chainIDs returns the chain ID of every layer of every named image and
// of every root (SetRoot).
func (s *Store) chainIDs(ctx context.Context, roots []digest.Digest) (map[string]bool, error) {
	imgs, err := s.Content.Images(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range roots {
		imgs = append(imgs, content.Image{Name: "root " + d.String(), Target: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: d}})
	}
	keep := make(map[string]bool)
	for _, img := range imgs {
		_, cfg, err := s.Content.Manifest(ctx, img.Target, nil)
		if errors.Is(err, content.ErrNotFound) {
			continue // no manifest for this platform: nothing was unpacked
		}
		if err != nil {
			return nil, fmt.Errorf("image %s: %w", img.Name, err)
		}
		for _, id := range ChainIDs(slices.Clip(cfg.RootFS.DiffIDs)) {
			keep[id.String()] = true
		}
	}
	return keep, nil
}
