#!/usr/bin/env bash
# Times a service sandbox from start to ready, as a test harness uses one:
# run a container from a local image with a published loopback port, wait
# until the service answers, then remove it. The peer is podman (runc,
# its CNI bridge and portmap); berth's side is the BenchmarkRunReady
# benchmark of container/containertest, interleaved with podman's rounds.
#
#   httpd     busybox httpd serving a file; ready = HTTP 200 (curl)
#   redis     berth.test/redis:7 (scripts/images.sh); ready = PING answered
#   postgres  berth.test/postgres:15; ready = psql -c 'select 1' succeeds
#
# For each: "ready" is from the start of `podman run -d` until the
# service answers on the port `podman port` tells, "total" includes
# `podman rm -f -t 0` (killed at once, as a test's cleanup does; without
# -t 0 busybox httpd as PID 1 ignores SIGTERM and costs 10 s). Medians of N rounds (default 10) after one warm-up
# round. Needs root. Traffic: only 127.0.0.1 and the containers'
# namespaces. Images are loaded into podman for the run and removed
# after it, with the containers.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10}
if [ "$(id -u)" != 0 ]; then
	echo "sandbox: needs root" >&2
	exit 1
fi
missing=()
for p in busybox-static podman runc curl debootstrap; do
	dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
command -v psql >/dev/null || missing+=(postgresql-client)
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The cache rule of scripts/images.sh (which builds the images, or finds
# them cached at once).
if [ -n "${BERTH_CACHE:-}" ]; then
	cache=$BERTH_CACHE
else
	cache=/var/cache/berth
fi
export BERTH_CACHE=$cache
scripts/images.sh redis postgres

work=$(mktemp -d)
podman=(podman --cgroup-manager=cgroupfs)
run=("${podman[@]}" run -d --runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
images=(berth.test/busybox-httpd:bench berth.test/redis:7 berth.test/postgres:15)
cids=()
cleanup() {
	local c
	for c in "${cids[@]}"; do "${podman[@]}" rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
	"${podman[@]}" rmi -f "${images[@]}" >/dev/null 2>&1 || true
	rm -rf "$work"
}
trap cleanup EXIT

# The busybox image: /bin/busybox from Debian's busybox-static, its
# applets as symlinks, and a page to serve.
mkdir -p "$work/bb/bin" "$work/bb/www" "$work/bb/tmp"
cp /bin/busybox "$work/bb/bin/busybox"
for a in $(/bin/busybox --list); do
	[ "$a" = busybox ] || ln -s busybox "$work/bb/bin/$a"
done
echo 'hello from busybox httpd' >"$work/bb/www/index.html"
tar -C "$work/bb" -cf "$work/bb.tar" .
"${podman[@]}" import -q --change 'CMD ["/bin/httpd", "-f", "-p", "80", "-h", "/www"]' \
	--change 'EXPOSE 80' "$work/bb.tar" "${images[0]}" >/dev/null
"${podman[@]}" load -q -i "$cache/images/redis.tar" >/dev/null
"${podman[@]}" load -q -i "$cache/images/postgres.tar" >/dev/null

now() { date +%s%N; }
# The probes: each tries once, quietly; $1 is host:port.
ready_httpd() { curl -sf -o /dev/null --max-time 1 "http://$1/"; }
ready_redis() {
	local r
	r=$(timeout 1 bash -c 'exec 3<>"/dev/tcp/${1%:*}/${1#*:}" && printf "PING\r\n" >&3 && head -c 5 <&3' _ "$1" 2>/dev/null) &&
		[ "$r" = +PONG ]
}
ready_postgres() {
	[ "$(PGCONNECT_TIMEOUT=1 psql -w -h "${1%:*}" -p "${1#*:}" -U postgres -Atc 'select 1' 2>/dev/null)" = 1 ]
}

# round NAME IMAGE PORT: one round; prints "ready_ms total_ms".
round() {
	local name=$1 image=$2 port=$3 t0 t1 t2 cid addr i
	t0=$(now)
	cid=$("${run[@]}" -p "127.0.0.1::$port" "$image")
	cids+=("$cid")
	addr=$("${podman[@]}" port "$cid" "$port/tcp")
	for ((i = 0; ; i++)); do
		"ready_$name" "$addr" && break
		if [ $i -ge 3000 ]; then
			echo "sandbox: $name not ready after $i tries; its log:" >&2
			"${podman[@]}" logs "$cid" >&2 || true
			return 1
		fi
		sleep 0.01
	done
	t1=$(now)
	"${podman[@]}" rm -f -t 0 "$cid" >/dev/null
	t2=$(now)
	unset 'cids[-1]'
	echo "$(((t1 - t0) / 1000)) $(((t2 - t0) / 1000))"
}

median() { sort -n | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1; m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.1f\n", m / 1000 }'; }

# berth's side: container/containertest's BenchmarkRunReady, the same
# three services started from the same archives (through BERTH_CACHE),
# ready when they answer through a port published on the host's loopback,
# then removed; the test binary is built once and run for one timed
# sandbox per service per round, right after podman's, so that drift on a
# noisy machine hits both alike.
pkg=./container/containertest/
berth_bin=$work/containertest.test
go test -c -o "$berth_bin" "$pkg"
berth_round() {
	local out
	out=$("$berth_bin" -test.run '^$' -test.bench "^BenchmarkRunReady\$/^$1\$" -test.benchtime 1x)
	awk '/^BenchmarkRunReady\// { for (i = 1; i < NF; i++) { if ($(i+1) == "ms-ready") r = $i; if ($(i+1) == "ms-total") t = $i } } END { if (r == "") exit 1; printf "%d %d\n", r * 1000, t * 1000 }' <<<"$out"
}

declare -A peer_ready peer_total berth_ready berth_total
services=(httpd redis postgres)
declare -A image=([httpd]=${images[0]} [redis]=${images[1]} [postgres]=${images[2]})
declare -A port=([httpd]=80 [redis]=6379 [postgres]=5432)
for s in "${services[@]}"; do
	round "$s" "${image[$s]}" "${port[$s]}" >/dev/null
	berth_round "$s" >/dev/null
done
for ((r = 0; r < N; r++)); do
	for s in "${services[@]}"; do
		round "$s" "${image[$s]}" "${port[$s]}" >>"$work/$s.times"
		berth_round "$s" >>"$work/$s.berth"
	done
done
for s in "${services[@]}"; do
	peer_ready[$s]=$(cut -d' ' -f1 "$work/$s.times" | median)
	peer_total[$s]=$(cut -d' ' -f2 "$work/$s.times" | median)
	berth_ready[$s]=$(cut -d' ' -f1 "$work/$s.berth" | median)
	berth_total[$s]=$(cut -d' ' -f2 "$work/$s.berth" | median)
done

echo
echo "archives: redis $(du -h "$(readlink -f "$cache/images/redis.tar")" | cut -f1), postgres $(du -h "$(readlink -f "$cache/images/postgres.tar")" | cut -f1) ($cache/images)"
echo "podman $(podman --version | awk '{ print $3 }') (runc, CNI bridge, -p 127.0.0.1::PORT) and berth, interleaved, medians of $N rounds, ms:"
printf '  %-10s %12s %12s %12s %12s %14s %14s\n' service podman-ready berth-ready podman-total berth-total "berth/podman r" "berth/podman t"
for s in "${services[@]}"; do
	printf '  %-10s %12s %12s %12s %12s %14s %14s\n' "$s" "${peer_ready[$s]}" "${berth_ready[$s]}" "${peer_total[$s]}" "${berth_total[$s]}" \
		"$(awk -v p="${peer_ready[$s]}" -v b="${berth_ready[$s]}" 'BEGIN { printf "%.3f", b / p }')" \
		"$(awk -v p="${peer_total[$s]}" -v b="${berth_total[$s]}" 'BEGIN { printf "%.3f", b / p }')"
done
