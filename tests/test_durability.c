/*
 * test_durability.c - what is durable when a file is reported done.
 *
 * A published name is durable only once its directory was synced after the
 * rename. The engine shares directory syncs between files (engine/dirsync.c)
 * and, with fsync=batch, syncs each directory once at the end of the batch.
 * These tests watch the order of renames, directory syncs and on_file_done
 * through the test hook compiled into the test build of the engine
 * (SSTF_TEST_HOOKS, engine/internal.h) and check, for every file reported
 * done, that a sync of its directory started after its rename and completed
 * before the report. The hook and the callbacks run on the loop thread, so
 * one log under a mutex holds them in their true order.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "support/dataset.h"
#include "support/sanitizers.h"

enum ev_kind {
	EV_RENAMED,
	EV_SYNC_START,
	EV_SYNC_DONE,
	EV_STREAMS_GIVEN,
	EV_FILE_DONE,
	EV_BATCH_DONE,
};

struct ev {
	enum ev_kind kind;
	uint64_t gen;
	char path[128]; /* file name, or directory ("" for dest_dir) */
	uint32_t slot;
	int res;
};

static struct {
	pthread_mutex_t mu;
	struct ev *v;
	size_t n, cap;
} evlog = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void log_ev(enum ev_kind kind, uint64_t gen, const char *path, size_t len, uint32_t slot,
                   int res)
{
	pthread_mutex_lock(&evlog.mu);
	if (evlog.n == evlog.cap) {
		evlog.cap = evlog.cap ? 2 * evlog.cap : 1024;
		evlog.v = realloc(evlog.v, evlog.cap * sizeof(*evlog.v));
		if (!evlog.v)
			abort();
	}
	struct ev *e = &evlog.v[evlog.n++];
	e->kind = kind;
	e->gen = gen;
	if (len >= sizeof(e->path))
		len = sizeof(e->path) - 1;
	memcpy(e->path, path, len);
	e->path[len] = '\0';
	e->slot = slot;
	e->res = res;
	pthread_mutex_unlock(&evlog.mu);
}

static void hook(enum sstf__hook_event ev, uint64_t gen, const char *path, size_t len,
                 uint32_t slot, int res)
{
	enum ev_kind k = ev == SSTF__HOOK_RENAMED         ? EV_RENAMED
	                 : ev == SSTF__HOOK_DIRSYNC_START  ? EV_SYNC_START
	                 : ev == SSTF__HOOK_STREAMS_GIVEN ? EV_STREAMS_GIVEN
	                                                  : EV_SYNC_DONE;
	log_ev(k, gen, path, len, slot, res);
}

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *r)
{
	(void)user;
	log_ev(EV_FILE_DONE, gen, r->name, strlen(r->name), 0, r->result);
}

static void on_batch(void *user, uint64_t gen, int result)
{
	(void)user;
	log_ev(EV_BATCH_DONE, gen, "", 0, 0, result);
}

static struct dataset ds;
static char *dest;
static char *base;

/* 240 files: 60 at the top and 60 in each of three directories, one of them
 * two levels down. Small, so that many renames meet in one directory. */
static void data_init(void)
{
	sstf__test_hook = hook;
	const char *dirs[4] = {"", "a/", "b/", "c/d/"};
	enum { N = 240 };
	static char namebuf[N][32];
	const char *names[N];
	uint64_t sizes[N];
	for (size_t i = 0; i < N; i++) {
		snprintf(namebuf[i], sizeof(namebuf[i]), "%s%03zu.sst", dirs[i % 4], i);
		names[i] = namebuf[i];
		sizes[i] = 1000 + (i * 7919) % 20000;
	}
	cr_assert_eq(ds_create(&ds, "dur", N, names, sizes, 77), 0);
	cr_assert_eq(ds_mkdtemp("dur-dest", &dest), 0);
	base = ds_strfmt("file://%s", ds.dir);
}

static void data_fini(void)
{
	sstf__test_hook = NULL;
	ds_destroy(&ds);
	ds_rmtree(dest);
	free(dest);
	free(base);
	free(evlog.v);
	evlog.v = NULL;
	evlog.n = evlog.cap = 0;
}

static void parent_of(const char *name, char *out, size_t len)
{
	const char *slash = strrchr(name, '/');
	size_t n = slash ? (size_t)(slash - name) : 0;
	if (n >= len)
		n = len - 1;
	memcpy(out, name, n);
	out[n] = '\0';
}

/* Runs one batch of the whole dataset with `cfg` and waits for its end. */
static uint64_t run_batch(struct sstf_config *cfg)
{
	sstf_engine *eng = NULL;
	cr_assert_eq(sstf_engine_new(cfg, &eng), 0);
	struct sstf_file *files = ds_batch_new(&ds, base, SSTF_DIGEST_XXH3);
	cr_assert_not_null(files);
	struct sstf_batch b = {.dest_dir = dest, .files = files, .nfiles = ds.n,
	                       .on_file_done = on_file, .on_batch_done = on_batch};
	uint64_t gen = 0;
	cr_assert_eq(sstf_submit(eng, &b, &gen), 0);
	cr_assert_eq(sstf_wait(eng, gen, -1), 0);
	sstf_engine_free(eng);
	ds_batch_free(files, ds.n, 0);
	char why[256];
	cr_assert_eq(ds_check_dest(&ds, dest, NULL, ds.n, why, sizeof(why)), 0, "%s", why);
	return gen;
}

/*
 * For every file reported done at position p: its rename at r < p, and a
 * sync of its directory that STARTED after r and COMPLETED (without error)
 * before p. A DONE belongs to the last START on its slot. Returns the number
 * of directory syncs started.
 */
static size_t check_order(uint64_t gen)
{
	size_t reported = 0, syncs = 0;
	for (size_t p = 0; p < evlog.n; p++) {
		const struct ev *e = &evlog.v[p];
		if (e->gen != gen)
			continue;
		if (e->kind == EV_SYNC_START)
			syncs++;
		if (e->kind != EV_FILE_DONE)
			continue;
		cr_assert_eq(e->res, 0, "%s: result %d", e->path, e->res);
		reported++;
		size_t r = p;
		for (size_t i = 0; i < p; i++)
			if (evlog.v[i].gen == gen && evlog.v[i].kind == EV_RENAMED &&
			    !strcmp(evlog.v[i].path, e->path))
				r = i;
		cr_assert_lt(r, p, "%s was reported done but never renamed before", e->path);
		char dir[128];
		parent_of(e->path, dir, sizeof(dir));
		bool covered = false;
		for (size_t d = r + 1; d < p && !covered; d++) {
			const struct ev *done = &evlog.v[d];
			if (done->gen != gen || done->kind != EV_SYNC_DONE || strcmp(done->path, dir) ||
			    done->res != 0)
				continue;
			size_t s = d;
			while (s-- > 0)
				if (evlog.v[s].kind == EV_SYNC_START && evlog.v[s].slot == done->slot)
					break;
			covered = s < d && s > r && !strcmp(evlog.v[s].path, dir);
		}
		cr_assert(covered,
		          "%s was reported done (event %zu) with no sync of '%s' started after "
		          "its rename (event %zu) and completed before",
		          e->path, p, dir, r);
	}
	cr_assert_eq(reported, ds.n, "%zu files reported done of %zu", reported, ds.n);
	return syncs;
}

/* How many syncs of each of the four directories started. */
static void syncs_per_dir(uint64_t gen, size_t out[4])
{
	const char *dirs[4] = {"", "a", "b", "c/d"};
	memset(out, 0, 4 * sizeof(out[0]));
	for (size_t p = 0; p < evlog.n; p++)
		for (int k = 0; k < 4; k++)
			if (evlog.v[p].gen == gen && evlog.v[p].kind == EV_SYNC_START &&
			    !strcmp(evlog.v[p].path, dirs[k]))
				out[k]++;
}

/* Small buffers, `transfers` at once, the given fsync mode. */
static struct sstf_config durability_config(unsigned transfers, enum sstf_switch fsync)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_transfers = transfers;
	cfg.buf_size = 64 * 1024;
	cfg.fsync = fsync;
	return cfg;
}

TestSuite(durability, .init = data_init, .fini = data_fini);

Test(durability, fsync_on_reports_each_file_after_a_directory_sync_begun_after_its_rename)
{
	struct sstf_config cfg = durability_config(8, SSTF_DEFAULT);
	uint64_t gen = run_batch(&cfg);
	size_t syncs = check_order(gen);
	cr_assert_gt(syncs, 0);
	/* Shared syncs can only lower the count: one per file at most. */
	cr_assert_leq(syncs, ds.n);
	cr_log_info("fsync=1: %zu directory syncs for %zu files", syncs, ds.n);
}

Test(durability, fsync_batch_syncs_each_directory_once_and_reports_files_after_it)
{
	struct sstf_config cfg = durability_config(8, SSTF_FSYNC_BATCH);
	uint64_t gen = run_batch(&cfg);
	check_order(gen);
	size_t per[4];
	syncs_per_dir(gen, per);
	for (int k = 0; k < 4; k++)
		cr_assert_eq(per[k], 1, "directory %d synced %zu times in one batch", k, per[k]);
	/* Every report comes after the last sync, and before batch-done. */
	size_t last_sync = 0, first_report = SIZE_MAX, batch_done = 0;
	for (size_t p = 0; p < evlog.n; p++) {
		if (evlog.v[p].gen != gen)
			continue;
		if (evlog.v[p].kind == EV_SYNC_DONE)
			last_sync = p;
		if (evlog.v[p].kind == EV_FILE_DONE && first_report == SIZE_MAX)
			first_report = p;
		if (evlog.v[p].kind == EV_BATCH_DONE)
			batch_done = p;
	}
	cr_assert_lt(last_sync, first_report);
	cr_assert_gt(batch_done, first_report);
}

/*
 * Eight distinct directories, one transfer: the engine has 3 directory
 * slots, and fsync=batch keeps each directory that received a rename until
 * the end, so most files find no slot and sync their directory on their own
 * (sink.c). They must still never be reported before that sync.
 */
Test(durability, fsync_batch_without_a_free_directory_slot_syncs_per_file)
{
	struct sstf_config cfg = durability_config(1, SSTF_FSYNC_BATCH);
	/* A dataset of its own: eight directories. */
	ds_destroy(&ds);
	enum { N = 64 };
	static char namebuf[N][32];
	const char *names[N];
	uint64_t sizes[N];
	for (size_t i = 0; i < N; i++) {
		snprintf(namebuf[i], sizeof(namebuf[i]), "d%zu/%03zu.sst", i % 8, i);
		names[i] = namebuf[i];
		sizes[i] = 3000 + i;
	}
	cr_assert_eq(ds_create(&ds, "dur8", N, names, sizes, 78), 0);
	free(base);
	base = ds_strfmt("file://%s", ds.dir);
	uint64_t gen = run_batch(&cfg);
	size_t syncs = check_order(gen);
	cr_assert_gt(syncs, 8, "%zu syncs: the per-file path never ran", syncs);
}

/*
 * A file whose bytes are all in and verified gives its streams to the next
 * files while its last writes land: every such file was reported published
 * afterwards, whole (the check of the destination), and with one transfer
 * the next file got its bytes through that stream before it was reported.
 */
Test(durability, a_verified_file_gives_its_stream_back_while_its_writes_land)
{
	struct sstf_config cfg = durability_config(1, SSTF_DEFAULT);
	uint64_t gen = run_batch(&cfg);
	check_order(gen);
	size_t given = 0, overlapped = 0;
	for (size_t p = 0; p < evlog.n; p++) {
		const struct ev *v = &evlog.v[p];
		if (v->gen != gen || v->kind != EV_STREAMS_GIVEN)
			continue;
		cr_assert_gt(v->res, 0, "%s: streams given with %d writes in flight", v->path,
		             v->res);
		given++;
		/* Its report, with result 0, comes later; another file's
		 * rename may come first: its stream went on meanwhile. */
		bool reported = false, other = false;
		for (size_t q = p + 1; q < evlog.n && !reported; q++) {
			const struct ev *w = &evlog.v[q];
			if (w->gen != gen)
				continue;
			if (w->kind == EV_FILE_DONE && !strcmp(w->path, v->path)) {
				cr_assert_eq(w->res, 0, "%s: result %d", v->path, w->res);
				reported = true;
			}
			if (w->kind == EV_STREAMS_GIVEN && strcmp(w->path, v->path))
				other = true;
		}
		cr_assert(reported, "%s gave its streams back and was never reported", v->path);
		overlapped += other;
	}
	cr_assert_gt(given, 0, "no file gave its stream back before its writes landed");
	cr_assert_gt(overlapped, 0,
	             "%zu files gave their stream back early, and no other file got bytes "
	             "through before one of them was reported",
	             given);
	cr_log_info("%zu of %zu files gave their stream back early, %zu overlapped", given, ds.n,
	            overlapped);
}

Test(durability, fsync_batch_is_a_valid_setting_and_four_is_not)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.fsync = SSTF_FSYNC_BATCH;
	char err[256] = "";
	cr_assert_eq(sstf_config_check(&cfg, err, sizeof(err)), 0, "%s", err);
	cfg.fsync = (enum sstf_switch)4;
	cr_assert_eq(sstf_config_check(&cfg, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "fsync=4"), "%s", err);
}
