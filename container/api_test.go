package container

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
)

// The container keeps its own deep copy of the spec: a caller that
// changes its Spec (slices and maps included) after Create changes
// nothing, and Spec, Update, State and Stats may run at the same time
// (go test -race).
func TestSpecIsCopiedAndSafe(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	out := &syncBuffer{}
	spec := &Spec{
		Rootfs: testRootfs,
		Process: Process{
			Args:   []string{"sh", "-c", "echo $A; ulimit -n; cat /proc/self/status | grep CapBnd; echo hidden; ls /mnt"},
			Env:    []string{"A=original"},
			Stdout: out, Stderr: out,
		},
		Mounts:       []Mount{{Type: Tmpfs, Target: "/mnt", Options: []string{"size=1m"}}},
		Rlimits:      map[string]Rlimit{"nofile": {Soft: 256, Hard: 256}},
		Capabilities: []string{"CAP_KILL"},
		Resources:    cgroup.Resources{PidsLimit: 32},
	}
	c, err := Default.Create(ctx, testID(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(ctx) })

	mutate := func() {
		spec.Process.Args[2] = "echo changed"
		spec.Process.Env[0] = "A=changed"
		spec.Mounts[0].Target = "/changed"
		spec.Mounts[0].Options[0] = "size=2m"
		spec.Rlimits["nofile"] = Rlimit{Soft: 99, Hard: 99}
		spec.Capabilities[0] = "CAP_SYS_ADMIN"
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i, f := range []func(){
		func() {
			s := c.Spec()
			_ = s.Process.Args[2] + s.Process.Env[0] + s.Mounts[0].Options[0]
			_ = s.Rlimits["nofile"]
			_ = s.Resources.PidsLimit
		},
		func() { c.Update(cgroup.Resources{PidsLimit: 40}) },
		func() { _ = c.State() },
		func() { c.Stats() },
	} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				f()
				if i == 0 && n == 0 {
					// Changing what Spec returned changes nothing either.
					s := c.Spec()
					s.Process.Args[0] = "nope"
					s.Rlimits["core"] = Rlimit{}
				}
			}
		}()
	}
	mutate()
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()

	got := c.Spec()
	if got.Process.Args[0] != "sh" || got.Process.Env[0] != "A=original" || got.Mounts[0].Target != "/mnt" ||
		got.Mounts[0].Options[0] != "size=1m" || got.Rlimits["nofile"].Soft != 256 || len(got.Rlimits) != 1 || got.Capabilities[0] != "CAP_KILL" {
		t.Errorf("Spec after the caller changed its own: %+v", got)
	}
	if got.Resources.PidsLimit != 40 {
		t.Errorf("Spec().Resources after Update: %+v", got.Resources)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("original\n256\nCapBnd:\t%016x\nhidden\n", uint64(1<<5))
	if !st.Success() || !strings.HasPrefix(out.String(), want) {
		t.Errorf("the container ran what the caller changed after Create: %v %q, want %q", st, out.String(), want)
	}
}

// Kill and Delete return at once with a done context, leaving the
// container as it was.
func TestKillDeleteHonourContext(t *testing.T) {
	needRoot(t)
	c := startSleeper(t, &Spec{})
	done, cancel := context.WithCancel(context.Background())
	cancel()
	for name, call := range map[string]func(context.Context) error{"Kill": c.Kill, "Delete": c.Delete} {
		start := time.Now()
		err := call(done)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled context = %v, want context.Canceled", name, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("%s with a cancelled context took %v", name, d)
		}
		select {
		case <-c.Done():
			t.Fatalf("%s with a cancelled context stopped the container", name)
		case <-time.After(200 * time.Millisecond):
		}
		if st := c.State(); st != Running {
			t.Errorf("after %s with a cancelled context the container is %s, want running", name, st)
		}
	}
	if err := c.Delete(testCtx(t)); err != nil {
		t.Fatal(err)
	}
}

// Signal on an exec'd process that has ended matches os.ErrProcessDone;
// Resume on a container that is not paused matches ErrNotPaused.
func TestEndedExecAndResumeErrors(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c := startSleeper(t, &Spec{})
	if err := c.Resume(); !errors.Is(err, ErrNotPaused) {
		t.Errorf("Resume of a running container = %v, want ErrNotPaused", err)
	}
	p, err := c.Exec(ctx, Process{Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal of an ended exec process = %v, want os.ErrProcessDone", err)
	}
	if err := c.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Resume(); !errors.Is(err, ErrNotPaused) {
		t.Errorf("Resume of a stopped container = %v, want ErrNotPaused", err)
	}
}

// A Runtime with no Logger discards what init writes to its stderr; it
// does not go to slog.Default().
func TestNilLoggerDiscards(t *testing.T) {
	var got syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&got, nil)))
	defer slog.SetDefault(old)
	rt := &Runtime{}
	l := &initLog{log: rt.logger(), id: "x"}
	l.Write([]byte("init crashed"))
	if got.String() != "" {
		t.Errorf("a nil Logger logged to slog.Default(): %q", got.String())
	}
	var mine syncBuffer
	rt.Logger = slog.New(slog.NewTextHandler(&mine, nil))
	(&initLog{log: rt.logger(), id: "x"}).Write([]byte("init crashed"))
	if !strings.Contains(mine.String(), "init crashed") {
		t.Errorf("the Runtime's Logger got %q", mine.String())
	}
}
