// Command run runs a command in a container on a busybox root filesystem
// built on the fly from the host's static busybox, with a memory and a
// pids limit, and prints its output and exit status.
//
//	go run ./examples/run                      # a default demo script
//	go run ./examples/run -memory 32m sh -c 'echo hi; exit 3'
//
// It needs root (namespaces, cgroups, mounts) and Debian's busybox-static.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
)

const demo = `echo "hello from $(hostname), PID $$ under PID 1 $(cat /proc/1/comm)"
echo "memory limit: $(cat /sys/fs/cgroup/memory.max 2>/dev/null || echo "$MEMORY (cgroup v1: not visible inside)")"
echo "processes I can see: $(ls /proc | grep -c '^[0-9]')"
echo "trying to use more memory than allowed..."
dd if=/dev/zero of=/dev/null bs=256M count=1 2>/dev/null || echo "dd was killed"
exit 7`

func main() {
	memory := flag.String("memory", "64m", "memory limit (bytes, or with k, m, g)")
	pids := flag.Int64("pids", 64, "maximum number of processes")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: %s [flags] [command [args...]]\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if err := run(*memory, *pids, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "run:", err)
		os.Exit(1)
	}
}

func run(memory string, pids int64, args []string) error {
	mem, err := parseBytes(memory)
	if err != nil {
		return err
	}
	if len(args) == 0 {
		args = []string{"sh", "-c", demo}
	}
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(rootfs)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	c, err := container.Create(ctx, fmt.Sprintf("example-run-%d", os.Getpid()), &container.Spec{
		Rootfs:   rootfs,
		Hostname: "berth-demo",
		Process: container.Process{
			Args:   args,
			Env:    []string{"MEMORY=" + memory},
			Stdin:  os.Stdin,
			Stdout: os.Stdout,
			Stderr: os.Stderr,
		},
		Resources: cgroup.Resources{MemoryLimit: mem, MemorySwap: mem, PidsLimit: pids},
	})
	if err != nil {
		return err
	}
	defer c.Delete(context.Background())
	if err := c.Start(ctx); err != nil {
		return err
	}
	st, err := c.Wait(ctx)
	if err != nil {
		return err
	}
	stats, err := c.Stats()
	if err == nil {
		fmt.Printf("peak memory %d KiB, CPU %v, OOM kills %d\n", stats.Memory.MaxUsage>>10, time.Duration(stats.CPU.UsageNs), stats.Memory.OOMKills)
	}
	fmt.Printf("container %s: %v\n", c.ID(), st)
	return c.Delete(context.Background())
}

func parseBytes(s string) (int64, error) {
	mult := int64(1)
	switch {
	case strings.HasSuffix(strings.ToLower(s), "k"):
		mult = 1 << 10
	case strings.HasSuffix(strings.ToLower(s), "m"):
		mult = 1 << 20
	case strings.HasSuffix(strings.ToLower(s), "g"):
		mult = 1 << 30
	}
	n, err := strconv.ParseInt(strings.TrimRight(strings.ToLower(s), "kmg"), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad size %q: %w", s, err)
	}
	return n * mult, nil
}
