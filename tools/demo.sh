#!/usr/bin/env bash
# demo.sh - the main job, end to end: make an SST-like file set, serve it
# over HTTP with nginx on loopback, fetch it with sstfetch, check the copies.
#
#   tools/demo.sh [BUILD_DIR]          (default: $BUILD_DIR or "build")
#
# Environment:
#   NFILES=16      number of files
#   FILE_MIB=4     size of each file in MiB
#   PARALLEL=      --parallel for sstfetch (empty: the tool's default)
#   WORKDIR=       where to put origin/, dest/ and manifest.json
#                  (default: a new temporary directory, removed at exit)
#   KEEP=0         1 keeps the temporary work directory afterwards
#
# Exit status: sstfetch's (0 all verified, 1 some file failed, 2 usage or
# manifest error), except that a copy differing from its origin file after
# sstfetch said 0 exits 1: that would be a bug in sstfetch.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname "$here")
build=${1:-${BUILD_DIR:-build}}
nfiles=${NFILES:-16}
file_mib=${FILE_MIB:-4}
parallel=${PARALLEL:-}

die() {
	echo "demo.sh: $*" >&2
	exit 2
}

[[ "$nfiles" =~ ^[0-9]+$ ]] || die "NFILES=$nfiles: expected a non-negative integer"
[[ "$file_mib" =~ ^[0-9]+$ ]] || die "FILE_MIB=$file_mib: expected a non-negative integer"

# BUILD_DIR relative to the current directory, else to the repository.
tool="$build/tools/sstfetch"
[[ -x "$tool" ]] || tool="$repo/$build/tools/sstfetch"
[[ -x "$tool" ]] || die "no sstfetch in $build/tools (run: meson setup $build && ninja -C $build)"
command -v xxhsum >/dev/null || die "xxhsum not found (install xxhash)"

if [[ -n "${WORKDIR:-}" ]]; then
	# A directory the user named is never removed, only its three entries
	# below are replaced.
	work=$WORKDIR
	mkdir -p "$work"
	KEEP=1
else
	work=$(mktemp -d "${TMPDIR:-/tmp}/sstfetch-demo.XXXXXX")
fi
origin="$work/origin"
dest="$work/dest"
manifest="$work/manifest.json"
state=""

# shellcheck disable=SC2317  # called through the trap
cleanup() {
	if [[ -n "$state" ]]; then
		"$here/origin.sh" stop "$state" || true
	fi
	if [[ "${KEEP:-0}" == 1 ]]; then
		echo "demo.sh: kept $work" >&2
	else
		rm -rf "$work"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$origin" "$dest"
mkdir -p "$origin"

echo "== generating $nfiles files of $file_mib MiB in $origin"
names=()
for ((i = 1; i <= nfiles; i++)); do
	name=$(printf '%06d.sst' "$i")
	head -c $((file_mib * 1048576)) /dev/urandom >"$origin/$name"
	names+=("$name")
done

echo "== hashing with xxhsum -H3, writing $manifest"
declare -A digest=()
if ((nfiles > 0)); then
	while IFS= read -r line; do
		# xxhsum 0.8.1 prints BSD style, "XXH3 (NAME) = HEX"; later
		# versions may print "HEX  NAME" or "XXH3_HEX  NAME".
		if [[ "$line" =~ ^XXH3\ \((.*)\)\ =\ ([0-9a-fA-F]{16})$ ]]; then
			digest[${BASH_REMATCH[1]}]=${BASH_REMATCH[2]}
		elif [[ "$line" =~ ^(XXH3_)?([0-9a-fA-F]{16})\ \ (.*)$ ]]; then
			digest[${BASH_REMATCH[3]}]=${BASH_REMATCH[2]}
		fi
	done < <(cd "$origin" && xxhsum -H3 "${names[@]}")
fi
total=0
{
	echo '{"files": ['
	sep=""
	for name in "${names[@]}"; do
		[[ -n "${digest[$name]:-}" ]] || die "xxhsum gave no digest for $name"
		size=$(stat -c %s "$origin/$name")
		total=$((total + size))
		printf '%s  {"name": "%s", "size": %s, "xxh3": "%s"}' \
			"$sep" "$name" "$size" "${digest[$name]}"
		sep=$',\n'
	done
	printf '\n], "file_total_size": %s}\n' "$total"
} >"$manifest"

echo "== serving $origin with nginx"
out=$("$here/origin.sh" start "$origin") || die "origin.sh could not start nginx"
read -r url state <<<"$out"
echo "   $url (state $state)"

args=(--manifest="$manifest" --source="$url" --dest="$dest")
[[ -n "$parallel" ]] && args+=(--parallel="$parallel")
echo "== $tool ${args[*]}"
rc=0
"$tool" "${args[@]}" || rc=$?

echo "== comparing $dest with $origin"
bad=0
for name in "${names[@]}"; do
	if [[ ! -e "$dest/$name" ]]; then
		echo "   missing: $name"
		bad=$((bad + 1))
	elif ! cmp -s "$origin/$name" "$dest/$name"; then
		echo "   DIFFERS: $name"
		bad=$((bad + 1))
	fi
done
# The engine keeps its temporaries in DEST/.sstf/ and removes it when done.
leftover=$(find "$dest" -name '.sstf*' 2>/dev/null | wc -l)
echo "   $((nfiles - bad)) of $nfiles identical, $leftover temporary files left"

if ((rc == 0 && (bad > 0 || leftover > 0))); then
	echo "demo.sh: sstfetch reported success but the copies are wrong" >&2
	rc=1
fi
echo "== sstfetch exit status $rc"
exit "$rc"
