package regtest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func sha256hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// fixture is a registry holding one image, shared by the proxy tests.
type fixture struct {
	r   *Registry
	img *TestImage
}

func newFixture(t *testing.T, opts Options) *fixture {
	t.Helper()
	r := Start(t, opts)
	img, err := NewTestImage(map[string]string{"data": strings.Repeat("some layer content ", 200)})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushImage(context.Background(), "proxy/img", "v1", img); err != nil {
		t.Fatal(err)
	}
	return &fixture{r: r, img: img}
}

var (
	manifestPath = regexp.MustCompile(`/manifests/`)
	blobPath     = regexp.MustCompile(`/blobs/sha256:`)
)

func TestProxy(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{})
	layer := fx.img.Layers[0]
	manifestURL := func(p *Proxy) string { return p.URL + "/v2/proxy/img/manifests/v1" }
	layerURL := func(p *Proxy) string { return p.URL + "/v2/proxy/img/blobs/" + layer.Digest }
	accept := []string{"Accept", v1.MediaTypeImageManifest}

	t.Run("passthrough", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		resp, body := get(t, http.DefaultClient, manifestURL(p), accept...)
		if resp.StatusCode != 200 || !bytes.Equal(body, fx.img.Manifest.Data) {
			t.Errorf("manifest: %s", resp.Status)
		}
		for i := 0; i < 2; i++ {
			resp, body = get(t, http.DefaultClient, layerURL(p))
			if resp.StatusCode != 200 || !bytes.Equal(body, layer.Data) || resp.ContentLength != int64(len(layer.Data)) {
				t.Errorf("layer: %s %d bytes", resp.Status, len(body))
			}
		}
		want := []string{
			"GET /v2/proxy/img/manifests/v1 -> 200",
			"GET /v2/proxy/img/blobs/" + layer.Digest + " -> 200",
			"GET /v2/proxy/img/blobs/" + layer.Digest + " -> 200",
		}
		if got := p.Requests(); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("Requests:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		if n := p.Count("GET", regexp.MustCompile(regexp.QuoteMeta(layer.Digest))); n != 2 {
			t.Errorf("layer fetched %d times", n)
		}
		if n := p.Count("", nil); n != 3 {
			t.Errorf("Count all: %d", n)
		}
		if n := p.Count("HEAD", nil); n != 0 {
			t.Errorf("Count HEAD: %d", n)
		}
		p.ResetRequests()
		if n := len(p.Requests()); n != 0 {
			t.Errorf("%d requests after ResetRequests", n)
		}
	})

	t.Run("status", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		p.Add(Fault{Method: "GET", Path: manifestPath, Times: 1, Status: 500})
		p.Add(Fault{Method: "GET", Path: manifestPath, Times: 1, Status: 429})
		p.Add(Fault{Method: "GET", Path: manifestPath, Times: 1, Status: 401})
		p.Add(Fault{Method: "HEAD", Status: 404})

		resp, body := get(t, http.DefaultClient, manifestURL(p), accept...)
		if resp.StatusCode != 500 || !strings.Contains(string(body), `"UNKNOWN"`) {
			t.Errorf("first: %s %s", resp.Status, body)
		}
		resp, body = get(t, http.DefaultClient, manifestURL(p), accept...)
		var errs struct {
			Errors []struct{ Code, Message string }
		}
		if err := json.Unmarshal(body, &errs); err != nil || len(errs.Errors) != 1 || errs.Errors[0].Code != "TOOMANYREQUESTS" {
			t.Errorf("429 body %s (%v)", body, err)
		}
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "0" {
			t.Errorf("second: %s Retry-After %q", resp.Status, resp.Header.Get("Retry-After"))
		}
		resp, _ = get(t, http.DefaultClient, manifestURL(p), accept...)
		if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("third: %s %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		resp, body = get(t, http.DefaultClient, manifestURL(p), accept...)
		if resp.StatusCode != 200 || !bytes.Equal(body, fx.img.Manifest.Data) {
			t.Errorf("fourth, faults used up: %s", resp.Status)
		}
		head, err := http.Head(layerURL(p))
		if err != nil {
			t.Fatal(err)
		}
		head.Body.Close()
		if head.StatusCode != 404 {
			t.Errorf("HEAD: %s", head.Status)
		}
		p.Reset()
		if head, err = http.Head(layerURL(p)); err != nil {
			t.Fatal(err)
		}
		head.Body.Close()
		if head.StatusCode != 200 || head.ContentLength != int64(len(layer.Data)) {
			t.Errorf("HEAD after Reset: %s, %d bytes", head.Status, head.ContentLength)
		}
		want := []string{"-> 500", "-> 429", "-> 401", "-> 200", "HEAD", "-> 200"}
		got := p.Requests()
		if len(got) != len(want) {
			t.Fatalf("Requests: %q", got)
		}
		for i := range want {
			if !strings.Contains(got[i], want[i]) {
				t.Errorf("request %d: %q, want %q in it", i, got[i], want[i])
			}
		}
		if log := p.Log(); !log[0].Faulted || log[3].Faulted {
			t.Errorf("Faulted flags: %+v", log)
		}
	})

	t.Run("corrupt", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		p.Add(Fault{Path: blobPath, Corrupt: true})
		resp, body := get(t, http.DefaultClient, layerURL(p))
		if resp.StatusCode != 200 || len(body) != len(layer.Data) || bytes.Equal(body, layer.Data) {
			t.Errorf("corrupt: %s, %d bytes, equal %v", resp.Status, len(body), bytes.Equal(body, layer.Data))
		}
		if resp.Header.Get("Docker-Content-Digest") != layer.Digest {
			t.Errorf("digest header changed: %s", resp.Header.Get("Docker-Content-Digest"))
		}
		if "sha256:"+sha256hex(body) == layer.Digest {
			t.Error("corrupt body still matches its digest")
		}
	})

	t.Run("truncate", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		p.Add(Fault{Path: blobPath, Truncate: 10, Times: 1})
		resp, err := http.Get(layerURL(p))
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, io.ErrUnexpectedEOF) || len(body) != 10 || resp.ContentLength != int64(len(layer.Data)) {
			t.Errorf("truncated read: %d of %d bytes, %v", len(body), resp.ContentLength, err)
		}
		// A second fetch is whole again (Times: 1).
		resp2, body := get(t, http.DefaultClient, layerURL(p))
		if resp2.StatusCode != 200 || !bytes.Equal(body, layer.Data) {
			t.Errorf("second fetch: %s %d bytes", resp2.Status, len(body))
		}
	})

	t.Run("delay", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		const d = 150 * time.Millisecond
		p.Add(Fault{Path: manifestPath, Delay: d})
		start := time.Now()
		resp, body := get(t, http.DefaultClient, manifestURL(p), accept...)
		if el := time.Since(start); el < d {
			t.Errorf("answered after %v, want at least %v", el, d)
		}
		if resp.StatusCode != 200 || !bytes.Equal(body, fx.img.Manifest.Data) {
			t.Errorf("delayed: %s", resp.Status)
		}
		// A client that gives up during the delay is logged as gone.
		c := &http.Client{Timeout: 30 * time.Millisecond}
		if _, err := c.Get(manifestURL(p)); err == nil {
			t.Error("no timeout")
		}
		waitFor(t, func() bool { return p.Count("", nil) == 2 })
		if got := p.Log()[1].Status; got != StatusClientGone {
			t.Errorf("gone client logged as %d", got)
		}
	})

	t.Run("stall", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		p.Add(Fault{Method: "GET", Path: blobPath, Stall: true})
		p.Add(Fault{Method: "HEAD", Stall: true})
		const timeout = 200 * time.Millisecond

		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", layerURL(p), nil)
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("headers should come before the stall: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < timeout {
			t.Errorf("stalled read: %d bytes after %v: %v", len(body), time.Since(start), err)
		}
		if len(body) == 0 || len(body) >= len(layer.Data) || !bytes.HasPrefix(layer.Data, body) {
			t.Errorf("stalled read gave %d of %d bytes", len(body), len(layer.Data))
		}

		// With no body to send, the stall comes before the headers.
		c := &http.Client{Timeout: timeout}
		start = time.Now()
		if _, err := c.Head(layerURL(p)); err == nil || time.Since(start) < timeout {
			t.Errorf("stalled HEAD: %v after %v", err, time.Since(start))
		}
	})

	t.Run("replace", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		weird := []byte(`{"schemaVersion":2,"mediaType":"application/x-unknown"}`)
		p.Add(Fault{Path: manifestPath, BodyReplace: weird, Header: map[string]string{"Content-Type": "application/x-unknown"}})
		resp, body := get(t, http.DefaultClient, manifestURL(p), accept...)
		if !bytes.Equal(body, weird) || resp.ContentLength != int64(len(weird)) || resp.Header.Get("Content-Type") != "application/x-unknown" {
			t.Errorf("replaced: %s %q %d %q", resp.Status, body, resp.ContentLength, resp.Header.Get("Content-Type"))
		}
		if resp.Header.Get("Docker-Content-Digest") != fx.img.Manifest.Digest {
			t.Error("Docker-Content-Digest not kept")
		}
	})

	t.Run("upload", func(t *testing.T) {
		t.Parallel()
		p := NewProxy(t, fx.r)
		// The raw POST: Location names the proxy.
		resp, err := http.Post(p.URL+"/v2/proxy/up/blobs/uploads/", "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if loc := resp.Header.Get("Location"); resp.StatusCode != 202 || !strings.HasPrefix(loc, p.URL+"/v2/proxy/up/blobs/uploads/") {
			t.Errorf("POST: %s, Location %q", resp.Status, loc)
		}
		p.ResetRequests()

		// The helpers follow Location, so the PUT goes through the proxy.
		pr := p.Registry()
		data := []byte("uploaded through the proxy")
		d, err := pr.PushBlob(context.Background(), "proxy/up", data)
		if err != nil {
			t.Fatal(err)
		}
		got := p.Requests()
		if len(got) != 2 || got[0] != "POST /v2/proxy/up/blobs/uploads/ -> 202" ||
			!regexp.MustCompile(`^PUT /v2/proxy/up/blobs/uploads/[0-9a-f-]+ -> 201$`).MatchString(got[1]) {
			t.Errorf("Requests: %q", got)
		}
		resp2, body := get(t, fx.r.HTTPClient(), fx.r.URL+"/v2/proxy/up/blobs/"+d)
		if resp2.StatusCode != 200 || !bytes.Equal(body, data) {
			t.Errorf("blob in the registry: %s %q", resp2.Status, body)
		}
		if pr.Ref("a", "b") != p.Host+"/a:b" || pr.PID() != 0 || pr.Close() != nil {
			t.Error("proxy Registry")
		}
	})
}

// TestProxyTLSAuth runs the proxy in front of a TLS registry with auth.
func TestProxyTLSAuth(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, Options{TLS: true, User: "u", Password: "p"})
	p := NewProxy(t, fx.r)
	pr := p.Registry()
	if err := pr.PushImage(context.Background(), "proxy/copy", "v2", fx.img); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", p.URL+"/v2/proxy/copy/manifests/v2", nil)
	req.Header.Set("Accept", v1.MediaTypeImageManifest)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Errorf("unauthenticated through the proxy: %s", resp.Status)
	}
	req.SetBasicAuth("u", "p")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, fx.img.Manifest.Data) {
		t.Errorf("through the proxy: %s", resp.Status)
	}
	// Every upload request went through the proxy, none straight to the registry.
	if n := p.Count("PUT", regexp.MustCompile(`/blobs/uploads/`)); n != 2 {
		t.Errorf("%d blob PUTs through the proxy, want 2: %q", n, p.Requests())
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
