// Package mountinfo holds what several berth packages need to read
// /proc/self/mountinfo (proc(5)).
package mountinfo

import (
	"strconv"
	"strings"
)

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
