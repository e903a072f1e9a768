package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/berthlabs/berth/internal/osthread"
	"golang.org/x/sys/unix"
)

// Mount is one mount(2) call that shows a snapshot: for example
//
//	Mount{Type: "overlay", Source: "overlay", Options: []string{
//		"lowerdir=/var/lib/berth/snapshots/2/fs:/var/lib/berth/snapshots/1/fs",
//		"upperdir=/var/lib/berth/snapshots/3/fs",
//		"workdir=/var/lib/berth/snapshots/3/work",
//	}}
//
// or a bind mount (Type "bind", Options "bind" and "ro" or "rw"). It is
// plain data, so it can be stored, sent to another process, or handed to a
// runtime; the Mount method mounts it here.
type Mount struct {
	// Type is the filesystem type, such as "overlay", or "bind".
	Type string
	// Source is the device or directory, "overlay" for overlayfs.
	Source string
	// Options are mount(8)-style options: flags such as "ro", "nosuid"
	// and "bind", and filesystem options such as "lowerdir=...".
	Options []string
}

// Mount mounts m on target, a directory.
//
// An overlay whose options are longer than mount(2) accepts (a page, 4096
// bytes: about a hundred layers under a long root) is mounted with the new
// mount API, passing one lower layer at a time (Linux 6.8 and later), or
// else from a thread whose working directory is the layers' common parent,
// with relative paths.
func (m Mount) Mount(target string) error {
	flags, data := parseOptions(m.Options)
	var err error
	switch {
	case m.Type == "bind" || flags&unix.MS_BIND != 0:
		err = mountBind(m.Source, target, flags)
	case len(data) < unix.Getpagesize():
		err = unix.Mount(m.Source, target, m.Type, flags, data)
	case m.Type == "overlay":
		err = mountLongOverlay(m.Source, target, flags, data)
	default:
		err = fmt.Errorf("%w: options longer than a page", unix.EINVAL)
	}
	if err != nil {
		return fmt.Errorf("mount %s %s on %s: %w", m.Type, m.Source, target, err)
	}
	return nil
}

// MountAll mounts ms on target in order, each on top of the one before;
// when one fails it unmounts those it mounted.
func MountAll(ms []Mount, target string) error {
	for i, m := range ms {
		if err := m.Mount(target); err != nil {
			for range i {
				_ = unix.Unmount(target, 0)
			}
			return err
		}
	}
	return nil
}

// Unmount unmounts what is mounted on target, every mount stacked there
// (as MountAll leaves them). It fails if target is not a mount point.
//
// A mount is busy for a moment while any process this one forks has not
// executed yet: the child holds copies of this process's descriptors,
// and a descriptor of a file under target keeps the mount in use. So
// EBUSY is retried for up to a second before it is returned.
func Unmount(target string) error {
	busy := 0
	for i := 0; ; i++ {
		err := unix.Unmount(target, 0)
		if err == nil {
			continue
		}
		if i > 0 && errors.Is(err, unix.EINVAL) {
			return nil // nothing more is mounted there
		}
		if errors.Is(err, unix.EBUSY) && busy < 100 {
			busy++
			time.Sleep(10 * time.Millisecond)
			continue
		}
		return &os.PathError{Op: "unmount", Path: target, Err: err}
	}
}

// mountFlags are the options that are mount(2) flags; a zero value clears
// the flags in clear.
var mountFlags = map[string]struct{ set, clear uintptr }{
	"ro":          {set: unix.MS_RDONLY},
	"rw":          {clear: unix.MS_RDONLY},
	"bind":        {set: unix.MS_BIND},
	"rbind":       {set: unix.MS_BIND | unix.MS_REC},
	"nosuid":      {set: unix.MS_NOSUID},
	"suid":        {clear: unix.MS_NOSUID},
	"nodev":       {set: unix.MS_NODEV},
	"dev":         {clear: unix.MS_NODEV},
	"noexec":      {set: unix.MS_NOEXEC},
	"exec":        {clear: unix.MS_NOEXEC},
	"noatime":     {set: unix.MS_NOATIME},
	"nodiratime":  {set: unix.MS_NODIRATIME},
	"relatime":    {set: unix.MS_RELATIME},
	"strictatime": {set: unix.MS_STRICTATIME},
	"sync":        {set: unix.MS_SYNCHRONOUS},
	"dirsync":     {set: unix.MS_DIRSYNC},
}

// parseOptions splits options into mount(2) flags and the data string.
func parseOptions(options []string) (flags uintptr, data string) {
	var rest []string
	for _, o := range options {
		if f, ok := mountFlags[o]; ok {
			flags = flags&^f.clear | f.set
			continue
		}
		rest = append(rest, o)
	}
	return flags, strings.Join(rest, ",")
}

// mountBind bind-mounts source on target; flags other than MS_BIND and
// MS_REC (such as MS_RDONLY) need a remount to take effect.
func mountBind(source, target string, flags uintptr) error {
	bind := uintptr(unix.MS_BIND) | flags&unix.MS_REC
	if err := unix.Mount(source, target, "", bind, ""); err != nil {
		return err
	}
	if rest := flags &^ (unix.MS_BIND | unix.MS_REC); rest != 0 {
		if err := unix.Mount("", target, "", rest|unix.MS_BIND|unix.MS_REMOUNT, ""); err != nil {
			_ = unix.Unmount(target, 0)
			return err
		}
	}
	return nil
}

// overlayAPI records whether the new mount API takes "lowerdir+" here:
// 0 not known yet, 1 yes, 2 no. Tests set it to 2 to use the fallback.
var overlayAPI atomic.Int32

// mountLongOverlay mounts an overlay whose data string is too long for
// mount(2).
func mountLongOverlay(source, target string, flags uintptr, data string) error {
	opts := splitOptions(data)
	if overlayAPI.Load() != 2 {
		err := mountOverlayFsconfig(source, target, flags, opts)
		if err == nil {
			overlayAPI.Store(1)
			return nil
		}
		switch {
		case errors.Is(err, errNoLowerdirPlus):
			overlayAPI.Store(2)
		case !errors.Is(err, errLongValue):
			return err
		}
	}
	return mountOverlayRelative(source, target, flags, opts)
}

// errNoLowerdirPlus means the kernel has no new mount API or its overlayfs
// does not take "lowerdir+" (before Linux 6.8).
var errNoLowerdirPlus = errors.New(`overlayfs has no "lowerdir+" here`)

// errLongValue means a layer's path is too long for fsconfig(2).
var errLongValue = errors.New("layer path longer than fsconfig takes")

// splitOptions splits a mount data string at commas that are not escaped
// with a backslash.
func splitOptions(data string) []string {
	var opts []string
	start := 0
	for i := 0; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case ',':
			opts = append(opts, data[start:i])
			start = i + 1
		}
	}
	return append(opts, data[start:])
}

// splitLowerdirs splits a lowerdir value at colons not escaped with a
// backslash, and removes the escapes.
func splitLowerdirs(v string) []string {
	var dirs []string
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '\\' && i+1 < len(v):
			i++
			b.WriteByte(v[i])
		case c == ':':
			dirs = append(dirs, b.String())
			b.Reset()
		default:
			b.WriteByte(c)
		}
	}
	return append(dirs, b.String())
}

// attrFlags are the mount(2) flags with a MOUNT_ATTR_ counterpart.
var attrFlags = []struct{ flag, attr uintptr }{
	{unix.MS_RDONLY, unix.MOUNT_ATTR_RDONLY},
	{unix.MS_NOSUID, unix.MOUNT_ATTR_NOSUID},
	{unix.MS_NODEV, unix.MOUNT_ATTR_NODEV},
	{unix.MS_NOEXEC, unix.MOUNT_ATTR_NOEXEC},
	{unix.MS_NOATIME, unix.MOUNT_ATTR_NOATIME},
	{unix.MS_NODIRATIME, unix.MOUNT_ATTR_NODIRATIME},
	{unix.MS_STRICTATIME, unix.MOUNT_ATTR_STRICTATIME},
}

// mountOverlayFsconfig mounts an overlay with fsopen(2), fsconfig(2) (one
// "lowerdir+" per layer, so no option string is ever long), fsmount(2) and
// move_mount(2).
func mountOverlayFsconfig(source, target string, flags uintptr, opts []string) error {
	mfd, err := fsmountOverlay(source, flags, opts)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, target, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move_mount: %w", err)
	}
	return nil
}

// fsmountOverlay makes a detached overlay mount with fsopen(2),
// fsconfig(2) (one "lowerdir+" per layer) and fsmount(2), and returns
// its descriptor.
func fsmountOverlay(source string, flags uintptr, opts []string) (int, error) {
	fd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		if errors.Is(err, unix.ENOSYS) {
			return -1, errNoLowerdirPlus
		}
		return -1, fmt.Errorf("fsopen: %w", err)
	}
	defer unix.Close(fd)
	fail := func(what string, err error) (int, error) {
		if msg := fsLog(fd); msg != "" {
			return -1, fmt.Errorf("fsconfig %s: %w (%s)", what, err, msg)
		}
		return -1, fmt.Errorf("fsconfig %s: %w", what, err)
	}
	if err := unix.FsconfigSetString(fd, "source", source); err != nil {
		return fail("source", err)
	}
	for _, o := range opts {
		k, v, hasValue := strings.Cut(o, "=")
		switch {
		case k == "lowerdir":
			for _, dir := range splitLowerdirs(v) {
				if err := unix.FsconfigSetString(fd, "lowerdir+", dir); err != nil {
					if len(dir) > 255 {
						return -1, errLongValue // fsconfig takes at most 256 bytes
					}
					if errors.Is(err, unix.EINVAL) && overlayAPI.Load() == 0 {
						return -1, errNoLowerdirPlus
					}
					return fail("lowerdir+ "+dir, err)
				}
			}
		case hasValue:
			if len(v) > 255 {
				return -1, errLongValue
			}
			if err := unix.FsconfigSetString(fd, k, v); err != nil {
				return fail(o, err)
			}
		default:
			if err := unix.FsconfigSetFlag(fd, k); err != nil {
				return fail(o, err)
			}
		}
	}
	if err := unix.FsconfigCreate(fd); err != nil {
		return fail("create", err)
	}
	var attrs uintptr
	for _, f := range attrFlags {
		if flags&f.flag != 0 {
			attrs |= f.attr
		}
	}
	mfd, err := unix.Fsmount(fd, unix.FSMOUNT_CLOEXEC, int(attrs))
	if err != nil {
		return -1, fmt.Errorf("fsmount: %w", err)
	}
	return mfd, nil
}

// Detached makes m, an overlay, as a mount that is attached nowhere
// (fsmount(2)), and returns its descriptor: move_mount(2) with
// MOVE_MOUNT_F_EMPTY_PATH attaches it, in any mount namespace the caller
// may mount in, as Mount would have mounted m; closing the last
// descriptor of a mount never attached unmounts it. It needs Linux 6.8
// (fsconfig's "lowerdir+") and layer paths under 256 bytes, and fails
// with ErrNotSupported otherwise, and for other types.
func (m Mount) Detached() (*os.File, error) {
	flags, data := parseOptions(m.Options)
	if m.Type != "overlay" || flags&unix.MS_BIND != 0 {
		return nil, fmt.Errorf("detached mount of %s %s: %w: only overlays", m.Type, m.Source, ErrNotSupported)
	}
	if overlayAPI.Load() == 2 {
		return nil, fmt.Errorf("detached mount of %s: %w: %w", m.Source, ErrNotSupported, errNoLowerdirPlus)
	}
	mfd, err := fsmountOverlay(m.Source, flags, splitOptions(data))
	if errors.Is(err, errNoLowerdirPlus) || errors.Is(err, errLongValue) {
		return nil, fmt.Errorf("detached mount of %s: %w: %w", m.Source, ErrNotSupported, err)
	}
	if err != nil {
		return nil, fmt.Errorf("detached mount of %s: %w", m.Source, err)
	}
	return os.NewFile(uintptr(mfd), "overlay"), nil
}

// fsLog reads the messages the kernel left on a filesystem context.
func fsLog(fd int) string {
	var msgs []string
	buf := make([]byte, 4096)
	for range 16 {
		n, err := unix.Read(fd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, string(buf[:n]))
	}
	return strings.Join(msgs, "; ")
}

// mountOverlayRelative mounts an overlay from a locked OS thread whose
// working directory (unshared from the rest of the process) is the common
// parent of the layers, so the layers are named by short relative paths.
func mountOverlayRelative(source, target string, flags uintptr, opts []string) error {
	target, err := filepath.Abs(target)
	if err != nil {
		return err
	}
	var dirs []string
	for _, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			dirs = append(dirs, splitLowerdirs(v)...)
		case "upperdir", "workdir":
			dirs = append(dirs, v)
		}
	}
	base := commonDir(dirs)
	rel := make([]string, len(opts))
	for i, o := range opts {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			ds := splitLowerdirs(v)
			for j, d := range ds {
				ds[j] = escapeLowerdir(relTo(base, d))
			}
			rel[i] = k + "=" + strings.Join(ds, ":")
		case "upperdir", "workdir":
			rel[i] = k + "=" + relTo(base, v)
		default:
			rel[i] = o
		}
	}
	data := strings.Join(rel, ",")
	if len(data) >= unix.Getpagesize() {
		return fmt.Errorf("%w: overlay options are %d bytes even relative to %s, more than a page", unix.E2BIG, len(data), base)
	}
	errc := make(chan error, 1)
	osthread.Go(func() {
		// The thread's working directory is unshared from the process, so
		// the thread must never run other goroutines: it stays locked and
		// exits with this goroutine.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- fmt.Errorf("unshare CLONE_FS: %w", err)
			return
		}
		if err := unix.Chdir(base); err != nil {
			errc <- fmt.Errorf("chdir %s: %w", base, err)
			return
		}
		errc <- unix.Mount(source, target, "overlay", flags, data)
	})
	return <-errc
}

// commonDir returns the deepest directory that holds every one of the
// absolute paths dirs.
func commonDir(dirs []string) string {
	if len(dirs) == 0 {
		return "/"
	}
	base := filepath.Dir(filepath.Clean(dirs[0]))
	for _, d := range dirs[1:] {
		d = filepath.Clean(d)
		for base != "/" && !strings.HasPrefix(d, base+"/") {
			base = filepath.Dir(base)
		}
	}
	return base
}

// relTo returns path relative to base, or path itself when it is relative
// already or outside base.
func relTo(base, path string) string {
	if r, err := filepath.Rel(base, path); err == nil && filepath.IsAbs(path) && !strings.HasPrefix(r, "..") {
		return r
	}
	return path
}

// escapeLowerdir escapes the characters that overlayfs splits lowerdir and
// the mount data on.
func escapeLowerdir(dir string) string {
	return strings.NewReplacer(`\`, `\\`, `:`, `\:`, `,`, `\,`).Replace(dir)
}
