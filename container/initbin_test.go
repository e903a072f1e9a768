package container

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// The embedded init must be what internal/initproc builds to now: after
// changing it, run `go generate ./container`.
func TestEmbeddedInitUpToDate(t *testing.T) {
	if len(embeddedInit) == 0 {
		t.Skipf("no embedded init for %s", runtime.GOARCH)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to rebuild the init with")
	}
	// Builds are reproducible only with the same toolchain.
	want, _ := os.ReadFile("initbin/GOVERSION")
	have, err := exec.Command(gobin, "env", "GOVERSION").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(string(want)) != strings.TrimSpace(string(have)) {
		t.Skipf("the embedded init was built with %s, this is %s", bytes.TrimSpace(want), bytes.TrimSpace(have))
	}
	out := filepath.Join(t.TempDir(), "berth-init")
	cmd := exec.Command(gobin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "../internal/initproc/cmd/berth-init")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build berth-init: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, embeddedInit) {
		t.Fatalf("container/initbin/berth-init-linux-%s is stale (%d bytes embedded, %d built): run `go generate ./container`", runtime.GOARCH, len(embeddedInit), len(fresh))
	}
}
