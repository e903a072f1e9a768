package container

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/berthlabs/berth/cgroup"
)

func TestVolumeStore(t *testing.T) {
	ctx := testCtx(t)
	rt := &Runtime{VolumeRoot: filepath.Join(t.TempDir(), "volumes")}
	if vs, err := rt.Volumes(); err != nil || len(vs) != 0 {
		t.Fatalf("Volumes of a new root = %v, %v", vs, err)
	}
	for _, bad := range []string{"", "a", "-x", "a/b", "..", ".hidden", "a b"} {
		if _, err := rt.CreateVolume(ctx, bad, VolumeOptions{}); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("CreateVolume(%q) = %v, want ErrInvalidSpec", bad, err)
		}
	}
	v, err := rt.CreateVolume(ctx, "data-1", VolumeOptions{Labels: map[string]string{"app": "db"}})
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(v.Mountpoint); err != nil || !fi.IsDir() {
		t.Fatalf("mountpoint %s: %v", v.Mountpoint, err)
	}
	if _, err := rt.CreateVolume(ctx, "data-1", VolumeOptions{}); !errors.Is(err, ErrVolumeExists) {
		t.Fatalf("second CreateVolume = %v, want ErrVolumeExists", err)
	}
	if _, err := rt.CreateVolume(ctx, "b.2_x", VolumeOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := rt.Volume("data-1")
	if err != nil || got.Labels["app"] != "db" || got.Mountpoint != v.Mountpoint || got.CreatedAt.IsZero() {
		t.Fatalf("Volume = %+v, %v", got, err)
	}
	vs, err := rt.Volumes()
	if err != nil || len(vs) != 2 || vs[0].Name != "b.2_x" || vs[1].Name != "data-1" {
		t.Fatalf("Volumes = %v, %v", vs, err)
	}
	if err := os.WriteFile(filepath.Join(v.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveVolume(ctx, "data-1", false); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Volume("data-1"); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("Volume after remove = %v", err)
	}
	if err := rt.RemoveVolume(ctx, "data-1", false); !errors.Is(err, ErrVolumeNotFound) {
		t.Fatalf("second RemoveVolume = %v, want ErrVolumeNotFound", err)
	}
	if err := rt.RemoveVolume(ctx, "data-1", true); err != nil {
		t.Fatalf("forced RemoveVolume of a missing volume = %v", err)
	}
	ents, _ := os.ReadDir(rt.VolumeRoot)
	if len(ents) != 1 || ents[0].Name() != "b.2_x" {
		t.Fatalf("volume root holds %v", ents)
	}
}

func TestVolumeSharedAndInUse(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	rt := &Runtime{VolumeRoot: filepath.Join(t.TempDir(), "volumes")}
	// Named in a spec, a missing volume is created.
	spec := &Spec{
		Mounts:  []Mount{{Type: VolumeMount, Source: "shared", Target: "/data"}},
		Process: sh("echo hello > /data/greeting; mkdir -p /data/d; chown 1000:1000 /data/d"),
	}
	if _, st := runIn(t, rt, spec); !st.Success() {
		t.Fatalf("writer: %v", st)
	}
	v, err := rt.Volume("shared")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(v.Mountpoint, "d")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Fatalf("volume dir: %v %v", fi, err)
	}
	// The next container sees it; while it exists, the volume is in use.
	c, out := startIn(t, rt, &Spec{
		Mounts:  []Mount{{Type: VolumeMount, Source: "shared", Target: "/v", ReadOnly: true}},
		Process: sh("cat /v/greeting; touch /v/x 2>/dev/null || echo read-only"),
	})
	if _, err := c.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); got != "hello\nread-only\n" {
		t.Fatalf("reader said %q", got)
	}
	if err := rt.RemoveVolume(ctx, "shared", true); !errors.Is(err, ErrVolumeInUse) {
		t.Fatalf("RemoveVolume of a volume a stopped container uses = %v, want ErrVolumeInUse", err)
	}
	// Another runtime (of this process or another) on the same root sees
	// the lock too.
	if err := (&Runtime{VolumeRoot: rt.VolumeRoot}).RemoveVolume(ctx, "shared", false); !errors.Is(err, ErrVolumeInUse) {
		t.Fatalf("RemoveVolume from another runtime = %v, want ErrVolumeInUse", err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rt.RemoveVolume(ctx, "shared", false); err != nil {
		t.Fatalf("RemoveVolume after Delete: %v", err)
	}
	checkNoLeaks(t, before)
}

// runIn runs spec in rt to its end, deletes it, and returns its output
// and status.
func runIn(t *testing.T, rt *Runtime, spec *Spec) (string, *ExitStatus) {
	t.Helper()
	c, out := startIn(t, rt, spec)
	st, err := c.Wait(testCtx(t))
	if err != nil {
		t.Fatalf("Wait: %v", err)
	}
	if err := c.Delete(testCtx(t)); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	return out.String(), st
}

func TestVolumeCopyUp(t *testing.T) {
	needRoot(t)
	rt := &Runtime{VolumeRoot: filepath.Join(t.TempDir(), "volumes")}
	// An image directory with a file, a symlink, a hardlink and odd
	// owners and modes, made in a tmpfs the container has of its own
	// (the shared rootfs is not written), then mounted over by a new
	// volume in a second container on the same rootfs: /etc of the
	// rootfs is what gets copied.
	out, st := runIn(t, rt, &Spec{
		Mounts:  []Mount{{Type: VolumeMount, Source: "etc", Target: "/etc"}},
		Process: sh("ls /etc; cat /etc/passwd | head -1"),
	})
	if !st.Success() || !strings.Contains(out, "passwd") || !strings.Contains(out, "root:x:0:0") {
		t.Fatalf("container on a filled volume: %v %q", st, out)
	}
	v, _ := rt.Volume("etc")
	want, _ := os.ReadFile(filepath.Join(testRootfs, "etc/passwd"))
	got, err := os.ReadFile(filepath.Join(v.Mountpoint, "passwd"))
	if err != nil || string(got) != string(want) {
		t.Fatalf("copied passwd = %q, %v", got, err)
	}
	wfi, _ := os.Stat(filepath.Join(testRootfs, "etc/passwd"))
	gfi, _ := os.Stat(filepath.Join(v.Mountpoint, "passwd"))
	if wfi.Mode() != gfi.Mode() || !wfi.ModTime().Equal(gfi.ModTime()) {
		t.Errorf("copied passwd: mode %v mtime %v, want %v %v", gfi.Mode(), gfi.ModTime(), wfi.Mode(), wfi.ModTime())
	}
	// A volume that holds something is not filled again: the container's
	// change stays, and a file removed from it does not come back.
	os.Remove(filepath.Join(v.Mountpoint, "group"))
	if out, _ := runIn(t, rt, &Spec{
		Mounts:  []Mount{{Type: VolumeMount, Source: "etc", Target: "/etc"}},
		Process: sh("ls /etc/group 2>&1 || true"),
	}); !strings.Contains(out, "No such file") {
		t.Fatalf("second container: %q", out)
	}
	// Nested trees with owners, modes, symlinks and hardlinks, from a
	// directory the container has under a tmpfs of its own.
	src := filepath.Join(t.TempDir(), "tree")
	os.MkdirAll(filepath.Join(src, "sub/deeper"), 0o750)
	os.WriteFile(filepath.Join(src, "sub/f"), []byte("data"), 0o4755)
	os.Chown(filepath.Join(src, "sub/f"), 1000, 1000)
	syscall.Chmod(filepath.Join(src, "sub/f"), 0o4755)
	os.Chown(filepath.Join(src, "sub/deeper"), 65534, 65534)
	os.Symlink("../etc/passwd", filepath.Join(src, "link"))
	os.Link(filepath.Join(src, "sub/f"), filepath.Join(src, "hard"))
	if _, st := runIn(t, rt, &Spec{
		Mounts: []Mount{
			{Type: Bind, Source: src, Target: "/srv", ReadOnly: true},
			{Type: VolumeMount, Source: "tree", Target: "/srv"},
		},
		Process: sh("true"),
	}); !st.Success() {
		t.Fatal(st)
	}
	tv, _ := rt.Volume("tree")
	fi, err := os.Lstat(filepath.Join(tv.Mountpoint, "sub/f"))
	if err != nil || fi.Mode() != 0o755|os.ModeSetuid || fi.Sys().(*syscall.Stat_t).Uid != 1000 {
		t.Errorf("sub/f: %v %v", fi, err)
	}
	if fi, err := os.Lstat(filepath.Join(tv.Mountpoint, "sub/deeper")); err != nil || fi.Mode() != os.ModeDir|0o750 || fi.Sys().(*syscall.Stat_t).Gid != 65534 {
		t.Errorf("sub/deeper: %v %v", fi, err)
	}
	if l, err := os.Readlink(filepath.Join(tv.Mountpoint, "link")); l != "../etc/passwd" {
		t.Errorf("link: %q %v", l, err)
	}
	a, _ := os.Stat(filepath.Join(tv.Mountpoint, "hard"))
	b, _ := os.Stat(filepath.Join(tv.Mountpoint, "sub/f"))
	if a == nil || b == nil || !os.SameFile(a, b) {
		t.Errorf("hardlink not kept")
	}
	// nocopy leaves a new volume empty.
	if _, st := runIn(t, rt, &Spec{
		Mounts:  []Mount{{Type: VolumeMount, Source: "empty", Target: "/etc", Options: []string{"nocopy"}}},
		Process: sh("test -z \"$(ls /etc)\""),
	}); !st.Success() {
		t.Fatalf("nocopy volume not empty: %v", st)
	}
}

// TestVolumeInUseByOtherProcess checks the lock across processes: a
// container another process made keeps its volume, until that process
// is killed with SIGKILL.
func TestVolumeInUseByOtherProcess(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	root := filepath.Join(t.TempDir(), "volumes")
	cmd := exec.Command("/proc/self/exe", "-test.run=^$")
	cmd.Env = append(os.Environ(), volumeHelperEnv+"="+testRootfs+":"+root)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	n, _ := io.ReadAtLeast(stdout, buf, 1)
	if line := strings.TrimSpace(string(buf[:n])); line != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper said %q", line)
	}
	rt := &Runtime{VolumeRoot: root}
	if err := rt.RemoveVolume(ctx, "held", false); !errors.Is(err, ErrVolumeInUse) {
		t.Errorf("RemoveVolume while another process's container uses it = %v", err)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if err := rt.RemoveVolume(ctx, "held", false); err != nil {
		t.Errorf("RemoveVolume after its user was killed: %v", err)
	}
	if cg, err := cgroup.Load(fmt.Sprintf("/berth/volume-holder-%d", cmd.Process.Pid)); err == nil {
		cg.Delete(context.Background())
	}
}

// volumeHelperEnv makes the test binary a process that creates a
// container on the volume "held" and waits to be killed.
const volumeHelperEnv = "BERTH_TEST_VOLUME_HOLDER"

func init() {
	arg := os.Getenv(volumeHelperEnv)
	if arg == "" {
		return
	}
	rootfs, root, _ := strings.Cut(arg, ":")
	rt := &Runtime{VolumeRoot: root}
	_, err := rt.Create(context.Background(), fmt.Sprintf("volume-holder-%d", os.Getpid()), &Spec{
		Rootfs:  rootfs,
		Mounts:  []Mount{{Type: VolumeMount, Source: "held", Target: "/data"}},
		Process: sh("true"),
	})
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("ready")
	select {}
}
