// Command startbench times the start-to-exit of a container running
// /bin/true on a busybox rootfs (new PID, mount, UTS, IPC and network
// namespaces; 64 MiB memory and 64 pids limits) with berth, runc and
// crun, interleaved in one run, and prints medians and ratios. berth runs
// twice: starting each init cold, and with a warm init pool
// (Runtime.InitPool). With -seccomp every runtime applies Docker's
// default seccomp profile (the same profile, computed by berth's
// seccomp.Default for the bundle's capabilities, is the bundle's
// linux.seccomp); without it none does.
// bench/runtimes.sh installs the peers and runs it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/container/seccomp"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func main() {
	n := flag.Int("n", 100, "runs per runtime")
	runtimes := flag.String("runtimes", "berth,berth-pool,runc,crun,unshare", "comma-separated runtimes to time (berth-pool: berth with Runtime.InitPool 4; from a busybox image: berth-image, berth-image-pool, podman for podman run --rm)")
	withSeccomp := flag.Bool("seccomp", false, "apply Docker's default seccomp profile in every runtime")
	flag.Parse()
	if err := run(*n, strings.Split(*runtimes, ","), *withSeccomp); err != nil {
		fmt.Fprintln(os.Stderr, "startbench:", err)
		os.Exit(1)
	}
}

func run(n int, runtimes []string, withSeccomp bool) error {
	dir, err := os.MkdirTemp("", "berth-startbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		return err
	}
	if err := writeBundle(dir, withSeccomp); err != nil {
		return err
	}
	ctx := context.Background()
	spec := &container.Spec{
		Rootfs:    rootfs,
		Process:   container.Process{Args: []string{"/bin/true"}},
		Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64},
		Seccomp:   container.Seccomp{Unconfined: !withSeccomp},
	}
	times := map[string][]time.Duration{}
	var avail []string
	pooled := &container.Runtime{InitPool: 4}
	defer pooled.Close()
	var images *layer.Store
	for _, r := range runtimes {
		if strings.HasPrefix(r, "berth-image") && images == nil {
			if images, err = layer.Open(filepath.Join(dir, "store")); err != nil {
				return err
			}
			defer images.Close()
			if _, err := images.ImportDirs(context.Background(), "bench/busybox:1", ocispec.ImageConfig{Cmd: []string{"/bin/true"}}, rootfs); err != nil {
				return err
			}
			if _, err := images.Unpack(context.Background(), "bench/busybox:1"); err != nil {
				return err
			}
		}
		if r == "podman" {
			if err := podmanImport(rootfs); err != nil {
				return err
			}
			defer exec.Command("podman", "--cgroup-manager=cgroupfs", "rmi", "-f", podmanImage).Run()
		}
	}
	imageCold := &container.Runtime{Images: images}
	imagePool := &container.Runtime{Images: images, InitPool: 4}
	defer imagePool.Close()
	imageSpec := &container.Spec{Image: "bench/busybox:1", Resources: spec.Resources, Seccomp: spec.Seccomp}
	podmanArgs := []string{"--cgroup-manager=cgroupfs", "run", "--rm", "--runtime", "crun",
		"--network", "none", "--memory", "64m", "--pids-limit", "64",
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"}
	if !withSeccomp {
		podmanArgs = append(podmanArgs, "--security-opt", "seccomp=unconfined")
	}
	podmanArgs = append(podmanArgs, podmanImage, "/bin/true")
	for _, r := range runtimes {
		if strings.HasPrefix(r, "berth") {
			avail = append(avail, r)
			continue
		}
		if _, err := exec.LookPath(r); err != nil {
			fmt.Fprintf(os.Stderr, "startbench: %s not installed, skipped\n", r)
			continue
		}
		avail = append(avail, r)
	}
	// Warm up each once, then interleave so that they share the noise.
	// The order is shuffled each round (the same shuffles every run): a
	// runtime pays for what the one before it still does in the
	// background (podman's processes, berth's removals and the pool's
	// refill), and a fixed rotation would have it always follow the same
	// one.
	rng := rand.New(rand.NewPCG(1, 2))
	order := append([]string(nil), avail...)
	for i := -1; i < n; i++ {
		rng.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, r := range order {
			id := fmt.Sprintf("sb-%s-%d-%d", r, os.Getpid(), i+1)
			start := time.Now()
			var err error
			switch r {
			case "berth":
				err = runBerth(ctx, container.Default, id, spec)
			case "berth-pool":
				err = runBerth(ctx, pooled, id, spec)
			case "berth-image":
				err = runBerth(ctx, imageCold, id, imageSpec)
			case "berth-image-pool":
				err = runBerth(ctx, imagePool, id, imageSpec)
			case "podman":
				var out []byte
				out, err = exec.Command("podman", podmanArgs...).CombinedOutput()
				if err != nil {
					err = fmt.Errorf("%w: %s", err, out)
				}
			case "unshare":
				err = exec.Command("unshare", "--pid", "--mount", "--uts", "--ipc", "--net", "--fork", "/bin/true").Run()
			default:
				var out []byte
				out, err = exec.Command(r, "run", "--bundle", dir, id).CombinedOutput()
				if err != nil {
					err = fmt.Errorf("%w: %s", err, out)
				}
			}
			el := time.Since(start)
			if err != nil {
				return fmt.Errorf("%s: %w", r, err)
			}
			if i >= 0 {
				times[r] = append(times[r], el)
			}
		}
	}
	base, pool := median(times["berth"]), median(times["berth-pool"])
	profile := "no seccomp filter"
	if withSeccomp {
		profile = "Docker's default seccomp profile"
	}
	fmt.Printf("start-to-exit of /bin/true, %d runs each, interleaved, %s\n", n, profile)
	fmt.Printf("%-10s %10s %10s %10s %12s %12s\n", "runtime", "median", "p10", "p90", "berth/peer", "pool/peer")
	for _, r := range avail {
		d := times[r]
		m := float64(median(d))
		fmt.Printf("%-10s %10s %10s %10s %12.2f %12.2f\n", r, round(median(d)), round(pct(d, 10)), round(pct(d, 90)), float64(base)/m, float64(pool)/m)
	}
	return nil
}

func runBerth(ctx context.Context, rt *container.Runtime, id string, spec *container.Spec) error {
	c, err := rt.Create(ctx, id, spec)
	if err != nil {
		return err
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		return err
	}
	st, err := c.Wait(ctx)
	if err != nil {
		return err
	}
	if !st.Success() {
		return fmt.Errorf("exit: %v", st)
	}
	return c.Delete(ctx)
}

// podmanImage is the busybox rootfs imported into podman.
const podmanImage = "localhost/berth-startbench:latest"

// podmanImport makes rootfs a podman image (podman import of its tar).
func podmanImport(rootfs string) error {
	cmd := exec.Command("sh", "-c", `tar -C "$1" -c . | podman --cgroup-manager=cgroupfs import -q - "$2" >/dev/null`, "sh", rootfs, podmanImage)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("podman import: %w: %s", err, out)
	}
	return nil
}

// writeBundle writes config.json for runc and crun: the same work as the
// berth spec above.
func writeBundle(dir string, withSeccomp bool) error {
	mem, pids := int64(64<<20), int64(64)
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD",
		"CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP",
		"CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE"}
	s := specs.Spec{
		Version:  "1.0.2",
		Root:     &specs.Root{Path: "rootfs"},
		Hostname: "bench",
		Process: &specs.Process{
			Args: []string{"/bin/true"}, Cwd: "/", Env: []string{"PATH=/bin"},
			NoNewPrivileges: true,
			Capabilities:    &specs.LinuxCapabilities{Bounding: caps, Effective: caps, Permitted: caps},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc"},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
			{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		},
		Linux: &specs.Linux{
			Namespaces: []specs.LinuxNamespace{{Type: "pid"}, {Type: "network"}, {Type: "ipc"}, {Type: "uts"}, {Type: "mount"}},
			Resources:  &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &mem}, Pids: &specs.LinuxPids{Limit: &pids}},
			MaskedPaths: []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
				"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"},
			ReadonlyPaths: []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"},
		},
	}
	if withSeccomp {
		p, err := seccomp.Default(caps)
		if err != nil {
			return err
		}
		s.Linux.Seccomp = p
	}
	b, err := json.MarshalIndent(&s, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644)
}

func median(d []time.Duration) time.Duration { return pct(d, 50) }

func pct(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[(len(s)-1)*p/100]
}

func round(d time.Duration) time.Duration { return d.Round(10 * time.Microsecond) }
