package namespace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// NewNet creates a network namespace with its loopback interface up and
// returns a handle on it, which keeps it alive while open. The namespace
// is made with unshare(CLONE_NEWNET) on a locked OS thread that is then
// put back into its own network namespace (or, if that fails, discarded).
//
// If target is not empty the namespace is also persisted there, as with
// [Namespace.Persist], so that it outlives the handle and other tools find
// it (target /run/netns/NAME for `ip netns exec NAME`); remove it with
// [Release].
func NewNet(target string) (*Namespace, error) {
	nss, err := New(LoopbackUp, Net)
	if err != nil {
		return nil, err
	}
	ns := nss[0]
	if target != "" {
		if err := ns.Persist(target); err != nil {
			ns.Close()
			return nil, fmt.Errorf("namespace: new net: %w", err)
		}
	}
	return ns, nil
}

// LoopbackUp sets the loopback interface "lo" up in the calling OS
// thread's network namespace; run it inside [Do] for another namespace.
// It is a no-op if lo is already up.
func LoopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("namespace: loopback up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("namespace: loopback up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("namespace: loopback up: get flags of lo: %w", err)
	}
	flags := ifr.Uint16()
	if flags&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(flags | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("namespace: loopback up: set flags of lo: %w", err)
	}
	return nil
}
