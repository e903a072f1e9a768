package archive

import (
	"errors"
	"fmt"
)

// ErrUnsafe is matched (with errors.Is) by the errors of entries that Apply
// refuses because they could reach outside the layer root or the host: a
// ".." component, a hardlink to a directory or to a path that is not in
// the root, a device node without Options.AllowDevices, an invalid name.
var ErrUnsafe = errors.New("unsafe layer entry")

// ErrDeviceNode is matched (with errors.Is), as well as ErrUnsafe, by the
// error of a character or block device entry that Options.AllowDevices
// does not allow.
var ErrDeviceNode = errors.New("device node not allowed")

// ErrLimit is matched (with errors.Is) by the error of Apply when a layer
// exceeds Options.MaxFiles or Options.MaxBytes.
var ErrLimit = errors.New("layer exceeds a limit")

// EntryError is the error of Apply about one entry of the layer. Its
// message names the entry: archive: entry "../etc/passwd": path escapes
// the layer root.
type EntryError struct {
	// Name is the entry's name as the tar has it.
	Name string
	// Err is what went wrong; it may match ErrUnsafe, ErrLimit,
	// errors.ErrUnsupported or a syscall.Errno.
	Err error
}

// Error returns the message, which names the entry.
func (e *EntryError) Error() string {
	return fmt.Sprintf("archive: entry %q: %v", e.Name, e.Err)
}

// Unwrap returns e.Err.
func (e *EntryError) Unwrap() error { return e.Err }

// kindError is an error with its own message that matches a sentinel.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// deviceError is the refusal of a device node: it matches ErrUnsafe and
// ErrDeviceNode.
type deviceError struct{}

func (deviceError) Error() string {
	return "device nodes are not allowed (Options.AllowDevices)"
}
func (deviceError) Is(target error) bool { return target == ErrUnsafe || target == ErrDeviceNode }

func unsafeErr(format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: ErrUnsafe}
}

func limitErr(format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: ErrLimit}
}

func unsupportedErr(format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: errors.ErrUnsupported}
}

// opErr wraps a system call's error with the operation that failed.
func opErr(op string, err error) error {
	return fmt.Errorf("%s: %w", op, err)
}
