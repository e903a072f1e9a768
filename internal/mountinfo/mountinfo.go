// Package mountinfo holds what several berth packages need to read
// /proc/self/mountinfo (proc(5)).
package mountinfo

import (
	"bufio"
	"io"
	"strconv"
	"strings"
)

// Path is the mount table of the calling thread's mount namespace. It
// is the process's namespace wherever berth reads it (from goroutines
// that did not change their thread's), whereas /proc/self/mountinfo is
// the main thread's: a goroutine of the embedding program that left the
// main thread in a namespace of its own would freeze that view.
const Path = "/proc/thread-self/mountinfo"

// Unescape undoes the octal escapes that mountinfo uses in paths for
// space, tab, newline and backslash (\040, \011, \012, \134). Text that
// is not a valid escape is kept as it is.
func Unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Entry is one line of a mountinfo file.
type Entry struct {
	Line       string // the line as the kernel wrote it
	MountPoint string // unescaped
	FSType     string
}

// Read parses a mountinfo file (lines of "ID parent major:minor root
// mountpoint options [optional fields] - fstype source superoptions").
// Lines it cannot parse are skipped.
func Read(r io.Reader) ([]Entry, error) {
	var out []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		sep := strings.Index(line, " - ")
		if len(fields) < 5 || sep < 0 {
			continue
		}
		rest := strings.Fields(line[sep+3:])
		if len(rest) == 0 {
			continue
		}
		out = append(out, Entry{Line: line, MountPoint: Unescape(fields[4]), FSType: rest[0]})
	}
	return out, sc.Err()
}
