package filestore_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/filestore"
	"github.com/berthlabs/berth/orchestrate/internal/fixture"
)

// podNames returns the names of the stored pods not being deleted.
func podNames(t *testing.T, s orchestrate.Store) []string {
	t.Helper()
	var out []string
	for _, p := range fixture.LivePods(t, s) {
		out = append(out, p.Name)
	}
	return out
}

// runManager runs a Manager on the store in dir with a fake runtime
// (nothing running: the containers of a Manager before it died with
// it) until the test ends.
func runManager(t *testing.T, s orchestrate.Store, stateDir string) (*orchestrate.Manager, *fakeruntime.Runtime, func()) {
	t.Helper()
	rt := fakeruntime.New(nil, "web:v1")
	m, err := orchestrate.NewManager(orchestrate.Options{Store: s, Runtime: rt, StateDir: stateDir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stop := func() {
		cancel()
		<-done
		cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer ccancel()
		if err := m.Close(cctx); err != nil {
			t.Error(err)
		}
	}
	return m, rt, stop
}

const childEnv = "BERTH_FILESTORE_CHILD"

// TestMain runs, in a child process the restart test starts, a Manager
// that applies a Deployment and waits to be killed.
func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		os.Exit(child(dir))
	}
	os.Exit(m.Run())
}

func child(dir string) int {
	s, err := filestore.Open(dir + "/store")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	rt := fakeruntime.New(nil, "web:v1")
	m, err := orchestrate.NewManager(orchestrate.Options{Store: s, Runtime: rt, StateDir: dir + "/state"})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	ctx := context.Background()
	go m.Run(ctx)
	if _, err := m.Apply(ctx, fixture.Deployment("web", 3)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	for rt.RunningImages("web:v1") < 3 {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("running")
	select {} // until killed
}

// A Manager on a filestore is killed (-9) with a Deployment's pods
// running; a new one on the same directory finds the Deployment, its
// ReplicaSet and its three pods (the same ones: no duplicate) and runs
// their containers again.
func TestManagerRestartConverges(t *testing.T) {
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	n, _ := out.Read(buf)
	if string(buf[:n]) != "running\n" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("the child said %q", buf[:n])
	}
	cmd.Process.Kill()
	cmd.Wait()

	s := open(t, dir+"/store")
	before := podNames(t, s)
	if len(before) != 3 {
		t.Fatalf("pods stored by the killed Manager: %v, want 3", before)
	}
	m, rt, stop := runManager(t, s, dir+"/state")
	defer stop()
	fixture.WaitFor(t, "3 containers running again", func() bool { return rt.RunningImages("web:v1") == 3 })
	time.Sleep(500 * time.Millisecond) // room for a wrong extra pod
	after := podNames(t, s)
	if !slices.Equal(before, after) {
		t.Errorf("pods after the restart %v, want the same as before, %v", after, before)
	}
	rss, _ := orchestrate.List[*orchestrate.ReplicaSet](context.Background(), m, "", nil)
	if len(rss) != 1 {
		t.Errorf("%d ReplicaSets after the restart, want 1", len(rss))
	}
	if n := rt.RunningImages("web:v1"); n != 3 {
		t.Errorf("%d containers running after the restart, want 3", n)
	}
}
