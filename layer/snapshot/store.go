package snapshot

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/owner"
	"hash/fnv"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/internal/lockfile"
	"golang.org/x/sys/unix"
)

// The layout of a root directory:
//
//	lock                  every open Snapshotter holds LOCK_SH on it; one
//	                      that got LOCK_EX at open was alone
//	open.lock             held LOCK_EX while an opener decides whether it
//	                      is alone and, if so, repairs the root
//	driver                "overlay", "overlay-userns" or "copy": which kind made the snapshots
//	ids, ids.lock         the highest snapshot ID that may have been handed
//	                      out; each process reserves a block of IDs under
//	                      ids.lock
//	metadata/<id>.json    one record per snapshot: kind, name, parent, labels
//	names/<name>          a symbolic link to the ID whose record has that
//	                      key or name (escaped, or hashed when long)
//	snapshots/<id>/lock   flock(2)ed by whoever changes the snapshot
//	snapshots/<id>/fs     the snapshot's files (an overlay upper or layer,
//	                      or a whole tree for Copy)
//	snapshots/<id>/work   overlayfs's work directory (active overlays)
//	snapshots/<id>/children/<id>  one empty file per child, made before
//	                      the child's record
//
// The records are the truth: a snapshot exists exactly when its record
// does, and every process reads them afresh (records of committed
// snapshots, which never change, are cached). Records are written to a
// temporary file, synced, and renamed into place, so a crash leaves either
// the old record or the new one.
//
// Locks between processes, each held across the disk work of one
// operation:
//   - A name is taken with symlink(2), which fails when it exists, so a
//     key or name is unique across processes. An entry whose record has
//     another name is an operation in progress (its snapshot's lock is
//     held) or was left by a crash (the lock is free): whoever then holds
//     the lock may remove it.
//   - Prepare, View, Commit and Remove hold LOCK_EX on the lock of the
//     snapshot they change; a new snapshot's directory appears (by rename)
//     with its lock already held.
//   - Prepare and View hold LOCK_SH on the parent's lock while they make
//     the child, and make its children entry before its record; Remove
//     holds LOCK_EX while it looks for children, so it sees every child,
//     finished or being made.
//
// Waiting for a lock honours the context: goroutines of one process wait
// on channels, processes poll with a short backoff.
//
// What a crash leaves is removed later. Temporary files and directories
// are named .tmp-PID-STARTTIME-...; anyone removes those whose process is
// gone. A snapshot directory without a record, and a name whose record has
// another name, are removed by anyone who can take the snapshot's lock. An
// opener that is alone (it gets LOCK_EX on lock) also checks every record,
// and rebuilds the names and children entries that a power failure may
// have lost (they are not synced: the records are).
const (
	lockFile     = "lock"
	openLockFile = "open.lock"
	driverFile   = "driver"
	idsFile      = "ids"
	idsLockFile  = "ids.lock"
	metadataDir  = "metadata"
	namesDir     = "names"
	snapshotsDir = "snapshots"
	snapLockFile = "lock"
	// spareRecord is the empty file a spare directory holds for the
	// record of the snapshot that takes it, and goneRecord where an
	// ephemeral snapshot's record goes when it is removed (see
	// writeSpareRecord and remove).
	spareRecord = "record.json"
	goneRecord  = "removed.json"
	childrenDir = "children"
	tmpPrefix   = ".tmp-"

	// idBlockMin and idBlockMax bound how many IDs one write of the ids
	// file reserves: a process starts small and doubles.
	idBlockMin = 16
	idBlockMax = 1024

	// openWait is how long an opener waits for another one that is
	// repairing the root.
	openWait = 2 * time.Minute
)

// driver is what differs between Overlay and Copy.
type driver interface {
	// create makes the directories of the new snapshot s (its parent is
	// set) in dir, which exists.
	create(ctx context.Context, dir string, s *snap) error
	// mounts returns the mounts of the active snapshot or view s.
	mounts(s *snap) []Mount
}

// snap is one snapshot as its record says, with its parents loaded. It is
// never changed once made.
type snap struct {
	id               uint64
	parent           *snap
	kind             Kind
	name             string
	labels           map[string]string
	created, updated time.Time
}

// info returns s as an Info.
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
	root  string
	kind  string // "overlay", "overlay-userns" or "copy"
	drv   driver
	lock  *os.File
	owner string

	// closeMu is read-locked by every operation, and locked by Close.
	closeMu sync.RWMutex
	closed  bool

	// locks orders the goroutines of this process that change one
	// snapshot, before they take its flock.
	locks lockfile.Keyed[uint64]

	// committed caches the committed snapshots read: id -> *snap.
	committed sync.Map

	// bg counts the goroutines that delete removed ephemeral snapshots'
	// directories or make spares; close waits for them.
	bg sync.WaitGroup

	// spareMu guards the spares: directories of ephemeral active
	// snapshots made ahead (see takeSpare).
	spareMu      sync.Mutex
	spares       []spareDir
	spareMaking  bool
	sparesClosed bool
	spareSeq     uint64
	// hot is the parent of the latest ephemeral active snapshot, hotName
	// its name: the spares made next are mounted on it ahead.
	hot     *snap
	hotName string
	// detached are the mounts made ahead for ephemeral active
	// snapshots, by key, until DetachedMount takes them.
	detached map[string]*os.File

	// idMu guards nextID, idLimit and idBlock.
	idMu    sync.Mutex
	nextID  uint64
	idLimit uint64
	idBlock uint64
}

// openStore opens (creating it if needed) the store in root for the driver
// kind and cleans up what crashes left. check, if not nil, runs once the
// root is locked and before anything of kind is written, to see whether
// the driver works here.
func openStore(root, kind string, drv driver, check func(tmp string) error) (*store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open snapshot store %s: %w", root, err)
	}
	st := &store{root: abs, kind: kind, drv: drv, owner: owner.Self(), idBlock: idBlockMin}
	if err := st.open(check); err != nil {
		if st.lock != nil {
			st.lock.Close()
		}
		return nil, fmt.Errorf("open %s snapshot store %s: %w", kind, abs, err)
	}
	return st, nil
}

func (st *store) open(check func(tmp string) error) error {
	for _, d := range []string{st.root, st.path(metadataDir), st.path(snapshotsDir), st.path(namesDir)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), openWait)
	defer cancel()
	ol, err := lockfile.Lock(ctx, st.path(openLockFile), lockfile.Exclusive, true)
	if err != nil {
		return fmt.Errorf("lock %s: %w", openLockFile, err)
	}
	defer ol.Unlock()
	f, err := os.OpenFile(st.path(lockFile), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	st.lock = f
	alone := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil
	if !alone {
		// Others have it open; they hold LOCK_SH. One that holds
		// LOCK_EX without open.lock is an older berth.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB); err != nil {
			if errors.Is(err, unix.EWOULDBLOCK) {
				return fmt.Errorf("%w: another program holds the root exclusively", ErrInUse)
			}
			return fmt.Errorf("lock: %w", err)
		}
	}
	b, err := os.ReadFile(st.path(driverFile))
	if err == nil {
		if got := strings.TrimSpace(string(b)); got != st.kind {
			return fmt.Errorf("%w: the root holds %s snapshots", ErrInvalid, got)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if alone {
		if err := removeTemps(st.root, true); err != nil {
			return err
		}
	}
	if check != nil {
		tmp, err := os.MkdirTemp(st.root, st.tmpName("check-"))
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
		if err := st.writeFileAtomic(st.root, driverFile, []byte(st.kind+"\n")); err != nil {
			return err
		}
	}
	if alone {
		if err := st.repair(); err != nil {
			return err
		}
		// Nobody can take LOCK_EX between the two locks: that needs
		// open.lock, which is ours.
		if err := unix.Flock(int(f.Fd()), unix.LOCK_SH); err != nil {
			return fmt.Errorf("lock: %w", err)
		}
		return nil
	}
	return st.sweep()
}

// tmpName returns the start of a temporary name of this process.
func (st *store) tmpName(what string) string {
	return tmpPrefix + st.owner + "-" + what
}

// tmpOwner returns the owner token in a temporary name, if it has one.
func tmpOwner(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, tmpPrefix)
	if !ok {
		return "", false
	}
	f := strings.SplitN(rest, "-", 3)
	if len(f) < 3 {
		return "", false
	}
	tok := f[0] + "-" + f[1]
	_, _, ok = owner.Parse(tok)
	return tok, ok
}

// removeTemps removes the temporary files and directories in dir: all of
// them when all is set, else those of processes that are gone.
func removeTemps(dir string, all bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), tmpPrefix) {
			continue
		}
		if !all {
			tok, ok := tmpOwner(e.Name())
			if !ok || owner.Alive(tok) {
				continue
			}
		}
		p := filepath.Join(dir, e.Name())
		// A crash during the overlay check can leave its mount.
		_ = unix.Unmount(filepath.Join(p, "merged"), unix.MNT_DETACH)
		if err := removeAll(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// repair checks and rebuilds the root when no other Snapshotter has it
// open: it removes every temporary file, every snapshot directory without
// a record and every name entry that does not match a record, makes the
// lock files and the names and children entries that records need, and
// keeps the ids file above every ID found.
func (st *store) repair() error {
	for _, d := range []string{metadataDir, namesDir, snapshotsDir} {
		if err := removeTemps(st.path(d), true); err != nil {
			return err
		}
	}
	entries, err := os.ReadDir(st.path(metadataDir))
	if err != nil {
		return err
	}
	recs := make(map[uint64]*record, len(entries))
	byName := make(map[string]*record, len(entries))
	var maxID uint64
	for _, e := range entries {
		id, ok := recordID(e.Name())
		if !ok {
			return fmt.Errorf("unexpected file %s in %s", e.Name(), st.path(metadataDir))
		}
		r, err := st.readRecord(id)
		if err != nil {
			return err
		}
		if r == nil {
			continue
		}
		if _, err := os.Lstat(st.snapshotPath(id, "fs")); err != nil {
			if errors.Is(err, os.ErrNotExist) && r.Kind != KindCommitted && ephemeral(r.Labels) {
				// Its directories were not synced, and a power loss took
				// them: it goes, as it may.
				if err := os.Remove(st.path(metadataDir, e.Name())); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("snapshot %q: %w", r.Name, err)
		}
		if byName[r.Name] != nil {
			return fmt.Errorf("two snapshots are named %q", r.Name)
		}
		recs[id], byName[r.Name] = r, r
		maxID = max(maxID, id)
	}
	children := make(map[uint64]map[string]bool)
	for _, r := range recs {
		if r.Parent == 0 {
			continue
		}
		if p := recs[r.Parent]; p == nil || p.Kind != KindCommitted {
			return fmt.Errorf("snapshot %q: parent %d is missing or not committed", r.Name, r.Parent)
		}
		if children[r.Parent] == nil {
			children[r.Parent] = make(map[string]bool)
		}
		children[r.Parent][strconv.FormatUint(r.ID, 10)] = true
	}

	dirs, err := os.ReadDir(st.path(snapshotsDir))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		id, err := strconv.ParseUint(d.Name(), 10, 64)
		if err == nil {
			maxID = max(maxID, id)
		}
		if err == nil && recs[id] != nil {
			continue
		}
		// Left by a crash between making the directories and writing
		// the record, or between removing the record and the directories.
		if err := removeAll(st.path(snapshotsDir, d.Name())); err != nil {
			return err
		}
	}
	for id, r := range recs {
		f, err := os.OpenFile(st.snapshotPath(id, snapLockFile), os.O_RDONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("snapshot %q: %w", r.Name, err)
		}
		f.Close()
		dir := st.snapshotPath(id, childrenDir)
		have, err := os.ReadDir(dir)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		for _, c := range have {
			if !children[id][c.Name()] {
				if err := os.Remove(filepath.Join(dir, c.Name())); err != nil {
					return err
				}
			}
		}
		for c := range children[id] {
			if err := st.addChild(id, c); err != nil {
				return err
			}
		}
	}

	names, err := os.ReadDir(st.path(namesDir))
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		id, ok := st.readName(n.Name())
		if r := recs[id]; ok && r != nil && nameFile(r.Name) == n.Name() {
			seen[n.Name()] = true
			continue
		}
		if err := os.Remove(st.path(namesDir, n.Name())); err != nil {
			return err
		}
	}
	for id, r := range recs {
		if !seen[nameFile(r.Name)] {
			if err := os.Symlink(strconv.FormatUint(id, 10), st.path(namesDir, nameFile(r.Name))); err != nil {
				return err
			}
		}
	}

	if n, err := st.readIDs(); err != nil {
		return err
	} else if maxID > n {
		return st.writeFileAtomic(st.root, idsFile, []byte(strconv.FormatUint(maxID, 10)+"\n"))
	}
	return nil
}

// sweep removes what dead processes left while others may have the root
// open: their temporary files, the names they were taking, and the
// directories of snapshots they were making or removing.
func (st *store) sweep() error {
	for _, d := range []string{st.root, st.path(metadataDir), st.path(namesDir), st.path(snapshotsDir)} {
		if err := removeTemps(d, false); err != nil {
			return err
		}
	}
	names, err := os.ReadDir(st.path(namesDir))
	if err != nil {
		return err
	}
	for _, n := range names {
		if strings.HasPrefix(n.Name(), tmpPrefix) {
			continue
		}
		id, ok := st.readName(n.Name())
		if !ok {
			continue
		}
		if r, _ := st.readRecord(id); r != nil && nameFile(r.Name) == n.Name() {
			continue
		}
		l, err := lockfile.TryLock(st.snapshotPath(id, snapLockFile), lockfile.Exclusive, false)
		if err != nil || l == nil {
			continue // in progress, or the directory is gone
		}
		if r, _ := st.readRecord(id); r == nil || nameFile(r.Name) != n.Name() {
			st.unlinkName(n.Name(), id)
		}
		l.Unlock()
	}
	dirs, err := os.ReadDir(st.path(snapshotsDir))
	if err != nil {
		return err
	}
	for _, d := range dirs {
		id, err := strconv.ParseUint(d.Name(), 10, 64)
		if err != nil {
			continue
		}
		if r, _ := st.readRecord(id); r != nil {
			continue
		}
		l, err := lockfile.TryLock(st.snapshotPath(id, snapLockFile), lockfile.Exclusive, false)
		if err != nil || l == nil {
			continue
		}
		if r, _ := st.readRecord(id); r == nil {
			err = st.removeDir(id, l, false)
		} else {
			l.Unlock()
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// recordFile is the name of snapshot id's record in metadata/,
// "<id>.json"; recordID reads it back.
func recordFile(id uint64) string { return strconv.FormatUint(id, 10) + ".json" }

// recordID returns the ID in a record's file name, "<id>.json".
func recordID(name string) (uint64, bool) {
	s, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseUint(s, 10, 64)
	return id, err == nil && id > 0
}

// nameFile returns the entry in names/ for a key or name: the name with
// bytes other than letters, digits and "+-.:=@_" escaped as %XX, or "#"
// and a hash of it when that is long.
func nameFile(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9',
			strings.IndexByte("+-:=@_", c) >= 0, c == '.' && i > 0:
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	if b.Len() > 200 {
		// FNV-1a, 128 bits: not for hostile names, which a caller's
		// keys are not; crypto/sha256 would grow the embedded init.
		h := fnv.New128a()
		h.Write([]byte(name))
		return "#" + hex.EncodeToString(h.Sum(nil))
	}
	return b.String()
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

// readRecord reads the record of id; nil, nil when there is none.
func (st *store) readRecord(id uint64) (*record, error) {
	b, err := os.ReadFile(st.path(metadataDir, recordFile(id)))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var r record
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("record %d: %w", id, err)
	}
	if r.ID != id || r.Name == "" || r.Kind == 0 {
		return nil, fmt.Errorf("record %d: bad id, name or kind", id)
	}
	return &r, nil
}

// readName returns the ID that the names entry file points at.
func (st *store) readName(file string) (uint64, bool) {
	t, err := os.Readlink(st.path(namesDir, file))
	if err != nil {
		return 0, false
	}
	id, err := strconv.ParseUint(t, 10, 64)
	return id, err == nil
}

// unlinkName removes the names entry file if it points at id. Only the
// holder of id's lock calls it.
func (st *store) unlinkName(file string, id uint64) {
	if got, ok := st.readName(file); ok && got == id {
		os.Remove(st.path(namesDir, file))
	}
}

// load returns the snapshot r describes, with its parents.
func (st *store) load(r *record) (*snap, error) {
	s := &snap{id: r.ID, kind: r.Kind, name: r.Name, labels: r.Labels, created: r.Created, updated: r.Updated}
	if r.Parent != 0 {
		p, err := st.committedSnap(r.Parent)
		if err != nil {
			return nil, fmt.Errorf("snapshot %q: %w", r.Name, err)
		}
		s.parent = p
	}
	return s, nil
}

// committedSnap returns the committed snapshot id, from the cache when it
// has been read before (committed records never change).
func (st *store) committedSnap(id uint64) (*snap, error) {
	if v, ok := st.committed.Load(id); ok {
		return v.(*snap), nil
	}
	r, err := st.readRecord(id)
	if err != nil {
		return nil, err
	}
	if r == nil || r.Kind != KindCommitted {
		return nil, fmt.Errorf("parent %d is missing or not committed", id)
	}
	s, err := st.load(r)
	if err != nil {
		return nil, err
	}
	st.committed.Store(id, s)
	return s, nil
}

// lookup returns the snapshot with key, read from disk without locks.
// When the names entry of key points at a snapshot that is being changed
// it waits for that change once.
func (st *store) lookup(ctx context.Context, key string) (*snap, error) {
	file := nameFile(key)
	for try := 0; ; try++ {
		id, ok := st.readName(file)
		if !ok {
			return nil, fmt.Errorf("%q: %w", key, ErrNotFound)
		}
		r, err := st.readRecord(id)
		if err != nil {
			return nil, err
		}
		if r != nil && r.Name == key {
			return st.load(r)
		}
		if try > 0 {
			return nil, fmt.Errorf("%q: %w", key, ErrNotFound)
		}
		// Being made or committed (its lock is held), or left by a
		// crash: wait for the lock, then look again.
		h, err := st.lockSnap(ctx, id, false)
		if errors.Is(err, lockfile.ErrGone) {
			continue
		}
		if err != nil {
			return nil, err
		}
		h.unlock()
	}
}

// held is a snapshot's lock held by one operation.
type held struct {
	release func()
	f       *lockfile.File
	spare   bool // the directory is a spare: the driver's dirs are made
	// mnt, when not nil, is the spare mounted ahead on the snapshot
	// mntParent (see spareDir).
	mnt       *os.File
	mntParent uint64
}

func (h *held) unlock() {
	h.f.Unlock()
	h.release()
}

// lockSnap takes the lock of snapshot id: the in-process lock, then
// LOCK_EX on its lock file. With remove set, it fails with ErrInUse
// instead of waiting while the snapshot has children entries (finished
// children, or children being made, which hold LOCK_SH). A snapshot whose
// directory is gone is lockfile.ErrGone.
func (st *store) lockSnap(ctx context.Context, id uint64, remove bool) (*held, error) {
	release, err := st.locks.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	path := st.snapshotPath(id, snapLockFile)
	var f *lockfile.File
	if !remove {
		f, err = lockfile.Lock(ctx, path, lockfile.Exclusive, false)
	} else {
		for delay := 100 * time.Microsecond; ; delay = min(2*delay, 20*time.Millisecond) {
			f, err = lockfile.TryLock(path, lockfile.Exclusive, false)
			if err != nil || f != nil {
				break
			}
			if n, _ := os.ReadDir(st.snapshotPath(id, childrenDir)); len(n) > 0 {
				err = fmt.Errorf("%w: it is the parent of %d snapshots", ErrInUse, len(n))
				break
			}
			t := time.NewTimer(delay)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				err = ctx.Err()
			}
			if err != nil {
				break
			}
		}
	}
	if err != nil {
		release()
		return nil, err
	}
	return &held{release: release, f: f}, nil
}

// acquire finds the snapshot with key and locks it; with remove set, see
// lockSnap.
func (st *store) acquire(ctx context.Context, key string, remove bool) (*snap, *held, error) {
	file := nameFile(key)
	for {
		id, ok := st.readName(file)
		if !ok {
			return nil, nil, fmt.Errorf("%q: %w", key, ErrNotFound)
		}
		if remove {
			// A snapshot that does not exist is not in use.
			if r, err := st.readRecord(id); err != nil {
				return nil, nil, err
			} else if r == nil || r.Name != key {
				remove = false
			}
		}
		h, err := st.lockSnap(ctx, id, remove)
		if errors.Is(err, lockfile.ErrGone) {
			if id2, ok := st.readName(file); !ok || id2 == id {
				return nil, nil, fmt.Errorf("%q: %w", key, ErrNotFound)
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if id2, ok := st.readName(file); !ok || id2 != id {
			h.unlock()
			if !ok {
				return nil, nil, fmt.Errorf("%q: %w", key, ErrNotFound)
			}
			continue // removed and made again meanwhile
		}
		r, err := st.readRecord(id)
		if err == nil && (r == nil || r.Name != key) {
			// Left by a crash: the lock was free.
			st.unlinkName(file, id)
			err = fmt.Errorf("%q: %w", key, ErrNotFound)
		}
		var s *snap
		if err == nil {
			s, err = st.load(r)
		}
		if err != nil {
			h.unlock()
			return nil, nil, err
		}
		return s, h, nil
	}
}

// claim makes the names entry of name point at id, waiting for an
// operation that is taking name meanwhile. A name that a snapshot has is
// ErrExists.
func (st *store) claim(ctx context.Context, name string, id uint64) error {
	file := nameFile(name)
	target := strconv.FormatUint(id, 10)
	for {
		err := os.Symlink(target, st.path(namesDir, file))
		if err == nil {
			return nil
		}
		if !errors.Is(err, os.ErrExist) {
			return err
		}
		other, ok := st.readName(file)
		if !ok {
			continue // removed meanwhile
		}
		if other == id {
			return nil // left by an earlier try of ours
		}
		r, err := st.readRecord(other)
		if err != nil {
			return err
		}
		if r != nil && r.Name == name {
			return ErrExists
		}
		h, err := st.lockSnap(ctx, other, false)
		if errors.Is(err, lockfile.ErrGone) {
			if o2, ok := st.readName(file); ok && o2 == other {
				return fmt.Errorf("name %q points at snapshot %d, which is gone; open the root alone to repair it", name, other)
			}
			continue
		}
		if err != nil {
			return err
		}
		r, err = st.readRecord(other)
		if err == nil && r != nil && r.Name == name {
			err = ErrExists
		} else if err == nil {
			st.unlinkName(file, other) // a crash's, or a failed operation's
		}
		h.unlock()
		if err != nil {
			return err
		}
	}
}

// allocID returns a new snapshot ID, larger than any before it in this
// root and unique among the processes that use it.
func (st *store) allocID(ctx context.Context) (uint64, error) {
	st.idMu.Lock()
	defer st.idMu.Unlock()
	if st.nextID == 0 || st.nextID > st.idLimit {
		l, err := lockfile.Lock(ctx, st.path(idsLockFile), lockfile.Exclusive, true)
		if err != nil {
			return 0, err
		}
		defer l.Unlock()
		n, err := st.readIDs()
		if err != nil {
			return 0, err
		}
		limit := n + st.idBlock
		if err := st.writeFileAtomic(st.root, idsFile, []byte(strconv.FormatUint(limit, 10)+"\n")); err != nil {
			return 0, err
		}
		st.nextID, st.idLimit = n+1, limit
		st.idBlock = min(2*st.idBlock, idBlockMax)
	}
	id := st.nextID
	st.nextID++
	return id, nil
}

// readIDs reads the ids file, 0 when there is none.
func (st *store) readIDs() (uint64, error) {
	b, err := os.ReadFile(st.path(idsFile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", idsFile, err)
	}
	return n, nil
}

// makeDir makes the directory of the new snapshot id, with its lock file,
// and returns the lock, held. The directory appears under its name with
// the lock already taken, so nobody takes it for a crash's leftover.
// With spare, a spare directory is taken if there is one: one mounted
// ahead on the parent named spareFor if there is such a spare.
func (st *store) makeDir(ctx context.Context, id uint64, spare bool, spareFor string) (*held, error) {
	release, err := st.locks.Lock(ctx, id)
	if err != nil {
		return nil, err
	}
	if spare {
		if sp := st.takeSpare(spareFor); sp.dir != "" {
			f, err := lockfile.TryLock(filepath.Join(sp.dir, snapLockFile), lockfile.Exclusive, false)
			if err == nil && f != nil {
				if err = os.Rename(sp.dir, st.snapshotPath(id)); err == nil {
					return &held{release: release, f: f, spare: true, mnt: sp.mnt, mntParent: sp.parent}, nil
				}
				f.Unlock()
			}
			st.closeDetached(sp.mnt)
			os.RemoveAll(sp.dir)
		}
	}
	tmp := st.path(snapshotsDir, st.tmpName("new-"+strconv.FormatUint(id, 10)))
	var f *lockfile.File
	err = os.Mkdir(tmp, 0o700)
	if err == nil {
		f, err = lockfile.TryLock(filepath.Join(tmp, snapLockFile), lockfile.Exclusive, true)
		if err == nil && f == nil {
			err = fmt.Errorf("lock of new snapshot %d is taken", id)
		}
	}
	if err == nil {
		err = os.Rename(tmp, st.snapshotPath(id))
	}
	if err != nil {
		f.Unlock()
		os.RemoveAll(tmp)
		release()
		return nil, err
	}
	return &held{release: release, f: f}, nil
}

// spares is how many spare directories a store keeps ready.
const spares = 2

// spareDriver is a driver that can make the directories of an
// ephemeral active snapshot with a parent ahead of time, and mount them
// ahead too (detachedSpare returns a detached mount of the spare in dir
// on parent, or ErrNotSupported).
type spareDriver interface {
	makeSpare(dir string) error
	detachedSpare(dir string, parent *snap) (*os.File, error)
}

// spareDir is a spare directory (the lock file and the driver's
// directories of an ephemeral active snapshot with a parent, made ahead
// under a temporary name). When mnt is not nil, the spare is mounted on
// the committed snapshot parent too (a detached mount, fsmount(2)), as
// the snapshot made from it will be, named parentName.
type spareDir struct {
	dir        string
	mnt        *os.File
	parent     uint64
	parentName string
}

// takeSpare returns a spare directory, or one with an empty dir when
// none is ready, and has the spares refilled in the background: one
// mounted on the parent named parentName if there is one. A container's
// rootfs is such a snapshot: the creates it would wait for (each new
// inode costs on the order of a millisecond on some disks), and the
// overlay mount (0.1-0.5 ms here), were done before it was asked.
func (st *store) takeSpare(parentName string) spareDir {
	if _, ok := st.drv.(spareDriver); !ok {
		return spareDir{}
	}
	st.spareMu.Lock()
	defer st.spareMu.Unlock()
	var sp spareDir
	if n := len(st.spares); n > 0 {
		i := slices.IndexFunc(st.spares, func(sp spareDir) bool { return sp.mnt != nil && sp.parentName == parentName })
		if i < 0 {
			i = n - 1
		}
		sp = st.spares[i]
		st.spares = slices.Delete(st.spares, i, i+1)
	}
	if sp.mnt != nil && sp.parentName != parentName {
		st.closeDetached(sp.mnt)
		sp.mnt = nil
	}
	if len(st.spares) < spares {
		st.startSparesLocked()
	}
	return sp
}

// startSparesLocked has makeSpares run in the background unless it runs
// already or the store is closing; st.spareMu is held.
func (st *store) startSparesLocked() {
	if !st.spareMaking && !st.sparesClosed {
		st.spareMaking = true
		st.bg.Add(1)
		go st.makeSpares()
	}
}

// closeDetached closes a detached mount nobody took, on a goroutine:
// its unmount syncs the upper file system.
func (st *store) closeDetached(f *os.File) {
	if f == nil {
		return
	}
	st.bg.Add(1)
	go func() {
		defer st.bg.Done()
		f.Close()
	}()
}

// setHot records parent (named name) as the parent spares are mounted
// on ahead, and has the spares mounted on it in the background when it
// was not hot already.
func (st *store) setHot(name string, parent *snap) {
	st.spareMu.Lock()
	defer st.spareMu.Unlock()
	if st.hot != nil && st.hot.id == parent.id {
		return
	}
	st.hot, st.hotName = parent, name
	st.startSparesLocked()
}

// detachedMount returns, once, the mount that was made ahead for the
// ephemeral active snapshot key, or nil when there is none.
func (st *store) detachedMount(key string) *os.File {
	st.spareMu.Lock()
	defer st.spareMu.Unlock()
	f := st.detached[key]
	delete(st.detached, key)
	return f
}

// keepDetached keeps f, the mount made ahead for key, for DetachedMount.
func (st *store) keepDetached(key string, f *os.File) {
	st.spareMu.Lock()
	defer st.spareMu.Unlock()
	if st.detached == nil {
		st.detached = map[string]*os.File{}
	}
	if old := st.detached[key]; old != nil {
		st.closeDetached(old)
	}
	st.detached[key] = f
}

// makeSpares makes spare directories until there are enough, and mounts
// ahead those that are not mounted on the hot parent, or until the
// store closes.
func (st *store) makeSpares() {
	defer st.bg.Done()
	drv := st.drv.(spareDriver)
	for {
		st.spareMu.Lock()
		if st.sparesClosed {
			st.spareMaking = false
			st.spareMu.Unlock()
			return
		}
		hot, hotName := st.hot, st.hotName
		var sp spareDir
		fresh := len(st.spares) < spares
		if fresh {
			st.spareSeq++
			sp.dir = st.path(snapshotsDir, st.tmpName("spare-"+strconv.FormatUint(st.spareSeq, 10)))
		} else if i := slices.IndexFunc(st.spares, func(sp spareDir) bool {
			return hot != nil && (sp.mnt == nil || sp.parent != hot.id)
		}); i >= 0 {
			// Mounted on no parent, or on one that is no longer hot.
			sp = st.spares[i]
			st.spares = slices.Delete(st.spares, i, i+1)
		} else {
			st.spareMaking = false
			st.spareMu.Unlock()
			return
		}
		st.spareMu.Unlock()
		var err error
		if !fresh {
			st.closeDetached(sp.mnt)
			sp.mnt = nil
		} else {
			err = os.Mkdir(sp.dir, 0o700)
			for _, name := range []string{snapLockFile, spareRecord} {
				var f *os.File
				if err == nil {
					if f, err = os.OpenFile(filepath.Join(sp.dir, name), os.O_RDWR|os.O_CREATE|os.O_EXCL|unix.O_CLOEXEC, 0o600); err == nil {
						f.Close()
					}
				}
			}
			if err == nil {
				err = drv.makeSpare(sp.dir)
			}
		}
		if err == nil && hot != nil {
			// Not being able to mount ahead is no error: the snapshot's
			// user mounts it.
			if mnt, merr := drv.detachedSpare(sp.dir, hot); merr == nil {
				sp.mnt, sp.parent, sp.parentName = mnt, hot.id, hotName
			}
		}
		st.spareMu.Lock()
		if err != nil || st.sparesClosed {
			st.spareMaking = false
			st.spareMu.Unlock()
			if sp.mnt != nil {
				sp.mnt.Close()
			}
			os.RemoveAll(sp.dir)
			return
		}
		st.spares = append(st.spares, sp)
		st.spareMu.Unlock()
	}
}

// removeDir removes the directory of snapshot id and releases h, its
// lock: it moves the directory to a temporary name first, so that the
// lock file goes with it and waiters see the snapshot is gone. With
// later, the files of the renamed directory are deleted by a goroutine
// that close waits for (a crash leaves them for the next open).
func (st *store) removeDir(id uint64, h *lockfile.File, later bool) error {
	tmp := st.path(snapshotsDir, st.tmpName("rm-"+strconv.FormatUint(id, 10)))
	err := os.Rename(st.snapshotPath(id), tmp)
	h.Unlock()
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if later {
		st.bg.Add(1)
		go func() {
			defer st.bg.Done()
			removeAll(tmp)
		}()
		return nil
	}
	return removeAll(tmp)
}

// addChild makes the children entry child (an ID) of parent.
func (st *store) addChild(parent uint64, child string) error {
	dir := st.snapshotPath(parent, childrenDir)
	f, err := os.OpenFile(filepath.Join(dir, child), os.O_RDONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		if err = os.Mkdir(dir, 0o700); err == nil || errors.Is(err, os.ErrExist) {
			f, err = os.OpenFile(filepath.Join(dir, child), os.O_RDONLY|os.O_CREATE|unix.O_CLOEXEC, 0o600)
		}
	}
	if err != nil {
		return err
	}
	return f.Close()
}

// shareParent finds the committed snapshot name and takes LOCK_SH on it,
// so that it is not removed while a child is made.
func (st *store) shareParent(ctx context.Context, name string) (*snap, *lockfile.File, error) {
	file := nameFile(name)
	for {
		id, ok := st.readName(file)
		if !ok {
			return nil, nil, fmt.Errorf("parent %q: %w", name, ErrNotFound)
		}
		l, err := lockfile.Lock(ctx, st.snapshotPath(id, snapLockFile), lockfile.Shared, false)
		if errors.Is(err, lockfile.ErrGone) {
			if id2, ok := st.readName(file); !ok || id2 == id {
				return nil, nil, fmt.Errorf("parent %q: %w", name, ErrNotFound)
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		if id2, ok := st.readName(file); !ok || id2 != id {
			l.Unlock()
			continue
		}
		r, err := st.readRecord(id)
		if err == nil && (r == nil || r.Name != name) {
			err = fmt.Errorf("parent %q: %w", name, ErrNotFound)
		}
		if err == nil && r.Kind != KindCommitted {
			err = fmt.Errorf("%w: parent %q is %s, not committed", ErrInvalid, name, r.Kind)
		}
		var p *snap
		if err == nil {
			p, err = st.committedSnap(id)
		}
		if err != nil {
			l.Unlock()
			return nil, nil, err
		}
		return p, l, nil
	}
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
	id, err := st.allocID(ctx)
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	s := &snap{id: id, kind: kind, name: key, labels: info.Labels, created: now, updated: now}
	h, err := st.makeDir(ctx, id, kind == KindActive && parent != "" && ephemeral(info.Labels), parent)
	if err != nil {
		return nil, err
	}
	defer h.release()
	defer func() {
		if h.mnt != nil { // not kept: the wrong parent, or an error
			st.closeDetached(h.mnt)
		}
	}()
	var pl *lockfile.File
	claimed, child := false, false
	defer func() {
		if err != nil {
			if claimed {
				st.unlinkName(nameFile(key), id)
			}
			if child {
				os.Remove(st.snapshotPath(s.parent.id, childrenDir, strconv.FormatUint(id, 10)))
			}
			pl.Unlock()
			st.removeDir(id, h.f, false)
			return
		}
		pl.Unlock()
		h.f.Unlock()
	}()

	if err = st.claim(ctx, key, id); err != nil {
		return nil, err
	}
	claimed = true
	if parent != "" {
		var p *snap
		if p, pl, err = st.shareParent(ctx, parent); err != nil {
			return nil, err
		}
		s.parent = p
		if err = st.addChild(p.id, strconv.FormatUint(id, 10)); err != nil {
			return nil, err
		}
		child = true
	}
	dir := st.snapshotPath(id)
	durable := !ephemeral(s.labels)
	if !h.spare {
		err = st.drv.create(ctx, dir, s)
	}
	if err == nil && durable {
		err = syncDir(dir)
	}
	if err == nil && durable {
		err = syncDir(st.path(snapshotsDir))
	}
	if err == nil && h.spare {
		err = st.writeSpareRecord(s)
	} else if err == nil {
		err = st.writeRecord(s, s.kind, s.name, s.labels, s.updated, durable)
	}
	if err != nil {
		return nil, err
	}
	if kind == KindActive && s.parent != nil && !durable {
		// The spares are mounted ahead on this parent.
		if _, ok := st.drv.(spareDriver); ok {
			st.setHot(parent, s.parent)
		}
		if h.mnt != nil && h.mntParent == s.parent.id {
			st.keepDetached(key, h.mnt)
			h.mnt = nil
		}
	}
	return st.drv.mounts(s), nil
}

// ephemeral reports whether labels mark a snapshot LabelEphemeral.
func ephemeral(labels map[string]string) bool { return labels[LabelEphemeral] != "" }

// writeRecord writes the record of s, as it is or will be; synced to disk
// when durable.
func (st *store) writeRecord(s *snap, kind Kind, name string, labels map[string]string, updated time.Time, durable bool) error {
	b, err := recordJSON(s, kind, name, labels, updated)
	if err != nil {
		return err
	}
	return st.writeFile(st.path(metadataDir), recordFile(s.id), b, durable)
}

// writeSpareRecord writes the record of s, an ephemeral snapshot in a
// spare directory, into the directory's empty spareRecord and renames
// that into place: the new inode was made ahead, with the directory.
// Until the rename, a killed process leaves a directory without a
// record, which the next open removes.
func (st *store) writeSpareRecord(s *snap) error {
	b, err := recordJSON(s, s.kind, s.name, s.labels, s.updated)
	if err != nil {
		return err
	}
	p := st.snapshotPath(s.id, spareRecord)
	// Raw calls: a regular file gains nothing from Go's poller, and
	// the file is known empty (O_TRUNC would cost a journal write).
	fd, err := unix.Open(p, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: p, Err: err}
	}
	n, err := unix.Pwrite(fd, b, 0)
	if cerr := unix.Close(fd); err == nil {
		err = cerr
	}
	if err == nil && n != len(b) {
		err = io.ErrShortWrite
	}
	if err != nil {
		return &os.PathError{Op: "write", Path: p, Err: err}
	}
	return os.Rename(p, st.path(metadataDir, recordFile(s.id)))
}

// recordJSON is the record of s, as it is or will be.
func recordJSON(s *snap, kind Kind, name string, labels map[string]string, updated time.Time) ([]byte, error) {
	r := record{ID: s.id, Kind: kind, Name: name, Labels: labels, Created: s.created, Updated: updated}
	if s.parent != nil {
		r.Parent = s.parent.id
	}
	return json.Marshal(r)
}

// mounts returns the mounts of key.
func (st *store) mounts(ctx context.Context, key string) ([]Mount, error) {
	if err := st.begin(ctx); err != nil {
		return nil, fmt.Errorf("mounts of %s snapshot %q: %w", st.kind, key, err)
	}
	defer st.end()
	s, err := st.lookup(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("mounts of %s snapshot: %w", st.kind, err)
	}
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
	s, h, err := st.acquire(ctx, key, false)
	if err != nil {
		return err
	}
	defer h.unlock()
	if s.kind != KindActive {
		return fmt.Errorf("%w: it is %s, not active", ErrInvalid, s.kind)
	}
	info := Info{Labels: maps.Clone(s.labels)}
	for _, o := range opts {
		if err := o(&info); err != nil {
			return err
		}
	}
	if name == key {
		return ErrExists
	}
	if err := st.claim(ctx, name, s.id); err != nil {
		return err
	}
	if ephemeral(s.labels) {
		// Committed snapshots are durable: what Prepare did not sync
		// is synced now.
		delete(info.Labels, LabelEphemeral)
		if err := syncDir(st.snapshotPath(s.id)); err != nil {
			return err
		}
		if err := syncDir(st.path(snapshotsDir)); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	if err := st.writeRecord(s, KindCommitted, name, info.Labels, now, true); err != nil {
		st.unlinkName(nameFile(name), s.id)
		return err
	}
	st.unlinkName(nameFile(key), s.id)
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
	s, h, err := st.acquire(ctx, key, true)
	if err != nil {
		return err
	}
	// A mount made ahead for it that nobody took.
	st.closeDetached(st.detachedMount(key))
	locked := true
	defer func() {
		if locked {
			h.unlock()
		}
	}()
	// Under LOCK_EX no child is being made: an entry without a record
	// is a crash's, or a removed child's.
	dir := st.snapshotPath(s.id, childrenDir)
	cs, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	n := 0
	for _, c := range cs {
		cid, perr := strconv.ParseUint(c.Name(), 10, 64)
		if perr == nil {
			if r, err := st.readRecord(cid); err != nil {
				return err
			} else if r != nil && r.Parent == s.id {
				n++
				continue
			}
		}
		os.Remove(filepath.Join(dir, c.Name()))
	}
	if n > 0 {
		return fmt.Errorf("%w: it is the parent of %d snapshots", ErrInUse, n)
	}

	rec := st.path(metadataDir, recordFile(s.id))
	if ephemeral(s.labels) {
		// Into the directory that is removed next: unlinking a file
		// with data here would wait on the file system's journal (~0.2
		// ms), a rename does not.
		err = os.Rename(rec, st.snapshotPath(s.id, goneRecord))
	} else if err = os.Remove(rec); err == nil {
		err = syncDir(st.path(metadataDir))
	}
	if err != nil {
		return err
	}
	st.unlinkName(nameFile(key), s.id)
	if s.parent != nil {
		os.Remove(st.snapshotPath(s.parent.id, childrenDir, strconv.FormatUint(s.id, 10)))
	}
	st.committed.Delete(s.id)
	locked = false
	// An ephemeral snapshot (a container's rootfs) is gone once its name
	// and directory are: its files may be deleted after Remove returns.
	err = st.removeDir(s.id, h.f, ephemeral(s.labels))
	h.release()
	if err != nil {
		return fmt.Errorf("snapshot removed, but not its directory (a later open removes it): %w", err)
	}
	return nil
}

// stat describes key.
func (st *store) stat(ctx context.Context, key string) (Info, error) {
	if err := st.begin(ctx); err != nil {
		return Info{}, fmt.Errorf("stat %s snapshot %q: %w", st.kind, key, err)
	}
	defer st.end()
	s, err := st.lookup(ctx, key)
	if err != nil {
		return Info{}, fmt.Errorf("stat %s snapshot: %w", st.kind, err)
	}
	return s.info(), nil
}

// ownDir returns the directory of key's own layer, and its kind.
func (st *store) ownDir(ctx context.Context, key string) (string, Kind, error) {
	if err := st.begin(ctx); err != nil {
		return "", 0, err
	}
	defer st.end()
	s, err := st.lookup(ctx, key)
	if err != nil {
		return "", 0, err
	}
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

// walk calls fn for each snapshot, in order of name, as the records on
// disk say.
func (st *store) walk(ctx context.Context, fn func(Info) error) error {
	if err := st.begin(ctx); err != nil {
		return fmt.Errorf("walk %s snapshots: %w", st.kind, err)
	}
	infos, err := st.readAll(ctx)
	st.end()
	if err != nil {
		return fmt.Errorf("walk %s snapshots: %w", st.kind, err)
	}
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

// readAll reads every record.
func (st *store) readAll(ctx context.Context) ([]Info, error) {
	entries, err := os.ReadDir(st.path(metadataDir))
	if err != nil {
		return nil, err
	}
	recs := make(map[uint64]*record, len(entries))
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		id, ok := recordID(e.Name())
		if !ok {
			continue
		}
		r, err := st.readRecord(id)
		if err != nil {
			return nil, err
		}
		if r != nil {
			recs[id] = r
		}
	}
	infos := make([]Info, 0, len(recs))
	for _, r := range recs {
		i := Info{Kind: r.Kind, Name: r.Name, Created: r.Created, Updated: r.Updated}
		if r.Labels != nil {
			i.Labels = maps.Clone(r.Labels)
		}
		if r.Parent != 0 {
			if p := recs[r.Parent]; p != nil {
				i.Parent = p.Name
			} else if p, err := st.committedSnap(r.Parent); err == nil {
				i.Parent = p.name
			} else {
				continue // removed with its parent meanwhile
			}
		}
		infos = append(infos, i)
	}
	return infos, nil
}

// close waits for the operations in flight and releases the root.
func (st *store) close() error {
	st.closeMu.Lock()
	defer st.closeMu.Unlock()
	if st.closed {
		return nil
	}
	st.closed = true
	st.spareMu.Lock()
	st.sparesClosed = true
	st.spareMu.Unlock()
	st.bg.Wait()
	for _, sp := range st.spares {
		if sp.mnt != nil {
			sp.mnt.Close()
		}
		os.RemoveAll(sp.dir)
	}
	st.spares = nil
	for _, f := range st.detached {
		f.Close()
	}
	st.detached = nil
	return st.lock.Close()
}

// writeFileAtomic replaces dir/name with data: a crash leaves the old file
// or the new one, never a mix.
func (st *store) writeFileAtomic(dir, name string, data []byte) error {
	return st.writeFile(dir, name, data, true)
}

// writeFile replaces dir/name with data, whole or not at all if the
// process is killed; synced to disk, so that a power loss keeps it too,
// when durable.
func (st *store) writeFile(dir, name string, data []byte, durable bool) error {
	f, err := os.CreateTemp(dir, st.tmpName(name+"-"))
	if err != nil {
		return err
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil && durable {
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
	if !durable {
		return nil
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
