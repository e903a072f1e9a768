package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// importImage stores the trees dirs as an image called name.
func importImage(t testing.TB, s *layer.Store, name string, cfg ocispec.ImageConfig, dirs ...string) {
	t.Helper()
	if _, err := s.ImportDirs(context.Background(), name, cfg, dirs...); err != nil {
		t.Fatal(err)
	}
}

// newImageStore opens a layer store in a temporary directory and builds a
// fresh busybox rootfs to import (testRootfs has other tests' files in
// /tmp). Both go when the test ends.
func newImageStore(t testing.TB) (*layer.Store, string) {
	t.Helper()
	store, err := layer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rootfs, err := busybox.TempRootfs()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(rootfs) })
	return store, rootfs
}

func TestRunFromImage(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	store, fresh := newImageStore(t)
	extra := t.TempDir()
	os.MkdirAll(filepath.Join(extra, "etc"), 0o755)
	os.WriteFile(filepath.Join(extra, "etc/motd"), []byte("second layer\n"), 0o644)
	importImage(t, store, "example.com/app:v1", ocispec.ImageConfig{
		Entrypoint: []string{"sh", "-c"},
		Cmd:        []string{`echo "$GREETING from $(pwd) as $(id -un): $(cat /etc/motd)"; touch /tmp/written`},
		Env:        []string{"GREETING=hi", "PATH=/bin"},
		WorkingDir: "/home/app",
		User:       "app",
	}, fresh, extra)
	importImage(t, store, "example.com/base:v1", ocispec.ImageConfig{Cmd: []string{"ls", "/tmp"}}, fresh)

	rt := &Runtime{Images: store}
	runImage := func(spec *Spec) (string, *ExitStatus) {
		t.Helper()
		c, out := startIn(t, rt, spec)
		st, err := c.Wait(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Snapshots.Stat(ctx, snapshotKey(c.ID())); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("snapshot of %s after Delete: %v", c.ID(), err)
		}
		return out.String(), st
	}
	// The image's ENTRYPOINT, CMD, Env, WorkingDir and User.
	out, st := runImage(&Spec{Image: "example.com/app:v1"})
	if !st.Success() || out != "hi from /home/app as app: second layer\n" {
		t.Errorf("default command: %v %q", st, out)
	}
	// Args replace CMD; the spec's env wins.
	out, _ = runImage(&Spec{Image: "example.com/app:v1", Process: Process{Args: []string{"echo $GREETING; ls /tmp"}, Env: []string{"GREETING=hello"}}})
	if out != "hello\n" {
		t.Errorf("args override: %q (a container's writes must not reach the image)", out)
	}
	// --entrypoint drops CMD.
	out, _ = runImage(&Spec{Image: "example.com/app:v1", Entrypoint: []string{"id"}, Process: Process{User: "root"}})
	if !strings.HasPrefix(out, "uid=0(root)") {
		t.Errorf("entrypoint override: %q", out)
	}
	// An image sharing the base layer reuses its snapshot.
	out, st = runImage(&Spec{Image: "example.com/base:v1"})
	if !st.Success() || out != "" {
		t.Errorf("base image: %v %q", st, out)
	}
	// Bad input.
	for _, tc := range []struct {
		rt   *Runtime
		spec Spec
		want string
	}{
		{rt, Spec{Image: "example.com/missing:v1"}, "missing"},
		{rt, Spec{Image: "example.com/app:v1", Rootfs: testRootfs}, "either Rootfs or Image"},
		{&Runtime{}, Spec{Image: "example.com/app:v1"}, "no layer store"},
	} {
		if _, err := tc.rt.Create(ctx, testID(t), &tc.spec); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want ErrInvalidSpec mentioning %q", tc.spec, err, tc.want)
		}
	}
	n := 0
	store.Snapshots.Walk(ctx, func(snapshot.Info) error { n++; return nil })
	if n != 2 {
		t.Errorf("%d snapshots for two images sharing a base layer, want 2", n)
	}
	store.Close()
	checkNoLeaks(t, before)
}

// An image container on the image the one before it ran gets its root
// filesystem mounted ahead by the snapshot store, and init moves that
// mount into place: the container sees the image, writes to its own
// snapshot (not the image), and nothing is left behind. A container
// from another image mounts its own.
func TestImageDetachedRootfs(t *testing.T) {
	needRoot(t)
	for _, pool := range []int{0, 2} {
		t.Run(fmt.Sprintf("pool%d", pool), func(t *testing.T) { imageDetachedRootfs(t, pool) })
	}
}

func imageDetachedRootfs(t *testing.T, pool int) {
	ctx := testCtx(t)
	before := takeSnapshot(t)
	store, fresh := newImageStore(t)
	importImage(t, store, "example.com/ahead:v1", ocispec.ImageConfig{Cmd: []string{"sh", "-c", "cat /etc/os; test -e /written && echo leaked; echo w > /written; grep -c spare /proc/self/mountinfo || true"}}, fresh, osRelease(t, "ahead"))
	importImage(t, store, "example.com/other:v1", ocispec.ImageConfig{Cmd: []string{"sh", "-c", "cat /etc/os; grep -c spare /proc/self/mountinfo || true"}}, fresh, osRelease(t, "other"))
	rt := &Runtime{Images: store, InitPool: pool}
	if _, ok := store.Snapshots.(*snapshot.Overlay); !ok {
		t.Skip("the store is not on overlayfs")
	}
	runOnce := func(image string) (string, bool) {
		t.Helper()
		c, err := rt.Create(ctx, testID(t), &Spec{Image: image})
		if err != nil {
			t.Fatal(err)
		}
		ahead := c.rootfsMnt != nil
		var out syncBuffer
		c.spec.Process.Stdout, c.spec.Process.Stderr = &out, &out
		if err := c.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if st, err := c.Wait(ctx); err != nil || !st.Success() {
			t.Fatalf("%s: %v %v: %s", image, st, err, out.String())
		}
		if err := c.Delete(ctx); err != nil {
			t.Fatal(err)
		}
		return out.String(), ahead
	}
	out, _ := runOnce("example.com/ahead:v1") // makes it the image mounted ahead
	if out != "ahead\n0\n" {
		t.Errorf("first run: %q", out)
	}
	// The spares are mounted on it in the background.
	var got bool
	for deadline := time.Now().Add(10 * time.Second); !got && time.Now().Before(deadline); {
		var ahead bool
		out, ahead = runOnce("example.com/ahead:v1")
		if ahead {
			got = true
			// The mount made ahead shows the spare's old name in its
			// options: this is the mount init moved.
			if out != "ahead\n1\n" {
				t.Errorf("run with the mount made ahead: %q", out)
			}
		}
	}
	if !got {
		t.Fatal("no container got its root filesystem mounted ahead in 10s")
	}
	// The image itself is unchanged: no run saw another's /written.
	out, _ = runOnce("example.com/ahead:v1")
	if !strings.HasPrefix(out, "ahead\n") || strings.Contains(out, "leaked") {
		t.Errorf("a later run: %q", out)
	}
	// Another image: mounted by init.
	out, ahead := runOnce("example.com/other:v1")
	if ahead || out != "other\n0\n" {
		t.Errorf("other image: ahead %v, %q", ahead, out)
	}
	rt.Close()
	store.Close()
	checkNoLeaks(t, before)
}

// osRelease makes a layer directory holding /etc/os with name in it.
func osRelease(t *testing.T, name string) string {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/os"), []byte(name+"\n"), 0o644)
	return dir
}
