// Package reconcile runs reconcile loops: a Reconciler is called with the
// keys of a work queue until what each key names is as it should be.
//
// It has the contract of controller-runtime's reconcile package and the
// guarantees of client-go's workqueue, without Kubernetes types: a key is
// any comparable value.
//
//   - Queue stores a key once however often it is added before it is
//     processed, never hands a key to two workers at once (an Add while
//     it is processed queues it again after Done), and delays keys by a
//     deadline (AddAfter) or by a per-key exponential backoff and an
//     overall token bucket (AddRateLimited).
//   - Controller runs a Reconciler over a Queue with workers. An error
//     retries the key with backoff; an error marked Terminal is reported
//     but not retried; a panic is recovered, reported and retried;
//     Result.RequeueAfter schedules the key again and resets its backoff.
//     Keys come from Add, AddAfter, Watch and Trigger (channels) and a
//     periodic resync.
//   - Clock is the time source of both. With a FakeClock and
//     Controller.RunUntilIdle a test controls time and runs the loop to a
//     fixed point, deterministically.
//
// Run stops taking work when its context ends, cancels the contexts of
// the reconciles in flight and waits for them to return.
package reconcile
