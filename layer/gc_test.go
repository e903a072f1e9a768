package layer

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestGC(t *testing.T) {
	forEachSnapshotter(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		base := layerTar(t, map[string]string{"etc/": "", "etc/motd": "base\n"})
		cfg := ocispec.ImageConfig{Cmd: []string{"sh"}}
		putImage(t, s, "example.com/a:v1", cfg, base, layerTar(t, map[string]string{"a": "a"}))
		bDesc := putImage(t, s, "example.com/b:v1", cfg, base, layerTar(t, map[string]string{"b": "b"}))
		putImage(t, s, "example.com/c:v1", cfg, base, layerTar(t, map[string]string{"c": "c"}))
		imgs := map[string]*Image{}
		for _, n := range []string{"a", "b", "c"} {
			img, err := s.Unpack(ctx, "example.com/"+n+":v1")
			if err != nil {
				t.Fatal(err)
			}
			imgs[n] = img
		}
		bBlobs, err := s.Content.References(ctx, bDesc)
		if err != nil {
			t.Fatal(err)
		}
		// A container runs on c.
		if _, err := s.Snapshots.Prepare(ctx, "container-1", imgs["c"].ChainID); err != nil {
			t.Fatal(err)
		}
		snapshots := func() []string {
			var names []string
			s.Snapshots.Walk(ctx, func(i snapshot.Info) error { names = append(names, i.Name); return nil })
			slices.Sort(names)
			return names
		}
		before := snapshots()
		if len(before) != 5 {
			t.Fatalf("snapshots %q, want 4 layers and a container", before)
		}

		// Nothing to do while everything is named.
		st, err := s.GC(ctx)
		if err != nil || len(st.Snapshots) != 0 || len(st.Blobs) != 0 {
			t.Fatalf("GC with everything named: %+v, %v", st, err)
		}

		// b and c lose their names: b's top layer and blobs go; c's top
		// layer stays under the container, and the shared base under a.
		for _, n := range []string{"b", "c"} {
			if err := s.Content.Untag(ctx, "example.com/"+n+":v1"); err != nil {
				t.Fatal(err)
			}
		}
		st, err = s.GC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(st.Snapshots, []string{imgs["b"].ChainID}) {
			t.Errorf("removed snapshots %q, want only b's top layer %s", st.Snapshots, imgs["b"].ChainID)
		}
		removed := map[digest.Digest]bool{}
		for _, d := range st.Blobs {
			removed[d] = true
		}
		for _, d := range bBlobs {
			if !removed[d] && d != imgs["a"].Manifest.Layers[0].Digest {
				t.Errorf("blob %s of b was not removed", d)
			}
		}
		if removed[imgs["a"].Manifest.Layers[0].Digest] {
			t.Error("the shared base layer's blob was removed")
		}
		if _, err := s.Unpack(ctx, "example.com/a:v1"); err != nil {
			t.Errorf("a after GC: %v", err)
		}
		for _, n := range []string{"container-1", imgs["c"].ChainID, imgs["a"].ChainID, imgs["a"].Config.RootFS.DiffIDs[0].String()} {
			if _, err := s.Snapshots.Stat(ctx, n); err != nil {
				t.Errorf("%s after GC: %v", n, err)
			}
		}

		// Once the container is gone, so is its layer; once a is
		// untagged, everything.
		if err := s.Release(ctx, "container-1"); err != nil {
			t.Fatal(err)
		}
		if err := s.Content.Untag(ctx, "example.com/a:v1"); err != nil {
			t.Fatal(err)
		}
		st, err = s.GC(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Snapshots) != 3 || st.Snapshots[len(st.Snapshots)-1] != imgs["a"].Config.RootFS.DiffIDs[0].String() {
			t.Errorf("removed %q, want three snapshots, the base last", st.Snapshots)
		}
		if left := snapshots(); len(left) != 0 {
			t.Errorf("snapshots left: %q", left)
		}
		n := 0
		s.Content.Walk(ctx, func(digest.Digest, int64) error { n++; return nil })
		if n != 0 {
			t.Errorf("%d blobs left", n)
		}
		if _, err := s.Unpack(ctx, "example.com/a:v1"); !errors.Is(err, content.ErrNotFound) {
			t.Errorf("a after untag and GC: %v", err)
		}
	})
}
