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
// ErrVolumeNotFound, ErrVolumeInUse and ErrNoCgroup, and context errors
// from the calls that take a context.
//
// # Rootless containers
//
// A program running as an unprivileged user (any effective UID but 0)
// gets containers too, as with rootless Docker and podman. What changes:
//
//   - Every container has a new user namespace: asking for the host's is
//     an error. With UIDMappings and GIDMappings left nil, the user's own
//     UID and GID are root inside, followed, when the user has
//     subordinate IDs in /etc/subuid and /etc/subgid, by the first range
//     of each as IDs 1 and up (namespace.RootlessIDMaps); such maps are
//     written by newuidmap and newgidmap (Debian's uidmap package), which
//     must then be installed (namespace.ErrNoIDMapHelper otherwise).
//     Maps given in the spec may use only the user's own IDs and its
//     subordinate ones (namespace.ErrNoSubIDs otherwise). Without
//     subordinate IDs the namespace maps that single UID and GID: only
//     root exists inside (another Process.User fails at Start, naming the
//     ID that is not mapped), setgroups(2) is denied there (the kernel's
//     rule for an unprivileged map), so processes keep the host user's
//     supplementary groups (shown as nogroup) and
//     Process.AdditionalGroups is an error.
//   - Networks need root (bridges, veths and NAT rules on the host): an
//     unprivileged container has network none (its loopback) or the
//     host's network namespace. Spec.Ports work without networks: each
//     host port is relayed by this process to that port on the
//     container's loopback, as RootlessKit's builtin port driver does.
//     Container.Dial and PortForward work too. This process may not
//     enter a network namespace that the container's user namespace owns
//     (setns needs CAP_SYS_ADMIN in its own user namespace as well), so
//     for all three the container's init makes the sockets inside and
//     passes them out over its control socket.
//   - cgroups: an unprivileged user gets a cgroup only where one is
//     delegated to it. On a cgroup v2 host whose systemd delegates the
//     user's subtree (user@UID.service with Delegate=yes), containers get
//     cgroups below it, in berth/ID. Runtime.CgroupParent, when set,
//     names the delegated cgroup to use instead (on v1, a cgroup the
//     administrator made in each hierarchy and chowned to the user).
//     Elsewhere (cgroup v1 and hybrid hosts without such a cgroup, or no
//     delegation) Create fails with ErrNoCgroup, and says why, unless the
//     Runtime's NoCgroups is set: then containers have no cgroup at all.
//     A spec with any Resources is still refused (limits are never
//     dropped silently), the PID namespace must be new, Kill kills the
//     container's init (the kernel then kills the rest of its PID
//     namespace), Top lists the processes of that PID namespace, and
//     Pause, Resume, Update and Stats fail with ErrNoCgroup.
//   - Image containers need a layer store the user can write: open one
//     in RootlessDataDir()/images with layer.Open. Its snapshots are
//     overlayfs ones, mounted by the container's init inside its user
//     namespace (Linux 5.11 and later), else copies. It unpacks layers
//     without chown(2). When the user has subordinate IDs and the
//     snapshots are overlayfs ones, berth's init, run as a helper in a
//     user namespace that maps them, then gives the files their image
//     owners (a layer's UID u is the host's subordinate UID start+u-1;
//     an owner beyond the range fails the unpack). Otherwise every file
//     is the user's on the host and root's inside, whatever owner its
//     layers give it, as with rootless podman's ignore_chown_errors.
//     What containers wrote as subordinate IDs is removed with their
//     snapshots by the same helper. Named volumes default to
//     RootlessDataDir()/volumes.
//
// Root's containers are unchanged by any of this.
package container
