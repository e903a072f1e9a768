package layer

import (
	"context"
	"errors"
	"fmt"
	"github.com/berthlabs/berth/internal/owner"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"
	"time"

	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestChainIDs(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	got := ChainIDs([]digest.Digest{a, b})
	if got[0] != a || got[1] != digest.FromString(a.String()+" "+b.String()) {
		t.Errorf("chain IDs %v", got)
	}
}

// A process that died mid-unpack leaves an extract- snapshot, one that
// died mid-commit a commit-base- view, and one that died while running a
// container its root filesystem, all labelled with their owner; the next
// Open removes them and keeps everything else, live owners' included.
func TestOpenCleansHalfUnpackedLayers(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for overlay mounts")
	}
	ctx := context.Background()
	root := t.TempDir()
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	dead := snapshot.WithLabels(map[string]string{LabelOwner: deadOwner(t)})
	if _, err := s.Snapshots.Prepare(ctx, extractPrefix+"dead-sha256:x", "", dead); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Prepare(ctx, "base", ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Snapshots.Commit(ctx, "sha256:base", "base"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.View(ctx, viewPrefix+"dead-sha256:base", "sha256:base", dead); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Prepare(ctx, "container-dead", "sha256:base", dead); err != nil {
		t.Fatal(err)
	}
	if _, err := s.MountPoint("container-dead"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Prepare(ctx, "container-keep", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Prepare(ctx, "container-live", "", WithOwner()); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(root); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	s.Snapshots.Walk(ctx, func(i snapshot.Info) error { names = append(names, i.Name); return nil })
	if !slices.Equal(names, []string{"container-keep", "container-live", "sha256:base"}) {
		t.Errorf("snapshots after reopening: %v, want container-keep, container-live and sha256:base", names)
	}
	if _, err := os.Stat(filepath.Join(root, "mounts", "container-dead")); !os.IsNotExist(err) {
		t.Errorf("mount point of a dead owner's snapshot: %v", err)
	}
}

// deadOwner returns an owner token (LabelOwner) of no live process: this
// process's PID with another start time, as after the PID was reused.
func deadOwner(t testing.TB) string {
	pid, start, ok := owner.Parse(owner.Self())
	if !ok {
		t.Fatalf("owner token %q", owner.Self())
	}
	return fmt.Sprintf("%d-%d", pid, start+1)
}

// UnpackLayer from a reader keeps a layer only when its content matches
// the diff ID, and does not read the reader when the chain is there.
func TestUnpackLayerFromReader(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("a\n"), 0o644)
	other := t.TempDir()
	os.WriteFile(filepath.Join(other, "b"), []byte("b\n"), 0o644)
	desc, err := s.ImportDirs(ctx, "example.com/x:v1", ocispec.ImageConfig{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	wrongDesc, err := s.ImportDirs(ctx, "example.com/y:v1", ocispec.ImageConfig{}, other)
	if err != nil {
		t.Fatal(err)
	}
	m, cfg, err := s.Content.Manifest(ctx, desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	wm, _, err := s.Content.Manifest(ctx, wrongDesc, nil)
	if err != nil {
		t.Fatal(err)
	}
	open := func(d digest.Digest) io.Reader {
		f, err := s.Content.Open(ctx, d)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	l, diffID := m.Layers[0], cfg.RootFS.DiffIDs[0]
	// Another layer's bytes: refused, nothing kept.
	if _, err := s.UnpackLayer(ctx, "", l, diffID, open(wm.Layers[0].Digest)); err == nil {
		t.Fatal("a layer with the wrong content was unpacked")
	}
	if _, err := s.Snapshots.Stat(ctx, diffID.String()); err == nil {
		t.Fatal("the wrong layer was kept")
	}
	id, err := s.UnpackLayer(ctx, "", l, diffID, open(l.Digest))
	if err != nil || id != diffID.String() {
		t.Fatalf("unpack: %s %v", id, err)
	}
	if _, err := s.UnpackLayer(ctx, "", l, diffID, iotest.ErrReader(errors.New("read"))); err != nil {
		t.Errorf("an unpacked chain read its reader: %v", err)
	}
}

// A caller waiting for another's unpack of the same chain unpacks it
// itself when that one fails (its stream broke, its context ended).
func TestUnpackLayerWaiterTakesOver(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a"), []byte("a\n"), 0o644)
	desc, err := s.ImportDirs(ctx, "example.com/x:v1", ocispec.ImageConfig{}, dir)
	if err != nil {
		t.Fatal(err)
	}
	m, cfg, err := s.Content.Manifest(ctx, desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, diffID := m.Layers[0], cfg.RootFS.DiffIDs[0]
	pr, pw := io.Pipe()
	ownerErr := make(chan error, 1)
	go func() {
		_, err := s.UnpackLayer(ctx, "", l, diffID, pr)
		ownerErr <- err
	}()
	pw.Write([]byte{0x1f}) // the owner is reading: it holds the chain
	waiterErr := make(chan error, 1)
	go func() {
		_, err := s.UnpackLayer(ctx, "", l, diffID, nil)
		waiterErr <- err
	}()
	time.Sleep(50 * time.Millisecond)
	pw.CloseWithError(errors.New("stream broke"))
	if err := <-ownerErr; err == nil {
		t.Fatal("the broken stream was unpacked")
	}
	if err := <-waiterErr; err != nil {
		t.Fatalf("the waiter failed with the owner: %v", err)
	}
	if _, err := s.Snapshots.Stat(ctx, diffID.String()); err != nil {
		t.Errorf("layer not unpacked: %v", err)
	}
}
