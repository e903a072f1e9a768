// Package content is berth's image store on disk: a content-addressed blob
// store and a set of named images, kept in the OCI image-layout format so
// that skopeo, umoci, crane and go-containerregistry's layout package can
// read it.
//
// A store is a directory:
//
//	oci-layout             {"imageLayoutVersion":"1.0.0"}
//	index.json             one entry per name: a manifest or index descriptor
//	blobs/sha256/<hex>     every blob, named by its digest
//
// Blobs are written to a temporary file in their directory, checked against
// their digest and size, synced, and renamed into place, so a blob is either
// absent or complete under its digest name, even if the writing process is
// killed. Writers of the same digest take turns, in one process and across
// processes (an flock on blobs/ALG/.lock-HEX, there while it is held): the
// first writes, the others wait and then see it exists, so a blob is
// downloaded once however many processes pull it. Writers of different
// digests never wait for each other. index.json is replaced
// atomically under a lock (an flock on the store directory, so several
// processes may share a store); blob writes never take that lock. Open
// removes the temporary files that killed writers left behind.
//
// Images are named by normalized references (see ParseReference). The full
// name is the index.json entry's "org.opencontainers.image.ref.name"
// annotation, the OCI convention that skopeo and umoci look up, so names of
// different repositories never collide:
//
//	skopeo inspect oci:/var/lib/berth:docker.io/library/busybox:latest
//	umoci unpack --image /var/lib/berth:docker.io/library/busybox:latest bundle
//
// and it is also kept in AnnotationName. Manifest follows an index to the
// manifest of a platform; References and GC walk the graph from names to
// blobs.
//
// Images move in and out of a store as OCI layouts (ImportLayout,
// ExportLayout) and as `docker save` archives (Load, Save). Everything read
// from outside is verified against its digest before it is named, and a
// failed import leaves the store as it was: it removes the blobs it added.
// A caller that puts one of those same blobs at that moment loses it, as
// with GC; name what you put, or pass it to GC in keep.
package content
