#!/usr/bin/env bash
# Times berth's pull+unpack and push of the Go-toolchain image (GOROOT as
# one gzip layer plus busybox) against a docker-registry on loopback,
# beside skopeo copy + umoci raw unpack and crane push, interleaved in
# one run, and prints medians and ratios. Needs root; installs what it
# needs with scripts/deps.sh. N runs (default 5).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh >/dev/null
work=$(mktemp -d /var/tmp/berth-registry.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p .bench
go build -o .bench/layerbench ./bench/layerbench
go build -o .bench/regbench ./bench/regbench
echo "building the image (GOROOT $(go env GOROOT) + busybox) ..."
blob=$(.bench/layerbench build -store "$work/src" -name bench.local/go:latest -goroot "$(go env GOROOT)")
echo "GOROOT layer: $(du -h "$blob" | cut -f1) gzip, $(find "$(go env GOROOT)" | wc -l) files"
.bench/regbench -store "$work/src" -name bench.local/go:latest -work "$work" -crane bin/crane -n "${N:-5}"
