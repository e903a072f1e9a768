package container_test

import (
	"context"
	"fmt"
	"os"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
)

// Run a command in a container with a memory and a pids limit, and read
// its exit status. Needs root and a static busybox.
func Example() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	c, err := container.Create(ctx, "example-hello", &container.Spec{
		Rootfs:   rootfs,
		Hostname: "hello",
		Process: container.Process{
			Args:   []string{"sh", "-c", "echo hello from $(hostname) as $(id -un); exit 3"},
			Stdout: os.Stdout,
		},
		Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 32},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	st, err := c.Wait(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Println(st, st.Code)
	// Output:
	// hello from hello as root
	// exit status 3 3
}
