package cgroup

import (
	"context"
	"time"
)

// oomLag is how long sendOOMKills waits for the kill counter to grow after
// a v1 OOM notification, which the kernel sends before it picks a victim.
const oomLag = 250 * time.Millisecond

// sendOOMKills reads the OOM kill counter with read and sends one value on
// ch for each kill since *base, advancing *base. With lag set, an unchanged
// counter is read again for up to oomLag. It reports false when the watch
// should end: ctx is done or the counter cannot be read (the cgroup is
// gone).
func sendOOMKills(ctx context.Context, ch chan<- struct{}, base *uint64, read func() (uint64, error), lag bool) bool {
	var n uint64
	timeout := time.Duration(0)
	if lag {
		timeout = oomLag
	}
	_, err := poll(ctx, timeout, func() (bool, error) {
		var err error
		n, err = read()
		return n > *base || ctx.Err() != nil, err
	})
	if err != nil {
		return false
	}
	for ; *base < n; *base++ {
		select {
		case ch <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}
