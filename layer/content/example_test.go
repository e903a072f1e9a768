package content_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/berthlabs/berth/layer/content"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Example stores an image (a layer, a config and a manifest), names it,
// and reads it back by name.
func Example() {
	dir, err := os.MkdirTemp("", "content-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := content.Open(dir)
	if err != nil {
		panic(err)
	}

	// A layer is any tar; here an empty one (1024 zero bytes).
	layer, err := s.Put(ctx, ocispec.MediaTypeImageLayer, bytes.NewReader(make([]byte, 1024)), "")
	if err != nil {
		panic(err)
	}
	cfg, _ := json.Marshal(ocispec.Image{
		Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		Config:   ocispec.ImageConfig{Cmd: []string{"sh"}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{layer.Digest}},
	})
	config, err := s.Put(ctx, ocispec.MediaTypeImageConfig, bytes.NewReader(cfg), "")
	if err != nil {
		panic(err)
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: config, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	mb, _ := json.Marshal(m)
	manifest, err := s.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
	if err != nil {
		panic(err)
	}

	// Names are normalized the way docker does it.
	if err := s.Tag(ctx, "busybox", manifest); err != nil {
		panic(err)
	}
	images, _ := s.Images(ctx)
	fmt.Println(images[0].Name)

	desc, err := s.Resolve(ctx, "docker.io/library/busybox:latest")
	if err != nil {
		panic(err)
	}
	got, img, err := s.Manifest(ctx, desc, &ocispec.Platform{OS: "linux", Architecture: "amd64"})
	if err != nil {
		panic(err)
	}
	fmt.Println(len(got.Layers), "layer, cmd", img.Config.Cmd)

	// A blob that does not match its digest is refused, and not kept.
	_, err = s.Put(ctx, "", strings.NewReader("tampered"), digest.FromString("original"))
	fmt.Println(errors.Is(err, content.ErrDigestMismatch))
	// Output:
	// docker.io/library/busybox:latest
	// 1 layer, cmd [sh]
	// true
}

func ExampleParseReference() {
	for _, name := range []string{"busybox", "quay.io/coreos/etcd:v3.5", "localhost:5000/app@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "Busybox"} {
		ref, err := content.ParseReference(name)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(ref, "|", ref.Familiar())
	}
	// Output:
	// docker.io/library/busybox:latest | busybox:latest
	// quay.io/coreos/etcd:v3.5 | quay.io/coreos/etcd:v3.5
	// localhost:5000/app@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae | localhost:5000/app@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
	// content: invalid: reference "Busybox": repository name "Busybox" must be lowercase
}
