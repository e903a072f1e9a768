package containerruntime_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/memstore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A Manager that runs a Job's pod in a real container, from a busybox
// image imported into a layer store. The container writes a file into
// a host directory the pod mounts. Needs root and a static busybox.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "containerruntime-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)

	// An image store holding "busybox".
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	images, err := layer.Open(filepath.Join(tmp, "layers"))
	if err != nil {
		panic(err)
	}
	defer images.Close()
	if _, err := images.ImportDirs(ctx, "busybox", ocispec.ImageConfig{Cmd: []string{"sh"}}, rootfs); err != nil {
		panic(err)
	}

	rt := containerruntime.New(&container.Runtime{Images: images},
		containerruntime.WithSandboxDir(filepath.Join(tmp, "sandboxes")))
	m, err := orchestrate.NewManager(orchestrate.Options{
		Store:    memstore.New(),
		Runtime:  rt,
		StateDir: filepath.Join(tmp, "state"),
	})
	if err != nil {
		panic(err)
	}
	defer m.Close(context.Background())
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() { stop(); <-done }()

	out := filepath.Join(tmp, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		panic(err)
	}
	_, err = m.Apply(ctx, &orchestrate.Job{
		ObjectMeta: orchestrate.ObjectMeta{Name: "hello"},
		Spec: orchestrate.JobSpec{Template: orchestrate.PodTemplate{Spec: orchestrate.PodSpec{
			RestartPolicy: orchestrate.RestartPolicyNever,
			Containers: []orchestrate.Container{{
				Name:         "greet",
				Image:        "busybox",
				Command:      []string{"sh", "-c", "echo hello from $(id -un) in a pod > /out/greeting"},
				VolumeMounts: []orchestrate.VolumeMount{{Name: "out", MountPath: "/out"}},
			}},
			Volumes: []orchestrate.Volume{{Name: "out", HostPath: &orchestrate.HostPathVolume{Path: out}}},
		}}},
	})
	if err != nil {
		panic(err)
	}

	// Wait for the Job to complete.
	for {
		job, err := orchestrate.Get[*orchestrate.Job](ctx, m, "", "hello")
		if err != nil {
			panic(err)
		}
		if job.Status.Succeeded == 1 {
			fmt.Println("job succeeded:", job.Status.Succeeded)
			break
		}
		select {
		case <-ctx.Done():
			panic(fmt.Sprintf("the job did not complete: %+v", job.Status))
		case <-time.After(20 * time.Millisecond):
		}
	}
	pods, err := orchestrate.List[*orchestrate.Pod](ctx, m, "", orchestrate.SelectorFromLabels(map[string]string{orchestrate.LabelJobName: "hello"}))
	if err != nil {
		panic(err)
	}
	for _, p := range pods {
		c := p.Status.Containers[0]
		fmt.Println(p.Status.Phase, c.Name, c.State, c.Reason, "exit code", c.ExitCode)
	}
	greeting, err := os.ReadFile(filepath.Join(out, "greeting"))
	if err != nil {
		panic(err)
	}
	fmt.Print(string(greeting))
	// Output:
	// job succeeded: 1
	// Succeeded greet Terminated Completed exit code 0
	// hello from root in a pod
}
