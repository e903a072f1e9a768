package snapshottest_test

import (
	"fmt"
	"log"
	"os"
	"testing"

	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/berthlabs/berth/layer/snapshot/snapshottest"
)

// A test of a Snapshotter calls Run with a function that opens it in a
// directory (here berth's Copy snapshotter).
func ExampleRun() {
	testCopy := func(t *testing.T) {
		snapshottest.Run(t, func(root string) (snapshot.Snapshotter, error) {
			return snapshot.NewCopy(root)
		})
	}
	_ = testCopy // in a _test.go file: func TestCopy(t *testing.T) { ... }
}

// WriteFiles fills a directory (a mounted snapshot, in a test) and Tree
// reads it back in the same form, to compare with what it should hold.
func ExampleTree() {
	dir, err := os.MkdirTemp("", "snapshottest-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := snapshottest.WriteFiles(dir, map[string]string{"etc/": "", "etc/hostname": "box\n", "bin/sh": "#!"}); err != nil {
		log.Fatal(err)
	}
	if err := os.Symlink("sh", dir+"/bin/ash"); err != nil {
		log.Fatal(err)
	}
	got, err := snapshottest.Tree(dir)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", got)
	// Output:
	// map["bin/":"" "bin/ash@":"sh" "bin/sh":"#!" "etc/":"" "etc/hostname":"box\n"]
}
