package berth_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
)

// A long-running container, a command run inside it with Exec, and a
// graceful stop. Needs root and a static busybox.
func Example() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	c, err := container.Create(ctx, "berth-example-service", &container.Spec{
		Rootfs:    rootfs,
		Hostname:  "service",
		Process:   container.Process{Args: []string{"sleep", "600"}},
		Resources: cgroup.Resources{MemoryLimit: 32 << 20, PidsLimit: 16},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	var out strings.Builder
	p, err := c.Exec(ctx, container.Process{Args: []string{"sh", "-c", "hostname; cat /proc/1/comm; ps -o comm | grep -c sleep"}, Stdout: &out})
	if err != nil {
		panic(err)
	}
	st, _ := p.Wait(ctx)
	fmt.Printf("exec: %s(%v)\n", strings.ReplaceAll(out.String(), "\n", ": "), st)
	if err := c.Stop(ctx, 5*time.Second); err != nil {
		panic(err)
	}
	st, _ = c.Wait(ctx)
	fmt.Println("main:", st)
	// Output:
	// exec: service: berth-init: 1: (exit status 0)
	// main: killed by signal terminated
}
