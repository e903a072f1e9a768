package content

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/opencontainers/go-digest"
)

// DefaultRegistry is the registry of names that do not name one.
const DefaultRegistry = "docker.io"

// Reference is a parsed, normalized image name: registry, repository path,
// and a tag, a digest or both.
type Reference struct {
	// Domain is the registry host, with its port if any: "docker.io",
	// "localhost:5000", "[::1]:5000".
	Domain string
	// Path is the repository within the registry, lowercase:
	// "library/busybox".
	Path string
	// Tag is the tag, "latest" when the name had neither tag nor digest;
	// empty when only a digest was given.
	Tag string
	// Digest is the digest pinned with "@", or empty.
	Digest digest.Digest
}

var (
	pathComponent = `[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
	pathRE        = regexp.MustCompile(`^` + pathComponent + `(?:/` + pathComponent + `)*$`)
	hostLabel     = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domainRE      = regexp.MustCompile(`^(?:` + hostLabel + `(?:\.` + hostLabel + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	tagRE         = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	hexIDRE       = regexp.MustCompile(`^[a-f0-9]{64}$`)
)

// ParseReference parses and normalizes an image name the way docker does:
// a name without a registry is on docker.io, a one-component name there is
// under library/, and a name with neither tag nor digest gets the tag
// latest. "busybox" becomes docker.io/library/busybox:latest,
// "quay.io/x/y@sha256:..." keeps its digest and gets no tag. A malformed
// name is an error wrapping ErrInvalid that says what is wrong.
func ParseReference(s string) (Reference, error) {
	bad := func(format string, a ...any) (Reference, error) {
		return Reference{}, fmt.Errorf("%w: reference %q: %s", ErrInvalid, s, fmt.Sprintf(format, a...))
	}
	if s == "" {
		return bad("empty")
	}
	if strings.TrimSpace(s) != s {
		return bad("leading or trailing white space")
	}
	name := s
	var ref Reference
	if i := strings.IndexByte(name, '@'); i >= 0 {
		d := digest.Digest(name[i+1:])
		if err := d.Validate(); err != nil {
			return bad("invalid digest %q: %v", string(d), err)
		}
		ref.Digest, name = d, name[:i]
	}
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag := name[i+1:]
		if !tagRE.MatchString(tag) {
			return bad("invalid tag %q: a tag is up to 128 letters, digits, '_', '.' and '-', not starting with '.' or '-'", tag)
		}
		ref.Tag, name = tag, name[:i]
	}
	if name == "" {
		return bad("no repository name")
	}
	if hexIDRE.MatchString(name) {
		return bad("a 64-character hexadecimal string is an image ID, not a repository name")
	}
	ref.Domain, ref.Path = DefaultRegistry, name
	if i := strings.IndexByte(name, '/'); i >= 0 {
		first := name[:i]
		if strings.ContainsAny(first, ".:") || first == "localhost" || strings.ToLower(first) != first {
			ref.Domain, ref.Path = first, name[i+1:]
		}
	}
	if ref.Domain == "index.docker.io" {
		ref.Domain = DefaultRegistry
	}
	if !domainRE.MatchString(ref.Domain) {
		return bad("invalid registry host %q", ref.Domain)
	}
	if ref.Path == "" {
		return bad("no repository path after the registry")
	}
	if strings.ToLower(ref.Path) != ref.Path {
		return bad("repository name %q must be lowercase", ref.Path)
	}
	if !pathRE.MatchString(ref.Path) {
		return bad("invalid repository name %q: components of lowercase letters and digits, separated by '/' and joined by '.', '_', '__' or '-'", ref.Path)
	}
	if ref.Domain == DefaultRegistry && !strings.Contains(ref.Path, "/") {
		ref.Path = "library/" + ref.Path
	}
	if n := len(ref.Name()); n > 255 {
		return bad("repository name is %d characters, more than 255", n)
	}
	if ref.Tag == "" && ref.Digest == "" {
		ref.Tag = "latest"
	}
	return ref, nil
}

// Name returns the repository with its registry: "docker.io/library/busybox".
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// String returns the full normalized name:
// "docker.io/library/busybox:latest", "quay.io/x/y@sha256:...".
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + string(r.Digest)
	}
	return s
}

// Familiar returns the short form docker shows: "busybox:latest" for
// docker.io/library/busybox:latest, "user/app:1" for docker.io/user/app:1;
// names on other registries are as String returns them.
func (r Reference) Familiar() string {
	if r.Domain != DefaultRegistry {
		return r.String()
	}
	short := r
	short.Domain = ""
	if p, ok := strings.CutPrefix(r.Path, "library/"); ok && !strings.Contains(p, "/") {
		short.Path = p
	}
	return strings.TrimPrefix(short.String(), "/")
}
