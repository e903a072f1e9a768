package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// The layout of a root directory:
//
//	lock                  flock(2)ed by the Snapshotter that has the root open
//	driver                "overlay" or "copy": which kind made the snapshots
//	ids                   the highest snapshot ID that may have been handed out
//	metadata/<id>.json    one record per snapshot: kind, name, parent, labels
//	snapshots/<id>/fs     the snapshot's files (an overlay upper or layer,
//	                      or a whole tree for Copy)
//	snapshots/<id>/work   overlayfs's work directory (active overlays)
//
// A snapshot exists exactly when its record does. Records are written to a
// temporary file, synced, and renamed into place, so a crash leaves either
// the old record or the new one. Directories are made before the record
// and removed after it; what a crash leaves (temporary files, directories
// without a record) is removed when the root is next opened.
const (
	lockFile     = "lock"
	driverFile   = "driver"
	idsFile      = "ids"
	metadataDir  = "metadata"
	snapshotsDir = "snapshots"
	tmpPrefix    = ".tmp-"

	// idBlock is how many IDs one write of the ids file reserves.
	idBlock = 1024
)

// driver is what differs between Overlay and Copy.
type driver interface {
	// create makes the directories of the new snapshot s (its parent is
	// set) under dir.
	create(ctx context.Context, dir string, s *snap) error
	// mounts returns the mounts of the active snapshot or view s.
	mounts(s *snap) []Mount
}

// snap is one snapshot in memory.
//
// The fields id and parent never change. The others change only while
// both lock and store.mu are held, so either is enough to read them.
type snap struct {
	// lock is the per-snapshot lock (a channel so waiting for it can be
	// cancelled), held across the disk work of an operation on it.
	lock   chan struct{}
	id     uint64
	parent *snap

	kind             Kind
	name             string
	labels           map[string]string
	created, updated time.Time
	// children counts the snapshots whose parent this is, including
	// those being made.
	children int
	// creating is set while Prepare or View makes the snapshot.
	creating bool
	// busy is set while an operation changes the snapshot (creating it,
	// committing it, removing it); whoever sees it waits for lock.
	busy bool
}

// info returns s as an Info; store.mu or s.lock must be held.
func (s *snap) info() Info {
	i := Info{Kind: s.kind, Name: s.name, Created: s.created, Updated: s.updated}
	if s.parent != nil {
		i.Parent = s.parent.name
	}
	if s.labels != nil {
		i.Labels = maps.Clone(s.labels)
	}
	return i
}

// record is the on-disk form of a snapshot.
type record struct {
	ID      uint64            `json:"id"`
	Kind    Kind              `json:"kind"`
	Name    string            `json:"name"`
	Parent  uint64            `json:"parent,omitempty"`
	Labels  map[string]string `json:"labels,omitempty"`
	Created time.Time         `json:"created"`
	Updated time.Time         `json:"updated"`
}

// store keeps the snapshots of one root directory and does what Overlay
// and Copy have in common.
type store struct {
	root string
	kind string // "overlay" or "copy"
	drv  driver
	lock *os.File

	// closeMu is read-locked by every operation, and locked by Close.
	closeMu sync.RWMutex
	closed  bool

	// mu guards names and the changing fields of every snap. It is held
	// only for map and field updates, never across disk work.
	mu    sync.Mutex
	names map[string]*snap

	// idMu guards nextID and idLimit.
	idMu    sync.Mutex
	nextID  uint64
	idLimit uint64
}

// openStore opens (creating it if needed) the store in root for the driver
// kind, cleans up what a crash left, and loads the records. check, if not
// nil, runs once the root is locked and clean and before anything of kind
// is written, to see whether the driver works here.
func openStore(root, kind string, drv driver, check func(tmp string) error) (*store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
	}
	st := &store{root: abs, kind: kind, drv: drv, names: make(map[string]*snap)}
	if err := st.open(check); err != nil {
		if st.lock != nil {
			st.lock.Close()
		}
		return nil, fmt.Errorf("open %s snapshot store %s: %w", kind, abs, err)
	}
	return st, nil
}

func (st *store) open(check func(tmp string) error) error {
	for _, d := range []string{st.root, st.path(metadataDir), st.path(snapshotsDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	f, err := os.OpenFile(st.path(lockFile), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	st.lock = f
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return fmt.Errorf("%w: another Snapshotter has it open", ErrInUse)
		}
		return fmt.Errorf("lock: %w", err)
	}
	if err := removeTemps(st.root); err != nil {
		return err
	}
	b, err := os.ReadFile(st.path(driverFile))
	if err == nil {
		if got := strings.TrimSpace(string(b)); got != st.kind {
			return fmt.Errorf("%w: the root holds %s snapshots", ErrInvalid, got)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if check != nil {
		tmp, err := os.MkdirTemp(st.root, tmpPrefix+"check-")
		if err != nil {
			return err
		}
		err = check(tmp)
		if rerr := os.RemoveAll(tmp); err == nil && rerr != nil {
			err = rerr
		}
		if err != nil {
			return err
		}
	}
	if b == nil {
		if err := writeFileAtomic(st.root, driverFile, []byte(st.kind+"\n")); err != nil {
			return err
		}
	}
	return st.load()
}

// load reads the records, links parents, removes snapshot directories
// that have no record, and sets the next ID.
func (st *store) load() error {
	if err := removeTemps(st.path(metadataDir)); err != nil {
		return err
	}
	entries, err := os.ReadDir(st.path(metadataDir))
	if err != nil {
		return err
	}
	byID := make(map[uint64]*snap, len(entries))
	parents := make(map[*snap]uint64)
	var maxID uint64
	for _, e := range entries {
		id, ok := recordID(e.Name())
		if !ok {
			return fmt.Errorf("unexpected file %s in %s", e.Name(), st.path(metadataDir))
		}
		b, err := os.ReadFile(st.path(metadataDir, e.Name()))
		if err != nil {
			return err
		}
		var r record
		if err := json.Unmarshal(b, &r); err != nil {
			return fmt.Errorf("record %s: %w", e.Name(), err)
		}
		if r.ID != id || r.Name == "" || r.Kind == 0 {
			return fmt.Errorf("record %s: bad id, name or kind", e.Name())
		}
		if _, err := os.Lstat(st.snapshotPath(id, "fs")); err != nil {
			return fmt.Errorf("snapshot %q: %w", r.Name, err)
		}
		s := &snap{lock: make(chan struct{}, 1), id: id, kind: r.Kind, name: r.Name,
			labels: r.Labels, created: r.Created, updated: r.Updated}
		if st.names[r.Name] != nil {
			return fmt.Errorf("two snapshots are named %q", r.Name)
		}
		st.names[r.Name] = s
		byID[id] = s
		if r.Parent != 0 {
			parents[s] = r.Parent
		}
		maxID = max(maxID, id)
	}
	for s, pid := range parents {
		p := byID[pid]
		if p == nil || p.kind != KindCommitted {
			return fmt.Errorf("snapshot %q: parent %d is missing or not committed", s.name, pid)
		}
		s.parent = p
		p.children++
	}

	dirs, err := os.ReadDir(st.path(snapshotsDir))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		id, err := strconv.ParseUint(d.Name(), 10, 64)
		if err == nil && byID[id] != nil {
			continue
		}
		if err == nil {
			maxID = max(maxID, id)
		}
		// Left by a crash between making the directories and writing
		// the record, or between removing the record and the directories.
		if err := os.RemoveAll(st.path(snapshotsDir, d.Name())); err != nil {
			return err
		}
	}

	if b, err := os.ReadFile(st.path(idsFile)); err == nil {
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return fmt.Errorf("%s: %w", idsFile, err)
		}
		maxID = max(maxID, n)
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	st.nextID = maxID + 1
	st.idLimit = maxID
	return nil
}

// recordID returns the ID in a record's file name, "<id>.json".
func recordID(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil && id > 0
}

// removeTemps removes the temporary files and directories in dir.
func removeTemps(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), tmpPrefix) {
			p := filepath.Join(dir, e.Name())
			// A crash during the overlay check can leave its mount.
			_ = unix.Unmount(filepath.Join(p, "merged"), unix.MNT_DETACH)
			if err := os.RemoveAll(p); err != nil {
				return err
			}
		}
	}
	return nil
}

func (st *store) path(elem ...string) string {
	return filepath.Join(append([]string{st.root}, elem...)...)
}

// snapshotPath returns the directory of snapshot id, or a file in it.
func (st *store) snapshotPath(id uint64, elem ...string) string {
	return filepath.Join(append([]string{st.root, snapshotsDir, strconv.FormatUint(id, 10)}, elem...)...)
}

// fsDir returns the fs directory of s.
func (st *store) fsDir(s *snap) string { return st.snapshotPath(s.id, "fs") }

// chain returns the fs directories of the parents of s, nearest first.
func (st *store) chain(s *snap) []string {
	var dirs []string
	for p := s.parent; p != nil; p = p.parent {
		dirs = append(dirs, st.fsDir(p))
	}
	return dirs
}

// begin starts an operation; end must follow.
func (st *store) begin(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	st.closeMu.RLock()
	if st.closed {
		st.closeMu.RUnlock()
		return ErrClosed
	}
	return nil
}

func (st *store) end() { st.closeMu.RUnlock() }

// lockSnap takes the lock of s, or gives up when ctx is done.
func lockSnap(ctx context.Context, s *snap) error {
	select {
	case s.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func unlockSnap(s *snap) { <-s.lock }

// wait waits until the operation that holds the lock of s is done.
func wait(ctx context.Context, s *snap) error {
	if err := lockSnap(ctx, s); err != nil {
		return err
	}
	unlockSnap(s)
	return nil
}

// acquire finds the snapshot with key and locks it.
func (st *store) acquire(ctx context.Context, key string) (*snap, error) {
	for {
		st.mu.Lock()
		s := st.names[key]
		st.mu.Unlock()
		if s == nil {
			return nil, fmt.Errorf("%q: %w", key, ErrNotFound)
		}
		if err := lockSnap(ctx, s); err != nil {
			return nil, err
		}
		st.mu.Lock()
		ok := st.names[key] == s
		st.mu.Unlock()
		if ok {
			return s, nil
		}
		unlockSnap(s) // removed, renamed or never made while we waited
	}
}

// allocID returns a new snapshot ID, larger than any before it in this root.
func (st *store) allocID() (uint64, error) {
	st.idMu.Lock()
	defer st.idMu.Unlock()
	if st.nextID > st.idLimit {
		limit := st.nextID + idBlock - 1
		if err := writeFileAtomic(st.root, idsFile, []byte(strconv.FormatUint(limit, 10)+"\n")); err != nil {
			return 0, err
		}
		st.idLimit = limit
	}
	id := st.nextID
	st.nextID++
	return id, nil
}

// create makes a snapshot of kind (active or view) under key on parent.
func (st *store) create(ctx context.Context, kind Kind, key, parent string, opts []Opt) (_ []Mount, err error) {
	op := "prepare"
	if kind == KindView {
		op = "view"
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("%s %s snapshot %q: %w", op, st.kind, key, err)
		}
	}()
	if key == "" {
		return nil, fmt.Errorf("%w: empty key", ErrInvalid)
	}
	if err := st.begin(ctx); err != nil {
		return nil, err
	}
	defer st.end()
	var info Info
	for _, o := range opts {
		if err := o(&info); err != nil {
			return nil, err
		}
	}
	id, err := st.allocID()
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	s := &snap{lock: make(chan struct{}, 1), id: id, kind: kind, name: key, labels: info.Labels,
		created: now, updated: now, creating: true, busy: true}
	s.lock <- struct{}{}
	defer unlockSnap(s)

	// Reserve the key and count s as a child of its parent.
	for {
		st.mu.Lock()
		if e := st.names[key]; e != nil {
			busy := e.busy
			st.mu.Unlock()
			if !busy {
				return nil, ErrExists
			}
			if err := wait(ctx, e); err != nil {
				return nil, err
			}
			continue
		}
		if parent != "" {
			p := st.names[parent]
			if p == nil {
				st.mu.Unlock()
				return nil, fmt.Errorf("parent %q: %w", parent, ErrNotFound)
			}
			if p.busy {
				st.mu.Unlock()
				if err := wait(ctx, p); err != nil {
					return nil, err
				}
				continue
			}
			if p.kind != KindCommitted {
				st.mu.Unlock()
				return nil, fmt.Errorf("%w: parent %q is %s, not committed", ErrInvalid, parent, p.kind)
			}
			p.children++
			s.parent = p
		}
		st.names[key] = s
		st.mu.Unlock()
		break
	}

	dir := st.snapshotPath(id)
	err = st.drv.create(ctx, dir, s)
	if err == nil {
		err = syncDir(dir)
	}
	if err == nil {
		err = syncDir(st.path(snapshotsDir))
	}
	if err == nil {
		err = st.writeRecord(s, s.kind, s.name, s.labels, s.updated)
	}
	if err != nil {
		_ = os.RemoveAll(dir)
		st.mu.Lock()
		delete(st.names, key)
		if s.parent != nil {
			s.parent.children--
		}
		st.mu.Unlock()
		return nil, err
	}
	st.mu.Lock()
	s.creating, s.busy = false, false
	st.mu.Unlock()
	return st.drv.mounts(s), nil
}

// writeRecord writes the record of s, as it is or will be.
func (st *store) writeRecord(s *snap, kind Kind, name string, labels map[string]string, updated time.Time) error {
	r := record{ID: s.id, Kind: kind, Name: name, Labels: labels, Created: s.created, Updated: updated}
	if s.parent != nil {
		r.Parent = s.parent.id
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return writeFileAtomic(st.path(metadataDir), strconv.FormatUint(s.id, 10)+".json", b)
}

// mounts returns the mounts of key.
func (st *store) mounts(ctx context.Context, key string) ([]Mount, error) {
	if err := st.begin(ctx); err != nil {
		return nil, fmt.Errorf("mounts of %s snapshot %q: %w", st.kind, key, err)
	}
	defer st.end()
	s, err := st.acquire(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("mounts of %s snapshot: %w", st.kind, err)
	}
	defer unlockSnap(s)
	if s.kind == KindCommitted {
		return nil, fmt.Errorf("mounts of %s snapshot %q: %w: committed snapshots are not mounted; View or Prepare one on it", st.kind, key, ErrInvalid)
	}
	return st.drv.mounts(s), nil
}

// commit turns the active snapshot key into the committed snapshot name.
func (st *store) commit(ctx context.Context, name, key string, opts []Opt) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("commit %s snapshot %q as %q: %w", st.kind, key, name, err)
		}
	}()
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalid)
	}
	if err := st.begin(ctx); err != nil {
		return err
	}
	defer st.end()
	s, err := st.acquire(ctx, key)
	if err != nil {
		return err
	}
	defer unlockSnap(s)
	if s.kind != KindActive {
		return fmt.Errorf("%w: it is %s, not active", ErrInvalid, s.kind)
	}
	info := Info{Labels: maps.Clone(s.labels)}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	for {
		st.mu.Lock()
		if e := st.names[name]; e != nil {
			busy := e.busy
			st.mu.Unlock()
			if e == s || !busy {
				return ErrExists
			}
			if err := wait(ctx, e); err != nil {
				return err
			}
			continue
		}
		st.names[name] = s // reserved: lookups of name wait for s.lock
		s.busy = true
		st.mu.Unlock()
		break
	}
	now := time.Now().UTC()
	if err := st.writeRecord(s, KindCommitted, name, info.Labels, now); err != nil {
		st.mu.Lock()
		delete(st.names, name)
		s.busy = false
		st.mu.Unlock()
		return err
	}
	st.mu.Lock()
	delete(st.names, key)
	s.kind, s.name, s.labels, s.updated, s.busy = KindCommitted, name, info.Labels, now, false
	st.mu.Unlock()
	return nil
}

// remove deletes the snapshot key unless it has children.
func (st *store) remove(ctx context.Context, key string) (err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("remove %s snapshot %q: %w", st.kind, key, err)
		}
	}()
	if err := st.begin(ctx); err != nil {
		return err
	}
	defer st.end()
	s, err := st.acquire(ctx, key)
	if err != nil {
		return err
	}
	defer unlockSnap(s)
	st.mu.Lock()
	if n := s.children; n > 0 {
		st.mu.Unlock()
		return fmt.Errorf("%w: it is the parent of %d snapshots", ErrInUse, n)
	}
	s.busy = true
	st.mu.Unlock()

	rec := st.path(metadataDir, strconv.FormatUint(s.id, 10)+".json")
	err = os.Remove(rec)
	if err == nil {
		err = syncDir(st.path(metadataDir))
	}
	if err != nil {
		st.mu.Lock()
		s.busy = false
		st.mu.Unlock()
		return err
	}
	st.mu.Lock()
	delete(st.names, key)
	if s.parent != nil {
		s.parent.children--
	}
	s.busy = false
	st.mu.Unlock()
	if err := os.RemoveAll(st.snapshotPath(s.id)); err != nil {
		return fmt.Errorf("snapshot removed, but not its directory (the next open removes it): %w", err)
	}
	return nil
}

// stat describes key.
func (st *store) stat(ctx context.Context, key string) (Info, error) {
	if err := st.begin(ctx); err != nil {
		return Info{}, fmt.Errorf("stat %s snapshot %q: %w", st.kind, key, err)
	}
	defer st.end()
	s, err := st.acquire(ctx, key)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s snapshot: %w", st.kind, err)
	}
	defer unlockSnap(s)
	return s.info(), nil
}

// ownDir returns the directory of key's own layer, and its kind.
func (st *store) ownDir(ctx context.Context, key string) (string, Kind, error) {
	if err := st.begin(ctx); err != nil {
		return "", 0, err
	}
	defer st.end()
	s, err := st.acquire(ctx, key)
	if err != nil {
		return "", 0, err
	}
	defer unlockSnap(s)
	return st.fsDir(s), s.kind, nil
}

// usage measures key's own layer.
func (st *store) usage(ctx context.Context, key string) (Usage, error) {
	dir, _, err := st.ownDir(ctx, key)
	if err == nil {
		var u Usage
		u, err = diskUsage(ctx, dir)
		if err == nil {
			return u, nil
		}
		if errors.Is(err, os.ErrNotExist) {
			err = fmt.Errorf("%q: %w (removed while measured)", key, ErrNotFound)
		}
	}
	return Usage{}, fmt.Errorf("usage of %s snapshot %q: %w", st.kind, key, err)
}

// dir returns the directory of key's own layer, unless key is a view.
func (st *store) dir(ctx context.Context, key string) (string, error) {
	dir, kind, err := st.ownDir(ctx, key)
	if err == nil && kind == KindView {
		err = fmt.Errorf("%w: a view has no layer of its own", ErrInvalid)
	}
	if err != nil {
		return "", fmt.Errorf("directory of %s snapshot %q: %w", st.kind, key, err)
	}
	return dir, nil
}

// walk calls fn for each snapshot, in order of name.
func (st *store) walk(ctx context.Context, fn func(Info) error) error {
	if err := st.begin(ctx); err != nil {
		return fmt.Errorf("walk %s snapshots: %w", st.kind, err)
	}
	st.mu.Lock()
	infos := make([]Info, 0, len(st.names))
	for name, s := range st.names {
		if !s.creating && name == s.name {
			infos = append(infos, s.info())
		}
	}
	st.mu.Unlock()
	st.end()
	slices.SortFunc(infos, func(a, b Info) int { return strings.Compare(a.Name, b.Name) })
	for _, i := range infos {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(i); err != nil {
			return err
		}
	}
	return nil
}

// close waits for the operations in flight and releases the root.
func (st *store) close() error {
	st.closeMu.Lock()
	defer st.closeMu.Unlock()
	if st.closed {
		return nil
	}
	st.closed = true
	return st.lock.Close()
}

// writeFileAtomic replaces dir/name with data: a crash leaves the old file
// or the new one, never a mix.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tmpPrefix+name+"-")
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		_ = os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes the entries of dir durable.
func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = f.Sync()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
