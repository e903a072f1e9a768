package cgroup

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// DeviceType is the kind of device node a DeviceRule applies to.
type DeviceType byte

// The device types of a DeviceRule.
const (
	AllDevices  DeviceType = 'a' // character and block devices alike
	CharDevice  DeviceType = 'c'
	BlockDevice DeviceType = 'b'
)

// Wildcard, as a DeviceRule's Major or Minor, matches any number.
const Wildcard = -1

// DeviceRule allows or denies access to device nodes: one line of cgroup
// v1's devices.allow or devices.deny, one clause of v2's device filter,
// one entry of the OCI spec's linux.resources.devices, or one Docker
// --device-cgroup-rule (String and ParseDeviceRule use that syntax,
// "c 1:3 rwm").
type DeviceRule struct {
	// Allow grants the access; false denies it.
	Allow bool
	// Type is the kind of node, AllDevices for both; "a" matches every
	// number, so Major and Minor must be Wildcard with it.
	Type DeviceType
	// Major and Minor are the device numbers, or Wildcard.
	Major, Minor int64
	// Access is a combination of 'r' (read), 'w' (write) and 'm'
	// (mknod), such as "rwm". "" means "rwm".
	Access string
}

// String returns the rule in devices.allow syntax, such as "c 136:* rwm",
// prefixed with "deny " when Allow is false.
func (d DeviceRule) String() string {
	s := d.line()
	if !d.Allow {
		s = "deny " + s
	}
	return s
}

// line is the rule as written to devices.allow or devices.deny.
func (d DeviceRule) line() string {
	num := func(n int64) string {
		if n == Wildcard {
			return "*"
		}
		return strconv.FormatInt(n, 10)
	}
	if d.Type == AllDevices || d.Type == 0 {
		return "a"
	}
	return fmt.Sprintf("%c %s:%s %s", d.Type, num(d.Major), num(d.Minor), d.access())
}

func (d DeviceRule) access() string {
	if d.Access == "" {
		return "rwm"
	}
	return d.Access
}

// ParseDeviceRule parses an allow rule in the syntax of Docker's
// --device-cgroup-rule and cgroup v1's devices.allow: "TYPE MAJOR:MINOR
// ACCESS" with TYPE a, c or b, numbers or "*", ACCESS of r, w and m, or
// just "a" for every device. A "deny " prefix (as String writes) gives a
// rule with Allow false.
func ParseDeviceRule(s string) (DeviceRule, error) {
	d := DeviceRule{Allow: true, Major: Wildcard, Minor: Wildcard}
	rest := s
	if r, ok := strings.CutPrefix(rest, "deny "); ok {
		d.Allow, rest = false, r
	}
	f := strings.Fields(rest)
	bad := func(why string) (DeviceRule, error) {
		return DeviceRule{}, &ResourceError{Field: "Devices", Value: s, Reason: why}
	}
	if len(f) == 0 || len(f[0]) != 1 {
		return bad(`want "TYPE MAJOR:MINOR ACCESS", such as "c 1:3 rwm"`)
	}
	d.Type = DeviceType(f[0][0])
	if d.Type == AllDevices && len(f) == 1 {
		d.Access = "rwm"
		return d, d.validate()
	}
	if len(f) != 3 {
		return bad(`want "TYPE MAJOR:MINOR ACCESS", such as "c 1:3 rwm"`)
	}
	ma, mi, ok := strings.Cut(f[1], ":")
	if !ok {
		return bad("device numbers must read MAJOR:MINOR")
	}
	for _, n := range []struct {
		s   string
		dst *int64
	}{{ma, &d.Major}, {mi, &d.Minor}} {
		if n.s == "*" {
			continue
		}
		v, err := strconv.ParseInt(n.s, 10, 64)
		if err != nil {
			return bad(fmt.Sprintf("device number %q is neither a number nor *", n.s))
		}
		*n.dst = v
	}
	d.Access = f[2]
	return d, d.validate()
}

// validate reports what the kernel would refuse in d.
func (d DeviceRule) validate() error {
	bad := func(format string, args ...any) error {
		return invalid("Devices", d.String(), format, args...)
	}
	switch d.Type {
	case AllDevices:
		if d.Major != Wildcard || d.Minor != Wildcard {
			return bad("type a matches every device: major and minor must be the wildcard")
		}
	case CharDevice, BlockDevice:
	default:
		return bad("type %q: must be a, c or b", string(rune(d.Type)))
	}
	// The kernel's device numbers have 12 bits of major, 20 of minor.
	if d.Major != Wildcard && (d.Major < 0 || d.Major > 1<<12-1) {
		return bad("major number %d out of range 0 to 4095", d.Major)
	}
	if d.Minor != Wildcard && (d.Minor < 0 || d.Minor > 1<<20-1) {
		return bad("minor number %d out of range 0 to 1048575", d.Minor)
	}
	if len(d.Access) > 3 {
		return bad("access %q: at most r, w and m, once each", d.Access)
	}
	for i, c := range d.Access {
		if !strings.ContainsRune("rwm", c) || strings.ContainsRune(d.Access[:i], c) {
			return bad("access %q: at most r, w and m, once each", d.Access)
		}
	}
	return nil
}

// accessBits is d's access as the kernel's BPF_DEVCG_ACC_* bits.
func (d DeviceRule) accessBits() uint32 {
	var b uint32
	for _, c := range d.access() {
		switch c {
		case 'm':
			b |= 1 // BPF_DEVCG_ACC_MKNOD
		case 'r':
			b |= 2 // BPF_DEVCG_ACC_READ
		case 'w':
			b |= 4 // BPF_DEVCG_ACC_WRITE
		}
	}
	return b
}

// devicesEqual reports whether two rule lists are the same, telling nil
// (devices not controlled) from empty (every device denied).
func devicesEqual(a, b []DeviceRule) bool {
	if (a == nil) != (b == nil) {
		return false
	}
	return slices.Equal(a, b)
}

// devicesFromOCI converts OCI device cgroup rules. A first rule that
// denies every access to every device is dropped: it is what Devices
// always starts with.
func devicesFromOCI(l []specs.LinuxDeviceCgroup) ([]DeviceRule, error) {
	out := make([]DeviceRule, 0, len(l))
	for i, o := range l {
		d := DeviceRule{Allow: o.Allow, Type: DeviceType('a'), Major: Wildcard, Minor: Wildcard, Access: o.Access}
		if o.Type != "" {
			if len(o.Type) != 1 {
				return nil, invalid("Devices", o.Type, "OCI device rule %d: type must be a, c or b", i)
			}
			d.Type = DeviceType(o.Type[0])
		}
		if o.Major != nil {
			d.Major = *o.Major
		}
		if o.Minor != nil {
			d.Minor = *o.Minor
		}
		if d.Type == AllDevices && (d.Major != Wildcard || d.Minor != Wildcard) {
			// The OCI spec lets "a" carry numbers, which the kernel
			// ignores.
			d.Major, d.Minor = Wildcard, Wildcard
		}
		if err := d.validate(); err != nil {
			return nil, err
		}
		if i == 0 && !d.Allow && d.Type == AllDevices && d.accessBits() == 7 {
			continue
		}
		out = append(out, d)
	}
	return out, nil
}

// devicesOCI converts rules to the OCI form, starting with the deny-all
// rule that Devices implies.
func devicesOCI(rules []DeviceRule) []specs.LinuxDeviceCgroup {
	if rules == nil {
		return nil
	}
	out := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	for _, d := range rules {
		o := specs.LinuxDeviceCgroup{Allow: d.Allow, Type: string(rune(d.Type)), Access: d.access()}
		if d.Type != AllDevices {
			ma, mi := d.Major, d.Minor
			o.Major, o.Minor = &ma, &mi
		}
		out = append(out, o)
	}
	return out
}

// parseDevicesList parses v1's devices.list: "a *:* rwm" alone means
// every device is allowed (nil: not controlled); otherwise each line is
// an allowed device.
func parseDevicesList(s string) ([]DeviceRule, error) {
	rules := []DeviceRule{}
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		if line == "" {
			continue
		}
		if line == "a *:* rwm" {
			return nil, nil
		}
		d, err := ParseDeviceRule(line)
		if err != nil {
			return nil, err
		}
		rules = append(rules, d)
	}
	return rules, nil
}
