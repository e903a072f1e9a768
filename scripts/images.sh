#!/usr/bin/env bash
# Builds real service images for tests from Debian 12 packages, and caches
# them on this machine. Usage: scripts/images.sh [redis] [postgres]
# (no names: all of them). Needs root (debootstrap, chroot).
#
#   redis     berth.test/redis:7      redis-server, no persistence,
#                                     protected-mode no, bind 0.0.0.0 (and
#                                     :: when the network has IPv6)
#   postgres  berth.test/postgres:15  postgresql 15 with a data directory
#                                     made at build time (trust auth, UTF8)
#                                     and TEST settings: fsync, synchronous_
#                                     commit and full_page_writes off
#
# Each image is a rootfs made by `debootstrap --variant=minbase bookworm`
# from the mirror this machine's apt uses (MIRROR overrides it), trimmed,
# then turned into a `docker save` archive by internal/cmd/mkimage (berth's
# own layer store); content.Store.Load and `podman load` both read it.
#
# The cache, and the exact path rule:
#   CACHE = $BERTH_CACHE if set, else /var/cache/berth as root, else
#           ${XDG_CACHE_HOME:-$HOME/.cache}/berth
#   $CACHE/images/<name>-<recipe>.tar  the archive; <recipe> is the first 16
#           hex digits of the sha256 of this script, internal/cmd/mkimage's
#           Go files and <name>: a changed recipe builds anew
#   $CACHE/images/<name>.tar           a symlink to the current one: what a Go
#           test opens (e.g. $CACHE/images/redis.tar)
# With the archive present a run does nothing (it only checks the link).
# Builds happen in $CACHE/images/.build-* and the archive is renamed into
# place when complete, so a crash never leaves a partial archive under
# either name; leftovers are removed by the next run. Runs take an
# exclusive flock on $CACHE/images/.lock. Package versions are whatever
# the mirror serves at build time: they are not part of the recipe.
# $CACHE/debs keeps the .deb files debootstrap downloaded, for later builds.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

all=(redis postgres)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${all[@]}")
for n in "${names[@]}"; do
	case $n in redis | postgres) ;; *)
		echo "images: unknown image $n (known: ${all[*]})" >&2
		exit 2
		;;
	esac
done

if [ -n "${BERTH_CACHE:-}" ]; then
	cache=$BERTH_CACHE
elif [ "$(id -u)" = 0 ]; then
	cache=/var/cache/berth
else
	cache=${XDG_CACHE_HOME:-$HOME/.cache}/berth
fi
dir=$cache/images
mkdir -p "$dir"

recipe() { # the recipe hash of image $1
	{
		cat "$repo/scripts/images.sh" "$repo"/internal/cmd/mkimage/*.go
		echo "$1"
	} | sha256sum | cut -c1-16
}

# link points $dir/$1.tar at the file $2 (a name in $dir), atomically.
link() {
	ln -sfn "$2" "$dir/.$1.tar.link"
	mv -Tf "$dir/.$1.tar.link" "$dir/$1.tar"
}

# Fast path: every archive is there; no lock, no root needed.
todo=()
for n in "${names[@]}"; do
	f=$n-$(recipe "$n").tar
	if [ -f "$dir/$f" ] && [ "$(readlink "$dir/$n.tar" 2>/dev/null)" = "$f" ]; then
		echo "images: $n: cached: $dir/$n.tar -> $f"
	else
		todo+=("$n")
	fi
done
[ ${#todo[@]} -gt 0 ] || exit 0

# remove deletes the build directories $@, first unmounting what a
# debootstrap killed mid-way left mounted in them (its /proc, /sys).
remove() {
	local d m
	for d in "$@"; do
		[ -e "$d" ] || continue
		awk -v p="$d/" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r |
			while read -r m; do umount -l "$m" || true; done
		rm -rf --one-file-system "$d"
	done
}

exec 9>"$dir/.lock"
flock 9
# What a build that died left (it held the lock, so none is running now).
remove "$dir"/.build-* "$dir"/.mkimage-*
rm -f "$dir"/.*.tar.link

if [ "$(id -u)" != 0 ]; then
	echo "images: building ${todo[*]} needs root (debootstrap, chroot)" >&2
	exit 1
fi
if ! command -v debootstrap >/dev/null; then
	echo "images: installing debootstrap" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# mirror: the first Debian URI apt uses for bookworm, from one-line
# (sources.list, *.list) or deb822 (*.sources) files.
mirror() {
	local f
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -f "$f" ] || continue
		awk '$1 == "deb" { i = 2; if ($2 ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
			if ($(i+1) == "bookworm") { print $i; exit } }' "$f"
	done
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -f "$f" ] || continue
		awk 'function flush() { if (deb && bw && uri != "") { print uri; found = 1; exit } deb = bw = 0; uri = "" }
			/^[ \t]*$/ { flush(); next } /^#/ { next }
			tolower($1) == "types:" { for (i = 2; i <= NF; i++) if ($i == "deb") deb = 1 }
			tolower($1) == "uris:" { uri = $2 }
			tolower($1) == "suites:" { for (i = 2; i <= NF; i++) if ($i == "bookworm") bw = 1 }
			END { if (!found) flush() }' "$f"
	done
}
MIRROR=${MIRROR:-$(mirror | head -n1)}
if [ -z "$MIRROR" ]; then
	echo "images: no bookworm mirror found in /etc/apt (set MIRROR)" >&2
	exit 1
fi

# debootstrap keeps the packages it downloads here, for the next build.
debs=$(realpath "$cache")/debs
mkdir -p "$debs"

# trim removes from the rootfs $1 what a container does not need.
trim() {
	local r=$1
	rm -rf "$r"/var/lib/apt/lists/* "$r"/var/cache/apt/* "$r"/var/cache/debconf/*-old \
		"$r"/usr/share/doc/* "$r"/usr/share/man/* "$r"/usr/share/info/* "$r"/usr/share/lintian \
		"$r"/tmp/* "$r"/var/tmp/* "$r"/dev/* "$r"/debootstrap
	find "$r"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
	find "$r"/usr/lib/locale -mindepth 1 -maxdepth 1 ! -name C.utf8 -exec rm -rf {} +
	# Log files (the debootstrap log among them); the directories stay,
	# with their owners.
	find "$r"/var/log -type f -delete
	# The host's resolver and name: a runtime provides its own.
	rm -f "$r"/etc/resolv.conf "$r"/etc/hostname
	# Later apt-get installs in a container skip docs too.
	mkdir -p "$r"/etc/dpkg/dpkg.cfg.d
	printf '%s\n' 'path-exclude /usr/share/doc/*' 'path-exclude /usr/share/man/*' \
		'path-exclude /usr/share/info/*' 'path-exclude /usr/share/locale/*' \
		'path-include /usr/share/locale/locale.alias' >"$r"/etc/dpkg/dpkg.cfg.d/berth-nodoc
}

# ids prints uid:gid of user $2 in the rootfs $1.
ids() { echo "$(chroot "$1" id -u "$2"):$(chroot "$1" id -g "$2")"; }

sec=1000000000 # Docker's config durations are nanoseconds

build_redis() { # rootfs config
	local r=$1
	debootstrap --variant=minbase --cache-dir="$debs" --include=redis-server bookworm "$r" "$MIRROR" >"$r.log" 2>&1 ||
		{ tail -n 20 "$r.log" >&2; return 1; }
	local user
	user=$(ids "$r" redis)
	trim "$r"
	cat >"$2" <<EOF
{
  "User": "$user",
  "Cmd": ["redis-server", "--protected-mode", "no", "--save", "", "--appendonly", "no", "--bind", "0.0.0.0", "-::*"],
  "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
  "WorkingDir": "/var/lib/redis",
  "ExposedPorts": {"6379/tcp": {}},
  "StopSignal": "SIGTERM",
  "Healthcheck": {"Test": ["CMD-SHELL", "redis-cli ping | grep PONG"],
    "Interval": $((2 * sec)), "Timeout": $((2 * sec)), "StartPeriod": $((10 * sec)), "Retries": 5},
  "Labels": {
    "org.opencontainers.image.title": "redis",
    "org.opencontainers.image.description": "Debian 12 redis-server for tests, built by berth scripts/images.sh",
    "org.opencontainers.image.version": "$(chroot "$r" dpkg-query -W -f '${Version}' redis-server)",
    "io.berth.test.settings": "TEST SETTINGS: no persistence (save \"\", appendonly no), protected-mode no, bind all addresses; user redis ($user)"
  }
}
EOF
}

build_postgres() { # rootfs config
	local r=$1 pgbin=/usr/lib/postgresql/15/bin data=/var/lib/postgresql/data
	debootstrap --variant=minbase --cache-dir="$debs" --include=postgresql bookworm "$r" "$MIRROR" >"$r.log" 2>&1 ||
		{ tail -n 20 "$r.log" >&2; return 1; }
	local user
	user=$(ids "$r" postgres)
	# Debian's own cluster (made by the package's postinst) goes; the
	# image's is made here, so a container starts ready at once.
	rm -rf "$r"/var/lib/postgresql/15 "$r"/etc/postgresql/15
	install -d -o "${user%:*}" -g "${user#*:}" -m 0700 "$r$data"
	install -d -o "${user%:*}" -g "${user#*:}" -m 2775 "$r"/run/postgresql
	chroot --userspec="$user" "$r" env -i HOME=/var/lib/postgresql PATH="$pgbin:/usr/bin:/bin" \
		initdb -D "$data" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$r.initdb.log" 2>&1 ||
		{ cat "$r.initdb.log" >&2; return 1; }
	cat >>"$r$data/postgresql.conf" <<'EOF'

# berth test image (scripts/images.sh): TEST SETTINGS, not for data that
# matters: a crash can lose or corrupt it.
listen_addresses = '*'
fsync = off
synchronous_commit = off
full_page_writes = off
jit = off
unix_socket_directories = '/var/run/postgresql,/tmp'
EOF
	# Trust from anywhere: connections through a published port come from
	# the runtime's bridge address, not from loopback.
	printf '%s\n' 'host all all 0.0.0.0/0 trust' 'host all all ::/0 trust' >>"$r$data/pg_hba.conf"
	trim "$r"
	# JIT (jit = off above) is two thirds of the image: LLVM, the z3
	# solver only LLVM uses, and the bitcode of postgres itself. So are
	# the sources of locales, which only locale-gen reads. Perl's full
	# library (perl-base stays) serves only postgresql-common's cluster
	# scripts (pg_ctlcluster, the /usr/bin wrappers), which a container
	# that runs postgres itself does not use.
	rm -rf "$r"/usr/lib/postgresql/15/lib/llvmjit* "$r"/usr/lib/postgresql/15/lib/bitcode \
		"$r"/usr/lib/*/libLLVM-*.so* "$r"/usr/lib/*/libz3.so* "$r"/usr/share/i18n \
		"$r"/usr/share/perl/5.* "$r"/usr/lib/*/perl/5.*
	cat >"$2" <<EOF
{
  "User": "$user",
  "Cmd": ["$pgbin/postgres", "-D", "$data"],
  "Env": ["PATH=$pgbin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "PGDATA=$data"],
  "WorkingDir": "/var/lib/postgresql",
  "ExposedPorts": {"5432/tcp": {}},
  "StopSignal": "SIGINT",
  "Healthcheck": {"Test": ["CMD", "pg_isready", "-h", "127.0.0.1"],
    "Interval": $((2 * sec)), "Timeout": $((2 * sec)), "StartPeriod": $((10 * sec)), "Retries": 5},
  "Labels": {
    "org.opencontainers.image.title": "postgres",
    "org.opencontainers.image.description": "Debian 12 PostgreSQL 15 for tests, built by berth scripts/images.sh",
    "org.opencontainers.image.version": "$(chroot "$r" dpkg-query -W -f '${Version}' postgresql-15)",
    "io.berth.test.settings": "TEST SETTINGS, not for real data: fsync=off, synchronous_commit=off, full_page_writes=off, jit=off (LLVM removed); trust auth for every host (user postgres, no password); listen_addresses='*'; initdb at build time, UTF8, locale C"
  }
}
EOF
}

declare -A tag=([redis]=berth.test/redis:7 [postgres]=berth.test/postgres:15)
for n in "${todo[@]}"; do
	f=$n-$(recipe "$n").tar
	if [ -f "$dir/$f" ]; then
		link "$n" "$f"
		echo "images: $n: cached: $dir/$n.tar -> $f"
		continue
	fi
	work=$(mktemp -d "$dir/.build-$n-XXXXXX")
	trap 'remove "$work"' EXIT
	start=$(date +%s%N)
	echo "images: $n: building from $MIRROR" >&2
	"build_$n" "$work/rootfs" "$work/config.json"
	built=$(date +%s%N)
	go run ./internal/cmd/mkimage -rootfs "$work/rootfs" -config "$work/config.json" -name "${tag[$n]}" -o "$dir/$f"
	end=$(date +%s%N)
	link "$n" "$f"
	# Older recipes of this image go.
	for old in "$dir/$n"-*.tar; do
		[ "$old" = "$dir/$f" ] || rm -f "$old"
	done
	remove "$work"
	trap - EXIT
	awk -v n="$n" -v t="${tag[$n]}" -v f="$dir/$f" -v size="$(stat -c %s "$dir/$f")" \
		-v a="$((built - start))" -v b="$((end - built))" 'BEGIN {
		printf "images: %s: %s -> %s, %.1f MB; rootfs %.1f s, archive %.1f s\n", n, t, f, size / 1e6, a / 1e9, b / 1e9 }'

done
