package etcdtest_test

import (
	"fmt"
	"log"
	"os"

	"github.com/berthlabs/berth/orchestrate/etcdstore/internal/etcdtest"
)

// A 3-member etcd cluster on 127.0.0.1, stopped (and its data removed)
// at the end.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c, err := etcdtest.StartCluster(3, dir)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Stop()
	fmt.Println(len(c.Endpoints()), c.Members[0].Name)
	// Output: 3 m0
}
