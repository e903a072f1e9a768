package content

import "errors"

// Errors returned by the store, wrapped with what was being done; match them
// with errors.Is.
var (
	// ErrNotFound means a blob, a name or a platform's manifest is not in
	// the store.
	ErrNotFound = errors.New("content: not found")
	// ErrExists means a blob is already in the store: Store.Writer returns
	// it when another writer got there first.
	ErrExists = errors.New("content: already exists")
	// ErrDigestMismatch means data does not match the digest or size that
	// describes it. Nothing of it is kept.
	ErrDigestMismatch = errors.New("content: digest mismatch")
	// ErrInvalid means an argument or input is malformed: a bad reference
	// or digest, an unsupported media type, a malformed index.json,
	// manifest or archive, an unsafe path in an archive.
	ErrInvalid = errors.New("content: invalid")
)
