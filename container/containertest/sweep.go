package containertest

import (
	"context"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/internal/owner"
)

// What the sandboxes of a process are named by: container IDs are
// "ct-OWNER-RANDOM" (OWNER is the process's PID and start time), as are
// the test's volumes, their cgroups are under cgroupParent, and the
// copies of their files under CACHE/run/OWNER. When a test binary is killed (kill -9, a timeout), its
// containers die with it; what stays on disk is removed by the next
// process that uses the cache, once the owner is known to be dead.
const (
	idPrefix     = "ct-"
	cgroupParent = "/berth/containertest"
)

func newID() string { return idPrefix + owner.Self() + "-" + randomHex(4) }

// runDir is where this process keeps its sandboxes' files.
func runDir(cacheDir string) string { return filepath.Join(cacheDir, "run", owner.Self()) }

// sweep removes what dead processes' sandboxes left in the cache (volumes,
// copies of files) and in the cgroup tree. It is best effort: what it cannot remove now, a later
// sweep can.
func (c *cache) sweep(ctx context.Context, cacheDir string, snapshots bool) {
	dead := func(id string) bool {
		rest, ok := strings.CutPrefix(id, idPrefix)
		if !ok {
			return false
		}
		tok, _, ok := owner.Split(rest)
		return ok && !owner.Alive(tok)
	}
	// The containers' root filesystem snapshots carry their owner
	// (layer.WithOwner); opening the store sweeps them too.
	if snapshots {
		if err := c.store.Sweep(ctx); err != nil {
			c.rt.Logger.Debug("containertest: sweep", "err", err)
		}
	}
	for _, name := range cgroupChildren(cgroupParent) {
		if !dead(name) {
			continue
		}
		if cg, err := cgroup.Load(path.Join(cgroupParent, name)); err == nil {
			cg.Delete(ctx) // refused while it holds processes
		}
	}
	if vols, err := c.rt.Volumes(); err == nil {
		for _, v := range vols {
			if dead(v.Name) {
				c.rt.RemoveVolume(ctx, v.Name, true) // refused while in use
			}
		}
	}
	runs, _ := os.ReadDir(filepath.Join(cacheDir, "run"))
	for _, e := range runs {
		if _, _, ok := owner.Parse(e.Name()); ok && !owner.Alive(e.Name()) {
			os.RemoveAll(filepath.Join(cacheDir, "run", e.Name()))
		}
	}
}

// cgroupChildren lists the child cgroups of parent in every hierarchy
// berth uses (v1 controllers, or the v2 tree).
func cgroupChildren(parent string) []string {
	seen := map[string]bool{}
	var names []string
	for _, root := range []string{"/sys/fs/cgroup/pids", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/cpu", "/sys/fs/cgroup"} {
		entries, err := os.ReadDir(filepath.Join(root, parent))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if e.IsDir() && !seen[e.Name()] {
				seen[e.Name()] = true
				names = append(names, e.Name())
			}
		}
	}
	return names
}
