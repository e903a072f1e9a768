package rootless_test

import (
	"fmt"

	"github.com/berthlabs/berth/internal/rootless"
)

// The hook is unset until the container package sets it.
func Example() {
	fmt.Println(rootless.RemoveAll == nil)
	// Output: true
}
