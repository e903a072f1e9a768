package cgroup

import (
	"errors"
	"reflect"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidate(t *testing.T) {
	valid := []Resources{
		{},
		{CPUShares: 2}, {CPUShares: 262144}, {CPUWeight: 1}, {CPUWeight: 10000},
		{CPUQuota: 1000}, {CPUQuota: 250000, CPUPeriod: 1000000}, {CPUPeriod: 1000},
		{CPUs: "0"}, {Mems: "0"},
		{MemoryLimit: 6 << 20}, {MemoryLimit: 1 << 30, MemorySwap: 1 << 30}, {MemoryLimit: 1 << 30, MemorySwap: -1},
		{MemoryLimit: 1 << 30, MemoryReservation: 1 << 30}, {MemoryReservation: 1 << 40},
		{PidsLimit: 1}, {IOWeight: 10}, {IOWeight: 1000},
	}
	for _, r := range valid {
		if err := r.Validate(); err != nil {
			t.Errorf("Validate(%+v) = %v, want nil", r, err)
		}
	}
	var nilRes *Resources
	if err := nilRes.Validate(); err != nil {
		t.Errorf("nil Validate = %v", err)
	}

	err := (&Resources{MemoryLimit: -5}).Validate()
	if got, want := err.Error(), "cgroup: invalid memory limit -5: must be positive"; got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
	var re *ResourceError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &re) || re.Field != "MemoryLimit" || re.Value != int64(-5) {
		t.Errorf("error %#v does not match ErrInvalid with Field MemoryLimit", err)
	}
	err = (&Resources{CPUs: "0,x"}).Validate()
	if !errors.As(err, &re) || re.Field != "CPUs" || !strings.Contains(err.Error(), `invalid cpus "0,x"`) {
		t.Errorf("CPUs error = %v", err)
	}
}

func TestParseSet(t *testing.T) {
	for in, want := range map[string][]int{"": nil, "0": {0}, "0-2,5": {0, 1, 2, 5}, "3,1-1": {1, 3}} {
		got, err := parseSet(in)
		if err != nil || len(got) != len(want) {
			t.Errorf("parseSet(%q) = %v, %v; want %v", in, got, err, want)
		}
		for _, n := range want {
			if !got[n] {
				t.Errorf("parseSet(%q) lacks %d", in, n)
			}
		}
	}
	for _, bad := range []string{",", "1,", "-1", "a", "2-1", "1-2-3", " 1"} {
		if _, err := parseSet(bad); err == nil {
			t.Errorf("parseSet(%q) = nil error", bad)
		}
	}
}

func TestSharesWeight(t *testing.T) {
	for _, c := range []struct{ shares, weight uint64 }{{0, 0}, {2, 1}, {1024, 39}, {262144, 10000}} {
		if got := SharesToWeight(c.shares); got != c.weight {
			t.Errorf("SharesToWeight(%d) = %d, want %d", c.shares, got, c.weight)
		}
	}
	for _, c := range []struct{ weight, shares uint64 }{{0, 0}, {1, 2}, {100, 2597}, {10000, 262144}} {
		if got := WeightToShares(c.weight); got != c.shares {
			t.Errorf("WeightToShares(%d) = %d, want %d", c.weight, got, c.shares)
		}
	}
	if got := ioWeightV2(10); got != 1 {
		t.Errorf("ioWeightV2(10) = %d", got)
	}
	if got := ioWeightV2(1000); got != 10000 {
		t.Errorf("ioWeightV2(1000) = %d", got)
	}
}

func ptr[T any](v T) *T { return &v }

func TestFromOCI(t *testing.T) {
	if r, err := FromOCI(nil); err != nil || !reflect.DeepEqual(*r, Resources{}) {
		t.Errorf("FromOCI(nil) = %+v, %v", r, err)
	}
	l := &specs.LinuxResources{
		// runc's default spec denies every device: Devices is then
		// empty, not nil.
		Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
		CPU:     &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000), Cpus: "0"},
		Memory:  &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](-1), Reservation: ptr[int64](32 << 20)},
		Pids:    &specs.LinuxPids{Limit: ptr[int64](100)},
		BlockIO: &specs.LinuxBlockIO{Weight: ptr[uint16](300)},
	}
	r, err := FromOCI(l)
	if err != nil {
		t.Fatal(err)
	}
	want := Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, CPUs: "0", MemoryLimit: 64 << 20,
		MemorySwap: -1, MemoryReservation: 32 << 20, PidsLimit: 100, IOWeight: 300, Devices: []DeviceRule{}}
	if !reflect.DeepEqual(*r, want) {
		t.Errorf("FromOCI = %+v, want %+v", r, want)
	}
	back := r.OCI()
	if !reflect.DeepEqual(back, l) {
		t.Errorf("OCI() = %+v, want %+v", back, l)
	}
	// OCI's "unlimited" values.
	r, err = FromOCI(&specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](-1)},
		Memory: &specs.LinuxMemory{Limit: ptr[int64](-1)}, Pids: &specs.LinuxPids{Limit: ptr[int64](0)}})
	if err != nil || !reflect.DeepEqual(*r, Resources{}) {
		t.Errorf("FromOCI(unlimited) = %+v, %v", r, err)
	}
	if got := (&Resources{CPUWeight: 100}).OCI(); got.CPU == nil || *got.CPU.Shares != WeightToShares(100) {
		t.Errorf("OCI() of a weight = %+v", got.CPU)
	}
	for name, l := range map[string]*specs.LinuxResources{
		"realtime":   {CPU: &specs.LinuxCPU{RealtimeRuntime: ptr[int64](1000)}},
		"swappiness": {Memory: &specs.LinuxMemory{Swappiness: ptr[uint64](0)}},
		"hugepages":  {HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 1}}},
		"throttle":   {BlockIO: &specs.LinuxBlockIO{ThrottleReadBpsDevice: []specs.LinuxThrottleDevice{{Rate: 1}}}},
		"unified":    {Unified: map[string]string{"memory.high": "1"}},
	} {
		if _, err := FromOCI(l); !errors.Is(err, ErrNotSupported) {
			t.Errorf("FromOCI(%s) = %v, want ErrNotSupported", name, err)
		}
	}
	if _, err := FromOCI(&specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](1024)}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("FromOCI(1 KiB memory) = %v, want ErrInvalid", err)
	}
}

func TestParseV1Mounts(t *testing.T) {
	const mountinfo = `22 1 0:21 / /sys rw - sysfs sysfs rw
30 22 0:27 / /sys/fs/cgroup rw - tmpfs tmpfs rw,mode=755
31 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct
33 30 0:30 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
34 30 0:31 / /sys/fs/cgroup/net_cls rw - cgroup cgroup rw,net_cls
39 30 0:36 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd
40 30 0:37 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
50 1 0:30 /sub /mnt/mem\040x rw - cgroup cgroup rw,memory
51 1 0:32 /sub /mnt/pids rw - cgroup cgroup rw,pids
`
	h, err := parseV1Mounts(strings.NewReader(mountinfo))
	if err != nil {
		t.Fatal(err)
	}
	wantCtrl := map[string]string{
		"cpu": "/sys/fs/cgroup/cpu,cpuacct", "cpuacct": "/sys/fs/cgroup/cpu,cpuacct",
		"memory": "/sys/fs/cgroup/memory", "pids": "/mnt/pids",
	}
	if !reflect.DeepEqual(h.ctrl, wantCtrl) {
		t.Errorf("controllers = %v, want %v", h.ctrl, wantCtrl)
	}
	wantMounts := []string{"/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/memory", "/mnt/pids"}
	if !reflect.DeepEqual(h.mounts, wantMounts) {
		t.Errorf("mounts = %v, want %v", h.mounts, wantMounts)
	}
}
