package memhook_test

import (
	"context"
	"fmt"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/internal/memhook"
	_ "github.com/berthlabs/berth/orchestrate/memstore" // sets memhook.New
)

// A memstore that starts at revision 41 and sees every write first.
func Example() {
	s := memhook.New(nil, 41, func(typ orchestrate.WatchEventType, obj orchestrate.Object) error {
		fmt.Println("persist", typ, obj.Kind(), obj.Meta().Name, obj.Meta().ResourceVersion)
		return nil
	})
	if _, err := s.Create(context.Background(), &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: "c"}}); err != nil {
		fmt.Println(err)
	}
	// Output: persist Added ConfigMap c 42
}
