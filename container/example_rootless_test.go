package container_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/layer"
)

// Run an image as an unprivileged user: the store lives in the user's
// home, the container gets a user namespace of its own (root inside is
// the user outside), and on a host that delegates the user no cgroup the
// runtime is told to run without one. (TestRootless runs this as a
// throwaway user; as root nothing here is rootless.)
func Example_rootless() {
	ctx := context.Background()
	data, err := container.RootlessDataDir() // $XDG_DATA_HOME/berth
	if err != nil {
		panic(err)
	}
	store, err := layer.Open(filepath.Join(data, "images"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	rt := &container.Runtime{Images: store}
	spec := &container.Spec{
		Image:   "example.com/app:v1",
		Process: container.Process{Args: []string{"id", "-u"}, Stdout: os.Stdout},
	}
	c, err := rt.Create(ctx, "rootless-app", spec)
	if errors.Is(err, container.ErrNoCgroup) {
		// No delegated cgroup: run without limits, as asked.
		rt.NoCgroups = true
		c, err = rt.Create(ctx, "rootless-app", spec)
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		fmt.Println(err)
		return
	}
	st, _ := c.Wait(ctx)
	fmt.Println(st) // after "0" from id -u
}
