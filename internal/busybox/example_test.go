package busybox_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/internal/busybox"
)

func ExampleRootfs() {
	dir, err := os.MkdirTemp("", "rootfs-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	if err := busybox.Rootfs(dir); err != nil {
		fmt.Println(err)
		return
	}
	target, _ := os.Readlink(filepath.Join(dir, "bin/sh"))
	fmt.Println("/bin/sh ->", target)
	// Output: /bin/sh -> busybox
}
