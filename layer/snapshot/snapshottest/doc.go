// Package snapshottest checks implementations of snapshot.Snapshotter
// against the contract written in that interface's doc comment, as
// containerd's snapshots/testsuite does for its snapshotters. berth's own
// Overlay and Copy snapshotters run it; a Snapshotter of yours (on a
// filesystem with native snapshots, say, or a remote store) runs it from
// its tests the same way:
//
//	func TestMySnapshotter(t *testing.T) {
//		snapshottest.Run(t, func(root string) (snapshot.Snapshotter, error) {
//			return mysnap.Open(root)
//		})
//	}
//
// Run needs root, as mounting does. Tree and WriteFiles are the helpers
// the suite checks and fills mounted snapshots with, for tests of your
// own.
package snapshottest
