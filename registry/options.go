package registry

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Defaults of the options.
const (
	DefaultConcurrency  = 4
	DefaultAttempts     = 5
	DefaultStallTimeout = 30 * time.Second
)

// Option configures a Client, or one call of it.
type Option func(*options)

type options struct {
	keychain     authn.Keychain
	auth         authn.Authenticator
	plainHTTP    map[string]bool // hosts; "*" = every host
	tlsConfig    *tls.Config
	transport    http.RoundTripper
	concurrency  int
	retry        Retry
	stallTimeout time.Duration
	platform     *ocispec.Platform
	progress     func(Progress)
	logger       *slog.Logger
	unpack       bool
	userAgent    string
}

func defaultOptions() options {
	return options{
		keychain:     authn.DefaultKeychain,
		concurrency:  DefaultConcurrency,
		retry:        Retry{Attempts: DefaultAttempts, Base: 250 * time.Millisecond, Max: 10 * time.Second},
		stallTimeout: DefaultStallTimeout,
		unpack:       true,
		userAgent:    "berth",
	}
}

// Retry is the retry policy for transient failures: Attempts tries in
// all, waiting Base, 2*Base, 4*Base, ... (with ±20% jitter, never over Max)
// between them. A Retry-After the registry sends is the wait instead; one
// longer than Max ends the retries with the registry's answer.
type Retry struct {
	Attempts int           // tries in all, the first included; WithRetry takes 0 as 1
	Base     time.Duration // the first wait, doubled for each next one; WithRetry takes 0 as 250ms
	Max      time.Duration // the longest wait; WithRetry raises it to Base when it is below
}

// WithKeychain finds credentials per registry in kc. The default is
// go-containerregistry's authn.DefaultKeychain: Docker's config.json
// ($DOCKER_CONFIG or ~/.docker) with its credential helpers, then
// anonymous.
func WithKeychain(kc authn.Keychain) Option {
	return func(o *options) { o.keychain, o.auth = kc, nil }
}

// WithBasicAuth uses a user name and password for every registry the
// call talks to, instead of the keychain.
func WithBasicAuth(user, password string) Option {
	return WithAuth(&authn.Basic{Username: user, Password: password})
}

// WithBearerToken sends a registry bearer token (an OAuth2 access token
// for the registry) with every request, instead of the keychain.
func WithBearerToken(token string) Option {
	return WithAuth(&authn.Bearer{Token: token})
}

// WithAuth uses auth for every registry the call talks to, instead of
// the keychain.
func WithAuth(auth authn.Authenticator) Option {
	return func(o *options) { o.auth = auth }
}

// WithPlainHTTP allows plain HTTP to the given hosts ("host:port", as in
// references); with no hosts, to every host. Without it, plain HTTP is
// used only for loopback registries that do not answer HTTPS.
func WithPlainHTTP(hosts ...string) Option {
	return func(o *options) {
		if o.plainHTTP == nil {
			o.plainHTTP = make(map[string]bool)
		}
		if len(hosts) == 0 {
			o.plainHTTP["*"] = true
		}
		for _, h := range hosts {
			o.plainHTTP[h] = true
		}
	}
}

// WithRootCAs trusts the certificate authorities in pool (in addition to
// none: pass x509.SystemCertPool() with your CA added to keep the
// system's).
func WithRootCAs(pool *x509.CertPool) Option {
	return func(o *options) {
		c := &tls.Config{MinVersion: tls.VersionTLS12}
		if o.tlsConfig != nil {
			c = o.tlsConfig.Clone()
		}
		c.RootCAs = pool
		o.tlsConfig = c
	}
}

// WithTLSConfig sets the TLS configuration for HTTPS registries.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) { o.tlsConfig = c }
}

// WithTransport sets the HTTP transport requests go through (its TLS
// settings win over WithRootCAs and WithTLSConfig).
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) { o.transport = t }
}

// WithConcurrency sets how many blobs are transferred at once (default
// 4; values below 1 mean 1).
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = max(n, 1) }
}

// WithRetry sets the retry policy for transient failures.
func WithRetry(r Retry) Option {
	r.Attempts = max(r.Attempts, 1)
	if r.Base <= 0 {
		r.Base = 250 * time.Millisecond
	}
	if r.Max < r.Base {
		r.Max = r.Base
	}
	return func(o *options) { o.retry = r }
}

// WithStallTimeout sets how long a request may go without receiving
// anything before it is abandoned (and retried): default 30s.
func WithStallTimeout(d time.Duration) Option {
	return func(o *options) { o.stallTimeout = d }
}

// WithPlatform selects the manifest of an index to pull (default: the
// host's OS and architecture).
func WithPlatform(p ocispec.Platform) Option {
	return func(o *options) { o.platform = &p }
}

// WithProgress calls fn as transfers go on: at least once per finished
// blob and layer, and at most every 100 ms while bytes move. Calls are
// serialized; fn must not block.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) { o.progress = fn }
}

// WithLogger logs retries and skipped blobs to l (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithoutUnpack makes Pull store the image's blobs and tag it without
// unpacking its layers into snapshots.
func WithoutUnpack() Option {
	return func(o *options) { o.unpack = false }
}

// WithUserAgent sets the User-Agent sent to registries.
func WithUserAgent(ua string) Option {
	return func(o *options) { o.userAgent = ua }
}

// Progress is a snapshot of a transfer's progress.
type Progress struct {
	// Ref is the image being transferred.
	Ref string
	// Layers and LayersDone count the image's layers (for a push, all
	// its blobs) and those transferred or found present.
	Layers, LayersDone int
	// Unpacked counts the layers unpacked (pulls only).
	Unpacked int
	// Bytes and BytesDone are the sizes of the blobs to transfer and what
	// has arrived (or was present) so far.
	Bytes, BytesDone int64
}
