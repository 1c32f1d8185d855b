/*
 * threads.h - the loop threads (sstf_config.threads) a suite runs its
 * engines and tools with.
 *
 * tests/meson.build runs the fetch, cancel and Pegasus suites twice: as
 * they are, and with SSTF_TEST_THREADS=2, so that every one of their tests
 * also runs on an engine of two loops (engine/group.c), under each
 * sanitizer build. A test that sets sstf_config.threads itself keeps it.
 */
#ifndef SSTF_TEST_THREADS_H
#define SSTF_TEST_THREADS_H

#include <sstfetch.h>

/* $SSTF_TEST_THREADS (1 to SSTF_MAX_THREADS), or 0 when unset: the
 * engine's default, one loop. A bad value fails the test. */
unsigned test_threads(void);

/* The loops an engine of test_engine_new() has: test_threads(), at least
 * 1. Engine-wide totals a test expects are that many times its config's. */
unsigned test_loops(void);

/*
 * sstf_engine_new() with threads = test_threads() when cfg leaves it 0
 * (cfg NULL: every default). Each loop then gets cfg as the test wrote it:
 * max_transfers, max_host_conns, mem_limit and rate, which the engine
 * splits between its loops, are multiplied by the threads, so that what a
 * test expects of one file (its streams, its parts, the write budget) still
 * holds on whichever loop the file lands. Engine-wide totals (connections
 * to the origin, buffers) are then that many times the test's.
 */
int test_engine_new(const struct sstf_config *cfg, sstf_engine **out);

#endif
