package container_test

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

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

	// Without linux.seccomp the container is unconfined, as in the OCI
	// spec; with it, its profile is the container's.
	fmt.Println(spec.Seccomp.Unconfined)
	oci.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
	if spec, err = container.FromOCI(oci, "/srv/bundle"); err != nil {
		panic(err)
	}
	fmt.Println(spec.Seccomp.Profile.DefaultAction)

	// What berth cannot do is refused.
	oci.Process.ApparmorProfile = "docker-default"
	_, err = container.FromOCI(oci, "/srv/bundle")
	fmt.Println(errors.Is(err, errors.ErrUnsupported), strings.Contains(err.Error(), "process.apparmorProfile"))
	// Output:
	// /srv/bundle/rootfs true 1000:1000
	// tmpfs /tmp [nosuid noexec size=16m]
	// [CAP_NET_BIND_SERVICE] map[net.ipv4.ip_unprivileged_port_start:0]
	// true
	// SCMP_ACT_ERRNO
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

// Share a named volume between containers, like `docker volume create`
// and `docker run -v data:/data`: it outlives them, and cannot be
// removed while a container uses it. Needs root and a static busybox.
func ExampleRuntime_CreateVolume() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	volumes, err := os.MkdirTemp("", "volumes-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(volumes)
	ctx := context.Background()
	rt := &container.Runtime{VolumeRoot: volumes}
	if _, err := rt.CreateVolume(ctx, "data", container.VolumeOptions{Labels: map[string]string{"app": "demo"}}); err != nil {
		panic(err)
	}
	run := func(id, script string) *container.Container {
		c, err := rt.Create(ctx, id, &container.Spec{
			Rootfs:  rootfs,
			Mounts:  []container.Mount{{Type: container.VolumeMount, Source: "data", Target: "/data"}},
			Process: container.Process{Args: []string{"sh", "-c", script}, Stdout: os.Stdout},
		})
		if err != nil {
			panic(err)
		}
		if err := c.Start(ctx); err != nil {
			panic(err)
		}
		c.Wait(ctx)
		return c
	}
	w := run("example-volume-writer", "echo kept > /data/note")
	w.Delete(ctx)
	r := run("example-volume-reader", "cat /data/note")
	err = rt.RemoveVolume(ctx, "data", false)
	fmt.Println(errors.Is(err, container.ErrVolumeInUse))
	r.Delete(ctx)
	fmt.Println(rt.RemoveVolume(ctx, "data", false))
	// Output:
	// kept
	// true
	// <nil>
}

// Follow a container's log as it prints, like `docker logs -f -t`, and
// read its last line afterwards, like `docker logs --tail 1`. Needs root
// and a static busybox.
func ExampleContainer_Logs() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	logPath := filepath.Join(rootfs, "..", filepath.Base(rootfs)+".log")
	defer os.Remove(logPath)
	c, err := container.Create(ctx, "example-logs", &container.Spec{
		Rootfs:  rootfs,
		LogPath: logPath,
		Process: container.Process{Args: []string{"sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.05; done"}},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	// Follow returns once the container has stopped and all is read.
	if err := c.Logs(ctx, container.LogOptions{Follow: true}, os.Stdout, os.Stderr); err != nil {
		panic(err)
	}
	var last bytes.Buffer
	if err := container.Logs(ctx, logPath, container.LogOptions{Tail: 1, Timestamps: true}, &last, nil); err != nil {
		panic(err)
	}
	_, line, _ := strings.Cut(last.String(), " ")
	fmt.Print("last: ", line)
	// Output:
	// tick 1
	// tick 2
	// tick 3
	// last: tick 3
}

// Copy a file into a running container and a directory out of it, as
// tar streams, like `docker cp`. Needs root and a static busybox.
func ExampleContainer_CopyTo() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	c, err := container.Create(ctx, "example-copy", &container.Spec{
		Rootfs:  rootfs,
		Process: container.Process{Args: []string{"sleep", "60"}},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	var in bytes.Buffer
	tw := tar.NewWriter(&in)
	tw.WriteHeader(&tar.Header{Name: "config.txt", Mode: 0o600, Size: 6, Uid: 1000, Gid: 1000})
	tw.Write([]byte("debug\n"))
	tw.Close()
	if err := c.CopyTo(ctx, "/etc", &in); err != nil {
		panic(err)
	}
	out, err := c.CopyFrom(ctx, "/etc")
	if err != nil {
		panic(err)
	}
	defer out.Close()
	tr := tar.NewReader(out)
	for {
		h, err := tr.Next()
		if err != nil {
			break
		}
		if h.Name == "etc/config.txt" {
			fmt.Println(h.Name, h.Uid, fs.FileMode(h.Mode))
		}
	}
	// Output:
	// etc/config.txt 1000 -rw-------
}

// List the processes of a running container, like `docker top`. Needs
// root and a static busybox.
func ExampleContainer_Top() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	c, err := container.Create(ctx, "example-top", &container.Spec{
		Rootfs:  rootfs,
		Process: container.Process{Args: []string{"sleep", "60"}, User: "1000"},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	// Start returns once the process is started: for a moment it may
	// still be berth's init, about to execute sleep.
	var procs []container.ProcessInfo
	for i := 0; i < 100; i++ {
		if procs, err = c.Top(); err != nil {
			panic(err)
		}
		if len(procs) == 1 && procs[0].Command == "sleep" {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range procs {
		fmt.Println(p.UID, strings.Join(p.Args, " "))
	}
	// Output:
	// 1000 sleep 60
}

// Run containers under Docker's default seccomp profile (the default),
// under a profile of one's own in the OCI runtime spec's form, and
// unconfined, like `docker run --security-opt seccomp=...`. Needs root
// and a static busybox.
func ExampleSeccomp() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	ctx := context.Background()
	eacces := uint(13)
	for i, sc := range []container.Seccomp{
		{}, // Docker's default profile
		{Profile: &specs.LinuxSeccomp{
			DefaultAction: specs.ActAllow,
			Syscalls: []specs.LinuxSyscall{{
				Names: []string{"mkdir", "mkdirat"}, Action: specs.ActErrno, ErrnoRet: &eacces,
			}},
		}},
		{Unconfined: true},
	} {
		var out strings.Builder
		c, err := container.Create(ctx, fmt.Sprintf("example-seccomp-%d", i), &container.Spec{
			Rootfs: rootfs,
			Process: container.Process{
				Args:   []string{"sh", "-c", "unshare -U true 2>/dev/null && echo -n 'unshare ok, ' || echo -n 'unshare refused, '; mkdir /tmp/d$$ 2>/dev/null && rmdir /tmp/d$$ && echo 'mkdir ok' || echo 'mkdir refused'"},
				Stdout: &out,
			},
			Seccomp: sc,
		})
		if err != nil {
			panic(err)
		}
		if err := c.Start(ctx); err != nil {
			panic(err)
		}
		if _, err := c.Wait(ctx); err != nil {
			panic(err)
		}
		c.Delete(ctx)
		fmt.Print(out.String())
	}
	// Output:
	// unshare refused, mkdir ok
	// unshare ok, mkdir refused
	// unshare ok, mkdir ok
}
