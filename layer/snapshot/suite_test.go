package snapshot_test

import (
	"errors"
	"os"
	"testing"

	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/berthlabs/berth/layer/snapshot/snapshottest"
)

// TestOverlay and TestCopy run the Snapshotter contract's suite against
// both implementations.
func TestOverlay(t *testing.T) {
	if os.Geteuid() == 0 {
		o, err := snapshot.NewOverlay(t.TempDir())
		if errors.Is(err, snapshot.ErrNotSupported) {
			t.Skipf("overlayfs does not work here: %v", err)
		}
		if err != nil {
			t.Fatal(err)
		}
		o.Close()
	}
	snapshottest.Run(t, func(root string) (snapshot.Snapshotter, error) { return snapshot.NewOverlay(root) })
}

func TestCopy(t *testing.T) {
	snapshottest.Run(t, func(root string) (snapshot.Snapshotter, error) { return snapshot.NewCopy(root) })
}
