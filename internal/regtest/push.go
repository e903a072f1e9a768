package regtest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"sort"
	"time"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

// PushBlob uploads data as a blob of repo, in one POST (open an upload)
// and one PUT (the whole content with its digest), and returns its digest
// ("sha256:..."). It uses basic auth when the registry has a User.
func (r *Registry) PushBlob(ctx context.Context, repo string, data []byte) (string, error) {
	dgst := digest.FromBytes(data).String()
	resp, err := r.do(ctx, http.MethodPost, "/v2/"+repo+"/blobs/uploads/", "", nil)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", statusError("POST blob upload", resp)
	}
	resp.Body.Close()
	loc, err := r.resolve(resp.Header.Get("Location"))
	if err != nil {
		return "", fmt.Errorf("regtest: upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", dgst)
	loc.RawQuery = q.Encode()
	// The content type matters: with none, Go's server (and so the
	// registry) would parse a form body looking for the digest parameter.
	resp, err = r.do(ctx, http.MethodPut, loc.String(), "application/octet-stream", data)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", statusError("PUT blob "+dgst, resp)
	}
	resp.Body.Close()
	return dgst, nil
}

// PutManifest uploads data as a manifest of mediaType under ref (a tag or
// a digest) in repo and returns the digest the registry gives it. It uses
// basic auth when the registry has a User.
func (r *Registry) PutManifest(ctx context.Context, repo, ref, mediaType string, data []byte) (string, error) {
	resp, err := r.do(ctx, http.MethodPut, "/v2/"+repo+"/manifests/"+ref, mediaType, data)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != http.StatusCreated {
		return "", statusError("PUT manifest "+repo+":"+ref, resp)
	}
	resp.Body.Close()
	if d := resp.Header.Get("Docker-Content-Digest"); d != "" {
		return d, nil
	}
	return digest.FromBytes(data).String(), nil
}

// do sends one request to the registry, target being a path or an
// absolute URL, with basic auth when the registry has a User.
func (r *Registry) do(ctx context.Context, method, target, contentType string, body []byte) (*http.Response, error) {
	u, err := r.resolve(target)
	if err != nil {
		return nil, err
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.User != "" {
		req.SetBasicAuth(r.User, r.Password)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("regtest: %s %s: %w", method, u.Path, err)
	}
	return resp, nil
}

func (r *Registry) resolve(ref string) (*url.URL, error) {
	base, err := url.Parse(r.URL)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(ref)
	if err != nil {
		return nil, err
	}
	return base.ResolveReference(u), nil
}

// statusError reads and closes resp's body and describes the failure.
func statusError(what string, resp *http.Response) error {
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("regtest: %s: %s: %s", what, resp.Status, bytes.TrimSpace(body))
}

// Blob is one piece of content of a TestImage.
type Blob struct {
	// MediaType is the type a manifest names it with.
	MediaType string
	// Digest is "sha256:..." of Data.
	Digest string
	// Data is the content.
	Data []byte
}

// Descriptor returns the OCI descriptor of b.
func (b Blob) Descriptor() v1.Descriptor {
	return v1.Descriptor{MediaType: b.MediaType, Digest: digest.Digest(b.Digest), Size: int64(len(b.Data))}
}

func newBlob(mediaType string, data []byte) Blob {
	return Blob{MediaType: mediaType, Digest: digest.FromBytes(data).String(), Data: data}
}

// TestImage is a small, valid OCI image built in memory by NewTestImage.
type TestImage struct {
	// Manifest is the OCI image manifest; its Digest is the image's.
	Manifest Blob
	// Config is the OCI image config.
	Config Blob
	// Layers are gzip-compressed tar layers, bottom first.
	Layers []Blob
	// DiffIDs are the digests of the uncompressed layers.
	DiffIDs []string
}

// epoch is the modification time of every file in a test layer, so that
// a layer's digest depends on its contents only.
var epoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// NewTestImage builds an OCI image for linux on the running architecture
// with one gzip layer per map, each holding the named regular files
// (mode 0644; parent directories are added, mode 0755). Its command is
// ["/bin/sh"]. Everything is deterministic: the same files give the same
// digests.
func NewTestImage(layers ...map[string]string) (*TestImage, error) {
	img := &TestImage{}
	for _, files := range layers {
		tarball, gz, err := layerTar(files)
		if err != nil {
			return nil, err
		}
		img.Layers = append(img.Layers, newBlob(v1.MediaTypeImageLayerGzip, gz))
		img.DiffIDs = append(img.DiffIDs, digest.FromBytes(tarball).String())
	}
	cfg := v1.Image{
		Platform: v1.Platform{Architecture: runtime.GOARCH, OS: "linux"},
		Config:   v1.ImageConfig{Cmd: []string{"/bin/sh"}, Env: []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		RootFS:   v1.RootFS{Type: "layers", DiffIDs: []digest.Digest{}},
	}
	for _, d := range img.DiffIDs {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, digest.Digest(d))
	}
	cfgJSON, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	img.Config = newBlob(v1.MediaTypeImageConfig, cfgJSON)
	m := v1.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: v1.MediaTypeImageManifest,
		Config:    img.Config.Descriptor(),
		Layers:    []v1.Descriptor{},
	}
	for _, l := range img.Layers {
		m.Layers = append(m.Layers, l.Descriptor())
	}
	mJSON, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	img.Manifest = newBlob(v1.MediaTypeImageManifest, mJSON)
	return img, nil
}

// layerTar returns the tar of files and its gzip compression.
func layerTar(files map[string]string) (tarball, gz []byte, err error) {
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, path.Clean("/" + name)[1:])
	}
	sort.Strings(names)
	byName := make(map[string]string, len(files))
	for name, data := range files {
		byName[path.Clean("/" + name)[1:]] = data
	}

	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	dirs := map[string]bool{}
	var addDirs func(dir string) error
	addDirs = func(dir string) error {
		if dir == "." || dir == "" || dirs[dir] {
			return nil
		}
		if err := addDirs(path.Dir(dir)); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX})
	}
	for _, name := range names {
		if name == "" {
			return nil, nil, fmt.Errorf("regtest: empty file name in test layer")
		}
		if err := addDirs(path.Dir(name)); err != nil {
			return nil, nil, err
		}
		data := byName[name]
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(data)), ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			return nil, nil, err
		}
		if _, err := io.WriteString(tw, data); err != nil {
			return nil, nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, nil, err
	}

	var gb bytes.Buffer
	zw, err := gzip.NewWriterLevel(&gb, gzip.BestCompression)
	if err != nil {
		return nil, nil, err
	}
	if _, err := zw.Write(tb.Bytes()); err != nil {
		return nil, nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, nil, err
	}
	return tb.Bytes(), gb.Bytes(), nil
}

// PushImage uploads img's layers, config and manifest to repo, the
// manifest under tag (or by digest when tag is ""). It uses basic auth
// when the registry has a User.
func (r *Registry) PushImage(ctx context.Context, repo, tag string, img *TestImage) error {
	for _, b := range append(append([]Blob{}, img.Layers...), img.Config) {
		if _, err := r.PushBlob(ctx, repo, b.Data); err != nil {
			return err
		}
	}
	ref := tag
	if ref == "" {
		ref = img.Manifest.Digest
	}
	d, err := r.PutManifest(ctx, repo, ref, img.Manifest.MediaType, img.Manifest.Data)
	if err != nil {
		return err
	}
	if d != img.Manifest.Digest {
		return fmt.Errorf("regtest: registry gave manifest digest %s, want %s", d, img.Manifest.Digest)
	}
	return nil
}

// Ref returns the image reference "HOST/repo:tag" (or "HOST/repo@digest"
// when ref starts with "sha256:") for this registry.
func (r *Registry) Ref(repo, ref string) string {
	if _, err := digest.Parse(ref); err == nil {
		return r.Host + "/" + repo + "@" + ref
	}
	return r.Host + "/" + repo + ":" + ref
}
