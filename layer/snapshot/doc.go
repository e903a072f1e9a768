// Package snapshot makes copy-on-write root filesystems for containers:
// the contract of containerd's snapshotters in a smaller form.
//
// A Snapshotter keeps snapshots in a root directory, which other
// Snapshotters, in this process and others, may share. An image is
// unpacked into a chain of committed snapshots, one per layer, and a
// container runs on an active snapshot prepared on the top one:
//
//	sn, err := snapshot.New("/var/lib/berth/snapshots")
//	if err != nil { ... }
//	defer sn.Close()
//
//	parent := ""
//	for _, l := range layers {
//		mounts, err := sn.Prepare(ctx, "extract-"+l.ChainID, parent)
//		if err != nil { ... }
//		snapshot.MountAll(mounts, dir)
//		// apply the layer's changes in dir
//		snapshot.Unmount(dir)
//		if err := sn.Commit(ctx, l.ChainID, "extract-"+l.ChainID); err != nil { ... }
//		parent = l.ChainID
//	}
//	mounts, err := sn.Prepare(ctx, "container-1", parent) // the container's rootfs
//
// The Snapshotter interface is the specification: keys and names, kinds,
// parents, what Remove refuses, and errors. There are two implementations.
// Overlay (overlayfs) prepares a snapshot in constant time and keeps only
// each layer's changes; Copy copies trees (cloning file data where the
// filesystem has reflinks) and works on any filesystem. New picks Overlay
// where it works.
//
// A snapshot is mounted with the Mounts that Prepare, View and Mounts
// return: plain data that Mount, MountAll and Unmount apply with mount(2).
// Mounting needs root (CAP_SYS_ADMIN); so does Overlay. Copy's Prepare,
// Commit and Remove do not need root, but copying files owned by others
// or device nodes does.
//
// Metadata is one small JSON file per snapshot, replaced atomically, so a
// process killed at any point leaves a usable store; a later open
// removes what the crash left once its owner is dead. Operations lock only
// the snapshots they work on (an flock per snapshot, so processes sharing
// a root take turns on one snapshot and never wait on others). Commit makes the snapshot's record durable, not the files
// written into it: whoever writes a layer (an unpacker, say) syncs it if it
// must survive a power failure.
package snapshot
