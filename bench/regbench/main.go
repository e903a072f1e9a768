// Command regbench times berth's registry work beside its peers, in one
// run, interleaved, against a docker-registry it starts on loopback:
//
//	pull + unpack   berth Pull          | skopeo copy docker:// oci: + umoci raw unpack
//	push (upload)   berth Push          | crane push (of an OCI layout)
//	push (mount)    berth Push          | crane copy (from another repository)
//
// An upload push sends every blob: berth's store forgets where it pushed
// before (content.Store.Sources) first. A mount push goes to a new
// repository of a registry that has the blobs in another one: berth
// mounts them from where its store says it pushed them, crane copy from
// the repository it copies.
//
// The image comes from an existing berth store (-store, -name), as
// bench/registry.sh builds it (the Go toolchain as one layer plus
// busybox). It prints each median and the ratios.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"github.com/berthlabs/berth/internal/regtest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/registry"
)

func main() {
	root := flag.String("store", "", "berth store holding the image")
	name := flag.String("name", "", "image name in the store")
	work := flag.String("work", os.TempDir(), "scratch directory")
	crane := flag.String("crane", "bin/crane", "crane binary")
	n := flag.Int("n", 5, "runs of each")
	pushOnly := flag.Bool("push-only", false, "time only the pushes (more runs in the same time)")
	flag.Parse()
	if err := run(*root, *name, *work, *crane, *n, *pushOnly); err != nil {
		fmt.Fprintln(os.Stderr, "regbench:", err)
		os.Exit(1)
	}
}

func timed(f func() error) (time.Duration, error) {
	t := time.Now()
	err := f()
	return time.Since(t), err
}

func sh(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %v: %v\n%s", name, args, err, out)
	}
	return nil
}

func median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func run(root, name, work, crane string, n int, pushOnly bool) error {
	ctx := context.Background()
	src, err := layer.Open(root)
	if err != nil {
		return err
	}
	defer src.Close()
	reg, err := regtest.StartProcess(regtest.Options{})
	if err != nil {
		return err
	}
	defer reg.Close()
	c := registry.New()
	seed := reg.Host + "/seed/go:latest"
	if _, err := c.Push(ctx, seed, src, name); err != nil {
		return err
	}
	layout := filepath.Join(work, "layout")
	os.RemoveAll(layout)
	if err := src.Content.ExportLayout(ctx, layout, name); err != nil {
		return err
	}
	var berthPull, skopeoCopy, umociUnpack, berthPush, cranePush, berthMount, craneMount []time.Duration
	for i := range n {
		if pushOnly {
			if err := pushPair(ctx, c, src, name, layout, reg.Host, crane, i, &berthPush, &cranePush); err != nil {
				return err
			}
			if err := mountPair(ctx, c, src, name, reg.Host, crane, i, &berthMount, &craneMount); err != nil {
				return err
			}
			fmt.Fprintf(os.Stderr, "run %d: push %v | crane %v | mount-push %v | crane copy %v\n", i+1, berthPush[i], cranePush[i], berthMount[i], craneMount[i])
			continue
		}
		scratch := filepath.Join(work, fmt.Sprintf("run%d", i))
		if err := os.MkdirAll(scratch, 0o755); err != nil {
			return err
		}
		pullBerth := func() error {
			sh("sync")
			d, err := timed(func() error {
				s, err := layer.Open(filepath.Join(scratch, "store"))
				if err != nil {
					return err
				}
				defer s.Close()
				_, err = c.Pull(ctx, seed, s)
				return err
			})
			berthPull = append(berthPull, d)
			return err
		}
		pullPeers := func() error {
			// skopeo copy to an OCI layout, then umoci raw unpack.
			oci := filepath.Join(scratch, "oci")
			sh("sync")
			d, err := timed(func() error {
				return sh("skopeo", "copy", "-q", "--src-tls-verify=false", "docker://"+seed, "oci:"+oci+":go")
			})
			if err != nil {
				return err
			}
			skopeoCopy = append(skopeoCopy, d)
			sh("sync")
			d, err = timed(func() error {
				return sh("umoci", "raw", "unpack", "--image", oci+":go", filepath.Join(scratch, "rootfs"))
			})
			umociUnpack = append(umociUnpack, d)
			return err
		}
		// Alternate who goes first; keep every tree until the end (this
		// VM's ext4 creates files slowly right after large deletions).
		first, second := pullBerth, pullPeers
		if i%2 == 1 {
			first, second = pullPeers, pullBerth
		}
		if err := first(); err != nil {
			return err
		}
		if err := second(); err != nil {
			return err
		}
		if err := pushPair(ctx, c, src, name, layout, reg.Host, crane, i, &berthPush, &cranePush); err != nil {
			return err
		}
		if err := mountPair(ctx, c, src, name, reg.Host, crane, i, &berthMount, &craneMount); err != nil {
			return err
		}
		fmt.Fprintf(os.Stderr, "run %d: pull %v | skopeo %v + umoci %v | push %v | crane %v | mount-push %v | crane copy %v\n", i+1, berthPull[i], skopeoCopy[i], umociUnpack[i], berthPush[i], cranePush[i], berthMount[i], craneMount[i])
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/1e6) }
	pushLine := func() {
		fmt.Printf("push upload  berth %s | crane push %s | ratio %.2f (target <= 0.8)\n",
			ms(median(berthPush)), ms(median(cranePush)), float64(median(berthPush))/float64(median(cranePush)))
		fmt.Printf("push mount   berth %s | crane copy %s | ratio %.2f\n",
			ms(median(berthMount)), ms(median(craneMount)), float64(median(berthMount))/float64(median(craneMount)))
	}
	if pushOnly {
		pushLine()
		return nil
	}
	peer := median(skopeoCopy) + median(umociUnpack)
	fmt.Printf("pull+unpack  berth %s | skopeo copy %s + umoci raw unpack %s = %s | ratio %.2f (target <= 0.5)\n",
		ms(median(berthPull)), ms(median(skopeoCopy)), ms(median(umociUnpack)), ms(peer), float64(median(berthPull))/float64(peer))
	pushLine()
	return nil
}

// pushPair pushes the image to empty repositories once with berth and
// once with crane, alternating who goes first, each after a sync so that
// neither pays for the other's (or a pull's) writeback.
func pushPair(ctx context.Context, c *registry.Client, src *layer.Store, name, layout, host, crane string, i int, berthPush, cranePush *[]time.Duration) error {
	pushBerth := func() error {
		// Forget where earlier pushes went, or berth would mount.
		if err := os.RemoveAll(filepath.Join(src.Content.Root(), "sources")); err != nil {
			return err
		}
		sh("sync")
		d, err := timed(func() error {
			_, err := c.Push(ctx, fmt.Sprintf("%s/berth%d/go:latest", host, i), src, name)
			return err
		})
		*berthPush = append(*berthPush, d)
		return err
	}
	pushCrane := func() error {
		sh("sync")
		d, err := timed(func() error {
			return sh(crane, "push", "--insecure", layout, fmt.Sprintf("%s/crane%d/go:latest", host, i))
		})
		*cranePush = append(*cranePush, d)
		return err
	}
	return alternate(i, pushBerth, pushCrane)
}

// alternate runs a then b, or b then a when i is odd: who goes first
// takes turns.
func alternate(i int, a, b func() error) error {
	if i%2 == 1 {
		a, b = b, a
	}
	if err := a(); err != nil {
		return err
	}
	return b()
}

// mountPair pushes the image to new repositories of the registry, which
// has its blobs in others: berth from its store (which remembers where
// it pushed them), crane by copying the seed repository; alternating who
// goes first.
func mountPair(ctx context.Context, c *registry.Client, src *layer.Store, name, host, crane string, i int, berthMount, craneMount *[]time.Duration) error {
	pushBerth := func() error {
		d, err := timed(func() error {
			p, err := c.Push(ctx, fmt.Sprintf("%s/berthm%d/go:latest", host, i), src, name)
			if err == nil && p.Mounted == 0 {
				err = fmt.Errorf("mount push: nothing mounted: %+v", p)
			}
			return err
		})
		*berthMount = append(*berthMount, d)
		return err
	}
	copyCrane := func() error {
		d, err := timed(func() error {
			return sh(crane, "copy", "--insecure", host+"/seed/go:latest", fmt.Sprintf("%s/cranem%d/go:latest", host, i))
		})
		*craneMount = append(*craneMount, d)
		return err
	}
	return alternate(i, pushBerth, copyCrane)
}
