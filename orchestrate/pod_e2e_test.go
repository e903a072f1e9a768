package orchestrate_test

import (
	"context"
	"fmt"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// podE2E is a Manager running real containers from a busybox image, with
// the real clock. Pod names in these tests start with "oe-", and their
// cgroups and sandboxes live under names with this binary's PID
// (e2eCgroupParent, e2eSandboxDir), so that the leak check sees only
// what this binary made: other test binaries on the machine may run the
// same tests at the same time.
var (
	e2eCgroupParent = fmt.Sprintf("/berth-oe-%d", os.Getpid())
	e2eSandboxDir   = filepath.Join(containerruntime.DefaultSandboxDir, fmt.Sprintf("oe-%d", os.Getpid()))
)

type podE2E struct {
	t      *testing.T
	ctx    context.Context
	m      *Manager
	crt    *container.Runtime
	rt     Runtime // the Manager's
	before e2eSnapshot
	stop   func() // stops Run
}

func newPodE2E(t *testing.T, opts Options, rtOpts ...containerruntime.Option) *podE2E {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates namespaces, cgroups and mounts")
	}
	if _, err := busybox.Path(); err != nil {
		t.Skipf("needs a static busybox (apt-get install busybox-static): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	store, err := layer.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	rootfs := t.TempDir()
	if err := busybox.Rootfs(rootfs); err != nil {
		t.Fatal(err)
	}
	if _, err := store.ImportDirs(ctx, "busybox", ocispec.ImageConfig{Cmd: []string{"sh"}}, rootfs); err != nil {
		t.Fatal(err)
	}
	crt := &container.Runtime{Images: store, CgroupParent: e2eCgroupParent}
	rtOpts = append([]containerruntime.Option{containerruntime.WithSandboxDir(e2eSandboxDir)}, rtOpts...)
	// One container first: the runtime keeps its sealed init open for
	// good, which is no leak.
	c, err := crt.Create(ctx, fmt.Sprintf("oe-warm-%d", os.Getpid()), &container.Spec{Image: "busybox", Process: container.Process{Args: []string{"true"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	c.Wait(ctx)
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	before := takeE2ESnapshot(t)
	opts.Runtime = containerruntime.New(crt, rtOpts...)
	if opts.Store == nil {
		opts.Store = memstore.New()
	}
	m, err := NewManager(opts)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	e := &podE2E{t: t, ctx: ctx, m: m, crt: crt, rt: opts.Runtime, before: before}
	e.stop = func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(func() {
		if e.stop != nil {
			e.stop()
			m.Close(context.Background())
		}
	})
	return e
}

// closeAndCheck stops the manager, closes it and checks nothing is left.
func (e *podE2E) closeAndCheck() {
	e.t.Helper()
	e.stop()
	e.stop = nil
	stateDir := e.m.StateDir()
	if err := e.m.Close(e.ctx); err != nil {
		e.t.Errorf("Close: %v", err)
	}
	if cs := e.crt.List(); len(cs) > 0 {
		e.t.Errorf("%d containers left in the runtime", len(cs))
	}
	if _, err := os.Stat(stateDir); !os.IsNotExist(err) {
		e.t.Errorf("state dir %s left: %v", stateDir, err)
	}
	checkE2ELeaks(e.t, e.before)
}

// waitFor polls cond until it holds or 30 s pass.
func (e *podE2E) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (e *podE2E) pod(name string) *Pod {
	obj, err := Get[*Pod](e.ctx, e.m, "", name)
	if err != nil {
		e.t.Fatal(err)
	}
	return obj
}

func (e *podE2E) apply(obj Object) {
	e.t.Helper()
	if _, err := e.m.Apply(e.ctx, obj); err != nil {
		e.t.Fatal(err)
	}
}

// volumeDir returns the host directory of a pod's volume.
func (e *podE2E) volumeDir(pod, vol string) string {
	dirs, _ := filepath.Glob(filepath.Join(e.m.StateDir(), "pods", pod+"-*", "volumes", vol))
	if len(dirs) != 1 {
		e.t.Fatalf("volume %s of pod %s: %v", vol, pod, dirs)
	}
	return dirs[0]
}

func shCmd(script string) []string { return []string{"sh", "-c", script} }

func TestE2EPodSharesNetworkIPCAndVolumes(t *testing.T) {
	e := newPodE2E(t, Options{})
	e.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"greeting": "hello", "app.conf": "port=8080"}})
	e.apply(&Secret{ObjectMeta: ObjectMeta{Name: "creds"}, Data: map[string][]byte{"token": []byte("s3cret")}})
	pod := &Pod{ObjectMeta: ObjectMeta{Name: "oe-net"}}
	pod.Spec = PodSpec{
		Hostname: "oe-host",
		Volumes: []Volume{
			{Name: "shared", EmptyDir: &EmptyDirVolume{}},
			{Name: "www", EmptyDir: &EmptyDirVolume{Memory: true}},
			{Name: "cfg", ConfigMap: &ConfigMapVolume{Name: "cfg"}},
			{Name: "creds", Secret: &SecretVolume{Name: "creds"}},
		},
		TerminationGracePeriod: 2 * time.Second,
		Containers: []Container{{
			Name:  "server",
			Image: "busybox",
			Command: shCmd(`echo served > /www/index.html; readlink /proc/self/ns/net > /shared/server-net;
				readlink /proc/self/ns/ipc > /shared/server-ipc; exec httpd -f -p 8080 -h /www`),
			VolumeMounts: []VolumeMount{{Name: "shared", MountPath: "/shared"}, {Name: "www", MountPath: "/www"}},
			ReadinessProbe: &Probe{
				HTTPGet: &HTTPGetAction{Path: "/index.html", Port: 8080},
				Period:  200 * time.Millisecond,
			},
		}, {
			Name:  "client",
			Image: "busybox",
			Env: []EnvVar{
				{Name: "GREETING", ValueFrom: &EnvVarSource{ConfigMapKeyRef: &KeySelector{Name: "cfg", Key: "greeting"}}},
			},
			EnvFrom: []EnvFromSource{{Secret: "creds", Prefix: "S_"}},
			Command: shCmd(`until wget -q -O /shared/fetched http://127.0.0.1:8080/index.html; do sleep 0.1; done
				readlink /proc/self/ns/net > /shared/client-net; readlink /proc/self/ns/ipc > /shared/client-ipc
				echo "$GREETING $S_token $(cat /etc/cfg/app.conf) $(cat /run/creds/token) $(hostname)" > /shared/report
				exec sleep 1000`),
			VolumeMounts: []VolumeMount{
				{Name: "shared", MountPath: "/shared"},
				{Name: "cfg", MountPath: "/etc/cfg"},
				{Name: "creds", MountPath: "/run/creds"},
			},
		}},
	}
	e.apply(pod)
	e.waitFor("pod ready", func() bool { return e.pod("oe-net").Status.Ready })
	shared := e.volumeDir("oe-net", "shared")
	e.waitFor("client report", func() bool {
		b, _ := os.ReadFile(filepath.Join(shared, "report"))
		return len(b) > 0
	})
	read := func(name string) string {
		b, err := os.ReadFile(filepath.Join(shared, name))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := read("fetched"); got != "served" {
		t.Errorf("client fetched %q from the server over 127.0.0.1, want served", got)
	}
	if got, want := read("report"), "hello s3cret port=8080 s3cret oe-host"; got != want {
		t.Errorf("report %q, want %q", got, want)
	}
	if a, b := read("server-net"), read("client-net"); a != b {
		t.Errorf("network namespaces differ: %s, %s", a, b)
	}
	if a, b := read("server-ipc"), read("client-ipc"); a != b {
		t.Errorf("IPC namespaces differ: %s, %s", a, b)
	}
	st := e.pod("oe-net").Status
	if st.Phase != PodRunning || len(st.Containers) != 2 || !st.Containers[0].Ready || st.Containers[1].RestartCount != 0 {
		t.Errorf("status %+v", st)
	}

	// Deleting the pod stops and removes everything of it.
	if err := e.m.Delete(e.ctx, KindPod, "", "oe-net"); err != nil {
		t.Fatal(err)
	}
	e.waitFor("pod torn down", func() bool {
		dirs, _ := filepath.Glob(filepath.Join(e.m.StateDir(), "pods", "oe-net-*"))
		return len(e.crt.List()) == 0 && len(dirs) == 0
	})
	checkE2ELeaks(t, e.before)
	e.closeAndCheck()
}

func TestE2ELivenessProbeRestarts(t *testing.T) {
	e := newPodE2E(t, Options{})
	pod := &Pod{ObjectMeta: ObjectMeta{Name: "oe-live"}}
	pod.Spec = PodSpec{
		TerminationGracePeriod: time.Second,
		Containers: []Container{{
			Name:    "app",
			Image:   "busybox",
			Command: shCmd(`touch /tmp/healthy; sleep 1; rm /tmp/healthy; exec sleep 1000`),
			LivenessProbe: &Probe{
				Exec:             &ExecAction{Command: []string{"test", "-f", "/tmp/healthy"}},
				Period:           300 * time.Millisecond,
				FailureThreshold: 2,
			},
		}},
	}
	e.apply(pod)
	e.waitFor("a restart", func() bool {
		st := e.pod("oe-live").Status
		return len(st.Containers) == 1 && st.Containers[0].RestartCount >= 1 && st.Containers[0].State == ContainerRunning
	})
	for _, reason := range []string{"Unhealthy", "Killing"} {
		if len(e.m.Events(EventFilter{Kind: KindPod, Name: "oe-live", Reason: reason})) == 0 {
			t.Errorf("no %s event", reason)
		}
	}
	e.closeAndCheck()
}

// TestE2EChaos kills random containers of several pods for a while and
// checks that every pod comes back running and ready, and that nothing
// is left after Close.
func TestE2EChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	e := newPodE2E(t, Options{CrashLoop: CrashLoopBackoff{Initial: 200 * time.Millisecond, Max: time.Second}})
	const pods = 4
	for i := range pods {
		p := &Pod{ObjectMeta: ObjectMeta{Name: fmt.Sprintf("oe-chaos-%d", i)}}
		p.Spec = PodSpec{
			TerminationGracePeriod: time.Second,
			Containers: []Container{{
				Name:           "web",
				Image:          "busybox",
				Command:        []string{"httpd", "-f", "-p", "8080", "-h", "/"},
				ReadinessProbe: &Probe{TCPSocket: &TCPSocketAction{Port: 8080}, Period: 200 * time.Millisecond, FailureThreshold: 1},
			}, {
				Name:    "side",
				Image:   "busybox",
				Command: []string{"sleep", "1000"},
			}},
		}
		e.apply(p)
	}
	allReady := func() bool {
		for i := range pods {
			st := e.pod(fmt.Sprintf("oe-chaos-%d", i)).Status
			if st.Phase != PodRunning || !st.Ready {
				return false
			}
			for _, c := range st.Containers {
				if c.State != ContainerRunning {
					return false
				}
			}
		}
		return len(e.crt.List()) == 2*pods
	}
	e.waitFor("all pods ready", allReady)

	rng := rand.New(rand.NewPCG(1, 2))
	kills := 0
	for end := time.Now().Add(6 * time.Second); time.Now().Before(end); {
		cs := e.crt.List()
		slices.SortFunc(cs, func(a, b *container.Container) int { return strings.Compare(a.ID(), b.ID()) })
		running := slices.DeleteFunc(cs, func(c *container.Container) bool { return c.State() != container.Running })
		if len(running) > 0 {
			c := running[rng.IntN(len(running))]
			if err := c.Kill(e.ctx); err == nil {
				kills++
			}
		}
		time.Sleep(time.Duration(100+rng.IntN(300)) * time.Millisecond)
	}
	t.Logf("%d containers killed", kills)
	e.waitFor("all pods ready again", allReady)
	restarts := 0
	for i := range pods {
		for _, c := range e.pod(fmt.Sprintf("oe-chaos-%d", i)).Status.Containers {
			restarts += c.RestartCount
		}
	}
	if restarts < kills {
		t.Errorf("%d restarts counted for %d kills", restarts, kills)
	}
	e.closeAndCheck()
}

// e2eSnapshot is what the e2e tests could leave behind.
type e2eSnapshot struct {
	fds int
}

func takeE2ESnapshot(t *testing.T) e2eSnapshot {
	fds, _ := os.ReadDir("/proc/self/fd")
	return e2eSnapshot{fds: len(fds)}
}

// checkE2ELeaks fails t if a container init process, a cgroup, a
// sandbox, a mount or a file descriptor of the "oe-" pods is left.
func checkE2ELeaks(t *testing.T, before e2eSnapshot) {
	t.Helper()
	var problems []string
	for range 50 { // exits and closes are asynchronous: give them a moment
		problems = nil
		fds, _ := os.ReadDir("/proc/self/fd")
		if len(fds) > before.fds {
			var links []string
			for _, fd := range fds {
				l, _ := os.Readlink("/proc/self/fd/" + fd.Name())
				links = append(links, l)
			}
			problems = append(problems, fmt.Sprintf("file descriptors: %d before, %d after: %v", before.fds, len(fds), links))
		}
		for _, pat := range []string{
			"/sys/fs/cgroup/*" + e2eCgroupParent + "/*", "/sys/fs/cgroup" + e2eCgroupParent + "/*",
			filepath.Join(e2eSandboxDir, "*"),
		} {
			left, _ := filepath.Glob(pat)
			for _, l := range left {
				if fi, err := os.Stat(l); err == nil && fi.IsDir() { // not a cgroup's control files
					problems = append(problems, "left: "+l)
				}
			}
		}
		mi, _ := os.ReadFile("/proc/thread-self/mountinfo")
		for _, l := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(l); len(f) > 4 && (strings.HasPrefix(f[4], e2eSandboxDir+"/") || strings.Contains(f[4], "berth-orchestrate-")) {
				problems = append(problems, "mount left: "+f[4])
			}
		}
		procs, _ := filepath.Glob("/proc/[0-9]*/stat")
		for _, p := range procs {
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			s := string(b)
			if i := strings.LastIndexByte(s, ')'); i > 0 {
				f := strings.Fields(s[i+1:])
				if len(f) > 1 && f[1] == fmt.Sprint(os.Getpid()) {
					if cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(p), "cmdline")); strings.HasPrefix(string(cmd), "berth-init") {
						problems = append(problems, "container init still running: "+filepath.Dir(p))
					}
				}
			}
		}
		if len(problems) == 0 {
			// The parents are empty now: remove them too.
			parents, _ := filepath.Glob("/sys/fs/cgroup/*" + e2eCgroupParent)
			if v2, _ := filepath.Glob("/sys/fs/cgroup" + e2eCgroupParent); len(v2) > 0 {
				parents = append(parents, v2...)
			}
			for _, p := range parents {
				if err := os.Remove(p); err != nil {
					t.Errorf("cgroup parent: %v", err)
				}
			}
			os.Remove(e2eSandboxDir)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, p := range problems {
		t.Error(p)
	}
}
