//go:build !amd64 && !arm64

package container

// No embedded init for this architecture: the embedding program is
// re-executed as the init.
var embeddedInit []byte
