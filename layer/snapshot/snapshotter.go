package snapshot

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"
)

// Errors returned by snapshotters, wrapped with what was being done; match
// them with errors.Is.
var (
	// ErrNotFound means no snapshot has the key or name, or a parent
	// does not exist.
	ErrNotFound = errors.New("snapshot: not found")
	// ErrExists means a snapshot with the key or name already exists.
	ErrExists = errors.New("snapshot: already exists")
	// ErrInUse means the snapshot has children (or a child is being made
	// on it), or the root is held exclusively by an older program.
	ErrInUse = errors.New("snapshot: in use")
	// ErrInvalid means an argument is not allowed, such as an empty key,
	// a parent that is not committed, or a Commit of a snapshot that is
	// not active.
	ErrInvalid = errors.New("snapshot: invalid argument")
	// ErrNotSupported means the kernel or the filesystem under the root
	// cannot do what the snapshotter needs (NewOverlay: overlayfs).
	ErrNotSupported = errors.New("snapshot: not supported here")
	// ErrClosed means the Snapshotter was closed.
	ErrClosed = errors.New("snapshot: snapshotter is closed")
)

// Kind says what state a snapshot is in.
type Kind uint8

// The kinds of snapshots.
const (
	// KindActive is a writable snapshot made by Prepare. It can be
	// mounted, changed, and committed.
	KindActive Kind = iota + 1
	// KindView is a read-only snapshot made by View. It can be mounted
	// and removed, never committed.
	KindView
	// KindCommitted is an immutable snapshot made by Commit. It cannot be
	// mounted; it is the parent that active snapshots and views start from.
	KindCommitted
)

// String returns "active", "view" or "committed".
func (k Kind) String() string {
	switch k {
	case KindActive:
		return "active"
	case KindView:
		return "view"
	case KindCommitted:
		return "committed"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// MarshalText encodes k as its String.
func (k Kind) MarshalText() ([]byte, error) {
	switch k {
	case KindActive, KindView, KindCommitted:
		return []byte(k.String()), nil
	}
	return nil, fmt.Errorf("%w: kind %d", ErrInvalid, uint8(k))
}

// UnmarshalText decodes what MarshalText encodes.
func (k *Kind) UnmarshalText(b []byte) error {
	for _, c := range []Kind{KindActive, KindView, KindCommitted} {
		if string(b) == c.String() {
			*k = c
			return nil
		}
	}
	return fmt.Errorf("%w: kind %q", ErrInvalid, b)
}

// Info describes a snapshot.
type Info struct {
	// Kind is the snapshot's state: KindActive, KindView or
	// KindCommitted.
	Kind Kind
	// Name is the key of an active snapshot or a view, or the name of a
	// committed snapshot.
	Name string
	// Parent is the name of the committed snapshot this one starts from;
	// empty for a snapshot that starts empty.
	Parent string
	// Labels are the caller's, set with WithLabels; nil when there are none.
	Labels map[string]string
	// Created is when Prepare or View made the snapshot; Updated is when
	// it last changed (its Commit, for a committed snapshot).
	Created, Updated time.Time
}

// Usage is the disk space that the layer of one snapshot takes, without its
// parents.
type Usage struct {
	// Size is in bytes: allocated blocks, so sparse files count what they
	// use and each hard-linked inode counts once.
	Size int64
	// Inodes counts the files, directories and other inodes of the layer,
	// each hard-linked inode once.
	Inodes int64
}

// Opt is an option for Prepare, View and Commit.
type Opt func(*Info) error

// WithLabels sets labels on the snapshot that Prepare, View or Commit
// makes. Commit keeps the labels of the active snapshot and adds these,
// which win where keys are the same.
func WithLabels(labels map[string]string) Opt {
	return func(info *Info) error {
		if len(labels) == 0 {
			return nil
		}
		if info.Labels == nil {
			info.Labels = make(map[string]string, len(labels))
		}
		maps.Copy(info.Labels, labels)
		return nil
	}
}

// LabelEphemeral marks an active snapshot or view that need not survive
// a crash of the machine, such as a container's root filesystem: its
// record and directories are not synced to disk (no fsync on Prepare,
// View and Remove). A process killed at any moment still leaves it
// whole or absent, as for any snapshot; a power loss may lose it, and
// the next open that has the root to itself removes what is left of it.
// Commit makes a durable committed snapshot of it and drops the label.
const LabelEphemeral = "berth.ephemeral"

// Ephemeral is an option for Prepare and View that labels the snapshot
// LabelEphemeral.
func Ephemeral() Opt { return WithLabels(map[string]string{LabelEphemeral: "true"}) }

// Snapshotter makes and keeps copy-on-write root filesystems: the
// directory tree of a container, built from layers of an image.
//
// # Keys, names and kinds
//
// A snapshot is active, a view, or committed (see Kind). Active snapshots
// and views are known by the key their caller picks; committed snapshots by
// the name given to Commit. Keys and names share one namespace: no key may
// equal another key or a name. They are any non-empty strings, such as a
// container ID or the chain ID of an image's layers.
//
// Prepare makes a writable active snapshot and returns how to mount it. It
// starts with the contents of its parent, a committed snapshot, or empty
// when the parent is "". What is written into the mounted snapshot stays in
// it: the parent never changes. View does the same read-only; a view
// mounted and written to fails with EROFS. Mounts returns the mounts of an
// active snapshot or view again.
//
// Commit turns an active snapshot into a committed one under a new name:
// the key is gone afterwards and the name is what children are prepared
// on. Committed snapshots never change, so the usual way to unpack an image
// is, for each layer: Prepare on the previous layer's name, mount, apply
// the layer, unmount, Commit under the layer's chain ID. Unmount an active
// snapshot before committing it.
//
// # Mounts
//
// The mounts returned are the only way to a snapshot's files; a consumer
// may read them as data instead of mounting them. layer.Store does so to
// unpack a layer into an active snapshot and to read what changed in
// one: a single overlay mount with an upperdir option is taken to be the
// snapshot's own layer, written with overlayfs whiteouts (so the
// lowerdir layers must be the parents' committed snapshots); a single
// bind mount is taken to be the snapshot's whole tree; anything else is
// mounted for the time it is needed.
//
// # Parents and removal
//
// Committed snapshots form trees: each snapshot has at most one parent, and
// a committed snapshot may have any number of children (active, view or
// committed). Remove deletes one snapshot and its data. It refuses with
// ErrInUse while the snapshot has children, so a layer cannot be taken from
// under a container or a later layer; remove the children first. Removing
// an active snapshot or a view that is still mounted is the caller's
// mistake: unmount first.
//
// # Errors
//
// Errors wrap ErrNotFound (unknown key, name or parent), ErrExists (the key
// or name is taken), ErrInUse (Remove of a snapshot with children),
// ErrInvalid (an empty key, a parent that is not committed, a Commit of
// something not active) and ErrClosed (after Close), with what was being
// done.
//
// # Concurrency and crashes
//
// A Snapshotter is safe for use by many goroutines, and many Snapshotters,
// in one process or in many, may have one root open at the same time.
// They share it as one store: each sees at once what the others make,
// commit and remove (Stat, Walk, Mounts and parents read the root, not a
// copy taken at open); a key or name is unique across all of them; and
// Remove refuses with ErrInUse while any of them has a child of the
// snapshot, or is making one. Operations on different keys run in
// parallel; operations that change one snapshot are serialised, across
// processes too, and waiting for another's operation ends with ctx.
//
// A process that dies in the middle of an operation, even killed with
// SIGKILL, leaves the store consistent: the snapshot exists or does not.
// What it leaves on disk (temporary files, a half-made snapshot's
// directory) is removed by a later New once its owner is known to be
// dead, while others go on using the root; a New that finds nobody else
// on the root also checks every record.
//
// # Testing an implementation
//
// Package snapshottest checks an implementation against this contract;
// Overlay and Copy run it.
type Snapshotter interface {
	// Prepare makes an active snapshot under key on top of the committed
	// snapshot parent ("" for an empty one), and returns the mounts that
	// show it read-write.
	Prepare(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// View makes a read-only snapshot under key on top of parent, and
	// returns the mounts that show it. It cannot be committed.
	View(ctx context.Context, key, parent string, opts ...Opt) ([]Mount, error)
	// Mounts returns the mounts of an active snapshot or view.
	Mounts(ctx context.Context, key string) ([]Mount, error)
	// Commit turns the active snapshot key into the committed snapshot
	// name; key is gone afterwards.
	Commit(ctx context.Context, name, key string, opts ...Opt) error
	// Remove deletes the snapshot with key or name and its data. It
	// fails with ErrInUse while the snapshot has children.
	Remove(ctx context.Context, key string) error
	// Stat describes the snapshot with key or name.
	Stat(ctx context.Context, key string) (Info, error)
	// Usage reports the disk space of the snapshot's own directory: for
	// Overlay what was written to an active snapshot or what a committed
	// layer holds; for Copy the whole tree.
	Usage(ctx context.Context, key string) (Usage, error)
	// Walk calls fn for every snapshot, in order of name, and stops at the
	// first error, which it returns. Snapshots made or removed while it
	// runs may or may not be seen.
	Walk(ctx context.Context, fn func(Info) error) error
	// Close releases the root directory. Mounts made from the snapshots
	// stay; other methods return ErrClosed afterwards.
	Close() error
}
