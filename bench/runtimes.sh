#!/usr/bin/env bash
# Times container start-to-exit with berth, runc and crun side by side
# (bench/startbench) and prints medians and ratios. Needs root; installs
# the peers from Debian when missing. crun refuses hybrid cgroup hosts, so
# on those the whole run happens in a private mount namespace with the
# empty cgroup v2 mount at /sys/fs/cgroup/unified unmounted (berth and runc
# use the v1 controllers either way). SECCOMP=1 applies Docker's default
# seccomp profile in every runtime (linux.seccomp in the bundle).
# RUNTIMES picks them (default berth,berth-pool,runc,crun,unshare; also
# berth-image, berth-image-pool and podman: from a busybox image, podman
# run --rm with crun, network none).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100}
ARGS=(-n "$N")
if [ -n "${RUNTIMES:-}" ]; then ARGS+=(-runtimes "$RUNTIMES"); fi
if [ "${SECCOMP:-0}" = 1 ]; then ARGS+=(-seccomp); fi
missing=()
peers=(runc crun busybox-static)
case "${RUNTIMES:-}" in *podman*) peers+=(podman) ;; esac
for p in "${peers[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
mkdir -p .bench
go build -o .bench/startbench ./bench/startbench
if mountpoint -q /sys/fs/cgroup/unified; then
	exec unshare -m sh -c 'umount /sys/fs/cgroup/unified && exec .bench/startbench "$@"' startbench "${ARGS[@]}"
fi
exec .bench/startbench "${ARGS[@]}"
