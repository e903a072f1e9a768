package containertest_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/container/containertest"
)

// A busybox root filesystem to run containers on, without an image.
func ExampleTempBusyboxRootfs() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		fmt.Println(err) // containertest.ErrNoBusybox without busybox-static
		return
	}
	defer os.RemoveAll(rootfs)
	target, _ := os.Readlink(filepath.Join(rootfs, "bin/sh"))
	fmt.Println("/bin/sh ->", target)
	// Output: /bin/sh -> busybox
}
