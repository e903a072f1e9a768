package registry

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/berthlabs/berth/layer/content"
)

// Errors callers can match with errors.Is.
var (
	// ErrNotFound: the registry has no such repository, tag, manifest
	// or blob (404).
	ErrNotFound = errors.New("registry: not found")
	// ErrUnauthorized: the registry refused the credentials, or there
	// were none (401 or 403).
	ErrUnauthorized = errors.New("registry: unauthorized")
	// ErrUnsupported: a manifest, index or layer of a media type berth
	// does not handle, or no manifest for the wanted platform.
	ErrUnsupported = errors.New("registry: unsupported")
	// ErrInvalidReference: a malformed image reference.
	ErrInvalidReference = errors.New("registry: invalid reference")
	// ErrStalled: the registry sent nothing for longer than the stall
	// timeout.
	ErrStalled = errors.New("registry: connection stalled")
	// ErrDigestMismatch: content did not match its digest. It is the
	// layer/content store's sentinel, so errors of both match it.
	ErrDigestMismatch = content.ErrDigestMismatch
)

// StatusError is an unexpected HTTP answer from a registry.
type StatusError struct {
	// Method and URL are the request's (the URL without its query).
	Method string
	URL    string // the request's URL, without its query
	// Code is the HTTP status.
	Code int
	// Detail is the registry's error message, if it sent one.
	Detail string
	// RetryAfter is the delay a 429 or 503 asked for, if any.
	RetryAfter time.Duration
}

// Error says which request got which answer, with the registry's
// message.
func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s %s: %d %s", e.Method, e.URL, e.Code, http.StatusText(e.Code))
	if e.Detail != "" {
		s += ": " + e.Detail
	}
	return s
}

// Is makes a StatusError match ErrNotFound for 404 and ErrUnauthorized
// for 401 and 403.
func (e *StatusError) Is(target error) bool {
	switch target {
	case ErrNotFound:
		return e.Code == http.StatusNotFound
	case ErrUnauthorized:
		return e.Code == http.StatusUnauthorized || e.Code == http.StatusForbidden
	}
	return false
}

// Temporary reports whether the request may succeed if tried again.
func (e *StatusError) Temporary() bool {
	switch e.Code {
	case http.StatusRequestTimeout, http.StatusTooManyRequests,
		http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true
	}
	return false
}
