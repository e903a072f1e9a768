package content

import (
	"path/filepath"
	"sync"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Starting a container from an image resolves its name and reads its
// manifest and config each time: a file read and a parse or a hash each,
// ~0.1 ms apiece. readCache keeps what those reads found: index.json as
// long as a stat says it is the same file (another process replaces it
// by renaming a new one over it), and manifests and configs for good,
// since a blob's content is its digest.
type readCache struct {
	mu    sync.Mutex
	key   fileKey
	index ocispec.Index
	blobs map[digest.Digest][]byte
}

const (
	// cachedBlobMax is the largest blob readCache keeps, and
	// cachedBlobs how many; a full cache starts over.
	cachedBlobMax = 256 << 10
	cachedBlobs   = 256
)

// fileKey tells one version of a file from another: a rename gives a new
// inode, a rewrite in place a new size or change time.
type fileKey struct {
	dev, ino, size       uint64
	mtimeNsec, ctimeNsec int64
}

func statKey(p string) (fileKey, bool) {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
		return fileKey{}, false
	}
	return fileKey{
		dev: st.Dev, ino: st.Ino, size: uint64(st.Size),
		mtimeNsec: st.Mtim.Nano(), ctimeNsec: st.Ctim.Nano(),
	}, true
}

// readIndexCached is readIndex for readers: its result shares the
// descriptors' annotations and platforms with the cache and with other
// callers, which must not change them.
func (s *Store) readIndexCached() (ocispec.Index, error) {
	key, ok := statKey(filepath.Join(string(s.dir), indexFile))
	if ok {
		s.cache.mu.Lock()
		if s.cache.key == key {
			idx := s.cache.index
			s.cache.mu.Unlock()
			return idx, nil
		}
		s.cache.mu.Unlock()
	}
	idx, err := s.dir.readIndex()
	if err != nil || !ok {
		return idx, err
	}
	// The stat came first: a replacement meanwhile gives the next
	// reader another key, and a fresh read.
	idx.Manifests = idx.Manifests[:len(idx.Manifests):len(idx.Manifests)]
	s.cache.mu.Lock()
	s.cache.key, s.cache.index = key, idx
	s.cache.mu.Unlock()
	return idx, nil
}

// readBlobCached is readBlob for manifests and configs. A blob that was
// read and checked once is not read again while a stat finds a file of
// its size under its name: its digest names that content.
func (s *Store) readBlobCached(desc ocispec.Descriptor) ([]byte, error) {
	s.cache.mu.Lock()
	b, ok := s.cache.blobs[desc.Digest]
	s.cache.mu.Unlock()
	if ok && (desc.Size <= 0 || int64(len(b)) == desc.Size) {
		if p, err := s.dir.blobPath(desc.Digest); err == nil {
			if key, ok := statKey(p); ok && key.size == uint64(len(b)) {
				return b, nil
			}
		}
		s.blobGone(desc.Digest)
	}
	b, err := s.dir.readBlob(desc)
	if err != nil || len(b) > cachedBlobMax {
		return b, err
	}
	s.cache.mu.Lock()
	if s.cache.blobs == nil || len(s.cache.blobs) >= cachedBlobs {
		s.cache.blobs = make(map[digest.Digest][]byte)
	}
	s.cache.blobs[desc.Digest] = b
	s.cache.mu.Unlock()
	return b, nil
}

// blobGone drops a blob from the cache.
func (s *Store) blobGone(d digest.Digest) {
	s.cache.mu.Lock()
	delete(s.cache.blobs, d)
	s.cache.mu.Unlock()
}
