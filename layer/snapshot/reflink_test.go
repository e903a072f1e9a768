package snapshot

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCopyReflink checks Copy clones file data on a filesystem with
// reflinks: XFS on a loop device, made with mkfs.xfs when it is installed.
func TestCopyReflink(t *testing.T) {
	requireRoot(t)
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Skip("needs mkfs.xfs (Debian xfsprogs) for a filesystem with reflinks")
	}
	checkNoLeakedMounts(t)
	img := filepath.Join(t.TempDir(), "xfs.img")
	must(t, os.WriteFile(img, nil, 0o600))
	must(t, os.Truncate(img, 512<<20))
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v: %s", err, out)
	}
	out, err := exec.Command("losetup", "--find", "--show", img).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: %v: %s", err, out)
	}
	loop := strings.TrimSpace(string(out))
	t.Cleanup(func() { _ = exec.Command("losetup", "-d", loop).Run() })
	mnt := t.TempDir()
	if err := unix.Mount(loop, mnt, "xfs", 0, ""); err != nil {
		t.Skipf("mount xfs: %v", err)
	}
	t.Cleanup(func() { _ = Unmount(mnt) })

	ctx := context.Background()
	c, err := NewCopy(filepath.Join(mnt, "root"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	prepare(t, c, "a", "")
	data := bytes.Repeat([]byte("0123456789abcdef"), 4<<20/16)
	must(t, os.WriteFile(filepath.Join(dirOf(t, c, "a"), "big"), data, 0o644))
	commit(t, c, "L1", "a")
	var before, after unix.Statfs_t
	must(t, unix.Statfs(mnt, &before))
	prepare(t, c, "b", "L1")
	must(t, unix.Statfs(mnt, &after))
	if c.noClone.Load() {
		t.Fatal("FICLONE failed on XFS with reflink=1")
	}
	if got, err := os.ReadFile(filepath.Join(dirOf(t, c, "b"), "big")); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("cloned file differs: %v", err)
	}
	if used := int64(before.Bfree-after.Bfree) * before.Bsize; used > 1<<20 {
		t.Errorf("Prepare used %d bytes for a 4 MiB file; a clone shares its blocks", used)
	}
	if err := c.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
}
