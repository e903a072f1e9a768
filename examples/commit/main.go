// Command commit shows `docker commit` with berth: it builds a busybox
// image in a layer store, runs a container from it that writes a file,
// commits the container as a new image, runs the new image to read the
// file back, and exports the image as an OCI layout (inspected with
// skopeo when it is installed).
//
//	go run ./examples/commit
//
// It needs root (namespaces, cgroups, mounts) and Debian's busybox-static.
// Everything it makes is removed before it exits.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "commit:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "berth-commit-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	store, err := layer.Open(filepath.Join(tmp, "store"))
	if err != nil {
		return err
	}
	defer store.Close()

	// An image of one layer: a busybox root filesystem.
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(rootfs)
	if _, err := store.ImportDirs(ctx, "example.com/app:v1", ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, rootfs); err != nil {
		return err
	}
	fmt.Println("built example.com/app:v1 from a busybox root filesystem")

	rt := &container.Runtime{Images: store}
	runImage := func(id string, spec *container.Spec) (*container.Container, error) {
		spec.Process.Stdout, spec.Process.Stderr = os.Stdout, os.Stderr
		c, err := rt.Create(ctx, id, spec)
		if err != nil {
			return nil, err
		}
		if err := c.Start(ctx); err != nil {
			c.Delete(ctx)
			return nil, err
		}
		st, err := c.Wait(ctx)
		if err == nil && !st.Success() {
			err = fmt.Errorf("container %s: %v", id, st)
		}
		if err != nil {
			c.Delete(ctx)
			return nil, err
		}
		return c, nil
	}

	// docker run, then docker commit.
	c, err := runImage("commit-example-writer", &container.Spec{
		Image:   "example.com/app:v1",
		Process: container.Process{Args: []string{"sh", "-c", "mkdir -p /data && date -u > /data/greeting && echo wrote /data/greeting"}},
	})
	if err != nil {
		return err
	}
	desc, err := c.Commit(ctx, "example.com/app:v2", layer.CommitOptions{
		Cmd:     []string{"sh", "-c", "echo \"v2 says: $(cat /data/greeting)\""},
		Comment: "add /data/greeting",
	})
	c.Delete(ctx)
	if err != nil {
		return err
	}
	m, _, err := store.Content.Manifest(ctx, desc, nil)
	if err != nil {
		return err
	}
	top := m.Layers[len(m.Layers)-1]
	fmt.Printf("committed example.com/app:v2 (%s): %d layers, the new one %d bytes\n", desc.Digest.Encoded()[:12], len(m.Layers), top.Size)

	// docker run of the new image, with its new CMD.
	c, err = runImage("commit-example-reader", &container.Spec{Image: "example.com/app:v2"})
	if err != nil {
		return err
	}
	c.Delete(ctx)

	// docker save, as an OCI layout.
	out := filepath.Join(tmp, "layout")
	if err := store.Content.ExportLayout(ctx, out, "example.com/app:v2"); err != nil {
		return err
	}
	fmt.Println("exported example.com/app:v2 as an OCI layout")
	if _, err := exec.LookPath("skopeo"); err != nil {
		fmt.Println("skopeo is not installed: not inspecting the layout")
		return nil
	}
	b, err := exec.CommandContext(ctx, "skopeo", "inspect", "oci:"+out+":example.com/app:v2").Output()
	if err != nil {
		return fmt.Errorf("skopeo inspect: %w", err)
	}
	var info struct{ Layers []string }
	if err := json.Unmarshal(b, &info); err != nil {
		return fmt.Errorf("skopeo inspect: %w", err)
	}
	fmt.Printf("skopeo inspect: %d layers\n", len(info.Layers))
	return nil
}
