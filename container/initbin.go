package container

// The container init (internal/initproc, built by
// internal/initproc/cmd/berth-init) is embedded as a small static binary
// per architecture and run from a sealed memfd. Starting a container then
// costs the start of that program, not of the embedding one (a go test
// binary can be 10 MB with dozens of package initialisers). On other
// architectures berth re-executes the embedding program instead, which
// works the same, only slower to start.
//
// After changing internal/initproc, run `go generate ./container` (or
// `make init`); TestEmbeddedInitUpToDate fails while the binaries are
// stale.

//go:generate sh -c "go env GOVERSION > initbin/GOVERSION"
//go:generate sh -c "CGO_ENABLED=0 GOOS=linux GOARCH=amd64 go build -trimpath -ldflags='-s -w -buildid=' -o initbin/berth-init-linux-amd64 ../internal/initproc/cmd/berth-init"
//go:generate sh -c "CGO_ENABLED=0 GOOS=linux GOARCH=arm64 go build -trimpath -ldflags='-s -w -buildid=' -o initbin/berth-init-linux-arm64 ../internal/initproc/cmd/berth-init"
