package layer_test

import (
	"fmt"

	"github.com/berthlabs/berth/layer"
	digest "github.com/opencontainers/go-digest"
)

// The snapshot of a layer is named by its chain ID: the first layer's is
// its diff ID, each later one hashes the chain below it with its own.
func ExampleChainIDs() {
	base := digest.FromString("base layer tar")
	app := digest.FromString("app layer tar")
	ids := layer.ChainIDs([]digest.Digest{base, app})
	fmt.Println(ids[0] == base)
	fmt.Println(ids[1] == digest.FromString(base.String()+" "+app.String()))
	// Output:
	// true
	// true
}
