package containertest

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
