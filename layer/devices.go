package layer

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// deviceRefusal says why layers unpacked into s may not hold device
// nodes, or returns "" when they may.
func (s *Store) deviceRefusal() string {
	if os.Geteuid() != 0 {
		return "it is not run as root (mknod needs CAP_MKNOD)"
	}
	if !initialUserNS() {
		return "it runs in a user namespace, where the kernel refuses mknod"
	}
	for _, name := range []string{"snapshots", "mounts"} {
		dir := filepath.Join(s.root, name)
		fi, err := os.Stat(dir)
		if name == "mounts" && errors.Is(err, fs.ErrNotExist) {
			continue // made 0700 when first needed
		}
		if err != nil {
			return err.Error()
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid != 0 || fi.Mode().Perm()&0o077 != 0 {
			return fmt.Sprintf("%s (mode %v) is open to users other than root, who could use a device node there", dir, fi.Mode().Perm())
		}
	}
	return ""
}

// initialUserNS reports whether this process is in the host's user
// namespace, whose ID map is the identity over every ID.
func initialUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := bytes.Fields(b)
	return len(f) == 3 && string(f[0]) == "0" && string(f[1]) == "0" && string(f[2]) == "4294967295"
}
