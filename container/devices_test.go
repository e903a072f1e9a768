package container

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/namespace"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// probeScript opens each path given for reading and for writing and
// prints "PATH r:RESULT w:RESULT", RESULT "ok" or the shell's error.
const probeScript = `probe() { r=$( { true <"$1"; } 2>&1 ) && r=ok; w=$( { true >"$1"; } 2>&1 ) && w=ok; echo "probe $1 r:$r w:$w"; }
for d in "$@"; do probe "$d"; done`

// probeResults parses probeScript's output into path -> "r:... w:...".
func probeResults(out string) map[string]string {
	got := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if line, ok := strings.CutPrefix(line, "probe "); ok {
			p, rest, _ := strings.Cut(line, " ")
			got[p] = rest
		}
	}
	return got
}

const (
	okRW   = "r:ok w:ok"
	denied = "Operation not permitted"
)

func TestDefaultDevices(t *testing.T) {
	needRoot(t)
	script := probeScript + `
mknod /dev/sda b 8 0 && echo mknod sda ok
mknod /dev/mem c 1 1 && echo mknod mem ok
mknod /dev/lc c 10 237 && echo mknod lc ok
probe /dev/sda; probe /dev/mem; probe /dev/lc
head -c1 /dev/zero | od -An -tx1; head -c4 /dev/urandom | wc -c; echo x >/dev/full || echo full: write refused`
	out, st := run(t, &Spec{Process: Process{Args: []string{"sh", "-c", script, "sh",
		"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/ptmx", "/dev/tty"}}})
	if !st.Success() {
		t.Fatalf("%v: %s", st, out)
	}
	got := probeResults(out)
	for _, d := range []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/ptmx"} {
		if got[d] != okRW {
			t.Errorf("%s: %q, want %q", d, got[d], okRW)
		}
	}
	// /dev/tty is allowed; with no controlling terminal the kernel
	// answers ENXIO, not the cgroup's EPERM.
	if tty := got["/dev/tty"]; strings.Contains(tty, denied) || !strings.Contains(tty, "No such device or address") {
		t.Errorf("/dev/tty: %q, want ENXIO", tty)
	}
	// mknod is allowed, as with Docker; using the node is not.
	for _, d := range []string{"sda", "mem", "lc"} {
		if !strings.Contains(out, "mknod "+d+" ok") {
			t.Errorf("mknod %s failed: %s", d, out)
		}
		if r := got["/dev/"+d]; strings.Count(r, denied) != 2 {
			t.Errorf("/dev/%s: %q, want both opens refused with EPERM", d, r)
		}
	}
	if !strings.Contains(out, " 00\n") || !strings.Contains(out, "\n4\n") || !strings.Contains(out, "full: write refused") {
		t.Errorf("reading zero and urandom, writing full: %s", out)
	}
}

// hostDevice returns the first of paths that is a character device on
// this host, or skips.
func hostDevice(t *testing.T, paths ...string) string {
	t.Helper()
	for _, p := range paths {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&fs.ModeCharDevice != 0 {
			return p
		}
	}
	t.Skipf("none of %v on this host", paths)
	return ""
}

func TestSpecDevices(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	fuse := hostDevice(t, "/dev/fuse", "/dev/loop-control", "/dev/net/tun")
	lc := hostDevice(t, "/dev/loop-control", "/dev/net/tun", "/dev/fuse")
	var hst unix.Stat_t
	if err := unix.Stat(fuse, &hst); err != nil {
		t.Fatal(err)
	}
	uid := uint32(1000)
	spec := &Spec{
		Devices: []Device{
			{HostPath: fuse},
			{HostPath: lc, Path: "/dev/sub/ro", Access: "r", FileMode: 0o640, UID: &uid},
		},
		Process: Process{Args: []string{"sleep", "60"}},
	}
	c := startSleeper(t, spec)
	probe := func(paths ...string) map[string]string {
		t.Helper()
		var out bytes.Buffer
		p, err := c.Exec(ctx, Process{Args: append([]string{"sh", "-c", probeScript + "\nstat -c '%n %F %t:%T %a %u' " + fuse + " /dev/sub/ro", "sh"}, paths...), Stdout: &out, Stderr: &out})
		if err != nil {
			t.Fatal(err)
		}
		if st, err := p.Wait(ctx); err != nil || !st.Success() {
			t.Fatalf("probe: %v %v: %s", st, err, out.String())
		}
		got := probeResults(out.String())
		got["stat"] = out.String()
		return got
	}
	check := func(when string) {
		t.Helper()
		got := probe(fuse, "/dev/sub/ro", "/dev/zero")
		if got[fuse] != okRW || got["/dev/zero"] != okRW {
			t.Errorf("%s: %s: %q, /dev/zero: %q; want both %q", when, fuse, got[fuse], got["/dev/zero"], okRW)
		}
		if r := got["/dev/sub/ro"]; !strings.HasPrefix(r, "r:ok w:") || !strings.Contains(r, denied) {
			t.Errorf("%s: /dev/sub/ro (access r): %q, want read ok and write refused", when, r)
		}
		want := fuse + " character special file " + strings.TrimPrefix(hexDev(hst.Rdev), "") + " " + octal(hst.Mode&0o7777) + " 0\n"
		if !strings.Contains(got["stat"], want) || !strings.Contains(got["stat"], "/dev/sub/ro character special file") || !strings.Contains(got["stat"], " 640 1000\n") {
			t.Errorf("%s: nodes: %q, want %q and /dev/sub/ro 640 owned by 1000", when, got["stat"], want)
		}
	}
	check("after Start")
	// Update keeps the device rules, which are not part of the limits
	// it is given (no limits at all here, so that the test runs on a v2
	// view of a v1 host too, see scripts/v2view.sh).
	if err := c.Update(cgroup.Resources{}); err != nil {
		t.Fatal(err)
	}
	check("after Update")
	if got := probe("/dev/zero")["/dev/zero"]; got != okRW {
		t.Errorf("after Update: /dev/zero %q", got)
	}
}

func hexDev(rdev uint64) string {
	const digits = "0123456789abcdef"
	h := func(n uint32) string {
		if n == 0 {
			return "0"
		}
		var b []byte
		for ; n > 0; n /= 16 {
			b = append([]byte{digits[n%16]}, b...)
		}
		return string(b)
	}
	return h(unix.Major(rdev)) + ":" + h(unix.Minor(rdev))
}

func octal(m uint32) string {
	var b []byte
	for ; m > 0; m /= 8 {
		b = append([]byte{byte('0' + m%8)}, b...)
	}
	if len(b) == 0 {
		return "0"
	}
	return string(b)
}

// TestDeviceRulesAdd checks Resources.Devices, added after the defaults
// (`docker run --device-cgroup-rule`), including a deny rule taking back
// a default.
func TestDeviceRulesAdd(t *testing.T) {
	needRoot(t)
	allowLC, _ := cgroup.ParseDeviceRule("c 10:237 r") // loop-control
	denyFull, _ := cgroup.ParseDeviceRule("deny c 1:7 rwm")
	out, st := run(t, &Spec{
		Resources: cgroup.Resources{Devices: []cgroup.DeviceRule{allowLC, denyFull}},
		Process:   Process{Args: []string{"sh", "-c", "mknod /dev/lc c 10 237; " + probeScript, "sh", "/dev/lc", "/dev/full", "/dev/null"}},
	})
	if !st.Success() {
		t.Fatalf("%v: %s", st, out)
	}
	got := probeResults(out)
	if r := got["/dev/lc"]; !strings.HasPrefix(r, "r:ok w:") || !strings.Contains(r, denied) {
		t.Errorf("c 10:237 allowed r: %q", r)
	}
	if r := got["/dev/full"]; strings.Count(r, denied) != 2 {
		t.Errorf("/dev/full denied by a later rule: %q", r)
	}
	if got["/dev/null"] != okRW {
		t.Errorf("/dev/null: %q", got["/dev/null"])
	}
}

// TestDevicesUserNamespace: mknod is refused in a user namespace, so init
// bind-mounts the host's node.
func TestDevicesUserNamespace(t *testing.T) {
	needRoot(t)
	dev := hostDevice(t, "/dev/fuse", "/dev/loop-control", "/dev/net/tun")
	out, st := run(t, &Spec{
		Namespaces:  map[namespace.Kind]Namespace{namespace.User: {Mode: NamespaceNew}},
		UIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		Devices:     []Device{{HostPath: dev, Path: "/dev/x"}},
		Process:     sh("[ -c /dev/x ] && echo is-char; grep -c ' /dev/x ' /proc/self/mountinfo"),
	})
	if !st.Success() || out != "is-char\n1\n" {
		t.Errorf("%v: %q, want a bind-mounted character device", st, out)
	}
}

func TestDevicesBadInput(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	for _, tc := range []struct {
		name string
		dev  Device
		want string
	}{
		{"missing", Device{HostPath: "/dev/berth-no-such-device"}, "device /dev/berth-no-such-device does not exist on the host"},
		{"regular file", Device{HostPath: "/etc/hostname", Path: "/dev/h"}, "not a character or block device"},
		{"directory", Device{HostPath: "/dev/net", Path: "/dev/n"}, "not a character or block device"},
		{"relative", Device{HostPath: "dev/fuse"}, "host path must be absolute"},
		{"outside /dev", Device{HostPath: "/dev/zero", Path: "/etc/zero"}, "below /dev"},
		{"reserved", Device{HostPath: "/dev/zero", Path: "/dev/null"}, "berth makes /dev/null itself"},
		{"in pts", Device{HostPath: "/dev/zero", Path: "/dev/pts/9"}, "berth makes /dev/pts itself"},
		{"unclean", Device{HostPath: "/dev/zero", Path: "/dev/a/../b"}, "clean path"},
		{"access", Device{HostPath: "/dev/zero", Path: "/dev/z", Access: "rx"}, `access "rx"`},
		{"mode", Device{HostPath: "/dev/zero", Path: "/dev/z", FileMode: fs.ModeSetuid | 0o666}, "permission bits only"},
	} {
		_, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"), Devices: []Device{tc.dev}})
		if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrInvalidSpec mentioning %q", tc.name, err, tc.want)
		}
		if tc.name == "missing" && !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("missing device: %v does not match fs.ErrNotExist", err)
		}
	}
	twice := []Device{{HostPath: "/dev/zero", Path: "/dev/z"}, {HostPath: "/dev/null", Path: "/dev/z"}}
	if _, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"), Devices: twice}); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("one path twice: %v", err)
	}
	bad := cgroup.DeviceRule{Allow: true, Type: 'x', Access: "r"}
	if _, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: sh("true"), Resources: cgroup.Resources{Devices: []cgroup.DeviceRule{bad}}}); !errors.Is(err, ErrInvalidSpec) || !errors.Is(err, cgroup.ErrInvalid) {
		t.Errorf("bad device rule: %v", err)
	}
	checkNoLeaks(t, before)
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]Device{
		"/dev/fuse":                {HostPath: "/dev/fuse"},
		"/dev/fuse:rw":             {HostPath: "/dev/fuse", Access: "rw"},
		"/dev/sdb:/dev/xvdb":       {HostPath: "/dev/sdb", Path: "/dev/xvdb"},
		"/dev/sdb:/dev/xvdb:r":     {HostPath: "/dev/sdb", Path: "/dev/xvdb", Access: "r"},
		"/dev/net/tun:/dev/net/tx": {HostPath: "/dev/net/tun", Path: "/dev/net/tx"},
	} {
		if got, err := ParseDevice(in); err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("ParseDevice(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "fuse", "/dev/fuse:/dev/f:rw:x", "/dev/fuse:rwx", "/dev/fuse:/tmp/f", "/dev/fuse:rr"} {
		if _, err := ParseDevice(in); !errors.Is(err, ErrInvalidSpec) {
			t.Errorf("ParseDevice(%q) = %v, want ErrInvalidSpec", in, err)
		}
	}
}

func TestFromOCIDevices(t *testing.T) {
	dev := hostDevice(t, "/dev/fuse", "/dev/loop-control", "/dev/net/tun")
	var st unix.Stat_t
	if err := unix.Stat(dev, &st); err != nil {
		t.Fatal(err)
	}
	major, minor := int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
	node := fmt.Sprintf("c %d:%d", major, minor)
	mode := fs.FileMode(0o600)
	n := func(v int64) *int64 { return &v }
	base := func(devs ...specs.LinuxDevice) *specs.Spec {
		return &specs.Spec{Root: &specs.Root{Path: "/"}, Process: &specs.Process{Args: []string{"x"}}, Linux: &specs.Linux{
			Devices: devs,
			Resources: &specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{
				{Allow: false, Access: "rwm"}, {Allow: true, Type: "c", Major: n(1), Minor: n(5), Access: "rw"},
			}},
		}}
	}
	// The standard devices, which some tools list, are made anyway.
	null := specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 3}
	out, err := FromOCI(base(null, specs.LinuxDevice{Path: dev, Type: "c", Major: major, Minor: minor, FileMode: &mode}), "")
	if err != nil {
		t.Fatal(err)
	}
	if want := []Device{{HostPath: dev, FileMode: 0o600}}; !reflect.DeepEqual(out.Devices, want) {
		t.Errorf("Devices = %+v, want %+v", out.Devices, want)
	}
	if want := []cgroup.DeviceRule{{Allow: true, Type: cgroup.CharDevice, Major: 1, Minor: 5, Access: "rw"}}; !reflect.DeepEqual(out.Resources.Devices, want) {
		t.Errorf("Resources.Devices = %+v, want %+v", out.Resources.Devices, want)
	}
	for _, tc := range []struct {
		dev  specs.LinuxDevice
		want string
	}{
		{specs.LinuxDevice{Path: dev, Type: "c", Major: major, Minor: minor + 1}, "the host's node is " + node},
		{specs.LinuxDevice{Path: dev, Type: "b", Major: major, Minor: minor}, "the host's node is " + node},
		{specs.LinuxDevice{Path: "/dev/null", Type: "c", Major: 1, Minor: 5}, "berth makes /dev/null itself"},
		{specs.LinuxDevice{Path: "/dev/berth-none", Type: "c", Major: 1, Minor: 5}, "the host has none there"},
		{specs.LinuxDevice{Path: dev, Type: "x"}, `type "x"`},
	} {
		if _, err := FromOCI(base(tc.dev), ""); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("FromOCI(%+v) = %v, want ErrInvalidSpec mentioning %q", tc.dev, err, tc.want)
		}
	}
}

// An image whose layer holds device nodes unpacks in a root store; in the
// container the cgroup decides which of them can be opened.
func TestImageWithDeviceNodes(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	store, fresh := newImageStore(t)
	devs := t.TempDir()
	if err := os.Mkdir(filepath.Join(devs, "devs"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range []struct {
		name string
		mode uint32
		dev  int
	}{
		{"null2", unix.S_IFCHR | 0o666, int(unix.Mkdev(1, 3))},
		{"disk", unix.S_IFBLK | 0o660, int(unix.Mkdev(8, 0))},
		{"mem", unix.S_IFCHR | 0o640, int(unix.Mkdev(1, 1))},
	} {
		if err := unix.Mknod(filepath.Join(devs, "devs", n.name), n.mode, n.dev); err != nil {
			t.Fatal(err)
		}
	}
	importImage(t, store, "example.com/devs:v1", ocispec.ImageConfig{}, fresh, devs)
	c, out := startIn(t, &Runtime{Images: store}, &Spec{Image: "example.com/devs:v1",
		Process: Process{Args: []string{"sh", "-c", probeScript, "sh", "/devs/null2", "/devs/disk", "/devs/mem"}}})
	if st, err := c.Wait(ctx); err != nil || !st.Success() {
		t.Fatalf("%v %v: %s", st, err, out)
	}
	got := probeResults(out.String())
	if got["/devs/null2"] != okRW {
		t.Errorf("/devs/null2 (c 1:3, allowed): %q", got["/devs/null2"])
	}
	for _, d := range []string{"/devs/disk", "/devs/mem"} {
		if strings.Count(got[d], denied) != 2 {
			t.Errorf("%s (not allowed): %q, want EPERM", d, got[d])
		}
	}
}
