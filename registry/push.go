package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/content"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Pushed is the result of a Push.
type Pushed struct {
	// Descriptor is the manifest or index pushed.
	Descriptor ocispec.Descriptor
	// Refs are the references written, normalized.
	Refs []string
	// Uploaded, Mounted and Skipped count blobs sent, mounted from
	// another repository of the same registry, and found in the
	// registry already; UploadedBytes is what was sent.
	Uploaded, Mounted, Skipped int
	UploadedBytes              int64 // the size of the blobs sent, in bytes
}

// Push sends the image src, a name in store, to the registry as ref,
// the argument order of Pull; src "" means the image named ref in the
// store, as docker push does. WithDestinations adds more references
// (other tags, other repositories) to send it to in the same call.
//
// Blobs go once per repository, skipping those the registry has and
// mounting from another repository of the same registry where the store
// says it has them (a name in the store, or where earlier pushes and
// pulls sent or found the blob: content.Store.Sources), then the manifest (and, for an index, the
// platform manifests it lists, all of which must be in the store) under
// each tag. A reference with a digest must be src's digest.
func (c *Client) Push(ctx context.Context, ref string, store *layer.Store, src string, opts ...Option) (*Pushed, error) {
	o := c.with(opts)
	if src == "" {
		src = ref
	}
	res, err := o.push(ctx, store.Content, src, append([]string{ref}, o.destinations...))
	if err != nil {
		return nil, fmt.Errorf("push %s: %w", src, err)
	}
	return res, nil
}

// graph is what pushing one image sends: blobs, then manifests bottom-up.
type graph struct {
	blobs     []ocispec.Descriptor
	manifests []manifestBlob // children first, the root last
}

type manifestBlob struct {
	desc ocispec.Descriptor
	body []byte
}

func loadGraph(ctx context.Context, cs *content.Store, root ocispec.Descriptor) (*graph, error) {
	g := &graph{}
	seen := map[digest.Digest]bool{}
	var walk func(d ocispec.Descriptor, depth int) error
	walk = func(d ocispec.Descriptor, depth int) error {
		if depth > 4 {
			return fmt.Errorf("%w: indexes nested too deep", ErrUnsupported)
		}
		body, err := readBlob(ctx, cs, d.Digest)
		if err != nil {
			return fmt.Errorf("manifest %s: %w", d.Digest, err)
		}
		mt := d.MediaType
		var n struct {
			MediaType string               `json:"mediaType"`
			Config    ocispec.Descriptor   `json:"config"`
			Layers    []ocispec.Descriptor `json:"layers"`
			Manifests []ocispec.Descriptor `json:"manifests"`
		}
		if err := json.Unmarshal(body, &n); err != nil {
			return fmt.Errorf("%w: manifest %s: %v", ErrUnsupported, d.Digest, err)
		}
		if mt == "" {
			mt = n.MediaType
		}
		switch {
		case isIndex(mt):
			for _, m := range n.Manifests {
				if err := walk(m, depth+1); err != nil {
					return err
				}
			}
		case isManifest(mt):
			for _, b := range append([]ocispec.Descriptor{n.Config}, n.Layers...) {
				if !seen[b.Digest] {
					seen[b.Digest] = true
					g.blobs = append(g.blobs, b)
				}
			}
		default:
			return fmt.Errorf("%w: %s has media type %q", ErrUnsupported, d.Digest, mt)
		}
		d.MediaType = mt
		g.manifests = append(g.manifests, manifestBlob{desc: d, body: body})
		return nil
	}
	return g, walk(root, 0)
}

func readBlob(ctx context.Context, cs *content.Store, d digest.Digest) ([]byte, error) {
	rc, err := cs.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err == nil && len(b) > maxManifestSize {
		err = fmt.Errorf("%w: manifest larger than %d bytes", ErrUnsupported, maxManifestSize)
	}
	return b, err
}

func (o *options) push(ctx context.Context, cs *content.Store, src string, dst []string) (*Pushed, error) {
	if len(dst) == 0 {
		return nil, fmt.Errorf("%w: no destination", ErrInvalidReference)
	}
	root, err := cs.Resolve(ctx, src)
	if err != nil {
		return nil, err
	}
	g, err := loadGraph(ctx, cs, root)
	if err != nil {
		return nil, err
	}
	top := g.manifests[len(g.manifests)-1].desc
	// Group the destinations by repository.
	var repos []string
	byRepo := map[string][]ref{}
	for _, d := range dst {
		r, err := o.parse(d)
		if err != nil {
			return nil, err
		}
		if r.Digest != "" && r.Digest != top.Digest {
			return nil, fmt.Errorf("%w: %s pins digest %s, the image is %s", ErrInvalidReference, d, r.Digest, top.Digest)
		}
		if _, ok := byRepo[r.Name()]; !ok {
			repos = append(repos, r.Name())
		}
		byRepo[r.Name()] = append(byRepo[r.Name()], r)
	}
	mounts, err := mountSources(ctx, cs, g)
	if err != nil {
		return nil, err
	}
	res := &Pushed{Descriptor: top}
	for _, name := range repos {
		refs := byRepo[name]
		if err := o.pushRepo(ctx, cs, g, refs, mounts, res); err != nil {
			return nil, err
		}
		for _, r := range refs {
			res.Refs = append(res.Refs, r.String())
		}
		// The next repositories of the same registry mount from this
		// one, and so do later pushes.
		for _, b := range g.blobs {
			mounts[b.Digest] = append([]string{name}, mounts[b.Digest]...)
		}
		o.addSources(ctx, cs, g.blobs, name)
	}
	return res, nil
}

// mountSources maps each blob to the repositories ("domain/path") where
// a registry may have it already: those the store recorded it was pushed
// to or pulled from (content.Store.Sources, the most recent first), then
// those of the store's images that hold it.
func mountSources(ctx context.Context, cs *content.Store, g *graph) (map[digest.Digest][]string, error) {
	want := map[digest.Digest]bool{}
	out := map[digest.Digest][]string{}
	for _, b := range g.blobs {
		want[b.Digest] = true
		srcs, err := cs.Sources(ctx, b.Digest)
		if err != nil {
			return nil, err
		}
		out[b.Digest] = srcs
	}
	imgs, err := cs.Images(ctx)
	if err != nil {
		return nil, err
	}
	for _, img := range imgs {
		r, err := content.ParseReference(img.Name)
		if err != nil {
			continue
		}
		refs, err := cs.References(ctx, img.Target)
		if err != nil {
			continue // an image with missing parts cannot be a source
		}
		for _, d := range refs {
			if want[d] && !slices.Contains(out[d], r.Name()) {
				out[d] = append(out[d], r.Name())
			}
		}
	}
	return out, nil
}

func (o *options) pushRepo(ctx context.Context, cs *content.Store, g *graph, refs []ref, mounts map[digest.Digest][]string, res *Pushed) error {
	target := refs[0]
	// Mount sources on the same registry, other repositories.
	from := map[digest.Digest][]string{}
	var fromRepos []string
	for d, names := range mounts {
		for _, n := range names {
			r, err := content.ParseReference(n)
			if err != nil || r.Domain != target.Domain || r.Name() == target.Name() {
				continue
			}
			from[d] = append(from[d], r.Path)
			if !slices.Contains(fromRepos, r.Path) {
				fromRepos = append(fromRepos, r.Path)
			}
		}
	}
	// A registry with scoped tokens must grant pull on the mount sources.
	var extra []string
	for _, p := range fromRepos {
		extra = append(extra, "repository:"+p+":"+transport.PullScope)
	}
	s, err := o.connect(ctx, target.repo, extra, transport.PushScope)
	if err != nil {
		return err
	}
	prog := &progress{fn: o.progress, p: Progress{Ref: target.String(), Layers: len(g.blobs)}}
	for _, b := range g.blobs {
		prog.p.Bytes += b.Size
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sem := make(chan struct{}, o.concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for _, b := range g.blobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			how, err := s.uploadBlob(ctx, cs, b, from[b.Digest], prog)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("blob %s: %w", b.Digest, err)
					cancel(firstErr)
				}
				return
			}
			switch how {
			case uploaded:
				res.Uploaded++
				res.UploadedBytes += b.Size
			case mounted:
				res.Mounted++
			default:
				res.Skipped++
			}
			prog.layerDone()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	// Child manifests by digest, then the root under each reference.
	for _, m := range g.manifests[:len(g.manifests)-1] {
		if err := s.putManifest(ctx, m.desc.Digest.String(), m); err != nil {
			return err
		}
	}
	rootM := g.manifests[len(g.manifests)-1]
	for _, r := range refs {
		if err := s.putManifest(ctx, r.id, rootM); err != nil {
			return err
		}
	}
	return nil
}

// addSources records that repository repo ("domain/path") holds blobs,
// for later pushes to mount them from there. It is a hint: a failure is
// logged, not returned.
func (o *options) addSources(ctx context.Context, cs *content.Store, blobs []ocispec.Descriptor, repo string) {
	for _, b := range blobs {
		if err := cs.AddSource(ctx, b.Digest, repo); err != nil {
			o.logger.Debug("registry: record where a blob is", "blob", b.Digest, "repo", repo, "err", err)
		}
	}
}

type blobOutcome int

const (
	present blobOutcome = iota
	mounted
	uploaded
)

// uploadBlob makes sure the repository has blob b: present already,
// mounted from one of fromRepos, or uploaded from the store.
func (s *session) uploadBlob(ctx context.Context, cs *content.Store, b ocispec.Descriptor, fromRepos []string, prog *progress) (blobOutcome, error) {
	var how blobOutcome
	err := s.o.retryLoop(ctx, "upload blob", func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodHead, s.base+"/blobs/"+b.Digest.String(), nil)
		if err != nil {
			return err
		}
		resp, err := s.do(req, http.StatusOK, http.StatusNotFound)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			how = present
			prog.add(b.Size)
			return nil
		}
		// Mount attempts, as Docker makes them: up to three sources; a
		// refused mount opens an upload, which the last one uses and
		// the others cancel.
		var location string
		sources := fromRepos[:min(len(fromRepos), 3)]
		for i, from := range sources {
			q := url.Values{"mount": {b.Digest.String()}, "from": {from}}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/blobs/uploads/?"+q.Encode(), nil)
			if err != nil {
				return err
			}
			resp, err := s.do(req, http.StatusCreated, http.StatusAccepted)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode == http.StatusCreated {
				how = mounted
				prog.add(b.Size)
				return nil
			}
			if location, err = resolveLocation(resp); err != nil {
				return err
			}
			if i < len(sources)-1 {
				s.cancelUpload(ctx, location)
				location = ""
			}
		}
		if location == "" {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/blobs/uploads/", nil)
			if err != nil {
				return err
			}
			resp, err := s.do(req, http.StatusAccepted)
			if err != nil {
				return err
			}
			resp.Body.Close()
			if location, err = resolveLocation(resp); err != nil {
				return err
			}
		}
		if err := s.putBlob(ctx, cs, b, location, prog); err != nil {
			s.cancelUpload(ctx, location)
			var se *StatusError
			if errors.As(err, &se) && se.Code == http.StatusNotFound && strings.Contains(se.Detail, "BLOB_UPLOAD_UNKNOWN") {
				// The upload session expired: another try opens a new one.
				return fmt.Errorf("%w: %w", errRestart, err)
			}
			return err
		}
		how = uploaded
		return nil
	})
	return how, err
}

// cancelUpload abandons an upload session (best effort: registries
// expire them anyway).
func (s *session) cancelUpload(ctx context.Context, location string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, location, nil)
	if err != nil {
		return
	}
	if resp, err := s.client.Do(req); err == nil {
		resp.Body.Close()
	}
}

// putBlob sends the blob in one PUT to an upload location.
func (s *session) putBlob(ctx context.Context, cs *content.Store, b ocispec.Descriptor, location string, prog *progress) error {
	f, err := cs.Open(ctx, b.Digest)
	if err != nil {
		return err
	}
	defer f.Close()
	u, err := url.Parse(location)
	if err != nil {
		return fmt.Errorf("upload location %q: %w", redact(location), err)
	}
	q := u.Query()
	q.Set("digest", b.Digest.String())
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sw := watch(s.o.stallTimeout, cancel)
	defer sw.stop()
	cw := &countingReader{r: sw.reader(f), prog: prog, sw: sw}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u.String(), cw)
	if err != nil {
		return err
	}
	req.ContentLength = b.Size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := s.do(req, http.StatusCreated)
	if err != nil {
		prog.add(-cw.n)
		return stalled(ctx, err)
	}
	resp.Body.Close()
	return nil
}

type countingReader struct {
	r    io.Reader
	prog *progress
	n    int64
	sw   *stallWatch
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	c.prog.add(int64(n))
	if err == io.EOF && c.sw != nil {
		// All sent: the registry may take a while to verify and store
		// a large blob before it answers.
		c.sw.resumeFor(4 * c.sw.d)
	}
	return n, err
}

func resolveLocation(resp *http.Response) (string, error) {
	loc := resp.Header.Get("Location")
	if loc == "" {
		return "", fmt.Errorf("%s %s: %d answer without a Location", resp.Request.Method, redact(resp.Request.URL.String()), resp.StatusCode)
	}
	u, err := resp.Request.URL.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("bad upload location %q: %w", redact(loc), err)
	}
	return u.String(), nil
}

// putManifest PUTs a manifest or index under id (a tag or its digest).
func (s *session) putManifest(ctx context.Context, id string, m manifestBlob) error {
	return s.o.retryLoop(ctx, "put manifest "+id, func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, s.base+"/manifests/"+id, bytes.NewReader(m.body))
		if err != nil {
			return err
		}
		req.ContentLength = int64(len(m.body))
		req.Header.Set("Content-Type", m.desc.MediaType)
		resp, err := s.do(req, http.StatusCreated, http.StatusOK)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" && !strings.EqualFold(h, m.desc.Digest.String()) {
			return fmt.Errorf("%w: registry stored manifest %s as %s", ErrDigestMismatch, m.desc.Digest, h)
		}
		return nil
	})
}
