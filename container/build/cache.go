package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/atomicfile"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/berthlabs/berth/layer"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// CacheRootPrefix starts the names of the layer store roots
// (layer.Store.SetRoot) that hold the build cache: one root per cached
// step, naming the image state after it.
const CacheRootPrefix = "build-cache-"

// PruneCache removes the whole build cache from store, like `docker
// builder prune -a`, and returns how many entries it removed. The layers
// and blobs only the cache kept go at the next layer.Store.GC.
func PruneCache(ctx context.Context, store *layer.Store) (int, error) {
	names, err := store.Roots(ctx, CacheRootPrefix)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		if err := store.RemoveRoot(ctx, name); err != nil {
			return n, err
		}
		n++
	}
	return n, nil
}

// state is a stage's image so far.
type state struct {
	img     dockerspec.DockerOCIImage
	layers  []ocispec.Descriptor
	chainID string
	// id is the cache identity of the state (its manifest's digest, or
	// the base image's); "" when it is not cached.
	id string
}

// clone returns a deep copy of s's slices and maps.
func (s state) clone() state {
	c := s
	c.layers = slices.Clone(s.layers)
	img := &c.img
	img.RootFS.DiffIDs = slices.Clone(s.img.RootFS.DiffIDs)
	img.History = slices.Clone(s.img.History)
	cfg := &img.Config
	cfg.Env = slices.Clone(cfg.Env)
	cfg.Cmd = slices.Clone(cfg.Cmd)
	cfg.Entrypoint = slices.Clone(cfg.Entrypoint)
	cfg.Shell = slices.Clone(cfg.Shell)
	cfg.OnBuild = slices.Clone(cfg.OnBuild)
	cfg.Labels = maps.Clone(cfg.Labels)
	cfg.ExposedPorts = maps.Clone(cfg.ExposedPorts)
	cfg.Volumes = maps.Clone(cfg.Volumes)
	if cfg.Healthcheck != nil {
		h := *cfg.Healthcheck
		h.Test = slices.Clone(h.Test)
		cfg.Healthcheck = &h
	}
	return c
}

// store writes s as an image, tagged with the first of tags and then the
// others.
func (s *state) store(ctx context.Context, st *layer.Store, tags []string) (ocispec.Descriptor, error) {
	b, err := json.Marshal(s.img)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	name := ""
	if len(tags) > 0 {
		name = tags[0]
	}
	desc, err := st.PutImage(ctx, name, b, s.layers)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	for _, t := range tags[min(1, len(tags)):] {
		if err := st.Content.Tag(ctx, t, desc); err != nil {
			return ocispec.Descriptor{}, err
		}
	}
	return desc, nil
}

// loadState reads the image state that the manifest desc holds and makes
// sure its layers are unpacked.
func loadState(ctx context.Context, st *layer.Store, desc ocispec.Descriptor) (state, error) {
	m, _, err := st.Content.Manifest(ctx, desc, nil)
	if err != nil {
		return state{}, err
	}
	img, err := readConfig(ctx, st, m.Config.Digest)
	if err != nil {
		return state{}, err
	}
	if len(img.RootFS.DiffIDs) != len(m.Layers) {
		return state{}, fmt.Errorf("image %s: %d layers but %d diff IDs", desc.Digest, len(m.Layers), len(img.RootFS.DiffIDs))
	}
	s := state{img: img, layers: m.Layers, id: desc.Digest.String()}
	if len(m.Layers) == 0 {
		return s, nil
	}
	top := layer.ChainIDs(img.RootFS.DiffIDs)[len(m.Layers)-1].String()
	if _, err := st.Snapshots.Stat(ctx, top); err == nil {
		// A committed snapshot's parents stay while it does.
		s.chainID = top
		return s, nil
	}
	parent := ""
	for i, l := range m.Layers {
		parent, err = st.UnpackLayer(ctx, parent, l, img.RootFS.DiffIDs[i], nil)
		if err != nil {
			return state{}, err
		}
	}
	s.chainID = parent
	return s, nil
}

// readConfig reads an image config blob as Docker's configuration.
func readConfig(ctx context.Context, st *layer.Store, d digest.Digest) (dockerspec.DockerOCIImage, error) {
	var img dockerspec.DockerOCIImage
	r, err := st.Content.Open(ctx, d)
	if err != nil {
		return img, err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil {
		return img, err
	}
	if err := json.Unmarshal(b, &img); err != nil {
		return img, fmt.Errorf("config %s: %w", d, err)
	}
	return img, nil
}

// cacheKey is the cache key of a step on parent: its instruction and what
// else it depends on.
func cacheKey(parent string, parts ...string) string {
	h := sha256.New()
	fmt.Fprintf(h, "berth-build-cache-v1\x00%s", parent)
	for _, p := range parts {
		fmt.Fprintf(h, "\x00%d:%s", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// cacheGet returns the state the cache has for key.
func (j *job) cacheGet(ctx context.Context, key string) (state, bool) {
	desc, err := j.b.Store.GetRoot(ctx, CacheRootPrefix+key)
	if err != nil {
		return state{}, false
	}
	s, err := loadState(ctx, j.b.Store, desc)
	if err != nil {
		// A broken entry is a miss; the step overwrites it.
		j.b.logger().Debug("build: cache entry unusable", "key", key, "err", err)
		return state{}, false
	}
	return s, true
}

// cachePut records s as what key gives, and sets its id.
func (j *job) cachePut(ctx context.Context, key string, s *state) error {
	desc, err := s.store(ctx, j.b.Store, nil)
	if err != nil {
		return err
	}
	if err := j.b.Store.SetRoot(ctx, CacheRootPrefix+key, desc); err != nil {
		return err
	}
	s.id = desc.Digest.String()
	return nil
}

// hashReads counts the context files read to hash them (for tests).
var hashReads atomic.Int64

// fileHash is a file's content hash and the metadata it was computed at.
type fileHash struct {
	Ino, Size, Mtime, Ctime int64
	Sum                     string
}

// hashCache remembers the content hashes of context files, keyed by their
// path, valid while (inode, size, mtime, ctime) stay the same.
type hashCache struct {
	mu      sync.Mutex
	m       map[string]fileHash
	loaded  map[string]bool // context dirs loaded from disk
	changed bool
}

func newHashCache() *hashCache {
	return &hashCache{m: map[string]fileHash{}, loaded: map[string]bool{}}
}

func hashFile(st *layer.Store, dir string) string {
	h := sha256.Sum256([]byte(dir))
	return filepath.Join(st.Root(), "build", "hashes-"+hex.EncodeToString(h[:8])+".json")
}

// load reads what an earlier process remembered for the context dir.
func (c *hashCache) load(st *layer.Store, dir string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.loaded[dir] {
		return nil
	}
	c.loaded[dir] = true
	b, err := os.ReadFile(hashFile(st, dir))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var m map[string]fileHash
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		if _, ok := c.m[k]; !ok {
			c.m[k] = v
		}
	}
	return nil
}

// save writes the hashes of the files under dir for the next process.
func (c *hashCache) save(st *layer.Store, dir string) error {
	c.mu.Lock()
	if !c.changed {
		c.mu.Unlock()
		return nil
	}
	m := map[string]fileHash{}
	prefix := dir + string(filepath.Separator)
	for k, v := range c.m {
		if len(k) > len(prefix) && k[:len(prefix)] == prefix {
			m[k] = v
		}
	}
	c.changed = false
	c.mu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	p := hashFile(st, dir)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return atomicfile.WriteFile(p, b)
}

// sum returns the SHA-256 of the regular file path with metadata fi,
// reading it only when the remembered hash is stale.
func (c *hashCache) sum(path string, fi os.FileInfo, remember bool) (string, error) {
	sys, _ := fi.Sys().(*syscall.Stat_t)
	var key fileHash
	if sys != nil {
		key = fileHash{Ino: int64(sys.Ino), Size: sys.Size, Mtime: sys.Mtim.Nano(), Ctime: sys.Ctim.Nano()}
	}
	if remember && sys != nil {
		c.mu.Lock()
		h, ok := c.m[path]
		c.mu.Unlock()
		if ok && h.Ino == key.Ino && h.Size == key.Size && h.Mtime == key.Mtime && h.Ctime == key.Ctime {
			return h.Sum, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if remember {
		hashReads.Add(1)
	}
	hh := sha256.New()
	if _, err := io.Copy(hh, f); err != nil {
		return "", err
	}
	sum := hex.EncodeToString(hh.Sum(nil))
	if remember && sys != nil {
		key.Sum = sum
		c.mu.Lock()
		c.m[path] = key
		c.changed = true
		c.mu.Unlock()
	}
	return sum, nil
}
