module github.com/berthlabs/berth

go 1.26.8

require (
	github.com/opencontainers/runtime-spec v1.3.0
	golang.org/x/sys v0.49.0
)
