/*
 * Description: the sstfetch tool run as a user runs it: the real binary
 * (path in $SSTFETCH, set by meson) forked and exec'd with an argument
 * vector, against a real nginx on loopback, with datasets the tool writes
 * itself (--gen-dataset). Job files with [global] and two jobs, command-line
 * overrides, the JSON and terse reports checked against the dataset,
 * cancel_at=50, usage errors (exit 2, naming the option or entry, nothing
 * created), rate, split and split_min with fio's sizes on the command line
 * and in job files and their bad values, a corrupted origin file failing
 * alone (exit 1), seeded datasets that repeat byte for byte, the streaming
 * manifest loader: keys in any order, unknown keys of every type,
 * manifests longer than its read window, syntax errors with their line,
 * column and byte, duplicate top-level keys, the 64 KiB entry cap and every
 * entry check's message, "urls" among them; and mirrors: a dead first URL
 * with every byte from the second, sixteen URLs, all of them dead, and the
 * report's bytes per URL (these last three need the engine's mirrors).
 *
 * The tool runs through support/tool.h, which captures its stdout and
 * stderr; a sanitizer report in the tool's stderr fails the test whatever
 * the exit status. Nothing here measures time: the only clock is a hang
 * guard.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "support/dataset.h"
#include "support/origin.h"
#include "support/tool.h"

#define NFILES 64
#define FILESIZE_TEXT "256k"
#define FILESIZE (256 * 1024)

/* fio's clat percentile list, as the JSON report keys it, in order. */
static const char *const pct_keys[] = {
	"1.000000", "5.000000", "10.000000", "20.000000", "30.000000",
	"40.000000", "50.000000", "60.000000", "70.000000", "80.000000",
	"90.000000", "95.000000", "99.000000", "99.500000", "99.900000",
	"99.950000", "99.990000",
};
#define NPCT (sizeof(pct_keys) / sizeof(pct_keys[0]))

/*
 * Terse version 1, as tools/report.h documents it: terse_version;
 * sstfetch_version; jobname; error; files_ok; files_failed; files_skipped;
 * files_total; io_bytes; bw_bytes; runtime_ms; clat min, max, mean, stddev,
 * n and 17 percentiles; the same for ttfb; retries; stale_completions;
 * cancels; peak_buffer_bytes; usr_cpu; sys_cpu; verify_bytes;
 * verify_errors; loops; files_unfinished; files_resumed; present_bytes.
 */
enum {
	T_VERSION = 0, T_TOOL, T_JOBNAME, T_ERROR,
	T_FILES_OK, T_FILES_FAILED, T_FILES_SKIPPED, T_FILES_TOTAL,
	T_IO_BYTES, T_BW_BYTES, T_RUNTIME_MS,
	T_CLAT, /* min, max, mean, stddev, n, then NPCT percentiles */
	T_TTFB = T_CLAT + 5 + 17,
	T_RETRIES = T_TTFB + 5 + 17,
	T_STALE, T_CANCELS, T_PEAK, T_USR, T_SYS,
	T_VERIFY_BYTES, T_VERIFY_ERRORS, T_LOOPS,
	T_FILES_UNFINISHED, T_FILES_RESUMED, T_PRESENT_BYTES,
	T_NFIELDS,
};

static char *work;          /* this test's temp dir */
static char *set_dir;       /* work/set: the dataset, when the test made one */
static struct origin *org;  /* nginx serving set_dir, when started */

static void fixture_init(void)
{
	work = tool_setup("cli");
}

static void fixture_fini(void)
{
	/* The tools first: none may still be talking to nginx. */
	tool_teardown();
	work = set_dir = NULL;
	origin_stop(org);
	org = NULL;
}

TestSuite(cli, .init = fixture_init, .fini = fixture_fini);

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* The "job options" value of a job, as the JSON report writes it. */
static const char *job_opt(json_t *job, const char *key)
{
	return jstr(jobj(job, "job options"), key);
}

/*
 * A clat_ns or ttfb_ns object: n samples, min <= mean <= max, and fio's 17
 * percentiles, in fio's order in the document, non-decreasing, each within
 * [min, max].
 */
static void check_lat(json_t *lat, const char *what, json_int_t n)
{
	json_int_t min = jint(lat, "min"), max = jint(lat, "max");
	cr_assert_eq(jint(lat, "N"), n, "%s: N=%" JSON_INTEGER_FORMAT
	             ", expected %" JSON_INTEGER_FORMAT, what, jint(lat, "N"), n);
	cr_assert_leq(min, max, "%s: min > max", what);
	double mean = jnum(lat, "mean");
	cr_assert(mean >= (double)min && mean <= (double)max,
	          "%s: mean %f outside [%" JSON_INTEGER_FORMAT ", %"
	          JSON_INTEGER_FORMAT "]", what, mean, min, max);
	cr_assert_geq(jnum(lat, "stddev"), 0.0, "%s: negative stddev", what);

	json_t *p = jobj(lat, "percentile");
	cr_assert_eq(json_object_size(p), NPCT, "%s: %zu percentiles, expected %zu",
	             what, json_object_size(p), NPCT);
	/* Key order as the document has it (jansson keeps insertion order). */
	size_t k = 0;
	json_int_t prev = min;
	const char *key;
	json_t *v;
	json_object_foreach(p, key, v) {
		cr_assert_lt(k, NPCT);
		cr_assert_str_eq(key, pct_keys[k], "%s: percentile %zu is \"%s\", "
		                 "expected \"%s\"", what, k, key, pct_keys[k]);
		cr_assert(json_is_integer(v), "%s: percentile %s not an integer",
		          what, key);
		json_int_t x = json_integer_value(v);
		cr_assert(x >= prev, "%s: percentile %s = %" JSON_INTEGER_FORMAT
		          " is below the one before it (%" JSON_INTEGER_FORMAT ")",
		          what, key, x, prev);
		cr_assert_leq(x, max, "%s: percentile %s = %" JSON_INTEGER_FORMAT
		              " above max %" JSON_INTEGER_FORMAT, what, key, x, max);
		prev = x;
		k++;
	}
	json_int_t p50 = jint(p, "50.000000");
	cr_assert(min <= p50 && p50 <= max, "%s: p50 outside [min, max]", what);
}

/* work/set with NFILES x FILESIZE, served by nginx. Returns its bytes. */
static uint64_t serve_dataset(unsigned long long seed)
{
	set_dir = fmt("%s/set", work);
	uint64_t total = gen_dataset(set_dir, NFILES, FILESIZE_TEXT, seed);
	cr_assert_eq(total, (uint64_t)NFILES * FILESIZE);
	int err = origin_start(set_dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	return total;
}

/*
 * dest must hold set_dir's files 1..n byte for byte, except number `missing`
 * (1-based; 0: none), which must be absent, and nothing else: no other
 * entry, no temporary.
 */
static void check_dest(const char *dest, size_t n, size_t missing)
{
	expect_dest(set_dir, dest, n, missing);
}

/* Splits s at sep in place; returns the number of fields. */
static size_t split(char *s, char sep, char **fields, size_t max)
{
	size_t n = 0;
	for (char *p = s;;) {
		char *q = strchr(p, sep);
		if (n < max)
			fields[n] = p;
		n++;
		if (!q)
			break;
		*q = '\0';
		p = q + 1;
	}
	return n;
}

/* A whole decimal field of a terse line. */
static uint64_t field_u64(const char *s, const char *what)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	cr_assert(*s >= '0' && *s <= '9' && *end == '\0' && errno == 0,
	          "terse %s: \"%s\" is not a whole number", what, s);
	return v;
}

/* ------------------------------------------------------------------------ */
/* 1. Job files: [global], two jobs, command-line overrides                 */

Test(cli, jobfile_global_two_jobs_and_cmdline_overrides)
{
	serve_dataset(11);
	const char *jobfile = fmt("%s/two.fio", work);
	/* The file's source is a port nothing listens on: only the
	 * command line's --source makes the jobs succeed. */
	const char *text = fmt(
		"; two jobs sharing [global]\n"
		"# both comment styles\n"
		"[global]\n"
		"manifest=%s/manifest.json\n"
		"source=http://127.0.0.1:1\n"
		"parallel=4\n"
		"bs=64k\n"
		"verify=xxh3\n"
		"\n"
		"[alpha]\n"
		"dest=%s/alpha\n"
		"\n"
		"; beta differs in its verify and its dest\n"
		"[beta]\n"
		"dest=%s/beta-file\n"
		"verify=xxh128\n",
		set_dir, work, work);
	cr_assert_eq(ds_write_file(jobfile, text, strlen(text)), 0);

	/* --source and --bs before any --name override every job; the options
	 * after --name=beta override beta only. */
	struct run r;
	RUN(&r, "--output-format=json", fmt("--source=%s", org->base_url),
	    "--bs=128k", "--name=beta", "--parallel=3",
	    fmt("--dest=%s/beta-cli", work), jobfile);
	expect_exit(&r, 0);

	json_t *jobs = report_jobs(parse_json(r.out, "report"), 2);
	json_t *alpha = json_array_get(jobs, 0), *beta = json_array_get(jobs, 1);
	cr_assert_str_eq(jstr(alpha, "jobname"), "alpha");
	cr_assert_str_eq(jstr(beta, "jobname"), "beta");
	for (size_t i = 0; i < 2; i++) {
		json_t *j = json_array_get(jobs, i);
		json_t *files = jobj(j, "files");
		cr_assert_eq(jint(j, "error"), 0, "job %zu: error", i);
		cr_assert_eq(jint(files, "ok"), NFILES, "job %zu: files ok %"
		             JSON_INTEGER_FORMAT, i, jint(files, "ok"));
		cr_assert_eq(jint(files, "failed"), 0);
		cr_assert_str_eq(job_opt(j, "source"), org->base_url);
		cr_assert_str_eq(job_opt(j, "bs"), "131072");
		cr_assert_str_eq(job_opt(j, "manifest"),
		                 fmt("%s/manifest.json", set_dir));
	}
	/* [global] holds for alpha; beta's own section and its --name
	 * options win over it. */
	cr_assert_str_eq(job_opt(alpha, "parallel"), "4");
	cr_assert_str_eq(job_opt(alpha, "verify"), "xxh3");
	cr_assert_str_eq(job_opt(alpha, "dest"), fmt("%s/alpha", work));
	cr_assert_str_eq(job_opt(beta, "parallel"), "3");
	cr_assert_str_eq(job_opt(beta, "verify"), "xxh128");
	cr_assert_str_eq(job_opt(beta, "dest"), fmt("%s/beta-cli", work));

	check_dest(fmt("%s/alpha", work), NFILES, 0);
	check_dest(fmt("%s/beta-cli", work), NFILES, 0);
	cr_assert(!ds_exists(fmt("%s/beta-file", work)),
	          "beta used the job file's dest, not --dest");
}

/* ------------------------------------------------------------------------ */
/* 2. The JSON report, checked against the dataset                          */

Test(cli, json_report_matches_dataset)
{
	/* Sizes drawn from a range, so that the byte count is not n x size. */
	set_dir = fmt("%s/set", work);
	uint64_t bytes = gen_dataset(set_dir, NFILES, "1:512k", 22);
	int err = origin_start(set_dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, "--name=json-check", fmt("--manifest=%s/manifest.json", set_dir),
	    fmt("--source=%s", org->base_url), fmt("--dest=%s", dest),
	    "--parallel=8", "--output-format=json");
	expect_exit(&r, 0);
	/* stderr is a file here: no live status line, and nothing else. */
	cr_assert_str_empty(r.err, "stderr not empty:\n%s", r.err);

	json_t *root = parse_json(r.out, "report");
	const char *version = jstr(root, "sstfetch version");
	cr_assert(strncmp(version, "sstfetch-", 9) == 0 && version[9],
	          "\"sstfetch version\" is \"%s\"", version);

	json_t *job = json_array_get(report_jobs(root, 1), 0);
	cr_assert_str_eq(jstr(job, "jobname"), "json-check");
	cr_assert_eq(jint(job, "error"), 0);
	json_int_t runtime = jint(job, "job_runtime");
	cr_assert_gt(runtime, 0, "job_runtime %" JSON_INTEGER_FORMAT, runtime);
	cr_assert_geq(jnum(job, "usr_cpu"), 0.0);
	cr_assert_geq(jnum(job, "sys_cpu"), 0.0);
	cr_assert_eq(jint(job, "cancels"), 0);

	json_t *files = jobj(job, "files");
	cr_assert_eq(jint(files, "ok"), NFILES);
	cr_assert_eq(jint(files, "failed"), 0);
	cr_assert_eq(jint(files, "skipped"), 0);
	cr_assert_eq(jint(files, "total"), NFILES);

	json_t *w = jobj(job, "write");
	json_int_t io = jint(w, "io_bytes");
	cr_assert_eq((uint64_t)io, bytes, "write.io_bytes %" JSON_INTEGER_FORMAT
	             ", the dataset holds %" PRIu64, io, bytes);
	cr_assert_eq(jint(w, "runtime"), runtime);
	/* bw_bytes = io_bytes / runtime, where job_runtime is the runtime
	 * truncated to ms: between the rates over runtime + 1 ms and
	 * runtime. */
	json_int_t bw = jint(w, "bw_bytes");
	double lo = (double)io * 1000.0 / (double)(runtime + 1);
	double hi = (double)io * 1000.0 / (double)runtime;
	cr_assert((double)bw >= lo - 1 && (double)bw <= hi + 1,
	          "bw_bytes %" JSON_INTEGER_FORMAT " is not io_bytes / runtime "
	          "(%.0f..%.0f)", bw, lo, hi);
	check_lat(jobj(w, "clat_ns"), "write.clat_ns", NFILES);
	check_lat(jobj(jobj(job, "net"), "ttfb_ns"), "net.ttfb_ns", NFILES);

	json_t *v = jobj(job, "verify");
	cr_assert_eq((uint64_t)jint(v, "bytes"), bytes, "verify.bytes %"
	             JSON_INTEGER_FORMAT ", the dataset holds %" PRIu64,
	             jint(v, "bytes"), bytes);
	cr_assert_eq(jint(v, "errors"), 0);

	check_dest(dest, NFILES, 0);
}

/* --fsync=batch: the engine reports files only after the end-of-batch
 * directory sync; the tool must still count and check every one. */
Test(cli, fsync_batch_reports_every_file_and_leaves_them_all_in_place)
{
	set_dir = fmt("%s/set", work);
	uint64_t bytes = gen_dataset(set_dir, NFILES, "1:64k", 23);
	int err = origin_start(set_dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set_dir), fmt("--source=%s", org->base_url),
	    fmt("--dest=%s", dest), "--parallel=8", "--fsync=batch", "--output-format=json");
	expect_exit(&r, 0);
	json_t *root = parse_json(r.out, "report");
	json_t *job = json_array_get(report_jobs(root, 1), 0);
	json_t *files = jobj(job, "files");
	cr_assert_eq(jint(files, "ok"), NFILES);
	cr_assert_eq(jint(files, "failed"), 0);
	cr_assert_eq((uint64_t)jint(jobj(job, "verify"), "bytes"), bytes);
	check_dest(dest, NFILES, 0);

	RUN(&r, fmt("--manifest=%s/manifest.json", set_dir), fmt("--source=%s", org->base_url),
	    fmt("--dest=%s/dest2", work), "--fsync=later");
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, "fsync=later") && strstr(r.err, "batch"), "stderr:\n%s", r.err);
}

/* ------------------------------------------------------------------------ */
/* 3. cancel_at=50: one restart, every file verified                        */

Test(cli, cancel_at_50_restarts_once_and_verifies_every_file)
{
	uint64_t bytes = serve_dataset(33);
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set_dir),
	    fmt("--source=%s", org->base_url), fmt("--dest=%s", dest),
	    "--cancel_at=50", "--parallel=4", "--output-format=json");
	expect_exit(&r, 0);

	json_t *job = json_array_get(report_jobs(parse_json(r.out, "report"), 1), 0);
	cr_assert_eq(jint(job, "error"), 0);
	cr_assert_eq(jint(job, "cancels"), 1, "cancels %" JSON_INTEGER_FORMAT
	             ", expected 1", jint(job, "cancels"));
	json_t *files = jobj(job, "files");
	/* The restart skips what the cancelled generation had published
	 * (verified by its publish record) and fetches the rest. */
	cr_assert_eq(jint(files, "ok") + jint(files, "skipped"), NFILES,
	             "ok %" JSON_INTEGER_FORMAT " + skipped %" JSON_INTEGER_FORMAT,
	             jint(files, "ok"), jint(files, "skipped"));
	cr_assert_eq(jint(files, "failed"), 0);
	cr_assert_eq(jint(files, "unfinished"), 0);
	json_t *v = jobj(job, "verify");
	cr_assert_eq(jint(v, "errors"), 0);
	/* Every byte was verified: fetched by one of the generations, or
	 * found in place by the second. */
	json_int_t present = jint(jobj(job, "write"), "present_bytes");
	cr_assert_geq((uint64_t)(jint(v, "bytes") + present), bytes);
	/* The cancelled generation wrote at least half the bytes; the
	 * restart wrote all it did not publish. */
	json_int_t io = jint(jobj(job, "write"), "io_bytes");
	cr_assert_geq((uint64_t)io, bytes, "io_bytes %" JSON_INTEGER_FORMAT, io);
	cr_assert_geq((uint64_t)(io + present), bytes + bytes / 2,
	              "io_bytes %" JSON_INTEGER_FORMAT ", present %" JSON_INTEGER_FORMAT
	              ": the cancel came before 50%%",
	              io, present);

	check_dest(dest, NFILES, 0);
}

/* ------------------------------------------------------------------------ */
/* 4. Usage errors: exit 2, named, nothing created                          */

Test(cli, bad_options_exit_2_and_name_the_option)
{
	set_dir = fmt("%s/set", work);
	gen_dataset(set_dir, 2, "4k", 44);
	const char *manifest = fmt("--manifest=%s/manifest.json", set_dir);
	const char *source = fmt("--source=file://%s", set_dir);
	const char *dest = fmt("%s/dest", work);
	const char *dest_arg = fmt("--dest=%s", dest);

	static const struct {
		const char *arg;
		const char *names; /* the option, as the message must name it */
		const char *form;  /* a word of the accepted form */
	} cases[] = {
		{"--bogus=1", "--bogus", "unknown option"},
		{"--parallel=abc", "--parallel=abc", "integer"},
		{"--bs=3k", "--bs=3k", "power of two"},
		{"--verify=sha256", "--verify=sha256", "xxh128"},
		{"--rate=abc", "--rate=abc", "a size from 0 to 1t"},
		{"--split=65", "--split=65", "from 1 to 64"},
		{"--threads=65", "--threads=65", "from 1 to 64"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;
		RUN(&r, manifest, source, dest_arg, cases[i].arg);
		expect_exit(&r, 2);
		cr_assert(strstr(r.err, cases[i].names),
		          "%s: stderr does not name %s:\n%s", r.cmd, cases[i].names,
		          r.err);
		cr_assert(strstr(r.err, cases[i].form),
		          "%s: stderr does not say \"%s\":\n%s", r.cmd, cases[i].form,
		          r.err);
		cr_assert(!ds_exists(dest), "%s: created %s", r.cmd, dest);
	}

	/* More loop threads than transfers: the engine's own check, named. */
	struct run rt;
	RUN(&rt, manifest, source, dest_arg, "--parallel=2", "--threads=4");
	expect_exit(&rt, 2);
	cr_assert(strstr(rt.err, "threads=4") && strstr(rt.err, "at most max_transfers (2)"),
	          "%s: stderr does not say why:\n%s", rt.cmd, rt.err);
	cr_assert(!ds_exists(dest), "%s: created %s", rt.cmd, dest);

	/* The same in a job file: named with the file and line. */
	const char *jobfile = fmt("%s/bad.fio", work);
	const char *text = fmt("[global]\nmanifest=%s/manifest.json\n"
	                       "source=file://%s\n[job]\ndest=%s\nbs=3k\n",
	                       set_dir, set_dir, dest);
	cr_assert_eq(ds_write_file(jobfile, text, strlen(text)), 0);
	struct run r;
	RUN(&r, jobfile);
	expect_exit(&r, 2);
	const char *where = fmt("%s:6: bs=3k", jobfile);
	cr_assert(strstr(r.err, where), "stderr does not name %s:\n%s", where,
	          r.err);
	cr_assert(!ds_exists(dest), "created %s", dest);
}

/*
 * The row of --help (in `help`) that starts with `lhs` ("--split=N"), up to
 * the next option, with every run of blanks and newlines made one space:
 * the row as one line, however it was wrapped. Fails the test when there is
 * none.
 */
static const char *help_row(const char *help, const char *lhs)
{
	char *flat = keep(strdup(help));
	size_t n = 0;
	for (const char *p = help; *p; p++) {
		int blank = *p == ' ' || *p == '\n';
		if (!blank || (n && flat[n - 1] != ' '))
			flat[n++] = blank ? ' ' : *p;
	}
	flat[n] = '\0';
	char *row = strstr(flat, fmt(" %s ", lhs));
	cr_assert_not_null(row, "--help has no %s row:\n%s", lhs, help);
	char *next = strstr(row + 1, " --");
	if (next)
		*next = '\0';
	return row + 1;
}

/* The dataset of `n` 4 KiB files in work/set and a file:// source of it,
 * for runs that only check options. */
static const char *small_set(size_t n, unsigned long long seed)
{
	set_dir = fmt("%s/set", work);
	gen_dataset(set_dir, n, "4k", seed);
	return fmt("--source=file://%s", set_dir);
}

Test(cli, rate_split_and_split_min_take_fio_sizes_on_the_command_line_and_in_job_files)
{
	const char *source = small_set(4, 45);
	const char *manifest = fmt("--manifest=%s/manifest.json", set_dir);
	const char *dest = fmt("%s/dest", work);
	const char *dest_arg = fmt("--dest=%s", dest);
	struct run r;

	/* The defaults, as the report echoes them: no cap, 16 streams from
	 * 64 MiB up. */
	RUN(&r, manifest, source, dest_arg, "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_str_eq(job_opt(job, "rate"), "0");
	cr_assert_str_eq(job_opt(job, "split"), "16");
	cr_assert_str_eq(job_opt(job, "split_min"), "67108864");
	/* No entry has "urls": no mirror summary at all. */
	cr_assert_null(json_object_get(job, "mirrors"),
	               "\"mirrors\" without any mirrored file:\n%s", r.out);

	/* fio's rate= is bytes per second, with the size suffixes in powers
	 * of 1024 ("64m", "64MiB" and "64mb" are all 64 MiB/s). The rates
	 * are high so that each run stays short whatever the engine's bucket
	 * holds back: the point here is how the values parse. */
	static const struct {
		const char *arg, *want;
	} rates[] = {
		{"--rate=64m", "67108864"},
		{"--rate=64M", "67108864"},
		{"--rate=64MiB", "67108864"},
		{"--rate=64mb", "67108864"},
		{"--rate=65536k", "67108864"},
		{"--rate=2g", "2147483648"},
		{"--rate=2GiB", "2147483648"},
		{"--rate=100000000", "100000000"},
		{"--rate=0", "0"},
	};
	for (size_t i = 0; i < sizeof(rates) / sizeof(rates[0]); i++) {
		RUN(&r, manifest, source, dest_arg, "--existing=refetch",
		    rates[i].arg, "--split=4", "--split_min=1m",
		    "--output-format=json");
		expect_exit(&r, 0);
		job = report_job(r.out);
		cr_assert_str_eq(job_opt(job, "rate"), rates[i].want, "%s: rate %s",
		                 rates[i].arg, job_opt(job, "rate"));
		cr_assert_str_eq(job_opt(job, "split"), "4");
		cr_assert_str_eq(job_opt(job, "split_min"), "1048576");
		cr_assert_eq(jint(jobj(job, "files"), "ok"), 4, "%s", r.cmd);
	}

	/* The same keys in a job file, [global] and the job's own section;
	 * the command line still wins over both. */
	const char *jobfile = fmt("%s/rate.fio", work);
	const char *text = fmt("[global]\nmanifest=%s/manifest.json\n"
	                       "source=file://%s\nrate=256m\nsplit=2\n"
	                       "[one]\ndest=%s/one\nsplit_min=128k\n"
	                       "[two]\ndest=%s/two\nrate=1g\nsplit=64\n",
	                       set_dir, set_dir, work, work);
	cr_assert_eq(ds_write_file(jobfile, text, strlen(text)), 0);
	RUN(&r, "--output-format=json", "--name=two", "--split_min=2m", jobfile);
	expect_exit(&r, 0);
	json_t *jobs = report_jobs(parse_json(r.out, "report"), 2);
	json_t *one = json_array_get(jobs, 0), *two = json_array_get(jobs, 1);
	cr_assert_str_eq(job_opt(one, "rate"), "268435456");
	cr_assert_str_eq(job_opt(one, "split"), "2");
	cr_assert_str_eq(job_opt(one, "split_min"), "131072");
	cr_assert_str_eq(job_opt(two, "rate"), "1073741824");
	cr_assert_str_eq(job_opt(two, "split"), "64");
	cr_assert_str_eq(job_opt(two, "split_min"), "2097152");

	/* --help lists each with its range and default. */
	RUN(&r, "--help");
	expect_exit(&r, 0);
	static const char *const helps[][3] = {
		{"--rate=BYTES", "from 0 to 1t", "(default: none)"},
		{"--split=N", "from 1 to 64", "(default: 16)"},
		{"--split_min=SIZE", "from 1 to 16t", "(default: 64m)"},
	};
	for (size_t i = 0; i < sizeof(helps) / sizeof(helps[0]); i++) {
		const char *row = help_row(r.out, helps[i][0]);
		for (size_t k = 1; k < 3; k++)
			cr_assert(strstr(row, helps[i][k]), "--help's %s row lacks "
			          "\"%s\": %s", helps[i][0], helps[i][k], row);
	}
}

Test(cli, rate_split_and_split_min_bad_values_exit_2_naming_the_option_and_range)
{
	const char *source = small_set(2, 46);
	const char *manifest = fmt("--manifest=%s/manifest.json", set_dir);
	const char *dest = fmt("%s/dest", work);
	const char *dest_arg = fmt("--dest=%s", dest);

	static const struct {
		const char *arg;
		const char *names; /* as the message must name it */
		const char *form;  /* the accepted range, as it must state it */
	} cases[] = {
		{"--rate=abc", "--rate=abc", "a size from 0 to 1t"},
		{"--rate=-1", "--rate=-1", "a size from 0 to 1t"},
		{"--rate=1x", "--rate=1x", "a size from 0 to 1t"},
		{"--rate=2t", "--rate=2t", "a size from 0 to 1t"},
		{"--split=0", "--split=0", "a decimal integer from 1 to 64"},
		{"--split=65", "--split=65", "a decimal integer from 1 to 64"},
		{"--split=4k", "--split=4k", "a decimal integer from 1 to 64"},
		{"--split_min=0", "--split_min=0", "a size from 1 to 16t"},
		{"--split_min=big", "--split_min=big", "a size from 1 to 16t"},
		{"--split", "--split", "missing value"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct run r;
		RUN(&r, manifest, source, dest_arg, cases[i].arg);
		expect_exit(&r, 2);
		cr_assert(strstr(r.err, cases[i].names),
		          "%s: stderr does not name %s:\n%s", r.cmd, cases[i].names,
		          r.err);
		cr_assert(strstr(r.err, cases[i].form),
		          "%s: stderr does not say \"%s\":\n%s", r.cmd, cases[i].form,
		          r.err);
		cr_assert(!ds_exists(dest), "%s: created %s", r.cmd, dest);
	}

	/* In a job file: named with the file and the line. */
	const char *jobfile = fmt("%s/bad.fio", work);
	static const char *const bad[] = {"split=65", "rate=abc", "split_min=0"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *text = fmt("[global]\nmanifest=%s/manifest.json\n"
		                       "source=file://%s\n[job]\ndest=%s\n%s\n",
		                       set_dir, set_dir, dest, bad[i]);
		cr_assert_eq(ds_write_file(jobfile, text, strlen(text)), 0);
		struct run r;
		RUN(&r, jobfile);
		expect_exit(&r, 2);
		const char *where = fmt("%s:6: %s", jobfile, bad[i]);
		cr_assert(strstr(r.err, where), "stderr does not name %s:\n%s", where,
		          r.err);
		cr_assert(!ds_exists(dest), "created %s", dest);
	}
}

/* Writes a manifest of "ok.sst" and `bad`, with lengths only. */
static const char *bad_manifest(const char *bad)
{
	const char *src = fmt("%s/src", work);
	cr_assert_eq(ds_mkdirs(src), 0);
	cr_assert_eq(ds_write_random(fmt("%s/ok.sst", src), 4096, 1), 0);
	const char *path = fmt("%s/bad.json", work);
	const char *text = fmt("{\"files\": [{\"name\": \"ok.sst\", \"size\": 4096},"
	                       " {\"name\": \"%s\", \"size\": 4096}]}", bad);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	return path;
}

Test(cli, manifest_dotdot_entry_exits_2_naming_it)
{
	/* verify=none: entries need no digest, so only the name can be
	 * what is refused. */
	const char *manifest = bad_manifest("../x");
	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s", manifest),
	    fmt("--source=file://%s/src", work), fmt("--dest=%s", dest),
	    "--verify=none");
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, "../x"), "stderr does not name \"../x\":\n%s",
	          r.err);
	cr_assert(!ds_exists(dest), "created %s", dest);
	cr_assert(!ds_exists(fmt("%s/x", work)), "created %s/x", work);
}

Test(cli, manifest_absolute_entry_exits_2_naming_it)
{
	const char *manifest = bad_manifest("/etc/x");
	const char *dest = fmt("%s/dest", work);
	cr_assert_eq(ds_mkdirs(dest), 0);
	int etc_x = ds_exists("/etc/x");
	struct run r;
	RUN(&r, fmt("--manifest=%s", manifest),
	    fmt("--source=file://%s/src", work), fmt("--dest=%s", dest),
	    "--verify=none");
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, "/etc/x"), "stderr does not name \"/etc/x\":\n%s",
	          r.err);
	cr_assert(dir_empty(dest), "%s is not empty", dest);
	cr_assert_eq(ds_exists("/etc/x"), etc_x, "/etc/x appeared");
}

/* ------------------------------------------------------------------------ */
/* 5. Terse output                                                          */

Test(cli, terse_one_line_per_job_with_the_documented_fields)
{
	uint64_t bytes = serve_dataset(55);
	const char *jobnames[2] = {"first", "second"};

	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set_dir),
	    fmt("--source=%s", org->base_url), "--output-format=terse",
	    "--name=first", fmt("--dest=%s/d1", work),
	    "--name=second", fmt("--dest=%s/d2", work));
	expect_exit(&r, 0);

	char *lines[4];
	size_t len = strlen(r.out);
	cr_assert(len > 0 && r.out[len - 1] == '\n', "terse output does not end "
	          "with a newline:\n%s", r.out);
	r.out[len - 1] = '\0';
	size_t nlines = split(r.out, '\n', lines, 4);
	cr_assert_eq(nlines, 2, "%zu terse lines, expected 2", nlines);

	for (size_t j = 0; j < 2; j++) {
		char *f[T_NFIELDS + 1];
		size_t n = split(lines[j], ';', f, T_NFIELDS + 1);
		cr_assert_eq(n, T_NFIELDS, "line %zu: %zu fields, expected %d", j, n,
		             T_NFIELDS);
		cr_assert_str_eq(f[T_VERSION], "1");
		cr_assert(strncmp(f[T_TOOL], "sstfetch-", 9) == 0, "tool: %s",
		          f[T_TOOL]);
		cr_assert_str_eq(f[T_JOBNAME], jobnames[j]);
		cr_assert_str_eq(f[T_ERROR], "0");
		cr_assert_eq(field_u64(f[T_FILES_OK], "files_ok"), NFILES);
		cr_assert_eq(field_u64(f[T_FILES_FAILED], "files_failed"), 0);
		cr_assert_eq(field_u64(f[T_FILES_SKIPPED], "files_skipped"), 0);
		cr_assert_eq(field_u64(f[T_FILES_TOTAL], "files_total"), NFILES);
		cr_assert_eq(field_u64(f[T_IO_BYTES], "io_bytes"), bytes,
		             "io_bytes field \"%s\", the dataset holds %" PRIu64,
		             f[T_IO_BYTES], bytes);
		field_u64(f[T_BW_BYTES], "bw_bytes");
		field_u64(f[T_RUNTIME_MS], "runtime_ms");
		for (int lat = T_CLAT; lat <= T_TTFB; lat += T_TTFB - T_CLAT) {
			uint64_t min = field_u64(f[lat], "lat min");
			uint64_t max = field_u64(f[lat + 1], "lat max");
			cr_assert_eq(field_u64(f[lat + 4], "lat n"), NFILES);
			uint64_t prev = min;
			for (size_t k = 0; k < NPCT; k++) {
				/* "P%=VALUE", P as fio prints it. */
				const char *pf = f[lat + 5 + (int)k];
				const char *want = fmt("%s%%=", pct_keys[k]);
				cr_assert(strncmp(pf, want, strlen(want)) == 0,
				          "percentile field %zu is \"%s\", expected %s...",
				          k, pf, want);
				uint64_t x = field_u64(pf + strlen(want), "percentile");
				cr_assert(x >= prev && x <= max, "percentile %s out of order",
				          pf);
				prev = x;
			}
		}
		cr_assert_eq(field_u64(f[T_CANCELS], "cancels"), 0);
		cr_assert_eq(field_u64(f[T_VERIFY_BYTES], "verify_bytes"), bytes);
		cr_assert_eq(field_u64(f[T_VERIFY_ERRORS], "verify_errors"), 0);
		cr_assert_eq(field_u64(f[T_LOOPS], "loops"), 1);
	}
	check_dest(fmt("%s/d1", work), NFILES, 0);
	check_dest(fmt("%s/d2", work), NFILES, 0);
}

/* ------------------------------------------------------------------------ */
/* 6. A corrupted origin file fails alone                                   */

Test(cli, corrupted_origin_file_fails_alone_exit_1)
{
	serve_dataset(66);
	/* After the manifest was written: its digest no longer matches. */
	enum { BAD = 17 };
	const char *victim = set_file(set_dir, BAD);
	int fd = open(victim, O_RDWR);
	cr_assert_geq(fd, 0, "%s: %s", victim, strerror(errno));
	unsigned char c;
	off_t at = FILESIZE / 2 + 3;
	cr_assert_eq(pread(fd, &c, 1, at), 1);
	c ^= 0x20;
	cr_assert_eq(pwrite(fd, &c, 1, at), 1);
	close(fd);

	const char *dest = fmt("%s/dest", work);
	const char *report = fmt("%s/report.json", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set_dir),
	    fmt("--source=%s", org->base_url), fmt("--dest=%s", dest),
	    "--output-format=json", fmt("--output=%s", report));
	expect_exit(&r, 1);
	cr_assert_str_empty(r.out, "--output given, yet stdout has:\n%s", r.out);

	json_t *job = json_array_get(report_jobs(parse_json(slurp(report, NULL),
	                                                    "report"), 1), 0);
	cr_assert_neq(jint(job, "error"), 0);
	json_t *files = jobj(job, "files");
	cr_assert_eq(jint(files, "ok"), NFILES - 1);
	cr_assert_eq(jint(files, "failed"), 1);
	cr_assert_eq(jint(files, "skipped"), 0);
	cr_assert_eq(jint(jobj(job, "verify"), "errors"), 1);
	cr_assert_eq((uint64_t)jint(jobj(job, "verify"), "bytes"),
	             (uint64_t)(NFILES - 1) * FILESIZE);
	json_t *fails = jget(job, "failures");
	cr_assert(json_is_array(fails) && json_array_size(fails) == 1,
	          "failures: expected one entry");
	cr_assert_str_eq(jstr(json_array_get(fails, 0), "name"),
	                 fmt("%06d.sst", BAD));

	check_dest(dest, NFILES, BAD);
}

/* ------------------------------------------------------------------------ */
/* 7. Seeded datasets repeat                                                */

static void expect_same_tree(const char *a, const char *b, size_t n, int same)
{
	int eq = ds_files_equal(fmt("%s/manifest.json", a),
	                        fmt("%s/manifest.json", b));
	cr_assert_eq(eq, same, "manifests of %s and %s %s", a, b,
	             same ? "differ" : "are identical");
	size_t equal = 0;
	for (size_t i = 1; i <= n; i++) {
		eq = ds_files_equal(set_file(a, i), set_file(b, i));
		cr_assert_geq(eq, 0, "%s: %s", set_file(b, i), strerror(-eq));
		equal += (size_t)eq;
	}
	if (same)
		cr_assert_eq(equal, n, "%zu of %zu files differ", n - equal, n);
	else
		cr_assert_eq(equal, 0, "%zu of %zu files are identical", equal, n);
}

Test(cli, gen_dataset_same_seed_same_bytes_and_manifest)
{
	const char *a = fmt("%s/a", work), *b = fmt("%s/b", work),
	           *c = fmt("%s/c", work);
	uint64_t ta = gen_dataset(a, 16, "1:300k", 77);
	uint64_t tb = gen_dataset(b, 16, "1:300k", 77);
	gen_dataset(c, 16, "1:300k", 78);
	cr_assert_eq(ta, tb);
	for (size_t i = 1; i <= 16; i++) {
		struct stat sb;
		cr_assert_eq(stat(set_file(a, i), &sb), 0);
		cr_assert(sb.st_size >= 1 && sb.st_size <= 300 * 1024,
		          "%s: %jd bytes, outside 1:300k", set_file(a, i),
		          (intmax_t)sb.st_size);
	}
	expect_same_tree(a, b, 16, 1);
	/* And the seed matters. */
	expect_same_tree(a, c, 16, 0);
}

/* ------------------------------------------------------------------------ */
/* 8. Manifests: the streaming loader                                       */

/*
 * The loader's read window: tools/manifest.h's MANIFEST_BUF_SIZE (1 MiB
 * plus a few bytes). A manifest more than twice this long makes the loader
 * refill at least twice, with a value cut at each refill.
 */
#define MANIFEST_WINDOW (1024 * 1024)
/* Its exact size: the most one value may take (MANIFEST_VALUE_MAX, 1 MiB)
 * plus MANIFEST_BUF_SLACK. */
#define MANIFEST_WINDOW_BYTES (MANIFEST_WINDOW + 16)
/* tools/manifest.h's MANIFEST_ENTRY_MAX: the most one entry may take. */
#define MANIFEST_ENTRY_MAX (64 * 1024)

/* Runs the tool on the manifest at path with a file:// source of dir,
 * and dest work/dest. */
static void run_manifest(struct run *r, const char *path, const char *dir,
                         const char *verify)
{
	RUN(r, fmt("--manifest=%s", path), fmt("--source=file://%s", dir),
	    fmt("--dest=%s/dest", work), fmt("--verify=%s", verify));
}

/* An exit 2 whose message names the manifest and says `what`, with
 * nothing created. */
static void expect_manifest_error(const struct run *r, const char *path,
                                  const char *what)
{
	expect_exit(r, 2);
	cr_assert(strstr(r->err, fmt("%s: ", path)), "%s: stderr does not name "
	          "the manifest:\n%s", r->cmd, r->err);
	cr_assert(strstr(r->err, what), "%s: stderr does not say\n  %s\n"
	          "stderr:\n%s", r->cmd, what, r->err);
	cr_assert(!ds_exists(fmt("%s/dest", work)), "%s: created %s/dest",
	          r->cmd, work);
}

/* The dataset's "files" array as compact JSON text. */
static const char *set_files_text(void)
{
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", set_dir), NULL),
	                       "manifest.json");
	char *text = json_dumps(jget(m, "files"), JSON_COMPACT | JSON_PRESERVE_ORDER);
	return keep(text);
}

/*
 * A manifest of the dataset's files with "file_total_size" first and
 * unknown keys of every JSON type before and after "files". The unknown
 * values hold what a hand scanner could take for structure: brackets and
 * commas inside strings, a nested "files" whose "../x" the engine would
 * refuse if it were read, and the string "files" as a value.
 */
static const char *reordered_manifest(uint64_t total, const char *files)
{
	return fmt("{\"file_total_size\": %" PRIu64 ",\n"
	           " \"u_string\": \"files\", \"u_int\": -7, \"u_real\": 2.5e10,\n"
	           " \"u_true\": true, \"u_false\": false, \"u_null\": null,\n"
	           " \"u_object\": {\"files\": [{\"name\": \"../x\", \"size\": 1}], "
	           "\"e\": {}},\n"
	           " \"files\": %s,\n"
	           " \"u_array\": [[], {\"size\": 1}, \"]\", [[[null]]], 0.5, "
	           "\"}\"],\n"
	           " \"u_last\": {\"a\": [\"{\", \"[\", \",\", \"\\\"\"]}}\n",
	           total, files);
}

Test(cli, manifest_total_first_and_unknown_keys_of_every_type)
{
	set_dir = fmt("%s/set", work);
	uint64_t total = gen_dataset(set_dir, 8, "1:4k", 88);
	const char *files = set_files_text();
	const char *path = fmt("%s/m.json", work);

	const char *text = reordered_manifest(total, files);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	struct run r;
	run_manifest(&r, path, set_dir, "xxh128");
	expect_exit(&r, 0);
	check_dest(fmt("%s/dest", work), 8, 0);

	/* A wrong total before "files" is still checked, once the sizes are
	 * known. */
	ds_rmtree(fmt("%s/dest", work));
	text = reordered_manifest(total + 1, files);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	run_manifest(&r, path, set_dir, "xxh128");
	expect_manifest_error(&r, path,
	                      fmt("\"file_total_size\" is %" PRIu64 " but the 8 "
	                          "files' sizes add up to %" PRIu64, total + 1,
	                          total));
}

/*
 * The dataset's manifest with a "pad" member in every entry: a string of
 * `chars` characters cycling through 2-, 3-, 4- and 1-byte UTF-8, written
 * raw (not \u-escaped), so that the loader's window ends inside multibyte
 * characters as well as anywhere else. Entry i gets base + 241 * i
 * characters, so the refills fall at different places of different entries.
 * Written indented (many lines) to path; returns the text.
 */
static const char *padded_manifest(const char *path, size_t base)
{
	static const char *const glyphs[] = {"\xc3\xa9", "\xe2\x82\xac",
	                                     "\xf0\x9f\x98\x80", "a"};
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", set_dir), NULL),
	                       "manifest.json");
	json_t *files = jget(m, "files");
	size_t i;
	json_t *e;
	json_array_foreach(files, i, e) {
		size_t chars = base + 241 * i, len = 0;
		char *pad = keep(malloc(chars * 4 + 1));
		for (size_t k = 0; k < chars; k++) {
			const char *g = glyphs[k % 4];
			size_t gl = strlen(g);
			memcpy(pad + len, g, gl);
			len += gl;
		}
		cr_assert_eq(json_object_set_new(e, "pad", json_stringn(pad, len)), 0);
	}
	char *text = keep(json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER));
	cr_assert_not_null(text);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	return text;
}

Test(cli, manifest_larger_than_the_read_window_loads_every_entry)
{
	set_dir = fmt("%s/set", work);
	gen_dataset(set_dir, NFILES, "1:4k", 99);
	const char *path = fmt("%s/padded.json", work);
	/* Up to 8000 + 241 * 63 = 23183 characters, about 58 KB: each entry
	 * stays under the 64 KiB an entry may take. */
	const char *text = padded_manifest(path, 8000);
	size_t len = strlen(text);
	cr_assert_gt(len, 2 * MANIFEST_WINDOW, "the manifest is only %zu bytes",
	             len);

	struct run r;
	run_manifest(&r, path, set_dir, "xxh3");
	expect_exit(&r, 0);
	check_dest(fmt("%s/dest", work), NFILES, 0);

	/* A number cut by the window's end: "1" of "1234" is a whole JSON
	 * number, and only a refill tells it from the real one. The loader
	 * fills its whole window before it decodes anything, so a pad before
	 * "file_total_size" puts the window's end right after its first
	 * digit. (Inside an entry a cut shows anyway: the object is open.) */
	ds_rmtree(fmt("%s/dest", work));
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", set_dir), NULL),
	                       "manifest.json");
	uint64_t total = (uint64_t)jint(m, "file_total_size");
	cr_assert_geq(total, 10);
	const char *head = "{\"pad\": \"", *mid = "\", \"file_total_size\": ";
	size_t padlen = MANIFEST_WINDOW_BYTES - 1 - strlen(head) - strlen(mid);
	char *pad = keep(malloc(padlen + 1));
	memset(pad, 'p', padlen);
	pad[padlen] = '\0';
	text = fmt("%s%s%s%" PRIu64 ", \"files\": %s}", head, pad, mid, total,
	           set_files_text());
	cr_assert_eq(text[MANIFEST_WINDOW_BYTES - 1], fmt("%" PRIu64, total)[0]);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	run_manifest(&r, path, set_dir, "xxh3");
	expect_exit(&r, 0);
	check_dest(fmt("%s/dest", work), NFILES, 0);
}

/* Where jansson, reading text as one document, puts its error: the
 * reference for the streaming loader's line, column and byte. */
static const char *jansson_where(const char *text)
{
	json_error_t e;
	json_t *root = json_loads(text, JSON_REJECT_DUPLICATES, &e);
	cr_assert_null(root, "the broken manifest parses");
	return fmt("line %d, column %d (byte %d): ", e.line, e.column,
	           e.position);
}

Test(cli, manifest_syntax_errors_report_line_column_and_byte)
{
	/* Small: the third line lacks a comma. */
	cr_assert_eq(ds_mkdirs(fmt("%s/src", work)), 0);
	const char *path = fmt("%s/m.json", work);
	const char *text = "{\n \"files\": [\n  {\"name\": \"a\" \"size\": 1}\n ]\n}\n";
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	struct run r;
	run_manifest(&r, path, fmt("%s/src", work), "none");
	expect_manifest_error(&r, path, fmt("%sfiles[0]: ", jansson_where(text)));
	cr_assert(strstr(r.err, "line 3, column 21 (byte 35)"),
	          "stderr:\n%s", r.err);

	/* Past two refills of the window, hundreds of lines down: entry 60's
	 * "size" is followed by ';', not ':'. */
	set_dir = fmt("%s/set", work);
	gen_dataset(set_dir, NFILES, "1:4k", 98);
	const char *big = fmt("%s/padded.json", work);
	char *t = (char *)padded_manifest(big, 8000);
	char *at = t;
	for (int k = 0; k <= 60; k++) {
		at = strstr(at + 1, "\"size\":");
		cr_assert_not_null(at);
	}
	at[6] = ';';
	cr_assert_gt((size_t)(at - t), 2 * MANIFEST_WINDOW);
	cr_assert_eq(ds_write_file(big, t, strlen(t)), 0);
	run_manifest(&r, big, set_dir, "none");
	expect_manifest_error(&r, big, fmt("%sfiles[60]: ", jansson_where(t)));

	/* After the top-level object, only whitespace may follow. */
	text = "{\"files\": []}\n\n  x";
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	run_manifest(&r, path, fmt("%s/src", work), "none");
	expect_manifest_error(&r, path, "line 3, column 3 (byte 18): ");
}

Test(cli, manifest_duplicate_top_level_key_is_refused)
{
	cr_assert_eq(ds_mkdirs(fmt("%s/src", work)), 0);
	const char *path = fmt("%s/m.json", work);
	static const struct {
		const char *text, *what;
	} cases[] = {
		{"{\"files\": [{\"name\": \"a\", \"size\": 1}],\n \"files\": []}",
		 "line 2, column 2 (byte 40): duplicate object key \"files\""},
		/* Unknown keys too: which one holds is a guess either way. */
		{"{\"x\": 1, \"files\": [], \"x\": {\"y\": 2}}",
		 "line 1, column 23 (byte 23): duplicate object key \"x\""},
		{"{\"file_total_size\": 0, \"files\": [], \"file_total_size\": 0}",
		 "duplicate object key \"file_total_size\""},
		/* Inside an entry, jansson's own check. */
		{"{\"files\": [{\"name\": \"a\", \"size\": 1, \"size\": 1}]}",
		 "files[0]: duplicate object key"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(ds_write_file(path, cases[i].text,
		                           strlen(cases[i].text)), 0);
		struct run r;
		run_manifest(&r, path, fmt("%s/src", work), "none");
		expect_manifest_error(&r, path, cases[i].what);
	}
}

Test(cli, manifest_entry_larger_than_64k_is_refused)
{
	cr_assert_eq(ds_mkdirs(fmt("%s/src", work)), 0);
	const char *path = fmt("%s/m.json", work);
	size_t padlen = MANIFEST_ENTRY_MAX + 100;
	char *pad = keep(malloc(padlen + 1));
	memset(pad, 'p', padlen);
	pad[padlen] = '\0';
	const char *text = fmt("{\"files\": [{\"name\": \"a\", \"size\": 1},\n"
	                       " {\"name\": \"b\", \"size\": 1, \"pad\": \"%s\"}]}",
	                       pad);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	struct run r;
	run_manifest(&r, path, fmt("%s/src", work), "none");
	expect_manifest_error(&r, path,
	                      fmt("line 2, column 2 (byte 39): files[1]: larger "
	                          "than %d bytes", MANIFEST_ENTRY_MAX));

	/* The same bytes outside "files" are an unknown value, which may take
	 * the whole window. */
	text = fmt("{\"files\": [{\"name\": \"a\", \"size\": 0}], \"pad\": \"%s\"}",
	           pad);
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	cr_assert_eq(ds_write_file(fmt("%s/src/a", work), "", 0), 0);
	run_manifest(&r, path, fmt("%s/src", work), "none");
	expect_exit(&r, 0);
}

/* Every check of the loader, and the message that names it. */
Test(cli, manifest_errors_name_the_entry_and_the_reason)
{
	cr_assert_eq(ds_mkdirs(fmt("%s/src", work)), 0);
	const char *path = fmt("%s/m.json", work);
	static const struct {
		const char *verify, *text, *what;
	} cases[] = {
		{"none", "", "the top level must be an object with a \"files\" array"},
		{"none", "[{\"files\": []}]",
		 "the top level must be an object with a \"files\" array"},
		{"none", "{\"file_total_size\": 0}", "missing \"files\" array"},
		{"none", "{\"files\": {}}", "\"files\" must be an array"},
		{"none", "{\"files\": [7]}", "files[0]: must be an object"},
		{"none", "{\"files\": [{\"size\": 1}]}", "files[0]: missing \"name\""},
		{"none", "{\"files\": [{\"name\": 1, \"size\": 1}]}",
		 "files[0]: \"name\" must be a string"},
		{"none", "{\"files\": [{\"name\": \"a\\u0000b\", \"size\": 1}]}",
		 "files[0] (\"a\\x00b\"): name contains a NUL byte"},
		{"none", "{\"files\": [{\"name\": \"a\"}]}",
		 "files[0] (\"a\"): missing \"size\""},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": -1}]}",
		 "files[0] (\"a\"): \"size\" must be a non-negative integer"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1.5}]}",
		 "files[0] (\"a\"): \"size\" must be a non-negative integer"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 9223372036854775807},"
		 " {\"name\": \"b\", \"size\": 9223372036854775807},"
		 " {\"name\": \"c\", \"size\": 2}]}",
		 "files[2] (\"c\"): sizes add up to more than 2^64 - 1"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1, \"xxh3\": 5}]}",
		 "files[0] (\"a\"): \"xxh3\" must be a string of 16 hex digits"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1, "
		 "\"xxh3\": \"0123456789abcde\"}]}",
		 "\"xxh3\" must be 16 hex digits, got 15 characters"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1, "
		 "\"xxh128\": \"0123456789abcdef0123456789abcdeg\"}]}",
		 "\"xxh128\" must be 32 hex digits, character 32 is not one"},
		{"auto", "{\"files\": [{\"name\": \"a\", \"size\": 1}]}",
		 "files[0] (\"a\"): no digest; give \"xxh3\" (16 hex) or \"xxh128\""},
		{"xxh3", "{\"files\": [{\"name\": \"a\", \"size\": 1, "
		 "\"xxh128\": \"0123456789abcdef0123456789abcdef\"}]}",
		 "files[0] (\"a\"): no \"xxh3\" digest, which verify=xxh3 needs"},
		{"xxh128", "{\"files\": [{\"name\": \"a\", \"size\": 1, "
		 "\"xxh3\": \"0123456789abcdef\"}]}",
		 "files[0] (\"a\"): no \"xxh128\" digest, which verify=xxh128 needs"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1, \"url\": 1}]}",
		 "files[0] (\"a\"): \"url\" must be a string without NUL bytes"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1}], "
		 "\"file_total_size\": \"1\"}",
		 "\"file_total_size\" must be a non-negative integer"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1}], "
		 "\"file_total_size\": 2}",
		 "\"file_total_size\" is 2 but the 1 files' sizes add up to 1"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1}],}",
		 "line 1, column 38 (byte 38): expected a string key, got '}'"},
		{"none", "{\"files\": [{\"name\": \"a\", \"size\": 1}]",
		 "premature end of input, expected ',' or '}'"},
		{"none", "{\"files\" [{\"name\": \"a\", \"size\": 1}]}",
		 "line 1, column 10 (byte 10): expected ':' after the key, got '['"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(ds_write_file(path, cases[i].text,
		                           strlen(cases[i].text)), 0);
		struct run r;
		run_manifest(&r, path, fmt("%s/src", work), cases[i].verify);
		expect_manifest_error(&r, path, cases[i].what);
	}
}

/* "urls", the mirror list: every check of the loader names the entry. */
Test(cli, manifest_urls_errors_name_the_entry)
{
	cr_assert_eq(ds_mkdirs(fmt("%s/src", work)), 0);
	const char *path = fmt("%s/m.json", work);
	/* 17 URLs: one more than SSTF_MAX_MIRRORS. */
	char seventeen[1024] = "";
	for (int k = 0; k < 17; k++)
		snprintf(seventeen + strlen(seventeen),
		         sizeof(seventeen) - strlen(seventeen), "%s\"http://m%d/b\"",
		         k ? ", " : "", k);
	const char *cases[][2] = {
		/* Both: which one holds would be a guess. Entry 1, so that
		 * the message must say which. */
		{"{\"files\": [{\"name\": \"a\", \"size\": 1, \"urls\": [\"http://x/a\"]},"
		 " {\"name\": \"b\", \"size\": 1, \"url\": \"http://x/b\","
		 " \"urls\": [\"http://y/b\", \"http://z/b\"]}]}",
		 "files[1] (\"b\"): has both \"url\" and \"urls\""},
		{"{\"files\": [{\"name\": \"b\", \"size\": 1, \"urls\": []}]}",
		 "files[0] (\"b\"): \"urls\" must be an array of 1 to 16 URL strings, "
		 "not an empty one"},
		{"{\"files\": [{\"name\": \"b\", \"size\": 1, \"urls\": \"http://y/b\"}]}",
		 "files[0] (\"b\"): \"urls\" must be an array of 1 to 16 URL strings"},
		{"{\"files\": [{\"name\": \"b\", \"size\": 1, \"urls\": null}]}",
		 "files[0] (\"b\"): \"urls\" must be an array of 1 to 16 URL strings"},
		{"{\"files\": [{\"name\": \"b\", \"size\": 1,"
		 " \"urls\": [\"http://y/b\", 7]}]}",
		 "files[0] (\"b\"): \"urls\"[1] must be a string without NUL bytes"},
		{"{\"files\": [{\"name\": \"b\", \"size\": 1,"
		 " \"urls\": [[\"http://y/b\"]]}]}",
		 "files[0] (\"b\"): \"urls\"[0] must be a string without NUL bytes"},
		{"{\"files\": [{\"name\": \"b\", \"size\": 1,"
		 " \"urls\": [\"http://y/b\", \"http://z/\\u0000b\"]}]}",
		 "files[0] (\"b\"): \"urls\"[1] must be a string without NUL bytes"},
		{fmt("{\"files\": [{\"name\": \"b\", \"size\": 1, \"urls\": [%s]}]}",
		     seventeen),
		 "files[0] (\"b\"): \"urls\" must be an array of 1 to 16 URL strings, "
		 "got 17"},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		cr_assert_eq(ds_write_file(path, cases[i][0], strlen(cases[i][0])), 0);
		struct run r;
		run_manifest(&r, path, fmt("%s/src", work), "none");
		expect_manifest_error(&r, path, cases[i][1]);
	}
}

/* ------------------------------------------------------------------------ */
/* 9. Mirrors: "urls" in the manifest                                       */

/* A port nothing listens on: a connect there fails at once. */
#define DEAD_BASE "http://127.0.0.1:1"

/*
 * Writes work/NAME: the dataset's manifest with "urls" in every entry,
 * base + "/" + the entry's name for each of the n bases, in their order.
 * Returns its path.
 */
static const char *mirrored_manifest(const char *name,
                                     const char *const *bases, size_t n)
{
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", set_dir), NULL),
	                       "manifest.json");
	size_t i;
	json_t *e;
	json_array_foreach(jget(m, "files"), i, e) {
		json_t *urls = json_array();
		cr_assert_not_null(urls);
		for (size_t k = 0; k < n; k++)
			cr_assert_eq(json_array_append_new(urls, json_string(fmt("%s/%s",
			             bases[k], jstr(e, "name")))), 0);
		cr_assert_eq(json_object_set_new(e, "urls", urls), 0);
	}
	const char *path = fmt("%s/%s", work, name);
	char *text = keep(json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER));
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	return path;
}

/* The report's "mirrors" must be `want` (n byte counts). */
static void expect_mirrors(json_t *job, const uint64_t *want, size_t n)
{
	json_t *mir = jget(job, "mirrors");
	cr_assert(json_is_array(mir) && json_array_size(mir) == n,
	          "\"mirrors\" is not an array of %zu", n);
	for (size_t k = 0; k < n; k++) {
		json_t *v = json_array_get(mir, k);
		cr_assert(json_is_integer(v), "mirrors[%zu] not an integer", k);
		cr_assert_eq((uint64_t)json_integer_value(v), want[k],
		             "mirrors[%zu] = %" JSON_INTEGER_FORMAT ", expected %"
		             PRIu64, k, json_integer_value(v), want[k]);
	}
}

/* Needs the engine's mirrors (sstf_file.urls, sstf_file_result.mirror_bytes). */
Test(cli, mirrors_first_url_dead_second_serves_every_byte)
{
	uint64_t bytes = serve_dataset(91);
	const char *const bases[] = {DEAD_BASE, org->base_url};
	const char *path = mirrored_manifest("mirrored.json", bases, 2);
	const char *dest = fmt("%s/dest", work);

	/* The source is dead as well: only the second mirror can serve. */
	struct run r;
	RUN(&r, fmt("--manifest=%s", path), "--source=" DEAD_BASE,
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(job, "error"), 0);
	cr_assert_eq(jint(jobj(job, "files"), "ok"), NFILES);
	cr_assert_eq((uint64_t)jint(jobj(job, "write"), "io_bytes"), bytes);
	const uint64_t want[] = {0, bytes};
	expect_mirrors(job, want, 2);
	cr_assert_eq(json_array_size(jget(job, "failures")), 0);
	check_dest(dest, NFILES, 0);

	/* The normal report says the same, one count per URL index. */
	RUN(&r, fmt("--manifest=%s", path), "--source=" DEAD_BASE,
	    fmt("--dest=%s", dest), "--existing=refetch");
	expect_exit(&r, 0);
	char human[32];
	snprintf(human, sizeof(human), "%.1fMiB", (double)bytes / (1024 * 1024));
	const char *line = fmt("  mirrors: #0=0B, #1=%s\n", human);
	cr_assert(strstr(r.out, line), "the normal report lacks \"%s\":\n%s",
	          line, r.out);
	check_dest(dest, NFILES, 0);
}

/* Needs the engine's mirrors. */
Test(cli, mirrors_sixteen_urls_load_and_report_sixteen_counts)
{
	uint64_t bytes = serve_dataset(92);
	const char *bases[16];
	for (size_t k = 0; k < 16; k++)
		bases[k] = org->base_url;
	const char *path = mirrored_manifest("sixteen.json", bases, 16);
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, fmt("--manifest=%s", path), fmt("--source=%s", org->base_url),
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	json_t *mir = jget(job, "mirrors");
	cr_assert(json_is_array(mir) && json_array_size(mir) == 16,
	          "\"mirrors\" is not an array of 16:\n%s", r.out);
	/* Which mirror served what is the engine's choice; every byte came
	 * from one of them. */
	uint64_t sum = 0;
	for (size_t k = 0; k < 16; k++)
		sum += (uint64_t)json_integer_value(json_array_get(mir, k));
	cr_assert_eq(sum, bytes, "mirrors add up to %" PRIu64 ", the dataset "
	             "holds %" PRIu64, sum, bytes);
	check_dest(dest, NFILES, 0);
}

/* Needs the engine's mirrors. */
Test(cli, mirrors_all_dead_fail_and_list_bytes_per_url)
{
	small_set(2, 93);
	const char *const bases[] = {DEAD_BASE "/a", DEAD_BASE "/b"};
	const char *path = mirrored_manifest("dead.json", bases, 2);
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, fmt("--manifest=%s", path), "--source=" DEAD_BASE,
	    fmt("--dest=%s", dest), "--retries=1", "--output-format=json");
	expect_exit(&r, 1);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "failed"), 2);
	const uint64_t zero[] = {0, 0};
	expect_mirrors(job, zero, 2);
	json_t *fails = jget(job, "failures");
	cr_assert_eq(json_array_size(fails), 2, "failures:\n%s", r.out);
	for (size_t i = 0; i < 2; i++) {
		json_t *f = json_array_get(fails, i);
		json_t *mb = jget(f, "mirror_bytes");
		cr_assert(json_is_array(mb) && json_array_size(mb) == 2,
		          "failures[%zu].mirror_bytes is not an array of 2", i);
		for (size_t k = 0; k < 2; k++)
			cr_assert_eq(json_integer_value(json_array_get(mb, k)), 0);
		cr_assert(json_is_integer(jget(f, "streams")));
	}
	cr_assert(!ds_exists(set_file(dest, 1)) && !ds_exists(set_file(dest, 2)),
	          "a file was published");
}

/* ------------------------------------------------------------------------ */
/* https with a private CA: --cacert and --capath                           */

#define TLS_NFILES 12

/*
 * work/set (TLS_NFILES files of 64 KiB to 3 MiB) served over https by nginx
 * with a certificate signed by a CA made for the test (in work, so teardown
 * removes it). Fills *certs; the caller frees it with origin_free_certs().
 */
static void serve_dataset_tls(struct origin_certs *certs, unsigned long long seed)
{
	int err = origin_make_certs(work, certs);
	cr_assert_eq(err, 0, "cannot make the test CA: %s", strerror(-err));
	set_dir = fmt("%s/set", work);
	gen_dataset(set_dir, TLS_NFILES, "64k:3m", seed);
	err = origin_start_tls(set_dir, certs->cert_pem, certs->key_pem, &org);
	cr_assert_eq(err, 0, "nginx (https) did not start: %s", strerror(-err));
}

/* --split_min=1m, with parts of 1 MiB (half of --mem=8m over --split=4):
 * files above it go over ranged streams, over TLS too. */
Test(cli, https_origin_with_cacert_or_capath_fetches_every_file_verified)
{
	struct origin_certs certs;
	serve_dataset_tls(&certs, 101);
	const char *manifest = fmt("--manifest=%s/manifest.json", set_dir);
	const char *source = fmt("--source=%s", org->base_url);
	struct run r;

	const char *dest = fmt("%s/dest-cacert", work);
	RUN(&r, manifest, source, fmt("--dest=%s", dest), fmt("--cacert=%s", certs.ca_pem),
	    "--split=4", "--split_min=1m", "--bs=256k", "--mem=8m", "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "ok"), TLS_NFILES);
	cr_assert_str_eq(job_opt(job, "cacert"), certs.ca_pem);
	cr_assert_eq(jint(jobj(job, "net"), "retries"), 0);
	cr_assert_gt(jint(jobj(job, "net"), "files_split"), 0,
	             "no file went over ranged streams:\n%s", r.out);
	check_dest(dest, TLS_NFILES, 0);

	dest = fmt("%s/dest-capath", work);
	RUN(&r, manifest, source, fmt("--dest=%s", dest), fmt("--capath=%s", certs.ca_dir),
	    "--output-format=json");
	expect_exit(&r, 0);
	job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "ok"), TLS_NFILES);
	cr_assert_str_eq(job_opt(job, "capath"), certs.ca_dir);
	check_dest(dest, TLS_NFILES, 0);
	origin_free_certs(&certs);
}

Test(cli, https_origin_without_cacert_exits_1_with_the_certificate_problem)
{
	struct origin_certs certs;
	serve_dataset_tls(&certs, 102);
	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set_dir), fmt("--source=%s", org->base_url),
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 1);
	json_t *job = report_job(r.out);
	cr_assert_eq(jint(jobj(job, "files"), "failed"), TLS_NFILES, "%s", r.out);
	/* A certificate problem is not transient: nothing is retried. */
	cr_assert_eq(jint(jobj(job, "net"), "retries"), 0, "%s", r.out);
	json_t *fails = jget(job, "failures");
	cr_assert_eq(json_array_size(fails), TLS_NFILES, "failures:\n%s", r.out);
	for (size_t i = 0; i < TLS_NFILES; i++) {
		const char *detail = jstr(json_array_get(fails, i), "detail");
		cr_assert(strstr(detail, "SSL certificate problem: unable to get local "
		                         "issuer certificate") != NULL,
		          "failures[%zu].detail \"%s\" does not say the certificate problem",
		          i, detail);
	}
	for (size_t i = 1; i <= TLS_NFILES; i++)
		cr_assert(!ds_exists(set_file(dest, i)), "file %zu was published", i);
	origin_free_certs(&certs);
}

/* Checked before any job runs: exit 2 naming the option, nothing made. */
Test(cli, cacert_or_capath_that_does_not_exist_exits_2_naming_the_option)
{
	const char *source = small_set(2, 103);
	const char *manifest = fmt("--manifest=%s/manifest.json", set_dir);
	const char *dest = fmt("%s/dest", work);
	const char *missing = fmt("%s/no-such-ca.pem", work);
	struct run r;

	RUN(&r, manifest, source, fmt("--dest=%s", dest), fmt("--cacert=%s", missing));
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, fmt("--cacert=%s: No such file or directory", missing)),
	          "stderr: %s", r.err);

	RUN(&r, manifest, source, fmt("--dest=%s", dest), fmt("--capath=%s", missing));
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, fmt("--capath=%s: No such file or directory", missing)),
	          "stderr: %s", r.err);

	/* The wrong kind of path. */
	RUN(&r, manifest, source, fmt("--dest=%s", dest), fmt("--cacert=%s", work));
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, fmt("--cacert=%s: is a directory", work)), "stderr: %s", r.err);
	const char *file = fmt("%s/manifest.json", set_dir);
	RUN(&r, manifest, source, fmt("--dest=%s", dest), fmt("--capath=%s", file));
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, fmt("--capath=%s: not a directory", file)), "stderr: %s", r.err);

	/* In a job file, the message names the file, the line and the key. */
	const char *jobfile = fmt("%s/tls.fio", work);
	const char *text = fmt("[global]\ncacert=%s\n[one]\n", missing);
	cr_assert_eq(ds_write_file(jobfile, text, strlen(text)), 0);
	RUN(&r, manifest, source, fmt("--dest=%s", dest), jobfile);
	expect_exit(&r, 2);
	cr_assert(strstr(r.err, fmt("%s:2: cacert=%s: No such file", jobfile, missing)),
	          "stderr: %s", r.err);
	cr_assert(!ds_exists(dest), "dest was created");
}

Test(cli, help_shows_cacert_and_capath_with_their_defaults)
{
	struct run r;
	RUN(&r, "--help");
	expect_exit(&r, 0);
	const char *c = strstr(r.out, "--cacert=FILE");
	const char *p = strstr(r.out, "--capath=DIR");
	cr_assert(c && p, "--help lacks --cacert or --capath:\n%s", r.out);
	/* Each row ends with its default, before the next option. */
	const char *cd = strstr(c, "(default: system CA store)");
	const char *pd = strstr(p, "(default: system CA store)");
	cr_assert(cd && cd < p, "--cacert's default is not shown:\n%s", r.out);
	cr_assert(pd && pd < strstr(p + 2, "\n      --"), "--capath's default is not shown:\n%s",
	          r.out);
}

/* ------------------------------------------------------------------------ */
/* MD5 manifests: Pegasus' bulk_load_metadata as it stands                  */

/* What /usr/bin/md5sum says of path, lowercase hex. */
static const char *md5sum_of(const char *path)
{
	FILE *p = popen(fmt("/usr/bin/md5sum '%s'", path), "r");
	cr_assert_not_null(p);
	char line[4096] = "";
	cr_assert_not_null(fgets(line, sizeof(line), p), "md5sum %s: no output", path);
	cr_assert_eq(pclose(p), 0, "md5sum %s failed", path);
	cr_assert(strlen(line) > 32 && line[32] == ' ', "md5sum said: %s", line);
	line[32] = '\0';
	return fmt("%s", line);
}

/*
 * The dataset in Pegasus' bulk_load_metadata form: {"files": [{"name",
 * "size", "md5"}], "file_total_size"}, no xxHash digest anywhere. Entry
 * `bad` (1-based; 0: none) gets a wrong MD5, entry `bare` none at all;
 * file_total_size is the sum plus `total_off`. Returns its path.
 */
static const char *pegasus_manifest(size_t bad, size_t bare, int64_t total_off)
{
	json_t *files = json_array();
	uint64_t total = 0;
	for (size_t i = 1; i <= NFILES; i++) {
		const char *path = set_file(set_dir, i);
		struct stat st;
		cr_assert_eq(stat(path, &st), 0, "%s", path);
		json_t *e = json_pack("{s:s, s:I}", "name", strrchr(path, '/') + 1, "size",
		                      (json_int_t)st.st_size);
		if (i != bare) {
			char hex[33];
			snprintf(hex, sizeof(hex), "%s", md5sum_of(path));
			if (i == bad)
				hex[5] = hex[5] == '0' ? '1' : '0';
			json_object_set_new(e, "md5", json_string(hex));
		} else {
			/* It has a digest, just not an MD5. */
			json_object_set_new(e, "xxh3", json_string("0123456789abcdef"));
		}
		json_array_append_new(files, e);
		total += (uint64_t)st.st_size;
	}
	json_t *m = json_pack("{s:o, s:I}", "files", files, "file_total_size",
	                      (json_int_t)(total + (uint64_t)total_off));
	const char *path = fmt("%s/bulk_load_metadata", work);
	cr_assert_eq(json_dump_file(m, path, JSON_COMPACT | JSON_PRESERVE_ORDER), 0);
	json_decref(m);
	return path;
}

Test(cli, md5_only_manifest_fetches_and_verifies_every_file)
{
	uint64_t total = serve_dataset(91);
	const char *manifest = pegasus_manifest(0, 0, 0);
	/* No --verify: auto recognises the format by its fields. */
	for (int pass = 0; pass < 2; pass++) {
		const char *dest = fmt("%s/dest%d", work, pass);
		const char *report = fmt("%s/report%d.json", work, pass);
		struct run r;
		RUN(&r, fmt("--manifest=%s", manifest), fmt("--source=%s", org->base_url),
		    fmt("--dest=%s", dest), pass ? "--verify=md5" : "--bs=64k",
		    "--output-format=json", fmt("--output=%s", report));
		expect_exit(&r, 0);
		json_t *job = json_array_get(report_jobs(parse_json(slurp(report, NULL),
		                                                    "report"), 1), 0);
		cr_assert_str_eq(job_opt(job, "verify"), pass ? "md5" : "auto");
		json_t *files = jobj(job, "files");
		cr_assert_eq(jint(files, "ok"), NFILES);
		cr_assert_eq(jint(files, "failed"), 0);
		cr_assert_eq(jint(jobj(job, "verify"), "errors"), 0);
		cr_assert_eq((uint64_t)jint(jobj(job, "verify"), "bytes"), total);
		check_dest(dest, NFILES, 0);
	}
}

Test(cli, md5_mismatch_fails_that_file_alone_exit_1)
{
	serve_dataset(92);
	enum { BAD = 23 };
	const char *manifest = pegasus_manifest(BAD, 0, 0);
	const char *dest = fmt("%s/dest", work);
	const char *report = fmt("%s/report.json", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s", manifest), fmt("--source=%s", org->base_url),
	    fmt("--dest=%s", dest), "--output-format=json", fmt("--output=%s", report));
	expect_exit(&r, 1);
	json_t *job = json_array_get(report_jobs(parse_json(slurp(report, NULL), "report"), 1),
	                             0);
	json_t *files = jobj(job, "files");
	cr_assert_eq(jint(files, "ok"), NFILES - 1);
	cr_assert_eq(jint(files, "failed"), 1);
	cr_assert_eq(jint(jobj(job, "verify"), "errors"), 1);
	json_t *fails = jget(job, "failures");
	cr_assert(json_is_array(fails) && json_array_size(fails) == 1,
	          "failures: expected one entry");
	cr_assert_str_eq(jstr(json_array_get(fails, 0), "name"), fmt("%06d.sst", BAD));
	check_dest(dest, NFILES, BAD);
}

Test(cli, verify_md5_with_an_entry_without_md5_exits_2_naming_it)
{
	serve_dataset(93);
	enum { BARE = 5 }; /* files[4] */
	const char *manifest = pegasus_manifest(0, BARE, 0);
	struct run r;
	run_manifest(&r, manifest, set_dir, "md5");
	expect_manifest_error(&r, manifest,
	                      fmt("files[%d] (\"%06d.sst\"): no \"md5\" digest, which "
	                          "verify=md5 needs for every entry", BARE - 1, BARE));
	/* auto takes that entry's xxh3 instead: the manifest loads (and that
	 * made-up digest fails the file, alone). */
	run_manifest(&r, manifest, set_dir, "auto");
	expect_exit(&r, 1);
	check_dest(fmt("%s/dest", work), NFILES, BARE);
}

Test(cli, md5_manifest_with_a_wrong_file_total_size_exits_2)
{
	serve_dataset(94);
	uint64_t total = (uint64_t)NFILES * FILESIZE;
	const char *manifest = pegasus_manifest(0, 0, 1);
	struct run r;
	run_manifest(&r, manifest, set_dir, "auto");
	expect_manifest_error(&r, manifest,
	                      fmt("\"file_total_size\" is %" PRIu64 " but the %d files' "
	                          "sizes add up to %" PRIu64, total + 1, NFILES, total));
	manifest = pegasus_manifest(0, 0, -1);
	run_manifest(&r, manifest, set_dir, "md5");
	expect_manifest_error(&r, manifest, "\"file_total_size\" is");
}
