package namespace

import (
	"errors"
	"fmt"
	"runtime"
	"strings"

	"github.com/berthlabs/berth/internal/osthread"
	"golang.org/x/sys/unix"
)

// New creates a namespace of each of kinds (Net, IPC or UTS: the kinds
// a thread of a multi-threaded process can unshare and leave again) and
// returns
// handles on them, in the order of kinds; each keeps its namespace
// alive while open. setup, when not nil, runs first inside the new
// namespaces (to set a hostname, or bring loopback up with
// [LoopbackUp]); if it fails, New fails.
//
// The namespaces are made with unshare(2) on a locked OS thread, which
// is then put back into its own namespaces (or, if that fails,
// discarded with its goroutine). Persist them with [Namespace.Persist]
// to outlive the handles.
func New(setup func() error, kinds ...Kind) ([]*Namespace, error) {
	names := make([]string, len(kinds))
	for i, k := range kinds {
		names[i] = k.String()
	}
	what := "namespace: new " + strings.Join(names, "+")
	if len(kinds) == 0 {
		return nil, fmt.Errorf("%s: no kind given", what)
	}
	for _, k := range kinds {
		switch k {
		case Net, IPC, UTS:
		default:
			return nil, fmt.Errorf("%s: a thread of a multi-threaded process cannot make a %s namespace; start a process in one instead", what, k)
		}
	}
	type result struct {
		nss []*Namespace
		err error
	}
	done := make(chan result, 1)
	osthread.Go(func() {
		var r result
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
			done <- r
		}()
		var origs []*Namespace
		defer func() {
			for _, o := range origs {
				o.Close()
			}
		}()
		for _, k := range kinds {
			o, err := Current(k)
			if err != nil {
				restored = true
				r.err = fmt.Errorf("%s: %w", what, err)
				return
			}
			origs = append(origs, o)
		}
		if err := unix.Unshare(int(CloneFlags(kinds...))); err != nil {
			restored = true
			r.err = fmt.Errorf("%s: unshare: %w", what, err)
			return
		}
		var err error
		if setup != nil {
			err = setup()
		}
		for _, k := range kinds {
			if err != nil {
				break
			}
			var ns *Namespace
			if ns, err = Current(k); err == nil {
				r.nss = append(r.nss, ns)
			}
		}
		restored = true
		for _, o := range origs {
			if rerr := o.Enter(); rerr != nil {
				restored = false
				err = errors.Join(err, fmt.Errorf("restore thread (thread discarded): %w", rerr))
			}
		}
		if err != nil {
			for _, ns := range r.nss {
				ns.Close()
			}
			r.nss, r.err = nil, fmt.Errorf("%s: %w", what, err)
		}
	})
	r := <-done
	return r.nss, r.err
}
