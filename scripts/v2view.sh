#!/usr/bin/env bash
# Runs a command (a test binary, say) as if this hybrid cgroup host were a
# pure cgroup v2 one: in a private mount namespace whose /sys/fs/cgroup is
# a bare cgroup2 mount (the unified hierarchy, which holds no controllers
# here but what v1 leaves, often only hugetlb). berth then takes its v2
# paths: cgroups in the unified hierarchy, CLONE_INTO_CGROUP placement and
# the eBPF device filter. Limits of controllers v1 holds fail with
# ErrNotSupported. Needs root. Example:
#   go test -c -o /tmp/c.test ./container && scripts/v2view.sh /tmp/c.test -test.run Device
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 COMMAND [ARG...]" >&2; exit 2; }
exec unshare -m --propagation private sh -c \
	'umount -R /sys/fs/cgroup && mount -t cgroup2 cgroup2 /sys/fs/cgroup && exec "$@"' sh "$@"
