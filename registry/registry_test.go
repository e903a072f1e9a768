package registry

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/regtest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/content"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestParseReference(t *testing.T) {
	o := defaultOptions()
	for _, tc := range []struct{ in, want, id string }{
		{"alpine", "docker.io/library/alpine:latest", "latest"},
		{"library/alpine:3.19", "docker.io/library/alpine:3.19", "3.19"},
		{"localhost:5000/team/app@sha256:" + fmt.Sprintf("%064x", 1), "localhost:5000/team/app@sha256:" + fmt.Sprintf("%064x", 1), "sha256:" + fmt.Sprintf("%064x", 1)},
		{"127.0.0.1:5000/a/b:v1", "127.0.0.1:5000/a/b:v1", "v1"},
	} {
		r, err := o.parse(tc.in)
		if err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if r.String() != tc.want || r.id != tc.id {
			t.Errorf("%s: got %s (%s), want %s (%s)", tc.in, r.String(), r.id, tc.want, tc.id)
		}
	}
	for _, bad := range []string{"", "UPPER/case", "a:b:c", "x@sha256:12", "host:port/x", "a//b", "-a"} {
		if _, err := o.parse(bad); !errors.Is(err, ErrInvalidReference) {
			t.Errorf("%q: got %v, want ErrInvalidReference", bad, err)
		}
	}
}

func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		temp bool
	}{
		{&StatusError{Code: 500}, true},
		{&StatusError{Code: 429}, true},
		{&StatusError{Code: 404}, false},
		{&StatusError{Code: 401}, false},
		{fmt.Errorf("x: %w", ErrStalled), true},
		{fmt.Errorf("x: %w", content.ErrDigestMismatch), true},
		{fmt.Errorf("x: %w", ErrUnsupported), false},
		{context.Canceled, false},
	} {
		if got := temporary(tc.err); got != tc.temp {
			t.Errorf("temporary(%v) = %v", tc.err, got)
		}
	}
	if !errors.Is(fmt.Errorf("w: %w", &StatusError{Code: 403}), ErrUnauthorized) || !errors.Is(&StatusError{Code: 404}, ErrNotFound) {
		t.Error("StatusError does not match its sentinels")
	}
}

func TestPlainHTTPRefused(t *testing.T) {
	c := New(WithRetry(Retry{Attempts: 1}))
	_, err := c.Inspect(testCtx(t), "registry.invalid:5000/x:y", WithTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if r.URL.Scheme == "http" {
			t.Errorf("plain HTTP request sent to %s", r.URL)
		}
		return nil, errors.New("no network here")
	})))
	if err == nil {
		t.Fatal("inspect of an unreachable registry worked")
	}
	// Asked for: the request goes out over HTTP.
	sent := false
	New(WithRetry(Retry{Attempts: 1}), WithPlainHTTP("registry.invalid:5000")).Inspect(testCtx(t), "registry.invalid:5000/x:y", WithTransport(roundTripFunc(func(r *http.Request) (*http.Response, error) {
		sent = sent || r.URL.Scheme == "http"
		return nil, errors.New("no network here")
	})))
	if !sent {
		t.Error("WithPlainHTTP did not allow plain HTTP")
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestBearerToken checks that an explicit bearer token is what the
// registry sees.
func TestBearerToken(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer s3cret" {
			w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		switch r.URL.Path {
		case "/v2/":
		case "/v2/team/app/tags/list":
			json.NewEncoder(w).Encode(map[string]any{"name": "team/app", "tags": []string{"a", "b"}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host := srv.Listener.Addr().String()
	tags, err := New(WithBearerToken("s3cret")).Tags(testCtx(t), host+"/team/app")
	if err != nil || !slices.Equal(tags, []string{"a", "b"}) {
		t.Fatalf("tags %v, %v", tags, err)
	}
	_, err = New(WithBearerToken("wrong")).Tags(testCtx(t), host+"/team/app")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
}

func TestPushPullRoundTrip(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	src := openStore(t)
	testImage(t, reg, "fixture/img", "v1")
	c := New()
	var last Progress
	var mu sync.Mutex
	pulled, err := c.Pull(ctx, reg.Ref("fixture/img", "v1"), src, WithProgress(func(p Progress) {
		mu.Lock()
		defer mu.Unlock()
		if p.BytesDone < last.BytesDone || p.LayersDone < last.LayersDone {
			t.Errorf("progress went back: %+v after %+v", p, last)
		}
		last = p
	}))
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image == nil || pulled.Image.ChainID == "" || pulled.Fetched != 3 {
		t.Fatalf("pulled %+v", pulled)
	}
	if last.BytesDone != last.Bytes || last.LayersDone != 2 || last.Unpacked != 2 || last.Layers != 2 {
		t.Errorf("final progress %+v", last)
	}
	// The unpacked layers are there.
	_, mounts, err := src.Prepare(ctx, "check", pulled.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(mounts) == 0 {
		t.Fatal("no mounts")
	}
	src.Release(ctx, "check")

	// Again: nothing is fetched.
	again, err := c.Pull(ctx, reg.Ref("fixture/img", "v1"), src)
	if err != nil || again.Fetched != 0 {
		t.Fatalf("second pull fetched %d: %v", again.Fetched, err)
	}

	// Push under two tags of a new repository: same registry, so blobs
	// are mounted from fixture/img (the store knows the image came from
	// there).
	pushed, err := c.Push(ctx, reg.Ref("team/copy", "a"), src, pulled.Name, WithDestinations(reg.Ref("team/copy", "b")))
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Mounted != 3 || pushed.Uploaded != 0 || pushed.Descriptor.Digest != pulled.Manifest.Digest {
		t.Errorf("push: %+v", pushed)
	}
	tags, err := c.Tags(ctx, reg.Host+"/team/copy")
	if err != nil || !slices.Equal(tags, []string{"a", "b"}) {
		t.Errorf("tags %v %v", tags, err)
	}
	// Pushing again skips every blob.
	pushed, err = c.Push(ctx, reg.Ref("team/copy", "c"), src, pulled.Name)
	if err != nil || pushed.Skipped != 3 {
		t.Errorf("repush %+v %v", pushed, err)
	}
	// A fresh store pulls it back byte for byte.
	dst := openStore(t)
	back, err := c.Pull(ctx, reg.Ref("team/copy", "b"), dst)
	if err != nil {
		t.Fatal(err)
	}
	if back.Manifest.Digest != pulled.Manifest.Digest || back.Image.ChainID != pulled.Image.ChainID {
		t.Errorf("pulled back %s/%s, pushed %s/%s", back.Manifest.Digest, back.Image.ChainID, pulled.Manifest.Digest, pulled.Image.ChainID)
	}
	// By digest too.
	byDigest, err := c.Pull(ctx, reg.Host+"/team/copy@"+pulled.Manifest.Digest.String(), openStore(t), WithoutUnpack())
	if err != nil || byDigest.Image != nil || byDigest.Name != reg.Host+"/team/copy@"+pulled.Manifest.Digest.String() {
		t.Fatalf("by digest: %+v %v", byDigest, err)
	}
}

func TestPushUploads(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	store := openStore(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("content"), 0o644)
	if _, err := store.ImportDirs(ctx, "example.com/local/app:v1", imageConfig(), dir); err != nil {
		t.Fatal(err)
	}
	var last Progress
	pushed, err := New().Push(ctx, reg.Ref("up/app", "v1"), store, "example.com/local/app:v1", WithProgress(func(p Progress) { last = p }))
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Uploaded != 2 || pushed.UploadedBytes == 0 {
		t.Errorf("pushed %+v", pushed)
	}
	if last.LayersDone != 2 || last.BytesDone != last.Bytes {
		t.Errorf("progress %+v", last)
	}
	r, err := New().Inspect(ctx, reg.Ref("up/app", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Descriptor.Digest != pushed.Descriptor.Digest || len(r.Manifest.Layers) != 1 || r.Config.Config.Cmd[0] != "sh" {
		t.Errorf("inspect %+v", r)
	}
	// Another repository later: the store remembers where the blobs went
	// and mounts them from there, as docker push does.
	again, err := New().Push(ctx, reg.Ref("one/app", "v1"), store, "example.com/local/app:v1")
	if err != nil || again.Uploaded != 0 || again.Mounted != 2 {
		t.Errorf("push to a second repository: %+v %v", again, err)
	}
	// Two repositories at once, of a registry that has none of it: the
	// second mounts from the first.
	reg2 := regtest.Start(t, regtest.Options{})
	both, err := New().Push(ctx, reg2.Ref("one/app", "v1"), store, "example.com/local/app:v1", WithDestinations(reg2.Ref("two/app", "v1")))
	if err != nil || both.Uploaded != 2 || both.Mounted != 2 {
		t.Errorf("push to two repositories: %+v %v", both, err)
	}
	for _, ref := range []string{reg.Ref("one/app", "v1"), reg2.Ref("two/app", "v1")} {
		if _, err := New().Pull(ctx, ref, openStore(t)); err != nil {
			t.Errorf("pull %s after mounts: %v", ref, err)
		}
	}
	// A digest destination must be the image's.
	if _, err := New().Push(ctx, reg.Host+"/up/app@sha256:"+fmt.Sprintf("%064x", 7), store, "example.com/local/app:v1"); !errors.Is(err, ErrInvalidReference) {
		t.Errorf("push to a wrong digest: %v", err)
	}
	if _, err := New().Push(ctx, reg.Ref("up/app", "x"), store, "example.com/local/none:v1"); !errors.Is(err, content.ErrNotFound) {
		t.Errorf("push of an unknown image: %v", err)
	}
}

// Where a pull found the blobs is remembered even when the image's name
// is gone, and a remembered repository that no longer has a blob costs a
// refused mount, then an upload.
func TestPushMountSources(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	src := openStore(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte("mount me"), 0o644)
	if _, err := src.ImportDirs(ctx, "example.com/local/app:v1", imageConfig(), dir); err != nil {
		t.Fatal(err)
	}
	if _, err := New().Push(ctx, reg.Ref("origin/app", "v1"), src, "example.com/local/app:v1"); err != nil {
		t.Fatal(err)
	}
	store := openStore(t)
	pulled, err := New().Pull(ctx, reg.Ref("origin/app", "v1"), store, WithoutUnpack())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Content.Tag(ctx, "example.com/mine/app:v1", pulled.Manifest); err != nil {
		t.Fatal(err)
	}
	if err := store.Content.Untag(ctx, pulled.Name); err != nil {
		t.Fatal(err)
	}
	pushed, err := New().Push(ctx, reg.Ref("copy/app", "v1"), store, "example.com/mine/app:v1")
	if err != nil || pushed.Mounted != 2 || pushed.Uploaded != 0 {
		t.Fatalf("push after a pull: %+v %v", pushed, err)
	}
	// A fresh registry at a stale address: the store says its repository
	// has the blobs, it does not.
	fresh := regtest.Start(t, regtest.Options{})
	man, _, err := store.Content.Manifest(ctx, pulled.Manifest, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range append([]ocispec.Descriptor{man.Config}, man.Layers...) {
		if err := store.Content.AddSource(ctx, d.Digest, fresh.Host+"/gone/app"); err != nil {
			t.Fatal(err)
		}
	}
	stale, err := New().Push(ctx, fresh.Ref("new/app", "v1"), store, "example.com/mine/app:v1")
	if err != nil || stale.Uploaded != 2 || stale.Mounted != 0 {
		t.Fatalf("push with stale sources: %+v %v", stale, err)
	}
	back, err := New().Pull(ctx, fresh.Ref("new/app", "v1"), openStore(t))
	if err != nil || back.Manifest.Digest != pulled.Manifest.Digest {
		t.Fatalf("pull back: %+v %v", back, err)
	}
	// Now the fresh registry's new/app is the most recent source.
	if srcs, err := store.Content.Sources(ctx, man.Config.Digest); err != nil || len(srcs) == 0 || srcs[0] != fresh.Host+"/new/app" {
		t.Errorf("sources after the push: %v %v", srcs, err)
	}
}

func TestTagDeleteCopy(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	other := regtest.Start(t, regtest.Options{TLS: true})
	img := testImage(t, reg, "fixture/img", "v1")
	c := New(WithRootCAs(other.CAPool))
	if err := c.Tag(ctx, reg.Ref("fixture/img", "v1"), "stable"); err != nil {
		t.Fatal(err)
	}
	r, err := c.Inspect(ctx, reg.Ref("fixture/img", "stable"))
	if err != nil || r.Descriptor.Digest.String() != img.Manifest.Digest {
		t.Fatalf("inspect stable: %v %v", r, err)
	}
	// Across registries (plain to TLS), then within one (mounted).
	if err := c.Copy(ctx, reg.Ref("fixture/img", "v1"), other.Ref("mirror/img", "v1")); err != nil {
		t.Fatal(err)
	}
	if err := c.Copy(ctx, other.Ref("mirror/img", "v1"), other.Ref("mirror/img2", "v1")); err != nil {
		t.Fatal(err)
	}
	got, err := c.Pull(ctx, other.Ref("mirror/img2", "v1"), openStore(t))
	if err != nil || got.Manifest.Digest.String() != img.Manifest.Digest {
		t.Fatalf("pull of the copy: %v", err)
	}
	// Delete by tag removes the manifest (and its other tag).
	if err := c.Delete(ctx, reg.Ref("fixture/img", "stable")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Inspect(ctx, reg.Ref("fixture/img", "v1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("inspect after delete: %v", err)
	}
	if err := c.Delete(ctx, reg.Ref("fixture/none", "v1")); !errors.Is(err, ErrNotFound) {
		t.Errorf("delete of nothing: %v", err)
	}
}

func TestAuth(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{User: "alice", Password: "wonderland", TLS: true})
	testImage(t, reg, "fixture/img", "v1")
	// No credentials (an empty Docker config): 401, not retried.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	store := openStore(t)
	_, err := New(WithRootCAs(reg.CAPool)).Pull(ctx, reg.Ref("fixture/img", "v1"), store)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("anonymous pull: %v", err)
	}
	_, err = New(WithRootCAs(reg.CAPool), WithBasicAuth("alice", "wrong")).Pull(ctx, reg.Ref("fixture/img", "v1"), store)
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("bad password: %v", err)
	}
	checkClean(t, store)
	// Explicit credentials.
	if _, err := New(WithRootCAs(reg.CAPool), WithBasicAuth("alice", "wonderland")).Pull(ctx, reg.Ref("fixture/img", "v1"), openStore(t)); err != nil {
		t.Fatal(err)
	}
	// Docker's config.json, as `docker login` writes it.
	cfg := map[string]any{"auths": map[string]any{reg.Host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte("alice:wonderland"))}}}
	b, _ := json.Marshal(cfg)
	os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), b, 0o600)
	if _, err := New(WithRootCAs(reg.CAPool)).Pull(ctx, reg.Ref("fixture/img", "v1"), openStore(t)); err != nil {
		t.Fatalf("pull with config.json: %v", err)
	}
	// A credential helper named in config.json.
	bin := t.TempDir()
	helper := "#!/bin/sh\nread server\necho '{\"ServerURL\":\"'$server'\",\"Username\":\"alice\",\"Secret\":\"wonderland\"}'\n"
	os.WriteFile(filepath.Join(bin, "docker-credential-berthtest"), []byte(helper), 0o755)
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	b, _ = json.Marshal(map[string]any{"credHelpers": map[string]string{reg.Host: "berthtest"}})
	os.WriteFile(filepath.Join(os.Getenv("DOCKER_CONFIG"), "config.json"), b, 0o600)
	if _, err := New(WithRootCAs(reg.CAPool)).Pull(ctx, reg.Ref("fixture/img", "v1"), openStore(t)); err != nil {
		t.Fatalf("pull with a credential helper: %v", err)
	}
	// TLS without the CA: a certificate error, not retried.
	_, err = New(WithBasicAuth("alice", "wonderland")).Pull(ctx, reg.Ref("fixture/img", "v1"), openStore(t))
	var uerr x509.UnknownAuthorityError
	if !errors.As(err, &uerr) {
		t.Errorf("pull without the CA: %v", err)
	}
}

func TestConcurrentPullsFetchOnce(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	img := testImage(t, reg, "fixture/img", "v1")
	p := regtest.NewProxy(t, reg)
	store := openStore(t)
	c := New()
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = c.Pull(ctx, p.Host+"/fixture/img:v1", store)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, b := range append(img.Layers, img.Config) {
		if n := p.Count("GET", regexp.MustCompile(regexp.QuoteMeta(b.Digest))); n != 1 {
			t.Errorf("blob %s fetched %d times", b.Digest, n)
		}
	}
	// With a failure on the first try of the big layer, the goroutine
	// that held it gives it up and another takes over: no pull may wait
	// on another's unpacker.
	for _, f := range []regtest.Fault{
		{Method: "GET", Path: regexp.MustCompile(regexp.QuoteMeta(img.Layers[0].Digest)), Times: 1, Status: 503},
		{Method: "GET", Path: regexp.MustCompile(regexp.QuoteMeta(img.Layers[0].Digest)), Times: 1, Corrupt: true},
	} {
		p.Reset()
		p.Add(f)
		store := openStore(t)
		ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = New(fastRetry).Pull(ctx, p.Host+"/fixture/img:v1", store)
			}()
		}
		wg.Wait()
		cancel()
		for _, err := range errs[:4] {
			if err != nil {
				t.Fatalf("with %+v: %v", f, err)
			}
		}
	}
}

func TestFaults(t *testing.T) {
	needRegistry(t)
	reg := regtest.Start(t, regtest.Options{})
	img := testImage(t, reg, "fixture/img", "v1")
	p := regtest.NewProxy(t, reg)
	big := regexp.MustCompile(regexp.QuoteMeta(img.Layers[0].Digest))
	manifest := regexp.MustCompile(`/manifests/`)
	ref := p.Host + "/fixture/img:v1"
	const odd = `{"schemaVersion":2,"mediaType":"application/vnd.example.thing+json"}`
	var diffIDs []digest.Digest
	for _, d := range img.DiffIDs {
		diffIDs = append(diffIDs, digest.Digest(d))
	}
	chain := layer.ChainIDs(diffIDs)[len(diffIDs)-1].String()
	for _, tc := range []struct {
		name  string
		fault regtest.Fault
		opts  []Option
		want  error // nil: the pull works
		gets  int   // GETs of the big layer, 0: not checked
	}{
		{name: "corrupt once", fault: regtest.Fault{Method: "GET", Path: big, Times: 1, Corrupt: true}, gets: 2},
		{name: "corrupt always", fault: regtest.Fault{Method: "GET", Path: big, Corrupt: true}, want: ErrDigestMismatch},
		{name: "truncated once", fault: regtest.Fault{Method: "GET", Path: big, Times: 1, Truncate: 100 << 10}, gets: 2},
		{name: "500 twice", fault: regtest.Fault{Method: "GET", Path: big, Times: 2, Status: 500}, gets: 3},
		{name: "429", fault: regtest.Fault{Method: "GET", Path: manifest, Times: 1, Status: 429}},
		{name: "503 always", fault: regtest.Fault{Method: "GET", Path: big, Status: 503}, want: &StatusError{Code: 503}},
		{name: "401", fault: regtest.Fault{Method: "GET", Path: big, Status: 401}, want: ErrUnauthorized, gets: 1},
		{name: "403", fault: regtest.Fault{Method: "GET", Path: manifest, Status: 403}, want: ErrUnauthorized},
		{name: "404", fault: regtest.Fault{Method: "GET", Path: big, Status: 404}, want: ErrNotFound, gets: 1},
		{name: "unknown media type", fault: regtest.Fault{Method: "GET", Path: manifest, BodyReplace: []byte(odd), Header: map[string]string{"Content-Type": "application/vnd.example.thing+json", "Docker-Content-Digest": digest.FromString(odd).String()}}, want: ErrUnsupported},
		{name: "stall once", fault: regtest.Fault{Method: "GET", Path: big, Times: 1, Stall: true}, opts: []Option{WithStallTimeout(200 * time.Millisecond)}, gets: 2},
		{name: "stall always", fault: regtest.Fault{Method: "GET", Path: big, Stall: true}, opts: []Option{WithStallTimeout(100 * time.Millisecond)}, want: ErrStalled},
		{name: "slow", fault: regtest.Fault{Method: "GET", Path: big, Delay: 300 * time.Millisecond}, opts: []Option{WithStallTimeout(time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.Reset()
			p.ResetRequests()
			p.Add(tc.fault)
			store := openStore(t)
			res, err := New(fastRetry).Pull(testCtx(t), ref, store, tc.opts...)
			switch want := tc.want.(type) {
			case nil:
				if err != nil {
					t.Fatal(err)
				}
				if res.Image == nil || res.Image.ChainID != chain {
					t.Errorf("unpacked to %+v, want chain %s", res.Image, chain)
				}
			case *StatusError:
				var se *StatusError
				if !errors.As(err, &se) || se.Code != want.Code {
					t.Fatalf("got %v, want status %d", err, want.Code)
				}
			default:
				if !errors.Is(err, want) {
					t.Fatalf("got %v, want %v", err, want)
				}
			}
			if err != nil {
				t.Logf("error: %v", err)
				checkClean(t, store, img.Layers[0].Digest, img.Manifest.Digest)
			}
			if n := p.Count("GET", big); tc.gets != 0 && n != tc.gets {
				t.Errorf("big layer fetched %d times, want %d: %v", n, tc.gets, p.Requests())
			}
		})
	}
}

// TestTruncatedResumes checks a broken download continues with a range
// request instead of starting over.
func TestTruncatedResumes(t *testing.T) {
	needRegistry(t)
	reg := regtest.Start(t, regtest.Options{})
	img := testImage(t, reg, "fixture/img", "v1")
	p := regtest.NewProxy(t, reg)
	big := img.Layers[0]
	p.Add(regtest.Fault{Method: "GET", Path: regexp.MustCompile(regexp.QuoteMeta(big.Digest)), Times: 1, Truncate: 200 << 10})
	var ranges []string
	var mu sync.Mutex
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		if h := r.Header.Get("Range"); h != "" {
			ranges = append(ranges, h)
		}
		mu.Unlock()
		return http.DefaultTransport.RoundTrip(r)
	})
	res, err := New(fastRetry, WithTransport(tr)).Pull(testCtx(t), p.Host+"/fixture/img:v1", openStore(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ranges, []string{"bytes=204800-"}) {
		t.Errorf("range requests %v", ranges)
	}
	if res.FetchedBytes != int64(len(big.Data)+len(img.Layers[1].Data)+len(img.Config.Data)) {
		t.Errorf("fetched %d bytes", res.FetchedBytes)
	}
}

func TestCancelledPullLeavesNothing(t *testing.T) {
	needRegistry(t)
	reg := regtest.Start(t, regtest.Options{})
	img := testImage(t, reg, "fixture/img", "v1")
	p := regtest.NewProxy(t, reg)
	p.Add(regtest.Fault{Method: "GET", Path: regexp.MustCompile(regexp.QuoteMeta(img.Layers[0].Digest)), Stall: true})
	store := openStore(t)
	ctx, cancel := context.WithCancel(testCtx(t))
	go func() {
		for p.Count("GET", regexp.MustCompile(regexp.QuoteMeta(img.Layers[0].Digest))) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	start := time.Now()
	_, err := New().Pull(ctx, p.Host+"/fixture/img:v1", store)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("cancel took %v", d)
	}
	checkClean(t, store, img.Layers[0].Digest, img.Manifest.Digest)
	// What did arrive is verified and reused by the next pull.
	res, err := New().Pull(testCtx(t), reg.Ref("fixture/img", "v1"), store)
	if err != nil {
		t.Fatal(err)
	}
	if res.Fetched < 1 || res.Fetched > 3 {
		t.Errorf("fetched %d", res.Fetched)
	}
}

// TestUnpackWhileDownloading checks that a layer is unpacked from the
// download itself (no fallback to the store), and that a download that
// goes wrong midway falls back and still gives the right layer.
func TestUnpackWhileDownloading(t *testing.T) {
	needRegistry(t)
	reg := regtest.Start(t, regtest.Options{})
	img := testImage(t, reg, "fixture/img", "v1")
	p := regtest.NewProxy(t, reg)
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if _, err := New(WithLogger(logger)).Pull(testCtx(t), p.Host+"/fixture/img:v1", openStore(t)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs.String(), "unpacking from the store") {
		t.Errorf("fell back to the store:\n%s", logs.String())
	}
	// The bottom layer at least (a later one may be in before the
	// unpacker gets to it, and is then unpacked from the store).
	if !strings.Contains(logs.String(), "unpacked while downloading\" layer="+img.Layers[0].Digest) {
		t.Errorf("the bottom layer was not unpacked while downloading:\n%s", logs.String())
	}
	p.Add(regtest.Fault{Method: "GET", Path: regexp.MustCompile(regexp.QuoteMeta(img.Layers[0].Digest)), Times: 1, Corrupt: true})
	logs.Reset()
	res, err := New(WithLogger(logger), fastRetry).Pull(testCtx(t), p.Host+"/fixture/img:v1", openStore(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "unpacking from the store") {
		t.Errorf("a corrupted stream was not abandoned:\n%s", logs.String())
	}
	if res.Image == nil || res.Image.ChainID == "" {
		t.Errorf("pulled %+v", res)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

// TestConcurrencyLimit checks berth's own limit on parallel downloads.
func TestConcurrencyLimit(t *testing.T) {
	needRegistry(t)
	reg := regtest.Start(t, regtest.Options{})
	var layers []map[string]string
	for i := range 6 {
		layers = append(layers, map[string]string{fmt.Sprintf("f%d", i): noise(64 << 10)})
	}
	img, err := regtest.NewTestImage(layers...)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.PushImage(testCtx(t), "many/layers", "v1", img); err != nil {
		t.Fatal(err)
	}
	p := regtest.NewProxy(t, reg)
	p.Add(regtest.Fault{Method: "GET", Path: regexp.MustCompile(`/blobs/`), Delay: 50 * time.Millisecond})
	var mu sync.Mutex
	inflight, peak := 0, 0
	tr := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if !strings.Contains(r.URL.Path, "/blobs/") {
			return http.DefaultTransport.RoundTrip(r)
		}
		mu.Lock()
		inflight++
		peak = max(peak, inflight)
		mu.Unlock()
		resp, err := http.DefaultTransport.RoundTrip(r)
		if err != nil {
			mu.Lock()
			inflight--
			mu.Unlock()
			return nil, err
		}
		resp.Body = &onClose{ReadCloser: resp.Body, fn: func() { mu.Lock(); inflight--; mu.Unlock() }}
		return resp, nil
	})
	if _, err := New(WithTransport(tr), WithConcurrency(2)).Pull(testCtx(t), p.Host+"/many/layers:v1", openStore(t)); err != nil {
		t.Fatal(err)
	}
	if peak != 2 {
		t.Errorf("peak of %d parallel blob downloads, want 2", peak)
	}
}

type onClose struct {
	io.ReadCloser
	fn   func()
	once sync.Once
}

func (o *onClose) Close() error {
	o.once.Do(o.fn)
	return o.ReadCloser.Close()
}

func TestPushFaults(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	p := regtest.NewProxy(t, reg)
	store := openStore(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "file"), []byte(noise(200<<10)), 0o644)
	if _, err := store.ImportDirs(ctx, "example.com/local/app:v1", imageConfig(), dir); err != nil {
		t.Fatal(err)
	}
	// A failed upload and a failed manifest PUT are retried.
	p.Add(regtest.Fault{Method: "PUT", Path: regexp.MustCompile(`/blobs/uploads/`), Times: 1, Status: 500})
	p.Add(regtest.Fault{Method: "PUT", Path: regexp.MustCompile(`/manifests/`), Times: 1, Status: 503})
	pushed, err := New(fastRetry).Push(ctx, p.Host+"/faulty/app:v1", store, "example.com/local/app:v1")
	if err != nil {
		t.Fatal(err)
	}
	r, err := New().Inspect(ctx, reg.Ref("faulty/app", "v1"))
	if err != nil || r.Descriptor.Digest != pushed.Descriptor.Digest {
		t.Fatalf("inspect after a retried push: %v", err)
	}
	// Refused: not retried.
	p.Reset()
	p.ResetRequests()
	p.Add(regtest.Fault{Method: "POST", Status: 401})
	_, err = New(fastRetry, WithConcurrency(1)).Push(ctx, p.Host+"/faulty/other:v1", store, "example.com/local/app:v1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("push refused: %v", err)
	}
	if n := p.Count("POST", nil); n != 1 {
		t.Errorf("a refused upload was tried %d times", n)
	}
}

// TestZeroClient checks a zero Client works with the defaults, as a zero
// http.Client does: it pulls and unpacks, and pushes an image back under
// its own name (src "").
func TestZeroClient(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	testImage(t, reg, "fixture/img", "v1")
	store := openStore(t)
	var c Client
	pulled, err := c.Pull(ctx, reg.Ref("fixture/img", "v1"), store)
	if err != nil {
		t.Fatal(err)
	}
	if pulled.Image == nil || pulled.Image.ChainID == "" || pulled.Fetched != 3 {
		t.Fatalf("zero Client pulled %+v", pulled)
	}
	pushed, err := c.Push(ctx, pulled.Name, store, "")
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Skipped != 3 || pushed.Uploaded != 0 || !slices.Equal(pushed.Refs, []string{pulled.Name}) {
		t.Errorf("zero Client pushed %+v", pushed)
	}
	// Per-call options work on it too.
	again, err := c.Pull(ctx, reg.Ref("fixture/img", "v1"), openStore(t), WithoutUnpack())
	if err != nil || again.Image != nil || again.Fetched != 3 {
		t.Errorf("zero Client with WithoutUnpack: %+v, %v", again, err)
	}
}
