package build_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/build"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Build an image from a Dockerfile and a context directory, run it, and
// build it again from the cache. Needs root and a static busybox.
func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "example-build-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	store, err := layer.Open(filepath.Join(tmp, "store"))
	if err != nil {
		panic(err)
	}
	defer store.Close()
	// A base image: a busybox root filesystem.
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	if _, err := store.ImportDirs(ctx, "example.com/busybox:latest", ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, rootfs); err != nil {
		panic(err)
	}

	// The context: a Dockerfile and a file it copies.
	dir := filepath.Join(tmp, "context")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "greeting"), []byte("hello"), 0o644)
	os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(`FROM example.com/busybox:latest
ARG WHO=world
COPY greeting /etc/greeting
RUN echo "$(cat /etc/greeting), $WHO" > /message
CMD ["cat", "/message"]
`), 0o644)

	b := &build.Builder{Store: store}
	res, err := b.Build(ctx, build.Options{ContextDir: dir, Tags: []string{"example.com/hello:1"}, BuildArgs: map[string]string{"WHO": "berth"}})
	if err != nil {
		panic(err)
	}
	fmt.Println("steps:", res.Steps, "layers:", len(res.Image.RootFS.DiffIDs))

	// Run it.
	var out bytes.Buffer
	rt := &container.Runtime{Images: store}
	c, err := rt.Create(ctx, "example-build-run", &container.Spec{Image: "example.com/hello:1", Process: container.Process{Stdout: &out}})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	if _, err := c.Wait(ctx); err != nil {
		panic(err)
	}
	fmt.Print(out.String())

	// Again: every step comes from the cache, and the image is the same.
	again, err := b.Build(ctx, build.Options{ContextDir: dir, Tags: []string{"example.com/hello:1"}, BuildArgs: map[string]string{"WHO": "berth"}})
	if err != nil {
		panic(err)
	}
	fmt.Println("cached:", again.CachedSteps, "of", again.Steps, "same image:", again.Descriptor.Digest == res.Descriptor.Digest)
	// Output:
	// steps: 5 layers: 3
	// hello, berth
	// cached: 5 of 5 same image: true
}
