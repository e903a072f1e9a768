package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// New opens a Snapshotter in root: an Overlay where overlayfs works there,
// else a Copy. A root that already holds snapshots is opened with the kind
// that made them.
func New(root string) (Snapshotter, error) {
	b, err := os.ReadFile(filepath.Join(root, driverFile))
	if err == nil && strings.TrimSpace(string(b)) == "copy" {
		return NewCopy(root)
	}
	if err == nil {
		return NewOverlay(root)
	}
	o, err := NewOverlay(root)
	if errors.Is(err, ErrNotSupported) || errors.Is(err, ErrInvalid) {
		return NewCopy(root)
	}
	if err != nil {
		return nil, err
	}
	return o, nil
}
