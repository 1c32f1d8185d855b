#!/usr/bin/env bash
# check.sh - the whole test suite, as CI runs it:
#   1. gcc build with -Werror, every test;
#   2. clang build with ASan+UBSan and -Werror, every test;
#   3. clang build with TSan, the concurrency tests (cancel, drain, the
#      Pegasus scenarios) and the rest of the suite.
# Each build has its own directory (build-check, build-asan, build-tsan) so
# that a rerun only rebuilds what changed. Any sanitizer report fails the run.
#
#   tools/check.sh [normal|asan|tsan ...]     (default: all three)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
steps=("$@")
((${#steps[@]})) || steps=(normal asan tsan)

# Sets up (or reconfigures) a build dir with $CC. Meson keeps the compiler a
# dir was made with, so a dir made with another one is wiped first.
setup() {
	local dir=$1
	shift
	if [[ -f "$dir/build.ninja" ]]; then
		local have
		# "C compiler for the host machine: clang (clang 14.0.6 ...)"
		have=$(sed -n 's/^C compiler for the host machine: \([^ ]*\).*/\1/p' \
			"$dir/meson-logs/meson-log.txt" 2>/dev/null | head -n 1)
		[[ "$have" == "$CC" ]] || rm -rf "$dir"
	fi
	if [[ -f "$dir/build.ninja" ]]; then
		meson setup --reconfigure "$dir" "$@" >/dev/null
	else
		meson setup "$dir" "$@" >/dev/null
	fi
	ninja -C "$dir"
}

run() {
	local name=$1 dir=$2
	shift 2
	echo "== $name: meson test -C $dir $*"
	meson test -C "$dir" --print-errorlogs "$@"
}

for step in "${steps[@]}"; do
	case $step in
	normal)
		CC=gcc setup build-check -Dwerror=true -Dtests=enabled
		run normal build-check
		;;
	asan)
		CC=clang setup build-asan -Dwerror=true -Dtests=enabled \
			-Db_sanitize=address,undefined -Db_lundef=false
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
			UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			run asan build-asan
		;;
	tsan)
		CC=clang setup build-tsan -Dwerror=true -Dtests=enabled \
			-Db_sanitize=thread -Db_lundef=false
		TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
			run tsan build-tsan
		;;
	*)
		echo "check.sh: unknown step '$step' (normal, asan or tsan)" >&2
		exit 2
		;;
	esac
done
