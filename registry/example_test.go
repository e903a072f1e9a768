package registry_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/registry"
	ggcrregistry "github.com/google/go-containerregistry/pkg/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Push an image from one store to a registry and pull it into another.
func Example() {
	ctx := context.Background()
	// A registry for the example: go-containerregistry's in-memory one.
	srv := httptest.NewServer(ggcrregistry.New(ggcrregistry.Logger(log.New(io.Discard, "", 0))))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "http://")

	tmp, _ := os.MkdirTemp("", "registry-example-")
	defer os.RemoveAll(tmp)
	src, err := layer.Open(filepath.Join(tmp, "src"))
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()
	files := filepath.Join(tmp, "files")
	os.Mkdir(files, 0o755)
	os.WriteFile(filepath.Join(files, "hello"), []byte("hello\n"), 0o644)
	if _, err := src.ImportDirs(ctx, "example.com/hello:v1", ocispec.ImageConfig{Cmd: []string{"cat", "/hello"}}, files); err != nil {
		log.Fatal(err)
	}

	c := registry.New()
	pushed, err := c.Push(ctx, host+"/demo/hello:v1", src, "example.com/hello:v1",
		registry.WithDestinations(host+"/demo/hello:latest"))
	if err != nil {
		log.Fatal(err)
	}
	tags, _ := c.Tags(ctx, host+"/demo/hello")
	fmt.Println("pushed", pushed.Uploaded, "blobs, tags", tags)

	dst, err := layer.Open(filepath.Join(tmp, "dst"))
	if err != nil {
		log.Fatal(err)
	}
	defer dst.Close()
	pulled, err := c.Pull(ctx, host+"/demo/hello:v1", dst, registry.WithoutUnpack())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pulled", pulled.Fetched, "blobs, same digest:", pulled.Manifest.Digest == pushed.Descriptor.Digest)
	// Output:
	// pushed 2 blobs, tags [latest v1]
	// pulled 2 blobs, same digest: true
}
