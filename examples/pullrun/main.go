// Command pullrun is berth's main job end to end: it builds an image from
// the host's static busybox, pushes it to a registry, pulls it back into
// a fresh layer store and runs a container from it.
//
//	go run ./examples/pullrun                         # an in-process registry
//	go run ./examples/pullrun -registry 127.0.0.1:5000 # a registry you run
//	go run ./examples/pullrun -- echo hi               # your own command
//
// Without -registry it serves go-containerregistry's in-memory registry
// on a loopback port inside this process. It needs root (namespaces,
// cgroups, overlay mounts) and Debian's busybox-static.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/registry"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	reg := flag.String("registry", "", "registry host:port to use (default: one served in-process)")
	repo := flag.String("repo", "berth/pullrun:demo", "repository and tag to push to")
	plain := flag.Bool("plain-http", false, "allow plain HTTP to a non-loopback -registry")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *reg, *repo, *plain, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "pullrun:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, reg, repo string, plain bool, args []string) error {
	if reg == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := &http.Server{Handler: ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))), ReadHeaderTimeout: 10 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		reg = ln.Addr().String()
		fmt.Printf("registry: in-process at %s\n", reg)
	}
	ref := reg + "/" + repo
	var opts []registry.Option
	if plain {
		opts = append(opts, registry.WithPlainHTTP(reg))
	}
	client := registry.New(opts...)

	tmp, err := os.MkdirTemp("", "berth-pullrun-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	// 1. Build an image locally and push it.
	local, err := layer.Open(tmp + "/local")
	if err != nil {
		return err
	}
	defer local.Close()
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(rootfs)
	cfg := ocispec.ImageConfig{
		Entrypoint: []string{"sh", "-c"},
		Cmd:        []string{`echo "hello from $(hostname): $(cat /proc/1/comm) is PID 1, $(ls /bin | wc -l) programs in /bin"`},
		Env:        []string{"PATH=/bin"},
	}
	if _, err := local.ImportDirs(ctx, "localhost/pullrun:built", cfg, rootfs); err != nil {
		return err
	}
	start := time.Now()
	pushed, err := client.Push(ctx, ref, local, "localhost/pullrun:built")
	if err != nil {
		return err
	}
	fmt.Printf("pushed %s (%s): %d blobs, %d bytes in %v\n", ref, pushed.Descriptor.Digest, pushed.Uploaded, pushed.UploadedBytes, time.Since(start).Round(time.Millisecond))

	// 2. Pull it into a fresh store.
	fresh, err := layer.Open(tmp + "/fresh")
	if err != nil {
		return err
	}
	defer fresh.Close()
	start = time.Now()
	pulled, err := client.Pull(ctx, ref, fresh, registry.WithProgress(func(p registry.Progress) {
		fmt.Printf("  pull: %d/%d layers, %d/%d bytes, %d unpacked\n", p.LayersDone, p.Layers, p.BytesDone, p.Bytes, p.Unpacked)
	}))
	if err != nil {
		return err
	}
	fmt.Printf("pulled %s: %d blobs, %d bytes in %v\n", pulled.Name, pulled.Fetched, pulled.FetchedBytes, time.Since(start).Round(time.Millisecond))

	// 3. Run it (its own command unless one was given).
	if len(args) == 0 {
		args = nil
	}
	rt := &container.Runtime{Images: fresh}
	c, err := rt.Create(ctx, fmt.Sprintf("pullrun-%d", os.Getpid()), &container.Spec{
		Image:    pulled.Name,
		Hostname: "pulled",
		Process:  container.Process{Args: args, Stdout: os.Stdout, Stderr: os.Stderr},
	})
	if err != nil {
		return err
	}
	defer c.Delete(context.Background())
	if err := c.Start(ctx); err != nil {
		return err
	}
	st, err := c.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("container exited: %v\n", st)
	if !st.Success() {
		return fmt.Errorf("container failed: %v", st)
	}
	return nil
}
