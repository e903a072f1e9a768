// Package archive applies and produces OCI (and Docker) layer tarballs.
//
// [Apply] unpacks a layer, plain, gzip or zstd (told apart by their magic
// bytes), onto a directory that holds the layers below it, and computes
// the layer's DiffID on the way. [Diff] writes the layer that turns one
// directory tree into another (the copy snapshotter's commit), and
// [DiffOverlay] the layer that an overlayfs upper directory holds.
//
// # Safety contract
//
// A layer is hostile input. Apply never creates, changes or removes
// anything outside dir, whatever the tar says:
//
//   - Every path is resolved by the kernel inside dir, with openat2(2) and
//     RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV on a
//     descriptor of dir. A symlink in the tree, absolute or relative,
//     resolves as it would inside a container whose root is dir: "/" and
//     ".." stop at dir. /proc-style magic links are refused, and so is
//     crossing into another mount below dir.
//   - The last component of a path is only ever created, changed or
//     removed with the *at system calls on a descriptor of its parent
//     directory, without following it if it is a symlink. Symlinks from
//     the layer are created, never followed when their own metadata is
//     set; an existing file is unlinked before it is replaced, never
//     written through.
//   - Entry names are confined or refused: a leading "/" is dropped (the
//     name is taken relative to dir, as GNU tar does), and a name with a
//     ".." component anywhere is refused. Hardlink targets obey the same
//     rule, must exist inside dir already, and may not be directories.
//     A refusal is an [*EntryError] that names the entry and matches
//     [ErrUnsafe] with [errors.Is] (see the example below the list).
//   - Device nodes are refused unless [Options].AllowDevices is set
//     (fifos are always allowed). Unknown entry types are refused with
//     [errors.ErrUnsupported].
//   - [Options].MaxFiles and [Options].MaxBytes bound the work: a header
//     that claims more data than the budget fails before anything is
//     allocated or written, and a header that claims more than the stream
//     holds fails when the stream ends. Memory use does not depend on
//     the sizes a header claims.
//   - Only these extended attributes are applied: user.*, trusted.* and
//     security.* (security.capability included), except the overlayfs
//     ones (trusted.overlay.*, user.overlay.*: a layer could otherwise
//     forge opaque directories, redirects or metacopy files) and
//     security.selinux (labels are the host's policy). All others, such
//     as system.* ACLs, are ignored. An allowed attribute that the
//     filesystem does not support, or that the caller may not set
//     (trusted.* and security.capability without privilege), is skipped.
//
// A refused entry reads:
//
//	archive: entry "../etc/passwd": path escapes the layer root
//
// On error, dir is left partly applied: callers unpack into a directory
// they discard on failure (a snapshot that is not committed). Apply does
// not sync what it writes; a caller that must survive a power failure
// syncs the tree before it records the layer as unpacked.
//
// # Layer semantics
//
// Apply follows the OCI image specification and Docker: an entry replaces
// an existing non-directory at its path; a directory entry over an
// existing directory merges with it and updates its metadata; any entry
// over a directory that is not itself a directory removes that tree
// first. Symlinks in parent components are followed inside dir, so a
// layer's "lib/x" lands in "usr/lib/x" when a lower layer made
// "lib -> usr/lib". Whiteouts (".wh.NAME") and opaque markers
// (".wh..wh..opq") only hide what the layers below have: an entry that
// the same layer unpacked is never removed by them, wherever in the tar
// the whiteout stands. Other ".wh..wh." names (AUFS metadata) are
// skipped. Directory modes and times are set after the whole layer is
// written, so read-only directories work.
package archive
