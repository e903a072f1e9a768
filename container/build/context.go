package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/berthlabs/berth/internal/openat2"
	"github.com/berthlabs/berth/layer/archive"
	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"
	"golang.org/x/sys/unix"
)

// buildContext is the build context on disk.
type buildContext struct {
	dir        string // its real path
	tmp        bool   // dir is a temporary unpacked tar stream
	dockerfile []byte
	ignore     *patternmatcher.PatternMatcher
}

func (bc *buildContext) close() {
	if bc.tmp {
		os.RemoveAll(bc.dir)
	}
}

// openContext opens the context of opts and reads its Dockerfile and
// ignore file.
func openContext(ctx context.Context, opts Options) (_ *buildContext, err error) {
	bc := &buildContext{}
	switch {
	case opts.ContextDir != "" && opts.Context != nil:
		return nil, errors.New("Options.ContextDir and Options.Context are both set")
	case opts.ContextDir != "":
		d, err := filepath.Abs(opts.ContextDir)
		if err == nil {
			d, err = filepath.EvalSymlinks(d)
		}
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("context %s: not a directory", opts.ContextDir)
		}
		bc.dir = d
	case opts.Context != nil:
		d, err := os.MkdirTemp("", "berth-build-context-")
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		bc.dir, bc.tmp = d, true
		defer func() {
			if err != nil {
				bc.close()
			}
		}()
		if _, err := archive.Apply(ctx, d, opts.Context, archive.Options{}); err != nil {
			return nil, fmt.Errorf("context: unpack tar stream: %w", err)
		}
	default:
		if opts.DockerfileContent == nil {
			return nil, errors.New("no build context: set Options.ContextDir, Options.Context or Options.DockerfileContent")
		}
		d, err := os.MkdirTemp("", "berth-build-context-")
		if err != nil {
			return nil, fmt.Errorf("context: %w", err)
		}
		bc.dir, bc.tmp = d, true
	}
	name := opts.Dockerfile
	if name == "" {
		name = "Dockerfile"
	}
	if opts.DockerfileContent != nil {
		bc.dockerfile = opts.DockerfileContent
	} else {
		bc.dockerfile, err = bc.readFile(name)
		if err != nil {
			bc.close()
			return nil, fmt.Errorf("read the Dockerfile %s: %w", name, err)
		}
	}
	// <Dockerfile>.dockerignore next to the Dockerfile wins over the
	// context's .dockerignore, as BuildKit reads them.
	ign, err := bc.readFile(name + ".dockerignore")
	if errors.Is(err, os.ErrNotExist) {
		ign, err = bc.readFile(".dockerignore")
	}
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		bc.close()
		return nil, fmt.Errorf(".dockerignore: %w", err)
	}
	if err == nil {
		pats, err := ignorefile.ReadAll(bytes.NewReader(ign))
		if err == nil {
			bc.ignore, err = patternmatcher.New(pats)
		}
		if err != nil {
			bc.close()
			return nil, fmt.Errorf(".dockerignore: %w", err)
		}
	}
	return bc, nil
}

// readFile reads a file of the context, refusing paths out of it.
func (bc *buildContext) readFile(name string) ([]byte, error) {
	p, err := resolveIn(bc.dir, name, false)
	if err != nil {
		return nil, err
	}
	return os.ReadFile(p)
}

// ignored reports whether .dockerignore excludes rel (slash-separated,
// relative to the context root).
func (bc *buildContext) ignored(rel string) bool {
	if bc.ignore == nil || rel == "." || rel == "" {
		return false
	}
	m, err := bc.ignore.MatchesOrParentMatches(rel)
	return err == nil && m
}

// cleanRel cleans a source path of COPY or ADD, refusing one that is
// absolute or climbs out of its root.
func cleanRel(src string, allowAbs bool) (string, error) {
	if filepath.IsAbs(src) && !allowAbs {
		return "", fmt.Errorf("%w: %s: an absolute path", ErrOutsideContext, src)
	}
	c := filepath.Clean("/" + src)
	if !allowAbs {
		if raw := filepath.Clean(src); raw == ".." || strings.HasPrefix(raw, "../") {
			return "", fmt.Errorf("%w: %s: climbs out of the context", ErrOutsideContext, src)
		}
	}
	rel := strings.TrimPrefix(c, "/")
	if rel == "" {
		rel = "."
	}
	return rel, nil
}

// resolveIn returns the real host path of rel under root. With inRoot
// symlinks resolve as inside a root filesystem ("/" and ".." stop at
// root); without it, a path that resolves out of root is refused with
// ErrOutsideContext. A missing path is os.ErrNotExist.
func resolveIn(root, rel string, inRoot bool) (string, error) {
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(dfd)
	how := &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_BENEATH}
	if inRoot {
		how.Resolve = unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_IN_ROOT
	}
	fd, err := openat2.Open(dfd, rel, how)
	switch {
	case err == unix.EXDEV:
		return "", fmt.Errorf("%w: %s resolves (through a symlink) to a place outside it", ErrOutsideContext, rel)
	case err == unix.ENOENT || err == unix.ENOTDIR:
		return "", fmt.Errorf("%s: %w", rel, os.ErrNotExist)
	case err == unix.ELOOP:
		return "", fmt.Errorf("%s: too many symlinks", rel)
	case err != nil:
		return "", fmt.Errorf("%s: %w", rel, err)
	}
	defer unix.Close(fd)
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "", err
	}
	if p != root && !strings.HasPrefix(p, strings.TrimSuffix(root, "/")+"/") {
		return "", fmt.Errorf("%w: %s resolves to %s", ErrOutsideContext, rel, p)
	}
	return p, nil
}

var _ io.Reader = (*bytes.Reader)(nil)
