package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/content"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of Docker's image format, which registries still serve.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeDockerConfig       = "application/vnd.docker.container.image.v1+json"
	MediaTypeDockerLayer        = "application/vnd.docker.image.rootfs.diff.tar.gzip"
)

// errRestart: a download must start over from byte 0.
var errRestart = errors.New("download must restart")

// maxManifestSize bounds a manifest or index (distribution's limit is 4 MiB).
const maxManifestSize = 4 << 20

var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageManifest, ocispec.MediaTypeImageIndex,
	MediaTypeDockerManifest, MediaTypeDockerManifestList,
}, ", ")

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == MediaTypeDockerManifestList
}

func isManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == MediaTypeDockerManifest
}

func isLayer(mt string) bool {
	switch mt {
	case ocispec.MediaTypeImageLayer, ocispec.MediaTypeImageLayerGzip, ocispec.MediaTypeImageLayerZstd,
		MediaTypeDockerLayer, "application/vnd.docker.image.rootfs.diff.tar":
		return true
	}
	return false
}

// Pulled is the result of a Pull.
type Pulled struct {
	// Name is the image's name in the store: the reference, normalized,
	// or for a reference by digest "repo@digest" of the manifest stored
	// (which is the platform's manifest when the digest named an index).
	Name string
	// Manifest is the descriptor of the image manifest stored and
	// tagged.
	Manifest ocispec.Descriptor
	// Index is the descriptor of the index the manifest was chosen
	// from, if the reference named one.
	Index *ocispec.Descriptor
	// Image is the unpacked image, nil with WithoutUnpack.
	Image *layer.Image
	// Fetched and FetchedBytes count the blobs downloaded; blobs the
	// store had are not counted.
	Fetched      int
	FetchedBytes int64 // the size of those blobs, in bytes
}

// Pull fetches the image ref names into store, verifying every blob, and
// unpacks its layers (unless WithoutUnpack). When ref names an index,
// the manifest for the platform (WithPlatform, default the host's) is
// pulled. Many goroutines pulling the same image, in one process or in
// several on one store, download and unpack each blob once: a second
// puller waits for the first one's blob and counts none of it in
// Fetched. From the first blob written until the tag, Pull holds the
// store (layer.Store.Hold), so a GC does not take what it wrote. On
// error, no name is tagged and nothing unverified is kept.
func (c *Client) Pull(ctx context.Context, ref string, store *layer.Store, opts ...Option) (*Pulled, error) {
	o := c.with(opts)
	r, err := o.parse(ref)
	if err != nil {
		return nil, err
	}
	res, err := o.pull(ctx, r, store)
	if err != nil {
		return nil, fmt.Errorf("pull %s: %w", r.String(), err)
	}
	return res, nil
}

func (o *options) pull(ctx context.Context, r ref, store *layer.Store) (*Pulled, error) {
	s, err := o.connect(ctx, r.repo, nil, transport.PullScope)
	if err != nil {
		return nil, err
	}
	res := &Pulled{}
	desc, body, err := s.fetchManifest(ctx, r.id, r.Digest)
	if err != nil {
		return nil, err
	}
	if isIndex(desc.MediaType) {
		idx := desc
		res.Index = &idx
		var index ocispec.Index
		if err := json.Unmarshal(body, &index); err != nil {
			return nil, fmt.Errorf("%w: index %s: %v", ErrUnsupported, desc.Digest, err)
		}
		want := o.platform
		if want == nil {
			want = &ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
		}
		m, ok := content.MatchPlatform(index.Manifests, want)
		if !ok || !isManifest(m.MediaType) {
			return nil, fmt.Errorf("%w: index %s has no image manifest for %s/%s", ErrUnsupported, desc.Digest, want.OS, want.Architecture)
		}
		desc, body, err = s.fetchManifest(ctx, m.Digest.String(), m.Digest)
		if err != nil {
			return nil, err
		}
	}
	if !isManifest(desc.MediaType) {
		return nil, fmt.Errorf("%w: manifest %s has media type %q", ErrUnsupported, desc.Digest, desc.MediaType)
	}
	var m ocispec.Manifest
	if err := json.Unmarshal(body, &m); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrUnsupported, desc.Digest, err)
	}
	for _, l := range m.Layers {
		if !isLayer(l.MediaType) {
			return nil, fmt.Errorf("%w: manifest %s: layer %s has media type %q", ErrUnsupported, desc.Digest, l.Digest, l.MediaType)
		}
	}
	if m.Config.MediaType != ocispec.MediaTypeImageConfig && m.Config.MediaType != MediaTypeDockerConfig {
		return nil, fmt.Errorf("%w: manifest %s: config has media type %q", ErrUnsupported, desc.Digest, m.Config.MediaType)
	}

	// Keep GC, in every process on the store, from taking what is
	// written until the tag names it.
	release, err := store.Hold(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	prog := newProgress(o.progress, r.String(), m)
	// The config first: it holds the diff IDs unpacking checks.
	if n, err := s.fetchBlob(ctx, store.Content, m.Config, prog, nil); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	} else if n > 0 {
		res.Fetched++
		res.FetchedBytes += n
	}
	var cfg ocispec.Image
	if err := readJSON(ctx, store.Content, m.Config.Digest, &cfg); err != nil {
		return nil, fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%w: manifest %s has %d layers, its config %d diff IDs", ErrUnsupported, desc.Digest, len(m.Layers), len(cfg.RootFS.DiffIDs))
	}

	chain, err := o.fetchLayers(ctx, s, store, m, cfg, prog, res)
	if err != nil {
		return nil, err
	}
	if _, err := store.Content.Put(ctx, desc.MediaType, bytes.NewReader(body), desc.Digest); err != nil {
		return nil, fmt.Errorf("store manifest %s: %w", desc.Digest, err)
	}
	res.Manifest = desc
	res.Name = r.String()
	if r.Digest != "" {
		res.Name = r.Name() + "@" + desc.Digest.String()
	}
	if o.unpack {
		res.Image = &layer.Image{Name: res.Name, Manifest: m, Config: cfg, ChainID: chain}
	}
	// The name last: once it is there, everything it needs is.
	if err := store.Content.Tag(ctx, res.Name, desc); err != nil {
		return nil, err
	}
	// Pushes to another repository of this registry mount from here.
	o.addSources(ctx, store.Content, append([]ocispec.Descriptor{m.Config}, m.Layers...), r.Name())
	return res, nil
}

// fetchLayers downloads the layers that are not in the store, at most
// o.concurrency at once, and unpacks each in order as soon as the layers
// below it are: while it downloads when the unpacker is ready for it
// before its download starts, from the store otherwise. It returns the
// chain ID of the top layer ("" without unpacking).
func (o *options) fetchLayers(ctx context.Context, s *session, store *layer.Store, m ocispec.Manifest, cfg ocispec.Image, prog *progress, res *Pulled) (string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	taps := make([]*tap, len(m.Layers))
	for i := range taps {
		taps[i] = newTap()
	}
	sem := make(chan struct{}, o.concurrency)
	var mu sync.Mutex
	var wg sync.WaitGroup
	// Downloads start in layer order (the unpacker wants the bottom
	// layers first), at most o.concurrency at once.
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i, l := range m.Layers {
			t := taps[i]
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				for _, t := range taps[i:] {
					t.err = context.Cause(ctx)
					t.end(t.err)
					close(t.done)
				}
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer close(t.done)
				n, err := s.fetchBlob(ctx, store.Content, l, prog, t)
				<-sem
				t.end(err)
				if err != nil {
					t.err = fmt.Errorf("layer %s: %w", l.Digest, err)
					cancel(t.err) // the first failure is the cause
					return
				}
				prog.layerDone()
				if n > 0 {
					mu.Lock()
					res.Fetched++
					res.FetchedBytes += n
					mu.Unlock()
				}
			}()
		}
	}()
	chain, err := o.unpackLayers(ctx, store, m, cfg, taps, prog)
	if err != nil {
		cancel(err)
	}
	wg.Wait()
	if err == nil {
		for _, t := range taps {
			if t.err != nil {
				err = t.err
				break
			}
		}
	}
	if err != nil {
		// Report the first failure, not the cancellations it caused.
		if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.Canceled) && !errors.Is(cause, context.DeadlineExceeded) {
			return "", cause
		}
		return "", err
	}
	return chain, nil
}

// unpackLayers unpacks the layers in order as they arrive.
func (o *options) unpackLayers(ctx context.Context, store *layer.Store, m ocispec.Manifest, cfg ocispec.Image, taps []*tap, prog *progress) (string, error) {
	parent := ""
	for i, l := range m.Layers {
		t := taps[i]
		streamed := false
		if o.unpack {
			pr, pw := io.Pipe()
			if t.attach(ctx, pw) {
				id, err := store.UnpackLayer(ctx, parent, l, cfg.RootFS.DiffIDs[i], pr)
				if err == nil {
					parent, streamed = id, true
					o.logger.Debug("registry: unpacked while downloading", "layer", l.Digest)
					// The rest (tar padding, or all of it when the
					// layer was there already) goes nowhere.
					go func() { io.Copy(io.Discard, pr); pr.Close() }()
				} else {
					pr.CloseWithError(err)
					if ctx.Err() != nil {
						return "", context.Cause(ctx)
					}
					o.logger.Debug("registry: unpacking while downloading failed; unpacking from the store", "layer", l.Digest, "err", err)
				}
			}
		}
		select {
		case <-t.done:
		case <-ctx.Done():
			<-t.done
		}
		if t.err != nil {
			return "", t.err
		}
		if !o.unpack || streamed {
			if streamed {
				prog.unpacked()
			}
			continue
		}
		var err error
		if parent, err = store.UnpackLayer(ctx, parent, l, cfg.RootFS.DiffIDs[i], nil); err != nil {
			return "", err
		}
		prog.unpacked()
	}
	return parent, nil
}

// tap hands a layer's bytes, as they download, to an unpacker that
// attached before the first byte. Only the goroutine that holds the
// blob's writer (the one download of it in this process) can be tapped,
// so an unpacker never waits on a download that waits on another
// unpacker. A download that starts over from byte 0 cuts the unpacker
// off (it unpacks from the store later).
type tap struct {
	mu        sync.Mutex
	flowed    bool // bytes went to the store
	pw        *io.PipeWriter
	ready     chan struct{} // closed when this goroutine holds the writer, or at the end
	readyOnce sync.Once
	done      chan struct{} // closed when the blob is stored, or failed
	err       error
}

func newTap() *tap { return &tap{ready: make(chan struct{}), done: make(chan struct{})} }

func (t *tap) markReady() {
	if t != nil {
		t.readyOnce.Do(func() { close(t.ready) })
	}
}

// attach waits until the download holds the blob's writer (or is over)
// and gives it pw, unless bytes have flowed already.
func (t *tap) attach(ctx context.Context, pw *io.PipeWriter) bool {
	select {
	case <-t.ready:
	case <-ctx.Done():
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.flowed || isClosed(t.done) {
		return false
	}
	t.pw = pw
	return true
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// cut detaches the unpacker, which then unpacks from the store: the
// download is starting over, or giving up the blob's writer (another
// goroutine may take it, and its unpacker must not wait on this one).
func (t *tap) cut(err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flowed = true
	if t.pw != nil {
		t.pw.CloseWithError(err)
		t.pw = nil
	}
}

// write passes p on, and lets go of an unpacker that stopped reading.
func (t *tap) write(p []byte, sw *stallWatch) {
	if t == nil || len(p) == 0 {
		return
	}
	t.mu.Lock()
	t.flowed = true
	pw := t.pw
	t.mu.Unlock()
	if pw == nil {
		return
	}
	sw.pause() // the unpacker's pace is not a stalled registry
	_, err := pw.Write(p)
	sw.resume()
	if err != nil {
		t.mu.Lock()
		t.pw = nil
		t.mu.Unlock()
	}
}

// end closes the pipe: EOF when the blob is stored, err otherwise.
func (t *tap) end(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.flowed = true
	defer t.markReady()
	if t.pw != nil {
		if err == nil {
			t.pw.Close()
		} else {
			t.pw.CloseWithError(err)
		}
		t.pw = nil
	}
}

// fetchManifest fetches the manifest or index id (a tag or digest) and
// checks it against want (if set) and against the digest the registry
// says it has.
func (s *session) fetchManifest(ctx context.Context, id string, want digest.Digest) (ocispec.Descriptor, []byte, error) {
	var desc ocispec.Descriptor
	var body []byte
	err := s.o.retryLoop(ctx, "manifest "+id, func(ctx context.Context) error {
		ctx, cancel := context.WithCancelCause(ctx)
		defer cancel(nil)
		sw := watch(s.o.stallTimeout, cancel)
		defer sw.stop()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/manifests/"+id, nil)
		if err != nil {
			return err
		}
		req.Header.Set("Accept", manifestAccept)
		resp, err := s.do(req, http.StatusOK)
		if err != nil {
			return stalled(ctx, err)
		}
		defer resp.Body.Close()
		if resp.ContentLength > maxManifestSize {
			return fmt.Errorf("%w: manifest of %d bytes (at most %d)", ErrUnsupported, resp.ContentLength, maxManifestSize)
		}
		body, err = io.ReadAll(io.LimitReader(sw.reader(resp.Body), maxManifestSize+1))
		if err != nil {
			return stalled(ctx, err)
		}
		if len(body) > maxManifestSize {
			return fmt.Errorf("%w: manifest larger than %d bytes", ErrUnsupported, maxManifestSize)
		}
		if resp.ContentLength >= 0 && int64(len(body)) != resp.ContentLength {
			return fmt.Errorf("manifest: %w", io.ErrUnexpectedEOF)
		}
		alg := digest.Canonical
		if want != "" {
			alg = want.Algorithm()
		}
		got := alg.FromBytes(body)
		if want != "" && got != want {
			return fmt.Errorf("%w: manifest %s: content has digest %s", ErrDigestMismatch, want, got)
		}
		if h := digest.Digest(resp.Header.Get("Docker-Content-Digest")); want == "" && h != "" && h.Validate() == nil {
			if h.Algorithm().Available() && h.Algorithm().FromBytes(body) != h {
				return fmt.Errorf("%w: manifest %s: the registry says %s, the content has %s", ErrDigestMismatch, id, h, got)
			}
		}
		mt := resp.Header.Get("Content-Type")
		if i := strings.IndexByte(mt, ';'); i >= 0 {
			mt = mt[:i]
		}
		var probe struct {
			MediaType string `json:"mediaType"`
		}
		if json.Unmarshal(body, &probe) == nil && probe.MediaType != "" {
			mt = probe.MediaType
		}
		desc = ocispec.Descriptor{MediaType: strings.TrimSpace(mt), Digest: got, Size: int64(len(body))}
		return nil
	})
	return desc, body, err
}

// stalled reports a request killed by the stall watchdog as ErrStalled.
func stalled(ctx context.Context, err error) error {
	if errors.Is(context.Cause(ctx), ErrStalled) {
		return fmt.Errorf("%w: %w", ErrStalled, err)
	}
	return err
}

// fetchBlob downloads the blob desc into cs unless it is there, verifying
// it, resuming after a broken connection where the registry serves
// ranges, and retrying transient failures. It returns the bytes
// downloaded (0 when the blob was present or another goroutine or
// process stored it meanwhile).
func (s *session) fetchBlob(ctx context.Context, cs *content.Store, desc ocispec.Descriptor, prog *progress, t *tap) (int64, error) {
	var w *content.Writer
	defer func() {
		if w != nil {
			w.Close()
		}
	}()
	present := false
	err := s.o.retryLoop(ctx, "blob "+desc.Digest.String(), func(ctx context.Context) error {
		if w == nil {
			var err error
			w, err = cs.Writer(ctx, ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size})
			if errors.Is(err, content.ErrExists) {
				present = true
				return nil
			}
			if err != nil {
				return err
			}
			t.markReady()
		}
		err := s.download(ctx, w, desc, prog, t)
		if err == nil {
			_, err = w.Commit(ctx)
			if err == nil {
				return nil
			}
		}
		if errors.Is(err, content.ErrDigestMismatch) || errors.Is(err, ErrDigestMismatch) || errors.Is(err, errRestart) || w.Size() == 0 {
			// Start over: the data so far is wrong or there is none.
			t.cut(errRestart)
			prog.add(-w.Size())
			w.Close()
			w = nil
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if present {
		prog.add(desc.Size)
		return 0, nil
	}
	n := w.Size()
	w = nil // committed
	return n, nil
}

// download appends the rest of the blob to w: from w.Size() on, asking
// for a range when some is there already.
func (s *session) download(ctx context.Context, w *content.Writer, desc ocispec.Descriptor, prog *progress, t *tap) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	sw := watch(s.o.stallTimeout, cancel)
	defer sw.stop()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/blobs/"+desc.Digest.String(), nil)
	if err != nil {
		return err
	}
	off := w.Size()
	if off > 0 {
		req.Header.Set("Range", "bytes="+strconv.FormatInt(off, 10)+"-")
	}
	resp, err := s.do(req, http.StatusOK, http.StatusPartialContent)
	if err != nil {
		return stalled(ctx, err)
	}
	defer resp.Body.Close()
	if off > 0 && (resp.StatusCode != http.StatusPartialContent || !strings.HasPrefix(resp.Header.Get("Content-Range"), "bytes "+strconv.FormatInt(off, 10)+"-")) {
		// No resume: the caller starts over.
		return fmt.Errorf("%w: the registry did not resume at byte %d", errRestart, off)
	}
	if resp.ContentLength >= 0 && off+resp.ContentLength != desc.Size {
		return fmt.Errorf("%w: blob %s: registry sends %d bytes, the manifest says %d", ErrDigestMismatch, desc.Digest, off+resp.ContentLength, desc.Size)
	}
	_, err = io.Copy(&countingWriter{w: w, prog: prog, tap: t, sw: sw}, sw.reader(resp.Body))
	if err != nil {
		return stalled(ctx, err)
	}
	if w.Size() < desc.Size {
		return fmt.Errorf("blob %s: %d of %d bytes: %w", desc.Digest, w.Size(), desc.Size, io.ErrUnexpectedEOF)
	}
	return nil
}

// countingWriter writes to the store, reports progress, and passes what
// the store took to the tap.
type countingWriter struct {
	w    io.Writer
	prog *progress
	tap  *tap
	sw   *stallWatch
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.prog.add(int64(n))
	c.tap.write(p[:n], c.sw)
	return n, err
}

func readJSON(ctx context.Context, cs *content.Store, d digest.Digest, v any) error {
	rc, err := cs.Open(ctx, d)
	if err != nil {
		return err
	}
	defer rc.Close()
	b, err := io.ReadAll(io.LimitReader(rc, maxManifestSize+1))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrUnsupported, d, err)
	}
	return nil
}

// progress aggregates a transfer's progress and reports it, throttled.
type progress struct {
	fn   func(Progress)
	mu   sync.Mutex
	p    Progress
	last time.Time
}

func newProgress(fn func(Progress), ref string, m ocispec.Manifest) *progress {
	p := &progress{fn: fn, p: Progress{Ref: ref, Layers: len(m.Layers)}}
	for _, l := range m.Layers {
		p.p.Bytes += l.Size
	}
	p.p.Bytes += m.Config.Size
	return p
}

func (p *progress) update(fn func(*Progress), force bool) {
	if p == nil || p.fn == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	fn(&p.p)
	now := time.Now()
	if force || now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.fn(p.p)
	}
}

func (p *progress) add(n int64) {
	if n != 0 {
		p.update(func(p *Progress) { p.BytesDone += n }, false)
	}
}

func (p *progress) layerDone() { p.update(func(p *Progress) { p.LayersDone++ }, true) }

func (p *progress) unpacked() { p.update(func(p *Progress) { p.Unpacked++ }, true) }

// get reads a small blob (a config) into w, verified.
func (s *session) get(ctx context.Context, desc ocispec.Descriptor, w *bytes.Buffer) error {
	if desc.Size > maxManifestSize {
		return fmt.Errorf("%w: blob of %d bytes", ErrUnsupported, desc.Size)
	}
	return s.o.retryLoop(ctx, "blob "+desc.Digest.String(), func(ctx context.Context) error {
		w.Reset()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.base+"/blobs/"+desc.Digest.String(), nil)
		if err != nil {
			return err
		}
		resp, err := s.do(req, http.StatusOK)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if _, err := io.Copy(w, io.LimitReader(resp.Body, desc.Size+1)); err != nil {
			return err
		}
		if got := desc.Digest.Algorithm().FromBytes(w.Bytes()); got != desc.Digest {
			return fmt.Errorf("%w: blob %s: content has digest %s", ErrDigestMismatch, desc.Digest, got)
		}
		return nil
	})
}
