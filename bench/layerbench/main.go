// Command layerbench is the berth side of bench/layers.sh: it builds the
// Go-toolchain image (GOROOT as one gzip layer, a busybox root filesystem
// as a second) in a layer store, and times berth's work on it. Each timed
// command prints one duration in seconds per line; the script takes the
// medians and sets them beside its peers.
//
//	layerbench build   -store DIR -name NAME [-goroot /usr/local/go]
//	layerbench unpack  -store DIR -name NAME -n N
//	layerbench prepare -store DIR -name NAME -n N
//	layerbench commit  -store DIR -name NAME -n N
//	layerbench run     -store DIR -name NAME -n N
//
// build prints the path of the GOROOT layer's blob. It needs root.
package main

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/klauspost/compress/gzip"
	digest "github.com/opencontainers/go-digest"
	specsv "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: layerbench build|unpack|prepare|commit|run [flags]")
		os.Exit(2)
	}
	cmd := os.Args[1]
	fl := flag.NewFlagSet(cmd, flag.ExitOnError)
	root := fl.String("store", "", "layer store directory")
	name := fl.String("name", "bench.local/go:latest", "image name")
	goroot := fl.String("goroot", "/usr/local/go", "the tree of the first layer, stored under the same path")
	n := fl.Int("n", 5, "runs")
	fl.Parse(os.Args[2:])
	if err := run(cmd, *root, *name, *goroot, *n); err != nil {
		fmt.Fprintf(os.Stderr, "layerbench %s: %v\n", cmd, err)
		os.Exit(1)
	}
}

func run(cmd, root, name, goroot string, n int) error {
	if root == "" {
		return fmt.Errorf("-store is required")
	}
	ctx := context.Background()
	s, err := layer.Open(root)
	if err != nil {
		return err
	}
	defer s.Close()
	switch cmd {
	case "build":
		return build(ctx, s, name, goroot)
	case "unpack":
		return times(n, func() (time.Duration, error) { return unpack(ctx, s, name) })
	case "prepare":
		if _, err := s.Unpack(ctx, name); err != nil {
			return err
		}
		return times(n, func() (time.Duration, error) {
			t0 := time.Now()
			_, _, err := s.Prepare(ctx, "bench-prepare", name)
			d := time.Since(t0)
			if err == nil {
				err = s.Release(ctx, "bench-prepare")
			}
			return d, err
		})
	case "commit":
		return times(n, func() (time.Duration, error) { return commit(ctx, s, name) })
	case "run":
		if _, err := s.Unpack(ctx, name); err != nil {
			return err
		}
		rt := &container.Runtime{Images: s}
		i := 0
		return times(n, func() (time.Duration, error) {
			i++
			t0 := time.Now()
			c, err := rt.Create(ctx, fmt.Sprintf("layerbench-%d-%d", os.Getpid(), i), &container.Spec{Image: name, Process: container.Process{Args: []string{"/bin/true"}}})
			if err != nil {
				return 0, err
			}
			defer c.Delete(ctx)
			if err := c.Start(ctx); err != nil {
				return 0, err
			}
			st, err := c.Wait(ctx)
			if err == nil && !st.Success() {
				err = fmt.Errorf("/bin/true: %v", st)
			}
			if err == nil {
				err = c.Delete(ctx)
			}
			return time.Since(t0), err
		})
	}
	return fmt.Errorf("unknown command %q", cmd)
}

// times runs f n times and prints each duration in seconds.
func times(n int, f func() (time.Duration, error)) error {
	for range n {
		d, err := f()
		if err != nil {
			return err
		}
		fmt.Printf("%.6f\n", d.Seconds())
	}
	return nil
}

// unpack times Unpack of name from nothing, then removes its snapshots.
func unpack(ctx context.Context, s *layer.Store, name string) (time.Duration, error) {
	t0 := time.Now()
	img, err := s.Unpack(ctx, name)
	d := time.Since(t0)
	if err != nil {
		return 0, err
	}
	chain := layer.ChainIDs(img.Config.RootFS.DiffIDs)
	slices.Reverse(chain)
	for _, id := range chain {
		if err := s.Snapshots.Remove(ctx, id.String()); err != nil {
			return 0, err
		}
	}
	return d, nil
}

// commit prepares a container's snapshot on name, changes one file in it,
// and times its Commit.
func commit(ctx context.Context, s *layer.Store, name string) (time.Duration, error) {
	const key = "bench-commit"
	img, mounts, err := s.Prepare(ctx, key, name)
	if err != nil {
		return 0, err
	}
	defer s.Release(ctx, key)
	dir, err := os.MkdirTemp("", "layerbench-")
	if err != nil {
		return 0, err
	}
	defer os.Remove(dir)
	if err := snapshot.MountAll(mounts, dir); err != nil {
		return 0, err
	}
	err = os.WriteFile(filepath.Join(dir, "etc/motd"), []byte(time.Now().String()), 0o644)
	if uerr := snapshot.Unmount(dir); err == nil {
		err = uerr
	}
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	_, err = s.Commit(ctx, key, img, layer.CommitOptions{})
	return time.Since(t0), err
}

// build stores the image: goroot under its own path, then busybox.
func build(ctx context.Context, s *layer.Store, name, goroot string) error {
	bb, err := containertest.TempBusyboxRootfs()
	if err != nil {
		return err
	}
	defer os.RemoveAll(bb)
	img := ocispec.Image{Config: ocispec.ImageConfig{Cmd: []string{"/usr/local/go/bin/go", "version"}, Env: []string{"PATH=/usr/local/go/bin:/bin"}}}
	img.RootFS.Type = "layers"
	img.OS, img.Architecture = "linux", runtime.GOARCH
	m := ocispec.Manifest{Versioned: specsv.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range []struct{ dir, prefix string }{{goroot, goroot}, {bb, "/"}} {
		desc, diffID, err := putLayer(ctx, s, l.dir, l.prefix)
		if err != nil {
			return err
		}
		m.Layers = append(m.Layers, desc)
		img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, diffID)
	}
	cb, _ := json.Marshal(img)
	cd, err := s.Content.Put(ctx, ocispec.MediaTypeImageConfig, bytes.NewReader(cb), "")
	if err != nil {
		return err
	}
	m.Config = cd
	mb, _ := json.Marshal(m)
	md, err := s.Content.Put(ctx, ocispec.MediaTypeImageManifest, bytes.NewReader(mb), "")
	if err != nil {
		return err
	}
	if err := s.Content.Tag(ctx, name, md); err != nil {
		return err
	}
	fmt.Println(filepath.Join(s.Content.Root(), "blobs", m.Layers[0].Digest.Algorithm().String(), m.Layers[0].Digest.Encoded()))
	return nil
}

// putLayer stores dir as a gzip layer whose entries are under prefix.
func putLayer(ctx context.Context, s *layer.Store, dir, prefix string) (ocispec.Descriptor, digest.Digest, error) {
	pr, pw := io.Pipe()
	h := sha256.New()
	go func() {
		zw := gzip.NewWriter(pw)
		err := writeTar(io.MultiWriter(h, zw), dir, prefix)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	desc, err := s.Content.Put(ctx, ocispec.MediaTypeImageLayerGzip, pr, "")
	pr.Close()
	return desc, digest.NewDigestFromBytes(digest.SHA256, h.Sum(nil)), err
}

func writeTar(w io.Writer, dir, prefix string) error {
	tw := tar.NewWriter(w)
	// The parents of prefix.
	var parents []string
	for p := filepath.Dir(filepath.Clean(prefix)); p != "/" && p != "."; p = filepath.Dir(p) {
		parents = append(parents, p)
	}
	slices.Reverse(parents)
	for _, p := range parents {
		if err := tw.WriteHeader(&tar.Header{Name: p[1:] + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: time.Unix(0, 0)}); err != nil {
			return err
		}
	}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		name := filepath.Join(prefix, rel)[1:]
		if name == "" {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if info.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		hdr, err := tar.FileInfoHeader(info, link)
		if err != nil {
			return err
		}
		hdr.Name, hdr.Uname, hdr.Gname = name, "", ""
		if info.IsDir() {
			hdr.Name += "/"
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if info.Mode().IsRegular() {
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.Copy(tw, f)
			return err
		}
		return nil
	})
	if err != nil {
		return err
	}
	return tw.Close()
}
