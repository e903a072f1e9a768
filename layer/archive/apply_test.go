package archive

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	kgzip "github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// capNetRaw is a security.capability value (VFS_CAP_REVISION_2,
// effective) granting CAP_NET_RAW, as ping has it.
func capNetRaw() string {
	b := make([]byte, 20)
	binary.LittleEndian.PutUint32(b[0:], 0x02000001)
	binary.LittleEndian.PutUint32(b[4:], 1<<unix.CAP_NET_RAW)
	return string(b)
}

func withXattrs(e ent, kv ...string) ent {
	e.hdr.PAXRecords = make(map[string]string)
	for i := 0; i < len(kv); i += 2 {
		e.hdr.PAXRecords[paxXattr+kv[i]] = kv[i+1]
	}
	return e
}

func owned(e ent, uid, gid int) ent {
	e.hdr.Uid, e.hdr.Gid = uid, gid
	return e
}

func TestApplyEntries(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	mtime := time.Unix(1600000000, 123456789)
	setuid := owned(file("usr/bin/su", "#!su", 0o4755), 0, 0)
	setuid.hdr.ModTime = mtime
	setuid.hdr.Format = tar.FormatPAX // keeps the nanoseconds
	sl := owned(symlink("usr/bin/sh", "busybox"), 1000, 1001)
	sl.hdr.ModTime = time.Unix(1500000000, 0)
	ents := []ent{
		dirEnt("usr/", 0o755),
		owned(dirEnt("usr/bin/", 0o751), 0, 2),
		setuid,
		owned(file("usr/bin/busybox", "busybox", 0o755), 0, 0),
		sl,
		hardlink("usr/bin/ls", "usr/bin/busybox"),
		hardlink("/usr/bin/cat", "/usr/bin/busybox"),
		withXattrs(file("usr/bin/ping", "ping", 0o755),
			"security.capability", capNetRaw(), "user.note", "hi",
			"trusted.overlay.opaque", "y", "user.overlay.redirect", "/x",
			"security.selinux", "system_u:object_r:bin_t", "system.posix_acl_access", "junk"),
		withXattrs(dirEnt("data/", 0o700), "trusted.berth", "t"),
		owned(file("home/user/notes", "n", 0o600), 1234, 5678),
		dirEnt("tmp/", 0o1777),
		dirEnt("ro/", 0o555),
		file("ro/inside", "written before ro/ got its mode", 0o444),
		device("run/fifo", tar.TypeFifo, 0, 0),
		device("dev/null", tar.TypeChar, 1, 3),
		device("dev/loop0", tar.TypeBlock, 7, 0),
		owned(file("./relative", "dot slash", 0o644), 0, 0),
		file("empty", "", 0o644),
	}
	layer := makeTar(t, ents...)
	st, err := apply(t, sb.root, layer, Options{AllowDevices: true})
	if err != nil {
		t.Fatal(err)
	}
	if want := digest.FromBytes(layer); st.DiffID != want || st.Bytes != int64(len(layer)) || st.Files != int64(len(ents)) {
		t.Errorf("stats %+v, want DiffID %s, %d bytes, %d files", st, want, len(layer), len(ents))
	}
	r := sb.root
	check := func(p string, mode os.FileMode, uid, gid uint32) *unix.Stat_t {
		t.Helper()
		var s unix.Stat_t
		if err := unix.Lstat(filepath.Join(r, p), &s); err != nil {
			t.Errorf("%s: %v", p, err)
			return &s
		}
		fi, _ := os.Lstat(filepath.Join(r, p))
		if fi.Mode() != mode || s.Uid != uid || s.Gid != gid {
			t.Errorf("%s: mode %v owner %d:%d, want %v %d:%d", p, fi.Mode(), s.Uid, s.Gid, mode, uid, gid)
		}
		return &s
	}
	su := check("usr/bin/su", 0o755|os.ModeSetuid, 0, 0)
	if su.Mtim.Sec != mtime.Unix() || su.Mtim.Nsec != int64(mtime.Nanosecond()) {
		t.Errorf("su mtime %v, want %v", su.Mtim, mtime)
	}
	check("usr/bin", 0o751|os.ModeDir, 0, 2)
	if s := check("usr/bin/sh", 0o777|os.ModeSymlink, 1000, 1001); s.Mtim.Sec != 1500000000 {
		t.Errorf("symlink mtime %d", s.Mtim.Sec)
	}
	if l, _ := os.Readlink(filepath.Join(r, "usr/bin/sh")); l != "busybox" {
		t.Errorf("symlink target %q", l)
	}
	bb := check("usr/bin/busybox", 0o755, 0, 0)
	for _, p := range []string{"usr/bin/ls", "usr/bin/cat"} {
		if s := check(p, 0o755, 0, 0); s.Ino != bb.Ino {
			t.Errorf("%s is not a hardlink of busybox", p)
		}
	}
	if bb.Nlink != 3 {
		t.Errorf("busybox nlink %d", bb.Nlink)
	}
	check("usr/bin/ping", 0o755, 0, 0)
	xa := allXattrs(filepath.Join(r, "usr/bin/ping"))
	if xa["security.capability"] != capNetRaw() || xa["user.note"] != "hi" {
		t.Errorf("ping xattrs %q", xa)
	}
	for _, k := range []string{"trusted.overlay.opaque", "user.overlay.redirect", "security.selinux", "system.posix_acl_access"} {
		if _, ok := xa[k]; ok {
			t.Errorf("ping has %s, which a layer may not set", k)
		}
	}
	check("data", 0o700|os.ModeDir, 0, 0)
	if xa := allXattrs(filepath.Join(r, "data")); xa["trusted.berth"] != "t" {
		t.Errorf("data xattrs %q", xa)
	}
	check("home/user/notes", 0o600, 1234, 5678)
	check("home/user", 0o755|os.ModeDir, 0, 0) // made for the entry
	check("tmp", 0o777|os.ModeDir|os.ModeSticky, 0, 0)
	check("ro", 0o555|os.ModeDir, 0, 0)
	if s := check("ro", 0o555|os.ModeDir, 0, 0); s.Mtim.Sec != testTime.Unix() {
		t.Errorf("ro mtime %d, want %d (set after its contents)", s.Mtim.Sec, testTime.Unix())
	}
	check("ro/inside", 0o444, 0, 0)
	check("run/fifo", 0o666|os.ModeNamedPipe, 0, 0)
	if s := check("dev/null", 0o666|os.ModeDevice|os.ModeCharDevice, 0, 0); s.Rdev != unix.Mkdev(1, 3) {
		t.Errorf("dev/null rdev %x", s.Rdev)
	}
	if s := check("dev/loop0", 0o666|os.ModeDevice, 0, 0); s.Rdev != unix.Mkdev(7, 0) {
		t.Errorf("dev/loop0 rdev %x", s.Rdev)
	}
	check("relative", 0o644, 0, 0)
	check("empty", 0o644, 0, 0)
	sb.check(t)
}

// Replacement as Docker does it: an entry replaces a non-directory, a
// directory merges with a directory, anything else replaces a directory
// tree.
func TestApplyReplace(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	r := sb.root
	mkfile(t, filepath.Join(r, "merge/old"), "old", 0o644)
	mkfile(t, filepath.Join(r, "tree/a/b/c"), "c", 0o644)
	mkfile(t, filepath.Join(r, "file"), "file", 0o644)
	mkfile(t, filepath.Join(r, "linked"), "shared", 0o644)
	if err := os.Link(filepath.Join(r, "linked"), filepath.Join(r, "other")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(r, "tree/a"), 0o500); err != nil { // a read-only directory in the way
		t.Fatal(err)
	}
	if err := os.Symlink("/outside", filepath.Join(r, "sym")); err != nil {
		t.Fatal(err)
	}
	_, err := apply(t, r, makeTar(t,
		dirEnt("merge/", 0o700),
		file("merge/new", "new", 0o644),
		file("tree", "now a file", 0o644),
		dirEnt("file/", 0o755),
		file("file/inside", "x", 0o644),
		file("linked", "replaced", 0o644),
		dirEnt("sym/", 0o755),
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"merge/old": "old", "merge/new": "new", "tree": "now a file", "file/inside": "x", "linked": "replaced", "other": "shared"}
	for p, body := range want {
		if b, err := os.ReadFile(filepath.Join(r, p)); err != nil || string(b) != body {
			t.Errorf("%s = %q, %v; want %q", p, b, err, body)
		}
	}
	if fi, err := os.Stat(filepath.Join(r, "merge")); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("merge: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(r, "sym")); err != nil || !fi.IsDir() {
		t.Errorf("sym: %v %v", fi, err)
	}
	sb.check(t)
}

func TestApplyWhiteouts(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	r := sb.root
	for _, p := range []string{"a", "b/c", "b/keep", "d/e", "d/f/g", "opq/old", "x/y"} {
		mkfile(t, filepath.Join(r, p), p, 0o644)
	}
	_, err := apply(t, r, makeTar(t,
		whiteout(".wh.a"),
		whiteout("b/.wh.c"),
		whiteout(".wh.d"),
		whiteout(".wh.missing"),
		whiteout("nodir/.wh.x"),
		dirEnt("opq/", 0o755),
		file("opq/mine-before", "1", 0o644),
		whiteout("opq/.wh..wh..opq"),
		file("opq/mine-after", "2", 0o644),
		file("new", "new", 0o644),
		whiteout(".wh.new"), // same layer: must not remove it
		file("sub/deep/file", "implicit parents", 0o644),
		whiteout("sub/.wh..wh..opq"), // after its entries: keeps them
		whiteout(".wh..wh.plnk"),     // AUFS metadata: skipped
		whiteout(".wh.x"),
		dirEnt("x/", 0o755), // whited out then made again: empty
	), Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := snapshot(t, r)
	var names []string
	for p := range got {
		names = append(names, p)
	}
	want := []string{"b", "b/keep", "new", "opq", "opq/mine-after", "opq/mine-before", "sub", "sub/deep", "sub/deep/file", "x"}
	if strings.Join(sortStrings(names), " ") != strings.Join(want, " ") {
		t.Errorf("tree %v, want %v", sortStrings(names), want)
	}
	sb.check(t)
}

func TestApplyOverlayWhiteouts(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	r := sb.root
	_, err := apply(t, r, makeTar(t,
		whiteout(".wh.a"),
		whiteout("b/.wh.c"),
		dirEnt("opq/", 0o755),
		whiteout("opq/.wh..wh..opq"),
		file("opq/mine", "1", 0o644),
		whiteout("implicit/.wh..wh..opq"),
		whiteout(".wh.redo"),
		dirEnt("redo/", 0o755),
		file("new", "new", 0o644),
		whiteout(".wh.new"),
	), Options{OverlayWhiteouts: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b/c"} {
		s := lstat(t, filepath.Join(r, p))
		if s.Mode&unix.S_IFMT != unix.S_IFCHR || s.Rdev != 0 {
			t.Errorf("%s: mode %o rdev %d, want a 0:0 character device", p, s.Mode, s.Rdev)
		}
	}
	for _, p := range []string{"opq", "implicit", "redo"} {
		if xa := allXattrs(filepath.Join(r, p)); xa[overlayOpaque] != "y" {
			t.Errorf("%s: xattrs %q, want %s=y", p, xa, overlayOpaque)
		}
	}
	if s := lstat(t, filepath.Join(r, "new")); s.Mode&unix.S_IFMT != unix.S_IFREG {
		t.Errorf("new is not a regular file: the layer's own entry was whited out")
	}
	sb.check(t)
}

// The overlay whiteouts and opaque directories Apply writes work in a real
// overlay mount.
func TestApplyOverlayMount(t *testing.T) {
	needRoot(t)
	base := t.TempDir()
	lower, upper, merged := filepath.Join(base, "lower"), filepath.Join(base, "upper"), filepath.Join(base, "merged")
	for _, p := range []string{"gone", "dir/gone", "dir/stays", "opq/old1", "opq/sub/old2"} {
		mkfile(t, filepath.Join(lower, p), p, 0o644)
	}
	os.Mkdir(upper, 0o755)
	os.Mkdir(merged, 0o755)
	_, err := apply(t, upper, makeTar(t,
		whiteout(".wh.gone"), whiteout("dir/.wh.gone"),
		dirEnt("opq/", 0o755), whiteout("opq/.wh..wh..opq"), file("opq/new", "new", 0o644),
	), Options{OverlayWhiteouts: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, "lowerdir="+upper+":"+lower); err != nil {
		t.Skipf("mount overlay: %v", err)
	}
	defer unix.Unmount(merged, unix.MNT_DETACH)
	var names []string
	for p := range snapshot(t, merged) {
		names = append(names, p)
	}
	want := []string{"dir", "dir/stays", "opq", "opq/new"}
	if strings.Join(sortStrings(names), " ") != strings.Join(want, " ") {
		t.Errorf("merged %v, want %v", sortStrings(names), want)
	}
}

func TestApplyCompression(t *testing.T) {
	layer := makeTar(t, dirEnt("etc/", 0o755), file("etc/hostname", "berth\n", 0o644), file("big", strings.Repeat("layer ", 300000), 0o644))
	layer = append(layer, make([]byte, 10240)...) // GNU tar pads to a record: it is part of the DiffID
	want := digest.FromBytes(layer)
	var stdgz, kgz, zst bytes.Buffer
	gw := gzip.NewWriter(&stdgz)
	gw.Write(layer)
	gw.Close()
	kw := kgzip.NewWriter(&kgz)
	kw.Write(layer)
	kw.Close()
	zw, _ := zstd.NewWriter(&zst)
	zw.Write(layer)
	zw.Close()
	for name, blob := range map[string][]byte{"plain": layer, "gzip": stdgz.Bytes(), "klauspost-gzip": kgz.Bytes(), "zstd": zst.Bytes()} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var progress []int64
			st, err := Apply(context.Background(), dir, bytes.NewReader(blob), Options{NoChown: true, Progress: func(n int64) { progress = append(progress, n) }})
			if err != nil {
				t.Fatal(err)
			}
			if st.DiffID != want || st.Bytes != int64(len(layer)) {
				t.Errorf("DiffID %s, %d bytes; want %s, %d (sha256 of the uncompressed tar)", st.DiffID, st.Bytes, want, len(layer))
			}
			if len(progress) == 0 || progress[len(progress)-1] != int64(len(layer)) {
				t.Errorf("progress %v, want it to end at %d", progress, len(layer))
			}
			if b, err := os.ReadFile(filepath.Join(dir, "big")); err != nil || len(b) != 6*300000 {
				t.Errorf("big: %d bytes, %v", len(b), err)
			}
		})
	}
	for name, blob := range map[string][]byte{
		"xz":           {0xfd, '7', 'z', 'X', 'Z', 0, 1, 2},
		"bzip2":        []byte("BZh91AY&SY"),
		"corrupt-gzip": append([]byte{0x1f, 0x8b, 8, 0}, bytes.Repeat([]byte{0xff}, 100)...),
		"corrupt-zstd": append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 100)...),
		"truncated":    layer[:700],
		"garbage":      bytes.Repeat([]byte("not a tar "), 100),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(blob), Options{NoChown: true}); err == nil {
				t.Errorf("Apply of %s: no error", name)
			} else {
				t.Logf("%v", err)
			}
		})
	}
	t.Run("empty", func(t *testing.T) {
		st, err := Apply(context.Background(), t.TempDir(), bytes.NewReader(nil), Options{})
		if err != nil || st.DiffID != digest.FromBytes(nil) {
			t.Errorf("empty layer: %+v %v", st, err)
		}
	})
}

func TestApplyCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	layer := makeTar(t, file("a", "a", 0o644))
	if _, err := Apply(ctx, t.TempDir(), bytes.NewReader(layer), Options{NoChown: true}); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with a cancelled context: %v", err)
	}
}

func TestApplyUnprivileged(t *testing.T) {
	// NoChown alone must be enough for a layer of regular content.
	dir := t.TempDir()
	layer := makeTar(t, owned(file("f", "x", 0o640), 42, 42), dirEnt("ro/", 0o500), file("ro/f", "y", 0o400))
	if _, err := apply(t, dir, layer, Options{NoChown: true}); err != nil {
		t.Fatal(err)
	}
	if s := lstat(t, filepath.Join(dir, "f")); int(s.Uid) != os.Geteuid() {
		t.Errorf("owner %d with NoChown", s.Uid)
	}
	clearDir(dir) // unprivileged, t.TempDir could not remove ro/f
}

func TestCleanName(t *testing.T) {
	for in, want := range map[string]string{
		"a/b": "a/b", "./a/b/": "a/b", "/a//b/.": "a/b", "./": "", "/": "", ".": "", "": "",
		"a/./b": "a/b", "...": "...", "a..b": "a..b", "..a/b..": "..a/b..",
	} {
		if got, err := cleanName(in); err != nil || got != want {
			t.Errorf("cleanName(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"..", "../a", "a/..", "a/../b", "/../a", "a/b/../../..", "a\x00b"} {
		if got, err := cleanName(in); !errors.Is(err, ErrUnsafe) {
			t.Errorf("cleanName(%q) = %q, %v; want ErrUnsafe", in, got, err)
		}
	}
}

func sortStrings(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}

// Sparse files, as GNU tar writes them (old GNU and PAX 1.0 formats),
// come out with their holes; their full size counts against MaxBytes.
func TestApplySparse(t *testing.T) {
	if _, err := exec.LookPath("tar"); err != nil {
		t.Skip("no tar to make sparse layers")
	}
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "sparse"))
	must(t, err)
	f.WriteAt([]byte("head"), 0)
	f.WriteAt([]byte("middle"), 50<<20)
	must(t, f.Truncate(100<<20))
	f.Close()
	f, err = os.Create(filepath.Join(src, "huge"))
	must(t, err)
	f.WriteAt([]byte("tail"), 1<<40)
	f.Close()
	for _, format := range []string{"gnu", "posix"} {
		t.Run(format, func(t *testing.T) {
			layer, err := exec.Command("tar", "--sparse", "--format="+format, "-cf", "-", "-C", src, "sparse").Output()
			must(t, err)
			dir := t.TempDir()
			_, err = apply(t, dir, layer, Options{NoChown: true})
			must(t, err)
			b, err := os.ReadFile(filepath.Join(dir, "sparse"))
			must(t, err)
			if len(b) != 100<<20 || string(b[:4]) != "head" || string(b[50<<20:50<<20+6]) != "middle" {
				t.Errorf("sparse file: %d bytes, wrong content", len(b))
			}
			if st := lstat(t, filepath.Join(dir, "sparse")); st.Blocks*512 > 1<<20 {
				t.Errorf("sparse file takes %d bytes on disk: holes were written", st.Blocks*512)
			}
			layer, err = exec.Command("tar", "--sparse", "--format="+format, "-cf", "-", "-C", src, "huge").Output()
			must(t, err)
			if _, err := apply(t, t.TempDir(), layer, Options{NoChown: true}); !errors.Is(err, ErrLimit) {
				t.Errorf("a %d-byte layer with a 1 TiB sparse file: %v, want ErrLimit", len(layer), err)
			}
		})
	}
}

// Apply leaves no descriptor open and no goroutine running, whether it
// succeeds or fails.
func TestApplyReleases(t *testing.T) {
	layers := [][]byte{makeTar(t, file("a/b", "b", 0o644), dirEnt("c/", 0o755), symlink("d", "c")), makeTar(t, file("../x", "", 0o644))}
	for _, l := range layers[:2] {
		var zst bytes.Buffer
		zw, _ := zstd.NewWriter(&zst)
		zw.Write(l)
		zw.Close()
		layers = append(layers, zst.Bytes())
	}
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		must(t, err)
		return len(ents)
	}
	Apply(context.Background(), t.TempDir(), bytes.NewReader(layers[2]), Options{NoChown: true}) // warm up
	fd0, g0 := fds(), runtime.NumGoroutine()
	for _, l := range layers {
		Apply(context.Background(), t.TempDir(), bytes.NewReader(l), Options{NoChown: true})
	}
	for i := 0; i < 100 && runtime.NumGoroutine() > g0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if fd, g := fds(), runtime.NumGoroutine(); fd != fd0 || g > g0 {
		t.Errorf("after Apply: %d descriptors (was %d), %d goroutines (was %d)", fd, fd0, g, g0)
	}
}
