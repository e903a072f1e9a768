package content

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"github.com/berthlabs/berth/internal/busybox"
	"github.com/opencontainers/go-digest"
)

// The interop tests check the store against real tools: skopeo and umoci
// read what the store writes, and the store reads what they write.

var (
	aptMu   sync.Mutex
	aptDone = map[string]error{}
)

// needTool returns the path of bin, installing Debian's pkg when it is
// missing and we are root; the test is skipped when that cannot be done.
func needTool(t *testing.T, bin, pkg string) string {
	t.Helper()
	if p, err := exec.LookPath(bin); err == nil {
		return p
	}
	if os.Getuid() != 0 {
		t.Skipf("%s is not installed and installing it needs root (apt-get install %s)", bin, pkg)
	}
	aptMu.Lock()
	err, tried := aptDone[pkg]
	if !tried {
		var out []byte
		out, err = exec.Command("apt-get", "update", "-qq").CombinedOutput()
		if err == nil {
			cmd := exec.Command("apt-get", "install", "-y", "-qq", "--no-install-recommends", pkg)
			cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
			out, err = cmd.CombinedOutput()
		}
		if err != nil {
			err = &aptError{err, out}
		}
		aptDone[pkg] = err
	}
	aptMu.Unlock()
	if err != nil {
		t.Skipf("%s is not installed and apt-get install %s failed: %v", bin, pkg, err)
	}
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Skipf("%s not found after installing %s", bin, pkg)
	}
	return p
}

type aptError struct {
	err error
	out []byte
}

func (e *aptError) Error() string { return e.err.Error() + ": " + string(bytes.TrimSpace(e.out)) }

func runTool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %q: %v\n%s%s", name, args, err, out, stderr.Bytes())
	}
	return out
}

const bbName = "docker.io/library/busybox:latest"

// busyboxImage puts an image of the host's static busybox (one gzip layer:
// /bin/busybox and /bin/sh -> busybox) into s and names it bbName.
func busyboxImage(t *testing.T, s *Store) (testImage, []byte) {
	t.Helper()
	p, err := busybox.Path()
	if err != nil {
		needTool(t, "busybox", "busybox-static")
		if p, err = busybox.Path(); err != nil {
			t.Skip(err)
		}
	}
	bin, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	layer := makeTar(t,
		tarEntry{name: "bin/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "bin/busybox", body: bin, mode: 0o755},
		tarEntry{name: "bin/sh", typ: tar.TypeSymlink, link: "busybox"},
	)
	img := putImage(t, s, runtime.GOARCH, true, layer)
	if err := s.Tag(context.Background(), bbName, img.manifest); err != nil {
		t.Fatal(err)
	}
	return img, bin
}

type skopeoInspect struct {
	Digest       digest.Digest
	Architecture string
	Os           string
	Layers       []digest.Digest
}

func inspect(t *testing.T, ref string) skopeoInspect {
	t.Helper()
	out := runTool(t, "skopeo", "inspect", ref)
	var got skopeoInspect
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("skopeo inspect %s: %v\n%s", ref, err, out)
	}
	return got
}

func TestInteropSkopeoInspectOCI(t *testing.T) {
	needTool(t, "skopeo", "skopeo")
	s := newStore(t)
	img, _ := busyboxImage(t, s)
	got := inspect(t, "oci:"+s.Root()+":"+bbName)
	if got.Digest != img.manifest.Digest || got.Os != "linux" || got.Architecture != runtime.GOARCH ||
		len(got.Layers) != 1 || got.Layers[0] != img.layers[0].Digest {
		t.Errorf("skopeo inspect = %+v\nwant manifest %s, layer %s", got, img.manifest.Digest, img.layers[0].Digest)
	}
}

func TestInteropUmociUnpack(t *testing.T) {
	needTool(t, "umoci", "umoci")
	s := newStore(t)
	_, bin := busyboxImage(t, s)
	dir := filepath.Join(t.TempDir(), "rootfs")
	runTool(t, "umoci", "raw", "unpack", "--image", s.Root()+":"+bbName, dir)
	b, err := os.ReadFile(filepath.Join(dir, "bin", "busybox"))
	if err != nil || !bytes.Equal(b, bin) {
		t.Errorf("umoci unpacked bin/busybox: %d bytes, %v; want the %d bytes of busybox", len(b), err, len(bin))
	}
	if target, err := os.Readlink(filepath.Join(dir, "bin", "sh")); err != nil || target != "busybox" {
		t.Errorf("bin/sh -> %q, %v", target, err)
	}
	if out, err := exec.Command(filepath.Join(dir, "bin", "busybox"), "echo", "hi").Output(); err != nil || string(out) != "hi\n" {
		t.Errorf("unpacked busybox: %q, %v", out, err)
	}
	// umoci's full unpack (a runtime bundle) works too.
	bundle := filepath.Join(t.TempDir(), "bundle")
	runTool(t, "umoci", "unpack", "--image", s.Root()+":"+bbName, bundle)
	if _, err := os.Stat(filepath.Join(bundle, "rootfs", "bin", "busybox")); err != nil {
		t.Error(err)
	}
	if _, err := os.Stat(filepath.Join(bundle, "config.json")); err != nil {
		t.Error(err)
	}
}

func TestInteropSaveSkopeoDockerArchive(t *testing.T) {
	needTool(t, "skopeo", "skopeo")
	ctx := context.Background()
	s := newStore(t)
	img, _ := busyboxImage(t, s)
	archive := filepath.Join(t.TempDir(), "busybox.tar")
	f, err := os.Create(archive)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, f, "busybox"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	got := inspect(t, "docker-archive:"+archive)
	if got.Os != "linux" || got.Architecture != runtime.GOARCH || len(got.Layers) != 1 ||
		(got.Layers[0] != img.diffIDs[0] && got.Layers[0] != img.layers[0].Digest) {
		t.Errorf("skopeo inspect docker-archive: %+v", got)
	}
	// skopeo reads the archive by its name too, and copies it out whole.
	inspect(t, "docker-archive:"+archive+":busybox:latest")
	out := filepath.Join(t.TempDir(), "oci")
	runTool(t, "skopeo", "--insecure-policy", "copy", "docker-archive:"+archive, "oci:"+out+":copied")
	s2 := newStore(t)
	if _, err := s2.ImportLayout(ctx, out); err != nil {
		t.Fatal(err)
	}
	d, err := s2.Resolve(ctx, "copied")
	if err != nil {
		t.Fatal(err)
	}
	m, cfg, err := s2.Manifest(ctx, d, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m.Config.Digest != img.config.Digest || len(cfg.RootFS.DiffIDs) != 1 || cfg.RootFS.DiffIDs[0] != img.diffIDs[0] {
		t.Errorf("skopeo's copy of the saved archive: config %s, diff IDs %v", m.Config.Digest, cfg.RootFS.DiffIDs)
	}
}

// TestInteropSkopeoCopyOCI: an image skopeo copies from the store into
// another layout comes back identical through ImportLayout.
func TestInteropSkopeoCopyOCI(t *testing.T) {
	needTool(t, "skopeo", "skopeo")
	ctx := context.Background()
	s := newStore(t)
	img, _ := busyboxImage(t, s)
	other := filepath.Join(t.TempDir(), "other")
	runTool(t, "skopeo", "--insecure-policy", "copy", "oci:"+s.Root()+":"+bbName, "oci:"+other+":"+bbName)

	s2 := newStore(t)
	imgs, err := s2.ImportLayout(ctx, other)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != bbName {
		t.Fatalf("ImportLayout = %+v", imgs)
	}
	want, _ := s.Resolve(ctx, bbName)
	got, err := s2.Resolve(ctx, bbName)
	if err != nil || got.Digest != want.Digest || got.Size != want.Size || got.MediaType != want.MediaType {
		t.Errorf("imported %+v, %v; want %+v", got, err, want)
	}
	if !jsonEqual(blobSet(t, s), blobSet(t, s2)) {
		t.Errorf("blobs differ:\n%v\n%v", blobSet(t, s), blobSet(t, s2))
	}
	for _, d := range img.digests() {
		a, _ := os.ReadFile(filepath.Join(s.Root(), "blobs", "sha256", d.Encoded()))
		b, _ := os.ReadFile(filepath.Join(s2.Root(), "blobs", "sha256", d.Encoded()))
		if !bytes.Equal(a, b) {
			t.Errorf("blob %s differs", d)
		}
	}
}

// TestInteropLoadSkopeoArchives loads archives skopeo writes: a docker
// archive (config, uncompressed layers, manifest.json) and an OCI archive.
func TestInteropLoadSkopeoArchives(t *testing.T) {
	needTool(t, "skopeo", "skopeo")
	ctx := context.Background()
	s := newStore(t)
	img, _ := busyboxImage(t, s)
	tmp := t.TempDir()

	dockerTar := filepath.Join(tmp, "docker.tar")
	runTool(t, "skopeo", "--insecure-policy", "copy", "oci:"+s.Root()+":"+bbName, "docker-archive:"+dockerTar+":busybox:skopeo")
	s2 := newStore(t)
	f, _ := os.Open(dockerTar)
	imgs, err := s2.Load(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != "docker.io/library/busybox:skopeo" {
		t.Fatalf("Load(skopeo docker-archive) = %+v", imgs)
	}
	m, cfg, err := s2.Manifest(ctx, imgs[0].Target, nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootFS.DiffIDs[0] != img.diffIDs[0] || len(m.Layers) != 1 {
		t.Errorf("loaded %+v, %+v", m, cfg.RootFS)
	}
	t.Logf("skopeo's docker archive loads as layer %s (%s)", m.Layers[0].Digest, m.Layers[0].MediaType)

	ociTar := filepath.Join(tmp, "oci.tar")
	runTool(t, "skopeo", "--insecure-policy", "copy", "oci:"+s.Root()+":"+bbName, "oci-archive:"+ociTar+":"+bbName)
	s3 := newStore(t)
	f, _ = os.Open(ociTar)
	imgs, err = s3.Load(ctx, f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].Name != bbName || imgs[0].Target.Digest != img.manifest.Digest {
		t.Errorf("Load(skopeo oci-archive) = %+v", imgs)
	}
}
