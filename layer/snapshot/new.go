package snapshot

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// New opens a Snapshotter in root: an Overlay where overlayfs works there,
// else a Copy. For an unprivileged process (any effective UID but 0) it
// is an Overlay for mounts in user namespaces (NewOverlayUserNS) where
// the kernel allows them, else a Copy. A root that already holds snapshots is opened with the kind
// that made them.
func New(root string) (Snapshotter, error) {
	b, err := os.ReadFile(filepath.Join(root, driverFile))
	if err == nil && strings.TrimSpace(string(b)) == "copy" {
		return NewCopy(root)
	}
	if err == nil && strings.TrimSpace(string(b)) == kindOverlayUserNS {
		return NewOverlayUserNS(root)
	}
	if err == nil {
		return NewOverlay(root)
	}
	if os.Geteuid() != 0 {
		// Unprivileged: overlay mounts happen in user namespaces.
		o, err := NewOverlayUserNS(root)
		if errors.Is(err, ErrNotSupported) || errors.Is(err, ErrInvalid) {
			return NewCopy(root)
		}
		if err != nil {
			return nil, err
		}
		return o, nil
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
