package content

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
)

func TestSources(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	desc, err := s.Put(ctx, "text/plain", strings.NewReader("layer"), "")
	if err != nil {
		t.Fatal(err)
	}
	d := desc.Digest
	if got, err := s.Sources(ctx, d); err != nil || len(got) != 0 {
		t.Fatalf("sources of a new blob: %v %v", got, err)
	}
	for _, r := range []string{"reg.example.com/a/app", "reg.example.com/b/app", "reg.example.com/a/app", "localhost:5000/x"} {
		if err := s.AddSource(ctx, d, r); err != nil {
			t.Fatal(err)
		}
	}
	// Most recent first, each once.
	want := []string{"localhost:5000/x", "reg.example.com/a/app", "reg.example.com/b/app"}
	if got, err := s.Sources(ctx, d); err != nil || !slices.Equal(got, want) {
		t.Errorf("sources %v %v, want %v", got, err, want)
	}
	// Another Store on the directory (another process) sees them.
	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s2.Sources(ctx, d); err != nil || !slices.Equal(got, want) {
		t.Errorf("sources from a second store %v %v", got, err)
	}
	// Only the last MaxSources are kept.
	for i := range MaxSources + 3 {
		if err := s.AddSource(ctx, d, fmt.Sprintf("reg.example.com/many/r%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := s.Sources(ctx, d)
	if len(got) != MaxSources || got[0] != fmt.Sprintf("reg.example.com/many/r%d", MaxSources+2) {
		t.Errorf("after %d more: %v", MaxSources+3, got)
	}
	// Bad input says what is wrong and records nothing.
	for _, bad := range []string{"", "busybox", "reg.example.com/a/app:v1", "reg.example.com/a/app@" + string(d), "https://reg.example.com/a", "reg.example.com/a b", "reg.example.com/A/app"} {
		if err := s.AddSource(ctx, d, bad); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "source repository") {
			t.Errorf("AddSource(%q): %v, want ErrInvalid naming the source repository", bad, err)
		}
	}
	if err := s.AddSource(ctx, "sha256:nothex", "reg.example.com/a/app"); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddSource with a bad digest: %v", err)
	}
	if got2, _ := s.Sources(ctx, d); !slices.Equal(got2, got) {
		t.Errorf("bad input changed the sources: %v", got2)
	}
	// Deleting the blob forgets them.
	if err := s.Delete(ctx, d); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Sources(ctx, d); err != nil || len(got) != 0 {
		t.Errorf("sources of a deleted blob: %v %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(s.Root(), sourcesDir, "sha256", d.Encoded())); !os.IsNotExist(err) {
		t.Errorf("sources file of a deleted blob: %v", err)
	}
}

// A sources file damaged by hand yields the valid lines only; a killed
// writer's temporary file is removed by Open once it is old.
func TestSourcesDamaged(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	d := digest.FromString("x")
	dir := filepath.Join(s.Root(), sourcesDir, "sha256")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, d.Encoded()), []byte("reg.example.com/ok\n\ngarbage here\nreg.example.com/ok\nreg.example.com/two\n"), 0o644)
	if got, err := s.Sources(ctx, d); err != nil || !slices.Equal(got, []string{"reg.example.com/ok", "reg.example.com/two"}) {
		t.Errorf("sources %v %v", got, err)
	}
	old, fresh := filepath.Join(dir, ".tmp-123"), filepath.Join(dir, ".tmp-456")
	for _, p := range []string{old, fresh} {
		os.WriteFile(p, []byte("reg.example.com/x\n"), 0o600)
	}
	past := time.Now().Add(-2 * time.Minute)
	os.Chtimes(old, past, past)
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("old temporary file: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file (a live writer's): %v", err)
	}
}
