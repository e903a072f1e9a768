package container

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/berthlabs/berth/internal/openat2"
	"github.com/berthlabs/berth/internal/osthread"
	"github.com/berthlabs/berth/layer/archive"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// CopyTo extracts the tar stream r (uncompressed, gzip or zstd) under
// the directory dstDir of the container, like `docker cp - c:dstDir`:
// entries keep their modes, owners (container IDs, mapped to host IDs
// through Spec.UIDMappings and GIDMappings when the container has a user
// namespace), symlinks, hardlinks and times; an existing file an entry
// names is replaced.
//
// Every path, dstDir's and the entries', is resolved inside the
// container's root as the container would resolve it (symlinks, ".." and
// absolute ones included, stop at its "/"), never on the host: the safety
// contract of layer/archive's Apply holds, with the container's dstDir as
// the tree. Entries must stay in the file system dstDir is on (a tar for
// "/" cannot write into a volume mounted below), device nodes are
// refused, and whiteout entries (".wh.NAME") remove NAME as in a layer.
//
// A running (or paused) container is reached through its init's root,
// so its volumes, bind mounts and tmpfs mounts are seen as it sees them.
// A created or stopped one is written in its root filesystem alone
// (Spec.Rootfs, or an image container's snapshot): its mounts are not
// there. A missing dstDir is an error matching os.ErrNotExist, one that
// is not a directory an error saying so.
func (c *Container) CopyTo(ctx context.Context, dstDir string, r io.Reader) error {
	root, done, err := c.openRoot()
	if err != nil {
		return fmt.Errorf("copy to %s: %w", c.id, err)
	}
	defer done()
	fd, err := resolveIn(root, dstDir, 0)
	if err != nil {
		return fmt.Errorf("copy to %s: %w", c.id, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("copy to %s: %s: %w", c.id, dstDir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("copy to %s: %s is not a directory", c.id, dstDir)
	}
	if c.userNS() {
		r = c.mapTar(r)
	}
	if _, err := archive.Apply(ctx, fdPath(fd), r, archive.Options{}); err != nil {
		return fmt.Errorf("copy to %s:%s: %w", c.id, dstDir, err)
	}
	return nil
}

// CopyFrom returns a tar stream of the file, symlink (not followed) or
// directory tree at path in the container, named by path's base name,
// like `docker cp c:path -`: modes, owners (container IDs when the
// container has a user namespace), symlinks, hardlinks, times and device
// numbers are kept. path is resolved inside the container's root (see
// CopyTo); a missing one is an error matching os.ErrNotExist that names
// it. What is reached in which state is as for CopyTo. The caller closes
// the stream; an error while it is written ends it with that error.
func (c *Container) CopyFrom(ctx context.Context, p string) (io.ReadCloser, error) {
	root, done, err := c.openRoot()
	if err != nil {
		return nil, fmt.Errorf("copy from %s: %w", c.id, err)
	}
	clean := path.Clean("/" + p)
	dir, base := path.Split(clean)
	if base == "" {
		base = "."
	}
	pfd, err := resolveIn(root, dir, unix.O_DIRECTORY)
	if err == nil {
		var st unix.Stat_t
		if err = unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			unix.Close(pfd)
			err = &os.PathError{Op: "lstat", Path: clean, Err: err}
		}
	}
	if err != nil {
		done()
		return nil, fmt.Errorf("copy from %s: %w", c.id, err)
	}
	pr, pw := io.Pipe()
	t := &tarrer{ctx: ctx, tw: tar.NewWriter(pw), links: map[[2]uint64]string{}, c: c}
	go func() {
		defer done()
		defer unix.Close(pfd)
		err := t.entry(pfd, base, base)
		if err == nil {
			err = t.tw.Close()
		}
		pw.CloseWithError(err)
	}()
	return pr, nil
}

// openRoot returns a descriptor of the container's root and a function
// to call when done with it: the running container's init's root, else
// its root filesystem, mounted in a private mount namespace for an image
// container. While an image container's root is open so, Start and
// Delete wait.
func (c *Container) openRoot() (int, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return -1, nil, err
	}
	if c.state == Running || c.state == Paused {
		fd, err := unix.Open(fmt.Sprintf("/proc/%d/root", c.initPid), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, nil, fmt.Errorf("open the container's root: %w", err)
		}
		return fd, func() { unix.Close(fd) }, nil
	}
	if c.spec.rootfsMounts == nil {
		fd, err := unix.Open(c.spec.Rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, nil, fmt.Errorf("open the container's root: %w", err)
		}
		return fd, func() { unix.Close(fd) }, nil
	}
	// Start and Delete take rootMu (under c.mu, which is held here):
	// the snapshot is mounted once at a time, and stays while it is used.
	c.rootMu.RLock()
	c.awaitRoot()
	fd, err := mountPrivately(c.spec.rootfsMounts, c.spec.Rootfs)
	if err != nil {
		c.rootMu.RUnlock()
		return -1, nil, fmt.Errorf("mount the container's root filesystem: %w", err)
	}
	return fd, func() { unix.Close(fd); c.rootMu.RUnlock() }, nil
}

// mountPrivately mounts ms on target in a new mount namespace of a
// thread of its own and returns an O_PATH descriptor of the result, then
// detaches the mounts and ends the thread: the file system stays
// reachable through the descriptor alone, and goes when it is closed.
// Nothing is mounted in this process's mount namespace.
func mountPrivately(ms []snapshot.Mount, target string) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	osthread.Go(func() {
		// The thread is never unlocked: it ends with the goroutine and
		// takes its mount namespace along.
		fd, err := func() (int, error) {
			if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS); err != nil {
				return -1, fmt.Errorf("unshare the mount namespace: %w", err)
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return -1, fmt.Errorf("make mounts private: %w", err)
			}
			if err := snapshot.MountAll(ms, target); err != nil {
				return -1, err
			}
			fd, err := unix.Open(target, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
			unix.Unmount(target, unix.MNT_DETACH)
			return fd, err
		}()
		ch <- result{fd, err}
	})
	r := <-ch
	return r.fd, r.err
}

func fdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// resolveIn opens p inside the root open at root (O_PATH, plus flags),
// as the container resolves it.
func resolveIn(root int, p string, flags int) (int, error) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		rel = "."
	}
	how := unix.OpenHow{Flags: uint64(unix.O_PATH | unix.O_CLOEXEC | flags), Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := openat2.Open(root, rel, &how)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path.Clean("/" + p), Err: err}
	}
	return fd, nil
}

// userNS reports whether the container has a user namespace of its own.
func (c *Container) userNS() bool { return c.modes[namespace.User] == NamespaceNew }

// mapID maps id through m, from container to host IDs (or back, with
// toHost false). An ID outside the map becomes the overflow ID 65534.
func mapID(m []namespace.IDMap, id int, toHost bool) int {
	for _, e := range m {
		from, to := int64(e.ContainerID), int64(e.HostID)
		if !toHost {
			from, to = to, from
		}
		if int64(id) >= from && int64(id) < from+int64(e.Size) {
			return int(to + int64(id) - from)
		}
	}
	return 65534
}

// mapTar returns r with its entries' owners mapped from container to
// host IDs.
func (c *Container) mapTar(r io.Reader) io.Reader {
	pr, pw := io.Pipe()
	go func() {
		tr, tw := tar.NewReader(r), tar.NewWriter(pw)
		for {
			hdr, err := tr.Next()
			if err == io.EOF {
				pw.CloseWithError(tw.Close())
				return
			}
			if err == nil {
				hdr.Uid = mapID(c.spec.UIDMappings, hdr.Uid, true)
				hdr.Gid = mapID(c.spec.GIDMappings, hdr.Gid, true)
				hdr.Uname, hdr.Gname = "", ""
				err = tw.WriteHeader(hdr)
			}
			if err == nil {
				_, err = io.Copy(tw, tr)
			}
			if err != nil {
				pw.CloseWithError(err)
				return
			}
		}
	}()
	return pr
}

// tarrer writes a tree as a tar stream, reading it through directory
// descriptors without following symlinks.
type tarrer struct {
	ctx   context.Context
	tw    *tar.Writer
	links map[[2]uint64]string // first name of each hardlinked file
	c     *Container
}

// entry writes the entry name of directory dirfd as tar name, and what
// is below it.
func (t *tarrer) entry(dirfd int, name, tname string) error {
	if err := t.ctx.Err(); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("%s: %w", tname, err)
	}
	hdr := &tar.Header{
		Name:    tname,
		Mode:    int64(st.Mode & 0o7777),
		Uid:     int(st.Uid),
		Gid:     int(st.Gid),
		ModTime: time.Unix(st.Mtim.Sec, st.Mtim.Nsec),
		Format:  tar.FormatPAX,
	}
	if t.c.userNS() {
		hdr.Uid = mapID(t.c.spec.UIDMappings, hdr.Uid, false)
		hdr.Gid = mapID(t.c.spec.GIDMappings, hdr.Gid, false)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		hdr.Typeflag = tar.TypeDir
		hdr.Name += "/"
		if err := t.tw.WriteHeader(hdr); err != nil {
			return err
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", tname, err)
		}
		f := os.NewFile(uintptr(fd), tname)
		defer f.Close()
		names, err := f.Readdirnames(-1)
		if err != nil {
			return fmt.Errorf("%s: %w", tname, err)
		}
		sort.Strings(names)
		for _, n := range names {
			if err := t.entry(fd, n, path.Join(tname, n)); err != nil {
				return err
			}
		}
		return nil
	case unix.S_IFREG:
		key := [2]uint64{st.Dev, st.Ino}
		if first, ok := t.links[key]; ok {
			hdr.Typeflag, hdr.Linkname = tar.TypeLink, first
			return t.tw.WriteHeader(hdr)
		}
		if st.Nlink > 1 {
			t.links[key] = tname
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("%s: %w", tname, err)
		}
		f := os.NewFile(uintptr(fd), tname)
		defer f.Close()
		hdr.Typeflag, hdr.Size = tar.TypeReg, st.Size
		if err := t.tw.WriteHeader(hdr); err != nil {
			return err
		}
		n, err := io.Copy(t.tw, io.LimitReader(f, st.Size))
		if err != nil {
			return fmt.Errorf("%s: %w", tname, err)
		}
		if n < st.Size { // it shrank meanwhile: pad to the size announced
			_, err = io.CopyN(t.tw, zeros{}, st.Size-n)
		}
		return err
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return fmt.Errorf("%s: %w", tname, err)
		}
		hdr.Typeflag, hdr.Linkname = tar.TypeSymlink, string(buf[:n])
	case unix.S_IFCHR, unix.S_IFBLK:
		hdr.Typeflag = tar.TypeChar
		if st.Mode&unix.S_IFMT == unix.S_IFBLK {
			hdr.Typeflag = tar.TypeBlock
		}
		hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	case unix.S_IFIFO:
		hdr.Typeflag = tar.TypeFifo
	default:
		return nil // sockets have no tar form
	}
	return t.tw.WriteHeader(hdr)
}

// zeros reads as endless zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
