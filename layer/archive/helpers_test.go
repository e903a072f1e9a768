package archive

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// ent is one entry of a test layer.
type ent struct {
	hdr  tar.Header
	body string
}

var testTime = time.Unix(1700000000, 0)

func file(name, body string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(body)), ModTime: testTime}, body: body}
}

func dirEnt(name string, mode int64) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: mode, ModTime: testTime}}
}

func symlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeSymlink, Name: name, Linkname: target, Mode: 0o777, ModTime: testTime}}
}

func hardlink(name, target string) ent {
	return ent{hdr: tar.Header{Typeflag: tar.TypeLink, Name: name, Linkname: target, ModTime: testTime}}
}

func whiteout(name string) ent { return file(name, "", 0o600) }

func device(name string, typ byte, major, minor int64) ent {
	return ent{hdr: tar.Header{Typeflag: typ, Name: name, Mode: 0o666, Devmajor: major, Devminor: minor, ModTime: testTime}}
}

// makeTar returns a tar of the entries, written as is.
func makeTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		h := e.hdr
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatalf("tar header %q: %v", h.Name, err)
		}
		if e.body != "" {
			if _, err := tw.Write([]byte(e.body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func apply(t testing.TB, dir string, layer []byte, opts Options) (Stats, error) {
	t.Helper()
	return Apply(context.Background(), dir, bytes.NewReader(layer), opts)
}

func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, mknod, trusted.* attributes)")
	}
}

// sandbox is a temporary directory with the layer root in it and, beside
// the root, a sentinel directory that nothing may touch.
type sandbox struct {
	parent, root, outside string
	before                map[string]string
}

func newSandbox(t testing.TB) *sandbox {
	t.Helper()
	sb := &sandbox{parent: t.TempDir()}
	sb.root = filepath.Join(sb.parent, "root")
	sb.outside = filepath.Join(sb.parent, "outside")
	for _, d := range []string{sb.root, sb.outside, filepath.Join(sb.outside, "sub")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(sb.outside, "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sb.outside, "sub", "secret"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	sb.before = sb.snapshotOutside(t)
	t.Cleanup(func() { clearDir(sb.root) }) // read-only directories from a layer
	return sb
}

// snapshotOutside describes everything in the sandbox but the root.
func (sb *sandbox) snapshotOutside(t testing.TB) map[string]string {
	t.Helper()
	m := make(map[string]string)
	err := filepath.WalkDir(sb.parent, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == sb.root {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				return err
			}
			m[p] = fmt.Sprintf("root ino=%d", st.Ino) // the root itself stays; its inside may change
			return fs.SkipDir
		}
		m[p] = describe(p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// describe says everything about a file that a write could change.
func describe(p string) string {
	var st unix.Stat_t
	if err := unix.Lstat(p, &st); err != nil {
		return "error " + err.Error()
	}
	s := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d nlink=%d mtime=%d.%d ctime=%d.%d rdev=%d",
		st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec, st.Rdev)
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		b, _ := os.ReadFile(p)
		s += fmt.Sprintf(" sha=%x", sha256.Sum256(b))
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		l, _ := os.Readlink(p)
		s += " link=" + l
	}
	s += " xattrs=" + fmt.Sprint(allXattrs(p))
	return s
}

func allXattrs(p string) map[string]string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil || n == 0 {
		return nil
	}
	m := make(map[string]string)
	for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
		v := make([]byte, 64<<10)
		k, err := unix.Lgetxattr(p, name, v)
		if err == nil {
			m[name] = string(v[:k])
		}
	}
	return m
}

// check fails the test if anything beside the root changed, or if a
// canary appeared elsewhere on the host.
func (sb *sandbox) check(t testing.TB) {
	t.Helper()
	after := sb.snapshotOutside(t)
	for p, d := range sb.before {
		if after[p] != d {
			t.Errorf("outside the root, %s changed:\n before %s\n after  %s", p, d, after[p])
		}
	}
	for p, d := range after {
		if _, ok := sb.before[p]; !ok {
			t.Errorf("outside the root, %s appeared: %s", p, d)
		}
	}
	for _, p := range canaries {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists: a write escaped the root", p)
		}
	}
}

// canaries are host paths that hostile test layers aim at.
var canaries = []string{"/tmp/berth-archive-pwned", "/etc/berth-archive-pwned", "/berth-archive-pwned"}

// node is what the tree comparisons look at in one file.
type node struct {
	Kind    string
	Mode    uint32
	UID     uint32
	GID     uint32
	Size    int64
	Sum     string
	Link    string
	Rdev    uint64
	Mtime   int64 // seconds: layers keep whole seconds
	Xattrs  string
	LinkSet string // names sharing the inode, for hardlinks
}

// snapshot describes a tree (without its root directory) for comparison.
func snapshot(t testing.TB, root string) map[string]node {
	t.Helper()
	m := make(map[string]node)
	byIno := make(map[uint64][]string)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		n := node{Mode: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid, Mtime: st.Mtim.Sec}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFDIR:
			n.Kind = "dir"
		case unix.S_IFREG:
			n.Kind = "file"
			n.Size = st.Size
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			n.Sum = fmt.Sprintf("%x", sha256.Sum256(b))
			if st.Nlink > 1 {
				byIno[st.Ino] = append(byIno[st.Ino], rel)
			}
		case unix.S_IFLNK:
			n.Kind = "symlink"
			n.Link, _ = os.Readlink(p)
		case unix.S_IFCHR:
			n.Kind, n.Rdev = "char", st.Rdev
		case unix.S_IFBLK:
			n.Kind, n.Rdev = "block", st.Rdev
		case unix.S_IFIFO:
			n.Kind = "fifo"
		default:
			n.Kind = "other"
		}
		xa := allXattrs(p)
		var keys []string
		for k := range xa {
			if xattrAllowed(k) {
				keys = append(keys, k+"="+xa[k])
			}
		}
		slices.Sort(keys)
		n.Xattrs = strings.Join(keys, ",")
		m[rel] = n
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, names := range byIno {
		slices.Sort(names)
		for _, name := range names {
			n := m[name]
			n.LinkSet = strings.Join(names, "|")
			m[name] = n
		}
	}
	return m
}

func compareTrees(t testing.TB, got, want map[string]node) {
	t.Helper()
	for p, w := range want {
		g, ok := got[p]
		if !ok {
			t.Errorf("%s: missing, want %+v", p, w)
			continue
		}
		if g != w {
			t.Errorf("%s:\n got  %+v\n want %+v", p, g, w)
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("%s: unexpected %+v", p, g)
		}
	}
}

// copyTree copies a tree as cp -a does (hardlinks, owners, times, xattrs).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

func mkfile(t testing.TB, p, body string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
}

func lstat(t testing.TB, p string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

func isRoot() bool { return os.Geteuid() == 0 }

// clearDir removes everything in dir, leaving dir itself. Unprivileged,
// it first makes the directories in it writable.
func clearDir(dir string) error {
	if !isRoot() {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o700)
			}
			return nil
		})
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
