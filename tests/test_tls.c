/*
 * Description: https origins with a private CA, as internal S3-compatible
 * stores have them. A CA and a server certificate it signed (for
 * DNS:localhost and IP:127.0.0.1) are made by each test with the openssl
 * command; nginx serves the dataset over TLS at https://localhost:PORT.
 * With sstf_config.ca_file naming the CA, or ca_path naming a hashed
 * directory holding it (as curl's --cacert and --capath), every file is
 * byte-identical, the split one over ranged TLS streams too. Without the
 * CA, or with another CA, every file fails at once: curl's "SSL
 * certificate problem" in its detail, no retry, at most one connection
 * attempt per stream (counted at the origin by its failed handshakes). A
 * CA file or directory that does not exist, or is the wrong kind of path,
 * is refused by sstf_config_check() and sstf_engine_new() naming the
 * field; a CA file that holds no certificate fails every file, without
 * retries, naming it. sstf_get() takes the same settings.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/origin.h"
#include "support/sanitizers.h"

#define WAIT_MS 120000 /* a hang guard; nothing is measured */
#define LOG_WAIT_MS 10000 /* nginx logs a handshake a moment after the client */
#define KIB 1024ull
#define MIB (1024ull * 1024ull)

/* One file above SPLIT_MIN, first so that it finds stream slots free, fetched
 * over SPLIT ranged streams of 2 MiB parts (the pool's ahead half, 8 MiB, /
 * SPLIT), then 32 files of random sizes. */
#define NSMALL 32
#define NFILES (NSMALL + 1)
#define BIG 0
#define BIG_SIZE (9 * MIB + 17)
#define SPLIT 4
#define SPLIT_MIN (4 * MIB)
#define BUF_SIZE (256 * KIB)
#define MEM_LIMIT (16 * MIB)
#define MAX_TRANSFERS 16

/* curl's words for a chain it cannot verify (CURLE_PEER_FAILED_VERIFICATION). */
#define CERT_PROBLEM "SSL certificate problem"
#define NO_ISSUER "unable to get local issuer certificate"

static struct origin_certs certs;
static struct dataset ds;
static struct origin *org;
static char *work; /* holds dest */
static char *dest; /* work/dest, empty at the start of a test */

static void fixture_init(void)
{
	int err = origin_make_certs(NULL, &certs);
	cr_assert_eq(err, 0, "cannot make the test CA: %s", strerror(-err));
	uint64_t sizes[NFILES];
	uint64_t x = 0x7153a1u;
	for (size_t i = 1; i < NFILES; i++) {
		/* xorshift64: sizes from 0 to 1.5 MiB, odd ones mostly. */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		sizes[i] = x % (3 * MIB / 2 + 1);
	}
	sizes[1] = 0;
	sizes[2] = 1;
	sizes[BIG] = BIG_SIZE;
	cr_assert_eq(ds_create(&ds, "tls-origin", NFILES, NULL, sizes, 0x715), 0);
	err = origin_start_tls(ds.dir, certs.cert_pem, certs.key_pem, &org);
	cr_assert_eq(err, 0, "nginx (https) did not start: %s", strerror(-err));
	cr_assert_eq(strncmp(org->base_url, "https://localhost:", 18), 0, "%s",
	             org->base_url);
	cr_assert_eq(ds_mkdtemp("tls-dest", &work), 0);
	dest = ds_strfmt("%s/dest", work);
	cr_assert_not_null(dest);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void fixture_fini(void)
{
	origin_stop(org);
	org = NULL;
	ds_destroy(&ds);
	origin_free_certs(&certs);
	if (work)
		ds_rmtree(work);
	free(work);
	free(dest);
	work = dest = NULL;
}

TestSuite(tls, .init = fixture_init, .fini = fixture_fini);

/* ------------------------------------------------------------------------ */
/* Engines and batches                                                      */

static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0,
	             "LeakSanitizer: leaks after sstf_engine_free (report above)");
}

/* A copy of s on the heap that poison_free() wipes: the engine must have
 * copied the CA settings by the time sstf_engine_new() returns. */
static char *heap_copy(const char *s)
{
	char *c = s ? strdup(s) : NULL;
	cr_assert(!s || c);
	return c;
}

static void poison_free(char *s)
{
	if (s)
		memset(s, 0xA5, strlen(s));
	free(s);
}

static struct sstf_config tls_config(const char *ca_file, const char *ca_path)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.buf_size = BUF_SIZE;
	cfg.mem_limit = MEM_LIMIT;
	cfg.max_transfers = MAX_TRANSFERS;
	cfg.split = SPLIT;
	cfg.split_min = SPLIT_MIN;
	cfg.max_retries = 3; /* retries allowed: a certificate error must not take them */
	cfg.ca_file = ca_file;
	cfg.ca_path = ca_path;
	return cfg;
}

/* An engine with the CA settings, from strings freed (and wiped) as soon as
 * it is made. */
static sstf_engine *engine_with(const char *ca_file, const char *ca_path)
{
	char *f = heap_copy(ca_file), *p = heap_copy(ca_path);
	struct sstf_config cfg = tls_config(f, p);
	char why[512] = "";
	int err = sstf_config_check(&cfg, why, sizeof(why));
	cr_assert_eq(err, 0, "sstf_config_check: %s: %s", sstf_strerror(err), why);
	sstf_engine *eng = NULL;
	err = test_engine_new(&cfg, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	poison_free(f);
	poison_free(p);
	return eng;
}

/* What the callbacks saw, per batch index. */
struct rec {
	pthread_mutex_t mu;
	unsigned done[NFILES];
	int result[NFILES];
	int status[NFILES];
	unsigned retries[NFILES];
	unsigned streams[NFILES];
	uint64_t bytes[NFILES];
	char detail[NFILES][512];
	unsigned batch_done;
};

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	(void)gen;
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	if (res->index < NFILES) {
		size_t i = res->index;
		r->done[i]++;
		r->result[i] = res->result;
		r->status[i] = res->http_status;
		r->retries[i] = res->retries;
		r->streams[i] = res->streams;
		r->bytes[i] = res->bytes;
		snprintf(r->detail[i], sizeof(r->detail[i]), "%s",
		         res->detail ? res->detail : "(null detail)");
	}
	pthread_mutex_unlock(&r->mu);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	(void)gen;
	(void)result;
	struct rec *r = user;
	pthread_mutex_lock(&r->mu);
	r->batch_done++;
	pthread_mutex_unlock(&r->mu);
}

/* Fetches the whole dataset from base into dest; returns the batch result,
 * with every file reported once in *r. */
static int fetch_all(sstf_engine *eng, const char *base, struct rec *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	struct sstf_file *files = ds_batch_new(&ds, base, SSTF_DIGEST_XXH3);
	cr_assert_not_null(files);
	char errbuf[512] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = files,
		.nfiles = ds.n,
		.on_file_done = on_file,
		.on_batch_done = on_batch,
		.user = r,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	ds_batch_free(files, ds.n, 1);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT, "batch did not end within %d ms", WAIT_MS);
	pthread_mutex_lock(&r->mu);
	cr_expect_eq(r->batch_done, 1);
	for (size_t i = 0; i < NFILES; i++)
		cr_expect_eq(r->done[i], 1, "file %s: %u file-done calls", ds.files[i].name,
		             r->done[i]);
	pthread_mutex_unlock(&r->mu);
	return res;
}

static void expect_no_temps(void)
{
	char first[PATH_MAX];
	int n = ds_count_temps(dest, first, sizeof(first));
	cr_expect_eq(n, 0, "%d temporary file(s) left in %s, e.g. %s", n, dest, first);
}

static uint64_t engine_retries(sstf_engine *eng)
{
	struct sstf_stats st;
	cr_assert_eq(sstf_stats(eng, &st), 0);
	return st.retries;
}

/* Failed handshakes the origin logged, waiting until there are `want`. */
static int handshake_failures(int want)
{
	int n = origin_log_count(org, ORIGIN_TLS_HANDSHAKE_FAILED, want,
	                         want ? LOG_WAIT_MS : 0);
	cr_assert_geq(n, 0, "cannot read nginx's error log: %s", strerror(-n));
	return n;
}

/* Every file published, byte for byte; the big one over ranged streams;
 * no retry, no failed handshake. */
static void expect_all_fetched(sstf_engine *eng, int res, const struct rec *r)
{
	cr_expect_eq(res, 0, "batch result %d (%s)", res, sstf_strerror(res));
	for (size_t i = 0; i < NFILES; i++) {
		cr_expect_eq(r->result[i], 0, "file %s: %d (%s) %s", ds.files[i].name,
		             r->result[i], sstf_strerror(r->result[i]), r->detail[i]);
		cr_expect_eq(r->bytes[i], ds.files[i].size, "file %s: %llu bytes",
		             ds.files[i].name, (unsigned long long)r->bytes[i]);
		cr_expect_eq(r->retries[i], 0, "file %s: %u retries", ds.files[i].name,
		             r->retries[i]);
	}
	cr_expect_gt(r->streams[BIG], 1,
	             "the %llu-byte file ran on %u stream(s): no ranged GET went over TLS",
	             (unsigned long long)BIG_SIZE, r->streams[BIG]);
	char why[PATH_MAX + 128];
	cr_expect_eq(ds_check_dest(&ds, dest, NULL, ds.n, why, sizeof(why)), 0, "%s", why);
	expect_no_temps();
	cr_expect_eq(engine_retries(eng), 0);
	cr_expect_eq(handshake_failures(0), 0, "the origin logged failed handshakes");
}

/*
 * Every file failed with -SSTF_ETRANSFER and `words` in its detail, nothing
 * is published, nothing was retried, and the origin saw at most one failed
 * handshake per stream the files started: no attempt was made again.
 */
static void expect_all_refused(sstf_engine *eng, int res, const struct rec *r,
                               const char *words)
{
	cr_expect_neq(res, 0, "the batch succeeded");
	int streams = 0;
	for (size_t i = 0; i < NFILES; i++) {
		cr_expect_eq(r->result[i], -SSTF_ETRANSFER, "file %s: %d (%s) %s",
		             ds.files[i].name, r->result[i], sstf_strerror(r->result[i]),
		             r->detail[i]);
		cr_expect(strstr(r->detail[i], words) != NULL,
		          "file %s: detail \"%s\" does not say \"%s\"", ds.files[i].name,
		          r->detail[i], words);
		cr_expect_eq(r->retries[i], 0, "file %s: %u retries after \"%s\"",
		             ds.files[i].name, r->retries[i], r->detail[i]);
		cr_expect_eq(r->status[i], 0, "file %s: HTTP status %d without a response",
		             ds.files[i].name, r->status[i]);
		cr_expect_eq(r->bytes[i], 0);
		/* A file that failed before its first byte may report 0
		 * streams; it still made its one attempt. */
		streams += r->streams[i] ? (int)r->streams[i] : 1;
	}
	cr_expect_eq(engine_retries(eng), 0, "the engine retried a certificate error");
	static const size_t none[1];
	char why[PATH_MAX + 128];
	cr_expect_eq(ds_check_dest(&ds, dest, none, 0, why, sizeof(why)), 0,
	             "a file was published: %s", why);
	expect_no_temps();
	/* At least one per file; more than one per stream would be a
	 * connection tried again. A split file's other streams may be
	 * stopped before they reach the origin. */
	int hs = handshake_failures(streams);
	cr_expect(hs >= NFILES && hs <= streams,
	          "the origin logged %d failed handshakes for %d files on %d streams "
	          "(the big file on %u)", hs, NFILES, streams, r->streams[BIG]);
}

/* ------------------------------------------------------------------------ */
/* The CA given                                                             */

Test(tls, ca_file_of_the_private_ca_fetches_every_file_byte_identical)
{
	sstf_engine *eng = engine_with(certs.ca_pem, NULL);
	struct rec r;
	int res = fetch_all(eng, org->base_url, &r);
	expect_all_fetched(eng, res, &r);
	engine_free_checked(eng);
}

Test(tls, ca_path_of_a_hashed_dir_fetches_every_file_byte_identical)
{
	sstf_engine *eng = engine_with(NULL, certs.ca_dir);
	struct rec r;
	int res = fetch_all(eng, org->base_url, &r);
	expect_all_fetched(eng, res, &r);
	engine_free_checked(eng);
}

/* The certificate names 127.0.0.1 too: the address works as the name. */
Test(tls, ca_file_with_the_origin_named_by_its_address)
{
	char *base = ds_strfmt("https://127.0.0.1:%u", org->port);
	cr_assert_not_null(base);
	sstf_engine *eng = engine_with(certs.ca_pem, NULL);
	struct rec r;
	int res = fetch_all(eng, base, &r);
	expect_all_fetched(eng, res, &r);
	engine_free_checked(eng);
	free(base);
}

/* A CA setting changes nothing for plain http. */
Test(tls, ca_file_leaves_plain_http_alone)
{
	struct origin *plain = NULL;
	int err = origin_start(ds.dir, &plain);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	sstf_engine *eng = engine_with(certs.ca_pem, certs.ca_dir);
	struct rec r;
	int res = fetch_all(eng, plain->base_url, &r);
	origin_stop(plain);
	cr_expect_eq(res, 0, "batch result %d (%s)", res, sstf_strerror(res));
	char why[PATH_MAX + 128];
	cr_expect_eq(ds_check_dest(&ds, dest, NULL, ds.n, why, sizeof(why)), 0, "%s", why);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* The CA missing or wrong: fail at once, once                              */

Test(tls, without_the_ca_every_file_fails_at_once_with_the_certificate_problem)
{
	sstf_engine *eng = engine_with(NULL, NULL);
	struct rec r;
	int res = fetch_all(eng, org->base_url, &r);
	expect_all_refused(eng, res, &r, CERT_PROBLEM ": " NO_ISSUER);
	engine_free_checked(eng);
}

Test(tls, ca_file_of_another_ca_fails_every_file_with_the_certificate_problem)
{
	sstf_engine *eng = engine_with(certs.other_ca_pem, NULL);
	struct rec r;
	int res = fetch_all(eng, org->base_url, &r);
	expect_all_refused(eng, res, &r, CERT_PROBLEM);
	engine_free_checked(eng);
}

/* A file that exists but holds no certificate: curl cannot load it
 * (CURLE_SSL_CACERT_BADFILE), which is no transient failure either. */
Test(tls, ca_file_without_a_certificate_fails_every_file_naming_it)
{
	char *junk = ds_strfmt("%s/not-a-ca.pem", work);
	cr_assert_not_null(junk);
	static const char text[] = "this is no PEM certificate\n";
	cr_assert_eq(ds_write_file(junk, text, sizeof(text) - 1), 0);
	sstf_engine *eng = engine_with(junk, NULL);
	struct rec r;
	int res = fetch_all(eng, org->base_url, &r);
	cr_expect_neq(res, 0, "the batch succeeded");
	for (size_t i = 0; i < NFILES; i++) {
		cr_expect_eq(r.result[i], -SSTF_ETRANSFER, "file %s: %d (%s) %s",
		             ds.files[i].name, r.result[i], sstf_strerror(r.result[i]),
		             r.detail[i]);
		cr_expect(strstr(r.detail[i], junk) != NULL,
		          "file %s: detail \"%s\" does not name %s", ds.files[i].name,
		          r.detail[i], junk);
		cr_expect_eq(r.retries[i], 0, "file %s: %u retries", ds.files[i].name,
		             r.retries[i]);
	}
	cr_expect_eq(engine_retries(eng), 0);
	expect_no_temps();
	engine_free_checked(eng);
	free(junk);
}

/* ------------------------------------------------------------------------ */
/* CA settings that cannot work are refused up front                        */

/* sstf_config_check() and sstf_engine_new() refuse cfg with -EINVAL, the
 * message naming `field` and `path`; no engine is made. */
static void expect_refused(const struct sstf_config *cfg, const char *field,
                           const char *path)
{
	char why[512] = "";
	int err = sstf_config_check(cfg, why, sizeof(why));
	cr_expect_eq(err, -EINVAL, "sstf_config_check: %d (%s), \"%s\"", err,
	             sstf_strerror(err), why);
	cr_expect(strstr(why, field) != NULL, "message \"%s\" does not name %s", why,
	          field);
	cr_expect(strstr(why, path) != NULL, "message \"%s\" does not name %s", why, path);
	sstf_engine *eng = (sstf_engine *)(uintptr_t)0x1;
	err = test_engine_new(cfg, &eng);
	cr_expect_eq(err, -EINVAL, "sstf_engine_new: %d (%s)", err, sstf_strerror(err));
	cr_expect_eq(eng, (sstf_engine *)(uintptr_t)0x1, "*out changed on error");
	if (err == 0)
		engine_free_checked(eng);
}

Test(tls, ca_file_that_does_not_exist_is_refused_naming_ca_file)
{
	char *missing = ds_strfmt("%s/no-such-ca.pem", work);
	cr_assert_not_null(missing);
	struct sstf_config cfg = tls_config(missing, NULL);
	expect_refused(&cfg, "ca_file", missing);
	free(missing);
}

Test(tls, ca_path_that_does_not_exist_is_refused_naming_ca_path)
{
	char *missing = ds_strfmt("%s/no-such-dir", work);
	cr_assert_not_null(missing);
	struct sstf_config cfg = tls_config(NULL, missing);
	expect_refused(&cfg, "ca_path", missing);
	free(missing);
}

Test(tls, ca_path_that_is_a_file_is_refused_naming_ca_path)
{
	struct sstf_config cfg = tls_config(NULL, certs.ca_pem);
	expect_refused(&cfg, "ca_path", certs.ca_pem);
}

Test(tls, ca_file_that_is_a_directory_is_refused_naming_ca_file)
{
	struct sstf_config cfg = tls_config(certs.ca_dir, NULL);
	expect_refused(&cfg, "ca_file", certs.ca_dir);
}

/* ------------------------------------------------------------------------ */
/* sstf_get(): manifests and metadata from the same store                   */

struct got {
	uint64_t len;
	uint64_t restarts;
};

static int on_data(void *user, const void *data, size_t len)
{
	struct got *g = user;
	if (!data && len == 0) {
		g->restarts++;
		g->len = 0;
	}
	g->len += len;
	return 0;
}

Test(tls, sstf_get_takes_the_ca_settings)
{
	const struct ds_file *f = &ds.files[3];
	char *url = ds_strfmt("%s/%s", org->base_url, f->name);
	cr_assert_not_null(url);
	char errbuf[512] = "";
	struct got g = {0};

	struct sstf_config cfg = tls_config(certs.ca_pem, NULL);
	int err = sstf_get(&cfg, url, 64 * MIB, on_data, &g, errbuf, sizeof(errbuf));
	cr_expect_eq(err, 0, "sstf_get with ca_file: %s: %s", sstf_strerror(err), errbuf);
	cr_expect_eq(g.len, f->size);

	memset(&g, 0, sizeof(g));
	cfg = tls_config(NULL, certs.ca_dir);
	err = sstf_get(&cfg, url, 64 * MIB, on_data, &g, errbuf, sizeof(errbuf));
	cr_expect_eq(err, 0, "sstf_get with ca_path: %s: %s", sstf_strerror(err), errbuf);
	cr_expect_eq(g.len, f->size);

	memset(&g, 0, sizeof(g));
	errbuf[0] = '\0';
	cfg = tls_config(NULL, NULL);
	err = sstf_get(&cfg, url, 64 * MIB, on_data, &g, errbuf, sizeof(errbuf));
	cr_expect_eq(err, -SSTF_ETRANSFER, "sstf_get without the CA: %d (%s)", err,
	             sstf_strerror(err));
	cr_expect(strstr(errbuf, CERT_PROBLEM) != NULL, "errbuf \"%s\" does not say \"%s\"",
	          errbuf, CERT_PROBLEM);
	cr_expect_eq(g.restarts, 0, "sstf_get retried a certificate error");
	cr_expect_eq(handshake_failures(1), 1, "sstf_get tried the handshake again");
	free(url);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
}
