package namespace

import (
	"errors"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestParseKind(t *testing.T) {
	tests := []struct {
		proc string
		oci  specs.LinuxNamespaceType
		want Kind
		flag uintptr
	}{
		{"mnt", "mount", Mount, unix.CLONE_NEWNS},
		{"pid", "pid", PID, unix.CLONE_NEWPID},
		{"uts", "uts", UTS, unix.CLONE_NEWUTS},
		{"ipc", "ipc", IPC, unix.CLONE_NEWIPC},
		{"net", "network", Net, unix.CLONE_NEWNET},
		{"user", "user", User, unix.CLONE_NEWUSER},
		{"cgroup", "cgroup", Cgroup, unix.CLONE_NEWCGROUP},
		{"time", "time", Time, unix.CLONE_NEWTIME},
	}
	if len(tests) != len(Kinds()) {
		t.Fatalf("table has %d kinds, Kinds() %d", len(tests), len(Kinds()))
	}
	for i, tt := range tests {
		for _, s := range []string{tt.proc, string(tt.oci)} {
			k, err := ParseKind(s)
			if err != nil || k != tt.want {
				t.Errorf("ParseKind(%q) = %v, %v; want %v", s, k, err, tt.want)
			}
		}
		if k := tt.want; k.String() != tt.proc || k.OCI() != tt.oci || k.CloneFlag() != tt.flag || Kinds()[i] != k {
			t.Errorf("%v: String %q OCI %q CloneFlag %#x; want %q %q %#x", k, k.String(), k.OCI(), k.CloneFlag(), tt.proc, tt.oci, tt.flag)
		}
		if k, ok := kindOfCloneFlag(tt.flag); !ok || k != tt.want {
			t.Errorf("kindOfCloneFlag(%#x) = %v, %v", tt.flag, k, ok)
		}
	}
	if k, err := ParseKind("NETWORK"); err != nil || k != Net {
		t.Errorf("ParseKind is not case-insensitive: %v, %v", k, err)
	}
	for _, s := range []string{"", "netns", "mnt "} {
		if _, err := ParseKind(s); !errors.Is(err, ErrUnknownKind) {
			t.Errorf("ParseKind(%q) error = %v, want ErrUnknownKind", s, err)
		}
	}
}

func TestInvalidKind(t *testing.T) {
	bad := Kind(42)
	if bad.String() != "namespace.Kind(42)" || bad.CloneFlag() != 0 || bad.OCI() != "" {
		t.Errorf("invalid kind: %q %#x %q", bad.String(), bad.CloneFlag(), bad.OCI())
	}
	if _, err := Current(bad); err == nil {
		t.Error("Current of an invalid kind succeeded")
	}
}

func TestCloneFlags(t *testing.T) {
	got := CloneFlags(Net, UTS, Net)
	if want := uintptr(unix.CLONE_NEWNET | unix.CLONE_NEWUTS); got != want {
		t.Errorf("CloneFlags(Net, UTS, Net) = %#x, want %#x", got, want)
	}
	if CloneFlags() != 0 {
		t.Error("CloneFlags() != 0")
	}
	if got := ProcPath(12, Mount); got != "/proc/12/ns/mnt" {
		t.Errorf("ProcPath = %q", got)
	}
}
