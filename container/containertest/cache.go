package containertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/atomicfile"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/registry"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// CacheEnv is the environment variable that sets the cache directory.
const CacheEnv = "BERTH_CACHE"

// CacheDir returns the directory where sandboxes' images are kept, one
// per machine for every test binary: $BERTH_CACHE when set, else
// /var/cache/berth when running as root, else $XDG_CACHE_HOME/berth
// (os.UserCacheDir). The layer store is its "store" directory, volumes
// (NewVolume) its "volumes"; images built by scripts/images.sh are in its
// "images" directory.
func CacheDir() (string, error) {
	if d := os.Getenv(CacheEnv); d != "" {
		return filepath.Abs(d)
	}
	if os.Geteuid() == 0 {
		return "/var/cache/berth", nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("containertest: no cache directory (set %s): %w", CacheEnv, err)
	}
	return filepath.Join(d, "berth"), nil
}

// cache is one cache directory's store and the runtime whose
// containers come from it.
type cache struct {
	dir   string
	store *layer.Store
	rt    *container.Runtime
}

var discard = slog.New(slog.DiscardHandler)

var caches struct {
	sync.Mutex
	byDir map[string]*cache
}

// Store returns the layer store in CacheDir, opened once per process and
// shared by every sandbox of the process. Other processes (the other test
// binaries of `go test ./...`) open the same store at the same time: an
// image is pulled and unpacked once per machine. The store stays open
// until the process exits.
func Store() (*layer.Store, error) {
	c, err := cacheFor()
	if err != nil {
		return nil, err
	}
	return c.store, nil
}

func cacheFor() (*cache, error) {
	dir, err := CacheDir()
	if err != nil {
		return nil, err
	}
	caches.Lock()
	defer caches.Unlock()
	if c := caches.byDir[dir]; c != nil {
		return c, nil
	}
	if err := checkWritable(dir); err != nil {
		return nil, err
	}
	st, err := layer.Open(filepath.Join(dir, "store"))
	if err != nil {
		return nil, fmt.Errorf("containertest: open the image cache: %w", err)
	}
	if caches.byDir == nil {
		caches.byDir = map[string]*cache{}
	}
	c := &cache{dir: dir, store: st, rt: &container.Runtime{Images: st, CgroupParent: cgroupParent, Logger: discard,
		VolumeRoot: filepath.Join(dir, "volumes")}}
	c.sweep(context.Background(), dir, false) // layer.Open swept the snapshots
	caches.byDir[dir] = c
	return c, nil
}

// checkWritable makes dir if needed and checks that files can be made in
// it, so that a cache that cannot be used says so and how to change it.
func checkWritable(dir string) error {
	fail := func(err error) error {
		return fmt.Errorf("containertest: cache directory %s is not usable (set %s to another): %w", dir, CacheEnv, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	f, err := os.CreateTemp(dir, ".probe-")
	if err != nil {
		return fail(err)
	}
	f.Close()
	return os.Remove(f.Name())
}

// resolveImage returns the name in the store of the image that image
// names (see Run), bringing it into the store first when it is not
// there.
func resolveImage(ctx context.Context, st *layer.Store, image string, pull []registry.Option) (string, error) {
	switch {
	case image == "":
		return "", fmt.Errorf("containertest: no image given")
	case strings.HasPrefix(image, "docker-archive:"):
		return loadArchive(ctx, st, strings.TrimPrefix(image, "docker-archive:"))
	}
	ref, err := content.ParseReference(image)
	if err != nil {
		return "", fmt.Errorf("containertest: image %q: %w", image, err)
	}
	name := ref.String()
	if _, err := st.Content.Resolve(ctx, name); err == nil {
		return name, nil
	} else if !errors.Is(err, content.ErrNotFound) {
		return "", fmt.Errorf("containertest: image %s: %w", name, err)
	}
	opts := pull
	if host := ref.Domain; isLoopbackHost(host) {
		// Registries a test runs on loopback speak plain HTTP, as Docker
		// assumes for localhost.
		opts = append([]registry.Option{registry.WithPlainHTTP(host)}, pull...)
	}
	res, err := registry.New().Pull(ctx, name, st, opts...)
	if err != nil {
		return "", fmt.Errorf("containertest: %w", err)
	}
	pulls.add(res.FetchedBytes)
	return res.Name, nil
}

// isLoopbackHost reports whether a registry host (with its port) is this
// machine's loopback.
func isLoopbackHost(host string) bool {
	h, _, err := net.SplitHostPort(host)
	if err != nil {
		h = host
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}

// downloads counts what this process downloaded for sandboxes.
type downloads struct {
	sync.Mutex
	bytes int64
}

func (d *downloads) add(n int64) {
	d.Lock()
	d.bytes += n
	d.Unlock()
}

var pulls downloads

// DownloadedBytes returns how many bytes of image blobs this process has
// downloaded from registries for sandboxes: 0 when every image came
// from the cache.
func DownloadedBytes() int64 {
	pulls.Lock()
	defer pulls.Unlock()
	return pulls.bytes
}

// loadArchive loads a `docker save` archive into the store once per
// machine and returns the name of its (first) image. A stamp file in the
// cache, named for the archive's path, size and modification time, holds
// the names; a changed archive is loaded again.
func loadArchive(ctx context.Context, st *layer.Store, path string) (string, error) {
	fail := func(err error) (string, error) {
		return "", fmt.Errorf("containertest: image archive %s: %w", path, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return fail(err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return fail(err)
	}
	if !fi.Mode().IsRegular() {
		return fail(fmt.Errorf("not a regular file"))
	}
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(fmt.Appendf(nil, "%s\x00%d\x00%d", abs, fi.Size(), fi.ModTime().UnixNano()))
	stamps := filepath.Join(dir, "archives")
	if err := os.MkdirAll(stamps, 0o755); err != nil {
		return fail(err)
	}
	stamp := filepath.Join(stamps, hex.EncodeToString(sum[:16]))
	lock, err := os.OpenFile(stamp+".lock", os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fail(err)
	}
	defer lock.Close()
	// Another process loading the same archive: wait for it, then use
	// what it loaded.
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fail(err)
	}
	if b, err := os.ReadFile(stamp); err == nil {
		var names []string
		if json.Unmarshal(b, &names) == nil && len(names) > 0 && allResolve(ctx, st, names) {
			return names[0], nil
		}
	}
	f, err := os.Open(abs)
	if err != nil {
		return fail(err)
	}
	defer f.Close()
	imgs, err := st.Content.Load(ctx, f)
	if err != nil {
		return fail(err)
	}
	var names []string
	for _, img := range imgs {
		if img.Name != "" {
			names = append(names, img.Name)
		}
	}
	if len(names) == 0 {
		return fail(fmt.Errorf("the archive names no image (docker save NAME:TAG)"))
	}
	b, _ := json.Marshal(names)
	if err := atomicfile.WriteFile(stamp, b); err != nil {
		return fail(err)
	}
	return names[0], nil
}

func allResolve(ctx context.Context, st *layer.Store, names []string) bool {
	for _, n := range names {
		if _, err := st.Content.Resolve(ctx, n); err != nil {
			return false
		}
	}
	return true
}

// busyboxRecipe changes when BusyboxImage would build a different image.
const busyboxRecipe = "busybox-rootfs-1"

// BusyboxImage returns the name of an image in the cache's store made of
// the host's static busybox (see BusyboxRootfs: /bin/sh, httpd, nc, ...
// and users root, app and nobody), building it the first time on this
// machine. Its default command is /bin/sh; it declares no ports. The name
// changes with the busybox binary, so an upgrade makes a new image.
func BusyboxImage(ctx context.Context) (string, error) {
	st, err := Store()
	if err != nil {
		return "", err
	}
	bb, err := busybox.Path()
	if err != nil {
		return "", err
	}
	f, err := os.Open(bb)
	if err != nil {
		return "", fmt.Errorf("containertest: %w", err)
	}
	h := sha256.New()
	io.WriteString(h, busyboxRecipe+"\x00")
	_, err = io.Copy(h, f)
	f.Close()
	if err != nil {
		return "", fmt.Errorf("containertest: %w", err)
	}
	name := "berth.test/busybox:" + hex.EncodeToString(h.Sum(nil))[:16]
	if _, err := st.Content.Resolve(ctx, name); err == nil {
		return name, nil
	}
	dir, err := busybox.TempRootfs()
	if err != nil {
		return "", fmt.Errorf("containertest: busybox image: %w", err)
	}
	defer os.RemoveAll(dir)
	// Processes importing at once each store the same blobs; the tag
	// names identical content whichever wins.
	cfg := ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}
	if _, err := st.ImportDirs(ctx, name, cfg, dir); err != nil {
		return "", fmt.Errorf("containertest: busybox image: %w", err)
	}
	return name, nil
}
