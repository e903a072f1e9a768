package container

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// layerNames lists the entries of a gzip-compressed layer blob.
func layerNames(t *testing.T, s *layer.Store, desc ocispec.Descriptor) []string {
	t.Helper()
	f, err := s.Content.Open(context.Background(), desc.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
	}
}

func TestCommit(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	store, rootfs := newImageStore(t)
	importImage(t, store, "example.com/app:v1", ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, rootfs)
	rt := &Runtime{Images: store}

	runImage := func(spec *Spec) (*Container, *syncBuffer) {
		t.Helper()
		return startIn(t, rt, spec)
	}

	// A stopped container: docker commit after the fact.
	c, _ := runImage(&Spec{Image: "example.com/app:v1", Process: sh("mkdir /data && echo new > /data/new && echo changed > /etc/motd && rm /bin/vi")})
	if st, err := c.Wait(ctx); err != nil || !st.Success() {
		c.Delete(ctx)
		t.Fatalf("writer: %v %v", st, err)
	}
	desc, err := c.Commit(ctx, "example.com/app:v2", layer.CommitOptions{Cmd: []string{"sh", "-c", "cat /data/new /etc/motd; ls /bin/vi"}})
	c.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := store.Content.Manifest(ctx, desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("committed layer: %q", layerNames(t, store, m.Layers[len(m.Layers)-1]))
	// Only what changed: not the hundreds of busybox applets.
	names := layerNames(t, store, m.Layers[len(m.Layers)-1])
	for _, want := range []string{"data/new", "etc/motd", "bin/.wh.vi"} {
		if !slices.Contains(names, want) {
			t.Errorf("committed layer lacks %s: %q", want, names)
		}
	}
	if len(names) > 8 {
		t.Errorf("committed layer has %d entries, want only the changes: %q", len(names), names)
	}

	// v2 runs with the changes and the new CMD.
	c, out := runImage(&Spec{Image: "example.com/app:v2"})
	st, err := c.Wait(ctx)
	c.Delete(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := out.String(); st.Success() || !strings.HasPrefix(got, "new\nchanged\n") || !strings.Contains(got, "No such file") {
		t.Errorf("v2: %v %q; want the new file, the change, and no /bin/vi", st, got)
	}

	// A running container is paused for the commit and runs on after it.
	c, _ = runImage(&Spec{Image: "example.com/app:v2", Process: sh("echo live > /live; sleep 100")})
	defer c.Delete(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		// Wait for the write: Exec is not needed, the upper layer shows it.
		d, err := c.Commit(ctx, "", layer.CommitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		m, _, err := store.Content.Manifest(ctx, d, nil)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(layerNames(t, store, m.Layers[len(m.Layers)-1]), "live") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the running container's write never showed in a commit")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s := c.State(); s != Running {
		t.Errorf("state after committing a running container: %s", s)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}

	// Containers not made from an image cannot be committed.
	plain, err := rt.Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: sh("true")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = plain.Commit(ctx, "example.com/app:v3", layer.CommitOptions{})
	plain.Delete(ctx)
	if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "not created from an image") {
		t.Errorf("commit of a rootfs container: %v", err)
	}
	if _, err := plain.Commit(ctx, "", layer.CommitOptions{}); !errors.Is(err, ErrDeleted) {
		t.Errorf("commit of a deleted container: %v", err)
	}
	store.Close()
	checkNoLeaks(t, before)
}
