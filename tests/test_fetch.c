/*
 * Description: fetching against a real nginx on loopback (and file:// URLs)
 * publishes byte-identical files and nothing else; a wrong digest, a wrong
 * size, a 404 or a missing file fails that file alone and leaves nothing
 * under its name and no temporary; nested names get their directories; an
 * existing file is replaced only by a verified one.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/sanitizers.h"
#include "support/origin.h"

#define WAIT_MS 120000 /* a hang guard; nothing is measured */
#define NFILES 64
#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define SMALL_MEM_LIMIT (2 * 4 * 64 * KIB) /* two buffers per transfer */

/* Indexes of the nested names in the fixture dataset. */
#define NESTED_FIRST 60

/* Frees the engine and fails the test if that left memory unreachable. */
static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0,
	             "LeakSanitizer: leaks after sstf_engine_free (report above)");
}

static const char *const nested_names[4] = {
	"a/b/x.sst", "a/b/y.sst", "a/z.sst", "c/d/e/f/g.sst",
};

static struct dataset ds;
static struct origin *org;
static char *work; /* temp dir holding the dest dirs of a test */
static char *dest; /* work/dest, exists and is empty at test start */

static uint64_t fixture_size(size_t i)
{
	static const uint64_t cycle[] = {
		0, 1, 4095, 4096, 4097, 65535, 65536, 65537, 131072, 262143,
		MIB + 7, MIB - 1, MIB, 2 * MIB + 3,
	};
	if (i == NFILES - 2)
		return 4 * MIB + 1;
	if (i == NFILES - 1)
		return 6 * MIB - 3;
	return cycle[i % (sizeof(cycle) / sizeof(cycle[0]))];
}

static void fixture_init(void)
{
	const char *names[NFILES] = { 0 };
	uint64_t sizes[NFILES];
	for (size_t i = 0; i < NFILES; i++)
		sizes[i] = fixture_size(i);
	for (size_t i = 0; i < 4; i++)
		names[NESTED_FIRST + i] = nested_names[i];
	cr_assert_eq(ds_create(&ds, "fetch-origin", NFILES, names, sizes, 0xfe7c4), 0);
	int err = origin_start(ds.dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	cr_assert_eq(ds_mkdtemp("fetch-dest", &work), 0);
	dest = ds_strfmt("%s/dest", work);
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

/* ------------------------------------------------------------------------ */
/* Recording callbacks                                                      */

struct rec {
	pthread_mutex_t mu;
	size_t n;
	char **names;       /* expected name per batch index (own copies) */
	unsigned *done;     /* file-done calls per index */
	int *result;
	int *status;
	uint64_t *bytes;
	int *skipped;
	char **detail;
	unsigned batch_done;
	int batch_result;
	uint64_t gen;       /* gen of the first callback */
	unsigned bad_gen;   /* callbacks with another gen */
	unsigned bad_index; /* file-done with index >= n */
	unsigned bad_name;  /* res->name differs from the batch's */
	unsigned after_batch; /* any callback after on_batch_done */
	unsigned bad_progress;
	unsigned progress_calls;
};

static void rec_init(struct rec *r, const struct sstf_file *files, size_t n)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->n = n;
	size_t m = n ? n : 1;
	r->names = calloc(m, sizeof(*r->names));
	r->done = calloc(m, sizeof(*r->done));
	r->result = calloc(m, sizeof(*r->result));
	r->status = calloc(m, sizeof(*r->status));
	r->bytes = calloc(m, sizeof(*r->bytes));
	r->skipped = calloc(m, sizeof(*r->skipped));
	r->detail = calloc(m, sizeof(*r->detail));
	cr_assert(r->names && r->done && r->result && r->status && r->bytes && r->skipped &&
	          r->detail);
	for (size_t i = 0; i < n; i++) {
		r->names[i] = strdup(files[i].name);
		r->result[i] = 1; /* "never reported" */
	}
}

static void rec_fini(struct rec *r)
{
	for (size_t i = 0; i < r->n; i++) {
		free(r->names[i]);
		free(r->detail[i]);
	}
	free(r->names);
	free(r->done);
	free(r->result);
	free(r->status);
	free(r->bytes);
	free(r->skipped);
	free(r->detail);
	pthread_mutex_destroy(&r->mu);
}

static void note_gen(struct rec *r, uint64_t gen)
{
	if (r->gen == 0)
		r->gen = gen;
	else if (r->gen != gen)
		r->bad_gen++;
	if (r->batch_done)
		r->after_batch++;
}

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	note_gen(r, gen);
	if (res->index >= r->n) {
		r->bad_index++;
	} else {
		size_t i = res->index;
		r->done[i]++;
		r->result[i] = res->result;
		r->status[i] = res->http_status;
		r->bytes[i] = res->bytes;
		r->skipped[i] = res->skipped;
		if (!res->name || strcmp(res->name, r->names[i]) != 0)
			r->bad_name++;
		free(r->detail[i]);
		r->detail[i] = strdup(res->detail ? res->detail : "(null detail)");
	}
	pthread_mutex_unlock(&r->mu);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	note_gen(r, gen);
	r->batch_done++;
	r->batch_result = result;
	pthread_mutex_unlock(&r->mu);
}

static void on_prog(void *user, uint64_t gen, const struct sstf_progress *p)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	note_gen(r, gen);
	r->progress_calls++;
	if (p->bytes_done > p->bytes_total || p->files_total != r->n ||
	    p->files_done + p->files_failed > p->files_total)
		r->bad_progress++;
	pthread_mutex_unlock(&r->mu);
}

/* ------------------------------------------------------------------------ */
/* Running batches                                                          */

/* Set by a test before it makes its engines. */
static enum sstf_switch opt_direct_io, opt_fsync;
static enum sstf_existing opt_existing;

static sstf_engine *engine_new(int small)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.direct_io = opt_direct_io;
	cfg.fsync = opt_fsync;
	cfg.existing = opt_existing;
	if (small) {
		/* Few buffers: transfers must pause and resume. */
		cfg.buf_size = 64 * KIB;
		cfg.max_transfers = 4;
		cfg.mem_limit = SMALL_MEM_LIMIT;
		cfg.progress_interval_ms = 1;
	}
	sstf_engine *eng = NULL;
	int err = test_engine_new(&cfg, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	cr_assert_not_null(eng);
	return eng;
}

/*
 * Submits files[0..n) into dir, waits, and checks what holds for every
 * batch: one on_batch_done, last, with the result sstf_wait returns; one
 * file-done per file, with the right gen, index and name. Returns the
 * batch result.
 */
static int run_batch(sstf_engine *eng, const char *dir, const struct sstf_file *files,
                     size_t n, struct rec *r)
{
	rec_init(r, files, n);
	char errbuf[512] = "";
	struct sstf_batch b = {
		.dest_dir = dir,
		.files = files,
		.nfiles = n,
		.on_file_done = on_file,
		.on_batch_done = on_batch,
		.on_progress = on_prog,
		.user = r,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	cr_assert_neq(gen, 0, "generation id 0");
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT, "batch did not end within %d ms", WAIT_MS);
	cr_assert_neq(res, -SSTF_ENOSUCHGEN, "sstf_wait forgot the generation");

	pthread_mutex_lock(&r->mu);
	cr_expect_eq(r->batch_done, 1, "on_batch_done ran %u times before sstf_wait returned",
	             r->batch_done);
	cr_expect_eq(r->batch_result, res, "on_batch_done said %d, sstf_wait %d",
	             r->batch_result, res);
	cr_expect(r->gen == 0 || r->gen == gen, "callbacks got gen %llu, submit %llu",
	          (unsigned long long)r->gen, (unsigned long long)gen);
	cr_expect_eq(r->bad_gen, 0);
	cr_expect_eq(r->bad_index, 0);
	cr_expect_eq(r->bad_name, 0, "file-done gave a name other than the batch's");
	cr_expect_eq(r->after_batch, 0, "a callback ran after on_batch_done");
	cr_expect_eq(r->bad_progress, 0, "inconsistent progress snapshot");
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(r->done[i], 1, "file %zu (%s): %u file-done calls", i,
		             r->names[i], r->done[i]);
	pthread_mutex_unlock(&r->mu);
	return res;
}

static void expect_no_temps(const char *dir)
{
	char first[PATH_MAX];
	int n = ds_count_temps(dir, first, sizeof(first));
	cr_expect_eq(n, 0, "%d temporary file(s) left in %s, e.g. %s", n, dir, first);
}

static void expect_dest_is(const char *dir, const size_t *which, size_t n)
{
	char why[PATH_MAX + 128];
	cr_expect_eq(ds_check_dest(&ds, dir, which, n, why, sizeof(why)), 0, "%s", why);
}

/*
 * Fetches the whole fixture, with `base` as the URL prefix. With
 * expect_skip, every file must already be in place: reported skipped, with
 * no byte fetched.
 */
static void fetch_all_ex(int small, const char *base, int kind, int expect_skip)
{
	sstf_engine *eng = engine_new(small);
	struct sstf_file *files = ds_batch_new(&ds, base, kind);
	cr_assert_not_null(files);
	struct rec r;
	int res = run_batch(eng, dest, files, ds.n, &r);
	cr_expect_eq(res, 0, "batch result %d (%s)", res, sstf_strerror(res));
	for (size_t i = 0; i < ds.n; i++) {
		cr_expect_eq(r.result[i], 0, "file %s: %d (%s) %s", ds.files[i].name,
		             r.result[i], sstf_strerror(r.result[i]), r.detail[i]);
		cr_expect_eq(r.bytes[i], expect_skip ? 0 : ds.files[i].size,
		             "file %s: %llu bytes reported", ds.files[i].name,
		             (unsigned long long)r.bytes[i]);
		cr_expect_eq(r.skipped[i], expect_skip, "file %s: skipped %d, expected %d",
		             ds.files[i].name, r.skipped[i], expect_skip);
	}
	expect_dest_is(dest, NULL, ds.n);
	expect_no_temps(dest);
	struct sstf_stats st;
	cr_expect_eq(sstf_stats(eng, &st), 0);
	if (small) {
		/* Invariant 6: buffer memory stays within mem_limit. */
		cr_expect_eq(st.buf_size, 64 * KIB);
		cr_expect_leq(st.buffers_total * st.buf_size, SMALL_MEM_LIMIT * test_loops());
	}
	if (!expect_skip)
		cr_expect_gt(st.buffers_peak, 0);
	cr_expect_leq(st.buffers_peak, st.buffers_total);
	cr_log_info("%s: %llu of %llu buffers of %zu bytes at peak, fixed %d, ring flags 0x%x",
	            small ? "small" : "default", (unsigned long long)st.buffers_peak,
	            (unsigned long long)st.buffers_total, st.buf_size, st.fixed_buffers,
	            (unsigned)st.ring_flags);
	engine_free_checked(eng);
	ds_batch_free(files, ds.n, 1);
	rec_fini(&r);
}

static void fetch_all(int small, const char *base, int kind)
{
	fetch_all_ex(small, base, kind, 0);
}

/* Picks fixture indexes by size (first match). */
static size_t idx_of_size(uint64_t size)
{
	for (size_t i = 0; i < ds.n; i++)
		if (ds.files[i].size == size)
			return i;
	cr_assert_fail("no fixture file of %llu bytes", (unsigned long long)size);
	return 0;
}

/* A batch of fixture files by index, its strings heap copies. */
static struct sstf_file *pick(const size_t *idx, size_t n, const char *base, int kind)
{
	struct sstf_file *all = ds_batch_new(&ds, base, kind);
	cr_assert_not_null(all);
	struct sstf_file *out = calloc(n, sizeof(*out));
	cr_assert_not_null(out);
	for (size_t k = 0; k < n; k++) {
		out[k] = all[idx[k]];
		all[idx[k]].name = all[idx[k]].url = all[idx[k]].digest_hex = NULL;
	}
	ds_batch_free(all, ds.n, 0);
	return out;
}

/* ------------------------------------------------------------------------ */
/* (a) many files                                                           */

Test(fetch, many_files_default_config_byte_identical,
     .init = fixture_init, .fini = fixture_fini)
{
	fetch_all(0, org->base_url, DS_DIGEST_MIXED);
}

Test(fetch, many_files_small_buffers_byte_identical,
     .init = fixture_init, .fini = fixture_fini)
{
	fetch_all(1, org->base_url, SSTF_DIGEST_XXH128);
}

Test(fetch, many_files_xxh3_twice_into_same_dir_replaces,
     .init = fixture_init, .fini = fixture_fini)
{
	fetch_all(1, org->base_url, SSTF_DIGEST_XXH3);
	/* Every file now exists; told not to trust them, a second generation
	 * replaces them all. */
	opt_existing = SSTF_EXISTING_REFETCH;
	fetch_all(0, org->base_url, SSTF_DIGEST_XXH3);
}

Test(fetch, second_fetch_skips_every_verified_file, .init = fixture_init,
     .fini = fixture_fini)
{
	/* The publish record vouches for each file: nothing is fetched. */
	fetch_all(1, org->base_url, SSTF_DIGEST_XXH128);
	fetch_all_ex(1, org->base_url, SSTF_DIGEST_XXH128, 1);
	/* Strict: every file is re-hashed in place, and still skipped. */
	opt_existing = SSTF_EXISTING_REHASH;
	fetch_all_ex(1, org->base_url, SSTF_DIGEST_XXH128, 1);
}

Test(fetch, empty_batch_completes_at_once, .init = fixture_init, .fini = fixture_fini)
{
	sstf_engine *eng = engine_new(0);
	struct rec r;
	struct sstf_file none[1];
	memset(none, 0, sizeof(none));
	cr_expect_eq(run_batch(eng, dest, none, 0, &r), 0);
	expect_dest_is(dest, NULL, 0);
	engine_free_checked(eng);
	rec_fini(&r);
}

Test(fetch, many_files_direct_io_on_odd_sizes, .init = fixture_init, .fini = fixture_fini)
{
	/* O_DIRECT needs aligned writes; sizes like 4095 and 1 MiB + 7 end in
	 * a partial block that must still land exactly. */
	opt_direct_io = SSTF_ON;
	fetch_all(1, org->base_url, DS_DIGEST_MIXED);
	cr_assert_eq(ds_empty_dir(dest), 0);
	fetch_all(0, org->base_url, SSTF_DIGEST_XXH3);
}

Test(fetch, many_files_buffered_without_fsync, .init = fixture_init, .fini = fixture_fini)
{
	opt_direct_io = SSTF_OFF;
	opt_fsync = SSTF_OFF;
	fetch_all(1, org->base_url, DS_DIGEST_MIXED);
}

Test(fetch, thousands_of_tiny_files_reuse_slots, .init = fixture_init, .fini = fixture_fini)
{
	/* Many more files than transfers, slots and buffers: every slot and
	 * connection is reused hundreds of times. */
	enum { N = 1500 };
	static uint64_t sizes[N];
	for (size_t i = 0; i < N; i++)
		sizes[i] = (i * 37) % 300;
	struct dataset tiny;
	cr_assert_eq(ds_create(&tiny, "fetch-tiny", N, NULL, sizes, 0x7171), 0);
	struct origin *o2 = NULL;
	cr_assert_eq(origin_start(tiny.dir, &o2), 0);
	for (int pass = 0; pass < 2; pass++) {
		char *b = pass ? ds_strfmt("file://%s", tiny.dir) : strdup(o2->base_url);
		struct sstf_file *files = ds_batch_new(&tiny, b, DS_DIGEST_MIXED);
		cr_assert_not_null(files);
		free(b);
		cr_assert_eq(ds_empty_dir(dest), 0);
		sstf_engine *eng = engine_new(1);
		struct rec r;
		int res = run_batch(eng, dest, files, N, &r);
		cr_expect_eq(res, 0, "pass %d: %d (%s)", pass, res, sstf_strerror(res));
		char why[PATH_MAX + 128];
		cr_expect_eq(ds_check_dest(&tiny, dest, NULL, N, why, sizeof(why)), 0, "%s", why);
		expect_no_temps(dest);
		engine_free_checked(eng);
		ds_batch_free(files, N, 1);
		rec_fini(&r);
	}
	origin_stop(o2);
	ds_destroy(&tiny);
}

Test(fetch, two_generations_same_names_concurrently, .init = fixture_init, .fini = fixture_fini)
{
	/* Two generations write the same names into one dir at once: their
	 * temporaries must not collide, and whichever rename lands last, the
	 * file is a verified copy. */
	sstf_engine *eng = engine_new(1);
	struct sstf_file *fa = ds_batch_new(&ds, org->base_url, SSTF_DIGEST_XXH3);
	struct sstf_file *fb = ds_batch_new(&ds, org->base_url, SSTF_DIGEST_XXH128);
	cr_assert(fa && fb);
	struct rec ra, rb;
	rec_init(&ra, fa, ds.n);
	rec_init(&rb, fb, ds.n);
	struct sstf_batch a = { .dest_dir = dest, .files = fa, .nfiles = ds.n,
	                        .on_file_done = on_file, .on_batch_done = on_batch, .user = &ra };
	struct sstf_batch b = a;
	b.files = fb;
	b.user = &rb;
	uint64_t ga = 0, gb = 0;
	cr_assert_eq(sstf_submit(eng, &a, &ga), 0);
	cr_assert_eq(sstf_submit(eng, &b, &gb), 0);
	cr_expect_neq(ga, gb);
	cr_expect_eq(sstf_wait(eng, ga, WAIT_MS), 0);
	cr_expect_eq(sstf_wait(eng, gb, WAIT_MS), 0);
	cr_expect_eq(ra.batch_done, 1);
	cr_expect_eq(rb.batch_done, 1);
	cr_expect_eq(ra.bad_gen + rb.bad_gen, 0, "callbacks of one generation got the other's id");
	expect_dest_is(dest, NULL, ds.n);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(fa, ds.n, 1);
	ds_batch_free(fb, ds.n, 1);
	rec_fini(&ra);
	rec_fini(&rb);
}

struct cancel_job {
	sstf_engine *eng;
	uint64_t gen;
	int ret;
	atomic_int finished;
};

static void *cancel_main(void *arg)
{
	struct cancel_job *j = arg;
	j->ret = sstf_cancel(j->eng, j->gen);
	atomic_store(&j->finished, 1);
	return NULL;
}

Test(fetch, cancel_of_stalled_transfer_returns, .init = fixture_init, .fini = fixture_fini)
{
	/* An origin that accepts connections and never answers: the transfer
	 * would only fail after low_speed_time_s. Cancel must not wait for
	 * that (or for ever). */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(lfd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 64), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	char *stall = ds_strfmt("http://127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));

	size_t idx[] = { idx_of_size(MIB), idx_of_size(4096), idx_of_size(2 * MIB + 3) };
	struct sstf_file *files = pick(idx, 3, stall, SSTF_DIGEST_XXH3);
	free(stall);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.low_speed_time_s = 3600;
	cfg.low_speed_bytes = 1;
	sstf_engine *eng = NULL;
	cr_assert_eq(test_engine_new(&cfg, &eng), 0);
	struct rec r;
	rec_init(&r, files, 3);
	struct sstf_batch b = { .dest_dir = dest, .files = files, .nfiles = 3,
	                        .on_file_done = on_file, .on_batch_done = on_batch, .user = &r };
	uint64_t gen = 0;
	cr_assert_eq(sstf_submit(eng, &b, &gen), 0);
	/* Let the requests reach the listener. */
	cr_expect_eq(sstf_wait(eng, gen, 300), -ETIMEDOUT, "a stalled batch ended by itself");

	struct cancel_job j = { eng, gen, -1, 0 };
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, cancel_main, &j), 0);
	/* A hang guard, not a measurement: cancel has no business taking long. */
	for (int i = 0; i < 60000 && !atomic_load(&j.finished); i++)
		usleep(1000);
	cr_assert(atomic_load(&j.finished), "sstf_cancel hung on a stalled transfer");
	pthread_join(th, NULL);
	cr_expect_eq(j.ret, 0);
	cr_expect_eq(r.batch_done, 1);
	cr_expect_eq(r.batch_result, -ECANCELED, "%d (%s)", r.batch_result,
	             sstf_strerror(r.batch_result));
	for (size_t i = 0; i < 3; i++)
		cr_expect_eq(r.done[i], 0, "file-done for a cancelled, unfinished file");
	expect_dest_is(dest, NULL, 0);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 3, 1);
	rec_fini(&r);
	close(lfd);
}

/* ------------------------------------------------------------------------ */
/* (b)-(d) failures of one file                                             */

static void flip_digit(struct sstf_file *f)
{
	char *hex = strdup(f->digest_hex);
	cr_assert_not_null(hex);
	hex[0] = hex[0] == '0' ? '1' : '0';
	cr_assert_eq(ds_set_str(&f->digest_hex, hex), 0);
	free(hex);
}

Test(fetch, wrong_digest_fails_with_echecksum_and_publishes_nothing,
     .init = fixture_init, .fini = fixture_fini)
{
	size_t idx[] = { idx_of_size(4095), idx_of_size(MIB + 7), idx_of_size(65536),
	                 idx_of_size(4096), idx_of_size(0), idx_of_size(2 * MIB + 3) };
	struct sstf_file *files = pick(idx, 6, org->base_url, SSTF_DIGEST_XXH3);
	/* 1 and 4: XXH3 wrong; 3: XXH128 wrong. */
	flip_digit(&files[1]);
	flip_digit(&files[4]);
	files[3].digest_kind = SSTF_DIGEST_XXH128;
	cr_assert_eq(ds_set_str(&files[3].digest_hex, ds.files[idx[3]].xxh128), 0);
	flip_digit(&files[3]);

	sstf_engine *eng = engine_new(1);
	struct rec r;
	int res = run_batch(eng, dest, files, 6, &r);
	cr_expect_eq(res, -SSTF_ECHECKSUM, "batch result %d (%s)", res, sstf_strerror(res));
	const int want[6] = { 0, -SSTF_ECHECKSUM, 0, -SSTF_ECHECKSUM, -SSTF_ECHECKSUM, 0 };
	for (size_t k = 0; k < 6; k++) {
		cr_expect_eq(r.result[k], want[k], "%s: %d (%s) %s", r.names[k], r.result[k],
		             sstf_strerror(r.result[k]), r.detail[k]);
		if (want[k])
			cr_expect_neq(r.detail[k][0], '\0', "%s failed without a detail", r.names[k]);
	}
	size_t good[] = { idx[0], idx[2], idx[5] };
	expect_dest_is(dest, good, 3);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 6, 1);
	rec_fini(&r);
}

Test(fetch, wrong_size_fails_with_esize, .init = fixture_init, .fini = fixture_fini)
{
	size_t idx[] = { idx_of_size(65537), idx_of_size(65537 - 2) /* 65535 */,
	                 idx_of_size(0), idx_of_size(1), idx_of_size(MIB) };
	struct sstf_file *files = pick(idx, 5, org->base_url, SSTF_DIGEST_XXH3);
	files[0].size += 1;              /* origin sends less than expected */
	files[1].size -= 1;              /* origin sends more than expected */
	files[2].size = 1;               /* expected a byte, got none */
	files[3].digest_kind = SSTF_DIGEST_NONE; /* length check alone */
	files[3].size = 0;
	/* files[4] is right */

	sstf_engine *eng = engine_new(1);
	struct rec r;
	int res = run_batch(eng, dest, files, 5, &r);
	cr_expect_eq(res, -SSTF_ESIZE, "batch result %d (%s)", res, sstf_strerror(res));
	for (size_t k = 0; k < 4; k++)
		cr_expect_eq(r.result[k], -SSTF_ESIZE, "%s: %d (%s) %s", r.names[k], r.result[k],
		             sstf_strerror(r.result[k]), r.detail[k]);
	cr_expect_eq(r.result[4], 0, "%s: %d (%s) %s", r.names[4], r.result[4],
	             sstf_strerror(r.result[4]), r.detail[4]);
	size_t good[] = { idx[4] };
	expect_dest_is(dest, good, 1);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 5, 1);
	rec_fini(&r);
}

Test(fetch, http_404_fails_with_ehttp_and_status, .init = fixture_init, .fini = fixture_fini)
{
	size_t idx[] = { idx_of_size(MIB + 7), idx_of_size(4096), idx_of_size(131072) };
	struct sstf_file *files = pick(idx, 3, org->base_url, SSTF_DIGEST_XXH128);
	char *missing = ds_strfmt("%s/no/such/file.sst", org->base_url);
	cr_assert_eq(ds_set_str(&files[1].url, missing), 0);
	free(missing);

	sstf_engine *eng = engine_new(0);
	struct rec r;
	int res = run_batch(eng, dest, files, 3, &r);
	cr_expect_eq(res, -SSTF_EHTTP, "batch result %d (%s)", res, sstf_strerror(res));
	cr_expect_eq(r.result[1], -SSTF_EHTTP, "404 file: %d (%s) %s", r.result[1],
	             sstf_strerror(r.result[1]), r.detail[1]);
	cr_expect_eq(r.status[1], 404, "http_status %d", r.status[1]);
	cr_expect_neq(r.detail[1][0], '\0');
	cr_expect_eq(r.result[0], 0, "%s", r.detail[0]);
	cr_expect_eq(r.result[2], 0, "%s", r.detail[2]);
	cr_expect_eq(r.status[0], 200, "http_status of a good file %d", r.status[0]);
	size_t good[] = { idx[0], idx[2] };
	expect_dest_is(dest, good, 2);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 3, 1);
	rec_fini(&r);
}

Test(fetch, unreachable_origin_fails_with_etransfer, .init = fixture_init, .fini = fixture_fini)
{
	/* A port bound but not listening refuses connections, and stays ours
	 * for the whole test. */
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	char *url = ds_strfmt("http://127.0.0.1:%u/%s", (unsigned)ntohs(sa.sin_port),
	                      ds.files[1].name);
	size_t idx[] = { 1 };
	struct sstf_file *files = pick(idx, 1, org->base_url, SSTF_DIGEST_XXH3);
	cr_assert_eq(ds_set_str(&files[0].url, url), 0);
	free(url);
	sstf_engine *eng = engine_new(0);
	struct rec r;
	int res = run_batch(eng, dest, files, 1, &r);
	cr_expect_eq(res, -SSTF_ETRANSFER, "batch result %d (%s) %s", res, sstf_strerror(res),
	             r.detail[0]);
	cr_expect_neq(r.detail[0][0], '\0', "no detail for a refused connection");
	expect_dest_is(dest, NULL, 0);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 1, 1);
	rec_fini(&r);
	close(fd);
}

/* ------------------------------------------------------------------------ */
/* Largest files first                                                       */

struct starts {
	pthread_mutex_t mu;
	uint64_t start_ns[NFILES]; /* when each file started: done - fetch_ns */
	int seen[NFILES];
};

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_file_start_time(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	(void)gen;
	struct starts *st = user;
	uint64_t now = mono_ns(); /* the engine's clock too (CLOCK_MONOTONIC) */
	pthread_mutex_lock(&st->mu);
	if (res->index < NFILES && res->result == 0) {
		st->start_ns[res->index] = now - res->fetch_ns;
		st->seen[res->index]++;
	}
	pthread_mutex_unlock(&st->mu);
}

/*
 * A mixed set must not end on one large file started last: files start
 * largest first. With one transfer they start one after the other (the
 * next only once the one before was verified), so the start times, taken
 * from each file's fetch_ns, order the files by size, largest first, ties
 * in the batch's order. The fixture's sizes are not sorted in the batch.
 */
Test(fetch, larger_files_start_first, .init = fixture_init, .fini = fixture_fini)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_transfers = 1;
	/* The order holds within each loop (sstf_config.threads); which
	 * loop a file lands on the test cannot see, so one loop. */
	cfg.threads = 1;
	sstf_engine *eng = NULL;
	cr_assert_eq(test_engine_new(&cfg, &eng), 0);
	struct sstf_file *files = ds_batch_new(&ds, org->base_url, SSTF_DIGEST_XXH3);
	struct starts st = {.mu = PTHREAD_MUTEX_INITIALIZER};
	struct sstf_batch b = {.dest_dir = dest, .files = files, .nfiles = ds.n,
	                       .on_file_done = on_file_start_time, .user = &st};
	uint64_t gen = 0;
	cr_assert_eq(sstf_submit(eng, &b, &gen), 0);
	cr_assert_eq(sstf_wait(eng, gen, -1), 0);
	engine_free_checked(eng);
	bool sorted_in_batch = true;
	for (size_t i = 1; i < ds.n; i++)
		sorted_in_batch &= ds.files[i - 1].size >= ds.files[i].size;
	cr_assert_not(sorted_in_batch, "the fixture is sorted already: the test proves nothing");
	for (size_t i = 0; i < ds.n; i++) {
		cr_assert_eq(st.seen[i], 1, "file %zu reported %d times", i, st.seen[i]);
		for (size_t j = 0; j < ds.n; j++) {
			bool first = ds.files[i].size > ds.files[j].size ||
			             (ds.files[i].size == ds.files[j].size && i < j);
			if (first)
				cr_assert_lt(st.start_ns[i], st.start_ns[j],
				             "%s (%" PRIu64 " bytes) started after %s (%" PRIu64 " bytes)",
				             ds.files[i].name, ds.files[i].size, ds.files[j].name,
				             ds.files[j].size);
		}
	}
	ds_batch_free(files, ds.n, 0);
}

/* ------------------------------------------------------------------------ */
/* (e) file:// URLs                                                          */

Test(fetch, file_urls_byte_identical, .init = fixture_init, .fini = fixture_fini)
{
	char *base = ds_strfmt("file://%s", ds.dir);
	fetch_all(1, base, DS_DIGEST_MIXED);
	free(base);
}

Test(fetch, file_url_missing_path_fails, .init = fixture_init, .fini = fixture_fini)
{
	size_t idx[] = { idx_of_size(MIB), idx_of_size(4097) };
	char *base = ds_strfmt("file://%s", ds.dir);
	struct sstf_file *files = pick(idx, 2, base, SSTF_DIGEST_XXH3);
	char *missing = ds_strfmt("%s/does-not-exist.sst", base);
	cr_assert_eq(ds_set_str(&files[1].url, missing), 0);
	free(missing);
	free(base);

	sstf_engine *eng = engine_new(0);
	struct rec r;
	int res = run_batch(eng, dest, files, 2, &r);
	cr_expect_lt(res, 0, "a missing file:// source succeeded");
	cr_expect_lt(r.result[1], 0, "missing file: %d", r.result[1]);
	cr_expect_neq(r.detail[1][0], '\0');
	cr_expect_eq(r.status[1], 0, "file:// has no HTTP status");
	cr_expect_eq(r.result[0], 0, "%s: %d (%s) %s", r.names[0], r.result[0],
	             sstf_strerror(r.result[0]), r.detail[0]);
	size_t good[] = { idx[0] };
	expect_dest_is(dest, good, 1);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 2, 1);
	rec_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* (f) nested names                                                          */

Test(fetch, nested_names_create_directories, .init = fixture_init, .fini = fixture_fini)
{
	size_t idx[4];
	for (size_t k = 0; k < 4; k++) {
		idx[k] = NESTED_FIRST + k;
		cr_assert_str_eq(ds.files[idx[k]].name, nested_names[k]);
	}
	for (int pass = 0; pass < 2; pass++) {
		/* pass 0 over http, pass 1 over file:// into a fresh dir */
		char *base = pass ? ds_strfmt("file://%s", ds.dir) : strdup(org->base_url);
		struct sstf_file *files = pick(idx, 4, base, DS_DIGEST_MIXED);
		free(base);
		if (pass)
			cr_assert_eq(ds_empty_dir(dest), 0);
		sstf_engine *eng = engine_new(pass);
		struct rec r;
		int res = run_batch(eng, dest, files, 4, &r);
		cr_expect_eq(res, 0, "pass %d: %d (%s) %s", pass, res, sstf_strerror(res),
		             r.detail[0]);
		expect_dest_is(dest, idx, 4);
		expect_no_temps(dest);
		engine_free_checked(eng);
		ds_batch_free(files, 4, 1);
		rec_fini(&r);
	}
}

/* ------------------------------------------------------------------------ */
/* (g) replacing existing files                                             */

Test(fetch, existing_file_replaced_by_verified_one, .init = fixture_init, .fini = fixture_fini)
{
	size_t idx[] = { idx_of_size(MIB + 7), idx_of_size(65536), NESTED_FIRST };
	/* Same size, other bytes (the "size matches, trust it" trap); a longer
	 * file; and a nested one whose dirs already exist. */
	uint64_t sizes[] = { MIB + 7, 3 * MIB, ds.files[NESTED_FIRST].size };
	for (size_t k = 0; k < 3; k++) {
		char *p = ds_strfmt("%s/%s", dest, ds.files[idx[k]].name);
		char *dir = strdup(p);
		*strrchr(dir, '/') = '\0';
		cr_assert_eq(ds_mkdirs(dir), 0);
		cr_assert_eq(ds_write_random(p, sizes[k], 999 + k), 0);
		cr_assert_eq(ds_files_equal(p, ds.files[idx[k]].path), 0, "setup: already equal");
		free(p);
		free(dir);
	}
	struct sstf_file *files = pick(idx, 3, org->base_url, DS_DIGEST_MIXED);
	files[0].digest_kind = SSTF_DIGEST_XXH3; /* index 0 would be NONE */
	cr_assert_eq(ds_set_str(&files[0].digest_hex, ds.files[idx[0]].xxh3), 0);
	sstf_engine *eng = engine_new(1);
	struct rec r;
	int res = run_batch(eng, dest, files, 3, &r);
	cr_expect_eq(res, 0, "%d (%s)", res, sstf_strerror(res));
	expect_dest_is(dest, idx, 3);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 3, 1);
	rec_fini(&r);
}

Test(fetch, existing_file_kept_when_fetch_fails, .init = fixture_init, .fini = fixture_fini)
{
	/* "Replaced only by a verified one": a failing fetch leaves the old
	 * file as it was. */
	size_t idx[] = { idx_of_size(MIB), idx_of_size(262143), idx_of_size(4096) };
	char *old[3];
	char *keep[3];
	for (size_t k = 0; k < 3; k++) {
		old[k] = ds_strfmt("%s/%s", dest, ds.files[idx[k]].name);
		keep[k] = ds_strfmt("%s/keep-%zu", work, k);
		cr_assert_eq(ds_write_random(old[k], 12345, 77 + k), 0);
		cr_assert_eq(ds_write_random(keep[k], 12345, 77 + k), 0);
	}
	struct sstf_file *files = pick(idx, 3, org->base_url, SSTF_DIGEST_XXH3);
	flip_digit(&files[0]);
	files[1].size += 1;
	char *missing = ds_strfmt("%s/missing.sst", org->base_url);
	cr_assert_eq(ds_set_str(&files[2].url, missing), 0);
	free(missing);

	sstf_engine *eng = engine_new(1);
	struct rec r;
	int res = run_batch(eng, dest, files, 3, &r);
	cr_expect_lt(res, 0);
	cr_expect_eq(r.result[0], -SSTF_ECHECKSUM, "%d", r.result[0]);
	cr_expect_eq(r.result[1], -SSTF_ESIZE, "%d", r.result[1]);
	cr_expect_eq(r.result[2], -SSTF_EHTTP, "%d", r.result[2]);
	for (size_t k = 0; k < 3; k++) {
		cr_expect_eq(ds_files_equal(old[k], keep[k]), 1,
		             "%s: the old file was changed by a failed fetch", ds.files[idx[k]].name);
		free(old[k]);
		free(keep[k]);
	}
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 3, 1);
	rec_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* Submitted metadata is the engine's own copy                               */

Test(fetch, batch_memory_poisoned_right_after_submit, .init = fixture_init, .fini = fixture_fini)
{
	sstf_engine *eng = engine_new(1);
	struct sstf_file *files = ds_batch_new(&ds, org->base_url, DS_DIGEST_MIXED);
	cr_assert_not_null(files);
	struct rec r;
	rec_init(&r, files, ds.n);
	char *dir = strdup(dest);
	struct sstf_batch b = {
		.dest_dir = dir, .files = files, .nfiles = ds.n,
		.on_file_done = on_file, .on_batch_done = on_batch, .on_progress = on_prog,
		.user = &r,
	};
	uint64_t gen = 0;
	cr_assert_eq(sstf_submit(eng, &b, &gen), 0);
	/* The caller may free everything once submit returns. */
	ds_batch_free(files, ds.n, 1);
	memset(dir, 0xA5, strlen(dir));
	free(dir);
	memset(&b, 0xA5, sizeof(b));
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_expect_eq(res, 0, "%d (%s)", res, sstf_strerror(res));
	pthread_mutex_lock(&r.mu);
	cr_expect_eq(r.bad_name, 0, "a file-done name was not the submitted one");
	for (size_t i = 0; i < ds.n; i++)
		cr_expect_eq(r.result[i], 0, "%s: %s", r.names[i], r.detail[i] ? r.detail[i] : "");
	pthread_mutex_unlock(&r.mu);
	expect_dest_is(dest, NULL, ds.n);
	expect_no_temps(dest);
	engine_free_checked(eng);
	rec_fini(&r);
}

/* ------------------------------------------------------------------------ */
/* (h) MD5 (SSTF_DIGEST_MD5)                                                 */

#include <dirent.h>
#include <fcntl.h>
#include <sys/xattr.h>

#include "internal.h" /* a crashed writer's checkpoint, as the engine writes it */

#define MD5SUM "/usr/bin/md5sum"

/* The oracle: what the md5sum binary says of path, lowercase hex. */
static void md5sum_of(const char *path, char hex[33])
{
	char *cmd = ds_strfmt("%s '%s'", MD5SUM, path);
	cr_assert_not_null(cmd);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "popen %s", cmd);
	char line[PATH_MAX + 64] = "";
	cr_assert_not_null(fgets(line, sizeof(line), p), "no output from %s", cmd);
	cr_assert_eq(pclose(p), 0, "%s failed", cmd);
	cr_assert(strlen(line) > 32 && line[32] == ' ', "md5sum said: %s", line);
	memcpy(hex, line, 32);
	hex[32] = '\0';
	free(cmd);
}

/* Entry f, of dataset file df, is verified by MD5 (md5sum's) instead. */
static void use_md5(struct sstf_file *f, const struct ds_file *df)
{
	char hex[33];
	md5sum_of(df->path, hex);
	f->digest_kind = SSTF_DIGEST_MD5;
	cr_assert_eq(ds_set_str(&f->digest_hex, hex), 0);
}

/* Every fixture file, each verified by MD5. */
static struct sstf_file *md5_batch(const char *base)
{
	struct sstf_file *files = ds_batch_new(&ds, base, SSTF_DIGEST_XXH3);
	cr_assert_not_null(files);
	for (size_t i = 0; i < ds.n; i++)
		use_md5(&files[i], &ds.files[i]);
	return files;
}

/* Runs the MD5 batch of every fixture file; every one ends with 0, either
 * fetched (bytes == size) or skipped in place (bytes 0). */
static void md5_fetch_all(int small, const char *base, int expect_skip)
{
	sstf_engine *eng = engine_new(small);
	struct sstf_file *files = md5_batch(base);
	struct rec r;
	int res = run_batch(eng, dest, files, ds.n, &r);
	cr_expect_eq(res, 0, "batch result %d (%s)", res, sstf_strerror(res));
	for (size_t i = 0; i < ds.n; i++) {
		cr_expect_eq(r.result[i], 0, "file %s: %d (%s) %s", ds.files[i].name, r.result[i],
		             sstf_strerror(r.result[i]), r.detail[i]);
		cr_expect_eq(r.skipped[i], expect_skip, "file %s: skipped %d", ds.files[i].name,
		             r.skipped[i]);
		cr_expect_eq(r.bytes[i], expect_skip ? 0 : ds.files[i].size,
		             "file %s: %llu bytes fetched", ds.files[i].name,
		             (unsigned long long)r.bytes[i]);
	}
	expect_dest_is(dest, NULL, ds.n);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, ds.n, 1);
	rec_fini(&r);
}

Test(fetch, md5_files_byte_identical_then_skipped_by_record_and_rehash,
     .init = fixture_init, .fini = fixture_fini)
{
	cr_assert_eq(access(MD5SUM, X_OK), 0, "%s missing", MD5SUM);
	/* Small buffers: MD5 streams over many buffers, with pauses. */
	md5_fetch_all(1, org->base_url, 0);
	/* The publish record vouches for each MD5 file: nothing fetched. */
	md5_fetch_all(0, org->base_url, 1);
	/* Strict: each is re-hashed in place by MD5, and still skipped. */
	opt_existing = SSTF_EXISTING_REHASH;
	md5_fetch_all(1, org->base_url, 1);
}

Test(fetch, md5_file_changed_in_place_is_rehashed_and_fetched_again,
     .init = fixture_init, .fini = fixture_fini)
{
	md5_fetch_all(0, org->base_url, 0);
	/* One byte of a published file changes (its mtime with it): the record
	 * no longer vouches, the MD5 re-hash does not match, it is fetched. */
	size_t i = idx_of_size(2 * MIB + 3);
	char *p = ds_strfmt("%s/%s", dest, ds.files[i].name);
	usleep(20000); /* a new mtime, even with a coarse file clock */
	FILE *fp = fopen(p, "r+b");
	cr_assert_not_null(fp);
	cr_assert_eq(fseek(fp, (long)MIB, SEEK_SET), 0);
	int c = fgetc(fp);
	cr_assert_neq(c, EOF);
	cr_assert_eq(fseek(fp, (long)MIB, SEEK_SET), 0);
	cr_assert_eq(fputc(c ^ 0xff, fp), c ^ 0xff);
	cr_assert_eq(fclose(fp), 0);
	cr_assert_eq(ds_files_equal(p, ds.files[i].path), 0, "setup: the byte did not change");

	sstf_engine *eng = engine_new(1);
	struct sstf_file *files = md5_batch(org->base_url);
	struct rec r;
	cr_expect_eq(run_batch(eng, dest, files, ds.n, &r), 0);
	for (size_t k = 0; k < ds.n; k++) {
		cr_expect_eq(r.result[k], 0, "%s: %s", r.names[k], r.detail[k]);
		cr_expect_eq(r.skipped[k], k != i, "%s: skipped %d", r.names[k], r.skipped[k]);
	}
	cr_expect_eq(r.bytes[i], ds.files[i].size);
	expect_dest_is(dest, NULL, ds.n);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, ds.n, 1);
	rec_fini(&r);
	free(p);
}

/* Nothing at all under DEST/.sstf: no temporary, no lock, no partial. */
static void expect_stage_empty(const char *dir)
{
	char *stage = ds_strfmt("%s/.sstf", dir);
	DIR *d = opendir(stage);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d)))
			cr_expect(strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0,
			          "%s/%s left behind", stage, de->d_name);
		closedir(d);
	}
	free(stage);
}

Test(fetch, md5_mismatch_fails_echecksum_and_publishes_nothing, .init = fixture_init,
     .fini = fixture_fini)
{
	size_t idx[] = { idx_of_size(4095), idx_of_size(MIB + 7), idx_of_size(0),
	                 idx_of_size(2 * MIB + 3), idx_of_size(65537) };
	struct sstf_file *files = pick(idx, 5, org->base_url, SSTF_DIGEST_XXH3);
	for (size_t k = 0; k < 5; k++)
		use_md5(&files[k], &ds.files[idx[k]]);
	/* 1: a split-buffer file, 2: the empty file (MD5 d41d8cd9...), wrong. */
	char want1[33];
	snprintf(want1, sizeof(want1), "%s", files[1].digest_hex);
	flip_digit(&files[1]);
	flip_digit(&files[2]);

	sstf_engine *eng = engine_new(1);
	struct rec r;
	int res = run_batch(eng, dest, files, 5, &r);
	cr_expect_eq(res, -SSTF_ECHECKSUM, "batch result %d (%s)", res, sstf_strerror(res));
	const int want[5] = { 0, -SSTF_ECHECKSUM, -SSTF_ECHECKSUM, 0, 0 };
	for (size_t k = 0; k < 5; k++)
		cr_expect_eq(r.result[k], want[k], "%s: %d (%s) %s", r.names[k], r.result[k],
		             sstf_strerror(r.result[k]), r.detail[k]);
	/* The detail gives both digests: the true one is md5sum's. */
	cr_expect(strstr(r.detail[1], want1) != NULL, "detail: %s (true MD5 %s)", r.detail[1],
	          want1);
	cr_expect(strstr(r.detail[1], files[1].digest_hex) != NULL, "detail: %s",
	          r.detail[1]);
	size_t good[] = { idx[0], idx[3], idx[4] };
	expect_dest_is(dest, good, 3);
	expect_no_temps(dest);
	expect_stage_empty(dest);
	for (size_t k = 1; k <= 2; k++) {
		char *p = ds_strfmt("%s/%s", dest, files[k].name);
		cr_expect(!ds_exists(p), "%s published despite its MD5", p);
		free(p);
	}
	engine_free_checked(eng);
	ds_batch_free(files, 5, 1);
	rec_fini(&r);
}

/* ---- large MD5 files: no checkpoint, no resume ---- */

#define BIG_SIZE (2 * SSTF_DEFAULT_CHECKPOINT_BYTES + 4099)

/* What the MD5-resume tests record: one file's outcome, and what the
 * progress callback saw in the staging directory while it ran. */
struct big_rec {
	char stage[PATH_MAX];
	atomic_int done;
	int result;
	uint64_t bytes, resumed_from;
	unsigned retries;
	char detail[256];
	atomic_uint progress_calls;
	atomic_uint partials_seen; /* calls that found user.sstfetch.partial */
};

static void big_on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	struct big_rec *b = user;
	b->result = res->result;
	b->bytes = res->bytes;
	b->resumed_from = res->resumed_from;
	b->retries = res->retries;
	snprintf(b->detail, sizeof(b->detail), "%s", res->detail ? res->detail : "");
	atomic_fetch_add(&b->done, 1);
}

/* On the loop thread, between the engine's own steps: does any temporary
 * in DEST/.sstf carry a checkpoint right now? */
static void big_on_progress(void *user, uint64_t gen, const struct sstf_progress *p)
{
	struct big_rec *b = user;
	atomic_fetch_add(&b->progress_calls, 1);
	DIR *d = opendir(b->stage);
	if (!d)
		return;
	struct dirent *de;
	bool seen = false;
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name);
		if (n < 4 || strcmp(de->d_name + n - 4, ".tmp") != 0)
			continue;
		char path[PATH_MAX + 256];
		snprintf(path, sizeof(path), "%s/%s", b->stage, de->d_name);
		if (getxattr(path, SSTF__XATTR_PARTIAL, NULL, 0) >= 0)
			seen = true;
	}
	closedir(d);
	if (seen)
		atomic_fetch_add(&b->partials_seen, 1);
}

/* One file of `big` (one BIG_SIZE file, served from file://) into dest. */
static void big_fetch(const struct dataset *big, enum sstf_digest_kind kind, uint64_t rate,
                      struct big_rec *b)
{
	memset(b, 0, sizeof(*b));
	snprintf(b->stage, sizeof(b->stage), "%s/.sstf", dest);
	char *base = ds_strfmt("file://%s", big->dir);
	struct sstf_file *files = ds_batch_new(big, base, SSTF_DIGEST_XXH3);
	cr_assert_not_null(files);
	if (kind == SSTF_DIGEST_MD5)
		use_md5(&files[0], &big->files[0]);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.buf_size = 64 * KIB;
	cfg.max_transfers = 2;
	cfg.mem_limit = 16 * 64 * KIB;
	cfg.resume = SSTF_ON;
	cfg.rate = rate;
	cfg.progress_interval_ms = 1;
	sstf_engine *eng = NULL;
	cr_assert_eq(test_engine_new(&cfg, &eng), 0);
	char errbuf[256] = "";
	struct sstf_batch batch = {
		.dest_dir = dest, .files = files, .nfiles = 1, .on_file_done = big_on_file,
		.on_progress = big_on_progress, .user = b, .errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	cr_assert_eq(sstf_submit(eng, &batch, &gen), 0, "%s", errbuf);
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT);
	cr_expect_eq(atomic_load(&b->done), 1);
	cr_expect_eq(b->result, 0, "%s", b->detail);
	char why[PATH_MAX + 128];
	cr_expect_eq(ds_check_dest(big, dest, NULL, 1, why, sizeof(why)), 0, "%s", why);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 1, 1);
	free(base);
}

static void big_dataset(struct dataset *big)
{
	uint64_t size = BIG_SIZE;
	cr_assert_eq(ds_create(big, "fetch-md5-big", 1, NULL, &size, 0x3d5), 0);
	/* No user xattrs, no checkpoints for any kind: nothing to tell. */
	char *probe = ds_strfmt("%s/xattr-probe", work);
	cr_assert_eq(ds_write_file(probe, "x", 1), 0);
	int r = setxattr(probe, "user.sstf-probe", "1", 1, 0);
	free(probe);
	if (r < 0 && (errno == ENOTSUP || errno == EOPNOTSUPP)) {
		ds_destroy(big);
		cr_skip_test("no user xattrs under %s", work);
	}
}

Test(fetch, md5_large_file_takes_no_checkpoint, .init = fixture_init, .fini = fixture_fini)
{
	struct dataset big;
	big_dataset(&big);
	/* 64 MiB/s: the 16 MiB file takes about 250 ms, and the progress
	 * callback looks into DEST/.sstf every millisecond or so of it. The
	 * same file verified by XXH3 shows its checkpoint there for the
	 * last half of that (so the look works); by MD5, never. */
	struct big_rec b;
	big_fetch(&big, SSTF_DIGEST_XXH3, 64 * MIB, &b);
	cr_log_info("xxh3: %u progress calls, %u saw a checkpoint",
	            atomic_load(&b.progress_calls), atomic_load(&b.partials_seen));
	cr_expect_gt(atomic_load(&b.partials_seen), 0,
	             "XXH3 control: no checkpoint seen in %u progress calls",
	             atomic_load(&b.progress_calls));
	cr_assert_eq(ds_empty_dir(dest), 0);
	big_fetch(&big, SSTF_DIGEST_MD5, 64 * MIB, &b);
	cr_log_info("md5: %u progress calls, %u saw a checkpoint",
	            atomic_load(&b.progress_calls), atomic_load(&b.partials_seen));
	cr_expect_gt(atomic_load(&b.progress_calls), 10);
	cr_expect_eq(atomic_load(&b.partials_seen), 0, "an MD5 file took a checkpoint");
	ds_destroy(&big);
}

/*
 * What a writer killed mid-fetch leaves (as test_dest's crashed_writer):
 * its unlocked lock file and its temporary holding the first `offset`
 * bytes, with a checkpoint record of `kind` there, its state XXH3's.
 */
static void big_crashed_writer(const struct dataset *big, enum sstf_digest_kind kind,
                               uint64_t offset)
{
	char *stage = ds_strfmt("%s/.sstf", dest);
	cr_assert_eq(ds_mkdirs(stage), 0);
	char *lock = ds_strfmt("%s/00000000deadbeef.lock", stage);
	cr_assert_eq(ds_write_file(lock, "", 0), 0);
	char *tmp = ds_strfmt("%s/00000000deadbeef-0.tmp", stage);
	uint8_t *buf = malloc(offset);
	cr_assert_not_null(buf);
	FILE *src = fopen(big->files[0].path, "rb");
	cr_assert_not_null(src);
	cr_assert_eq(fread(buf, 1, offset, src), offset);
	fclose(src);
	cr_assert_eq(ds_write_file(tmp, buf, offset), 0);
	XXH3_state_t *st = XXH3_createState();
	cr_assert_not_null(st);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, buf, offset);
	struct sstf__entry f = {.name = big->files[0].name, .size = big->files[0].size,
	                       .kind = (uint8_t)kind};
	char hex[33];
	if (kind == SSTF_DIGEST_MD5)
		md5sum_of(big->files[0].path, hex);
	else
		snprintf(hex, sizeof(hex), "%s", big->files[0].xxh3);
	cr_assert_eq(sstf__digest_parse(kind, hex, &f.digest), 0);
	int fd = open(tmp, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	cr_assert_eq(sstf__record_partial_set(fd, &f, offset, st), 0);
	close(fd);
	XXH3_freeState(st);
	free(buf);
	free(tmp);
	free(lock);
	free(stage);
}

Test(fetch, md5_partial_of_a_crashed_writer_is_never_adopted, .init = fixture_init,
     .fini = fixture_fini)
{
	struct dataset big;
	big_dataset(&big);
	uint64_t offset = SSTF_DEFAULT_CHECKPOINT_BYTES;
	/* Control: the same crash of an XXH3 fetch resumes at its checkpoint. */
	struct big_rec b;
	big_crashed_writer(&big, SSTF_DIGEST_XXH3, offset);
	big_fetch(&big, SSTF_DIGEST_XXH3, 0, &b);
	cr_expect_eq(b.resumed_from, offset, "XXH3 control resumed from %llu",
	             (unsigned long long)b.resumed_from);
	cr_expect_eq(b.bytes, BIG_SIZE - offset);
	cr_assert_eq(ds_empty_dir(dest), 0);
	/* MD5: a checkpoint record for it (no build of ours writes one) holds
	 * no state an EVP context could continue from. It is not adopted: no
	 * resume, and no digest mismatch that a resume with a fresh context
	 * would have caused (it would show as a retry). */
	big_crashed_writer(&big, SSTF_DIGEST_MD5, offset);
	big_fetch(&big, SSTF_DIGEST_MD5, 0, &b);
	cr_expect_eq(b.resumed_from, 0, "MD5 resumed from %llu",
	             (unsigned long long)b.resumed_from);
	cr_expect_eq(b.retries, 0, "MD5: %u retries (an adopted partial's mismatch?)",
	             b.retries);
	cr_expect_eq(b.bytes, BIG_SIZE);
	expect_stage_empty(dest);
	ds_destroy(&big);
}

/*
 * OpenSSL without MD5 (a configuration that loads only the base provider,
 * as a FIPS-only one would refuse MD5): MD5 files fail with -ENOTSUP and a
 * detail naming OpenSSL, nothing is published for them, and the XXH3 files
 * of the same batch are fetched. The configuration is read when libcurl
 * first initialises OpenSSL, in sstf_engine_new(): this test's process
 * has not touched OpenSSL before.
 */
Test(fetch, md5_unavailable_in_openssl_fails_those_files_cleanly, .init = fixture_init,
     .fini = fixture_fini)
{
	char *conf = ds_strfmt("%s/openssl-base-only.cnf", work);
	static const char text[] = "openssl_conf = openssl_init\n"
	                           "[openssl_init]\nproviders = provider_sect\n"
	                           "[provider_sect]\nbase = base_sect\n"
	                           "[base_sect]\nactivate = 1\n";
	cr_assert_eq(ds_write_file(conf, text, sizeof(text) - 1), 0);
	cr_assert_eq(setenv("OPENSSL_CONF", conf, 1), 0);
	char out[33];
	int hr = sstf_digest_hex(SSTF_DIGEST_MD5, "abc", 3, out);
	if (hr == 32)
		cr_skip_test("OpenSSL still offers MD5 with %s", conf);
	cr_expect_eq(hr, -ENOTSUP, "sstf_digest_hex: %d", hr);

	size_t idx[] = { idx_of_size(4097), idx_of_size(MIB + 7), idx_of_size(0) };
	struct sstf_file *files = pick(idx, 3, org->base_url, SSTF_DIGEST_XXH3);
	use_md5(&files[0], &ds.files[idx[0]]);
	use_md5(&files[2], &ds.files[idx[2]]);
	sstf_engine *eng = engine_new(1);
	struct rec r;
	int res = run_batch(eng, dest, files, 3, &r);
	cr_expect_eq(res, -ENOTSUP, "batch: %d (%s)", res, sstf_strerror(res));
	for (size_t k = 0; k < 3; k += 2) {
		cr_expect_eq(r.result[k], -ENOTSUP, "%s: %d (%s) %s", r.names[k], r.result[k],
		             sstf_strerror(r.result[k]), r.detail[k]);
		cr_expect(strstr(r.detail[k], "OpenSSL") != NULL, "detail: %s", r.detail[k]);
	}
	cr_expect_eq(r.result[1], 0, "%s: %s", r.names[1], r.detail[1]);
	size_t good[] = { idx[1] };
	expect_dest_is(dest, good, 1);
	expect_no_temps(dest);
	expect_stage_empty(dest);
	engine_free_checked(eng);
	ds_batch_free(files, 3, 1);
	rec_fini(&r);
	unsetenv("OPENSSL_CONF");
	free(conf);
}
