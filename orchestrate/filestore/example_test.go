package filestore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/filestore"
)

// A store in a directory: what was written is there again after the
// store is closed and opened anew (as after a restart of the program).
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := filestore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	created, err := s.Create(ctx, &orchestrate.ConfigMap{
		ObjectMeta: orchestrate.ObjectMeta{Name: "settings"},
		Data:       map[string]string{"mode": "fast"},
	})
	if err != nil {
		log.Fatal(err)
	}
	s.Close()

	again, err := filestore.Open(dir)
	if err != nil {
		log.Fatal(err)
	}
	defer again.Close()
	cm, err := orchestrate.Get[*orchestrate.ConfigMap](ctx, again, "", "settings")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cm.Data["mode"], cm.UID == created.Meta().UID, cm.ResourceVersion == created.Meta().ResourceVersion)
	// Output: fast true true
}
