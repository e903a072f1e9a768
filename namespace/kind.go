package namespace

import (
	"errors"
	"fmt"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Kind is one kind of Linux namespace.
type Kind int

// The namespace kinds Linux offers.
const (
	Mount  Kind = iota // mount points (CLONE_NEWNS)
	PID                // process IDs (CLONE_NEWPID)
	UTS                // hostname and domain name (CLONE_NEWUTS)
	IPC                // System V IPC and POSIX message queues (CLONE_NEWIPC)
	Net                // network devices, addresses, ports (CLONE_NEWNET)
	User               // user and group IDs, capabilities (CLONE_NEWUSER)
	Cgroup             // the cgroup root a process sees (CLONE_NEWCGROUP)
	Time               // boot and monotonic clock offsets (CLONE_NEWTIME)
)

var kindInfo = [...]struct {
	proc string
	oci  specs.LinuxNamespaceType
	flag uintptr
}{
	Mount:  {"mnt", specs.MountNamespace, unix.CLONE_NEWNS},
	PID:    {"pid", specs.PIDNamespace, unix.CLONE_NEWPID},
	UTS:    {"uts", specs.UTSNamespace, unix.CLONE_NEWUTS},
	IPC:    {"ipc", specs.IPCNamespace, unix.CLONE_NEWIPC},
	Net:    {"net", specs.NetworkNamespace, unix.CLONE_NEWNET},
	User:   {"user", specs.UserNamespace, unix.CLONE_NEWUSER},
	Cgroup: {"cgroup", specs.CgroupNamespace, unix.CLONE_NEWCGROUP},
	Time:   {"time", specs.TimeNamespace, unix.CLONE_NEWTIME},
}

// Kinds returns every namespace kind, in a fixed order.
func Kinds() []Kind { return []Kind{Mount, PID, UTS, IPC, Net, User, Cgroup, Time} }

func (k Kind) valid() bool { return k >= Mount && k <= Time }

// String returns the kind's name as /proc/PID/ns spells it ("mnt", "net", ...).
func (k Kind) String() string {
	if !k.valid() {
		return fmt.Sprintf("namespace.Kind(%d)", int(k))
	}
	return kindInfo[k].proc
}

// CloneFlag returns the CLONE_NEW* flag that creates a namespace of this kind.
func (k Kind) CloneFlag() uintptr {
	if !k.valid() {
		return 0
	}
	return kindInfo[k].flag
}

// OCI returns the kind's name in the OCI runtime spec ("mount", "network", ...).
func (k Kind) OCI() specs.LinuxNamespaceType {
	if !k.valid() {
		return ""
	}
	return kindInfo[k].oci
}

// ErrUnknownKind is returned, wrapped with the name, by [ParseKind].
var ErrUnknownKind = errors.New("namespace: unknown namespace kind")

// ParseKind parses a namespace kind from its /proc name ("mnt", "net") or
// its OCI runtime-spec name ("mount", "network").
func ParseKind(s string) (Kind, error) {
	l := strings.ToLower(s)
	for k, info := range kindInfo {
		if l == info.proc || l == string(info.oci) {
			return Kind(k), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of mnt, pid, uts, ipc, net, user, cgroup, time)", ErrUnknownKind, s)
}

// CloneFlags returns the CLONE_NEW* flags for the given kinds, or-ed together.
func CloneFlags(kinds ...Kind) uintptr {
	var f uintptr
	for _, k := range kinds {
		f |= k.CloneFlag()
	}
	return f
}

// ProcPath returns the path of the namespace of the given kind that
// process pid is in: /proc/PID/ns/KIND.
func ProcPath(pid int, k Kind) string {
	return fmt.Sprintf("/proc/%d/ns/%s", pid, k)
}

// kindOfCloneFlag returns the kind whose CLONE_NEW* flag is f, as the
// NS_GET_NSTYPE ioctl reports it.
func kindOfCloneFlag(f uintptr) (Kind, bool) {
	for k, info := range kindInfo {
		if info.flag == f {
			return Kind(k), true
		}
	}
	return 0, false
}
