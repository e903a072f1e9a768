package content

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Writer writes one blob into a Store. Data goes to a temporary file next
// to the blob's final place; Commit checks it and moves it into place.
// Close a Writer that was not committed: that removes the temporary file
// and lets other writers of the same digest go on.
type Writer struct {
	s      *Store
	ctx    context.Context
	want   ocispec.Descriptor
	f      *os.File
	tmp    string
	dgst   digest.Digester
	n      int64
	unlock func() // the digest's lock, when held
	err    error  // the first write error, returned again by Commit
	done   bool
	// created is set by Commit when this writer put the blob in place.
	created bool
}

// Writer starts writing the blob desc describes. When desc.Digest is set,
// Commit checks the data against it, and writers of the same digest take
// turns, in this process and in others on the same directory: the first
// writes, and the others wait and then get ErrExists, as does any writer
// of a blob the store already has. When
// desc.Digest is empty the digest is computed (sha256) and a blob that turns
// out to exist makes Commit a no-op. A desc.Size of zero means unknown;
// otherwise writing more, or committing fewer, bytes is ErrDigestMismatch.
// ctx bounds the wait for the digest and every Write.
func (s *Store) Writer(ctx context.Context, desc ocispec.Descriptor) (*Writer, error) {
	if desc.Size < 0 {
		return nil, fmt.Errorf("write blob: %w: negative size %d", ErrInvalid, desc.Size)
	}
	alg := digest.Canonical
	w := &Writer{s: s, ctx: ctx, want: desc}
	if desc.Digest != "" {
		if err := checkDigest(desc.Digest); err != nil {
			return nil, fmt.Errorf("write blob: %w", err)
		}
		alg = desc.Digest.Algorithm()
		unlock, err := s.lockDigest(ctx, desc.Digest)
		if err != nil {
			return nil, fmt.Errorf("write blob %s: %w", desc.Digest, err)
		}
		if _, err := s.dir.size(desc.Digest); err == nil {
			unlock()
			return nil, fmt.Errorf("write blob %s: %w", desc.Digest, ErrExists)
		} else if !errors.Is(err, ErrNotFound) {
			unlock()
			return nil, fmt.Errorf("write blob %s: %w", desc.Digest, err)
		}
		w.unlock = unlock
	}
	dir := filepath.Join(string(s.dir), blobsDir, string(alg))
	f, err := createLockedTemp(dir)
	if err != nil {
		if w.unlock != nil {
			w.unlock()
		}
		return nil, fmt.Errorf("write blob: %w", err)
	}
	w.f, w.tmp, w.dgst = f, f.Name(), alg.Digester()
	return w, nil
}

// createLockedTemp creates a temporary file in dir and takes an flock on it,
// which tells Open's clean-up that a live writer owns it.
func createLockedTemp(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	for {
		f, err := os.CreateTemp(dir, blobTempPrefix+"*")
		if err != nil {
			return nil, err
		}
		if err := f.Chmod(0o644); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, err
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
			f.Close()
			os.Remove(f.Name())
			return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
		}
		// A clean-up may have removed the file between its creation and
		// our lock; then start over with a new one.
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err != nil {
			f.Close()
			return nil, err
		}
		if st.Nlink > 0 {
			return f, nil
		}
		f.Close()
	}
}

// Write writes p to the blob.
func (w *Writer) Write(p []byte) (int, error) {
	if w.done {
		return 0, fmt.Errorf("%w: write to a closed blob writer", ErrInvalid)
	}
	if w.err != nil {
		return 0, w.err
	}
	if err := w.ctx.Err(); err != nil {
		w.err = err
		return 0, err
	}
	if w.want.Size > 0 && w.n+int64(len(p)) > w.want.Size {
		w.err = fmt.Errorf("%w: blob %s: more than the expected %d bytes", ErrDigestMismatch, w.want.Digest, w.want.Size)
		return 0, w.err
	}
	n, err := w.f.Write(p)
	w.dgst.Hash().Write(p[:n])
	w.n += int64(n)
	if err != nil {
		w.err = fmt.Errorf("write blob: %w", err)
		return n, w.err
	}
	return n, nil
}

// Size returns the number of bytes written so far.
func (w *Writer) Size() int64 { return w.n }

// Commit checks the data written against the descriptor given to Writer,
// syncs it and moves it into place under its digest, and returns the
// blob's descriptor. On a mismatch it returns an error wrapping
// ErrDigestMismatch and keeps nothing. The Writer is done either way.
func (w *Writer) Commit(ctx context.Context) (ocispec.Descriptor, error) {
	if w.done {
		return ocispec.Descriptor{}, fmt.Errorf("%w: commit of a closed blob writer", ErrInvalid)
	}
	if w.err != nil {
		err := w.err
		w.abort()
		return ocispec.Descriptor{}, err
	}
	got := w.dgst.Digest()
	desc := ocispec.Descriptor{MediaType: w.want.MediaType, Digest: got, Size: w.n}
	if w.want.Size > 0 && w.n != w.want.Size {
		w.abort()
		return ocispec.Descriptor{}, fmt.Errorf("%w: blob %s: %d bytes written, expected %d", ErrDigestMismatch, w.want.Digest, w.n, w.want.Size)
	}
	if w.want.Digest != "" && got != w.want.Digest {
		w.abort()
		return ocispec.Descriptor{}, fmt.Errorf("%w: blob %s: data has digest %s", ErrDigestMismatch, w.want.Digest, got)
	}
	if err := w.f.Sync(); err != nil {
		w.abort()
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	if w.unlock == nil {
		unlock, err := w.s.lockDigest(ctx, got)
		if err != nil {
			w.abort()
			return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
		}
		w.unlock = unlock
		if _, err := w.s.dir.size(got); err == nil {
			w.abort()
			return desc, nil
		}
	}
	final, _ := w.s.dir.blobPath(got)
	// Rename while the file is open and locked, so that no clean-up can
	// take it for a leftover.
	if err := os.Rename(w.tmp, final); err != nil {
		w.abort()
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	w.f.Close()
	w.done = true
	err := syncDir(filepath.Dir(final))
	w.unlock()
	if err != nil {
		return ocispec.Descriptor{}, fmt.Errorf("commit blob %s: %w", got, err)
	}
	w.created = true
	return desc, nil
}

// Close abandons a Writer that was not committed, removing what it wrote.
// After Commit it does nothing.
func (w *Writer) Close() error {
	if !w.done {
		w.abort()
	}
	return nil
}

func (w *Writer) abort() {
	w.done = true
	w.f.Close()
	os.Remove(w.tmp)
	if w.unlock != nil {
		w.unlock()
	}
}

// Put stores what r yields as a blob and returns its descriptor. expected,
// when not empty, is the digest the data must have: a mismatch is an error
// wrapping ErrDigestMismatch and nothing is kept. Putting a blob the store
// already has is not an error; r is then not read when expected is given.
func (s *Store) Put(ctx context.Context, mediaType string, r io.Reader, expected digest.Digest) (ocispec.Descriptor, error) {
	desc, _, err := s.put(ctx, mediaType, r, expected, 0)
	return desc, err
}

// put is Put with an expected size (0: unknown), reporting whether this
// call created the blob.
func (s *Store) put(ctx context.Context, mediaType string, r io.Reader, expected digest.Digest, size int64) (ocispec.Descriptor, bool, error) {
	w, err := s.Writer(ctx, ocispec.Descriptor{MediaType: mediaType, Digest: expected, Size: size})
	if errors.Is(err, ErrExists) {
		n, err := s.dir.size(expected)
		if err != nil {
			return ocispec.Descriptor{}, false, err
		}
		if size > 0 && n != size {
			return ocispec.Descriptor{}, false, fmt.Errorf("%w: blob %s has %d bytes, expected %d", ErrDigestMismatch, expected, n, size)
		}
		return ocispec.Descriptor{MediaType: mediaType, Digest: expected, Size: n}, false, nil
	}
	if err != nil {
		return ocispec.Descriptor{}, false, err
	}
	defer w.Close()
	if _, err := io.Copy(w, r); err != nil {
		if w.err == nil {
			err = fmt.Errorf("put blob: read: %w", err)
		}
		return ocispec.Descriptor{}, false, err
	}
	desc, err := w.Commit(ctx)
	return desc, w.created, err
}

// Open opens the blob d for reading; a missing blob is ErrNotFound.
func (s *Store) Open(ctx context.Context, d digest.Digest) (io.ReadSeekCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	f, err := s.dir.open(d)
	if err != nil {
		return nil, fmt.Errorf("open %w", err)
	}
	return f, nil
}

// Info returns the size of the blob d; a missing blob is ErrNotFound.
func (s *Store) Info(ctx context.Context, d digest.Digest) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n, err := s.dir.size(d)
	if err != nil {
		return 0, fmt.Errorf("info: %w", err)
	}
	return n, nil
}

// Delete removes the blob d; a missing blob is ErrNotFound. Names that
// lead to it are not changed: use GC to remove only what nothing needs.
func (s *Store) Delete(ctx context.Context, d digest.Digest) error {
	p, err := s.dir.blobPath(d)
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	unlock, err := s.lockDigest(ctx, d)
	if err != nil {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	defer unlock()
	if err := os.Remove(p); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", d, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("delete blob %s: %w", d, err)
	}
	s.blobGone(d)
	s.dropSources(d)
	return nil
}

// Walk calls fn with the digest and size of every blob in the store, in
// the order of their digests, and stops at the first error fn returns.
// Blobs being written are not seen.
func (s *Store) Walk(ctx context.Context, fn func(digest.Digest, int64) error) error {
	for _, alg := range algorithms {
		dir := filepath.Join(string(s.dir), blobsDir, string(alg))
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("walk blobs: %w", err)
		}
		for _, e := range entries {
			if err := ctx.Err(); err != nil {
				return err
			}
			if strings.HasPrefix(e.Name(), ".") || !e.Type().IsRegular() {
				continue
			}
			d := digest.NewDigestFromEncoded(alg, e.Name())
			if d.Validate() != nil {
				continue
			}
			info, err := e.Info()
			if errors.Is(err, fs.ErrNotExist) {
				continue // deleted meanwhile
			}
			if err != nil {
				return fmt.Errorf("walk blobs: %w", err)
			}
			if err := fn(d, info.Size()); err != nil {
				return err
			}
		}
	}
	return nil
}
