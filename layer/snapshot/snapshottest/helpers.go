package snapshottest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/berthlabs/berth/internal/mountinfo"
	"github.com/berthlabs/berth/layer/snapshot"
)

// requireRoot skips tb unless it runs as root: the tests mount snapshots.
func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: mounting snapshots (bind and overlay mounts) needs CAP_SYS_ADMIN")
	}
}

// mountsUnder returns the mount points in this mount namespace under dir.
func mountsUnder(tb testing.TB, dir string) []string {
	tb.Helper()
	f, err := os.Open(mountinfo.Path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20) // long overlay options
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			ms = append(ms, fields[4])
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return ms
}

// checkNoLeakedMounts makes tb fail if it leaves a mount under its
// temporary directories, comparing the mount table before and after.
// (Other test binaries may mount elsewhere at the same time.)
func checkNoLeakedMounts(tb testing.TB) {
	tb.Helper()
	base := filepath.Dir(tb.TempDir())
	if ms := mountsUnder(tb, base); len(ms) > 0 {
		tb.Fatalf("mounts under %s before the test: %v", base, ms)
	}
	tb.Cleanup(func() {
		if ms := mountsUnder(tb, base); len(ms) > 0 {
			tb.Errorf("leaked mounts: %v", ms)
			for _, m := range slices.Backward(ms) {
				_ = snapshot.Unmount(m)
			}
		}
	})
}

// mustOpen opens a Snapshotter in root and closes it when tb ends.
func mustOpen(tb testing.TB, open openFunc, root string) snapshot.Snapshotter {
	tb.Helper()
	sn, err := open(root)
	if err != nil {
		tb.Fatalf("open %s: %v", root, err)
	}
	tb.Cleanup(func() { sn.Close() })
	return sn
}

// walk returns the snapshots Walk reports, failing tb on error.
func walk(tb testing.TB, sn snapshot.Snapshotter) []snapshot.Info {
	tb.Helper()
	var infos []snapshot.Info
	if err := sn.Walk(context.Background(), func(i snapshot.Info) error { infos = append(infos, i); return nil }); err != nil {
		tb.Fatal(err)
	}
	return infos
}

// writeThrough mounts ms on dir, which it makes, writes the file name
// holding content, and unmounts; it is safe in any goroutine.
func writeThrough(ms []snapshot.Mount, dir, name, content string) error {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return err
	}
	defer os.Remove(dir)
	if err := snapshot.MountAll(ms, dir); err != nil {
		return err
	}
	werr := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644)
	if err := snapshot.Unmount(dir); err != nil {
		return err
	}
	return werr
}

// writeFiles is WriteFiles, failing tb on error.
func writeFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	if err := WriteFiles(dir, files); err != nil {
		tb.Fatal(err)
	}
}

// tree is Tree, failing tb on error.
func tree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	m, err := Tree(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// withMount mounts ms on a new directory, calls fn with it, and unmounts.
func withMount(tb testing.TB, ms []snapshot.Mount, fn func(dir string)) {
	tb.Helper()
	dir := tb.TempDir()
	if err := snapshot.MountAll(ms, dir); err != nil {
		tb.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			_ = snapshot.Unmount(dir)
		}
	}()
	fn(dir)
	mounted = false
	if err := snapshot.Unmount(dir); err != nil {
		tb.Fatal(err)
	}
}

// prepare calls Prepare and fails tb on error.
func prepare(tb testing.TB, sn snapshot.Snapshotter, key, parent string, opts ...snapshot.Opt) []snapshot.Mount {
	tb.Helper()
	ms, err := sn.Prepare(context.Background(), key, parent, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}

// commit calls Commit and fails tb on error.
func commit(tb testing.TB, sn snapshot.Snapshotter, name, key string, opts ...snapshot.Opt) {
	tb.Helper()
	if err := sn.Commit(context.Background(), name, key, opts...); err != nil {
		tb.Fatal(err)
	}
}

// view calls View and fails tb on error.
func view(tb testing.TB, sn snapshot.Snapshotter, key, parent string, opts ...snapshot.Opt) []snapshot.Mount {
	tb.Helper()
	ms, err := sn.View(context.Background(), key, parent, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}

// checkTree fails tb unless dir holds exactly want.
func checkTree(tb testing.TB, what, dir string, want map[string]string) {
	tb.Helper()
	got := tree(tb, dir)
	var diffs []string
	for k, v := range want {
		if g, ok := got[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %s", k))
		} else if g != v {
			diffs = append(diffs, fmt.Sprintf("%s = %q, want %q", k, g, v))
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %s", k))
		}
	}
	if len(diffs) > 0 {
		slices.Sort(diffs)
		tb.Errorf("%s: %s", what, strings.Join(diffs, "; "))
	}
}

// wantErr fails tb unless err matches target.
func wantErr(tb testing.TB, what string, err, target error) {
	tb.Helper()
	if !errors.Is(err, target) {
		tb.Errorf("%s: error %v, want %v", what, err, target)
	}
}

// WriteFiles writes files under dir: each key is a slash-separated path
// relative to dir and its value the file's content; a path ending in "/"
// is a directory (its value is ignored). Missing parent directories are
// made. It is the input format of Tree, so that
//
//	WriteFiles(dir, want)
//	got, _ := Tree(dir)
//
// gives a got equal to want when want names every parent directory.
func WriteFiles(dir string, files map[string]string) error {
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				return err
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// Tree returns what is under dir, for comparing a mounted snapshot with
// what it should hold: each regular file as its slash-separated path
// relative to dir with its content, each directory as its path + "/"
// with "", each symbolic link as its path + "@" with its target, and
// anything else as its path + "?" with its fs.FileMode type.
func Tree(dir string) (map[string]string, error) {
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		switch {
		case d.IsDir():
			m[rel+"/"] = ""
		case d.Type()&fs.ModeSymlink != 0:
			t, err := os.Readlink(p)
			if err != nil {
				return err
			}
			m[rel+"@"] = t
		case d.Type().IsRegular():
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[rel] = string(b)
		default:
			m[rel+"?"] = d.Type().String()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return m, nil
}
