package snapshot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func newOverlay(root string) (Snapshotter, error) { return NewOverlay(root) }
func newCopy(root string) (Snapshotter, error)    { return NewCopy(root) }

// requireOverlay skips tb unless overlayfs works under the temporary
// directory.
func requireOverlay(tb testing.TB) {
	tb.Helper()
	requireRoot(tb)
	o, err := NewOverlay(tb.TempDir())
	if errors.Is(err, ErrNotSupported) {
		tb.Skipf("overlayfs does not work here: %v", err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	o.Close()
}

// TestOverlayMounts checks the shape of the mounts: binds where one
// directory is enough, one overlay with the chain nearest first otherwise.
func TestOverlayMounts(t *testing.T) {
	requireOverlay(t)
	checkNoLeakedMounts(t)
	root := t.TempDir()
	sn := open(t, newOverlay, root)
	fs := func(id string) string { return filepath.Join(root, snapshotsDir, id, "fs") }
	ms := prepare(t, sn, "a", "")
	if len(ms) != 1 || ms[0].Type != "bind" || ms[0].Source != fs("1") || !slices.Contains(ms[0].Options, "rw") {
		t.Errorf("Prepare on no parent: %+v", ms)
	}
	commit(t, sn, "L1", "a")
	prepare(t, sn, "b", "L1")
	commit(t, sn, "L2", "b")
	ms = prepare(t, sn, "c", "L2")
	if len(ms) != 1 || ms[0].Type != "overlay" {
		t.Fatalf("Prepare on two layers: %+v", ms)
	}
	opts := strings.Join(ms[0].Options, ",")
	for _, o := range []string{"lowerdir=" + fs("2") + ":" + fs("1"), "upperdir=" + fs("3"),
		"workdir=" + filepath.Join(root, snapshotsDir, "3", "work")} {
		if !strings.Contains(opts, o) {
			t.Errorf("overlay options %s lack %s", opts, o)
		}
	}
	ms = view(t, sn, "v1", "L1")
	if len(ms) != 1 || ms[0].Type != "bind" || ms[0].Source != fs("1") || !slices.Contains(ms[0].Options, "ro") {
		t.Errorf("View of one layer: %+v", ms)
	}
	ms = view(t, sn, "v2", "L2")
	opts = strings.Join(ms[0].Options, ",")
	if len(ms) != 1 || ms[0].Type != "overlay" || !strings.Contains(opts, "lowerdir="+fs("2")+":"+fs("1")) ||
		strings.Contains(opts, "upperdir") {
		t.Errorf("View of two layers: %+v", ms)
	}
	// Prepare makes empty directories: constant time in the image size.
	if got := tree(t, filepath.Join(root, snapshotsDir, "3")); len(got) != 3 { // fs, work, lock
		t.Errorf("a prepared overlay snapshot holds %v", got)
	}
}

// layers is how many layers TestOverlayLongLowerdir stacks: enough that
// their lowerdir option is far longer than a page under a long root.
const layers = 150

// TestOverlayLongLowerdir mounts 150 layers under a long root with each way
// of passing lowerdir options longer than a page.
func TestOverlayLongLowerdir(t *testing.T) {
	requireOverlay(t)
	checkNoLeakedMounts(t)
	root := filepath.Join(t.TempDir(), strings.Repeat("a-long-root-", 12))
	sn := open(t, newOverlay, root)
	parent := ""
	want := map[string]string{}
	for i := range layers {
		key, name, f := fmt.Sprintf("k%d", i), fmt.Sprintf("L%d", i), fmt.Sprintf("f%d", i)
		prepare(t, sn, key, parent)
		writeFiles(t, dirOf(t, sn, key), map[string]string{f: "x"})
		want[f] = "x"
		commit(t, sn, name, key)
		parent = name
	}
	ms := prepare(t, sn, "top", parent)
	if n := len(strings.Join(ms[0].Options, ",")); n < 2*unix.Getpagesize() {
		t.Fatalf("overlay options are %d bytes; the test wants more than two pages", n)
	}
	for _, tc := range []struct {
		name string
		api  int32
	}{{"fsconfig lowerdir+", 1}, {"relative paths from a locked thread", 2}} {
		t.Run(tc.name, func(t *testing.T) {
			defer overlayAPI.Store(overlayAPI.Load())
			overlayAPI.Store(tc.api)
			withMount(t, ms, func(dir string) {
				checkTree(t, "top of 150 layers", dir, want)
			})
		})
	}
	// The process's own working directory is untouched.
	wd, err := os.Getwd()
	if err != nil || strings.Contains(wd, "a-long-root") {
		t.Errorf("working directory %s, %v", wd, err)
	}
}

// TestNew checks New picks overlayfs where it works, keeps to the kind a
// root was made with, and falls back to copying.
func TestNew(t *testing.T) {
	requireOverlay(t)
	checkNoLeakedMounts(t)
	root := t.TempDir()
	sn, err := New(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sn.(*Overlay); !ok {
		t.Errorf("New gave %T where overlayfs works", sn)
	}
	sn.Close()

	copyRoot := t.TempDir()
	c, err := NewCopy(copyRoot)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if sn, err = New(copyRoot); err != nil {
		t.Fatal(err)
	}
	if _, ok := sn.(*Copy); !ok {
		t.Errorf("New on a root of copies gave %T", sn)
	}
	sn.Close()
	_, err = NewOverlay(copyRoot)
	wantErr(t, "NewOverlay on a root of copies", err, ErrInvalid)

	// overlayfs refuses an upper directory on overlayfs: New must copy.
	lower, upper, work, mnt := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	m := Mount{Type: "overlay", Source: "overlay", Options: []string{
		"lowerdir=" + lower, "upperdir=" + upper, "workdir=" + work}}
	if err := m.Mount(mnt); err != nil {
		t.Fatal(err)
	}
	defer Unmount(mnt)
	_, err = NewOverlay(filepath.Join(mnt, "root"))
	wantErr(t, "NewOverlay on overlayfs", err, ErrNotSupported)
	sn, err = New(filepath.Join(mnt, "root"))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := sn.(*Copy); !ok {
		t.Errorf("New on overlayfs gave %T", sn)
	}
	sn.Close()
}

// TestDir checks Dir names the upper directory of an active overlay
// snapshot and refuses views.
func TestDir(t *testing.T) {
	requireOverlay(t)
	ctx := context.Background()
	root := t.TempDir()
	sn, err := NewOverlay(root)
	if err != nil {
		t.Fatal(err)
	}
	defer sn.Close()
	prepare(t, sn, "a", "")
	commit(t, sn, "L1", "a")
	prepare(t, sn, "b", "L1")
	view(t, sn, "v", "L1")
	if d, err := sn.Dir(ctx, "b"); err != nil || d != filepath.Join(root, snapshotsDir, "2", "fs") {
		t.Errorf("Dir(b) = %s, %v", d, err)
	}
	_, err = sn.Dir(ctx, "v")
	wantErr(t, "Dir of a view", err, ErrInvalid)
	_, err = sn.Dir(ctx, "nope")
	wantErr(t, "Dir of an unknown key", err, ErrNotFound)
}

func TestSplitOptions(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"a,b=c", []string{"a", "b=c"}},
		{`lowerdir=x\,y:z,index=off`, []string{`lowerdir=x\,y:z`, "index=off"}},
		{"", []string{""}},
	} {
		if got := splitOptions(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("splitOptions(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
	if got := splitLowerdirs(`/a\:b:/c\,d:/e`); !slices.Equal(got, []string{"/a:b", "/c,d", "/e"}) {
		t.Errorf("splitLowerdirs: %q", got)
	}
	if got := escapeLowerdir(`a:b,c\d`); got != `a\:b\,c\\d` {
		t.Errorf("escapeLowerdir: %q", got)
	}
}

func TestCommonDir(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{[]string{"/r/s/1/fs", "/r/s/2/fs", "/r/s/10/work"}, "/r/s"},
		{[]string{"/r/s/1/fs"}, "/r/s/1"},
		{[]string{"/r/s/1/fs", "/q/x"}, "/"},
		{[]string{"/r/ab/fs", "/r/a/fs"}, "/r"},
	} {
		if got := commonDir(tc.in); got != tc.want {
			t.Errorf("commonDir(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestParseOptions(t *testing.T) {
	flags, data := parseOptions([]string{"ro", "nosuid", "lowerdir=/a:/b", "index=off", "rw"})
	if flags != unix.MS_NOSUID || data != "lowerdir=/a:/b,index=off" {
		t.Errorf("parseOptions: %#x %q", flags, data)
	}
}

func TestKindText(t *testing.T) {
	for _, k := range []Kind{KindActive, KindView, KindCommitted} {
		b, err := k.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var got Kind
		if err := got.UnmarshalText(b); err != nil || got != k {
			t.Errorf("%v: round trip gave %v, %v", k, got, err)
		}
	}
	if _, err := Kind(0).MarshalText(); !errors.Is(err, ErrInvalid) {
		t.Errorf("MarshalText of Kind(0): %v", err)
	}
}

// TestMountAllUnmount checks MountAll stacks mounts and undoes them on
// failure, and Unmount takes the whole stack off.
func TestMountAllUnmount(t *testing.T) {
	requireRoot(t)
	checkNoLeakedMounts(t)
	src, target := t.TempDir(), t.TempDir()
	writeFiles(t, src, map[string]string{"f": "x"})
	ms := []Mount{
		{Type: "tmpfs", Source: "tmpfs", Options: []string{"size=1m"}},
		{Type: "bind", Source: src, Options: []string{"bind", "ro", "nosuid"}},
	}
	must(t, MountAll(ms, target))
	if got := len(mountsUnder(t, target)); got != 2 {
		t.Errorf("%d mounts on the target, want 2", got)
	}
	checkTree(t, "stacked mounts", target, map[string]string{"f": "x"})
	wantErr(t, "write to a read-only bind mount", os.WriteFile(filepath.Join(target, "g"), nil, 0o644), unix.EROFS)
	must(t, Unmount(target))
	if got := mountsUnder(t, target); len(got) != 0 {
		t.Errorf("mounts left after Unmount: %v", got)
	}
	wantErr(t, "Unmount of a directory with nothing mounted", Unmount(target), unix.EINVAL)

	bad := append(ms[:1:1], Mount{Type: "bind", Source: filepath.Join(src, "missing"), Options: []string{"bind"}})
	if err := MountAll(bad, target); err == nil {
		t.Fatal("MountAll of a missing source worked")
	}
	if got := mountsUnder(t, target); len(got) != 0 {
		t.Errorf("a failed MountAll left %v", got)
	}
}
