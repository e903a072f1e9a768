// Package container runs isolated containers in the calling process's
// control: no daemon, no shim. It feels like os/exec: a Spec says what to
// run and how to isolate and limit it, Create checks it and makes the
// cgroup, Start runs it, Wait returns its ExitStatus, and Delete removes
// everything it had.
//
// Isolation and limits follow Docker's defaults unless the Spec says
// otherwise: new mount, PID, UTS, IPC and network namespaces (and cgroup
// namespace on cgroup v2), a pivot_root into the rootfs with /proc, a
// minimal /dev, read-only /sys, masked and read-only paths as runc has
// them, Docker's default capability set, no_new_privs. An OCI runtime
// spec (runc's config.json) converts with FromOCI or LoadBundle.
//
// PID 1 of every container is berth's init, the embedding program
// re-executed from a sealed copy of its executable (see the berth package
// documentation). It stays outside the container's cgroup, like a shim:
// its threads and memory do not count against the container's limits,
// and it places each process it starts into the cgroup before that
// process runs. When the embedding process dies, init dies with it and
// takes the container along.
//
// Programs that import this package need no init hook: the package's
// init function recognises a re-executed init, before main (or a test
// binary's TestMain) runs.
package container
