// Package busybox builds a tiny root filesystem from the host's static
// busybox (Debian's busybox-static), for tests, examples and benchmarks.
package busybox

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Candidates are where a static busybox is looked for, in order.
var Candidates = []string{"/bin/busybox", "/usr/bin/busybox"}

// ErrMissing is returned when no static busybox is installed.
var ErrMissing = errors.New("no static busybox found (apt-get install busybox-static)")

// Path returns the host's static busybox: $BERTH_BUSYBOX when set, else
// the first of Candidates that exists.
func Path() (string, error) {
	if p := os.Getenv("BERTH_BUSYBOX"); p != "" {
		return p, nil
	}
	for _, p := range Candidates {
		if _, err := os.Stat(p); err == nil {
			if out, err := exec.Command("file", "-L", p).Output(); err == nil && bytes.Contains(out, []byte("dynamically linked")) {
				continue
			}
			return p, nil
		}
	}
	return "", ErrMissing
}

// Rootfs fills dir (created if missing) with a busybox root filesystem:
// /bin/busybox and a symlink per applet, /etc/passwd and /etc/group with
// root, nobody and app (1000), and the usual empty directories.
func Rootfs(dir string) error {
	bb, err := Path()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, d := range []string{"bin", "etc", "proc", "sys", "dev", "tmp", "root", "home/app", "var", "run"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	os.Chmod(filepath.Join(dir, "tmp"), 0o1777)
	os.Chown(filepath.Join(dir, "home/app"), 1000, 1000)
	if err := copyFile(bb, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return err
	}
	out, err := exec.Command(bb, "--list").Output()
	if err != nil {
		return fmt.Errorf("busybox --list: %w", err)
	}
	for _, applet := range strings.Fields(string(out)) {
		if applet == "busybox" {
			continue
		}
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", applet)); err != nil && !os.IsExist(err) {
			return err
		}
	}
	files := map[string]string{
		"etc/passwd": "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
		"etc/group":  "root:x:0:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// TempRootfs builds a busybox root filesystem in a new temporary
// directory and returns its path; the caller removes it.
func TempRootfs() (string, error) {
	dir, err := os.MkdirTemp("", "berth-rootfs-")
	if err != nil {
		return "", err
	}
	if err := Rootfs(dir); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}
