/*
 * Description: the engine-wide rate limit (sstf_config.rate and
 * sstf_set_rate): a token bucket in bytes.
 *
 * The bounds asserted here hold on any machine, however slow: they are
 * upper bounds on bytes, from the engine's own promise, never lower bounds
 * on speed. A sampler thread reads sstf_progress() (bytes written, which
 * trail the bytes the bucket let in) and the monotonic clock:
 *
 *   - from the submit on, bytes <= rate * elapsed + burst;
 *   - once sstf_set_rate() lowered the rate at t1, from t1 + 100 ms on,
 *     bytes(t) - bytes(t0) <= new_rate * (t - t0) + new burst + the pool
 *     (bytes let in before the change may still be landing).
 *
 * The source is file:// (no network: the disk is the only other limit),
 * files large enough that an unlimited run would break the bound many
 * times over.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sstfetch.h"
#include "support/dataset.h"
#include "support/sanitizers.h"

#define NFILES 4
#define FILE_SIZE ((uint64_t)24 << 20)
#define BS (64u << 10)
#define MEM (8u * BS)
#define MAX_SAMPLES 4096

static struct dataset ds;
static char *dest;
static char *base_url;

static void suite_init(void)
{
	uint64_t sizes[NFILES];
	for (size_t i = 0; i < NFILES; i++)
		sizes[i] = FILE_SIZE + i * 4097;
	cr_assert_eq(ds_create(&ds, "rate-src", NFILES, NULL, sizes, 42), 0);
	cr_assert_eq(ds_mkdtemp("rate-dest", &dest), 0);
	base_url = ds_strfmt("file://%s", ds.dir);
}

static void suite_fini(void)
{
	if (dest)
		ds_rmtree(dest);
	free(dest);
	free(base_url);
	ds_destroy(&ds);
}

TestSuite(rate, .init = suite_init, .fini = suite_fini);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* The burst the header promises for `rate` with buffers of BS. */
static uint64_t burst_of(uint64_t rate)
{
	uint64_t b = rate / 10;
	uint64_t least = BS > 256 * 1024 ? BS : 256 * 1024;
	return b < least ? least : b;
}

struct sample {
	uint64_t t, bytes;
};

struct sampler {
	sstf_engine *eng;
	uint64_t gen;
	uint64_t t0;          /* before sstf_submit */
	uint64_t change_after_ns; /* 0: no change */
	uint64_t new_rate;
	_Atomic uint64_t t_change; /* when sstf_set_rate() was called */
	struct sample s[MAX_SAMPLES];
	size_t n;
	atomic_bool stop;
};

static void *sample_loop(void *arg)
{
	struct sampler *sm = arg;
	while (!atomic_load(&sm->stop) && sm->n < MAX_SAMPLES) {
		struct sstf_progress p;
		if (sstf_progress(sm->eng, sm->gen, &p) != 0)
			break;
		/* The clock after the count: the bound it gets is looser. */
		sm->s[sm->n++] = (struct sample){.t = now_ns(), .bytes = p.bytes_done};
		if (sm->change_after_ns && !atomic_load(&sm->t_change) &&
		    now_ns() - sm->t0 >= sm->change_after_ns) {
			atomic_store(&sm->t_change, now_ns());
			cr_assert_eq(sstf_set_rate(sm->eng, sm->new_rate), 0);
		}
		if (p.files_done + p.files_failed == p.files_total)
			break;
		usleep(5000);
	}
	return NULL;
}

/* Runs the dataset at `rate` for about run_ms, then cancels; fills sm. */
static void run_limited(struct sampler *sm, uint64_t rate, unsigned run_ms)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.buf_size = BS;
	cfg.mem_limit = MEM;
	cfg.max_transfers = 4;
	cfg.fsync = SSTF_OFF;
	cfg.rate = rate;
	cr_assert_eq(sstf_engine_new(&cfg, &sm->eng), 0);
	struct sstf_file *files = ds_batch_new(&ds, base_url, SSTF_DIGEST_XXH3);
	cr_assert_not_null(files);
	struct sstf_batch b = {.dest_dir = dest, .files = files, .nfiles = NFILES};
	sm->t0 = now_ns();
	cr_assert_eq(sstf_submit(sm->eng, &b, &sm->gen), 0);
	ds_batch_free(files, NFILES, 0);
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, sample_loop, sm), 0);
	usleep(run_ms * 1000u);
	atomic_store(&sm->stop, true);
	pthread_join(th, NULL);
	cr_assert_eq(sstf_cancel(sm->eng, sm->gen), 0);
	sstf_engine_free(sm->eng);
	cr_expect_eq(ds_count_temps(dest, NULL, 0), 0);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
	cr_assert_gt(sm->n, 10, "too few samples (%zu)", sm->n);
}

Test(rate, bytes_never_exceed_rate_times_elapsed_plus_burst)
{
	static struct sampler sm;
	const uint64_t rate = 8u << 20; /* 8 MiB/s: far below any disk */
	run_limited(&sm, rate, 1200);
	uint64_t burst = burst_of(rate);
	uint64_t last = 0;
	for (size_t i = 0; i < sm.n; i++) {
		double el = (double)(sm.s[i].t - sm.t0) / 1e9;
		double bound = (double)rate * el + (double)burst;
		cr_assert_leq((double)sm.s[i].bytes, bound,
		              "%" PRIu64 " bytes after %.3f s: more than rate*t + burst = %.0f",
		              sm.s[i].bytes, el, bound);
		last = sm.s[i].bytes;
	}
	/* It did move: a limit that lets nothing through passes the bound. */
	cr_expect_gt(last, 0, "no byte in 1.2 s at 8 MiB/s");
	double el = (double)(sm.s[sm.n - 1].t - sm.t0) / 1e9;
	cr_log_info("rate: %.2f MiB/s of 8 MiB/s asked (burst %" PRIu64 " KiB)",
	            (double)last / el / (1 << 20), burst >> 10);
}

Test(rate, lowered_rate_binds_from_100_ms_on)
{
	static struct sampler sm;
	const uint64_t high = 64u << 20, low = 4u << 20;
	sm.change_after_ns = 300000000u;
	sm.new_rate = low;
	run_limited(&sm, high, 1500);
	uint64_t tc = atomic_load(&sm.t_change);
	cr_assert_neq(tc, 0, "the rate was never changed");
	uint64_t from = tc + 100000000u;
	/* Bytes let in before the change may land after it: the pool. */
	uint64_t slack = burst_of(low) + MEM;
	size_t first = sm.n;
	for (size_t i = 0; i < sm.n; i++) {
		if (sm.s[i].t >= from) {
			first = i;
			break;
		}
	}
	cr_assert_lt(first + 2, sm.n, "too few samples after the change");
	size_t checked = 0;
	for (size_t i = first; i < sm.n; i++) {
		for (size_t j = i + 1; j < sm.n; j++) {
			double el = (double)(sm.s[j].t - sm.s[i].t) / 1e9;
			double bound = (double)low * el + (double)slack;
			cr_assert_leq((double)(sm.s[j].bytes - sm.s[i].bytes), bound,
			              "%" PRIu64 " bytes in %.3f s after the rate dropped to 4 MiB/s "
			              "(bound %.0f)",
			              sm.s[j].bytes - sm.s[i].bytes, el, bound);
			checked++;
		}
	}
	cr_expect_gt(checked, 0);
	/* Before the change it ran well above the new rate, or the test
	 * would prove nothing about the change. */
	size_t k = 0;
	while (k + 1 < sm.n && sm.s[k + 1].t < tc)
		k++;
	double el = (double)(sm.s[k].t - sm.t0) / 1e9;
	cr_expect_gt((double)sm.s[k].bytes, (double)low * el + (double)slack,
	             "before the change only %" PRIu64 " bytes in %.3f s", sm.s[k].bytes, el);
}

Test(rate, rate_zero_lifts_the_limit)
{
	static struct sampler sm;
	sm.change_after_ns = 200000000u;
	sm.new_rate = 0;
	run_limited(&sm, 1u << 20, 3000);
	/* At 1 MiB/s the set would take 96 s; without a limit it ends. */
	uint64_t last = sm.s[sm.n - 1].bytes;
	cr_expect_eq(last, NFILES * FILE_SIZE + 6 * 4097,
	             "only %" PRIu64 " bytes in 3 s after the limit was lifted", last);
}
