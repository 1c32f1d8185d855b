/*
 * Description: batch entry names are checked before anything touches the
 * disk: relative, no "." or ".." component, no empty component, no NUL,
 * each component at most NAME_MAX and the whole below PATH_MAX, no
 * component in the engine's own ".sstf" namespace; a per-file URL may only
 * name a scheme the batch allows; and sstf_submit() rejects a bad or
 * duplicate entry, naming it, without ever calling a callback.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "names.h"
#include "sstfetch.h"
#include "support/dataset.h"
#include "support/sanitizers.h"


/* Frees the engine and fails the test if that left memory unreachable. */
static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0,
	             "LeakSanitizer: leaks after sstf_engine_free (report above)");
}

static int check(const char *name)
{
	char msg[256];
	return sstf__name_check(name, strlen(name), msg, sizeof(msg));
}

/* A path of len bytes made of NAME_MAX-byte components ('a'...) and '/'. */
static char *long_path(size_t len, size_t comp)
{
	char *p = malloc(len + 1);
	cr_assert_not_null(p);
	for (size_t i = 0; i < len; i++)
		p[i] = (i % (comp + 1) == comp) ? '/' : 'a';
	/* Never end on a '/'. */
	if (len && p[len - 1] == '/')
		p[len - 1] = 'b';
	p[len] = '\0';
	return p;
}

Test(names, accepts_plain_and_nested_relative_names)
{
	cr_assert_eq(check("000001.sst"), 0);
	cr_assert_eq(check("a/b/c.sst"), 0);
	cr_assert_eq(check("x"), 0);
	cr_assert_eq(check(".hidden"), 0, "a leading dot is a name, not '.'");
	cr_assert_eq(check("a/..b/c.."), 0, "'..b' and 'c..' are not '..'");
	cr_assert_eq(check("..."), 0);
}

Test(names, refuses_empty_absolute_dot_and_dotdot)
{
	static const char *bad[] = {
		"", "/etc/x", "/", "../x", "a/../x", "a/..", "..", ".", "./x", "a/./b",
		"a/.", "a//b", "a/", "//", "x/",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		char msg[256] = "";
		int r = sstf__name_check(bad[i], strlen(bad[i]), msg, sizeof(msg));
		cr_expect_eq(r, -SSTF_EBADENTRY, "'%s' gave %d", bad[i], r);
		cr_expect_neq(msg[0], '\0', "'%s' refused without a reason", bad[i]);
	}
}

Test(names, refuses_components_in_the_engine_namespace)
{
	/* The operator's trial: an entry named like a temporary made one
	 * file hold another's bytes. No component may start with ".sstf". */
	cr_assert_eq(check(".sstf-1-0.tmp"), -SSTF_EBADENTRY);
	cr_assert_eq(check(".sstf"), -SSTF_EBADENTRY);
	cr_assert_eq(check("a/.sstf/0123456789abcdef-0.tmp"), -SSTF_EBADENTRY);
	cr_assert_eq(check(".sstfoo/b.sst"), -SSTF_EBADENTRY);
	cr_assert_eq(check("x.sstf"), 0, "only a leading .sstf is the namespace");
	cr_assert_eq(check("a/b.sstf-1"), 0);
	cr_assert_eq(check(".sst"), 0);
	cr_assert_eq(check("sstf/x"), 0);
}

Test(names, refuses_embedded_nul)
{
	static const char name[] = "a.sst\0../../etc/passwd";
	char msg[256];
	cr_assert_eq(sstf__name_check(name, sizeof(name) - 1, msg, sizeof(msg)),
	             -SSTF_EBADENTRY);
	/* A length shorter than the string is a lie too. */
	cr_assert_eq(sstf__name_check("abc", 2, msg, sizeof(msg)), -SSTF_EBADENTRY);
	cr_assert_eq(sstf__name_check("abc", 3, msg, sizeof(msg)), 0);
}

Test(names, component_of_name_max_accepted_one_more_refused)
{
	char *ok = long_path(NAME_MAX, NAME_MAX);
	char *bad = long_path(NAME_MAX + 1, NAME_MAX + 1);
	char *nested_ok = ds_strfmt("d/%s/e", ok);
	char *nested_bad = ds_strfmt("d/%s/e", bad);
	cr_assert_eq(strlen(ok), NAME_MAX);
	cr_expect_eq(check(ok), 0);
	cr_expect_eq(check(nested_ok), 0);
	cr_expect_eq(check(bad), -SSTF_EBADENTRY);
	cr_expect_eq(check(nested_bad), -SSTF_EBADENTRY);
	free(ok);
	free(bad);
	free(nested_ok);
	free(nested_bad);
}

Test(names, path_of_path_max_refused_path_max_minus_one_accepted)
{
	char *at = long_path(PATH_MAX, NAME_MAX);
	char *below = long_path(PATH_MAX - 1, NAME_MAX);
	char *huge = long_path(4 * PATH_MAX, NAME_MAX);
	cr_assert_eq(strlen(at), PATH_MAX);
	cr_expect_eq(check(below), 0);
	cr_expect_eq(check(at), -SSTF_EBADENTRY);
	cr_expect_eq(check(huge), -SSTF_EBADENTRY);
	free(at);
	free(below);
	free(huge);
}

Test(names, message_is_truncated_and_terminated)
{
	char msg[4];
	memset(msg, 'x', sizeof(msg));
	cr_assert_eq(sstf__name_check("/abs", 4, msg, sizeof(msg)), -SSTF_EBADENTRY);
	cr_assert(memchr(msg, '\0', sizeof(msg)) != NULL);
	cr_assert_eq(sstf__name_check("/abs", 4, NULL, 0), -SSTF_EBADENTRY);
}

/* ------------------------------------------------------------------------ */
/* Through the public API                                                   */

static atomic_int callbacks;

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	atomic_fetch_add(&callbacks, 1);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	atomic_fetch_add(&callbacks, 1);
}

static void on_prog(void *user, uint64_t gen, const struct sstf_progress *p)
{
	atomic_fetch_add(&callbacks, 1);
}

static char *tmp;  /* temp dir: src.bin, dest/ */
static char *dest;
static char *src_url;
static char xxh3[33];

static void api_init(void)
{
	cr_assert_eq(ds_mkdtemp("names", &tmp), 0);
	dest = ds_strfmt("%s/dest", tmp);
	char *src = ds_strfmt("%s/src.bin", tmp);
	src_url = ds_strfmt("file://%s", src);
	cr_assert(dest && src && src_url);
	cr_assert_eq(ds_mkdirs(dest), 0);
	cr_assert_eq(ds_write_file(src, "hello", 5), 0);
	cr_assert_eq(sstf_digest_hex(SSTF_DIGEST_XXH3, "hello", 5, xxh3), 16);
	free(src);
}

static void api_fini(void)
{
	ds_rmtree(tmp);
	free(tmp);
	free(dest);
	free(src_url);
}

/*
 * Submits files[] and expects the batch to be refused with `want`, errbuf
 * containing `needle`; then frees the engine (which drains everything) and
 * checks that no callback ever ran and that nothing was created anywhere
 * under the temp dir besides the source file.
 */
static void expect_refused(struct sstf_file *files, size_t n, int want, const char *needle)
{
	sstf_engine *eng = NULL;
	cr_assert_eq(sstf_engine_new(NULL, &eng), 0);
	char errbuf[512];
	memset(errbuf, 0, sizeof(errbuf));
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = files,
		.nfiles = n,
		.on_file_done = on_file,
		.on_batch_done = on_batch,
		.on_progress = on_prog,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int r = sstf_submit(eng, &b, &gen);
	cr_expect_eq(r, want, "submit gave %d (%s), want %d; errbuf '%s'", r,
	             sstf_strerror(r), want, errbuf);
	cr_expect(strstr(errbuf, needle) != NULL, "errbuf '%s' does not name '%s'",
	          errbuf, needle);
	engine_free_checked(eng);
	cr_expect_eq(atomic_load(&callbacks), 0, "a refused batch ran callbacks");
	char first[PATH_MAX];
	cr_expect_eq(ds_count_temps(tmp, first, sizeof(first)), 0, "temp left: %s", first);
	char *escaped = ds_strfmt("%s/x", tmp);
	cr_expect(!ds_exists(escaped), "'../x' escaped the destination");
	free(escaped);
}

static struct sstf_file good(const char *name)
{
	struct sstf_file f = {
		.name = name,
		.url = src_url,
		.size = 5,
		.digest_kind = SSTF_DIGEST_XXH3,
		.digest_hex = xxh3,
	};
	return f;
}

Test(names_api, submit_refuses_dotdot_and_names_the_entry, .init = api_init, .fini = api_fini)
{
	struct sstf_file files[3] = { good("ok1.sst"), good("../x"), good("ok2.sst") };
	expect_refused(files, 3, -SSTF_EBADENTRY, "../x");
	char why[512];
	struct dataset none = { 0 };
	cr_expect_eq(ds_check_dest(&none, dest, NULL, 0, why, sizeof(why)), 0,
	             "a refused batch created files: %s", why);
}

Test(names_api, submit_refuses_duplicate_name, .init = api_init, .fini = api_fini)
{
	struct sstf_file files[4] = { good("a/dup.sst"), good("b.sst"), good("c.sst"),
	                              good("a/dup.sst") };
	expect_refused(files, 4, -SSTF_EBADENTRY, "a/dup.sst");
	char why[512];
	struct dataset none = { 0 };
	cr_expect_eq(ds_check_dest(&none, dest, NULL, 0, why, sizeof(why)), 0,
	             "a refused batch created files: %s", why);
}

Test(names_api, submit_refuses_absolute_and_overlong_names, .init = api_init, .fini = api_fini)
{
	struct sstf_file files[2] = { good("ok.sst"), good("/etc/x") };
	expect_refused(files, 2, -SSTF_EBADENTRY, "/etc/x");

	char *comp = long_path(NAME_MAX + 1, NAME_MAX + 1);
	files[1] = good(comp);
	/* The message may shorten a long name; it must still show its start. */
	char needle[32];
	snprintf(needle, sizeof(needle), "%.16s", comp);
	expect_refused(files, 2, -SSTF_EBADENTRY, needle);
	free(comp);
}

Test(names_api, submit_refuses_bad_digest_and_scheme, .init = api_init, .fini = api_fini)
{
	struct sstf_file files[2] = { good("ok.sst"), good("bad-digest.sst") };
	files[1].digest_hex = "0123"; /* too short for XXH3 */
	expect_refused(files, 2, -SSTF_EBADENTRY, "bad-digest.sst");

	files[1] = good("bad-hex.sst");
	files[1].digest_hex = "zz23456789abcdef";
	expect_refused(files, 2, -SSTF_EBADENTRY, "bad-hex.sst");

	files[1] = good("bad-kind.sst");
	files[1].digest_kind = SSTF_DIGEST_XXH128; /* 16 digits given, 32 needed */
	expect_refused(files, 2, -SSTF_EBADENTRY, "bad-kind.sst");

	files[1] = good("ftp.sst");
	files[1].url = "ftp://127.0.0.1/x";
	expect_refused(files, 2, -SSTF_EBADURL, "ftp.sst");
}

Test(names_api, submit_refuses_name_in_temporary_namespace, .init = api_init,
     .fini = api_fini)
{
	struct sstf_file files[2] = { good("000001.sst"), good(".sstf-1-0.tmp") };
	expect_refused(files, 2, -SSTF_EBADENTRY, ".sstf-1-0.tmp");
}

/* Runs sstf_check_batch on one file with its own url under base_url. */
static int check_scheme(const char *base_url, const char *url, const char *protocols,
                        char *errbuf, size_t len)
{
	struct sstf_file f[2] = { good("a.sst"), good("b.sst") };
	f[0].url = NULL; /* base_url/a.sst */
	f[1].url = url;
	struct sstf_batch b = { .dest_dir = "/nonexistent", .files = f, .nfiles = 2,
	                        .errbuf = errbuf, .errbuf_len = len,
	                        .base_url = base_url, .protocols = protocols };
	errbuf[0] = '\0';
	return sstf_check_batch(&b);
}

Test(names_api, per_file_url_only_in_the_sources_scheme, .init = api_init, .fini = api_fini)
{
	char why[512];
	/* The trial's manifest: "url": "file:///etc/passwd" under an http
	 * source was read, and its size leaked into the error. */
	int r = check_scheme("http://127.0.0.1:1/set", "file:///etc/passwd", NULL, why,
	                     sizeof(why));
	cr_expect_eq(r, -SSTF_EBADURL, "%d (%s): %s", r, sstf_strerror(r), why);
	cr_expect(strstr(why, "b.sst") && strstr(why, "file://") && strstr(why, "http"),
	          "the message must name the entry and both schemes: %s", why);
	cr_expect_eq(check_scheme("http://127.0.0.1:1", "https://mirror/b.sst", NULL, why,
	                          sizeof(why)),
	             -SSTF_EBADURL, "https is another scheme than http: %s", why);
	/* Widened explicitly, as curl's CURLOPT_PROTOCOLS_STR. */
	cr_expect_eq(check_scheme("http://127.0.0.1:1", "file:///etc/passwd", "http,file", why,
	                          sizeof(why)),
	             0, "%s", why);
	cr_expect_eq(check_scheme("http://127.0.0.1:1", "https://mirror/b.sst", "all", why,
	                          sizeof(why)),
	             0, "%s", why);
	/* Without a base URL every URL is the caller's own choice. */
	cr_expect_eq(check_scheme(NULL, "file:///etc/passwd", NULL, why, sizeof(why)),
	             -SSTF_EBADENTRY, "a.sst has no url and there is no base_url");
	cr_expect(strstr(why, "a.sst") && strstr(why, "base_url"), "%s", why);
	/* A bad list is refused, naming the word. */
	cr_expect_eq(check_scheme("http://127.0.0.1:1", NULL, "http,gopher", why, sizeof(why)),
	             -EINVAL);
	cr_expect(strstr(why, "gopher"), "%s", why);
}

Test(names_api, valid_batch_after_refusals_is_accepted, .init = api_init, .fini = api_fini)
{
	/* The control: the same engine path accepts the good entries, so the
	 * refusals above are about the bad entry and not the setup. */
	sstf_engine *eng = NULL;
	cr_assert_eq(sstf_engine_new(NULL, &eng), 0);
	struct sstf_file files[2] = { good("ok1.sst"), good("sub/ok2.sst") };
	char errbuf[256] = "";
	struct sstf_batch b = { .dest_dir = dest, .files = files, .nfiles = 2,
	                        .errbuf = errbuf, .errbuf_len = sizeof(errbuf) };
	uint64_t gen = 0;
	cr_assert_eq(sstf_submit(eng, &b, &gen), 0, "errbuf '%s'", errbuf);
	cr_assert_neq(gen, 0);
	cr_assert_eq(sstf_wait(eng, gen, 120000), 0);
	engine_free_checked(eng);
	char *a = ds_strfmt("%s/ok1.sst", dest), *c = ds_strfmt("%s/sub/ok2.sst", dest);
	char *src = ds_strfmt("%s/src.bin", tmp);
	cr_expect_eq(ds_files_equal(src, a), 1);
	cr_expect_eq(ds_files_equal(src, c), 1);
	free(a);
	free(c);
	free(src);
}
