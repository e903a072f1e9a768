package content

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/internal/lockfile"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	// Register the hashes go-digest verifies with.
	_ "crypto/sha256"
	_ "crypto/sha512"
)

// Annotations berth writes on the entries of index.json.
const (
	// AnnotationName holds an image's full normalized name, such as
	// "docker.io/library/busybox:latest".
	AnnotationName = "io.berth.image.name"
	// AnnotationCreated holds when the name was given, in RFC 3339 format.
	AnnotationCreated = "io.berth.image.created"

	// annotationContainerdName is where containerd and docker save keep the
	// full name.
	annotationContainerdName = "io.containerd.image.name"
)

const (
	indexFile  = "index.json"
	layoutFile = ocispec.ImageLayoutFile
	blobsDir   = "blobs"
	// blobTempPrefix starts the names of blobs being written, in the
	// directory of their algorithm.
	blobTempPrefix = ".tmp-"
	// blobLockPrefix starts the names of the lock files of digests being
	// written, in the directory of their algorithm.
	blobLockPrefix = ".lock-"
	// maxJSONSize is the largest manifest, index, config or archive
	// metadata file read into memory.
	maxJSONSize = 16 << 20
)

// algorithms are the digest algorithms whose blob directories Walk reads.
var algorithms = []digest.Algorithm{digest.SHA256, digest.SHA384, digest.SHA512}

// Store is an image store in an OCI image layout on disk. Its methods are
// safe for concurrent use, also by several processes on one directory:
// writers of one digest take turns across processes, and index.json is
// changed under an flock.
// Make one with Open.
type Store struct {
	dir   layoutDir
	locks lockfile.Keyed[digest.Digest]
	// indexSem serializes index.json updates in this process; the flock
	// on the directory serializes them between processes.
	indexSem chan struct{}
	cache    readCache
}

// Open opens the store in root, creating root, oci-layout, index.json and
// blobs/sha256 where they are missing, and removes temporary files left by
// writers that were killed. An existing oci-layout of another version or a
// malformed index.json is an error wrapping ErrInvalid, and the directory
// is left as it was.
func Open(root string) (*Store, error) {
	if root == "" {
		return nil, fmt.Errorf("open store: %w: empty path", ErrInvalid)
	}
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", root, err)
	}
	s := &Store{dir: layoutDir(abs), indexSem: make(chan struct{}, 1)}
	// Check what is there before changing anything.
	if err := s.dir.checkLayout(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if _, err := s.dir.readIndex(); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	if err := os.MkdirAll(filepath.Join(abs, blobsDir, string(digest.Canonical)), 0o755); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	ctx := context.Background()
	unlock, err := s.lockIndex(ctx)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", abs, err)
	}
	defer unlock()
	// Leftovers of index.json and oci-layout writers: they write under the
	// lock we hold, so any temporary file here is from a dead one.
	entries, err := os.ReadDir(abs)
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	for _, e := range entries {
		if isRootTemp(e.Name()) {
			if err := os.Remove(filepath.Join(abs, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("open store: remove leftover: %w", err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(abs, layoutFile)); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(abs, layoutFile, b); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(abs, indexFile)); errors.Is(err, fs.ErrNotExist) {
		if err := s.dir.writeIndex(newIndex()); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
	}
	if err := s.cleanBlobTemps(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	if err := s.cleanSourceTemps(); err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	return s, nil
}

// Root returns the directory of the store, as an absolute path.
func (s *Store) Root() string { return string(s.dir) }

func newIndex() ocispec.Index {
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{}}
	idx.SchemaVersion = 2
	return idx
}

func isRootTemp(name string) bool {
	return strings.HasPrefix(name, "."+indexFile+".tmp-") || strings.HasPrefix(name, "."+layoutFile+".tmp-")
}

// cleanBlobTemps removes the temporary files and lock files of blob
// writers that are gone.
// A live writer holds an flock on its file, so a file whose lock can be
// taken belongs to nobody.
func (s *Store) cleanBlobTemps() error {
	return s.eachEntry(blobsDir, func(dir string, e os.DirEntry) error {
		if strings.HasPrefix(e.Name(), blobLockPrefix) && e.Type().IsRegular() {
			// A lock file its killed holder left; a live one's lock
			// cannot be taken.
			if l, _ := lockfile.TryLock(filepath.Join(dir, e.Name()), lockfile.Exclusive, false); l != nil {
				l.Remove()
			}
			return nil
		}
		if !strings.HasPrefix(e.Name(), blobTempPrefix) || !e.Type().IsRegular() {
			return nil
		}
		p := filepath.Join(dir, e.Name())
		f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		defer f.Close()
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}

// eachEntry calls fn with each entry of the store's directories
// sub/ALG, one per digest algorithm, and the directory; missing ones are
// skipped. It stops at the first error.
func (s *Store) eachEntry(sub string, fn func(dir string, e os.DirEntry) error) error {
	for _, alg := range algorithms {
		dir := filepath.Join(string(s.dir), sub, string(alg))
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		for _, e := range entries {
			if err := fn(dir, e); err != nil {
				return err
			}
		}
	}
	return nil
}

// lockIndex takes the lock for index.json: a semaphore in this process and
// an flock on the store directory between processes.
func (s *Store) lockIndex(ctx context.Context) (unlock func(), err error) {
	select {
	case s.indexSem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	f, err := os.Open(string(s.dir))
	if err != nil {
		<-s.indexSem
		return nil, err
	}
	for delay := time.Millisecond; ; {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if err != unix.EWOULDBLOCK && err != unix.EINTR {
			f.Close()
			<-s.indexSem
			return nil, fmt.Errorf("lock %s: %w", indexFile, err)
		}
		select {
		case <-time.After(delay):
		case <-ctx.Done():
			f.Close()
			<-s.indexSem
			return nil, ctx.Err()
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Close() // releases the flock
			<-s.indexSem
		})
	}, nil
}

// updateIndex replaces index.json with what fn makes of it, under the
// index lock. fn returning errUnchanged skips the write.
func (s *Store) updateIndex(ctx context.Context, fn func(*ocispec.Index) error) error {
	unlock, err := s.lockIndex(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.dir.readIndex()
	if err != nil {
		return err
	}
	if err := fn(&idx); err != nil {
		if errors.Is(err, errUnchanged) {
			return nil
		}
		return err
	}
	return s.dir.writeIndex(idx)
}

var errUnchanged = errors.New("unchanged")

// lockDigest takes the lock of digest d: the in-process one, then an flock
// on blobs/ALG/.lock-HEX, so that writers in other processes take turns
// too. The holder removes the lock file when it lets go; a waiter that
// then gets the lock of the removed file opens a new one.
func (s *Store) lockDigest(ctx context.Context, d digest.Digest) (unlock func(), err error) {
	release, err := s.locks.Lock(ctx, d)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(string(s.dir), blobsDir, string(d.Algorithm()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		release()
		return nil, err
	}
	f, err := lockfile.Lock(ctx, filepath.Join(dir, blobLockPrefix+d.Encoded()), lockfile.Exclusive, true)
	if err != nil {
		release()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			f.Remove()
			release()
		})
	}, nil
}

// layoutDir is an OCI image layout on disk, read without locks: the store's
// own, or another one being imported.
type layoutDir string

func checkDigest(d digest.Digest) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("%w: digest %q: %v", ErrInvalid, string(d), err)
	}
	return nil
}

func (l layoutDir) blobPath(d digest.Digest) (string, error) {
	if err := checkDigest(d); err != nil {
		return "", err
	}
	return filepath.Join(string(l), blobsDir, string(d.Algorithm()), d.Encoded()), nil
}

// open opens a blob; a missing one is ErrNotFound.
func (l layoutDir) open(d digest.Digest) (*os.File, error) {
	p, err := l.blobPath(d)
	if err != nil {
		return nil, err
	}
	// Neither follow a symlink nor block on a FIFO: a layout being
	// imported is not trusted.
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: blob %s is not a regular file", ErrInvalid, d)
	}
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%w: blob %s is not a regular file", ErrInvalid, d)
	}
	return f, nil
}

// size returns the size of a blob; a missing one is ErrNotFound.
func (l layoutDir) size(d digest.Digest) (int64, error) {
	p, err := l.blobPath(d)
	if err != nil {
		return 0, err
	}
	st, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("blob %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return 0, err
	}
	if !st.Mode().IsRegular() {
		return 0, fmt.Errorf("%w: blob %s is not a regular file", ErrInvalid, d)
	}
	return st.Size(), nil
}

// readBlob reads a small blob (a manifest, index or config) whole and
// checks it against desc's digest and, when not zero, size.
func (l layoutDir) readBlob(desc ocispec.Descriptor) ([]byte, error) {
	f, err := l.open(desc.Digest)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if desc.Size > 0 && st.Size() != desc.Size {
		return nil, fmt.Errorf("%w: blob %s has %d bytes, its descriptor says %d", ErrDigestMismatch, desc.Digest, st.Size(), desc.Size)
	}
	if st.Size() > maxJSONSize {
		return nil, fmt.Errorf("%w: blob %s: %d bytes is too large for a manifest or config (limit %d)", ErrInvalid, desc.Digest, st.Size(), maxJSONSize)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxJSONSize+1))
	if err != nil {
		return nil, fmt.Errorf("read blob %s: %w", desc.Digest, err)
	}
	if got := desc.Digest.Algorithm().FromBytes(b); got != desc.Digest {
		return nil, fmt.Errorf("%w: blob %s has digest %s", ErrDigestMismatch, desc.Digest, got)
	}
	return b, nil
}

// checkLayout reads oci-layout; a missing one wraps fs.ErrNotExist.
func (l layoutDir) checkLayout() error {
	p := filepath.Join(string(l), layoutFile)
	b, err := readSmallFile(p)
	if err != nil {
		return err
	}
	var lay ocispec.ImageLayout
	if err := json.Unmarshal(b, &lay); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInvalid, p, err)
	}
	if lay.Version != ocispec.ImageLayoutVersion {
		return fmt.Errorf("%w: %s: image layout version %q, want %q", ErrInvalid, p, lay.Version, ocispec.ImageLayoutVersion)
	}
	return nil
}

// readIndex reads and checks index.json; a missing one wraps
// fs.ErrNotExist.
func (l layoutDir) readIndex() (ocispec.Index, error) {
	p := filepath.Join(string(l), indexFile)
	b, err := readSmallFile(p)
	if err != nil {
		return ocispec.Index{}, err
	}
	return parseIndex(p, b)
}

// readSmallFile reads a regular file of at most maxJSONSize bytes, without
// following a symlink or blocking on a FIFO. A missing one wraps
// fs.ErrNotExist.
func readSmallFile(p string) ([]byte, error) {
	f, err := os.OpenFile(p, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		return nil, fmt.Errorf("%w: %s is a symlink", ErrInvalid, p)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil || !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: %s is not a regular file", ErrInvalid, p)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxJSONSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxJSONSize {
		return nil, fmt.Errorf("%w: %s is larger than %d bytes", ErrInvalid, p, maxJSONSize)
	}
	return b, nil
}

// parseIndex decodes an index.json and checks its descriptors.
func parseIndex(what string, b []byte) (ocispec.Index, error) {
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return ocispec.Index{}, fmt.Errorf("%w: %s: %v", ErrInvalid, what, err)
	}
	if idx.SchemaVersion != 2 {
		return ocispec.Index{}, fmt.Errorf("%w: %s: schemaVersion %d, want 2", ErrInvalid, what, idx.SchemaVersion)
	}
	if idx.MediaType != "" && idx.MediaType != ocispec.MediaTypeImageIndex {
		return ocispec.Index{}, fmt.Errorf("%w: %s: media type %q, want %q", ErrInvalid, what, idx.MediaType, ocispec.MediaTypeImageIndex)
	}
	for i, m := range idx.Manifests {
		if err := checkDigest(m.Digest); err != nil {
			return ocispec.Index{}, fmt.Errorf("%s: manifests[%d]: %w", what, i, err)
		}
		if m.Size < 0 {
			return ocispec.Index{}, fmt.Errorf("%w: %s: manifests[%d]: negative size", ErrInvalid, what, i)
		}
	}
	return idx, nil
}

func (l layoutDir) writeIndex(idx ocispec.Index) error {
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return err
	}
	return writeFileAtomic(string(l), indexFile, b)
}

// writeFileAtomic replaces dir/name with data: a temporary file, synced,
// renamed over it, and the directory synced.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	fail := func(err error) error {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if _, err := f.Write(data); err != nil {
		return fail(err)
	}
	if err := f.Chmod(0o644); err != nil {
		return fail(err)
	}
	if err := f.Sync(); err != nil {
		return fail(err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
