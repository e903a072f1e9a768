// Package owner names processes in a way that survives PID reuse, "PID-START"
// (the process ID and its start time), so that what a process leaves
// behind when it is killed (snapshots, cgroups, leases, files) can be
// recognised as its and removed once it is dead.
package owner

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Self names this process for as long as it lives: "PID-STARTTIME", its
// process ID and its start time in clock ticks after boot (field 22 of
// /proc/PID/stat), so that a reused PID does not pass for the process that
// had it. Tokens are meaningful in one PID namespace and one boot.
func Self() string {
	ownerOnce.Do(func() {
		pid := os.Getpid()
		start, _, err := procStart(pid)
		if err != nil {
			start = 0
		}
		owner = fmt.Sprintf("%d-%d", pid, start)
	})
	return owner
}

var (
	ownerOnce sync.Once
	owner     string
)

// Parse splits an owner token, reporting whether it is one.
func Parse(tok string) (pid int, start uint64, ok bool) {
	p, s, found := strings.Cut(tok, "-")
	if !found {
		return 0, 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return pid, start, true
}

// Alive reports whether the process that tok names may still run: false
// only when it surely does not (no such PID, another process with its PID,
// or a zombie, which holds no locks any more). A token that does not parse
// counts as alive.
func Alive(tok string) bool {
	pid, start, ok := Parse(tok)
	if !ok {
		return true
	}
	got, state, err := procStart(pid)
	if os.IsNotExist(err) {
		return false
	}
	if err != nil {
		return true
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	return start == 0 || got == start
}

// procStart reads the start time and state of process pid.
func procStart(pid int) (uint64, byte, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces
	// and parentheses; the fields after the last ')' are plain.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field 22 is f[19].
	if len(f) < 20 || len(f[0]) != 1 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	return start, f[0][0], err
}

// Split cuts the owner token off the front of s, "PID-START-rest", as
// names that carry their owner are made.
func Split(s string) (tok, rest string, ok bool) {
	f := strings.SplitN(s, "-", 3)
	if len(f) < 2 {
		return "", "", false
	}
	tok = f[0] + "-" + f[1]
	if _, _, ok := Parse(tok); !ok {
		return "", "", false
	}
	if len(f) == 3 {
		rest = f[2]
	}
	return tok, rest, true
}
