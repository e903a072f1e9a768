package archive

import (
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// paxXattr is the prefix of PAX records that carry extended attributes.
const paxXattr = "SCHILY.xattr."

const (
	overlayOpaque    = "trusted.overlay.opaque"
	userOverlayOpq   = "user.overlay.opaque"
	overlayRedirect  = "trusted.overlay.redirect"
	overlayMetacopy  = "trusted.overlay.metacopy"
	overlayWhiteout  = "trusted.overlay.whiteout"
	userOverlayWhout = "user.overlay.whiteout"
)

// xattrAllowed reports whether a layer may carry (and Diff may write) the
// extended attribute name: user.*, trusted.* and security.*, except the
// overlayfs attributes and security.selinux.
func xattrAllowed(name string) bool {
	switch {
	case strings.HasPrefix(name, "trusted.overlay."), strings.HasPrefix(name, "user.overlay."),
		name == "security.selinux":
		return false
	case strings.HasPrefix(name, "user."), strings.HasPrefix(name, "trusted."),
		strings.HasPrefix(name, "security."):
		return len(name) <= 255 // XATTR_NAME_MAX
	}
	return false
}

// headerXattrs returns the allowed extended attributes of a header's PAX
// records, sorted by name.
func headerXattrs(pax map[string]string) [][2]string {
	var out [][2]string
	for k, v := range pax {
		if name, ok := strings.CutPrefix(k, paxXattr); ok && xattrAllowed(name) {
			out = append(out, [2]string{name, v})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}

// skippableXattrErr reports whether an error setting an allowed
// attribute means "not here" (filesystem or privilege) rather than a fault.
func skippableXattrErr(err error) bool {
	return err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == unix.EPERM || err == unix.EACCES
}

// listXattrs returns the extended attributes of a file, by a function that
// lists names into a buffer and one that reads a value, keeping only the
// names keep accepts.
func listXattrs(list func([]byte) (int, error), get func(string, []byte) (int, error), keep func(string) bool) (map[string][]byte, error) {
	buf := make([]byte, 1024)
	var n int
	for {
		var err error
		n, err = list(buf)
		if err == unix.ERANGE {
			sz, err := list(nil)
			if err != nil {
				return nil, err
			}
			buf = make([]byte, sz+1024)
			continue
		}
		if err == unix.ENOTSUP || err == unix.EOPNOTSUPP {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		break
	}
	if n == 0 {
		return nil, nil
	}
	var out map[string][]byte
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		if name == "" || !keep(name) {
			continue
		}
		val := make([]byte, 256)
		for {
			m, err := get(name, val)
			if err == unix.ERANGE {
				sz, err := get(name, nil)
				if err != nil {
					return nil, err
				}
				val = make([]byte, sz+256)
				continue
			}
			if err == unix.ENODATA || err == unix.ENOTSUP || err == unix.EOPNOTSUPP || err == unix.EPERM || err == unix.EACCES {
				m = -1 // gone, or not ours to read
			} else if err != nil {
				return nil, err
			}
			if m >= 0 {
				if out == nil {
					out = make(map[string][]byte)
				}
				out[name] = val[:m:m]
			}
			break
		}
	}
	return out, nil
}
