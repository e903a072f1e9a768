package osthread_test

import (
	"fmt"

	"github.com/berthlabs/berth/internal/osthread"
	"golang.org/x/sys/unix"
)

// Change the working directory of one thread only, and let the thread
// end with it.
func ExampleGo() {
	errc := make(chan error, 1)
	osthread.Go(func() {
		// Never unlocked: the thread, with its own working directory,
		// ends with this goroutine.
		if err := unix.Unshare(unix.CLONE_FS); err != nil {
			errc <- err
			return
		}
		errc <- unix.Chdir("/")
	})
	fmt.Println(<-errc)
	// Output: <nil>
}
