package cgroup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseDeviceRule(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want DeviceRule
		str  string
	}{
		{"c 1:3 rwm", DeviceRule{Allow: true, Type: CharDevice, Major: 1, Minor: 3, Access: "rwm"}, "c 1:3 rwm"},
		{"c 136:* rw", DeviceRule{Allow: true, Type: CharDevice, Major: 136, Minor: Wildcard, Access: "rw"}, "c 136:* rw"},
		{"b *:* m", DeviceRule{Allow: true, Type: BlockDevice, Major: Wildcard, Minor: Wildcard, Access: "m"}, "b *:* m"},
		{"a", DeviceRule{Allow: true, Type: AllDevices, Major: Wildcard, Minor: Wildcard, Access: "rwm"}, "a"},
		{"a *:* rwm", DeviceRule{Allow: true, Type: AllDevices, Major: Wildcard, Minor: Wildcard, Access: "rwm"}, "a"},
		{"deny c 1:9 w", DeviceRule{Type: CharDevice, Major: 1, Minor: 9, Access: "w"}, "deny c 1:9 w"},
	} {
		got, err := ParseDeviceRule(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("ParseDeviceRule(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
		if s := got.String(); s != tc.str {
			t.Errorf("String() of %q = %q, want %q", tc.in, s, tc.str)
		}
	}
	for _, in := range []string{"", "c", "c 1:3", "x 1:3 rwm", "c 1 rwm", "c a:3 rwm", "c 1:3 rwx", "c 1:3 rr",
		"c 4096:0 r", "c 1:1048576 r", "c -2:0 r", "cc 1:3 r", "c 1:3 rwm extra"} {
		if _, err := ParseDeviceRule(in); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseDeviceRule(%q) = %v, want ErrInvalid", in, err)
		} else if !strings.Contains(err.Error(), "device rule") {
			t.Errorf("ParseDeviceRule(%q): %q does not name the device rule", in, err)
		}
	}
	if err := (&Resources{Devices: []DeviceRule{{Allow: true, Type: AllDevices, Major: 1}}}).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Validate(a 1:* ...) = %v, want ErrInvalid", err)
	}
}

func TestDevicesOCI(t *testing.T) {
	n := func(v int64) *int64 { return &v }
	in := []specs.LinuxDeviceCgroup{
		{Allow: false, Access: "rwm"},
		{Allow: true, Type: "c", Major: n(1), Minor: n(3), Access: "rwm"},
		{Allow: true, Type: "c", Major: n(136), Access: "rwm"},
		{Allow: false, Type: "c", Major: n(1), Minor: n(3), Access: "w"},
	}
	r, err := FromOCI(&specs.LinuxResources{Devices: in})
	if err != nil {
		t.Fatal(err)
	}
	want := []DeviceRule{
		{Allow: true, Type: CharDevice, Major: 1, Minor: 3, Access: "rwm"},
		{Allow: true, Type: CharDevice, Major: 136, Minor: Wildcard, Access: "rwm"},
		{Type: CharDevice, Major: 1, Minor: 3, Access: "w"},
	}
	if !reflect.DeepEqual(r.Devices, want) {
		t.Errorf("FromOCI devices = %v, want %v", r.Devices, want)
	}
	back := r.OCI().Devices
	in[2].Minor = n(Wildcard)
	if !reflect.DeepEqual(back, in) {
		t.Errorf("OCI() devices = %+v, want %+v", back, in)
	}
	if r, err := FromOCI(&specs.LinuxResources{}); err != nil || r.Devices != nil {
		t.Errorf("FromOCI(no device rules) = %v, %v; want nil Devices", r.Devices, err)
	}
	if _, err := FromOCI(&specs.LinuxResources{Devices: []specs.LinuxDeviceCgroup{{Allow: true, Type: "q", Access: "r"}}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("FromOCI(type q) = %v, want ErrInvalid", err)
	}
}

// probeDevices runs a shell in c and reports, for each path, whether it
// could be opened for reading and for writing ("r", "w", "rw" or "").
func probeDevices(t *testing.T, c *Cgroup, paths ...string) map[string]string {
	t.Helper()
	script := `read go; for d in "$@"; do a=; if true <"$d"; then a=r; fi; if true >"$d"; then a=${a}w; fi; echo "$d=$a"; done 2>&1`
	cmd := exec.Command("sh", append([]string{"-c", script, "sh"}, paths...)...)
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	// Wait (in start's goroutine) waits for the copy to out to end.
	var out strings.Builder
	cmd.Stdout = &out
	p := start(t, cmd)
	if err := c.Add(p.pid); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(in, "go")
	if err, ok := p.wait(5e9); !ok || err != nil {
		t.Fatalf("probe: %v (ended: %v)", err, ok)
	}
	got := map[string]string{}
	for line := range strings.SplitSeq(out.String(), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			got[k] = v
		}
	}
	return got
}

// testDevices checks device rules through newCg against the kernel.
func testDevices(t *testing.T, newCg func(p string, r *Resources) (*Cgroup, error), p string) {
	nullOnly := []DeviceRule{{Allow: true, Type: CharDevice, Major: 1, Minor: 3, Access: "rwm"}}
	c, err := newCg(p, &Resources{Devices: nullOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Delete(context.Background())
	want := map[string]string{"/dev/null": "rw", "/dev/zero": "", "/dev/full": ""}
	if got := probeDevices(t, c, "/dev/null", "/dev/zero", "/dev/full"); !reflect.DeepEqual(got, want) {
		t.Errorf("with %v: %v, want %v", nullOnly, got, want)
	}

	// Update: zero read-only, and a later rule taking back null's write.
	rules := append(slices.Clone(nullOnly),
		DeviceRule{Allow: true, Type: CharDevice, Major: 1, Minor: 5, Access: "r"},
		DeviceRule{Type: CharDevice, Major: 1, Minor: 3, Access: "w"})
	if err := c.Update(&Resources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"/dev/null": "r", "/dev/zero": "r", "/dev/full": ""}
	if got := probeDevices(t, c, "/dev/null", "/dev/zero", "/dev/full"); !reflect.DeepEqual(got, want) {
		t.Errorf("with %v: %v, want %v", rules, got, want)
	}

	// A wildcard over a type.
	rules = []DeviceRule{{Allow: true, Type: CharDevice, Major: 1, Minor: Wildcard, Access: "rw"}}
	if err := c.Update(&Resources{Devices: rules}); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"/dev/null": "rw", "/dev/zero": "rw", "/dev/full": "rw"}
	if got := probeDevices(t, c, "/dev/null", "/dev/zero", "/dev/full"); !reflect.DeepEqual(got, want) {
		t.Errorf("with %v: %v, want %v", rules, got, want)
	}

	// Not controlled again.
	if err := c.Update(&Resources{}); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"/dev/null": "rw", "/dev/zero": "rw"}
	if got := probeDevices(t, c, "/dev/null", "/dev/zero"); !reflect.DeepEqual(got, want) {
		t.Errorf("with no rules: %v, want %v", got, want)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestDevices checks device rules on the host's cgroups (v1 here:
// devices.deny and devices.allow; v2: the eBPF filter).
func TestDevices(t *testing.T) {
	for _, v := range []Version{V1, V2} {
		t.Run(v.String(), func(t *testing.T) {
			skipUnless(t, v)
			testDevices(t, New, testPath(t))
		})
	}
}

// TestDevicesV2Filter checks the eBPF device filter against the kernel on
// a v1 host, in a cgroup2 hierarchy mounted for the test: device programs
// act on a process's v2 cgroup whatever the v1 controllers say.
func TestDevicesV2Filter(t *testing.T) {
	h := mountV2(t)
	top := fmt.Sprintf("/berth-devtest-%d", os.Getpid())
	t.Cleanup(func() {
		if err := rmdirTree(context.Background(), h.mount+top); err != nil {
			t.Errorf("remove %s: %v", top, err)
		}
	})
	newCg := func(p string, r *Resources) (*Cgroup, error) { return newCgroup(p, V2, newV2(h, p), r) }
	testDevices(t, newCg, top+"/c")

	// Loaded programs are cached and shared; one evicted from the cache
	// keeps filtering the cgroups it is attached to.
	var cgs []*Cgroup
	for i := range maxDevicePrograms + 2 {
		rules := []DeviceRule{
			{Allow: true, Type: CharDevice, Major: 1, Minor: 3, Access: "rwm"},
			{Allow: true, Type: CharDevice, Major: 1, Minor: int64(100 + i), Access: "r"},
		}
		c, err := newCg(fmt.Sprintf("%s/e%d", top, i), &Resources{Devices: rules})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Delete(context.Background())
		cgs = append(cgs, c)
	}
	if _, err := newCg(top+"/again", &Resources{Devices: cgs[1].Resources().Devices}); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"/dev/null": "rw", "/dev/zero": ""}
	for _, c := range []*Cgroup{cgs[0], cgs[len(cgs)-1]} {
		if got := probeDevices(t, c, "/dev/null", "/dev/zero"); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %v, want %v", c.Path(), got, want)
		}
	}
}

// BenchmarkDeviceFilter times what device rules add to a cgroup on v2:
// compile, load and attach Docker's default rules to a fresh cgroup (in a
// cgroup2 hierarchy mounted for the benchmark on a v1 host).
func BenchmarkDeviceFilter(b *testing.B) {
	if os.Geteuid() != 0 || HostVersion() != V1 {
		b.Skip("for root on a v1 host")
	}
	dir := b.TempDir()
	if err := unix.Mount("cgroup2", dir, "cgroup2", 0, ""); err != nil {
		b.Skip(err)
	}
	defer unix.Unmount(dir, 0)
	var rules []DeviceRule
	for _, l := range []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
		"c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"} {
		d, _ := ParseDeviceRule(l)
		rules = append(rules, d)
	}
	top := filepath.Join(dir, fmt.Sprintf("berth-bench-%d", os.Getpid()))
	if err := os.Mkdir(top, 0o755); err != nil {
		b.Fatal(err)
	}
	defer rmdirTree(context.Background(), top)
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		d := filepath.Join(top, strconv.Itoa(i))
		if err := os.Mkdir(d, 0o755); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := attachDeviceFilter(d, rules, true); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeviceFilterLoad(b *testing.B) {
	var rules []DeviceRule
	for _, l := range []string{"c *:* m", "b *:* m", "c 1:3 rwm", "c 1:5 rwm", "c 1:7 rwm", "c 1:8 rwm",
		"c 1:9 rwm", "c 5:0 rwm", "c 5:2 rwm", "c 136:* rwm"} {
		d, _ := ParseDeviceRule(l)
		rules = append(rules, d)
	}
	for b.Loop() {
		insts, err := deviceFilter(rules)
		if err != nil {
			b.Fatal(err)
		}
		prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.CGroupDevice, Instructions: insts, License: "Apache-2.0"})
		if err != nil {
			b.Fatal(err)
		}
		prog.Close()
	}
}
