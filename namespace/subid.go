package namespace

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
)

// The files that list each user's subordinate user and group IDs, as
// shadow's newuidmap(1) and newgidmap(1) read them.
const (
	SubUIDFile = "/etc/subuid"
	SubGIDFile = "/etc/subgid"
)

// ErrNoSubIDs is returned, wrapped with the user and the file, when a user
// namespace needs more IDs than the user's own and the user has no
// subordinate IDs (or too few) in /etc/subuid or /etc/subgid.
var ErrNoSubIDs = errors.New("namespace: no subordinate IDs for the user")

// ErrNoIDMapHelper is returned, wrapped, when newuidmap or newgidmap
// (Debian's uidmap package) is needed and not installed.
var ErrNoIDMapHelper = errors.New("namespace: newuidmap/newgidmap not found (install the uidmap package)")

// SubIDRange is one range of subordinate IDs: a line "name:start:count"
// of /etc/subuid or /etc/subgid.
type SubIDRange struct {
	// Start is the first ID of the range and Count how many IDs it has.
	Start, Count uint32
}

// ReadSubIDs returns the ranges that file (SubUIDFile or SubGIDFile)
// grants the user called name, or with numeric ID id (either may match,
// as newuidmap accepts both), in the file's order. A missing file grants
// nothing: it returns no ranges and no error. Malformed lines are
// skipped, as shadow skips them.
func ReadSubIDs(file, name string, id uint32) ([]SubIDRange, error) {
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("namespace: read %s: %w", file, err)
	}
	return parseSubIDs(bytes.NewReader(b), name, id), nil
}

func parseSubIDs(r io.Reader, name string, id uint32) []SubIDRange {
	var out []SubIDRange
	sc := bufio.NewScanner(r)
	ids := strconv.FormatUint(uint64(id), 10)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Split(line, ":")
		if len(f) != 3 || (f[0] != name && f[0] != ids) {
			continue
		}
		start, err1 := strconv.ParseUint(f[1], 10, 32)
		count, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 != nil || err2 != nil || count == 0 || start+count > 1<<32-1 {
			continue
		}
		out = append(out, SubIDRange{Start: uint32(start), Count: uint32(count)})
	}
	return out
}

// RootlessIDMaps returns the user and group ID maps an unprivileged user
// gives a container: the user's own UID and GID are root (0) inside, and
// when the user has subordinate IDs in both SubUIDFile and SubGIDFile,
// the first range of each follows as IDs 1 to Count (as rootless podman
// maps them). Without subordinate IDs for both, each map is that single
// ID. sub reports whether the maps use subordinate ranges, that is
// whether only newuidmap and newgidmap can write them.
func RootlessIDMaps(uid, gid uint32) (uids, gids []IDMap, sub bool, err error) {
	name := strconv.FormatUint(uint64(uid), 10)
	if u, err := user.LookupId(name); err == nil {
		name = u.Username
	}
	us, err := ReadSubIDs(SubUIDFile, name, uid)
	if err != nil {
		return nil, nil, false, err
	}
	gs, err := ReadSubIDs(SubGIDFile, name, uid)
	if err != nil {
		return nil, nil, false, err
	}
	uids, gids = []IDMap{{0, uid, 1}}, []IDMap{{0, gid, 1}}
	if len(us) == 0 || len(gs) == 0 {
		return uids, gids, false, nil
	}
	uids = append(uids, IDMap{1, us[0].Start, us[0].Count})
	gids = append(gids, IDMap{1, gs[0].Start, gs[0].Count})
	return uids, gids, true, nil
}

// CheckSubIDs checks that an unprivileged user may have maps written for
// it by newuidmap or newgidmap: each host range is the user's own ID
// (own) or lies within one of the user's ranges (from ReadSubIDs). It
// validates maps first (see ValidateIDMaps). kind ("uid" or "gid") and
// file name the map in errors, which wrap ErrNoSubIDs.
func CheckSubIDs(kind, file, name string, maps []IDMap, own uint32, ranges []SubIDRange) error {
	if err := ValidateIDMaps(maps); err != nil {
		return fmt.Errorf("namespace: %s map: %w", kind, err)
	}
	for i, m := range maps {
		if m.Size == 1 && m.HostID == own {
			continue
		}
		ok := false
		for _, r := range ranges {
			if uint64(m.HostID) >= uint64(r.Start) && uint64(m.HostID)+uint64(m.Size) <= uint64(r.Start)+uint64(r.Count) {
				ok = true
				break
			}
		}
		if !ok {
			if len(ranges) == 0 {
				return fmt.Errorf("%w: %s map entry %d (%v) needs subordinate %ss, and %s grants user %s none", ErrNoSubIDs, kind, i, m, kind, file, name)
			}
			return fmt.Errorf("%w: %s map entry %d (%v) is not within user %s's own %s %d or its ranges in %s (%v)", ErrNoSubIDs, kind, i, m, name, kind, own, file, ranges)
		}
	}
	return nil
}

// Helper programs that write ID maps for unprivileged users: setuid root,
// they check the maps against /etc/subuid and /etc/subgid.
var (
	NewUIDMap = "newuidmap"
	NewGIDMap = "newgidmap"
)

// WriteIDMapsHelper writes the user and group ID maps of the user
// namespace that process pid is in with newuidmap and newgidmap, for an
// unprivileged caller whose maps include subordinate IDs. It validates
// the maps first. An error names the helper and carries what it printed;
// a helper that is not installed gives ErrNoIDMapHelper.
func WriteIDMapsHelper(pid int, uids, gids []IDMap) error {
	if err := ValidateIDMaps(uids); err != nil {
		return fmt.Errorf("namespace: uid map for pid %d: %w", pid, err)
	}
	if err := ValidateIDMaps(gids); err != nil {
		return fmt.Errorf("namespace: gid map for pid %d: %w", pid, err)
	}
	for _, h := range []struct {
		prog string
		maps []IDMap
	}{{NewUIDMap, uids}, {NewGIDMap, gids}} {
		if len(h.maps) == 0 {
			continue
		}
		path, err := exec.LookPath(h.prog)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrNoIDMapHelper, err)
		}
		args := []string{strconv.Itoa(pid)}
		for _, m := range h.maps {
			args = append(args, strconv.FormatUint(uint64(m.ContainerID), 10), strconv.FormatUint(uint64(m.HostID), 10), strconv.FormatUint(uint64(m.Size), 10))
		}
		out, err := exec.Command(path, args...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("namespace: %s %s: %w: %s", h.prog, strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}
