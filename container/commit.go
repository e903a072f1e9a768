package container

import (
	"context"
	"fmt"

	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Commit makes a new image of the container's changes, as `docker
// commit` does: the image the container was created from plus one layer
// of what the container added, changed and deleted in its root
// filesystem, with the configuration changes of opts, stored in the
// runtime's layer store (Runtime.Images) and tagged name when name is not
// "" (it overrides opts.Name). It returns the new image manifest's
// descriptor; see layer.Store.Commit.
//
// It works on a created, running, paused or stopped container. A running
// one is paused while its layer is written and resumed afterwards, so that
// the layer is consistent. Only a container made from an image (Spec.Image)
// can be committed; others get an error wrapping ErrInvalidSpec. Commit
// also fails when the image name now leads to another image than the one
// the container was created from.
func (c *Container) Commit(ctx context.Context, name string, opts layer.CommitOptions) (_ ocispec.Descriptor, err error) {
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return ocispec.Descriptor{}, fmt.Errorf("commit: %w", err)
	}
	image, state := c.spec.Image, c.state
	c.mu.Unlock()
	if image == "" {
		return ocispec.Descriptor{}, fmt.Errorf("commit %s: %w: the container was not created from an image (Spec.Image), so it has no layers to add to", c.id, ErrInvalidSpec)
	}
	if c.rt.Images == nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit %s: %w: the runtime has no layer store (Runtime.Images)", c.id, ErrInvalidSpec)
	}
	if name != "" {
		opts.Name = name
	}
	if state == Running {
		if perr := c.Pause(); perr == nil {
			defer func() {
				// The container may have been killed meanwhile; then
				// there is nothing to resume.
				if rerr := c.Resume(); rerr != nil && c.State() == Paused && err == nil {
					err = fmt.Errorf("commit %s: %w", c.id, rerr)
				}
			}()
		}
		// An error means it stopped meanwhile: commit it as it is.
	}
	base, err := c.rt.Images.Unpack(ctx, image)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit %s: base image: %w", c.id, err)
	}
	desc, err := c.rt.Images.Commit(ctx, snapshotKey(c.id), base, opts)
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit %s: %w", c.id, err)
	}
	return desc, nil
}
