// Package build builds images from Dockerfiles in-process, like `docker
// build`, with no daemon: a Builder parses the Dockerfile with BuildKit's
// own parser (github.com/moby/buildkit/frontend/dockerfile), runs each RUN
// in a berth container on a copy-on-write snapshot of the stage so far,
// writes a layer per instruction that changes the filesystem, and stores
// the image, tagged, in a layer.Store, where container can run it and
// registry can push it at once.
//
// # Instructions
//
// Every Dockerfile instruction is supported: FROM (an image in the store,
// one pulled with Builder.Registry, scratch, or an earlier stage;
// --platform only when it names the host's platform), ARG (before the
// first FROM and in a stage, with Options.BuildArgs and the predefined
// proxy arguments), ENV, LABEL, WORKDIR, USER, RUN (shell and exec form,
// heredocs), SHELL, CMD, ENTRYPOINT, EXPOSE, VOLUME, STOPSIGNAL,
// HEALTHCHECK, ONBUILD (its triggers run in builds FROM the image, and in
// stages FROM the stage, as BuildKit runs them),
// MAINTAINER, and COPY and ADD with --chown, --chmod, --from (a stage or
// an image), globs, directories and heredocs; ADD extracts a local tar
// archive (plain, gzip, bzip2 or zstd). ADD of a URL is refused with
// ErrUnsupported: fetch it in a RUN step with a network. RUN --mount,
// --network and --security, COPY --link, --parents and --exclude are
// refused the same way rather than ignored.
//
// Multi-stage builds build the stage Options.Target names (the last one
// by default) and only the stages it needs, stages that do not depend on
// each other in parallel.
//
// # RUN
//
// A RUN step runs in a container (container.Runtime) whose root filesystem
// is a fresh snapshot of the stage's state, with the stage's environment
// (ENV, and the ARGs in scope, which are not kept in the image), user,
// working directory and shell, no network unless Options.Network says
// otherwise, and Options.Resources as its limits. Its output goes to
// Options.Output and Options.Progress. A RUN that fails ends the build
// with a *StepError: the step, its instruction and line, the exit code
// and the last lines of output; its container and snapshot are removed.
//
// # Layers, history and config
//
// RUN, COPY and ADD each add one layer, and so does a WORKDIR that makes
// a missing directory (owned by USER, as BuildKit makes it; the Dockerfile
// reference says WORKDIR creates it even when nothing uses it): the
// snapshot's overlay upper directory, written as it is (layer.Store.CommitSnapshot), so the cost is
// that of the change and not of the image. The other instructions change
// only the configuration and get a history entry with empty_layer set.
// The configuration is written as Docker writes it (Healthcheck, OnBuild
// and Shell included).
//
// # Cache
//
// Steps are cached by Docker's rules: a step is a hit when its parent
// state and its instruction match, RUN with the values of the build
// arguments in scope (a changed ARG misses where it is used, not where it
// is declared; the proxy arguments count for neither), COPY and ADD with
// a checksum of their sources (the path, mode, owner, content or link
// target of each file; never its mtime), computed before anything is
// copied. COPY --from is keyed on the source stage's or image's layers
// (their chain ID) and the metadata of what it copies, which is exact but
// misses where a source stage was rebuilt into the same files. Content hashes are
// remembered per file by (inode, size, mtime, ctime), so a rebuild reads
// only the files that changed and stats the others. After a miss every
// later step of the stage is rebuilt. The cache lives in the layer store
// as GC roots (layer.Store.SetRoot, names starting with CacheRootPrefix):
// it survives restarts, GC keeps what it needs, and PruneCache drops it so
// that GC can reclaim the space. Options.NoCache builds without it.
//
// # Build context: safety contract
//
// The build context (a directory, or a tar stream unpacked with
// layer/archive's rules into a temporary directory) and the Dockerfile are
// hostile input. The builder never reads a file outside the context for
// COPY or ADD: a source that is absolute, that climbs out with "..", or
// whose path resolves through a symlink to a place outside the context is
// refused with ErrOutsideContext, before any step runs. Symlinks inside
// copied directories are copied as symlinks, never followed. Files that
// .dockerignore (or <Dockerfile>.dockerignore next to the Dockerfile)
// excludes, with Docker's own matcher, are not part of the context. What
// is written into the image goes through layer/archive's Apply, whose
// contract keeps every path inside the stage's root filesystem.
//
// The context directory must not change while the build runs; a file
// replaced meanwhile may be copied in its old or its new form.
//
// # Errors
//
// A Dockerfile that does not parse, an unknown instruction, a missing
// base image (ErrImageNotFound), a COPY source that is missing
// (ErrSourceNotFound) or outside the context (ErrOutsideContext), a
// --from naming an unknown stage, and a failing RUN end the build with an
// error that names the Dockerfile line (*StepError for a step). A failed
// build tags nothing and leaves no container, mount, active snapshot or
// temporary directory behind; the steps before the failing one stay in
// the cache (with NoCache, their layers are unnamed and the next
// layer.Store.GC removes them).
//
// A process killed during a build leaves what the next build on the
// store cleans up: the active snapshots of its steps carry its owner
// label (layer.LabelOwner) and go at the next Open, Sweep or GC of the
// store; the host mount of the step that was running (a step's snapshot
// is mounted under the store's mounts directory while it runs), its
// mount point and the empty cgroup of its RUN container go at the start
// of the next Build on the store, in any process.
package build
