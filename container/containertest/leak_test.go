package containertest_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/vishvananda/netlink"
)

const childEnv = "CONTAINERTEST_CHILD"

// TestChild is the test binary's other half for TestNothingLeft: it
// starts sandboxes of every kind, prints their IDs and then ends (mode
// "exit") or waits to be killed (mode "kill").
func TestChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run by TestNothingLeft")
	}
	img := busyboxImage(t)
	n := containertest.NewNetwork(t)
	var ids []string
	for i, opts := range [][]containertest.Option{
		{containertest.WithNetwork(n), containertest.WithName("a")},
		{containertest.WithFile("/www/index.html", []byte("x"), 0o644)},
		{containertest.WithTmpfs("/scratch")},
	} {
		opts = append(opts, containertest.WithCmd("httpd", "-f", "-p", "80", "-h", "/"),
			containertest.WaitFor(containertest.ForListeningPort("80")))
		s := containertest.Run(t, img, opts...)
		s.Endpoint(80)
		ids = append(ids, s.Container().ID())
		_ = i
	}
	fmt.Printf("LINK %s\n", containertest.HostLink())
	fmt.Printf("IDS %s\n", strings.Join(ids, " "))
	if mode == "kill" {
		time.Sleep(time.Minute)
	}
}

func TestNothingLeft(t *testing.T) {
	needRoot(t)
	cache, err := containertest.CacheDir()
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"exit", "kill"} {
		t.Run(mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestChild$", "-test.v")
			cmd.Env = append(os.Environ(), childEnv+"="+mode)
			out, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			var ids []string
			var link string
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				t.Log("child:", sc.Text())
				if rest, ok := strings.CutPrefix(sc.Text(), "LINK "); ok {
					link = rest
				}
				if rest, ok := strings.CutPrefix(sc.Text(), "IDS "); ok {
					ids = strings.Fields(rest)
					break
				}
			}
			if len(ids) != 3 || link == "" {
				t.Fatalf("child said no IDs")
			}
			if _, err := netlink.LinkByName(link); err != nil {
				t.Fatalf("the child's host link %s: %v", link, err)
			}
			var pids []int
			for _, id := range ids {
				pids = append(pids, pidsIn(id)...)
			}
			if len(pids) == 0 {
				t.Fatal("no process found in the sandboxes' cgroups")
			}
			if mode == "kill" {
				cmd.Process.Signal(syscall.SIGKILL)
			}
			go func() {
				for sc.Scan() {
				}
			}()
			cmd.Wait()
			deadline := time.Now().Add(10 * time.Second)
			for _, pid := range pids {
				for syscall.Kill(pid, 0) == nil {
					if time.Now().After(deadline) {
						t.Fatalf("sandbox process %d outlived its test binary", pid)
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
			if mode == "kill" {
				// What a killed binary leaves on disk goes at the next
				// process's first use of the cache.
				if err := containertest.Sweep(); err != nil {
					t.Fatal(err)
				}
			}
			for start := time.Now(); ; time.Sleep(5 * time.Millisecond) {
				if _, err := netlink.LinkByName(link); err != nil {
					break
				}
				if time.Since(start) > 10*time.Second {
					t.Fatalf("the child's network link %s outlived it", link)
				}
			}
			st, err := containertest.Store()
			if err != nil {
				t.Fatal(err)
			}
			mounts, _ := os.ReadFile("/proc/thread-self/mountinfo")
			for _, id := range ids {
				if _, err := st.Snapshots.Stat(context.Background(), "container-"+id); err == nil || !strings.Contains(err.Error(), snapshot.ErrNotFound.Error()) {
					t.Errorf("root filesystem snapshot of %s left: %v", id, err)
				}
				if dirs := cgroupDirs(id); len(dirs) > 0 {
					t.Errorf("cgroups of %s left: %v", id, dirs)
				}
				if strings.Contains(string(mounts), id) {
					t.Errorf("a mount of %s is left", id)
				}
				if _, err := os.Stat(filepath.Join(cache, "store/mounts/container-"+id)); err == nil {
					t.Errorf("mount point of %s left", id)
				}
			}
			owner := strings.Join(strings.SplitN(strings.TrimPrefix(ids[0], "ct-"), "-", 3)[:2], "-")
			if _, err := os.Stat(filepath.Join(cache, "run", owner)); err == nil {
				t.Errorf("the child's run directory %s is left", owner)
			}
		})
	}
}

// cgroupDirs returns the cgroup directories of a sandbox's container.
func cgroupDirs(id string) []string {
	m, _ := filepath.Glob("/sys/fs/cgroup/*/berth/containertest/" + id)
	v2, _ := filepath.Glob("/sys/fs/cgroup/berth/containertest/" + id)
	return append(m, v2...)
}

// pidsIn returns the processes in a sandbox's cgroups.
func pidsIn(id string) []int {
	var pids []int
	for _, d := range cgroupDirs(id) {
		b, _ := os.ReadFile(filepath.Join(d, "cgroup.procs"))
		for _, f := range strings.Fields(string(b)) {
			var p int
			fmt.Sscan(f, &p)
			pids = append(pids, p)
		}
	}
	return pids
}
