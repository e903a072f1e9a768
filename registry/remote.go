package registry

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"

	"github.com/berthlabs/berth/layer/content"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	digest "github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Remote is what Inspect learns of an image in a registry.
type Remote struct {
	// Ref is the reference inspected, normalized.
	Ref string
	// Descriptor is what the reference leads to: a manifest or an index.
	Descriptor ocispec.Descriptor
	// Index is set when Descriptor is an index.
	Index *ocispec.Index
	// ManifestDescriptor, Manifest and Config are the image's (for an
	// index, those of the platform's manifest: WithPlatform, default the
	// host's).
	ManifestDescriptor ocispec.Descriptor
	Manifest           ocispec.Manifest // the image manifest, decoded
	Config             ocispec.Image    // the image configuration, decoded
	// Raw is the manifest or index as the registry sent it.
	Raw []byte
}

// Inspect fetches an image's manifest (or index) and configuration
// without downloading its layers.
func (c *Client) Inspect(ctx context.Context, ref string, opts ...Option) (*Remote, error) {
	o := c.with(opts)
	r, err := o.parse(ref)
	if err != nil {
		return nil, err
	}
	out, err := o.inspect(ctx, r)
	if err != nil {
		return nil, fmt.Errorf("inspect %s: %w", r.String(), err)
	}
	return out, nil
}

func (o *options) inspect(ctx context.Context, r ref) (*Remote, error) {
	s, err := o.connect(ctx, r.repo, nil, "pull")
	if err != nil {
		return nil, err
	}
	desc, body, err := s.fetchManifest(ctx, r.id, r.Digest)
	if err != nil {
		return nil, err
	}
	out := &Remote{Ref: r.String(), Descriptor: desc, Raw: body}
	mdesc, mbody := desc, body
	if isIndex(desc.MediaType) {
		out.Index = new(ocispec.Index)
		if err := json.Unmarshal(body, out.Index); err != nil {
			return nil, fmt.Errorf("%w: index %s: %v", ErrUnsupported, desc.Digest, err)
		}
		want := o.platform
		if want == nil {
			want = &ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
		}
		m, ok := content.MatchPlatform(out.Index.Manifests, want)
		if !ok || !isManifest(m.MediaType) {
			return out, nil // an index without this platform: inspected as an index
		}
		if mdesc, mbody, err = s.fetchManifest(ctx, m.Digest.String(), m.Digest); err != nil {
			return nil, err
		}
	}
	if !isManifest(mdesc.MediaType) {
		return nil, fmt.Errorf("%w: %s has media type %q", ErrUnsupported, mdesc.Digest, mdesc.MediaType)
	}
	out.ManifestDescriptor = mdesc
	if err := json.Unmarshal(mbody, &out.Manifest); err != nil {
		return nil, fmt.Errorf("%w: manifest %s: %v", ErrUnsupported, mdesc.Digest, err)
	}
	var buf bytes.Buffer
	if err := s.get(ctx, out.Manifest.Config, &buf); err != nil {
		return nil, fmt.Errorf("config %s: %w", out.Manifest.Config.Digest, err)
	}
	if err := json.Unmarshal(buf.Bytes(), &out.Config); err != nil {
		return nil, fmt.Errorf("%w: config %s: %v", ErrUnsupported, out.Manifest.Config.Digest, err)
	}
	return out, nil
}

// Tags lists the tags of a repository ("registry/path", or a reference
// whose tag is ignored), sorted, following the registry's pages.
func (c *Client) Tags(ctx context.Context, repo string, opts ...Option) ([]string, error) {
	o := c.with(opts)
	r, err := o.parse(repo)
	if err != nil {
		return nil, err
	}
	ro, err := o.remoteOptions(ctx, r.repo)
	if err != nil {
		return nil, err
	}
	tags, err := remote.List(r.repo, ro...)
	if err != nil {
		return nil, fmt.Errorf("list tags of %s: %w", r.Name(), o.explain(ctx, r.repo, classify(err)))
	}
	slices.Sort(tags)
	return tags, nil
}

// Tag gives the image src (in a registry) another tag in its repository,
// without moving any blob.
func (c *Client) Tag(ctx context.Context, src, tag string, opts ...Option) error {
	o := c.with(opts)
	r, err := o.parse(src)
	if err != nil {
		return err
	}
	ro, err := o.remoteOptions(ctx, r.repo)
	if err != nil {
		return err
	}
	desc, err := remote.Get(r.ggcrRef(), ro...)
	if err != nil {
		return fmt.Errorf("tag %s as %s: %w", r.String(), tag, o.explain(ctx, r.repo, classify(err)))
	}
	dst, err := o.parse(r.Name() + ":" + tag)
	if err != nil {
		return err
	}
	if err := remote.Tag(dst.repo.Tag(dst.Tag), desc, ro...); err != nil {
		return fmt.Errorf("tag %s as %s: %w", r.String(), tag, o.explain(ctx, r.repo, classify(err)))
	}
	return nil
}

// Delete deletes the manifest a reference leads to from its registry
// (by digest: every tag of that manifest goes with it, as the
// distribution API defines). The registry must allow deletes.
func (c *Client) Delete(ctx context.Context, ref string, opts ...Option) error {
	o := c.with(opts)
	r, err := o.parse(ref)
	if err != nil {
		return err
	}
	ro, err := o.remoteOptions(ctx, r.repo)
	if err != nil {
		return err
	}
	d := r.Digest
	if d == "" {
		desc, err := remote.Head(r.ggcrRef(), ro...)
		if err != nil {
			return fmt.Errorf("delete %s: %w", r.String(), o.explain(ctx, r.repo, classify(err)))
		}
		d = digest.Digest(desc.Digest.String())
	}
	if err := remote.Delete(r.repo.Digest(d.String()), ro...); err != nil {
		return fmt.Errorf("delete %s: %w", r.String(), o.explain(ctx, r.repo, classify(err)))
	}
	return nil
}

// Copy copies an image (a manifest or a whole index) from one reference
// to another, registry to registry, streaming blobs through this process
// and mounting them instead when both are repositories of one registry.
func (c *Client) Copy(ctx context.Context, src, dst string, opts ...Option) error {
	o := c.with(opts)
	rs, err := o.parse(src)
	if err != nil {
		return err
	}
	rd, err := o.parse(dst)
	if err != nil {
		return err
	}
	if err := o.copy(ctx, rs, rd); err != nil {
		return fmt.Errorf("copy %s to %s: %w", rs.String(), rd.String(), err)
	}
	return nil
}

func (o *options) copy(ctx context.Context, rs, rd ref) error {
	so, err := o.remoteOptions(ctx, rs.repo)
	if err != nil {
		return err
	}
	do, err := o.remoteOptions(ctx, rd.repo)
	if err != nil {
		return err
	}
	desc, err := remote.Get(rs.ggcrRef(), so...)
	if err != nil {
		return o.explain(ctx, rs.repo, classify(err))
	}
	if rd.Digest != "" && rd.Digest.String() != desc.Digest.String() {
		return fmt.Errorf("%w: destination pins %s, the source is %s", ErrInvalidReference, rd.Digest, desc.Digest)
	}
	switch {
	case desc.MediaType.IsIndex():
		idx, err := desc.ImageIndex()
		if err != nil {
			return classify(err)
		}
		return classify(remote.WriteIndex(rd.ggcrRef(), idx, do...))
	case desc.MediaType.IsImage():
		img, err := desc.Image()
		if err != nil {
			return classify(err)
		}
		return classify(remote.Write(rd.ggcrRef(), img, do...))
	}
	return fmt.Errorf("%w: %s has media type %q", ErrUnsupported, desc.Digest, desc.MediaType)
}
