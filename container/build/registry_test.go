package build

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/regtest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/registry"
)

// FROM pulls a base image through Builder.Registry; the result is pushed
// with registry, pulled into another store and run there.
func TestRegistryPullAndPush(t *testing.T) {
	e := newEnv(t)
	reg := regtest.Start(t, regtest.Options{})
	client := registry.New(registry.WithPlainHTTP(reg.Host))
	base := reg.Host + "/base/busybox:1"
	if _, err := client.Push(e.ctx, base, e.store, busyboxName); err != nil {
		t.Fatal(err)
	}

	// A store without the base image: FROM pulls it.
	st, err := layer.Open(filepath.Join(e.root, "store2"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	rt := &container.Runtime{Images: st}
	b := &Builder{Store: st, Runtime: rt, Registry: client}
	dir := e.dir(map[string]string{"msg": "pushed\n"})
	var out syncBuf
	_, err = b.Build(e.ctx, Options{ContextDir: dir, DockerfileContent: []byte("FROM " + base + "\nCOPY msg /msg\nCMD [\"cat\", \"/msg\"]\n"), Tags: []string{reg.Host + "/app/built:1"}, Output: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "Pulling "+base) {
		t.Errorf("no pull in the output:\n%s", out.String())
	}
	if _, err := client.Push(e.ctx, reg.Host+"/app/built:1", st, reg.Host+"/app/built:1"); err != nil {
		t.Fatal(err)
	}
	// Pulled into the first store, it runs.
	if _, err := client.Pull(e.ctx, reg.Host+"/app/built:1", e.store); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.run(reg.Host + "/app/built:1"); got != "pushed\n" {
		t.Errorf("run %q", got)
	}
	// A missing base image in the registry is ErrImageNotFound.
	_, err = b.Build(e.ctx, Options{ContextDir: dir, DockerfileContent: []byte("FROM " + reg.Host + "/nope:1\n")})
	if err == nil || !strings.Contains(err.Error(), "image not found") {
		t.Errorf("missing base: %v", err)
	}
}

// RUN has no network but loopback by default, the host's on request, and
// the build's resource limits.
func TestRunNetworkAndLimits(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(nil)
	df := "FROM BUSYBOX\nRUN grep -c : /proc/net/dev > /ifaces\nCMD [\"cat\", \"/ifaces\"]\n"
	e.mustBuild(dir, df, Options{Tags: []string{"example.com/net:none"}, NoCache: true})
	if got, _ := e.run("example.com/net:none"); got != "1\n" {
		t.Errorf("default network: %q, want 1 interface (lo)", got)
	}
	e.mustBuild(dir, df, Options{Tags: []string{"example.com/net:host"}, NoCache: true, Network: NetworkHost})
	if got, _ := e.run("example.com/net:host"); got == "1\n" {
		t.Errorf("host network: %q, want the host's interfaces", got)
	}
	// 16 processes at once do not fit in a pids limit of 8.
	forks := "FROM BUSYBOX\nRUN for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16; do sleep 2 & done; wait\n"
	e.mustBuild(dir, forks, Options{NoCache: true})
	_, out, err := e.build(dir, forks, Options{NoCache: true, Resources: cgroup.Resources{PidsLimit: 8}})
	t.Logf("under the pids limit: %v", err)
	if !errors.Is(err, ErrRunFailed) {
		t.Errorf("16 processes under a pids limit of 8: %v\n%s", err, out)
	}
	e.checkClean()
}
