package containertest

import (
	"context"
	"fmt"
	"testing"

	"github.com/berthlabs/berth/container"
)

// NewVolume makes a named volume for the test t (`docker volume
// create`): sandboxes mount it with WithVolume, share it while they run
// and find in it what earlier ones wrote. t.Cleanup removes it after the
// test's sandboxes. Volumes are kept in the cache directory's "volumes".
func NewVolume(t testing.TB) string {
	t.Helper()
	c, err := cacheFor()
	if err != nil {
		t.Fatal(err)
	}
	name := newID()
	if _, err := c.rt.CreateVolume(context.Background(), name, container.VolumeOptions{}); err != nil {
		t.Fatal(fmt.Errorf("containertest: %w", err))
	}
	t.Cleanup(func() {
		if err := c.rt.RemoveVolume(context.Background(), name, true); err != nil {
			t.Errorf("containertest: remove volume %s: %v", name, err)
		}
	})
	return name
}

// WithVolume mounts the named volume on target (docker run -v
// NAME:TARGET, plus mount options such as "ro" or "nocopy"). A volume
// that does not exist is made, empty; when the image has files at target,
// a new, empty volume gets a copy of them first, as with Docker.
func WithVolume(name, target string, options ...string) Option {
	return WithMounts(container.Mount{Type: container.VolumeMount, Source: name, Target: target, Options: options})
}
