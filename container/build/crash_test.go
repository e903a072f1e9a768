package build

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

const crashChildEnv = "BERTH_BUILD_CRASH_STORE"

// A build whose process is killed while a RUN step runs leaves what the
// next Open of the store (or Sweep) cleans up.
func TestKilledBuild(t *testing.T) {
	if root := os.Getenv(crashChildEnv); root != "" {
		st, err := layer.Open(root)
		if err != nil {
			t.Fatal(err)
		}
		b := &Builder{Store: st}
		b.Build(context.Background(), Options{DockerfileContent: []byte("FROM " + busyboxName + "\nRUN echo started in $(hostname); sleep 60\n"), Output: os.Stdout})
		t.Fatal("the build was not killed")
	}
	needRoot(t)
	ctx := context.Background()
	root := filepath.Join(t.TempDir(), "store")
	st, err := layer.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ImportDirs(ctx, busyboxName, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, busyboxRoot); err != nil {
		t.Fatal(err)
	}
	st.Close()

	var out syncBuf
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledBuild$", "-test.count=1")
	// The child's own temporary directories, which it cannot remove
	// when killed, go where this test removes them.
	cmd.Env = append(os.Environ(), crashChildEnv+"="+root, "TMPDIR="+t.TempDir())
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(out.String(), "started") {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the RUN step did not start:\n%s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()

	st, err = layer.Open(root)
	if err != nil {
		t.Fatalf("open after the kill: %v", err)
	}
	defer st.Close()
	// The next build sweeps what the killed one left.
	b := &Builder{Store: st}
	if _, err := b.Build(ctx, Options{DockerfileContent: []byte("FROM " + busyboxName + "\nRUN true\n")}); err != nil {
		t.Fatal(err)
	}
	cgs, _ := filepath.Glob("/sys/fs/cgroup/*/berth/build-*")
	cgs2, _ := filepath.Glob("/sys/fs/cgroup/berth/build-*")
	_, host, _ := strings.Cut(strings.TrimSpace(out.String()), "started in ")
	host, _, _ = strings.Cut(host, "\n")
	for _, cg := range append(cgs, cgs2...) {
		if host != "" && strings.HasPrefix(filepath.Base(cg), host) {
			t.Errorf("left behind: cgroup %s", cg)
		}
	}
	if host == "" {
		t.Errorf("no host name in the killed build's output:\n%s", out.String())
	}
	st.Snapshots.Walk(ctx, func(i snapshot.Info) error {
		if i.Kind != snapshot.KindCommitted {
			t.Errorf("left behind: %s snapshot %s", i.Kind, i.Name)
		}
		return nil
	})
	mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
	if bytes.Contains(mi, []byte(root)) {
		t.Errorf("left behind: mounts under %s", root)
	}
	ents, _ := os.ReadDir(filepath.Join(root, "mounts"))
	for _, e := range ents {
		t.Errorf("left behind: mount point %s", e.Name())
	}
}
