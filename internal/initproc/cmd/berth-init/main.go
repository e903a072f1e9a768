// Command berth-init is a container's PID 1. The container package embeds
// it (see container/initbin) and starts it; it is not meant to be run by
// hand.
package main

import "github.com/berthlabs/berth/internal/initproc"

func main() { initproc.Main() }
