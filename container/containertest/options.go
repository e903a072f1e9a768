package containertest

import (
	"io/fs"
	"maps"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/registry"
)

// An Option configures a sandbox (see Run).
type Option func(*config)

type config struct {
	name       string
	env        []string
	cmd        []string
	entrypoint []string
	files      []File
	mounts     []container.Mount
	resources  *cgroup.Resources
	user       string
	labels     map[string]string
	network    *Network
	aliases    []string
	waits      []WaitStrategy
	timeout    time.Duration
	pull       []registry.Option
	specFuncs  []func(*container.Spec)
	logLines   int
}

// DefaultStartupTimeout bounds Run's wait for a sandbox to be ready when
// WithStartupTimeout does not say otherwise.
const DefaultStartupTimeout = 60 * time.Second

// DefaultLogLines is how many of a sandbox's last log lines a failing
// test and a wait's timeout error show.
const DefaultLogLines = 30

// WithName names the sandbox: its hostname, and the name the other
// sandboxes on its network (WithNetwork) reach it by. The default is the
// image's repository's last component ("redis" for
// docker.io/library/redis:7). The container's ID is unique and is not
// the name, so parallel tests in many processes may use the same names.
func WithName(name string) Option { return func(c *config) { c.name = name } }

// WithEnv adds environment variables, "KEY=value", to the image's
// (docker run -e).
func WithEnv(kv ...string) Option {
	return func(c *config) { c.env = append(c.env, kv...) }
}

// WithCmd replaces the image's CMD: the arguments given to its
// entrypoint, or the command when it has none.
func WithCmd(args ...string) Option { return func(c *config) { c.cmd = args } }

// WithEntrypoint replaces the image's ENTRYPOINT and drops its CMD
// (docker run --entrypoint); WithCmd gives the arguments.
func WithEntrypoint(args ...string) Option { return func(c *config) { c.entrypoint = args } }

// File is a file or directory tree put into a sandbox before its process
// starts. Exactly one of Content and HostPath is set.
type File struct {
	// Target is the absolute path in the sandbox.
	Target string
	// Content is the file's content.
	Content []byte
	// HostPath is a file or directory of the host to copy (a directory
	// with everything under it: modes, owners, symlinks). The sandbox
	// gets a copy: what it writes does not reach the original.
	HostPath string
	// Mode is the file's permission bits; zero means 0644 for Content
	// and the source's mode for HostPath.
	Mode fs.FileMode
	// UID and GID own the file (and, for a directory, the directory
	// itself); -1 keeps the source's owner (root for Content).
	UID, GID int
}

// WithFiles puts files into the sandbox (testcontainers' Files, a
// `docker cp` before `docker start`). Each is a private copy bind-mounted
// on its target, so the image need not have the target's directory.
func WithFiles(files ...File) Option {
	return func(c *config) { c.files = append(c.files, files...) }
}

// WithFile puts a file with content and mode at target, owned by root.
func WithFile(target string, content []byte, mode fs.FileMode) Option {
	return WithFiles(File{Target: target, Content: content, Mode: mode, UID: -1, GID: -1})
}

// WithMounts adds mounts (docker run -v, --mount): binds of host paths,
// tmpfs, volumes.
func WithMounts(m ...container.Mount) Option {
	return func(c *config) { c.mounts = append(c.mounts, m...) }
}

// WithTmpfs mounts a tmpfs on target, with mount options such as
// "size=64m" (docker run --tmpfs).
func WithTmpfs(target string, options ...string) Option {
	return WithMounts(container.Mount{Type: container.Tmpfs, Target: target, Options: options})
}

// WithResources sets the sandbox's resource limits (memory, CPU, pids).
func WithResources(r cgroup.Resources) Option {
	return func(c *config) { c.resources = &r }
}

// WithUser runs the sandbox's process as user ("name", "uid",
// "uid:gid"), instead of the image's USER.
func WithUser(user string) Option { return func(c *config) { c.user = user } }

// WithLabels adds labels to the sandbox (docker run --label), returned by
// Sandbox.Labels.
func WithLabels(labels map[string]string) Option {
	return func(c *config) {
		if c.labels == nil {
			c.labels = map[string]string{}
		}
		maps.Copy(c.labels, labels)
	}
}

// WithNetwork attaches the sandbox to n, where the other sandboxes on n
// reach it by its name and by aliases (docker run --network
// --network-alias). Without a network a sandbox has only its loopback;
// Dial, HTTPClient and Endpoint reach it either way.
func WithNetwork(n *Network, aliases ...string) Option {
	return func(c *config) { c.network, c.aliases = n, append(c.aliases, aliases...) }
}

// WaitFor makes Run wait until each strategy says the sandbox is ready,
// in order (AllOf runs them at once).
func WaitFor(w ...WaitStrategy) Option {
	return func(c *config) { c.waits = append(c.waits, w...) }
}

// WithStartupTimeout bounds the time from Run's start until the sandbox
// is ready: the image brought into the cache, the container started and
// the wait strategies satisfied. The default is DefaultStartupTimeout.
func WithStartupTimeout(d time.Duration) Option { return func(c *config) { c.timeout = d } }

// WithPullOptions passes options to the registry client that pulls an
// image the cache does not have (credentials, TLS, ...).
// Registries on loopback are spoken to over plain HTTP without options.
func WithPullOptions(opts ...registry.Option) Option {
	return func(c *config) { c.pull = append(c.pull, opts...) }
}

// WithSpec lets fn change the container's spec after the options above
// made it, for what they do not cover (capabilities, sysctls, rlimits).
func WithSpec(fn func(*container.Spec)) Option {
	return func(c *config) { c.specFuncs = append(c.specFuncs, fn) }
}

// WithLogLines sets how many of the sandbox's last log lines a failing
// test and a wait's error show; the default is DefaultLogLines.
func WithLogLines(n int) Option { return func(c *config) { c.logLines = n } }
