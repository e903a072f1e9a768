package main

import (
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
	"k8s.io/client-go/util/workqueue"
)

// queue is what the loads use of a work queue: the methods that berth's
// reconcile.Queue and client-go's TypedRateLimitingInterface share.
type queue[K comparable] interface {
	Add(k K)
	AddAfter(k K, d time.Duration)
	AddRateLimited(k K)
	Forget(k K)
	NumRequeues(k K) int
	Get() (k K, shutdown bool)
	Done(k K)
	Len() int
	ShutDown()
	ShutDownWithDrain()
}

// impl names a queue implementation and makes queues of it.
type impl struct {
	name string
	// newInt and newString make a queue whose AddRateLimited backs off per
	// key from 1µs to 1ms, with no overall limit (the default 10 QPS
	// bucket would turn a throughput test into a test of the bucket).
	newInt    func() queue[int]
	newString func() queue[string]
}

var impls = []impl{

	{
		name:      "berth",
		newInt:    func() queue[int] { return newBerth[int]() },
		newString: func() queue[string] { return newBerth[string]() },
	},
	{
		name:      "client-go",
		newInt:    func() queue[int] { return newClientGo[int]() },
		newString: func() queue[string] { return newClientGo[string]() },
	},
}

func newBerth[K comparable]() queue[K] {
	return reconcile.NewQueue[K](reconcile.QueueOptions{
		Backoff:   reconcile.Backoff{Base: time.Microsecond, Max: time.Millisecond, Jitter: -1},
		RateLimit: reconcile.RateLimit{QPS: -1},
	})
}

func newClientGo[K comparable]() queue[K] {
	return workqueue.NewTypedRateLimitingQueue[K](
		workqueue.NewTypedItemExponentialFailureRateLimiter[K](time.Microsecond, time.Millisecond))
}
