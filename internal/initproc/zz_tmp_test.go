package initproc

import (
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestZZInstall(t *testing.T) {
	if os.Getenv("ZZ_CHILD") == "" {
		for _, f := range []string{"tiny", "x86_64", "default"} {
			for i := 0; i < 5; i++ {
				cmd := exec.Command(os.Args[0], "-test.run=TestZZInstall", "-test.v")
				cmd.Env = append(os.Environ(), "ZZ_CHILD=/tmp/seccomp-"+f+".bin")
				out, _ := cmd.CombinedOutput()
				t.Logf("%s %s", f, out)
			}
		}
		return
	}
	b, _ := os.ReadFile(os.Getenv("ZZ_CHILD"))
	done := make(chan time.Duration)
	go func() {
		runtime.LockOSThread()
		unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
		st := time.Now()
		if err := InstallSeccomp(&Seccomp{Filter: b}); err != nil {
			t.Error(err)
		}
		done <- time.Since(st)
	}()
	t.Logf("install %d insns: %v", len(b)/8, <-done)
}
