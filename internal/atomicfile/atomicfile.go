// Package atomicfile replaces files whole: a reader, or the next open
// after the process is killed, sees the old content or the new, never a
// mix.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile replaces path with data: written to a temporary file in the
// same directory (".tmp-*", mode 0600), then renamed over path. It does
// not sync: a power loss may keep either version, or an empty file.
func WriteFile(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-")
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}
