package snapshot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthlabs/berth/internal/rootless"
	"golang.org/x/sys/unix"
)

// NewOverlayUserNS opens an overlayfs snapshotter for an unprivileged
// process (rootless containers): its mounts carry overlayfs's userxattr
// option, which keeps opaque directories and the like in user.overlay.*
// extended attributes that the files' owner may set, and they are meant
// to be mounted inside a user namespace that the caller owns (a rootless
// container's init mounts its root filesystem there; Linux 5.11 and
// later allow overlayfs mounts in user namespaces). The caller itself
// cannot mount them: Mounts of such a store are for a process in a user
// namespace, and what needs a mount on the host (a view of a chain of
// layers, say) fails.
//
// As the caller may not mount, NewOverlayUserNS does not try one: it
// checks that the kernel is 5.11 or later, that it has overlayfs, and
// that user extended attributes can be set in root; otherwise the error
// wraps ErrNotSupported. Its root is marked "overlay-userns" and opened
// by New with this kind again.
func NewOverlayUserNS(root string) (*Overlay, error) {
	if abs, err := filepath.Abs(root); err != nil || strings.ContainsAny(abs, ":,\\") {
		return nil, fmt.Errorf("open overlay snapshot store %s: %w: overlayfs options cannot name a path with ':', ',' or '\\'", root, ErrInvalid)
	}
	o := &Overlay{}
	// As NewOverlay pins them; but redirect_dir=off still follows
	// redirects, which userxattr refuses: nofollow.
	for _, f := range []string{"index", "redirect_dir", "metacopy"} {
		if _, err := os.Stat("/sys/module/overlay/parameters/" + f); err == nil {
			v := "off"
			if f == "redirect_dir" {
				v = "nofollow"
			}
			o.fixed = append(o.fixed, f+"="+v)
		}
	}
	o.fixed = append(o.fixed, "userxattr")
	st, err := openStore(root, kindOverlayUserNS, o, checkOverlayUserNS)
	if err != nil {
		return nil, err
	}
	o.st = st
	return o, nil
}

const kindOverlayUserNS = "overlay-userns"

// checkOverlayUserNS checks what an overlay mount in a user namespace
// needs without mounting one.
func checkOverlayUserNS(tmp string) error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return err
	}
	rel := unix.ByteSliceToString(u.Release[:])
	if !kernelAtLeast(rel, 5, 11) {
		return fmt.Errorf("%w: overlayfs in a user namespace needs Linux 5.11 or later, this is %s", ErrNotSupported, rel)
	}
	fs, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return err
	}
	if !strings.Contains(string(fs), "\toverlay\n") {
		return fmt.Errorf("%w: the kernel has no overlayfs (/proc/filesystems)", ErrNotSupported)
	}
	if err := unix.Setxattr(tmp, "user.overlay.opaque", []byte("y"), 0); err != nil {
		return fmt.Errorf("%w: user extended attributes on %s: %v", ErrNotSupported, tmp, err)
	}
	return nil
}

// kernelAtLeast reports whether release ("6.1.0-13-amd64") is at least
// major.minor.
func kernelAtLeast(release string, major, minor int) bool {
	f := strings.FieldsFunc(release, func(r rune) bool { return r < '0' || r > '9' })
	if len(f) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(f[0])
	mi, _ := strconv.Atoi(f[1])
	return ma > major || ma == major && mi >= minor
}

// removeAll is os.RemoveAll, but when that is refused, as to an
// unprivileged owner of directories overlayfs made without permissions
// (the work directory's work/, mode 0), it gives the owner's permissions
// back to every directory in the tree (chmod needs no capability for the
// owner) and tries again; refused again (files of the user's subordinate
// IDs, which a rootless container wrote), it asks rootless.RemoveAll.
func removeAll(p string) error {
	err := os.RemoveAll(p)
	if err == nil || !errors.Is(err, os.ErrPermission) {
		return err
	}
	allowOwner(p, 0)
	err = os.RemoveAll(p)
	if err == nil || !errors.Is(err, os.ErrPermission) || rootless.RemoveAll == nil {
		return err
	}
	// Files of the user's subordinate IDs: remove them in a user
	// namespace that maps those.
	if herr := rootless.RemoveAll(p); herr != nil {
		return errors.Join(err, herr)
	}
	return nil
}

func allowOwner(p string, depth int) {
	var st unix.Stat_t
	if depth > 256 || unix.Lstat(p, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return
	}
	unix.Chmod(p, (st.Mode&0o7777)|0o700)
	ents, err := os.ReadDir(p)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			allowOwner(filepath.Join(p, e.Name()), depth+1)
		}
	}
}
