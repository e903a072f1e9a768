package orchestrate_test

import (
	"context"
	"errors"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/fakeruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate/reconcile"
	"golang.org/x/sys/unix"
)

// podTest is a Manager on a fakeRuntime and a FakeClock.
type podTest struct {
	t     *testing.T
	ctx   context.Context
	m     *Manager
	rt    *fakeruntime.Runtime
	clock *reconcile.FakeClock
}

var testEpoch = time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)

func newPodTest(t *testing.T) *podTest {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	clock := reconcile.NewFakeClock(testEpoch)
	rt := fakeruntime.New(clock, "busybox")
	m, err := NewManager(Options{Store: memstore.New(), Runtime: rt, Clock: clock, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		rt.ReleaseStops() // a test that failed while holding them
		m.Close(context.Background())
	})
	return &podTest{t: t, ctx: ctx, m: m, rt: rt, clock: clock}
}

// settle runs the controllers until nothing is due.
func (pt *podTest) settle() {
	pt.t.Helper()
	if err := pt.m.RunUntilIdle(pt.ctx); err != nil {
		pt.t.Fatal(err)
	}
}

// step moves the clock and settles.
func (pt *podTest) step(d time.Duration) {
	pt.t.Helper()
	pt.clock.Step(d)
	pt.settle()
}

func (pt *podTest) apply(obj Object) Object {
	pt.t.Helper()
	out, err := pt.m.Apply(pt.ctx, obj)
	if err != nil {
		pt.t.Fatalf("Apply %s %s: %v", obj.Kind(), obj.Meta().Name, err)
	}
	pt.settle()
	return out
}

func (pt *podTest) pod(name string) *Pod {
	pt.t.Helper()
	obj, err := Get[*Pod](pt.ctx, pt.m, "", name)
	if err != nil {
		pt.t.Fatal(err)
	}
	return obj
}

// mustRun returns the running instance of a container, failing if none.
func (pt *podTest) mustRun(pod, ctr string) *fakeruntime.Container {
	pt.t.Helper()
	c := pt.rt.Running(pod, ctr)
	if c == nil {
		pt.t.Fatalf("container %s of pod %s is not running; status %+v", ctr, pod, pt.pod(pod).Status)
	}
	return c
}

func (pt *podTest) events(name, reason string) []Event {
	return pt.m.Events(EventFilter{Kind: KindPod, Name: name, Reason: reason})
}

func simplePod(name string, policy RestartPolicy, ctrs ...string) *Pod {
	p := &Pod{ObjectMeta: ObjectMeta{Name: name, Labels: map[string]string{"app": name}}}
	p.Spec.RestartPolicy = policy
	for _, c := range ctrs {
		p.Spec.Containers = append(p.Spec.Containers, Container{Name: c, Image: "busybox", Command: []string{"sleep", "1000"}})
	}
	return p
}

func TestPodStartStopTogether(t *testing.T) {
	pt := newPodTest(t)
	p := simplePod("web", "", "app", "sidecar")
	p.Spec.Volumes = []Volume{{Name: "shared", EmptyDir: &EmptyDirVolume{}}}
	p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "shared", MountPath: "/data"}}
	p.Spec.Containers[1].VolumeMounts = []VolumeMount{{Name: "shared", MountPath: "/in", ReadOnly: true}}
	pt.apply(p)

	app, side := pt.mustRun("web", "app"), pt.mustRun("web", "sidecar")
	if app.Sandbox != side.Sandbox {
		t.Errorf("containers in different sandboxes: %s, %s", app.Sandbox, side.Sandbox)
	}
	if sb := pt.rt.Sandbox(app.Sandbox); sb.Config.Hostname != "web" {
		t.Errorf("hostname %q, want web", sb.Config.Hostname)
	}
	if len(app.Config.Mounts) != 1 || len(side.Config.Mounts) != 1 || app.Config.Mounts[0].HostPath != side.Config.Mounts[0].HostPath {
		t.Fatalf("emptyDir not shared: %+v, %+v", app.Config.Mounts, side.Config.Mounts)
	}
	if !side.Config.Mounts[0].ReadOnly || app.Config.Mounts[0].ReadOnly {
		t.Errorf("read-only flags wrong: %+v, %+v", app.Config.Mounts, side.Config.Mounts)
	}
	volDir := app.Config.Mounts[0].HostPath
	if fi, err := os.Stat(volDir); err != nil || !fi.IsDir() {
		t.Fatalf("emptyDir %s: %v", volDir, err)
	}
	got := pt.pod("web")
	if got.Status.Phase != PodRunning || !got.Status.Ready || got.Status.ReadySince != testEpoch {
		t.Errorf("status %+v, want Running, ready since the start", got.Status)
	}
	if len(got.Status.Containers) != 2 || got.Status.Containers[0].State != ContainerRunning || got.Status.Containers[0].ID != app.ID {
		t.Errorf("container statuses %+v", got.Status.Containers)
	}
	if n := len(pt.events("web", "Started")); n != 2 {
		t.Errorf("%d Started events, want 2", n)
	}

	if err := pt.m.Delete(pt.ctx, KindPod, "", "web"); err != nil {
		t.Fatal(err)
	}
	pt.settle()
	checkNoFakeLeaks(t, pt.rt)
	if _, err := os.Stat(volDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume dir left: %v", err)
	}
	if n := len(pt.events("web", "Killing")); n != 2 {
		t.Errorf("%d Killing events, want 2", n)
	}
	stops := pt.rt.Calls("stop ")
	if len(stops) != 2 {
		t.Errorf("stops %v, want both containers stopped", stops)
	}
}

func TestPodRestartPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy    RestartPolicy
		code      int
		restarted bool
		phase     PodPhase
	}{
		{RestartPolicyAlways, 0, true, PodRunning},
		{RestartPolicyAlways, 1, true, PodRunning},
		{RestartPolicyOnFailure, 0, false, PodSucceeded},
		{RestartPolicyOnFailure, 2, true, PodRunning},
		{RestartPolicyNever, 0, false, PodSucceeded},
		{RestartPolicyNever, 3, false, PodFailed},
	} {
		t.Run(string(tc.policy)+"-"+string(rune('0'+tc.code)), func(t *testing.T) {
			pt := newPodTest(t)
			pt.apply(simplePod("p", tc.policy, "c"))
			pt.rt.Exit(pt.mustRun("p", "c").ID, tc.code)
			pt.settle()
			if got := pt.rt.Running("p", "c") != nil; got != tc.restarted {
				t.Errorf("restarted = %v, want %v", got, tc.restarted)
			}
			st := pt.pod("p").Status
			if st.Phase != tc.phase {
				t.Errorf("phase %s, want %s", st.Phase, tc.phase)
			}
			cs := st.Containers[0]
			if tc.restarted {
				if cs.RestartCount != 1 || cs.State != ContainerRunning {
					t.Errorf("container status %+v, want running after 1 restart", cs)
				}
				return
			}
			wantReason := ReasonCompleted
			if tc.code != 0 {
				wantReason = ReasonError
			}
			if cs.State != ContainerTerminated || cs.ExitCode != tc.code || cs.Reason != wantReason || st.Ready {
				t.Errorf("container status %+v, want terminated %s with code %d", cs, wantReason, tc.code)
			}
			checkNoFakeLeaks(t, pt.rt) // a finished pod frees its sandbox at once
		})
	}
}

func TestPodOnFailureKeepsOthersRunning(t *testing.T) {
	pt := newPodTest(t)
	pt.apply(simplePod("p", RestartPolicyNever, "a", "b"))
	pt.rt.Exit(pt.mustRun("p", "a").ID, 0)
	pt.settle()
	st := pt.pod("p").Status
	if st.Phase != PodRunning || st.Ready {
		t.Errorf("phase %s ready %v, want Running and not ready while b runs", st.Phase, st.Ready)
	}
	pt.rt.Exit(pt.mustRun("p", "b").ID, 1)
	pt.settle()
	if st := pt.pod("p").Status; st.Phase != PodFailed {
		t.Errorf("phase %s, want Failed", st.Phase)
	}
}

func TestCrashLoopBackoff(t *testing.T) {
	pt := newPodTest(t)
	pt.apply(simplePod("p", RestartPolicyAlways, "c"))
	crash := func() {
		t.Helper()
		pt.rt.Exit(pt.mustRun("p", "c").ID, 1)
		pt.settle()
	}
	crash()
	pt.mustRun("p", "c") // the first restart is immediate
	for i, want := range []time.Duration{10, 20, 40, 80, 160, 300, 300} {
		want *= time.Second
		crash()
		if pt.rt.Running("p", "c") != nil {
			t.Fatalf("crash %d: restarted at once, want a back-off of %v", i+2, want)
		}
		cs := pt.pod("p").Status.Containers[0]
		if cs.State != ContainerWaiting || cs.Reason != ReasonCrashLoop || pt.pod("p").Status.Phase != PodRunning {
			t.Errorf("crash %d: status %+v, want Waiting CrashLoopBackOff", i+2, cs)
		}
		pt.step(want - time.Millisecond)
		if pt.rt.Running("p", "c") != nil {
			t.Fatalf("crash %d: restarted before %v", i+2, want)
		}
		pt.step(time.Millisecond)
		pt.mustRun("p", "c")
	}
	if got := pt.pod("p").Status.Containers[0].RestartCount; got != 8 {
		t.Errorf("restart count %d, want 8", got)
	}
	if n := len(pt.events("p", "BackOff")); n != 7 {
		t.Errorf("%d BackOff events, want 7", n)
	}
	// 10 minutes of running resets the backoff: the next restart is
	// immediate again, and the one after waits 10 s.
	pt.step(10 * time.Minute)
	crash()
	pt.mustRun("p", "c")
	crash()
	pt.step(10*time.Second - time.Millisecond)
	if pt.rt.Running("p", "c") != nil {
		t.Fatal("restarted before 10s after the reset")
	}
	pt.step(time.Millisecond)
	pt.mustRun("p", "c")
}

func TestLivenessProbeRestarts(t *testing.T) {
	pt := newPodTest(t)
	var healthy atomic.Bool
	healthy.Store(true)
	var probes atomic.Int32
	pt.rt.SetExec(func(pod, ctr string, cmd []string) int {
		probes.Add(1)
		if healthy.Load() {
			return 0
		}
		return 1
	})
	p := simplePod("p", RestartPolicyAlways, "c")
	p.Spec.Containers[0].LivenessProbe = &Probe{
		Exec: &ExecAction{Command: []string{"cat", "/tmp/healthy"}}, InitialDelay: 5 * time.Second,
		Period: 10 * time.Second, FailureThreshold: 3,
	}
	pt.apply(p)
	first := pt.mustRun("p", "c")
	pt.step(4 * time.Second)
	if probes.Load() != 0 {
		t.Fatal("probed before the initial delay")
	}
	pt.step(time.Second)
	if probes.Load() != 1 {
		t.Fatalf("%d probes after the initial delay, want 1", probes.Load())
	}
	healthy.Store(false)
	pt.step(10 * time.Second)
	pt.step(10 * time.Second)
	if c := pt.mustRun("p", "c"); c.ID != first.ID {
		t.Fatal("restarted after 2 failures, threshold is 3")
	}
	pt.step(10 * time.Second)
	if c := pt.mustRun("p", "c"); c.ID == first.ID {
		t.Fatal("not restarted after 3 failures")
	}
	st := pt.pod("p").Status.Containers[0]
	if st.RestartCount != 1 {
		t.Errorf("restart count %d, want 1", st.RestartCount)
	}
	if n := len(pt.events("p", "Unhealthy")); n != 3 {
		t.Errorf("%d Unhealthy events, want 3", n)
	}
	if ev := pt.events("p", "Killing"); len(ev) != 1 || !strings.Contains(ev[0].Message, "liveness") {
		t.Errorf("Killing events %+v, want one for the liveness probe", ev)
	}
	// The new instance is probed from its own start.
	healthy.Store(true)
	n := probes.Load()
	pt.step(5 * time.Second)
	if probes.Load() != n+1 {
		t.Errorf("new instance not probed after its initial delay")
	}
}

func TestReadinessProbe(t *testing.T) {
	pt := newPodTest(t)
	var status atomic.Int32
	status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ready" || r.Header.Get("X-Probe") != "yes" {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()
	pt.rt.SetDial(func(ctx context.Context, pod, address string) (net.Conn, error) {
		if address != "127.0.0.1:8080" {
			return nil, errors.New("wrong address " + address)
		}
		var d net.Dialer
		return d.DialContext(ctx, "tcp", srv.Listener.Addr().String())
	})
	p := simplePod("p", RestartPolicyAlways, "c")
	p.Spec.Containers[0].ReadinessProbe = &Probe{
		HTTPGet: &HTTPGetAction{Path: "/ready", Port: 8080, Headers: map[string]string{"X-Probe": "yes"}},
		Period:  time.Second, SuccessThreshold: 2, FailureThreshold: 2,
	}
	pt.apply(p)
	if pt.pod("p").Status.Ready {
		t.Fatal("ready while the probe fails")
	}
	status.Store(http.StatusOK)
	pt.step(time.Second)
	if pt.pod("p").Status.Ready {
		t.Fatal("ready after 1 success, threshold is 2")
	}
	pt.step(time.Second)
	st := pt.pod("p").Status
	if !st.Ready || !st.Containers[0].Ready || !st.ReadySince.Equal(testEpoch.Add(2*time.Second)) {
		t.Fatalf("status %+v, want ready since 2s", st)
	}
	status.Store(http.StatusInternalServerError)
	pt.step(time.Second)
	if !pt.pod("p").Status.Ready {
		t.Fatal("not ready after 1 failure, threshold is 2")
	}
	pt.step(time.Second)
	if st := pt.pod("p").Status; st.Ready || !st.ReadySince.IsZero() {
		t.Fatalf("status %+v, want not ready", st)
	}
	if pt.rt.Started("p", "c") != 1 {
		t.Error("a failing readiness probe restarted the container")
	}
}

func TestStartupProbeHoldsOthers(t *testing.T) {
	pt := newPodTest(t)
	var startupOK atomic.Bool
	var liveness atomic.Int32
	pt.rt.SetExec(func(pod, ctr string, cmd []string) int {
		switch cmd[0] {
		case "startup":
			if startupOK.Load() {
				return 0
			}
			return 1
		case "live":
			liveness.Add(1)
		}
		return 0
	})
	p := simplePod("p", RestartPolicyAlways, "c")
	p.Spec.Containers[0].StartupProbe = &Probe{Exec: &ExecAction{Command: []string{"startup"}}, Period: time.Second, FailureThreshold: 5}
	p.Spec.Containers[0].LivenessProbe = &Probe{Exec: &ExecAction{Command: []string{"live"}}, Period: time.Second}
	pt.apply(p)
	first := pt.mustRun("p", "c")
	for range 3 {
		pt.step(time.Second)
	}
	st := pt.pod("p").Status.Containers[0]
	if liveness.Load() != 0 || st.Started || st.Ready {
		t.Fatalf("liveness ran %d times, status %+v: the startup probe has not passed", liveness.Load(), st)
	}
	startupOK.Store(true)
	pt.step(time.Second)
	st = pt.pod("p").Status.Containers[0]
	if liveness.Load() != 1 || !st.Started || !st.Ready {
		t.Fatalf("after startup: liveness ran %d times, status %+v", liveness.Load(), st)
	}
	if pt.mustRun("p", "c").ID != first.ID {
		t.Fatal("restarted")
	}

	// A startup probe that never passes kills the container after
	// FailureThreshold tries.
	pt2 := newPodTest(t)
	pt2.rt.SetExec(func(pod, ctr string, cmd []string) int { return 1 })
	pt2.apply(p)
	first = pt2.mustRun("p", "c") // probed at once: failure 1
	for range 3 {
		pt2.step(time.Second)
	}
	if pt2.mustRun("p", "c").ID != first.ID {
		t.Fatal("killed before 5 failures")
	}
	pt2.step(time.Second)
	if pt2.mustRun("p", "c").ID == first.ID {
		t.Fatal("not killed after 5 startup failures")
	}
	if ev := pt2.events("p", "Killing"); len(ev) != 1 || !strings.Contains(ev[0].Message, "startup") {
		t.Errorf("Killing events %+v", ev)
	}
}

func TestTCPProbe(t *testing.T) {
	pt := newPodTest(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	var up atomic.Bool
	pt.rt.SetDial(func(ctx context.Context, pod, address string) (net.Conn, error) {
		if !up.Load() {
			return nil, errors.New("connection refused")
		}
		return net.Dial("tcp", ln.Addr().String())
	})
	p := simplePod("p", RestartPolicyAlways, "c")
	p.Spec.Containers[0].ReadinessProbe = &Probe{TCPSocket: &TCPSocketAction{Port: 5432}, Period: time.Second, FailureThreshold: 1}
	pt.apply(p)
	if pt.pod("p").Status.Ready {
		t.Fatal("ready before the port is open")
	}
	up.Store(true)
	pt.step(time.Second)
	if !pt.pod("p").Status.Ready {
		t.Fatal("not ready with the port open")
	}
}

func TestConfigMapAndSecret(t *testing.T) {
	pt := newPodTest(t)
	p := simplePod("p", RestartPolicyAlways, "c")
	c := &p.Spec.Containers[0]
	c.EnvFrom = []EnvFromSource{{ConfigMap: "cfg", Prefix: "CFG_"}}
	c.Env = []EnvVar{
		{Name: "PLAIN", Value: "x"},
		{Name: "CFG_mode", Value: "overridden"},
		{Name: "PASSWORD", ValueFrom: &EnvVarSource{SecretKeyRef: &KeySelector{Name: "creds", Key: "password"}}},
		{Name: "MISSING", ValueFrom: &EnvVarSource{ConfigMapKeyRef: &KeySelector{Name: "cfg", Key: "nope", Optional: true}}},
	}
	p.Spec.Volumes = []Volume{
		{Name: "conf", ConfigMap: &ConfigMapVolume{Name: "cfg", Items: []KeyToPath{{Key: "app.conf", Path: "etc/app.conf"}}}},
		{Name: "creds", Secret: &SecretVolume{Name: "creds"}},
	}
	c.VolumeMounts = []VolumeMount{{Name: "conf", MountPath: "/etc/app"}, {Name: "creds", MountPath: "/run/secrets"}}
	pt.apply(p)

	// The ConfigMap is missing: the pod waits and says why.
	if pt.rt.Running("p", "c") != nil {
		t.Fatal("started without its ConfigMap")
	}
	if st := pt.pod("p").Status; st.Phase != PodPending || st.Reason != ReasonFailedMount {
		t.Errorf("status %+v, want Pending FailedMount", st)
	}
	pt.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"mode": "fast", "app.conf": "listen 80\n"}})
	if pt.rt.Running("p", "c") != nil {
		t.Fatal("started without its Secret")
	}
	pt.apply(&Secret{ObjectMeta: ObjectMeta{Name: "creds"}, Data: map[string][]byte{"password": []byte("hunter2")}})
	run := pt.mustRun("p", "c")

	want := []string{"CFG_app.conf=listen 80\n", "CFG_mode=overridden", "PLAIN=x", "PASSWORD=hunter2"}
	if !slices.Equal(run.Config.Env, want) {
		t.Errorf("env %q, want %q", run.Config.Env, want)
	}
	mounts := map[string]ContainerMount{}
	for _, m := range run.Config.Mounts {
		mounts[m.ContainerPath] = m
	}
	conf, creds := mounts["/etc/app"], mounts["/run/secrets"]
	if !conf.ReadOnly || !creds.ReadOnly {
		t.Errorf("config volumes not read-only: %+v", run.Config.Mounts)
	}
	for _, f := range []struct {
		path, content string
		mode          os.FileMode
	}{
		{filepath.Join(conf.HostPath, "etc/app.conf"), "listen 80\n", 0o644},
		{filepath.Join(creds.HostPath, "password"), "hunter2", 0o400},
	} {
		b, err := os.ReadFile(f.path)
		fi, serr := os.Stat(f.path)
		if err != nil || serr != nil || string(b) != f.content || fi.Mode().Perm() != f.mode {
			t.Errorf("%s: %q %v (%v), want %q %v", f.path, b, fi.Mode(), err, f.content, f.mode)
		}
	}
	if _, err := os.Stat(filepath.Join(conf.HostPath, "mode")); err == nil {
		t.Error("items given, but an unlisted key was written")
	}
}

func TestMissingEnvSourceWaits(t *testing.T) {
	pt := newPodTest(t)
	p := simplePod("p", RestartPolicyAlways, "c")
	p.Spec.Containers[0].Env = []EnvVar{{Name: "K", ValueFrom: &EnvVarSource{ConfigMapKeyRef: &KeySelector{Name: "cfg", Key: "k"}}}}
	pt.apply(p)
	cs := pt.pod("p").Status.Containers[0]
	if cs.State != ContainerWaiting || cs.Reason != ReasonConfigError || !strings.Contains(cs.Message, "cfg") {
		t.Fatalf("status %+v, want Waiting CreateContainerConfigError", cs)
	}
	pt.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"k": "v"}})
	if env := pt.mustRun("p", "c").Config.Env; !slices.Equal(env, []string{"K=v"}) {
		t.Errorf("env %q", env)
	}
}

func TestOwnerCascade(t *testing.T) {
	pt := newPodTest(t)
	owner := pt.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "owner"}})
	mid := &Secret{ObjectMeta: ObjectMeta{Name: "mid", OwnerReferences: []OwnerReference{ControllerRef(owner)}}}
	midObj := pt.apply(mid)
	p := simplePod("child", RestartPolicyAlways, "c")
	p.OwnerReferences = []OwnerReference{ControllerRef(midObj)}
	pt.apply(p)
	free := simplePod("free", RestartPolicyAlways, "c")
	free.OwnerReferences = []OwnerReference{{Kind: KindConfigMap, Name: "owner", UID: owner.Meta().UID}} // not the controller
	pt.apply(free)
	pt.mustRun("child", "c")

	if err := pt.m.Delete(pt.ctx, KindConfigMap, "", "owner"); err != nil {
		t.Fatal(err)
	}
	pt.settle()
	for _, o := range []struct{ kind, name string }{{KindSecret, "mid"}, {KindPod, "child"}} {
		if _, err := pt.m.Get(pt.ctx, o.kind, "", o.name); !errors.Is(err, ErrNotFound) {
			t.Errorf("%s %s: %v, want it deleted", o.kind, o.name, err)
		}
	}
	if pt.rt.Running("child", "c") != nil {
		t.Error("the deleted pod's container still runs")
	}
	pt.mustRun("free", "c")

	// A dependent created after its owner is gone is collected too.
	late := simplePod("late", RestartPolicyAlways, "c")
	late.OwnerReferences = []OwnerReference{ControllerRef(owner)}
	if _, err := pt.m.Apply(pt.ctx, late); err != nil {
		t.Fatal(err)
	}
	pt.settle()
	if _, err := Get[*Pod](pt.ctx, pt.m, "", "late"); !errors.Is(err, ErrNotFound) {
		t.Errorf("orphan created late: %v, want it deleted", err)
	}
	if err := pt.m.Close(pt.ctx); err != nil {
		t.Fatal(err)
	}
	checkNoFakeLeaks(t, pt.rt)
}

func TestPodRecreatedWithSameName(t *testing.T) {
	pt := newPodTest(t)
	pt.apply(simplePod("p", RestartPolicyAlways, "c"))
	first := pt.mustRun("p", "c")
	if err := pt.m.Delete(pt.ctx, KindPod, "", "p"); err != nil {
		t.Fatal(err)
	}
	pt.settle() // the deleted pod is gone once its containers are
	pt.apply(simplePod("p", RestartPolicyAlways, "c"))
	second := pt.mustRun("p", "c")
	if first.ID == second.ID || first.Sandbox == second.Sandbox {
		t.Fatal("the new pod reuses the old one's container or sandbox")
	}
	if cs, _ := pt.rt.Live(); len(cs) != 1 {
		t.Errorf("live containers %v, want only the new one", cs)
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	pt := newPodTest(t)
	for _, n := range []string{"a", "b", "c"} {
		pt.apply(simplePod(n, RestartPolicyAlways, "x", "y"))
	}
	dir := pt.m.StateDir()
	if err := pt.m.Close(pt.ctx); err != nil {
		t.Fatal(err)
	}
	checkNoFakeLeaks(t, pt.rt)
	if ents, _ := os.ReadDir(dir); len(ents) != 0 {
		t.Errorf("state dir not empty: %v", ents)
	}
	if err := pt.m.RunUntilIdle(pt.ctx); err == nil {
		t.Error("RunUntilIdle after Close succeeded")
	}
}

func TestStartErrorBacksOff(t *testing.T) {
	pt := newPodTest(t)
	pt.rt.SetStartError(errors.New("no space left"))
	pt.apply(simplePod("p", RestartPolicyAlways, "c"))
	cs := pt.pod("p").Status.Containers[0]
	if cs.State != ContainerWaiting || cs.Reason != ReasonRunError {
		t.Fatalf("status %+v, want Waiting RunContainerError", cs)
	}
	pt.rt.SetStartError(nil)
	pt.step(9 * time.Second)
	if pt.rt.Running("p", "c") != nil {
		t.Fatal("retried before 10s")
	}
	pt.step(time.Second)
	pt.mustRun("p", "c")
	// As the kubelet, a failed start is an attempt: the next one is a
	// restart.
	if got := pt.pod("p").Status.Containers[0].RestartCount; got != 1 {
		t.Errorf("restart count %d after a failed first start, want 1", got)
	}
}

func TestManagerWithoutRuntime(t *testing.T) {
	m, err := NewManager(Options{Store: memstore.New(), Clock: reconcile.NewFakeClock(testEpoch)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	dir := m.StateDir()
	if _, err := m.Apply(ctx, simplePod("p", "", "c")); err != nil {
		t.Fatal(err)
	}
	if err := m.RunUntilIdle(ctx); err != nil {
		t.Fatal(err)
	}
	if p, _ := Get[*Pod](ctx, m, "", "p"); p.Status.Phase != "" {
		t.Errorf("status written without a runtime: %+v", p.Status)
	}
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("own state dir left: %v", err)
	}
}

// A container that cannot start under RestartNever terminates with
// StartError (exit code 128) and the pod fails; a Job sees it.
func TestStartErrorUnderNever(t *testing.T) {
	pt := newPodTest(t)
	pt.rt.SetStartError(errors.New("exec: no such file"))
	pt.apply(simplePod("p", RestartPolicyNever, "c"))
	st := pt.pod("p").Status
	if st.Phase != PodFailed || len(st.Containers) != 1 {
		t.Fatalf("status %+v, want Failed", st)
	}
	cs := st.Containers[0]
	if cs.State != ContainerTerminated || cs.Reason != ReasonStartError || cs.ExitCode != 128 || !strings.Contains(cs.Message, "no such file") {
		t.Errorf("container status %+v, want Terminated StartError 128", cs)
	}
	pt.step(time.Minute)
	if tries := pt.rt.Calls("start-failed p/"); len(tries) != 1 {
		t.Errorf("start tried %d times under Never, want once: %v", len(tries), tries)
	}
	checkNoFakeLeaks(t, pt.rt) // torn down

	// Under OnFailure it is retried with backoff, counting restarts.
	pt.apply(simplePod("q", RestartPolicyOnFailure, "c"))
	pt.step(10 * time.Second)
	pt.step(20 * time.Second)
	cs = pt.pod("q").Status.Containers[0]
	if pt.pod("q").Status.Phase == PodFailed || cs.RestartCount != 2 || cs.State != ContainerWaiting {
		t.Errorf("under OnFailure: %+v, want Waiting with 2 restarts", pt.pod("q").Status)
	}

	// A Job with backoffLimit 0 fails.
	limit := 0
	j := &Job{ObjectMeta: ObjectMeta{Name: "batch"}, Spec: JobSpec{BackoffLimit: &limit, Template: PodTemplate{
		Spec: PodSpec{RestartPolicy: RestartPolicyNever, Containers: []Container{{Name: "c", Image: "busybox"}}},
	}}}
	pt.apply(j)
	pt.settle()
	obj, err := Get[*Job](pt.ctx, pt.m, "", "batch")
	if err != nil {
		t.Fatal(err)
	}
	jb := obj
	if c := GetCondition(jb.Status.Conditions, JobFailed); c == nil || c.Reason != ReasonBackoffLimitExceeded || jb.Status.Failed != 1 {
		t.Errorf("job: %+v, want Failed with BackoffLimitExceeded", jb.Status)
	}
}

// A container killed for a failed liveness probe is restarted under
// OnFailure even when it exits 0 on its stop signal.
func TestLivenessKillRestartsUnderOnFailure(t *testing.T) {
	pt := newPodTest(t)
	pt.rt.SetStopExitCode(0)
	pt.rt.SetExec(func(pod, ctr string, cmd []string) int { return 1 })
	p := simplePod("p", RestartPolicyOnFailure, "c")
	p.Spec.Containers[0].LivenessProbe = &Probe{Exec: &ExecAction{Command: []string{"live"}}, InitialDelay: 5 * time.Second, Period: time.Second, FailureThreshold: 1}
	pt.apply(p)
	first := pt.mustRun("p", "c")
	pt.step(5 * time.Second)
	st := pt.pod("p").Status
	if st.Phase == PodSucceeded {
		t.Fatalf("pod Succeeded after its container was killed by the liveness probe: %+v", st)
	}
	if c := pt.mustRun("p", "c"); c.ID == first.ID || st.Containers[0].RestartCount != 1 {
		t.Errorf("not restarted: status %+v", st)
	}
}

// A finished pod whose teardown fails is torn down again later
// (with backoff), not left until Close.
func TestFinishedPodTeardownRetried(t *testing.T) {
	pt := newPodTest(t)
	pt.rt.FailRemoveSandbox(2)
	pt.apply(simplePod("p", RestartPolicyNever, "c"))
	pt.rt.Exit(pt.mustRun("p", "c").ID, 0)
	pt.settle()
	if ph := pt.pod("p").Status.Phase; ph != PodSucceeded {
		t.Fatalf("phase %s, want Succeeded", ph)
	}
	for range 5 {
		pt.step(time.Second)
	}
	if _, sbs := pt.rt.Live(); len(sbs) != 0 {
		t.Fatalf("sandboxes %v left after the teardown failed; it was not retried (calls %v)", sbs, pt.rt.Calls("remove-sandbox"))
	}
	if n := len(pt.rt.Calls("remove-sandbox-failed")); n != 2 {
		t.Errorf("%d failed removals, want 2", n)
	}
}

// Close does not remove a state directory in which a tmpfs is still
// mounted (a pod whose teardown failed); it says so.
func TestCloseKeepsMountedStateDir(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount tmpfs")
	}
	pt := newPodTest(t)
	pt.rt.FailRemoveSandbox(-1)
	p := simplePod("p", RestartPolicyAlways, "c")
	p.Spec.Volumes = []Volume{{Name: "mem", EmptyDir: &EmptyDirVolume{Memory: true}}}
	p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "mem", MountPath: "/mem"}}
	pt.apply(p)
	c := pt.mustRun("p", "c")
	vol := c.Config.Mounts[0].HostPath
	t.Cleanup(func() { unix.Unmount(vol, unix.MNT_DETACH) })
	file := filepath.Join(vol, "data")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := pt.m.Close(pt.ctx)
	if err == nil || !strings.Contains(err.Error(), "still mounted") {
		t.Errorf("Close: %v, want an error saying a mount is left", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("the tmpfs was emptied: %v", err)
	}
}

// Manager.Delete of a pod is graceful; Close finalizes a pod being
// deleted (tears it down and removes the object).
func TestPodDeleteGracefulAndClose(t *testing.T) {
	pt := newPodTest(t)
	pt.apply(simplePod("p", RestartPolicyAlways, "c"))
	pt.mustRun("p", "c")
	if err := pt.m.Delete(pt.ctx, KindPod, "", "p"); err != nil {
		t.Fatal(err)
	}
	if p := pt.pod("p"); p.DeletionTime == nil || !p.DeletionTime.Equal(testEpoch) {
		t.Fatalf("after Delete: DeletionTime %v, want set to now", p.DeletionTime)
	}
	if err := pt.m.Delete(pt.ctx, KindPod, "", "p"); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	if err := pt.m.Delete(pt.ctx, KindPod, "", "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Delete of a missing pod: %v, want ErrNotFound", err)
	}
	if err := pt.m.Close(pt.ctx); err != nil {
		t.Fatal(err)
	}
	checkNoFakeLeaks(t, pt.rt)
	if _, err := Get[*Pod](pt.ctx, pt.m, "", "p"); !errors.Is(err, ErrNotFound) {
		t.Errorf("terminating pod after Close: %v, want it removed", err)
	}
}

// Only Delete starts a deletion: a DeletionTime sent with Apply is
// ignored (nothing would ever finish deleting a ConfigMap).
func TestApplyDoesNotStartDeletion(t *testing.T) {
	pt := newPodTest(t)
	pt.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"a": "1"}})
	now := testEpoch
	for _, data := range []string{"1", "2"} { // unchanged, changed
		cm := &ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg", DeletionTime: &now}, Data: map[string]string{"a": data}}
		got, err := pt.m.Apply(pt.ctx, cm)
		if err != nil {
			t.Fatal(err)
		}
		if got.Meta().DeletionTime != nil {
			t.Errorf("Apply with a DeletionTime (data %s) set it: %v", data, got.Meta().DeletionTime)
		}
	}
}

// A deleted pod's containers stop in the background: a pod stopping for
// its whole grace period does not hold a worker (here the only one), and
// other pods start meanwhile.
func TestDeletedPodStopsInBackground(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	clock := reconcile.NewFakeClock(testEpoch)
	rt := fakeruntime.New(clock, "busybox")
	m, err := NewManager(Options{Store: memstore.New(), Runtime: rt, Clock: clock, StateDir: t.TempDir(), Workers: 1})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- m.Run(runCtx) }()
	defer func() {
		rt.ReleaseStops()
		stop()
		<-errc
		if err := m.Close(ctx); err != nil {
			t.Error(err)
		}
		checkNoFakeLeaks(t, rt)
	}()
	if _, err := m.Apply(ctx, simplePod("slow", RestartPolicyAlways, "c")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first pod to run", func() bool { return rt.Running("slow", "c") != nil })
	rt.HoldStops()
	if err := m.Delete(ctx, KindPod, "", "slow"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "its container to be stopping", func() bool { return len(rt.Calls("stop ")) == 1 })
	if _, err := m.Apply(ctx, simplePod("next", RestartPolicyAlways, "c")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "another pod to start while the first stops", func() bool { return rt.Running("next", "c") != nil })
	if _, err := Get[*Pod](ctx, m, "", "slow"); err != nil {
		t.Errorf("the stopping pod: %v, want it still there", err)
	}
	rt.ReleaseStops()
	waitFor(t, "the deleted pod to be gone", func() bool {
		_, err := Get[*Pod](ctx, m, "", "slow")
		return errors.Is(err, ErrNotFound)
	})
}
