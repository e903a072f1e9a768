package namespace

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/berthlabs/berth/internal/osthread"
)

// Do runs fn on an OS thread that has entered the given namespaces, waits
// for it, and returns fn's error.
//
// fn runs on a fresh goroutine locked to its OS thread
// ([runtime.LockOSThread]); the calling goroutine and its thread are never
// moved. Do remembers the thread's own namespaces of the kinds in nss,
// enters each of nss in order, runs fn, and then enters the remembered
// ones again. Only if that succeeds is the thread given back to the Go
// scheduler; otherwise it stays locked, and the Go runtime destroys it
// when the goroutine ends, so no other goroutine ever runs in a namespace
// it did not ask for. A panic in fn is re-raised in the caller after the
// thread is restored, and runtime.Goexit in fn (t.FailNow in a test) ends
// the calling goroutine as it would have without Do.
//
// Goroutines that fn starts run on other threads, outside the
// namespaces. fn must not change the thread's namespaces itself (with
// setns or unshare) except those of the kinds in nss.
//
// Entering fails with [ErrMultiThreaded] for mount, user and time
// namespaces, before anything is entered; a setns failure is returned
// wrapped with the namespace that was being entered. If restoring the
// thread fails, that error is returned too, joined with fn's.
func Do(fn func() error, nss ...*Namespace) error {
	for i, n := range nss {
		if n == nil {
			return fmt.Errorf("namespace: do: namespace %d is nil", i)
		}
		switch n.kind {
		case Mount, User, Time:
			return fmt.Errorf("namespace: do: enter %v: %w", n, ErrMultiThreaded)
		}
	}
	done := make(chan *outcome, 1)
	osthread.Go(func() {
		o := new(outcome)
		defer func() {
			if o.restored {
				runtime.UnlockOSThread()
			}
			done <- o
		}()
		doLocked(fn, nss, o)
	})
	o := <-done
	switch {
	case o.panicked:
		panic(o.panicVal)
	case o.goexit:
		runtime.Goexit()
	}
	return o.err
}

// outcome is what doLocked reports.
type outcome struct {
	err      error
	restored bool // the thread is back in its own namespaces
	panicked bool
	panicVal any
	goexit   bool // fn called runtime.Goexit
}

// doLocked runs fn with the calling thread, which the caller has locked,
// in nss, and puts the thread back. It fills in o even when fn panics or
// calls runtime.Goexit.
func doLocked(fn func() error, nss []*Namespace, o *outcome) {
	saved := make([]*Namespace, 0, len(nss)) // saved[i]: the thread's namespace before entering nss[i]
	defer func() {
		for _, s := range saved {
			s.Close()
		}
	}()
	restore := func() error {
		for i := len(saved) - 1; i >= 0; i-- {
			if err := saved[i].Enter(); err != nil {
				return fmt.Errorf("namespace: do: restore thread to %v (thread discarded): %w", saved[i], err)
			}
		}
		return nil
	}
	for _, n := range nss {
		cur, err := Current(n.kind)
		if err == nil {
			saved = append(saved, cur)
			err = n.Enter()
			if err != nil {
				saved = saved[:len(saved)-1]
				cur.Close()
			}
		}
		if err != nil {
			rerr := restore()
			o.restored = rerr == nil
			o.err = errors.Join(fmt.Errorf("namespace: do: %w", err), rerr)
			return
		}
	}
	returned := false
	defer func() {
		if !returned {
			if v := recover(); v != nil {
				o.panicked, o.panicVal = true, v
			} else {
				o.goexit = true
			}
		}
		rerr := restore()
		o.restored = rerr == nil
		if rerr != nil {
			o.err = errors.Join(o.err, rerr)
		}
	}()
	o.err = fn()
	returned = true
}
