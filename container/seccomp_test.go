package container

import (
	"strings"
	"testing"
)

func TestSeccompDefaultBlocksUnshare(t *testing.T) {
	needRoot(t)
	script := `unshare -U true && echo UNSHARED || echo REFUSED; grep Seccomp: /proc/self/status`
	out, _ := run(t, &Spec{Process: sh(script)})
	if !strings.Contains(out, "REFUSED") || !strings.Contains(out, "Seccomp:\t2") {
		t.Errorf("default profile: %q", out)
	}
	out, _ = run(t, &Spec{Process: sh(script), Seccomp: Seccomp{Unconfined: true}})
	if !strings.Contains(out, "UNSHARED") || !strings.Contains(out, "Seccomp:\t0") {
		t.Errorf("unconfined: %q", out)
	}
}
