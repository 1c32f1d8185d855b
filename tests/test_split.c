/*
 * Description: ranged streams, Retry-After and mirrors, end to end, against
 * the fault-injecting origin (support/faultorigin.c).
 *
 * Split: files of random sizes (0 and 1 byte, sizes that are no multiple of 4096
 * or of the 64 KiB buffer, sizes just above split_min) fetched with random
 * split counts from 1 to 16 and small pools are byte-identical, and a file
 * of several parts runs on more than one stream; the buffer pool's peak
 * never passes its size; a range cut mid-body is resumed on exactly the
 * rest of that range (the origin's request log tiles the file); an origin
 * that ignores ranges still gets the file whole (one stream); a cancel
 * while the streams of a split file trickle in returns and leaves no
 * temporary; a split file started first gets all its streams although
 * slow small files behind it wait for streams too.
 * Write budget: writes past it wait their turn, files stay byte-identical,
 * and a cancel drops the writes still waiting.
 * Retry-After: the wait the origin asks for (seconds and HTTP-date) is
 * kept, measured on the origin's request log; one past the engine's 60 s
 * cap fails at once and says so.
 * Mirrors: a first mirror that answers 404, or cuts every body, leaves the
 * second to serve the rest; two healthy mirrors both serve a split file; a
 * mirror whose copy differs by one byte is caught by the digest and never
 * published.
 *
 * The random sizes come from a fixed seed (SSTF_SPLIT_SEED overrides it),
 * printed in every message of that test. Timeouts are hang guards; only
 * the Retry-After tests look at time, and only at lower bounds the origin
 * asked for (and the cap's "at once", with a wide margin).
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/faultorigin.h"
#include "support/sanitizers.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define BUF (64 * KIB)            /* every engine's buf_size */
#define SPLIT_MIN (256 * KIB)     /* every engine's split_min */
#define WAIT_MS 120000            /* hang guard of sstf_wait */
#define GUARD_NS (60ull * 1000000000ull) /* hang guard of the polls */
#define CANCEL_GUARD_S 30         /* a cancel that takes longer aborts */
#define POLL_US 1000
#define MAXF 32
#define DEFAULT_SEED 0x5b1175eedull

static struct dataset ds;     /* the files, served by fo (and fo2) */
static char *alt_root;        /* a second copy for fo2, when it differs */
static struct fault_origin *fo, *fo2;
static char *work, *dest, *stage;

static void setup(void)
{
	cr_assert_eq(ds_mkdtemp("split", &work), 0);
	dest = ds_strfmt("%s/dest", work);
	stage = ds_strfmt("%s/" SSTF__STAGE_DIR, dest);
	cr_assert(dest && stage);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void teardown(void)
{
	fault_origin_stop(fo);
	fault_origin_stop(fo2);
	fo = fo2 = NULL;
	ds_destroy(&ds);
	if (alt_root)
		ds_rmtree(alt_root);
	if (work)
		ds_rmtree(work);
	free(alt_root);
	free(work);
	free(dest);
	free(stage);
	alt_root = work = dest = stage = NULL;
}

TestSuite(split, .init = setup, .fini = teardown, .timeout = 300);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* ------------------------------------------------------------------------ */
/* Data and origins                                                         */

static void make_dataset(const uint64_t *sizes, size_t n, uint64_t seed)
{
	cr_assert_leq(n, MAXF);
	int err = ds_create(&ds, "split-origin", n, NULL, sizes, seed);
	cr_assert_eq(err, 0, "ds_create: %s", strerror(-err));
}

static struct fault_origin *origin_on(const char *root)
{
	struct fault_origin *o = NULL;
	int err = fault_origin_start(root, &o);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
	return o;
}

/* The decoded URL path the origins count file i's requests under. */
static char *url_path(size_t i)
{
	char *p = ds_strfmt("/%s", ds.files[i].name);
	cr_assert_not_null(p);
	return p;
}

static void set_fault_on(struct fault_origin *o, size_t i, struct fault f)
{
	char *p = url_path(i);
	int err = fault_origin_set(o, p, &f);
	cr_assert_eq(err, 0, "fault_origin_set %s: %s", p, strerror(-err));
	free(p);
}

static unsigned requests_on(struct fault_origin *o, size_t i)
{
	char *p = url_path(i);
	unsigned n = fault_origin_requests(o, p);
	free(p);
	return n;
}

/* File i's request log on o, in *out (FAULT_LOG_MAX records); the count. */
static size_t log_of(struct fault_origin *o, size_t i, struct fault_request *out)
{
	char *p = url_path(i);
	int n = fault_origin_log(o, p, out, FAULT_LOG_MAX);
	free(p);
	cr_assert_geq(n, 0);
	return n < FAULT_LOG_MAX ? (size_t)n : FAULT_LOG_MAX;
}

/* ------------------------------------------------------------------------ */
/* Engines                                                                  */

/* 64 KiB buffers, split_min 256 KiB; `bufs` buffers per transfer. */
static struct sstf_config split_config(unsigned split, unsigned transfers, unsigned bufs)
{
	struct sstf_config c;
	memset(&c, 0, sizeof(c));
	c.max_transfers = transfers;
	c.buf_size = BUF;
	c.mem_limit = (size_t)bufs * transfers * BUF;
	c.split = split;
	c.split_min = SPLIT_MIN;
	return c;
}

static sstf_engine *engine_new(const struct sstf_config *cfg)
{
	sstf_engine *eng = NULL;
	char errbuf[256] = "";
	int err = test_engine_new(cfg, &eng);
	if (err)
		sstf_config_check(cfg, errbuf, sizeof(errbuf));
	cr_assert_eq(err, 0, "sstf_engine_new: %s (%s)", sstf_strerror(err), errbuf);
	return eng;
}

static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
}

/* The size of one part of a split file. Set before the loop threads
 * start, read-only after; every loop has the test's config (threads.h). */
static uint64_t part_size(sstf_engine *eng)
{
	return sstf__engine_loop(eng, 0)->part_size;
}

/* Writes that waited for the budget, or were dropped from its queue, on
 * every loop. */
static uint64_t writes_waited(sstf_engine *eng)
{
	uint64_t n = 0;
	for (unsigned k = 0; k < sstf__engine_loops(eng); k++)
		n += atomic_load(&sstf__engine_loop(eng, k)->pool.wq_waited);
	return n;
}

static uint64_t writes_dropped(sstf_engine *eng)
{
	uint64_t n = 0;
	for (unsigned k = 0; k < sstf__engine_loops(eng); k++)
		n += atomic_load(&sstf__engine_loop(eng, k)->pool.wq_dropped);
	return n;
}

/* Parts the engine cuts a file of `size` into (1 below split_min). */
static uint64_t parts_of(sstf_engine *eng, uint64_t size)
{
	if (size < SPLIT_MIN || size == 0)
		return 1;
	uint64_t ps = part_size(eng);
	cr_assert_gt(ps, 0);
	return (size + ps - 1) / ps;
}

/* ------------------------------------------------------------------------ */
/* Batches                                                                  */

/*
 * Entries for files which[0..n) of ds, each on the nbases origins in bases
 * (one: sstf_file.url; more: sstf_file.urls), with XXH3 and XXH128 in turn.
 * Every string is a heap block of its own; files_free() frees them.
 */
static struct sstf_file *files_new(const size_t *which, size_t n, const char *const *bases,
                                   size_t nbases)
{
	struct sstf_file *v = calloc(n ? n : 1, sizeof(*v));
	cr_assert_not_null(v);
	for (size_t k = 0; k < n; k++) {
		const struct ds_file *d = &ds.files[which[k]];
		struct sstf_file *f = &v[k];
		f->name = strdup(d->name);
		f->size = d->size;
		f->digest_kind = k % 2 ? SSTF_DIGEST_XXH128 : SSTF_DIGEST_XXH3;
		f->digest_hex = strdup(k % 2 ? d->xxh128 : d->xxh3);
		cr_assert(f->name && f->digest_hex);
		if (nbases == 1) {
			f->url = ds_strfmt("%s/%s", bases[0], d->name);
			cr_assert_not_null(f->url);
		} else {
			const char **u = calloc(nbases, sizeof(*u));
			cr_assert_not_null(u);
			for (size_t m = 0; m < nbases; m++) {
				u[m] = ds_strfmt("%s/%s", bases[m], d->name);
				cr_assert_not_null(u[m]);
			}
			f->urls = u;
			f->nurls = nbases;
		}
	}
	return v;
}

static void files_free(struct sstf_file *v, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		free((void *)v[k].name);
		free((void *)v[k].url);
		free((void *)v[k].digest_hex);
		for (size_t m = 0; m < v[k].nurls; m++)
			free((void *)v[k].urls[m]);
		free((void *)v[k].urls);
	}
	free(v);
}

/* What one file reported. */
struct fres {
	unsigned calls;
	int result;
	int http_status;
	uint64_t bytes;
	unsigned retries;
	unsigned streams;
	unsigned nmirrors;
	uint64_t mb[SSTF_MAX_MIRRORS];
	char detail[256];
};

/* A generation's reports, as the callbacks fill them in on the loop thread. */
struct rec {
	pthread_mutex_t mu;
	size_t n;
	struct fres f[MAXF];
	unsigned bad_index;
	unsigned batch_calls;
	int batch_result;
};

static void rec_init(struct rec *r, size_t n)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->n = n;
	r->batch_result = 1;
	for (size_t k = 0; k < MAXF; k++)
		r->f[k].result = 1;
}

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	(void)gen;
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	if (res->index >= r->n) {
		r->bad_index++;
	} else {
		struct fres *f = &r->f[res->index];
		f->calls++;
		f->result = res->result;
		f->http_status = res->http_status;
		f->bytes = res->bytes;
		f->retries = res->retries;
		f->streams = res->streams;
		f->nmirrors = res->nmirrors;
		for (unsigned m = 0; m < res->nmirrors && m < SSTF_MAX_MIRRORS; m++)
			f->mb[m] = res->mirror_bytes ? res->mirror_bytes[m] : UINT64_MAX;
		snprintf(f->detail, sizeof(f->detail), "%s", res->detail ? res->detail : "(null)");
	}
	pthread_mutex_unlock(&r->mu);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	(void)gen;
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	r->batch_calls++;
	r->batch_result = result;
	pthread_mutex_unlock(&r->mu);
}

static uint64_t submit(sstf_engine *eng, const struct sstf_file *files, size_t n, struct rec *r)
{
	char errbuf[512] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = files,
		.nfiles = n,
		.on_file_done = on_file,
		.on_batch_done = on_batch,
		.user = r,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	return gen;
}

/*
 * Waits for a generation submitted with rec r (of r->n files) and checks
 * what every ended generation owes: one report per file, one batch report
 * agreeing with sstf_wait. Returns the result.
 */
static int finish(sstf_engine *eng, uint64_t gen, struct rec *r)
{
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT, "generation %" PRIu64 " did not end", gen);
	pthread_mutex_lock(&r->mu);
	cr_expect_eq(r->bad_index, 0, "%u reports with an index past the batch", r->bad_index);
	cr_expect_eq(r->batch_calls, 1, "%u batch reports", r->batch_calls);
	cr_expect_eq(r->batch_result, res, "on_batch_done said %d, sstf_wait %d", r->batch_result,
	             res);
	for (size_t k = 0; k < r->n; k++)
		cr_expect_eq(r->f[k].calls, 1, "file %zu: %u reports", k, r->f[k].calls);
	pthread_mutex_unlock(&r->mu);
	return res;
}

/* Submits, waits and checks (see finish); r is initialized here. */
static int fetch(sstf_engine *eng, const struct sstf_file *files, size_t n, struct rec *r)
{
	rec_init(r, n);
	return finish(eng, submit(eng, files, n, r), r);
}

/* Entries in the staging directory, 0 when it is absent. */
static int stage_entries(char *first, size_t len)
{
	DIR *d = opendir(stage);
	if (!d)
		return 0;
	int n = 0;
	for (struct dirent *de; (de = readdir(d));) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		if (!n && first)
			snprintf(first, len, "%s", de->d_name);
		n++;
	}
	closedir(d);
	return n;
}

/* No temporary anywhere under dest; the staging directory empty or absent. */
static void expect_no_temps(const char *ctx)
{
	char first[PATH_MAX] = "";
	int in_stage = stage_entries(first, sizeof(first));
	cr_expect_eq(in_stage, 0, "%s: %d entr(ies) left in %s, e.g. %s", ctx, in_stage, stage,
	             first);
	int n = ds_count_temps(dest, first, sizeof(first));
	int want = ds_exists(stage) ? 1 : 0; /* the staging directory itself */
	cr_expect_eq(n, want, "%s: %d temporary entr(ies) under %s, e.g. %s", ctx, n - want, dest,
	             first);
}

/* dest holds exactly files which[0..n) of ds, byte-identical. */
static void expect_dest(const size_t *which, size_t n, const char *ctx)
{
	char why[512];
	cr_expect_eq(ds_check_dest(&ds, dest, which, n, why, sizeof(why)), 0, "%s: %s", ctx, why);
	expect_no_temps(ctx);
}

/* dest's copy of file i equals `src` (1), differs (0) or is missing (-ENOENT). */
static int dest_equals(size_t i, const char *src)
{
	char *p = ds_strfmt("%s/%s", dest, ds.files[i].name);
	cr_assert_not_null(p);
	int eq = ds_files_equal(p, src);
	free(p);
	return eq;
}

static size_t *iota(size_t n)
{
	size_t *v = calloc(n ? n : 1, sizeof(*v));
	cr_assert_not_null(v);
	for (size_t k = 0; k < n; k++)
		v[k] = k;
	return v;
}

/* ------------------------------------------------------------------------ */
/* Split: random sizes and split counts                                     */

Test(split, random_sizes_and_split_counts_are_byte_identical)
{
	uint64_t seed = DEFAULT_SEED;
	const char *env = getenv("SSTF_SPLIT_SEED");
	if (env && *env)
		seed = strtoull(env, NULL, 0);
	uint64_t rng = seed;

	/* Sizes at the edges, then random ones up to 3 MiB that are no
	 * multiple of 4096 (so none of the 64 KiB buffer either). */
	uint64_t sizes[MAXF];
	size_t n = 0;
	sizes[n++] = 0;
	sizes[n++] = 1;
	sizes[n++] = 4097;
	sizes[n++] = SPLIT_MIN - 1;
	sizes[n++] = SPLIT_MIN;          /* a multiple of the buffer: exact ends */
	sizes[n++] = SPLIT_MIN + 1;      /* a second part of one byte */
	sizes[n++] = SPLIT_MIN + 4097;
	sizes[n++] = SPLIT_MIN + BUF + 1;
	sizes[n++] = 2 * MIB;
	while (n < 16) {
		uint64_t s = 1 + splitmix64(&rng) % (3 * MIB);
		if (s % 4096 == 0)
			s += 1 + splitmix64(&rng) % 4095;
		sizes[n++] = s;
	}
	make_dataset(sizes, n, seed);
	fo = origin_on(ds.dir);
	const char *base = fault_origin_url(fo);
	size_t *all = iota(n);
	struct sstf_file *files = files_new(all, n, &base, 1);

	/* split 16 and 1 first, then random counts; 2 to 6 buffers a
	 * transfer, so parts are small and files really split. */
	const unsigned rounds = 6;
	for (unsigned round = 0; round < rounds; round++) {
		unsigned split = round == 0 ? 16 : round == 1 ? 1 : 1 + splitmix64(&rng) % 16;
		unsigned bufs = 2 + splitmix64(&rng) % 5;
		struct sstf_config cfg = split_config(split, 16, bufs);
		sstf_engine *eng = engine_new(&cfg);
		char ctx[160];
		snprintf(ctx, sizeof(ctx),
		         "seed 0x%" PRIx64 " (SSTF_SPLIT_SEED), round %u, split %u, %u buffers a "
		         "transfer, parts of %" PRIu64 " bytes",
		         seed, round, split, bufs, part_size(eng));

		/* Every file at once: the streams of many files share slots
		 * and buffers. */
		struct rec r;
		int res = fetch(eng, files, n, &r);
		cr_expect_eq(res, 0, "%s: batch %d (%s)", ctx, res, sstf_strerror(res));
		for (size_t k = 0; k < n; k++)
			cr_expect_eq(r.f[k].result, 0, "%s: file %zu (%" PRIu64 " bytes): %d %s", ctx,
			             k, sizes[k], r.f[k].result, r.f[k].detail);
		expect_dest(NULL, n, ctx);
		pthread_mutex_destroy(&r.mu);
		cr_assert_eq(ds_empty_dir(dest), 0);

		/* One file at a time: with every slot free, a file of several
		 * parts must run on several streams. */
		bool several = false;
		for (size_t k = 0; k < n; k++) {
			res = fetch(eng, &files[k], 1, &r);
			uint64_t parts = parts_of(eng, sizes[k]);
			cr_expect_eq(res, 0, "%s: file %zu (%" PRIu64 " bytes) alone: %d %s", ctx, k,
			             sizes[k], res, r.f[0].detail);
			cr_expect_eq(dest_equals(k, ds.files[k].path), 1,
			             "%s: file %zu (%" PRIu64 " bytes) differs from the source", ctx, k,
			             sizes[k]);
			cr_expect_leq(r.f[0].streams, split, "%s: file %zu ran on %u streams", ctx, k,
			              r.f[0].streams);
			if (split > 1 && parts > 1) {
				several = true;
				cr_expect_gt(r.f[0].streams, 1,
				             "%s: file %zu (%" PRIu64 " bytes, %" PRIu64
				             " parts) ran on %u stream(s)",
				             ctx, k, sizes[k], parts, r.f[0].streams);
			} else {
				cr_expect_eq(r.f[0].streams, 1,
				             "%s: file %zu (%" PRIu64 " bytes, %" PRIu64
				             " part(s)) ran on %u streams",
				             ctx, k, sizes[k], parts, r.f[0].streams);
			}
			cr_expect_eq(r.f[0].nmirrors, 1, "%s: %u mirrors", ctx, r.f[0].nmirrors);
			cr_expect_eq(r.f[0].mb[0], sizes[k],
			             "%s: file %zu: the one URL served %" PRIu64 " of %" PRIu64, ctx, k,
			             r.f[0].mb[0], sizes[k]);
			pthread_mutex_destroy(&r.mu);
		}
		if (split > 1)
			cr_expect(several, "%s: no file had several parts: the test splits nothing",
			          ctx);
		expect_dest(NULL, n, ctx);
		cr_assert_eq(ds_empty_dir(dest), 0);
		engine_free_checked(eng);
	}
	files_free(files, n);
	free(all);
}

/* ------------------------------------------------------------------------ */
/* Split: a tiny pool                                                       */

struct sampler {
	sstf_engine *eng;
	atomic_bool stop;
	uint64_t samples, first_total, max_peak, over, total_changed;
};

/* Samples the engine's counters while a generation runs. */
static void *sample_main(void *arg)
{
	struct sampler *s = arg;
	while (!atomic_load(&s->stop)) {
		struct sstf_stats st;
		if (sstf_stats(s->eng, &st) == 0) {
			if (!s->samples)
				s->first_total = st.buffers_total;
			if (st.buffers_total != s->first_total)
				s->total_changed++;
			if (st.buffers_peak > st.buffers_total)
				s->over++;
			if (st.buffers_peak > s->max_peak)
				s->max_peak = st.buffers_peak;
			s->samples++;
		}
		usleep(200);
	}
	return NULL;
}

Test(split, tiny_pool_peak_never_passes_the_pool)
{
	/* Several split files at once, on pools of two buffers per transfer:
	 * every stream ahead of a frontier competes for half of them. */
	const uint64_t sizes[] = {3 * MIB + 17, 2 * MIB + 4095, MIB + 1, SPLIT_MIN + 3,
	                          1500 * KIB + 7, 777777, 1, 2 * MIB + BUF + 1};
	const size_t n = sizeof(sizes) / sizeof(sizes[0]);
	make_dataset(sizes, n, 0x7194);
	fo = origin_on(ds.dir);
	const char *base = fault_origin_url(fo);
	size_t *all = iota(n);
	struct sstf_file *files = files_new(all, n, &base, 1);

	const struct {
		unsigned split, transfers;
	} configs[] = {{16, 16}, {8, 3}, {4, 1}, {2, 2}};
	for (size_t c = 0; c < sizeof(configs) / sizeof(configs[0]); c++) {
		struct sstf_config cfg = split_config(configs[c].split, configs[c].transfers, 2);
		sstf_engine *eng = engine_new(&cfg);
		char ctx[96];
		snprintf(ctx, sizeof(ctx), "split %u, %u transfers, %u buffers", configs[c].split,
		         configs[c].transfers, 2 * configs[c].transfers);

		struct sampler s = {.eng = eng};
		pthread_t t;
		cr_assert_eq(pthread_create(&t, NULL, sample_main, &s), 0);
		struct rec r;
		int res = fetch(eng, files, n, &r);
		atomic_store(&s.stop, true);
		pthread_join(t, NULL);

		cr_expect_eq(res, 0, "%s: batch %d (%s)", ctx, res, sstf_strerror(res));
		for (size_t k = 0; k < n; k++)
			cr_expect_eq(r.f[k].result, 0, "%s: file %zu: %d %s", ctx, k, r.f[k].result,
			             r.f[k].detail);
		expect_dest(NULL, n, ctx);
		pthread_mutex_destroy(&r.mu);

		struct sstf_stats st;
		cr_assert_eq(sstf_stats(eng, &st), 0);
		cr_log_info("%s: peak %" PRIu64 " of %" PRIu64 " buffers, %" PRIu64 " samples", ctx,
		            st.buffers_peak, st.buffers_total, s.samples);
		cr_expect_eq(st.buffers_total, 2 * configs[c].transfers * test_loops(), "%s: a pool of %" PRIu64,
		             ctx, st.buffers_total);
		cr_expect_leq(st.buffers_peak, st.buffers_total,
		              "%s: %" PRIu64 " buffers in use at once, the pool holds %" PRIu64, ctx,
		              st.buffers_peak, st.buffers_total);
		cr_expect_geq(st.buffers_peak, 2, "%s: peak %" PRIu64 ": the pool was hardly used",
		              ctx, st.buffers_peak);
		cr_expect_eq(s.over, 0, "%s: %" PRIu64 " of %" PRIu64 " samples saw a peak above "
		             "the pool (highest %" PRIu64 ", pool %" PRIu64 ")", ctx, s.over,
		             s.samples, s.max_peak, s.first_total);
		cr_expect_eq(s.total_changed, 0, "%s: the pool's size changed in %" PRIu64
		             " samples", ctx, s.total_changed);
		cr_assert_eq(ds_empty_dir(dest), 0);
		engine_free_checked(eng);
	}
	files_free(files, n);
	free(all);
}

/* ------------------------------------------------------------------------ */
/* Split: a range cut mid-way                                               */

struct iv {
	int64_t a, b; /* [a, b) */
	size_t req;
};

static int iv_cmp(const void *x, const void *y)
{
	const struct iv *p = x, *q = y;
	return p->a < q->a ? -1 : p->a > q->a;
}

Test(split, range_cut_midway_resumes_only_its_own_range)
{
	/* 2 MiB and a bit in parts of 512 KiB: five parts, the last one of
	 * 200001 bytes. The first four requests (the four streams' first
	 * parts, whichever order they come in) are reset after AT bytes. */
	const uint64_t AT = 100003;
	const unsigned K = 4;
	const uint64_t sizes[] = {2 * MIB + 200001};
	const uint64_t size = sizes[0];
	make_dataset(sizes, 1, 0xc07);
	fo = origin_on(ds.dir);
	set_fault_on(fo, 0, (struct fault){.kind = FAULT_RESET, .at = AT, .first_k = K});
	struct sstf_config cfg = split_config(4, 4, 16); /* 64 buffers: parts of 512 KiB */
	cfg.max_retries = 10;
	sstf_engine *eng = engine_new(&cfg);
	cr_assert_eq(part_size(eng), 512 * KIB, "parts of %" PRIu64, part_size(eng));
	const char *base = fault_origin_url(fo);
	size_t which = 0;
	struct sstf_file *files = files_new(&which, 1, &base, 1);

	struct rec r;
	int res = fetch(eng, files, 1, &r);
	cr_expect_eq(res, 0, "%d %s: %s", res, sstf_strerror(res), r.f[0].detail);
	expect_dest(&which, 1, "range cut");
	cr_expect_gt(r.f[0].streams, 1, "ran on %u stream(s)", r.f[0].streams);
	cr_expect_geq(r.f[0].retries, 1, "%u retries", r.f[0].retries);
	cr_expect_eq(r.f[0].bytes, size, "%" PRIu64 " bytes received", r.f[0].bytes);
	cr_expect_eq(r.f[0].mb[0], size, "the URL served %" PRIu64, r.f[0].mb[0]);
	/* Every byte sent once: the cut requests' AT bytes were kept. */
	cr_expect_eq(fault_origin_body_bytes(fo), size, "the origin sent %" PRIu64 " bytes",
	             fault_origin_body_bytes(fo));

	struct fault_request *log = calloc(FAULT_LOG_MAX, sizeof(*log));
	cr_assert_not_null(log);
	size_t nlog = log_of(fo, 0, log);
	cr_assert_gt(nlog, K, "%zu requests", nlog);
	struct iv *iv = calloc(nlog, sizeof(*iv));
	cr_assert_not_null(iv);
	unsigned cut_past_zero = 0;
	for (size_t i = 0; i < nlog; i++) {
		const struct fault_request *q = &log[i];
		cr_expect_eq(q->status, 206, "request %zu: status %d", i, q->status);
		cr_assert_geq(q->range_start, 0, "request %zu has no range (start %" PRId64 ")", i,
		              q->range_start);
		int64_t end = q->range_end < 0 ? (int64_t)size - 1 : q->range_end;
		cr_assert_geq(end, q->range_start);
		bool cut = i < K && (uint64_t)(end - q->range_start + 1) > AT;
		iv[i] = (struct iv){q->range_start, cut ? q->range_start + (int64_t)AT : end + 1, i};
		if (!cut)
			continue;
		if (q->range_start > 0)
			cut_past_zero++;
		/* Its retry: the rest of this range exactly, asked later. */
		unsigned retries = 0;
		for (size_t j = i + 1; j < nlog; j++) {
			if (log[j].range_start == q->range_start + (int64_t)AT &&
			    log[j].range_end == q->range_end) {
				retries++;
				cr_expect_gt(log[j].range_start, q->range_start);
			}
		}
		cr_expect_eq(retries, 1,
		             "request %zu (bytes=%" PRId64 "-%" PRId64 ") was cut after %" PRIu64
		             " bytes; %u requests ask for bytes=%" PRId64 "-%" PRId64,
		             i, q->range_start, q->range_end, AT, retries,
		             q->range_start + (int64_t)AT, q->range_end);
	}
	cr_expect_geq(cut_past_zero, 1, "no cut range started past byte 0");

	/* What the requests delivered tiles the file: nothing asked twice,
	 * nothing skipped. */
	qsort(iv, nlog, sizeof(*iv), iv_cmp);
	int64_t at = 0;
	for (size_t k = 0; k < nlog; k++) {
		cr_expect_eq(iv[k].a, at,
		             "request %zu delivers from %" PRId64 ", the bytes before it end at %" PRId64,
		             iv[k].req, iv[k].a, at);
		at = iv[k].b;
	}
	cr_expect_eq(at, (int64_t)size, "the requests end at %" PRId64 " of %" PRIu64, at, size);
	free(iv);
	free(log);
	pthread_mutex_destroy(&r.mu);
	files_free(files, 1);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Split: an origin without ranges                                          */

Test(split, origin_without_ranges_falls_back_to_one_stream)
{
	/* File 0 comes from a path that ignores Range (200, whole body);
	 * file 1, in the same batch, from one that honours it. */
	const uint64_t sizes[] = {3 * MIB + 777, 2 * MIB + 333};
	make_dataset(sizes, 2, 0x404a);
	fo = origin_on(ds.dir);
	set_fault_on(fo, 0, (struct fault){.kind = FAULT_NORANGE, .first_k = 0});
	struct sstf_config cfg = split_config(4, 8, 8);
	sstf_engine *eng = engine_new(&cfg);
	cr_assert_gt(parts_of(eng, sizes[0]), 1);
	const char *base = fault_origin_url(fo);
	size_t all[] = {0, 1};
	struct sstf_file *files = files_new(all, 2, &base, 1);

	struct rec r;
	int res = fetch(eng, files, 2, &r);
	cr_expect_eq(res, 0, "%d %s", res, sstf_strerror(res));
	cr_expect_eq(r.f[0].result, 0, "no-range file: %d %s", r.f[0].result, r.f[0].detail);
	cr_expect_eq(r.f[1].result, 0, "ranged file: %d %s", r.f[1].result, r.f[1].detail);
	cr_expect_eq(r.f[0].http_status, 200, "no-range file: last status %d", r.f[0].http_status);
	cr_expect_gt(r.f[1].streams, 1, "the ranged file ran on %u stream(s)", r.f[1].streams);
	expect_dest(all, 2, "no ranges");

	/* The origin was asked for ranges, answered 200, and the file ended
	 * on a request without a range. */
	struct fault_request *log = calloc(FAULT_LOG_MAX, sizeof(*log));
	cr_assert_not_null(log);
	size_t nlog = log_of(fo, 0, log);
	cr_assert_geq(nlog, 1);
	unsigned plain = 0;
	for (size_t i = 0; i < nlog; i++) {
		cr_expect_eq(log[i].status, 200, "request %zu: status %d", i, log[i].status);
		if (log[i].range_start < 0 && log[i].range_end < 0)
			plain++;
	}
	cr_expect_eq(plain, 1, "%u of %zu requests asked for no range", plain, nlog);
	/* After the fall back one stream asks once for the whole object, and
	 * gets it whole. (Ranged requests may be counted after it: those the
	 * other streams had sent before the fall back, read late, whose
	 * answers nobody reads.) */
	for (size_t i = 0; i < nlog; i++)
		if (log[i].range_start < 0 && log[i].range_end < 0)
			cr_expect_neq(log[i].t_answered_ns, 0, "the plain request %zu was not answered",
			              i);
	free(log);
	pthread_mutex_destroy(&r.mu);
	files_free(files, 2);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Split: a cancel while the streams trickle in                             */

struct watchdog {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool done;
	const char *what;
};

static void *watchdog_main(void *arg)
{
	struct watchdog *w = arg;
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += CANCEL_GUARD_S;
	pthread_mutex_lock(&w->mu);
	while (!w->done) {
		if (pthread_cond_timedwait(&w->cv, &w->mu, &until) == ETIMEDOUT && !w->done) {
			fprintf(stderr, "split: %s did not return in %d s\n", w->what,
			        CANCEL_GUARD_S);
			abort();
		}
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

Test(split, cancel_mid_split_returns_and_leaves_no_temporary)
{
	/* Every request sends 16 KiB at once, then 64 KiB/s: four streams
	 * of a 4 MiB file are in flight for many seconds. */
	const uint64_t sizes[] = {4 * MIB + 1};
	make_dataset(sizes, 1, 0xca9c);
	fo = origin_on(ds.dir);
	set_fault_on(fo, 0,
	             (struct fault){.kind = FAULT_SLOW, .at = 16 * KIB, .rate = 64 * KIB});
	struct sstf_config cfg = split_config(4, 4, 16);
	sstf_engine *eng = engine_new(&cfg);
	const char *base = fault_origin_url(fo);
	size_t which = 0;
	struct sstf_file *files = files_new(&which, 1, &base, 1);
	struct rec r;
	rec_init(&r, 1);
	uint64_t gen = submit(eng, files, 1, &r);

	/* Wait until the four streams have asked, and the temporary is there. */
	uint64_t deadline = now_ns() + GUARD_NS;
	char tmp[PATH_MAX] = "";
	while (requests_on(fo, 0) < 4 || stage_entries(NULL, 0) < 2) {
		cr_assert_lt(now_ns(), deadline, "after %llu s: %u requests, %d staging entries",
		             GUARD_NS / 1000000000ull, requests_on(fo, 0), stage_entries(NULL, 0));
		struct sstf_progress pr;
		cr_assert_eq(sstf_progress(eng, gen, &pr), 0);
		cr_assert_eq(pr.files_done + pr.files_failed, 0, "the file ended before the cancel");
		usleep(POLL_US);
	}
	stage_entries(tmp, sizeof(tmp));

	struct watchdog w = {.what = "sstf_cancel"};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cv, NULL);
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, watchdog_main, &w), 0);
	int cr = sstf_cancel(eng, gen);
	pthread_mutex_lock(&w.mu);
	w.done = true;
	pthread_cond_signal(&w.cv);
	pthread_mutex_unlock(&w.mu);
	pthread_join(t, NULL);
	pthread_cond_destroy(&w.cv);
	pthread_mutex_destroy(&w.mu);

	cr_expect_eq(cr, 0, "sstf_cancel: %d (%s)", cr, sstf_strerror(cr));
	cr_expect_eq(sstf_wait(eng, gen, 0), -ECANCELED);
	pthread_mutex_lock(&r.mu);
	cr_expect_eq(r.f[0].calls, 0, "the file ended before the cancel (result %d)",
	             r.f[0].result);
	cr_expect_eq(r.batch_calls, 1, "%u batch reports", r.batch_calls);
	cr_expect_eq(r.batch_result, -ECANCELED, "batch result %d", r.batch_result);
	pthread_mutex_unlock(&r.mu);
	/* Nothing under the name, no temporary, the staging dir empty or gone. */
	cr_expect_eq(dest_equals(0, ds.files[0].path), -ENOENT, "something stands under %s",
	             ds.files[0].name);
	expect_dest(NULL, 0, "after the cancel");
	cr_expect(tmp[0], "no staging entry was seen");
	pthread_mutex_destroy(&r.mu);
	files_free(files, 1);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* The write budget                                                         */

/* Pools of two buffers a transfer: the budget is a quarter of the pool. */
#define BUDGET_TRANSFERS 4
#define BUDGET_BUFS 2

/*
 * Writes past the engine's write budget (a quarter of the pool here, two
 * buffers) wait on its queue in commit order, and every file still comes
 * out byte-identical, split or not.
 */
Test(split, writes_past_the_budget_wait_and_every_file_is_byte_identical)
{
	uint64_t sizes[12];
	uint64_t rng = 0xb0d6e7;
	for (size_t k = 0; k < 12; k++)
		sizes[k] = 1 + splitmix64(&rng) % (3 * MIB);
	make_dataset(sizes, 12, 0xb0d6e7);
	fo = origin_on(ds.dir);
	size_t *which = iota(12);
	const char *bases[] = {fault_origin_url(fo)};
	struct sstf_file *files = files_new(which, 12, bases, 1);
	struct sstf_config cfg = split_config(4, BUDGET_TRANSFERS, BUDGET_BUFS);
	sstf_engine *eng = engine_new(&cfg);
	/* Set before the loop threads start, read-only after. */
	const struct sstf__pool *pool = &sstf__engine_loop(eng, 0)->pool;
	cr_assert_eq(pool->wbytes_max, pool->n * BUF / 4);
	struct rec r;
	int res = fetch(eng, files, 12, &r);
	cr_expect_eq(res, 0, "batch %d (%s)", res, sstf_strerror(res));
	expect_dest(which, 12, "write budget");
	cr_expect_gt(writes_waited(eng), 0, "no write waited for the budget of %" PRIu64 " bytes",
	             pool->wbytes_max);
	cr_expect_eq(writes_dropped(eng), 0);
	pthread_mutex_destroy(&r.mu);
	engine_free_checked(eng);
	files_free(files, 12);
	free(which);
}

/*
 * A cancel drops the writes still waiting for the budget: they never
 * reach the disk, the cancel returns, and nothing is left. Whether writes
 * wait at the moment of the cancel is the loop's timing, so the cancel is
 * tried again (a new generation each time) until one dropped some.
 */
Test(split, a_cancel_drops_the_writes_waiting_for_the_budget)
{
	enum { N = 8, TRIES = 40 };
	uint64_t sizes[N];
	for (size_t k = 0; k < N; k++)
		sizes[k] = 2 * MIB + k;
	make_dataset(sizes, N, 0xd60b);
	fo = origin_on(ds.dir);
	size_t *which = iota(N);
	const char *bases[] = {fault_origin_url(fo)};
	struct sstf_file *files = files_new(which, N, bases, 1);
	struct sstf_config cfg = split_config(1, BUDGET_TRANSFERS, BUDGET_BUFS);
	sstf_engine *eng = engine_new(&cfg);
	unsigned tries = 0;
	while (writes_dropped(eng) == 0 && tries < TRIES) {
		tries++;
		struct rec r;
		rec_init(&r, N);
		uint64_t gen = submit(eng, files, N, &r);
		/* Cancel once writes are under way. */
		uint64_t deadline = now_ns() + GUARD_NS;
		struct sstf_progress pr;
		do {
			cr_assert_lt(now_ns(), deadline, "no byte written in %llu s",
			             GUARD_NS / 1000000000ull);
			cr_assert_eq(sstf_progress(eng, gen, &pr), 0);
		} while (pr.bytes_done < 2 * BUF && pr.files_done + pr.files_failed < N);
		int cr = sstf_cancel(eng, gen);
		cr_expect(cr == 0 || cr == -ENOENT, "sstf_cancel: %d (%s)", cr, sstf_strerror(cr));
		int res = sstf_wait(eng, gen, WAIT_MS);
		cr_assert_neq(res, -ETIMEDOUT, "generation %" PRIu64 " did not end", gen);
		/* A cancelled file is not reported; a reported one was
		 * published whole; the rest left nothing. */
		size_t done[N], ndone = 0;
		pthread_mutex_lock(&r.mu);
		cr_expect_eq(r.batch_calls, 1, "%u batch reports", r.batch_calls);
		for (size_t k = 0; k < N; k++) {
			cr_expect_leq(r.f[k].calls, 1, "file %zu: %u reports", k, r.f[k].calls);
			if (r.f[k].calls == 0)
				continue;
			cr_expect_eq(r.f[k].result, 0, "file %zu: %d (%s)", k, r.f[k].result,
			             r.f[k].detail);
			done[ndone++] = k;
		}
		pthread_mutex_unlock(&r.mu);
		cr_expect(res == -ECANCELED || ndone == N, "batch %d with %zu files done", res,
		          ndone);
		char ctx[64];
		snprintf(ctx, sizeof(ctx), "cancel %u", tries);
		expect_dest(done, ndone, ctx);
		pthread_mutex_destroy(&r.mu);
		cr_assert_eq(ds_empty_dir(dest), 0);
	}
	cr_expect_gt(writes_dropped(eng), 0,
	             "%u cancels, none while writes waited for the budget (%" PRIu64
	             " waited in all)",
	             tries, writes_waited(eng));
	engine_free_checked(eng);
	files_free(files, N);
	free(which);
}

/*
 * A connection outlives its file: a stream's easy handle leaves curl's
 * multi handle between files (while its file syncs and renames), and curl
 * sizes its cache of idle connections by the handles it holds at the
 * time, so without CURLMOPT_MAXCONNECTS most connections were closed
 * between two files (4 requests a connection on 100,000 small files).
 */
Test(split, connections_are_kept_from_one_file_to_the_next)
{
	uint64_t sizes[MAXF];
	for (size_t k = 0; k < MAXF; k++)
		sizes[k] = 4096 + 1000 * k;
	make_dataset(sizes, MAXF, 0xc011);
	fo = origin_on(ds.dir);
	size_t *which = iota(MAXF);
	const char *bases[] = {fault_origin_url(fo)};
	struct sstf_file *files = files_new(which, MAXF, bases, 1);
	struct sstf_config cfg = split_config(1, 8, 2);
	sstf_engine *eng = engine_new(&cfg);
	struct rec r;
	cr_assert_eq(fetch(eng, files, MAXF, &r), 0);
	unsigned conns = fault_origin_connections(fo);
	engine_free_checked(eng);
	expect_dest(which, MAXF, "connections");
	/* Two streams, each with a connection it keeps: a third would be a
	 * connection closed and opened again. Loops share no connection. */
	cr_assert_leq(conns, cfg.max_transfers * test_loops(),
	              "%u connections for %d files over %u streams", conns, MAXF,
	              cfg.max_transfers * test_loops());
	files_free(files, MAXF);
	free(which);
}

/*
 * A split file started first gets its streams before the files behind it
 * take them. Files start largest first, and a file's temporary is opened
 * through the ring: without the reservation the small files started
 * meanwhile hold every other stream (the origin trickles their bodies),
 * and the big file's one stream fetches all its parts alone.
 */
Test(split, a_split_file_started_first_gets_its_streams_before_small_files)
{
	enum { NSMALL = 12, TRANSFERS = 4, SPLIT = 4 };
	uint64_t sizes[NSMALL + 1];
	sizes[0] = 16 * BUF * SPLIT; /* 16 parts of 4 buffers: more than SPLIT */
	for (size_t k = 1; k <= NSMALL; k++)
		sizes[k] = 8 * KIB + k;
	make_dataset(sizes, NSMALL + 1, 0xf1257);
	fo = origin_on(ds.dir);
	for (size_t k = 1; k <= NSMALL; k++)
		set_fault_on(fo, k, (struct fault){.kind = FAULT_SLOW, .at = 0, .rate = 32 * KIB});
	size_t *which = iota(NSMALL + 1);
	const char *bases[] = {fault_origin_url(fo)};
	/* The small files last in the array: the order is the engine's. */
	struct sstf_file *files = files_new(which, NSMALL + 1, bases, 1);
	struct sstf_config cfg = split_config(SPLIT, TRANSFERS, 4);
	sstf_engine *eng = engine_new(&cfg);
	cr_assert_gt(parts_of(eng, sizes[0]), SPLIT);
	struct rec r;
	int res = fetch(eng, files, NSMALL + 1, &r);
	cr_expect_eq(res, 0, "batch %d (%s)", res, sstf_strerror(res));
	cr_expect_eq(r.f[0].streams, SPLIT,
	             "the %" PRIu64 "-byte file ran on %u stream(s) of %d, with %d small files "
	             "trickling in behind it",
	             sizes[0], r.f[0].streams, SPLIT, NSMALL);
	expect_dest(which, NSMALL + 1, "split first");
	pthread_mutex_destroy(&r.mu);
	engine_free_checked(eng);
	files_free(files, NSMALL + 1);
	free(which);
}

/* ------------------------------------------------------------------------ */
/* Retry-After                                                              */

/* A file under split_min: one stream, so its second request is the retry. */
static const uint64_t ra_sizes[] = {200001};

static void retry_after_kept(bool date)
{
	make_dataset(ra_sizes, 1, 0x7a);
	fo = origin_on(ds.dir);
	set_fault_on(fo, 0, (struct fault){.kind = FAULT_503, .first_k = 1, .retry_after_s = 1,
	                                   .retry_after_date = date});
	struct sstf_config cfg = split_config(8, 4, 4);
	sstf_engine *eng = engine_new(&cfg);
	const char *base = fault_origin_url(fo);
	size_t which = 0;
	struct sstf_file *files = files_new(&which, 1, &base, 1);
	struct rec r;
	int res = fetch(eng, files, 1, &r);
	cr_expect_eq(res, 0, "%d %s: %s", res, sstf_strerror(res), r.f[0].detail);
	cr_expect_eq(r.f[0].retries, 1, "%u retries", r.f[0].retries);
	cr_expect_eq(r.f[0].http_status, 200, "last status %d", r.f[0].http_status);
	expect_dest(&which, 1, date ? "Retry-After date" : "Retry-After 1");

	struct fault_request log[FAULT_LOG_MAX];
	size_t nlog = log_of(fo, 0, log);
	cr_assert_eq(nlog, 2, "%zu requests", nlog);
	cr_expect_eq(log[0].status, 503);
	cr_expect_eq(log[1].status, 200);
	cr_assert_gt(log[0].t_answered_ns, 0, "the 503 was never answered");
	int64_t gap = (int64_t)log[1].t_request_ns - (int64_t)log[0].t_answered_ns;
	cr_expect_geq(gap, 1000000000ll,
	              "the retry came %.3f s after the 503 that asked for %s", gap / 1e9,
	              date ? "an HTTP-date 1 s ahead (rounded up)" : "1 s");
	pthread_mutex_destroy(&r.mu);
	files_free(files, 1);
	engine_free_checked(eng);
}

Test(split, retry_after_seconds_is_waited_for)
{
	retry_after_kept(false);
}

Test(split, retry_after_http_date_is_waited_for)
{
	retry_after_kept(true);
}

static void retry_after_over_cap(enum fault_kind kind, bool date)
{
	make_dataset(ra_sizes, 1, 0x7b);
	fo = origin_on(ds.dir);
	/* Twice the engine's 60 s cap, on every request. */
	set_fault_on(fo, 0, (struct fault){.kind = kind, .first_k = 0, .retry_after_s = 120,
	                                   .retry_after_date = date});
	struct sstf_config cfg = split_config(8, 4, 4);
	cfg.max_retries = 5;
	sstf_engine *eng = engine_new(&cfg);
	const char *base = fault_origin_url(fo);
	size_t which = 0;
	struct sstf_file *files = files_new(&which, 1, &base, 1);
	struct rec r;
	uint64_t t0 = now_ns();
	int res = fetch(eng, files, 1, &r);
	uint64_t took = now_ns() - t0;
	int want_status = kind == FAULT_503 ? 503 : 429;
	cr_expect_eq(res, -SSTF_EHTTP, "%d %s: %s", res, sstf_strerror(res), r.f[0].detail);
	cr_expect_eq(r.f[0].http_status, want_status, "last status %d", r.f[0].http_status);
	cr_expect_lt(took, 10ull * 1000000000ull, "failing took %.3f s", took / 1e9);
	cr_expect(strstr(r.f[0].detail, "Retry-After") != NULL, "detail: '%s'", r.f[0].detail);
	cr_expect_eq(r.f[0].retries, 0, "%u retries", r.f[0].retries);
	cr_expect_eq(requests_on(fo, 0), 1, "%u requests", requests_on(fo, 0));
	expect_dest(NULL, 0, "Retry-After over the cap");
	pthread_mutex_destroy(&r.mu);
	files_free(files, 1);
	engine_free_checked(eng);
}

Test(split, retry_after_past_the_cap_fails_at_once)
{
	retry_after_over_cap(FAULT_503, false);
}

Test(split, retry_after_date_past_the_cap_fails_at_once)
{
	retry_after_over_cap(FAULT_429, true);
}

/* ------------------------------------------------------------------------ */
/* Mirrors                                                                  */

/* Small and split files; names are "000000.sst" ... */
static const uint64_t mirror_sizes[] = {1, 200001, SPLIT_MIN + 1, MIB + 3, 3 * MIB + 5,
                                        2 * MIB + 4097};
#define NMIRROR_FILES (sizeof(mirror_sizes) / sizeof(mirror_sizes[0]))

/* Two origins serving the same directory; entries listing fo, then fo2. */
static struct sstf_file *mirrored_files(size_t *all)
{
	make_dataset(mirror_sizes, NMIRROR_FILES, 0x3177);
	fo = origin_on(ds.dir);
	fo2 = origin_on(ds.dir);
	const char *bases[2] = {fault_origin_url(fo), fault_origin_url(fo2)};
	for (size_t k = 0; k < NMIRROR_FILES; k++)
		all[k] = k;
	return files_new(all, NMIRROR_FILES, bases, 2);
}

Test(split, mirror_answering_404_leaves_every_file_to_the_second)
{
	size_t all[NMIRROR_FILES];
	struct sstf_file *files = mirrored_files(all);
	for (size_t k = 0; k < NMIRROR_FILES; k++)
		set_fault_on(fo, k, (struct fault){.kind = FAULT_404, .first_k = 0});
	struct sstf_config cfg = split_config(4, 8, 8);
	sstf_engine *eng = engine_new(&cfg);
	struct rec r;
	int res = fetch(eng, files, NMIRROR_FILES, &r);
	cr_expect_eq(res, 0, "%d %s", res, sstf_strerror(res));
	uint64_t total = 0;
	for (size_t k = 0; k < NMIRROR_FILES; k++) {
		const struct fres *f = &r.f[k];
		total += mirror_sizes[k];
		cr_expect_eq(f->result, 0, "file %zu: %d %s", k, f->result, f->detail);
		cr_expect_eq(f->nmirrors, 2, "file %zu: %u mirrors", k, f->nmirrors);
		cr_expect_eq(f->mb[0], 0, "file %zu: the 404 mirror served %" PRIu64, k, f->mb[0]);
		cr_expect_eq(f->mb[1], mirror_sizes[k],
		             "file %zu: the second mirror served %" PRIu64 " of %" PRIu64, k, f->mb[1],
		             mirror_sizes[k]);
		cr_expect_geq(requests_on(fo, k), 1, "file %zu: the first mirror was never asked", k);
	}
	expect_dest(all, NMIRROR_FILES, "first mirror 404");
	cr_expect_eq(fault_origin_body_bytes(fo), 0);
	cr_expect_eq(fault_origin_body_bytes(fo2), total, "the second mirror sent %" PRIu64
	             " of %" PRIu64, fault_origin_body_bytes(fo2), total);
	pthread_mutex_destroy(&r.mu);
	files_free(files, NMIRROR_FILES);
	engine_free_checked(eng);
}

Test(split, mirror_cutting_every_body_leaves_the_rest_to_the_second)
{
	const uint64_t AT = 70001;
	size_t all[NMIRROR_FILES];
	struct sstf_file *files = mirrored_files(all);
	for (size_t k = 0; k < NMIRROR_FILES; k++)
		set_fault_on(fo, k, (struct fault){.kind = FAULT_RESET, .at = AT, .first_k = 0});
	struct sstf_config cfg = split_config(4, 8, 8);
	sstf_engine *eng = engine_new(&cfg);
	struct rec r;
	int res = fetch(eng, files, NMIRROR_FILES, &r);
	cr_expect_eq(res, 0, "%d %s", res, sstf_strerror(res));
	uint64_t sum0 = 0, sum1 = 0;
	for (size_t k = 0; k < NMIRROR_FILES; k++) {
		const struct fres *f = &r.f[k];
		uint64_t size = mirror_sizes[k];
		cr_expect_eq(f->result, 0, "file %zu: %d %s", k, f->result, f->detail);
		cr_expect_eq(f->nmirrors, 2, "file %zu: %u mirrors", k, f->nmirrors);
		cr_expect_eq(f->mb[0] + f->mb[1], size,
		             "file %zu: the mirrors served %" PRIu64 " + %" PRIu64 " of %" PRIu64, k,
		             f->mb[0], f->mb[1], size);
		/* The first stream starts on the first mirror, which sends up
		 * to AT bytes of each range before it cuts. */
		cr_expect_gt(f->mb[0], 0, "file %zu: the first mirror served nothing", k);
		if (size > AT)
			cr_expect_gt(f->mb[1], 0, "file %zu: the second mirror served nothing", k);
		cr_expect_eq(f->bytes, size, "file %zu: %" PRIu64 " bytes received", k, f->bytes);
		sum0 += f->mb[0];
		sum1 += f->mb[1];
	}
	expect_dest(all, NMIRROR_FILES, "first mirror resets");
	cr_expect_eq(fault_origin_body_bytes(fo), sum0, "the first mirror sent %" PRIu64
	             ", the files say %" PRIu64, fault_origin_body_bytes(fo), sum0);
	cr_expect_eq(fault_origin_body_bytes(fo2), sum1, "the second mirror sent %" PRIu64
	             ", the files say %" PRIu64, fault_origin_body_bytes(fo2), sum1);
	pthread_mutex_destroy(&r.mu);
	files_free(files, NMIRROR_FILES);
	engine_free_checked(eng);
}

/* "127.0.0.1:PORT" of an origin's URL. */
static const char *host_of(const struct fault_origin *o)
{
	const char *u = fault_origin_url(o);
	const char *p = strstr(u, "://");
	return p ? p + 3 : u;
}

Test(split, two_healthy_mirrors_both_serve_a_split_file)
{
	size_t all[NMIRROR_FILES];
	struct sstf_file *files = mirrored_files(all);
	const size_t big = 4; /* 3 MiB + 5 */
	struct sstf_config cfg = split_config(4, 8, 8);
	sstf_engine *eng = engine_new(&cfg);
	cr_assert_gt(parts_of(eng, mirror_sizes[big]), 2);
	struct rec r;
	int res = fetch(eng, &files[big], 1, &r);
	cr_expect_eq(res, 0, "%d %s: %s", res, sstf_strerror(res), r.f[0].detail);
	cr_expect_gt(r.f[0].streams, 1, "%u stream(s)", r.f[0].streams);
	cr_expect_eq(r.f[0].nmirrors, 2);
	cr_expect_gt(r.f[0].mb[0], 0, "the first mirror served nothing");
	cr_expect_gt(r.f[0].mb[1], 0, "the second mirror served nothing");
	cr_expect_eq(r.f[0].mb[0] + r.f[0].mb[1], mirror_sizes[big],
	             "%" PRIu64 " + %" PRIu64 " bytes served", r.f[0].mb[0], r.f[0].mb[1]);
	cr_expect_gt(fault_origin_body_bytes(fo), 0, "the first origin sent nothing");
	cr_expect_gt(fault_origin_body_bytes(fo2), 0, "the second origin sent nothing");
	cr_expect_eq(fault_origin_body_bytes(fo), r.f[0].mb[0]);
	cr_expect_eq(fault_origin_body_bytes(fo2), r.f[0].mb[1]);
	expect_dest(&big, 1, "two mirrors");

	/* Each origin was asked by its own name. */
	struct fault_request log[FAULT_LOG_MAX];
	struct fault_origin *os[2] = {fo, fo2};
	for (int m = 0; m < 2; m++) {
		size_t nlog = log_of(os[m], big, log);
		cr_expect_geq(nlog, 1, "mirror %d was never asked", m);
		for (size_t i = 0; i < nlog; i++)
			cr_expect_str_eq(log[i].host, host_of(os[m]), "mirror %d, request %zu", m, i);
	}
	pthread_mutex_destroy(&r.mu);
	files_free(files, NMIRROR_FILES);
	engine_free_checked(eng);
}

/* Reads a whole file into a heap buffer. */
static uint8_t *slurp(const char *path, uint64_t size)
{
	uint8_t *b = malloc(size ? size : 1);
	cr_assert_not_null(b);
	FILE *fp = fopen(path, "rb");
	cr_assert_not_null(fp, "open %s: %s", path, strerror(errno));
	cr_assert_eq(fread(b, 1, size, fp), size, "read %s", path);
	fclose(fp);
	return b;
}

Test(split, mirrors_that_differ_are_caught_by_the_digest)
{
	/* The second origin serves a copy of file 0 with one byte changed, in
	 * its second part: the part the second stream, which starts on the
	 * second mirror, takes first. */
	const uint64_t sizes[] = {3 * MIB + 5};
	make_dataset(sizes, 1, 0xd1ff);
	struct sstf_config cfg = split_config(4, 8, 8);
	sstf_engine *eng = engine_new(&cfg);
	cr_assert_gt(parts_of(eng, sizes[0]), 2);
	const uint64_t bad_off = part_size(eng) + 1234;

	cr_assert_eq(ds_mkdtemp("split-alt", &alt_root), 0);
	char *bad_path = ds_strfmt("%s/%s", alt_root, ds.files[0].name);
	cr_assert_not_null(bad_path);
	uint8_t *bytes = slurp(ds.files[0].path, sizes[0]);
	bytes[bad_off] ^= 0x5a;
	cr_assert_eq(ds_write_file(bad_path, bytes, sizes[0]), 0);
	free(bytes);
	cr_assert_eq(ds_files_equal(bad_path, ds.files[0].path), 0);

	fo = origin_on(ds.dir);
	fo2 = origin_on(alt_root);
	const char *bases[2] = {fault_origin_url(fo), fault_origin_url(fo2)};
	size_t which = 0;
	struct sstf_file *files = files_new(&which, 1, bases, 2);
	struct rec r;
	int res = fetch(eng, files, 1, &r);
	const struct fres *f = &r.f[0];
	cr_expect(res == -SSTF_ECHECKSUM || res == 0, "%d %s: %s", res, sstf_strerror(res),
	          f->detail);
	cr_expect_gt(f->mb[1], 0, "the second mirror served nothing: nothing was compared");
	cr_expect_gt(f->streams, 1, "%u stream(s)", f->streams);

	/* Did the changed byte reach the engine? Some complete request to the
	 * second mirror covered it. */
	struct fault_request log[FAULT_LOG_MAX];
	size_t nlog = log_of(fo2, 0, log);
	unsigned covered = 0;
	for (size_t i = 0; i < nlog; i++) {
		int64_t a = log[i].range_start, b = log[i].range_end;
		if (a < 0)
			a = 0;
		if (b < 0)
			b = (int64_t)sizes[0] - 1;
		if ((log[i].status == 200 || log[i].status == 206) && a <= (int64_t)bad_off &&
		    (int64_t)bad_off <= b)
			covered++;
	}
	cr_expect_geq(covered, 1, "no request to the second mirror covered byte %" PRIu64
	              " (%zu requests): the test compares nothing", bad_off, nlog);
	if (covered)
		cr_expect(res != 0 || f->retries >= 1,
		          "the changed byte was served and the file passed without a refetch");

	cr_log_info("mirrors differ: result %d (%s), %u retries, mirror bytes %" PRIu64 " + %" PRIu64
	            ", %u requests covered the changed byte",
	            res, f->detail, f->retries, f->mb[0], f->mb[1], covered);

	/* Whatever stands under the name is the good copy, never the bad one. */
	int good = dest_equals(0, ds.files[0].path);
	int badeq = dest_equals(0, bad_path);
	cr_expect_neq(badeq, 1, "the second mirror's copy was published");
	if (res == 0)
		cr_expect_eq(good, 1, "published, but not the good copy (%d)", good);
	else
		cr_expect_eq(good, -ENOENT, "failed, but something stands under the name (%d)",
		             good);
	if (res == -SSTF_ECHECKSUM) {
		cr_expect_eq(f->retries, 1, "%u retries: one refetch, then the failure", f->retries);
		cr_expect(strstr(f->detail, "digest") != NULL, "detail: '%s'", f->detail);
	}
	expect_no_temps("mirrors differ");
	free(bad_path);
	pthread_mutex_destroy(&r.mu);
	files_free(files, 1);
	engine_free_checked(eng);
}
