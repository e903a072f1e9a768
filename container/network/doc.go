// Package network gives berth containers Docker's networking: bridge
// networks with name resolution, published ports, egress through NAT,
// CNI networks, and dialing into a container's network namespace from
// the embedding process.
//
// # Networks
//
// A [Manager] owns the networks of one process. Each [Network] is a
// bridge with an IPv4 subnet (and optionally an IPv6 one), a gateway,
// an MTU, labels and an "internal" flag; the default network,
// [DefaultName] ("bridge"), exists without being created. A network
// namespace joins a network with [Network.Attach], which makes a veth
// pair (eth0, eth1, ... inside), assigns an address (fixed or the next
// free one), a MAC, routes and hairpin mode, and returns an [Endpoint];
// [Endpoint.Detach] undoes it. The container package does this for
// Spec.Networks.
//
// # Nothing outlives its owner
//
// The bridges, the container veths and the rules that isolate networks
// live in a network namespace, the hub, that only the owning process
// holds (it is never bind-mounted): when the process dies, kill -9
// included, the kernel removes it with everything in it, and with it the
// one veth pair to the host and the host's routes and addresses on it.
// Addresses are allocated in memory, per network; two processes never
// share a subnet, because a subnet that overlaps any route of the host
// (another process's network included) is refused, under a lock file
// ([DefaultLockFile]) held while one is chosen. What the host keeps
// outside the hub, the NAT table of egress and the accept rules in other
// tables' forward chains, is named for the hub's host link; the next
// Manager that makes a hub removes those whose link is gone. CNI state
// of dead processes is removed the same way ([SweepCNI]).
//
// # Name resolution
//
// On a user-defined network each attached namespace gets an embedded DNS
// server at [ResolverAddr] (127.0.0.11:53, Docker's address), served
// from the owning process through sockets opened inside the namespace:
// it answers the names and aliases of the endpoints on the networks the
// namespace is on (A, AAAA, PTR) and forwards other names, from the
// host's side, to Options.DNSUpstreams or the host's resolvers.
// [ResolvConf] and [HostsFile] make a container's /etc/resolv.conf and
// /etc/hosts by Docker's rules.
//
// # Published ports
//
// [ParsePort] reads Docker's -p syntax; [Publish] binds the host ports
// at once (so a port in use is an error before the container runs, and
// port 0 picks a free one) and relays them in-process to the
// container's address: TCP with splice(2), UDP per flow with an idle
// timeout. A port published on 127.0.0.1 is reachable from this host
// only; one published on every address is reachable from other
// interfaces and, at the network's host address, from containers
// (hairpin).
//
// # Across hosts
//
// [Network.SetOverlay] routes a network's subnet to other hosts' berth
// networks ([Peer]: a host's address and its network's subnet) over a
// VXLAN tunnel in the hub, as flannel's VXLAN backend does for
// Kubernetes' pod network: containers reach the peers' containers by
// their addresses, without NAT, the host reaches them through the hub,
// and a service's backends may be the peers' containers. The tunnel's
// UDP socket is in the host's namespace, and the tunnel goes with the
// hub.
//
// # Dialing in
//
// [Dial], [Listen] and [ListenPacket] open sockets inside a network
// namespace from the embedding process, on a locked OS thread that is
// restored afterwards; addresses must be IP literals, since a name would
// be resolved on other threads, outside the namespace. [Forward] is
// `kubectl port-forward`: a host listener whose connections are dialled
// inside.
//
// # Hostile input
//
// Port strings, subnets, addresses, aliases and CNI configurations come
// from users. Each is checked before anything is made and refused with
// an error that quotes it and matches one of the sentinel errors
// ([ErrInvalidPort], [ErrInvalidConfig], [ErrSubnetOverlap],
// [ErrInvalidAddress], [ErrAddressInUse], [ErrInvalidAlias],
// [ErrPortInUse], [ErrInUse], [ErrNotFound]); a failure in the middle
// of a netlink sequence removes what that call made.
//
// # Requirements
//
// Root (CAP_NET_ADMIN) on Linux with veth, bridge and nf_tables; no ip,
// iptables or nft binary is run (links and addresses through netlink,
// rules through nftables' netlink API). CNI networks need the plugins
// (Debian's containernetworking-plugins).
package network
