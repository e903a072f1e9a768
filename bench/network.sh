#!/usr/bin/env bash
# Times berth's networking beside its peers in one interleaved run
# (bench/netbench): container start with and without a network and a
# published port, against podman run --rm -p; attach+detach against
# libcni with Debian's bridge, host-local and portmap plugins; TCP
# throughput and connections per second through a published port,
# against the direct path, socat and podman's published port (CNI
# portmap DNAT); DNS lookups from inside a container. Needs root;
# installs the peers from Debian when missing. ROUNDS=5 by default.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
missing=()
for p in busybox-static socat podman runc containernetworking-plugins iptables; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p .bench
# Static, so that the same binary serves inside the containers.
CGO_ENABLED=0 go build -o .bench/netbench ./bench/netbench
exec .bench/netbench -rounds "$ROUNDS" "$@"
