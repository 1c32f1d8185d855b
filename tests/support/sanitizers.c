/*
 * sanitizers.c - sanitizer defaults for the test binaries, so a plain
 * `meson test` in a sanitizer build dir fails a test on the first report
 * without any environment variable. The environment still wins: the
 * runtimes apply *_OPTIONS after these defaults.
 */
#include "sanitizers.h"

#include <stdint.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SSTF_TEST_ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define SSTF_TEST_TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define SSTF_TEST_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define SSTF_TEST_TSAN 1
#endif

#ifdef SSTF_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

/* The runtimes look these up; declared here for -Wmissing-prototypes. */
const char *__ubsan_default_options(void);
const char *__tsan_default_options(void);

/*
 * UBSan recovers by default: it prints and goes on, and Criterion counts
 * the test as passed. Halting turns a report into a failed test.
 */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

/* Same for TSan, whose reports otherwise only change the exit status. */
const char *__tsan_default_options(void)
{
	return "halt_on_error=1:second_deadlock_stack=1:history_size=4";
}

int sanitizer_leak_check(void)
{
#ifdef SSTF_TEST_ASAN
	return __lsan_do_recoverable_leak_check();
#else
	return 0;
#endif
}

#ifdef SSTF_TEST_TSAN
/*
 * Criterion under TSan: "criterion: Could not initialize inheritable arena:
 * Resource temporarily unavailable" (Snaipe/Criterion#274, open).
 *
 * Criterion's BoxFort maps its shared arena at a random fixed address
 * 0x200000000000 + (rand_r() & 0x3fffff) * 16 MiB and gives up after ten
 * addresses whose pages are already mapped (it probes with mincore). Under
 * TSan on x86_64 nearly all of that range is TSan's shadow, meta or
 * protected gaps; only the application range 0x550000000000-0x568000000000
 * is free, so ~80% of runs abort before any test.
 *
 * BoxFort is the only rand_r() user in these binaries (the engine, curl and
 * the tests do not call it), so this rand_r keeps its picks inside that
 * range: (r & 0x3fffff) in [0x350000, 0x368000). BoxFort still checks each
 * address with mincore, so one already in use is skipped as before.
 */
int rand_r(unsigned *seed);
int rand_r(unsigned *seed)
{
	*seed = *seed * 1103515245u + 12345u;
	uint32_t r = (*seed >> 8) & 0xffffffu;
	return (int)(0x350000u + r % 0x18000u);
}
#endif
