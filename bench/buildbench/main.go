// Command buildbench times berth's Dockerfile builds for bench/build.sh.
//
//	buildbench setup -store DIR -oci DIR   # busybox base image, also as an OCI layout for peers
//	buildbench build -store DIR -context DIR [-nocache] [-tag NAME]
//
// build does one build in a fresh process, as a CLI would, and prints its
// wall time in seconds (from before the store is opened to after the
// image is tagged).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/berthlabs/berth/container/build"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// BaseImage is the name of the busybox base image the Dockerfiles use.
const BaseImage = "bench.local/busybox:1"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: buildbench setup|build ...")
		os.Exit(2)
	}
	fl := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	store := fl.String("store", "", "layer store root")
	oci := fl.String("oci", "", "setup: also export the base image to this OCI layout")
	dir := fl.String("context", "", "build: the context directory (with its Dockerfile)")
	noCache := fl.Bool("nocache", false, "build: without the cache")
	tag := fl.String("tag", "bench.local/built:latest", "build: the tag")
	fl.Parse(os.Args[2:])
	var err error
	switch os.Args[1] {
	case "setup":
		err = setup(*store, *oci)
	case "build":
		var d time.Duration
		d, err = buildOnce(*store, *dir, *tag, *noCache)
		if err == nil {
			fmt.Printf("%.4f\n", d.Seconds())
		}
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "buildbench:", err)
		os.Exit(1)
	}
}

func setup(root, oci string) error {
	ctx := context.Background()
	s, err := layer.Open(root)
	if err != nil {
		return err
	}
	defer s.Close()
	bb, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(bb)
	if _, err := s.ImportDirs(ctx, BaseImage, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, bb); err != nil {
		return err
	}
	if oci != "" {
		return s.Content.ExportLayout(ctx, oci, BaseImage)
	}
	return nil
}

func buildOnce(root, dir, tag string, noCache bool) (time.Duration, error) {
	ctx := context.Background()
	t0 := time.Now()
	s, err := layer.Open(root)
	if err != nil {
		return 0, err
	}
	defer s.Close()
	b := &build.Builder{Store: s}
	if _, err := b.Build(ctx, build.Options{ContextDir: dir, Tags: []string{tag}, NoCache: noCache}); err != nil {
		return 0, err
	}
	d := time.Since(t0)
	return d, nil
}
