// Package registry pulls images from container registries into berth's
// layer store and pushes images from it, in-process, over the OCI
// distribution protocol (go-containerregistry does authentication and
// the registry-level operations).
//
// A Client holds the options: credentials (Docker's config.json and
// credential helpers by default, or explicit basic or bearer
// credentials), TLS roots, plain-HTTP hosts, download concurrency,
// retries and a progress callback. Every method also takes options that
// override the client's for that call. The zero Client is usable, with
// every default, as http.Client's is.
//
//	c := registry.New(registry.WithProgress(func(p registry.Progress) { ... }))
//	img, err := c.Pull(ctx, "alpine:3.19", store)
//
// Pull and Push take the remote reference, then the store, with options
// last; Push also names the image in the store to send:
//
//	_, err = c.Push(ctx, "registry.example.com/team/app:1", store, "local/app:dev",
//		registry.WithDestinations("registry.example.com/team/app:latest"))
//
// Pull verifies every blob against its digest before it enters the store,
// skips blobs the store has, downloads layers with a concurrency limit,
// retries transient failures (connection errors, truncated or corrupted
// downloads, 408, 429 and 5xx answers, a registry that stops sending)
// with backoff, resuming a download where the registry allows it, and
// unpacks each layer as soon as it and the layers below it are in,
// while later layers still download. A name is tagged only once
// everything it needs is stored, so a cancelled or failed pull leaves no
// partial image (complete blobs it fetched stay, and GC reclaims them).
//
// Plain HTTP is used only for hosts given to WithPlainHTTP and for
// loopback registries (which are tried over HTTPS first).
package registry
