package snapshot

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
	f, err := os.Open("/proc/thread-self/mountinfo")
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
				_ = Unmount(m)
			}
		}
	})
}

// newFunc opens a Snapshotter in root.
type newFunc func(root string) (Snapshotter, error)

// open opens a Snapshotter in root and closes it when tb ends.
func open(tb testing.TB, newFn newFunc, root string) Snapshotter {
	tb.Helper()
	sn, err := newFn(root)
	if err != nil {
		tb.Fatalf("open %s: %v", root, err)
	}
	tb.Cleanup(func() { sn.Close() })
	return sn
}

// dirOf returns the directory of key's own layer.
func dirOf(tb testing.TB, sn Snapshotter, key string) string {
	tb.Helper()
	d, ok := sn.(interface {
		Dir(context.Context, string) (string, error)
	})
	if !ok {
		tb.Fatalf("%T has no Dir method", sn)
	}
	dir, err := d.Dir(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// withMount mounts ms on a new directory, calls fn with it, and unmounts.
func withMount(tb testing.TB, ms []Mount, fn func(dir string)) {
	tb.Helper()
	dir := tb.TempDir()
	if err := MountAll(ms, dir); err != nil {
		tb.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			_ = Unmount(dir)
		}
	}()
	fn(dir)
	mounted = false
	if err := Unmount(dir); err != nil {
		tb.Fatal(err)
	}
}

// prepare calls Prepare and fails tb on error.
func prepare(tb testing.TB, sn Snapshotter, key, parent string, opts ...Opt) []Mount {
	tb.Helper()
	ms, err := sn.Prepare(context.Background(), key, parent, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}

// commit calls Commit and fails tb on error.
func commit(tb testing.TB, sn Snapshotter, name, key string, opts ...Opt) {
	tb.Helper()
	if err := sn.Commit(context.Background(), name, key, opts...); err != nil {
		tb.Fatal(err)
	}
}

// view calls View and fails tb on error.
func view(tb testing.TB, sn Snapshotter, key, parent string, opts ...Opt) []Mount {
	tb.Helper()
	ms, err := sn.View(context.Background(), key, parent, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}

// writeFiles writes files (path: content; a path ending in "/" is a
// directory) under dir.
func writeFiles(tb testing.TB, dir string, files map[string]string) {
	tb.Helper()
	for p, content := range files {
		full := filepath.Join(dir, p)
		if strings.HasSuffix(p, "/") {
			if err := os.MkdirAll(full, 0o755); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}

// tree returns what is under dir: path to content for files, path + "/"
// to "" for directories, path + "@" to target for symbolic links.
func tree(tb testing.TB, dir string) map[string]string {
	tb.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
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
		tb.Fatal(err)
	}
	return m
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

// entries returns the names in dir.
func entries(tb testing.TB, dir string) []string {
	tb.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		tb.Fatal(err)
	}
	var names []string
	for _, d := range des {
		names = append(names, d.Name())
	}
	return names
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// mountsOf calls Mounts and fails tb on error.
func mountsOf(tb testing.TB, sn Snapshotter, key string) []Mount {
	tb.Helper()
	ms, err := sn.Mounts(context.Background(), key)
	if err != nil {
		tb.Fatal(err)
	}
	return ms
}
