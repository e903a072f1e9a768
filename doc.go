// Package berth is an embeddable, daemonless container library: a Go
// program imports it and, in its own process, runs isolated containers
// under Linux namespaces and cgroup limits. There is no daemon, no
// containerd and no shim process.
//
// The packages, from the bottom up (each depends only on those above it
// in this list):
//
//   - [github.com/berthlabs/berth/namespace]: namespace kinds, clone
//     flags, ID maps, joining, persistent (bind-mounted) and new network,
//     IPC and UTS namespaces.
//   - [github.com/berthlabs/berth/cgroup]: resource limits, live
//     updates, stats, freeze and kill, OOM events, over cgroup v1, v2 and
//     hybrid hosts behind one API.
//   - [github.com/berthlabs/berth/layer]: image and layer storage: each
//     layer unpacked once per chain, copy-on-write root filesystems for
//     containers, commit, garbage collection. Under it,
//     [github.com/berthlabs/berth/layer/content] (blobs and tagged images
//     in the OCI image-layout format, docker save and load),
//     [github.com/berthlabs/berth/layer/archive] (layer tarballs applied
//     as hostile input, and diffs) and
//     [github.com/berthlabs/berth/layer/snapshot] (the overlayfs and copy
//     snapshotters behind one contract, whose shared suite is
//     [github.com/berthlabs/berth/layer/snapshot/snapshottest]).
//   - [github.com/berthlabs/berth/registry]: pull into and push from a
//     layer store over the OCI distribution protocol; tag, list, inspect,
//     delete, copy; auth, TLS, retries, progress.
//   - [github.com/berthlabs/berth/container]: the runtime. A Spec (or an
//     OCI runtime spec) becomes a Container with Create, Start, Wait,
//     Signal, Stop, Kill, Exec, Pause, Resume, Stats, Update, Commit and
//     Delete, in the style of os/exec; Spec.Image runs an image from a
//     layer store. [github.com/berthlabs/berth/container/network] gives
//     containers Docker's networks: bridges with embedded DNS, published
//     ports, egress, CNI, and dialing into a container's namespace.
//     [github.com/berthlabs/berth/container/containertest] gives tests
//     and examples a busybox root filesystem.
//   - [github.com/berthlabs/berth/orchestrate]: Kubernetes' workloads in
//     your process: Pods, ReplicaSets, Deployments, Jobs, ConfigMaps and
//     Secrets kept converged by controllers over a Store and a Runtime.
//     The implementations live beside it, named for where they come
//     from: [github.com/berthlabs/berth/orchestrate/memstore] (the
//     in-memory Store), [github.com/berthlabs/berth/orchestrate/containerruntime]
//     (the Runtime on berth containers) and
//     [github.com/berthlabs/berth/orchestrate/fakeruntime] (a fake Runtime
//     for controller tests); [github.com/berthlabs/berth/orchestrate/storetest]
//     is the Store conformance suite, and
//     [github.com/berthlabs/berth/orchestrate/reconcile] the generic
//     reconcile loop and work queue underneath.
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
