package regtest

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Fault describes how a Proxy misbehaves on the requests it matches. A
// request matches when Method and Path do; the first matching Fault that
// is not used up applies. Of the effects, Delay comes first; then Status
// answers without asking the registry; otherwise the request is
// forwarded and Header, BodyReplace, Corrupt, then Stall or Truncate
// change the answer.
type Fault struct {
	// Method is the HTTP method to match; "" matches any.
	Method string
	// Path is matched against the request's URL path; nil matches any.
	Path *regexp.Regexp
	// Times limits the fault to the first Times matching requests; 0
	// applies it to every matching request.
	Times int

	// Status, when non-zero, answers with this status instead of
	// forwarding, with a JSON registry error body (or BodyReplace). A 429
	// carries "Retry-After: 0" and a 401 a Basic challenge. The request
	// body is read first, as a server would.
	Status int
	// Corrupt forwards and flips bytes of the response body, keeping its
	// length: the first byte and every 64th after it.
	Corrupt bool
	// Truncate, when positive, sends only this many bytes of the response
	// body, with the original Content-Length, then closes the connection:
	// the client reads an unexpected EOF.
	Truncate int64
	// Delay waits this long before answering (or until the client gives
	// up).
	Delay time.Duration
	// Stall sends the headers and the first half of the body (at most 512
	// bytes), then blocks until the client cancels or times out, then
	// drops the connection. An answer without a body stalls before its
	// headers instead.
	Stall bool
	// BodyReplace, when non-nil, replaces the response body entirely,
	// Content-Length fixed to match; other headers, Docker-Content-Digest
	// included, are left as they were.
	BodyReplace []byte
	// Header sets response headers (after the registry's), for example a
	// wrong Content-Type.
	Header map[string]string
}

// Request is one request a Proxy has answered.
type Request struct {
	// Method and Path are the request's method and URL path.
	Method, Path string
	// Status is the status sent, or 499 when the client went away before
	// an answer was sent.
	Status int
	// Faulted tells whether a Fault applied.
	Faulted bool
}

// String returns "METHOD PATH -> STATUS".
func (r Request) String() string {
	return r.Method + " " + r.Path + " -> " + strconv.Itoa(r.Status)
}

// StatusClientGone is the status logged for a request whose client went
// away before it was answered.
const StatusClientGone = 499

// Proxy is a plain-HTTP reverse proxy on loopback in front of a Registry,
// injecting Faults. It talks TLS to a TLS registry, trusting its CA, and
// rewrites the registry's absolute URLs in Location, Content-Location,
// Link and WWW-Authenticate headers to its own, so clients that follow
// them keep going through the proxy.
type Proxy struct {
	// Host is "127.0.0.1:PORT", the registry part of an image reference
	// through the proxy.
	Host string
	// URL is "http://127.0.0.1:PORT".
	URL string

	target    *Registry
	transport *http.Transport // to the target
	client    *http.Client    // to the proxy, for Registry
	srv       *http.Server
	closing   chan struct{}
	closeOnce sync.Once

	mu     sync.Mutex
	faults []*faultState
	log    []Request
}

type faultState struct {
	Fault
	hits int
}

// NewProxy starts a Proxy in front of target for the duration of tb; it
// is closed by a tb.Cleanup.
func NewProxy(tb testing.TB, target *Registry) *Proxy {
	tb.Helper()
	p, err := StartProxy(target)
	if err != nil {
		tb.Fatalf("regtest: %v", err)
	}
	tb.Cleanup(p.Close)
	return p
}

// StartProxy starts a Proxy in front of target; the caller must Close it.
func StartProxy(target *Registry) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("regtest: proxy: %w", err)
	}
	p := &Proxy{
		Host:    ln.Addr().String(),
		target:  target,
		closing: make(chan struct{}),
		transport: &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
		},
	}
	p.URL = "http://" + p.Host
	p.client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 16, IdleConnTimeout: 30 * time.Second}}
	if target.CAPool != nil {
		p.transport.TLSClientConfig = &tls.Config{RootCAs: target.CAPool, MinVersion: tls.VersionTLS12}
	}
	p.srv = &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// Registry returns a Registry that addresses the target through the
// proxy: Host, URL and HTTPClient are the proxy's, User, Password and Dir
// the target's. PushBlob, PutManifest, PushImage and Ref work on it; its
// Close does nothing.
func (p *Proxy) Registry() *Registry {
	return &Registry{
		Host:     p.Host,
		URL:      p.URL,
		Dir:      p.target.Dir,
		User:     p.target.User,
		Password: p.target.Password,
		client:   p.client,
	}
}

// Close stops the proxy, dropping every connection, stalled ones
// included. It may be called more than once.
func (p *Proxy) Close() {
	p.closeOnce.Do(func() {
		close(p.closing)
		_ = p.srv.Close()
		p.transport.CloseIdleConnections()
		p.client.CloseIdleConnections()
	})
}

// Add appends a fault. Faults are checked in the order added; the first
// that matches a request and is not used up applies.
func (p *Proxy) Add(f Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = append(p.faults, &faultState{Fault: f})
}

// Reset removes every fault; requests are forwarded untouched again. The
// request log is kept (see ResetRequests).
func (p *Proxy) Reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.faults = nil
}

// ResetRequests empties the request log.
func (p *Proxy) ResetRequests() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = nil
}

// Log returns the requests answered so far, oldest first.
func (p *Proxy) Log() []Request {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Request(nil), p.log...)
}

// Requests returns the requests answered so far, oldest first, each as
// "METHOD PATH -> STATUS".
func (p *Proxy) Requests() []string {
	var out []string
	for _, r := range p.Log() {
		out = append(out, r.String())
	}
	return out
}

// Count returns how many answered requests had method ("" for any) and a
// path matched by path (nil for any).
func (p *Proxy) Count(method string, path *regexp.Regexp) int {
	n := 0
	for _, r := range p.Log() {
		if (method == "" || r.Method == method) && (path == nil || path.MatchString(r.Path)) {
			n++
		}
	}
	return n
}

// match returns the fault for req, counting it as used, or nil.
func (p *Proxy) match(req *http.Request) *Fault {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.faults {
		if f.Times > 0 && f.hits >= f.Times {
			continue
		}
		if f.Method != "" && f.Method != req.Method {
			continue
		}
		if f.Path != nil && !f.Path.MatchString(req.URL.Path) {
			continue
		}
		f.hits++
		fault := f.Fault
		return &fault
	}
	return nil
}

func (p *Proxy) record(req *http.Request, status int, f *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.log = append(p.log, Request{Method: req.Method, Path: req.URL.Path, Status: status, Faulted: f != nil})
}

// ServeHTTP forwards req to the registry, applying the first matching
// fault.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	f := p.match(req)
	ctx := req.Context()
	if f != nil && f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			p.record(req, StatusClientGone, f)
			return
		case <-p.closing:
			t.Stop()
			p.record(req, StatusClientGone, f)
			return
		}
	}
	if f != nil && f.Status != 0 {
		p.answer(w, req, f)
		return
	}

	resp, err := p.forward(req)
	if err != nil {
		status := http.StatusBadGateway
		if ctx.Err() != nil {
			status = StatusClientGone
		}
		p.record(req, status, f)
		http.Error(w, "regtest proxy: "+err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()

	h := w.Header()
	for k, vs := range resp.Header {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		for _, v := range vs {
			h.Add(k, p.rewrite(k, v))
		}
	}
	var body io.Reader = resp.Body
	length := resp.ContentLength
	if f != nil {
		for k, v := range f.Header {
			h.Set(k, v)
		}
		if f.BodyReplace != nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			body = bytes.NewReader(f.BodyReplace)
			length = int64(len(f.BodyReplace))
		}
		if f.Corrupt {
			body = &flipReader{r: body}
		}
	}
	if length >= 0 {
		h.Set("Content-Length", strconv.FormatInt(length, 10))
	} else {
		h.Del("Content-Length")
	}
	rc := http.NewResponseController(w)

	if f != nil && f.Stall && (req.Method == http.MethodHead || length == 0) {
		p.record(req, resp.StatusCode, f)
		p.stall(req) // does not return
	}
	p.record(req, resp.StatusCode, f)
	w.WriteHeader(resp.StatusCode)
	if req.Method == http.MethodHead {
		return
	}
	switch {
	case f != nil && f.Stall:
		n := int64(512)
		if length >= 0 && length/2 < n {
			n = length / 2
		}
		_, _ = io.CopyN(w, body, n)
		_ = rc.Flush()
		p.stall(req)
	case f != nil && f.Truncate > 0:
		if _, err := io.CopyN(w, body, f.Truncate); err != nil {
			return // the body was no longer than that: nothing to cut
		}
		_ = rc.Flush()
		panic(http.ErrAbortHandler) // close the connection, quietly
	default:
		_, _ = io.Copy(w, body)
	}
}

// stall blocks until the client or the proxy gives up, then drops the
// connection by panicking with http.ErrAbortHandler: it does not return.
func (p *Proxy) stall(req *http.Request) {
	select {
	case <-req.Context().Done():
	case <-p.closing:
	}
	panic(http.ErrAbortHandler)
}

// forward sends req on to the registry.
func (p *Proxy) forward(req *http.Request) (*http.Response, error) {
	var body io.Reader = req.Body
	if req.ContentLength == 0 {
		body = nil
	}
	out, err := http.NewRequestWithContext(req.Context(), req.Method, p.target.URL+req.URL.RequestURI(), body)
	if err != nil {
		return nil, err
	}
	out.ContentLength = req.ContentLength
	for k, vs := range req.Header {
		if hopByHop[http.CanonicalHeaderKey(k)] {
			continue
		}
		out.Header[k] = append([]string(nil), vs...)
	}
	return p.transport.RoundTrip(out)
}

// rewrite replaces the registry's own URL in headers that carry URLs.
func (p *Proxy) rewrite(key, v string) string {
	switch http.CanonicalHeaderKey(key) {
	case "Location", "Content-Location", "Link", "Www-Authenticate":
		return strings.ReplaceAll(v, p.target.URL, p.URL)
	}
	return v
}

// answer sends the fault's status without asking the registry.
func (p *Proxy) answer(w http.ResponseWriter, req *http.Request, f *Fault) {
	_, _ = io.Copy(io.Discard, io.LimitReader(req.Body, 1<<30))
	body := f.BodyReplace
	h := w.Header()
	if body == nil {
		code, msg := errorCode(f.Status, req.URL.Path)
		body, _ = json.Marshal(map[string]any{"errors": []map[string]string{{"code": code, "message": msg}}})
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	h.Set("Docker-Distribution-Api-Version", "registry/2.0")
	switch f.Status {
	case http.StatusTooManyRequests:
		h.Set("Retry-After", "0")
	case http.StatusUnauthorized:
		h.Set("Www-Authenticate", `Basic realm="regtest"`)
	}
	for k, v := range f.Header {
		h.Set(k, v)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	p.record(req, f.Status, f)
	w.WriteHeader(f.Status)
	if req.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// errorCode returns the distribution error code and message a registry
// would use for status on path.
func errorCode(status int, path string) (code, msg string) {
	switch status {
	case http.StatusUnauthorized:
		return "UNAUTHORIZED", "authentication required"
	case http.StatusForbidden:
		return "DENIED", "requested access to the resource is denied"
	case http.StatusNotFound:
		switch {
		case strings.Contains(path, "/blobs/uploads/"):
			return "BLOB_UPLOAD_UNKNOWN", "blob upload unknown to registry"
		case strings.Contains(path, "/blobs/"):
			return "BLOB_UNKNOWN", "blob unknown to registry"
		case strings.Contains(path, "/manifests/"):
			return "MANIFEST_UNKNOWN", "manifest unknown"
		}
		return "NAME_UNKNOWN", "repository name not known to registry"
	case http.StatusTooManyRequests:
		return "TOOMANYREQUESTS", "too many requests"
	case http.StatusServiceUnavailable:
		return "UNAVAILABLE", "service unavailable"
	}
	return "UNKNOWN", "regtest proxy: injected " + strconv.Itoa(status) + " " + http.StatusText(status)
}

// hopByHop are the headers a proxy does not pass on (RFC 9110, 7.6.1).
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// flipReader inverts the first byte and every 64th after it.
type flipReader struct {
	r   io.Reader
	off int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.r.Read(b)
	for i := 0; i < n; i++ {
		if (f.off+int64(i))%64 == 0 {
			b[i] ^= 0xff
		}
	}
	f.off += int64(n)
	return n, err
}
