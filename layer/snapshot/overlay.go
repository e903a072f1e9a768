package snapshot

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Overlay is a Snapshotter on overlayfs. Each snapshot is one directory:
// a committed snapshot holds its layer (what changed from its parent, with
// overlayfs whiteouts for what was deleted), an active snapshot the upper
// directory its writes go to. Prepare and View make empty directories, so
// they take the same time whatever the size of the image.
//
// Prepare on a parent returns one overlay mount whose lowerdir lists the
// parent chain, nearest first; on no parent, a bind mount of an empty
// directory. View of one committed snapshot returns a read-only bind mount
// of its layer; View of a longer chain an overlay with only lower
// directories, which is read-only.
//
// Overlayfs allows at most 500 layers.
type Overlay struct {
	st *store
	// fixed are the options every overlay mount gets.
	fixed []string
}

var _ Snapshotter = (*Overlay)(nil)

// NewOverlay opens the overlayfs snapshotter in root, a directory it
// creates if needed; other Snapshotters may share it (see Snapshotter).
// The error wraps ErrNotSupported
// when overlayfs cannot be mounted there (no overlayfs in the kernel, not
// root, or a filesystem overlayfs cannot use as an upper layer): NewOverlay
// tries one small overlay mount to find out. Call Close when done.
func NewOverlay(root string) (*Overlay, error) {
	if abs, err := filepath.Abs(root); err != nil || strings.ContainsAny(abs, ":,\\") {
		return nil, fmt.Errorf("open overlay snapshot store %s: %w: overlayfs options cannot name a path with ':', ',' or '\\'", root, ErrInvalid)
	}
	o := &Overlay{}
	// Pin the features the kernel has defaults for, so that the upper
	// directory of a snapshot is a plain diff everywhere: no index (with
	// it, using one layer in many mounts can fail; containerd turns it
	// off too), no redirects for renamed directories and no
	// metadata-only copies, which a layer consumer would not understand.
	for _, f := range []string{"index", "redirect_dir", "metacopy"} {
		if _, err := os.Stat("/sys/module/overlay/parameters/" + f); err == nil {
			o.fixed = append(o.fixed, f+"=off")
		}
	}
	st, err := openStore(root, "overlay", o, o.check)
	if err != nil {
		return nil, err
	}
	o.st = st
	return o, nil
}

// check mounts a two-layer overlay with an upper directory in tmp, and
// looks through it.
func (o *Overlay) check(tmp string) error {
	dirs := map[string]string{}
	for _, d := range []string{"lower1", "lower2", "upper", "work", "merged"} {
		dirs[d] = filepath.Join(tmp, d)
		if err := os.Mkdir(dirs[d], 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dirs["lower2"], "f"), nil, 0o644); err != nil {
		return err
	}
	m := Mount{Type: "overlay", Source: "overlay", Options: o.options(
		[]string{dirs["lower1"], dirs["lower2"]}, dirs["upper"], dirs["work"])}
	if err := m.Mount(dirs["merged"]); err != nil {
		return fmt.Errorf("%w: overlayfs: %v", ErrNotSupported, err)
	}
	err := os.WriteFile(filepath.Join(dirs["merged"], "f"), []byte("x"), 0o644)
	// Unmount waits out the moment a fork elsewhere in this process (a
	// warm init unsharing its mount namespace) holds the mount busy.
	if uerr := Unmount(dirs["merged"]); uerr != nil {
		_ = unix.Unmount(dirs["merged"], unix.MNT_DETACH)
		return fmt.Errorf("overlayfs check: %w", uerr)
	}
	if err != nil {
		return fmt.Errorf("%w: overlayfs: copy-up: %v", ErrNotSupported, err)
	}
	if _, err := os.Stat(filepath.Join(dirs["upper"], "f")); err != nil {
		return fmt.Errorf("%w: overlayfs: copy-up: %v", ErrNotSupported, err)
	}
	return nil
}

// options returns the overlayfs options for lower directories (nearest
// first) and, when upper is not "", an upper and work directory.
func (o *Overlay) options(lower []string, upper, work string) []string {
	opts := append(slices.Clip(o.fixed), "lowerdir="+strings.Join(lower, ":"))
	if upper != "" {
		opts = append(opts, "upperdir="+upper, "workdir="+work)
	}
	return opts
}

// create makes fs (and, for an active snapshot, work) in dir.
func (o *Overlay) create(ctx context.Context, dir string, s *snap) error {
	if s.kind == KindActive && s.parent != nil {
		return o.makeSpare(dir)
	}
	return os.Mkdir(filepath.Join(dir, "fs"), 0o755)
}

// makeSpare makes what create makes for an active snapshot with a
// parent: fs and work.
func (o *Overlay) makeSpare(dir string) error {
	if err := os.Mkdir(filepath.Join(dir, "fs"), 0o755); err != nil {
		return err
	}
	return os.Mkdir(filepath.Join(dir, "work"), 0o711)
}

// detachedSpare mounts the spare in dir on parent, as the overlay of
// an active snapshot made from it will be, but attached nowhere.
func (o *Overlay) detachedSpare(dir string, parent *snap) (*os.File, error) {
	chain := append([]string{o.st.fsDir(parent)}, o.st.chain(parent)...)
	m := Mount{Type: "overlay", Source: "overlay", Options: o.options(chain, filepath.Join(dir, "fs"), filepath.Join(dir, "work"))}
	return m.Detached()
}

// DetachedMount returns, once, a mount of the ephemeral active snapshot
// key that was made ahead (see Mount.Detached), or nil when there is
// none: the caller attaches it with move_mount(2) instead of mounting
// what Prepare returned, and closes it. A store makes such mounts while
// it makes its spare directories, on the parent of the latest ephemeral
// Prepare, so that a container's root filesystem on the image it ran
// last is mounted before it is asked for. Remove and Close close what
// was not taken.
func (o *Overlay) DetachedMount(key string) *os.File { return o.st.detachedMount(key) }

func (o *Overlay) mounts(s *snap) []Mount {
	fs := o.st.fsDir(s)
	chain := o.st.chain(s)
	switch {
	case s.kind == KindActive && len(chain) == 0:
		return []Mount{{Type: "bind", Source: fs, Options: []string{"bind", "rw"}}}
	case s.kind == KindActive:
		return []Mount{{Type: "overlay", Source: "overlay",
			Options: o.options(chain, fs, o.st.snapshotPath(s.id, "work"))}}
	case len(chain) == 0:
		return []Mount{{Type: "bind", Source: fs, Options: []string{"bind", "ro"}}}
	case len(chain) == 1:
		return []Mount{{Type: "bind", Source: chain[0], Options: []string{"bind", "ro"}}}
	default:
		return []Mount{{Type: "overlay", Source: "overlay", Options: o.options(chain, "", "")}}
	}
}

// Prepare makes an active snapshot; see Snapshotter.
func (o *Overlay) Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return o.st.create(ctx, KindActive, key, parent, opts)
}

// View makes a read-only snapshot; see Snapshotter.
func (o *Overlay) View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error) {
	return o.st.create(ctx, KindView, key, parent, opts)
}

// Mounts returns the mounts of an active snapshot or view; see Snapshotter.
func (o *Overlay) Mounts(ctx context.Context, key string) ([]Mount, error) {
	return o.st.mounts(ctx, key)
}

// Commit turns an active snapshot into a committed one; see Snapshotter.
// Its upper directory becomes the layer as it is, whiteouts included.
func (o *Overlay) Commit(ctx context.Context, name, key string, opts ...Opt) error {
	return o.st.commit(ctx, name, key, opts)
}

// Remove deletes a snapshot without children; see Snapshotter.
func (o *Overlay) Remove(ctx context.Context, key string) error {
	return o.st.remove(ctx, key)
}

// Stat describes a snapshot; see Snapshotter.
func (o *Overlay) Stat(ctx context.Context, key string) (Info, error) {
	return o.st.stat(ctx, key)
}

// Usage reports the disk space of a snapshot's own layer: the upper
// directory of an active snapshot, the layer of a committed one.
func (o *Overlay) Usage(ctx context.Context, key string) (Usage, error) {
	return o.st.usage(ctx, key)
}

// Walk calls fn for every snapshot; see Snapshotter.
func (o *Overlay) Walk(ctx context.Context, fn func(Info) error) error {
	return o.st.walk(ctx, fn)
}

// Close releases the root; see Snapshotter.
func (o *Overlay) Close() error { return o.st.close() }

// Dir returns the directory that holds the snapshot's own layer: the
// overlayfs upper directory of an active snapshot (what to diff against its
// parents: changed files, whiteouts for deleted ones, and opaque
// directories), or the layer of a committed one. Views have none
// (ErrInvalid). Read it while the snapshot is not mounted, or know that
// overlayfs may be changing it.
func (o *Overlay) Dir(ctx context.Context, key string) (string, error) {
	return o.st.dir(ctx, key)
}

var _ spareDriver = (*Overlay)(nil)
