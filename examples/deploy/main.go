// Command deploy runs a replicated service of busybox HTTP servers as a
// Deployment, rolls it from one version to another and back, and prints
// the state as it converges.
//
//	go run ./examples/deploy
//	go run ./examples/deploy -replicas 4 -surge 1 -unavailable 0
//
// The two versions are images built on the fly from the host's static
// busybox (Debian's busybox-static), each serving its own index.html
// with `busybox httpd`; a pod is ready when its server answers an HTTP
// readiness probe. Each state line lists the pods by version: +v1 ready,
// -v1 not ready (yet), xv1 terminating (being stopped after a scale
// down). It needs root (namespaces, cgroups, mounts) and
// removes everything it made before it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	replicas := flag.Int("replicas", 3, "pods of the service")
	surge := flag.String("surge", "1", "maxSurge: a count or a percentage such as 25%")
	unavailable := flag.String("unavailable", "1", "maxUnavailable: a count or a percentage")
	timeout := flag.Duration("timeout", 45*time.Second, "give up after this long")
	flag.Parse()
	if err := run(*replicas, *surge, *unavailable, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "deploy:", err)
		os.Exit(1)
	}
}

func run(replicas int, surge, unavailable string, timeout time.Duration) error {
	maxSurge, err := orchestrate.ParseIntOrPercent(surge)
	if err != nil {
		return err
	}
	maxUnavailable, err := orchestrate.ParseIntOrPercent(unavailable)
	if err != nil {
		return err
	}
	if os.Geteuid() != 0 {
		return errors.New("needs root: containers use namespaces, cgroups and mounts")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "berth-deploy-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	images, err := buildImages(ctx, dir)
	if err != nil {
		return err
	}
	defer images.Close()

	m, err := orchestrate.NewManager(orchestrate.Options{
		Store:    memstore.New(),
		Runtime:  containerruntime.New(&container.Runtime{Images: images}),
		StateDir: filepath.Join(dir, "state"),
	})
	if err != nil {
		return err
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() {
		stopRun()
		<-done
		if err := m.Close(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, "deploy: close:", err)
		}
	}()
	// Print what the Deployment controller does as it does it.
	go func() {
		for ev := range m.SubscribeEvents(runCtx, orchestrate.EventFilter{Kind: orchestrate.KindDeployment}) {
			fmt.Printf("%s  event %s: %s\n", stamp(), ev.Reason, ev.Message)
		}
	}()

	d := &orchestrate.Deployment{
		ObjectMeta: orchestrate.ObjectMeta{Name: "web"},
		Spec: orchestrate.DeploymentSpec{
			Replicas: replicas,
			Selector: &orchestrate.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: template("web:v1"),
			Strategy: orchestrate.DeploymentStrategy{MaxSurge: &maxSurge, MaxUnavailable: &maxUnavailable},
		},
	}
	fmt.Printf("%s  apply: %d replicas of web:v1 (maxSurge %s, maxUnavailable %s)\n", stamp(), replicas, maxSurge, maxUnavailable)
	if _, err := m.Apply(ctx, d); err != nil {
		return err
	}
	if err := converge(ctx, m, "web:v1"); err != nil {
		return err
	}

	fmt.Printf("%s  roll out web:v2\n", stamp())
	d, err = orchestrate.Get[*orchestrate.Deployment](ctx, m, "", "web")
	if err != nil {
		return err
	}
	d.Spec.Template = template("web:v2")
	if _, err := m.Apply(ctx, d); err != nil {
		return err
	}
	if err := converge(ctx, m, "web:v2"); err != nil {
		return err
	}

	fmt.Printf("%s  roll back to the previous revision\n", stamp())
	if err := m.Rollback(ctx, "", "web", 0); err != nil {
		return err
	}
	if err := converge(ctx, m, "web:v1"); err != nil {
		return err
	}

	fmt.Printf("%s  delete the deployment\n", stamp())
	if err := m.Delete(ctx, orchestrate.KindDeployment, "", "web"); err != nil {
		return err
	}
	for {
		pods, err := m.List(ctx, orchestrate.KindPod, "", nil)
		if err != nil {
			return err
		}
		if len(pods) == 0 {
			break
		}
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
	}
	fmt.Printf("%s  done\n", stamp())
	return nil
}

// template is the pod: busybox httpd from image, ready when it answers.
func template(image string) orchestrate.PodTemplate {
	return orchestrate.PodTemplate{
		Labels: map[string]string{"app": "web"},
		Spec: orchestrate.PodSpec{
			Containers: []orchestrate.Container{{
				Name:  "httpd",
				Image: image,
				ReadinessProbe: &orchestrate.Probe{
					HTTPGet: &orchestrate.HTTPGetAction{Path: "/", Port: 8080},
					Period:  200 * time.Millisecond,
				},
			}},
			TerminationGracePeriod: 2 * time.Second,
		},
	}
}

// buildImages stores web:v1 and web:v2 in a layer store under dir: a
// busybox root filesystem and a layer with /www/index.html, run as
// `httpd -f -p 8080 -h /www`.
func buildImages(ctx context.Context, dir string) (*layer.Store, error) {
	store, err := layer.Open(filepath.Join(dir, "layers"))
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		store.Close()
		return nil, err
	}
	for _, v := range []string{"v1", "v2"} {
		www := filepath.Join(dir, "www-"+v)
		if err := os.MkdirAll(filepath.Join(www, "www"), 0o755); err != nil {
			store.Close()
			return nil, err
		}
		page := fmt.Sprintf("<h1>hello from %s</h1>\n", v)
		if err := os.WriteFile(filepath.Join(www, "www/index.html"), []byte(page), 0o644); err != nil {
			store.Close()
			return nil, err
		}
		cfg := ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"httpd", "-f", "-p", "8080", "-h", "/www"}}
		if _, err := store.ImportDirs(ctx, "web:"+v, cfg, rootfs, www); err != nil {
			store.Close()
			return nil, err
		}
	}
	return store, nil
}

// converge prints the state whenever it changes until every pod runs
// image, is ready, and the Deployment reports the rollout complete.
func converge(ctx context.Context, m *orchestrate.Manager, image string) error {
	last := ""
	for {
		d, err := orchestrate.Get[*orchestrate.Deployment](ctx, m, "", "web")
		if err != nil {
			return err
		}
		all, err := orchestrate.List[*orchestrate.Pod](ctx, m, "", d.Spec.Selector)
		if err != nil {
			return err
		}
		var pods []string
		ready, onImage := 0, 0
		for _, p := range all {
			mark := "-" // not ready
			switch {
			case p.DeletionTime != nil:
				mark = "x" // terminating: its containers are being stopped
			case p.Status.Ready:
				mark = "+"
				ready++
			}
			img := p.Spec.Containers[0].Image
			if img == image {
				onImage++
			}
			pods = append(pods, mark+strings.TrimPrefix(img, "web:"))
		}
		slices.Sort(pods)
		st := d.Status
		line := fmt.Sprintf("revision %d  pods %d  ready %d  updated %d  available %d  [%s]",
			st.Revision, len(pods), ready, st.UpdatedReplicas, st.AvailableReplicas, strings.Join(pods, " "))
		if line != last {
			fmt.Printf("%s  %s\n", stamp(), line)
			last = line
		}
		progressing := ""
		for _, c := range st.Conditions {
			if c.Type == orchestrate.DeploymentProgressing {
				progressing = c.Reason
			}
		}
		if progressing == orchestrate.ReasonProgressDeadlineExceeded {
			return fmt.Errorf("rollout of %s made no progress", image)
		}
		if st.ObservedGeneration >= d.Generation && st.UpdatedReplicas == d.Spec.Replicas &&
			st.AvailableReplicas == d.Spec.Replicas && len(pods) == d.Spec.Replicas && ready == len(pods) && onImage == len(pods) {
			fmt.Printf("%s  converged on %s\n", stamp(), image)
			return nil
		}
		if err := sleep(ctx, 25*time.Millisecond); err != nil {
			return fmt.Errorf("waiting for %s: %w (last state: %s)", image, err, last)
		}
	}
}

var start = time.Now()

// stamp is the time since the start, for the printed lines.
func stamp() string { return fmt.Sprintf("%6.2fs", time.Since(start).Seconds()) }

func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}
