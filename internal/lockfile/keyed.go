package lockfile

import (
	"context"
	"sync"
)

// Keyed is a lock per key within one process, made when first wanted and
// dropped when nobody holds or waits for it; waiting for one can be
// cancelled. The zero value is ready to use.
type Keyed[K comparable] struct {
	mu sync.Mutex
	m  map[K]*keyLock
}

type keyLock struct {
	ch   chan struct{}
	refs int
}

// Lock takes the lock of key, or gives up when ctx is done. unlock may be
// called more than once.
func (k *Keyed[K]) Lock(ctx context.Context, key K) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = make(map[K]*keyLock)
	}
	l := k.m[key]
	if l == nil {
		l = &keyLock{ch: make(chan struct{}, 1)}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	select {
	case l.ch <- struct{}{}:
	case <-ctx.Done():
		k.drop(key, l)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.ch
			k.drop(key, l)
		})
	}, nil
}

func (k *Keyed[K]) drop(key K, l *keyLock) {
	k.mu.Lock()
	l.refs--
	if l.refs == 0 {
		delete(k.m, key)
	}
	k.mu.Unlock()
}
