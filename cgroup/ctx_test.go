package cgroup

import (
	"context"
	"errors"
	"testing"
	"time"
)

// stuck is a cgroup whose processes never die and that never freezes:
// Kill, Delete and Freeze would wait for their timeouts (10 and 5
// seconds) but for the context.
type stuck struct {
	manager // the methods the test does not call panic
	kills   int
}

func (s *stuck) exists() bool                                    { return true }
func (s *stuck) procs() ([]int, error)                           { return []int{101, 102}, nil }
func (s *stuck) kill(context.Context) error                      { s.kills++; return nil }
func (s *stuck) setFrozen(bool) error                            { return nil }
func (s *stuck) frozen() (bool, error)                           { return false, nil }
func (s *stuck) remove(ctx context.Context) error                { return ctx.Err() }
func (s *stuck) apply(r, prev *Resources) error                  { return nil }
func (s *stuck) create() (bool, func(), error)                   { return false, func() {}, nil }
func (s *stuck) read() (*Resources, error)                       { return &Resources{}, nil }
func (s *stuck) oomKills() (uint64, error)                       { return 0, nil }
func (s *stuck) stats() (*Stats, error)                          { return &Stats{}, nil }
func (s *stuck) watchOOM(context.Context, chan<- struct{}) error { return nil }

func TestBlockingCallsHonourContext(t *testing.T) {
	c, err := newCgroup("/berth/stuck", V1, &stuck{}, &Resources{})
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]func(context.Context) error{
		"Kill": c.Kill, "Delete": c.Delete, "Freeze": c.Freeze,
	}
	for name, call := range calls {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		start := time.Now()
		err := call(ctx)
		cancel()
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s took %v after its context's deadline of 30ms", name, d)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("%s past its deadline = %v, want context.DeadlineExceeded", name, err)
		}
		ctx, cancel = context.WithCancel(context.Background())
		cancel()
		if err := call(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
	}
	if k := c.m.(*stuck).kills; k == 0 {
		t.Errorf("Kill sent no SIGKILL before its deadline")
	}
}
