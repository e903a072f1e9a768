package network

import (
	"errors"

	"github.com/vishvananda/netlink"
)

// dumpRetries is how often a netlink dump interrupted by a concurrent
// change (netlink.ErrDumpInterrupted, an error since netlink v1.2.1) is
// started again before the error is returned.
const dumpRetries = 10

// retryDump runs a netlink dump again while the kernel reports that it
// was interrupted by a concurrent change; its results are then
// inconsistent and must not be used.
func retryDump[T any](dump func() (T, error)) (T, error) {
	var (
		v   T
		err error
	)
	for range dumpRetries {
		v, err = dump()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return v, err
		}
	}
	return v, err
}
