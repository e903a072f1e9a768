package registry

import ocispec "github.com/opencontainers/image-spec/specs-go/v1"

func imageConfig() ocispec.ImageConfig {
	return ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}
}
