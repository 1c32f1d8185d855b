/*
 * Description: a transfer cut by the origin (its nginx workers killed in the
 * middle of the body) is retried and resumed at the first byte not received,
 * and the file still verifies; with retries off the same cut fails the file;
 * a 404 is never retried.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/origin.h"

#define NFILES 8
#define FILE_SIZE (8u << 20)

static struct dataset ds;
static struct origin *origin;
static char *dest;

static void setup(void)
{
	uint64_t sizes[NFILES];
	for (int i = 0; i < NFILES; i++)
		sizes[i] = FILE_SIZE + (uint64_t)i * 4097;
	cr_assert_eq(ds_create(&ds, "retry", NFILES, NULL, sizes, 77), 0);
	cr_assert_eq(origin_start(ds.dir, &origin), 0);
	cr_assert_eq(ds_mkdtemp("retry-dest", &dest), 0);
}

static void teardown(void)
{
	origin_stop(origin);
	ds_destroy(&ds);
	if (dest)
		ds_rmtree(dest);
	free(dest);
}

TestSuite(retry, .init = setup, .fini = teardown, .timeout = 600);

/* SIGKILLs every child of nginx's master: the connections they serve are
 * cut mid-body, and the master starts new workers. Returns how many. */
static int kill_workers(pid_t master)
{
	DIR *d = opendir("/proc");
	cr_assert_not_null(d);
	int n = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		char path[300], buf[512];
		if (de->d_name[0] < '0' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", de->d_name);
		FILE *f = fopen(path, "r");
		if (!f)
			continue;
		size_t len = fread(buf, 1, sizeof(buf) - 1, f);
		fclose(f);
		buf[len] = '\0';
		/* pid (comm) state ppid ...: comm may hold spaces, so skip to ')'. */
		char *rp = strrchr(buf, ')');
		char state;
		int ppid;
		if (rp && sscanf(rp + 1, " %c %d", &state, &ppid) == 2 && ppid == master) {
			kill((pid_t)strtol(de->d_name, NULL, 10), SIGKILL);
			n++;
		}
	}
	closedir(d);
	return n;
}

struct run {
	atomic_uint retries_seen;
	atomic_uint failed;
	atomic_int first_error;
};

static void on_file_done(void *user, uint64_t gen, const struct sstf_file_result *r)
{
	struct run *run = user;
	atomic_fetch_add(&run->retries_seen, r->retries);
	if (r->result) {
		atomic_fetch_add(&run->failed, 1);
		int zero = 0;
		atomic_compare_exchange_strong(&run->first_error, &zero, r->result);
	}
}

/* The loop pauses in every progress callback, so the body takes long enough
 * for the test to cut it; 1 ms per 64 KiB buffer caps a file near 64 MB/s. */
static void on_progress(void *user, uint64_t gen, const struct sstf_progress *p)
{
	usleep(1000);
}

/* Fetches the dataset, killing nginx's workers once some bytes have arrived
 * and again a little later. Returns the batch result. */
static int fetch_with_cuts(int max_retries, struct run *run, struct sstf_stats *stats)
{
	struct sstf_config cfg = {
		.max_transfers = 4,
		.buf_size = 64 << 10,
		.mem_limit = 1 << 20,
		.progress_interval_ms = 1,
		.max_retries = max_retries,
		.fsync = SSTF_OFF,
	};
	sstf_engine *e;
	cr_assert_eq(test_engine_new(&cfg, &e), 0);
	struct sstf_file *files = ds_batch_new(&ds, origin->base_url, SSTF_DIGEST_XXH3);
	cr_assert_not_null(files);
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = files,
		.nfiles = NFILES,
		.on_file_done = on_file_done,
		.on_progress = on_progress,
		.user = run,
	};
	uint64_t gen;
	cr_assert_eq(sstf_submit(e, &b, &gen), 0);
	ds_batch_free(files, NFILES, 1);

	uint64_t total = (uint64_t)NFILES * FILE_SIZE;
	int cuts = 0;
	for (uint64_t mark = total / 8; cuts < 2 && mark < total; mark += total / 4) {
		struct sstf_progress p;
		do {
			cr_assert_eq(sstf_progress(e, gen, &p), 0);
			if (p.bytes_done >= mark || p.files_done + p.files_failed == NFILES)
				break;
			usleep(2000);
		} while (1);
		if (p.files_done + p.files_failed == NFILES)
			break;
		cr_assert_gt(kill_workers(origin->pid), 0, "no nginx worker to kill");
		cuts++;
	}
	cr_assert_gt(cuts, 0, "the fetch ended before any cut: make it slower");
	int result = sstf_wait(e, gen, 300000);
	cr_assert_eq(sstf_stats(e, stats), 0);
	sstf_engine_free(e);
	return result;
}

Test(retry, cut_transfers_resume_and_verify)
{
	struct run run = {0};
	struct sstf_stats st;
	int result = fetch_with_cuts(0 /* default: 3 */, &run, &st);
	cr_assert_eq(result, 0, "batch result %d (%s)", result, sstf_strerror(result));
	cr_assert_eq(atomic_load(&run.failed), 0);
	cr_assert_geq(st.retries, 1, "no retry was counted");
	cr_assert_eq(atomic_load(&run.retries_seen), st.retries,
	             "per-file retries add up to the engine's count");
	char why[512];
	cr_assert_eq(ds_check_dest(&ds, dest, NULL, ds.n, why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(ds_count_temps(dest, NULL, 0), 0);
}

Test(retry, cut_transfers_fail_without_retries)
{
	struct run run = {0};
	struct sstf_stats st;
	int result = fetch_with_cuts(-1 /* none */, &run, &st);
	cr_assert_eq(result, -SSTF_ETRANSFER, "batch result %d (%s)", result,
	             sstf_strerror(result));
	cr_assert_gt(atomic_load(&run.failed), 0);
	cr_assert_eq(st.retries, 0);
	cr_assert_eq(ds_count_temps(dest, NULL, 0), 0, "a failed file left a temporary");
}

Test(retry, not_found_is_not_retried)
{
	sstf_engine *e;
	cr_assert_eq(test_engine_new(NULL, &e), 0);
	struct sstf_file *files = ds_batch_new(&ds, origin->base_url, SSTF_DIGEST_XXH3);
	char *missing = ds_strfmt("%s/missing.sst", origin->base_url);
	cr_assert_eq(ds_set_str(&files[0].url, missing), 0);
	free(missing);
	struct run run = {0};
	struct sstf_batch b = {.dest_dir = dest, .files = files, .nfiles = 1,
	                       .on_file_done = on_file_done, .user = &run};
	uint64_t gen;
	cr_assert_eq(sstf_submit(e, &b, &gen), 0);
	ds_batch_free(files, NFILES, 0);
	cr_assert_eq(sstf_wait(e, gen, 120000), -SSTF_EHTTP);
	struct sstf_stats st;
	sstf_stats(e, &st);
	cr_assert_eq(st.retries, 0, "a 404 was retried");
	cr_assert_eq(atomic_load(&run.retries_seen), 0);
	sstf_engine_free(e);
}
