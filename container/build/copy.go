package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthlabs/berth/layer/archive"
	"github.com/klauspost/compress/zstd"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
)

// tree is where COPY or ADD sources come from: the build context, or the
// root filesystem of a stage or an image.
type tree struct {
	root string // real host path
	// inRoot resolves symlinks as inside a root filesystem; else a path
	// out of root is refused (the build context).
	inRoot bool
	bc     *buildContext // the context, for .dockerignore; nil otherwise
	hashes *hashCache    // remembers content hashes; nil: read each time
	// keepOwner keeps the files' owners; else (the context) they are
	// 0:0 unless --chown says otherwise.
	keepOwner bool
}

// srcEntry is one file to copy.
type srcEntry struct {
	host string // host path; "" for inline data
	rel  string // path under the copied source, "." for the source itself
	fi   os.FileInfo
	link string
	sum  string // content hash of a regular file
	data []byte // inline (heredoc) content
}

// source is one COPY or ADD source argument, matched and walked.
type source struct {
	arg     string
	base    string     // the name it gets in a destination directory
	entries []srcEntry // entries[0] is the source itself (rel ".")
	isDir   bool
	archive bool // ADD: a local archive to extract
}

func hasMeta(s string) bool { return strings.ContainsAny(s, "*?[") }

// match returns the context-relative paths that src names: itself, or
// what its glob matches.
func (t *tree) match(src string) ([]string, error) {
	rel, err := cleanRel(src, t.inRoot)
	if err != nil {
		return nil, err
	}
	if !hasMeta(rel) {
		if t.ignored(rel) {
			return nil, fmt.Errorf("%w: %s (excluded by .dockerignore)", ErrSourceNotFound, src)
		}
		return []string{rel}, nil
	}
	cands := []string{"."}
	for _, comp := range strings.Split(rel, "/") {
		var next []string
		for _, c := range cands {
			if !hasMeta(comp) {
				next = append(next, path.Join(c, comp))
				continue
			}
			dir, err := resolveIn(t.root, c, t.inRoot)
			if err != nil {
				continue
			}
			ents, err := os.ReadDir(dir)
			if err != nil {
				continue
			}
			for _, e := range ents {
				ok, err := path.Match(comp, e.Name())
				if err != nil {
					return nil, fmt.Errorf("%w: source %s: %v", ErrDockerfile, src, err)
				}
				if ok {
					next = append(next, path.Join(c, e.Name()))
				}
			}
		}
		cands = next
	}
	var out []string
	for _, c := range cands {
		if _, err := os.Lstat(filepath.Join(t.root, c)); err == nil && !t.ignored(c) {
			out = append(out, c)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: %s matches no file", ErrSourceNotFound, src)
	}
	slices.Sort(out)
	return out, nil
}

func (t *tree) ignored(rel string) bool { return t.bc != nil && t.bc.ignored(rel) }

// collect resolves and walks the source rel, hashing its files.
func (t *tree) collect(ctx context.Context, arg, rel string, isAdd bool) (*source, error) {
	host, err := resolveIn(t.root, rel, t.inRoot)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s", ErrSourceNotFound, arg)
	}
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(host)
	if err != nil {
		return nil, err
	}
	s := &source{arg: arg, base: path.Base(rel), isDir: fi.IsDir()}
	add := func(e srcEntry) error {
		switch {
		case e.fi.Mode().IsRegular():
			sum, err := t.sum(e.host, e.fi)
			if err != nil {
				return err
			}
			e.sum = sum
		case e.fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(e.host)
			if err != nil {
				return err
			}
			e.link = l
		}
		s.entries = append(s.entries, e)
		return nil
	}
	if err := add(srcEntry{host: host, rel: ".", fi: fi}); err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		if isAdd && fi.Mode().IsRegular() {
			s.archive, err = isArchive(host)
			if err != nil {
				return nil, err
			}
		}
		return s, nil
	}
	err = filepath.WalkDir(host, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p == host {
			return nil
		}
		r, _ := filepath.Rel(host, p)
		r = filepath.ToSlash(r)
		if t.ignored(path.Join(rel, r)) {
			if d.IsDir() && !t.bc.ignore.Exclusions() {
				return filepath.SkipDir
			}
			if !d.IsDir() {
				return nil
			}
			// A directory excluded with exceptions below it: descend,
			// but leave the directory itself out; what is copied from
			// it gets its parents made (0755, root).
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		return add(srcEntry{host: p, rel: r, fi: fi})
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (t *tree) sum(p string, fi os.FileInfo) (string, error) {
	if t.hashes == nil {
		return newHashCache().sum(p, fi, false)
	}
	return t.hashes.sum(p, fi, true)
}

// checksum is the cache key part of the sources: path, type and mode,
// owner (where kept), content or link target of every entry; never the
// mtime.
func checksum(srcs []*source, keepOwner bool) string {
	h := sha256.New()
	for i, s := range srcs {
		fmt.Fprintf(h, "source %d %q archive=%v\n", i, s.arg, s.archive)
		for _, e := range s.entries {
			if e.data != nil {
				fmt.Fprintf(h, "%q data %x\n", e.rel, sha256.Sum256(e.data))
				continue
			}
			uid, gid := fileOwner(e.fi)
			if !keepOwner {
				uid, gid = 0, 0
			}
			fmt.Fprintf(h, "%q %o %d:%d %s %q\n", e.rel, e.fi.Mode(), uid, gid, e.sum, e.link)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileOwner(fi os.FileInfo) (int, int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return 0, 0
}

// isArchive reports whether the file is a tar archive ADD extracts:
// plain, gzip, bzip2 or zstd.
func isArchive(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return false, nil
	}
	var hdr [512]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return false, nil
	}
	return bytes.Equal(hdr[257:262], []byte("ustar")), nil
}

// decompress returns r decompressed when it starts with the magic bytes
// of gzip, bzip2 or zstd, else r itself.
func decompress(r io.Reader) (io.Reader, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		return gzip.NewReader(br)
	case bytes.HasPrefix(magic, []byte("BZh")):
		return bzip2.NewReader(br), nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		d, err := zstd.NewReader(br)
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return br, nil
}

// copyPlan is a COPY or ADD ready to write into a root filesystem.
type copyPlan struct {
	srcs      []*source
	dest      string // absolute, cleaned
	destIsDir bool   // the raw destination ends with "/" (or is ".")
	keepOwner bool
	uid, gid  int // --chown, when chown
	chown     bool
	chmod     *os.FileMode
}

// parseChmod parses --chmod's octal mode.
func parseChmod(s string) (*os.FileMode, error) {
	if s == "" {
		return nil, nil
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return nil, fmt.Errorf("%w: --chmod=%s: only octal modes are supported", ErrUnsupported, s)
	}
	m := os.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return &m, nil
}

// write writes the plan as a tar stream into the mounted root filesystem
// root, through archive.Apply (which keeps every path inside root).
func (cp *copyPlan) write(ctx context.Context, root string) error {
	if len(cp.srcs) > 1 && !cp.destIsDir {
		return fmt.Errorf("%w: when copying more than one source the destination must be a directory and end with a /", ErrDockerfile)
	}
	// Is the destination an existing directory in the image?
	destExists, destDir := false, false
	if _, err := resolveIn(root, strings.TrimPrefix(cp.dest, "/")+"/.", true); err == nil {
		destExists, destDir = true, true
	} else if _, err := resolveIn(root, strings.TrimPrefix(cp.dest, "/"), true); err == nil {
		destExists = true
	}
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		tw := tar.NewWriter(pw)
		err := cp.stream(tw, destExists, destDir)
		if cerr := tw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
		done <- err
	}()
	_, err := archive.Apply(ctx, root, pr, archive.Options{})
	pr.CloseWithError(io.ErrClosedPipe)
	werr := <-done
	if werr != nil && !errors.Is(werr, io.ErrClosedPipe) {
		return werr
	}
	return err
}

func (cp *copyPlan) hdr(e srcEntry, name string) (*tar.Header, error) {
	var h *tar.Header
	if e.data != nil {
		h = &tar.Header{Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(e.data))}
	} else {
		var err error
		h, err = tar.FileInfoHeader(e.fi, e.link)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", e.host, err)
		}
		uid, gid := fileOwner(e.fi)
		h.Uid, h.Gid = uid, gid
		h.Uname, h.Gname = "", ""
		if !cp.keepOwner {
			h.Uid, h.Gid = 0, 0
		}
	}
	h.Name = name
	if cp.chown {
		h.Uid, h.Gid = cp.uid, cp.gid
	}
	if cp.chmod != nil && h.Typeflag != tar.TypeSymlink {
		m := *cp.chmod
		h.Mode = int64(m.Perm())
		if m&os.ModeSetuid != 0 {
			h.Mode |= 0o4000
		}
		if m&os.ModeSetgid != 0 {
			h.Mode |= 0o2000
		}
		if m&os.ModeSticky != 0 {
			h.Mode |= 0o1000
		}
	}
	if h.Typeflag == tar.TypeDir && !strings.HasSuffix(h.Name, "/") {
		h.Name += "/"
	}
	return h, nil
}

// stream writes the plan's entries, named where they land.
func (cp *copyPlan) stream(tw *tar.Writer, destExists, destDir bool) error {
	dest := strings.TrimPrefix(cp.dest, "/")
	for _, s := range cp.srcs {
		if s.archive {
			if err := cp.extract(tw, s.entries[0].host, dest); err != nil {
				return fmt.Errorf("ADD %s: %w", s.arg, err)
			}
			continue
		}
		for i, e := range s.entries {
			var name string
			switch {
			case s.isDir:
				if i == 0 {
					if destExists {
						continue // the directory's contents go into it
					}
					// A new destination directory is made 0755 (or
					// --chmod) and owned by root (or --chown), as
					// Docker makes it, whatever the source's mode.
					h, err := cp.hdr(srcEntry{rel: ".", fi: dirInfo{}}, dest)
					if err != nil {
						return err
					}
					if err := tw.WriteHeader(h); err != nil {
						return err
					}
					continue
				} else {
					name = path.Join(dest, e.rel)
				}
			case cp.destIsDir || destDir:
				name = path.Join(dest, s.base)
			default:
				name = dest
			}
			if name == "" || name == "." {
				if !(s.isDir && i == 0) {
					return fmt.Errorf("%w: cannot copy a file onto /", ErrDockerfile)
				}
				continue
			}
			h, err := cp.hdr(e, name)
			if err != nil {
				return err
			}
			if err := tw.WriteHeader(h); err != nil {
				return err
			}
			switch {
			case e.data != nil:
				if _, err := tw.Write(e.data); err != nil {
					return err
				}
			case h.Typeflag == tar.TypeReg:
				f, err := os.Open(e.host)
				if err != nil {
					return err
				}
				_, err = io.Copy(tw, f)
				f.Close()
				if err != nil {
					return fmt.Errorf("%s: %w", e.host, err)
				}
			}
		}
	}
	return nil
}

// extract copies the entries of the archive at p into tw under dest.
func (cp *copyPlan) extract(tw *tar.Writer, p, dest string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	r, err := decompress(f)
	if err != nil {
		return err
	}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		name := path.Clean("/" + h.Name)
		if strings.HasPrefix(path.Base(name), ".wh.") {
			return fmt.Errorf("%w: archive entry %q is a whiteout", ErrUnsupported, h.Name)
		}
		if slices.Contains(strings.Split(h.Name, "/"), "..") {
			return fmt.Errorf("%w: archive entry %q has a \"..\" component", ErrOutsideContext, h.Name)
		}
		h.Name = strings.TrimPrefix(path.Join("/", dest, name), "/")
		if h.Typeflag == tar.TypeDir {
			h.Name += "/"
		}
		if h.Typeflag == tar.TypeLink {
			h.Linkname = strings.TrimPrefix(path.Join("/", dest, path.Clean("/"+h.Linkname)), "/")
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return err
		}
	}
}

// inline makes the sources of a COPY or ADD heredoc.
func inline(c []instructions.SourceContent) []*source {
	var out []*source
	for _, sc := range c {
		out = append(out, &source{arg: sc.Path, base: path.Base(sc.Path), entries: []srcEntry{{rel: ".", data: []byte(sc.Data), host: ""}}})
	}
	return out
}

// dirInfo is the metadata of a directory COPY creates.
type dirInfo struct{}

func (dirInfo) Name() string       { return "." }
func (dirInfo) Size() int64        { return 0 }
func (dirInfo) Mode() fs.FileMode  { return fs.ModeDir | 0o755 }
func (dirInfo) ModTime() time.Time { return time.Unix(0, 0) }
func (dirInfo) IsDir() bool        { return true }
func (dirInfo) Sys() any           { return nil }
