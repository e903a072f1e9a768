package layer

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestCommitSnapshotAndRoots(t *testing.T) {
	forEachSnapshotter(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		base := putImage(t, s, "example.com/base:1", ocispec.ImageConfig{}, baseLayers(t)...)
		img, err := s.Unpack(ctx, "example.com/base:1")
		if err != nil {
			t.Fatal(err)
		}
		step := func(key, parent, file string) Layer {
			t.Helper()
			if _, err := s.Snapshots.Prepare(ctx, key, parent, WithOwner()); err != nil {
				t.Fatal(err)
			}
			mounted(t, s, key, func(dir string) {
				if err := os.WriteFile(filepath.Join(dir, file), []byte(file), 0o644); err != nil {
					t.Fatal(err)
				}
				os.Remove(filepath.Join(dir, "bin/vi"))
			})
			l, err := s.CommitSnapshot(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			return l
		}
		l1 := step("step-1", img.ChainID, "one")
		// The layer holds the change only, and the snapshot is committed
		// under its chain ID, ready for the next step.
		names := layerEntries(t, s, l1.Descriptor.Digest)
		if !slices.Contains(names, "one") || !slices.Contains(names, "bin/.wh.vi") || len(names) > 4 {
			t.Errorf("layer entries %q", names)
		}
		info, err := s.Snapshots.Stat(ctx, l1.ChainID)
		if err != nil || info.Kind != snapshot.KindCommitted || info.Parent != img.ChainID {
			t.Fatalf("committed snapshot %+v, %v", info, err)
		}
		if _, ok := info.Labels[LabelOwner]; ok {
			t.Errorf("committed layer keeps its owner label")
		}
		if want := ChainIDs(append(slices.Clone(img.Config.RootFS.DiffIDs), l1.DiffID)); want[len(want)-1].String() != l1.ChainID {
			t.Errorf("chain ID %s, want %s", l1.ChainID, want[len(want)-1])
		}
		l2 := step("step-2", l1.ChainID, "two")
		// The same change again: the existing snapshot is used.
		again := step("step-2b", l1.ChainID, "two")
		if again.DiffID == l2.DiffID && again.ChainID != l2.ChainID {
			t.Errorf("same change, chain %s and %s", again.ChainID, l2.ChainID)
		}
		if _, err := s.Snapshots.Stat(ctx, "step-2b"); !errors.Is(err, snapshot.ErrNotFound) {
			t.Errorf("step-2b left: %v", err)
		}
		if _, err := s.CommitSnapshot(ctx, l2.ChainID); !errors.Is(err, snapshot.ErrInvalid) {
			t.Errorf("CommitSnapshot of a committed snapshot: %v", err)
		}

		// An untagged image of the steps, kept by a root.
		m, cfg, err := s.Content.Manifest(ctx, base, nil)
		if err != nil {
			t.Fatal(err)
		}
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l1.DiffID, l2.DiffID)
		b, _ := json.Marshal(cfg)
		var doc map[string]any
		json.Unmarshal(b, &doc)
		doc["config"] = map[string]any{"Healthcheck": map[string]any{"Test": []string{"NONE"}}}
		b, _ = json.Marshal(doc)
		raw := string(b)
		desc, err := s.PutImage(ctx, "", []byte(raw), append(slices.Clone(m.Layers), l1.Descriptor, l2.Descriptor))
		if err != nil {
			t.Fatal(err)
		}
		if r, err := s.Content.Open(ctx, mustManifestConfig(t, s, desc)); err != nil {
			t.Fatal(err)
		} else {
			got, _ := io.ReadAll(r)
			r.Close()
			if string(got) != raw {
				t.Errorf("stored config %s, want it as given: %s", got, raw)
			}
		}
		if _, err := s.PutImage(ctx, "", []byte("{not json"), nil); err == nil {
			t.Error("PutImage took a config that is not JSON")
		}
		if err := s.SetRoot(ctx, "build-cache-x", desc); err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"", "../x", "a/b", ".hidden"} {
			if err := s.SetRoot(ctx, bad, desc); err == nil {
				t.Errorf("SetRoot(%q) accepted", bad)
			}
		}
		if err := s.Content.Untag(ctx, "example.com/base:1"); err != nil {
			t.Fatal(err)
		}
		st, err := s.GC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		// Nothing the root reaches goes.
		for _, n := range st.Snapshots {
			if n == l1.ChainID || n == l2.ChainID || n == img.ChainID {
				t.Errorf("GC removed %s, which a root keeps", n)
			}
		}
		if got, err := s.GetRoot(ctx, "build-cache-x"); err != nil || got.Digest != desc.Digest {
			t.Errorf("GetRoot: %v %v", got, err)
		}
		if names, _ := s.Roots(ctx, "build-cache-"); !slices.Equal(names, []string{"build-cache-x"}) {
			t.Errorf("Roots %q", names)
		}
		if _, err := s.Content.Open(ctx, l2.Descriptor.Digest); err != nil {
			t.Errorf("GC removed a blob a root keeps: %v", err)
		}
		// Without the root, GC takes it all.
		if err := s.RemoveRoot(ctx, "build-cache-x"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetRoot(ctx, "build-cache-x"); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("removed root: %v", err)
		}
		if _, err := s.GC(ctx); err != nil {
			t.Fatal(err)
		}
		var left []string
		s.Snapshots.Walk(ctx, func(i snapshot.Info) error { left = append(left, i.Name); return nil })
		if len(left) != 0 {
			t.Errorf("left after GC: %q", left)
		}
	})
}

func mustManifestConfig(t *testing.T, s *Store, desc ocispec.Descriptor) digest.Digest {
	t.Helper()
	m, _, err := s.Content.Manifest(context.Background(), desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	return m.Config.Digest
}
