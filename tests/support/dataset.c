/*
 * dataset.c - temp dirs of pseudo-random files for the tests.
 */
#include "dataset.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define IOBUF (1u << 20)

/* ------------------------------------------------------------------------ */
/* PRNG: splitmix64 seeds xoshiro256**.                                     */

struct prng {
	uint64_t s[4];
};

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

static void prng_seed(struct prng *p, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		p->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

static uint64_t prng_next(struct prng *p)
{
	uint64_t *s = p->s;
	uint64_t r = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return r;
}

static void prng_fill(struct prng *p, unsigned char *buf, size_t len)
{
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		uint64_t v = prng_next(p);
		memcpy(buf + i, &v, 8);
	}
	if (i < len) {
		uint64_t v = prng_next(p);
		memcpy(buf + i, &v, len - i);
	}
}

/* ------------------------------------------------------------------------ */
/* Small helpers                                                            */

char *ds_strfmt(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *s = NULL;
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	return n < 0 ? NULL : s;
}

int ds_exists(const char *path)
{
	struct stat st;
	return lstat(path, &st) == 0;
}

int ds_mkdirs(const char *path)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return -ENAMETOOLONG;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0755) != 0 && errno != EEXIST)
			return -errno;
		*p = '/';
	}
	if (mkdir(buf, 0755) != 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int ds_mkdtemp(const char *tag, char **out)
{
	const char *tmp = getenv("TMPDIR");
	if (!tmp || !*tmp)
		tmp = "/tmp";
	char *tpl = ds_strfmt("%s/sstf-%s-XXXXXX", tmp, tag);
	if (!tpl)
		return -ENOMEM;
	if (!mkdtemp(tpl)) {
		int err = -errno;
		free(tpl);
		return err;
	}
	*out = tpl;
	return 0;
}

static int write_all(int fd, const void *data, size_t len)
{
	const char *p = data;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int ds_write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	int err = write_all(fd, data, len);
	if (close(fd) != 0 && !err)
		err = -errno;
	return err;
}

/* Writes the file and computes both digests of its content. */
static int write_random_digests(const char *path, uint64_t len, uint64_t seed,
                                char xxh3[33], char xxh128[33])
{
	/* The digests are computed over the whole content in one call, which is
	 * what sstf_digest_hex offers; the sizes the tests use fit in memory. */
	unsigned char *buf = malloc(len ? (size_t)len : 1);
	if (!buf)
		return -ENOMEM;
	struct prng p;
	prng_seed(&p, seed);
	prng_fill(&p, buf, (size_t)len);
	int err = ds_write_file(path, buf, (size_t)len);
	if (!err && xxh3 && sstf_digest_hex(SSTF_DIGEST_XXH3, buf, (size_t)len, xxh3) != 16)
		err = -EIO;
	if (!err && xxh128 && sstf_digest_hex(SSTF_DIGEST_XXH128, buf, (size_t)len, xxh128) != 32)
		err = -EIO;
	free(buf);
	return err;
}

int ds_write_random(const char *path, uint64_t len, uint64_t seed)
{
	return write_random_digests(path, len, seed, NULL, NULL);
}

/* ------------------------------------------------------------------------ */
/* Datasets                                                                 */

static int parent_mkdirs(const char *path)
{
	char *dup = strdup(path);
	if (!dup)
		return -ENOMEM;
	char *slash = strrchr(dup, '/');
	int err = 0;
	if (slash && slash != dup) {
		*slash = '\0';
		err = ds_mkdirs(dup);
	}
	free(dup);
	return err;
}

int ds_create(struct dataset *ds, const char *tag, size_t n,
              const char *const *names, const uint64_t *sizes, uint64_t seed)
{
	memset(ds, 0, sizeof(*ds));
	int err = ds_mkdtemp(tag, &ds->dir);
	if (err)
		return err;
	ds->files = calloc(n ? n : 1, sizeof(*ds->files));
	if (!ds->files) {
		err = -ENOMEM;
		goto fail;
	}
	ds->n = n;
	for (size_t i = 0; i < n; i++) {
		struct ds_file *f = &ds->files[i];
		if (names && names[i])
			f->name = strdup(names[i]);
		else
			f->name = ds_strfmt("%06zu.sst", i);
		f->path = f->name ? ds_strfmt("%s/%s", ds->dir, f->name) : NULL;
		if (!f->path) {
			err = -ENOMEM;
			goto fail;
		}
		f->size = sizes[i];
		f->seed = seed * 0x100000001b3ull + i + 1;
		err = parent_mkdirs(f->path);
		if (!err)
			err = write_random_digests(f->path, f->size, f->seed, f->xxh3, f->xxh128);
		if (err)
			goto fail;
	}
	return 0;
fail:
	ds_destroy(ds);
	return err;
}

void ds_destroy(struct dataset *ds)
{
	if (ds->dir)
		ds_rmtree(ds->dir);
	for (size_t i = 0; ds->files && i < ds->n; i++) {
		free(ds->files[i].name);
		free(ds->files[i].path);
	}
	free(ds->files);
	free(ds->dir);
	memset(ds, 0, sizeof(*ds));
}

/* ------------------------------------------------------------------------ */
/* Batches                                                                  */

int ds_set_str(const char **field, const char *s)
{
	char *dup = strdup(s);
	if (!dup)
		return -ENOMEM;
	free((char *)*field);
	*field = dup;
	return 0;
}

struct sstf_file *ds_batch_new(const struct dataset *ds, const char *base_url,
                               int kind)
{
	struct sstf_file *files = calloc(ds->n ? ds->n : 1, sizeof(*files));
	if (!files)
		return NULL;
	for (size_t i = 0; i < ds->n; i++) {
		const struct ds_file *f = &ds->files[i];
		struct sstf_file *e = &files[i];
		int k = kind == DS_DIGEST_MIXED ? (int)(i % 3) : kind;
		e->digest_kind = (enum sstf_digest_kind)k;
		e->size = f->size;
		e->name = strdup(f->name);
		e->url = ds_strfmt("%s/%s", base_url, f->name);
		e->digest_hex = strdup(k == SSTF_DIGEST_XXH128 ? f->xxh128
		                       : k == SSTF_DIGEST_XXH3 ? f->xxh3 : "");
		if (!e->name || !e->url || !e->digest_hex) {
			ds_batch_free(files, i + 1, 0);
			return NULL;
		}
	}
	return files;
}

static void poison_free(const char *s, int poison)
{
	if (!s)
		return;
	if (poison)
		memset((char *)s, 0xA5, strlen(s) + 1);
	free((char *)s);
}

void ds_batch_free(struct sstf_file *files, size_t n, int poison)
{
	if (!files)
		return;
	for (size_t i = 0; i < n; i++) {
		poison_free(files[i].name, poison);
		poison_free(files[i].url, poison);
		poison_free(files[i].digest_hex, poison);
	}
	if (poison)
		memset(files, 0xA5, (n ? n : 1) * sizeof(*files));
	free(files);
}

/* ------------------------------------------------------------------------ */
/* Comparing and walking trees                                              */

/* Reads up to len bytes, fewer only at end of file. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, (char *)buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (n == 0)
			break;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

int ds_files_equal(const char *a, const char *b)
{
	int fa = open(a, O_RDONLY | O_CLOEXEC);
	if (fa < 0)
		return -errno;
	int fb = open(b, O_RDONLY | O_CLOEXEC);
	if (fb < 0) {
		int err = -errno;
		close(fa);
		return err;
	}
	unsigned char *ba = NULL, *bb = NULL;
	int ret;
	struct stat sa, sb;
	if (fstat(fa, &sa) != 0 || fstat(fb, &sb) != 0) {
		ret = -errno;
		goto out;
	}
	if (!S_ISREG(sa.st_mode) || !S_ISREG(sb.st_mode) || sa.st_size != sb.st_size) {
		ret = 0;
		goto out;
	}
	/* Buffers no larger than the file, plus a byte to see its end: a
	 * 1 MiB allocation per call costs the sanitizers' allocators an
	 * mmap and a munmap, and a check of 100,000 small files makes
	 * 200,000 of them. */
	size_t chunk = (uint64_t)sa.st_size < IOBUF ? (size_t)sa.st_size + 1 : IOBUF;
	ba = malloc(chunk);
	bb = malloc(chunk);
	ret = -ENOMEM;
	if (!ba || !bb)
		goto out;
	for (;;) {
		ssize_t na = read_full(fa, ba, chunk);
		ssize_t nb = read_full(fb, bb, chunk);
		if (na < 0 || nb < 0) {
			ret = (int)(na < 0 ? na : nb);
			goto out;
		}
		if (na != nb || memcmp(ba, bb, (size_t)na) != 0) {
			ret = 0;
			goto out;
		}
		if (na < (ssize_t)chunk) {
			ret = 1;
			goto out;
		}
	}
out:
	free(ba);
	free(bb);
	close(fa);
	close(fb);
	return ret;
}

typedef int (*walk_fn)(void *ctx, const char *rel, const char *base,
                       const struct stat *st);

/* Calls fn for every entry under root/rel, children before their dir. */
static int walk(const char *root, const char *rel, walk_fn fn, void *ctx)
{
	char *path = *rel ? ds_strfmt("%s/%s", root, rel) : strdup(root);
	if (!path)
		return -ENOMEM;
	DIR *d = opendir(path);
	free(path);
	if (!d)
		return -errno;
	int err = 0;
	struct dirent *de;
	while (!err && (de = readdir(d)) != NULL) {
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *sub = *rel ? ds_strfmt("%s/%s", rel, de->d_name) : strdup(de->d_name);
		char *full = sub ? ds_strfmt("%s/%s", root, sub) : NULL;
		struct stat st;
		if (!full)
			err = -ENOMEM;
		else if (lstat(full, &st) != 0)
			err = errno == ENOENT ? 0 : -errno;
		else if (S_ISDIR(st.st_mode) && (err = walk(root, sub, fn, ctx)) != 0)
			;
		else
			err = fn(ctx, sub, de->d_name, &st);
		free(sub);
		free(full);
	}
	closedir(d);
	return err;
}

struct check_ctx {
	const char **sorted; /* the listed names, in strcmp order */
	size_t nwhich;
	char *why;
	size_t whylen;
};

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Is rel a listed file or (as_dir) a directory leading to one? A binary
 * search, so that a dest of 100,000 files is checked in O(n log n): the
 * names under "rel/" follow each other in strcmp order, the first of them
 * at the first name not below "rel/".
 */
static int listed(const struct check_ctx *c, const char *rel, int as_dir)
{
	char key[PATH_MAX + 2];
	int len = snprintf(key, sizeof(key), "%s%s", rel, as_dir ? "/" : "");
	if (len < 0 || (size_t)len >= sizeof(key))
		return 0;
	size_t lo = 0, hi = c->nwhich;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(c->sorted[mid], key) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	if (lo == c->nwhich)
		return 0;
	return as_dir ? !strncmp(c->sorted[lo], key, (size_t)len) : !strcmp(c->sorted[lo], key);
}

static int check_entry(void *ctx, const char *rel, const char *base,
                       const struct stat *st)
{
	struct check_ctx *c = ctx;
	int as_dir = S_ISDIR(st->st_mode);
	if (as_dir ? listed(c, rel, 1) : (S_ISREG(st->st_mode) && listed(c, rel, 0)))
		return 0;
	snprintf(c->why, c->whylen, "unexpected %s in dest: '%s'",
	         as_dir ? "directory" : "entry", rel);
	return -1;
}

int ds_check_dest(const struct dataset *ds, const char *dest,
                  const size_t *which, size_t nwhich, char *why, size_t whylen)
{
	struct check_ctx c = { calloc(nwhich ? nwhich : 1, sizeof(char *)), nwhich, why, whylen };
	if (!c.sorted) {
		snprintf(why, whylen, "out of memory");
		return -1;
	}
	for (size_t k = 0; k < nwhich; k++)
		c.sorted[k] = ds->files[which ? which[k] : k].name;
	qsort(c.sorted, nwhich, sizeof(*c.sorted), cmp_name);
	int err = walk(dest, "", check_entry, &c);
	free(c.sorted);
	if (err == -1)
		return -1;
	if (err) {
		snprintf(why, whylen, "cannot walk %s: %s", dest, strerror(-err));
		return -1;
	}
	for (size_t k = 0; k < nwhich; k++) {
		const struct ds_file *f = &ds->files[which ? which[k] : k];
		char *got = ds_strfmt("%s/%s", dest, f->name);
		int eq = got ? ds_files_equal(f->path, got) : -ENOMEM;
		free(got);
		if (eq != 1) {
			snprintf(why, whylen, "file '%s' %s", f->name,
			         eq == 0 ? "differs from the origin's"
			         : eq == -ENOENT ? "is missing" : strerror(-eq));
			return -1;
		}
	}
	return 0;
}

struct temps_ctx {
	int count;
	char *first;
	size_t firstlen;
};

static int count_temp(void *ctx, const char *rel, const char *base,
                      const struct stat *st)
{
	struct temps_ctx *c = ctx;
	if (!strncmp(base, ".sstf", 5) || strstr(base, ".sstf-")) {
		if (c->count++ == 0 && c->first)
			snprintf(c->first, c->firstlen, "%s", rel);
	}
	return 0;
}

int ds_count_temps(const char *dir, char *first, size_t firstlen)
{
	struct temps_ctx c = { 0, first, firstlen };
	if (first && firstlen)
		first[0] = '\0';
	int err = walk(dir, "", count_temp, &c);
	return err ? err : c.count;
}

static int remove_entry(void *ctx, const char *rel, const char *base,
                        const struct stat *st)
{
	const char *root = ctx;
	char *full = ds_strfmt("%s/%s", root, rel);
	if (!full)
		return -ENOMEM;
	int r = S_ISDIR(st->st_mode) ? rmdir(full) : unlink(full);
	int err = r != 0 && errno != ENOENT ? -errno : 0;
	free(full);
	return err;
}

int ds_empty_dir(const char *dir)
{
	int err = walk(dir, "", remove_entry, (void *)dir);
	return err == -ENOENT ? 0 : err;
}

int ds_rmtree(const char *path)
{
	struct stat st;
	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISDIR(st.st_mode))
		return unlink(path) == 0 ? 0 : -errno;
	int err = ds_empty_dir(path);
	if (!err && rmdir(path) != 0 && errno != ENOENT)
		err = -errno;
	return err;
}
