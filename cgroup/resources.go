package cgroup

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Limits of the values Resources accepts. They are the kernel's own limits
// except MinMemoryLimit, which is Docker's.
const (
	MinCPUShares   = 2       // smallest cpu.shares the kernel accepts
	MaxCPUShares   = 262144  // largest cpu.shares the kernel accepts
	MinCPUWeight   = 1       // smallest cpu.weight
	MaxCPUWeight   = 10000   // largest cpu.weight
	MinCPUQuota    = 1000    // smallest CFS quota, in microseconds
	MinCPUPeriod   = 1000    // smallest CFS period, in microseconds
	MaxCPUPeriod   = 1000000 // largest CFS period, in microseconds
	DefaultPeriod  = 100000  // CFS period used when only a quota is set, in microseconds
	MinMemoryLimit = 6 << 20 // smallest memory limit, in bytes (6 MiB, as Docker)
	MinIOWeight    = 10      // smallest block IO weight
	MaxIOWeight    = 1000    // largest block IO weight
)

// Resources are the limits of a Cgroup. The zero value sets no limits, and
// every field's zero value means "not limited" (or "kernel default").
// Resources describe the whole desired state: Update with a field left at
// zero removes that limit.
type Resources struct {
	// CPUShares is the relative CPU weight in cgroup v1 units, 2 to
	// 262144 (Docker's --cpu-shares; 1024 is the kernel default). On v2
	// it becomes cpu.weight = 1 + ((shares-2)*9999)/262142. 0 = unset.
	CPUShares uint64
	// CPUWeight is the relative CPU weight in cgroup v2 units, 1 to 10000
	// (100 is the kernel default). On v1 it becomes cpu.shares, the
	// inverse of the formula above. 0 = unset. Setting both CPUShares
	// and CPUWeight is invalid.
	CPUWeight uint64
	// CPUQuota is the CPU time, in microseconds, the group may use in
	// each CPUPeriod, summed over all CPUs (Docker's --cpu-quota):
	// 50000 with a period of 100000 is half a CPU. At least 1000 when
	// set; 0 = unlimited.
	CPUQuota int64
	// CPUPeriod is the CFS enforcement period in microseconds, 1000 to
	// 1000000. 0 = the kernel default of 100000.
	CPUPeriod uint64
	// CPUs is the set of CPUs the group may run on, in cpuset list
	// syntax such as "0-1,3" (Docker's --cpuset-cpus). Every CPU must be
	// online. "" = all CPUs of the parent.
	CPUs string
	// Mems is the set of NUMA memory nodes the group may allocate from,
	// in the same syntax as CPUs. "" = all nodes of the parent.
	Mems string
	// MemoryLimit is the hard limit on memory use, in bytes (Docker's
	// --memory); beyond it the kernel reclaims and then OOM-kills. At
	// least MinMemoryLimit (6 MiB) when set; 0 = unlimited.
	MemoryLimit int64
	// MemorySwap is the limit on memory plus swap, in bytes, as Docker's
	// --memory-swap: equal to MemoryLimit means no swap, -1 means
	// unlimited swap. It needs MemoryLimit and must be at least
	// MemoryLimit. 0 = unset: swap is not limited separately (unlike the
	// Docker daemon, which would default to twice MemoryLimit).
	MemorySwap int64
	// MemoryReservation is the soft limit in bytes (Docker's
	// --memory-reservation): memory the kernel tries to leave to the
	// group under pressure (v1 memory.soft_limit_in_bytes, v2
	// memory.low). At most MemoryLimit when both are set. 0 = unset.
	MemoryReservation int64
	// PidsLimit is the most tasks (processes and threads) the group may
	// hold at once (Docker's --pids-limit); fork and clone fail with
	// EAGAIN beyond it. Positive when set; 0 = unlimited.
	PidsLimit int64
	// IOWeight is the relative block IO weight, 10 to 1000 (Docker's
	// --blkio-weight). It needs the BFQ IO scheduler (v1
	// blkio.bfq.weight or blkio.weight, v2 io.bfq.weight) or, on v2,
	// io.weight, to which it is mapped as 1 + (w-10)*9999/990.
	// 0 = unset.
	IOWeight uint16
	// Devices, when not nil, are the device nodes the group's processes
	// may use (create with mknod, open for reading or writing): every
	// device is denied, then each rule allows or denies in order, a later
	// rule overriding an earlier one with the same type and numbers (a
	// deny rule is for taking back part of what an earlier rule allowed).
	// On v1 they are written to devices.deny and devices.allow; on v2
	// they become an eBPF device filter attached to the cgroup. An empty
	// non-nil list denies every device. nil = not controlled: every
	// device is allowed (the kernel default). A container's cgroup always
	// has rules: see container.DefaultDeviceRules.
	Devices []DeviceRule
}

// ResourceError is the error Validate returns for a value out of range.
// It matches ErrInvalid with errors.Is.
type ResourceError struct {
	Field  string // name of the Resources field, such as "MemoryLimit"
	Value  any    // the value given
	Reason string // what is wrong with it
}

var fieldNames = map[string]string{
	"CPUShares":         "cpu shares",
	"CPUWeight":         "cpu weight",
	"CPUQuota":          "cpu quota",
	"CPUPeriod":         "cpu period",
	"CPUs":              "cpus",
	"Mems":              "mems",
	"MemoryLimit":       "memory limit",
	"MemorySwap":        "memory swap",
	"MemoryReservation": "memory reservation",
	"PidsLimit":         "pids limit",
	"IOWeight":          "io weight",
	"Devices":           "device rule",
}

// Error reads like "cgroup: invalid memory limit -5: must be positive".
func (e *ResourceError) Error() string {
	name := fieldNames[e.Field]
	if name == "" {
		name = e.Field
	}
	v := fmt.Sprint(e.Value)
	if s, ok := e.Value.(string); ok {
		v = strconv.Quote(s)
	}
	return fmt.Sprintf("cgroup: invalid %s %s: %s", name, v, e.Reason)
}

// Is reports whether target is ErrInvalid.
func (e *ResourceError) Is(target error) bool { return target == ErrInvalid }

func invalid(field string, value any, format string, args ...any) error {
	return &ResourceError{Field: field, Value: value, Reason: fmt.Sprintf(format, args...)}
}

// Validate reports the first field the kernel would refuse, as a
// *ResourceError that matches ErrInvalid. A nil *Resources is valid.
// CPUs and Mems are checked against the CPUs and memory nodes online now.
func (r *Resources) Validate() error {
	if r == nil {
		return nil
	}
	if r.CPUShares != 0 && (r.CPUShares < MinCPUShares || r.CPUShares > MaxCPUShares) {
		return invalid("CPUShares", r.CPUShares, "must be between %d and %d", MinCPUShares, MaxCPUShares)
	}
	if r.CPUWeight != 0 && r.CPUWeight > MaxCPUWeight {
		return invalid("CPUWeight", r.CPUWeight, "must be between %d and %d", MinCPUWeight, MaxCPUWeight)
	}
	if r.CPUWeight != 0 && r.CPUShares != 0 {
		return invalid("CPUWeight", r.CPUWeight, "cannot be set together with cpu shares %d", r.CPUShares)
	}
	if r.CPUQuota < 0 {
		return invalid("CPUQuota", r.CPUQuota, "must be positive (0 means unlimited)")
	}
	if r.CPUQuota != 0 && r.CPUQuota < MinCPUQuota {
		return invalid("CPUQuota", r.CPUQuota, "must be at least %d microseconds", MinCPUQuota)
	}
	if r.CPUPeriod != 0 && (r.CPUPeriod < MinCPUPeriod || r.CPUPeriod > MaxCPUPeriod) {
		return invalid("CPUPeriod", r.CPUPeriod, "must be between %d and %d microseconds", MinCPUPeriod, MaxCPUPeriod)
	}
	if r.CPUs != "" {
		if err := checkSet("CPUs", r.CPUs, "/sys/devices/system/cpu/online", "CPU"); err != nil {
			return err
		}
	}
	if r.Mems != "" {
		if err := checkSet("Mems", r.Mems, "/sys/devices/system/node/online", "memory node"); err != nil {
			return err
		}
	}
	if r.MemoryLimit < 0 {
		return invalid("MemoryLimit", r.MemoryLimit, "must be positive")
	}
	if r.MemoryLimit != 0 && r.MemoryLimit < MinMemoryLimit {
		return invalid("MemoryLimit", r.MemoryLimit, "must be at least %d bytes (6 MiB)", MinMemoryLimit)
	}
	switch {
	case r.MemorySwap == 0, r.MemorySwap == -1:
	case r.MemorySwap < -1:
		return invalid("MemorySwap", r.MemorySwap, "must be positive, or -1 for unlimited")
	case r.MemoryLimit == 0:
		return invalid("MemorySwap", r.MemorySwap, "needs a memory limit")
	case r.MemorySwap < r.MemoryLimit:
		return invalid("MemorySwap", r.MemorySwap, "must be at least the memory limit %d", r.MemoryLimit)
	}
	if r.MemoryReservation < 0 {
		return invalid("MemoryReservation", r.MemoryReservation, "must be positive")
	}
	if r.MemoryLimit != 0 && r.MemoryReservation > r.MemoryLimit {
		return invalid("MemoryReservation", r.MemoryReservation, "must be at most the memory limit %d", r.MemoryLimit)
	}
	if r.PidsLimit < 0 {
		return invalid("PidsLimit", r.PidsLimit, "must be positive (0 means unlimited)")
	}
	if r.IOWeight != 0 && (r.IOWeight < MinIOWeight || r.IOWeight > MaxIOWeight) {
		return invalid("IOWeight", r.IOWeight, "must be between %d and %d", MinIOWeight, MaxIOWeight)
	}
	for _, d := range r.Devices {
		if err := d.validate(); err != nil {
			return err
		}
	}
	return nil
}

// checkSet checks the syntax of a cpuset list and that every member is in
// the list read from online (all of [0] when the file does not exist, as
// /sys/devices/system/node/online on kernels without NUMA).
func checkSet(field, list, online, what string) error {
	want, err := parseSet(list)
	if err != nil {
		return invalid(field, list, "%v", err)
	}
	have := map[int]bool{0: true}
	if b, err := os.ReadFile(online); err == nil {
		if have, err = parseSet(strings.TrimSpace(string(b))); err != nil {
			return fmt.Errorf("cgroup: read %s: %w", online, err)
		}
	}
	for _, n := range slices.Sorted(maps.Keys(want)) {
		if !have[n] {
			return invalid(field, list, "%s %d is not online", what, n)
		}
	}
	return nil
}

// parseSet parses cpuset list syntax ("0-3,5,7-8") into its members.
func parseSet(list string) (map[int]bool, error) {
	set := map[int]bool{}
	if list == "" {
		return set, nil
	}
	for part := range strings.SplitSeq(list, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.ParseUint(lo, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("bad list syntax at %q", part)
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 16); err != nil || b < a {
				return nil, fmt.Errorf("bad list syntax at %q", part)
			}
		}
		for i := a; i <= b; i++ {
			set[int(i)] = true
		}
	}
	return set, nil
}

// SharesToWeight converts cgroup v1 cpu.shares (2..262144) to cgroup v2
// cpu.weight (1..10000) with the formula runc, crun and containerd use.
// 0 stays 0.
func SharesToWeight(shares uint64) uint64 {
	if shares == 0 {
		return 0
	}
	shares = min(max(shares, MinCPUShares), MaxCPUShares)
	return 1 + ((shares-2)*9999)/262142
}

// WeightToShares converts cgroup v2 cpu.weight (1..10000) to cgroup v1
// cpu.shares, the inverse of SharesToWeight. 0 stays 0.
func WeightToShares(weight uint64) uint64 {
	if weight == 0 {
		return 0
	}
	weight = min(max(weight, MinCPUWeight), MaxCPUWeight)
	return 2 + ((weight-1)*262142)/9999
}

// ioWeightV2 maps a blkio weight (10..1000) onto io.weight (1..10000).
func ioWeightV2(w uint16) uint64 {
	return 1 + (uint64(w)-10)*9999/990
}

// shares is the cpu.shares value r asks for, or 0.
func (r *Resources) shares() uint64 {
	if r.CPUShares != 0 {
		return r.CPUShares
	}
	return WeightToShares(r.CPUWeight)
}

// weight is the cpu.weight value r asks for, or 0.
func (r *Resources) weight() uint64 {
	if r.CPUWeight != 0 {
		return r.CPUWeight
	}
	return SharesToWeight(r.CPUShares)
}

// FromOCI converts the resources of an OCI runtime spec. A nil l gives no
// limits. The OCI "unlimited" values (-1, and 0 for the pids limit) become
// 0. Device rules become Devices (a leading rule denying everything,
// which Devices implies, is dropped; no rules leave Devices nil). Ignored,
// as runtimes do: the obsolete kernel memory limits.
// Limits Resources cannot express (realtime CPU, CPU burst and idle,
// swappiness, disabling the OOM killer, hugepage, block IO device
// throttles, RDMA, network classes, unified v2 keys) are an error that
// matches ErrNotSupported, rather than being dropped. The result is
// validated.
func FromOCI(l *specs.LinuxResources) (*Resources, error) {
	r := &Resources{}
	if l == nil {
		return r, nil
	}
	unsupported := func(what string) (*Resources, error) {
		return nil, fmt.Errorf("cgroup: OCI resources: %s: %w", what, ErrNotSupported)
	}
	if c := l.CPU; c != nil {
		if c.Shares != nil {
			r.CPUShares = *c.Shares
		}
		if c.Quota != nil && *c.Quota > 0 {
			r.CPUQuota = *c.Quota
		}
		if c.Period != nil {
			r.CPUPeriod = *c.Period
		}
		r.CPUs, r.Mems = c.Cpus, c.Mems
		if c.RealtimeRuntime != nil && *c.RealtimeRuntime != 0 || c.RealtimePeriod != nil && *c.RealtimePeriod != 0 {
			return unsupported("realtime CPU scheduling")
		}
		if c.Burst != nil && *c.Burst != 0 {
			return unsupported("CPU burst")
		}
		if c.Idle != nil && *c.Idle != 0 {
			return unsupported("CPU idle")
		}
	}
	if m := l.Memory; m != nil {
		if m.Limit != nil && *m.Limit > 0 {
			r.MemoryLimit = *m.Limit
		}
		if m.Swap != nil {
			r.MemorySwap = *m.Swap
		}
		if m.Reservation != nil && *m.Reservation > 0 {
			r.MemoryReservation = *m.Reservation
		}
		if m.Swappiness != nil {
			return unsupported("memory swappiness")
		}
		if m.DisableOOMKiller != nil && *m.DisableOOMKiller {
			return unsupported("disabling the OOM killer")
		}
	}
	if p := l.Pids; p != nil && p.Limit != nil && *p.Limit > 0 {
		r.PidsLimit = *p.Limit
	}
	if b := l.BlockIO; b != nil {
		if b.Weight != nil {
			r.IOWeight = *b.Weight
		}
		if b.LeafWeight != nil || len(b.WeightDevice) > 0 || len(b.ThrottleReadBpsDevice) > 0 ||
			len(b.ThrottleWriteBpsDevice) > 0 || len(b.ThrottleReadIOPSDevice) > 0 || len(b.ThrottleWriteIOPSDevice) > 0 {
			return unsupported("per-device block IO limits")
		}
	}
	if len(l.HugepageLimits) > 0 {
		return unsupported("hugepage limits")
	}
	if len(l.Rdma) > 0 {
		return unsupported("RDMA limits")
	}
	if l.Network != nil {
		return unsupported("network class and priorities")
	}
	if len(l.Unified) > 0 {
		return unsupported("unified cgroup v2 keys")
	}
	if len(l.Devices) > 0 {
		d, err := devicesFromOCI(l.Devices)
		if err != nil {
			return nil, err
		}
		r.Devices = d
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return r, nil
}

// OCI converts r to the OCI runtime spec's form, setting only what r
// limits; CPUWeight becomes CPU shares, and Devices, when not nil, start
// with a rule denying every device. A nil r gives nil.
func (r *Resources) OCI() *specs.LinuxResources {
	if r == nil {
		return nil
	}
	l := &specs.LinuxResources{}
	if s, q, p := r.shares(), r.CPUQuota, r.CPUPeriod; s != 0 || q != 0 || p != 0 || r.CPUs != "" || r.Mems != "" {
		l.CPU = &specs.LinuxCPU{Cpus: r.CPUs, Mems: r.Mems}
		if s != 0 {
			l.CPU.Shares = &s
		}
		if q != 0 {
			l.CPU.Quota = &q
		}
		if p != 0 {
			l.CPU.Period = &p
		}
	}
	if m, s, res := r.MemoryLimit, r.MemorySwap, r.MemoryReservation; m != 0 || s != 0 || res != 0 {
		l.Memory = &specs.LinuxMemory{}
		if m != 0 {
			l.Memory.Limit = &m
		}
		if s != 0 {
			l.Memory.Swap = &s
		}
		if res != 0 {
			l.Memory.Reservation = &res
		}
	}
	if p := r.PidsLimit; p != 0 {
		l.Pids = &specs.LinuxPids{Limit: &p}
	}
	if w := r.IOWeight; w != 0 {
		l.BlockIO = &specs.LinuxBlockIO{Weight: &w}
	}
	l.Devices = devicesOCI(r.Devices)
	return l
}
