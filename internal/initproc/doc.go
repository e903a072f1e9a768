// Package initproc is a container's PID 1 (berth's init) and the protocol
// the container package speaks with it. It is built into a small static
// program (cmd/berth-init) that the container package embeds and runs
// from a sealed memfd, so that starting a container costs the start of a
// tiny Go program, not of the embedding one. Nothing outside berth may
// depend on it.
package initproc

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalid marks errors about a bad container spec or process; the
// container package exports it as ErrInvalidSpec.
var ErrInvalid = errors.New("invalid container spec")

// Mount is an extra mount for init to make (see container.Mount and
// NewMount, which fills in Flags, Clear, NoRecursive and Data from
// Options).
type Mount struct {
	Type     string   `json:"type"` // "bind" or "tmpfs"
	Source   string   `json:"source,omitempty"`
	Target   string   `json:"target"`
	ReadOnly bool     `json:"readonly,omitempty"`
	Options  []string `json:"options,omitempty"`
	// Flags are MS_ flags to set, Clear those to clear (from a tmpfs's
	// defaults, nosuid and nodev, or from what a bind remount keeps).
	Flags uint64 `json:"flags,omitempty"`
	Clear uint64 `json:"clear,omitempty"`
	// NoRecursive binds only the source mount, not those below it.
	NoRecursive bool `json:"norec,omitempty"`
	// Data are a tmpfs's file system options ("size=1m,mode=755").
	Data string `json:"data,omitempty"`
	// CopyUp, for a bind mount of a directory (a named volume), copies
	// what the container has at Target into Source before the mount when
	// Source is empty, as Docker fills a new volume. CopyLock, when set,
	// is a file init holds an exclusive flock on meanwhile, so that two
	// containers starting on one empty volume do not both fill it.
	CopyUp   bool   `json:"copyUp,omitempty"`
	CopyLock string `json:"copyLock,omitempty"`
}

// String describes the mount for error messages.
func (m Mount) String() string {
	return fmt.Sprintf("%s %s on %s (%s)", m.Type, m.Source, m.Target, strings.Join(m.Options, ","))
}

// LookupEnv returns the value of key in env (KEY=value entries, the last
// one winning), or "".
func LookupEnv(env []string, key string) string {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, _ := strings.Cut(env[i], "="); k == key {
			return v
		}
	}
	return ""
}
