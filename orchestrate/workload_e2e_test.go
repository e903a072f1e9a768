package orchestrate_test

import (
	"context"
	"errors"
	"fmt"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// e2eEnv is a Manager running real containers from two busybox images,
// "web:a" and "web:b", whose /www/index.html say "A" and "B".
type e2eEnv struct {
	t   testing.TB
	ctx context.Context
	m   *Manager
}

// buildWebImages imports web:a and web:b into a layer store in dir.
func buildWebImages(tb testing.TB, dir string) *layer.Store {
	tb.Helper()
	store, err := layer.Open(filepath.Join(dir, "layers"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	rootfs := filepath.Join(dir, "rootfs")
	if err := busybox.Rootfs(rootfs); err != nil {
		tb.Fatal(err)
	}
	for _, v := range []string{"a", "b"} {
		www := filepath.Join(dir, "www-"+v)
		if err := os.MkdirAll(filepath.Join(www, "www"), 0o755); err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(www, "www/index.html"), []byte("version "+v+"\n"), 0o644); err != nil {
			tb.Fatal(err)
		}
		cfg := ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"httpd", "-f", "-p", "8080", "-h", "/www"}}
		if _, err := store.ImportDirs(context.Background(), "web:"+v, cfg, rootfs, www); err != nil {
			tb.Fatal(err)
		}
	}
	return store
}

// needE2E skips unless containers can run here.
func needE2E(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: runs real containers (namespaces, cgroups, mounts)")
	}
	if _, err := busybox.Path(); err != nil {
		tb.Skip("needs a static busybox:", err)
	}
}

func newE2EEnv(tb testing.TB) *e2eEnv {
	tb.Helper()
	return newE2EEnvRuntime(tb, func(crt *container.Runtime) Runtime { return containerruntime.New(crt) })
}

// newE2EEnvRuntime is newE2EEnv with the Runtime newRuntime makes on
// the images' container runtime. A benchmark's context lasts 10
// minutes, a test's 50 seconds.
func newE2EEnvRuntime(tb testing.TB, newRuntime func(*container.Runtime) Runtime) *e2eEnv {
	tb.Helper()
	needE2E(tb)
	dir := tb.TempDir()
	store := buildWebImages(tb, dir)
	m, err := NewManager(Options{Store: memstore.New(), Runtime: newRuntime(&container.Runtime{Images: store}), StateDir: filepath.Join(dir, "state")})
	if err != nil {
		tb.Fatal(err)
	}
	timeout := 50 * time.Second
	if _, ok := tb.(*testing.B); ok {
		timeout = 10 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	runCtx, stopRun := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	tb.Cleanup(func() {
		stopRun()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
		if err := m.Close(context.Background()); err != nil {
			tb.Errorf("Close: %v", err)
		}
		cancel()
	})
	return &e2eEnv{t: tb, ctx: ctx, m: m}
}

// httpdTemplate runs busybox httpd from image, ready when it answers.
func httpdTemplate(image string) PodTemplate {
	return PodTemplate{
		Labels: map[string]string{"app": "web"},
		Spec: PodSpec{
			Containers: []Container{{
				Name:  "httpd",
				Image: image,
				ReadinessProbe: &Probe{
					HTTPGet: &HTTPGetAction{Path: "/", Port: 8080},
					Period:  100 * time.Millisecond,
				},
			}},
			TerminationGracePeriod: 2 * time.Second,
		},
	}
}

// waitFor polls cond until it holds, failing the test after timeout.
func (e *e2eEnv) waitFor(what string, timeout time.Duration, cond func() (bool, string)) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, state := cond()
		if ok {
			return
		}
		last = state
		if time.Now().After(deadline) || e.ctx.Err() != nil {
			e.t.Fatalf("timed out waiting for %s: %s", what, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// webPods returns the active pods labelled app=web, and how many of them
// are ready.
func (e *e2eEnv) webPods() (pods []*Pod, ready int) {
	all, err := List[*Pod](context.Background(), e.m, "", &LabelSelector{MatchLabels: map[string]string{"app": "web"}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range all {
		if PodActive(p) {
			pods = append(pods, p)
			if p.Status.Ready {
				ready++
			}
		}
	}
	return pods, ready
}

func TestE2EReplicaSetReplacesKilledPod(t *testing.T) {
	e := newE2EEnv(t)
	rs := &ReplicaSet{
		ObjectMeta: ObjectMeta{Name: "web"},
		Spec: ReplicaSetSpec{
			Replicas: 2,
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: httpdTemplate("web:a"),
		},
	}
	if _, err := e.m.Apply(e.ctx, rs); err != nil {
		t.Fatal(err)
	}
	allReady := func() (bool, string) {
		pods, ready := e.webPods()
		return len(pods) == 2 && ready == 2, fmt.Sprintf("%d pods, %d ready", len(pods), ready)
	}
	e.waitFor("2 ready pods", 20*time.Second, allReady)
	pods, _ := e.webPods()
	victim := pods[0].Name
	if err := e.m.Delete(e.ctx, KindPod, "", victim); err != nil {
		t.Fatal(err)
	}
	e.waitFor("a replacement pod", 20*time.Second, func() (bool, string) {
		pods, ready := e.webPods()
		for _, p := range pods {
			if p.Name == victim {
				return false, "the killed pod is still there"
			}
		}
		return len(pods) == 2 && ready == 2, fmt.Sprintf("%d pods, %d ready", len(pods), ready)
	})
	if evs := e.m.Events(EventFilter{Kind: KindReplicaSet, Name: "web", Reason: "SuccessfulCreate"}); len(evs) != 3 {
		t.Errorf("SuccessfulCreate events: %d, want 3", len(evs))
	}
	// An image the runtime does not have is refused at apply.
	bad := rs.DeepCopy().(*ReplicaSet)
	bad.Spec.Template.Spec.Containers[0].Image = "web:nosuch"
	if _, err := e.m.Apply(e.ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Errorf("apply with an unknown image: %v, want ErrInvalid", err)
	}
}

// TestE2EDeploymentRollingUpdate rolls web:a to web:b and back, sampling
// the pods all along: never more than replicas+MaxSurge, never fewer
// ready than replicas-MaxUnavailable.
func TestE2EDeploymentRollingUpdate(t *testing.T) {
	e := newE2EEnv(t)
	const replicas, surge, unavailable = 3, 1, 1
	d := &Deployment{
		ObjectMeta: ObjectMeta{Name: "web"},
		Spec: DeploymentSpec{
			Replicas: replicas,
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: httpdTemplate("web:a"),
			Strategy: DeploymentStrategy{MaxSurge: Count(surge), MaxUnavailable: Count(unavailable)},
		},
	}
	if _, err := e.m.Apply(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	complete := func(image string) func() (bool, string) {
		return func() (bool, string) {
			obj, err := Get[*Deployment](e.ctx, e.m, "", "web")
			if err != nil {
				return false, err.Error()
			}
			d := obj
			pods, ready := e.webPods()
			for _, p := range pods {
				if p.Spec.Containers[0].Image != image {
					return false, fmt.Sprintf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
				}
			}
			return DeploymentComplete(d, &d.Status) && len(pods) == replicas && ready == replicas,
				fmt.Sprintf("status %+v; %d pods, %d ready", d.Status, len(pods), ready)
		}
	}
	e.waitFor("the first rollout", 30*time.Second, complete("web:a"))

	var (
		mu       sync.Mutex
		samples  int
		maxPods  int
		minReady = replicas
		bad      []string
	)
	sampleCtx, stopSampling := context.WithCancel(e.ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for sampleCtx.Err() == nil {
			pods, ready := e.webPods()
			mu.Lock()
			samples++
			maxPods, minReady = max(maxPods, len(pods)), min(minReady, ready)
			if len(pods) > replicas+surge || ready < replicas-unavailable {
				bad = append(bad, fmt.Sprintf("%d pods, %d ready", len(pods), ready))
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() { stopSampling(); wg.Wait() }()

	obj, err := Get[*Deployment](e.ctx, e.m, "", "web")
	if err != nil {
		t.Fatal(err)
	}
	d = obj
	d.Spec.Template = httpdTemplate("web:b")
	if _, err := e.m.Apply(e.ctx, d); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the rollout to web:b", 30*time.Second, complete("web:b"))
	if err := e.m.Rollback(e.ctx, "", "web", 0); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the rollback to web:a", 30*time.Second, complete("web:a"))
	stopSampling()
	wg.Wait()

	obj, _ = Get[*Deployment](e.ctx, e.m, "", "web")
	if d := obj; d.Status.Revision != 3 {
		t.Errorf("revision after rollback %d, want 3", d.Status.Revision)
	}
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d samples: at most %d pods, at least %d ready", samples, maxPods, minReady)
	if samples < 20 {
		t.Errorf("only %d samples", samples)
	}
	if maxPods <= replicas {
		t.Errorf("never more than %d pods: the surge was not used", maxPods)
	}
	if len(bad) > 0 {
		t.Errorf("bounds broken in %d of %d samples, such as %s", len(bad), samples, bad[0])
	}
}

func TestE2EJobCompletes(t *testing.T) {
	e := newE2EEnv(t)
	completions, parallelism := 3, 2
	j := &Job{
		ObjectMeta: ObjectMeta{Name: "batch"},
		Spec: JobSpec{
			Completions: &completions,
			Parallelism: &parallelism,
			Template: PodTemplate{Spec: PodSpec{
				Containers:    []Container{{Name: "work", Image: "web:a", Command: []string{"sh", "-c", "exit 0"}}},
				RestartPolicy: RestartPolicyNever,
			}},
		},
	}
	if _, err := e.m.Apply(e.ctx, j); err != nil {
		t.Fatal(err)
	}
	maxActive := 0
	e.waitFor("the job to complete", 30*time.Second, func() (bool, string) {
		obj, err := Get[*Job](e.ctx, e.m, "", "batch")
		if err != nil {
			return false, err.Error()
		}
		j := obj
		maxActive = max(maxActive, j.Status.Active)
		c := GetCondition(j.Status.Conditions, JobComplete)
		return c != nil && c.Status, fmt.Sprintf("%+v", j.Status)
	})
	obj, _ := Get[*Job](e.ctx, e.m, "", "batch")
	st := obj.Status
	if st.Succeeded != 3 || st.Failed != 0 || st.Active != 0 || maxActive > 2 {
		t.Errorf("status %+v, at most %d active", st, maxActive)
	}
}
