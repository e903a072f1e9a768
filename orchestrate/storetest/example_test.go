package storetest_test

import (
	"testing"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"github.com/berthlabs/berth/orchestrate/storetest"
)

// An implementation's test runs the suite on a new store per subtest.
// (memstore's own test does this; the suite needs a *testing.T, so this
// example is compiled but not run.)
func ExampleRun() {
	_ = func(t *testing.T) {
		storetest.Run(t, func(t *testing.T) orchestrate.Store { return memstore.New() })
	}
}

// The suite checks memstore here too, so that a change to the suite is
// tested in its own package.
func TestRunMemstore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) orchestrate.Store { return memstore.New() })
}
