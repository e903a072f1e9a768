package lockfile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/internal/lockfile"
)

// Two holders of one lock file: the second cannot take it exclusively
// while the first holds it shared.
func Example() {
	dir, _ := os.MkdirTemp("", "lockfile-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "gc.lock")
	shared, err := lockfile.Lock(context.Background(), path, lockfile.Shared, true)
	if err != nil {
		fmt.Println(err)
		return
	}
	excl, _ := lockfile.TryLock(path, lockfile.Exclusive, true)
	fmt.Println("exclusive while shared:", excl != nil)
	shared.Unlock()
	excl, _ = lockfile.TryLock(path, lockfile.Exclusive, true)
	fmt.Println("exclusive after:", excl != nil)
	excl.Unlock()
	// Output:
	// exclusive while shared: false
	// exclusive after: true
}
