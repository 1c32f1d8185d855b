/*
 * Description: the S3 server of the tests (support/s3server.c running
 * @20minutes/s3rver 4.0.4 under node) does what its header says, seen from
 * libcurl's SigV4 signing: objects of 1 byte, 0 bytes and 3 MiB come back
 * byte-identical from a signed GET; keys with a space, '+', '=', '%', '~'
 * and UTF-8 round-trip through the canonical encoding and are listed
 * decoded; a wrong secret gets 403 SignatureDoesNotMatch (also on a ranged
 * GET), a missing key 404 NoSuchKey, a missing bucket 404 NoSuchBucket; a
 * signed ranged GET gets 206 and exactly its slice; ListObjectsV2 over 1,500
 * objects uploaded as a tree stops at 1,000 keys with a continuation token
 * holding '/' or '=' that, encoded, gives the other 500; uploads to a
 * missing bucket, of a missing file or a missing tree fail; stop removes
 * the temp dir and frees the port. The last test pins what 4.0.4 does that
 * a client must know: anonymous reads pass, a literal '+' in the path is a
 * space, an unsorted query does not verify, "bytes=0-0" is the whole
 * object, "bytes=-N" is 0..N, and a range on an empty object never ends.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/child.h"
#include "support/dataset.h"
#include "support/s3server.h"
#include "support/sanitizers.h"

#define MIB (1024u * 1024u)

static const char *const buckets[] = { "bkt", "other", NULL };
static struct s3server *srv;
/* What a test made on disk, removed by teardown even when it failed. */
static struct dataset ds;
static char *tmpdir;

static void setup(void)
{
	int err = s3server_start(buckets, &srv);
	cr_assert_eq(err, 0, "s3server_start: %s (run tools/deps.sh)", strerror(-err));
}

static void teardown(void)
{
	s3server_stop(srv);
	srv = NULL;
	ds_destroy(&ds);
	if (tmpdir)
		ds_rmtree(tmpdir);
	free(tmpdir);
	tmpdir = NULL;
}

TestSuite(s3server, .init = setup, .fini = teardown, .timeout = 600);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* n bytes of a simple PRNG; the caller frees. */
static unsigned char *random_bytes(size_t n, uint64_t seed)
{
	unsigned char *b = malloc(n ? n : 1);
	cr_assert_not_null(b);
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		b[i] = (unsigned char)(x >> 24);
	}
	return b;
}

/* A signed GET (secret NULL: the right one) that must reach the server. */
static struct s3server_response get(const char *url, const char *range, const char *secret)
{
	struct s3server_response r;
	int err = s3server_get(srv, url, range, secret, 0, &r);
	cr_assert_eq(err, 0, "GET %s: %s", url, strerror(-err));
	return r;
}

static struct s3server_response get_key(const char *bucket, const char *key,
                                        const char *range)
{
	char *url = s3server_url(srv, bucket, key);
	cr_assert_not_null(url);
	struct s3server_response r = get(url, range, NULL);
	free(url);
	return r;
}

static void expect_body(const struct s3server_response *r, const void *want, size_t len,
                        const char *what)
{
	cr_assert_eq(r->len, len, "%s: %zu bytes, want %zu", what, r->len, len);
	cr_assert(len == 0 || memcmp(r->body, want, len) == 0, "%s: bytes differ", what);
}

/* The text of the first <tag>...</tag> at or after *from, malloc'd; NULL if
 * none. *from moves past it. */
static char *xml_next(const char **from, const char *tag)
{
	char open[64], close_[64];
	snprintf(open, sizeof(open), "<%s>", tag);
	snprintf(close_, sizeof(close_), "</%s>", tag);
	const char *a = strstr(*from, open);
	if (!a)
		return NULL;
	a += strlen(open);
	const char *b = strstr(a, close_);
	if (!b)
		return NULL;
	*from = b + strlen(close_);
	return strndup(a, (size_t)(b - a));
}

static char *xml_first(const char *body, const char *tag)
{
	const char *p = body;
	return xml_next(&p, tag);
}

/* Appends every <Key> of a listing to keys[*n..]. Returns how many. */
static size_t collect_keys(const char *body, char **keys, size_t *n, size_t cap)
{
	size_t found = 0;
	const char *p = body;
	char *k;
	while ((k = xml_next(&p, "Key")) != NULL) {
		cr_assert_lt(*n, cap, "more keys listed than uploaded");
		keys[(*n)++] = k;
		found++;
	}
	return found;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* ------------------------------------------------------------------------ */

Test(s3server, put_then_signed_get_is_byte_identical)
{
	const unsigned char one = 0xa5;
	cr_assert_eq(s3server_put(srv, "bkt", "one.sst", &one, 1), 0);
	cr_assert_eq(s3server_put(srv, "bkt", "empty.sst", "", 0), 0);

	/* 3 MiB + 7: from a file, and from memory under another key. */
	size_t big = 3 * MIB + 7;
	cr_assert_eq(ds_mkdtemp("s3big", &tmpdir), 0);
	char *path = ds_strfmt("%s/big", tmpdir);
	unsigned char *data = random_bytes(big, 3);
	cr_assert_eq(ds_write_file(path, data, big), 0);
	cr_assert_eq(s3server_put_file(srv, "bkt", "big/file.sst", path), 0);
	cr_assert_eq(s3server_put(srv, "other", "big/mem.sst", data, big), 0);

	struct s3server_response r = get_key("bkt", "one.sst", NULL);
	cr_assert_eq(r.status, 200);
	expect_body(&r, &one, 1, "one.sst");
	free(r.body);
	r = get_key("bkt", "empty.sst", NULL);
	cr_assert_eq(r.status, 200);
	expect_body(&r, "", 0, "empty.sst");
	free(r.body);
	r = get_key("bkt", "big/file.sst", NULL);
	cr_assert_eq(r.status, 200, "HTTP %ld: %s", r.status, r.body);
	expect_body(&r, data, big, "big/file.sst");
	free(r.body);
	r = get_key("other", "big/mem.sst", NULL);
	cr_assert_eq(r.status, 200);
	expect_body(&r, data, big, "other/big/mem.sst");
	free(r.body);
	/* Buckets are apart. */
	r = get_key("other", "big/file.sst", NULL);
	cr_assert_eq(r.status, 404);
	free(r.body);

	free(data);
	free(path);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

Test(s3server, odd_keys_round_trip_canonically_encoded)
{
	static const char *const keys[] = {
		"dir/a b+c=\xc3\xa9.sst", /* the brief's example: "dir/a b+c=é.sst" */
		"sp ace",
		"plus+plus",
		"eq=eq=",
		"pct%41.sst",
		"tilde~-_.sst",
		"\xd0\xba\xd0\xbb\xd1\x8e\xd1\x87/\xc3\xbc\xe2\x82\xac\xf0\x9d\x84\x9e", /* ключ/ü€𝄞 */
	};
	size_t n = sizeof(keys) / sizeof(keys[0]);

	char *enc = s3server_url(srv, "bkt", keys[0]);
	char *want = ds_strfmt("%s/bkt/dir/a%%20b%%2Bc%%3D%%C3%%A9.sst", srv->endpoint);
	cr_assert_str_eq(enc, want);
	free(enc);
	free(want);
	enc = s3server_encode("a/b c~", 0);
	cr_assert_str_eq(enc, "a%2Fb%20c~");
	free(enc);

	for (size_t i = 0; i < n; i++)
		cr_assert_eq(s3server_put(srv, "bkt", keys[i], keys[i], strlen(keys[i])), 0,
		             "PUT %s", keys[i]);
	for (size_t i = 0; i < n; i++) {
		struct s3server_response r = get_key("bkt", keys[i], NULL);
		cr_assert_eq(r.status, 200, "GET %s: HTTP %ld %s", keys[i], r.status, r.body);
		expect_body(&r, keys[i], strlen(keys[i]), keys[i]);
		free(r.body);
	}

	/* The listing names them decoded, each once. */
	char *url = ds_strfmt("%s/bkt?list-type=2&prefix=", srv->endpoint);
	struct s3server_response r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 200, "%s", r.body);
	char *listed[16];
	size_t nl = 0;
	collect_keys(r.body, listed, &nl, 16);
	cr_assert_eq(nl, n, "%zu keys listed, want %zu:\n%s", nl, n, r.body);
	for (size_t i = 0; i < n; i++) {
		size_t hits = 0;
		for (size_t j = 0; j < nl; j++)
			hits += strcmp(listed[j], keys[i]) == 0;
		cr_expect_eq(hits, 1, "%s listed %zu times", keys[i], hits);
	}
	for (size_t j = 0; j < nl; j++)
		free(listed[j]);
	free(r.body);
	free(url);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

/* The object's bytes: no run of hex digits, so that the signatures and
 * hashes a 403 echoes (hex) cannot contain them by chance ("abc" did). */
#define SECRET_BODY "object-only-jkl"

Test(s3server, wrong_secret_is_403_signature_does_not_match)
{
	const size_t n = strlen(SECRET_BODY);
	cr_assert_eq(s3server_put(srv, "bkt", "secret/x.sst", SECRET_BODY, n), 0);
	char *url = s3server_url(srv, "bkt", "secret/x.sst");

	struct s3server_response r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 200);
	expect_body(&r, SECRET_BODY, n, "right secret");
	free(r.body);

	r = get(url, NULL, "not-the-secret");
	cr_assert_eq(r.status, 403, "HTTP %ld: %s", r.status, r.body);
	cr_assert_not_null(strstr(r.body, "<Code>SignatureDoesNotMatch</Code>"), "%s", r.body);
	cr_assert_null(strstr(r.body, SECRET_BODY), "the object's bytes are in the 403: %s",
	               r.body);
	free(r.body);

	/* A ranged GET is verified like any other. */
	r = get(url, "1-2", "not-the-secret");
	cr_assert_eq(r.status, 403, "HTTP %ld: %s", r.status, r.body);
	cr_assert_not_null(strstr(r.body, "<Code>SignatureDoesNotMatch</Code>"), "%s", r.body);
	free(r.body);
	free(url);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

Test(s3server, missing_key_is_404_no_such_key)
{
	struct s3server_response r = get_key("bkt", "missing/key.sst", NULL);
	cr_assert_eq(r.status, 404, "HTTP %ld: %s", r.status, r.body);
	cr_assert_not_null(strstr(r.body, "<Code>NoSuchKey</Code>"), "%s", r.body);
	cr_assert_not_null(strstr(r.body, "<Key>missing/key.sst</Key>"), "%s", r.body);
	free(r.body);

	r = get_key("nobucket", "missing/key.sst", NULL);
	cr_assert_eq(r.status, 404, "HTTP %ld: %s", r.status, r.body);
	cr_assert_not_null(strstr(r.body, "<Code>NoSuchBucket</Code>"), "%s", r.body);
	free(r.body);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

Test(s3server, signed_ranged_get_is_206_with_its_slice)
{
	size_t size = 3 * MIB + 5;
	unsigned char *data = random_bytes(size, 7);
	cr_assert_eq(s3server_put(srv, "bkt", "ranged.sst", data, size), 0);

	static const struct {
		size_t from, to; /* inclusive; to == SIZE_MAX: open ("N-") */
	} ranges[] = {
		{ 1000, 1999 },
		{ 1, 1 },
		{ MIB, 2 * MIB - 1 },
		{ 3 * MIB + 4, 3 * MIB + 4 },  /* the last byte */
		{ 3 * MIB, SIZE_MAX },         /* "N-" */
		{ 3 * MIB - 10, 3 * MIB + 100 }, /* past the end: clipped */
	};
	for (size_t i = 0; i < sizeof(ranges) / sizeof(ranges[0]); i++) {
		char range[64];
		size_t from = ranges[i].from;
		size_t to = ranges[i].to == SIZE_MAX || ranges[i].to >= size ? size - 1
		                                                             : ranges[i].to;
		if (ranges[i].to == SIZE_MAX)
			snprintf(range, sizeof(range), "%zu-", from);
		else
			snprintf(range, sizeof(range), "%zu-%zu", from, ranges[i].to);
		struct s3server_response r = get_key("bkt", "ranged.sst", range);
		cr_assert_eq(r.status, 206, "range %s: HTTP %ld %s", range, r.status,
		             r.status == 206 ? "" : r.body);
		expect_body(&r, data + from, to - from + 1, range);
		free(r.body);
	}

	/* Past the end of the object: 416 InvalidRange. */
	char range[64];
	snprintf(range, sizeof(range), "%zu-", size);
	struct s3server_response r = get_key("bkt", "ranged.sst", range);
	cr_assert_eq(r.status, 416, "HTTP %ld: %s", r.status, r.body);
	cr_assert_not_null(strstr(r.body, "<Code>InvalidRange</Code>"), "%s", r.body);
	free(r.body);
	free(data);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

#define NMANY 1500

Test(s3server, list_v2_of_1500_objects_truncates_at_1000)
{
	/* 1,500 small files in a tree: 15 directories of 100. */
	char **names = calloc(NMANY, sizeof(*names));
	uint64_t *sizes = calloc(NMANY, sizeof(*sizes));
	cr_assert(names && sizes);
	for (size_t i = 0; i < NMANY; i++) {
		names[i] = ds_strfmt("d%02zu/%06zu.sst", i / 100, i);
		sizes[i] = i % 37;
	}
	cr_assert_eq(ds_create(&ds, "s3many", NMANY, (const char *const *)names, sizes, 15), 0);
	int n = s3server_put_tree(srv, "bkt", "many/", ds.dir);
	cr_assert_eq(n, NMANY, "put_tree: %d", n);
	/* Outside the prefix. */
	cr_assert_eq(s3server_put(srv, "bkt", "manyx", "x", 1), 0);
	cr_assert_eq(s3server_put(srv, "bkt", "a-before", "x", 1), 0);

	char **listed = calloc(NMANY, sizeof(*listed));
	size_t nl = 0;
	char *url = ds_strfmt("%s/bkt?list-type=2&prefix=many%%2F", srv->endpoint);
	struct s3server_response r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 200, "HTTP %ld: %s", r.status, r.body);
	char *trunc = xml_first(r.body, "IsTruncated");
	char *count = xml_first(r.body, "KeyCount");
	char *token = xml_first(r.body, "NextContinuationToken");
	cr_assert_str_eq(trunc, "true");
	cr_assert_str_eq(count, "1000");
	cr_assert(token && *token, "no NextContinuationToken");
	cr_assert_eq(collect_keys(r.body, listed, &nl, NMANY), 1000);
	free(trunc);
	free(count);
	free(r.body);
	free(url);

	/* The token is base64 ('/', '+', '='): encoded, with the query sorted. */
	char *etoken = s3server_encode(token, 0);
	url = ds_strfmt("%s/bkt?continuation-token=%s&list-type=2&prefix=many%%2F",
	                srv->endpoint, etoken);
	r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 200, "HTTP %ld: %s", r.status, r.body);
	trunc = xml_first(r.body, "IsTruncated");
	count = xml_first(r.body, "KeyCount");
	char *next = xml_first(r.body, "NextContinuationToken");
	cr_assert_str_eq(trunc, "false");
	cr_assert_str_eq(count, "500");
	cr_assert_null(next);
	cr_assert_eq(collect_keys(r.body, listed, &nl, NMANY), 500);

	/* Together: every uploaded key once, "many/" + its path in the tree. */
	qsort(listed, nl, sizeof(*listed), cmp_str);
	qsort(names, NMANY, sizeof(*names), cmp_str);
	for (size_t i = 0; i < NMANY; i++) {
		char *want = ds_strfmt("many/%s", names[i]);
		cr_assert_str_eq(listed[i], want);
		free(want);
	}

	for (size_t i = 0; i < NMANY; i++) {
		free(names[i]);
		free(listed[i]);
	}
	free(names);
	free(listed);
	free(sizes);
	free(trunc);
	free(count);
	free(token);
	free(etoken);
	free(r.body);
	free(url);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

Test(s3server, uploads_that_cannot_succeed_fail)
{
	cr_assert_lt(s3server_put(srv, "nobucket", "k", "x", 1), 0);
	cr_assert_lt(s3server_put_file(srv, "bkt", "k", "/nonexistent/file"), 0);
	cr_assert_lt(s3server_put_tree(srv, "bkt", "p/", "/nonexistent/dir"), 0);
	/* None of them left an object behind. */
	struct s3server_response r = get_key("bkt", "k", NULL);
	cr_assert_eq(r.status, 404);
	free(r.body);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

Test(s3server, two_servers_and_stop_cleans_up)
{
	static const char *const mine[] = { "one", "two", "three", NULL };
	struct s3server *s2;
	cr_assert_eq(s3server_start(mine, &s2), 0);
	cr_assert_neq(s2->port, srv->port);
	cr_assert_str_eq(s2->access_key, "S3RVER");
	cr_assert_str_eq(s2->secret_key, "S3RVER");
	cr_assert_str_eq(s2->region, "us-east-1");
	char want[64];
	snprintf(want, sizeof(want), "http://127.0.0.1:%u", s2->port);
	cr_assert_str_eq(s2->endpoint, want);

	for (int i = 0; mine[i]; i++) {
		struct s3server_response r;
		char *url = ds_strfmt("%s/%s?list-type=2", s2->endpoint, mine[i]);
		cr_assert_eq(s3server_get(s2, url, NULL, NULL, 0, &r), 0);
		cr_assert_eq(r.status, 200, "bucket %s: HTTP %ld %s", mine[i], r.status, r.body);
		free(r.body);
		free(url);
	}
	/* The suite's server does not have them. */
	char *url = ds_strfmt("%s/one?list-type=2", srv->endpoint);
	struct s3server_response r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 404);
	free(r.body);
	free(url);

	char *dir = strdup(s2->dir);
	unsigned port = s2->port;
	pid_t pid = s2->pid;
	cr_assert(ds_exists(dir));
	s3server_stop(s2);
	cr_assert_not(ds_exists(dir), "%s left behind", dir);
	cr_assert_not(child_port_accepts(port), "port %u still accepts", port);
	cr_assert_eq(kill(pid, 0), -1, "node %d still there", (int)pid);
	free(dir);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}

/*
 * What @20minutes/s3rver 4.0.4 does that differs from S3 or that a SigV4
 * client must know. If one of these changes, the client's rules in
 * tests/README.md need another look.
 */
Test(s3server, quirks_of_s3rver_4_0_4)
{
	unsigned char ten[] = "0123456789";
	cr_assert_eq(s3server_put(srv, "bkt", "ten", ten, 10), 0);
	cr_assert_eq(s3server_put(srv, "bkt", "a b", "space", 5), 0);
	cr_assert_eq(s3server_put(srv, "bkt", "empty", "", 0), 0);

	/* Requests without Authorization are served (anonymous). */
	char *url = s3server_url(srv, "bkt", "ten");
	struct s3server_response r = get(url, NULL, "");
	cr_assert_eq(r.status, 200);
	expect_body(&r, ten, 10, "anonymous");
	free(r.body);
	free(url);

	/* A literal '+' in the path is a space: anonymous reads "a b"; signed,
	 * it does not verify (s3rver signs "%20", libcurl signs "+"). */
	url = ds_strfmt("%s/bkt/a+b", srv->endpoint);
	r = get(url, NULL, "");
	cr_assert_eq(r.status, 200);
	expect_body(&r, "space", 5, "a+b anonymous");
	free(r.body);
	r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 403);
	cr_assert_not_null(strstr(r.body, "SignatureDoesNotMatch"), "%s", r.body);
	free(r.body);
	free(url);

	/* The query is signed as sent: unsorted, it does not verify. */
	url = ds_strfmt("%s/bkt?prefix=t&list-type=2", srv->endpoint);
	r = get(url, NULL, NULL);
	cr_assert_eq(r.status, 403, "HTTP %ld: %s", r.status, r.body);
	free(r.body);
	free(url);

	/* "bytes=0-0" is the whole object; "bytes=-3" is bytes 0-3. */
	r = get_key("bkt", "ten", "0-0");
	cr_assert_eq(r.status, 206);
	expect_body(&r, ten, 10, "0-0");
	free(r.body);
	r = get_key("bkt", "ten", "-3");
	cr_assert_eq(r.status, 206);
	expect_body(&r, ten, 4, "-3");
	free(r.body);

	/* A range on an empty object: 206 with Content-Length 1 and no body,
	 * so the response never ends (here: curl's 1 s timeout). */
	url = s3server_url(srv, "bkt", "empty");
	int err = s3server_get(srv, url, "0-", NULL, 1000, &r);
	cr_assert_eq(err, -ETIMEDOUT, "range on an empty object: %d, HTTP %ld", err, r.status);
	cr_assert_eq(r.status, 206);
	free(r.body);
	free(url);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer report above");
}
