// Command build shows `docker build` with berth: a multi-stage
// Dockerfile whose first stage compiles a Go program and whose second
// copies the static binary into an image of its own, built in-process
// with container/build, run with container, and built again from the
// cache.
//
//	go run ./examples/build
//
// There is no Go toolchain image offline, so the example makes one: the
// host's Go toolchain (`go env GOROOT`, hard-linked into a staging
// directory at /usr/local/go) over a busybox root filesystem,
// imported into a layer store as two layers. The build stage runs the
// real `go build` of that toolchain in a berth container with no network
// (GOPROXY=off: the program has no dependencies).
//
// It needs root (namespaces, cgroups, mounts), Debian's busybox-static
// and a Go toolchain. Everything it makes is removed before it exits.
package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/build"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "build:", err)
		os.Exit(1)
	}
}

const dockerfile = `# The build stage: the Go toolchain.
FROM example.com/golang:local AS compile
ENV CGO_ENABLED=0 GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-trimpath \
    GOCACHE=/tmp/go-cache GOPATH=/tmp/go
WORKDIR /src
COPY go.mod main.go ./
RUN go build -ldflags=-s -o /out/hello . && /out/hello check

# The image: the static binary alone.
FROM scratch
COPY --from=compile /out/hello /hello
USER 65534:65534
ENTRYPOINT ["/hello"]
CMD ["world"]
`

const program = `package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

func main() {
	who := "nobody"
	if len(os.Args) > 1 {
		who = os.Args[1]
	}
	fmt.Printf("hello, %s, from a %s binary built in a berth container (uid %d)\n", who, runtime.Version(), os.Getuid())
}
`

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "berth-build-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	store, err := layer.Open(filepath.Join(tmp, "store"))
	if err != nil {
		return err
	}
	defer store.Close()

	if err := toolchainImage(ctx, store, tmp); err != nil {
		return fmt.Errorf("toolchain image: %w", err)
	}

	// The build context.
	dir := filepath.Join(tmp, "context")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"Dockerfile":    dockerfile,
		"main.go":       program,
		"go.mod":        "module example.com/hello\n\ngo 1.21\n",
		".dockerignore": "*.tmp\n",
	}
	for name, c := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			return err
		}
	}

	b := &build.Builder{Store: store}
	opts := build.Options{ContextDir: dir, Tags: []string{"example.com/hello:latest"}, Output: os.Stdout}
	t0 := time.Now()
	res, err := b.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("built in %v: %d steps, %d layers\n\n", time.Since(t0).Round(time.Millisecond), res.Steps, len(res.Image.RootFS.DiffIDs))

	rt := &container.Runtime{Images: store}
	var out bytes.Buffer
	c, err := rt.Create(ctx, "build-example", &container.Spec{Image: "example.com/hello:latest", Process: container.Process{Stdout: &out, Stderr: &out}})
	if err != nil {
		return err
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		return err
	}
	st, err := c.Wait(ctx)
	if err != nil {
		return err
	}
	fmt.Printf("run example.com/hello:latest (%s): %s\n", st, out.String())

	// Again: everything from the cache.
	opts.Output = nil
	t0 = time.Now()
	again, err := b.Build(ctx, opts)
	if err != nil {
		return err
	}
	fmt.Printf("rebuilt in %v: %d of %d steps from the cache, same image: %v\n", time.Since(t0).Round(time.Millisecond), again.CachedSteps, again.Steps, again.Descriptor.Digest == res.Descriptor.Digest)
	return nil
}

// toolchainImage stores example.com/golang:local: a busybox root
// filesystem, and the host's Go toolchain at /usr/local/go.
func toolchainImage(ctx context.Context, store *layer.Store, tmp string) error {
	goroot := "/usr/local/go"
	if out, err := exec.Command("go", "env", "GOROOT").Output(); err == nil {
		goroot = strings.TrimSpace(string(out))
	}
	if _, err := os.Stat(filepath.Join(goroot, "bin", "go")); err != nil {
		return fmt.Errorf("no Go toolchain at %s: %w", goroot, err)
	}
	bb, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(bb)
	staging := filepath.Join(tmp, "toolchain")
	if err := os.MkdirAll(filepath.Join(staging, "usr", "local"), 0o755); err != nil {
		return err
	}
	if err := linkTree(goroot, filepath.Join(staging, "usr", "local", "go")); err != nil {
		return err
	}
	cfg := ocispec.ImageConfig{Env: []string{"PATH=/usr/local/go/bin:/bin", "GOROOT=/usr/local/go"}, Cmd: []string{"go", "version"}}
	_, err = store.ImportDirs(ctx, "example.com/golang:local", cfg, bb, staging)
	return err
}

// linkTree makes dst a copy of the tree src: hard links where the two
// share a filesystem, copies where they do not.
func linkTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.Mkdir(to, fi.Mode().Perm())
		case fi.Mode()&fs.ModeSymlink != 0:
			l, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(l, to)
		case fi.Mode().IsRegular():
			if os.Link(p, to) == nil {
				return nil
			}
			in, err := os.Open(p)
			if err != nil {
				return err
			}
			defer in.Close()
			out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, fi.Mode().Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(out, in)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
			return err
		}
		return nil // sockets, devices: none in a toolchain
	})
}
