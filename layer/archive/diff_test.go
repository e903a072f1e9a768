package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeLower builds a tree with one of every kind of thing a layer holds.
func makeLower(t *testing.T, dir string) {
	t.Helper()
	sec := time.Unix(1650000000, 0)
	for p, body := range map[string]string{
		"etc/hostname": "lower\n", "etc/passwd": "root:x:0:0::/root:/bin/sh\n",
		"bin/busybox": "busybox v1", "usr/lib/libc.so": "libc", "var/log/old.log": "old", "var/log/keep.log": "keep",
		"replace-dir/a": "a", "replace-dir/b/c": "c", "replace-file": "becomes a dir",
		"opaque-dir/x": "x", "opaque-dir/y/z": "z", "chmod-me": "m", "chown-me": "o", "xattr-file": "x",
		"ro-dir/f": "f", "deep/a/b/c/d/file": "deep", "same-second": "AAAA", "untouched/file": "u",
	} {
		mkfile(t, filepath.Join(dir, p), body, 0o644)
	}
	must(t, os.Chmod(filepath.Join(dir, "bin/busybox"), 0o755))
	must(t, os.Link(filepath.Join(dir, "bin/busybox"), filepath.Join(dir, "bin/sh")))
	must(t, os.Link(filepath.Join(dir, "bin/busybox"), filepath.Join(dir, "bin/ls")))
	mkfile(t, filepath.Join(dir, "bin/su"), "su", 0o4755)
	must(t, os.Symlink("usr/lib", filepath.Join(dir, "lib")))
	must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
	must(t, os.Mkdir(filepath.Join(dir, "dev"), 0o755))
	must(t, unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Setxattr(filepath.Join(dir, "xattr-file"), "user.a", []byte("1"), 0))
	must(t, os.Chtimes(filepath.Join(dir, "same-second"), sec, sec))
	must(t, os.Chmod(filepath.Join(dir, "ro-dir"), 0o555))
}

// changeUpper changes a copy of the lower tree in every way a layer can
// record.
func changeUpper(t *testing.T, dir string) {
	t.Helper()
	p := func(s string) string { return filepath.Join(dir, s) }
	sec := time.Unix(1650000000, 0)
	must(t, os.WriteFile(p("etc/hostname"), []byte("upper\n"), 0o644))
	must(t, os.Remove(p("etc/passwd")))
	mkfile(t, p("etc/new"), "new", 0o640)
	must(t, os.WriteFile(p("bin/busybox"), []byte("busybox v2, longer"), 0o755)) // in place: sh and ls change too
	must(t, os.Link(p("usr/lib/libc.so"), p("usr/lib/libc.so.6")))               // a new name for an unchanged file
	must(t, os.Remove(p("lib")))
	must(t, os.Symlink("/usr/lib64", p("lib")))
	must(t, os.Remove(p("var/log/old.log")))
	must(t, os.RemoveAll(p("replace-dir")))
	mkfile(t, p("replace-dir"), "now a file", 0o644)
	must(t, os.Remove(p("replace-file")))
	mkfile(t, p("replace-file/child"), "child", 0o644)
	must(t, os.RemoveAll(p("opaque-dir")))
	mkfile(t, p("opaque-dir/new"), "new", 0o644)
	must(t, os.Chmod(p("chmod-me"), 0o600))
	must(t, os.Chown(p("chown-me"), 1000, 1000))
	must(t, unix.Setxattr(p("xattr-file"), "user.b", []byte("2"), 0))
	must(t, os.Remove(p("fifo")))
	must(t, unix.Mkfifo(p("fifo2"), 0o600))
	mkfile(t, p("ro-dir/new"), "written as root", 0o644)
	must(t, os.WriteFile(p("deep/a/b/c/d/file"), []byte("deeper"), 0o644))
	must(t, os.WriteFile(p("same-second"), []byte("BBBB"), 0o644)) // same size, same whole-second time
	must(t, os.Chtimes(p("same-second"), sec, sec))
	mkfile(t, p("newdir/sub/f"), "f", 0o644)
	must(t, os.Symlink("../etc/hostname", p("newdir/link")))
}

func TestDiffRoundTrip(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower, upper, target := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "target")
	makeLower(t, lower)
	copyTree(t, lower, upper)
	copyTree(t, lower, target)
	changeUpper(t, upper)

	var layer bytes.Buffer
	must(t, Diff(context.Background(), &layer, lower, upper))
	var again bytes.Buffer
	must(t, Diff(context.Background(), &again, lower, upper))
	if !bytes.Equal(layer.Bytes(), again.Bytes()) {
		t.Errorf("Diff is not deterministic")
	}
	names := tarNames(t, layer.Bytes())
	t.Logf("layer: %s", strings.Join(names, " "))
	for _, n := range []string{"etc/.wh.passwd", "var/log/.wh.old.log", ".wh.fifo", "opaque-dir/.wh..wh..opq", "bin/ls=>bin/busybox", "usr/lib/libc.so.6=>usr/lib/libc.so", "same-second"} {
		if !contains(names, n) {
			t.Errorf("layer lacks %s", n)
		}
	}
	for _, n := range []string{"untouched/", "untouched/file", "var/log/keep.log", "etc/", "bin/su"} {
		if contains(names, n) == (n != "etc/") {
			t.Errorf("layer has %s: %v", n, contains(names, n))
		}
	}

	want := snapshot(t, upper)
	if d := differences(snapshot(t, target), want); d < 20 {
		t.Fatalf("only %d differences before the layer is applied: the comparison is too weak", d)
	}
	st, err := apply(t, target, layer.Bytes(), Options{AllowDevices: true})
	must(t, err)
	t.Logf("applied %d entries, %d bytes", st.Files, st.Bytes)
	compareTrees(t, snapshot(t, target), want)
}

func TestDiffEqualTrees(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower, upper := filepath.Join(base, "lower"), filepath.Join(base, "upper")
	makeLower(t, lower)
	copyTree(t, lower, upper)
	var layer bytes.Buffer
	must(t, Diff(context.Background(), &layer, lower, upper))
	if names := tarNames(t, layer.Bytes()); len(names) != 0 {
		t.Errorf("Diff of equal trees has %v", names)
	}
}

// A tree diffed against an empty one, applied onto an empty directory.
func TestDiffFromEmpty(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	empty, upper, target := filepath.Join(base, "empty"), filepath.Join(base, "upper"), filepath.Join(base, "target")
	must(t, os.Mkdir(empty, 0o755))
	must(t, os.Mkdir(target, 0o755))
	makeLower(t, upper)
	var layer bytes.Buffer
	must(t, Diff(context.Background(), &layer, empty, upper))
	_, err := apply(t, target, layer.Bytes(), Options{AllowDevices: true})
	must(t, err)
	compareTrees(t, snapshot(t, target), snapshot(t, upper))
}

// mountOverlay mounts an overlay, and unmounts it when the test ends.
func mountOverlay(t *testing.T, target, opts string) func() {
	t.Helper()
	err := unix.Mount("overlay", target, "overlay", 0, opts+",redirect_dir=off,metacopy=off")
	if err == unix.EINVAL {
		err = unix.Mount("overlay", target, "overlay", 0, opts)
	}
	if err != nil {
		t.Skipf("mount overlay (%s): %v", opts, err)
	}
	done := false
	unmount := func() {
		if !done {
			done = true
			if err := unix.Unmount(target, 0); err != nil {
				unix.Unmount(target, unix.MNT_DETACH)
			}
		}
	}
	t.Cleanup(unmount)
	return unmount
}

func TestDiffOverlayRoundTrip(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	dir := func(s string) string {
		p := filepath.Join(base, s)
		must(t, os.MkdirAll(p, 0o755))
		return p
	}
	lower, upper, work, merged := dir("lower"), dir("upper"), dir("work"), dir("merged")
	must(t, os.Remove(lower))
	makeLower(t, lower)
	unmount := mountOverlay(t, merged, "lowerdir="+lower+",upperdir="+upper+",workdir="+work)
	changeUpper(t, merged) // through overlayfs: real whiteouts and opaque directories
	want := snapshot(t, merged)
	unmount()

	var layer bytes.Buffer
	must(t, DiffOverlay(context.Background(), &layer, upper))
	names := tarNames(t, layer.Bytes())
	t.Logf("layer: %s", strings.Join(names, " "))
	for _, n := range []string{"etc/.wh.passwd", ".wh.fifo", "opaque-dir/", "opaque-dir/.wh..wh..opq", "opaque-dir/new"} {
		if !contains(names, n) {
			t.Errorf("layer lacks %s", n)
		}
	}

	// Applied onto a copy of lower, the layer gives the merged tree.
	target := filepath.Join(base, "target")
	copyTree(t, lower, target)
	_, err := apply(t, target, layer.Bytes(), Options{AllowDevices: true})
	must(t, err)
	compareTrees(t, snapshot(t, target), want)

	// Applied with overlay whiteouts into an empty layer directory, an
	// overlay of it on lower gives the merged tree too.
	layerDir, view := dir("layer"), dir("view")
	_, err = apply(t, layerDir, layer.Bytes(), Options{AllowDevices: true, OverlayWhiteouts: true})
	must(t, err)
	mountOverlay(t, view, "lowerdir="+layerDir+":"+lower)
	compareTrees(t, snapshot(t, view), want)
}

func TestDiffOverlayRefusesRedirects(t *testing.T) {
	needRoot(t)
	upper := t.TempDir()
	mkfile(t, filepath.Join(upper, "moved/f"), "f", 0o644)
	must(t, unix.Setxattr(filepath.Join(upper, "moved"), overlayRedirect, []byte("/old"), 0))
	err := DiffOverlay(context.Background(), io.Discard, upper)
	if !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("DiffOverlay with a redirect: %v, want ErrUnsupported", err)
	}
	t.Logf("%v", err)
}

func TestDiffOverlayUserXattrs(t *testing.T) {
	upper := t.TempDir()
	mkfile(t, filepath.Join(upper, "opq/f"), "f", 0o644)
	if err := unix.Setxattr(filepath.Join(upper, "opq"), userOverlayOpq, []byte("y"), 0); err != nil {
		t.Skipf("user xattrs: %v", err)
	}
	var layer bytes.Buffer
	must(t, DiffOverlay(context.Background(), &layer, upper))
	if got := strings.Join(tarNames(t, layer.Bytes()), " "); got != "opq/ opq/.wh..wh..opq opq/f" {
		t.Errorf("layer %s", got)
	}
}

// tarNames lists a tar's names; hardlinks as name=>target.
func tarNames(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		must(t, err)
		n := h.Name
		if h.Typeflag == tar.TypeLink {
			n += "=>" + h.Linkname
		}
		names = append(names, n)
	}
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

func differences(a, b map[string]node) int {
	n := 0
	for p, x := range a {
		if y, ok := b[p]; !ok || x != y {
			n++
		}
	}
	for p := range b {
		if _, ok := a[p]; !ok {
			n++
		}
	}
	return n
}
