package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"
	"unsafe"

	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// Default limits of Apply, used where Options leaves them zero.
const (
	DefaultMaxFiles = 1 << 20  // entries in a layer
	DefaultMaxBytes = 64 << 30 // uncompressed bytes of a layer
)

// holeBlock is the granularity of the holes Apply makes in sparse files.
const holeBlock = 64 << 10

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// Options tunes Apply. The zero value unpacks a layer as Docker does when
// run as root, refuses device nodes, and applies the default limits.
type Options struct {
	// OverlayWhiteouts makes Apply write whiteouts the way overlayfs keeps
	// them, for a dir that is an overlay upper (or lower) directory and
	// holds this layer alone: ".wh.NAME" becomes a 0:0 character device
	// NAME, ".wh..wh..opq" sets trusted.overlay.opaque=y on its directory
	// (which needs CAP_SYS_ADMIN). Without it, whiteouts remove what they
	// name from dir, which holds the layers below (a copy snapshot, or a
	// mounted overlay).
	OverlayWhiteouts bool
	// NoChown leaves files owned by the caller instead of the owners the
	// layer names; set it when unprivileged (rootless unpacking).
	NoChown bool
	// AllowDevices lets Apply create character and block devices, which
	// needs CAP_MKNOD. Without it a device entry is an error matching
	// ErrUnsafe and ErrDeviceNode. Fifos are always created. A device node
	// in dir gives whoever can reach it there the device (the host's disk,
	// say): set it only for a dir that other users cannot traverse.
	AllowDevices bool
	// MaxFiles is the most entries the layer may have; 0 means
	// DefaultMaxFiles.
	MaxFiles int64
	// MaxBytes is the most bytes the uncompressed layer may have, and the
	// most bytes its files may hold together (a sparse file counts at its
	// full size); 0 means DefaultMaxBytes.
	MaxBytes int64
	// Progress, if set, is called on the goroutine that called Apply with
	// the uncompressed bytes read so far, about every megabyte and once
	// at the end.
	Progress func(bytes int64)
}

// Stats is what Apply did.
type Stats struct {
	// Files is the number of entries read from the layer.
	Files int64
	// Bytes is the size of the uncompressed layer.
	Bytes int64
	// DiffID is the SHA-256 digest of the uncompressed layer: the layer's
	// DiffID in an image configuration. It is set only when Apply succeeds.
	DiffID digest.Digest
}

// Apply unpacks a layer (an uncompressed tar, or one compressed with gzip
// or zstd, detected from its magic bytes) onto dir, which holds the
// layers below it. Whiteouts remove what they name from dir, unless
// opts.OverlayWhiteouts asks for them to be written as overlayfs keeps
// them. See the package documentation for the safety contract: nothing
// outside dir is ever touched.
//
// With opts.OverlayWhiteouts dir holds this layer alone, so a hardlink
// must name a file of the same layer (as with Docker's overlay2 driver).
//
// Apply reads r to its end, since what follows the tar's end marker is
// part of the layer's DiffID. When ctx is cancelled, Apply returns once
// the read in progress returns. On error, dir is left partly applied.
func Apply(ctx context.Context, dir string, r io.Reader, opts Options) (Stats, error) {
	a := &applier{
		opts:     opts,
		maxFiles: opts.MaxFiles,
		maxBytes: opts.MaxBytes,
		buf:      getChunk(),
		unpacked: make(map[string]struct{}),
		dirIndex: make(map[string]int),
	}
	if a.maxFiles <= 0 {
		a.maxFiles = DefaultMaxFiles
	}
	if a.maxBytes <= 0 {
		a.maxBytes = DefaultMaxBytes
	}
	t, err := openTree(dir)
	if err != nil {
		return Stats{}, err
	}
	defer t.close()
	a.t = t
	defer putChunk(a.buf)

	src, release, err := decompress(r)
	if err != nil {
		return Stats{}, fmt.Errorf("archive: %w", err)
	}
	defer release()
	s := newStream(ctx, src, a.maxBytes, opts.Progress)
	defer s.close()

	var stats Stats
	tr := tar.NewReader(s)
	for {
		if err := ctx.Err(); err != nil {
			return stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return stats, fmt.Errorf("archive: read layer: %w", err)
		}
		stats.Files++
		if stats.Files > a.maxFiles {
			return stats, &EntryError{Name: hdr.Name, Err: limitErr("layer has more than %d entries (Options.MaxFiles)", a.maxFiles)}
		}
		err = a.entry(hdr, tr)
		t.endEntry()
		if err != nil {
			return stats, &EntryError{Name: hdr.Name, Err: err}
		}
	}
	if err := a.finishDirs(); err != nil {
		return stats, err
	}
	if err := s.drain(); err != nil {
		return stats, fmt.Errorf("archive: read layer: %w", err)
	}
	stats.Bytes = s.n
	stats.DiffID = digest.NewDigestFromBytes(digest.SHA256, s.sum())
	return stats, nil
}

// applier is the state of one Apply.
type applier struct {
	t        *tree
	opts     Options
	maxFiles int64
	maxBytes int64
	written  int64  // bytes the layer's files hold so far
	buf      []byte // copy buffer
	zeros    []byte // all zero, for sparse files

	// unpacked holds the paths this layer created, and their parents:
	// whiteouts and opaque markers in the same layer leave them alone.
	unpacked map[string]struct{}
	// whited holds the paths an overlay whiteout was written for.
	whited map[string]struct{}

	dirs     []dirMeta // directories whose mode and times are set last
	dirIndex map[string]int
}

type dirMeta struct {
	path         string
	dev, ino     uint64
	mode         uint32
	atime, mtime unix.Timespec
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	p, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	parent, base := split(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return a.whiteout(parent, base)
	}
	if !a.opts.NoChown && (hdr.Uid < 0 || hdr.Uid >= math.MaxUint32 || hdr.Gid < 0 || hdr.Gid >= math.MaxUint32) {
		return unsafeErr("invalid owner %d:%d", hdr.Uid, hdr.Gid)
	}
	if p == "" {
		if hdr.Typeflag != tar.TypeDir {
			return unsafeErr("entry would replace the layer root")
		}
		return a.directory(p, parent, base, hdr)
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		err = a.directory(p, parent, base, hdr)
	case tar.TypeReg, tar.TypeGNUSparse, tar.TypeCont:
		err = a.file(parent, base, hdr, r)
	case tar.TypeSymlink:
		err = a.symlink(parent, base, hdr)
	case tar.TypeLink:
		err = a.hardlink(p, parent, base, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		err = a.node(parent, base, hdr)
	default:
		err = unsupportedErr("unsupported entry type %q", hdr.Typeflag)
	}
	if err != nil {
		return err
	}
	a.markUnpacked(p)
	return nil
}

func (a *applier) markUnpacked(p string) {
	for p != "" {
		if _, ok := a.unpacked[p]; ok {
			return
		}
		a.unpacked[p] = struct{}{}
		p, _ = split(p)
	}
}

// parentDir returns a descriptor of the entry's parent directory,
// creating missing directories.
func (a *applier) parentDir(parent string) (int, error) {
	fd, err := a.t.mkdirAll(parent)
	if err != nil {
		return -1, opErr(fmt.Sprintf("open parent directory %q", parent), err)
	}
	return fd, nil
}

// replace calls create, and if something is in the way at name, removes
// it (a directory with its contents) and calls create again.
func (a *applier) replace(pfd int, name string, create func() error) error {
	err := create()
	if err != unix.EEXIST {
		return err
	}
	if err := removeAt(pfd, name); err != nil {
		return opErr("remove what the entry replaces", err)
	}
	a.t.forget()
	return create()
}

func (a *applier) file(parent, base string, hdr *tar.Header, r io.Reader) error {
	if hdr.Size < 0 {
		return unsafeErr("negative size")
	}
	if hdr.Size > a.maxBytes-a.written {
		return limitErr("file of %d bytes exceeds what is left of the layer's %d bytes (Options.MaxBytes)", hdr.Size, a.maxBytes)
	}
	a.written += hdr.Size
	pfd, err := a.parentDir(parent)
	if err != nil {
		return err
	}
	fd := -1
	err = a.replace(pfd, base, func() (err error) {
		fd, err = openat2(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW, 0o600, resolveHere)
		return err
	})
	if err != nil {
		return opErr("create", err)
	}
	defer unix.Close(fd)
	if err := a.copyData(fd, r, hdr); err != nil {
		return err
	}
	if err := a.owner(func(uid, gid int) error { return unix.Fchown(fd, uid, gid) }, hdr); err != nil {
		return err
	}
	if err := unix.Fchmod(fd, uint32(hdr.Mode)&0o7777); err != nil {
		return opErr("chmod", err)
	}
	if err := a.xattrs(hdr, func(name string, v []byte) error { return unix.Fsetxattr(fd, name, v, 0) }); err != nil {
		return err
	}
	atime, mtime := times(hdr)
	if err := futimens(fd, atime, mtime); err != nil {
		return opErr("set times", err)
	}
	return nil
}

func (a *applier) copyData(fd int, r io.Reader, hdr *tar.Header) error {
	sparse := hdr.Typeflag == tar.TypeGNUSparse || hasSparsePAX(hdr.PAXRecords)
	if sparse && a.zeros == nil {
		a.zeros = make([]byte, holeBlock)
	}
	holes := false
	for {
		n, err := r.Read(a.buf)
		if n > 0 && !sparse {
			if err := writeAll(fd, a.buf[:n]); err != nil {
				return opErr("write", err)
			}
		}
		// A sparse file's zeros become holes, in blocks of holeBlock.
		for b := a.buf[:n]; sparse && len(b) > 0; {
			m := min(len(b), holeBlock)
			if bytes.Equal(b[:m], a.zeros[:m]) {
				if _, err := unix.Seek(fd, int64(m), io.SeekCurrent); err != nil {
					return opErr("seek", err)
				}
				holes = true
			} else if err := writeAll(fd, b[:m]); err != nil {
				return opErr("write", err)
			}
			b = b[m:]
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			if err == io.ErrUnexpectedEOF {
				return fmt.Errorf("read: layer ends inside the entry (its header claims %d bytes)", hdr.Size)
			}
			return opErr("read", err)
		}
	}
	if holes {
		if err := unix.Ftruncate(fd, hdr.Size); err != nil {
			return opErr("truncate", err)
		}
	}
	return nil
}

func hasSparsePAX(pax map[string]string) bool {
	for k := range pax {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

func (a *applier) directory(p, parent, base string, hdr *tar.Header) error {
	var fd int
	if p == "" {
		var err error
		if fd, err = openat2(a.t.fd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0, resolveHere); err != nil {
			return opErr("open", err)
		}
		defer unix.Close(fd)
	} else {
		pfd, err := a.parentDir(parent)
		if err != nil {
			return err
		}
		var st unix.Stat_t
		err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case err == nil && st.Mode&unix.S_IFMT == unix.S_IFDIR:
			// Merge with the directory there.
		case err == nil || err == unix.ENOENT:
			err = a.replace(pfd, base, func() error { return unix.Mkdirat(pfd, base, 0o700) })
			if err != nil {
				return opErr("mkdir", err)
			}
		default:
			return opErr("stat", err)
		}
		if fd, err = openat2(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveHere); err != nil {
			return opErr("open", err)
		}
		a.t.remember(p, fd) // the tree closes it
		if _, ok := a.whited[p]; ok {
			// The layer whites out the directory below and makes a new
			// one: in an overlay that is an opaque directory.
			if err := unix.Fsetxattr(fd, overlayOpaque, []byte("y"), 0); err != nil {
				return opErr("set "+overlayOpaque, err)
			}
		}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return opErr("stat", err)
	}
	if err := a.owner(func(uid, gid int) error { return unix.Fchown(fd, uid, gid) }, hdr); err != nil {
		return err
	}
	if err := a.xattrs(hdr, func(name string, v []byte) error { return unix.Fsetxattr(fd, name, v, 0) }); err != nil {
		return err
	}
	atime, mtime := times(hdr)
	m := dirMeta{path: p, dev: st.Dev, ino: st.Ino, mode: uint32(hdr.Mode) & 0o7777, atime: atime, mtime: mtime}
	if i, ok := a.dirIndex[p]; ok {
		a.dirs[i] = m
	} else {
		a.dirIndex[p] = len(a.dirs)
		a.dirs = append(a.dirs, m)
	}
	return nil
}

// finishDirs sets the modes and times of the layer's directories, now
// that nothing more is written into them. A directory that a later entry
// replaced is left alone.
func (a *applier) finishDirs() error {
	for _, m := range a.dirs {
		p := m.path
		if p == "" {
			p = "."
		}
		fd, err := openat2(a.t.fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0, resolveInRoot)
		if err == unix.ENOENT || err == unix.ENOTDIR || err == unix.ELOOP {
			continue
		}
		if err != nil {
			return fmt.Errorf("archive: directory %q: open: %w", m.path, err)
		}
		var st unix.Stat_t
		err = unix.Fstat(fd, &st)
		if err == nil && st.Dev == m.dev && st.Ino == m.ino {
			err = unix.Fchmod(fd, m.mode)
			if err == nil {
				err = futimens(fd, m.atime, m.mtime)
			}
		}
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("archive: directory %q: set mode and times: %w", m.path, err)
		}
	}
	return nil
}

func (a *applier) symlink(parent, base string, hdr *tar.Header) error {
	if hdr.Linkname == "" || strings.IndexByte(hdr.Linkname, 0) >= 0 {
		return unsafeErr("invalid symlink target %q", hdr.Linkname)
	}
	pfd, err := a.parentDir(parent)
	if err != nil {
		return err
	}
	if err := a.replace(pfd, base, func() error { return unix.Symlinkat(hdr.Linkname, pfd, base) }); err != nil {
		return opErr("symlink", err)
	}
	return a.metaAt(pfd, base, hdr, false)
}

// metaAt sets the owner, extended attributes and times (and, with chmod,
// the mode) of name in directory pfd, never following it.
func (a *applier) metaAt(pfd int, name string, hdr *tar.Header, chmod bool) error {
	if err := a.owner(func(uid, gid int) error {
		return unix.Fchownat(pfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	}, hdr); err != nil {
		return err
	}
	if chmod {
		if err := chmodAt(pfd, name, uint32(hdr.Mode)&0o7777); err != nil {
			return opErr("chmod", err)
		}
	}
	if err := a.xattrs(hdr, func(attr string, v []byte) error {
		// No lsetxattrat before Linux 6.13: name the file through the
		// descriptor of its directory, which does not follow name.
		return unix.Lsetxattr(fmt.Sprintf("/proc/self/fd/%d/%s", pfd, name), attr, v, 0)
	}); err != nil {
		return err
	}
	atime, mtime := times(hdr)
	if err := unix.UtimesNanoAt(pfd, name, []unix.Timespec{atime, mtime}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return opErr("set times", err)
	}
	return nil
}

// chmodAt changes the mode of name in pfd without following it.
func chmodAt(pfd int, name string, mode uint32) error {
	err := unix.Fchmodat(pfd, name, mode, unix.AT_SYMLINK_NOFOLLOW)
	if err != unix.EOPNOTSUPP && err != unix.ENOSYS {
		return err
	}
	// No fchmodat2 (before Linux 6.6): chmod the inode through an O_PATH
	// descriptor of it.
	fd, err := openat2(pfd, name, unix.O_PATH|unix.O_NOFOLLOW, 0, resolveHere)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.EOPNOTSUPP
	}
	return unix.Fchmodat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), mode, 0)
}

func (a *applier) hardlink(p, parent, base string, hdr *tar.Header) error {
	lp, err := cleanName(hdr.Linkname)
	if err != nil {
		var ke *kindError
		if errors.As(err, &ke) {
			return unsafeErr("hardlink target %q: %s", hdr.Linkname, ke.msg)
		}
		return err
	}
	switch lp {
	case "":
		return unsafeErr("hardlink to the layer root")
	case p:
		return unsafeErr("hardlink to itself")
	}
	lparent, lbase := split(lp)
	tfd, err := a.t.dir(lparent)
	var st unix.Stat_t
	if err == nil {
		err = unix.Fstatat(tfd, lbase, &st, unix.AT_SYMLINK_NOFOLLOW)
	}
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return unsafeErr("hardlink target %q is not in the layer root", hdr.Linkname)
	}
	if err != nil {
		return opErr(fmt.Sprintf("hardlink target %q", hdr.Linkname), err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return unsafeErr("hardlink target %q is a directory", hdr.Linkname)
	}
	pfd, err := a.parentDir(parent)
	if err != nil {
		return err
	}
	if err := a.replace(pfd, base, func() error { return unix.Linkat(tfd, lbase, pfd, base, 0) }); err != nil {
		if err == unix.ENOENT {
			return unsafeErr("hardlink target %q is not in the layer root", hdr.Linkname)
		}
		return opErr("link", err)
	}
	return nil
}

// node makes a character or block device or a fifo.
func (a *applier) node(parent, base string, hdr *tar.Header) error {
	var mode uint32
	switch hdr.Typeflag {
	case tar.TypeChar:
		mode = unix.S_IFCHR
	case tar.TypeBlock:
		mode = unix.S_IFBLK
	default:
		mode = unix.S_IFIFO
	}
	if mode != unix.S_IFIFO && !a.opts.AllowDevices {
		return deviceError{}
	}
	if hdr.Devmajor < 0 || hdr.Devmajor > math.MaxUint32 || hdr.Devminor < 0 || hdr.Devminor > math.MaxUint32 {
		return unsafeErr("invalid device number %d:%d", hdr.Devmajor, hdr.Devminor)
	}
	dev := int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))
	pfd, err := a.parentDir(parent)
	if err != nil {
		return err
	}
	if err := a.replace(pfd, base, func() error { return unix.Mknodat(pfd, base, mode|0o600, dev) }); err != nil {
		return opErr("mknod", err)
	}
	return a.metaAt(pfd, base, hdr, true)
}

func (a *applier) whiteout(parent, base string) error {
	if base == whiteoutOpaque {
		return a.opaque(parent)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // AUFS metadata
	}
	name := base[len(whiteoutPrefix):]
	if name == "" || name == "." || name == ".." {
		return unsafeErr("invalid whiteout")
	}
	target := name
	if parent != "" {
		target = parent + "/" + name
	}
	if _, ok := a.unpacked[target]; ok {
		return nil // this layer's own entry: a whiteout only hides the layers below
	}
	if a.opts.OverlayWhiteouts {
		pfd, err := a.parentDir(parent)
		if err != nil {
			return err
		}
		if err := a.replace(pfd, name, func() error { return unix.Mknodat(pfd, name, unix.S_IFCHR, 0) }); err != nil {
			return opErr("make overlay whiteout", err)
		}
		if a.whited == nil {
			a.whited = make(map[string]struct{})
		}
		a.whited[target] = struct{}{}
		return nil
	}
	pfd, err := a.t.dir(parent)
	if err == unix.ENOENT || err == unix.ENOTDIR {
		return nil // nothing below to hide
	}
	if err != nil {
		return opErr(fmt.Sprintf("open parent directory %q", parent), err)
	}
	if err := removeAt(pfd, name); err != nil {
		return opErr("remove", err)
	}
	a.t.forget()
	return nil
}

// opaque hides what the layers below have in directory d.
func (a *applier) opaque(d string) error {
	var dfd int
	var err error
	if a.opts.OverlayWhiteouts {
		dfd, err = a.t.mkdirAll(d)
	} else {
		dfd, err = a.t.dir(d)
		if err == unix.ENOENT || err == unix.ENOTDIR {
			return nil // nothing below to hide
		}
	}
	if err != nil {
		return opErr(fmt.Sprintf("open directory %q", d), err)
	}
	fd, err := openat2(dfd, ".", unix.O_RDONLY|unix.O_DIRECTORY, 0, resolveHere)
	if err != nil {
		return opErr("open directory", err)
	}
	defer unix.Close(fd)
	names, err := readNames(fd)
	if err != nil {
		return opErr("read directory", err)
	}
	for _, n := range names {
		p := n
		if d != "" {
			p = d + "/" + n
		}
		if _, ok := a.unpacked[p]; ok {
			continue
		}
		if err := removeAt(fd, n); err != nil {
			return opErr("remove "+p, err)
		}
		a.t.forget()
	}
	if a.opts.OverlayWhiteouts {
		if err := unix.Fsetxattr(fd, overlayOpaque, []byte("y"), 0); err != nil {
			return opErr("set "+overlayOpaque, err)
		}
	}
	a.markUnpacked(d)
	return nil
}

// owner calls chown with the entry's owner, unless Options.NoChown.
func (a *applier) owner(chown func(uid, gid int) error, hdr *tar.Header) error {
	if a.opts.NoChown {
		return nil
	}
	if err := chown(hdr.Uid, hdr.Gid); err != nil {
		if err == unix.EPERM && unix.Geteuid() != 0 {
			return fmt.Errorf("chown %d:%d: %w (set Options.NoChown to unpack unprivileged)", hdr.Uid, hdr.Gid, err)
		}
		return opErr(fmt.Sprintf("chown %d:%d", hdr.Uid, hdr.Gid), err)
	}
	return nil
}

// xattrs sets the entry's allowed extended attributes with set, skipping
// those the filesystem or the caller's privileges refuse.
func (a *applier) xattrs(hdr *tar.Header, set func(name string, value []byte) error) error {
	if len(hdr.PAXRecords) == 0 {
		return nil
	}
	for _, kv := range headerXattrs(hdr.PAXRecords) {
		if err := set(kv[0], []byte(kv[1])); err != nil && !skippableXattrErr(err) {
			return opErr("set extended attribute "+kv[0], err)
		}
	}
	return nil
}

func times(hdr *tar.Header) (atime, mtime unix.Timespec) {
	mtime = timespec(hdr.ModTime)
	atime = mtime
	if !hdr.AccessTime.IsZero() {
		atime = timespec(hdr.AccessTime)
	}
	return atime, mtime
}

func timespec(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// futimens sets the times of an open file: utimensat(fd, NULL, ...).
func futimens(fd int, atime, mtime unix.Timespec) error {
	ts := [2]unix.Timespec{atime, mtime}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
