package initproc

import (
	"os"

	"github.com/berthlabs/berth/internal/mountinfo"
	"github.com/berthlabs/berth/namespace"
	"golang.org/x/sys/unix"
)

// PoolEnv marks an init started ahead of its container (a pooled init,
// in new mount, PID, UTS, IPC and network namespaces). It does what
// needs no config while it waits for one.
const PoolEnv = "_BERTH_INIT_POOLED"

// pooled prepares an init that waits in a pool. Its mount namespace is
// a copy of the host's made before its container existed:
//   - it becomes a slave of the host's, so that on a host whose mounts
//     are shared, what is mounted there later still reaches it (on a
//     host with private mounts the pool retires inits the host's mount
//     changes made stale);
//   - the namespace files bind-mounted on the host (persistent network
//     and pod namespaces) are detached from the copy, so that it does
//     not keep those namespaces alive after the host removes them.
//
// The network namespace's loopback is brought up. Failures are left for
// the setup to meet: none of this is needed for a correct container.
// Then the host hears that this init is ready: its runtime has started
// and it waits for the MsgStart that makes it a container's.
func (s *initState) pooled() {
	defer Send(s.conn, &Message{Type: MsgReady})
	unix.Mount("", "/", "", unix.MS_REC|unix.MS_SLAVE, "")
	for _, target := range nsfsMounts() {
		unix.Unmount(target, unix.MNT_DETACH)
	}
	if namespace.LoopbackUp() == nil {
		s.loUp = true
	}
}

// nsfsMounts lists the mount points of namespace files in this mount
// namespace.
func nsfsMounts() []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	entries, _ := mountinfo.Read(f)
	var out []string
	for _, e := range entries {
		if e.FSType == "nsfs" {
			out = append(out, e.MountPoint)
		}
	}
	return out
}
