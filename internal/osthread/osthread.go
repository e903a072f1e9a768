// Package osthread starts goroutines locked to OS threads other than the
// process's main thread, for code that changes its thread's kernel state
// (unshare(2) of the mount namespace or of CLONE_FS, setns(2)).
//
// Such a goroutine either puts its thread back as it found it and
// unlocks it, or ends while still locked: the Go runtime then ends the
// thread too, and the changed state goes with it. The main thread is the
// exception. The runtime cannot end it, so it parks it for the rest of
// the process's life, still in the changed state. And the main thread is
// the task that /proc/self names: /proc/self/mountinfo, /proc/self/ns/*,
// /proc/self/cwd and /proc/self/net would go on describing the parked
// thread's private namespace, frozen, instead of the process's, for
// berth and for the program that embeds it.
//
// In a Go program the main thread runs goroutines like any other once
// main has started, and a fresh goroutine often lands on it: the first
// goroutine a blocked main starts usually does.
package osthread

import (
	"runtime"

	"golang.org/x/sys/unix"
)

// Go starts fn on a new goroutine locked to an OS thread that is not the
// process's main thread, and returns at once. fn runs with the lock
// held: it calls [runtime.UnlockOSThread] to give back a thread it left
// as it found it, or returns still locked to end the thread with the
// goroutine.
//
// When the goroutine starts on the main thread, it keeps that thread
// locked (so the scheduler runs nothing else there) while fn runs on
// another goroutine, which therefore starts elsewhere; then it unlocks
// the main thread, unchanged, and ends.
func Go(fn func()) {
	go func() {
		runtime.LockOSThread()
		if !OnMainThread() {
			fn()
			return
		}
		done := make(chan struct{})
		Go(func() {
			defer close(done)
			fn()
		})
		<-done
		runtime.UnlockOSThread()
	}()
}

// OnMainThread reports whether the calling goroutine runs on the
// process's main thread (the thread group's leader, whose thread ID is
// the process ID). Only a goroutine locked to its thread
// ([runtime.LockOSThread]) can rely on the answer staying true.
func OnMainThread() bool {
	return unix.Gettid() == unix.Getpid()
}
