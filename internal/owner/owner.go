// Package owner names processes in a way that survives PID reuse (the
// PID and the process's start time), so that what a process leaves
// behind when it is killed can be recognised as its and removed once it
// is dead.
package owner

import (
	"bytes"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Self returns this process's owner ID, "PID-START".
var Self = sync.OnceValue(func() string {
	pid := os.Getpid()
	return ID(pid, Start(pid))
})

// ID formats an owner ID.
func ID(pid int, start uint64) string {
	return strconv.Itoa(pid) + "-" + strconv.FormatUint(start, 10)
}

// Start returns a process's start time in clock ticks since boot (field
// 22 of /proc/PID/stat), or 0 if it is gone.
func Start(pid int) uint64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// Parse reads the owner ID at the start of s ("PID-START" or
// "PID-START-anything"), returning the rest after it.
func Parse(s string) (pid int, start uint64, rest string, ok bool) {
	f := strings.SplitN(s, "-", 3)
	if len(f) < 2 {
		return 0, 0, "", false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 {
		return 0, 0, "", false
	}
	if len(f) == 3 {
		rest = f[2]
	}
	return pid, start, rest, true
}

// Alive reports whether the process an owner ID (at the start of s)
// names still runs; ok is false when s does not start with one.
func Alive(s string) (alive, ok bool) {
	pid, start, _, ok := Parse(s)
	if !ok {
		return false, false
	}
	return Start(pid) == start, true
}
