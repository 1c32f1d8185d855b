/*
 * Description: the tool speaks S3, end to end: the real tools/sstfetch
 * against a real S3 server (support/s3server.c: @20minutes/s3rver 4.0.4,
 * which checks SigV4 signatures) and, for a manifest over http, nginx.
 * --list of a prefix of 1,200 objects pages past ListObjectsV2's 1,000 keys,
 * skips folder markers and keys outside the prefix, fetches every object
 * byte-identical and reports the files as length-checked ("verified":
 * "length", and a line in the normal report); --list refuses a non-s3
 * source and a key the engine would refuse as a name (exit 2, naming it);
 * a manifest fetched from s3:// and from http:// works, one over
 * --manifest_max is refused with exit 2 naming the cap and the option;
 * credentials come from the environment, from a profile (HOME/.aws with
 * AWS_PROFILE, and AWS_SHARED_CREDENTIALS_FILE/AWS_CONFIG_FILE, with a
 * nested "s3 =" endpoint and a session token longer than inih's lines),
 * options win over the environment and --profile over the environment's
 * keys; an entry's own s3:// URL gets them too; a wrong secret fails the
 * files (exit 1) or the remote manifest (exit 2) with SignatureDoesNotMatch;
 * no credentials at all sends anonymous requests and the report says so;
 * an unknown profile is exit 2 naming both files; and neither the secret
 * key nor the session token (right or wrong, from options, environment or
 * profile) appears in stdout, stderr or any report format.
 *
 * The server knows a key pair of our own besides s3rver's S3RVER/S3RVER
 * (which is also the bucket owner the uploads use): s3rver 4.0.4 keeps its
 * keys in lib/models/account.js's registry, so a script preloaded into
 * node (NODE_OPTIONS=--require) adds ours there. Distinctive values make
 * "the secret appears nowhere" a test that can fail.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/origin.h"
#include "support/s3server.h"
#include "support/tool.h"

#define KEY_ID "AKIDSSTFS3CLITEST01"
#define SECRET "sstfCliSecret+Q9zX/7vK2pW=mN4"
#define WRONG_SECRET "sstfWrongSecret+H3kL/8dR5tY=bV1"
#define TOKEN_HEAD "sstfSessionToken"

static char *work;
static struct s3server *srv;
static struct origin *org;
static char *token; /* TOKEN_HEAD and 900 more bytes: longer than inih's lines */

/* Every variable the tool reads, so that the host's own never leak in. */
static const char *const aws_env[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
	"AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", NULL,
};

/* The preload that gives s3rver our key pair (see the top). */
static const char preload_js[] =
	"'use strict';\n"
	"const path = require('path');\n"
	"const main = process.env.SSTF_S3RVER_MODULE\n"
	"  ? require.resolve(path.resolve(process.env.SSTF_S3RVER_MODULE))\n"
	"  : require.resolve('@20minutes/s3rver', {paths: ['/usr/local/lib/sstfetch-node']});\n"
	"const A = require(path.join(path.dirname(main), 'models', 'account'));\n"
	"A.DUMMY_ACCOUNT.createKeyPair(process.env.SSTF_TEST_KEY_ID,\n"
	"                              process.env.SSTF_TEST_SECRET);\n";

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	cr_assert_eq(fputs(text, f) >= 0 && fclose(f) == 0, 1, "%s: write failed", path);
}

static void fixture_init(void)
{
	work = tool_setup("s3cli");
	for (size_t i = 0; aws_env[i]; i++)
		unsetenv(aws_env[i]);
	/* An empty home: no profile of the machine's is ever read. */
	char *home = fmt("%s/home", work);
	cr_assert_eq(mkdir(home, 0700), 0);
	setenv("HOME", home, 1);

	char *pre = fmt("%s/addkey.js", work);
	write_file(pre, preload_js);
	setenv("NODE_OPTIONS", fmt("--require=%s", pre), 1);
	setenv("SSTF_TEST_KEY_ID", KEY_ID, 1);
	setenv("SSTF_TEST_SECRET", SECRET, 1);
	static const char *const buckets[] = {"b", NULL};
	int err = s3server_start(buckets, &srv);
	unsetenv("NODE_OPTIONS");
	unsetenv("SSTF_TEST_SECRET");
	cr_assert_eq(err, 0, "s3server_start: %s (run tools/deps.sh)", strerror(-err));

	token = keep(calloc(1, 1024));
	memcpy(token, TOKEN_HEAD, strlen(TOKEN_HEAD));
	for (size_t i = strlen(TOKEN_HEAD); i < 916; i++)
		token[i] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[i % 64];
}

static void fixture_fini(void)
{
	/* The tools first: none may still be talking to the servers. */
	tool_teardown();
	s3server_stop(srv);
	srv = NULL;
	origin_stop(org);
	org = NULL;
}

TestSuite(s3cli, .init = fixture_init, .fini = fixture_fini, .timeout = 900);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

static const char *endpoint(void)
{
	return fmt("--s3_endpoint=%s", srv->endpoint);
}

static void env_keys(const char *id, const char *secret)
{
	setenv("AWS_ACCESS_KEY_ID", id, 1);
	setenv("AWS_SECRET_ACCESS_KEY", secret, 1);
}

/* A dataset of n files in work/NAME; returns its dir. */
static char *make_set(const char *name, size_t n, const char *filesize)
{
	char *dir = fmt("%s/%s", work, name);
	gen_dataset(dir, n, filesize, 7);
	return dir;
}

/* Uploads files 1..n of set as prefix + their names. */
static void upload_set(const char *set, size_t n, const char *prefix)
{
	for (size_t i = 1; i <= n; i++) {
		char *path = set_file(set, i);
		const char *base = strrchr(path, '/') + 1;
		int err = s3server_put_file(srv, "b", fmt("%s%s", prefix, base), path);
		cr_assert_eq(err, 0, "upload of %s failed", path);
	}
}

static void put_text(const char *key, const char *text)
{
	cr_assert_eq(s3server_put(srv, "b", key, text, strlen(text)), 0, "upload of %s", key);
}

/* Fails the test when needle occurs in the run's stdout or stderr. */
static void expect_absent(const struct run *r, const char *needle, const char *what)
{
	cr_assert_null(strstr(r->out, needle), "%s found in stdout of %s:\n%s", what, r->cmd,
	               r->out);
	cr_assert_null(strstr(r->err, needle), "%s found in stderr of %s:\n%s", what, r->cmd,
	               r->err);
}

/* Fails the test unless needle occurs in the run's stdout or stderr. */
static void expect_said(const struct run *r, const char *needle)
{
	cr_assert(strstr(r->out, needle) || strstr(r->err, needle),
	          "\"%s\" in neither output of %s (exit %d)\nstderr:\n%s\nstdout:\n%s", needle,
	          r->cmd, r->code, r->err, r->out);
}

static int exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

/* The "s3" object of a job of a JSON report. */
static json_t *job_s3(json_t *job)
{
	return jobj(job, "s3");
}

/* A failure's detail must name S3's code, for every listed failure. */
static void expect_failures_say(json_t *job, const char *code, size_t n)
{
	json_t *fails = jget(job, "failures");
	cr_assert_eq(json_array_size(fails), n, "%zu failures listed, expected %zu",
	             json_array_size(fails), n);
	for (size_t i = 0; i < n; i++) {
		const char *d = jstr(json_array_get(fails, i), "detail");
		cr_assert_not_null(strstr(d, code), "failure %zu: detail \"%s\" lacks %s", i, d,
		                   code);
	}
}

/* ------------------------------------------------------------------------ */
/* --list                                                                   */

#define NLIST 1200

Test(s3cli, list_of_1200_objects_pages_fetches_every_one_and_says_length_checked)
{
	char *set = make_set("set", NLIST, "1:2k");
	upload_set(set, NLIST, "pfx/");
	/* Folder markers are skipped; keys beside the prefix are not in it. */
	put_text("pfx/", "");
	put_text("pfx/sub/", "");
	put_text("pfx2/outside", "not under pfx/");
	put_text("pfx", "the prefix's own name, not under pfx/");
	env_keys(KEY_ID, SECRET);
	char *dest = fmt("%s/dest", work);

	/* No trailing slash: the listing is of "pfx/", as the engine joins. */
	struct run r;
	RUN(&r, "--list", "--source=s3://b/pfx", endpoint(), fmt("--dest=%s", dest),
	    "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	json_t *files = jobj(job, "files");
	cr_assert_eq(jint(files, "ok"), NLIST);
	cr_assert_eq(jint(files, "total"), NLIST);
	cr_assert_str_eq(jstr(job, "verified"), "length");
	cr_assert_str_eq(jstr(jobj(job, "job options"), "list"), "1");
	cr_assert(json_is_true(jget(job_s3(job), "signed")));
	cr_assert_not_null(strstr(jstr(job_s3(job), "credentials"), "environment"));
	/* Every object byte for byte, and nothing else (no "sub" marker). */
	expect_dest(set, dest, NLIST, 0);

	/* The normal report says it too; the files are now skipped by size. */
	RUN(&r, "--list", "--source=s3://b/pfx/", endpoint(), fmt("--dest=%s", dest));
	expect_exit(&r, 0);
	cr_assert_not_null(strstr(r.out, "skipped=1200"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "length-checked, not digest-checked"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "  s3     : from the environment"), "%s", r.out);
}

Test(s3cli, list_refuses_a_non_s3_source_a_manifest_and_keys_that_are_no_file_name)
{
	env_keys(KEY_ID, SECRET);
	char *dest = fmt("%s/dest", work);
	struct run r;

	RUN(&r, "--list", "--source=http://127.0.0.1:1/x", fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "--list needs an S3 source"), "%s", r.err);

	RUN(&r, "--list", "--manifest=m.json", "--source=s3://b/p/", fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "give --list or --manifest, not both"), "%s", r.err);

	RUN(&r, "--list", "--verify=xxh3", "--source=s3://b/p/", fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "sizes only"), "%s", r.err);

	/* A name in the engine's own namespace: refused, named, nothing made. */
	put_text("p/good", "fine");
	put_text("p/.sstf-evil", "would fall into the staging namespace");
	RUN(&r, "--list", "--source=s3://b/p/", endpoint(), fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, ".sstf-evil"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "--list s3://b/p/"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "becomes a file name"), "%s", r.err);
	cr_assert(!exists(dest), "dest was created");
}

/* ------------------------------------------------------------------------ */
/* Remote manifests                                                         */

Test(s3cli, manifest_from_s3_fetches_the_set)
{
	char *set = make_set("set", 20, "1k:64k");
	upload_set(set, 20, "set/");
	cr_assert_eq(s3server_put_file(srv, "b", "set/manifest.json",
	                               fmt("%s/manifest.json", set)), 0);
	env_keys(KEY_ID, SECRET);
	char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, "--manifest=s3://b/set/manifest.json", "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "ok"), 20);
	cr_assert_str_eq(jstr(job, "verified"), "digest");
	expect_dest(set, dest, 20, 0);
}

Test(s3cli, manifest_from_http_fetches_the_set_without_s3)
{
	char *set = make_set("set", 20, "1k:64k");
	int err = origin_start(set, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", org->base_url),
	    fmt("--source=%s", org->base_url), fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "ok"), 20);
	cr_assert_str_eq(jstr(job, "verified"), "digest");
	/* No s3:// URL: no credentials looked for, no "s3" in the report. */
	cr_assert_null(json_object_get(job, "s3"));
	expect_dest(set, dest, 20, 0);

	/* A missing one is exit 2 with the origin's answer. */
	RUN(&r, fmt("--manifest=%s/nope.json", org->base_url),
	    fmt("--source=%s", org->base_url), fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "HTTP 404"), "%s", r.err);
}

Test(s3cli, manifest_over_the_cap_is_refused_naming_cap_and_option)
{
	char *set = make_set("set", 40, "1k");
	size_t len;
	slurp(fmt("%s/manifest.json", set), &len);
	cr_assert_gt(len, 2048, "the manifest is only %zu bytes", len);
	cr_assert_eq(s3server_put_file(srv, "b", "set/manifest.json",
	                               fmt("%s/manifest.json", set)), 0);
	env_keys(KEY_ID, SECRET);
	char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, "--manifest=s3://b/set/manifest.json", "--manifest_max=2k",
	    "--source=s3://b/set", endpoint(), fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "--manifest_max"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, "2048 bytes"), "%s", r.err);
	cr_assert(!exists(dest), "dest was created");

	/* Right at its size it passes (a run that fetches nothing new is
	 * enough: the manifest is what is measured). */
	RUN(&r, "--manifest=s3://b/set/manifest.json", fmt("--manifest_max=%zu", len),
	    "--source=s3://b/set", endpoint(), fmt("--dest=%s", dest));
	expect_exit(&r, 1); /* the files themselves were never uploaded */
	cr_assert_not_null(strstr(r.out, "NoSuchKey"), "%s", r.out);
}

/* ------------------------------------------------------------------------ */
/* Credentials                                                              */

/* work/set of 5 files uploaded under "set/"; returns the set's dir. */
static char *small_set(void)
{
	char *set = make_set("set", 5, "1k:32k");
	upload_set(set, 5, "set/");
	return set;
}

Test(s3cli, credentials_from_the_environment_sign_requests)
{
	char *set = small_set();
	env_keys(KEY_ID, SECRET);
	char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *s3 = job_s3(report_job(r.out));
	cr_assert(json_is_true(jget(s3, "signed")));
	cr_assert_not_null(strstr(jstr(s3, "credentials"), "the environment"));
	cr_assert_str_eq(jstr(s3, "region"), "us-east-1");
	expect_dest(set, dest, 5, 0);
}

Test(s3cli, credentials_and_endpoint_from_a_profile)
{
	char *set = small_set();
	char *aws = fmt("%s/home/.aws", work);
	cr_assert_eq(mkdir(aws, 0700), 0);
	/* [default] is wrong: AWS_PROFILE=other must be what is read. The
	 * session token's line is longer than inih's 200 bytes. */
	write_file(fmt("%s/credentials", aws),
	           fmt("[default]\naws_access_key_id = " KEY_ID "\n"
	               "aws_secret_access_key = " WRONG_SECRET "\n\n"
	               "[other]\nAWS_Access_Key_Id = " KEY_ID "\n"
	               "aws_secret_access_key = " SECRET " ; an inline comment\n"
	               "aws_session_token = %s\n", token));
	write_file(fmt("%s/config", aws),
	           fmt("[default]\nregion = us-west-2\n\n"
	               "[profile other]\nregion = eu-west-3\n"
	               "s3 =\n  endpoint_url = %s\n  addressing_style = path\n",
	               srv->endpoint));
	setenv("AWS_PROFILE", "other", 1);
	char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set",
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *s3 = job_s3(report_job(r.out));
	cr_assert_not_null(strstr(jstr(s3, "credentials"), "profile 'other'"),
	                   "%s", jstr(s3, "credentials"));
	cr_assert_not_null(strstr(jstr(s3, "credentials"), "session token"));
	cr_assert_str_eq(jstr(s3, "region"), "eu-west-3");
	cr_assert_str_eq(jstr(s3, "endpoint"), srv->endpoint);
	cr_assert_str_eq(jstr(s3, "addressing"), "path");
	expect_dest(set, dest, 5, 0);
	expect_absent(&r, SECRET, "the secret");
	expect_absent(&r, TOKEN_HEAD, "the session token");

	/* The same files named by AWS_SHARED_CREDENTIALS_FILE and
	 * AWS_CONFIG_FILE, with a HOME that has none. */
	char *elsewhere = fmt("%s/elsewhere", work);
	cr_assert_eq(rename(aws, elsewhere), 0);
	setenv("AWS_SHARED_CREDENTIALS_FILE", fmt("%s/credentials", elsewhere), 1);
	setenv("AWS_CONFIG_FILE", fmt("%s/config", elsewhere), 1);
	dest = fmt("%s/dest2", work);
	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set",
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	s3 = job_s3(report_job(r.out));
	cr_assert_not_null(strstr(jstr(s3, "credentials"), elsewhere));
	expect_dest(set, dest, 5, 0);
}

Test(s3cli, options_win_over_the_environment_and_profile_over_its_keys)
{
	char *set = small_set();
	char *m = fmt("--manifest=%s/manifest.json", set);
	struct run r;

	/* The environment's secret is wrong; the options' is right. */
	env_keys(KEY_ID, WRONG_SECRET);
	RUN(&r, m, "--source=s3://b/set", endpoint(), fmt("--dest=%s/d1", work),
	    "--access_key_id=" KEY_ID, "--secret_access_key=" SECRET, "--output-format=json");
	expect_exit(&r, 0);
	cr_assert_not_null(strstr(jstr(job_s3(report_job(r.out)), "credentials"), "options"));
	expect_dest(set, fmt("%s/d1", work), 5, 0);

	/* And the other way round: the option's wrong secret is used. */
	env_keys(KEY_ID, SECRET);
	RUN(&r, m, "--source=s3://b/set", endpoint(), fmt("--dest=%s/d2", work),
	    "--access_key_id=" KEY_ID, "--secret_access_key=" WRONG_SECRET,
	    "--output-format=json");
	expect_exit(&r, 1);
	expect_failures_say(report_job(r.out), "SignatureDoesNotMatch", 5);

	/* --profile picks the profile's keys over the environment's, as the
	 * AWS CLI does; the region option wins over the environment's. */
	char *aws = fmt("%s/home/.aws", work);
	cr_assert_eq(mkdir(aws, 0700), 0);
	write_file(fmt("%s/credentials", aws), "[good]\naws_access_key_id = " KEY_ID
	                                       "\naws_secret_access_key = " SECRET "\n");
	env_keys(KEY_ID, WRONG_SECRET);
	setenv("AWS_REGION", "ap-south-1", 1);
	RUN(&r, m, "--source=s3://b/set", endpoint(), fmt("--dest=%s/d3", work),
	    "--profile=good", "--region=eu-north-1", "--output-format=json");
	expect_exit(&r, 0);
	json_t *s3 = job_s3(report_job(r.out));
	cr_assert_not_null(strstr(jstr(s3, "credentials"), "profile 'good'"));
	cr_assert_str_eq(jstr(s3, "region"), "eu-north-1");
	expect_dest(set, fmt("%s/d3", work), 5, 0);

	/* AWS_PROFILE does not: the environment's (wrong) keys win. */
	setenv("AWS_PROFILE", "good", 1);
	RUN(&r, m, "--source=s3://b/set", endpoint(), fmt("--dest=%s/d4", work));
	expect_exit(&r, 1);
	cr_assert_not_null(strstr(r.out, "SignatureDoesNotMatch"), "%s", r.out);
	cr_assert_not_null(strstr(r.out, "region ap-south-1"), "%s", r.out);
}

Test(s3cli, entry_s3_urls_get_credentials_too)
{
	char *set = small_set();
	/* A manifest whose entries name their own s3:// URLs, with a file://
	 * source that nothing comes from. */
	json_t *doc = parse_json(slurp(fmt("%s/manifest.json", set), NULL), "manifest");
	json_t *files = jget(doc, "files");
	for (size_t i = 0; i < json_array_size(files); i++) {
		json_t *e = json_array_get(files, i);
		json_object_set_new(e, "url", json_string(fmt("s3://b/set/%s", jstr(e, "name"))));
	}
	char *mpath = fmt("%s/entries.json", work);
	cr_assert_eq(json_dump_file(doc, mpath, 0), 0);
	env_keys(KEY_ID, SECRET);
	struct run r;
	RUN(&r, fmt("--manifest=%s", mpath), fmt("--source=file://%s/nothing", work),
	    "--protocols=file,s3", endpoint(), fmt("--dest=%s/dest", work),
	    "--output-format=json");
	expect_exit(&r, 0);
	cr_assert(json_is_true(jget(job_s3(report_job(r.out)), "signed")));
	expect_dest(set, fmt("%s/dest", work), 5, 0);
}

Test(s3cli, wrong_secret_fails_files_exit_1_and_a_remote_manifest_exit_2)
{
	char *set = small_set();
	cr_assert_eq(s3server_put_file(srv, "b", "set/manifest.json",
	                               fmt("%s/manifest.json", set)), 0);
	env_keys(KEY_ID, WRONG_SECRET);
	struct run r;

	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s/d1", work), "--output-format=json");
	expect_exit(&r, 1);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "failed"), 5);
	expect_failures_say(job, "SignatureDoesNotMatch", 5);

	RUN(&r, "--manifest=s3://b/set/manifest.json", "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s/d2", work));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "SignatureDoesNotMatch"), "%s", r.err);
	cr_assert(!exists(fmt("%s/d2", work)), "dest was created");

	/* And --list's own request. */
	RUN(&r, "--list", "--source=s3://b/set", endpoint(), fmt("--dest=%s/d3", work));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "SignatureDoesNotMatch"), "%s", r.err);
}

Test(s3cli, secrets_never_appear_in_output_or_any_report)
{
	char *set = small_set();
	cr_assert_eq(s3server_put_file(srv, "b", "set/manifest.json",
	                               fmt("%s/manifest.json", set)), 0);
	char *m = fmt("--manifest=%s/manifest.json", set);
	char *jpath = fmt("%s/report.json", work);
	static const char *const formats[] = {"normal", "json", "terse"};
	struct run r;

	/* Right secret and a token as options, every format; the JSON one
	 * also to a file. */
	for (size_t f = 0; f < 3; f++) {
		RUN(&r, m, "--source=s3://b/set", endpoint(), fmt("--dest=%s/ok%zu", work, f),
		    "--access_key_id=" KEY_ID, "--secret_access_key=" SECRET,
		    fmt("--session_token=%s", token), fmt("--output-format=%s", formats[f]));
		expect_exit(&r, 0);
		expect_absent(&r, SECRET, "the secret");
		expect_absent(&r, TOKEN_HEAD, "the session token");
	}
	RUN(&r, m, "--source=s3://b/set", endpoint(), fmt("--dest=%s/ok3", work),
	    "--access_key_id=" KEY_ID, "--secret_access_key=" SECRET,
	    fmt("--session_token=%s", token), "--output-format=json",
	    fmt("--output=%s", jpath));
	expect_exit(&r, 0);
	char *report = slurp(jpath, NULL);
	cr_assert_null(strstr(report, SECRET), "the secret is in the JSON report");
	cr_assert_null(strstr(report, TOKEN_HEAD), "the token is in the JSON report");
	json_t *opts = jobj(report_job(report), "job options");
	cr_assert_str_eq(jstr(opts, "secret_access_key"), "(set)");
	cr_assert_str_eq(jstr(opts, "session_token"), "(set)");
	cr_assert_str_eq(jstr(opts, "access_key_id"), KEY_ID);

	/* A wrong secret, from options then the environment: failed files,
	 * a failed remote manifest, a failed listing, a bad endpoint. */
	for (int from_env = 0; from_env < 2; from_env++) {
		const char *id = from_env ? "--parallel=16" : "--access_key_id=" KEY_ID;
		const char *sk = from_env ? "--parallel=16" : "--secret_access_key=" WRONG_SECRET;
		if (from_env)
			env_keys(KEY_ID, WRONG_SECRET);
		for (size_t f = 0; f < 3; f++) {
			RUN(&r, m, "--source=s3://b/set", endpoint(), id, sk,
			    fmt("--dest=%s/bad%d%zu", work, from_env, f),
			    fmt("--output-format=%s", formats[f]));
			expect_exit(&r, 1);
			if (f < 2) /* terse has no failure details */
				expect_said(&r, "SignatureDoesNotMatch");
			expect_absent(&r, WRONG_SECRET, "the wrong secret");
		}
		RUN(&r, "--manifest=s3://b/set/manifest.json", "--source=s3://b/set", endpoint(),
		    id, sk, fmt("--dest=%s/badm", work));
		expect_exit(&r, 2);
		expect_said(&r, "SignatureDoesNotMatch");
		expect_absent(&r, WRONG_SECRET, "the wrong secret");
		RUN(&r, "--list", "--source=s3://b/set", endpoint(), id, sk,
		    fmt("--dest=%s/badl", work));
		expect_exit(&r, 2);
		expect_absent(&r, WRONG_SECRET, "the wrong secret");
		RUN(&r, m, "--source=s3://b/set", "--s3_endpoint=http://127.0.0.1:1/a/path", id,
		    sk, fmt("--dest=%s/bade", work));
		expect_exit(&r, 2);
		expect_said(&r, "no path");
		expect_absent(&r, WRONG_SECRET, "the wrong secret");
	}

	/* A secret with a line break is refused without being shown. */
	unsetenv("AWS_ACCESS_KEY_ID");
	unsetenv("AWS_SECRET_ACCESS_KEY");
	RUN(&r, m, "--source=s3://b/set", endpoint(), "--access_key_id=" KEY_ID,
	    "--secret_access_key=" SECRET "\nx", fmt("--dest=%s/badn", work));
	expect_exit(&r, 2);
	expect_said(&r, "line break");
	expect_absent(&r, SECRET, "the secret");
}

Test(s3cli, no_credentials_sends_anonymous_requests_and_says_so)
{
	char *set = small_set();
	char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s", dest));
	expect_exit(&r, 0);
	cr_assert_not_null(strstr(r.out, "  s3     : anonymous (no credentials found in "
	                                 "options, environment or profile)"),
	                   "%s", r.out);
	expect_dest(set, dest, 5, 0);

	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s/d2", work), "--output-format=json");
	expect_exit(&r, 0);
	cr_assert(json_is_false(jget(job_s3(report_job(r.out)), "signed")));
}

Test(s3cli, an_unknown_profile_is_exit_2_naming_both_files)
{
	char *set = small_set();
	const char *home = getenv("HOME");
	struct run r;
	setenv("AWS_PROFILE", "nope", 1);
	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s/d1", work));
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "'nope' (from AWS_PROFILE)"), "%s", r.err);
	cr_assert_not_null(strstr(r.err, fmt("%s/.aws/credentials", home)), "%s", r.err);
	cr_assert_not_null(strstr(r.err, fmt("%s/.aws/config", home)), "%s", r.err);

	unsetenv("AWS_PROFILE");
	RUN(&r, fmt("--manifest=%s/manifest.json", set), "--source=s3://b/set", endpoint(),
	    fmt("--dest=%s/d2", work), "--profile=missing");
	expect_exit(&r, 2);
	cr_assert_not_null(strstr(r.err, "'missing' (from --profile)"), "%s", r.err);
	cr_assert(!exists(fmt("%s/d1", work)) && !exists(fmt("%s/d2", work)));

	/* A source that is not s3:// never looks for a profile. */
	setenv("AWS_PROFILE", "nope", 1);
	RUN(&r, fmt("--manifest=%s/manifest.json", set), fmt("--source=file://%s", set),
	    fmt("--dest=%s/d3", work));
	expect_exit(&r, 0);
}
