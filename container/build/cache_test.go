package build

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/layer"
)

// cachedSteps returns, for each step of the last build, whether it was a
// cache hit, from the Progress events.
func (e *env) steps(dir, df string, opts Options) []bool {
	e.t.Helper()
	var hits []bool
	opts.Progress = func(ev Event) {
		if ev.Kind == StepDone {
			for len(hits) < ev.Step {
				hits = append(hits, false)
			}
			hits[ev.Step-1] = ev.Cached
		}
	}
	e.mustBuild(dir, df, opts)
	return hits
}

func TestCacheRules(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"a": "a\n", "big": "big file\n", "d/x": "x\n"})
	df := `FROM BUSYBOX
ARG V=1
COPY a /a
RUN echo run-$V > /r
COPY d /d
ENV E=1
RUN cat /a /r > /both
`
	check := func(what string, opts Options, want ...bool) {
		t.Helper()
		got := e.steps(dir, df, opts)
		if len(got) != len(want) {
			t.Fatalf("%s: %d steps, want %d", what, len(got), len(want))
		}
		for i := range want {
			if got[i] != want[i] {
				t.Errorf("%s: step %d cached=%v, want %v (all: %v)", what, i+1, got[i], want[i], got)
			}
		}
	}
	check("first build", Options{}, true, false, false, false, false, false, false)
	check("rebuild", Options{}, true, true, true, true, true, true, true)

	// Touched but unchanged: a hit, and the file is read once to learn
	// that (its ctime changed); after that it is only stat'ed.
	now := time.Now().Add(time.Minute)
	os.Chtimes(filepath.Join(dir, "a"), now, now)
	reads := hashReads.Load()
	check("touched", Options{}, true, true, true, true, true, true, true)
	if n := hashReads.Load() - reads; n != 1 {
		t.Errorf("touched file: %d files read, want 1", n)
	}
	reads = hashReads.Load()
	check("rebuild after touch", Options{}, true, true, true, true, true, true, true)
	if n := hashReads.Load() - reads; n != 0 {
		t.Errorf("unchanged context: %d files read, want 0", n)
	}

	// A changed file: its COPY and every later step rebuild.
	os.WriteFile(filepath.Join(dir, "d/x"), []byte("changed\n"), 0o644)
	check("changed file", Options{}, true, true, true, true, false, false, false)
	// A changed mode.
	os.Chmod(filepath.Join(dir, "a"), 0o600)
	check("changed mode", Options{}, true, true, false, false, false, false, false)
	// A changed build arg: the RUN that has it in scope misses.
	check("changed arg", Options{BuildArgs: map[string]string{"V": "2"}}, true, true, true, false, false, false, false)
	check("changed arg again", Options{BuildArgs: map[string]string{"V": "2"}}, true, true, true, true, true, true, true)
	// A changed instruction.
	df2 := df + "LABEL x=y\n"
	if got := e.steps(dir, df2, Options{}); !got[6] || got[7] {
		t.Errorf("appended LABEL: %v", got)
	}
	// NoCache: nothing is a hit.
	check("no cache", Options{NoCache: true}, false, false, false, false, false, false, false)

	// The cache survives a restart: a new store on the root, a new builder.
	e.store.Close()
	st, err := layer.Open(filepath.Join(e.root, "store"))
	if err != nil {
		t.Fatal(err)
	}
	e.store = st
	e.rt.Images = st
	e.b = &Builder{Store: st, Runtime: e.rt}
	reads = hashReads.Load()
	check("after restart", Options{}, true, true, true, true, true, true, true)
	if n := hashReads.Load() - reads; n != 0 {
		t.Errorf("after restart: %d files read, want 0 (hashes remembered on disk)", n)
	}
	e.checkClean()
}

func TestCacheAndGC(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"a": "a\n"})
	df := "FROM BUSYBOX\nCOPY a /a\nRUN echo x > /x\n"
	e.mustBuild(dir, df, Options{Tags: []string{"example.com/gc:1"}})
	if err := e.store.Content.Untag(e.ctx, "example.com/gc:1"); err != nil {
		t.Fatal(err)
	}
	// GC keeps what the cache needs.
	if _, err := e.store.GC(e.ctx); err != nil {
		t.Fatal(err)
	}
	if got := e.steps(dir, df, Options{Tags: []string{"example.com/gc:1"}}); !got[1] || !got[2] {
		t.Errorf("after GC: %v, want hits", got)
	}
	if out, _ := e.run("example.com/gc:1", "cat", "/a", "/x"); out != "a\nx\n" {
		t.Errorf("run %q", out)
	}
	e.store.Content.Untag(e.ctx, "example.com/gc:1")
	// Pruned, the cache lets GC take everything but the base image.
	n, err := PruneCache(e.ctx, e.store)
	if err != nil || n == 0 {
		t.Fatalf("PruneCache: %d, %v", n, err)
	}
	st, err := e.store.GC(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Snapshots) != 2 {
		t.Errorf("GC after prune removed snapshots %q, want the two built layers", st.Snapshots)
	}
	if got := e.steps(dir, df, Options{}); got[1] || got[2] {
		t.Errorf("after prune: %v, want misses", got)
	}
	e.checkClean()
}

// Builds of the same Dockerfile at once, on one store, all succeed: the
// layers they make alike are shared.
func TestConcurrentBuilds(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"a": "a\n", "d/b": "b\n"})
	df := "FROM BUSYBOX\nCOPY a /a\nCOPY d /d/\nRUN cat /a /d/b > /ab\nCMD [\"cat\", \"/ab\"]\n"
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			_, out, err := e.build(dir, df, Options{Tags: []string{fmt.Sprintf("example.com/conc:%d", i)}})
			if err != nil {
				err = fmt.Errorf("%w\n%s", err, out)
			}
			errs <- err
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	for i := range 3 {
		if got, _ := e.run(fmt.Sprintf("example.com/conc:%d", i)); got != "a\nb\n" {
			t.Errorf("image %d: %q", i, got)
		}
	}
	e.checkClean()
}

// The predefined proxy arguments reach RUN without an ARG, and stay out
// of the history and the cache key.
func TestProxyArgs(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(nil)
	df := "FROM BUSYBOX\nRUN echo \"proxy=$HTTP_PROXY\" > /p\nCMD [\"cat\", \"/p\"]\n"
	res, _, err := e.build(dir, df, Options{Tags: []string{"example.com/proxy:1"}, BuildArgs: map[string]string{"HTTP_PROXY": "http://127.0.0.1:3128"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := e.run("example.com/proxy:1"); got != "proxy=http://127.0.0.1:3128\n" {
		t.Errorf("run %q", got)
	}
	for _, h := range res.Image.History {
		if strings.Contains(h.CreatedBy, "3128") {
			t.Errorf("proxy in the history: %q", h.CreatedBy)
		}
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %q", res.Warnings)
	}
	if got := e.steps(dir, df, Options{BuildArgs: map[string]string{"HTTP_PROXY": "http://127.0.0.1:3129"}}); !got[1] {
		t.Errorf("another proxy missed the cache: %v", got)
	}
}
