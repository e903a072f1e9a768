package container_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
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

// Run a second process in a running container, like `docker exec`: it
// sees the main process's files and gets the container's environment.
// Needs root and a static busybox.
func ExampleContainer_Exec() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	rt := &container.Runtime{}
	c, err := rt.Create(ctx, "example-exec", &container.Spec{
		Rootfs: rootfs,
		Process: container.Process{
			Args: []string{"sh", "-c", "echo ready > /tmp/state; exec sleep 60"},
			Env:  []string{"ROLE=server"},
		},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	var out bytes.Buffer
	// Wait for the main process's file, then read it from a second one.
	p, err := c.Exec(ctx, container.Process{
		Args:   []string{"sh", "-c", "until [ -s /tmp/state ]; do sleep 0.01; done; echo $ROLE $EXTRA: $(cat /tmp/state); exit 2"},
		Env:    []string{"EXTRA=exec"},
		Stdout: &out,
	})
	if err != nil {
		panic(err)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Print(out.String())
	fmt.Println(st)
	// The process has ended: signalling it says so.
	fmt.Println(errors.Is(p.Signal(15), os.ErrProcessDone))
	// Output:
	// server exec: ready
	// exit status 2
	// true
}

// Convert an OCI runtime spec, as runc reads it from config.json: what
// berth can do is converted, what it cannot is refused with an error
// that names the field.
func ExampleFromOCI() {
	oci := &specs.Spec{
		Root:     &specs.Root{Path: "rootfs", Readonly: true},
		Hostname: "oci",
		Process: &specs.Process{
			Args: []string{"sh", "-c", "hostname"},
			Cwd:  "/",
			User: specs.User{UID: 1000, GID: 1000},
			Capabilities: &specs.LinuxCapabilities{
				Bounding: []string{"CAP_NET_BIND_SERVICE"},
				Ambient:  []string{"CAP_NET_BIND_SERVICE"},
			},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"}, // berth's own
			{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "noexec", "size=16m"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: "mount"}, {Type: "pid"}, {Type: "uts"}, {Type: "ipc"}, {Type: "network"}},
			Sysctl:     map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
		},
	}
	spec, err := container.FromOCI(oci, "/srv/bundle")
	if err != nil {
		panic(err)
	}
	fmt.Println(spec.Rootfs, spec.ReadonlyRootfs, spec.Process.User)
	fmt.Println(spec.Mounts[0].Type, spec.Mounts[0].Target, spec.Mounts[0].Options)
	fmt.Println(spec.AmbientCapabilities, spec.Sysctls)

	oci.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	_, err = container.FromOCI(oci, "/srv/bundle")
	fmt.Println(errors.Is(err, errors.ErrUnsupported), strings.Contains(err.Error(), "linux.seccomp"))
	// Output:
	// /srv/bundle/rootfs true 1000:1000
	// tmpfs /tmp [nosuid noexec size=16m]
	// [CAP_NET_BIND_SERVICE] map[net.ipv4.ip_unprivileged_port_start:0]
	// true true
}

// Run an OCI bundle (a directory with config.json and a root
// filesystem), as `runc run` does. Needs root and a static busybox.
func ExampleLoadBundle() {
	bundle, err := os.MkdirTemp("", "bundle-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(bundle)
	if err := containertest.BusyboxRootfs(filepath.Join(bundle, "rootfs")); err != nil {
		panic(err)
	}
	config := `{
	"ociVersion": "1.0.2",
	"root": {"path": "rootfs"},
	"hostname": "bundled",
	"process": {
		"args": ["sh", "-c", "echo $(hostname) $(id -u) $(cat /proc/sys/kernel/shmmax)"],
		"cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 1000, "gid": 1000},
		"noNewPrivileges": true
	},
	"linux": {
		"namespaces": [{"type": "mount"}, {"type": "pid"}, {"type": "uts"}, {"type": "ipc"}, {"type": "network"}],
		"sysctl": {"kernel.shmmax": "65536"},
		"resources": {"memory": {"limit": 67108864}, "pids": {"limit": 16}}
	}
}`
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), []byte(config), 0o644); err != nil {
		panic(err)
	}
	spec, err := container.LoadBundle(bundle)
	if err != nil {
		panic(err)
	}
	var out bytes.Buffer
	spec.Process.Stdout = &out
	ctx := context.Background()
	rt := &container.Runtime{}
	c, err := rt.Create(ctx, "example-bundle", spec)
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
	fmt.Print(out.String())
	fmt.Println(st, c.Spec().Resources.PidsLimit)
	// Output:
	// bundled 1000 65536
	// exit status 0 16
}

// Commit a container's changes as a new image, like `docker commit`,
// and run it. Needs root and a static busybox.
func ExampleContainer_Commit() {
	dir, err := os.MkdirTemp("", "store-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	store, err := layer.Open(filepath.Join(dir, "store"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	if _, err := store.ImportDirs(ctx, "example.com/base:v1", ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, rootfs); err != nil {
		panic(err)
	}
	rt := &container.Runtime{Images: store}
	run := func(id string, spec *container.Spec) (*container.Container, string) {
		var out bytes.Buffer
		spec.Process.Stdout = &out
		c, err := rt.Create(ctx, id, spec)
		if err != nil {
			panic(err)
		}
		if err := c.Start(ctx); err != nil {
			panic(err)
		}
		if _, err := c.Wait(ctx); err != nil {
			panic(err)
		}
		return c, out.String()
	}

	c, _ := run("example-commit-1", &container.Spec{
		Image:   "example.com/base:v1",
		Process: container.Process{Args: []string{"sh", "-c", "echo hello > /greeting"}},
	})
	desc, err := c.Commit(ctx, "example.com/greeter:v1", layer.CommitOptions{Cmd: []string{"cat", "/greeting"}})
	if err != nil {
		panic(err)
	}
	if err := c.Delete(ctx); err != nil {
		panic(err)
	}
	fmt.Println(desc.MediaType)

	c, out := run("example-commit-2", &container.Spec{Image: "example.com/greeter:v1"})
	defer c.Delete(ctx)
	fmt.Print(out)
	// Output:
	// application/vnd.oci.image.manifest.v1+json
	// hello
}
