package archive

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Diff writes to w a layer (an uncompressed tar) that turns the tree lower
// into the tree upper when applied onto lower: the copy snapshotter's
// commit. It has files, symlinks, devices and fifos that upper adds or
// changes, directories that are new or whose metadata changed along with
// the parents of every change, ".wh.NAME" for what upper deleted, and
// ".wh..wh..opq" for a directory that keeps none of the names it had
// in lower. Hardlinks within upper are kept (as link entries to the
// first name written).
//
// A file is unchanged when its type, mode, owner, modification time (to
// the nanosecond), size, link count, extended attributes and, for a
// symlink, target are the same; a regular file whose time has no
// fraction of a second is also compared byte by byte. The root directory
// itself is not written, nor are sockets. Entries come in a fixed order
// (depth first, names sorted by byte value in each directory), with
// times truncated to the second and no user or group names, so equal
// trees give equal layers.
//
// Symlinks in lower and upper are never followed. A name that upper
// changes while Diff reads it can make Diff fail.
func Diff(ctx context.Context, w io.Writer, lower, upper string) error {
	lfd, err := openDirPath(lower)
	if err != nil {
		return err
	}
	defer unix.Close(lfd)
	ufd, err := openDirPath(upper)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	d := newDiffer(ctx, w, false)
	if err := d.dir(lfd, ufd, ""); err != nil {
		return err
	}
	return d.close()
}

// DiffOverlay writes to w the layer (an uncompressed tar) that an
// overlayfs upper directory holds: every entry in it, with 0:0 character
// devices written as ".wh.NAME" whiteouts and opaque directories
// (trusted.overlay.opaque=y, or user.overlay.opaque=y from a userxattr
// mount) followed by ".wh..wh..opq". Overlay's own attributes are not
// copied. An upper directory with redirected directories or metacopy
// files (an overlay mounted with redirect_dir or metacopy on) cannot be
// written as a layer and is an error matching errors.ErrUnsupported.
// Order and formatting are as for Diff. Reading trusted.* attributes
// needs CAP_SYS_ADMIN.
func DiffOverlay(ctx context.Context, w io.Writer, upper string) error {
	ufd, err := openDirPath(upper)
	if err != nil {
		return err
	}
	defer unix.Close(ufd)
	d := newDiffer(ctx, w, true)
	if xa, err := d.xattrsOf(ufd, "."); err != nil {
		return err
	} else if isOpaque(xa) {
		if err := d.marker(whiteoutOpaque); err != nil {
			return err
		}
	}
	if err := d.dir(-1, ufd, ""); err != nil {
		return err
	}
	return d.close()
}

func openDirPath(dir string) (int, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("archive: open %s: %w", dir, err)
	}
	return fd, nil
}

type inode struct{ dev, ino uint64 }

// differ writes a layer from one tree (DiffOverlay) or the difference of
// two (Diff).
type differ struct {
	ctx     context.Context
	tw      *tar.Writer
	overlay bool
	buf     []byte
	links   map[inode]string // first name written of each hardlinked inode
	pending []pendingDir     // directories entered, whose headers wait for a change below them
}

type pendingDir struct {
	dirfd   int // descriptor of the parent directory
	name    string
	path    string
	st      unix.Stat_t
	xattrs  map[string][]byte
	written bool
}

func newDiffer(ctx context.Context, w io.Writer, overlay bool) *differ {
	return &differ{ctx: ctx, tw: tar.NewWriter(w), overlay: overlay, buf: make([]byte, 1<<20), links: make(map[inode]string)}
}

func (d *differ) close() error {
	if err := d.tw.Close(); err != nil {
		return fmt.Errorf("archive: write layer: %w", err)
	}
	return nil
}

func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// dir writes the changes in directory rel: ufd is its descriptor in upper,
// lfd its descriptor in lower or -1 when everything in it is new.
func (d *differ) dir(lfd, ufd int, rel string) error {
	unames, err := readNames(ufd)
	if err != nil {
		return fmt.Errorf("archive: read directory %q: %w", rel, err)
	}
	slices.Sort(unames)
	var lnames []string
	if lfd >= 0 {
		if lnames, err = readNames(lfd); err != nil {
			return fmt.Errorf("archive: read lower directory %q: %w", rel, err)
		}
		slices.Sort(lnames)
		if len(lnames) > 0 && !anyCommon(lnames, unames) {
			// Nothing of lower's directory is left: one opaque marker
			// instead of a whiteout for every name.
			if err := d.marker(join(rel, whiteoutOpaque)); err != nil {
				return err
			}
			lfd, lnames = -1, nil
		}
	}
	i, j := 0, 0
	for i < len(lnames) || j < len(unames) {
		if err := d.ctx.Err(); err != nil {
			return err
		}
		var name string
		inL, inU := false, false
		switch {
		case j >= len(unames) || (i < len(lnames) && lnames[i] < unames[j]):
			name, inL = lnames[i], true
			i++
		case i >= len(lnames) || unames[j] < lnames[i]:
			name, inU = unames[j], true
			j++
		default:
			name, inL, inU = unames[j], true, true
			i++
			j++
		}
		p := join(rel, name)
		if strings.HasPrefix(name, whiteoutPrefix) {
			return unsupportedErr("archive: %q: a name starting with %q cannot be written in a layer", p, whiteoutPrefix)
		}
		if !inU {
			if err := d.marker(join(rel, whiteoutPrefix+name)); err != nil {
				return err
			}
			continue
		}
		if err := d.entry(lfd, ufd, name, p, inL); err != nil {
			return err
		}
	}
	return nil
}

func anyCommon(a, b []string) bool {
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] < b[j]:
			i++
		case a[i] > b[j]:
			j++
		default:
			return true
		}
	}
	return false
}

// entry writes name of upper directory ufd if it is new or changed.
func (d *differ) entry(lfd, ufd int, name, p string, inL bool) error {
	var ust, lst unix.Stat_t
	if err := unix.Fstatat(ufd, name, &ust, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("archive: stat %q: %w", p, err)
	}
	uxa, err := d.xattrsOf(ufd, name)
	if err != nil {
		return err
	}
	if d.overlay {
		if ust.Mode&unix.S_IFMT == unix.S_IFCHR && ust.Rdev == 0 || hasKey(uxa, overlayWhiteout) || hasKey(uxa, userOverlayWhout) {
			return d.marker(join(parentOf(p), whiteoutPrefix+name))
		}
		for _, k := range []string{overlayRedirect, overlayMetacopy, "user.overlay.redirect", "user.overlay.metacopy"} {
			if hasKey(uxa, k) {
				return unsupportedErr("archive: %q has %s: mount the overlay with redirect_dir=off and metacopy=off to commit it", p, k)
			}
		}
	}
	changed := true
	if inL {
		if err := unix.Fstatat(lfd, name, &lst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("archive: stat lower %q: %w", p, err)
		}
		lxa, err := d.xattrsOf(lfd, name)
		if err != nil {
			return err
		}
		if changed, err = d.changed(lfd, ufd, name, p, &lst, &ust, lxa, uxa); err != nil {
			return err
		}
	}
	if ust.Mode&unix.S_IFMT != unix.S_IFDIR {
		if !changed {
			return nil
		}
		return d.write(ufd, name, p, &ust, uxa)
	}

	// A directory: its header waits until something in it changes, unless
	// it changed itself. Its lower counterpart, if a directory, is
	// compared name by name.
	ucfd, err := openat2(ufd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveHere)
	if err != nil {
		return fmt.Errorf("archive: open %q: %w", p, err)
	}
	defer unix.Close(ucfd)
	lcfd := -1
	if inL && lst.Mode&unix.S_IFMT == unix.S_IFDIR {
		if lcfd, err = openat2(lfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveHere); err != nil {
			return fmt.Errorf("archive: open lower %q: %w", p, err)
		}
		defer unix.Close(lcfd)
	}
	d.pending = append(d.pending, pendingDir{dirfd: ufd, name: name, path: p, st: ust, xattrs: uxa})
	if changed {
		if err := d.flush(); err != nil {
			return err
		}
	}
	if d.overlay && isOpaque(uxa) {
		if err := d.marker(join(p, whiteoutOpaque)); err != nil {
			return err
		}
	}
	if err := d.dir(lcfd, ucfd, p); err != nil {
		return err
	}
	d.pending = d.pending[:len(d.pending)-1]
	return nil
}

func hasKey(m map[string][]byte, k string) bool {
	_, ok := m[k]
	return ok
}

func parentOf(p string) string {
	dir, _ := split(p)
	return dir
}

func isOpaque(xa map[string][]byte) bool {
	return string(xa[overlayOpaque]) == "y" || string(xa[userOverlayOpq]) == "y"
}

// changed reports whether name differs between lower and upper.
func (d *differ) changed(lfd, ufd int, name, p string, l, u *unix.Stat_t, lxa, uxa map[string][]byte) (bool, error) {
	if l.Mode != u.Mode || l.Uid != u.Uid || l.Gid != u.Gid || l.Mtim != u.Mtim || !xattrsEqual(lxa, uxa) {
		return true, nil
	}
	switch u.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return false, nil
	case unix.S_IFCHR, unix.S_IFBLK:
		return l.Rdev != u.Rdev, nil
	case unix.S_IFLNK:
		lt, err := readlinkAt(lfd, name)
		if err != nil {
			return false, fmt.Errorf("archive: readlink lower %q: %w", p, err)
		}
		ut, err := readlinkAt(ufd, name)
		if err != nil {
			return false, fmt.Errorf("archive: readlink %q: %w", p, err)
		}
		return lt != ut, nil
	case unix.S_IFREG:
		if l.Size != u.Size || l.Nlink != u.Nlink {
			return true, nil
		}
		if u.Mtim.Nsec != 0 {
			return false, nil
		}
		// A time without nanoseconds may be a copy's rounding: compare.
		same, err := sameContent(lfd, ufd, name, u.Size)
		if err != nil {
			return false, fmt.Errorf("archive: compare %q: %w", p, err)
		}
		return !same, nil
	}
	return false, nil
}

func xattrsEqual(a, b map[string][]byte) bool {
	return maps.EqualFunc(a, b, func(x, y []byte) bool { return string(x) == string(y) })
}

func sameContent(lfd, ufd int, name string, size int64) (bool, error) {
	lf, err := openat2(lfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0, resolveHere)
	if err != nil {
		return false, err
	}
	defer unix.Close(lf)
	uf, err := openat2(ufd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0, resolveHere)
	if err != nil {
		return false, err
	}
	defer unix.Close(uf)
	a, b := make([]byte, 256<<10), make([]byte, 256<<10)
	for size > 0 {
		n := int64(len(a))
		if n > size {
			n = size
		}
		if err := readFull(lf, a[:n]); err != nil {
			return false, err
		}
		if err := readFull(uf, b[:n]); err != nil {
			return false, err
		}
		if string(a[:n]) != string(b[:n]) {
			return false, nil
		}
		size -= n
	}
	return true, nil
}

func readFull(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		b = b[n:]
	}
	return nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		b := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, b)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(b[:n]), nil
		}
	}
}

// xattrsOf returns the extended attributes of name in dirfd that a layer
// may carry, and overlayfs' own.
func (d *differ) xattrsOf(dirfd int, name string) (map[string][]byte, error) {
	// No llistxattrat before Linux 6.13: name the file through the
	// descriptor of its directory, which does not follow name.
	p := fmt.Sprintf("/proc/self/fd/%d/%s", dirfd, name)
	keep := func(n string) bool {
		return xattrAllowed(n) || d.overlay && (strings.HasPrefix(n, "trusted.overlay.") || strings.HasPrefix(n, "user.overlay."))
	}
	xa, err := listXattrs(
		func(b []byte) (int, error) { return unix.Llistxattr(p, b) },
		func(n string, b []byte) (int, error) { return unix.Lgetxattr(p, n, b) },
		keep)
	if err != nil {
		return nil, fmt.Errorf("archive: extended attributes of %q: %w", name, err)
	}
	return xa, nil
}

// flush writes the headers of the pending directories not written yet.
func (d *differ) flush() error {
	for i := range d.pending {
		pd := &d.pending[i]
		if pd.written {
			continue
		}
		if err := d.header(pd.dirfd, pd.name, pd.path, &pd.st, pd.xattrs); err != nil {
			return err
		}
		pd.written = true
	}
	return nil
}

// marker writes a whiteout or opaque marker named p.
func (d *differ) marker(p string) error {
	if err := d.flush(); err != nil {
		return err
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: p, Mode: 0o600, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive: write layer: %w", err)
	}
	return nil
}

// write writes the non-directory name of dirfd, at path p in the layer.
func (d *differ) write(dirfd int, name, p string, st *unix.Stat_t, xa map[string][]byte) error {
	if st.Mode&unix.S_IFMT == unix.S_IFSOCK {
		return nil // a tar has no sockets
	}
	if err := d.flush(); err != nil {
		return err
	}
	return d.header(dirfd, name, p, st, xa)
}

// header writes the header, and the content of a regular file, of name
// in dirfd at path p in the layer.
func (d *differ) header(dirfd int, name, p string, st *unix.Stat_t, xa map[string][]byte) error {
	hdr := &tar.Header{
		Name:    p,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, 0),
		Format:  tar.FormatPAX,
	}
	for _, k := range slices.Sorted(maps.Keys(xa)) {
		if !xattrAllowed(k) {
			continue // overlayfs' own
		}
		if hdr.PAXRecords == nil {
			hdr.PAXRecords = make(map[string]string)
		}
		hdr.PAXRecords[paxXattr+k] = string(xa[k])
	}
	content := false
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
	case unix.S_IFREG:
		id := inode{uint64(st.Dev), st.Ino}
		if first, ok := d.links[id]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			break
		}
		if st.Nlink > 1 {
			d.links[id] = p
		}
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		content = st.Size > 0
	case unix.S_IFLNK:
		target, err := readlinkAt(dirfd, name)
		if err != nil {
			return fmt.Errorf("archive: readlink %q: %w", p, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, target
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(uint64(st.Rdev))), int64(unix.Minor(uint64(st.Rdev)))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil
	}
	if !content {
		if err := d.tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archive: write layer: %w", err)
		}
		return nil
	}
	fd, err := openat2(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY, 0, resolveHere)
	if err != nil {
		return fmt.Errorf("archive: open %q: %w", p, err)
	}
	defer unix.Close(fd)
	var fst unix.Stat_t
	if err := unix.Fstat(fd, &fst); err != nil {
		return fmt.Errorf("archive: stat %q: %w", p, err)
	}
	if fst.Dev != st.Dev || fst.Ino != st.Ino {
		return fmt.Errorf("archive: %q changed while the layer was written", p)
	}
	if err := d.tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("archive: write layer: %w", err)
	}
	for left := st.Size; left > 0; {
		b := d.buf
		if int64(len(b)) > left {
			b = b[:left]
		}
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("archive: read %q: %w", p, err)
		}
		if n == 0 {
			return fmt.Errorf("archive: %q shrank while the layer was written", p)
		}
		if _, err := d.tw.Write(b[:n]); err != nil {
			return fmt.Errorf("archive: write layer: %w", err)
		}
		left -= int64(n)
	}
	return nil
}
