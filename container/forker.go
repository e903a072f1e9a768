package container

import (
	"runtime"
	"sync"
)

// A child's Pdeathsig fires when the thread that forked it ends, not the
// process. Go ends a thread when a goroutine locked to it exits, so a
// caller that starts a container from such a goroutine would have it
// killed soon after. Container inits are therefore forked from a few
// threads of berth's own that live as long as the process.

const forkThreads = 4

var (
	forkOnce sync.Once
	forkReqs chan func()
)

// onForkThread runs fn on one of berth's long-lived, locked threads.
func onForkThread(fn func() error) error {
	forkOnce.Do(func() {
		forkReqs = make(chan func())
		for i := 0; i < forkThreads; i++ {
			go func() {
				runtime.LockOSThread() // never unlocked: the thread lives on
				for f := range forkReqs {
					f()
				}
			}()
		}
	})
	done := make(chan error, 1)
	forkReqs <- func() { done <- fn() }
	return <-done
}
