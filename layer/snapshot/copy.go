package snapshot

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
)

// Copy is a Snapshotter that needs nothing of the kernel or filesystem:
// each active snapshot is a whole directory tree, a copy of its parent's,
// mounted with a bind mount. It is the fallback where overlayfs cannot be
// used (inside some containers, on filesystems overlayfs refuses).
//
// Prepare copies the parent's tree, so it takes time and space in
// proportion to the size of the image. File data is cloned (FICLONE, on
// Btrfs, XFS and other filesystems with reflinks), so it shares blocks
// with the parent where the filesystem can, and copied elsewhere. Hard
// links, symbolic links, device nodes, FIFOs, extended attributes,
// permission bits, owners, and access and modification times are kept.
//
// A view costs nothing: it is a read-only bind mount of its parent's tree.
// Usage of an active or committed snapshot is the size of its whole tree.
type Copy struct {
	st *store
	// noClone is set once FICLONE has failed: the filesystem under the
	// root has no reflinks.
	noClone atomic.Bool
}

var _ Snapshotter = (*Copy)(nil)

// NewCopy opens the copying snapshotter in root, a directory it creates if
// needed; other Snapshotters may share it (see Snapshotter). Call Close
// when done.
func NewCopy(root string) (*Copy, error) {
	c := &Copy{}
	st, err := openStore(root, "copy", c, nil)
	if err != nil {
		return nil, err
	}
	c.st = st
	return c, nil
}

// create makes fs in dir: a copy of the parent's tree for an active
// snapshot, empty otherwise.
func (c *Copy) create(ctx context.Context, dir string, s *snap) error {
	fs := filepath.Join(dir, "fs")
	if s.kind == KindActive && s.parent != nil {
		return copyTree(ctx, c.st.fsDir(s.parent), fs, &c.noClone)
	}
	return os.Mkdir(fs, 0o755)
}

func (c *Copy) mounts(s *snap) []Mount {
	switch {
	case s.kind == KindActive:
		return []Mount{{Type: "bind", Source: c.st.fsDir(s), Options: []string{"bind", "rw"}}}
	case s.parent != nil:
		return []Mount{{Type: "bind", Source: c.st.fsDir(s.parent), Options: []string{"bind", "ro"}}}
	default:
		return []Mount{{Type: "bind", Source: c.st.fsDir(s), Options: []string{"bind", "ro"}}}
	}
}

// Prepare makes an active snapshot, a copy of parent's tree; see
// Snapshotter.
func (c *Copy) Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return c.st.create(ctx, KindActive, key, parent, opts)
}

// View makes a read-only snapshot; see Snapshotter.
func (c *Copy) View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return c.st.create(ctx, KindView, key, parent, opts)
}

// Mounts returns the mounts of an active snapshot or view; see Snapshotter.
func (c *Copy) Mounts(ctx context.Context, key string) ([]Mount, error) {
	return c.st.mounts(ctx, key)
}

// Commit turns an active snapshot into a committed one; see Snapshotter.
func (c *Copy) Commit(ctx context.Context, name, key string, opts ...Opt) error {
	return c.st.commit(ctx, name, key, opts)
}

// Remove deletes a snapshot without children; see Snapshotter.
func (c *Copy) Remove(ctx context.Context, key string) error {
	return c.st.remove(ctx, key)
}

// Stat describes a snapshot; see Snapshotter.
func (c *Copy) Stat(ctx context.Context, key string) (Info, error) {
	return c.st.stat(ctx, key)
}

// Usage reports the disk space of a snapshot's tree (all of it, since it
// is a copy; blocks shared by reflinks are counted in each copy).
func (c *Copy) Usage(ctx context.Context, key string) (Usage, error) {
	return c.st.usage(ctx, key)
}

// Walk calls fn for every snapshot; see Snapshotter.
func (c *Copy) Walk(ctx context.Context, fn func(Info) error) error {
	return c.st.walk(ctx, fn)
}

// Close releases the root; see Snapshotter.
func (c *Copy) Close() error { return c.st.close() }

// Dir returns the directory that holds the snapshot's tree: an active or
// committed snapshot's whole root filesystem. Views have none of their own
// (ErrInvalid).
func (c *Copy) Dir(ctx context.Context, key string) (string, error) {
	return c.st.dir(ctx, key)
}
