#!/usr/bin/env bash
# check.sh - the whole test suite, as CI runs it:
#   1. gcc build with -Werror, every test;
#   2. clang build with ASan+UBSan and -Werror, every test;
#   3. clang build with TSan, the concurrency tests (cancel, drain, the
#      Pegasus scenarios, the short form of the cancel storms) and the rest
#      of the suite;
#   4. fuzz: clang build with ASan+UBSan and -Dfuzz=enabled (build-fuzz); runs
#         the libFuzzer target tests/fuzz/fuzz_manifest (manifest loader +
#         sstf_check_batch) for FUZZ_SECONDS (60) on a fresh copy of the
#         seed corpus tests/fuzz/corpus/manifest. Any crash, leak or
#         sanitizer report fails the run; the input that caused it is left
#         in build-fuzz/fuzz-artifacts/ (rerun: the target with that path).
# Each build has its own directory (build-check, build-asan, build-tsan,
# build-fuzz) so that a rerun only rebuilds what changed. Any sanitizer
# report fails the run.
#
# Not among the defaults, on request only:
#   stress the long form of tests/test_stress.c: 1000 cancel storms
#         (SSTF_STRESS_STORMS overrides) in the asan step's build dir
#         (build-asan), run directly rather than under meson's 900 s
#         timeout; each storm still fails on its own hang bound
#         (SSTF_STRESS_HANG_S, 60 s). A failure prints the seed and a
#         replay line (SSTF_STRESS_SEED=... SSTF_STRESS_STORM=...).
#
#   tools/check.sh [normal|asan|tsan|fuzz|stress ...]   (default: normal asan tsan fuzz)
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
steps=("$@")
((${#steps[@]})) || steps=(normal asan tsan fuzz)

# Sets up (or reconfigures) a build dir with $CC. Meson keeps the compiler a
# dir was made with, so a dir made with another one is wiped first. Builds
# $NINJA_TARGETS when set, else everything.
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
	# shellcheck disable=SC2086 # a list of targets
	ninja -C "$dir" ${NINJA_TARGETS-}
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
	fuzz)
		# Only the target and what it links: the suites are the asan
		# step's, and must not stop a fuzz run.
		CC=clang NINJA_TARGETS=tests/fuzz/fuzz_manifest setup build-fuzz \
			-Dwerror=true -Dtests=enabled -Dfuzz=enabled \
			-Db_sanitize=address,undefined -Db_lundef=false
		# libFuzzer adds what it finds to the first corpus dir: work on
		# a copy, so the seeds in the tree stay hand-written.
		rm -rf build-fuzz/fuzz-corpus
		mkdir -p build-fuzz/fuzz-corpus/manifest build-fuzz/fuzz-artifacts
		cp tests/fuzz/corpus/manifest/* build-fuzz/fuzz-corpus/manifest/
		echo "== fuzz: fuzz_manifest for ${FUZZ_SECONDS:-60} s"
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
			UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			build-fuzz/tests/fuzz/fuzz_manifest \
			-max_total_time="${FUZZ_SECONDS:-60}" -timeout=10 \
			-print_final_stats=1 \
			-artifact_prefix=build-fuzz/fuzz-artifacts/ \
			build-fuzz/fuzz-corpus/manifest
		;;
	stress)
		CC=clang NINJA_TARGETS=tests/test_stress setup build-asan \
			-Dwerror=true -Dtests=enabled \
			-Db_sanitize=address,undefined -Db_lundef=false
		echo "== stress: ${SSTF_STRESS_STORMS:-1000} cancel storms"
		SSTF_STRESS_STORMS=${SSTF_STRESS_STORMS:-1000} \
			ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:strict_string_checks=1 \
			UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
			build-asan/tests/test_stress --verbose
		;;
	*)
		echo "check.sh: unknown step '$step' (normal, asan, tsan, fuzz or stress)" >&2
		exit 2
		;;
	esac
done
