package container

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ProcessInfo describes one process of a container, as `docker top`
// lists it.
type ProcessInfo struct {
	// PID is the process's ID on the host, PIDInContainer its ID in the
	// container's PID namespace (the last NSpid entry of
	// /proc/PID/status; PID itself when the container shares the host's).
	PID, PIDInContainer int
	// PPID is the host PID of its parent (the container's init for its
	// main and Exec'd processes).
	PPID int
	// UID and GID are its real user and group IDs, as the host sees
	// them.
	UID, GID int
	// State is its state letter as ps(1) shows it: R running, S
	// sleeping, D disk sleep, Z zombie, T stopped, ...
	State string
	// Command is its name (comm) and Args its command line; Args is
	// empty for a zombie.
	Command string
	Args    []string
	// StartTime is when it started.
	StartTime time.Time
	// CPUTime is the CPU time it has used, in user and kernel mode.
	CPUTime time.Duration
	// RSS is its resident memory in bytes.
	RSS uint64
}

// clockTicks is USER_HZ, the unit of times in /proc/PID/stat: 100 on
// every architecture Linux runs Go on.
const clockTicks = 100

// Top lists the processes of the running container, like `docker top`:
// those in its cgroup (its main process, their children and Exec'd
// processes; not berth's init, which stays outside or, on cgroup v2 with
// a user namespace or a seccomp filter, is left out), sorted by host PID.
// A process that ends while it is read is left out. On a container that
// is not running, Top returns an error matching ErrNotRunning.
func (c *Container) Top() ([]ProcessInfo, error) {
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if c.state != Running && c.state != Paused {
		c.mu.Unlock()
		return nil, fmt.Errorf("top %s: %w", c.id, ErrNotRunning)
	}
	initPid := c.initPid
	c.mu.Unlock()
	pids, err := c.cg.Processes()
	if err != nil {
		return nil, fmt.Errorf("top %s: %w", c.id, err)
	}
	boot, err := bootTime()
	if err != nil {
		return nil, fmt.Errorf("top %s: %w", c.id, err)
	}
	out := make([]ProcessInfo, 0, len(pids))
	for _, pid := range pids {
		if pid == initPid {
			// berth's init, in the cgroup where it must be (cgroup v2
			// with a user namespace or a seccomp filter): not one of the
			// container's processes.
			continue
		}
		p, err := readProcess(pid, boot)
		if errors.Is(err, os.ErrNotExist) {
			continue // ended meanwhile
		}
		if err != nil {
			return nil, fmt.Errorf("top %s: process %d: %w", c.id, pid, err)
		}
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

// bootTime reads when the system booted from /proc/stat.
func bootTime() (time.Time, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return time.Time{}, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "btime "); ok {
			s, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				return time.Time{}, fmt.Errorf("/proc/stat btime: %w", err)
			}
			return time.Unix(s, 0), nil
		}
	}
	return time.Time{}, errors.New("/proc/stat has no btime")
}

// readProcess reads what ProcessInfo holds from /proc/PID.
func readProcess(pid int, boot time.Time) (ProcessInfo, error) {
	p := ProcessInfo{PID: pid, PIDInContainer: pid}
	dir := "/proc/" + strconv.Itoa(pid)
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return p, err
	}
	// pid (comm) state ppid ...: comm may hold spaces and parentheses.
	open, end := bytes.IndexByte(stat, '('), bytes.LastIndexByte(stat, ')')
	if open < 0 || end < open {
		return p, fmt.Errorf("malformed stat %q", stat)
	}
	p.Command = string(stat[open+1 : end])
	f := strings.Fields(string(stat[end+1:]))
	if len(f) < 22 {
		return p, fmt.Errorf("malformed stat %q", stat)
	}
	// Fields from 3 on (state) are f[0] on: ppid f[1], utime f[11],
	// stime f[12], starttime f[19], rss f[21].
	num := func(i int) uint64 { n, _ := strconv.ParseUint(f[i], 10, 64); return n }
	p.State = f[0]
	p.PPID = int(num(1))
	p.CPUTime = time.Duration(num(11)+num(12)) * time.Second / clockTicks
	p.StartTime = boot.Add(time.Duration(num(19)) * time.Second / clockTicks)
	p.RSS = num(21) * uint64(os.Getpagesize())
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return p, err
	}
	for _, l := range strings.Split(string(status), "\n") {
		k, v, _ := strings.Cut(l, ":")
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		switch k {
		case "NSpid":
			p.PIDInContainer, _ = strconv.Atoi(fs[len(fs)-1])
		case "Uid":
			p.UID, _ = strconv.Atoi(fs[0])
		case "Gid":
			p.GID, _ = strconv.Atoi(fs[0])
		}
	}
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return p, err
	}
	if len(cmdline) > 0 {
		p.Args = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	}
	return p, nil
}
