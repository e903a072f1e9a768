package openat2_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/internal/openat2"
	"golang.org/x/sys/unix"
)

// An absolute symlink inside a directory is resolved inside it, not on
// the host.
func Example() {
	dir, _ := os.MkdirTemp("", "openat2-")
	defer os.RemoveAll(dir)
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("inside\n"), 0o644)
	os.Symlink("/etc/hostname", filepath.Join(dir, "link"))
	root, _ := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	defer unix.Close(root)
	fd, err := openat2.Open(root, "link", &unix.OpenHow{Flags: unix.O_RDONLY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_IN_ROOT})
	if err != nil {
		fmt.Println(err)
		return
	}
	f := os.NewFile(uintptr(fd), "link")
	defer f.Close()
	b := make([]byte, 64)
	n, _ := f.Read(b)
	fmt.Print(string(b[:n]))
	// Output: inside
}
