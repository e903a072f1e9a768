package content

import (
	"errors"
	"strings"
	"testing"
)

func TestParseReference(t *testing.T) {
	const dg = "sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae"
	tests := []struct {
		in, want, familiar string
		domain, path, tag  string
	}{
		{"busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"},
		{"busybox:1.36", "docker.io/library/busybox:1.36", "busybox:1.36", "docker.io", "library/busybox", "1.36"},
		{"library/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"},
		{"docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"},
		{"index.docker.io/busybox", "docker.io/library/busybox:latest", "busybox:latest", "docker.io", "library/busybox", "latest"},
		{"user/app:v1", "docker.io/user/app:v1", "user/app:v1", "docker.io", "user/app", "v1"},
		{"docker.io/library/foo/bar", "docker.io/library/foo/bar:latest", "library/foo/bar:latest", "docker.io", "library/foo/bar", "latest"},
		{"localhost/app", "localhost/app:latest", "localhost/app:latest", "localhost", "app", "latest"},
		{"localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000/a/b:t", "localhost:5000", "a/b", "t"},
		{"quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5", "quay.io/coreos/etcd:v3.5", "quay.io", "coreos/etcd", "v3.5"},
		{"[::1]:5000/app:1", "[::1]:5000/app:1", "[::1]:5000/app:1", "[::1]:5000", "app", "1"},
		{"Registry.Example.com/a_b/c__d/e-f/g--h.i:Tag_1", "Registry.Example.com/a_b/c__d/e-f/g--h.i:Tag_1", "Registry.Example.com/a_b/c__d/e-f/g--h.i:Tag_1", "Registry.Example.com", "a_b/c__d/e-f/g--h.i", "Tag_1"},
		{"busybox@" + dg, "docker.io/library/busybox@" + dg, "busybox@" + dg, "docker.io", "library/busybox", ""},
		{"busybox:1@" + dg, "docker.io/library/busybox:1@" + dg, "busybox:1@" + dg, "docker.io", "library/busybox", "1"},
		{"localhost:5000", "docker.io/library/localhost:5000", "localhost:5000", "docker.io", "library/localhost", "5000"},
	}
	for _, tt := range tests {
		ref, err := ParseReference(tt.in)
		if err != nil {
			t.Errorf("ParseReference(%q): %v", tt.in, err)
			continue
		}
		if got := ref.String(); got != tt.want {
			t.Errorf("ParseReference(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if got := ref.Familiar(); got != tt.familiar {
			t.Errorf("ParseReference(%q).Familiar() = %q, want %q", tt.in, got, tt.familiar)
		}
		if ref.Domain != tt.domain || ref.Path != tt.path || ref.Tag != tt.tag {
			t.Errorf("ParseReference(%q) = %+v, want domain %q path %q tag %q", tt.in, ref, tt.domain, tt.path, tt.tag)
		}
		// Normalizing is idempotent.
		again, err := ParseReference(ref.String())
		if err != nil || again != ref {
			t.Errorf("ParseReference(%q) = %+v, %v; want %+v", ref.String(), again, err, ref)
		}
	}
}

func TestParseReferenceErrors(t *testing.T) {
	tests := []struct{ in, why string }{
		{"", "empty"},
		{" busybox", "white space"},
		{"BusyBox", "must be lowercase"},
		{"docker.io/Library/busybox", "must be lowercase"},
		{"busybox:", "invalid tag"},
		{"busybox:-x", "invalid tag"},
		{"busybox:" + strings.Repeat("a", 129), "invalid tag"},
		{"busybox@sha256:abc", "invalid digest"},
		{"busybox@md5:0123456789abcdef0123456789abcdef", "invalid digest"},
		{"busybox@", "invalid digest"},
		{":latest", "no repository name"},
		{"@sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "no repository name"},
		{"2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae", "image ID"},
		{"a//b", "invalid repository name"},
		{"a/b/", "invalid repository name"},
		{"-a/b", "invalid repository name"},
		{"a_-b", "invalid repository name"},
		{"a...b", "invalid repository name"},
		{"ex ample.com/a", "invalid registry host"},
		{"-bad.com/a", "invalid registry host"},
		{"example.com:port/a", "invalid registry host"},
		{"localhost/", "no repository path"},
		{"a/" + strings.Repeat("b", 260), "more than 255"},
		{"../../x", "invalid registry host"}, {"a/../../x", "invalid repository name"},
	}
	for _, tt := range tests {
		ref, err := ParseReference(tt.in)
		if err == nil {
			t.Errorf("ParseReference(%q) = %v, want an error about %q", tt.in, ref, tt.why)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseReference(%q): %v does not wrap ErrInvalid", tt.in, err)
		}
		if !strings.Contains(err.Error(), tt.why) {
			t.Errorf("ParseReference(%q): %q does not say %q", tt.in, err, tt.why)
		}
	}
}
