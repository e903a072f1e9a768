// Package layer is berth's image and layer storage, what Docker calls its
// image store and storage driver: a content store in the OCI image-layout
// format (layer/content), layers unpacked once per chain and shared as
// committed snapshots (layer/archive onto layer/snapshot), and writable
// copy-on-write root filesystems for containers.
//
// A layer is unpacked into the snapshot named by its chain ID (the OCI
// image-spec's identity of a layer on top of its parents), so every image
// and container that shares a chain of layers shares one copy on disk.
//
// # Device nodes
//
// Layers may hold character and block device nodes, as Docker's images
// may. A store unpacks them, as Docker does, when it can do so safely (a
// container then uses only the devices its cgroup's rules allow, see
// container.DefaultDeviceRules, whatever nodes its image holds). It
// refuses them, with an error matching archive.ErrDeviceNode and
// archive.ErrUnsafe that says why, when the process is not root (mknod
// needs CAP_MKNOD), when it runs in a user namespace other than the
// host's (the kernel refuses mknod there), and when ROOT/snapshots or
// ROOT/mounts is not owned by root or is open to other users (any group or
// other permission bit; Open makes them 0700): a node unpacked there would
// give any host user who reaches it the device, the host's disk say.
// Fifos are always unpacked.
package layer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/owner"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"github.com/berthlabs/berth/internal/lockfile"
	"github.com/berthlabs/berth/internal/rootless"
	"github.com/berthlabs/berth/layer/archive"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Store holds images and their unpacked layers under one directory:
// ROOT/content is an OCI image layout, ROOT/snapshots the snapshots.
//
// Many Stores, in one process or in many, may have one root open at the
// same time (a machine-wide image cache shared by test binaries, say).
// They lock per object, never the whole store across long work: a blob
// digest while it is written (content), a snapshot while it changes
// (snapshot), and a chain ID while it is unpacked (ROOT/locks/ALG-HEX.lock,
// so each layer is unpacked once whoever asks for it). Writers of what is
// not yet named hold ROOT/gc.lock shared (Hold), and GC holds it
// exclusively, so GC never removes what a writer in any process has put
// but not yet tagged. A process killed at any moment leaves the store
// consistent; what it leaves is removed by the next Open or GC, once its
// owner is known to be dead (see LabelOwner).
//
// A store opened by an unprivileged process (any effective UID but 0:
// rootless containers) unpacks layers without chown(2), as rootless
// podman's ignore_chown_errors does: every file is owned by that user,
// whatever owner the layer gives it, so inside a rootless container's
// user namespace every file of the image belongs to root; on overlayfs
// snapshots, a program that imports the container package has the files
// given their owners through the user's subordinate IDs instead, from a
// helper in a user namespace (see the container package). Its snapshots
// are overlayfs ones for mounts inside user namespaces where the kernel
// allows them (snapshot.NewOverlayUserNS: a rootless container's init
// mounts its root filesystem there), else copies; what would need a
// mount on the host (Commit's view of a base image with several layers,
// CopyTo and CopyFrom on a stopped container) fails. Keep such a store
// in the user's home, not in one root uses.
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

// LabelOwner is the snapshot label that names the process owning an
// active snapshot or view, as "PID-STARTTIME" (the process's start time in
// clock ticks after boot, field 22 of /proc/PID/stat, so a reused PID is
// told apart). Open and GC remove the active snapshots and views whose
// owner has died, with their mount points: the layers being unpacked and
// the views being read by a process that was killed, and the root
// filesystems prepared WithOwner. Owners are compared in the PID
// namespace of the process that runs Open or GC; share a store only
// between processes of one PID namespace when using it.
const LabelOwner = "berth.owner"

// WithOwner is a snapshot option for Prepare that labels the new snapshot
// with this process as its owner (LabelOwner), so that it is removed once
// the process has died: for root filesystems that must not outlive their
// program, such as a container's.
func WithOwner() snapshot.Opt {
	return snapshot.WithLabels(map[string]string{LabelOwner: owner.Self()})
}

// Open opens (creating if needed) the store at root, and removes the
// snapshots of owners that have died (see LabelOwner).
func Open(root string) (*Store, error) {
	cs, err := content.Open(filepath.Join(root, "content"))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(root, locksDir), 0o700); err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	sn, err := snapshot.New(filepath.Join(root, "snapshots"))
	if err != nil {
		return nil, fmt.Errorf("layer: %w", err)
	}
	s := &Store{Content: cs, Snapshots: sn, root: root, unpacking: map[string]*call{}}
	if err := s.Sweep(context.Background()); err != nil {
		sn.Close()
		return nil, fmt.Errorf("layer: %w", err)
	}
	return s, nil
}

// extractPrefix names the active snapshots layers are unpacked into
// before they are committed under their chain ID; viewPrefix the views
// Commit reads a base image's tree through. Both carry LabelOwner.
const (
	extractPrefix = "extract-"
	viewPrefix    = "commit-base-"

	locksDir   = "locks"
	gcLockFile = "gc.lock"
)

// Sweep removes the active snapshots and views whose owner (LabelOwner)
// has died: the half-unpacked layers and the views of a process that was
// killed while unpacking or committing, and root filesystems prepared
// WithOwner. Their mount points go with them. Open and GC sweep; a
// long-lived process that shares the store with others that may be
// killed can call it when it likes.
func (s *Store) Sweep(ctx context.Context) error {
	var stale []string
	err := s.Snapshots.Walk(ctx, func(i snapshot.Info) error {
		if i.Kind == snapshot.KindCommitted {
			return nil
		}
		if o, ok := i.Labels[LabelOwner]; ok && !owner.Alive(o) {
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
		if validKey(k) {
			os.Remove(filepath.Join(s.root, "mounts", k))
		}
	}
	return nil
}

// Hold keeps GC, in this process and in every other one on the store,
// from running until release is called, and waits (within ctx) for a GC
// that runs now. Hold it while writing what is not named yet, from the
// first blob or snapshot written until the Tag that names the image: GC
// would take blobs and unpacked layers that no name reaches. Commit,
// ImportDirs, Unpack and Prepare hold it themselves; the registry's Pull
// holds it from its first blob to its tag. Many holders do not wait for
// each other, and one caller may hold it more than once.
func (s *Store) Hold(ctx context.Context) (release func(), err error) {
	f, err := lockfile.Lock(ctx, filepath.Join(s.root, gcLockFile), lockfile.Shared, true)
	if err != nil {
		return nil, fmt.Errorf("layer: hold off GC: %w", err)
	}
	return f.Unlock, nil
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
	if len(chain) > 1 {
		// Unpacked already, the common case: the top layer's snapshot
		// exists, and with it every one below (a committed snapshot
		// with children cannot be removed). One look, not one a layer.
		top := chain[len(chain)-1].String()
		if _, err := s.Snapshots.Stat(ctx, top); err == nil {
			img.ChainID = top
			return img, nil
		}
	}
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
// exists or another goroutine or process is doing it.
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
		c.err = s.unpackLocked(ctx, id, parent, l, diffID, r)
		s.mu.Lock()
		delete(s.unpacking, id)
		s.mu.Unlock()
		close(c.done)
		return c.err
	}
}

// errUnpacking is what UnpackLayer returns when it is given a stream and
// another process is unpacking the same chain: waiting would stall the
// stream. Unpack from the content store once the blob is there.
var errUnpacking = errors.New("another process is unpacking this chain")

// unpackLocked unpacks the layer under the chain's flock, unless another
// process did while it waited: with a stream r it does not wait, and fails
// with errUnpacking instead.
func (s *Store) unpackLocked(ctx context.Context, id, parent string, l ocispec.Descriptor, diffID digest.Digest, r io.Reader) error {
	d, err := digest.Parse(id)
	if err != nil {
		return fmt.Errorf("chain ID %q: %w", id, err)
	}
	dir := filepath.Join(s.root, locksDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	path := filepath.Join(dir, string(d.Algorithm())+"-"+d.Encoded()+".lock")
	var f *lockfile.File
	if r != nil {
		f, err = lockfile.TryLock(path, lockfile.Exclusive, true)
		if err == nil && f == nil {
			err = errUnpacking
		}
	} else {
		f, err = lockfile.Lock(ctx, path, lockfile.Exclusive, true)
	}
	if err != nil {
		return err
	}
	defer f.Remove()
	if _, err := s.Snapshots.Stat(ctx, id); err == nil {
		return nil // another process unpacked it while we waited
	}
	release, err := s.Hold(ctx)
	if err != nil {
		return err
	}
	defer release()
	return s.unpack(ctx, id, parent, l, diffID, r)
}

// unpackHook, when set (by tests), is called with the chain ID of each
// layer this process starts to unpack.
var unpackHook func(chainID string)

func (s *Store) unpack(ctx context.Context, id, parent string, l ocispec.Descriptor, diffID digest.Digest, r io.Reader) (err error) {
	if unpackHook != nil {
		unpackHook(id)
	}
	key := extractPrefix + randomID() + "-" + id
	ms, err := s.Snapshots.Prepare(ctx, key, parent, WithOwner())
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
	refusal := s.deviceRefusal()
	err = withDir(ms, true, func(dir string, overlay bool) error {
		opts := archive.Options{OverlayWhiteouts: overlay, UserXattrs: userXattrs(ms), NoChown: unprivileged(), AllowDevices: refusal == ""}
		// Unprivileged, on overlay snapshots (which are used as they are,
		// never copied): files get their owners through the user's
		// subordinate IDs, from inside a user namespace.
		var owners []rootless.Owner
		if opts.NoChown && overlay && rootless.Chown != nil {
			opts.Owners = func(o archive.Owner) {
				owners = append(owners, rootless.Owner{Path: o.Path, UID: o.UID, GID: o.GID, Mode: o.Mode, Symlink: o.Symlink})
			}
		}
		st, err := archive.Apply(ctx, dir, r, opts)
		if errors.Is(err, archive.ErrDeviceNode) {
			return fmt.Errorf("%w; this store does not unpack device nodes: %s", err, refusal)
		}
		if err != nil {
			return err
		}
		if st.DiffID != diffID {
			return fmt.Errorf("uncompressed layer is %s, the config says %s", st.DiffID, diffID)
		}
		if len(owners) > 0 {
			if err := rootless.Chown(dir, owners); err != nil {
				return fmt.Errorf("give files their owners: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.Snapshots.Commit(ctx, id, key, withoutOwner)
	if errors.Is(err, snapshot.ErrExists) {
		// Someone else (another process) committed it first.
		s.Snapshots.Remove(context.Background(), key)
		return nil
	}
	return err
}

// Prepare unpacks the image called name and prepares a writable
// snapshot on it under key, for a container's root filesystem, with opts
// (WithOwner, snapshot.WithLabels). It returns the image and the mounts
// that make the root filesystem.
func (s *Store) Prepare(ctx context.Context, key, name string, opts ...snapshot.Opt) (*Image, []snapshot.Mount, error) {
	release, err := s.Hold(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer release()
	img, err := s.Unpack(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	mounts, err := s.Snapshots.Prepare(ctx, key, img.ChainID, opts...)
	if err != nil {
		return nil, nil, fmt.Errorf("prepare root filesystem %s of %s: %w", key, name, err)
	}
	return img, mounts, nil
}

// MountPoint returns an empty directory under the store for mounting the
// snapshot key on (ROOT/mounts/KEY), creating it.
func (s *Store) MountPoint(key string) (string, error) {
	if !validKey(key) {
		return "", fmt.Errorf("layer: bad mount point key %q", key)
	}
	dir := filepath.Join(s.root, "mounts", key)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("layer: %w", err)
	}
	return dir, nil
}

// PrivateMountPoint returns a directory under the store (ROOT/mounts)
// for a mount namespace of its own, such as a container's, to mount a
// snapshot on. Any number of namespaces may mount on it at once; it
// stays empty on the host. It costs no directory per snapshot, which
// MountPoint's does.
func (s *Store) PrivateMountPoint() (string, error) {
	dir := filepath.Join(s.root, "mounts")
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

// withoutOwner drops LabelOwner from a snapshot being committed: a
// layer outlives whoever unpacked it.
func withoutOwner(i *snapshot.Info) error {
	delete(i.Labels, LabelOwner)
	return nil
}

// validKey reports whether key can name a mount point.
func validKey(key string) bool {
	return key != "" && !strings.ContainsAny(key, "/\x00") && key != "." && key != ".."
}

func randomID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// unprivileged reports whether this process is not root: its store
// cannot give files their layers' owners.
func unprivileged() bool { return os.Geteuid() != 0 }

// userXattrs reports whether ms are overlay mounts with the userxattr
// option (a snapshot store for mounts in user namespaces).
func userXattrs(ms []snapshot.Mount) bool {
	for _, m := range ms {
		if m.Type == "overlay" && slices.Contains(m.Options, "userxattr") {
			return true
		}
	}
	return false
}
