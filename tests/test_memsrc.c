/*
 * Description: the sink and the streams, driven through the memory source
 * (support/memsrc.c) instead of nginx: every delivery size, pause, failure
 * offset and origin misbehaviour is chosen by the test, so each case runs
 * the same way every time.
 *
 * Covered: chunks of 1 byte, of 4095, bs-1, bs+1 and 3*bs+7 bytes (one
 * delivery straddling buffers); a pool of 2 or 3 buffers per transfer, so
 * that the engine pauses the source for buffers, plus the source's own
 * pauses; failures at offset 0, mid-buffer, at a buffer boundary, at the
 * last byte and while the engine has the stream paused, transient ones
 * (the retry starts at the failing offset, the file verifies) and final
 * ones (the file fails with the detail, nothing is left); overrun and short
 * bodies; 404 on one of two mirrors; split files of random sizes over
 * random stream counts; a range that fails midway retries only the rest of
 * its own range; an origin that ignores ranges; cancel while the source
 * holds split streams; failures the source can cause in the sink's phases
 * (CHECK then FETCH, a digest mismatch and its refetch, checkpoints, the
 * retry budget, Retry-After). Every test checks the bytes on disk, the
 * file's report, the attempt log, and that DEST/.sstf is gone or empty.
 *
 * Replay: the randomized test prints its seed; SSTF_MEMSRC_SEED=0x... runs
 * it again with that seed.
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
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/memsrc.h"
#include "support/sanitizers.h"

#define KIB     1024ull
#define MIB     (1024ull * KIB)
#define BS      (64 * KIB) /* every engine's buf_size: the smallest allowed */
#define WAIT_MS 20000      /* hang guard of sstf_wait */
#define MAXF    16

static char *work, *dest, *stage;

/* Heap blocks the tests hand out, freed at teardown. */
static void *kept[512];
static size_t nkept;

static void *keep(void *p)
{
	cr_assert_not_null(p, "out of memory");
	cr_assert_lt(nkept, sizeof(kept) / sizeof(kept[0]));
	kept[nkept++] = p;
	return p;
}

static void setup(void)
{
	int r = memsrc_register();
	cr_assert(r == 0 || r == -EEXIST, "memsrc_register: %d", r);
	memsrc_reset();
	cr_assert_eq(ds_mkdtemp("memsrc", &work), 0);
	dest = ds_strfmt("%s/dest", work);
	stage = ds_strfmt("%s/" SSTF__STAGE_DIR, dest);
	cr_assert(dest && stage);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void teardown(void)
{
	if (work)
		ds_rmtree(work);
	free(work);
	free(dest);
	free(stage);
	work = dest = stage = NULL;
	for (size_t i = 0; i < nkept; i++)
		free(kept[i]);
	nkept = 0;
	memsrc_reset();
}

TestSuite(memsrc, .init = setup, .fini = teardown, .timeout = 60);

/* ------------------------------------------------------------------------ */
/* Objects                                                                  */

struct obj {
	const char *name; /* its name in the batch and its path in mem:// */
	uint8_t *data;
	uint64_t size;
	char hex[33]; /* XXH3 */
};

static uint64_t splitmix(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* An object of `size` pseudo-random bytes, registered with the source. */
static struct obj *obj_new(const char *name, uint64_t size, uint64_t seed)
{
	struct obj *o = keep(calloc(1, sizeof(*o)));
	o->name = keep(strdup(name));
	o->data = keep(malloc(size ? size : 1));
	o->size = size;
	uint64_t x = seed ^ (size * 0x100000001b3ull);
	for (uint64_t i = 0; i < size; i += 8) {
		uint64_t v = splitmix(&x);
		size_t n = size - i < 8 ? (size_t)(size - i) : 8;
		memcpy(o->data + i, &v, n);
	}
	cr_assert_eq(sstf_digest_hex(SSTF_DIGEST_XXH3, o->data, size, o->hex), 16);
	cr_assert_eq(memsrc_put(name, o->data, size), 0);
	return o;
}

static const char *url_of(const char *host, const struct obj *o)
{
	return keep(ds_strfmt("mem://%s/%s", host, o->name));
}

/* A batch entry for o at one host. */
static struct sstf_file entry(const struct obj *o, const char *host)
{
	struct sstf_file f;
	memset(&f, 0, sizeof(f));
	f.name = o->name;
	f.url = url_of(host, o);
	f.size = o->size;
	f.digest_kind = SSTF_DIGEST_XXH3;
	f.digest_hex = o->hex;
	return f;
}

/* A batch entry for o at n mirrors, in order. */
static struct sstf_file entry_mirrors(const struct obj *o, const char *const *hosts, size_t n)
{
	struct sstf_file f = entry(o, hosts[0]);
	const char **urls = keep(calloc(n, sizeof(*urls)));
	for (size_t i = 0; i < n; i++)
		urls[i] = url_of(hosts[i], o);
	f.url = NULL;
	f.urls = urls;
	f.nurls = n;
	return f;
}

static void host(const char *name, const struct memsrc_profile *p)
{
	cr_assert_eq(memsrc_host(name, p), 0);
}

/* ------------------------------------------------------------------------ */
/* Engines and what they report                                             */

static struct sstf_config config(unsigned transfers, unsigned nbufs)
{
	struct sstf_config c;
	memset(&c, 0, sizeof(c));
	c.max_transfers = transfers;
	c.buf_size = BS;
	c.mem_limit = (size_t)nbufs * BS;
	return c;
}

static sstf_engine *engine_new(const struct sstf_config *c)
{
	sstf_engine *eng = NULL;
	int err = test_engine_new(c, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	return eng;
}

/* Peak buffers within the pool, then free and look for leaks. */
static void engine_free_checked(sstf_engine *eng)
{
	struct sstf_stats st;
	cr_assert_eq(sstf_stats(eng, &st), 0);
	cr_expect_leq(st.buffers_peak, st.buffers_total, "peak %" PRIu64 " of %" PRIu64 " buffers",
	              st.buffers_peak, st.buffers_total);
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
}

struct fres {
	unsigned calls;
	int result;
	int http_status;
	uint64_t bytes;
	unsigned retries;
	unsigned streams;
	unsigned nmirrors;
	uint64_t mirror_bytes[SSTF_MAX_MIRRORS];
	char detail[192];
};

struct rec {
	pthread_mutex_t mu;
	struct fres f[MAXF];
	unsigned file_calls;
	unsigned batch_calls;
	int batch_result;
};

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	r->batch_result = 1;
	for (size_t i = 0; i < MAXF; i++)
		r->f[i].result = 1;
}

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	r->file_calls++;
	if (res->index < MAXF) {
		struct fres *f = &r->f[res->index];
		f->calls++;
		f->result = res->result;
		f->http_status = res->http_status;
		f->bytes = res->bytes;
		f->retries = res->retries;
		f->streams = res->streams;
		f->nmirrors = res->nmirrors;
		for (unsigned i = 0; i < res->nmirrors && i < SSTF_MAX_MIRRORS; i++)
			f->mirror_bytes[i] = res->mirror_bytes[i];
		snprintf(f->detail, sizeof(f->detail), "%s", res->detail);
	}
	pthread_mutex_unlock(&r->mu);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	r->batch_calls++;
	r->batch_result = result;
	pthread_mutex_unlock(&r->mu);
}

static uint64_t submit(sstf_engine *eng, const struct sstf_file *files, size_t n, struct rec *r)
{
	char errbuf[512] = "";
	struct sstf_batch b;
	memset(&b, 0, sizeof(b));
	b.dest_dir = dest;
	b.files = files;
	b.nfiles = n;
	b.on_file_done = on_file;
	b.on_batch_done = on_batch;
	b.user = r;
	b.errbuf = errbuf;
	b.errbuf_len = sizeof(errbuf);
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	return gen;
}

/* Waits for gen; a hang dumps the attempt log and fails the test (the
 * engine is then left alone: its loop may be stuck). */
static int wait_gen(sstf_engine *eng, uint64_t gen, int ms)
{
	int res = sstf_wait(eng, gen, ms);
	if (res == -ETIMEDOUT)
		memsrc_log_dump("the generation did not end");
	cr_assert_neq(res, -ETIMEDOUT, "generation %" PRIu64 " did not end within %d ms", gen, ms);
	return res;
}

/* Fetches the files as one batch; checks that every file was reported
 * once and that the batch agrees with sstf_wait. */
static int fetch(sstf_engine *eng, const struct sstf_file *files, size_t n, struct rec *r)
{
	cr_assert_leq(n, MAXF);
	rec_init(r);
	int res = wait_gen(eng, submit(eng, files, n, r), WAIT_MS);
	pthread_mutex_lock(&r->mu);
	cr_expect_eq(r->batch_calls, 1, "%u batch reports", r->batch_calls);
	cr_expect_eq(r->batch_result, res, "on_batch_done %d, sstf_wait %d", r->batch_result, res);
	cr_expect_eq(r->file_calls, n, "%u file reports for %zu files", r->file_calls, n);
	for (size_t i = 0; i < n; i++)
		cr_expect_eq(r->f[i].calls, 1, "file %zu reported %u times", i, r->f[i].calls);
	pthread_mutex_unlock(&r->mu);
	return res;
}

/* One file alone; its report in *out. */
static int fetch_one(sstf_engine *eng, struct sstf_file f, struct fres *out)
{
	struct rec r;
	int res = fetch(eng, &f, 1, &r);
	*out = r.f[0];
	pthread_mutex_destroy(&r.mu);
	cr_expect_eq(out->result, res, "file result %d, batch %d", out->result, res);
	return res;
}

/* ------------------------------------------------------------------------ */
/* What the destination holds                                               */

static char *dest_path(const char *name)
{
	return keep(ds_strfmt("%s/%s", dest, name));
}

/* dest/NAME holds exactly o's bytes. */
static void expect_file(const struct obj *o)
{
	const char *p = dest_path(o->name);
	int fd = open(p, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
	struct stat st;
	cr_assert_eq(fstat(fd, &st), 0);
	cr_expect_eq((uint64_t)st.st_size, o->size, "%s: %" PRIu64 " bytes, expected %" PRIu64, p,
	             (uint64_t)st.st_size, o->size);
	uint8_t *buf = malloc(o->size ? o->size : 1);
	cr_assert_not_null(buf);
	ssize_t n = pread(fd, buf, o->size, 0);
	close(fd);
	cr_assert_eq((uint64_t)n, o->size, "%s: read %zd bytes", p, n);
	if (memcmp(buf, o->data, o->size) != 0) {
		uint64_t i = 0;
		while (buf[i] == o->data[i])
			i++;
		free(buf);
		cr_assert_fail("%s differs from the object at byte %" PRIu64, p, i);
	}
	free(buf);
}

static void expect_absent(const struct obj *o)
{
	const char *p = dest_path(o->name);
	cr_expect(!ds_exists(p), "%s was published", p);
}

/* DEST/.sstf is gone or empty, and no temporary lies anywhere else. */
static void expect_no_temps(void)
{
	DIR *d = opendir(stage);
	if (d) {
		struct dirent *de;
		while ((de = readdir(d))) {
			if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
				cr_expect_fail("%s/%s was left behind", stage, de->d_name);
		}
		closedir(d);
	} else {
		cr_expect_eq(errno, ENOENT, "%s: %s", stage, strerror(errno));
	}
	/* Outside the staging directory nothing may look like ours. */
	char first[PATH_MAX] = "";
	int n = ds_count_temps(dest, first, sizeof(first));
	int in_stage = ds_exists(stage);
	cr_expect_eq(n, in_stage, "%d temporary-looking entries under %s, e.g. %s", n - in_stage,
	             dest, first);
}

/* ------------------------------------------------------------------------ */
/* The attempt log                                                          */

static struct memsrc_attempt attempt(size_t i)
{
	struct memsrc_attempt a;
	cr_assert(memsrc_log_get(i, &a), "no attempt #%zu (%zu logged)", i, memsrc_log_len());
	return a;
}

/* The first attempt from `from` with this outcome (any host), or SIZE_MAX. */
static size_t find_outcome(size_t from, enum memsrc_outcome o)
{
	for (size_t i = from; i < memsrc_log_len(); i++)
		if (attempt(i).outcome == o)
			return i;
	return SIZE_MAX;
}

#define expect_log(cond, ...)                                                                      \
	do {                                                                                       \
		if (!(cond))                                                                       \
			memsrc_log_dump(#cond);                                                    \
		cr_expect(cond, __VA_ARGS__);                                                      \
	} while (0)

/* ------------------------------------------------------------------------ */
/* Deliveries: chunk sizes                                                  */

Test(memsrc, one_byte_chunks_verify)
{
	struct obj *big = obj_new("one/big.sst", 3 * BS + 1234, 1);
	struct obj *one = obj_new("one/one.sst", 1, 2);
	struct obj *empty = obj_new("one/empty.sst", 0, 3);
	host("bytes", &(struct memsrc_profile){.chunk = 1});
	struct sstf_config c = config(2, 8);
	sstf_engine *eng = engine_new(&c);
	struct sstf_file files[] = {entry(big, "bytes"), entry(one, "bytes"),
	                            entry(empty, "bytes")};
	struct rec r;
	int res = fetch(eng, files, 3, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.f[0].detail);
	const struct obj *o[] = {big, one, empty};
	for (size_t i = 0; i < 3; i++) {
		cr_expect_eq(r.f[i].result, 0, "%s: %s", o[i]->name, r.f[i].detail);
		cr_expect_eq(r.f[i].bytes, o[i]->size);
		cr_expect_eq(r.f[i].nmirrors, 1);
		cr_expect_eq(r.f[i].mirror_bytes[0], o[i]->size);
		cr_expect_eq(r.f[i].retries, 0);
		expect_file(o[i]);
	}
	/* One request each, from byte 0, no range, and no byte twice. */
	cr_expect_eq(memsrc_attempts(NULL), 3);
	cr_expect_eq(memsrc_served("bytes"), big->size + 1);
	for (size_t i = 0; i < memsrc_log_len(); i++) {
		struct memsrc_attempt a = attempt(i);
		expect_log(a.pos == 0 && !a.ranged && a.outcome == MEMSRC_DONE, "attempt %zu", i);
	}
	expect_no_temps();
	engine_free_checked(eng);
}

/* Chunks that straddle buffers, through the copy path and the pool-read
 * path, with O_DIRECT (where /tmp takes it) and buffered writes. */
static void straddle(enum sstf_switch direct, bool pool_reads)
{
	static const size_t chunks[] = {BS - 1, BS + 1, 3 * BS + 7, 4095, 4097};
	enum { N = sizeof(chunks) / sizeof(chunks[0]) };
	struct obj *o[N];
	struct sstf_file files[N];
	for (size_t i = 0; i < N; i++) {
		char name[32], h[16];
		snprintf(name, sizeof(name), "straddle/%zu.sst", i);
		snprintf(h, sizeof(h), "h%zu", i);
		o[i] = obj_new(name, 7 * BS + 4321 + 1000 * i, 10 + i);
		host(h, &(struct memsrc_profile){.chunk = chunks[i], .pool_reads = pool_reads});
		files[i] = entry(o[i], h);
	}
	struct sstf_config c = config(3, 6);
	c.direct_io = direct;
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	int res = fetch(eng, files, N, &r);
	cr_expect_eq(res, 0, "%s", sstf_strerror(res));
	for (size_t i = 0; i < N; i++) {
		cr_expect_eq(r.f[i].result, 0, "chunk %zu: %s: %s", chunks[i],
		             sstf_strerror(r.f[i].result), r.f[i].detail);
		if (r.f[i].result == 0)
			expect_file(o[i]);
		char h[16];
		snprintf(h, sizeof(h), "h%zu", i);
		cr_expect_eq(memsrc_attempts(h), 1, "%s: %u attempts", h, memsrc_attempts(h));
		cr_expect_eq(memsrc_served(h), o[i]->size);
	}
	cr_expect_eq(memsrc_attempts(NULL), N, "%u attempts", memsrc_attempts(NULL));
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, chunks_straddle_buffers_direct)
{
	straddle(SSTF_DEFAULT, false);
}

Test(memsrc, chunks_straddle_buffers_buffered)
{
	straddle(SSTF_OFF, false);
}

Test(memsrc, pool_reads_of_partial_buffers_buffered)
{
	straddle(SSTF_OFF, true);
}

Test(memsrc, pool_reads_of_partial_buffers_direct)
{
	straddle(SSTF_DEFAULT, true);
}

/* ------------------------------------------------------------------------ */
/* Pauses: a pool of 2 or 3 buffers per transfer, and the source's own      */

static void tiny_pool(unsigned transfers, unsigned per_transfer, size_t chunk)
{
	struct memsrc_profile p = {.chunk = chunk, .pause_every = 3, .pause_turns = 5};
	host("tiny", &p);
	struct obj *o[4];
	struct sstf_file files[4];
	for (size_t i = 0; i < 4; i++) {
		char name[32];
		snprintf(name, sizeof(name), "tiny/%zu.sst", i);
		o[i] = obj_new(name, MIB + 4097 + 3 * i, 20 + i);
		files[i] = entry(o[i], "tiny");
	}
	struct sstf_config c = config(transfers, transfers * per_transfer);
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	int res = fetch(eng, files, 4, &r);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.f[0].detail);
	for (size_t i = 0; i < 4; i++) {
		cr_expect_eq(r.f[i].result, 0, "%s: %s", o[i]->name, r.f[i].detail);
		expect_file(o[i]);
	}
	/* The engine ran out of buffers, and the source paused by itself. */
	cr_expect_gt(memsrc_engine_pauses("tiny"), 0, "the engine never paused the source");
	cr_expect_gt(memsrc_source_pauses("tiny"), 0);
	/* Paused bytes came again after resume; none was taken twice. */
	cr_expect_eq(memsrc_served("tiny"), 4 * (MIB + 4097) + 3 * 6, "%" PRIu64 " bytes served",
	             memsrc_served("tiny"));
	cr_expect_eq(memsrc_attempts(NULL), 4);
	struct sstf_stats st;
	cr_assert_eq(sstf_stats(eng, &st), 0);
	cr_expect_eq(st.buffers_total, transfers * per_transfer * test_loops());
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, tiny_pool_two_buffers_one_transfer)
{
	tiny_pool(1, 2, BS + 1);
}

Test(memsrc, tiny_pool_three_buffers_two_transfers)
{
	tiny_pool(2, 3, 3 * BS + 7);
}

Test(memsrc, tiny_pool_two_buffers_odd_chunks_two_transfers)
{
	tiny_pool(2, 2, 4095);
}

/* ------------------------------------------------------------------------ */
/* Failures at chosen offsets                                               */

#define SIZE_FAIL (5 * BS + 777)

/*
 * A transient failure at `at` on the first attempt: one retry, which asks
 * for the rest from exactly `at`; the file verifies and no byte comes
 * twice.
 */
static void transient_at(uint64_t at, size_t chunk, uint64_t retry_after_ms)
{
	struct obj *o = obj_new("t.sst", SIZE_FAIL, at + 7);
	struct memsrc_profile p = {.chunk = chunk};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = at, .transient = true, .times = 1, .retry_after_ms = retry_after_ms};
	host("flaky", &p);
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "flaky"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_eq(f.retries, 1, "%u retries", f.retries);
	cr_expect_eq(memsrc_attempts(NULL), 2);
	struct memsrc_attempt a0 = attempt(0), a1 = attempt(1);
	expect_log(a0.pos == 0 && a0.end == o->size && a0.outcome == MEMSRC_FAILED &&
	               a0.reached == at,
	           "first attempt: [%" PRIu64 ", %" PRIu64 ") reached %" PRIu64, a0.pos, a0.end,
	           a0.reached);
	expect_log(a1.pos == at && a1.end == o->size && a1.ranged == (at != 0) &&
	               a1.outcome == MEMSRC_DONE,
	           "the retry asked for [%" PRIu64 ", %" PRIu64 "), expected [%" PRIu64 ", %" PRIu64
	           ")",
	           a1.pos, a1.end, at, o->size);
	cr_expect_eq(memsrc_served(NULL), o->size, "%" PRIu64 " bytes served", memsrc_served(NULL));
	cr_expect_eq(f.bytes, o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, transient_error_at_offset_0_retries_from_0)
{
	transient_at(0, 4095, 1);
}

Test(memsrc, transient_error_mid_buffer_resumes_there)
{
	transient_at(BS / 2 + 3, 4095, 1);
}

Test(memsrc, transient_error_at_buffer_boundary_resumes_there)
{
	transient_at(2 * BS, BS + 1, 1);
}

Test(memsrc, transient_error_at_last_byte_resumes_there)
{
	transient_at(SIZE_FAIL - 1, 3 * BS + 7, 0); /* the engine's own backoff */
}

/* A final failure at `at`: the file fails with its error and detail; no
 * file and no temporary. */
static void final_at(uint64_t at, int err, int status, const char *detail)
{
	struct obj *o = obj_new("f.sst", SIZE_FAIL, at + 9);
	struct memsrc_profile p = {.chunk = 5000};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = at, .err = err, .status = status, .detail = detail};
	host("broken", &p);
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "broken"), &f);
	int want = err ? err : -SSTF_ETRANSFER;
	cr_expect_eq(res, want, "result %d (%s), expected %d", res, sstf_strerror(res), want);
	cr_expect(strstr(f.detail, detail) != NULL, "detail '%s', expected '%s'", f.detail, detail);
	cr_expect_eq(f.http_status, status);
	cr_expect_eq(f.retries, 0);
	cr_expect_eq(memsrc_attempts(NULL), 1);
	cr_expect_eq(attempt(0).reached, at);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, final_error_at_offset_0_fails_the_file)
{
	final_at(0, -SSTF_EHTTP, 403, "HTTP 403");
}

Test(memsrc, final_error_mid_buffer_fails_the_file)
{
	final_at(BS + 4321, 0, 0, "connection reset by memsrc");
}

Test(memsrc, final_error_at_buffer_boundary_fails_the_file)
{
	final_at(3 * BS, -EIO, 0, "boundary failure");
}

Test(memsrc, final_error_at_last_byte_fails_the_file)
{
	final_at(SIZE_FAIL - 1, 0, 0, "last byte lost");
}

/* A transient failure after every byte of the file arrived: nothing is
 * missing, so the file must verify (with HTTP, asking for an empty range
 * "SIZE-" is a 416). */
Test(memsrc, transient_error_after_the_last_byte_still_verifies)
{
	struct obj *o = obj_new("end.sst", SIZE_FAIL, 77);
	struct memsrc_profile p = {.chunk = 4095};
	p.fail[0] = (struct memsrc_fail){.on = true,
	                                 .at = SIZE_FAIL,
	                                 .after_body = true,
	                                 .transient = true,
	                                 .times = 1,
	                                 .retry_after_ms = 1};
	host("tail", &p);
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "tail"), &f);
	expect_log(res == 0, "%s: %s (a whole body, then a transient error)", sstf_strerror(res),
	           f.detail);
	if (res == 0)
		expect_file(o);
	for (size_t i = 1; i < memsrc_log_len(); i++) {
		struct memsrc_attempt a = attempt(i);
		expect_log(a.pos < a.end,
		           "attempt %zu asked for the empty range [%" PRIu64 ", %" PRIu64 ")", i,
		           a.pos, a.end);
	}
	expect_no_temps();
	engine_free_checked(eng);
}

/* The same after the last byte of a range inside a split file: the range
 * is whole, so no request for an empty range (which http.c would send as
 * "E-(E-1)", ignored by servers: a whole body, and a needless fall back to
 * one stream). */
Test(memsrc, transient_error_after_the_end_of_a_range_needs_no_new_request)
{
	struct obj *o = obj_new("endr.sst", MIB + 4321, 78);
	uint64_t part = 128 * KIB;
	struct memsrc_profile p = {.chunk = 4095};
	p.fail[0] = (struct memsrc_fail){.on = true,
	                                 .at = 2 * part,
	                                 .after_body = true,
	                                 .transient = true,
	                                 .times = 1,
	                                 .retry_after_ms = 1};
	host("tailr", &p);
	struct sstf_config c = config(4, 16);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "tailr"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	size_t i = find_outcome(0, MEMSRC_FAILED);
	cr_assert_neq(i, SIZE_MAX, "no attempt failed");
	expect_log(attempt(i).pos == part && attempt(i).end == 2 * part, "the failing range");
	for (size_t k = 0; k < memsrc_log_len(); k++) {
		struct memsrc_attempt a = attempt(k);
		expect_log(a.pos < a.end,
		           "attempt %zu asked for the empty range [%" PRIu64 ", %" PRIu64 ")", k,
		           a.pos, a.end);
	}
	expect_log(find_outcome(0, MEMSRC_WHOLE_BODY) == SIZE_MAX,
	           "a whole body was sent: the file fell back to one stream");
	cr_expect_eq(memsrc_served(NULL), o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* A transient failure while the engine has the stream paused for buffers:
 * the retry starts where the paused attempt stood. (The retry waits 200 ms,
 * so that the buffer the stream waited for is free well before it.) */
Test(memsrc, transient_error_while_paused_resumes_there)
{
	struct obj *o = obj_new("p.sst", 6 * BS + 99, 5);
	struct memsrc_profile p = {.chunk = BS + 1};
	p.fail[0] = (struct memsrc_fail){.on = true,
	                                 .at = BS,
	                                 .while_paused = true,
	                                 .transient = true,
	                                 .times = 1,
	                                 .retry_after_ms = 200};
	host("paused", &p);
	struct sstf_config c = config(1, 2);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "paused"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_eq(f.retries, 1);
	struct memsrc_attempt a0 = attempt(0), a1 = attempt(1);
	expect_log(a0.outcome == MEMSRC_FAILED && a0.failed_paused, "the failure was not paused");
	expect_log(a1.pos == a0.reached && a1.end == o->size,
	           "the retry asked for [%" PRIu64 ", %" PRIu64 "), the failure was at %" PRIu64,
	           a1.pos, a1.end, a0.reached);
	cr_expect_eq(memsrc_served(NULL), o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* A rate-limited fetch, no failure: the stream pauses for tokens, and the
 * loop must wake it when they are there (it has nothing else to wait for:
 * the writes are done, the source is paused). */
Test(memsrc, rate_limited_fetch_completes)
{
	struct obj *o = obj_new("rl.sst", 600 * KIB + 3, 8);
	host("rated", &(struct memsrc_profile){.chunk = 4095});
	struct sstf_config c = config(1, 4);
	c.rate = 2 * MIB; /* a burst of 256 KiB, then ~2 KiB a millisecond: ~0.2 s */
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	rec_init(&r);
	struct sstf_file f = entry(o, "rated");
	uint64_t gen = submit(eng, &f, 1, &r);
	int res = sstf_wait(eng, gen, 5000);
	if (res == -ETIMEDOUT)
		fprintf(stderr,
		        "rate: %" PRIu64 " of %" PRIu64 " bytes served, %u pauses, then "
		        "nothing for 5 s\n",
		        memsrc_served(NULL), o->size, memsrc_engine_pauses(NULL));
	cr_assert_neq(res, -ETIMEDOUT,
	              "the rate-limited fetch stalled: %" PRIu64 " of %" PRIu64 " bytes",
	              memsrc_served(NULL), o->size);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.f[0].detail);
	cr_expect_gt(memsrc_engine_pauses("rated"), 0, "the rate limit never paused the stream");
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* Wakes an engine's loop every 5 ms (sstf_set_rate with the same rate
 * wakes it), as curl's own timers would for HTTP: a test that is not about
 * the lost wake-up above is not stopped by it. */
struct heartbeat {
	sstf_engine *eng;
	uint64_t rate;
	_Atomic bool stop;
	pthread_t thread;
};

static void *heartbeat_main(void *arg)
{
	struct heartbeat *h = arg;
	while (!atomic_load(&h->stop)) {
		sstf_set_rate(h->eng, h->rate);
		usleep(5000);
	}
	return NULL;
}

static void heartbeat_start(struct heartbeat *h, sstf_engine *eng, uint64_t rate)
{
	h->eng = eng;
	h->rate = rate;
	atomic_init(&h->stop, false);
	cr_assert_eq(pthread_create(&h->thread, NULL, heartbeat_main, h), 0);
}

static void heartbeat_stop(struct heartbeat *h)
{
	atomic_store(&h->stop, true);
	pthread_join(h->thread, NULL);
}

/* The same while the stream waits for tokens of the rate limit. */
Test(memsrc, transient_error_while_waiting_for_rate_tokens_resumes_there)
{
	struct obj *o = obj_new("rt.sst", 600 * KIB + 3, 7);
	struct memsrc_profile p = {.chunk = 4095};
	/* At a buffer's end: its write is in flight when the failure comes. */
	p.fail[0] = (struct memsrc_fail){.on = true,
	                                 .at = 5 * BS,
	                                 .while_paused = true,
	                                 .transient = true,
	                                 .times = 1,
	                                 .retry_after_ms = 200};
	host("rated", &p);
	struct sstf_config c = config(1, 4);
	c.rate = 2 * MIB; /* a burst of 256 KiB, then ~2 KiB a millisecond */
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	rec_init(&r);
	struct sstf_file e1 = entry(o, "rated");
	struct heartbeat hb;
	heartbeat_start(&hb, eng, c.rate);
	uint64_t gen = submit(eng, &e1, 1, &r);
	int res = sstf_wait(eng, gen, 5000);
	heartbeat_stop(&hb);
	res = wait_gen(eng, gen, 1);
	struct fres f = r.f[0];
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_gt(memsrc_engine_pauses("rated"), 0, "the rate limit never paused the stream");
	size_t i = find_outcome(0, MEMSRC_FAILED);
	cr_assert_neq(i, SIZE_MAX, "no failure while paused");
	struct memsrc_attempt a0 = attempt(i);
	expect_log(a0.failed_paused, "the failure was not paused");
	expect_log(memsrc_log_len() == 2 && attempt(1).pos == a0.reached,
	           "the retry did not start where the paused attempt stood");
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, final_error_while_paused_fails_the_file)
{
	struct obj *o = obj_new("p.sst", 6 * BS + 99, 6);
	struct memsrc_profile p = {.chunk = BS + 1};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = 2 * BS, .while_paused = true, .detail = "reset while paused"};
	host("paused", &p);
	struct sstf_config c = config(1, 2);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "paused"), &f);
	cr_expect_eq(res, -SSTF_ETRANSFER, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, "reset while paused"), "detail '%s'", f.detail);
	expect_log(attempt(0).failed_paused, "the failure was not paused");
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/*
 * Split, two streams, one URL. The source holds the frontier stream at
 * byte 1000 (absolute), so the other one runs ahead until the window
 * (half the pool) is full, and the engine pauses it for buffers. It then
 * fails, transiently, while paused. The retry must wait like any other;
 * once the hold is released, the file verifies.
 */
static struct obj *ahead_setup(uint64_t retry_after_ms, sstf_engine **eng)
{
	struct obj *o = obj_new("ahead.sst", MIB + 4321, 31);
	struct memsrc_profile p = {.chunk = 4096 + 7, .hold = true, .hold_at = 1000};
	/* Parts are 128 KiB (4 buffers of window / 2 streams): the third
	 * part, from 256 KiB, is the first one the window holds back. */
	p.fail[0] = (struct memsrc_fail){.on = true,
	                                 .at = 384 * KIB,
	                                 .while_paused = true,
	                                 .transient = true,
	                                 .times = 1,
	                                 .retry_after_ms = retry_after_ms};
	host("win", &p);
	struct sstf_config c = config(2, 8);
	c.split = 2;
	c.split_min = MIB;
	*eng = engine_new(&c);
	return o;
}

/* Polls until the source injected n failures; false after ~5 s. */
static bool wait_failures(unsigned n)
{
	for (int i = 0; i < 5000 && memsrc_failures(NULL) < n; i++)
		usleep(1000);
	return memsrc_failures(NULL) >= n;
}

Test(memsrc, transient_error_while_paused_ahead_of_frontier_then_verifies)
{
	sstf_engine *eng;
	struct obj *o = ahead_setup(1, &eng);
	struct rec r;
	rec_init(&r);
	struct sstf_file f = entry(o, "win");
	uint64_t gen = submit(eng, &f, 1, &r);
	cr_assert_eq(memsrc_wait_held(1, 5000), 0, "the frontier stream never held");
	bool failed = wait_failures(1);
	if (!failed)
		memsrc_log_dump("no failure while paused");
	cr_assert(failed, "the stream ahead never failed while paused");
	usleep(20000); /* its retry (1 ms) is due, and runs into the window */
	memsrc_release();
	int res = wait_gen(eng, gen, 2000);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.f[0].detail);
	struct memsrc_attempt a;
	size_t i = find_outcome(0, MEMSRC_FAILED);
	cr_assert_neq(i, SIZE_MAX);
	a = attempt(i);
	expect_log(a.failed_paused, "the failure was not while paused");
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* The same, but the retry waits 30 s (Retry-After) and the generation is
 * cancelled meanwhile: nothing is left, and the engine stays sound. */
Test(memsrc, cancel_while_retry_of_paused_stream_waits)
{
	sstf_engine *eng;
	struct obj *o = ahead_setup(30000, &eng);
	struct rec r;
	rec_init(&r);
	struct sstf_file f = entry(o, "win");
	uint64_t gen = submit(eng, &f, 1, &r);
	cr_assert_eq(memsrc_wait_held(1, 5000), 0, "the frontier stream never held");
	cr_assert(wait_failures(1), "the stream ahead never failed while paused");
	cr_expect_eq(sstf_cancel(eng, gen), 0);
	cr_expect_eq(wait_gen(eng, gen, 5000), -ECANCELED);
	expect_absent(o);
	expect_no_temps();
	/* The engine goes on: a second file on a clean host. */
	struct obj *o2 = obj_new("after.sst", 3 * BS + 5, 32);
	struct fres f2;
	int res = fetch_one(eng, entry(o2, "clean"), &f2);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f2.detail);
	if (res == 0)
		expect_file(o2);
	expect_no_temps();
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Bodies of the wrong length                                               */

static void wrong_length(struct memsrc_profile p, bool split, const char *detail_has)
{
	struct obj *o = obj_new("len.sst", split ? MIB + 3333 : 4 * BS + 11, 40);
	host("len", &p);
	struct sstf_config c = config(4, 16);
	if (split) {
		c.split = 4;
		c.split_min = MIB;
	}
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "len"), &f);
	cr_expect_eq(res, -SSTF_ESIZE, "%d %s: %s", res, sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, detail_has), "detail '%s', expected '%s'", f.detail, detail_has);
	cr_expect_eq(f.retries, 0);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, overrun_of_the_object_fails_esize)
{
	wrong_length((struct memsrc_profile){.chunk = 1000, .overrun = 5}, false,
	             "origin sent more than the expected");
}

Test(memsrc, overrun_by_one_byte_in_one_byte_chunks_fails_esize)
{
	wrong_length((struct memsrc_profile){.chunk = 1, .overrun = 1}, false,
	             "origin sent more than the expected");
	/* The stream layer ended the attempt itself when it refused the
	 * byte: the source only stopped, and had nothing to end. */
	cr_expect_eq(memsrc_refused_ends(), 0);
}

/* The whole body and more in the first delivery, before any write is in
 * flight, from a source that does what internal.h says of -1 ("the
 * attempt is ended for the source, which only has to stop"): it stops and
 * never calls sstf__stream_end. The file must still end, with ESIZE. */
Test(memsrc, overrun_in_first_delivery_from_a_source_that_only_stops)
{
	struct obj *o = obj_new("ov.sst", 1000, 43);
	host("lit", &(struct memsrc_profile){.overrun = 5, .refuse_just_stops = true});
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	rec_init(&r);
	struct sstf_file f = entry(o, "lit");
	uint64_t gen = submit(eng, &f, 1, &r);
	int res = wait_gen(eng, gen, 1500);
	cr_expect_eq(res, -SSTF_ESIZE, "%s: %s", sstf_strerror(res), r.f[0].detail);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, overrun_of_a_range_fails_esize)
{
	wrong_length((struct memsrc_profile){.chunk = 3000, .overrun = 10}, true,
	             "origin sent more than the");
}

Test(memsrc, overrun_through_pool_reads_fails_esize)
{
	wrong_length((struct memsrc_profile){.chunk = BS, .overrun = 5, .pool_reads = true}, false,
	             "origin sent more than the expected");
}

Test(memsrc, short_body_fails_esize)
{
	wrong_length((struct memsrc_profile){.chunk = 4095, .short_by = 100}, false, "received");
}

Test(memsrc, short_range_fails_esize)
{
	wrong_length((struct memsrc_profile){.chunk = 4095, .short_by = 1}, true, "range");
}

/* ------------------------------------------------------------------------ */
/* Mirrors                                                                  */

Test(memsrc, not_found_on_one_mirror_all_bytes_from_the_other)
{
	struct obj *o = obj_new("m.sst", 5 * BS + 12345, 50);
	host("gone", &(struct memsrc_profile){.not_found = true});
	host("good", &(struct memsrc_profile){.chunk = 7000});
	const char *hosts[] = {"gone", "good"};
	struct sstf_config c = config(2, 8);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry_mirrors(o, hosts, 2), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_eq(f.nmirrors, 2);
	cr_expect_eq(f.mirror_bytes[0], 0, "%" PRIu64 " bytes from the 404 mirror",
	             f.mirror_bytes[0]);
	cr_expect_eq(f.mirror_bytes[1], o->size);
	cr_expect_eq(memsrc_attempts("gone"), 1);
	cr_expect_eq(memsrc_served("gone"), 0);
	cr_expect_eq(memsrc_served("good"), o->size);
	struct memsrc_attempt a0 = attempt(0), a1 = attempt(1);
	expect_log(!strcmp(a0.host, "gone") && a0.outcome == MEMSRC_NOT_FOUND, "first attempt");
	expect_log(!strcmp(a1.host, "good") && a1.pos == 0 && a1.outcome == MEMSRC_DONE,
	           "second attempt");
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, not_found_on_one_mirror_of_a_split_file)
{
	struct obj *o = obj_new("ms.sst", 2 * MIB + 999, 51);
	host("gone", &(struct memsrc_profile){.not_found = true});
	host("good", &(struct memsrc_profile){.chunk = 9999});
	const char *hosts[] = {"good", "gone"}; /* stream 2 starts on "gone" */
	struct sstf_config c = config(4, 16);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry_mirrors(o, hosts, 2), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_gt(f.streams, 1, "%u streams", f.streams);
	cr_expect_eq(f.mirror_bytes[1], 0);
	cr_expect_eq(f.mirror_bytes[0], o->size);
	cr_expect_geq(memsrc_attempts("gone"), 1, "no stream ever tried the 404 mirror");
	cr_expect_eq(memsrc_served("good"), o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, not_found_on_every_mirror_fails)
{
	struct obj *o = obj_new("m.sst", 3 * BS, 52);
	host("a", &(struct memsrc_profile){.not_found = true});
	host("b", &(struct memsrc_profile){.not_found = true});
	const char *hosts[] = {"a", "b"};
	struct sstf_config c = config(2, 8);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry_mirrors(o, hosts, 2), &f);
	cr_expect_eq(res, -SSTF_EHTTP, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_eq(f.http_status, 404);
	cr_expect(strstr(f.detail, "every one of the 2 mirrors"), "detail '%s'", f.detail);
	cr_expect_eq(memsrc_attempts(NULL), 2);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Split files                                                              */

static uint64_t test_seed(void)
{
	const char *s = getenv("SSTF_MEMSRC_SEED");
	if (s && *s)
		return strtoull(s, NULL, 0);
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
}

Test(memsrc, split_random_sizes_and_counts_byte_identical)
{
	uint64_t seed = test_seed();
	fprintf(stderr, "memsrc split: SSTF_MEMSRC_SEED=0x%" PRIx64 "\n", seed);
	uint64_t x = seed;
	static const size_t chunks[] = {4095, BS - 1, BS + 1, 3 * BS + 7, 100003, 777};
	for (int round = 0; round < 3; round++) {
		unsigned split = 2 + (unsigned)(splitmix(&x) % 7);         /* 2..8 */
		unsigned transfers = split + (unsigned)(splitmix(&x) % 3); /* >= split */
		unsigned per = 2 + (unsigned)(splitmix(&x) % 3);           /* 2..4 */
		size_t chunk = chunks[splitmix(&x) % (sizeof(chunks) / sizeof(chunks[0]))];
		struct memsrc_profile p = {.chunk = chunk};
		if (splitmix(&x) % 2) {
			p.pause_every = 1 + (unsigned)(splitmix(&x) % 8);
			p.pause_turns = 1 + (unsigned)(splitmix(&x) % 6);
		}
		char h[16];
		snprintf(h, sizeof(h), "r%d", round);
		host(h, &p);
		enum { N = 4 };
		struct obj *o[N];
		struct sstf_file files[N];
		for (size_t i = 0; i < N; i++) {
			uint64_t size;
			if (i == 0)
				size = 1;
			else
				size = MIB + splitmix(&x) % (2 * MIB);
			if (size > 1 && size % 4096 == 0)
				size += 1 + splitmix(&x) % 4095;
			char name[48];
			snprintf(name, sizeof(name), "split/%d/%zu.sst", round, i);
			o[i] = obj_new(name, size, splitmix(&x));
			files[i] = entry(o[i], h);
		}
		struct sstf_config c = config(transfers, transfers * per);
		c.split = split;
		c.split_min = MIB;
		c.fsync = round == 1 ? SSTF_OFF : SSTF_DEFAULT;
		sstf_engine *eng = engine_new(&c);
		struct rec r;
		int res = fetch(eng, files, N, &r);
		cr_expect_eq(res, 0,
		             "seed 0x%" PRIx64 " round %d (split %u, %u transfers, %u bufs "
		             "each, chunk %zu): %s",
		             seed, round, split, transfers, per, chunk, sstf_strerror(res));
		unsigned most = 0;
		for (size_t i = 0; i < N; i++) {
			cr_expect_eq(r.f[i].result, 0,
			             "seed 0x%" PRIx64 " round %d %s (%" PRIu64 " bytes): %s", seed,
			             round, o[i]->name, o[i]->size, r.f[i].detail);
			if (r.f[i].result == 0)
				expect_file(o[i]);
			if (r.f[i].streams > most)
				most = r.f[i].streams;
		}
		cr_expect_gt(most, 1, "seed 0x%" PRIx64 " round %d: no file ran on two streams",
		             seed, round);
		uint64_t total = 0;
		for (size_t i = 0; i < N; i++)
			total += o[i]->size;
		cr_expect_eq(memsrc_served(h), total,
		             "seed 0x%" PRIx64 " round %d: %" PRIu64 " bytes served for %" PRIu64,
		             seed, round, memsrc_served(h), total);
		expect_no_temps();
		engine_free_checked(eng);
	}
}

/* A range that fails midway: its retry asks for the rest of that range
 * only, and every other range is asked for once. */
Test(memsrc, failing_range_retries_only_its_own_rest)
{
	struct obj *o = obj_new("r.sst", MIB + 4321, 60);
	uint64_t part = 128 * KIB; /* 8 buffers of window / 4 streams */
	uint64_t at = 3 * part + 5000;
	struct memsrc_profile p = {.chunk = 3000};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = at, .transient = true, .times = 1, .retry_after_ms = 1};
	host("parts", &p);
	struct sstf_config c = config(4, 16);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "parts"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_gt(f.streams, 1);
	cr_expect_eq(f.retries, 1);
	size_t i = find_outcome(0, MEMSRC_FAILED);
	cr_assert_neq(i, SIZE_MAX, "no attempt failed");
	struct memsrc_attempt bad = attempt(i);
	expect_log(bad.pos == 3 * part && bad.end == 4 * part && bad.ranged && bad.reached == at,
	           "the failing range [%" PRIu64 ", %" PRIu64 ") reached %" PRIu64, bad.pos,
	           bad.end, bad.reached);
	size_t j;
	for (j = i + 1; j < memsrc_log_len(); j++)
		if (attempt(j).end == bad.end)
			break;
	cr_assert_lt(j, memsrc_log_len(), "no retry of the range");
	struct memsrc_attempt retry = attempt(j);
	expect_log(retry.pos == at && retry.pos > bad.pos && retry.end == bad.end && retry.ranged,
	           "the retry asked for [%" PRIu64 ", %" PRIu64 ")", retry.pos, retry.end);
	/* Each other range once: what was asked adds up to the file and the
	 * rest of the failed range, and no byte was served twice. */
	uint64_t asked = 0;
	for (size_t k = 0; k < memsrc_log_len(); k++)
		asked += attempt(k).end - attempt(k).pos;
	expect_log(asked == o->size + (bad.end - at), "asked for %" PRIu64 " bytes", asked);
	cr_expect_eq(memsrc_served(NULL), o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* An origin that ignores ranges: the file falls back to one plain stream
 * and verifies. */
Test(memsrc, origin_ignoring_ranges_falls_back_to_one_stream)
{
	struct obj *o = obj_new("ir.sst", MIB + 4321, 70);
	host("norange", &(struct memsrc_profile){.chunk = 5000, .ignore_ranges = true});
	struct sstf_config c = config(4, 16);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "norange"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_neq(find_outcome(0, MEMSRC_WHOLE_BODY), SIZE_MAX, "no ranged request was made");
	size_t last = memsrc_log_len() - 1;
	struct memsrc_attempt a = attempt(last);
	expect_log(!a.ranged && a.outcome == MEMSRC_DONE && a.pos == 0 && a.end == o->size,
	           "the last attempt");
	/* After the fall back, one attempt at a time, and it was the last. */
	for (size_t k = find_outcome(0, MEMSRC_WHOLE_BODY) + 1; k < last; k++)
		expect_log(attempt(k).outcome != MEMSRC_DONE, "attempt %zu completed too", k);
	cr_expect_eq(memsrc_served(NULL), o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* The retry of a single stream goes to a mirror that ignores ranges: it
 * asks for the whole body again and drops what it has. */
Test(memsrc, retry_on_a_mirror_ignoring_ranges_skips_what_it_has)
{
	struct obj *o = obj_new("ir1.sst", 5 * BS + 555, 71);
	uint64_t at = 2 * BS + 3000;
	struct memsrc_profile p = {.chunk = 4095};
	p.fail[0] = (struct memsrc_fail){.on = true, .at = at, .transient = true, .times = 1};
	host("first", &p);
	host("norange", &(struct memsrc_profile){.chunk = 7777, .ignore_ranges = true});
	const char *hosts[] = {"first", "norange"};
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry_mirrors(o, hosts, 2), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	expect_log(memsrc_log_len() == 3, "%zu attempts", memsrc_log_len());
	struct memsrc_attempt a1 = attempt(1), a2 = attempt(2);
	expect_log(a1.ranged && a1.pos == at && a1.outcome == MEMSRC_WHOLE_BODY,
	           "the ranged retry");
	expect_log(!a2.ranged && a2.skip == a2.pos && a2.pos <= at && a2.outcome == MEMSRC_DONE,
	           "the plain request skips what is there");
	cr_expect_eq(f.mirror_bytes[0] + f.mirror_bytes[1] >= o->size, 1);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Cancel                                                                   */

/* Every stream of a split file held by the source; cancel from here. */
Test(memsrc, cancel_mid_split_while_source_holds_leaves_no_temp)
{
	struct obj *o = obj_new("c.sst", 2 * MIB + 99, 80);
	host("hold", &(struct memsrc_profile){
	                 .chunk = 4095, .hold = true, .hold_relative = true, .hold_at = 5000});
	struct sstf_config c = config(4, 16);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	rec_init(&r);
	struct sstf_file f = entry(o, "hold");
	uint64_t gen = submit(eng, &f, 1, &r);
	int held = memsrc_wait_held(4, 5000);
	if (held)
		memsrc_log_dump("not every stream held");
	cr_assert_eq(held, 0, "4 streams never held at once");
	cr_expect_eq(sstf_cancel(eng, gen), 0);
	cr_expect_eq(wait_gen(eng, gen, 5000), -ECANCELED);
	pthread_mutex_lock(&r.mu);
	cr_expect_eq(r.batch_calls, 1);
	cr_expect_eq(r.batch_result, -ECANCELED);
	cr_expect_eq(r.file_calls, 0, "a cancelled generation reported a file");
	pthread_mutex_unlock(&r.mu);
	for (size_t i = 0; i < memsrc_log_len(); i++)
		expect_log(attempt(i).outcome == MEMSRC_STOPPED, "attempt %zu did not stop", i);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* The frontier held, the other streams paused by the engine on a tiny
 * window with source pauses of their own; cancel. */
Test(memsrc, cancel_with_streams_engine_paused_and_source_paused)
{
	struct obj *o = obj_new("c2.sst", 2 * MIB + 1, 81);
	host("mix", &(struct memsrc_profile){.chunk = BS + 1,
	                                     .pause_every = 2,
	                                     .pause_turns = 3,
	                                     .hold = true,
	                                     .hold_at = 70000});
	struct sstf_config c = config(4, 8);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct rec r;
	rec_init(&r);
	struct sstf_file f = entry(o, "mix");
	uint64_t gen = submit(eng, &f, 1, &r);
	cr_assert_eq(memsrc_wait_held(1, 5000), 0, "the frontier never held");
	for (int i = 0; i < 5000 && memsrc_engine_pauses(NULL) == 0; i++)
		usleep(1000);
	cr_expect_gt(memsrc_engine_pauses(NULL), 0, "no stream was paused for buffers");
	cr_expect_eq(sstf_cancel(eng, gen), 0);
	cr_expect_eq(wait_gen(eng, gen, 5000), -ECANCELED);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* What the source can do to the sink's phases                              */

/* CHECK then FETCH: a file of the right size but other bytes is in place;
 * the fetch fails for good, and the old file stays as it was (only a
 * verified file replaces it). */
Test(memsrc, check_then_failed_fetch_keeps_the_file_in_place)
{
	struct obj *o = obj_new("old.sst", 4 * BS + 3, 90);
	uint8_t *old = keep(malloc(o->size));
	memcpy(old, o->data, o->size);
	old[BS + 1] ^= 0xff;
	cr_assert_eq(ds_write_file(dest_path(o->name), old, o->size), 0);
	struct memsrc_profile p = {.chunk = 4000};
	p.fail[0] = (struct memsrc_fail){.on = true, .at = 2 * BS + 1, .detail = "gone mid-body"};
	host("chk", &p);
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "chk"), &f);
	cr_expect_eq(res, -SSTF_ETRANSFER, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, "gone mid-body"), "detail '%s'", f.detail);
	struct obj was = {.name = o->name, .data = old, .size = o->size};
	expect_file(&was);
	expect_no_temps();
	/* The transient kind of the same failure replaces it, verified. */
	p.fail[0].transient = true;
	p.fail[0].times = 1;
	p.fail[0].retry_after_ms = 1;
	host("chk", &p);
	res = fetch_one(eng, entry(o, "chk"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* A byte flipped on the first body: the digest fails, the file is fetched
 * again from byte 0 once, and verifies. */
Test(memsrc, flipped_byte_once_is_refetched_from_zero)
{
	struct obj *o = obj_new("flip.sst", 6 * BS + 1, 91);
	host("flip", &(struct memsrc_profile){
	                 .chunk = 6000, .flip = true, .flip_at = 3 * BS + 17, .flip_times = 1});
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "flip"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_eq(f.retries, 1);
	cr_expect_eq(f.bytes, o->size, "bytes of the copy that stands");
	cr_expect_eq(memsrc_attempts(NULL), 2);
	struct memsrc_attempt a1 = attempt(1);
	expect_log(a1.pos == 0 && !a1.ranged, "the refetch starts at 0");
	cr_expect_eq(memsrc_served(NULL), 2 * o->size);
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, flipped_byte_always_fails_echecksum)
{
	struct obj *o = obj_new("flip.sst", 2 * BS + 100, 92);
	host("flip", &(struct memsrc_profile){.chunk = BS, .flip = true, .flip_at = 5});
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "flip"), &f);
	cr_expect_eq(res, -SSTF_ECHECKSUM, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, "twice"), "detail '%s'", f.detail);
	cr_expect_eq(memsrc_attempts(NULL), 2);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* A transient failure, then a flipped byte in the resumed part: the
 * mismatch starts the file over from 0 with a fresh hash. */
Test(memsrc, transient_error_then_mismatch_then_clean_refetch)
{
	struct obj *o = obj_new("tf.sst", 5 * BS + 5, 93);
	uint64_t at = BS + 100;
	struct memsrc_profile p = {.chunk = 3333, .flip = true, .flip_at = 4 * BS, .flip_times = 1};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = at, .transient = true, .times = 1, .retry_after_ms = 1};
	host("tf", &p);
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "tf"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect_eq(f.retries, 2);
	expect_log(memsrc_log_len() == 3, "%zu attempts", memsrc_log_len());
	struct memsrc_attempt a1 = attempt(1), a2 = attempt(2);
	expect_log(a1.pos == at && a1.ranged, "the retry resumes at the failure");
	expect_log(a2.pos == 0 && !a2.ranged && a2.outcome == MEMSRC_DONE, "the refetch");
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* Checkpoints every buffer: a final failure after some were recorded
 * leaves nothing to resume; a transient one resumes where it failed. */
Test(memsrc, failure_after_checkpoints_leaves_nothing)
{
	struct obj *o = obj_new("ck.sst", MIB + 5, 94);
	struct memsrc_profile p = {.chunk = 10000};
	p.fail[0] = (struct memsrc_fail){.on = true, .at = 700001, .detail = "late failure"};
	host("ck", &p);
	struct sstf_config c = config(1, 4);
	c.checkpoint_bytes = BS;
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "ck"), &f);
	cr_expect_eq(res, -SSTF_ETRANSFER, "%s: %s", sstf_strerror(res), f.detail);
	expect_absent(o);
	expect_no_temps();
	p.fail[0].transient = true;
	p.fail[0].times = 1;
	p.fail[0].retry_after_ms = 1;
	host("ck", &p);
	memsrc_reset();
	o = obj_new("ck.sst", MIB + 5, 94);
	host("ck", &p);
	res = fetch_one(eng, entry(o, "ck"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	expect_log(attempt(1).pos == 700001, "the retry after checkpoints");
	if (res == 0)
		expect_file(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, retries_run_out)
{
	struct obj *o = obj_new("ro.sst", 3 * BS + 1, 95);
	struct memsrc_profile p = {.chunk = 5000};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = BS + 7, .transient = true, .retry_after_ms = 1, .detail = "flaky"};
	host("ro", &p);
	struct sstf_config c = config(1, 4); /* max_retries: 3 */
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "ro"), &f);
	cr_expect_eq(res, -SSTF_ETRANSFER, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, "gave up after 3 retries"), "detail '%s'", f.detail);
	cr_expect_eq(f.retries, 3);
	cr_expect_eq(memsrc_attempts(NULL), 4);
	for (size_t i = 1; i < 4; i++)
		expect_log(attempt(i).pos == BS + 7, "retry %zu", i);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

Test(memsrc, retry_after_past_the_cap_fails_at_once)
{
	struct obj *o = obj_new("ra.sst", 2 * BS, 96);
	struct memsrc_profile p = {.chunk = BS};
	p.fail[0] = (struct memsrc_fail){.on = true,
	                                 .at = BS,
	                                 .transient = true,
	                                 .retry_after_ms = 61000,
	                                 .err = -SSTF_EHTTP,
	                                 .status = 503,
	                                 .detail = "HTTP 503"};
	host("ra", &p);
	struct sstf_config c = config(1, 4);
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "ra"), &f);
	cr_expect_eq(res, -SSTF_EHTTP, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, "Retry-After"), "detail '%s'", f.detail);
	cr_expect_eq(f.http_status, 503);
	cr_expect_eq(memsrc_attempts(NULL), 1);
	expect_absent(o);
	expect_no_temps();
	engine_free_checked(eng);
}

/* A split file whose stream ahead of the frontier fails for good while it
 * holds buffers past the frontier: they are dropped, nothing is left. */
Test(memsrc, final_error_ahead_of_frontier_drops_held_buffers)
{
	struct obj *o = obj_new("ah.sst", 2 * MIB + 77, 97);
	struct memsrc_profile p = {.chunk = 20000};
	p.fail[0] = (struct memsrc_fail){
	    .on = true, .at = 3 * 128 * KIB + 64 * KIB + 1, .detail = "ahead failed"};
	host("ah", &p);
	struct sstf_config c = config(4, 16);
	c.split = 4;
	c.split_min = MIB;
	sstf_engine *eng = engine_new(&c);
	struct fres f;
	int res = fetch_one(eng, entry(o, "ah"), &f);
	cr_expect_eq(res, -SSTF_ETRANSFER, "%s: %s", sstf_strerror(res), f.detail);
	cr_expect(strstr(f.detail, "ahead failed"), "detail '%s'", f.detail);
	expect_absent(o);
	expect_no_temps();
	/* The pool is whole again: a second file fetches on the same engine. */
	struct obj *o2 = obj_new("ah2.sst", MIB + 1, 98);
	res = fetch_one(eng, entry(o2, "fine"), &f);
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), f.detail);
	if (res == 0)
		expect_file(o2);
	expect_no_temps();
	engine_free_checked(eng);
}
