package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthlabs/berth/layer/content"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Client talks to registries. Its zero value is usable and has the
// default of every option (see the With functions and the Default
// constants): credentials from authn.DefaultKeychain, 4 transfers at once,
// 5 attempts, a 30s stall timeout, unpacking on pull. New makes one with
// other options. A Client is safe for concurrent use.
type Client struct {
	// opts are New's options, applied over the defaults for every call.
	opts []Option
}

// New returns a Client with the given options.
func New(opts ...Option) *Client {
	return &Client{opts: slices.Clone(opts)}
}

// with returns the defaults overridden by the client's options, then by
// opts.
func (c *Client) with(opts []Option) options {
	o := defaultOptions()
	for _, fn := range c.opts {
		fn(&o)
	}
	for _, fn := range opts {
		fn(&o)
	}
	if o.logger == nil {
		o.logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// ref is a parsed reference in both berth's and go-containerregistry's
// form.
type ref struct {
	content.Reference
	repo name.Repository
	// id is the tag or digest to ask the registry for.
	id string
}

func (o *options) parse(s string) (ref, error) {
	r, err := content.ParseReference(s)
	if err != nil {
		return ref{}, fmt.Errorf("%w: %w", ErrInvalidReference, err)
	}
	var nopts []name.Option
	if o.plainHTTP["*"] || o.plainHTTP[r.Domain] {
		nopts = append(nopts, name.Insecure)
	}
	repo, err := name.NewRepository(r.Name(), nopts...)
	if err != nil {
		return ref{}, fmt.Errorf("%w: %q: %w", ErrInvalidReference, s, err)
	}
	id := r.Tag
	if r.Digest != "" {
		id = r.Digest.String()
	}
	return ref{Reference: r, repo: repo, id: id}, nil
}

// ggcrRef is r as a go-containerregistry reference.
func (r ref) ggcrRef() name.Reference {
	if r.Digest != "" {
		return r.repo.Digest(r.Digest.String())
	}
	return r.repo.Tag(r.Tag)
}

// authenticator returns the credentials for a repository.
func (o *options) authenticator(repo name.Repository) (authn.Authenticator, error) {
	if o.auth != nil {
		return o.auth, nil
	}
	a, err := o.keychain.Resolve(repo)
	if err != nil {
		return nil, fmt.Errorf("credentials for %s: %w", repo.RegistryStr(), err)
	}
	return a, nil
}

// baseTransport is the transport under authentication: the caller's, or
// one with the TLS settings, refusing plain HTTP to hosts it is not
// allowed for.
func (o *options) baseTransport() http.RoundTripper {
	if o.transport != nil {
		return &guard{o: o, inner: o.transport}
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	if o.tlsConfig != nil {
		t.TLSClientConfig = o.tlsConfig.Clone()
	}
	t.MaxIdleConnsPerHost = max(o.concurrency, 2) * 2
	return &guard{o: o, inner: t}
}

// guard refuses plain HTTP except to loopback hosts and to those the
// options allow, and sets the User-Agent.
type guard struct {
	o     *options
	inner http.RoundTripper
}

func (g *guard) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !g.o.plainHTTP["*"] && !g.o.plainHTTP[req.URL.Host] && !isLoopback(req.URL.Hostname()) {
		return nil, fmt.Errorf("plain HTTP to %s is not allowed (use WithPlainHTTP)", req.URL.Host)
	}
	if g.o.userAgent != "" && req.Header.Get("User-Agent") == "" {
		req = req.Clone(req.Context())
		req.Header.Set("User-Agent", g.o.userAgent)
	}
	return g.inner.RoundTrip(req)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// remoteOptions are the options for go-containerregistry's remote
// package.
func (o *options) remoteOptions(ctx context.Context, repo name.Repository) ([]remote.Option, error) {
	auth, err := o.authenticator(repo)
	if err != nil {
		return nil, err
	}
	return []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuth(auth),
		remote.WithTransport(o.baseTransport()),
		remote.WithJobs(o.concurrency),
		remote.WithUserAgent(o.userAgent),
		remote.WithRetryBackoff(remote.Backoff{Duration: o.retry.Base, Factor: 2, Jitter: 0.2, Steps: o.retry.Attempts, Cap: o.retry.Max}),
	}, nil
}

// session is an authenticated connection to one repository.
type session struct {
	o      *options
	repo   name.Repository
	client *http.Client
	base   string // scheme://host/v2/repo
}

// connect authenticates to repo with the given actions on it
// (transport.PullScope, transport.PushScope) and the extra full scopes
// ("repository:other/repo:pull"), retrying transient failures.
func (o *options) connect(ctx context.Context, repo name.Repository, extra []string, actions ...string) (*session, error) {
	auth, err := o.authenticator(repo)
	if err != nil {
		return nil, err
	}
	full := []string{repo.Scope(strings.Join(actions, ","))}
	full = append(full, extra...)
	var rt http.RoundTripper
	err = o.retryLoop(ctx, "connect to "+repo.RegistryStr(), func(ctx context.Context) error {
		var err error
		rt, err = transport.NewWithContext(ctx, repo.Registry, auth, o.baseTransport(), full)
		return o.explain(ctx, repo, classify(err))
	})
	if err != nil {
		return nil, err
	}
	// The scheme in URLs is rewritten by the transport to what the
	// registry answered on.
	return &session{
		o:      o,
		repo:   repo,
		client: &http.Client{Transport: rt},
		base:   repo.Registry.Scheme() + "://" + repo.RegistryStr() + "/v2/" + repo.RepositoryStr(),
	}, nil
}

// do sends a request and returns the response if its status is one of
// ok; otherwise a *StatusError.
func (s *session) do(req *http.Request, ok ...int) (*http.Response, error) {
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	for _, c := range ok {
		if resp.StatusCode == c {
			return resp, nil
		}
	}
	defer resp.Body.Close()
	return nil, statusError(resp)
}

func statusError(resp *http.Response) *StatusError {
	e := &StatusError{Method: resp.Request.Method, URL: redact(resp.Request.URL.String()), Code: resp.StatusCode}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var reg struct {
		Errors []struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &reg) == nil && len(reg.Errors) > 0 {
		var parts []string
		for _, x := range reg.Errors {
			parts = append(parts, strings.TrimSpace(x.Code+" "+x.Message))
		}
		e.Detail = strings.Join(parts, "; ")
	}
	if s := resp.Header.Get("Retry-After"); s != "" {
		if n, err := strconv.Atoi(s); err == nil && n >= 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		} else if t, err := http.ParseTime(s); err == nil {
			e.RetryAfter = max(time.Until(t), 0)
		}
	}
	return e
}

// redact drops the query of a URL (upload locations carry state tokens).
func redact(u string) string {
	if i := strings.IndexByte(u, '?'); i >= 0 {
		return u[:i]
	}
	return u
}

// classify turns go-containerregistry's transport errors into ours.
func classify(err error) error {
	var te *transport.Error
	if errors.As(err, &te) {
		se := &StatusError{Code: te.StatusCode, Method: "GET", URL: "/v2/"}
		if te.Request != nil {
			se.Method, se.URL = te.Request.Method, redact(te.Request.URL.String())
		}
		var parts []string
		for _, d := range te.Errors {
			parts = append(parts, strings.TrimSpace(string(d.Code)+" "+d.Message))
		}
		se.Detail = strings.Join(parts, "; ")
		return fmt.Errorf("%w", se)
	}
	return err
}

// explain replaces the error of a loopback registry that answered the
// plain-HTTP fallback with 400 (an HTTPS server's answer to HTTP) by the
// reason HTTPS failed, typically an unknown certificate authority.
func (o *options) explain(ctx context.Context, repo name.Repository, err error) error {
	var se *StatusError
	if !errors.As(err, &se) || se.Code != http.StatusBadRequest || !strings.HasPrefix(se.URL, "http://") {
		return err
	}
	req, rerr := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+repo.RegistryStr()+"/v2/", nil)
	if rerr != nil {
		return err
	}
	resp, herr := (&http.Client{Transport: o.baseTransport(), Timeout: 10 * time.Second}).Do(req)
	if herr != nil {
		return fmt.Errorf("HTTPS to %s failed: %w", repo.RegistryStr(), herr)
	}
	resp.Body.Close()
	return err
}

// temporary reports whether err may go away on another try.
func temporary(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, ErrUnsupported) {
		return false
	}
	var se *StatusError
	if errors.As(err, &se) {
		return se.Temporary()
	}
	if errors.Is(err, ErrStalled) || errors.Is(err, errRestart) || errors.Is(err, ErrDigestMismatch) || errors.Is(err, content.ErrDigestMismatch) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	// Connection-level failures and timeouts; not certificate errors or
	// refusals of plain HTTP, which another try does not mend.
	var op *net.OpError
	if errors.As(err, &op) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// retryLoop runs fn until it succeeds, fails for good, or the attempts
// are spent, waiting with backoff in between.
func (o *options) retryLoop(ctx context.Context, what string, fn func(ctx context.Context) error) error {
	var err error
	for attempt := 1; ; attempt++ {
		err = fn(ctx)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, context.Cause(ctx))
		}
		if !temporary(err) {
			return fmt.Errorf("%s: %w", what, err)
		}
		if attempt >= o.retry.Attempts {
			return fmt.Errorf("%s: gave up after %d attempts: %w", what, attempt, err)
		}
		wait := o.retry.Base << (attempt - 1)
		if wait > o.retry.Max || wait <= 0 {
			wait = o.retry.Max
		}
		wait = min(time.Duration(float64(wait)*(0.8+0.4*rand.Float64())), o.retry.Max)
		var se *StatusError
		if errors.As(err, &se) && se.RetryAfter > 0 {
			if se.RetryAfter > o.retry.Max {
				return fmt.Errorf("%s: the registry asks to retry after %v, longer than the retry policy allows (%v): %w", what, se.RetryAfter, o.retry.Max, err)
			}
			wait = se.RetryAfter
		}
		o.logger.Warn("registry: retrying", "what", what, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", what, context.Cause(ctx), err)
		}
	}
}

// stallWatch cancels a request (through its context) when nothing
// arrives for the stall timeout. Time spent paused (handing data on to a
// slower consumer) does not count.
type stallWatch struct {
	timer *time.Timer // nil: no timeout
	d     time.Duration
}

// watch arms a stall watch that cancels through cancel.
func watch(d time.Duration, cancel context.CancelCauseFunc) *stallWatch {
	if d <= 0 {
		return &stallWatch{}
	}
	return &stallWatch{timer: time.AfterFunc(d, func() { cancel(ErrStalled) }), d: d}
}

// reader returns r re-arming the watch on every read that returns bytes.
func (w *stallWatch) reader(r io.Reader) io.Reader {
	if w.timer == nil {
		return r
	}
	return &stallReader{r: r, w: w}
}

func (w *stallWatch) pause() {
	if w != nil && w.timer != nil {
		w.timer.Stop()
	}
}

func (w *stallWatch) resume() {
	if w != nil && w.timer != nil {
		w.timer.Reset(w.d)
	}
}

// resumeFor re-arms the watch for d instead of the stall timeout.
func (w *stallWatch) resumeFor(d time.Duration) {
	if w != nil && w.timer != nil {
		w.timer.Reset(d)
	}
}

func (w *stallWatch) stop() { w.pause() }

type stallReader struct {
	r io.Reader
	w *stallWatch
}

func (s *stallReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if n > 0 {
		s.w.resume()
	}
	return n, err
}
