package memstore_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"github.com/berthlabs/berth/orchestrate/storetest"
)

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestrate.Store { return memstore.New() })
}

// A watch from a version older than the history is refused with
// ErrExpired; one within it replays.
func TestWatchExpired(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := memstore.New(memstore.WithHistory(2))
	for i := range 4 {
		if _, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: fmt.Sprint("c", i)}}); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := s.Revision(ctx)
	if _, err := s.Watch(ctx, "", orchestrate.WatchOptions{Since: rev - 3}); !errors.Is(err, orchestrate.ErrExpired) {
		t.Errorf("watch from 3 changes back with a history of 2: %v, want ErrExpired", err)
	}
	w, err := s.Watch(ctx, "", orchestrate.WatchOptions{Since: rev - 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"c2", "c3"} {
		if ev := <-w; ev.Object.Meta().Name != want {
			t.Errorf("replayed %s, want %s", ev.Object.Meta().Name, want)
		}
	}
}

// With no history kept, only a watch from the current revision replays
// (nothing).
func TestWatchNoHistory(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := memstore.New(memstore.WithHistory(0))
	for _, n := range []string{"a", "b"} {
		if _, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: n}}); err != nil {
			t.Fatal(err)
		}
	}
	rev, _ := s.Revision(ctx)
	if _, err := s.Watch(ctx, "", orchestrate.WatchOptions{Since: rev - 1}); !errors.Is(err, orchestrate.ErrExpired) {
		t.Errorf("watch from one change back: %v, want ErrExpired", err)
	}
	w, err := s.Watch(ctx, "", orchestrate.WatchOptions{Since: rev})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "c"}}); err != nil {
		t.Fatal(err)
	}
	if ev := <-w; ev.Object.Meta().Name != "c" {
		t.Errorf("first event %s, want c", ev.Object.Meta().Name)
	}
}
