package build

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// scratch holds every temporary directory of this test binary (TMPDIR
// points into it), so leak checks see only this package's mounts.
var (
	scratch     string
	busyboxRoot string
)

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "berth-build-test-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		os.Chmod(dir, 0o755)
		scratch = dir
		os.Setenv("TMPDIR", dir)
		if os.Geteuid() == 0 {
			if d, err := busybox.TempRootfs(); err == nil {
				busyboxRoot = d
				defer os.RemoveAll(d)
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds run containers and mount snapshots")
	}
	if busyboxRoot == "" {
		t.Skip("needs a static busybox (apt-get install busybox-static)")
	}
}

const busyboxName = "example.com/busybox:1"

// env is a store with a busybox image and a builder on it.
type env struct {
	t     *testing.T
	ctx   context.Context
	root  string
	store *layer.Store
	b     *Builder
	rt    *container.Runtime
}

func newEnv(t *testing.T) *env {
	t.Helper()
	needRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	root := t.TempDir()
	st, err := layer.Open(filepath.Join(root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	cfg := ocispec.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/bin"}}
	if _, err := st.ImportDirs(ctx, busyboxName, cfg, busyboxRoot); err != nil {
		t.Fatal(err)
	}
	rt := &container.Runtime{Images: st}
	return &env{t: t, ctx: ctx, root: root, store: st, b: &Builder{Store: st, Runtime: rt}, rt: rt}
}

// dir writes files (name -> content; a name ending in "/" is a
// directory) into a new context directory.
func (e *env) dir(files map[string]string) string {
	e.t.Helper()
	d, err := os.MkdirTemp(e.root, "ctx-")
	if err != nil {
		e.t.Fatal(err)
	}
	for name, c := range files {
		p := filepath.Join(d, name)
		if strings.HasSuffix(name, "/") {
			if err := os.MkdirAll(p, 0o755); err != nil {
				e.t.Fatal(err)
			}
			continue
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	return d
}

// build builds the Dockerfile df in context dir.
func (e *env) build(dir, df string, opts Options) (*Result, string, error) {
	e.t.Helper()
	var out syncBuf
	opts.ContextDir = dir
	opts.DockerfileContent = []byte(strings.ReplaceAll(df, "BUSYBOX", busyboxName))
	opts.Output = &out
	res, err := e.b.Build(e.ctx, opts)
	return res, out.String(), err
}

func (e *env) mustBuild(dir, df string, opts Options) *Result {
	e.t.Helper()
	res, out, err := e.build(dir, df, opts)
	if err != nil {
		e.t.Fatalf("build: %v\noutput:\n%s", err, out)
	}
	return res
}

// run runs the image with args (nil: its own command) and returns its
// output and exit code.
func (e *env) run(image string, args ...string) (string, int) {
	e.t.Helper()
	var out syncBuf
	c, err := e.rt.Create(e.ctx, "t-"+randomID(), &container.Spec{Image: image, Process: container.Process{Args: args, Stdout: &out, Stderr: &out}})
	if err != nil {
		e.t.Fatal(err)
	}
	defer c.Delete(e.ctx)
	if err := c.Start(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	st, err := c.Wait(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return out.String(), st.Code
}

// checkClean fails when the store has active snapshots or views, or
// build mount points or mounts are left.
func (e *env) checkClean() {
	e.t.Helper()
	e.store.Snapshots.Walk(e.ctx, func(i snapshot.Info) error {
		if i.Kind != snapshot.KindCommitted {
			e.t.Errorf("left behind: %s snapshot %s", i.Kind, i.Name)
		}
		return nil
	})
	ents, _ := os.ReadDir(filepath.Join(e.root, "store", "mounts"))
	for _, d := range ents {
		e.t.Errorf("left behind: mount point %s", d.Name())
	}
	mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
	if bytes.Contains(mi, []byte(e.root)) {
		e.t.Errorf("left behind: mounts under %s", e.root)
	}
	if len(e.rt.List()) > 0 {
		e.t.Errorf("left behind: %d containers", len(e.rt.List()))
	}
	tmp, _ := os.ReadDir(scratch)
	for _, d := range tmp {
		if strings.HasPrefix(d.Name(), "berth-build-") || strings.HasPrefix(d.Name(), "berth-layer-") {
			e.t.Errorf("left behind: temporary %s", d.Name())
		}
	}
}

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// viewOf mounts a read-only view of a built image's file system.
func (b *Builder) viewOf(ctx context.Context, res *Result) (string, func(), error) {
	j := &job{b: b}
	s, err := loadState(ctx, b.Store, res.Descriptor)
	if err != nil {
		return "", nil, err
	}
	return j.view(ctx, s.chainID)
}
