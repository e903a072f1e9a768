package container

import (
	"errors"

	"github.com/berthlabs/berth/internal/initproc"
)

// Errors callers can branch on with errors.Is.
var (
	// ErrInvalidSpec is wrapped by every error about a bad Spec or Process.
	ErrInvalidSpec = initproc.ErrInvalid
	// ErrExists is returned by Create for an ID already in use.
	ErrExists = errors.New("container already exists")
	// ErrNotFound is returned for an unknown container ID.
	ErrNotFound = errors.New("container not found")
	// ErrDeleted is returned by every call on a deleted container.
	ErrDeleted = errors.New("container is deleted")
	// ErrNotRunning is returned by calls that need a running container.
	ErrNotRunning = errors.New("container is not running")
	// ErrAlreadyStarted is returned by a second Start.
	ErrAlreadyStarted = errors.New("container already started")
	// ErrNotPaused is returned by Resume on a container that is not
	// paused (created, running or stopped).
	ErrNotPaused = errors.New("container is not paused")
	// ErrInitUnavailable is returned when the container init cannot be
	// started, for example when this program's executable cannot be read.
	ErrInitUnavailable = errors.New("berth container init unavailable")
)
