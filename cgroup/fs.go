package cgroup

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Cgroup files are read and written with plain system calls: os.File's
// bookkeeping (fstat, poller registration) would double the cost of the
// many small accesses New, Add and Delete make.

// retry calls f until it does not fail with EINTR. Go's runtime signals
// its threads (preemption), and some cgroup writes, such as lowering a
// memory limit, reclaim memory and stop early when a signal is pending.
func retry[T any](f func() (T, error)) (T, error) {
	for {
		v, err := f()
		if err != unix.EINTR {
			return v, err
		}
	}
}

func open(path string, flags int) (int, error) {
	fd, err := retry(func() (int, error) { return unix.Open(path, flags|unix.O_CLOEXEC, 0) })
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// writeFile writes s to an existing cgroup file.
func writeFile(path, s string) error {
	fd, err := open(path, unix.O_WRONLY)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if _, err := retry(func() (int, error) { return unix.Write(fd, []byte(s)) }); err != nil {
		return &fs.PathError{Op: "write " + strconv.Quote(s) + " to", Path: path, Err: err}
	}
	return nil
}

// readFile reads a cgroup file whole.
func readFile(path string) ([]byte, error) {
	fd, err := open(path, unix.O_RDONLY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := make([]byte, 0, 512)
	for {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, cap(buf))
		}
		n, err := retry(func() (int, error) { return unix.Read(fd, buf[len(buf):cap(buf)]) })
		if err != nil {
			return nil, &fs.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// readString reads a one-line cgroup file, without the newline.
func readString(path string) (string, error) {
	b, err := readFile(path)
	return string(bytes.TrimSpace(b)), err
}

// readInt reads a file holding one integer; "max" reads as -1.
func readInt(path string) (int64, error) {
	s, err := readString(path)
	if err != nil {
		return 0, err
	}
	if s == "max" {
		return -1, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		// Unsigned values past MaxInt64 (v1 "unlimited" on some
		// kernels) mean unlimited too.
		if _, uerr := strconv.ParseUint(s, 10, 64); uerr == nil {
			return -1, nil
		}
		return 0, &fs.PathError{Op: "parse", Path: path, Err: err}
	}
	return n, nil
}

// readKeyed reads a flat keyed file ("key value" lines, such as cpu.stat)
// and returns the values of the keys asked for, 0 for the absent ones.
func readKeyed(path string, keys ...string) ([]uint64, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return parseKeyed(b, keys...), nil
}

// parseKeyed parses the contents of a flat keyed file, returning the
// values of keys, 0 for the absent and the unparsable ones.
func parseKeyed(b []byte, keys ...string) []uint64 {
	out := make([]uint64, len(keys))
	for line := range strings.SplitSeq(string(b), "\n") {
		k, v, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		if i := slices.Index(keys, k); i >= 0 {
			out[i], _ = strconv.ParseUint(strings.TrimSpace(v), 10, 64)
		}
	}
	return out
}

// unlimited is the smallest value treated as "no limit" when reading v1
// limits back (the kernel reports PAGE_COUNTER_MAX pages in bytes,
// 9223372036854771712 with 4 KiB pages).
const unlimited = 1 << 62

// limitValue turns a limit read from the kernel into the Resources and
// Stats convention: 0 for unlimited.
func limitValue(n int64) int64 {
	if n < 0 || n >= unlimited {
		return 0
	}
	return n
}

// mkdirAll creates dir and any missing parents, and returns the
// directories it created, top-down.
func mkdirAll(dir string) ([]string, error) {
	err := unix.Mkdir(dir, 0o755)
	switch err {
	case nil:
		return []string{dir}, nil
	case unix.EEXIST:
		return nil, nil
	case unix.ENOENT:
		parent := filepath.Dir(dir)
		if parent == dir {
			break
		}
		created, perr := mkdirAll(parent)
		if perr != nil {
			return nil, perr
		}
		if err = unix.Mkdir(dir, 0o755); err == nil {
			return append(created, dir), nil
		}
		if err == unix.EEXIST {
			return created, nil
		}
		removeDirs(created)
	}
	return nil, &fs.PathError{Op: "mkdir", Path: dir, Err: err}
}

// removeDirs removes dirs, bottom-up, ignoring errors: it undoes mkdirAll.
func removeDirs(dirs []string) {
	for i := len(dirs) - 1; i >= 0; i-- {
		_ = unix.Rmdir(dirs[i])
	}
}

// subdirs returns the names of the directories in dir (child cgroups).
func subdirs(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// hasChildren reports whether the cgroup directory dir has child
// cgroups, from its link count (kernfs keeps it at 2 + subdirectories),
// which costs one stat where listing costs an open and reading dozens of
// entries.
func hasChildren(dir string) (bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(dir, &st); err != nil {
		return false, &fs.PathError{Op: "stat", Path: dir, Err: err}
	}
	return st.Nlink != 2, nil
}

// rmdirTree removes the cgroup directory dir and its child cgroups,
// children first. It retries EBUSY for a short while: a cgroup whose last
// process just exited may not be removable at once. A missing dir is not
// an error. When ctx is done while it waits, it returns ctx's error.
func rmdirTree(ctx context.Context, dir string) error {
	pause := 100 * time.Microsecond
	deadline := time.Now().Add(time.Second)
	for {
		err := unix.Rmdir(dir)
		if err == nil || err == unix.ENOENT {
			return nil
		}
		if err != unix.EBUSY {
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		children, cerr := subdirs(dir)
		if cerr != nil && !errors.Is(cerr, fs.ErrNotExist) {
			return cerr
		}
		for _, c := range children {
			if err := rmdirTree(ctx, filepath.Join(dir, c)); err != nil {
				return err
			}
		}
		if len(children) > 0 {
			continue
		}
		if time.Now().After(deadline) {
			return &fs.PathError{Op: "rmdir", Path: dir, Err: err}
		}
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return fmt.Errorf("rmdir %s: %w", dir, ctx.Err())
		}
		pause = min(2*pause, 50*time.Millisecond)
	}
}

// readProcs adds the pids in dir's cgroup.procs, and in its child
// cgroups', to set.
func readProcs(dir string, set map[int]struct{}) error {
	b, err := readFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if line == "" {
			continue
		}
		pid, err := strconv.Atoi(line)
		if err != nil {
			return &fs.PathError{Op: "parse", Path: filepath.Join(dir, "cgroup.procs"), Err: err}
		}
		set[pid] = struct{}{}
	}
	if more, err := hasChildren(dir); !more || err != nil {
		return err
	}
	children, err := subdirs(dir)
	if err != nil {
		return err
	}
	for _, c := range children {
		// A child removed meanwhile is no error.
		if err := readProcs(filepath.Join(dir, c), set); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// sortedPids returns the members of set in increasing order.
func sortedPids(set map[int]struct{}) []int {
	out := make([]int, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.Sort(out)
	return out
}

// addProc writes pid to the cgroup.procs file in dir. A task still being
// created makes the kernel answer EINVAL, so that is retried briefly, as
// runc and containerd do.
func addProc(dir string, pid int) error {
	s := strconv.Itoa(pid)
	p := filepath.Join(dir, "cgroup.procs")
	var err error
	for i := range 5 {
		if err = writeFile(p, s); !errors.Is(err, unix.EINVAL) {
			return err
		}
		time.Sleep(time.Duration(1<<i) * time.Millisecond)
	}
	return err
}

// killAll sends SIGKILL to pids; processes gone already are no error.
func killAll(pids []int) error {
	for _, p := range pids {
		if err := unix.Kill(p, unix.SIGKILL); err != nil && err != unix.ESRCH {
			return os.NewSyscallError("kill "+strconv.Itoa(p), err)
		}
	}
	return nil
}

// exists reports whether dir exists.
func exists(dir string) bool {
	var st unix.Stat_t
	return unix.Stat(dir, &st) == nil
}

// isBusy reports whether err is EBUSY: a cgroup that holds processes.
func isBusy(err error) bool { return errors.Is(err, unix.EBUSY) }
