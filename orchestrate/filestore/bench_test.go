package filestore_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/filestore"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// Creates through the file store (one fsync each) beside memstore,
// interleaved with -count.
func BenchmarkCreate(b *testing.B) {
	for _, tc := range []struct {
		name string
		open func(b *testing.B) orchestrate.Store
	}{
		{"memstore", func(b *testing.B) orchestrate.Store { return memstore.New() }},
		{"filestore", func(b *testing.B) orchestrate.Store {
			s, err := filestore.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			s := tc.open(b)
			ctx := context.Background()
			for i := 0; b.Loop(); i++ {
				cm := &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: fmt.Sprintf("c%d", i)}, Data: map[string]string{"k": "v"}}
				if _, err := s.Create(ctx, cm); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// Open of a directory holding 1000 objects.
func BenchmarkOpen(b *testing.B) {
	dir := b.TempDir()
	s, err := filestore.Open(dir)
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		p := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: fmt.Sprintf("p%d", i), Labels: map[string]string{"app": "web"}},
			Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1000"}}}}}
		if _, err := s.Create(context.Background(), p); err != nil {
			b.Fatal(err)
		}
	}
	s.Close()
	for b.Loop() {
		s, err := filestore.Open(dir)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
