package layer

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berthlabs/berth/layer/archive"
	"github.com/berthlabs/berth/layer/snapshot"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// deviceLayer is a layer holding a character device, a block device and
// a fifo, in a directory other than /dev.
func deviceLayer(t testing.TB, extra ...tar.Header) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := append([]tar.Header{
		{Name: "devs/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "devs/null2", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 3, Mode: 0o666},
		{Name: "devs/disk", Typeflag: tar.TypeBlock, Devmajor: 8, Devminor: 0, Mode: 0o660, Gid: 6},
		{Name: "devs/pipe", Typeflag: tar.TypeFifo, Mode: 0o644},
	}, extra...)
	for _, h := range hdrs {
		if err := tw.WriteHeader(&h); err != nil {
			t.Fatal(err)
		}
	}
	tw.Close()
	return buf.Bytes()
}

// A root store unpacks device nodes (on every snapshotter) and fifos,
// with their numbers, modes and owners.
func TestUnpackDeviceNodes(t *testing.T) {
	forEachSnapshotter(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		putImage(t, s, "example.com/devs:v1", ocispec.ImageConfig{}, deviceLayer(t))
		_, ms, err := s.Prepare(ctx, "devs-rootfs", "example.com/devs:v1")
		if err != nil {
			t.Fatal(err)
		}
		dir := t.TempDir()
		if err := snapshot.MountAll(ms, dir); err != nil {
			t.Fatal(err)
		}
		defer func() {
			if err := snapshot.Unmount(dir); err != nil {
				t.Error(err)
			}
		}()
		func() {
			for _, want := range []struct {
				name         string
				mode         uint32
				major, minor uint32
				gid          uint32
			}{
				{"null2", unix.S_IFCHR | 0o666, 1, 3, 0},
				{"disk", unix.S_IFBLK | 0o660, 8, 0, 6},
				{"pipe", unix.S_IFIFO | 0o644, 0, 0, 0},
			} {
				var st unix.Stat_t
				if err := unix.Lstat(filepath.Join(dir, "devs", want.name), &st); err != nil {
					t.Error(err)
					continue
				}
				if st.Mode != want.mode || st.Gid != want.gid || (want.mode&unix.S_IFMT != unix.S_IFIFO &&
					(unix.Major(st.Rdev) != want.major || unix.Minor(st.Rdev) != want.minor)) {
					t.Errorf("%s: mode %o %d:%d gid %d, want %o %d:%d gid %d", want.name, st.Mode,
						unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Gid, want.mode, want.major, want.minor, want.gid)
				}
			}
		}()
	})
}

// The hostile-tar rules hold for device entries too, and a store whose
// snapshot directory others can reach refuses device nodes, saying why.
func TestUnpackDeviceNodesRefused(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	s := openStore(t, "copy")
	out := t.TempDir()
	// A device through a symlink that leads out of the root resolves
	// inside it (there to a missing directory: an error).
	putImage(t, s, "example.com/escape:v1", ocispec.ImageConfig{}, deviceLayer(t,
		tar.Header{Name: "out", Typeflag: tar.TypeSymlink, Linkname: out},
		tar.Header{Name: "out/mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1, Mode: 0o666}))
	if _, err := s.Unpack(ctx, "example.com/escape:v1"); err == nil || !strings.Contains(err.Error(), `"out/mem"`) {
		t.Errorf("a device through a symlink out of the root: %v, want an error naming it", err)
	}
	if ents, _ := os.ReadDir(out); len(ents) != 0 {
		t.Errorf("a device entry through a symlink reached outside the root: %v", ents)
	}
	putImage(t, s, "example.com/dotdot:v1", ocispec.ImageConfig{}, deviceLayer(t,
		tar.Header{Name: "../mem", Typeflag: tar.TypeChar, Devmajor: 1, Devminor: 1, Mode: 0o666}))
	if _, err := s.Unpack(ctx, "example.com/dotdot:v1"); !errors.Is(err, archive.ErrUnsafe) || errors.Is(err, archive.ErrDeviceNode) {
		t.Errorf("a device named ../mem: %v, want ErrUnsafe for the path", err)
	}

	open := openStore(t, "copy")
	if err := os.Chmod(filepath.Join(open.root, "snapshots"), 0o755); err != nil {
		t.Fatal(err)
	}
	putImage(t, open, "example.com/devs:v1", ocispec.ImageConfig{}, deviceLayer(t))
	_, err := open.Unpack(ctx, "example.com/devs:v1")
	if !errors.Is(err, archive.ErrDeviceNode) || !errors.Is(err, archive.ErrUnsafe) || !strings.Contains(err.Error(), "is open to users other than root") {
		t.Errorf("unpack into a store open to other users: %v, want ErrDeviceNode saying why", err)
	}
	var n int
	open.Snapshots.Walk(ctx, func(snapshot.Info) error { n++; return nil })
	if n != 0 {
		t.Errorf("the failed unpack left %d snapshots", n)
	}
}
