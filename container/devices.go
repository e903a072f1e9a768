package container

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/internal/initproc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Device is a host device node made available in a container, like
// `docker run --device /dev/fuse`: init creates a node of the same type
// and numbers at Path in the container's /dev (or, where mknod is refused,
// as in a user namespace, bind-mounts the host's node there), and the
// container's cgroup allows Access to it.
type Device struct {
	// HostPath is the device node on the host, such as "/dev/fuse"; a
	// symbolic link is followed, as Docker does. It must be a character
	// or block device.
	HostPath string
	// Path is where the node appears inside the container: an absolute
	// path below /dev, other than the entries berth makes there itself
	// (null, zero, full, random, urandom, tty, ptmx, pts, shm, mqueue,
	// fd, stdin, stdout, stderr, core). "" means HostPath.
	Path string
	// Access is what the container may do with the device: a
	// combination of "r" (read), "w" (write) and "m" (mknod). "" means
	// "rwm", as with Docker.
	Access string
	// FileMode is the node's permission bits; 0 means the host node's.
	FileMode fs.FileMode
	// UID and GID own the node; nil means the host node's owner.
	UID, GID *uint32
}

// DefaultDeviceRules are the device cgroup rules of every container,
// Docker's defaults (runc's built-in list, without the tun/tap device and
// /dev/console that runc also allows): any character or block node may be
// created with mknod, and /dev/null, zero, full, random, urandom, tty,
// ptmx and the pseudo-terminals in /dev/pts may be used. Every other
// device is denied; Spec.Devices and Spec.Resources.Devices add to them.
var DefaultDeviceRules = []cgroup.DeviceRule{
	{Allow: true, Type: cgroup.CharDevice, Major: cgroup.Wildcard, Minor: cgroup.Wildcard, Access: "m"},
	{Allow: true, Type: cgroup.BlockDevice, Major: cgroup.Wildcard, Minor: cgroup.Wildcard, Access: "m"},
	{Allow: true, Type: cgroup.CharDevice, Major: 1, Minor: 3, Access: "rwm"},                 // null
	{Allow: true, Type: cgroup.CharDevice, Major: 1, Minor: 5, Access: "rwm"},                 // zero
	{Allow: true, Type: cgroup.CharDevice, Major: 1, Minor: 7, Access: "rwm"},                 // full
	{Allow: true, Type: cgroup.CharDevice, Major: 1, Minor: 8, Access: "rwm"},                 // random
	{Allow: true, Type: cgroup.CharDevice, Major: 1, Minor: 9, Access: "rwm"},                 // urandom
	{Allow: true, Type: cgroup.CharDevice, Major: 5, Minor: 0, Access: "rwm"},                 // tty
	{Allow: true, Type: cgroup.CharDevice, Major: 5, Minor: 2, Access: "rwm"},                 // ptmx
	{Allow: true, Type: cgroup.CharDevice, Major: 136, Minor: cgroup.Wildcard, Access: "rwm"}, // pts
}

// standardDevices are the device nodes init makes in every container,
// with their numbers.
var standardDevices = map[string][2]int64{
	"/dev/null": {1, 3}, "/dev/zero": {1, 5}, "/dev/full": {1, 7},
	"/dev/random": {1, 8}, "/dev/urandom": {1, 9}, "/dev/tty": {5, 0},
}

// reservedDev are the entries of a container's /dev that berth makes.
var reservedDev = []string{
	"null", "zero", "full", "random", "urandom", "tty", "ptmx", "pts", "shm",
	"mqueue", "fd", "stdin", "stdout", "stderr", "core",
}

// ParseDevice parses a device in the syntax of `docker run --device`:
// HOST[:CONTAINER][:ACCESS], such as "/dev/fuse", "/dev/sdb:/dev/xvdb" or
// "/dev/fuse:rw". It checks the syntax only; the host's node is looked at
// by Runtime.Create.
func ParseDevice(s string) (Device, error) {
	parts := strings.Split(s, ":")
	d := Device{HostPath: parts[0]}
	switch len(parts) {
	case 1:
	case 2:
		if strings.HasPrefix(parts[1], "/") {
			d.Path = parts[1]
		} else {
			d.Access = parts[1]
		}
	case 3:
		d.Path, d.Access = parts[1], parts[2]
	default:
		return Device{}, fmt.Errorf("%w: device %q: want HOST[:CONTAINER][:ACCESS]", ErrInvalidSpec, s)
	}
	if err := d.validate(); err != nil {
		return Device{}, err
	}
	return d, nil
}

// path is where the device appears in the container.
func (d *Device) path() string {
	if d.Path == "" {
		return d.HostPath
	}
	return d.Path
}

// validate checks the device's paths and access without looking at the
// host.
func (d *Device) validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: device %s: %s", ErrInvalidSpec, d.HostPath, fmt.Sprintf(format, args...))
	}
	if !path.IsAbs(d.HostPath) {
		return bad("the host path must be absolute")
	}
	p := d.path()
	rel, ok := strings.CutPrefix(p, "/dev/")
	if !ok || path.Clean(p) != p || rel == "" || strings.ContainsRune(p, 0) {
		return bad("container path %q must be a clean path below /dev", p)
	}
	if first, _, _ := strings.Cut(rel, "/"); slices.Contains(reservedDev, first) {
		return bad("container path %q: berth makes /dev/%s itself", p, first)
	}
	if len(d.Access) > 3 || strings.Trim(d.Access, "rwm") != "" {
		return bad("access %q: a combination of r, w and m", d.Access)
	}
	for i, c := range d.Access {
		if strings.ContainsRune(d.Access[:i], c) {
			return bad("access %q: a combination of r, w and m", d.Access)
		}
	}
	if d.FileMode&^fs.ModePerm != 0 {
		return bad("file mode %v: permission bits only", d.FileMode)
	}
	return nil
}

// resolveDevices looks at each device's host node: it must exist and be
// a character or block device. It returns the nodes for init to make and
// the cgroup rules that allow them.
func resolveDevices(devs []Device) ([]initproc.Device, []cgroup.DeviceRule, error) {
	var nodes []initproc.Device
	var rules []cgroup.DeviceRule
	seen := map[string]bool{}
	for _, d := range devs {
		if err := d.validate(); err != nil {
			return nil, nil, err
		}
		p := d.path()
		if seen[p] {
			return nil, nil, fmt.Errorf("%w: device %s: container path %s given twice", ErrInvalidSpec, d.HostPath, p)
		}
		seen[p] = true
		var st unix.Stat_t
		if err := unix.Stat(d.HostPath, &st); err != nil {
			err = &fs.PathError{Op: "stat", Path: d.HostPath, Err: err}
			if errors.Is(err, fs.ErrNotExist) {
				return nil, nil, fmt.Errorf("%w: device %s does not exist on the host: %w", ErrInvalidSpec, d.HostPath, err)
			}
			return nil, nil, fmt.Errorf("%w: device: %w", ErrInvalidSpec, err)
		}
		n := initproc.Device{
			Path: p, HostPath: d.HostPath, Mode: st.Mode & 0o7777,
			Major: unix.Major(st.Rdev), Minor: unix.Minor(st.Rdev), UID: st.Uid, GID: st.Gid,
		}
		r := cgroup.DeviceRule{Allow: true, Major: int64(n.Major), Minor: int64(n.Minor), Access: d.Access}
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFCHR:
			n.Type, r.Type = unix.S_IFCHR, cgroup.CharDevice
		case unix.S_IFBLK:
			n.Type, r.Type = unix.S_IFBLK, cgroup.BlockDevice
		default:
			return nil, nil, fmt.Errorf("%w: device %s is not a character or block device (mode %v)", ErrInvalidSpec, d.HostPath, os.FileMode(st.Mode&0o777))
		}
		if d.FileMode != 0 {
			n.Mode = uint32(d.FileMode)
		}
		if d.UID != nil {
			n.UID = *d.UID
		}
		if d.GID != nil {
			n.GID = *d.GID
		}
		nodes = append(nodes, n)
		rules = append(rules, r)
	}
	return nodes, rules, nil
}

// cgroupResources is r with the container's device rules: Docker's
// defaults, then those of its devices, then r's own.
func (c *Container) cgroupResources(r cgroup.Resources) cgroup.Resources {
	rules := slices.Concat(DefaultDeviceRules, c.devRules, r.Devices)
	r.Devices = rules
	return r
}

// ociDevices converts the OCI spec's linux.devices. berth makes a node
// from the host's node at the same path, so that must exist with the
// type and numbers the spec gives; each device gets a cgroup rule
// allowing "rwm", as `docker run --device` does (linux.resources.devices
// can take it back). The devices every container gets (/dev/null, zero,
// full, random, urandom and tty with their usual numbers), which some
// tools list, are skipped. FIFOs ("p") are refused.
func ociDevices(l []specs.LinuxDevice) ([]Device, error) {
	var out []Device
	for i, o := range l {
		field := fmt.Sprintf("linux.devices[%d] (%s)", i, o.Path)
		var want uint32
		switch o.Type {
		case "c", "u":
			want = unix.S_IFCHR
		case "b":
			want = unix.S_IFBLK
		case "p":
			return nil, unsupportedOCI(field, "FIFOs are not devices berth makes")
		default:
			return nil, fmt.Errorf("%w: OCI %s: type %q: must be c, u, b or p", ErrInvalidSpec, field, o.Type)
		}
		if std, ok := standardDevices[o.Path]; ok && want == unix.S_IFCHR && o.Major == std[0] && o.Minor == std[1] {
			continue // made in every container
		}
		d := Device{HostPath: o.Path, UID: o.UID, GID: o.GID}
		if o.FileMode != nil {
			d.FileMode = *o.FileMode & fs.ModePerm
		}
		if err := d.validate(); err != nil {
			return nil, fmt.Errorf("OCI %s: %w", field, err)
		}
		var st unix.Stat_t
		if err := unix.Stat(o.Path, &st); err != nil {
			return nil, fmt.Errorf("%w: OCI %s: berth makes devices from the host's nodes, and the host has none there: %w", ErrInvalidSpec, field, &fs.PathError{Op: "stat", Path: o.Path, Err: err})
		}
		if st.Mode&unix.S_IFMT != want || int64(unix.Major(st.Rdev)) != o.Major || int64(unix.Minor(st.Rdev)) != o.Minor {
			return nil, fmt.Errorf("%w: OCI %s: the spec says %s %d:%d, the host's node is %s (berth makes devices from the host's nodes)",
				ErrInvalidSpec, field, o.Type, o.Major, o.Minor, describeNode(&st))
		}
		out = append(out, d)
	}
	return out, nil
}

// describeNode says what a stat result is, as "c 1:3" for a device.
func describeNode(st *unix.Stat_t) string {
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return fmt.Sprintf("c %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	case unix.S_IFBLK:
		return fmt.Sprintf("b %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return "not a device, mode " + fs.FileMode(st.Mode&0o777).String()
}
