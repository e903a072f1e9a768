package container

import _ "embed"

//go:embed initbin/berth-init-linux-amd64
var embeddedInit []byte
