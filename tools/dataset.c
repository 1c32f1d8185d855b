/*
 * dataset.c - generate a seeded file set and its manifest (see dataset.h).
 *
 * Workers take files by number from an atomic counter. Each fills one 1 MiB
 * chunk at a time, feeds it to both XXH3-64 and XXH128 streaming states
 * (to an MD5 one for the Pegasus layout) while it is still in cache, and
 * writes it; memory stays at one chunk per worker whatever the file sizes.
 */
#include "dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/evp.h>

#if defined(__x86_64__) || defined(__i386__)
/* Routes the update calls to the variants that pick AVX2/SSE2 at run time. */
#include <xxh_x86dispatch.h>
#endif
#include <xxhash.h>

#include "options.h"
#include "util.h"

#define CHUNK ((size_t)1 << 20)
#define DIRECT_ALIGN 4096 /* O_DIRECT lengths and the buffer's address */
#define MAX_WORKERS 8

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15u);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
	return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

struct xoshiro {
	uint64_t s[4];
};

static inline uint64_t xoshiro_next(struct xoshiro *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

/* Fills len bytes (a multiple of 8, or the file's short tail) with the
 * generator's words in little-endian order, whatever the host's order. */
static void fill(struct xoshiro *r, unsigned char *buf, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = xoshiro_next(r);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
		v = __builtin_bswap64(v);
#endif
		memcpy(buf + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = xoshiro_next(r);
		for (size_t k = 0; i < len; i++, k++)
			buf[i] = (unsigned char)(v >> (8 * k));
	}
}

struct file_info {
	uint64_t size;
	char xxh3[17];   /* flat layout */
	char xxh128[33]; /* flat layout */
	char md5[33];    /* Pegasus layout */
};

struct gen {
	const struct dataset_params *p;
	int pegasus;    /* p->layout == DATASET_PEGASUS */
	uint64_t nfiles; /* every partition's files: nrfiles x partitions */
	struct file_info *files;
	atomic_uint_fast64_t next; /* next file index to take */
	atomic_int failed;
	pthread_mutex_t err_lock;
	char err[512];
};

static void gen_fail(struct gen *g, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void gen_fail(struct gen *g, const char *fmt, ...)
{
	va_list ap;
	pthread_mutex_lock(&g->err_lock);
	if (!g->err[0]) {
		va_start(ap, fmt);
		vsnprintf(g->err, sizeof(g->err), fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&g->err_lock);
	atomic_store(&g->failed, 1);
}

static void hex(const unsigned char *b, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[b[i] >> 4];
		out[2 * i + 1] = digits[b[i] & 15];
	}
	out[2 * n] = '\0';
}

/* Writes file number i + 1 (for the Pegasus layout, file i % nrfiles + 1
 * of partition i / nrfiles). Returns 0, or -1 after gen_fail(). */
static int write_file(struct gen *g, uint64_t i, unsigned char *buf,
                      XXH3_state_t *h64, XXH3_state_t *h128, EVP_MD_CTX *md5)
{
	char path[PATH_MAX];
	struct file_info *fi = &g->files[i];
	int plen = g->pegasus
		? snprintf(path, sizeof(path), "%s/%" PRIu64 "/%" PRIu64 ".sst",
		           g->p->dir, i / g->p->nrfiles, i % g->p->nrfiles + 1)
		: snprintf(path, sizeof(path), "%s/%06" PRIu64 ".sst", g->p->dir,
		           i + 1);
	if (plen >= (int)sizeof(path)) {
		gen_fail(g, "%s: path too long", g->p->dir);
		return -1;
	}

	/* Seeded from (seed, file number) alone, so a file's bytes do not
	 * depend on which worker wrote it or in what order. */
	uint64_t x = g->p->seed ^ ((i + 1) * 0xd1b54a32d192ed03u);
	struct xoshiro r;
	for (int k = 0; k < 4; k++)
		r.s[k] = splitmix64(&x);
	if (g->pegasus && !EVP_DigestInit_ex(md5, EVP_md5(), NULL)) {
		gen_fail(g, "MD5: OpenSSL offers no MD5 here (a FIPS-only "
		            "configuration?)");
		return -1;
	}
	XXH3_64bits_reset(h64);
	XXH3_128bits_reset(h128);

	/* O_DIRECT where the filesystem takes it (not tmpfs): several times
	 * faster than the page cache here, and it leaves no gigabytes of
	 * dirty pages to be written back in the middle of the benchmark that
	 * follows. */
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	int fd = open(path, flags | O_DIRECT, 0644);
	if (fd < 0 && errno == EINVAL)
		fd = open(path, flags, 0644);
	if (fd < 0) {
		gen_fail(g, "%s: %s", path, strerror(errno));
		return -1;
	}
	for (uint64_t left = fi->size; left && !atomic_load(&g->failed);) {
		size_t n = left < CHUNK ? (size_t)left : CHUNK;
		fill(&r, buf, n);
		if (g->pegasus) {
			if (!EVP_DigestUpdate(md5, buf, n)) {
				gen_fail(g, "%s: MD5 failed in OpenSSL", path);
				close(fd);
				return -1;
			}
		} else {
			XXH3_64bits_update(h64, buf, n);
			XXH3_128bits_update(h128, buf, n);
		}
		/* Only the tail can be unaligned; it goes through the cache. */
		if (n % DIRECT_ALIGN) {
			int fl = fcntl(fd, F_GETFL);
			if (fl >= 0 && (fl & O_DIRECT))
				fcntl(fd, F_SETFL, fl & ~O_DIRECT);
		}
		for (size_t off = 0; off < n;) {
			ssize_t w = write(fd, buf + off, n - off);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				gen_fail(g, "%s: write: %s", path,
				         w < 0 ? strerror(errno) : "no progress");
				close(fd);
				return -1;
			}
			off += (size_t)w;
		}
		left -= n;
	}
	if (close(fd) != 0) {
		gen_fail(g, "%s: close: %s", path, strerror(errno));
		return -1;
	}

	if (g->pegasus) {
		unsigned char d[EVP_MAX_MD_SIZE];
		unsigned dlen = 0;
		if (!EVP_DigestFinal_ex(md5, d, &dlen) || dlen != 16) {
			gen_fail(g, "%s: MD5 failed in OpenSSL", path);
			return -1;
		}
		hex(d, dlen, fi->md5); /* as md5sum prints it */
		return 0;
	}
	/* Canonical forms are big-endian, as xxhsum prints them. */
	XXH64_canonical_t c64;
	XXH128_canonical_t c128;
	XXH64_canonicalFromHash(&c64, XXH3_64bits_digest(h64));
	XXH128_canonicalFromHash(&c128, XXH3_128bits_digest(h128));
	hex(c64.digest, sizeof(c64.digest), fi->xxh3);
	hex(c128.digest, sizeof(c128.digest), fi->xxh128);
	return 0;
}

static void *worker(void *arg)
{
	struct gen *g = arg;
	unsigned char *buf = NULL;
	XXH3_state_t *h64 = XXH3_createState(), *h128 = XXH3_createState();
	EVP_MD_CTX *md5 = g->pegasus ? EVP_MD_CTX_new() : NULL;

	if (posix_memalign((void **)&buf, DIRECT_ALIGN, CHUNK) != 0 || !h64 ||
	    !h128 || (g->pegasus && !md5)) {
		gen_fail(g, "out of memory");
	} else {
		while (!atomic_load(&g->failed)) {
			uint64_t i = atomic_fetch_add(&g->next, 1);
			if (i >= g->nfiles || write_file(g, i, buf, h64, h128, md5))
				break;
		}
	}
	EVP_MD_CTX_free(md5);
	free(buf);
	XXH3_freeState(h64);
	XXH3_freeState(h128);
	return NULL;
}

static int write_manifest(const struct gen *g, uint64_t total, char *err,
                          size_t errlen)
{
	const struct dataset_params *p = g->p;
	char path[PATH_MAX], tmp[PATH_MAX];
	json_t *root = json_object(), *files = json_array(), *gen = json_object();
	int rc = -1;

	snprintf(path, sizeof(path), "%s/manifest.json", p->dir);
	snprintf(tmp, sizeof(tmp), "%s/.manifest.json.tmp", p->dir);
	if (!root || !files || !gen)
		goto oom;
	for (uint64_t i = 0; i < p->nrfiles; i++) {
		char name[32];
		snprintf(name, sizeof(name), "%06" PRIu64 ".sst", i + 1);
		json_t *e = json_pack("{s:s, s:I, s:s, s:s}", "name", name, "size",
		                      (json_int_t)g->files[i].size, "xxh3",
		                      g->files[i].xxh3, "xxh128", g->files[i].xxh128);
		if (!e || json_array_append_new(files, e))
			goto oom;
	}
	if (json_object_set_new(root, "files", files))
		goto oom;
	files = NULL;
	json_object_set_new(root, "file_total_size", json_integer((json_int_t)total));
	json_object_set_new(gen, "tool", json_string(PROG));
	json_object_set_new(gen, "seed", json_integer((json_int_t)p->seed));
	json_object_set_new(gen, "nrfiles", json_integer((json_int_t)p->nrfiles));
	json_object_set_new(gen, "min_size", json_integer((json_int_t)p->min_size));
	json_object_set_new(gen, "max_size", json_integer((json_int_t)p->max_size));
	json_object_set_new(root, "generator", gen);
	gen = NULL;

	/* Indented, so that people can read and diff it. */
	if (json_dump_file(root, tmp, JSON_INDENT(1) | JSON_PRESERVE_ORDER) != 0) {
		snprintf(err, errlen, "%.300s: cannot write", tmp);
		goto out;
	}
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "%.300s: rename: %s", path, strerror(errno));
		unlink(tmp);
		goto out;
	}
	rc = 0;
	goto out;
oom:
	snprintf(err, errlen, "out of memory");
out:
	json_decref(root);
	json_decref(files);
	json_decref(gen);
	return rc;
}

/* Writes root to path through a temporary in the same directory, renamed
 * into place. Returns 0, or -1 with the reason in err. */
static int dump_atomic(json_t *root, const char *dir, const char *name,
                       size_t flags, char *err, size_t errlen)
{
	char path[PATH_MAX], tmp[PATH_MAX];
	if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path) ||
	    snprintf(tmp, sizeof(tmp), "%s/.%s.tmp", dir, name) >= (int)sizeof(tmp)) {
		snprintf(err, errlen, "%.300s: path too long", dir);
		return -1;
	}
	if (json_dump_file(root, tmp, flags) != 0) {
		snprintf(err, errlen, "%.300s: cannot write", tmp);
		unlink(tmp);
		return -1;
	}
	if (rename(tmp, path) != 0) {
		snprintf(err, errlen, "%.300s: rename: %s", path, strerror(errno));
		unlink(tmp);
		return -1;
	}
	return 0;
}

/*
 * The Pegasus layout's documents, in the shape Pegasus 2.4 writes and
 * reads them (compact, keys in its order): each partition's
 * bulk_load_metadata, then bulk_load_info last, so that it never describes
 * a partition whose files and metadata are not all there.
 */
static int write_pegasus(const struct gen *g, const char *app_name, char *err,
                         size_t errlen)
{
	const struct dataset_params *p = g->p;
	const size_t flags = JSON_COMPACT | JSON_PRESERVE_ORDER;
	char dir[PATH_MAX];

	for (uint64_t part = 0; part < p->partition_count; part++) {
		json_t *root = json_object(), *files = json_array();
		uint64_t total = 0;
		int bad = !root || !files;
		for (uint64_t k = 0; k < p->nrfiles && !bad; k++) {
			const struct file_info *fi = &g->files[part * p->nrfiles + k];
			char name[32];
			snprintf(name, sizeof(name), "%" PRIu64 ".sst", k + 1);
			json_t *e = json_pack("{s:s, s:I, s:s}", "name", name, "size",
			                      (json_int_t)fi->size, "md5", fi->md5);
			bad = !e || json_array_append_new(files, e);
			total += fi->size;
		}
		if (!bad) {
			bad = json_object_set(root, "files", files) ||
			      json_object_set_new(root, "file_total_size",
			                          json_integer((json_int_t)total));
		}
		json_decref(files);
		if (bad) {
			json_decref(root);
			snprintf(err, errlen, "out of memory");
			return -1;
		}
		snprintf(dir, sizeof(dir), "%s/%" PRIu64, p->dir, part);
		int rc = dump_atomic(root, dir, "bulk_load_metadata", flags, err, errlen);
		json_decref(root);
		if (rc)
			return -1;
	}
	json_t *info = json_pack("{s:I, s:s, s:I}", "app_id", (json_int_t)1,
	                         "app_name", app_name, "partition_count",
	                         (json_int_t)p->partition_count);
	if (!info) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	int rc = dump_atomic(info, p->dir, "bulk_load_info", flags, err, errlen);
	json_decref(info);
	return rc;
}

/* The last component of dir, trailing slashes dropped: the Pegasus app's
 * name. */
static void app_name_of(const char *dir, char *out, size_t len)
{
	size_t n = strlen(dir);
	while (n > 1 && dir[n - 1] == '/')
		n--;
	size_t b = n;
	while (b > 0 && dir[b - 1] != '/')
		b--;
	snprintf(out, len, "%.*s", (int)(n - b), dir + b);
}

int dataset_generate(const struct dataset_params *p)
{
	struct gen g;
	struct timespec t0, t1;
	uint64_t total = 0;

	memset(&g, 0, sizeof(g));
	g.p = p;
	g.pegasus = p->layout == DATASET_PEGASUS;
	g.nfiles = p->nrfiles;
	if (g.pegasus) {
		/* The option table bounds both; their product may still be
		 * more than a generator should take. */
		if (p->partition_count > DATASET_MAX_FILES / p->nrfiles) {
			fprintf(stderr, PROG ": --gen-dataset: %" PRIu64 " partitions of %"
			        PRIu64 " files is more than %" PRIu64 " files\n",
			        p->partition_count, p->nrfiles, DATASET_MAX_FILES);
			return EXIT_FAILED;
		}
		g.nfiles = p->nrfiles * p->partition_count;
	}
	pthread_mutex_init(&g.err_lock, NULL);
	char failed[PATH_MAX];
	int rc = mkdir_p(p->dir, failed, sizeof(failed));
	for (uint64_t part = 0; g.pegasus && !rc && part < p->partition_count; part++) {
		char dir[PATH_MAX];
		snprintf(dir, sizeof(dir), "%s/%" PRIu64, p->dir, part);
		rc = mkdir_p(dir, failed, sizeof(failed));
	}
	if (rc) {
		fprintf(stderr, PROG ": --gen-dataset: cannot create '%s': %s\n",
		        failed, strerror(-rc));
		pthread_mutex_destroy(&g.err_lock);
		return EXIT_FAILED;
	}
	g.files = calloc((size_t)g.nfiles, sizeof(*g.files));
	if (!g.files) {
		fprintf(stderr, PROG ": out of memory\n");
		pthread_mutex_destroy(&g.err_lock);
		return EXIT_FAILED;
	}

	/* Sizes come from their own stream, drawn in file order before any
	 * worker starts: the thread count cannot change them. */
	uint64_t x = p->seed;
	uint64_t span = p->max_size - p->min_size;
	for (uint64_t i = 0; i < g.nfiles; i++) {
		uint64_t r = splitmix64(&x);
		g.files[i].size = p->min_size +
		                  (span == UINT64_MAX ? r : r % (span + 1));
		total += g.files[i].size;
	}

	clock_gettime(CLOCK_MONOTONIC, &t0);
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	size_t nworkers = ncpu > 0 ? (size_t)ncpu : 1;
	if (nworkers > MAX_WORKERS)
		nworkers = MAX_WORKERS;
	if (nworkers > g.nfiles)
		nworkers = (size_t)g.nfiles;
	pthread_t threads[MAX_WORKERS];
	size_t started = 0;
	for (; started < nworkers; started++) {
		if (pthread_create(&threads[started], NULL, worker, &g) != 0)
			break;
	}
	if (started == 0)
		worker(&g); /* no thread could start: do it here */
	for (size_t i = 0; i < started; i++)
		pthread_join(threads[i], NULL);

	char err[512] = "", app[256];
	app_name_of(p->dir, app, sizeof(app));
	if (!atomic_load(&g.failed) &&
	    (g.pegasus ? write_pegasus(&g, app, err, sizeof(err))
	               : write_manifest(&g, total, err, sizeof(err))))
		gen_fail(&g, "%s", err);
	clock_gettime(CLOCK_MONOTONIC, &t1);

	int status = EXIT_OK;
	if (atomic_load(&g.failed)) {
		fprintf(stderr, PROG ": --gen-dataset: %s\n", g.err);
		status = EXIT_FAILED;
	} else if (g.pegasus) {
		double s = (double)(t1.tv_sec - t0.tv_sec) +
		           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		printf("%s: wrote %" PRIu64 " partitions of %" PRIu64 " files (PIDX/1.sst "
		       "to PIDX/%" PRIu64 ".sst), %" PRIu64 " bytes (%.1f MiB), to %s in "
		       "%.3f s (%.0f MB/s), seed %" PRIu64 "\n",
		       PROG, p->partition_count, p->nrfiles, p->nrfiles, total,
		       (double)total / 1048576.0, p->dir, s,
		       s > 0 ? (double)total / 1e6 / s : 0.0, p->seed);
		printf("%s: wrote %s/bulk_load_info (app_id 1, app_name \"%s\", "
		       "partition_count %" PRIu64 ") and each partition's "
		       "bulk_load_metadata (entries with md5, file_total_size)\n",
		       PROG, p->dir, app, p->partition_count);
		fflush(stdout);
	} else {
		double s = (double)(t1.tv_sec - t0.tv_sec) +
		           (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
		printf("%s: wrote %" PRIu64 " files (000001.sst to %06" PRIu64
		       ".sst), %" PRIu64 " bytes (%.1f MiB), to %s in %.3f s (%.0f MB/s), "
		       "seed %" PRIu64 "\n",
		       PROG, p->nrfiles, p->nrfiles, total, (double)total / 1048576.0,
		       p->dir, s, s > 0 ? (double)total / 1e6 / s : 0.0, p->seed);
		printf("%s: wrote %s/manifest.json (%" PRIu64
		       " entries with xxh3 and xxh128, file_total_size %" PRIu64 ")\n",
		       PROG, p->dir, p->nrfiles, total);
		fflush(stdout);
	}
	free(g.files);
	pthread_mutex_destroy(&g.err_lock);
	return status;
}
