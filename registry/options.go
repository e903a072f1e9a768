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

// Defaults of the options: what a zero Client, or one made by New
// without the option, uses.
const (
	// DefaultConcurrency is how many blobs are transferred at once.
	DefaultConcurrency = 4
	// DefaultAttempts is how many tries a transient failure gets, the
	// first included.
	DefaultAttempts = 5
	// DefaultRetryBase is the wait before the second try, doubled for
	// each next one.
	DefaultRetryBase = 250 * time.Millisecond
	// DefaultRetryMax is the longest wait between tries.
	DefaultRetryMax = 10 * time.Second
	// DefaultStallTimeout is how long a request may receive nothing
	// before it is abandoned and retried.
	DefaultStallTimeout = 30 * time.Second
	// DefaultUserAgent is the User-Agent sent to registries.
	DefaultUserAgent = "berth"
)

// Option configures a Client, or one call of it. The options given to New
// apply to every call of the Client; those given to a method apply to
// that call, after the Client's, so they win. Without an option its
// default holds, as each With function says.
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
	destinations []string
}

func defaultOptions() options {
	return options{
		keychain:     authn.DefaultKeychain,
		concurrency:  DefaultConcurrency,
		retry:        Retry{Attempts: DefaultAttempts, Base: DefaultRetryBase, Max: DefaultRetryMax},
		stallTimeout: DefaultStallTimeout,
		unpack:       true,
		userAgent:    DefaultUserAgent,
	}
}

// Retry is the retry policy for transient failures: Attempts tries in
// all, waiting Base, 2*Base, 4*Base, ... (with ±20% jitter, never over Max)
// between them. A Retry-After the registry sends is the wait instead; one
// longer than Max ends the retries with the registry's answer.
type Retry struct {
	Attempts int           // tries in all, the first included; WithRetry takes 0 as 1
	Base     time.Duration // the first wait, doubled for each next one; WithRetry takes 0 as DefaultRetryBase
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
// the keychain (the default).
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
// system's). The default is the system's roots.
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

// WithTLSConfig sets the TLS configuration for HTTPS registries. The
// default is Go's (crypto/tls's zero Config: the system's roots).
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) { o.tlsConfig = c }
}

// WithTransport sets the HTTP transport requests go through (its TLS
// settings win over WithRootCAs and WithTLSConfig). The default is a
// clone of http.DefaultTransport with those TLS settings.
func WithTransport(t http.RoundTripper) Option {
	return func(o *options) { o.transport = t }
}

// WithConcurrency sets how many blobs are transferred at once (default
// DefaultConcurrency; values below 1 mean 1).
func WithConcurrency(n int) Option {
	return func(o *options) { o.concurrency = max(n, 1) }
}

// WithRetry sets the retry policy for transient failures. The default is
// Retry{DefaultAttempts, DefaultRetryBase, DefaultRetryMax}.
func WithRetry(r Retry) Option {
	r.Attempts = max(r.Attempts, 1)
	if r.Base <= 0 {
		r.Base = DefaultRetryBase
	}
	if r.Max < r.Base {
		r.Max = r.Base
	}
	return func(o *options) { o.retry = r }
}

// WithStallTimeout sets how long a request may go without receiving
// anything before it is abandoned (and retried): default
// DefaultStallTimeout; 0 or less turns the watch off.
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
// serialized; fn must not block. The default is no callback.
func WithProgress(fn func(Progress)) Option {
	return func(o *options) { o.progress = fn }
}

// WithLogger logs retries and skipped blobs to l (default: discard).
func WithLogger(l *slog.Logger) Option {
	return func(o *options) { o.logger = l }
}

// WithoutUnpack makes Pull store the image's blobs and tag it without
// unpacking its layers into snapshots. Without it (the default) Pull
// unpacks them.
func WithoutUnpack() Option {
	return func(o *options) { o.unpack = false }
}

// WithUserAgent sets the User-Agent sent to registries (default
// DefaultUserAgent; "" leaves the default of the HTTP libraries).
func WithUserAgent(ua string) Option {
	return func(o *options) { o.userAgent = ua }
}

// WithDestinations makes Push send the image to refs too, after the
// reference it is given: more tags, or repositories of this or other
// registries. Each use adds to the list; Pull and the other methods
// ignore it. The default is none.
func WithDestinations(refs ...string) Option {
	return func(o *options) { o.destinations = append(o.destinations, refs...) }
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
