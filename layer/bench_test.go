package layer

import (
	"context"
	"fmt"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkUnpackUnpacked times Unpack of an image of eight layers that
// is unpacked already: what every container from it pays at Create.
func BenchmarkUnpackUnpacked(b *testing.B) {
	s := openStore(b, "overlay")
	var layers [][]byte
	for i := range 8 {
		layers = append(layers, layerTar(b, map[string]string{fmt.Sprintf("f%d", i): "x"}))
	}
	putImage(b, s, "example.com/eight:v1", ocispec.ImageConfig{}, layers...)
	ctx := context.Background()
	if _, err := s.Unpack(ctx, "example.com/eight:v1"); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := s.Unpack(ctx, "example.com/eight:v1"); err != nil {
			b.Fatal(err)
		}
	}
}
