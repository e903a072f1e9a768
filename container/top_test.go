package container

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestTop(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	c := startSleeper(t, &Spec{Process: Process{User: "1000", Args: []string{"sh", "-c", "echo started > /tmp/started; exec sleep 60"}}})
	waitFor(t, func() bool { _, err := os.Stat(fmt.Sprintf("/proc/%d/root/tmp/started", c.Pid())); return err == nil }, "start")
	p, err := c.Exec(ctx, Process{Args: []string{"sleep", "61"}, User: "0"})
	if err != nil {
		t.Fatal(err)
	}
	var procs []ProcessInfo
	waitFor(t, func() bool {
		procs, err = c.Top()
		return err == nil && len(procs) == 2 && procs[0].Command == "sleep" && procs[1].Command == "sleep"
	}, "two sleeps in Top")
	byArgs := map[string]ProcessInfo{}
	for _, pi := range procs {
		byArgs[strings.Join(pi.Args, " ")] = pi
	}
	main, ex := byArgs["sleep 60"], byArgs["sleep 61"]
	if main.PID == 0 || ex.PID == 0 {
		t.Fatalf("Top = %+v", procs)
	}
	if main.PIDInContainer != c.mainPid || ex.PIDInContainer != p.Pid() || main.PPID != c.Pid() || ex.PPID != c.Pid() {
		t.Errorf("pids: main %+v exec %+v (init %d, exec pid %d)", main, ex, c.Pid(), p.Pid())
	}
	if main.UID != 1000 || ex.UID != 0 || !slices.Contains([]string{"S", "R"}, main.State) {
		t.Errorf("uid/state: main %+v exec %+v", main, ex)
	}
	if d := time.Since(main.StartTime); d < -2*time.Second || d > time.Minute || main.RSS == 0 || main.CPUTime < 0 {
		t.Errorf("start %v rss %d cpu %v", main.StartTime, main.RSS, main.CPUTime)
	}
	if err := c.Kill(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Top(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Top of a stopped container = %v", err)
	}
}
