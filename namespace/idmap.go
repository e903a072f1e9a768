package namespace

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ErrInvalidIDMap is returned, wrapped with the offending entry, by
// [ValidateIDMaps] and by the functions that validate maps before use.
var ErrInvalidIDMap = errors.New("namespace: invalid ID map")

// MaxIDMaps is the most entries the kernel accepts in one uid_map or
// gid_map file (Linux 4.15 and later).
const MaxIDMaps = 340

// IDMap maps a range of IDs inside a user namespace to IDs outside.
// IDs ContainerID to ContainerID+Size-1 in the namespace are HostID to
// HostID+Size-1 in the parent namespace: a line of /proc/PID/uid_map.
type IDMap struct {
	// ContainerID is the first ID of the range inside the namespace,
	// HostID the first in the parent namespace, and Size the number of
	// IDs (at least 1).
	ContainerID, HostID, Size uint32
}

// String returns the map as a line of /proc/PID/uid_map spells it,
// without the newline: "CONTAINERID HOSTID SIZE".
func (m IDMap) String() string {
	return fmt.Sprintf("%d %d %d", m.ContainerID, m.HostID, m.Size)
}

// ValidateIDMaps checks maps the way the kernel will when they are
// written: at most [MaxIDMaps] entries, every Size greater than zero, no
// range running past the largest valid ID (4294967294), and no two ranges
// overlapping, neither inside the namespace nor outside. An empty list is
// valid. Errors wrap [ErrInvalidIDMap] and name the bad entry by index.
func ValidateIDMaps(maps []IDMap) error {
	if len(maps) > MaxIDMaps {
		return fmt.Errorf("%w: %d entries, the kernel takes at most %d", ErrInvalidIDMap, len(maps), MaxIDMaps)
	}
	for i, m := range maps {
		if m.Size == 0 {
			return fmt.Errorf("%w: entry %d (%v): size is zero", ErrInvalidIDMap, i, m)
		}
		// The kernel rejects first+count wrapping around 2^32, and
		// 4294967295 ((uid_t)-1) is never a valid ID.
		if uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32 {
			return fmt.Errorf("%w: entry %d (%v): container range overflows past ID %d", ErrInvalidIDMap, i, m, uint32(math.MaxUint32-1))
		}
		if uint64(m.HostID)+uint64(m.Size) > math.MaxUint32 {
			return fmt.Errorf("%w: entry %d (%v): host range overflows past ID %d", ErrInvalidIDMap, i, m, uint32(math.MaxUint32-1))
		}
	}
	if err := checkOverlap(maps, "inside the namespace", func(m IDMap) uint32 { return m.ContainerID }); err != nil {
		return err
	}
	return checkOverlap(maps, "outside the namespace", func(m IDMap) uint32 { return m.HostID })
}

// checkOverlap reports the first pair of entries whose ranges, with
// starts given by start, overlap.
func checkOverlap(maps []IDMap, where string, start func(IDMap) uint32) error {
	idx := make([]int, len(maps))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return start(maps[idx[a]]) < start(maps[idx[b]]) })
	for n := 1; n < len(idx); n++ {
		prev, cur := idx[n-1], idx[n]
		if uint64(start(maps[prev]))+uint64(maps[prev].Size) > uint64(start(maps[cur])) {
			a, b := min(prev, cur), max(prev, cur)
			return fmt.Errorf("%w: entry %d (%v) overlaps entry %d (%v) %s", ErrInvalidIDMap, b, maps[b], a, maps[a], where)
		}
	}
	return nil
}

// SysProcIDMaps converts maps for [syscall.SysProcAttr] UidMappings and
// GidMappings, for starting a child in a new user namespace with
// [os/exec].
func SysProcIDMaps(maps []IDMap) []syscall.SysProcIDMap {
	if maps == nil {
		return nil
	}
	out := make([]syscall.SysProcIDMap, len(maps))
	for i, m := range maps {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// FromOCIIDMaps converts the UID or GID mappings of an OCI runtime spec.
func FromOCIIDMaps(maps []specs.LinuxIDMapping) []IDMap {
	if maps == nil {
		return nil
	}
	out := make([]IDMap, len(maps))
	for i, m := range maps {
		out[i] = IDMap{ContainerID: m.ContainerID, HostID: m.HostID, Size: m.Size}
	}
	return out
}

// WriteIDMaps validates and writes the user and group ID maps of the user
// namespace that process pid is in, to /proc/PID/uid_map and
// /proc/PID/gid_map. An empty list leaves that file alone. Each file can
// be written once in a namespace's life.
//
// The writer needs CAP_SETUID (uid_map) and CAP_SETGID (gid_map) in the
// parent user namespace to map more than its own IDs. Without CAP_SETGID,
// the kernel accepts gid_map only after setgroups(2) has been disabled
// with [DenySetgroups]; WriteIDMaps never does that on its own.
func WriteIDMaps(pid int, uids, gids []IDMap) error {
	if err := ValidateIDMaps(uids); err != nil {
		return fmt.Errorf("namespace: uid map for pid %d: %w", pid, err)
	}
	if err := ValidateIDMaps(gids); err != nil {
		return fmt.Errorf("namespace: gid map for pid %d: %w", pid, err)
	}
	if err := writeIDMapFile(pid, "uid_map", uids); err != nil {
		return err
	}
	return writeIDMapFile(pid, "gid_map", gids)
}

func writeIDMapFile(pid int, name string, maps []IDMap) error {
	if len(maps) == 0 {
		return nil
	}
	var b strings.Builder
	for _, m := range maps {
		b.WriteString(m.String())
		b.WriteByte('\n')
	}
	return writeProcFile(pid, name, b.String())
}

// DenySetgroups writes "deny" to /proc/PID/setgroups, which disables
// setgroups(2) in the user namespace that process pid is in. It must be
// done before gid_map is written by a process without CAP_SETGID in the
// parent namespace (an unprivileged user mapping its own group), and it
// cannot be undone for that namespace.
func DenySetgroups(pid int) error {
	return writeProcFile(pid, "setgroups", "deny")
}

// writeProcFile writes s to /proc/PID/name in a single write(2), as the
// ID map files require.
func writeProcFile(pid int, name, s string) error {
	path := "/proc/" + strconv.Itoa(pid) + "/" + name
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("namespace: write %s: %w", name, err)
	}
	n, err := f.Write([]byte(s))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != len(s) {
		err = fmt.Errorf("short write (%d of %d bytes)", n, len(s))
	}
	if err != nil {
		return fmt.Errorf("namespace: write %q to %s: %w", strings.TrimSpace(s), path, err)
	}
	return nil
}
