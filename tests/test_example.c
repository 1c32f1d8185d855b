/*
 * Description: the example storage node, tools/examples/pegasus-replica
 * (the real binary, $SSTF_PEGASUS_REPLICA, set by meson), against the real
 * S3 server (s3rver, SigV4). A Pegasus bulk-load layout of 6 partitions x
 * 8 files of 256 KiB to 2 MiB, each with its MD5 in bulk_load_metadata,
 * goes into a bucket; the node downloads it under a rate limit while 100
 * random replica restarts (cancel from another thread mid-download, poison
 * and free the metadata, start again) land on it. It must exit 0 with
 * every replica downloaded, the 100 restarts done, the downloading cap
 * kept, and every published file byte-identical to the layout, nothing else
 * in any replica's directory. A corrupt MD5 in one partition fails that
 * replica alone (exit 1), and a file_total_size that is not the sum of the
 * sizes is refused. Any sanitizer report from the node fails the test.
 *
 * SSTF_EXAMPLE_SEED=N replays the restarts' randomness of a run (the
 * seed is printed); SSTF_EXAMPLE_RESTARTS overrides the 100.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sstfetch.h"
#include "support/dataset.h"
#include "support/s3server.h"
#include "support/tool.h"

#define NPART  6
#define NFILE  8
#define APP_ID 7
#define BUCKET "bulkload"
#define PREFIX "root/cluster/app"
#define KIB    1024ull

static struct s3server *srv;
static char *work;
static char *layout; /* work/layout: PREFIX/... as uploaded */
static char *names[NPART][NFILE];
static uint64_t sizes[NPART][NFILE];
static uint64_t total_bytes;

static unsigned long env_num(const char *name, unsigned long dflt)
{
	const char *s = getenv(name);
	if (s && *s) {
		char *end;
		unsigned long v = strtoul(s, &end, 0);
		if (*end == '\0')
			return v;
	}
	return dflt;
}

/* The MD5 of a file, as md5sum prints it. */
static void md5_of(const char *path, char out[33])
{
	size_t len;
	char *data = slurp(path, &len);
	cr_assert_eq(sstf_digest_hex(SSTF_DIGEST_MD5, data, len, out), 32,
	             "sstf_digest_hex(MD5) of %s", path);
}

/* Partition p's bulk_load_metadata. corrupt_md5: file 0's digest has its
 * first digit changed; total_delta is added to file_total_size. */
static char *metadata_json(int p, int corrupt_md5, int64_t total_delta)
{
	char *s = fmt("{\"files\":[");
	uint64_t sum = 0;
	for (int i = 0; i < NFILE; i++) {
		char md5[33];
		md5_of(fmt("%s/" PREFIX "/%d/%s", layout, p, names[p][i]), md5);
		if (corrupt_md5 && i == 0)
			md5[0] = md5[0] == '0' ? '1' : '0';
		s = fmt("%s%s{\"name\":\"%s\",\"size\":%" PRIu64 ",\"md5\":\"%s\"}", s,
		        i ? "," : "", names[p][i], sizes[p][i], md5);
		sum += sizes[p][i];
	}
	return fmt("%s],\"file_total_size\":%" PRIu64 "}", s, sum + (uint64_t)total_delta);
}

static void put_metadata(int p, const char *json)
{
	cr_assert_eq(
	    s3server_put(srv, BUCKET, fmt(PREFIX "/%d/bulk_load_metadata", p), json, strlen(json)),
	    0);
}

static void fixture_init(void)
{
	work = tool_setup("example");
	const char *exe = getenv("SSTF_PEGASUS_REPLICA");
	cr_assert(exe && *exe, "SSTF_PEGASUS_REPLICA is not set; run through meson test");
	/* support/tool.c runs $SSTFETCH: here, the example node. */
	cr_assert_eq(setenv("SSTFETCH", exe, 1), 0);

	/* The layout: sizes from 256 KiB to 2 MiB, odd ones included. */
	layout = fmt("%s/layout", work);
	uint64_t x = 0x5eed0fa11ull;
	total_bytes = 0;
	for (int p = 0; p < NPART; p++) {
		cr_assert_eq(ds_mkdirs(fmt("%s/" PREFIX "/%d", layout, p)), 0);
		for (int i = 0; i < NFILE; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			sizes[p][i] = 256 * KIB + x % (1792 * KIB + 1);
			names[p][i] = fmt("%d_%d.sst", p, i);
			cr_assert_eq(
			    ds_write_random(fmt("%s/" PREFIX "/%d/%s", layout, p, names[p][i]),
			                    sizes[p][i], x),
			    0);
			total_bytes += sizes[p][i];
		}
		char *meta = metadata_json(p, 0, 0);
		cr_assert_eq(ds_write_file(fmt("%s/" PREFIX "/%d/bulk_load_metadata", layout, p),
		                           meta, strlen(meta)),
		             0);
	}
	char *info =
	    fmt("{\"app_id\":%d,\"app_name\":\"app\",\"partition_count\":%d}", APP_ID, NPART);
	cr_assert_eq(ds_write_file(fmt("%s/" PREFIX "/bulk_load_info", layout), info, strlen(info)),
	             0);

	const char *const buckets[] = {BUCKET, NULL};
	int err = s3server_start(buckets, &srv);
	cr_assert_eq(err, 0, "s3server_start: %s (run tools/deps.sh)", strerror(-err));
	cr_assert_eq(s3server_put_tree(srv, BUCKET, "", layout), 1 + NPART * (NFILE + 1));

	/* What the node reads, as the AWS tools read it. */
	cr_assert_eq(setenv("AWS_ACCESS_KEY_ID", srv->access_key, 1), 0);
	cr_assert_eq(setenv("AWS_SECRET_ACCESS_KEY", srv->secret_key, 1), 0);
	cr_assert_eq(setenv("AWS_REGION", srv->region, 1), 0);
	cr_assert_eq(setenv("AWS_ENDPOINT_URL", srv->endpoint, 1), 0);
}

static void fixture_fini(void)
{
	tool_teardown(); /* before the server the node may still talk to */
	s3server_stop(srv);
	srv = NULL;
}

TestSuite(example, .init = fixture_init, .fini = fixture_fini, .timeout = 600);

/* Replica p's directory in the node's data dir. */
static char *replica_dir(const char *local, int p)
{
	return fmt("%s/%d.%d.pegasus/.bulk_load", local, APP_ID, p);
}

/* The value of key in the node's "summary:" line; fails when missing. */
static uint64_t summary(const struct run *r, const char *key)
{
	const char *line = strstr(r->out, "\nsummary: ");
	line = line ? line + 1 : strncmp(r->out, "summary: ", 9) ? NULL : r->out;
	cr_assert_not_null(line, "no summary line in:\n%s", r->out);
	char *k = fmt(" %s=", key);
	const char *at = strstr(line, k);
	cr_assert_not_null(at, "no %s in %s", key, line);
	return strtoull(at + strlen(k), NULL, 10);
}

Test(example, restarts_100_mid_download_then_every_replica_verified)
{
	unsigned long seed = env_num("SSTF_EXAMPLE_SEED", 0);
	if (!seed) {
		cr_assert_eq(getrandom(&seed, sizeof(seed), 0), (ssize_t)sizeof(seed));
		seed &= 0x7fffffff;
		seed |= 1;
	}
	unsigned long restarts = env_num("SSTF_EXAMPLE_RESTARTS", 100);
	fprintf(stderr, "example: seed %lu (SSTF_EXAMPLE_SEED=%lu replays it)\n", seed, seed);

	/* 16 MiB/s over ~60 MiB: downloads run for seconds, so restarts 0-50 ms
	 * apart find them in flight; every restart throws away what its
	 * replica had in flight, so the whole run takes 5-20 s. */
	const char *local = fmt("%s/node", work);
	struct run r;
	RUN(&r, "--remote=s3://" BUCKET "/" PREFIX, fmt("--local=%s", local),
	    fmt("--partitions=%d", NPART), "--max-downloading=5", "--rate-mb=16",
	    fmt("--restart-iterations=%lu", restarts), "--restart-max-delay-ms=50",
	    fmt("--seed=%lu", seed));
	expect_exit(&r, 0);
	fprintf(stderr, "%s", r.out);

	cr_expect_eq(summary(&r, "partitions"), NPART);
	cr_expect_eq(summary(&r, "downloaded"), NPART);
	cr_expect_eq(summary(&r, "failed"), 0);
	cr_expect_eq(summary(&r, "files"), NPART * NFILE);
	cr_expect_eq(summary(&r, "bytes"), total_bytes);
	cr_expect_eq(summary(&r, "restarts"), restarts, "%s", r.out);
	/* Most restarts cut a download; one that lands just as its replica
	 * finished is still a restart (cancel returned 0), but all of them
	 * missing their downloads would mean this test proves nothing. */
	cr_expect_geq(summary(&r, "restarts_mid_download"), restarts / 2, "%s", r.out);
	cr_expect_leq(summary(&r, "peak_downloading"), 5, "%s", r.out);
	cr_expect_geq(summary(&r, "peak_downloading"), 1);

	for (int p = 0; p < NPART; p++) {
		const char *dir = replica_dir(local, p);
		cr_expect_eq(dir_count(dir), NFILE, "%s: not exactly its %d files", dir, NFILE);
		for (int i = 0; i < NFILE; i++) {
			const char *want = fmt("%s/" PREFIX "/%d/%s", layout, p, names[p][i]);
			const char *got = fmt("%s/%s", dir, names[p][i]);
			cr_expect_eq(ds_files_equal(want, got), 1, "%s differs from %s", got, want);
		}
	}
}

Test(example, corrupt_md5_fails_that_replica_alone)
{
	put_metadata(2, metadata_json(2, 1, 0));
	const char *local = fmt("%s/node", work);
	struct run r;
	RUN(&r, "--remote=s3://" BUCKET "/" PREFIX, fmt("--local=%s", local));
	expect_exit(&r, 1);
	cr_expect_eq(summary(&r, "downloaded"), NPART - 1);
	cr_expect_eq(summary(&r, "failed"), 1);
	const char *line = strstr(r.out, fmt("replica %d.2: FAILED", APP_ID));
	cr_assert_not_null(line, "%s", r.out);
	cr_expect_not_null(strstr(line, fmt("%s", names[2][0])), "%s", r.out);
	cr_expect_not_null(strstr(line, sstf_strerror(-SSTF_ECHECKSUM)), "%s", r.out);
	/* Nothing of it is published under its name; the others are whole. */
	cr_expect_eq(access(fmt("%s/%s", replica_dir(local, 2), names[2][0]), F_OK), -1);
	for (int i = 0; i < NFILE; i++)
		cr_expect_eq(ds_files_equal(fmt("%s/" PREFIX "/3/%s", layout, names[3][i]),
		                            fmt("%s/%s", replica_dir(local, 3), names[3][i])),
		             1);
}

Test(example, file_total_size_mismatch_is_refused)
{
	put_metadata(4, metadata_json(4, 0, 1));
	const char *local = fmt("%s/node", work);
	struct run r;
	RUN(&r, "--remote=s3://" BUCKET "/" PREFIX, fmt("--local=%s", local));
	expect_exit(&r, 1);
	cr_expect_eq(summary(&r, "failed"), 1);
	cr_expect_not_null(strstr(r.out, "file_total_size"), "%s", r.out);
	cr_expect(dir_empty(replica_dir(local, 4)), "a refused replica fetched something");
}
