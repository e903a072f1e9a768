#!/usr/bin/env bash
# Times berth's Dockerfile builds (container/build, one process per build
# as a CLI would run it) beside `buildah bud --layers --isolation chroot`
# on the same Dockerfiles and contexts, interleaved run by run, and prints
# medians and ratios:
#   cold      a tiny Dockerfile (COPY, RUN, ENV, CMD) without the cache
#   cached    the same, fully cached
#   changed   COPY of a 200-file source tree + RUN, after one file changed
#   large     COPY of a large tree (LARGE_MB, default 1024, in 256 KiB files), no cache
# N runs each (default 7; LARGE_N for the large copy, default 3). Needs
# root; installs buildah and busybox-static from Debian when missing.
# Everything is made under one temporary directory, removed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-7}
LARGE_N=${LARGE_N:-3}
LARGE_MB=${LARGE_MB:-1024}
missing=()
for p in buildah busybox-static bc; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# buildah names an image pulled from a layout after its path: keep it lowercase.
work=/var/tmp/berth-build-bench-$$-$(date +%s)
mkdir "$work"
bah() { buildah --root "$work/bah-root" --runroot "$work/bah-run" --storage-driver overlay "$@"; }
cleanup() {
	bah rm --all >/dev/null 2>&1 || true
	bah rmi --all --force >/dev/null 2>&1 || true
	umount -R "$work/bah-root" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
mkdir -p .bench
go build -o .bench/buildbench ./bench/buildbench
bb=.bench/buildbench
store=$work/store

median() { sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
ratio() { printf '%.2f' "$(echo "$1 / $2" | bc -l)"; }
berth() { $bb build -store "$store" -context "$@"; }
buildah_bud() { # buildah_bud [--no-cache] CONTEXT: prints the wall time
	local t0 t1
	t0=$(date +%s.%N)
	bah bud --layers --isolation chroot --ulimit nofile=1024:1024 -q -t bench.local/built:latest "$@" >/dev/null
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

echo "setting up the base image ..."
$bb setup -store "$store" -oci "$work/oci"
id=$(bah pull -q "oci:$work/oci:bench.local/busybox:1")
bah tag "$id" bench.local/busybox:1

# The contexts.
mkdir -p "$work/tiny" "$work/src/src" "$work/large"
cat >"$work/tiny/Dockerfile" <<'EOF'
FROM bench.local/busybox:1
COPY hello.txt /hello.txt
RUN echo built > /built
ENV GREETING=hello
CMD ["cat", "/hello.txt"]
EOF
echo hello >"$work/tiny/hello.txt"
cat >"$work/src/Dockerfile" <<'EOF'
FROM bench.local/busybox:1
WORKDIR /app
COPY src ./src
RUN ls src | wc -l > /app/count
CMD ["cat", "/app/count"]
EOF
for i in $(seq -w 200); do head -c 4096 /dev/urandom | base64 >"$work/src/src/file-$i.txt"; done
cat >"$work/large/Dockerfile" <<'EOF'
FROM bench.local/busybox:1
COPY big /big
EOF
files=$((LARGE_MB * 4))
echo "making the large tree: $LARGE_MB MiB in $files files ..."
for d in $(seq -w 16); do
	mkdir -p "$work/large/big/d$d"
	for f in $(seq -w $((files / 16))); do head -c 196608 /dev/urandom | base64 -w 76 >"$work/large/big/d$d/f$f"; done
done
echo "large tree: $(du -sh "$work/large/big" | cut -f1), $(find "$work/large/big" -type f | wc -l) files"

: >"$work/r.cold.berth" >"$work/r.cold.buildah"
: >"$work/r.cached.berth" >"$work/r.cached.buildah"
: >"$work/r.changed.berth" >"$work/r.changed.buildah"
: >"$work/r.large.berth" >"$work/r.large.buildah"

echo "cold and cached builds of the tiny Dockerfile, $N runs each ..."
berth "$work/tiny" >/dev/null
buildah_bud "$work/tiny" >/dev/null
for _ in $(seq "$N"); do
	sync
	berth "$work/tiny" -nocache >>"$work/r.cold.berth"
	sync
	buildah_bud --no-cache "$work/tiny" >>"$work/r.cold.buildah"
	berth "$work/tiny" >>"$work/r.cached.berth"
	buildah_bud "$work/tiny" >>"$work/r.cached.buildah"
done

echo "rebuilds after one source file changed, $N runs ..."
berth "$work/src" >/dev/null
buildah_bud "$work/src" >/dev/null
for i in $(seq "$N"); do
	echo "change $i" >>"$work/src/src/file-007.txt"
	sync
	berth "$work/src" >>"$work/r.changed.berth"
	sync
	buildah_bud "$work/src" >>"$work/r.changed.buildah"
done

echo "COPY of the large tree, $LARGE_N runs ..."
for _ in $(seq "$LARGE_N"); do
	sync
	berth "$work/large" -nocache >>"$work/r.large.berth"
	sync
	buildah_bud --no-cache "$work/large" >>"$work/r.large.buildah"
done

printf '\n%-10s %10s %10s %7s %7s\n' "build" "berth s" "buildah s" "ratio" "target"
for s in cold:0.5 cached:0.2 changed:0.5 large:0.7; do
	name=${s%%:*}
	b=$(median <"$work/r.$name.berth")
	p=$(median <"$work/r.$name.buildah")
	printf '%-10s %10.4f %10.4f %7s %7s\n' "$name" "$b" "$p" "$(ratio "$b" "$p")" "${s#*:}"
done
