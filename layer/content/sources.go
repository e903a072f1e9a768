package content

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/berthlabs/berth/internal/atomicfile"
	"github.com/opencontainers/go-digest"
)

// Sources: where registries are known to hold a blob, so that a push to
// another repository of the same registry can mount it from there (a
// cross-repository blob mount) instead of sending it again, as docker
// push does. The registry package records a source after each blob it
// pushes or pulls.
//
// Each blob's sources are one small file, sources/ALG/HEX in the store,
// one repository per line, the most recent first. They are hints: a
// registry may have deleted the blob since, a mount attempt then fails
// and the blob is sent. Two processes adding a source to one blob at the
// same moment may keep only one of the two.

// sourcesDir holds the sources files, beside blobs/.
const sourcesDir = "sources"

// MaxSources is how many repositories Sources keeps for one blob: the
// most recently added.
const MaxSources = 8

// AddSource records that the repository repo, "domain/path" as in
// "registry.example.com/team/app", holds the blob d. A repository that
// is recorded already becomes the most recent. A repo that is not a
// normalized repository name (Reference.Name: no tag or digest, the
// domain spelled out) is an error wrapping ErrInvalid.
func (s *Store) AddSource(ctx context.Context, d digest.Digest, repo string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := checkDigest(d); err != nil {
		return fmt.Errorf("add source: %w", err)
	}
	if err := checkSourceRepo(repo); err != nil {
		return fmt.Errorf("add source of %s: %w", d, err)
	}
	old, err := s.Sources(ctx, d)
	if err != nil {
		return fmt.Errorf("add source of %s: %w", d, err)
	}
	if len(old) > 0 && old[0] == repo {
		return nil // the common case: pushed or pulled there again
	}
	list := append([]string{repo}, slices.DeleteFunc(old, func(r string) bool { return r == repo })...)
	list = list[:min(len(list), MaxSources)]
	dir := filepath.Join(string(s.dir), sourcesDir, string(d.Algorithm()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("add source of %s: %w", d, err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, d.Encoded()), []byte(strings.Join(list, "\n")+"\n")); err != nil {
		return fmt.Errorf("add source of %s: %w", d, err)
	}
	return nil
}

// Sources returns the repositories recorded for the blob d with
// AddSource, the most recent first; none is an empty list, not an error.
func (s *Store) Sources(ctx context.Context, d digest.Digest) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkDigest(d); err != nil {
		return nil, fmt.Errorf("sources: %w", err)
	}
	b, err := os.ReadFile(s.sourcesPath(d))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sources of %s: %w", d, err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if checkSourceRepo(l) == nil && !slices.Contains(out, l) && len(out) < MaxSources {
			out = append(out, l)
		}
	}
	return out, nil
}

func (s *Store) sourcesPath(d digest.Digest) string {
	return filepath.Join(string(s.dir), sourcesDir, string(d.Algorithm()), d.Encoded())
}

// dropSources forgets the sources of a deleted blob (best effort: a file
// left behind only makes a push try a mount that fails).
func (s *Store) dropSources(d digest.Digest) {
	os.Remove(s.sourcesPath(d))
}

// checkSourceRepo accepts a normalized repository name, "domain/path"
// (Reference.Name): no tag, no digest, the domain spelled out.
func checkSourceRepo(repo string) error {
	if r, err := ParseReference(repo); err != nil || r.Name() != repo {
		return fmt.Errorf("%w: source repository %q: want a normalized domain/path, such as docker.io/library/busybox", ErrInvalid, repo)
	}
	return nil
}

// cleanSourceTemps removes the temporary files of AddSource calls that
// were killed: those older than a minute (a live one's exists for
// microseconds).
func (s *Store) cleanSourceTemps() error {
	return s.eachEntry(sourcesDir, func(dir string, e os.DirEntry) error {
		if !strings.HasPrefix(e.Name(), ".tmp-") {
			return nil
		}
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > time.Minute {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
		}
		return nil
	})
}
