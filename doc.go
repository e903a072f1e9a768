// Package berth is an embeddable, daemonless container library: a Go
// program imports it and, in its own process, runs isolated containers
// under Linux namespaces and cgroup limits. There is no daemon, no
// containerd and no shim process.
//
// The packages, from the bottom up:
//
//   - [github.com/berthlabs/berth/namespace]: namespace kinds, ID maps,
//     joining, persistent and network namespaces.
//   - [github.com/berthlabs/berth/cgroup]: resource limits, stats, freeze
//     and kill, over cgroup v1, v2 and hybrid hosts behind one API.
//   - [github.com/berthlabs/berth/container]: the runtime. A Spec (or an
//     OCI runtime spec) becomes a Container with Create, Start, Wait,
//     Signal, Stop, Kill, Exec, Pause, Resume, Stats and Delete, in the
//     style of os/exec.
//
// # The container init
//
// A container's PID 1 is berth's own small init: a static Go program,
// embedded in the container package for amd64 and arm64 and run from a
// sealed memfd (so nothing in a container can overwrite a host binary
// through /proc/PID/exe). On other architectures the embedding program is
// re-executed from a sealed copy of its executable instead, and the
// container package recognises that in its package init function. Either
// way a program, or a go test binary, needs no hook of its own and builds
// with CGO_ENABLED=0. init builds the root filesystem, starts
// the workload with its credentials and capabilities, reaps zombies,
// forwards signals, starts Exec'd processes from inside, and dies with
// the embedding process, taking the container with it.
package berth
