package layer

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/berthlabs/berth/layer/snapshot"
)

// directDir returns the directory that the mounts of a snapshot show,
// when it can be used without mounting them: the source of a single bind
// mount (a whole tree; read-write unless ro), or the upper directory of a
// single overlay mount (overlay is true: the snapshot's own layer, with
// overlayfs whiteouts). ok is false for anything else, and for a bind
// mount that is read-only when write is set; such mounts are mounted to
// be used.
func directDir(ms []snapshot.Mount, write bool) (dir string, overlay, ok bool) {
	if len(ms) != 1 {
		return "", false, false
	}
	m := ms[0]
	switch {
	case m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind"):
		if write && slices.Contains(m.Options, "ro") {
			return "", false, false
		}
		return m.Source, false, m.Source != ""
	case m.Type == "overlay":
		upper := ""
		for _, o := range m.Options {
			switch {
			case strings.HasPrefix(o, "upperdir="):
				upper = strings.TrimPrefix(o, "upperdir=")
			}
		}
		return upper, true, upper != ""
	}
	return "", false, false
}

// withDir calls fn with the directory that ms show: directly where
// directDir allows, else mounted on a temporary directory for the call
// (overlay is false then: the directory is the whole tree).
func withDir(ms []snapshot.Mount, write bool, fn func(dir string, overlay bool) error) (err error) {
	if dir, overlay, ok := directDir(ms, write); ok {
		return fn(dir, overlay)
	}
	tmp, err := os.MkdirTemp("", "berth-layer-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.Remove(tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()
	if err := snapshot.MountAll(ms, tmp); err != nil {
		return err
	}
	defer func() {
		if uerr := snapshot.Unmount(tmp); uerr != nil {
			err = errors.Join(err, fmt.Errorf("unmount snapshot: %w", uerr))
		}
	}()
	return fn(tmp, false)
}

// withView calls fn with the whole tree of the committed snapshot name,
// read through a view of it that is removed afterwards (an empty
// directory for name ""). The view also keeps name from being removed
// meanwhile.
func (s *Store) withView(ctx context.Context, name string, fn func(dir string) error) (err error) {
	if name == "" {
		empty, err := os.MkdirTemp("", "berth-empty-")
		if err != nil {
			return err
		}
		defer os.Remove(empty)
		return fn(empty)
	}
	key := viewPrefix + randomID() + "-" + name
	ms, err := s.Snapshots.View(ctx, key, name, WithOwner())
	if err != nil {
		return err
	}
	defer func() {
		if rerr := s.Snapshots.Remove(context.Background(), key); rerr != nil && err == nil {
			err = rerr
		}
	}()
	return withDir(ms, false, func(dir string, overlay bool) error {
		if overlay {
			return fmt.Errorf("view of %s is an overlay with an upper directory", name)
		}
		return fn(dir)
	})
}
