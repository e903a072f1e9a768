package container_test

import (
	"context"
	"fmt"
	"os"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
)

// Give a container a host device, as `docker run --device
// /dev/loop-control:/dev/lc:r --device-cgroup-rule 'c 1:1 r'` does, and
// see that it may open it but not the host's disk, whose node it can
// still create (Docker allows mknod). Needs root, a static busybox and
// the host's /dev/loop-control.
func ExampleParseDevice() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	dev, err := container.ParseDevice("/dev/loop-control:/dev/lc:r")
	if err != nil {
		panic(err)
	}
	rule, err := cgroup.ParseDeviceRule("c 1:1 r")
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	c, err := container.Create(ctx, "example-devices", &container.Spec{
		Rootfs:    rootfs,
		Devices:   []container.Device{dev},
		Resources: cgroup.Resources{Devices: []cgroup.DeviceRule{rule}},
		Process: container.Process{
			Args: []string{"sh", "-c", `true </dev/lc && echo lc: readable
mknod /dev/sda b 8 0 && echo sda: made
true </dev/sda 2>/dev/null || echo sda: refused`},
			Stdout: os.Stdout,
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	if _, err := c.Wait(ctx); err != nil {
		fmt.Println(err)
	}
	// Output:
	// lc: readable
	// sda: made
	// sda: refused
}
