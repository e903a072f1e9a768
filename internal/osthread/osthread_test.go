package osthread_test

import (
	"os"
	"runtime"
	"testing"

	"github.com/berthlabs/berth/internal/osthread"
	"golang.org/x/sys/unix"
)

// A goroutine that unshares its mount namespace and ends locked never
// does so on the main thread, so /proc/self keeps describing the
// process's own namespace. Without Go's care the first such goroutine
// usually lands on the main thread (and parks it there for good).
func TestGoAvoidsMainThread(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: unshares mount namespaces")
	}
	before, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		type result struct {
			main bool
			err  error
		}
		ch := make(chan result, 1)
		osthread.Go(func() {
			// Ends locked: the thread goes with its namespace.
			ch <- result{osthread.OnMainThread(), unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_FS)}
		})
		r := <-ch
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.main {
			t.Fatalf("goroutine %d ran on the main thread", i)
		}
	}
	after, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	if after != before {
		t.Errorf("/proc/self/ns/mnt went from %s to %s", before, after)
	}
}

// A goroutine that unlocks gives its thread back, and it too never runs
// on the main thread.
func TestGoUnlocks(t *testing.T) {
	for i := 0; i < 100; i++ {
		done := make(chan bool, 1)
		osthread.Go(func() {
			done <- osthread.OnMainThread()
			runtime.UnlockOSThread()
		})
		if <-done {
			t.Fatalf("goroutine %d ran on the main thread", i)
		}
	}
}
