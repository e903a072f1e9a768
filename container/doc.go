// Package container runs isolated containers under the calling process's
// control: no daemon, no shim. It feels like os/exec: a Spec says what to
// run and how to isolate and limit it, Runtime.Create checks it and makes
// the cgroup, Container.Start runs it, Wait returns its ExitStatus, and
// Delete removes everything it had.
//
// A Runtime owns a set of containers (Get and List find them by ID) and
// the cgroup they live under; its zero value is ready to use, and the
// package-level Create uses the Runtime Default. A Container is driven
// with Start, Wait (or Done), Signal, Stop, Kill, Pause and Resume, Exec
// (another process inside it, like `docker exec`), Stats and Update (its
// cgroup), and Delete. FromOCI and LoadBundle convert an OCI runtime spec
// (runc's config.json), refusing what berth cannot do; Container.Commit
// records an image container's changes as a new image in the layer
// store. Container.Logs (and Logs, for a log file of any process) reads
// a container's log like `docker logs`, following it, with since, until,
// tail and timestamps; CopyTo and CopyFrom copy tar streams into and out
// of a container like `docker cp`; Top lists its processes like `docker
// top`. Named volumes (CreateVolume, Volume, Volumes, RemoveVolume, and
// Mounts of type VolumeMount) are shared between containers and outlive
// them, like `docker volume`. Process.TTY runs the main process or an
// Exec'd one on a terminal of the container's own devpts, like `docker
// run -it` and `docker exec -it`; Container.Resize and ExecProcess.Resize
// change its window size. The caller's own terminal is the caller's:
// berth never puts it in raw mode.
//
// Isolation and limits follow Docker's defaults unless the Spec says
// otherwise: new mount, PID, UTS, IPC and network namespaces (and cgroup
// namespace on cgroup v2), a pivot_root into the rootfs with /proc, a
// minimal /dev, read-only /sys, masked and read-only paths as runc has
// them, Docker's default capability set, no_new_privs, and Docker's
// default seccomp profile for those capabilities (Spec.Seccomp: a
// profile of the caller's in the OCI or Docker form, or Unconfined;
// container/seccomp compiles profiles to BPF in pure Go). init installs
// the filter on the thread that starts each process, so its own setup is
// never filtered.
//
// PID 1 of every container is berth's init (internal/initproc): a small
// static Go program, built for amd64 and arm64 and embedded in this
// package, that runs from a sealed memfd, so that nothing in a container
// can overwrite a host binary through /proc/PID/exe. Starting a container
// costs the start of that small program, not of the embedding one. On
// other architectures the embedding program itself is copied into a
// sealed memfd and re-executed as the init; the package's init function
// recognises that re-execution before main (or a test binary's TestMain)
// runs, so programs need no init hook either way.
//
// The init stays outside the container's cgroup, like a shim: its
// threads and memory do not count against the container's limits, and
// it places each process it starts into the cgroup before that process
// runs. It builds the root filesystem, sets host name, sysctls and
// rlimits, starts the main process and Exec'd ones with their
// credentials and capabilities, reaps zombies and forwards signals. When
// the embedding process dies, init dies with it and takes the container
// along.
//
// Errors can be matched with errors.Is: ErrInvalidSpec for a bad Spec,
// ErrExists, ErrNotFound, ErrDeleted, ErrNotRunning, ErrNotPaused,
// ErrAlreadyStarted, ErrInitUnavailable, ErrNoTTY, ErrVolumeExists,
// ErrVolumeNotFound and ErrVolumeInUse, and context errors from the
// calls that take a context. Running containers needs root.
package container
