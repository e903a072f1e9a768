package registry

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/busybox"
	"github.com/berthlabs/berth/internal/regtest"
	"github.com/berthlabs/berth/layer"
	digest "github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// tool finds a peer program: in PATH, or in the repository's bin/ where
// scripts/deps.sh installs crane.
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	if p, err := filepath.Abs(filepath.Join("..", "bin", name)); err == nil {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Skipf("%s is not installed (scripts/deps.sh installs it)", name)
	return ""
}

func runTool(t *testing.T, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// busyboxImage imports a busybox root filesystem as name into store.
func busyboxImage(t *testing.T, store *layer.Store, name string) {
	t.Helper()
	dir, err := busybox.TempRootfs()
	if err != nil {
		t.Skipf("busybox: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if _, err := store.ImportDirs(testCtx(t), name, ocispec.ImageConfig{Cmd: []string{"sh"}, Env: []string{"PATH=/bin"}}, dir); err != nil {
		t.Fatal(err)
	}
}

func TestInteropOthersReadWhatBerthPushes(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	store := openStore(t)
	busyboxImage(t, store, "example.com/bb:v1")
	pushed, err := New().Push(ctx, reg.Ref("interop/bb", "v1"), store, "example.com/bb:v1")
	if err != nil {
		t.Fatal(err)
	}
	var inspect struct {
		Digest string
		Layers []string
		Os     string
	}
	if err := json.Unmarshal(runTool(t, "skopeo", "inspect", "--tls-verify=false", "docker://"+reg.Ref("interop/bb", "v1")), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Digest != pushed.Descriptor.Digest.String() || len(inspect.Layers) != 1 || inspect.Os != "linux" {
		t.Errorf("skopeo inspect: %+v, pushed %s", inspect, pushed.Descriptor.Digest)
	}
	m := runTool(t, "crane", "manifest", "--insecure", reg.Ref("interop/bb", "v1"))
	if digest.FromBytes(m) != pushed.Descriptor.Digest {
		t.Errorf("crane manifest has digest %s, pushed %s", digest.FromBytes(m), pushed.Descriptor.Digest)
	}
	// crane reads every blob back (and verifies them).
	runTool(t, "crane", "validate", "--insecure", "--remote", reg.Ref("interop/bb", "v1"))
}

func TestInteropBerthRunsWhatSkopeoPushes(t *testing.T) {
	needRegistry(t)
	if os.Getuid() != 0 {
		t.Skip("running a container needs root")
	}
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	src := openStore(t)
	busyboxImage(t, src, "example.com/bb:v1")
	layout := t.TempDir()
	if err := src.Content.ExportLayout(ctx, layout, "example.com/bb:v1"); err != nil {
		t.Fatal(err)
	}
	runTool(t, "skopeo", "copy", "--dest-tls-verify=false", "oci:"+layout+":example.com/bb:v1", "docker://"+reg.Ref("skopeo/bb", "v1"))

	store := openStore(t)
	pulled, err := New().Pull(ctx, reg.Ref("skopeo/bb", "v1"), store)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	c, err := (&container.Runtime{Images: store}).Create(ctx, "interop-"+strings.ReplaceAll(t.Name(), "/", "-"), &container.Spec{
		Image:   pulled.Name,
		Process: container.Process{Args: []string{"sh", "-c", "echo pulled and running; cat /proc/1/comm >/dev/null"}, Stdout: &out, Stderr: &out},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx)
	if err != nil || !st.Success() || out.String() != "pulled and running\n" {
		t.Fatalf("container: %v %v %q", st, err, out.String())
	}
}

func TestPullIndexPlatform(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	host, err := regtest.NewTestImage(map[string]string{"etc/arch": "host\n"})
	if err != nil {
		t.Fatal(err)
	}
	other, err := regtest.NewTestImage(map[string]string{"etc/arch": "other\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range []*regtest.TestImage{host, other} {
		if err := reg.PushImage(ctx, "multi/app", "", img); err != nil {
			t.Fatal(err)
		}
	}
	otherArch := "riscv64"
	if runtime.GOARCH == otherArch {
		otherArch = "s390x"
	}
	desc := func(img *regtest.TestImage, arch string) ocispec.Descriptor {
		return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.Digest(img.Manifest.Digest), Size: int64(len(img.Manifest.Data)),
			Platform: &ocispec.Platform{OS: "linux", Architecture: arch}}
	}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
		Manifests: []ocispec.Descriptor{desc(other, otherArch), desc(host, runtime.GOARCH)}})
	idxDigest, err := reg.PutManifest(ctx, "multi/app", "v1", ocispec.MediaTypeImageIndex, idx)
	if err != nil {
		t.Fatal(err)
	}
	c := New()
	got, err := c.Pull(ctx, reg.Ref("multi/app", "v1"), openStore(t))
	if err != nil {
		t.Fatal(err)
	}
	if got.Index == nil || got.Index.Digest.String() != idxDigest || got.Manifest.Digest.String() != host.Manifest.Digest {
		t.Errorf("default platform: %+v", got)
	}
	got, err = c.Pull(ctx, reg.Ref("multi/app", idxDigest), openStore(t), WithPlatform(ocispec.Platform{OS: "linux", Architecture: otherArch}), WithoutUnpack())
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest.Digest.String() != other.Manifest.Digest || got.Name != reg.Host+"/multi/app@"+other.Manifest.Digest {
		t.Errorf("other platform: %+v", got)
	}
	if _, err := c.Pull(ctx, reg.Ref("multi/app", "v1"), openStore(t), WithPlatform(ocispec.Platform{OS: "windows", Architecture: "amd64"})); !strings.Contains(errString(err), "no image manifest for windows/amd64") {
		t.Errorf("missing platform: %v", err)
	}
	r, err := c.Inspect(ctx, reg.Ref("multi/app", "v1"))
	if err != nil || r.Index == nil || len(r.Index.Manifests) != 2 || r.ManifestDescriptor.Digest.String() != host.Manifest.Digest {
		t.Errorf("inspect index: %+v %v", r, err)
	}
	// Copy takes the whole index.
	if err := c.Copy(ctx, reg.Ref("multi/app", "v1"), reg.Ref("multi/copy", "v1")); err != nil {
		t.Fatal(err)
	}
	r, err = c.Inspect(ctx, reg.Ref("multi/copy", "v1"))
	if err != nil || r.Descriptor.Digest.String() != idxDigest {
		t.Errorf("copied index: %+v %v", r, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestPushIndex pushes an index whose platform manifests are all in the
// store.
func TestPushIndex(t *testing.T) {
	needRegistry(t)
	ctx := testCtx(t)
	reg := regtest.Start(t, regtest.Options{})
	store := openStore(t)
	var descs []ocispec.Descriptor
	for i, arch := range []string{"amd64", "arm64"} {
		img, err := regtest.NewTestImage(map[string]string{"etc/arch": arch, "n": strings.Repeat("x", i)})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range append(append([]regtest.Blob{}, img.Layers...), img.Config, img.Manifest) {
			if _, err := store.Content.Put(ctx, b.MediaType, bytes.NewReader(b.Data), digest.Digest(b.Digest)); err != nil {
				t.Fatal(err)
			}
		}
		d := img.Manifest.Descriptor()
		d.Platform = &ocispec.Platform{OS: "linux", Architecture: arch}
		descs = append(descs, d)
	}
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: descs})
	d, err := store.Content.Put(ctx, ocispec.MediaTypeImageIndex, bytes.NewReader(idx), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Content.Tag(ctx, "example.com/multi:v1", d); err != nil {
		t.Fatal(err)
	}
	pushed, err := New().Push(ctx, reg.Ref("multi/pushed", "v1"), store, "example.com/multi:v1")
	if err != nil {
		t.Fatal(err)
	}
	if pushed.Descriptor.Digest != d.Digest || pushed.Uploaded != 4 {
		t.Errorf("pushed %+v", pushed)
	}
	r, err := New().Inspect(ctx, reg.Ref("multi/pushed", "v1"), WithPlatform(ocispec.Platform{OS: "linux", Architecture: "arm64"}))
	if err != nil || r.Index == nil || r.ManifestDescriptor.Digest != descs[1].Digest {
		t.Fatalf("inspect: %+v %v", r, err)
	}
	raw := runTool(t, "skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+reg.Ref("multi/pushed", "v1"))
	if digest.FromBytes(raw) != d.Digest {
		t.Errorf("skopeo reads an index of digest %s, pushed %s", digest.FromBytes(raw), d.Digest)
	}
}
