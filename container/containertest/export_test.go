package containertest

import "context"

// Live returns the IDs of the containers of this process's sandboxes
// that are not removed yet.
func Live() []string {
	caches.Lock()
	defer caches.Unlock()
	var ids []string
	for _, c := range caches.byDir {
		for _, ctr := range c.rt.List() {
			ids = append(ids, ctr.ID())
		}
	}
	return ids
}

// Sweep removes what dead processes' sandboxes left, as the first use of
// the cache in a process does.
func Sweep() error {
	c, err := cacheFor()
	if err != nil {
		return err
	}
	c.sweep(context.Background(), c.dir, true)
	return nil
}

// HostLink returns the host's end of this process's network hub, once a
// network was made.
func HostLink() string { return manager().HostLink() }
