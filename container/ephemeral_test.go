package container

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A process killed with -9 while its image containers run leaves their
// ephemeral rootfs snapshots (and its spare snapshot directories): the
// next Open removes them all and keeps every committed snapshot.
func TestEphemeralAfterKill(t *testing.T) {
	needRoot(t)
	if dir := os.Getenv("BERTH_EPHEMERAL_CHILD"); dir != "" {
		ctx := context.Background()
		store, err := layer.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		rt := &Runtime{Images: store}
		for i := range 3 {
			c, err := rt.Create(ctx, fmt.Sprintf("eph-%d", i), &Spec{Image: "test/busybox:1", Process: Process{Args: []string{"sleep", "100"}}})
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Start(ctx); err != nil {
				t.Fatal(err)
			}
		}
		fmt.Println("running")
		time.Sleep(time.Minute) // killed by the parent
		return
	}
	root := t.TempDir()
	store, err := layer.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if out, err := exec.Command("cp", "-a", testRootfs+"/.", rootfs).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, out)
	}
	importImage(t, store, "test/busybox:1", ocispec.ImageConfig{Cmd: []string{"true"}}, rootfs)
	if _, err := store.Unpack(context.Background(), "test/busybox:1"); err != nil {
		t.Fatal(err)
	}
	committed := snapshotsOf(t, store, snapshot.KindCommitted)
	store.Close()

	// The killed child cannot remove its containers' cgroups (they are
	// empty once its processes are gone): this test does.
	t.Cleanup(func() {
		for i := range 3 {
			dirs, _ := filepath.Glob(fmt.Sprintf("/sys/fs/cgroup/*/berth/eph-%d", i))
			for _, d := range append(dirs, fmt.Sprintf("/sys/fs/cgroup/berth/eph-%d", i)) {
				os.Remove(d)
			}
		}
	})
	cmd := exec.Command(os.Args[0], "-test.run", "^TestEphemeralAfterKill$")
	cmd.Env = append(os.Environ(), "BERTH_EPHEMERAL_CHILD="+root, "BERTH_TEST_INIT_POOL=")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	text := ""
	for !strings.Contains(text, "running") {
		n, err := out.Read(buf)
		if err != nil {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("child: %v: %q", err, text)
		}
		text += string(buf[:n])
	}
	// Its snapshots and spare directories are there now.
	spares, _ := filepath.Glob(filepath.Join(root, "snapshots", "snapshots", ".tmp-*-spare-*"))
	if len(spares) == 0 {
		t.Errorf("no spare snapshot directories while the child ran")
	}
	cmd.Process.Kill()
	cmd.Wait()
	for _, c := range []string{"eph-0", "eph-1", "eph-2"} {
		waitCgroupGone(t, c)
	}

	store, err = layer.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if got := snapshotsOf(t, store, snapshot.KindActive); len(got) != 0 {
		t.Errorf("active snapshots after the kill and Open: %v", got)
	}
	if got := snapshotsOf(t, store, snapshot.KindCommitted); !slices.Equal(got, committed) {
		t.Errorf("committed snapshots %v, want %v", got, committed)
	}
	// The image still runs, from the same layers.
	rt := &Runtime{Images: store}
	if out, st := runIn(t, rt, &Spec{Image: "test/busybox:1", Process: sh("echo again")}); !st.Success() || out != "again\n" {
		t.Errorf("after: %v %q", st, out)
	}
	// Close waits for the directories being deleted and removes spares.
	store.Close()
	left, _ := filepath.Glob(filepath.Join(root, "snapshots", "snapshots", ".tmp-*"))
	if len(left) != 0 {
		t.Errorf("temporary directories left: %v", left)
	}
}

func snapshotsOf(t *testing.T, s *layer.Store, kind snapshot.Kind) []string {
	t.Helper()
	var names []string
	err := s.Snapshots.Walk(context.Background(), func(i snapshot.Info) error {
		if i.Kind == kind {
			names = append(names, i.Name)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// waitCgroupGone waits until the cgroup of container id (in the Default
// cgroup parent) has no processes: a killed process's containers die
// with it.
func waitCgroupGone(t *testing.T, id string) {
	t.Helper()
	for i := 0; ; i++ {
		b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup/pids/berth", id, "cgroup.procs"))
		if err != nil || len(strings.TrimSpace(string(b))) == 0 {
			return
		}
		if i == 250 {
			t.Fatalf("container %s still has processes: %s", id, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
