/*
 * Description: crash recovery through the tool, as an operator meets it.
 * sstfetch is killed with SIGKILL when half of a set's bytes are written,
 * then run again over the same destination. The rerun leaves no temporary
 * file, skips every file the killed run had published (without fetching a
 * byte of it), resumes the partial files at their last checkpoint, ends
 * with every file byte-identical, and transfers at most 55% of the set.
 *
 * The origin is the fault origin, serving every file slowly (a per
 * connection rate, as object stores cap one stream), so that the kill lands
 * mid-file: the test watches the tool's own status line (--eta=always) and
 * kills it on the first one at or past 50%.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/faultorigin.h"
#include "support/tool.h"

#define NFILES 8
/* 8 .. 16 MiB each: large enough for checkpoints every 1 MiB. */
#define FILESIZE "8m:16m"
/* Per connection, so that 4 transfers take a few seconds for the set. */
#define RATE (8ull << 20)
#define STATUS_WAIT_MS 60000 /* a hang guard: a status line comes each 0.5 s */

static char *work;
static struct fault_origin *fo;

static void fixture_init(void)
{
	work = tool_setup("crash");
}

static void fixture_fini(void)
{
	tool_teardown();
	fault_origin_stop(fo);
	fo = NULL;
}

/* Serves set_dir slowly: every file of its manifest at RATE. */
static void slow_origin(const char *set_dir)
{
	int err = fault_origin_start(set_dir, &fo);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", set_dir), NULL), "manifest");
	json_t *files = jget(m, "files");
	for (size_t i = 0; i < json_array_size(files); i++) {
		struct fault f = {.kind = FAULT_SLOW, .rate = RATE};
		const char *name = jstr(json_array_get(files, i), "name");
		cr_assert_eq(fault_origin_set(fo, fmt("/%s", name), &f), 0);
	}
}

/* Regular files directly in dir, the staging directory not counted. */
static size_t published(const char *dir)
{
	DIR *d = opendir(dir);
	cr_assert_not_null(d, "%s: %s", dir, strerror(errno));
	size_t n = 0;
	struct dirent *de;
	while ((de = readdir(d)))
		if (de->d_type == DT_REG)
			n++;
	closedir(d);
	return n;
}

Test(crash, killed_at_half_then_rerun_skips_resumes_and_verifies, .init = fixture_init,
     .fini = fixture_fini, .timeout = 600)
{
	const char *set = fmt("%s/set", work);
	const char *dest = fmt("%s/dest", work);
	uint64_t total = gen_dataset(set, NFILES, FILESIZE, 4242);
	slow_origin(set);
	const char *manifest = fmt("--manifest=%s/manifest.json", set);
	const char *source = fmt("--source=%s", fault_origin_url(fo));
	const char *dest_arg = fmt("--dest=%s", dest);

	/* The first run, killed on its first status line at 50% or more. */
	struct tool_proc *p = SPAWN(manifest, source, dest_arg, "--parallel=4",
	                            "--checkpoint=1m", "--eta=always");
	double pct = 0;
	for (;;) {
		const char *line = tool_read_line(p, STATUS_WAIT_MS);
		cr_assert_not_null(line, "the tool printed no status line at 50%% (got %.1f%%); "
		                         "stderr:\n%s",
		                   pct, p->err);
		if (tool_status_pct(line, &pct) == 0 && pct >= 50)
			break;
	}
	struct run killed;
	tool_kill(p, &killed);
	cr_assert_eq(killed.code, 128 + 9, "the tool ended (%d) before it was killed; the "
	                                   "origin is not slow enough",
	             killed.code);
	size_t done_before = published(dest);
	cr_assert_gt(done_before, 0, "nothing was published by 50%%");
	cr_assert_lt(done_before, NFILES, "everything was published by the kill");
	cr_assert(!dir_empty(fmt("%s/.sstf", dest)),
	          "the killed run left no partial file: nothing to resume");

	/* The rerun: the same command line, with a report. */
	struct run r;
	RUN(&r, manifest, source, dest_arg, "--parallel=4", "--checkpoint=1m",
	    "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	json_t *files = jobj(job, "files");
	json_t *w = jobj(job, "write");
	json_int_t io = jint(w, "io_bytes"), present = jint(w, "present_bytes");
	cr_log_info("killed at %.1f%% with %zu of %d files published; the rerun skipped "
	            "%" JSON_INTEGER_FORMAT ", resumed %" JSON_INTEGER_FORMAT
	            " and transferred %" JSON_INTEGER_FORMAT " of %" PRIu64 " bytes (%.1f%%)",
	            pct, done_before, NFILES, jint(files, "skipped"), jint(files, "resumed"), io,
	            total, 100.0 * (double)io / (double)total);

	/* Complete files are skipped, without a byte fetched for them. */
	cr_expect_eq((size_t)jint(files, "skipped"), done_before,
	             "%" JSON_INTEGER_FORMAT " skipped, %zu were published",
	             jint(files, "skipped"), done_before);
	cr_expect_eq(jint(files, "ok") + jint(files, "skipped"), NFILES);
	cr_expect_eq(jint(files, "failed"), 0);
	/* A partial file resumes at its checkpoint. */
	cr_expect_geq(jint(files, "resumed"), 1, "no file resumed");
	/* What needed no transfer and what was transferred make the set. */
	cr_expect_eq((uint64_t)(io + present), total,
	             "io %" JSON_INTEGER_FORMAT " + present %" JSON_INTEGER_FORMAT
	             " != %" PRIu64,
	             io, present, total);
	/* Killed at half: at most about half is fetched again. And what the
	 * killed run wrote is lost only past each file's last checkpoint:
	 * the status line comes each 0.5 s, so the kill may land past 50%. */
	cr_expect_leq((double)io, 0.55 * (double)total,
	              "the rerun transferred %.1f%% of the set",
	              100.0 * (double)io / (double)total);
	cr_expect_leq((double)io, (1.05 - pct / 100) * (double)total,
	              "killed at %.1f%%, the rerun transferred %.1f%%: more than 5%% of "
	              "the set was lost",
	              pct, 100.0 * (double)io / (double)total);
	/* Byte-identical, no temporary, no staging directory. */
	expect_dest(set, dest, NFILES, 0);
}

Test(crash, killed_twice_still_converges, .init = fixture_init, .fini = fixture_fini,
     .timeout = 600)
{
	/* Two kills in a row: the second run adopts what the first left,
	 * takes checkpoints of its own, and is killed too; the third ends
	 * the job with every file verified and nothing left behind. */
	const char *set = fmt("%s/set", work);
	const char *dest = fmt("%s/dest", work);
	gen_dataset(set, NFILES, FILESIZE, 4343);
	slow_origin(set);
	const char *manifest = fmt("--manifest=%s/manifest.json", set);
	const char *source = fmt("--source=%s", fault_origin_url(fo));
	const char *dest_arg = fmt("--dest=%s", dest);
	for (int kill = 0; kill < 2; kill++) {
		struct tool_proc *p = SPAWN(manifest, source, dest_arg, "--parallel=4",
		                            "--checkpoint=1m", "--eta=always");
		double pct = 0;
		/* The rerun starts where the first stopped: kill it at 75%. */
		double at = kill ? 75 : 30;
		while (pct < at) {
			const char *line = tool_read_line(p, STATUS_WAIT_MS);
			cr_assert_not_null(line, "no status line at %.0f%%; stderr:\n%s", at, p->err);
			(void)tool_status_pct(line, &pct);
		}
		tool_kill(p, NULL);
	}
	struct run r;
	RUN(&r, manifest, source, dest_arg, "--parallel=4", "--checkpoint=1m",
	    "--output-format=json");
	expect_exit(&r, 0);
	json_t *files = jobj(report_job(r.out), "files");
	cr_expect_eq(jint(files, "ok") + jint(files, "skipped"), NFILES);
	expect_dest(set, dest, NFILES, 0);
}
