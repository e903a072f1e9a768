package registry

import (
	"context"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/regtest"
	"github.com/berthlabs/berth/layer"
	digest "github.com/opencontainers/go-digest"
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

func openStore(t testing.TB) *layer.Store {
	t.Helper()
	s, err := layer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// fastRetry keeps fault tests quick.
var fastRetry = WithRetry(Retry{Attempts: 4, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond})

// testImage is a two-layer image pushed to r as repo:tag.
func testImage(t testing.TB, r *regtest.Registry, repo, tag string) *regtest.TestImage {
	t.Helper()
	img, err := regtest.NewTestImage(
		map[string]string{"etc/hello": "hello\n", "bin/tool": noise(300 << 10)},
		map[string]string{"etc/motd": "second layer " + repo + "\n"},
	)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushImage(testCtx(t), repo, tag, img); err != nil {
		t.Fatal(err)
	}
	return img
}

// checkClean fails when the store holds temporary blobs or half-unpacked
// snapshots, or any of the given blobs.
func checkClean(t testing.TB, s *layer.Store, absent ...string) {
	t.Helper()
	root := filepath.Dir(s.Content.Root())
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".tmp-") || strings.Contains(d.Name(), "extract-") {
			t.Errorf("leftover %s", p)
		}
		return nil
	})
	for _, a := range absent {
		if _, err := s.Content.Info(context.Background(), digest.Digest(a)); err == nil {
			t.Errorf("blob %s is in the store", a)
		}
	}
	if imgs, _ := s.Content.Images(context.Background()); len(imgs) != 0 {
		t.Errorf("store has images %v", imgs)
	}
}

// noise is n incompressible bytes, so that a gzip layer is about n long.
func noise(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return string(b)
}

func needRegistry(t testing.TB) {
	if _, err := os.Stat("/usr/bin/docker-registry"); err != nil {
		t.Skip("docker-registry is not installed (scripts/deps.sh installs it)")
	}
}
