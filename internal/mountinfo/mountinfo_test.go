package mountinfo

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		"/plain":             "/plain",
		`/a\040b`:            "/a b",
		`/tab\011nl\012`:     "/tab\tnl\n",
		`/back\134slash`:     `/back\slash`,
		`/short\04`:          `/short\04`,
		`/not\08x`:           `/not\08x`,
		`\040`:               " ",
		`/end\`:              `/end\`,
		`/big\777`:           `/big\777`, // over a byte: kept
		`/two\040\040spaces`: "/two  spaces",
	} {
		if got := Unescape(in); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

// The kernel's own escaping, read back: a tmpfs mounted on a directory
// whose name has a space, a tab and a backslash.
func TestUnescapeKernel(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := filepath.Join(t.TempDir(), "a b\tc\\d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, ""); err != nil {
		t.Skip("cannot mount tmpfs:", err)
	}
	defer syscall.Unmount(dir, syscall.MNT_DETACH)
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && Unescape(f[4]) == dir {
			return
		}
	}
	t.Errorf("%q not found in mountinfo", dir)
}

func ExampleUnescape() {
	fmt.Println(Unescape(`/mnt/my\040disk`))
	// Output: /mnt/my disk
}
