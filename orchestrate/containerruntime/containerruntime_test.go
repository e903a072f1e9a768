package containerruntime_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/namespace"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
)

// A sandbox keeps its namespaces under the directory WithSandboxDir
// names, holding the pod's hostname, and RemoveSandbox leaves nothing
// there.
func TestSandboxDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates and bind-mounts namespaces")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "sandboxes")
	rt := containerruntime.New(&container.Runtime{}, containerruntime.WithSandboxDir(dir))
	id, err := rt.CreateSandbox(ctx, orchestrate.SandboxConfig{Name: "web-1234", Hostname: "web"})
	if err != nil {
		t.Fatal(err)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			rt.RemoveSandbox(ctx, id)
		}
	})
	if _, err := rt.CreateSandbox(ctx, orchestrate.SandboxConfig{Name: "web-1234", Hostname: "web"}); !errors.Is(err, orchestrate.ErrExists) {
		t.Errorf("a second sandbox of the name: %v, want ErrExists", err)
	}
	host, err := namespace.Current(namespace.UTS)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	for _, k := range []namespace.Kind{namespace.Net, namespace.IPC, namespace.UTS} {
		ns, err := namespace.Open(filepath.Join(dir, "web-1234", k.String()))
		if err != nil {
			t.Fatalf("the sandbox's %s namespace: %v", k, err)
		}
		if k == namespace.UTS {
			if ns.Equal(host) {
				t.Error("the sandbox's UTS namespace is the host's")
			}
			var name string
			if err := namespace.Do(func() error { name, err = os.Hostname(); return err }, ns); err != nil || name != "web" {
				t.Errorf("hostname in the sandbox: %q, %v; want web", name, err)
			}
		}
		ns.Close()
	}
	if name, _ := os.Hostname(); name == "web" {
		t.Error("the host's hostname changed")
	}
	if err := rt.RemoveSandbox(ctx, id); err != nil {
		t.Fatal(err)
	}
	removed = true
	if _, err := os.Stat(filepath.Join(dir, "web-1234")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the sandbox's directory after RemoveSandbox: %v, want it gone", err)
	}
	if err := rt.RemoveSandbox(ctx, id); err != nil {
		t.Errorf("removing a removed sandbox: %v, want nil", err)
	}
}

func TestDefaultSandboxDir(t *testing.T) {
	if containerruntime.DefaultSandboxDir != "/run/berth/sandboxes" {
		t.Errorf("DefaultSandboxDir = %q, which moves every user's sandboxes", containerruntime.DefaultSandboxDir)
	}
}

// A sandbox whose owner died (its owner file names a process that is
// gone) is removed, namespace mounts and all, by the next Runtime on the
// directory when it makes its first sandbox; a live owner's is kept.
func TestSandboxOfDeadOwnerSwept(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates and bind-mounts namespaces")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "sandboxes")
	a := containerruntime.New(&container.Runtime{}, containerruntime.WithSandboxDir(dir))
	for _, name := range []string{"dead-1", "live-1"} {
		id, err := a.CreateSandbox(ctx, orchestrate.SandboxConfig{Name: name, Hostname: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.RemoveSandbox(ctx, id) })
	}
	// As if dead-1's process had been killed: pid 2^22+1 is above
	// Linux's pid_max (an owner token is "PID-START").
	if err := os.WriteFile(filepath.Join(dir, "dead-1", "owner"), []byte("4194305-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	b := containerruntime.New(&container.Runtime{}, containerruntime.WithSandboxDir(dir))
	id, err := b.CreateSandbox(ctx, orchestrate.SandboxConfig{Name: "other-1", Hostname: "other"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.RemoveSandbox(ctx, id)
	if _, err := os.Stat(filepath.Join(dir, "dead-1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dead owner's sandbox is still there: %v", err)
	}
	mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
	if strings.Contains(string(mi), filepath.Join(dir, "dead-1")+"/") {
		t.Errorf("the dead owner's namespace mounts are still there")
	}
	if _, err := namespace.Open(filepath.Join(dir, "live-1", "net")); err != nil {
		t.Errorf("the live owner's sandbox was touched: %v", err)
	}
}
