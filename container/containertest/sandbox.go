package containertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A Sandbox is a running container made for one test (see Run). Its
// methods are safe for concurrent use.
type Sandbox struct {
	t      testing.TB
	name   string
	image  string
	config imageConfig
	c      *container.Container
	logs   *logBuffer
	labels map[string]string
	net    *Network
	tmp    string
	// logLines is how many lines errors show.
	logLines int

	mu       sync.Mutex
	forwards map[uint16]string
	client   *http.Client
	removed  bool
	rmErr    error
}

// imageConfig is what the sandbox reads of its image's configuration,
// Docker's extensions included.
type imageConfig struct {
	ocispec.ImageConfig
	Healthcheck *healthConfig `json:"Healthcheck,omitempty"`
}

// healthConfig is Docker's HEALTHCHECK in an image config; durations are
// nanoseconds.
type healthConfig struct {
	Test        []string      `json:"Test"`
	Interval    time.Duration `json:"Interval"`
	Timeout     time.Duration `json:"Timeout"`
	StartPeriod time.Duration `json:"StartPeriod"`
	Retries     int           `json:"Retries"`
}

// Run starts a sandbox from image for the test t and returns it once the
// wait strategies (WaitFor) say it is ready; t.Cleanup removes it,
// whether the test passes, fails or panics (and if the test binary is
// killed, the container dies with it). On any error Run calls t.Fatal
// with it, after removing what it made. When the test fails, the
// sandbox's last log lines go to t.Log; with go test -v its output is
// logged as it comes.
//
// image is one of:
//   - an image reference ("redis:7", "127.0.0.1:5000/app:v1"), taken
//     from the cache's store (see Store) or pulled into it when missing,
//     over plain HTTP when the registry is on loopback;
//   - "docker-archive:PATH", a `docker save` archive, loaded into the
//     store once per machine (its first RepoTag is the image);
//   - the name BusyboxImage returns.
func Run(t testing.TB, image string, opts ...Option) *Sandbox {
	t.Helper()
	s, err := Start(context.Background(), t, image, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Start is Run returning its error instead of failing the test, for
// tests that expect a sandbox not to start and for starting sandboxes
// from other goroutines. A sandbox it returns is removed by t.Cleanup
// (or Terminate); on error nothing is left.
func Start(ctx context.Context, t testing.TB, image string, opts ...Option) (*Sandbox, error) {
	if t == nil {
		return nil, errors.New("containertest: Start without a test (use New)")
	}
	return start(ctx, t, image, opts)
}

// New starts a sandbox that no test owns, for one that the tests of a
// package share (made in TestMain) and for programs other than tests:
// the caller removes it with Terminate. If the process dies first, the
// sandbox's processes die with it and the next use of the cache removes
// what it left on disk. Endpoint panics instead of failing a test.
func New(ctx context.Context, image string, opts ...Option) (*Sandbox, error) {
	return start(ctx, nil, image, opts)
}

func start(ctx context.Context, t testing.TB, image string, opts []Option) (_ *Sandbox, err error) {
	cfg := config{timeout: DefaultStartupTimeout, logLines: DefaultLogLines}
	for _, o := range opts {
		o(&cfg)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("containertest: sandbox %s: %w", image, err)
		}
	}()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.timeout)
	defer cancel()
	c, err := cacheFor()
	if err != nil {
		return nil, err
	}
	name, err := resolveImage(ctx, c.store, image, cfg.pull)
	if err != nil {
		return nil, err
	}
	icfg, err := readImageConfig(ctx, c.store, name)
	if err != nil {
		return nil, err
	}
	s := &Sandbox{t: t, image: name, config: icfg, name: cfg.name, labels: cfg.labels, net: cfg.network,
		forwards: map[uint16]string{}, logLines: cfg.logLines}
	if s.name == "" {
		s.name = defaultName(name)
	}
	s.logs = newLogBuffer(s.name, t)
	defer func() {
		if err != nil {
			if s.c != nil {
				err = fmt.Errorf("%w%s", err, s.logs.tailText(cfg.logLines))
			}
			s.Terminate(context.Background())
		}
	}()
	spec, err := s.spec(&cfg, c.dir)
	if err != nil {
		return nil, err
	}
	id := newID()
	ctr, err := c.rt.Create(ctx, id, spec)
	if err != nil {
		return nil, err
	}
	s.c = ctr
	if t != nil {
		t.Cleanup(func() {
			if t.Failed() {
				s.logs.logTail(cfg.logLines)
			}
			s.logs.stopStreaming()
			if err := s.Terminate(context.Background()); err != nil {
				t.Errorf("containertest: remove sandbox %s: %v", s.name, err)
			}
		})
	}
	if err := ctr.Start(ctx); err != nil {
		return nil, err
	}
	for _, w := range cfg.waits {
		if err := s.wait(ctx, w); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (c *config) validate() error {
	if c.timeout <= 0 {
		return fmt.Errorf("startup timeout %v: want more than 0", c.timeout)
	}
	if c.name != "" && !validName(c.name) {
		return fmt.Errorf("name %q: want a DNS label (letters, digits and '-', at most 63)", c.name)
	}
	for _, a := range c.aliases {
		if !validName(a) {
			return fmt.Errorf("network alias %q: want a DNS label", a)
		}
	}
	if len(c.aliases) > 0 && c.network == nil {
		return errors.New("network aliases without WithNetwork")
	}
	for _, f := range c.files {
		if !path.IsAbs(f.Target) || path.Clean(f.Target) == "/" {
			return fmt.Errorf("file target %q: want an absolute path below /", f.Target)
		}
		if (f.Content != nil) == (f.HostPath != "") {
			return fmt.Errorf("file %s: give exactly one of Content and HostPath", f.Target)
		}
		if f.HostPath != "" {
			if _, err := os.Lstat(f.HostPath); err != nil {
				return fmt.Errorf("file %s: the source to copy: %w", f.Target, err)
			}
		}
		if f.Mode&^os.ModePerm&^(os.ModeSetuid|os.ModeSetgid|os.ModeSticky) != 0 {
			return fmt.Errorf("file %s: mode %v: want permission bits only", f.Target, f.Mode)
		}
	}
	for _, w := range c.waits {
		if err := checkStrategy(w); err != nil {
			return fmt.Errorf("wait strategy: %w", err)
		}
	}
	if c.logLines < 0 {
		return fmt.Errorf("log lines %d: want 0 or more", c.logLines)
	}
	return nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}

// defaultName is the last component of an image's repository, made a
// DNS label: "docker.io/library/redis:7" is "redis".
func defaultName(image string) string {
	repo := image
	if i := strings.IndexAny(repo, "@"); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndex(repo, ":"); i > strings.LastIndex(repo, "/") {
		repo = repo[:i]
	}
	repo = repo[strings.LastIndex(repo, "/")+1:]
	var b strings.Builder
	for _, r := range repo {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else if b.Len() > 0 {
			b.WriteByte('-')
		}
	}
	n := strings.Trim(b.String(), "-")
	if n == "" || len(n) > 63 {
		return "sandbox"
	}
	return n
}

func readImageConfig(ctx context.Context, st *layer.Store, name string) (imageConfig, error) {
	desc, err := st.Content.Resolve(ctx, name)
	if err != nil {
		return imageConfig{}, err
	}
	m, _, err := st.Content.Manifest(ctx, desc, nil)
	if err != nil {
		return imageConfig{}, err
	}
	r, err := st.Content.Open(ctx, m.Config.Digest)
	if err != nil {
		return imageConfig{}, err
	}
	defer r.Close()
	var raw struct {
		Config imageConfig `json:"config"`
	}
	if err := json.NewDecoder(io.LimitReader(r, 8<<20)).Decode(&raw); err != nil {
		return imageConfig{}, fmt.Errorf("image %s: config: %w", name, err)
	}
	return raw.Config, nil
}

// spec makes the container's spec from the options.
func (s *Sandbox) spec(cfg *config, cacheDir string) (*container.Spec, error) {
	spec := &container.Spec{
		Image:      s.image,
		Entrypoint: cfg.entrypoint,
		Hostname:   s.name,
		Process: container.Process{
			Args:   cfg.cmd,
			Env:    cfg.env,
			User:   cfg.user,
			Stdout: s.logs.writer(),
			Stderr: s.logs.writer(),
		},
	}
	if cfg.resources != nil {
		spec.Resources = *cfg.resources
	}
	if len(cfg.files) > 0 {
		dir, err := makeFilesDir(runDir(cacheDir))
		if err != nil {
			return nil, err
		}
		s.tmp = dir
		for i, f := range cfg.files {
			src := filepath.Join(dir, strconv.Itoa(i))
			if err := f.copyTo(src); err != nil {
				return nil, err
			}
			spec.Mounts = append(spec.Mounts, container.Mount{Type: container.Bind, Source: src, Target: f.Target})
		}
	}
	spec.Mounts = append(spec.Mounts, cfg.mounts...)
	if cfg.network != nil {
		spec.Networks = []container.NetworkAttachment{{Network: cfg.network.n, Aliases: append([]string{s.name}, cfg.aliases...)}}
	}
	for _, fn := range cfg.specFuncs {
		fn(spec)
	}
	return spec, nil
}

// WaitFor waits until each of ws says the sandbox is ready, as Run does
// with WaitFor's strategies: after a restart of its service, say. The
// error shows the sandbox's last log lines.
func (s *Sandbox) WaitFor(ctx context.Context, ws ...WaitStrategy) error {
	for _, w := range ws {
		if err := checkStrategy(w); err != nil {
			return fmt.Errorf("containertest: sandbox %s: wait strategy: %w", s.name, err)
		}
		if err := s.wait(ctx, w); err != nil {
			return fmt.Errorf("containertest: sandbox %s: %w%s", s.name, err, s.logs.tailText(s.logLines))
		}
	}
	return nil
}

// Name returns the sandbox's name (WithName).
func (s *Sandbox) Name() string { return s.name }

// Image returns the name of the sandbox's image in the cache's store.
func (s *Sandbox) Image() string { return s.image }

// Labels returns the sandbox's labels (WithLabels).
func (s *Sandbox) Labels() map[string]string { return maps.Clone(s.labels) }

// Container returns the sandbox's container, for what the sandbox does
// not wrap (Stats, Pause, Exec with stdin, ...). Do not Delete it; use
// Terminate.
func (s *Sandbox) Container() *container.Container { return s.c }

// IP returns the sandbox's address on its network (WithNetwork), or ""
// without one.
func (s *Sandbox) IP() string {
	for _, e := range s.c.Endpoints() {
		return e.IP().String()
	}
	return ""
}

// Logs returns what the sandbox's process wrote to stdout and stderr so
// far, interleaved as it came (the last 64 MiB at most).
func (s *Sandbox) Logs() string { return s.logs.text() }

// Dial connects to address in the sandbox from the test, through its
// network namespace: no port is published on the host. address is a
// port (":6379") or host and port; a host that is not an IP address (the
// sandbox's name, "localhost") means the sandbox's 127.0.0.1, which
// reaches services bound to all addresses.
func (s *Sandbox) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("containertest: dial %s: %w", address, err)
	}
	if net.ParseIP(host) == nil {
		host = "127.0.0.1"
	}
	return s.c.Dial(ctx, network, net.JoinHostPort(host, port))
}

// HTTPClient returns a client whose connections go into the sandbox
// through Dial, whatever the URL's host: http://redis:8080/ and
// http://localhost:8080/ both reach the sandbox's port 8080.
func (s *Sandbox) HTTPClient() *http.Client {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.client == nil {
		s.client = &http.Client{Transport: &http.Transport{
			DialContext:         s.Dial,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     30 * time.Second,
		}}
	}
	return s.client
}

// Endpoint returns "127.0.0.1:NNNNN", a free loopback port of the host
// forwarded to port in the sandbox, for clients that need a host address
// (a database driver's DSN, a process the test starts). Each sandbox gets
// its own host port, so parallel tests never collide. It calls t.Fatal
// (panics, for a sandbox from New) when the port cannot be forwarded;
// Forward returns the error instead.
func (s *Sandbox) Endpoint(port uint16) string {
	addr, err := s.Forward(port)
	if err != nil {
		if s.t == nil {
			panic(err)
		}
		s.t.Fatal(err)
	}
	return addr
}

// Forward is Endpoint returning its error.
func (s *Sandbox) Forward(port uint16) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if a, ok := s.forwards[port]; ok {
		return a, nil
	}
	if s.removed {
		return "", fmt.Errorf("containertest: endpoint of sandbox %s: removed", s.name)
	}
	f, err := s.c.PortForward(context.Background(), "127.0.0.1:0", port)
	if err != nil {
		return "", fmt.Errorf("containertest: endpoint of sandbox %s port %d: %w", s.name, port, err)
	}
	a := f.Addr().String()
	s.forwards[port] = a
	return a, nil
}

// Exec runs args in the sandbox and returns its exit code and its stdout
// and stderr together. err is about running it, not about its exit code.
func (s *Sandbox) Exec(ctx context.Context, args ...string) (int, []byte, error) {
	var out lockedBuffer
	p, err := s.c.Exec(ctx, container.Process{Args: args, Stdout: &out, Stderr: &out})
	if err != nil {
		return -1, nil, err
	}
	st, err := p.Wait(ctx)
	if err != nil {
		p.Signal(9)
		return -1, out.Bytes(), err
	}
	return st.Code, out.Bytes(), nil
}

// Terminate removes the sandbox now instead of at the end of the test:
// its process is killed and its container, root filesystem and port
// forwards are removed. Calling it again does nothing and returns the
// first call's error.
func (s *Sandbox) Terminate(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.removed {
		return s.rmErr
	}
	s.removed = true
	if s.client != nil {
		s.client.CloseIdleConnections()
	}
	var errs []error
	if s.c != nil {
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := s.c.Delete(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	if s.tmp != "" {
		if err := os.RemoveAll(s.tmp); err != nil {
			errs = append(errs, err)
		}
		os.Remove(filepath.Dir(s.tmp)) // the process's run directory, once empty
	}
	s.rmErr = errors.Join(errs...)
	return s.rmErr
}

// makeFilesDir makes a directory for one sandbox's files in run (made if
// missing: another sandbox's Terminate removes it once it is empty).
func makeFilesDir(run string) (string, error) {
	for i := 0; ; i++ {
		if err := os.MkdirAll(run, 0o700); err != nil {
			return "", err
		}
		dir, err := os.MkdirTemp(run, "files-")
		if err == nil || !errors.Is(err, os.ErrNotExist) || i == 5 {
			return dir, err
		}
	}
}

// lockedBuffer is a bytes.Buffer for two writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.b.Bytes())
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
