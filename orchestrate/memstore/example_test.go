package memstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// A store's writes are versioned and conditional, and a watch replays
// the changes after a version.
func Example() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := memstore.New()

	obj, err := s.Create(ctx, &orchestrate.ConfigMap{
		ObjectMeta: orchestrate.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"mode": "fast"},
	})
	if err != nil {
		panic(err)
	}
	created := obj.(*orchestrate.ConfigMap)
	from := created.ResourceVersion

	next := created.DeepCopy().(*orchestrate.ConfigMap)
	next.Data["mode"] = "safe"
	if _, err := s.Update(ctx, next); err != nil {
		panic(err)
	}
	// The same version again: someone else wrote in between.
	next.Data["mode"] = "other"
	_, err = s.Update(ctx, next)
	fmt.Println("stale update:", errors.Is(err, orchestrate.ErrConflict))

	w, err := s.Watch(ctx, orchestrate.KindConfigMap, orchestrate.WatchOptions{Since: from})
	if err != nil {
		panic(err)
	}
	ev := <-w
	cm := ev.Object.(*orchestrate.ConfigMap)
	fmt.Println(ev.Type, cm.Name, cm.Data["mode"], "generation", cm.Generation)
	// Output:
	// stale update: true
	// Modified settings safe generation 2
}
