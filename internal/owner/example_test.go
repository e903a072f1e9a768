package owner_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/berthlabs/berth/internal/owner"
)

// A name that carries its owner, told alive or dead later.
func Example() {
	name := "ct-" + owner.Self() + "-7"
	tok, rest, _ := owner.Split(strings.TrimPrefix(name, "ct-"))
	fmt.Println(strings.HasPrefix(tok, strconv.Itoa(os.Getpid())+"-"), rest, owner.Alive(tok))
	fmt.Println(owner.Alive("4194304999-1")) // no such process
	// Output:
	// true 7 true
	// false
}
