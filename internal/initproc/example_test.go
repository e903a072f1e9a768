package initproc_test

import (
	"fmt"

	"github.com/berthlabs/berth/internal/initproc"
)

func ExampleParseCaps() {
	caps, err := initproc.ParseCaps([]string{"CAP_NET_ADMIN", "kill"})
	fmt.Printf("%#x %v\n", uint64(caps), err)
	_, err = initproc.ParseCaps([]string{"CAP_FLY"})
	fmt.Println(err)
	// Output:
	// 0x1020 <nil>
	// unknown capability "CAP_FLY"
}
