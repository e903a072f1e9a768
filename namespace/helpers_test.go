package namespace

import (
	"bufio"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// requireRoot skips t unless it runs as root, which the namespace system
// calls these tests make need (CAP_SYS_ADMIN and friends).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creating, joining and bind-mounting namespaces needs CAP_SYS_ADMIN")
	}
}

// startSleeper starts /bin/sleep in new namespaces of the given kinds and
// kills and reaps it when the test ends (or when the test binary dies,
// through Pdeathsig).
func startSleeper(t *testing.T, kinds ...Kind) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "60")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags: CloneFlags(kinds...),
		Pdeathsig:  syscall.SIGKILL,
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start /bin/sleep in new %v namespaces: %v", kinds, err)
	}
	t.Cleanup(func() { stopSleeper(cmd) })
	return cmd
}

// stopSleeper kills and reaps cmd; calling it twice is harmless.
func stopSleeper(cmd *exec.Cmd) {
	if cmd.ProcessState != nil {
		return
	}
	cmd.Process.Kill()
	cmd.Wait()
}

// mountPoints returns the mount points in this mount namespace.
func mountPoints(t *testing.T) []string {
	t.Helper()
	f, err := os.Open("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mps []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fields := strings.Fields(sc.Text()); len(fields) > 4 {
			mps = append(mps, fields[4])
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return mps
}

// checkNoMountsLeft makes a directory for the test to mount in and, when
// the test ends, fails it if /proc/thread-self/mountinfo then lists any mount
// under that directory that was not there before (other packages' tests
// may mount elsewhere at the same time), or if anything is left in it.
func checkNoMountsLeft(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	before := map[string]bool{}
	for _, mp := range mountPoints(t) {
		before[mp] = true
	}
	t.Cleanup(func() {
		for _, mp := range mountPoints(t) {
			if !before[mp] && (mp == dir || strings.HasPrefix(mp, dir+"/")) {
				t.Errorf("mount left behind at %s", mp)
				syscall.Unmount(mp, syscall.MNT_DETACH)
			}
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Error(err)
		}
		for _, e := range ents {
			t.Errorf("file left behind: %s/%s", dir, e.Name())
		}
	})
	return dir
}
