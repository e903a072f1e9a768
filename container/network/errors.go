package network

import "errors"

// Errors callers branch on; every error of this package that has one of
// these causes matches it with errors.Is, and says what was wrong.
var (
	// ErrNotFound: no network, endpoint or published port by that name.
	ErrNotFound = errors.New("network: not found")
	// ErrExists: a network of that name exists already.
	ErrExists = errors.New("network: already exists")
	// ErrInUse: the network still has endpoints attached.
	ErrInUse = errors.New("network: in use")
	// ErrInvalidConfig: a network configuration that cannot be made
	// (malformed or IPv6 subnet where IPv4 is needed, a gateway outside
	// the subnet, a bad name or MTU).
	ErrInvalidConfig = errors.New("network: invalid configuration")
	// ErrSubnetOverlap: the subnet overlaps a route the host already has
	// (another network of this or another process, or a host network).
	ErrSubnetOverlap = errors.New("network: subnet overlaps a host route")
	// ErrInvalidAddress: a fixed address outside the subnet, or a
	// malformed MAC address.
	ErrInvalidAddress = errors.New("network: invalid address")
	// ErrAddressInUse: the fixed address is taken, or the subnet is full.
	ErrAddressInUse = errors.New("network: address in use")
	// ErrInvalidAlias: an alias that is not a DNS name or that another
	// endpoint of the network has.
	ErrInvalidAlias = errors.New("network: invalid or duplicate alias")
	// ErrInvalidPort: a malformed port mapping (a bad -p string, port 0
	// inside the container, a protocol other than tcp or udp, ranges of
	// different lengths).
	ErrInvalidPort = errors.New("network: invalid port mapping")
	// ErrPortInUse: the host port is taken.
	ErrPortInUse = errors.New("network: host port in use")
	// ErrClosed: the Manager was closed.
	ErrClosed = errors.New("network: manager closed")
)
