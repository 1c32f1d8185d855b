/*
 * Description: a destination directory shared by several writers, and
 * restart after a crash (invariant 8). Two engines fetching into one
 * directory at once, with the same names or different ones, publish only
 * verified bytes. The sweep removes what dead writers left and never what a
 * live writer holds. A crashed writer's checkpointed partial is resumed
 * from its checkpoint, and bytes that do not match the checkpoint's hash
 * state are caught by the final digest. Admission refuses a batch that does
 * not fit the destination's filesystem before anything is written.
 *
 * nginx on loopback serves the data; the admission tests mount a small
 * tmpfs in a private mount namespace (root only, skipped otherwise).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/origin.h"
#include "support/sanitizers.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
#define WAIT_MS 120000 /* a hang guard; nothing is measured */
#define NF 16
#define ROUNDS 20

static struct dataset ds;     /* NF files, 64 KiB .. 1.5 MiB */
static struct origin *org;
static char *work, *dest;

static void fixture_init(void)
{
	uint64_t sizes[NF];
	for (size_t i = 0; i < NF; i++)
		sizes[i] = 64 * KIB + i * 97 * KIB + i; /* odd sizes, to 1.5 MiB */
	cr_assert_eq(ds_create(&ds, "dest-origin", NF, NULL, sizes, 0xde57), 0);
	int err = origin_start(ds.dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	cr_assert_eq(ds_mkdtemp("dest", &work), 0);
	dest = ds_strfmt("%s/dest", work);
	cr_assert_eq(ds_mkdirs(dest), 0);
}

static void fixture_fini(void)
{
	origin_stop(org);
	org = NULL;
	ds_destroy(&ds);
	if (work)
		ds_rmtree(work);
	free(work);
	free(dest);
	work = dest = NULL;
}

static sstf_engine *engine_new(const struct sstf_config *base)
{
	struct sstf_config cfg;
	if (base)
		cfg = *base;
	else
		memset(&cfg, 0, sizeof(cfg));
	if (!cfg.buf_size) {
		cfg.buf_size = 64 * KIB;
		cfg.max_transfers = 4;
		cfg.mem_limit = 8 * 64 * KIB;
	}
	sstf_engine *eng = NULL;
	int err = test_engine_new(&cfg, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	return eng;
}

static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
}

/* Per-file outcome of one generation. */
struct rec {
	pthread_mutex_t mu;
	int result[NF];
	int skipped[NF];
	uint64_t bytes[NF];
	uint64_t resumed_from[NF];
	unsigned retries[NF];
	char detail[NF][160];
};

static void on_file(void *user, uint64_t gen, const struct sstf_file_result *r)
{
	struct rec *rc = user;
	if (r->index >= NF)
		return;
	pthread_mutex_lock(&rc->mu);
	rc->result[r->index] = r->result;
	rc->skipped[r->index] = r->skipped;
	rc->bytes[r->index] = r->bytes;
	rc->resumed_from[r->index] = r->resumed_from;
	rc->retries[r->index] = r->retries;
	snprintf(rc->detail[r->index], sizeof(rc->detail[0]), "%s", r->detail);
	pthread_mutex_unlock(&rc->mu);
}

static void rec_init(struct rec *r)
{
	memset(r, 0, sizeof(*r));
	pthread_mutex_init(&r->mu, NULL);
	for (size_t i = 0; i < NF; i++)
		r->result[i] = 1; /* never reported */
}

/* Submits `files` into `dir`; returns the id. */
static uint64_t submit(sstf_engine *eng, const char *dir, const struct sstf_file *files,
                       size_t n, struct rec *r)
{
	char errbuf[512] = "";
	struct sstf_batch b = {
		.dest_dir = dir,
		.files = files,
		.nfiles = n,
		.on_file_done = on_file,
		.user = r,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	return gen;
}

static int wait_gen(sstf_engine *eng, uint64_t gen)
{
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT, "generation %" PRIu64 " did not end", gen);
	return res;
}

/* The batch for the dataset under other names: PREFIX000001.sst, ... */
static struct sstf_file *batch_named(const char *prefix)
{
	struct sstf_file *f = ds_batch_new(&ds, org->base_url, SSTF_DIGEST_XXH3);
	cr_assert_not_null(f);
	for (size_t i = 0; prefix && i < NF; i++) {
		char *name = ds_strfmt("%s%s", prefix, ds.files[i].name);
		cr_assert_eq(ds_set_str(&f[i].name, name), 0);
		free(name);
	}
	return f;
}

static void expect_same(const char *dir, const char *prefix, size_t i)
{
	char *p = ds_strfmt("%s/%s%s", dir, prefix ? prefix : "", ds.files[i].name);
	cr_expect_eq(ds_files_equal(p, ds.files[i].path), 1, "%s differs from the origin's", p);
	free(p);
}

static void expect_no_temps(const char *dir)
{
	char first[PATH_MAX];
	int n = ds_count_temps(dir, first, sizeof(first));
	cr_expect_eq(n, 0, "%d temporary file(s) left in %s, e.g. %s", n, dir, first);
}

static int has(const char *dir, const char *name);

/* ------------------------------------------------------------------------ */
/* Two writers, one directory                                               */

/*
 * Two engines, each its own writer, fetch into one directory at the same
 * time. Before the staging namespace both named their temporaries
 * .sstf-1-INDEX.tmp and opened them with O_TRUNC: each truncated and
 * overwrote the other's, and wrong bytes were published with success.
 */
static void two_writers(const char *prefix_a, const char *prefix_b)
{
	sstf_engine *a = engine_new(NULL), *b = engine_new(NULL);
	struct sstf_file *fa = batch_named(prefix_a), *fb = batch_named(prefix_b);
	for (int round = 0; round < ROUNDS; round++) {
		cr_assert_eq(ds_empty_dir(dest), 0);
		struct rec ra, rb;
		rec_init(&ra);
		rec_init(&rb);
		uint64_t ga = submit(a, dest, fa, NF, &ra);
		uint64_t gb = submit(b, dest, fb, NF, &rb);
		int resa = wait_gen(a, ga), resb = wait_gen(b, gb);
		cr_expect_eq(resa, 0, "round %d: writer a: %s", round, sstf_strerror(resa));
		cr_expect_eq(resb, 0, "round %d: writer b: %s", round, sstf_strerror(resb));
		for (size_t i = 0; i < NF; i++) {
			expect_same(dest, prefix_a, i);
			expect_same(dest, prefix_b, i);
		}
		expect_no_temps(dest);
		cr_expect(!has(dest, ".sstf"), "the staging directory stayed after both writers ended");
		pthread_mutex_destroy(&ra.mu);
		pthread_mutex_destroy(&rb.mu);
	}
	ds_batch_free(fa, NF, 1);
	ds_batch_free(fb, NF, 1);
	engine_free_checked(a);
	engine_free_checked(b);
}

Test(dest, two_engines_one_directory_same_names, .init = fixture_init, .fini = fixture_fini)
{
	two_writers(NULL, NULL);
}

Test(dest, two_engines_one_directory_different_names, .init = fixture_init,
     .fini = fixture_fini)
{
	two_writers("a-", "b-");
}

/* ------------------------------------------------------------------------ */
/* Sweep                                                                    */

static void put(const char *dir, const char *name, const char *text)
{
	char *p = ds_strfmt("%s/%s", dir, name);
	cr_assert_eq(ds_write_file(p, text, strlen(text)), 0);
	free(p);
}

static int has(const char *dir, const char *name)
{
	char *p = ds_strfmt("%s/%s", dir, name);
	int r = ds_exists(p);
	free(p);
	return r;
}

Test(dest, sweep_removes_dead_writers_files_and_keeps_live_ones, .init = fixture_init,
     .fini = fixture_fini)
{
	char *stage = ds_strfmt("%s/.sstf", dest);
	cr_assert_eq(ds_mkdirs(stage), 0);
	/* A writer that died: its lock file is there, nobody holds it. */
	put(stage, "0123456789abcdef.lock", "");
	put(stage, "0123456789abcdef-3.tmp", "half a file");
	/* A writer whose lock file is already gone (a sweep that stopped). */
	put(stage, "1111111111111111-0.tmp", "orphan");
	/* A live writer: this process holds its lock. */
	put(stage, "fedcba9876543210.lock", "");
	put(stage, "fedcba9876543210-1.tmp", "live");
	char *live = ds_strfmt("%s/fedcba9876543210.lock", stage);
	int lfd = open(live, O_RDWR | O_CLOEXEC);
	cr_assert_geq(lfd, 0);
	cr_assert_eq(flock(lfd, LOCK_EX | LOCK_NB), 0);
	/* Not the engine's: never touched. */
	put(stage, "notes.txt", "mine");

	sstf_engine *eng = engine_new(NULL);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	cr_expect_eq(wait_gen(eng, submit(eng, dest, f, 2, &r)), 0);
	cr_expect(!has(stage, "0123456789abcdef.lock"), "a dead writer's lock stayed");
	cr_expect(!has(stage, "0123456789abcdef-3.tmp"), "a dead writer's temporary stayed");
	cr_expect(!has(stage, "1111111111111111-0.tmp"), "an orphan temporary stayed");
	cr_expect(has(stage, "fedcba9876543210.lock"), "a live writer's lock was removed");
	cr_expect(has(stage, "fedcba9876543210-1.tmp"), "a live writer's temporary was removed");
	cr_expect(has(stage, "notes.txt"), "a file not the engine's was removed");
	expect_same(dest, NULL, 0);
	expect_same(dest, NULL, 1);

	/* The writer dies (its lock goes with its fd): the next run sweeps. */
	close(lfd);
	rec_init(&r);
	cr_expect_eq(wait_gen(eng, submit(eng, dest, f, 2, &r)), 0);
	cr_expect(!has(stage, "fedcba9876543210.lock"), "a dead writer's lock stayed");
	cr_expect(!has(stage, "fedcba9876543210-1.tmp"), "a dead writer's temporary stayed");
	cr_expect(has(stage, "notes.txt"), "a file not the engine's was removed");
	cr_expect_eq(r.skipped[0], 1, "the second run did not skip a verified file");
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
	free(live);
	free(stage);
}

/* ------------------------------------------------------------------------ */
/* Resume                                                                   */

/*
 * Leaves in DEST/.sstf exactly what a writer killed mid-fetch leaves: its
 * lock file (unlocked, since its process is gone) and its temporary file of
 * file i, holding `offset` bytes of it (`corrupt`: with one flipped) and a
 * checkpoint at `offset` with the hash state of the true bytes.
 */
static void crashed_writer_at(size_t i, unsigned tmp_index, uint64_t offset, bool corrupt)
{
	char *stage = ds_strfmt("%s/.sstf", dest);
	cr_assert_eq(ds_mkdirs(stage), 0);
	put(stage, "00000000deadbeef.lock", "");
	char *tmp = ds_strfmt("%s/00000000deadbeef-%u.tmp", stage, tmp_index);
	uint8_t *buf = malloc(offset);
	cr_assert_not_null(buf);
	int sfd = open(ds.files[i].path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(sfd, 0);
	cr_assert_eq(pread(sfd, buf, offset, 0), (ssize_t)offset);
	close(sfd);
	XXH3_state_t *st = XXH3_createState();
	cr_assert_not_null(st);
	XXH3_64bits_reset(st);
	XXH3_64bits_update(st, buf, offset);
	if (corrupt)
		buf[offset / 2] ^= 0x40;
	cr_assert_eq(ds_write_file(tmp, buf, offset), 0);
	int fd = open(tmp, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	struct sstf__entry f = {.name = ds.files[i].name, .size = ds.files[i].size,
	                       .kind = SSTF_DIGEST_XXH3};
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, ds.files[i].xxh3, &f.digest), 0);
	int r = sstf__record_partial_set(fd, &f, offset, st);
	if (r == -ENOTSUP || r == -EOPNOTSUPP)
		cr_skip_test("no user xattrs on %s", stage);
	cr_assert_eq(r, 0, "record: %s", strerror(-r));
	close(fd);
	XXH3_freeState(st);
	free(buf);
	free(tmp);
	free(stage);
}

static void crashed_writer(size_t i, uint64_t offset, bool corrupt)
{
	crashed_writer_at(i, 7, offset, corrupt);
}

static void resume_case(bool corrupt, enum sstf_existing existing)
{
	size_t i = NF - 1; /* the largest file, about 1.5 MiB */
	uint64_t offset = 1 * MIB; /* a buffer boundary, 4096-aligned */
	crashed_writer(i, offset, corrupt);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.direct_io = SSTF_ON;
	cfg.existing = existing;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	int res = wait_gen(eng, submit(eng, dest, &f[i], 1, &r));
	cr_expect_eq(res, 0, "%s: %s", sstf_strerror(res), r.detail[0]);
	expect_same(dest, NULL, i);
	expect_no_temps(dest);
	if (!corrupt) {
		cr_expect_eq(r.resumed_from[0], offset, "resumed from %" PRIu64,
		             r.resumed_from[0]);
		cr_expect_eq(r.bytes[0], ds.files[i].size - offset,
		             "%" PRIu64 " bytes fetched; only the rest was missing", r.bytes[0]);
		cr_expect_eq(r.retries[0], 0);
	} else {
		/* The checkpoint's hash state is right but the bytes on disk
		 * are not. The final digest cannot tell (it continues from the
		 * state), so strict mode re-hashes the prefix first and, as it
		 * does not match, fetches the whole file. */
		cr_expect_eq(r.resumed_from[0], 0);
		cr_expect_eq(r.bytes[0], ds.files[i].size);
		cr_expect_eq(r.retries[0], 0, "%u retries", r.retries[0]);
	}
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}

Test(dest, crashed_writers_partial_resumes_from_its_checkpoint, .init = fixture_init,
     .fini = fixture_fini)
{
	resume_case(false, SSTF_EXISTING_TRUST);
}

/*
 * With two loops (sstf_config.threads) the batch becomes one generation per
 * loop, prepared one after the other: the two largest files land on
 * different loops. The first part's sweep finds the crashed writer's two
 * partials; it must leave the one of the other part's file for that part
 * to resume, not remove it as a partial of no file of its own.
 */
Test(dest, crashed_writers_partials_resume_on_whichever_loop_takes_their_file,
     .init = fixture_init, .fini = fixture_fini)
{
	const uint64_t offset = 1 * MIB;
	crashed_writer_at(NF - 1, 7, offset, false);
	crashed_writer_at(NF - 2, 8, offset, false);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.buf_size = 64 * KIB;
	cfg.max_transfers = 4;
	cfg.mem_limit = 8 * 64 * KIB;
	cfg.direct_io = SSTF_ON;
	cfg.threads = 2;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	int res = wait_gen(eng, submit(eng, dest, f, NF, &r));
	cr_expect_eq(res, 0, "%s", sstf_strerror(res));
	for (size_t i = 0; i < NF; i++)
		expect_same(dest, NULL, i);
	expect_no_temps(dest);
	for (size_t i = NF - 2; i < NF; i++) {
		cr_expect_eq(r.resumed_from[i], offset, "file %zu resumed from %" PRIu64, i,
		             r.resumed_from[i]);
		cr_expect_eq(r.bytes[i], ds.files[i].size - offset,
		             "file %zu: %" PRIu64 " bytes fetched", i, r.bytes[i]);
	}
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}

Test(dest, strict_mode_rehashes_the_prefix_and_resumes_when_it_matches,
     .init = fixture_init, .fini = fixture_fini)
{
	resume_case(false, SSTF_EXISTING_REHASH);
}

Test(dest, strict_mode_refetches_a_partial_whose_prefix_does_not_match,
     .init = fixture_init, .fini = fixture_fini)
{
	resume_case(true, SSTF_EXISTING_REHASH);
}

/*
 * A writer killed between its publish record and its rename leaves a whole
 * verified temporary. The next run publishes it without fetching a byte;
 * in strict mode, where records are not trusted, it fetches it.
 */
static void whole_temporary_case(enum sstf_existing existing)
{
	size_t i = NF - 1;
	char *stage = ds_strfmt("%s/.sstf", dest);
	cr_assert_eq(ds_mkdirs(stage), 0);
	put(stage, "00000000deadbeef.lock", "");
	char *tmp = ds_strfmt("%s/00000000deadbeef-3.tmp", stage);
	char *cmd = ds_strfmt("cp '%s' '%s'", ds.files[i].path, tmp);
	cr_assert_eq(system(cmd), 0);
	int fd = open(tmp, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0);
	struct sstf__entry f = {.name = ds.files[i].name, .size = ds.files[i].size,
	                       .kind = SSTF_DIGEST_XXH3};
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, ds.files[i].xxh3, &f.digest), 0);
	int r = sstf__record_verified_set(fd, &f);
	if (r == -ENOTSUP || r == -EOPNOTSUPP)
		cr_skip_test("no user xattrs on %s", stage);
	cr_assert_eq(r, 0, "record: %s", strerror(-r));
	close(fd);

	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.existing = existing;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_file *files = batch_named(NULL);
	struct rec rc;
	rec_init(&rc);
	cr_expect_eq(wait_gen(eng, submit(eng, dest, &files[i], 1, &rc)), 0, "%s", rc.detail[0]);
	expect_same(dest, NULL, i);
	expect_no_temps(dest);
	if (existing == SSTF_EXISTING_TRUST) {
		cr_expect_eq(rc.bytes[0], 0, "%" PRIu64 " bytes fetched for a whole file",
		             rc.bytes[0]);
		cr_expect_eq(rc.resumed_from[0], ds.files[i].size);
	} else {
		cr_expect_eq(rc.bytes[0], ds.files[i].size);
		cr_expect_eq(rc.resumed_from[0], 0);
	}
	engine_free_checked(eng);
	ds_batch_free(files, NF, 1);
	free(cmd);
	free(tmp);
	free(stage);
}

Test(dest, whole_verified_temporary_of_a_dead_writer_is_published_as_is,
     .init = fixture_init, .fini = fixture_fini)
{
	whole_temporary_case(SSTF_EXISTING_TRUST);
}

Test(dest, strict_mode_fetches_a_whole_temporary_again, .init = fixture_init,
     .fini = fixture_fini)
{
	whole_temporary_case(SSTF_EXISTING_REHASH);
}

Test(dest, partial_of_another_file_is_not_resumed, .init = fixture_init, .fini = fixture_fini)
{
	/* The checkpoint is file 15's; file 14 has another name, size and
	 * digest. The partial is removed, file 14 fetched whole. */
	crashed_writer(NF - 1, 1 * MIB, false);
	sstf_engine *eng = engine_new(NULL);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	cr_expect_eq(wait_gen(eng, submit(eng, dest, &f[NF - 2], 1, &r)), 0);
	cr_expect_eq(r.resumed_from[0], 0);
	cr_expect_eq(r.bytes[0], ds.files[NF - 2].size);
	expect_same(dest, NULL, NF - 2);
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}

/* ------------------------------------------------------------------------ */
/* Publish                                                                  */

/*
 * Every file is published at its exact size (odd sizes: an O_DIRECT
 * file's padded last block is cut) and carries a publish record that
 * matches it as it is on disk, which the record's mtime only does if the
 * record was set after the cut: so a second generation trusts every file
 * and fetches nothing. No checkpoint record stays (64 KiB checkpoints: the
 * files of 128 KiB and more take some). `ring_calls`: the cut and the
 * records go through the ring where the kernel has IORING_OP_FTRUNCATE and
 * IORING_OP_FSETXATTR; false: the loop makes those calls itself.
 */
static void publish_case(bool ring_calls)
{
	sstf__test_ring_calls_off = !ring_calls;
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.direct_io = SSTF_ON;
	cfg.checkpoint_bytes = 64 * KIB;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_engine *loop = sstf__engine_loop(eng, 0);
	cr_log_info("ring calls %s: cut %s, records %s", ring_calls ? "on" : "off",
	            loop->ring_cut ? "in the ring" : "on the loop",
	            loop->ring_xattr ? "in the ring" : "on the loop");
	if (!ring_calls)
		cr_assert(!loop->ring_cut && !loop->ring_xattr);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	cr_assert_eq(wait_gen(eng, submit(eng, dest, f, NF, &r)), 0);
	for (size_t i = 0; i < NF; i++) {
		expect_same(dest, NULL, i);
		char *p = ds_strfmt("%s/%s", dest, ds.files[i].name);
		int fd = open(p, O_RDONLY | O_CLOEXEC);
		cr_assert_geq(fd, 0, "%s: %s", p, strerror(errno));
		struct stat st;
		cr_assert_eq(fstat(fd, &st), 0);
		struct sstf__entry ent = {.name = ds.files[i].name, .size = ds.files[i].size,
		                          .kind = SSTF_DIGEST_XXH3};
		cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, ds.files[i].xxh3, &ent.digest), 0);
		cr_expect(sstf__record_verified_matches(fd, &st, &ent),
		          "%s has no publish record that matches it (size %lld, expected %" PRIu64 ")",
		          p, (long long)st.st_size, ds.files[i].size);
		struct sstf__partial part;
		cr_expect_eq(sstf__record_partial_get(fd, &part), -ENODATA,
		             "%s kept a checkpoint record", p);
		close(fd);
		free(p);
	}
	expect_no_temps(dest);
	rec_init(&r);
	cr_assert_eq(wait_gen(eng, submit(eng, dest, f, NF, &r)), 0);
	for (size_t i = 0; i < NF; i++)
		cr_expect_eq(r.skipped[i], 1, "file %zu was not trusted: %s", i, r.detail[i]);
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
	sstf__test_ring_calls_off = false;
}

Test(dest, published_files_are_cut_and_vouched_for_through_the_ring, .init = fixture_init,
     .fini = fixture_fini)
{
	publish_case(true);
}

Test(dest, published_files_are_cut_and_vouched_for_by_the_loop, .init = fixture_init,
     .fini = fixture_fini)
{
	publish_case(false);
}

/* ------------------------------------------------------------------------ */
/* Admission                                                                */

/* Mounts a tmpfs of `mib` MiB on dest, visible to this test process only. */
static void small_filesystem(unsigned mib)
{
	if (unshare(CLONE_NEWNS) != 0)
		cr_skip_test("unshare(CLONE_NEWNS): %s (needs root)", strerror(errno));
	cr_assert_eq(mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL), 0, "%s",
	             strerror(errno));
	char opts[32];
	snprintf(opts, sizeof(opts), "size=%um", mib);
	cr_assert_eq(mount("sstf-test", dest, "tmpfs", 0, opts), 0, "mount tmpfs: %s",
	             strerror(errno));
}

/* Sizes of files 10..15: 1 MiB each or more, 7.4 MiB in all. */
#define BIG_FIRST 10

Test(dest, admission_refuses_a_batch_larger_than_the_free_space, .init = fixture_init,
     .fini = fixture_fini)
{
	small_filesystem(4);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.disk_reserve = 1;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_file *f = batch_named(NULL);
	char errbuf[512] = "";
	struct sstf_batch b = {.dest_dir = dest, .files = &f[BIG_FIRST], .nfiles = NF - BIG_FIRST,
	                       .errbuf = errbuf, .errbuf_len = sizeof(errbuf)};
	uint64_t gen = 0;
	int err = sstf_submit(eng, &b, &gen);
	cr_expect_eq(err, -ENOSPC, "submit: %d (%s)", err, sstf_strerror(err));
	cr_expect(strstr(errbuf, "free") && strstr(errbuf, "needs") && strstr(errbuf, dest),
	          "the message must give both numbers and the directory: %s", errbuf);
	/* Nothing was written: not even the staging directory stays. */
	struct dataset none = {0};
	char why[512];
	cr_expect_eq(ds_check_dest(&none, dest, NULL, 0, why, sizeof(why)), 0, "%s", why);
	cr_expect(!has(dest, ".sstf"), "the staging directory stayed");
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}

Test(dest, admission_counts_the_reserve, .init = fixture_init, .fini = fixture_fini)
{
	/* 2 MiB of files fit a 4 MiB filesystem, not with 64 MiB kept free. */
	small_filesystem(4);
	sstf_engine *eng = engine_new(NULL); /* disk_reserve: 64 MiB */
	struct sstf_file *f = batch_named(NULL);
	char errbuf[512] = "";
	struct sstf_batch b = {.dest_dir = dest, .files = &f[BIG_FIRST], .nfiles = 2,
	                       .errbuf = errbuf, .errbuf_len = sizeof(errbuf)};
	uint64_t gen = 0;
	cr_expect_eq(sstf_submit(eng, &b, &gen), -ENOSPC, "%s", errbuf);
	cr_expect(strstr(errbuf, "reserve"), "%s", errbuf);
	engine_free_checked(eng);

	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.disk_reserve = 1;
	eng = engine_new(&cfg);
	struct rec r;
	rec_init(&r);
	cr_expect_eq(wait_gen(eng, submit(eng, dest, &f[BIG_FIRST], 2, &r)), 0);
	expect_same(dest, NULL, BIG_FIRST);
	expect_same(dest, NULL, BIG_FIRST + 1);
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}

Test(dest, admission_does_not_count_files_already_in_place, .init = fixture_init,
     .fini = fixture_fini)
{
	/* 7 MiB: files 12..14 (3.8 MiB) fit; then a batch of 10..14 (5.9 MiB)
	 * fits only because 12..14 are already there. */
	small_filesystem(7);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.disk_reserve = 1;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	cr_assert_eq(wait_gen(eng, submit(eng, dest, &f[12], 3, &r)), 0);
	rec_init(&r);
	cr_expect_eq(wait_gen(eng, submit(eng, dest, &f[BIG_FIRST], 5, &r)), 0);
	for (size_t k = 0; k < 5; k++) {
		expect_same(dest, NULL, BIG_FIRST + k);
		cr_expect_eq(r.skipped[k], k >= 2, "file %zu: skipped %d", BIG_FIRST + k,
		             r.skipped[k]);
	}
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}

Test(dest, disk_filling_during_the_fetch_fails_files_cleanly, .init = fixture_init,
     .fini = fixture_fini)
{
	/* Admission off: the batch starts, and the disk fills under it. */
	small_filesystem(4);
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.admission = SSTF_OFF;
	cfg.max_retries = -1;
	sstf_engine *eng = engine_new(&cfg);
	struct sstf_file *f = batch_named(NULL);
	struct rec r;
	rec_init(&r);
	int res = wait_gen(eng, submit(eng, dest, &f[BIG_FIRST], NF - BIG_FIRST, &r));
	cr_expect_eq(res, -ENOSPC, "%d (%s)", res, sstf_strerror(res));
	size_t ok = 0;
	for (size_t k = 0; k < NF - BIG_FIRST; k++) {
		char *p = ds_strfmt("%s/%s", dest, ds.files[BIG_FIRST + k].name);
		if (r.result[k] == 0) {
			ok++;
			cr_expect_eq(ds_files_equal(p, ds.files[BIG_FIRST + k].path), 1);
		} else {
			cr_expect_eq(r.result[k], -ENOSPC, "file %zu: %s", k,
			             sstf_strerror(r.result[k]));
			cr_expect(!ds_exists(p), "a failed file was published: %s", p);
		}
		free(p);
	}
	cr_expect_lt(ok, NF - BIG_FIRST, "every file fitted a 4 MiB filesystem?");
	expect_no_temps(dest);
	engine_free_checked(eng);
	ds_batch_free(f, NF, 1);
}
