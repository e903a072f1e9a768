package atomicfile_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/internal/atomicfile"
)

func ExampleWriteFile() {
	dir, err := os.MkdirTemp("", "atomicfile-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "state.json")
	for _, v := range []string{`{"n":1}`, `{"n":2}`} {
		if err := atomicfile.WriteFile(p, []byte(v)); err != nil {
			fmt.Println(err)
			return
		}
	}
	b, _ := os.ReadFile(p)
	ents, _ := os.ReadDir(dir)
	fmt.Println(string(b), len(ents))
	// Output: {"n":2} 1
}
