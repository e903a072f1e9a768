package initproc

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/openat2"
	"io"
	"os"
	"path"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Root is an open container root filesystem. Every lookup resolves
// inside it (openat2 RESOLVE_IN_ROOT), so symlinks in an untrusted rootfs
// cannot reach host files.
type Root struct {
	fd   int
	path string
}

// OpenRoot opens dir as a container root for lookups inside it.
func OpenRoot(dir string) (*Root, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("%w: rootfs %s does not exist", ErrInvalid, dir)
		}
		if errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("%w: rootfs %s is not a directory", ErrInvalid, dir)
		}
		return nil, fmt.Errorf("open rootfs %s: %w", dir, err)
	}
	return &Root{fd: fd, path: dir}, nil
}

// Close releases the root.
func (r *Root) Close() error { return unix.Close(r.fd) }

// open opens name (a path inside the container) for reading.
func (r *Root) open(name string, flags int) (*os.File, error) {
	fd, err := openat2.Open(r.fd, strings.TrimPrefix(path.Clean("/"+name), "/"), &unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: name, Err: err}
	}
	return os.NewFile(uintptr(fd), path.Join(r.path, name)), nil
}

// lookPath finds the program args0 in the container like execvp: a name
// with a slash is taken as it is (relative to dir), others are searched in
// PATH. It returns the path inside the container.
func (r *Root) LookPath(args0, pathEnv, dir string) (string, error) {
	var candidates []string
	if strings.Contains(args0, "/") {
		p := args0
		if !path.IsAbs(p) {
			p = path.Join(dir, p)
		}
		candidates = []string{p}
	} else {
		for _, d := range strings.Split(pathEnv, ":") {
			if d == "" {
				d = "."
			}
			if !path.IsAbs(d) {
				d = path.Join(dir, d)
			}
			candidates = append(candidates, path.Join(d, args0))
		}
	}
	var lastErr error
	for _, c := range candidates {
		f, err := r.open(c, unix.O_PATH)
		if err != nil {
			lastErr = err
			continue
		}
		var st unix.Stat_t
		err = unix.Fstat(int(f.Fd()), &st)
		f.Close()
		if err != nil {
			lastErr = err
			continue
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			lastErr = fmt.Errorf("%s is not a regular file", c)
			continue
		}
		if st.Mode&0o111 == 0 {
			lastErr = fmt.Errorf("%s is not executable", c)
			continue
		}
		return c, nil
	}
	if strings.Contains(args0, "/") {
		return "", fmt.Errorf("%w: executable %q not found in the container's rootfs: %v", ErrInvalid, args0, lastErr)
	}
	return "", fmt.Errorf("%w: executable %q not found in the container's PATH %s", ErrInvalid, args0, pathEnv)
}

// IDs is a resolved user: uid, gid and supplementary groups.
type IDs struct {
	UID    uint32   `json:"uid"`
	GID    uint32   `json:"gid"`
	Groups []uint32 `json:"groups,omitempty"`
	Home   string   `json:"home,omitempty"`
}

// resolveUser resolves a Docker-style user spec ("name", "uid",
// "name:group", "uid:gid") and additional groups against the container's
// /etc/passwd and /etc/group, as Docker does.
func (r *Root) ResolveUser(spec string, extra []string) (IDs, error) {
	out := IDs{Home: "/"}
	userPart, groupPart, hasGroup := strings.Cut(spec, ":")
	if userPart == "" {
		userPart = "0"
	}
	passwd, _ := r.readColonFile("/etc/passwd")
	groups, _ := r.readColonFile("/etc/group")

	userName := ""
	if uid, err := strconv.ParseUint(userPart, 10, 32); err == nil {
		out.UID = uint32(uid)
		for _, e := range passwd {
			if len(e) >= 6 && e[2] == userPart {
				userName = e[0]
				if gid, err := strconv.ParseUint(e[3], 10, 32); err == nil {
					out.GID = uint32(gid)
				}
				out.Home = e[5]
				break
			}
		}
	} else {
		found := false
		for _, e := range passwd {
			if len(e) >= 6 && e[0] == userPart {
				uid, err1 := strconv.ParseUint(e[2], 10, 32)
				gid, err2 := strconv.ParseUint(e[3], 10, 32)
				if err1 != nil || err2 != nil {
					return out, fmt.Errorf("%w: malformed /etc/passwd entry for user %q", ErrInvalid, userPart)
				}
				out.UID, out.GID, out.Home = uint32(uid), uint32(gid), e[5]
				userName = e[0]
				found = true
				break
			}
		}
		if !found {
			return out, fmt.Errorf("%w: unknown user %q: no such entry in the container's /etc/passwd", ErrInvalid, userPart)
		}
	}
	lookupGroup := func(g string) (uint32, error) {
		if gid, err := strconv.ParseUint(g, 10, 32); err == nil {
			return uint32(gid), nil
		}
		for _, e := range groups {
			if len(e) >= 3 && e[0] == g {
				gid, err := strconv.ParseUint(e[2], 10, 32)
				if err != nil {
					break
				}
				return uint32(gid), nil
			}
		}
		return 0, fmt.Errorf("%w: unknown group %q: no such entry in the container's /etc/group", ErrInvalid, g)
	}
	if hasGroup {
		gid, err := lookupGroup(groupPart)
		if err != nil {
			return out, err
		}
		out.GID = gid
	} else if userName != "" {
		// Supplementary groups from /etc/group, as Docker does when no
		// group is given.
		for _, e := range groups {
			if len(e) < 4 {
				continue
			}
			for _, m := range strings.Split(e[3], ",") {
				if m == userName {
					if gid, err := strconv.ParseUint(e[2], 10, 32); err == nil && uint32(gid) != out.GID {
						out.Groups = append(out.Groups, uint32(gid))
					}
				}
			}
		}
	}
	for _, g := range extra {
		gid, err := lookupGroup(g)
		if err != nil {
			return out, err
		}
		out.Groups = append(out.Groups, gid)
	}
	return out, nil
}

// readColonFile reads a passwd-style file from the container; a missing
// file reads as empty.
func (r *Root) readColonFile(name string) ([][]string, error) {
	f, err := r.open(name, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 16<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out, sc.Err()
}
