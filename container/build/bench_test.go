package build

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BenchmarkBuild times a tiny Dockerfile (COPY, RUN, ENV, CMD) built
// without the cache and fully cached, in-process on one Builder. See
// bench/build.sh for berth beside buildah.
func BenchmarkBuild(b *testing.B) {
	needRoot(b)
	ctx := context.Background()
	root := b.TempDir()
	st, err := layer.Open(filepath.Join(root, "store"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	if _, err := st.ImportDirs(ctx, busyboxName, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, busyboxRoot); err != nil {
		b.Fatal(err)
	}
	dir := filepath.Join(root, "ctx")
	os.Mkdir(dir, 0o755)
	os.WriteFile(filepath.Join(dir, "hello.txt"), []byte("hello\n"), 0o644)
	df := []byte("FROM " + busyboxName + "\nCOPY hello.txt /hello.txt\nRUN echo built > /built\nENV GREETING=hello\nCMD [\"cat\", \"/hello.txt\"]\n")
	bl := &Builder{Store: st, Runtime: &container.Runtime{Images: st}}
	opts := Options{ContextDir: dir, DockerfileContent: df, Tags: []string{"example.com/bench:1"}}
	for _, bc := range []struct {
		name    string
		noCache bool
	}{{"cold", true}, {"cached", false}} {
		b.Run(bc.name, func(b *testing.B) {
			o := opts
			o.NoCache = bc.noCache
			if _, err := bl.Build(ctx, o); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := bl.Build(ctx, o); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
