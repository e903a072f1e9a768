package container

import "testing"

func TestSmoke(t *testing.T) {
	needRoot(t)
	out, st := run(t, &Spec{Process: sh("echo hello; echo pid=$$; hostname; id")})
	t.Logf("out=%q st=%v", out, st)
}
