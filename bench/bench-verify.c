/*
 * bench-verify.c - how much of the memory bandwidth verification costs.
 *
 * Streams --total bytes through the engine's own hasher (sstf__hasher_update,
 * XXH3-64 and XXH128, with the run-time AVX2/SSE2 dispatch the engine uses,
 * and MD5 through OpenSSL's EVP, as Pegasus manifests need) over the buffers
 * of an engine buffer pool (sstf__pool_init), and compares that with plain
 * memcpy between buffers of the same pool, and with the engine's real
 * per-buffer work: one copy into a pool buffer, then the hash (XXH3 or
 * MD5). GB/s converts to what a digest costs: 1/GBps seconds per GB of
 * files, on one core (the loop thread hashes every file).
 *
 * The pool holds --mem bytes, as the engine's mem_limit does, so the buffers
 * cycle through more memory than the cache holds and each byte comes from
 * DRAM, as it does for a buffer that has just been written by the network.
 * Measurements alternate (every kind of every size, then again) and each
 * figure is the median of --runs, with min and max.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "benchutil.h"
#include "internal.h"

enum kind {
	K_MEMCPY,
	K_XXH3,
	K_XXH128,
	K_COPY_XXH3,
	K_MD5,
	K_COPY_MD5,
	K_COUNT
};

static const char *const kind_name[K_COUNT] = {"memcpy", "xxh3",     "xxh128",
                                               "copy+xxh3", "md5", "copy+md5"};

static struct {
	struct bu_list bs;
	uint64_t total;
	uint64_t mem;
	uint64_t runs;
	const char *json;
} opt;

static const struct bu_opt opts[] = {
	{"bs", BU_SIZE_LIST, &opt.bs, "64K,1M,4M", 4096, 64u << 20,
	 "buffer sizes, each a pool of its own"},
	{"total", BU_SIZE, &opt.total, "1G", 1u << 20, 0,
	 "bytes streamed per measurement"},
	{"mem", BU_SIZE, &opt.mem, "64M", 1u << 20, 0,
	 "pool memory per buffer size (the engine's mem_limit)"},
	{"runs", BU_UINT, &opt.runs, "5", 1, 1000, "runs of each measurement (median, min, max)"},
	{"json", BU_STR, &opt.json, "-",
	 0, 0, "JSON output file; - prints it on stdout after the table"},
};

static const struct bu_prog prog = {
	"bench-verify",
	"XXH3-64, XXH128 and MD5 (OpenSSL EVP) streaming throughput on the engine's\n"
	"buffer path (sstf__hasher_update over sstf__pool buffers) against memcpy\n"
	"between buffers of the same pool, and against copy+xxh3 and copy+md5 (what\n"
	"the engine does per buffer: one copy into the pool, then the hash).",
	" A table on stdout: bs, kind, GB/s (10^9 bytes/s; median, min, max over\n"
	" --runs), the ratio to memcpy, each run's ratio taken within the run, and\n"
	" ms/GiB (one core's time per GiB of files, at the median).\n"
	" Then JSON (see --json): {\"bench\", \"version\", \"params\", \"results\": [{\"bs\",\n"
	" \"kind\", \"buffers\", \"gbps\": {median,min,max,mean,n}, \"ratio_vs_memcpy\":\n"
	" {...}, \"runs_gbps\": [...]}]}",
};

static volatile uint64_t sink; /* keeps digests observable */

/* One pass of `total` bytes of kind k over pool p. Returns GB/s. */
static double measure(struct sstf__pool *p, enum kind k, uint64_t total)
{
	uint64_t nbuf = total / p->bs;
	uint32_t half = p->n / 2;
	struct sstf__hasher h;
	struct sstf__digest d;

	/* As the engine: the MD5 context is made once, outside the clock. */
	if (sstf__hasher_init(&h) < 0) {
		fprintf(stderr, "bench-verify: out of memory\n");
		exit(1);
	}
	enum sstf_digest_kind dk = k == K_XXH128                  ? SSTF_DIGEST_XXH128
	                           : k == K_MD5 || k == K_COPY_MD5 ? SSTF_DIGEST_MD5
	                                                           : SSTF_DIGEST_XXH3;
	if (sstf__hasher_reset(&h, dk) < 0) {
		fprintf(stderr, "bench-verify: OpenSSL offers no MD5 here\n");
		exit(1);
	}

	uint64_t t0 = bu_now_ns();
	for (uint64_t i = 0; i < nbuf; i++) {
		int idx = (int)(i % p->n);
		uint8_t *buf = sstf__pool_buf(p, idx);
		switch (k) {
		case K_MEMCPY:
			memcpy(sstf__pool_buf(p, (int)((i + half) % p->n)), buf, p->bs);
			break;
		case K_XXH3:
		case K_XXH128:
		case K_MD5:
			sstf__hasher_update(&h, buf, p->bs);
			break;
		case K_COPY_XXH3:
		case K_COPY_MD5: {
			uint8_t *dst = sstf__pool_buf(p, (int)((i + half) % p->n));
			memcpy(dst, buf, p->bs);
			sstf__hasher_update(&h, dst, p->bs);
			break;
		}
		case K_COUNT:
			break;
		}
	}
	sstf__hasher_final(&h, &d);
	uint64_t dt = bu_now_ns() - t0;
	sstf__hasher_fini(&h);
	uint64_t v;
	memcpy(&v, d.bytes, sizeof(v));
	sink ^= v;
	return (double)(nbuf * p->bs) / (double)(dt ? dt : 1);
}

int main(int argc, char **argv)
{
	bu_parse_args(&prog, opts, sizeof(opts) / sizeof(opts[0]), argc, argv);

	unsigned nbs = opt.bs.n;
	struct sstf_allocator alloc = {0};
	struct sstf__pool *pools = calloc(nbs, sizeof(*pools));
	size_t nres = (size_t)nbs * K_COUNT;
	double *gbps = calloc(nres * opt.runs, sizeof(double));
	double *ratio = calloc(nres * opt.runs, sizeof(double));
	if (!pools || !gbps || !ratio) {
		fprintf(stderr, "bench-verify: out of memory\n");
		return 1;
	}
	for (unsigned b = 0; b < nbs; b++) {
		uint64_t bs = opt.bs.v[b];
		uint64_t n = opt.mem / bs;
		if (n < 2)
			n = 2;
		if (opt.total < bs) {
			fprintf(stderr, "bench-verify: --total must be at least the buffer size\n");
			return 2;
		}
		int ret = sstf__pool_init(&pools[b], &alloc, bs, (uint32_t)n);
		if (ret < 0) {
			fprintf(stderr, "bench-verify: pool of %llu x %llu: %s\n",
			        (unsigned long long)n, (unsigned long long)bs, strerror(-ret));
			return 1;
		}
		bu_fill_random(pools[b].mem, bs * n, 42 + b);
	}

	int avx2 = 0;
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	avx2 = __builtin_cpu_supports("avx2") != 0;
#endif
	char tot[32];
	bu_fmt_size(tot, sizeof(tot), opt.total);
	fprintf(stderr, "bench-verify: %llu runs x %u sizes x %d kinds, %s each (avx2: %s)\n",
	        (unsigned long long)opt.runs, nbs, K_COUNT, tot, avx2 ? "yes" : "no");

	/* Warm-up pass: page faults and frequency ramp stay out of run 1. */
	for (unsigned b = 0; b < nbs; b++)
		measure(&pools[b], K_XXH3, (uint64_t)pools[b].n * pools[b].bs);

	for (uint64_t r = 0; r < opt.runs; r++) {
		for (unsigned b = 0; b < nbs; b++) {
			for (int k = 0; k < K_COUNT; k++) {
				size_t i = (size_t)b * K_COUNT + (size_t)k;
				gbps[i * opt.runs + r] = measure(&pools[b], (enum kind)k, opt.total);
			}
			for (int k = 0; k < K_COUNT; k++) {
				size_t i = (size_t)b * K_COUNT + (size_t)k;
				size_t m = (size_t)b * K_COUNT + K_MEMCPY;
				ratio[i * opt.runs + r] =
					gbps[i * opt.runs + r] / gbps[m * opt.runs + r];
			}
		}
	}

	static const char *const head[] = {"bs",       "kind",     "buffers",   "GB/s med",
	                                   "GB/s min", "GB/s max", "vs memcpy", "ms/GiB"};
	struct bu_table t;
	bu_table_init(&t, 8, head);
	json_t *results = json_array();
	for (unsigned b = 0; b < nbs; b++) {
		char bs[32];
		bu_fmt_size(bs, sizeof(bs), pools[b].bs);
		for (int k = 0; k < K_COUNT; k++) {
			size_t i = (size_t)b * K_COUNT + (size_t)k;
			struct bu_summary g, rs;
			bu_summarize(&gbps[i * opt.runs], opt.runs, &g);
			bu_summarize(&ratio[i * opt.runs], opt.runs, &rs);
			bu_table_cell(&t, "%s", bs);
			bu_table_cell(&t, "%s", kind_name[k]);
			bu_table_cell(&t, "%u", pools[b].n);
			bu_table_cell(&t, "%.2f", g.median);
			bu_table_cell(&t, "%.2f", g.min);
			bu_table_cell(&t, "%.2f", g.max);
			bu_table_cell(&t, "%.2f", rs.median);
			/* One core's time per GiB of files, at the median. */
			bu_table_cell(&t, "%.0f", 1073741824.0 / (g.median * 1e6));
			json_t *runs = json_array();
			for (uint64_t r = 0; r < opt.runs; r++)
				json_array_append_new(runs, json_real(gbps[i * opt.runs + r]));
			json_array_append_new(
				results,
				json_pack("{s:I, s:s, s:I, s:o, s:o, s:o}", "bs",
			                  (json_int_t)pools[b].bs, "kind", kind_name[k], "buffers",
			                  (json_int_t)pools[b].n, "gbps", bu_json_summary(&g),
			                  "ratio_vs_memcpy", bu_json_summary(&rs), "runs_gbps",
			                  runs));
		}
	}
	bu_table_print(&t, stdout);
	bu_table_free(&t);

	json_t *bsl = json_array();
	for (unsigned b = 0; b < nbs; b++)
		json_array_append_new(bsl, json_integer((json_int_t)opt.bs.v[b]));
	json_t *root = json_pack(
		"{s:s, s:s, s:{s:o, s:I, s:I, s:I, s:b}, s:o}", "bench", "bench-verify", "version",
		SSTF_VERSION_STRING, "params", "bs", bsl, "total_bytes", (json_int_t)opt.total,
		"mem_bytes", (json_int_t)opt.mem, "runs", (json_int_t)opt.runs, "cpu_avx2", avx2,
		"results", results);
	int ret = bu_json_emit(root, opt.json);
	json_decref(root);

	for (unsigned b = 0; b < nbs; b++)
		sstf__pool_fini(&pools[b], &alloc);
	free(pools);
	free(gbps);
	free(ratio);
	return ret < 0 ? 1 : 0;
}
