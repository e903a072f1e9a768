package initproc

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountFlags are the mount(8) options that are mount flags, as runc maps
// them: each sets or clears one MS_ flag.
var mountFlags = map[string]struct {
	clear bool
	flag  uint64
}{
	"ro":            {false, unix.MS_RDONLY},
	"rw":            {true, unix.MS_RDONLY},
	"nosuid":        {false, unix.MS_NOSUID},
	"suid":          {true, unix.MS_NOSUID},
	"nodev":         {false, unix.MS_NODEV},
	"dev":           {true, unix.MS_NODEV},
	"noexec":        {false, unix.MS_NOEXEC},
	"exec":          {true, unix.MS_NOEXEC},
	"sync":          {false, unix.MS_SYNCHRONOUS},
	"async":         {true, unix.MS_SYNCHRONOUS},
	"dirsync":       {false, unix.MS_DIRSYNC},
	"noatime":       {false, unix.MS_NOATIME},
	"atime":         {true, unix.MS_NOATIME},
	"nodiratime":    {false, unix.MS_NODIRATIME},
	"diratime":      {true, unix.MS_NODIRATIME},
	"relatime":      {false, unix.MS_RELATIME},
	"norelatime":    {true, unix.MS_RELATIME},
	"strictatime":   {false, unix.MS_STRICTATIME},
	"nostrictatime": {true, unix.MS_STRICTATIME},
	"lazytime":      {false, unix.MS_LAZYTIME},
	"nolazytime":    {true, unix.MS_LAZYTIME},
	"nosymfollow":   {false, unix.MS_NOSYMFOLLOW},
	"symfollow":     {true, unix.MS_NOSYMFOLLOW},
}

// refusedOptions are mount options of mount(8) and runc that berth does
// not implement; they are never passed on to a file system.
var refusedOptions = map[string]bool{
	"shared": true, "rshared": true, "slave": true, "rslave": true,
	"unbindable": true, "runbindable": true, "remount": true,
	"mand": true, "nomand": true, "silent": true, "loud": true,
	"acl": true, "noacl": true, "iversion": true, "noiversion": true,
	"tmpcopyup": true, "idmap": true, "ridmap": true,
}

// atimeFlags are the flags of which a mount has one: choosing one drops
// the others.
const atimeFlags = unix.MS_NOATIME | unix.MS_RELATIME | unix.MS_STRICTATIME

// keptFlags are the flags a bind remount keeps from the mount it
// changes unless told otherwise (in a user namespace the kernel refuses
// to clear them).
const keptFlags = unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC | unix.MS_NOATIME | unix.MS_NODIRATIME | unix.MS_RELATIME

// NewMount returns the mount init makes for a container.Mount: options
// that are mount flags (ro, nosuid, nodev, noexec, relatime, ...; see
// mountFlags) become Flags and Clear, "bind" makes a bind mount
// non-recursive ("rbind", the default, recursive), "defaults", "private"
// and "rprivate" change nothing (every mount of a container is private).
// A tmpfs passes the other options to the file system ("size=64m"); for a
// bind mount they are an error wrapping ErrInvalid.
func NewMount(typ, source, target string, readonly bool, options []string) (Mount, error) {
	m := Mount{Type: typ, Source: source, Target: target, ReadOnly: readonly, Options: options}
	var data []string
	for _, o := range options {
		if f, ok := mountFlags[o]; ok {
			if f.clear {
				m.Flags &^= f.flag
				m.Clear |= f.flag
			} else {
				m.Flags |= f.flag
				m.Clear &^= f.flag
			}
			continue
		}
		recursive := strings.HasPrefix(o, "r") && mountFlags[o[1:]].flag != 0
		switch {
		case refusedOptions[o] || recursive:
			return m, fmt.Errorf("%w: %s mount on %s: option %q is not supported", ErrInvalid, typ, target, o)
		case o == "defaults" || o == "private" || o == "rprivate":
		case (o == "bind" || o == "rbind") && typ == "bind":
			m.NoRecursive = o == "bind"
		case typ == "tmpfs" && o != "" && !strings.ContainsAny(o, "\x00"):
			data = append(data, o)
		default:
			return m, fmt.Errorf("%w: %s mount on %s: option %q is not supported", ErrInvalid, typ, target, o)
		}
	}
	if m.Flags&unix.MS_RDONLY != 0 {
		m.ReadOnly = true
	} else if m.Clear&unix.MS_RDONLY != 0 {
		m.ReadOnly = false
	}
	m.Flags &^= unix.MS_RDONLY
	m.Clear &^= unix.MS_RDONLY
	m.Data = strings.Join(data, ",")
	return m, nil
}
