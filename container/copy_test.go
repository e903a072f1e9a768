package container

import (
	"archive/tar"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/namespace"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

var copyTime = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

// testTar is a tree d/ with a file, a symlink and a hardlink, with
// owners and modes of their own.
func testTar(t *testing.T) *bytes.Buffer {
	t.Helper()
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	for _, h := range []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o750, Uid: 1000, Gid: 1000, ModTime: copyTime},
		{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o640, Uid: 1000, Gid: 2000, Size: 5, ModTime: copyTime},
		{Name: "d/s", Typeflag: tar.TypeSymlink, Linkname: "f", ModTime: copyTime},
		{Name: "d/h", Typeflag: tar.TypeLink, Linkname: "d/f", ModTime: copyTime},
	} {
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if h.Size > 0 {
			tw.Write([]byte("hello"))
		}
	}
	tw.Close()
	return &b
}

// readTar lists a tar stream's headers by name, and its files' contents.
func readTar(t *testing.T, r io.ReadCloser) (map[string]*tar.Header, map[string]string) {
	t.Helper()
	defer r.Close()
	hdrs, data := map[string]*tar.Header{}, map[string]string{}
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return hdrs, data
		}
		if err != nil {
			t.Fatal(err)
		}
		hdrs[h.Name] = h
		b, _ := io.ReadAll(tr)
		data[h.Name] = string(b)
	}
}

func checkTestTree(t *testing.T, hdrs map[string]*tar.Header, data map[string]string, uid, gid int) {
	t.Helper()
	d, f, s, h := hdrs["d/"], hdrs["d/f"], hdrs["d/s"], hdrs["d/h"]
	if d == nil || f == nil || s == nil || h == nil {
		t.Fatalf("tar holds %v", hdrs)
	}
	if d.Mode != 0o750 || d.Uid != 1000 || f.Mode != 0o640 || f.Uid != uid || f.Gid != gid || data["d/f"] != "hello" || !f.ModTime.Equal(copyTime) {
		t.Errorf("d/: %o %d; d/f: %o %d:%d %q %v", d.Mode, d.Uid, f.Mode, f.Uid, f.Gid, data["d/f"], f.ModTime)
	}
	if s.Typeflag != tar.TypeSymlink || s.Linkname != "f" || h.Typeflag != tar.TypeLink || h.Linkname != "d/f" {
		t.Errorf("d/s %c %q, d/h %c %q", s.Typeflag, s.Linkname, h.Typeflag, h.Linkname)
	}
}

func TestCopyRunning(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	hostDir := t.TempDir()
	rt := &Runtime{VolumeRoot: filepath.Join(t.TempDir(), "volumes")}
	c, _ := startIn(t, rt, &Spec{
		Mounts: []Mount{
			{Type: Tmpfs, Target: "/work"},
			{Type: VolumeMount, Source: "vol", Target: "/vol"},
		},
		Process: sh("ln -s /../../../.." + hostDir + " /work/out; ln -s /vol /work/tovol; touch /work/file; echo ready > /work/ready; exec sleep 60"),
	})
	waitFor(t, func() bool { _, err := c.CopyFrom(ctx, "/work/ready"); return err == nil }, "ready")
	if err := c.CopyTo(ctx, "/work", testTar(t)); err != nil {
		t.Fatal(err)
	}
	// The container sees what was copied, owners and modes as given.
	var out bytes.Buffer
	p, err := c.Exec(ctx, Process{Args: []string{"sh", "-c", "stat -c '%a %u %g %Y' /work/d/f; cat /work/d/s; stat -c %h /work/d/h"}, Stdout: &out, Stderr: &out})
	if err != nil {
		t.Fatal(err)
	}
	p.Wait(ctx)
	if want := "640 1000 2000 1714979289\nhello2\n"; out.String() != want {
		t.Errorf("in the container: %q, want %q", out.String(), want)
	}
	r, err := c.CopyFrom(ctx, "/work/d")
	if err != nil {
		t.Fatal(err)
	}
	hdrs, data := readTar(t, r)
	checkTestTree(t, hdrs, data, 1000, 2000)
	// A symlink is copied as itself; through a symlink to a volume, the
	// volume is written.
	hdrs, _ = readTar(t, must(c.CopyFrom(ctx, "/work/out")))
	if h := hdrs["out"]; h == nil || h.Typeflag != tar.TypeSymlink || len(hdrs) != 1 {
		t.Errorf("CopyFrom of a symlink: %v", hdrs)
	}
	if err := c.CopyTo(ctx, "/work/tovol", testTar(t)); err != nil {
		t.Fatal(err)
	}
	v, _ := rt.Volume("vol")
	if b, err := os.ReadFile(filepath.Join(v.Mountpoint, "d/f")); err != nil || string(b) != "hello" {
		t.Errorf("volume's d/f: %q %v", b, err)
	}
	// A symlink that points out of the container resolves inside it:
	// nothing reaches the host directory it names.
	if err := c.CopyTo(ctx, "/work/out", testTar(t)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CopyTo through an escaping symlink = %v, want not exist", err)
	}
	if _, err := c.CopyFrom(ctx, "/work/out/x"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CopyFrom through an escaping symlink = %v", err)
	}
	if ents, _ := os.ReadDir(hostDir); len(ents) != 0 {
		t.Errorf("host directory written: %v", ents)
	}
	// A tar whose entries climb out is refused.
	var evil bytes.Buffer
	tw := tar.NewWriter(&evil)
	tw.WriteHeader(&tar.Header{Name: "../../../../" + hostDir + "/x", Typeflag: tar.TypeReg, Mode: 0o644})
	tw.Close()
	if err := c.CopyTo(ctx, "/work", &evil); err == nil {
		t.Error("CopyTo of ../ entries succeeded")
	}
	if ents, _ := os.ReadDir(hostDir); len(ents) != 0 {
		t.Errorf("host directory written: %v", ents)
	}
	// Errors.
	_, err = c.CopyFrom(ctx, "/work/missing")
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/work/missing") {
		t.Errorf("CopyFrom of a missing path = %v", err)
	}
	if err := c.CopyTo(ctx, "/work/missing", testTar(t)); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "/work/missing") {
		t.Errorf("CopyTo into a missing directory = %v", err)
	}
	if err := c.CopyTo(ctx, "/work/file", testTar(t)); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("CopyTo onto a file = %v", err)
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func TestCopyCreatedAndStopped(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	rootfs, err := busybox.TempRootfs()
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(rootfs)
	var out syncBuffer
	c, err := Default.Create(ctx, testID(t), &Spec{Rootfs: rootfs, Process: Process{Args: []string{"sh", "-c", "cat /tmp/d/s; echo made > /tmp/made"}, Stdout: &out}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx)
	if err := c.CopyTo(ctx, "/tmp", testTar(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.Wait(ctx)
	if out.String() != "hello" {
		t.Errorf("container read %q", out.String())
	}
	hdrs, data := readTar(t, must(c.CopyFrom(ctx, "/tmp/made")))
	if data["made"] != "made\n" || len(hdrs) != 1 {
		t.Errorf("CopyFrom of a stopped container: %v %v", hdrs, data)
	}
}

func TestCopyImageContainerStopped(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	store, fresh := newImageStore(t)
	importImage(t, store, "example.com/copy:v1", ocispec.ImageConfig{Cmd: []string{"sh", "-c", "cat /tmp/d/f; echo made > /tmp/made"}}, fresh)
	before := takeSnapshot(t) // the store keeps descriptors open
	rt := &Runtime{Images: store}
	var out syncBuffer
	c, err := rt.Create(ctx, testID(t), &Spec{Image: "example.com/copy:v1", Process: Process{Stdout: &out}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.CopyTo(ctx, "/tmp", testTar(t)); err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.Wait(ctx)
	if out.String() != "hello" {
		t.Errorf("container read %q", out.String())
	}
	hdrs, data := readTar(t, must(c.CopyFrom(ctx, "/tmp")))
	if data["tmp/made"] != "made\n" || hdrs["tmp/d/f"] == nil {
		t.Errorf("CopyFrom of a stopped image container: %v", hdrs)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// The store holds its spares' mounts, made ahead, until it closes.
	store.Close()
	checkNoLeaks(t, before)
}

func TestCopyUserNamespace(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	os.Chmod(dir, 0o755) // the container's root (host ID 100000) passes
	os.Chmod(filepath.Dir(dir), 0o755)
	rt := &Runtime{VolumeRoot: filepath.Join(dir, "volumes")}
	c, _ := startIn(t, rt, &Spec{
		Namespaces:  map[namespace.Kind]Namespace{namespace.User: {Mode: NamespaceNew}},
		UIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		// A volume: a host file system. One the container mounts in its
		// own user namespace (a tmpfs) refuses files of host IDs.
		Mounts:  []Mount{{Type: VolumeMount, Source: "work", Target: "/work"}},
		Process: sh("exec sleep 60"),
	})
	waitFor(t, func() bool { _, err := c.CopyFrom(ctx, "/work"); return err == nil }, "tmpfs")
	if err := c.CopyTo(ctx, "/work", testTar(t)); err != nil {
		t.Fatal(err)
	}
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(c.Pid())+"/root/work/d/f", &st); err != nil || st.Uid != 101000 || st.Gid != 102000 {
		t.Errorf("host owner of d/f: %d:%d %v", st.Uid, st.Gid, err)
	}
	var out bytes.Buffer
	p, _ := c.Exec(ctx, Process{Args: []string{"stat", "-c", "%u %g", "/work/d/f"}, Stdout: &out})
	p.Wait(ctx)
	if out.String() != "1000 2000\n" {
		t.Errorf("owner inside: %q", out.String())
	}
	hdrs, data := readTar(t, must(c.CopyFrom(ctx, "/work/d")))
	checkTestTree(t, hdrs, data, 1000, 2000)
}
