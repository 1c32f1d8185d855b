/*
 * Description: the S3 source, end to end, against a real S3 server that
 * verifies SigV4 signatures (npm's @20minutes/s3rver, support/s3server.c).
 *
 * Fetches: a 64-file set and a file above split_min fetched over several
 * ranged streams, each request signed, all byte-identical; keys that need
 * encoding (space, '+', '=', UTF-8, '%', "..") through an entry's own URL,
 * raw or percent-encoded, and through base_url + name; anonymous requests;
 * temporary credentials (the session token is signed with the rest).
 * Failures: a wrong secret fails every file at once with
 * SignatureDoesNotMatch in the detail and no retry; a missing key gives
 * NoSuchKey (404), a missing bucket NoSuchBucket; S3's error XML never
 * leaks what it echoes of the signed request.
 * Small objects: sstf_get() of an object, its size cap, its errors;
 * sstf_list() of 1,500 keys pages through ListObjectsV2 and sees every key
 * once, in order, with its size; a prefix holding special characters.
 * Units: the endpoint URL and canonical key encoding, S3 error details and
 * which of them are transient, the configuration checks.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/s3server.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define WAIT_MS 120000
#define BUCKET "sst"
#define MAXF 80

static struct s3server *srv;
static struct dataset ds;
static char *work, *dest;

static void setup(void)
{
	static const char *const buckets[] = {BUCKET, "other", NULL};
	int r = s3server_start(buckets, &srv);
	cr_assert_eq(r, 0, "s3server_start: %s (tools/deps.sh installs node and s3rver)",
	             strerror(-r));
	cr_assert_eq(ds_mkdtemp("s3", &work), 0);
	dest = ds_strfmt("%s/dest", work);
	cr_assert(dest);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void teardown(void)
{
	s3server_stop(srv);
	srv = NULL;
	ds_destroy(&ds);
	if (work)
		ds_rmtree(work);
	free(work);
	free(dest);
	work = dest = NULL;
}

TestSuite(s3, .init = setup, .fini = teardown, .timeout = 300);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* The server's configuration, signed with `secret` (NULL: the right one). */
static struct sstf_s3_config s3cfg(const char *secret)
{
	struct sstf_s3_config c = {
		.endpoint = srv->endpoint,
		.region = srv->region,
		.access_key_id = srv->access_key,
		.secret_access_key = secret ? secret : srv->secret_key,
	};
	return c;
}

/* Uploads every file of ds under prefix (may be ""). */
static void upload(const char *prefix)
{
	for (size_t i = 0; i < ds.n; i++) {
		char *key = ds_strfmt("%s%s", prefix, ds.files[i].name);
		cr_assert(key);
		int r = s3server_put_file(srv, BUCKET, key, ds.files[i].path);
		cr_assert_eq(r, 0, "upload %s: %s", key, strerror(-r));
		free(key);
	}
}

struct outcome {
	size_t n;
	int result[MAXF];
	int status[MAXF];
	unsigned retries[MAXF];
	unsigned streams[MAXF];
	char detail[MAXF][320];
};

static void on_done(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	(void)gen;
	struct outcome *o = user;
	cr_assert_lt(res->index, MAXF);
	o->result[res->index] = res->result;
	o->status[res->index] = res->http_status;
	o->retries[res->index] = res->retries;
	o->streams[res->index] = res->streams;
	snprintf(o->detail[res->index], sizeof(o->detail[0]), "%s", res->detail);
	o->n++;
}

/* Fetches files into dest with cfg; returns the batch's result. */
static int fetch(const struct sstf_config *cfg, const struct sstf_file *files, size_t n,
                 const char *base_url, struct outcome *o)
{
	memset(o, 0, sizeof(*o));
	sstf_engine *e = NULL;
	int r = test_engine_new(cfg, &e);
	cr_assert_eq(r, 0, "sstf_engine_new: %s", sstf_strerror(r));
	char err[512] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = files,
		.nfiles = n,
		.on_file_done = on_done,
		.user = o,
		.errbuf = err,
		.errbuf_len = sizeof(err),
		.base_url = base_url,
	};
	uint64_t gen;
	r = sstf_submit(e, &b, &gen);
	cr_assert_eq(r, 0, "sstf_submit: %s: %s", sstf_strerror(r), err);
	r = sstf_wait(e, gen, WAIT_MS);
	cr_assert_neq(r, -ETIMEDOUT, "the batch did not end in %d ms", WAIT_MS);
	sstf_engine_free(e);
	return r;
}

static void expect_dest_is_ds(void)
{
	char why[512];
	cr_assert_eq(ds_check_dest(&ds, dest, NULL, ds.n, why, sizeof(why)), 0, "%s", why);
}

/* ------------------------------------------------------------------------ */
/* Fetches                                                                  */

Test(s3, a_set_of_64_files_and_a_split_file_are_byte_identical)
{
	uint64_t sizes[65];
	uint64_t x = 0x53a1;
	for (size_t i = 0; i < 64; i++) {
		x = x * 6364136223846793005ull + 1442695040888963407ull;
		sizes[i] = i == 0 ? 0 : i == 1 ? 1 : (x >> 33) % (300 * KIB);
	}
	sizes[64] = 5 * MIB + 12345; /* above split_min: ranged, signed */
	cr_assert_eq(ds_create(&ds, "s3-set", 65, NULL, sizes, 7), 0);
	upload("set/");
	struct sstf_file *files = ds_batch_new(&ds, "s3://" BUCKET "/set", SSTF_DIGEST_XXH3);
	cr_assert(files);
	struct sstf_s3_config s3 = s3cfg(NULL);
	/* 64 buffers: parts of 512 KiB, so the 5 MiB file has ten. */
	struct sstf_config cfg = {
		.s3 = &s3,
		.buf_size = 64 * KIB,
		.mem_limit = 4 * MIB,
		.split_min = 1 * MIB,
		.split = 4,
	};
	struct outcome o;
	int r = fetch(&cfg, files, 65, NULL, &o);
	for (size_t i = 0; i < 65; i++)
		cr_expect_eq(o.result[i], 0, "%s: %s", ds.files[i].name, o.detail[i]);
	cr_assert_eq(r, 0);
	cr_assert_eq(o.n, 65);
	cr_assert_gt(o.streams[64], 1, "the 5 MiB file ran on %u stream(s)", o.streams[64]);
	cr_assert_eq(o.status[64], 206, "ranged GETs answer 206");
	expect_dest_is_ds();
	ds_batch_free(files, 65, 1);
}

Test(s3, the_same_set_through_base_url_and_names)
{
	uint64_t sizes[8] = {0, 1, 4095, 4096, 65537, 200000, 1, 77};
	cr_assert_eq(ds_create(&ds, "s3-base", 8, NULL, sizes, 9), 0);
	upload("base/p/");
	struct sstf_file *files = ds_batch_new(&ds, "unused://", SSTF_DIGEST_XXH128);
	cr_assert(files);
	for (size_t i = 0; i < 8; i++) {
		free((void *)files[i].url);
		files[i].url = NULL;
	}
	struct sstf_s3_config s3 = s3cfg(NULL);
	struct sstf_config cfg = {.s3 = &s3};
	struct outcome o;
	cr_assert_eq(fetch(&cfg, files, 8, "s3://" BUCKET "/base/p/", &o), 0, "%s", o.detail[0]);
	expect_dest_is_ds();
	ds_batch_free(files, 8, 1);
}

Test(s3, keys_that_need_encoding_work_raw_encoded_and_joined)
{
	/* name on disk -> key on the server */
	static const char *const keys[] = {
		"enc/a b.sst",          "enc/a+b.sst",     "enc/k=v&x=y.sst",
		"enc/\xc3\xa9t\xc3\xa9 \xe2\x9c\x93.sst", "enc/100%.sst", "enc/x/../y.sst",
		"enc/~tilde_dash-dot.sst",
	};
	size_t n = sizeof(keys) / sizeof(keys[0]);
	const char *names[16];
	uint64_t sizes[16];
	for (size_t i = 0; i < n; i++) {
		names[i] = ds_strfmt("f%zu.sst", i);
		sizes[i] = 1000 + i * 777;
	}
	cr_assert_eq(ds_create(&ds, "s3-enc", n, names, sizes, 11), 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(s3server_put_file(srv, BUCKET, keys[i], ds.files[i].path), 0, "%s",
		             keys[i]);
	struct sstf_s3_config s3 = s3cfg(NULL);
	struct sstf_config cfg = {.s3 = &s3};

	/* 1: the key raw in the URL, except what a URL cannot hold ('%'). */
	/* 2: every byte outside the unreserved set percent-encoded. */
	for (int form = 0; form < 2; form++) {
		struct sstf_file files[16];
		char *urls[16];
		memset(files, 0, sizeof(files));
		for (size_t i = 0; i < n; i++) {
			if (form == 0 && !strchr(keys[i], '%')) {
				urls[i] = ds_strfmt("s3://" BUCKET "/%s", keys[i]);
			} else {
				char *enc = s3server_encode(keys[i], 1);
				urls[i] = ds_strfmt("s3://" BUCKET "/%s", enc);
				free(enc);
			}
			files[i] = (struct sstf_file){
				.name = names[i],
				.url = urls[i],
				.size = sizes[i],
				.digest_kind = SSTF_DIGEST_XXH3,
				.digest_hex = ds.files[i].xxh3,
			};
		}
		struct outcome o;
		int r = fetch(&cfg, files, n, NULL, &o);
		for (size_t i = 0; i < n; i++)
			cr_expect_eq(o.result[i], 0, "form %d, key \"%s\" (%s): %s", form, keys[i],
			             urls[i], o.detail[i]);
		cr_assert_eq(r, 0);
		expect_dest_is_ds();
		cr_assert_eq(ds_empty_dir(dest), 0);
		for (size_t i = 0; i < n; i++)
			free(urls[i]);
	}
	for (size_t i = 0; i < n; i++)
		free((void *)names[i]);

	/* 3: base_url + a name that needs encoding, joined by the engine. */
	static const char *const odd = "a b+c=\xc3\xa9.sst";
	char *path = ds_strfmt("%s/odd", work);
	cr_assert_eq(ds_write_random(path, 33333, 5), 0);
	cr_assert_eq(s3server_put_file(srv, BUCKET, "joined/a b+c=\xc3\xa9.sst", path), 0);
	struct sstf_file f = {.name = odd, .size = 33333};
	struct outcome o;
	cr_assert_eq(fetch(&cfg, &f, 1, "s3://" BUCKET "/joined", &o), 0, "%s", o.detail[0]);
	char *got = ds_strfmt("%s/%s", dest, odd);
	cr_assert_eq(ds_files_equal(path, got), 1);
	free(got);
	free(path);
}

/* s3rver serves unsigned requests as it serves signed ones, so this shows
 * that a configuration with no key pair fetches, not that nothing was
 * signed (sstf__s3_sign sets no key pair then: s3.c). */
Test(s3, with_no_credentials_a_public_set_is_fetched)
{
	uint64_t sizes[2] = {10000, 300000};
	cr_assert_eq(ds_create(&ds, "s3-anon", 2, NULL, sizes, 3), 0);
	upload("anon/");
	struct sstf_file *files = ds_batch_new(&ds, "s3://" BUCKET "/anon", SSTF_DIGEST_XXH3);
	struct sstf_s3_config s3 = {.endpoint = srv->endpoint};
	struct sstf_config cfg = {.s3 = &s3};
	struct outcome o;
	cr_assert_eq(fetch(&cfg, files, 2, NULL, &o), 0, "%s", o.detail[0]);
	expect_dest_is_ds();
	ds_batch_free(files, 2, 1);
}

/* s3rver does not check the token itself, but it does check the signature,
 * which covers the x-amz-security-token header curl signs with the rest:
 * a token header that broke the signature fails here. */
Test(s3, a_session_token_keeps_the_signature_valid)
{
	uint64_t sizes[1] = {123456};
	cr_assert_eq(ds_create(&ds, "s3-token", 1, NULL, sizes, 4), 0);
	upload("token/");
	struct sstf_file *files = ds_batch_new(&ds, "s3://" BUCKET "/token", SSTF_DIGEST_XXH3);
	struct sstf_s3_config s3 = s3cfg(NULL);
	s3.session_token = "FQoGZXIvYXdzEXAMPLETOKEN/with+plus=";
	struct sstf_config cfg = {.s3 = &s3};
	struct outcome o;
	cr_assert_eq(fetch(&cfg, files, 1, NULL, &o), 0, "%s", o.detail[0]);
	expect_dest_is_ds();
	ds_batch_free(files, 1, 1);
}

/* ------------------------------------------------------------------------ */
/* Failures                                                                 */

Test(s3, a_wrong_secret_fails_at_once_with_signature_does_not_match)
{
	uint64_t sizes[4] = {1000, 2000, 3 * MIB, 4000};
	cr_assert_eq(ds_create(&ds, "s3-badkey", 4, NULL, sizes, 5), 0);
	upload("bad/");
	struct sstf_file *files = ds_batch_new(&ds, "s3://" BUCKET "/bad", SSTF_DIGEST_XXH3);
	static const char secret[] = "not-the-secret-4f1c9a";
	struct sstf_s3_config s3 = s3cfg(secret);
	struct sstf_config cfg = {.s3 = &s3, .split_min = 1 * MIB, .max_retries = 5};
	struct outcome o;
	int r = fetch(&cfg, files, 4, NULL, &o);
	cr_assert_eq(r, -SSTF_EHTTP, "%s", sstf_strerror(r));
	for (size_t i = 0; i < 4; i++) {
		cr_expect_eq(o.result[i], -SSTF_EHTTP);
		cr_expect_eq(o.status[i], 403);
		cr_expect_eq(o.retries[i], 0, "%s retried %u times", ds.files[i].name, o.retries[i]);
		cr_expect(strstr(o.detail[i], "SignatureDoesNotMatch"), "detail: %s", o.detail[i]);
		cr_expect(!strstr(o.detail[i], secret), "the secret leaked: %s", o.detail[i]);
		/* S3 echoes the string it signed; none of it gets through. */
		cr_expect(!strstr(o.detail[i], "AWS4-HMAC-SHA256"), "detail: %s", o.detail[i]);
	}
	int temps = ds_count_temps(dest, NULL, 0);
	cr_assert_eq(temps, 0);
	ds_batch_free(files, 4, 1);
}

Test(s3, a_missing_key_is_no_such_key_and_a_missing_bucket_no_such_bucket)
{
	struct sstf_s3_config s3 = s3cfg(NULL);
	struct sstf_config cfg = {.s3 = &s3, .max_retries = 5};
	struct sstf_file files[2] = {
		{.name = "a.sst", .url = "s3://" BUCKET "/no/such/key.sst", .size = 10},
		{.name = "b.sst", .url = "s3://no-such-bucket/key.sst", .size = 10},
	};
	struct outcome o;
	cr_assert_eq(fetch(&cfg, files, 2, NULL, &o), -SSTF_EHTTP);
	cr_assert_eq(o.status[0], 404);
	cr_assert(strstr(o.detail[0], "NoSuchKey"), "detail: %s", o.detail[0]);
	cr_assert_eq(o.retries[0], 0);
	cr_assert_eq(o.status[1], 404);
	cr_assert(strstr(o.detail[1], "NoSuchBucket"), "detail: %s", o.detail[1]);
	cr_assert_eq(ds_exists(dest), 1);
	cr_assert_eq(ds_count_temps(dest, NULL, 0), 0);
}

Test(s3, a_bad_s3_url_is_refused_at_submit)
{
	static const char *const bad[] = {
		"s3:///key", "s3://bucket", "s3://bucket/", "s3://bu cket/k",
		"s3://bucket/a?b", "s3://bucket/a%zz",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char err[256] = "";
		struct sstf_file f = {.name = "x", .url = bad[i], .size = 1};
		struct sstf_batch b = {.dest_dir = dest, .files = &f, .nfiles = 1, .errbuf = err,
		                       .errbuf_len = sizeof(err)};
		int r = sstf_check_batch(&b);
		cr_expect_eq(r, -SSTF_EBADURL, "%s: %d (%s)", bad[i], r, err);
		cr_expect(strstr(err, "x"), "%s: errbuf names no entry: %s", bad[i], err);
	}
}

/* ------------------------------------------------------------------------ */
/* Small objects                                                            */

struct buf {
	char *p;
	size_t len, cap;
	unsigned restarts;
};

static int to_buf(void *user, const void *data, size_t len)
{
	struct buf *b = user;
	if (!data) {
		b->len = 0;
		b->restarts++;
		return 0;
	}
	if (b->len + len > b->cap) {
		b->cap = (b->len + len) * 2;
		b->p = realloc(b->p, b->cap);
		cr_assert(b->p);
	}
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static int stop_at_once(void *user, const void *data, size_t len)
{
	(void)user, (void)data, (void)len;
	return 42;
}

Test(s3, sstf_get_reads_an_object_and_keeps_to_its_cap)
{
	const char text[] = "{\"files\":[],\"file_total_size\":0}";
	cr_assert_eq(s3server_put(srv, BUCKET, "meta/bulk_load_metadata", text, strlen(text)), 0);
	struct sstf_s3_config s3 = s3cfg(NULL);
	struct sstf_config cfg = {.s3 = &s3};
	struct buf b = {0};
	char err[512] = "x";
	int r = sstf_get(&cfg, "s3://" BUCKET "/meta/bulk_load_metadata", 1024, to_buf, &b, err,
	                 sizeof(err));
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_eq(err[0], '\0');
	cr_assert_eq(b.len, strlen(text));
	cr_assert_eq(memcmp(b.p, text, b.len), 0);

	b.len = 0;
	r = sstf_get(&cfg, "s3://" BUCKET "/meta/bulk_load_metadata", strlen(text) - 1, to_buf, &b,
	             err, sizeof(err));
	cr_assert_eq(r, -EFBIG, "%d: %s", r, err);
	cr_assert(strstr(err, "longer than"), "%s", err);

	r = sstf_get(&cfg, "s3://" BUCKET "/meta/bulk_load_metadata", 1024, stop_at_once, NULL,
	             err, sizeof(err));
	cr_assert_eq(r, 42);

	r = sstf_get(&cfg, "s3://" BUCKET "/meta/none", 1024, to_buf, &b, err, sizeof(err));
	cr_assert_eq(r, -SSTF_EHTTP);
	cr_assert(strstr(err, "HTTP 404 NoSuchKey"), "%s", err);

	struct sstf_s3_config wrong = s3cfg("wrong-secret-7");
	cfg.s3 = &wrong;
	cfg.max_retries = 3;
	r = sstf_get(&cfg, "s3://" BUCKET "/meta/bulk_load_metadata", 1024, to_buf, &b, err,
	             sizeof(err));
	cr_assert_eq(r, -SSTF_EHTTP);
	cr_assert(strstr(err, "SignatureDoesNotMatch"), "%s", err);
	cr_assert(!strstr(err, "wrong-secret-7"), "%s", err);
	cr_assert_eq(b.restarts, 0, "a 403 was retried");

	r = sstf_get(&cfg, "gopher://x/y", 1024, to_buf, &b, err, sizeof(err));
	cr_assert_eq(r, -SSTF_EBADURL);
	free(b.p);
}

struct listing {
	size_t n;
	char last[256];
	bool ordered;
	uint64_t bytes;
	unsigned odd_seen;
};

static int on_object(void *user, const struct sstf_object *obj)
{
	struct listing *l = user;
	if (l->n && strcmp(obj->key, l->last) <= 0)
		l->ordered = false;
	snprintf(l->last, sizeof(l->last), "%s", obj->key);
	l->bytes += obj->size;
	if (strcmp(obj->key, "list/odd key+=\xc3\xa9.sst") == 0 && obj->size == 5)
		l->odd_seen++;
	l->n++;
	return 0;
}

Test(s3, sstf_list_pages_through_more_than_1000_keys)
{
	char body[8];
	uint64_t expect = 0;
	for (int i = 0; i < 1500; i++) {
		char key[64];
		snprintf(key, sizeof(key), "list/k%05d", i);
		int len = snprintf(body, sizeof(body), "%d", i);
		expect += (uint64_t)len;
		cr_assert_eq(s3server_put(srv, BUCKET, key, body, (size_t)len), 0);
	}
	cr_assert_eq(s3server_put(srv, BUCKET, "list/odd key+=\xc3\xa9.sst", "12345", 5), 0);
	cr_assert_eq(s3server_put(srv, BUCKET, "listed-not/x", "1", 1), 0);
	struct sstf_s3_config s3 = s3cfg(NULL);
	struct sstf_config cfg = {.s3 = &s3};
	struct listing l = {.ordered = true};
	char err[512];
	int r = sstf_list(&cfg, "s3://" BUCKET "/list/", on_object, &l, err, sizeof(err));
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_eq(l.n, 1501, "listed %zu keys", l.n);
	cr_assert(l.ordered);
	/* Not '&' or '<': s3rver 4.0.4 escapes them twice ("&amp;amp;");
	 * sstf__xml_text's own test covers XML's escapes. */
	cr_assert_eq(l.odd_seen, 1, "the key with a space, '+', '=' and UTF-8 came back whole");
	cr_assert_eq(l.bytes, expect + 5);

	/* The prefix is literal, and encoded: "list/odd key+" names one. */
	memset(&l, 0, sizeof(l));
	l.ordered = true;
	r = sstf_list(&cfg, "s3://" BUCKET "/list/odd key+", on_object, &l, err, sizeof(err));
	cr_assert_eq(r, 0, "%s", err);
	cr_assert_eq(l.n, 1);
	cr_assert_eq(l.odd_seen, 1);

	memset(&l, 0, sizeof(l));
	r = sstf_list(&cfg, "s3://no-such-bucket/", on_object, &l, err, sizeof(err));
	cr_assert_eq(r, -SSTF_EHTTP);
	cr_assert(strstr(err, "NoSuchBucket"), "%s", err);
	r = sstf_list(&cfg, "http://x/y", on_object, &l, err, sizeof(err));
	cr_assert_eq(r, -SSTF_EBADURL);
}

/* ------------------------------------------------------------------------ */
/* Units                                                                    */

Test(s3, endpoint_urls_carry_the_canonical_key)
{
	static const struct sstf_allocator libc = {0};
	struct sstf__net net;
	struct sstf_s3_config c = {.endpoint = "http://127.0.0.1:9000/", .region = "eu-west-3"};
	struct sstf_config cfg = {.s3 = &c};
	cr_assert_eq(sstf__net_init(&net, &libc, &cfg), 0);
	char out[256];
	sstf__s3_url(net.s3, "s3://b/a b+c=%C3%A9/~x.sst", NULL, out, sizeof(out));
	cr_assert_str_eq(out, "http://127.0.0.1:9000/b/a%20b%2Bc%3D%C3%A9/~x.sst");
	sstf__s3_url(net.s3, "s3://b/a%20b%2bc", NULL, out, sizeof(out));
	cr_assert_str_eq(out, "http://127.0.0.1:9000/b/a%20b%2Bc");
	sstf__s3_url(net.s3, "s3://b/", "list-type=2&prefix=", out, sizeof(out));
	cr_assert_str_eq(out, "http://127.0.0.1:9000/b?list-type=2&prefix=");
	long need = sstf__s3_url(net.s3, "s3://b/k", NULL, out, 4);
	cr_assert_eq(need, (long)strlen("http://127.0.0.1:9000/b/k"));
	cr_assert_str_eq(out, "htt");
	cr_assert_lt(sstf__s3_url(net.s3, "s3://b/%g1", NULL, out, sizeof(out)), 0);
	sstf__net_fini(&net, &libc);

	/* No endpoint: AWS, virtual-host style, in the region. */
	struct sstf_s3_config aws = {.region = "eu-west-3"};
	cfg.s3 = &aws;
	cr_assert_eq(sstf__net_init(&net, &libc, &cfg), 0);
	sstf__s3_url(net.s3, "s3://bkt/k", NULL, out, sizeof(out));
	cr_assert_str_eq(out, "https://bkt.s3.eu-west-3.amazonaws.com/k");
	sstf__net_fini(&net, &libc);
	struct sstf_s3_config path = {.addressing = SSTF_S3_PATH};
	cfg.s3 = &path;
	cr_assert_eq(sstf__net_init(&net, &libc, &cfg), 0);
	sstf__s3_url(net.s3, "s3://bkt/k", NULL, out, sizeof(out));
	cr_assert_str_eq(out, "https://s3.us-east-1.amazonaws.com/bkt/k");
	sstf__net_fini(&net, &libc);
}

Test(s3, error_details_name_the_s3_code_and_what_is_transient)
{
	static const char slow[] =
		"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SlowDown</Code>"
		"<Message>Please reduce your request rate &amp; retry.</Message>"
		"<StringToSign>AWS4-HMAC-SHA256\nsecret-ish</StringToSign></Error>";
	char d[256], code[64];
	sstf__http_error_detail(503, slow, strlen(slow), d, sizeof(d), code, sizeof(code));
	cr_assert_str_eq(d, "HTTP 503 SlowDown: Please reduce your request rate & retry.");
	cr_assert_str_eq(code, "SlowDown");
	cr_assert(sstf__http_transient(CURLE_OK, 503, code));
	static const char timeout[] = "<Error><Code>RequestTimeout</Code></Error>";
	sstf__http_error_detail(400, timeout, strlen(timeout), d, sizeof(d), code, sizeof(code));
	cr_assert_str_eq(d, "HTTP 400 RequestTimeout");
	cr_assert(sstf__http_transient(CURLE_OK, 400, code));
	static const char denied[] = "<Error><Code>AccessDenied</Code><Message>Access "
	                             "Denied</Message></Error>";
	sstf__http_error_detail(403, denied, strlen(denied), d, sizeof(d), code, sizeof(code));
	cr_assert_str_eq(d, "HTTP 403 AccessDenied: Access Denied");
	cr_assert(!sstf__http_transient(CURLE_OK, 403, code));
	sstf__http_error_detail(404, "<html>Not found</html>", 22, d, sizeof(d), code,
	                        sizeof(code));
	cr_assert_str_eq(d, "HTTP 404");
	cr_assert_str_eq(code, "");
}

Test(s3, xml_text_decodes_entities_and_character_references)
{
	static const char xml[] = "<a><Key>x &amp; y &lt;z&gt; &quot;q&quot; &apos;"
	                          "&#233;&#xE9;&#x1F600; &bogus; &#0;</Key><Key>2</Key></a>";
	char out[128];
	size_t pos = 0;
	long n = sstf__xml_text(xml, strlen(xml), &pos, "Key", out, sizeof(out));
	cr_assert_str_eq(out, "x & y <z> \"q\" '\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80 &bogus; &#0;");
	cr_assert_eq(n, (long)strlen(out));
	cr_assert_eq(sstf__xml_text(xml, strlen(xml), &pos, "Key", out, sizeof(out)), 1);
	cr_assert_str_eq(out, "2");
	cr_assert_eq(sstf__xml_text(xml, strlen(xml), &pos, "Key", out, sizeof(out)), -1);
	pos = 0;
	cr_assert_eq(sstf__xml_text(xml, strlen(xml), &pos, "Key", out, 4), (long)strlen(
		"x & y <z> \"q\" '\xc3\xa9\xc3\xa9\xf0\x9f\x98\x80 &bogus; &#0;"));
	cr_assert_str_eq(out, "x &");
}

Test(s3, the_configuration_is_checked)
{
	struct {
		struct sstf_s3_config s3;
		const char *want;
	} bad[] = {
		{{.endpoint = "ftp://x"}, "s3.endpoint"},
		{{.endpoint = "http://x/path"}, "s3.endpoint"},
		{{.endpoint = "http://user@x"}, "s3.endpoint"},
		{{.region = "US East"}, "s3.region"},
		{{.secret_access_key = "s"}, "without an access key"},
		{{.access_key_id = "AKIA"}, "secret_access_key: missing"},
		{{.access_key_id = "AK:IA", .secret_access_key = "s"}, "access_key_id"},
		{{.addressing = 7}, "s3.addressing"},
		{{.reserved = {1}}, "s3.reserved"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sstf_config cfg = {.s3 = &bad[i].s3};
		char err[256] = "";
		cr_expect_eq(sstf_config_check(&cfg, err, sizeof(err)), -EINVAL, "case %zu", i);
		cr_expect(strstr(err, bad[i].want), "case %zu: %s", i, err);
		sstf_engine *e = NULL;
		cr_expect_eq(test_engine_new(&cfg, &e), -EINVAL, "case %zu", i);
	}
	struct sstf_s3_config good = {.endpoint = "https://rgw.example.net:7480/",
	                              .access_key_id = "AKIA",
	                              .secret_access_key = "s:e/c+r=et"};
	struct sstf_config cfg = {.s3 = &good};
	cr_assert_eq(sstf_config_check(&cfg, NULL, 0), 0);
	struct sstf_config empty_ca = {.ca_file = ""};
	cr_assert_eq(sstf_config_check(&empty_ca, NULL, 0), -EINVAL);
}
