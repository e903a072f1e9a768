package namespace

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestValidateIDMaps(t *testing.T) {
	tests := []struct {
		name string
		maps []IDMap
		bad  string // substring of the error; "" when valid
	}{
		{"empty", nil, ""},
		{"one", []IDMap{{0, 100000, 65536}}, ""},
		{"identity whole range", []IDMap{{0, 0, math.MaxUint32}}, ""},
		{"adjacent", []IDMap{{0, 1000, 1}, {1, 100000, 65535}}, ""},
		{"unsorted adjacent", []IDMap{{1, 100001, 10}, {0, 100000, 1}}, ""},
		{"last valid ID", []IDMap{{math.MaxUint32 - 1, 5, 1}}, ""},
		{"zero size", []IDMap{{0, 0, 1}, {5, 5, 0}}, "entry 1 (5 5 0): size is zero"},
		{"container overlap", []IDMap{{0, 1000, 10}, {9, 2000, 5}}, "entry 1 (9 2000 5) overlaps entry 0 (0 1000 10) inside"},
		{"container overlap unsorted", []IDMap{{100, 5000, 1}, {50, 2000, 5}, {0, 1000, 101}}, "entry 2 (0 1000 101) overlaps entry 1 (50 2000 5) inside"},
		{"contained", []IDMap{{0, 1000, 100}, {10, 5000, 1}}, "inside"},
		{"host overlap", []IDMap{{0, 1000, 10}, {100, 1005, 1}}, "entry 1 (100 1005 1) overlaps entry 0 (0 1000 10) outside"},
		{"duplicate", []IDMap{{0, 0, 1}, {0, 0, 1}}, "overlaps"},
		{"container overflow", []IDMap{{math.MaxUint32 - 9, 0, 10}}, "entry 0 (4294967286 0 10): container range overflows"},
		{"container wraps", []IDMap{{1, 0, math.MaxUint32}}, "container range overflows"},
		{"host overflow", []IDMap{{0, 0, 1}, {1, math.MaxUint32, 1}}, "entry 1 (1 4294967295 1): host range overflows"},
		{"too many", make([]IDMap, MaxIDMaps+1), "341 entries"},
	}
	for _, tt := range tests {
		err := ValidateIDMaps(tt.maps)
		switch {
		case tt.bad == "" && err != nil:
			t.Errorf("%s: unexpected error: %v", tt.name, err)
		case tt.bad != "" && (!errors.Is(err, ErrInvalidIDMap) || !strings.Contains(err.Error(), tt.bad)):
			t.Errorf("%s: error = %v; want ErrInvalidIDMap mentioning %q", tt.name, err, tt.bad)
		}
	}
}

func TestIDMapConversions(t *testing.T) {
	maps := []IDMap{{0, 100000, 1}, {1, 200000, 65535}}
	got := SysProcIDMaps(maps)
	want := []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 1}, {ContainerID: 1, HostID: 200000, Size: 65535}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("SysProcIDMaps = %v, want %v", got, want)
	}
	oci := FromOCIIDMaps([]specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 1}, {ContainerID: 1, HostID: 200000, Size: 65535}})
	if !reflect.DeepEqual(oci, maps) {
		t.Errorf("FromOCIIDMaps = %v, want %v", oci, maps)
	}
	if SysProcIDMaps(nil) != nil || FromOCIIDMaps(nil) != nil {
		t.Error("nil maps did not convert to nil")
	}
}

// TestUserNamespaceMapping starts a shell in a new user namespace with
// maps from SysProcIDMaps and reads them back from inside.
func TestUserNamespaceMapping(t *testing.T) {
	requireRoot(t)
	uids := []IDMap{{0, 100000, 65536}}
	gids := []IDMap{{0, 200000, 1000}, {1000, 300000, 1}}
	cmd := exec.Command("/bin/sh", "-c", "cat /proc/self/uid_map /proc/self/gid_map; id -u; id -g")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  CloneFlags(User),
		UidMappings: SysProcIDMaps(uids),
		GidMappings: SysProcIDMaps(gids),
		// Become root inside: the host's root is not mapped in there.
		Credential: &syscall.Credential{Uid: 0, Gid: 0, NoSetGroups: true},
		Pdeathsig:  syscall.SIGKILL,
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sh in a new user namespace: %v", err)
	}
	got := strings.Fields(string(out))
	want := strings.Fields("0 100000 65536  0 200000 1000  1000 300000 1  0 0")
	if !reflect.DeepEqual(got, want) {
		t.Errorf("inside the namespace: %q, want %q", got, want)
	}
}

// TestWriteIDMaps maps a child's user namespace from outside and checks
// that the kernel agrees with ValidateIDMaps at the edges.
func TestWriteIDMaps(t *testing.T) {
	requireRoot(t)
	cmd := startSleeper(t, User)
	pid := cmd.Process.Pid
	if err := WriteIDMaps(pid, []IDMap{{0, 0, 1}, {0, 5, 1}}, nil); !errors.Is(err, ErrInvalidIDMap) {
		t.Fatalf("WriteIDMaps with overlapping maps: %v, want ErrInvalidIDMap", err)
	}
	uids := []IDMap{{0, 100000, 65536}, {65536, 1000, 1}}
	gids := []IDMap{{0, 0, math.MaxUint32}}
	if err := WriteIDMaps(pid, uids, gids); err != nil {
		t.Fatal(err)
	}
	for file, maps := range map[string][]IDMap{"uid_map": uids, "gid_map": gids} {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + file)
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, m := range maps {
			want = append(want, strings.Fields(m.String())...)
		}
		if got := strings.Fields(string(b)); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %q, want %q", file, got, want)
		}
	}
	if err := WriteIDMaps(pid, uids, nil); err == nil {
		t.Error("writing uid_map a second time succeeded")
	}
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/setgroups"); strings.TrimSpace(string(b)) != "allow" {
		t.Errorf("setgroups = %q; WriteIDMaps must not deny it", b)
	}

	// A map that ValidateIDMaps rejects for overflow, the kernel rejects too.
	other := startSleeper(t, User)
	if err := writeIDMapFile(other.Process.Pid, "uid_map", []IDMap{{1, 0, math.MaxUint32}}); err == nil {
		t.Error("kernel accepted a uid map that wraps past 2^32")
	}
	if err := DenySetgroups(other.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile("/proc/" + strconv.Itoa(other.Process.Pid) + "/setgroups"); strings.TrimSpace(string(b)) != "deny" {
		t.Errorf("after DenySetgroups, setgroups = %q", b)
	}
}
