#!/usr/bin/env bash
# Installs what berth's tests, examples and benchmarks need on a fresh
# Debian machine (as root): Debian packages that are missing, and the Go
# modules. Usage: scripts/deps.sh [extra Debian packages...]
set -euo pipefail
cd "$(dirname "$0")/.."
# uidmap: newuidmap/newgidmap for the rootless tests; gcc: go test -race; containernetworking-plugins (and the iptables its
# portmap and firewall plugins run): the CNI tests; debootstrap: the
# service images of scripts/images.sh; curl: bench/sandbox.sh's probes;
# etcd-server: orchestrate/etcdstore's tests run real etcd members.
want=(busybox-static uidmap skopeo umoci docker-registry apache2-utils gcc libc6-dev containernetworking-plugins iptables debootstrap curl etcd-server "$@")
missing=()
for p in "${want[@]}"; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	if [ "$(id -u)" != 0 ]; then
		echo "deps: missing Debian packages ${missing[*]}; run as root to install them" >&2
		exit 1
	fi
	echo "deps: installing ${missing[*]}" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
go mod download
(cd orchestrate/etcdstore && go mod download)
# crane, a peer for interop tests and benchmarks, from the Go module proxy.
if [ ! -x bin/crane ]; then
	GOBIN="$PWD/bin" go install github.com/google/go-containerregistry/cmd/crane@v0.22.1
fi
