package layer

import (
	"context"
	"os"
	"testing"

	"github.com/berthlabs/berth/layer/snapshot"
	digest "github.com/opencontainers/go-digest"
)

func TestChainIDs(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	got := ChainIDs([]digest.Digest{a, b})
	if got[0] != a || got[1] != digest.FromString(a.String()+" "+b.String()) {
		t.Errorf("chain IDs %v", got)
	}
}

// A process that died mid-unpack leaves an extract- snapshot; the next
// Open removes it and keeps everything else.
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
	if _, err := s.Snapshots.Prepare(ctx, extractPrefix+"dead-sha256:x", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Snapshots.Prepare(ctx, "container-keep", ""); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if s, err = Open(root); err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var names []string
	s.Snapshots.Walk(ctx, func(i snapshot.Info) error { names = append(names, i.Name); return nil })
	if len(names) != 1 || names[0] != "container-keep" {
		t.Errorf("snapshots after reopening: %v, want only container-keep", names)
	}
}
