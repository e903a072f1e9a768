package containertest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A WaitStrategy decides when a sandbox is ready for the test (WaitFor).
// The package's strategies each take an optional timeout (WithTimeout);
// all are bounded by the sandbox's startup timeout, and a timeout's
// error shows the sandbox's last log lines. A strategy other than
// ForExit fails as soon as the sandbox's process ends.
type WaitStrategy interface {
	// WaitUntilReady returns nil once s is ready, or an error saying why
	// it is not when ctx ends or it cannot become ready.
	WaitUntilReady(ctx context.Context, s *Sandbox) error
}

// WaitFunc makes a function a WaitStrategy.
type WaitFunc func(ctx context.Context, s *Sandbox) error

// WaitUntilReady calls f.
func (f WaitFunc) WaitUntilReady(ctx context.Context, s *Sandbox) error { return f(ctx, s) }

// validator is a strategy that can tell it is nonsense before the
// sandbox starts.
type validator interface{ validate() error }

// checkStrategy refuses a nil strategy and one that can tell it is
// nonsense.
func checkStrategy(w WaitStrategy) error {
	if w == nil {
		return errors.New("a nil WaitStrategy")
	}
	if v, ok := w.(validator); ok {
		return v.validate()
	}
	return nil
}

// exitAware is a strategy that waits for the process's end itself.
type exitAware interface{ waitsForExit() bool }

// timeoutOf is a strategy with its own timeout.
type timeoutOf interface{ ownTimeout() time.Duration }

// errExited is the cause when the process ended before it was ready.
var errExited = errors.New("the sandbox's process ended before it was ready")

// wait runs w for s under the sandbox's context.
func (s *Sandbox) wait(ctx context.Context, w WaitStrategy) error {
	start := time.Now()
	if t, ok := w.(timeoutOf); ok && t.ownTimeout() > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.ownTimeout())
		defer cancel()
	}
	if e, ok := w.(exitAware); !ok || !e.waitsForExit() {
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-s.c.Done():
				cancel(errExited)
			case <-ctx.Done():
			}
		}()
	}
	err := w.WaitUntilReady(ctx, s)
	if err == nil {
		return nil
	}
	if cause := context.Cause(ctx); errors.Is(cause, errExited) {
		if st, werr := s.c.Wait(context.Background()); werr == nil {
			return fmt.Errorf("%v: %w (%s)", w, errExited, st)
		}
		return fmt.Errorf("%v: %w", w, errExited)
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%v: not ready after %v: %w", w, time.Since(start).Round(time.Millisecond), err)
	}
	return fmt.Errorf("%v: %w", w, err)
}

// poll calls check until it reports ready, backing off from first to
// most between calls. check's error is the latest reason for not being
// ready; a fatal error ends the wait at once.
func poll(ctx context.Context, first, most time.Duration, check func(ctx context.Context) (ready bool, why, fatal error)) error {
	d := first
	var why error
	for {
		ready, w, fatal := check(ctx)
		if fatal != nil {
			return fatal
		}
		if ready {
			return nil
		}
		if w != nil {
			why = w
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			if why != nil {
				return fmt.Errorf("%w (last: %v)", context.Cause(ctx), why)
			}
			return context.Cause(ctx)
		case <-t.C:
		}
		d = min(2*d, most)
	}
}

type timeout struct{ d time.Duration }

func (t *timeout) ownTimeout() time.Duration { return t.d }

// PortStrategy waits until a port listens in the sandbox (see
// ForListeningPort).
type PortStrategy struct {
	timeout
	port  uint16
	proto string
	err   error
}

// ForListeningPort waits until port ("6379", "6379/tcp", "53/udp")
// listens in the sandbox's network namespace, on any address. The
// sockets are read from the host side (the kernel's /proc/PID/net tables
// of the sandbox's process), so images without a shell or any tools
// work.
func ForListeningPort(port string) *PortStrategy {
	p, proto, err := parsePort(port)
	return &PortStrategy{port: p, proto: proto, err: err}
}

func parsePort(s string) (uint16, string, error) {
	num, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	if proto != "tcp" && proto != "udp" {
		return 0, "", fmt.Errorf("port %q: protocol %q: want tcp or udp", s, proto)
	}
	n, err := strconv.ParseUint(num, 10, 16)
	if err != nil || n == 0 {
		return 0, "", fmt.Errorf("port %q: want a number from 1 to 65535, optionally with /tcp or /udp", s)
	}
	return uint16(n), proto, nil
}

// WithTimeout bounds this wait.
func (w *PortStrategy) WithTimeout(d time.Duration) *PortStrategy { w.d = d; return w }

func (w *PortStrategy) validate() error { return w.err }

func (w *PortStrategy) String() string { return fmt.Sprintf("wait for port %d/%s", w.port, w.proto) }

// WaitUntilReady implements WaitStrategy.
func (w *PortStrategy) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	if w.err != nil {
		return w.err
	}
	return poll(ctx, time.Millisecond, 20*time.Millisecond, func(context.Context) (bool, error, error) {
		ok, err := listening(s.c.Pid(), w.port, w.proto)
		// A process that is exiting has its network table gone before
		// its /proc entry (ESRCH): not ready yet, and the exit is
		// reported as such once the container's end is seen.
		if err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, syscall.ESRCH) {
			return false, nil, err
		}
		return ok, nil, nil
	})
}

// listening reports whether the network namespace of pid has a socket
// listening on port: TCP in state LISTEN, or a bound UDP socket.
func listening(pid int, port uint16, proto string) (bool, error) {
	if pid == 0 {
		return false, os.ErrNotExist
	}
	state := "0A" // TCP_LISTEN
	if proto == "udp" {
		state = "07" // TCP_CLOSE: bound, unconnected
	}
	want := fmt.Sprintf(":%04X", port)
	for _, f := range []string{proto, proto + "6"} {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/%s", pid, f))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) && f == proto+"6" {
				continue // no IPv6 in this kernel
			}
			return false, err
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		sc.Scan() // the header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) > 3 && strings.HasSuffix(fields[1], want) && fields[3] == state {
				return true, nil
			}
		}
	}
	return false, nil
}

// ForExposedPorts waits until every port the image declares (EXPOSE)
// listens, as ForListeningPort does for one.
func ForExposedPorts() WaitStrategy { return exposedPorts{} }

type exposedPorts struct{}

func (exposedPorts) String() string { return "wait for the image's exposed ports" }

func (exposedPorts) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	if len(s.config.ExposedPorts) == 0 {
		return fmt.Errorf("image %s exposes no ports", s.image)
	}
	var ws []WaitStrategy
	for p := range s.config.ExposedPorts {
		w := ForListeningPort(p)
		if w.err != nil {
			return fmt.Errorf("image %s: %w", s.image, w.err)
		}
		ws = append(ws, w)
	}
	return AllOf(ws...).WaitUntilReady(ctx, s)
}

// LogStrategy waits for a line of output (see ForLog).
type LogStrategy struct {
	timeout
	pattern string
	re      *regexp.Regexp
	n       int
	err     error
}

// ForLog waits until a line the sandbox writes to stdout or stderr
// matches the regular expression pattern (regexp syntax).
func ForLog(pattern string) *LogStrategy {
	re, err := regexp.Compile(pattern)
	if err != nil {
		err = fmt.Errorf("log pattern: %w", err)
	}
	return &LogStrategy{pattern: pattern, re: re, n: 1, err: err}
}

// WithOccurrence waits for the nth matching line instead of the first
// (postgres prints "ready to accept connections" twice).
func (w *LogStrategy) WithOccurrence(n int) *LogStrategy {
	w.n = n
	if n < 1 && w.err == nil {
		w.err = fmt.Errorf("log occurrence %d: want 1 or more", n)
	}
	return w
}

// WithTimeout bounds this wait.
func (w *LogStrategy) WithTimeout(d time.Duration) *LogStrategy { w.d = d; return w }

func (w *LogStrategy) validate() error { return w.err }

func (w *LogStrategy) String() string {
	if w.n > 1 {
		return fmt.Sprintf("wait for log line %q (occurrence %d)", w.pattern, w.n)
	}
	return fmt.Sprintf("wait for log line %q", w.pattern)
}

// WaitUntilReady implements WaitStrategy.
func (w *LogStrategy) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	if w.err != nil {
		return w.err
	}
	seen, next := 0, 0
	for {
		lines, n, changed := s.logs.since(next)
		next = n
		for _, l := range lines {
			if w.re.MatchString(strings.TrimSuffix(l, "\n")) {
				if seen++; seen >= w.n {
					return nil
				}
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w (%d of %d matching lines seen)", context.Cause(ctx), seen, w.n)
		}
	}
}

// HTTPStrategy waits for an HTTP response (see ForHTTP).
type HTTPStrategy struct {
	timeout
	path   string
	port   uint16
	method string
	status func(int) bool
	want   string
	body   *regexp.Regexp
	err    error
}

// ForHTTP waits until a GET of path on the sandbox's HTTP port answers
// 200 OK. The request goes through Sandbox.HTTPClient, into the
// sandbox's network namespace. The port is the image's one exposed TCP
// port unless WithPort gives it.
func ForHTTP(path string) *HTTPStrategy {
	w := &HTTPStrategy{path: path, method: http.MethodGet, want: "200", status: func(c int) bool { return c == 200 }}
	if !strings.HasPrefix(path, "/") {
		w.err = fmt.Errorf("HTTP path %q: want one starting with /", path)
	}
	return w
}

// WithPort sets the port to ask.
func (w *HTTPStrategy) WithPort(port uint16) *HTTPStrategy {
	w.port = port
	if port == 0 && w.err == nil {
		w.err = errors.New("HTTP port 0")
	}
	return w
}

// WithMethod sets the request's method (GET by default).
func (w *HTTPStrategy) WithMethod(method string) *HTTPStrategy {
	w.method = method
	if !validMethod(method) && w.err == nil {
		w.err = fmt.Errorf("HTTP method %q", method)
	}
	return w
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r < 'A' || r > 'Z' {
			return false
		}
	}
	return true
}

// WithStatus waits for the status code code instead of 200.
func (w *HTTPStrategy) WithStatus(code int) *HTTPStrategy {
	w.want, w.status = strconv.Itoa(code), func(c int) bool { return c == code }
	if (code < 100 || code > 599) && w.err == nil {
		w.err = fmt.Errorf("HTTP status %d: want 100 to 599", code)
	}
	return w
}

// WithStatusFunc waits for a status code ok accepts.
func (w *HTTPStrategy) WithStatusFunc(ok func(code int) bool) *HTTPStrategy {
	w.want, w.status = "a status the function accepts", ok
	if ok == nil && w.err == nil {
		w.err = errors.New("nil HTTP status function")
	}
	return w
}

// WithBody also waits for the response body to match the regular
// expression pattern.
func (w *HTTPStrategy) WithBody(pattern string) *HTTPStrategy {
	re, err := regexp.Compile(pattern)
	if err != nil && w.err == nil {
		w.err = fmt.Errorf("HTTP body pattern: %w", err)
	}
	w.body = re
	return w
}

// WithTimeout bounds this wait.
func (w *HTTPStrategy) WithTimeout(d time.Duration) *HTTPStrategy { w.d = d; return w }

func (w *HTTPStrategy) validate() error { return w.err }

func (w *HTTPStrategy) String() string {
	p := "the exposed port"
	if w.port != 0 {
		p = "port " + strconv.Itoa(int(w.port))
	}
	return fmt.Sprintf("wait for HTTP %s %s on %s to answer %s", w.method, w.path, p, w.want)
}

// WaitUntilReady implements WaitStrategy.
func (w *HTTPStrategy) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	if w.err != nil {
		return w.err
	}
	port := w.port
	if port == 0 {
		var err error
		if port, err = s.onlyTCPPort(); err != nil {
			return err
		}
	}
	url := fmt.Sprintf("http://%s:%d%s", s.name, port, w.path)
	client := s.HTTPClient()
	return poll(ctx, 2*time.Millisecond, 50*time.Millisecond, func(ctx context.Context) (bool, error, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(rctx, w.method, url, nil)
		if err != nil {
			return false, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return false, err, nil
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if err != nil {
			return false, err, nil
		}
		if !w.status(resp.StatusCode) {
			return false, fmt.Errorf("status %s", resp.Status), nil
		}
		if w.body != nil && !w.body.Match(body) {
			return false, fmt.Errorf("body does not match %q", w.body), nil
		}
		return true, nil, nil
	})
}

// onlyTCPPort is the image's one exposed TCP port.
func (s *Sandbox) onlyTCPPort() (uint16, error) {
	var ports []uint16
	for p := range s.config.ExposedPorts {
		if n, proto, err := parsePort(p); err == nil && proto == "tcp" {
			ports = append(ports, n)
		}
	}
	if len(ports) != 1 {
		return 0, fmt.Errorf("image %s exposes %d TCP ports: say which with WithPort", s.image, len(ports))
	}
	return ports[0], nil
}

// ExecStrategy waits for a command to succeed in the sandbox (see
// ForExec).
type ExecStrategy struct {
	timeout
	args []string
	code int
	err  error
}

// ForExec waits until args, run in the sandbox (as Sandbox.Exec does)
// again and again, exits with code 0 ("pg_isready", "redis-cli ping").
func ForExec(args ...string) *ExecStrategy {
	w := &ExecStrategy{args: args}
	if len(args) == 0 || args[0] == "" {
		w.err = errors.New("exec: no command")
	}
	return w
}

// WithExitCode waits for exit code code instead of 0.
func (w *ExecStrategy) WithExitCode(code int) *ExecStrategy {
	w.code = code
	if (code < 0 || code > 255) && w.err == nil {
		w.err = fmt.Errorf("exec: exit code %d: want 0 to 255", code)
	}
	return w
}

// WithTimeout bounds this wait.
func (w *ExecStrategy) WithTimeout(d time.Duration) *ExecStrategy { w.d = d; return w }

func (w *ExecStrategy) validate() error { return w.err }

func (w *ExecStrategy) String() string {
	return fmt.Sprintf("wait for %q to exit with %d", strings.Join(w.args, " "), w.code)
}

// WaitUntilReady implements WaitStrategy.
func (w *ExecStrategy) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	if w.err != nil {
		return w.err
	}
	return execUntil(ctx, s, w.args, w.code, 0)
}

// execUntil runs args until it exits with code, each run bounded by
// each (0: no bound of its own).
func execUntil(ctx context.Context, s *Sandbox, args []string, code int, each time.Duration) error {
	return poll(ctx, 5*time.Millisecond, 200*time.Millisecond, func(ctx context.Context) (bool, error, error) {
		if each > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, each)
			defer cancel()
		}
		got, out, err := s.Exec(ctx, args...)
		if err != nil {
			if ctx.Err() != nil {
				return false, err, nil
			}
			return false, nil, fmt.Errorf("exec: %w", err) // the program is missing, ...
		}
		if got != code {
			return false, fmt.Errorf("exit code %d, output %q", got, lastLine(out)), nil
		}
		return true, nil, nil
	})
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	l := lines[len(lines)-1]
	if len(l) > 200 {
		l = l[:200] + "..."
	}
	return l
}

// ForHealthcheck waits until the image's HEALTHCHECK (Docker's
// Healthcheck in the image config) passes: its test runs in the sandbox
// ("CMD" as an exec, "CMD-SHELL" with /bin/sh -c), each run bounded by
// its Timeout. The checks run every few milliseconds at first and at
// most every Interval (Docker's default 30 s is for watching a running
// service, not for a test waiting on one): the first success is ready.
// An image without a healthcheck, or with NONE, is an error.
func ForHealthcheck() *HealthStrategy { return &HealthStrategy{} }

// HealthStrategy waits for the image's healthcheck (see ForHealthcheck).
type HealthStrategy struct{ timeout }

// WithTimeout bounds this wait.
func (w *HealthStrategy) WithTimeout(d time.Duration) *HealthStrategy { w.d = d; return w }

func (w *HealthStrategy) String() string { return "wait for the image's healthcheck" }

// WaitUntilReady implements WaitStrategy.
func (w *HealthStrategy) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	hc := s.config.Healthcheck
	if hc == nil || len(hc.Test) == 0 {
		return fmt.Errorf("image %s has no HEALTHCHECK", s.image)
	}
	var args []string
	switch hc.Test[0] {
	case "NONE":
		return fmt.Errorf("image %s disables its healthcheck (NONE)", s.image)
	case "CMD":
		args = hc.Test[1:]
	case "CMD-SHELL":
		if len(hc.Test) != 2 {
			return fmt.Errorf("image %s: healthcheck CMD-SHELL takes one command, not %d", s.image, len(hc.Test)-1)
		}
		args = []string{"/bin/sh", "-c", hc.Test[1]}
	default:
		return fmt.Errorf("image %s: healthcheck test %q: want CMD, CMD-SHELL or NONE", s.image, hc.Test[0])
	}
	if len(args) == 0 {
		return fmt.Errorf("image %s: healthcheck has no command", s.image)
	}
	each := hc.Timeout
	if each <= 0 {
		each = 30 * time.Second
	}
	return execUntil(ctx, s, args, 0, each)
}

// ForExit waits until the sandbox's process ends with exit code 0, for
// a sandbox that does a job (a migration, a build step).
func ForExit() *ExitStrategy { return &ExitStrategy{} }

// ExitStrategy waits for the process's end (see ForExit).
type ExitStrategy struct {
	timeout
	code int
}

// WithExitCode waits for exit code code instead of 0.
func (w *ExitStrategy) WithExitCode(code int) *ExitStrategy { w.code = code; return w }

// WithTimeout bounds this wait.
func (w *ExitStrategy) WithTimeout(d time.Duration) *ExitStrategy { w.d = d; return w }

func (w *ExitStrategy) waitsForExit() bool { return true }

func (w *ExitStrategy) validate() error {
	if w.code < 0 || w.code > 255 {
		return fmt.Errorf("exit code %d: want 0 to 255", w.code)
	}
	return nil
}

func (w *ExitStrategy) String() string { return fmt.Sprintf("wait for exit code %d", w.code) }

// WaitUntilReady implements WaitStrategy.
func (w *ExitStrategy) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	st, err := s.c.Wait(ctx)
	if err != nil {
		return err
	}
	if st.Code != w.code {
		return fmt.Errorf("the process ended with %s", st)
	}
	return nil
}

// AllOf waits until every one of ws is satisfied; they run at the same
// time, and the first failure ends the wait.
func AllOf(ws ...WaitStrategy) WaitStrategy { return &group{ws: ws, all: true} }

// AnyOf waits until one of ws is satisfied; they run at the same time,
// and the wait fails when all of them fail.
func AnyOf(ws ...WaitStrategy) WaitStrategy { return &group{ws: ws} }

type group struct {
	ws  []WaitStrategy
	all bool
}

func (g *group) String() string {
	kind := "any"
	if g.all {
		kind = "all"
	}
	var parts []string
	for _, w := range g.ws {
		parts = append(parts, fmt.Sprint(w))
	}
	return fmt.Sprintf("%s of [%s]", kind, strings.Join(parts, "; "))
}

func (g *group) validate() error {
	if len(g.ws) == 0 {
		return errors.New("AllOf or AnyOf of no strategies")
	}
	for _, w := range g.ws {
		if err := checkStrategy(w); err != nil {
			return err
		}
	}
	return nil
}

func (g *group) waitsForExit() bool {
	for _, w := range g.ws {
		if e, ok := w.(exitAware); ok && e.waitsForExit() {
			return true
		}
	}
	return false
}

// WaitUntilReady implements WaitStrategy.
func (g *group) WaitUntilReady(ctx context.Context, s *Sandbox) error {
	if err := g.validate(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errs := make([]error, len(g.ws))
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i, w := range g.ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := s.wait(ctx, w)
			errs[i] = err
			if g.all && err != nil || !g.all && err == nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	if g.all {
		return first
	}
	for _, err := range errs {
		if err == nil {
			return nil
		}
	}
	return errors.Join(errs...)
}
