package container

import (
	"context"
	"fmt"
	"testing"

	"github.com/berthlabs/berth/cgroup"
)

// BenchmarkRun is the start-to-exit cost of a container: create (new
// PID, mount, UTS, IPC and network namespaces; memory and pids cgroup),
// start /bin/true on a busybox rootfs, wait, delete. bench/runtimes.sh
// times runc and crun doing the same work.
func BenchmarkRun(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	spec := &Spec{
		Rootfs:    testRootfs,
		Process:   Process{Args: []string{"/bin/true"}},
		Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
	}
	if _, err := initPath(); err != nil { // the sealed copy is made once per process
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := Create(ctx, fmt.Sprintf("bench-%d-%d", i, b.N), spec)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Start(ctx); err != nil {
			b.Fatal(err)
		}
		st, err := c.Wait(ctx)
		if err != nil || !st.Success() {
			b.Fatal(st, err)
		}
		if err := c.Delete(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
