// Command mkimage turns a root filesystem directory and an image
// configuration into a `docker save` archive, using berth's own layer
// store: the directory becomes one layer (layer.Store.ImportDirs), the
// configuration is written as given, and content.Store.Save writes the
// archive, which berth's content.Store.Load and `podman load` both read.
//
// Usage:
//
//	go run ./internal/cmd/mkimage -rootfs DIR -config CONFIG.json -name NAME -o ARCHIVE.tar
//
// CONFIG.json is the "config" object of a Docker image configuration
// (Cmd, Entrypoint, Env, User, WorkingDir, ExposedPorts, Labels,
// StopSignal, Healthcheck, ...). Its fields are kept as they are, also
// those the OCI image spec lacks, such as Docker's Healthcheck, which
// ocispec.ImageConfig would drop. NAME is the image's name in the archive
// (its RepoTags), such as berth.test/redis:7. The archive is written to a
// temporary file beside ARCHIVE.tar and renamed into place when complete.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/content"
	digest "github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	rootfs := flag.String("rootfs", "", "root filesystem `directory` of the image's one layer")
	config := flag.String("config", "", "`file` holding the image's config object (Docker image config JSON)")
	name := flag.String("name", "", "image `name`, such as berth.test/redis:7")
	out := flag.String("o", "", "`archive` to write (docker save format)")
	flag.Parse()
	if *rootfs == "" || *config == "" || *name == "" || *out == "" || flag.NArg() != 0 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(context.Background(), *rootfs, *config, *name, *out); err != nil {
		fmt.Fprintln(os.Stderr, "mkimage:", err)
		os.Exit(1)
	}
}

// run builds the image in a temporary layer store and saves it to out.
func run(ctx context.Context, rootfs, configFile, name, out string) (err error) {
	raw, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	// The config as written, field by field, and as berth's type (for
	// ImportDirs, which needs an ocispec.ImageConfig).
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return fmt.Errorf("%s: %w", configFile, err)
	}
	var cfg ocispec.ImageConfig
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return fmt.Errorf("%s: %w", configFile, err)
	}

	tmp, err := os.MkdirTemp(filepath.Dir(out), ".mkimage-store-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	s, err := layer.Open(tmp)
	if err != nil {
		return err
	}
	defer s.Close()

	md, err := s.ImportDirs(ctx, "", cfg, rootfs)
	if err != nil {
		return err
	}
	m, img, err := s.Content.Manifest(ctx, md, nil)
	if err != nil {
		return err
	}
	cb, err := fullConfig(img, fields)
	if err != nil {
		return err
	}
	cd, err := s.Content.Put(ctx, ocispec.MediaTypeImageConfig, bytes.NewReader(cb), "")
	if err != nil {
		return fmt.Errorf("store config: %w", err)
	}
	nm := ocispec.Manifest{
		Versioned: specsv.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    cd,
		Layers:    m.Layers,
	}
	mb, err := json.Marshal(nm)
	if err != nil {
		return err
	}
	nd, err := s.Content.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
	if err != nil {
		return fmt.Errorf("store manifest: %w", err)
	}
	if err := s.Content.Tag(ctx, name, nd); err != nil {
		return err
	}

	f, err := os.CreateTemp(filepath.Dir(out), ".mkimage-*.tar")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := s.Content.Save(ctx, f, name); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chmod(f.Name(), 0o644); err != nil {
		return err
	}
	if err := verify(ctx, f.Name(), name, cd.Digest); err != nil {
		return err
	}
	return os.Rename(f.Name(), out)
}

// verify loads the archive at file into a fresh content store, as a Go
// test would, and checks that name leads to the config blob want there:
// Load kept the config as written, with the fields berth's types lack.
func verify(ctx context.Context, file, name string, want digest.Digest) error {
	tmp, err := os.MkdirTemp(filepath.Dir(file), ".mkimage-verify-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	cs, err := content.Open(tmp)
	if err != nil {
		return err
	}
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := cs.Load(ctx, f); err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	d, err := cs.Resolve(ctx, name)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	m, _, err := cs.Manifest(ctx, d, nil)
	if err != nil {
		return fmt.Errorf("verify: %w", err)
	}
	if m.Config.Digest != want {
		return fmt.Errorf("verify: loaded image's config is %s, want %s", m.Config.Digest, want)
	}
	return nil
}

// fullConfig is img (the configuration ImportDirs wrote: platform, rootfs
// diff IDs, history) as JSON with its "config" object replaced by fields,
// so that fields ocispec.ImageConfig does not know survive.
func fullConfig(img ocispec.Image, fields map[string]json.RawMessage) ([]byte, error) {
	b, err := json.Marshal(img)
	if err != nil {
		return nil, err
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return nil, err
	}
	if len(top["rootfs"]) == 0 {
		return nil, errors.New("imported image has no rootfs")
	}
	c, err := json.Marshal(fields)
	if err != nil {
		return nil, err
	}
	top["config"] = c
	return json.Marshal(top)
}
