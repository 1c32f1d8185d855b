/*
 * Description: fault handling of the engine, end to end, against the
 * fault-injecting origin (support/faultorigin.c). A flipped byte makes the
 * digest mismatch: the file is fetched again from byte 0, once, and a
 * second mismatch fails it. A body cut by a reset or a clean close is
 * resumed with range requests that keep the hash state. 503 is retried up
 * to max_retries; 404 never is. A stall trips the low-speed limit and is
 * retried. The checkpoints the engine writes while a large file streams in
 * survive a crash and are resumed from; a cancelled or failed file keeps
 * nothing.
 *
 * Every test counts the origin's requests for the path, reads the file's
 * report (result, retries, status, bytes, resumed_from) and checks what
 * the destination holds: the file byte-identical and nothing else, or
 * nothing at all. Timeouts are hang guards; nothing is measured.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
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
#define BUF (64 * KIB)            /* the engines' buf_size */
#define WAIT_MS 120000            /* hang guard of sstf_wait */
#define GUARD_NS (120ull * 1000000000ull) /* hang guard of the polls */
#define POLL_US 5000
/* The token of the writer the crash tests pretend died. */
#define CRASH_TOKEN "00000000deadbeef"

/* The fixture's files, by index; names are "000000.sst", "000001.sst". */
enum { F_SMALL, F_BIG, NFILES };
/* Odd sizes: no fault offset or buffer boundary falls on the end. */
static const uint64_t sizes[NFILES] = {MIB + 12345, 6 * MIB + 4321};

static struct dataset ds;
static struct fault_origin *fo;
static char *work, *dest, *stage;

static void setup(void)
{
	cr_assert_eq(ds_create(&ds, "faults-origin", NFILES, NULL, sizes, 0xfa175), 0);
	int err = fault_origin_start(ds.dir, &fo);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
	cr_assert_eq(ds_mkdtemp("faults", &work), 0);
	dest = ds_strfmt("%s/dest", work);
	stage = ds_strfmt("%s/" SSTF__STAGE_DIR, dest);
	cr_assert(dest && stage);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void teardown(void)
{
	fault_origin_stop(fo);
	fo = NULL;
	ds_destroy(&ds);
	if (work)
		ds_rmtree(work);
	free(work);
	free(dest);
	free(stage);
	work = dest = stage = NULL;
}

TestSuite(faults, .init = setup, .fini = teardown, .timeout = 600);

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------ */
/* The origin                                                               */

/* The decoded URL path the origin counts file i's requests under. */
static char *url_path(size_t i)
{
	char *p = ds_strfmt("/%s", ds.files[i].name);
	cr_assert_not_null(p);
	return p;
}

/* Gives file i's path the fault f and restarts its request count. */
static void set_fault(size_t i, struct fault f)
{
	char *p = url_path(i);
	int err = fault_origin_set(fo, p, &f);
	cr_assert_eq(err, 0, "fault_origin_set %s: %s", p, strerror(-err));
	free(p);
}

static unsigned requests(size_t i)
{
	char *p = url_path(i);
	unsigned n = fault_origin_requests(fo, p);
	free(p);
	return n;
}

/* ------------------------------------------------------------------------ */
/* Engines, batches and what they report                                    */

/* Small engines: two transfers, 64 KiB buffers, 8 of them. */
static struct sstf_config small_config(void)
{
	struct sstf_config c;
	memset(&c, 0, sizeof(c));
	c.max_transfers = 2;
	c.buf_size = BUF;
	c.mem_limit = 8 * BUF;
	return c;
}

static sstf_engine *engine_new(const struct sstf_config *cfg)
{
	sstf_engine *eng = NULL;
	int err = test_engine_new(cfg, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	return eng;
}

static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
}

/* What one generation of one file reported. */
struct report {
	unsigned file_calls;
	int result; /* 1: never reported */
	int http_status;
	uint64_t bytes;
	uint64_t resumed_from;
	unsigned retries;
	int skipped;
	char detail[160];
	unsigned batch_calls;
	int batch_result; /* 1: never reported */
};

/* A report as the callbacks fill it in, on the loop thread. */
struct rec {
	pthread_mutex_t mu;
	struct report rep;
};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->rep.result = 1;
	r->rep.batch_result = 1;
}

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	r->rep.file_calls++;
	r->rep.result = res->result;
	r->rep.http_status = res->http_status;
	r->rep.bytes = res->bytes;
	r->rep.resumed_from = res->resumed_from;
	r->rep.retries = res->retries;
	r->rep.skipped = res->skipped;
	snprintf(r->rep.detail, sizeof(r->rep.detail), "%s", res->detail);
	pthread_mutex_unlock(&r->mu);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	r->rep.batch_calls++;
	r->rep.batch_result = result;
	pthread_mutex_unlock(&r->mu);
}

/* A copy of r's report taken under its lock. */
static struct report rec_get(struct rec *r)
{
	pthread_mutex_lock(&r->mu);
	struct report out = r->rep;
	pthread_mutex_unlock(&r->mu);
	return out;
}

/* Submits file i alone into dest, digest of `kind`; returns the id. The
 * batch is freed (and poisoned) at once: the engine keeps its own copy. */
static uint64_t submit(sstf_engine *eng, size_t i, enum sstf_digest_kind kind, struct rec *r)
{
	struct sstf_file *f = ds_batch_new(&ds, fault_origin_url(fo), (int)kind);
	cr_assert_not_null(f);
	char errbuf[512] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = &f[i],
		.nfiles = 1,
		.on_file_done = on_file,
		.on_batch_done = on_batch,
		.user = r,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	ds_batch_free(f, ds.n, 1);
	return gen;
}

static int wait_gen(sstf_engine *eng, uint64_t gen)
{
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT, "generation %" PRIu64 " did not end", gen);
	return res;
}

/*
 * Fetches file i alone and returns the batch result, with the file's report
 * in *out. Checks what every ended generation owes: one file report and one
 * batch report, agreeing with each other and with sstf_wait.
 */
static int fetch(sstf_engine *eng, size_t i, enum sstf_digest_kind kind, struct report *out)
{
	struct rec r;
	rec_init(&r);
	int res = wait_gen(eng, submit(eng, i, kind, &r));
	*out = rec_get(&r);
	pthread_mutex_destroy(&r.mu);
	cr_expect_eq(out->file_calls, 1, "%u file reports", out->file_calls);
	cr_expect_eq(out->batch_calls, 1, "%u batch reports", out->batch_calls);
	cr_expect_eq(out->batch_result, res, "on_batch_done said %d, sstf_wait %d",
	             out->batch_result, res);
	cr_expect_eq(out->result, res, "the file's result %d, the batch's %d", out->result, res);
	cr_expect_eq(out->skipped, 0);
	return res;
}

/* The file's retries, and the engine's count of them (one file per engine). */
static void expect_retries(sstf_engine *eng, const struct report *r, unsigned n)
{
	struct sstf_stats st;
	cr_assert_eq(sstf_stats(eng, &st), 0);
	cr_expect_eq(r->retries, n, "the file took %u retries, expected %u", r->retries, n);
	cr_expect_eq(st.retries, n, "the engine counted %" PRIu64 " retries, expected %u",
	             st.retries, n);
}

/* No staging directory and no temporary anywhere under dest. */
static void expect_no_temps(void)
{
	char first[PATH_MAX];
	int n = ds_count_temps(dest, first, sizeof(first));
	cr_expect_eq(n, 0, "%d temporary entr(ies) left in %s, e.g. %s", n, dest, first);
	cr_expect(!ds_exists(stage), "the staging directory %s stayed", stage);
}

/* dest holds file i, byte-identical to the origin's, and nothing else. */
static void expect_only(size_t i)
{
	char why[512];
	cr_expect_eq(ds_check_dest(&ds, dest, &i, 1, why, sizeof(why)), 0, "%s", why);
	expect_no_temps();
}

/* dest holds nothing: a failed file is published under no name. */
static void expect_empty(void)
{
	char why[512];
	cr_expect_eq(ds_check_dest(&ds, dest, NULL, 0, why, sizeof(why)), 0, "%s", why);
	expect_no_temps();
}

/* ------------------------------------------------------------------------ */
/* Flipped bytes: the digest catches them, one refetch from byte 0          */

Test(faults, flipped_byte_on_first_request_is_refetched_once_and_verifies)
{
	set_fault(F_SMALL, (struct fault){.kind = FAULT_FLIP, .at = 700001, .first_k = 1});
	struct sstf_config cfg = small_config();
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 1);
	cr_expect_eq(requests(F_SMALL), 2, "%u requests", requests(F_SMALL));
	/* The second attempt fetched all of it, from byte 0: no range. */
	cr_expect_eq(r.bytes, sizes[F_SMALL], "%" PRIu64 " bytes", r.bytes);
	cr_expect_eq(r.resumed_from, 0);
	cr_expect_eq(r.http_status, 200, "status %d", r.http_status);
	expect_only(F_SMALL);
	engine_free_checked(eng);
}

Test(faults, flipped_byte_on_every_request_fails_after_one_refetch)
{
	set_fault(F_SMALL, (struct fault){.kind = FAULT_FLIP, .at = 3, .first_k = 0});
	struct sstf_config cfg = small_config(); /* max_retries: 3 */
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH128, &r);
	cr_expect_eq(res, -SSTF_ECHECKSUM, "%d: %s", res, sstf_strerror(res));
	/* Retries were left, but a second mismatch is final. */
	expect_retries(eng, &r, 1);
	cr_expect_eq(requests(F_SMALL), 2, "%u requests", requests(F_SMALL));
	cr_expect(strstr(r.detail, "digest") != NULL, "detail: '%s'", r.detail);
	expect_empty();
	engine_free_checked(eng);
}

Test(faults, flipped_byte_without_retries_fails_without_refetch)
{
	set_fault(F_SMALL, (struct fault){.kind = FAULT_FLIP, .at = 700001, .first_k = 1});
	struct sstf_config cfg = small_config();
	cfg.max_retries = -1; /* none */
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, -SSTF_ECHECKSUM, "%d: %s", res, sstf_strerror(res));
	expect_retries(eng, &r, 0);
	cr_expect_eq(requests(F_SMALL), 1, "%u requests", requests(F_SMALL));
	cr_expect(strstr(r.detail, "digest") != NULL, "detail: '%s'", r.detail);
	expect_empty();
	engine_free_checked(eng);
}

Test(faults, flipped_byte_in_a_checkpointed_file_is_refetched_from_byte_zero)
{
	/* Checkpoints are taken at 1, 2, ... MiB as the file streams in; the
	 * refetch after the mismatch starts from byte 0 all the same, not
	 * from one of them (bytes before the flip were right, but nothing
	 * tells the engine which). */
	set_fault(F_BIG, (struct fault){.kind = FAULT_FLIP, .at = 5 * MIB + 3, .first_k = 1});
	struct sstf_config cfg = small_config();
	cfg.checkpoint_bytes = MIB;
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_BIG, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 1);
	cr_expect_eq(requests(F_BIG), 2, "%u requests", requests(F_BIG));
	cr_expect_eq(r.resumed_from, 0);
	cr_expect_eq(r.bytes, sizes[F_BIG], "%" PRIu64 " bytes", r.bytes);
	cr_expect_eq(r.http_status, 200, "status %d", r.http_status);
	expect_only(F_BIG);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Cut bodies: ranged resumes that keep the hash state                      */

/*
 * The first two requests are cut after `at` body bytes (RESET or CLOSE).
 * Each retry asks for the rest with a range, so the third request is
 * answered 206, and the bytes received add up to the size exactly: had a
 * retry started over, the engine would have received more than that.
 */
static void cut_twice(enum fault_kind kind, uint64_t at)
{
	set_fault(F_SMALL, (struct fault){.kind = kind, .at = at, .first_k = 2});
	struct sstf_config cfg = small_config(); /* max_retries: 3 */
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 2);
	cr_expect_eq(requests(F_SMALL), 3, "%u requests", requests(F_SMALL));
	cr_expect_eq(r.bytes, sizes[F_SMALL], "%" PRIu64 " bytes", r.bytes);
	cr_expect_eq(r.resumed_from, 0, "a retry is not a resumed partial");
	cr_expect_eq(r.http_status, 206, "the last request was not ranged: status %d",
	             r.http_status);
	expect_only(F_SMALL);
	engine_free_checked(eng);
}

Test(faults, reset_mid_body_twice_is_resumed_by_ranges_and_verifies)
{
	cut_twice(FAULT_RESET, 300007); /* inside the 5th buffer */
}

Test(faults, close_mid_body_twice_is_resumed_by_ranges_and_verifies)
{
	cut_twice(FAULT_CLOSE, 400009);
}

Test(faults, body_cut_on_every_request_completes_only_by_ranges)
{
	/* Every request ends after a third of the file (plus a byte): a
	 * fetcher that started over would never finish; ranged resumes
	 * finish on the third request, whose range holds less than that. */
	uint64_t at = sizes[F_SMALL] / 3 + 1;
	set_fault(F_SMALL, (struct fault){.kind = FAULT_CLOSE, .at = at, .first_k = 0});
	struct sstf_config cfg = small_config(); /* max_retries: 3 */
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 2);
	cr_expect_eq(requests(F_SMALL), 3, "%u requests", requests(F_SMALL));
	cr_expect_eq(r.bytes, sizes[F_SMALL], "%" PRIu64 " bytes", r.bytes);
	cr_expect_eq(r.http_status, 206, "status %d", r.http_status);
	expect_only(F_SMALL);
	engine_free_checked(eng);
}

Test(faults, reset_in_a_checkpointed_file_is_resumed_and_verifies)
{
	/* The cut falls after checkpoints were taken; the retry continues at
	 * the first byte not received, and checkpoints go on after it. */
	set_fault(F_BIG, (struct fault){.kind = FAULT_RESET, .at = 3 * MIB + 777, .first_k = 1});
	struct sstf_config cfg = small_config();
	cfg.checkpoint_bytes = MIB;
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_BIG, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 1);
	cr_expect_eq(requests(F_BIG), 2, "%u requests", requests(F_BIG));
	cr_expect_eq(r.bytes, sizes[F_BIG], "%" PRIu64 " bytes", r.bytes);
	cr_expect_eq(r.http_status, 206, "status %d", r.http_status);
	expect_only(F_BIG);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* HTTP errors                                                              */

Test(faults, http_503_twice_is_retried_and_verifies)
{
	set_fault(F_SMALL, (struct fault){.kind = FAULT_503, .first_k = 2});
	struct sstf_config cfg = small_config(); /* max_retries: 3 */
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 2);
	cr_expect_eq(requests(F_SMALL), 3, "%u requests", requests(F_SMALL));
	/* No body byte came with the 503s: the third request is whole. */
	cr_expect_eq(r.http_status, 200, "status %d", r.http_status);
	cr_expect_eq(r.bytes, sizes[F_SMALL], "%" PRIu64 " bytes", r.bytes);
	expect_only(F_SMALL);
	engine_free_checked(eng);
}

Test(faults, http_503_always_fails_with_ehttp_once_retries_run_out)
{
	set_fault(F_SMALL, (struct fault){.kind = FAULT_503, .first_k = 0, .retry_after_s = 1});
	struct sstf_config cfg = small_config();
	cfg.max_retries = 1;
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, -SSTF_EHTTP, "%d: %s", res, sstf_strerror(res));
	cr_expect_eq(r.http_status, 503, "status %d", r.http_status);
	/* The detail says the budget ran out, not just the last status. */
	cr_expect_str_eq(r.detail, "HTTP 503 (gave up after 1 retry)");
	expect_retries(eng, &r, 1);
	cr_expect_eq(requests(F_SMALL), 2, "%u requests", requests(F_SMALL));
	cr_expect_eq(r.bytes, 0, "%" PRIu64 " bytes", r.bytes);
	expect_empty();
	engine_free_checked(eng);
}

Test(faults, http_404_fails_at_once_without_retry)
{
	/* The file is there; the origin says it is not. */
	set_fault(F_SMALL, (struct fault){.kind = FAULT_404, .first_k = 0});
	struct sstf_config cfg = small_config(); /* max_retries: 3, unused */
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, -SSTF_EHTTP, "%d: %s", res, sstf_strerror(res));
	cr_expect_eq(r.http_status, 404, "status %d", r.http_status);
	cr_expect_str_eq(r.detail, "HTTP 404");
	expect_retries(eng, &r, 0);
	cr_expect_eq(requests(F_SMALL), 1, "%u requests", requests(F_SMALL));
	expect_empty();
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* A stall                                                                  */

Test(faults, stall_trips_the_low_speed_limit_and_is_resumed)
{
	/* The origin sends 300 KB and then nothing, until the client gives
	 * up: under 256 KiB/s for a second. The retry resumes at the first
	 * byte not received and runs at loopback speed. */
	set_fault(F_SMALL, (struct fault){.kind = FAULT_STALL, .at = 300007, .first_k = 1});
	struct sstf_config cfg = small_config();
	cfg.low_speed_bytes = 256 * KIB;
	cfg.low_speed_time_s = 1;
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_SMALL, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	expect_retries(eng, &r, 1);
	cr_expect_eq(requests(F_SMALL), 2, "%u requests", requests(F_SMALL));
	cr_expect_eq(r.bytes, sizes[F_SMALL], "%" PRIu64 " bytes", r.bytes);
	cr_expect_eq(r.http_status, 206, "status %d", r.http_status);
	expect_only(F_SMALL);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Checkpoints the engine writes, a crash, a cancel                         */

/* The checkpoint tests need user xattrs where dest lives. */
static void require_user_xattrs(void)
{
	char *probe = ds_strfmt("%s/xattr-probe", work);
	cr_assert_not_null(probe);
	cr_assert_eq(ds_write_file(probe, "", 0), 0);
	int r = setxattr(probe, "user.sstfetch.probe", "1", 1, 0);
	int err = errno;
	unlink(probe);
	free(probe);
	if (r != 0 && (err == ENOTSUP || err == EOPNOTSUPP))
		cr_skip_test("no user xattrs in %s", work);
	cr_assert_eq(r, 0, "setxattr: %s", strerror(err));
}

/* File i as the engine keeps it, for sstf__partial_fits(). */
static struct sstf__entry file_meta(size_t i)
{
	struct sstf__entry f = {.name = ds.files[i].name, .size = ds.files[i].size,
	                       .kind = SSTF_DIGEST_XXH3};
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, ds.files[i].xxh3, &f.digest), 0);
	return f;
}

/* The engine's temporary file in the staging directory: the one "*.tmp"
 * the test did not plant. False when there is none (yet). */
static bool engine_tmp(char *out, size_t len)
{
	DIR *d = opendir(stage);
	if (!d)
		return false;
	bool found = false;
	for (;;) {
		struct dirent *de = readdir(d);
		if (!de)
			break;
		size_t n = strlen(de->d_name);
		if (n > 4 && strcmp(de->d_name + n - 4, ".tmp") == 0 &&
		    strncmp(de->d_name, CRASH_TOKEN, strlen(CRASH_TOKEN)) != 0) {
			snprintf(out, len, "%s/%s", stage, de->d_name);
			found = true;
			break;
		}
	}
	closedir(d);
	return found;
}

/* Reads path's checkpoint into *p; false when it has none (yet). A record
 * that is there but does not read back (torn, wrong) fails the test. */
static bool checkpoint_of(const char *path, struct sstf__partial *p)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false; /* not made yet, or just published or removed */
	int r = sstf__record_partial_get(fd, p);
	close(fd);
	cr_assert(r == 0 || r == -ENODATA, "the checkpoint on %s does not read back: %s", path,
	          strerror(-r));
	return r == 0;
}

/*
 * Polls, under a hang guard, until the one running file of `gen` has
 * `written` bytes on disk and its temporary file carries a checkpoint.
 * Returns the temporary's path in tmp and the checkpoint in *p. Fails when
 * the file ends first.
 */
static void wait_checkpoint(sstf_engine *eng, uint64_t gen, uint64_t written, char *tmp,
                            size_t len, struct sstf__partial *p)
{
	uint64_t deadline = now_ns() + GUARD_NS;
	for (;;) {
		struct sstf_progress pr;
		cr_assert_eq(sstf_progress(eng, gen, &pr), 0);
		cr_assert_eq(pr.files_done + pr.files_failed, 0,
		             "the file ended before a checkpoint was seen (failed: %" PRIu64 ")",
		             pr.files_failed);
		if (pr.bytes_done >= written && engine_tmp(tmp, len) && checkpoint_of(tmp, p))
			return;
		cr_assert_lt(now_ns(), deadline,
		             "no checkpoint after %llu s: %" PRIu64 " bytes written, temporary %s",
		             GUARD_NS / 1000000000ull, pr.bytes_done,
		             engine_tmp(tmp, len) ? tmp : "(none)");
		usleep(POLL_US);
	}
}

/*
 * Leaves in the staging directory what a writer killed right now would
 * leave, under the dead writer's token CRASH_TOKEN: a copy of the running
 * temporary file `tmp`, bytes and checkpoint record, and that writer's
 * lock file, which nobody holds. The record is read before the bytes:
 * bytes below a checkpoint are never written again, so the copy holds all
 * of the record's bytes even while the engine writes on past them (and the
 * bytes past it, which a resume must not trust). Returns the checkpoint
 * as the copy carries it.
 */
static struct sstf__partial plant_crashed_copy(const char *tmp)
{
	uint8_t rec[8192];
	int sfd = open(tmp, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(sfd, 0, "open %s: %s", tmp, strerror(errno));
	ssize_t rlen = fgetxattr(sfd, SSTF__XATTR_PARTIAL, rec, sizeof(rec));
	cr_assert_gt(rlen, 0, "fgetxattr %s: %s", tmp, strerror(errno));

	char *copy = ds_strfmt("%s/" CRASH_TOKEN "-0.tmp", stage);
	cr_assert_not_null(copy);
	int dfd = open(copy, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	cr_assert_geq(dfd, 0, "open %s: %s", copy, strerror(errno));
	uint8_t *buf = malloc(BUF);
	cr_assert_not_null(buf);
	uint64_t off = 0;
	for (;;) {
		ssize_t n = pread(sfd, buf, BUF, (off_t)off);
		cr_assert_geq(n, 0, "read %s: %s", tmp, strerror(errno));
		if (n == 0)
			break;
		cr_assert_eq(pwrite(dfd, buf, (size_t)n, (off_t)off), n, "write %s", copy);
		off += (uint64_t)n;
	}
	free(buf);
	cr_assert_eq(fsetxattr(dfd, SSTF__XATTR_PARTIAL, rec, (size_t)rlen, 0), 0,
	             "fsetxattr %s: %s", copy, strerror(errno));
	struct sstf__partial p;
	int r = sstf__record_partial_get(dfd, &p);
	cr_assert_eq(r, 0, "the copied checkpoint does not read back: %s", strerror(-r));
	cr_assert_geq(off, p.key.offset, "the copy holds %" PRIu64 " bytes, its checkpoint %" PRIu64,
	              off, p.key.offset);
	close(dfd);
	close(sfd);
	free(copy);

	char *lock = ds_strfmt("%s/" CRASH_TOKEN ".lock", stage);
	cr_assert_not_null(lock);
	cr_assert_eq(ds_write_file(lock, "", 0), 0);
	free(lock);
	return p;
}

/* The lock file of the writer whose temporary is tmp ("STAGE/TOKEN-I.tmp"). */
static char *lock_of(const char *tmp)
{
	const char *base = strrchr(tmp, '/') + 1;
	char *lock = ds_strfmt("%s/%.16s.lock", stage, base);
	cr_assert_not_null(lock);
	return lock;
}

/*
 * `ring_calls`: the checkpoint records go through the ring where the kernel
 * has IORING_OP_FSETXATTR; false: the loop sets them itself, as on kernels
 * without it (sstf__test_ring_calls_off).
 */
static void checkpoint_crash_case(bool ring_calls)
{
	require_user_xattrs();
	sstf__test_ring_calls_off = !ring_calls;
	/* 6 MiB with a checkpoint every MiB; the origin stalls after 4.5 MiB
	 * and a bit, so checkpoints up to 4 MiB can be taken, and the
	 * transfer then waits: the low-speed limit is an hour. */
	const uint64_t stall_at = 4 * MIB + 512 * KIB + 777;
	set_fault(F_BIG, (struct fault){.kind = FAULT_STALL, .at = stall_at, .first_k = 1});
	struct sstf_config cfg = small_config();
	cfg.checkpoint_bytes = MIB;
	cfg.low_speed_bytes = 1;
	cfg.low_speed_time_s = 3600;
	sstf_engine *a = engine_new(&cfg);
	struct rec ra;
	rec_init(&ra);
	uint64_t gen = submit(a, F_BIG, SSTF_DIGEST_XXH3, &ra);

	/* Every full buffer before the stall written, and a checkpoint on the
	 * temporary: the engine's, read the way the next run reads it. */
	char tmp[PATH_MAX];
	struct sstf__partial seen;
	wait_checkpoint(a, gen, stall_at / BUF * BUF, tmp, sizeof(tmp), &seen);
	struct sstf__partial p = plant_crashed_copy(tmp);
	struct sstf__entry f = file_meta(F_BIG);
	cr_expect(sstf__partial_fits(&p.key, &f, sstf__name_hash(f.name), true),
	          "the checkpoint (offset %" PRIu64 ", size %" PRIu64 ") is not this file's, "
	          "or cannot be resumed with O_DIRECT",
	          p.key.offset, p.key.size);
	cr_expect_eq(p.key.offset % BUF, 0, "checkpoint at %" PRIu64 ": not at a buffer's end",
	             p.key.offset);
	cr_expect_geq(p.key.offset, MIB, "checkpoint at %" PRIu64 ": before checkpoint_bytes",
	              p.key.offset);
	cr_expect_leq(p.key.offset, stall_at, "checkpoint at %" PRIu64 ": past the %" PRIu64
	              " bytes served", p.key.offset, stall_at);
	cr_expect_geq(p.key.offset, seen.key.offset, "checkpoints went back: %" PRIu64 " after %" PRIu64,
	              p.key.offset, seen.key.offset);

	/* The running writer goes: its own files with it, the dead one's stay. */
	char *lock = lock_of(tmp);
	cr_assert(ds_exists(lock), "the running writer has no lock %s", lock);
	cr_assert_eq(sstf_cancel(a, gen), 0);
	cr_expect_eq(sstf_wait(a, gen, 0), -ECANCELED);
	cr_expect(!ds_exists(tmp), "the cancelled generation's temporary %s stayed", tmp);
	cr_expect(!ds_exists(lock), "the cancelled generation's lock %s stayed", lock);
	cr_expect(ds_exists(stage), "the staging directory went with the dead writer's files");
	struct report got = rec_get(&ra);
	cr_expect_eq(got.file_calls, 0, "a file report after the cancel");
	cr_expect_eq(got.batch_calls, 1);
	cr_expect_eq(got.batch_result, -ECANCELED, "batch result %d", got.batch_result);
	engine_free_checked(a);
	pthread_mutex_destroy(&ra.mu);
	free(lock);
	cr_expect_eq(requests(F_BIG), 1, "%u requests", requests(F_BIG));

	/* The next run, a new engine, finds the dead writer's partial and
	 * fetches only what lies past its checkpoint. */
	fault_origin_clear(fo);
	cfg.low_speed_bytes = 0;
	cfg.low_speed_time_s = 0;
	sstf_engine *b = engine_new(&cfg);
	struct report r;
	int res = fetch(b, F_BIG, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail);
	cr_expect_eq(r.resumed_from, p.key.offset, "resumed from %" PRIu64 ", checkpoint %" PRIu64,
	             r.resumed_from, p.key.offset);
	cr_expect_eq(r.bytes, sizes[F_BIG] - p.key.offset, "%" PRIu64 " bytes fetched, %" PRIu64
	             " missing", r.bytes, sizes[F_BIG] - p.key.offset);
	cr_expect_eq(r.http_status, 206, "status %d", r.http_status);
	expect_retries(b, &r, 0);
	cr_expect_eq(requests(F_BIG), 2, "%u requests", requests(F_BIG));
	expect_only(F_BIG);
	engine_free_checked(b);
	sstf__test_ring_calls_off = false;
}

Test(faults, engine_checkpoint_survives_a_crash_and_is_resumed)
{
	checkpoint_crash_case(true);
}

Test(faults, engine_checkpoint_set_by_the_loop_survives_a_crash_and_is_resumed)
{
	checkpoint_crash_case(false);
}

Test(faults, failed_checkpointed_file_keeps_no_temporary_and_no_partial)
{
	require_user_xattrs();
	/* Every request is reset after 3 MiB and more, past checkpoints at 1
	 * and 2 MiB; without retries the file fails on the first cut. */
	set_fault(F_BIG, (struct fault){.kind = FAULT_RESET, .at = 3 * MIB + 777, .first_k = 0});
	struct sstf_config cfg = small_config();
	cfg.checkpoint_bytes = MIB;
	cfg.max_retries = -1;
	sstf_engine *eng = engine_new(&cfg);
	struct report r;
	int res = fetch(eng, F_BIG, SSTF_DIGEST_XXH3, &r);
	cr_expect_eq(res, -SSTF_ETRANSFER, "%d: %s", res, sstf_strerror(res));
	cr_expect(r.detail[0] != '\0', "a failed transfer without a detail");
	cr_expect_eq(r.bytes, 3 * MIB + 777, "%" PRIu64 " bytes", r.bytes);
	expect_retries(eng, &r, 0);
	cr_expect_eq(requests(F_BIG), 1, "%u requests", requests(F_BIG));
	expect_empty();

	/* Nothing was kept to resume: the next run fetches the whole file. */
	fault_origin_clear(fo);
	struct report again;
	res = fetch(eng, F_BIG, SSTF_DIGEST_XXH3, &again);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), again.detail);
	cr_expect_eq(again.resumed_from, 0, "resumed from %" PRIu64, again.resumed_from);
	cr_expect_eq(again.bytes, sizes[F_BIG], "%" PRIu64 " bytes", again.bytes);
	expect_only(F_BIG);
	engine_free_checked(eng);
}

struct canceller {
	sstf_engine *eng;
	uint64_t gen;
	int ret;
};

static void *cancel_main(void *arg)
{
	struct canceller *c = arg;
	c->ret = sstf_cancel(c->eng, c->gen);
	return NULL;
}

Test(faults, cancel_mid_slow_transfer_keeps_no_temporary_and_no_partial)
{
	require_user_xattrs();
	/* 2 MiB at once, then 128 KiB/s: about 30 s for the rest, far more
	 * than the test lets it have. */
	set_fault(F_BIG, (struct fault){.kind = FAULT_SLOW, .at = 2 * MIB + 99, .first_k = 0,
	                                .rate = 128 * KIB});
	struct sstf_config cfg = small_config();
	cfg.checkpoint_bytes = MIB;
	sstf_engine *eng = engine_new(&cfg);
	struct rec r;
	rec_init(&r);
	uint64_t gen = submit(eng, F_BIG, SSTF_DIGEST_XXH3, &r);
	char tmp[PATH_MAX];
	struct sstf__partial seen;
	wait_checkpoint(eng, gen, MIB, tmp, sizeof(tmp), &seen);
	char *lock = lock_of(tmp);

	/* Cancel from a thread of its own while the body trickles in. */
	struct canceller c = {.eng = eng, .gen = gen, .ret = 1};
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, cancel_main, &c), 0);
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)(GUARD_NS / 1000000000ull);
	int jr = pthread_timedjoin_np(t, NULL, &until);
	cr_assert_eq(jr, 0, "sstf_cancel did not return: %s", strerror(jr));
	cr_expect_eq(c.ret, 0, "sstf_cancel: %d (%s)", c.ret, sstf_strerror(c.ret));
	cr_expect_eq(sstf_wait(eng, gen, 0), -ECANCELED);
	struct report got = rec_get(&r);
	cr_expect_eq(got.file_calls, 0, "the file ended before the cancel (result %d)",
	             got.result);
	cr_expect_eq(got.batch_calls, 1);
	cr_expect_eq(got.batch_result, -ECANCELED, "batch result %d", got.batch_result);
	cr_expect(!ds_exists(tmp), "the cancelled file's temporary %s stayed", tmp);
	cr_expect(!ds_exists(lock), "the cancelled generation's lock %s stayed", lock);
	expect_empty();
	pthread_mutex_destroy(&r.mu);
	free(lock);

	/* Nothing was kept to resume: the next run fetches the whole file. */
	fault_origin_clear(fo);
	struct report again;
	int res = fetch(eng, F_BIG, SSTF_DIGEST_XXH3, &again);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), again.detail);
	cr_expect_eq(again.resumed_from, 0, "resumed from %" PRIu64, again.resumed_from);
	cr_expect_eq(again.bytes, sizes[F_BIG], "%" PRIu64 " bytes", again.bytes);
	cr_expect_eq(again.http_status, 200, "status %d", again.http_status);
	expect_only(F_BIG);
	engine_free_checked(eng);
}
