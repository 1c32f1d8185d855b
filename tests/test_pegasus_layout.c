/*
 * Description: Apache Pegasus bulk-load sets through the real tool
 * ($SSTFETCH): --gen-dataset --layout=pegasus writes ROOT/CLUSTER/APP with
 * bulk_load_info and, per partition, bulk_load_metadata (real MD5s,
 * file_total_size) and 1.sst, 2.sst, ...; --pegasus=URL fetches every
 * partition (or those --partitions names) into DEST/PIDX, verified by the
 * metadata's MD5s, over nginx and over S3 (s3rver). A file whose bytes do
 * not match its MD5 is never published and the run exits 1 naming
 * "PIDX/NAME"; a file_total_size that is not the sum of the sizes, a
 * missing metadata (404), an unreachable origin, a bad bulk_load_info and
 * a partition past partition_count each exit 2 before a byte of any .sst
 * is asked for (the in-process fault origin counts the requests).
 *
 * The tool runs through support/tool.h; a sanitizer report in its stderr
 * fails the test. Nothing here measures time.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "sstfetch.h"
#include "support/dataset.h"
#include "support/faultorigin.h"
#include "support/origin.h"
#include "support/s3server.h"
#include "support/tool.h"

#define NPARTS 3
#define NFILES 4
/* Small and odd sizes; some over one 1 MiB buffer. */
#define FILESIZE "1k:1300k"
#define SEED 11

static char *work;          /* this test's temp dir */
static char *root;          /* work/root: ROOT, served at "/" */
static char *app;           /* root/cluster/app: the app directory */
static struct origin *org;  /* nginx serving root */
static struct fault_origin *fo; /* the fault origin serving root */
static struct s3server *srv;

/* Every AWS variable the tool reads, so that the host's never leak in. */
static const char *const aws_env[] = {
	"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN",
	"AWS_SECURITY_TOKEN", "AWS_REGION", "AWS_DEFAULT_REGION",
	"AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE",
	"AWS_DEFAULT_PROFILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE",
	"AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", NULL,
};

static void fixture_init(void)
{
	work = tool_setup("pegasus-layout");
	root = fmt("%s/root", work);
	app = fmt("%s/cluster/app", root);
	for (size_t i = 0; aws_env[i]; i++)
		unsetenv(aws_env[i]);
	/* An empty home: no AWS profile of the machine's is read. */
	char *home = fmt("%s/home", work);
	cr_assert_eq(mkdir(home, 0700), 0);
	setenv("HOME", home, 1);
}

static void fixture_fini(void)
{
	/* The tools first: none may still be talking to the origins. */
	tool_teardown();
	work = root = app = NULL;
	origin_stop(org);
	org = NULL;
	if (fo)
		fault_origin_stop(fo);
	fo = NULL;
	s3server_stop(srv);
	srv = NULL;
}

TestSuite(pegasus_layout, .init = fixture_init, .fini = fixture_fini,
          .timeout = 900);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* Writes the set into app with the tool itself. */
static void gen_app(void)
{
	struct run r;
	RUN(&r, fmt("--gen-dataset=%s", app), "--layout=pegasus",
	    fmt("--partition_count=%d", NPARTS), fmt("--nrfiles=%d", NFILES),
	    "--filesize=" FILESIZE, fmt("--seed=%d", SEED));
	expect_exit(&r, 0);
}

static const char *part_file(const char *dir, int pidx, int k)
{
	return fmt("%s/%d/%d.sst", dir, pidx, k);
}

/* Fails the test unless run's stdout or stderr says needle. */
static void expect_said(const struct run *r, const char *needle)
{
	cr_assert(strstr(r->out, needle) || strstr(r->err, needle),
	          "\"%s\" in neither output of %s (exit %d)\nstderr:\n%s\n"
	          "stdout:\n%s",
	          needle, r->cmd, r->code, r->err, r->out);
}

/* DEST/PIDX must hold partition pidx's files byte for byte, and nothing
 * else: no other entry, no engine temporary. */
static void expect_partition(const char *dest, int pidx)
{
	for (int k = 1; k <= NFILES; k++) {
		const char *want = part_file(app, pidx, k), *got = part_file(dest, pidx, k);
		int eq = ds_files_equal(want, got);
		cr_assert_eq(eq, 1, "%s: %s", got,
		             eq == 0 ? "differs from the origin's file" : strerror(-eq));
	}
	const char *d = fmt("%s/%d", dest, pidx);
	cr_assert_eq(dir_count(d), NFILES, "%s holds %zu entries, expected %d", d,
	             dir_count(d), NFILES);
	char first[256] = "";
	cr_assert_eq(ds_count_temps(d, first, sizeof(first)), 0,
	             "temporary left in %s: %s", d, first);
}

/* DEST must hold exactly the partition directories named in `parts`. */
static void expect_dest_parts(const char *dest, const char *const *parts,
                              size_t n)
{
	cr_assert_eq(dir_count(dest), n, "%s holds %zu entries, expected %zu",
	             dest, dir_count(dest), n);
	for (size_t i = 0; i < n; i++)
		cr_assert(ds_exists(fmt("%s/%s", dest, parts[i])), "%s/%s missing",
		          dest, parts[i]);
}

/* The sum of partition pidx's file sizes, from the files themselves. */
static uint64_t part_bytes(int pidx)
{
	uint64_t total = 0;
	for (int k = 1; k <= NFILES; k++) {
		struct stat sb;
		const char *p = part_file(app, pidx, k);
		cr_assert_eq(stat(p, &sb), 0, "%s: %s", p, strerror(errno));
		total += (uint64_t)sb.st_size;
	}
	return total;
}

/* Checks the JSON report of a run that fetched every partition in
 * `parts` (ascending) whole, nothing failing. */
static void expect_report(json_t *job, const int *parts, size_t n)
{
	json_t *files = jobj(job, "files");
	cr_assert_eq(jint(files, "ok"), (json_int_t)(n * NFILES));
	cr_assert_eq(jint(files, "failed"), 0);
	cr_assert_eq(jint(files, "total"), (json_int_t)(n * NFILES));
	cr_assert_str_eq(jstr(job, "verified"), "digest");
	json_t *jp = jget(job, "partitions");
	cr_assert(json_is_array(jp));
	cr_assert_eq(json_array_size(jp), n, "%zu partitions in the report, "
	             "expected %zu", json_array_size(jp), n);
	json_int_t io = 0;
	for (size_t i = 0; i < n; i++) {
		json_t *p = json_array_get(jp, i);
		cr_assert_eq(jint(p, "partition"), parts[i]);
		json_t *pf = jobj(p, "files");
		cr_assert_eq(jint(pf, "ok"), NFILES, "partition %d: ok %" JSON_INTEGER_FORMAT,
		             parts[i], jint(pf, "ok"));
		cr_assert_eq(jint(pf, "failed"), 0);
		cr_assert_eq(jint(pf, "total"), NFILES);
		uint64_t bytes = part_bytes(parts[i]);
		cr_assert_eq((uint64_t)jint(p, "size"), bytes);
		cr_assert_eq((uint64_t)jint(p, "io_bytes"), bytes,
		             "partition %d: io_bytes %" JSON_INTEGER_FORMAT ", its "
		             "files hold %" PRIu64, parts[i], jint(p, "io_bytes"), bytes);
		io += jint(p, "io_bytes");
	}
	cr_assert_eq(jint(jobj(job, "write"), "io_bytes"), io,
	             "the partitions' io_bytes do not add up to the job's");
}

/* Fetches every partition from url into a fresh DEST and checks it all. */
static void fetch_all_and_check(const char *url, const char *const *extra)
{
	const char *dest = fmt("%s/dest", work);
	const char *args[TOOL_MAX_ARGS];
	size_t n = 0;
	args[n++] = fmt("--pegasus=%s", url);
	args[n++] = fmt("--dest=%s", dest);
	args[n++] = "--output-format=json";
	for (size_t i = 0; extra && extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	struct run r;
	tool_run(&r, args);
	expect_exit(&r, 0);

	static const char *const names[] = {"0", "1", "2"};
	static const int parts[] = {0, 1, 2};
	_Static_assert(NPARTS == 3, "names and parts list every partition");
	expect_dest_parts(dest, names, NPARTS);
	for (int p = 0; p < NPARTS; p++)
		expect_partition(dest, p);
	expect_report(report_job(r.out), parts, NPARTS);
}

/* Reads a JSON file (kept until teardown). */
static json_t *load_json(const char *path)
{
	return parse_json(slurp(path, NULL), path);
}

/* Writes root to path, compact, as Pegasus writes its documents. */
static void save_json(json_t *doc, const char *path)
{
	cr_assert_eq(json_dump_file(doc, path, JSON_COMPACT | JSON_PRESERVE_ORDER),
	             0, "%s: cannot write", path);
}

/* Requests the fault origin got for any .sst of the set. */
static unsigned sst_requests(void)
{
	unsigned n = 0;
	for (int p = 0; p < NPARTS; p++) {
		for (int k = 1; k <= NFILES; k++)
			n += fault_origin_requests(fo, fmt("/cluster/app/%d/%d.sst", p, k));
	}
	return n;
}

static void start_fault_origin(void)
{
	int err = fault_origin_start(root, &fo);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
}

static const char *fo_app_url(void)
{
	return fmt("%s/cluster/app", fault_origin_url(fo));
}

static void start_nginx(void)
{
	int err = origin_start(root, &org);
	cr_assert_eq(err, 0, "origin_start: %s", strerror(-err));
}

/* ------------------------------------------------------------------------ */
/* The generator                                                            */

Test(pegasus_layout, gen_dataset_writes_the_pegasus_layout_with_real_md5s)
{
	gen_app();

	json_t *info = load_json(fmt("%s/bulk_load_info", app));
	cr_assert_eq(json_object_size(info), 3, "bulk_load_info has %zu keys",
	             json_object_size(info));
	cr_assert_eq(jint(info, "app_id"), 1);
	cr_assert_str_eq(jstr(info, "app_name"), "app");
	cr_assert_eq(jint(info, "partition_count"), NPARTS);
	cr_assert_eq(dir_count(app), NPARTS + 1, "app holds %zu entries",
	             dir_count(app));

	for (int p = 0; p < NPARTS; p++) {
		json_t *m = load_json(fmt("%s/%d/bulk_load_metadata", app, p));
		cr_assert_eq(json_object_size(m), 2);
		json_t *files = jget(m, "files");
		cr_assert_eq(json_array_size(files), NFILES);
		uint64_t sum = 0;
		for (int k = 1; k <= NFILES; k++) {
			json_t *e = json_array_get(files, (size_t)k - 1);
			/* Pegasus' own shape: name, size and md5, nothing else. */
			cr_assert_eq(json_object_size(e), 3);
			cr_assert_str_eq(jstr(e, "name"), fmt("%d.sst", k));
			size_t len;
			char *bytes = slurp(part_file(app, p, k), &len);
			cr_assert_eq((uint64_t)jint(e, "size"), (uint64_t)len);
			char md5[33];
			cr_assert_eq(sstf_digest_hex(SSTF_DIGEST_MD5, bytes, len, md5), 32);
			cr_assert_str_eq(jstr(e, "md5"), md5, "%d/%d.sst: md5 %s, the "
			                 "bytes hash to %s", p, k, jstr(e, "md5"), md5);
			sum += len;
		}
		cr_assert_eq((uint64_t)jint(m, "file_total_size"), sum);
		cr_assert_eq(dir_count(fmt("%s/%d", app, p)), NFILES + 1);
	}

	/* The same seed gives the same bytes; partitions differ. */
	struct run r;
	const char *again = fmt("%s/again/app", work);
	RUN(&r, fmt("--gen-dataset=%s", again), "--layout=pegasus",
	    fmt("--partition_count=%d", NPARTS), fmt("--nrfiles=%d", NFILES),
	    "--filesize=" FILESIZE, fmt("--seed=%d", SEED));
	expect_exit(&r, 0);
	for (int p = 0; p < NPARTS; p++) {
		for (int k = 1; k <= NFILES; k++)
			cr_assert_eq(ds_files_equal(part_file(app, p, k),
			                            part_file(again, p, k)), 1);
	}
	cr_assert_neq(ds_files_equal(part_file(app, 0, 1), part_file(app, 1, 1)), 1,
	              "partitions 0 and 1 hold the same first file");

	/* --partition_count belongs to the Pegasus layout. */
	RUN(&r, fmt("--gen-dataset=%s/x", work), "--partition_count=2",
	    "--nrfiles=1", "--filesize=1k");
	expect_exit(&r, 2);
	expect_said(&r, "--partition_count");
	cr_assert(!ds_exists(fmt("%s/x", work)));
}

/* ------------------------------------------------------------------------ */
/* Fetching                                                                 */

Test(pegasus_layout, http_all_partitions_verified_by_md5)
{
	gen_app();
	start_nginx();
	fetch_all_and_check(fmt("%s/cluster/app", org->base_url), NULL);
}

Test(pegasus_layout, http_corrupt_file_is_never_published_and_named)
{
	gen_app();
	/* One byte of partition 1's 3.sst, after its MD5 was written. */
	const char *bad = part_file(app, 1, 3);
	size_t len;
	char *bytes = slurp(bad, &len);
	bytes[len / 2] ^= 0x20;
	cr_assert_eq(ds_write_file(bad, bytes, len), 0);
	start_nginx();

	const char *dest = fmt("%s/dest", work);
	const char *url = fmt("--pegasus=%s/cluster/app", org->base_url);
	struct run r;
	RUN(&r, url, fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 1);
	json_t *job = report_job(r.out);
	json_t *fails = jget(job, "failures");
	cr_assert_eq(json_array_size(fails), 1, "%zu failures listed",
	             json_array_size(fails));
	json_t *f = json_array_get(fails, 0);
	cr_assert_str_eq(jstr(f, "name"), "1/3.sst");
	cr_assert_eq(jint(f, "error"), SSTF_ECHECKSUM);
	cr_assert(!ds_exists(fmt("%s/1/3.sst", dest)), "the corrupt file was "
	          "published");
	cr_assert_eq(jint(jobj(job, "files"), "ok"), NPARTS * NFILES - 1);
	cr_assert_eq(jint(jobj(job, "files"), "failed"), 1);
	json_t *jp = jget(job, "partitions");
	for (int p = 0; p < NPARTS; p++) {
		json_t *pf = jobj(json_array_get(jp, (size_t)p), "files");
		cr_assert_eq(jint(pf, "failed"), p == 1 ? 1 : 0);
		cr_assert_eq(jint(pf, "ok"), p == 1 ? NFILES - 1 : NFILES);
	}
	/* Every other file is there, byte for byte, and no temporary. */
	expect_partition(dest, 0);
	expect_partition(dest, 2);
	for (int k = 1; k <= NFILES; k++) {
		if (k != 3)
			cr_assert_eq(ds_files_equal(part_file(app, 1, k),
			                            part_file(dest, 1, k)), 1);
	}
	char first[256] = "";
	cr_assert_eq(ds_count_temps(dest, first, sizeof(first)), 0,
	             "temporary left: %s", first);

	/* The normal report names it too. */
	RUN(&r, url, fmt("--dest=%s", dest));
	expect_exit(&r, 1);
	expect_said(&r, "1/3.sst");
	cr_assert(!ds_exists(fmt("%s/1/3.sst", dest)));
}

Test(pegasus_layout, partitions_1_fetches_only_partition_1)
{
	gen_app();
	start_nginx();
	const char *url = fmt("--pegasus=%s/cluster/app", org->base_url);
	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, url, fmt("--dest=%s", dest), "--partitions=1",
	    "--output-format=json");
	expect_exit(&r, 0);
	static const char *const one[] = {"1"};
	expect_dest_parts(dest, one, 1);
	expect_partition(dest, 1);
	expect_report(report_job(r.out), (const int[]){1}, 1);

	/* A list with a range, overlapping. */
	const char *dest2 = fmt("%s/dest2", work);
	RUN(&r, url, fmt("--dest=%s", dest2), "--partitions=2,0-0,2-2",
	    "--output-format=json");
	expect_exit(&r, 0);
	static const char *const two[] = {"0", "2"};
	expect_dest_parts(dest2, two, 2);
	expect_partition(dest2, 0);
	expect_partition(dest2, 2);
	expect_report(report_job(r.out), (const int[]){0, 2}, 2);
}

Test(pegasus_layout, partition_out_of_range_is_exit_2)
{
	gen_app();
	start_fault_origin();
	const char *url = fmt("--pegasus=%s", fo_app_url());
	const char *dest = fmt("%s/dest", work);
	struct run r;

	RUN(&r, url, fmt("--dest=%s", dest), "--partitions=3");
	expect_exit(&r, 2);
	expect_said(&r, "partition 3 does not exist");
	expect_said(&r, "partition_count 3");

	RUN(&r, url, fmt("--dest=%s", dest), "--partitions=0,1-5");
	expect_exit(&r, 2);
	expect_said(&r, "partition 3 does not exist");

	/* Malformed lists and misplaced options need no network. */
	RUN(&r, url, fmt("--dest=%s", dest), "--partitions=2-1");
	expect_exit(&r, 2);
	expect_said(&r, "--partitions=2-1");
	RUN(&r, url, fmt("--dest=%s", dest), "--partitions=1,,2");
	expect_exit(&r, 2);
	RUN(&r, url, fmt("--dest=%s", dest), fmt("--manifest=%s/m.json", work),
	    fmt("--source=%s", fault_origin_url(fo)));
	expect_exit(&r, 2);
	expect_said(&r, "not both");
	RUN(&r, fmt("--manifest=%s/m.json", work), "--partitions=1",
	    fmt("--source=%s", fault_origin_url(fo)), fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "--partitions=1 needs --pegasus");

	cr_assert(!ds_exists(dest), "%s was created", dest);
	cr_assert_eq(sst_requests(), 0, "a .sst was asked for");
}

Test(pegasus_layout, file_total_size_mismatch_is_refused_before_any_byte)
{
	gen_app();
	/* The last partition's, so that the others load first. */
	const char *path = fmt("%s/2/bulk_load_metadata", app);
	json_t *m = load_json(path);
	json_int_t total = jint(m, "file_total_size");
	cr_assert_eq(json_object_set_new(m, "file_total_size",
	                                 json_integer(total + 1)), 0);
	save_json(m, path);
	start_fault_origin();

	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--pegasus=%s", fo_app_url()), fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "partition 2");
	expect_said(&r, "file_total_size");
	expect_said(&r, fmt("%" JSON_INTEGER_FORMAT, total + 1));
	cr_assert(!ds_exists(dest), "%s was created", dest);
	cr_assert_eq(sst_requests(), 0, "a .sst was asked for");
	cr_assert_eq(fault_origin_requests(fo, "/cluster/app/2/bulk_load_metadata"), 1);
}

Test(pegasus_layout, metadata_errors_are_exit_2_naming_them)
{
	gen_app();
	start_fault_origin();
	const char *dest = fmt("%s/dest", work);
	const char *url = fmt("--pegasus=%s", fo_app_url());
	struct run r;

	/* A partition's metadata missing: its 404 and what it is. */
	struct fault f404 = {.kind = FAULT_404};
	cr_assert_eq(fault_origin_set(fo, "/cluster/app/1/bulk_load_metadata",
	                              &f404), 0);
	RUN(&r, url, fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "HTTP 404");
	expect_said(&r, "/cluster/app/1/bulk_load_metadata");
	fault_origin_clear(fo);

	/* bulk_load_info missing. */
	cr_assert_eq(fault_origin_set(fo, "/cluster/app/bulk_load_info", &f404), 0);
	RUN(&r, url, fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "HTTP 404");
	expect_said(&r, "bulk_load_info");
	fault_origin_clear(fo);

	/* Bad JSON in a partition's metadata: the loader's line and column. */
	const char *meta0 = fmt("%s/0/bulk_load_metadata", app);
	char *saved = slurp(meta0, NULL);
	cr_assert_eq(ds_write_file(meta0, "{\"files\":[{\"name\":", 18), 0);
	RUN(&r, url, fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "partition 0");
	expect_said(&r, "line 1");
	cr_assert_eq(ds_write_file(meta0, saved, strlen(saved)), 0);

	/* bulk_load_info without partition_count; then not JSON at all. */
	const char *info = fmt("%s/bulk_load_info", app);
	const char *no_count = "{\"app_id\":1,\"app_name\":\"app\"}";
	cr_assert_eq(ds_write_file(info, no_count, strlen(no_count)), 0);
	RUN(&r, url, fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "\"partition_count\"");
	cr_assert_eq(ds_write_file(info, "app_id=1", 8), 0);
	RUN(&r, url, fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	expect_said(&r, "bulk_load_info: line 1");

	/* An origin nobody listens on. */
	RUN(&r, "--pegasus=http://127.0.0.1:1/cluster/app", fmt("--dest=%s", dest),
	    "--retries=0");
	expect_exit(&r, 2);
	expect_said(&r, "bulk_load_info");

	cr_assert(!ds_exists(dest), "%s was created", dest);
	cr_assert_eq(sst_requests(), 0, "a .sst was asked for");
}

/* ------------------------------------------------------------------------ */
/* S3                                                                       */

Test(pegasus_layout, s3_all_partitions_verified_by_md5)
{
	gen_app();
	static const char *const buckets[] = {"bulk", NULL};
	int err = s3server_start(buckets, &srv);
	cr_assert_eq(err, 0, "s3server_start: %s (run tools/deps.sh)",
	             strerror(-err));
	int n = s3server_put_tree(srv, "bulk", "root/cluster/app/", app);
	cr_assert_eq(n, 1 + NPARTS * (NFILES + 1), "uploaded %d objects", n);

	setenv("AWS_ACCESS_KEY_ID", S3SERVER_ACCESS_KEY, 1);
	setenv("AWS_SECRET_ACCESS_KEY", S3SERVER_SECRET_KEY, 1);
	static const char *extra[2];
	extra[0] = fmt("--s3_endpoint=%s", srv->endpoint);
	fetch_all_and_check("s3://bulk/root/cluster/app", extra);
}
