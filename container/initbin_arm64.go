package container

import _ "embed"

//go:embed initbin/berth-init-linux-arm64
var embeddedInit []byte
