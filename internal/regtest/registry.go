package regtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrUnavailable is wrapped by the errors of StartProcess when a program
// the registry needs (docker-registry, or htpasswd for basic auth) is not
// installed. Start skips the test on it.
var ErrUnavailable = errors.New("regtest: registry tooling unavailable")

// BinaryEnv names an environment variable that, when set, is the path of
// the registry binary to run instead of docker-registry from $PATH.
const BinaryEnv = "BERTH_DOCKER_REGISTRY"

// ReadyTimeout is how long StartProcess waits for a started registry to
// answer GET /v2/ before it gives up.
var ReadyTimeout = 10 * time.Second

// Options configures a registry started by Start or StartProcess. The zero
// value is a plain-HTTP registry without authentication on fresh storage.
type Options struct {
	// User and Password, when User is non-empty, turn on htpasswd (bcrypt)
	// basic auth with this one user. It needs htpasswd (apache2-utils).
	User, Password string
	// TLS serves HTTPS with a server certificate for 127.0.0.1, ::1 and
	// localhost, signed by a throwaway CA (see Registry.CAFile).
	TLS bool
	// ReadOnly puts the storage in maintenance read-only mode: pulls work,
	// pushes and deletes are refused.
	ReadOnly bool
	// RootDir, when set, is the storage root to serve instead of a fresh
	// temporary one; Close leaves it in place. Two registries may share
	// one, for example a writable one to push fixtures into and a
	// ReadOnly one to test against.
	RootDir string
}

// Registry is a running docker-registry process, from Start or
// StartProcess.
type Registry struct {
	// Host is "127.0.0.1:PORT", the registry part of an image reference.
	Host string
	// URL is "http://127.0.0.1:PORT", or https with Options.TLS.
	URL string
	// Dir is the storage root (the filesystem driver's rootdirectory).
	Dir string
	// CAFile is the PEM file of the CA that signed the server certificate
	// with Options.TLS, "" otherwise.
	CAFile string
	// CertDir is a directory holding only ca.crt (a copy of CAFile), the
	// layout skopeo's --cert-dir and containers' certs.d expect; "" without
	// Options.TLS.
	CertDir string
	// CAPool holds the CA with Options.TLS, nil otherwise.
	CAPool *x509.CertPool
	// User and Password are the basic-auth credentials ("" without auth).
	User, Password string

	tmp       string // everything Close removes
	proc      *process
	client    *http.Client
	closeOnce sync.Once
	closeErr  error
}

// Start runs a registry for the duration of tb. It skips tb when
// docker-registry (or, with Options.User, htpasswd) is not installed and
// fails it on any other error; the registry is stopped, and its temporary
// files removed, by a tb.Cleanup. When the test fails, the registry's
// output is logged.
func Start(tb testing.TB, opts Options) *Registry {
	tb.Helper()
	r, err := StartProcess(opts)
	if errors.Is(err, ErrUnavailable) {
		tb.Skipf("regtest: %v", err)
	}
	if err != nil {
		tb.Fatalf("regtest: %v", err)
	}
	tb.Cleanup(func() {
		if tb.Failed() {
			if out := r.Output(); out != "" {
				tb.Logf("docker-registry at %s said:\n%s", r.Host, out)
			}
		}
		if err := r.Close(); err != nil {
			tb.Errorf("regtest: %v", err)
		}
	})
	return r
}

// StartProcess runs a registry and waits until it answers GET /v2/. The
// caller must call Close. Errors wrap ErrUnavailable when a needed program
// is not installed.
func StartProcess(opts Options) (*Registry, error) {
	bin, err := binary()
	if err != nil {
		return nil, err
	}
	var htpasswd string
	if opts.User != "" {
		if htpasswd, err = exec.LookPath("htpasswd"); err != nil {
			return nil, fmt.Errorf("%w: htpasswd not found, basic auth needs apache2-utils (apt-get install apache2-utils)", ErrUnavailable)
		}
	}
	tmp, err := os.MkdirTemp("", "regtest-")
	if err != nil {
		return nil, err
	}
	r := &Registry{tmp: tmp, User: opts.User, Password: opts.Password}
	if err := r.start(opts, bin, htpasswd); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// start sets r up in r.tmp and runs bin until it serves.
func (r *Registry) start(opts Options, bin, htpasswd string) error {
	tmp := r.tmp
	r.Dir = opts.RootDir
	if r.Dir == "" {
		r.Dir = filepath.Join(tmp, "storage")
	}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		return err
	}

	var htpasswdFile, certFile, keyFile string
	if opts.User != "" {
		htpasswdFile = filepath.Join(tmp, "htpasswd")
		if err := writeHtpasswd(htpasswd, htpasswdFile, opts.User, opts.Password); err != nil {
			return err
		}
	}
	transport := &http.Transport{
		Proxy:               nil, // loopback: never through $HTTP_PROXY
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
	}
	if opts.TLS {
		ca, err := newCerts(filepath.Join(tmp, "tls"))
		if err != nil {
			return fmt.Errorf("regtest: making certificates: %w", err)
		}
		certFile, keyFile = ca.certFile, ca.keyFile
		r.CAFile, r.CAPool = ca.caFile, ca.pool
		r.CertDir = filepath.Join(tmp, "certs.d")
		if err := os.MkdirAll(r.CertDir, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(r.CertDir, "ca.crt"), ca.caPEM, 0o644); err != nil {
			return err
		}
		transport.TLSClientConfig = &tls.Config{RootCAs: r.CAPool, MinVersion: tls.VersionTLS12}
	}
	r.client = &http.Client{Transport: transport}

	scheme := "http"
	if opts.TLS {
		scheme = "https"
	}
	const attempts = 5
	for i := 1; ; i++ {
		port, err := pickPort()
		if err != nil {
			return err
		}
		r.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		r.URL = scheme + "://" + r.Host
		cfg := config(r.Host, r.Dir, htpasswdFile, certFile, keyFile, opts.ReadOnly)
		cfgFile := filepath.Join(tmp, "config.yml")
		if err := os.WriteFile(cfgFile, []byte(cfg), 0o600); err != nil {
			return err
		}
		cmd := exec.Command(bin, "serve", cfgFile)
		cmd.Dir = tmp
		r.proc, err = spawn(cmd)
		if err != nil {
			return fmt.Errorf("regtest: starting %s: %w", bin, err)
		}
		err = r.waitReady()
		if err == nil {
			return nil
		}
		r.proc.kill()
		if i < attempts && strings.Contains(r.proc.out.String(), "address already in use") {
			continue // lost the race for the port: try another
		}
		return err
	}
}

// binary finds the registry program.
func binary() (string, error) {
	if p := os.Getenv(BinaryEnv); p != "" {
		if _, err := exec.LookPath(p); err != nil {
			return "", fmt.Errorf("%w: $%s: %v", ErrUnavailable, BinaryEnv, err)
		}
		return p, nil
	}
	p, err := exec.LookPath("docker-registry")
	if err != nil {
		return "", fmt.Errorf("%w: docker-registry not found (apt-get install docker-registry, or set $%s)", ErrUnavailable, BinaryEnv)
	}
	return p, nil
}

// pickPort is freePort; tests replace it.
var pickPort = freePort

// freePort asks the kernel for a free loopback port. Another process may
// take it before the registry binds it; StartProcess retries then.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func writeHtpasswd(bin, file, user, password string) error {
	cmd := exec.Command(bin, "-Bbn", user, password)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("regtest: htpasswd: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
	}
	return os.WriteFile(file, bytes.TrimSpace(out), 0o600)
}

// config renders the registry's config.yml. Strings are written as
// double-quoted (JSON) scalars, which YAML reads the same way.
func config(addr, root, htpasswd, cert, key string, readOnly bool) string {
	q := strconv.Quote
	secret := make([]byte, 16)
	_, _ = rand.Read(secret)
	var b strings.Builder
	b.WriteString("version: 0.1\n")
	b.WriteString("log:\n  level: warn\n  formatter: text\n  accesslog:\n    disabled: true\n")
	b.WriteString("storage:\n")
	fmt.Fprintf(&b, "  filesystem:\n    rootdirectory: %s\n", q(root))
	b.WriteString("  delete:\n    enabled: true\n")
	b.WriteString("  redirect:\n    disable: true\n")
	b.WriteString("  maintenance:\n    uploadpurging:\n      enabled: false\n")
	fmt.Fprintf(&b, "    readonly:\n      enabled: %t\n", readOnly)
	b.WriteString("http:\n")
	fmt.Fprintf(&b, "  addr: %s\n", q(addr))
	fmt.Fprintf(&b, "  secret: %s\n", q(hex.EncodeToString(secret)))
	b.WriteString("  headers:\n    X-Content-Type-Options: [nosniff]\n")
	if cert != "" {
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", q(cert), q(key))
	}
	if htpasswd != "" {
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: %s\n    path: %s\n", q("regtest"), q(htpasswd))
	}
	b.WriteString("health:\n  storagedriver:\n    enabled: false\n")
	return b.String()
}

// waitReady polls GET /v2/ until the registry answers 200 or 401 as a
// distribution registry, the process dies, or ReadyTimeout passes.
func (r *Registry) waitReady() error {
	ctx, cancel := context.WithTimeout(context.Background(), ReadyTimeout)
	defer cancel()
	go func() { // a dead registry answers nothing: stop asking
		select {
		case <-r.proc.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		if ok, err := r.ping(ctx); ok {
			return nil
		} else if err != nil {
			last = err
		}
		select {
		case <-ctx.Done():
		case <-tick.C:
			continue
		}
		select {
		case <-r.proc.done:
			return fmt.Errorf("regtest: docker-registry exited before serving (%v); its output:\n%s", r.proc.err, r.proc.out.String())
		default:
			return fmt.Errorf("regtest: docker-registry did not answer GET %s/v2/ within %v (last: %v); its output:\n%s", r.URL, ReadyTimeout, last, r.proc.out.String())
		}
	}
}

func (r *Registry) ping(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.URL+"/v2/", nil)
	if err != nil {
		return false, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false, err
	}
	resp.Body.Close()
	if (resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized) &&
		resp.Header.Get("Docker-Distribution-Api-Version") == "registry/2.0" {
		return true, nil
	}
	return false, fmt.Errorf("GET /v2/: %s", resp.Status)
}

// HTTPClient returns a client for the registry: it trusts the CA with
// Options.TLS and never uses a proxy from the environment. It adds no
// credentials; see User and Password. The same client is returned each
// time.
func (r *Registry) HTTPClient() *http.Client {
	return r.client
}

// PID returns the registry's process ID (0 for the Registry of a Proxy).
func (r *Registry) PID() int {
	if r.proc == nil {
		return 0
	}
	return r.proc.cmd.Process.Pid
}

// Output returns what the registry has written to stdout and stderr (the
// last 64 KiB of it), for error messages.
func (r *Registry) Output() string {
	if r.proc == nil {
		return ""
	}
	return r.proc.out.String()
}

// Close kills the registry's process group, waits for the process and
// removes its temporary files (and its storage, unless it came from
// Options.RootDir). It may be called more than once.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		if r.proc != nil {
			r.proc.kill()
		}
		if r.client != nil {
			r.client.CloseIdleConnections()
		}
		if r.tmp != "" {
			r.closeErr = os.RemoveAll(r.tmp)
		}
	})
	return r.closeErr
}

// process is a started registry and the goroutine that waits for it.
type process struct {
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // cmd.Wait's result, set before done is closed
}

// spawn starts cmd in its own process group with SIGKILL as its
// parent-death signal. The kernel sends that signal when the thread that
// forked the child exits, not the process, so the fork happens on a
// goroutine locked to its thread until the child has been waited for:
// that thread lives exactly as long as the child needs it.
func spawn(cmd *exec.Cmd) (*process, error) {
	p := &process{cmd: cmd, out: &tailBuffer{max: 64 << 10}, done: make(chan struct{})}
	cmd.Stdout = p.out
	cmd.Stderr = p.out
	cmd.WaitDelay = time.Second
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

// kill sends SIGKILL to the process group and waits for the process.
func (p *process) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// tailBuffer is a concurrency-safe writer keeping the last max bytes.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}
