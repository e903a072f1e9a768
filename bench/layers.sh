#!/usr/bin/env bash
# Times berth's layer work on the Go-toolchain image (GOROOT as one gzip
# layer, plus a busybox layer) beside its peers, and prints medians and
# ratios:
#   unpack the image       berth Unpack | tar -xzf of the GOROOT blob | umoci raw unpack
#   prepare a container's snapshot on it (berth)
#   commit a container that changed one file (berth)
#   run /bin/true from the image to exit | podman run --rm (when podman works here)
# Needs root; installs umoci, skopeo and podman from Debian when missing
# (NO_PODMAN=1 skips podman). N runs each (default 5; RUN_N for the run
# comparison, default 20). Everything is made under one temporary
# directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5}
RUN_N=${RUN_N:-20}
NAME=bench.local/go:latest
pkgs=(umoci skopeo busybox-static)
[ -n "${NO_PODMAN:-}" ] || pkgs+=(podman)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

work=$(mktemp -d /var/tmp/berth-layers.XXXXXX)
podman_image=""
cleanup() {
	[ -z "$podman_image" ] || podman rmi -f "$podman_image" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p .bench
go build -o .bench/layerbench ./bench/layerbench
lb=.bench/layerbench
store=$work/store

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
# timeit N CMD...: runs CMD N times (a fresh $out each time, after a sync)
# and prints each wall time in seconds.
timeit() {
	local n=$1
	shift
	for _ in $(seq "$n"); do
		rm -rf "$work/out"
		mkdir "$work/out"
		sync
		local t0 t1
		t0=$(date +%s.%N)
		"$@" >/dev/null
		t1=$(date +%s.%N)
		echo "$t1 - $t0" | bc -l
	done
	rm -rf "$work/out"
}
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }

echo "building the image (GOROOT $(go env GOROOT) + busybox) ..."
blob=$($lb build -store "$store" -name "$NAME" -goroot "$(go env GOROOT)")
skopeo copy -q "oci:$store/content:$NAME" "oci:$work/layout:$NAME"
echo "GOROOT layer: $(du -h "$blob" | cut -f1) gzip, $(find "$(go env GOROOT)" | wc -l) files"

out=$work/out
# The three unpacks interleaved, each after a sync so that none pays for
# the writeback of the one before.
: >"$work/berth" >"$work/tar" >"$work/umoci"
for _ in $(seq "$N"); do
	sync
	$lb unpack -store "$store" -name "$NAME" -n 1 >>"$work/berth"
	sync
	timeit 1 tar -xzf "$blob" -C "$out" >>"$work/tar"
	sync
	timeit 1 sh -c 'rmdir "$1" && umoci raw unpack --image "$2" "$1" 2>/dev/null' _ "$out" "$work/layout:$NAME" >>"$work/umoci"
done
berth_unpack=$(median <"$work/berth")
tar_unpack=$(median <"$work/tar")
umoci_unpack=$(median <"$work/umoci")
prepare=$($lb prepare -store "$store" -name "$NAME" -n "$N" | median)
commit=$($lb commit -store "$store" -name "$NAME" -n "$N" | median)
berth_run=$($lb run -store "$store" -name "$NAME" -n "$RUN_N" | median)

printf '\n%-52s %10s %10s\n' "work (median of $N; run: of $RUN_N)" seconds "berth/peer"
printf '%-52s %10.3f\n' "berth Unpack (2 layers, from nothing)" "$berth_unpack"
printf '%-52s %10.3f %10s\n' "tar -xzf of the GOROOT layer" "$tar_unpack" "$(ratio "$berth_unpack" "$tar_unpack")"
printf '%-52s %10.3f %10s\n' "umoci raw unpack of the image" "$umoci_unpack" "$(ratio "$berth_unpack" "$umoci_unpack")"
printf '%-52s %10.4f\n' "berth Prepare of a container snapshot" "$prepare"
printf '%-52s %10.4f\n' "berth Commit of a one-file change" "$commit"
printf '%-52s %10.4f\n' "berth run /bin/true from the image, to exit" "$berth_run"

if [ -n "${NO_PODMAN:-}" ] || ! command -v podman >/dev/null; then
	echo "podman: skipped (not installed or NO_PODMAN set)"
	exit 0
fi
podman_image=$NAME
# crun (podman's default) refuses hybrid cgroups; runc is the peer the
# design's figures use. Without CAP_SYS_RESOURCE both fail to set the
# container's rlimits, and podman is skipped.
podman=(podman)
if command -v runc >/dev/null; then podman+=(--runtime "$(command -v runc)"); fi
if ! skopeo copy -q "oci:$work/layout:$NAME" "containers-storage:$podman_image" 2>"$work/podman.err" ||
	! "${podman[@]}" run --rm --net=none "$podman_image" /bin/true 2>>"$work/podman.err"; then
	echo "podman: skipped, it does not work here: $(tail -n 3 "$work/podman.err")"
	exit 0
fi
podman_run=$(timeit "$RUN_N" "${podman[@]}" run --rm --net=none "$podman_image" /bin/true | median)
printf '%-52s %10.4f %10s\n' "podman (runc) run --rm /bin/true, same image" "$podman_run" "$(ratio "$berth_run" "$podman_run")"
