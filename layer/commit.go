package layer

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/berthlabs/berth/layer/archive"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CommitOptions say what Commit writes besides the new layer: the
// image's name and the changes to its configuration, like the flags of
// `docker commit` and its --change instructions. The zero value keeps the
// base image's configuration and names nothing.
type CommitOptions struct {
	// Name tags the new image (normalized as content.ParseReference
	// does). Without a name the image is not named, and the next GC
	// removes it: Tag the returned descriptor to keep it.
	Name string
	// Author is the config's author; "" keeps the base image's.
	Author string
	// Comment is the history entry's comment (docker commit -m).
	Comment string
	// CreatedBy is the history entry's created_by; "" means
	// "berth commit".
	CreatedBy string

	// Entrypoint replaces the ENTRYPOINT when not nil. As Dockerfile's
	// ENTRYPOINT does, it also clears the base image's CMD unless Cmd is
	// given too.
	Entrypoint []string
	// Cmd replaces the CMD when not nil.
	Cmd []string
	// Env sets variables, as Dockerfile's ENV does: each "NAME=value"
	// replaces the base image's NAME or is appended.
	Env []string
	// WorkingDir replaces the working directory when not "".
	WorkingDir string
	// User replaces the user when not "".
	User string
	// ExposedPorts are added to the base image's ("8080/tcp").
	ExposedPorts []string
	// Volumes are added to the base image's.
	Volumes []string
	// Labels are added to the base image's, replacing the same keys.
	Labels map[string]string
	// StopSignal replaces the stop signal when not "".
	StopSignal string
}

// Commit turns the active snapshot key, a container's root filesystem
// prepared on base's top layer, into a new image, as `docker commit`
// does: base's layers plus one gzip-compressed layer of what changed in
// key (files added or changed, whiteouts for what was deleted), base's
// config with the layer's diff ID, a history entry and the changes of
// opts, and a manifest; it returns the manifest's descriptor, tagged
// opts.Name when that is set. The layer is streamed: the tar is hashed and
// compressed on its way into the content store. What changed is read
// through the snapshot's Mounts: the upper directory of an overlay is the
// layer as it is, so with overlayfs the work is proportional to the
// change, not to the image; a whole tree (the copy snapshotter's bind
// mount) is compared with the base's, read through a view of it (file
// contents only where metadata cannot tell). Mounts of other kinds are
// mounted for the time of the commit.
//
// Do not let anything write to key meanwhile (pause the container, as
// Container.Commit does): a file that changes while it is read can make
// Commit fail. The snapshot is left as it was, still active; the new
// layer is not unpacked into a committed snapshot until an Unpack of the
// new image needs it.
//
// A missing key is snapshot.ErrNotFound; a key that is not an active
// snapshot, or one prepared on another layer than base's top one, is
// snapshot.ErrInvalid.
func (s *Store) Commit(ctx context.Context, key string, base *Image, opts CommitOptions) (ocispec.Descriptor, error) {
	fail := func(err error) (ocispec.Descriptor, error) {
		return ocispec.Descriptor{}, fmt.Errorf("commit %s: %w", key, err)
	}
	if base == nil {
		return fail(fmt.Errorf("%w: no base image", snapshot.ErrInvalid))
	}
	info, err := s.Snapshots.Stat(ctx, key)
	if err != nil {
		return fail(err)
	}
	if info.Kind != snapshot.KindActive {
		return fail(fmt.Errorf("%w: snapshot is %s, not active", snapshot.ErrInvalid, info.Kind))
	}
	if info.Parent != base.ChainID {
		return fail(fmt.Errorf("%w: snapshot was prepared on %q, not on the top layer %q of %s", snapshot.ErrInvalid, info.Parent, base.ChainID, base.Name))
	}
	ms, err := s.Snapshots.Mounts(ctx, key)
	if err != nil {
		return fail(err)
	}

	// Hold off GC, in every process, until the new image is named.
	release, err := s.Hold(ctx)
	if err != nil {
		return fail(err)
	}
	defer release()

	var (
		layerDesc ocispec.Descriptor
		diffID    digest.Digest
	)
	if upper, overlay, ok := directDir(ms, false); ok && overlay {
		// The snapshot's upper directory is the change.
		layerDesc, diffID, err = s.writeLayer(ctx, "", upper)
	} else {
		// A whole tree: compare it with the base's.
		err = s.withView(ctx, base.ChainID, func(lower string) error {
			return withDir(ms, false, func(upper string, _ bool) error {
				layerDesc, diffID, err = s.writeLayer(ctx, lower, upper)
				return err
			})
		})
	}
	if err != nil {
		return fail(err)
	}
	cfg, err := commitConfig(base.Config, diffID, opts)
	if err != nil {
		return fail(err)
	}
	var ann map[string]string
	if base.Name != "" {
		ann = map[string]string{ocispec.AnnotationBaseImageName: base.Name}
	}
	md, err := s.putImage(ctx, opts.Name, cfg, append(slices.Clip(base.Manifest.Layers), layerDesc), ann)
	if err != nil {
		return fail(err)
	}
	return md, nil
}

// writeLayer stores the gzip-compressed layer of upper's changes (against
// lower, or as an overlayfs upper directory when lower is "") and returns
// its descriptor and diff ID. The tar is streamed: it is hashed and
// compressed on its way into the blob.
func (s *Store) writeLayer(ctx context.Context, lower, upper string) (ocispec.Descriptor, digest.Digest, error) {
	pr, pw := io.Pipe()
	h := sha256.New()
	done := make(chan struct{})
	go func() {
		defer close(done)
		zw, _ := gzip.NewWriterLevel(pw, gzip.BestSpeed)
		w := io.MultiWriter(h, zw)
		var err error
		if lower == "" {
			err = archive.DiffOverlay(ctx, w, upper)
		} else {
			err = archive.Diff(ctx, w, lower, upper)
		}
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	desc, err := s.Content.Put(ctx, ocispec.MediaTypeImageLayerGzip, pr, "")
	pr.CloseWithError(io.ErrClosedPipe) // ends the writer if Put stopped early
	<-done
	if err != nil {
		return ocispec.Descriptor{}, "", fmt.Errorf("write layer: %w", err)
	}
	return desc, digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), nil
}

// commitConfig returns base with the new layer's diff ID, a history entry
// and opts' changes. base is not changed.
func commitConfig(base ocispec.Image, diffID digest.Digest, opts CommitOptions) (ocispec.Image, error) {
	now := time.Now().UTC()
	img := base
	img.Created = &now
	if opts.Author != "" {
		img.Author = opts.Author
	}
	img.RootFS.Type = "layers"
	img.RootFS.DiffIDs = append(slices.Clip(base.RootFS.DiffIDs), diffID)

	// The history has an entry per layer (and more for empty layers):
	// give the base's layers that lack one an empty entry, so that the
	// new entry lines up with the new layer.
	img.History = slices.Clone(base.History)
	n := 0
	for _, h := range img.History {
		if !h.EmptyLayer {
			n++
		}
	}
	for ; n < len(base.RootFS.DiffIDs); n++ {
		img.History = append(img.History, ocispec.History{})
	}
	by := opts.CreatedBy
	if by == "" {
		by = "berth commit"
	}
	img.History = append(img.History, ocispec.History{Created: &now, CreatedBy: by, Author: opts.Author, Comment: opts.Comment})

	c := &img.Config
	if opts.Entrypoint != nil {
		c.Entrypoint = slices.Clone(opts.Entrypoint)
		c.Cmd = nil
	}
	if opts.Cmd != nil {
		c.Cmd = slices.Clone(opts.Cmd)
	}
	c.Env = slices.Clone(c.Env)
	for _, kv := range opts.Env {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || name == "" {
			return img, fmt.Errorf("env %q is not NAME=value", kv)
		}
		i := slices.IndexFunc(c.Env, func(e string) bool { return strings.HasPrefix(e, name+"=") })
		if i >= 0 {
			c.Env[i] = kv
		} else {
			c.Env = append(c.Env, kv)
		}
	}
	if opts.WorkingDir != "" {
		c.WorkingDir = opts.WorkingDir
	}
	if opts.User != "" {
		c.User = opts.User
	}
	if opts.StopSignal != "" {
		c.StopSignal = opts.StopSignal
	}
	if len(opts.ExposedPorts) > 0 {
		c.ExposedPorts = maps.Clone(c.ExposedPorts)
		if c.ExposedPorts == nil {
			c.ExposedPorts = make(map[string]struct{})
		}
		for _, p := range opts.ExposedPorts {
			if !strings.Contains(p, "/") {
				p += "/tcp"
			}
			c.ExposedPorts[p] = struct{}{}
		}
	}
	if len(opts.Volumes) > 0 {
		c.Volumes = maps.Clone(c.Volumes)
		if c.Volumes == nil {
			c.Volumes = make(map[string]struct{})
		}
		for _, v := range opts.Volumes {
			c.Volumes[v] = struct{}{}
		}
	}
	if len(opts.Labels) > 0 {
		c.Labels = maps.Clone(c.Labels)
		if c.Labels == nil {
			c.Labels = make(map[string]string)
		}
		maps.Copy(c.Labels, opts.Labels)
	}
	return img, nil
}
