// Package memhook lets package filestore build on memstore: memstore
// sets New when it is initialised, and filestore calls it. It holds
// nothing else.
package memhook

import "github.com/berthlabs/berth/orchestrate"

// New, set by package memstore, returns a memstore holding objs (kept
// as they are: metadata and versions) at revision rev, whose history
// begins there, and which calls onWrite with every write before making
// it, under the store's lock: an error from onWrite refuses the write.
var New func(objs []orchestrate.Object, rev uint64, onWrite func(typ orchestrate.WatchEventType, obj orchestrate.Object) error) orchestrate.Store
