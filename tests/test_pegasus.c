/*
 * Description: the two Pegasus 2.4 crashes, replayed. (1) Replica restart:
 * a generation is cancelled from another thread while its downloads are in
 * flight, the caller poisons and frees its metadata at once and resubmits
 * the same files into the same directory. (2) Missing file: a 404 in a
 * 64-file batch makes the caller cancel (from its own thread, or from the
 * file-done callback) while the other files still download. After cancel no
 * callback of that generation runs, no temporary file remains, nothing
 * half-written sits under a final name, and the next generation is exact.
 *
 * Each scenario loops SSTF_PEGASUS_ITERS times (default 100).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/sanitizers.h"
#include "support/origin.h"

#define NF 64
#define KIB 1024ull
#define WAIT_MS 120000 /* a hang guard; nothing is measured */
#define DEFAULT_ITERS 100


/* Frees the engine and fails the test if that left memory unreachable. */
static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0,
	             "LeakSanitizer: leaks after sstf_engine_free (report above)");
}

static struct dataset ds;
static struct origin *org;
static char *work;
static char *dest;

static unsigned iters(void)
{
	const char *s = getenv("SSTF_PEGASUS_ITERS");
	if (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 10);
		if (*end == '\0' && v > 0 && v < 1000000)
			return (unsigned)v;
	}
	return DEFAULT_ITERS;
}

static void fixture_init(void)
{
	/* 256 KiB .. 1 MiB, odd sizes: big enough that 64 of them through a
	 * few 64 KiB buffers are still in flight when the cancel lands. */
	uint64_t sizes[NF];
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < NF; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		sizes[i] = 256 * KIB + x % (768 * KIB + 1);
	}
	cr_assert_eq(ds_create(&ds, "pegasus-origin", NF, NULL, sizes, 0x9e6a55), 0);
	int err = origin_start(ds.dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	cr_assert_eq(ds_mkdtemp("pegasus-dest", &work), 0);
	dest = ds_strfmt("%s/replica/bulk_load", work);
	cr_assert_not_null(dest);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void fixture_fini(void)
{
	origin_stop(org);
	org = NULL;
	ds_destroy(&ds);
	if (work)
		ds_rmtree(work);
	free(work);
	free(dest);
	work = dest = NULL;
}

/* The split runs: files of 256 KiB and more go over this many ranged
 * streams (0: the engine's defaults, under which none of these splits). */
static unsigned split_streams;
/* Files reported with more than one stream, over the whole test. */
static atomic_uint split_files;

static sstf_engine *engine_new(int fsync_on)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	if (split_streams) {
		cfg.split = split_streams;
		cfg.split_min = 256 * KIB;
	}
	cfg.buf_size = 64 * KIB;
	cfg.max_transfers = 8;
	cfg.mem_limit = 2 * 8 * 64 * KIB;
	cfg.fsync = fsync_on ? SSTF_ON : SSTF_OFF;
	cfg.progress_interval_ms = 1;
	sstf_engine *eng = NULL;
	int err = test_engine_new(&cfg, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	return eng;
}

/* ------------------------------------------------------------------------ */
/* Per-generation records, written by callbacks on the loop thread          */

/*
 * Violations are counted here and asserted on the main thread; the first
 * one is described in `first_violation`.
 */
static atomic_uint violations;
static pthread_mutex_t vmu = PTHREAD_MUTEX_INITIALIZER;
static char first_violation[256];

__attribute__((format(printf, 1, 2)))
static void violation(const char *fmt, ...)
{
	if (atomic_fetch_add(&violations, 1) != 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&vmu);
	vsnprintf(first_violation, sizeof(first_violation), fmt, ap);
	pthread_mutex_unlock(&vmu);
	va_end(ap);
}

enum fail_action {
	FAIL_NOTHING,    /* just record */
	FAIL_SIGNAL,     /* wake the main thread, which cancels */
	FAIL_CANCEL_CB,  /* cancel from inside the callback */
};

/*
 * One per submitted generation, alive until the end of the test, so a
 * callback that comes too late still lands in valid memory and is counted.
 */
struct genrec {
	sstf_engine *eng;
	unsigned iter;
	enum fail_action on_fail;
	atomic_uint_fast64_t seen_gen;   /* gen of the first callback */
	atomic_int cancel_returned;      /* sstf_cancel(gen) has returned */
	atomic_int cancelled_in_cb;      /* sstf_cancel was called from a callback */
	atomic_int cb_cancel_ret;
	atomic_int in_callback;          /* a callback of this gen is running */
	atomic_int file_done;
	atomic_int file_ok;
	atomic_int res[NF];              /* 1 until reported */
	atomic_int status[NF];
	atomic_int batch_done;
	atomic_int batch_result;
	atomic_uint_fast64_t bytes_seen; /* largest bytes_done in progress */
	pthread_mutex_t mu;              /* for the FAIL_SIGNAL wakeup */
	pthread_cond_t cv;
	int failed_seen;
};

static void genrec_init(struct genrec *g, sstf_engine *eng, unsigned iter,
                        enum fail_action fa)
{
	memset(g, 0, sizeof(*g));
	g->eng = eng;
	g->iter = iter;
	g->on_fail = fa;
	for (size_t i = 0; i < NF; i++)
		atomic_init(&g->res[i], 1);
	pthread_mutex_init(&g->mu, NULL);
	pthread_cond_init(&g->cv, NULL);
}

static void genrec_destroy(struct genrec *g)
{
	pthread_mutex_destroy(&g->mu);
	pthread_cond_destroy(&g->cv);
}

static void enter(struct genrec *g, uint64_t gen, const char *what)
{
	uint_fast64_t want = 0;
	if (!atomic_compare_exchange_strong(&g->seen_gen, &want, gen) && want != gen)
		violation("iter %u: %s with gen %llu, earlier %llu", g->iter, what,
		          (unsigned long long)gen, (unsigned long long)want);
	if (atomic_load(&g->cancel_returned))
		violation("iter %u: %s of gen %llu after sstf_cancel returned", g->iter, what,
		          (unsigned long long)gen);
	if (atomic_load(&g->batch_done))
		violation("iter %u: %s of gen %llu after its on_batch_done", g->iter, what,
		          (unsigned long long)gen);
	if (atomic_fetch_add(&g->in_callback, 1) != 0)
		violation("iter %u: two callbacks of gen %llu at once", g->iter,
		          (unsigned long long)gen);
}

static void leave(struct genrec *g, uint64_t gen, const char *what)
{
	atomic_fetch_sub(&g->in_callback, 1);
	if (atomic_load(&g->cancel_returned))
		violation("iter %u: %s of gen %llu still running when sstf_cancel returned",
		          g->iter, what, (unsigned long long)gen);
}

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	struct genrec *g = user;
	enter(g, gen, "on_file_done");
	if (atomic_load(&g->cancelled_in_cb))
		violation("iter %u: on_file_done after cancel from a callback", g->iter);
	if (res->index >= NF) {
		violation("iter %u: file-done index %zu", g->iter, res->index);
	} else {
		if (atomic_exchange(&g->res[res->index], res->result) != 1)
			violation("iter %u: file %zu reported twice", g->iter, res->index);
		atomic_store(&g->status[res->index], res->http_status);
		if (!res->name || strcmp(res->name, ds.files[res->index].name) != 0)
			violation("iter %u: file %zu reported as '%.64s'", g->iter, res->index,
			          res->name ? res->name : "(null)");
	}
	atomic_fetch_add(&g->file_done, 1);
	if (res->result == 0)
		atomic_fetch_add(&g->file_ok, 1);
	if (res->streams > 1)
		atomic_fetch_add(&split_files, 1);
	if (res->result != 0 && g->on_fail == FAIL_SIGNAL) {
		pthread_mutex_lock(&g->mu);
		g->failed_seen = 1;
		pthread_cond_signal(&g->cv);
		pthread_mutex_unlock(&g->mu);
	}
	if (res->result != 0 && g->on_fail == FAIL_CANCEL_CB &&
	    !atomic_load(&g->cancelled_in_cb)) {
		atomic_store(&g->cb_cancel_ret, sstf_cancel(g->eng, gen));
		atomic_store(&g->cancelled_in_cb, 1);
	}
	leave(g, gen, "on_file_done");
}

static void on_batch(void *user, uint64_t gen, int result)
{
	struct genrec *g = user;
	enter(g, gen, "on_batch_done");
	atomic_store(&g->batch_result, result);
	atomic_fetch_add(&g->batch_done, 1);
	/* leave() without the batch-done check: this is the last one. */
	atomic_fetch_sub(&g->in_callback, 1);
	if (atomic_load(&g->cancel_returned))
		violation("iter %u: on_batch_done still running when sstf_cancel returned",
		          g->iter);
	/* Wake a waiter that expected a failure which never came. */
	pthread_mutex_lock(&g->mu);
	pthread_cond_signal(&g->cv);
	pthread_mutex_unlock(&g->mu);
}

static void on_prog(void *user, uint64_t gen, const struct sstf_progress *p)
{
	struct genrec *g = user;
	enter(g, gen, "on_progress");
	if (atomic_load(&g->cancelled_in_cb))
		violation("iter %u: on_progress after cancel from a callback", g->iter);
	if (p->bytes_done > p->bytes_total || p->files_total != NF)
		violation("iter %u: progress %llu/%llu bytes, %llu files", g->iter,
		          (unsigned long long)p->bytes_done, (unsigned long long)p->bytes_total,
		          (unsigned long long)p->files_total);
	if (p->bytes_done > atomic_load(&g->bytes_seen))
		atomic_store(&g->bytes_seen, p->bytes_done);
	leave(g, gen, "on_progress");
}

static void assert_no_violations(void)
{
	pthread_mutex_lock(&vmu);
	cr_assert_eq(atomic_load(&violations), 0, "%u violation(s); first: %s",
	             atomic_load(&violations), first_violation);
	pthread_mutex_unlock(&vmu);
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static uint64_t submit(sstf_engine *eng, struct sstf_file *files, struct genrec *g)
{
	char errbuf[256] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = files,
		.nfiles = NF,
		.on_file_done = on_file,
		.on_batch_done = on_batch,
		.on_progress = on_prog,
		.user = g,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "iter %u: sstf_submit: %s (%s)", g->iter, sstf_strerror(err),
	             errbuf);
	cr_assert_neq(gen, 0);
	return gen;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { 0, (long)us * 1000L };
	nanosleep(&ts, NULL);
}

static void expect_no_temps(unsigned iter)
{
	char first[PATH_MAX];
	int n = ds_count_temps(dest, first, sizeof(first));
	cr_assert_eq(n, 0, "iter %u: %d temporary file(s) left, e.g. %s", iter, n, first);
}

/*
 * After a cancel: whatever is under a final name is the complete, verified
 * file (published files stay, nothing half-written), nothing else is in the
 * dest dir, and every file reported published is there.
 */
static void expect_dest_consistent(const struct genrec *g)
{
	size_t which[NF], n = 0;
	for (size_t i = 0; i < NF; i++) {
		char *p = ds_strfmt("%s/%s", dest, ds.files[i].name);
		cr_assert_not_null(p);
		if (ds_exists(p))
			which[n++] = i;
		else if (g && atomic_load(&g->res[i]) == 0)
			cr_assert_fail("iter %u: %s reported published but is missing", g->iter,
			               ds.files[i].name);
		free(p);
	}
	char why[PATH_MAX + 128];
	cr_assert_eq(ds_check_dest(&ds, dest, which, n, why, sizeof(why)), 0, "iter %u: %s",
	             g ? g->iter : 0, why);
}

/* Runs a generation to its end and checks it published every file exactly. */
static void expect_complete_generation(sstf_engine *eng, unsigned iter, struct genrec *g)
{
	struct sstf_file *files = ds_batch_new(&ds, org->base_url, DS_DIGEST_MIXED);
	cr_assert_not_null(files);
	genrec_init(g, eng, iter, FAIL_NOTHING);
	uint64_t gen = submit(eng, files, g);
	/* The metadata is the engine's own copy from here on. */
	ds_batch_free(files, NF, 1);
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_eq(res, 0, "iter %u: resubmitted generation: %d (%s)", iter, res,
	             sstf_strerror(res));
	cr_assert_eq(atomic_load(&g->batch_done), 1, "iter %u", iter);
	cr_assert_eq(atomic_load(&g->file_ok), NF, "iter %u: %d of %d files ok", iter,
	             atomic_load(&g->file_ok), NF);
	char why[PATH_MAX + 128];
	cr_assert_eq(ds_check_dest(&ds, dest, NULL, NF, why, sizeof(why)), 0, "iter %u: %s",
	             iter, why);
	expect_no_temps(iter);
}

/* ------------------------------------------------------------------------ */
/* Scenario 1: replica restart                                              */

enum cancel_when {
	CANCEL_AT_ONCE,     /* right after submit: nothing may have started */
	CANCEL_MID_BYTES,   /* some bytes written and hashed, not all */
	CANCEL_AFTER_FIRST, /* after the first file-done */
	CANCEL_WHEN_COUNT,
};

struct canceller {
	sstf_engine *eng;
	uint64_t gen;
	struct genrec *g;
	enum cancel_when when;
	int ret;
};

static void *canceller_main(void *arg)
{
	struct canceller *c = arg;
	struct genrec *g = c->g;
	for (unsigned spins = 0; c->when != CANCEL_AT_ONCE; spins++) {
		if (atomic_load(&g->batch_done))
			break; /* ended before the trigger: cancel is then a no-op */
		if (c->when == CANCEL_AFTER_FIRST && atomic_load(&g->file_done) > 0)
			break;
		if (c->when == CANCEL_MID_BYTES) {
			struct sstf_progress p;
			int err = sstf_progress(c->eng, c->gen, &p);
			if (err == 0 && p.bytes_done > 0)
				break;
		}
		sleep_us(spins < 1000 ? 50 : 1000);
	}
	c->ret = sstf_cancel(c->eng, c->gen);
	atomic_store(&g->cancel_returned, 1);
	return NULL;
}

struct restart_stats {
	unsigned in_flight; /* cancels that found the generation running */
	unsigned ended;     /* generations that had ended before the cancel */
};

static void replica_restart_once(sstf_engine *eng, unsigned iter, struct genrec *ga,
                                 struct genrec *gb, struct restart_stats *st)
{
	/* Even iterations start from an empty dir; odd ones find the previous
	 * generation's files, which the new one replaces. */
	if (iter % 2 == 0)
		cr_assert_eq(ds_empty_dir(dest), 0);

	struct sstf_file *files = ds_batch_new(&ds, org->base_url, DS_DIGEST_MIXED);
	cr_assert_not_null(files);
	genrec_init(ga, eng, iter, FAIL_NOTHING);
	uint64_t gen = submit(eng, files, ga);

	struct canceller c = { eng, gen, ga, (enum cancel_when)(iter % CANCEL_WHEN_COUNT), -1 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, canceller_main, &c), 0);
	cr_assert_eq(pthread_join(th, NULL), 0);

	cr_assert_eq(c.ret, 0, "iter %u: sstf_cancel: %d (%s)", iter, c.ret, sstf_strerror(c.ret));
	cr_assert_eq(atomic_load(&ga->batch_done), 1,
	             "iter %u: on_batch_done ran %d times before sstf_cancel returned", iter,
	             atomic_load(&ga->batch_done));
	int br = atomic_load(&ga->batch_result);
	if (br == -ECANCELED) {
		st->in_flight++;
	} else {
		cr_assert_eq(br, 0, "iter %u: cancelled generation ended with %d (%s)", iter, br,
		             sstf_strerror(br));
		cr_assert_eq(atomic_load(&ga->file_ok), NF, "iter %u", iter);
		st->ended++;
	}
	cr_assert_eq(sstf_wait(eng, gen, 0), br, "iter %u: sstf_wait disagrees", iter);
	expect_no_temps(iter);
	expect_dest_consistent(ga);
	assert_no_violations();

	/* What Pegasus did: clear the metadata right away. */
	ds_batch_free(files, NF, 1);

	/* The restarted replica asks for the same files again. */
	expect_complete_generation(eng, iter, gb);
	assert_no_violations();
}

static void replica_restart_cancel_from_other_thread_then_resubmit(void)
{
	unsigned n = iters();
	struct genrec *recs = calloc(2 * (size_t)n, sizeof(*recs));
	cr_assert_not_null(recs);
	struct restart_stats st = { 0, 0 };
	sstf_engine *shared = engine_new(1);
	for (unsigned i = 0; i < n; i++) {
		/* Every tenth iteration gets an engine of its own, created and
		 * freed around it; half of all iterations skip fsync. */
		int own = i % 10 == 9;
		sstf_engine *eng = own ? engine_new(i % 4 < 2) : shared;
		replica_restart_once(eng, i, &recs[2 * i], &recs[2 * i + 1], &st);
		if (own)
			sstf_engine_free(eng);
	}
	struct sstf_stats ss;
	cr_assert_eq(sstf_stats(shared, &ss), 0);
	engine_free_checked(shared);
	assert_no_violations();
	cr_log_info("replica restart: %u iterations, %u cancelled in flight, %u had ended, "
	            "%llu stale completions dropped", n, st.in_flight, st.ended,
	            (unsigned long long)ss.stale_completions);
	/* A loop whose cancels never met a running generation proved nothing. */
	cr_assert_gt(st.in_flight, 0, "no cancel found its generation in flight");
	for (unsigned i = 0; i < 2 * n; i++)
		genrec_destroy(&recs[i]);
	free(recs);
}

static void engine_free_with_generation_in_flight(void)
{
	unsigned n = iters() / 10 + 1;
	struct genrec *recs = calloc(n, sizeof(*recs));
	cr_assert_not_null(recs);
	for (unsigned i = 0; i < n; i++) {
		sstf_engine *eng = engine_new(i % 2);
		struct sstf_file *files = ds_batch_new(&ds, org->base_url, DS_DIGEST_MIXED);
		cr_assert_not_null(files);
		genrec_init(&recs[i], eng, i, FAIL_NOTHING);
		uint64_t gen = submit(eng, files, &recs[i]);
		for (unsigned spins = 0; spins < 100000 && !atomic_load(&recs[i].batch_done);
		     spins++) {
			struct sstf_progress p;
			if (sstf_progress(eng, gen, &p) == 0 && p.bytes_done > 0)
				break;
			sleep_us(50);
		}
		sstf_engine_free(eng);
		/* No callback after free returned: same flag as for cancel. */
		atomic_store(&recs[i].cancel_returned, 1);
		ds_batch_free(files, NF, 1);
		cr_assert_eq(atomic_load(&recs[i].batch_done), 1,
		             "iter %u: on_batch_done did not run before sstf_engine_free returned", i);
		int br = atomic_load(&recs[i].batch_result);
		cr_assert(br == -ECANCELED || br == 0, "iter %u: %d (%s)", i, br, sstf_strerror(br));
		expect_no_temps(i);
		expect_dest_consistent(&recs[i]);
		assert_no_violations();
		cr_assert_eq(ds_empty_dir(dest), 0);
	}
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
	for (unsigned i = 0; i < n; i++)
		genrec_destroy(&recs[i]);
	free(recs);
}

/* ------------------------------------------------------------------------ */
/* Scenario 2: a file missing on the origin                                 */

/* A batch with file `missing` pointed at a URL the origin answers 404. */
static struct sstf_file *batch_with_missing(size_t missing, unsigned iter)
{
	struct sstf_file *files = ds_batch_new(&ds, org->base_url, DS_DIGEST_MIXED);
	cr_assert_not_null(files);
	char *url = ds_strfmt("%s/gone-%u/%s", org->base_url, iter, ds.files[missing].name);
	cr_assert_eq(ds_set_str(&files[missing].url, url), 0);
	free(url);
	return files;
}

static void missing_file_main_thread_cancels_on_failure(void)
{
	unsigned n = iters();
	struct genrec *recs = calloc(n, sizeof(*recs));
	cr_assert_not_null(recs);
	unsigned in_flight = 0;
	sstf_engine *shared = engine_new(1);
	for (unsigned i = 0; i < n; i++) {
		int own = i % 10 == 9;
		sstf_engine *eng = own ? engine_new(0) : shared;
		struct genrec *g = &recs[i];
		/* Early in the batch, so the rest is still downloading. */
		size_t missing = i % 4;
		cr_assert_eq(ds_empty_dir(dest), 0);
		struct sstf_file *files = batch_with_missing(missing, i);
		genrec_init(g, eng, i, FAIL_SIGNAL);
		uint64_t gen = submit(eng, files, g);

		/* The meta server learns of the failure... */
		pthread_mutex_lock(&g->mu);
		while (!g->failed_seen && !atomic_load(&g->batch_done))
			pthread_cond_wait(&g->cv, &g->mu);
		pthread_mutex_unlock(&g->mu);
		/* ...and clears the bulk-load state: cancel, then free. */
		int r = sstf_cancel(eng, gen);
		atomic_store(&g->cancel_returned, 1);
		ds_batch_free(files, NF, 1);

		cr_assert_eq(r, 0, "iter %u: sstf_cancel: %d (%s)", i, r, sstf_strerror(r));
		cr_assert_eq(atomic_load(&g->res[missing]), -SSTF_EHTTP,
		             "iter %u: missing file gave %d", i, atomic_load(&g->res[missing]));
		cr_assert_eq(atomic_load(&g->status[missing]), 404, "iter %u", i);
		cr_assert_eq(atomic_load(&g->batch_done), 1, "iter %u", i);
		int br = atomic_load(&g->batch_result);
		cr_assert(br == -ECANCELED || br == -SSTF_EHTTP, "iter %u: batch result %d (%s)",
		          i, br, sstf_strerror(br));
		in_flight += br == -ECANCELED;
		cr_assert_eq(sstf_wait(eng, gen, 0), br, "iter %u", i);
		expect_no_temps(i);
		expect_dest_consistent(g);
		assert_no_violations();
		if (own)
			sstf_engine_free(eng);
	}
	engine_free_checked(shared);
	assert_no_violations();
	cr_log_info("missing file: %u iterations, %u cancelled in flight", n, in_flight);
	cr_assert_gt(in_flight, 0, "no cancel found its generation in flight");
	for (unsigned i = 0; i < n; i++)
		genrec_destroy(&recs[i]);
	free(recs);
}

static void missing_file_cancel_from_callback_gives_einprogress(void)
{
	unsigned n = iters();
	struct genrec *recs = calloc(n, sizeof(*recs));
	cr_assert_not_null(recs);
	sstf_engine *shared = engine_new(0);
	for (unsigned i = 0; i < n; i++) {
		int own = i % 10 == 9;
		sstf_engine *eng = own ? engine_new(1) : shared;
		struct genrec *g = &recs[i];
		size_t missing = i % 4;
		cr_assert_eq(ds_empty_dir(dest), 0);
		struct sstf_file *files = batch_with_missing(missing, i);
		genrec_init(g, eng, i, FAIL_CANCEL_CB);
		uint64_t gen = submit(eng, files, g);
		/* Pegasus frees its metadata at once; the engine has its copy. */
		ds_batch_free(files, NF, 1);

		int res = sstf_wait(eng, gen, WAIT_MS);
		cr_assert_eq(atomic_load(&g->cancelled_in_cb), 1, "iter %u: no failure seen", i);
		cr_assert_eq(atomic_load(&g->cb_cancel_ret), -EINPROGRESS,
		             "iter %u: sstf_cancel in a callback gave %d (%s)", i,
		             atomic_load(&g->cb_cancel_ret),
		             sstf_strerror(atomic_load(&g->cb_cancel_ret)));
		cr_assert_eq(res, -ECANCELED, "iter %u: sstf_wait gave %d (%s)", i, res,
		             sstf_strerror(res));
		cr_assert_eq(atomic_load(&g->batch_done), 1, "iter %u", i);
		cr_assert_eq(atomic_load(&g->batch_result), -ECANCELED, "iter %u: %d", i,
		             atomic_load(&g->batch_result));
		cr_assert_eq(atomic_load(&g->res[missing]), -SSTF_EHTTP, "iter %u", i);
		/* The generation is over: a cancel now changes nothing. */
		cr_assert_eq(sstf_cancel(eng, gen), 0, "iter %u", i);
		atomic_store(&g->cancel_returned, 1);
		expect_no_temps(i);
		expect_dest_consistent(g);
		assert_no_violations();
		if (own)
			sstf_engine_free(eng);
	}
	engine_free_checked(shared);
	assert_no_violations();
	for (unsigned i = 0; i < n; i++)
		genrec_destroy(&recs[i]);
	free(recs);
}

/*
 * Each scenario as Pegasus meets it, then again with every file split over
 * four ranged streams (split_min 256 KiB): cancel, drain and free must hold
 * for every stream of a file, not only for its first.
 */
#define SCENARIO(name, reports)                                                            \
	Test(pegasus, name, .init = fixture_init, .fini = fixture_fini)                    \
	{                                                                                  \
		name();                                                                    \
	}                                                                                  \
	Test(pegasus, name##_split, .init = fixture_init, .fini = fixture_fini)            \
	{                                                                                  \
		split_streams = 4;                                                         \
		name();                                                                    \
		if (reports)                                                               \
			cr_assert_gt(atomic_load(&split_files), 0,                         \
			             "no file ran on several streams");                    \
	}

/* `reports`: the scenario sees files end, so the split must show in their
 * results (a free in flight silences every file). */
SCENARIO(replica_restart_cancel_from_other_thread_then_resubmit, 1)
SCENARIO(engine_free_with_generation_in_flight, 0)
SCENARIO(missing_file_main_thread_cancels_on_failure, 1)
SCENARIO(missing_file_cancel_from_callback_gives_einprogress, 1)
