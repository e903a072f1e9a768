package snapshot_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/layer/snapshot"
)

// Unpack a one-layer image into a committed snapshot, prepare a
// container's root filesystem on it, and see that the container's writes
// stay in its own snapshot. (This example needs root, to mount.)
func Example() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "berth-snapshot-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(tmp)
	mnt := filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		fmt.Println(err)
		return
	}
	sn, err := snapshot.New(filepath.Join(tmp, "snapshots")) // overlayfs if it works here
	if err != nil {
		fmt.Println(err)
		return
	}
	defer sn.Close()

	// readWrite mounts ms on mnt, reads and then writes the file "hello".
	readWrite := func(ms []snapshot.Mount, write string) (string, error) {
		if err := snapshot.MountAll(ms, mnt); err != nil {
			return "", err
		}
		defer snapshot.Unmount(mnt)
		b, _ := os.ReadFile(filepath.Join(mnt, "hello"))
		if write == "" {
			return string(b), nil
		}
		return string(b), os.WriteFile(filepath.Join(mnt, "hello"), []byte(write), 0o644)
	}

	// The image's layer: prepare, mount, write, unmount, commit.
	mounts, err := sn.Prepare(ctx, "extract-base", "")
	if err == nil {
		_, err = readWrite(mounts, "from the image\n")
	}
	if err == nil {
		err = sn.Commit(ctx, "base", "extract-base")
	}
	if err != nil {
		fmt.Println(err)
		return
	}

	// A container's root filesystem on it, which the container changes.
	mounts, err = sn.Prepare(ctx, "container-1", "base")
	if err != nil {
		fmt.Println(err)
		return
	}
	got, err := readWrite(mounts, "changed\n")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print("container reads: ", got)

	// The image is unchanged: a read-only view of it shows.
	mounts, err = sn.View(ctx, "look", "base")
	if err != nil {
		fmt.Println(err)
		return
	}
	got, err = readWrite(mounts, "")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print("image holds: ", got)

	info, _ := sn.Stat(ctx, "container-1")
	fmt.Println(info.Name, "is", info.Kind, "on", info.Parent)
	err = sn.Remove(ctx, "base")
	fmt.Println("base in use:", errors.Is(err, snapshot.ErrInUse))
	// Output:
	// container reads: from the image
	// image holds: from the image
	// container-1 is active on base
	// base in use: true
}
