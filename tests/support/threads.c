/*
 * threads.c - the suite's loop threads; see threads.h.
 */
#include "threads.h"

#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

unsigned test_threads(void)
{
	const char *v = getenv("SSTF_TEST_THREADS");
	if (!v || !*v)
		return 0;
	char *end;
	unsigned long n = strtoul(v, &end, 10);
	cr_assert(*end == '\0' && n >= 1 && n <= SSTF_MAX_THREADS,
	          "SSTF_TEST_THREADS='%s': a number of loop threads from 1 to %d", v,
	          SSTF_MAX_THREADS);
	return (unsigned)n;
}

unsigned test_loops(void)
{
	return test_threads() ? test_threads() : 1;
}

int test_engine_new(const struct sstf_config *cfg, sstf_engine **out)
{
	struct sstf_config c;
	if (cfg)
		c = *cfg;
	else
		memset(&c, 0, sizeof(c));
	unsigned n = test_threads();
	if (c.threads || n <= 1)
		return sstf_engine_new(&c, out);
	/* Each loop gets the test's whole config: the engine splits these
	 * totals between the loops. */
	c.threads = n;
	if (c.max_transfers)
		c.max_transfers *= n;
	if (c.max_host_conns)
		c.max_host_conns *= n;
	if (c.mem_limit)
		c.mem_limit *= n;
	if (c.rate)
		c.rate *= n;
	return sstf_engine_new(&c, out);
}
