/*
 * dataset.h - test data on disk: temp dirs of pseudo-random files, their
 * digests, batches built from them, and checks of what a fetch left behind.
 *
 * Every function returns 0 or a negative errno and never exits the process,
 * so tests decide with cr_assert what a failure means.
 */
#ifndef SSTF_TEST_DATASET_H
#define SSTF_TEST_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "sstfetch.h"

/* One file of a dataset. */
struct ds_file {
	char *name;      /* relative path under the dataset dir */
	char *path;      /* absolute path */
	uint64_t size;
	uint64_t seed;   /* PRNG seed of its content */
	char xxh3[33];   /* as sstf_digest_hex(SSTF_DIGEST_XXH3) */
	char xxh128[33]; /* as sstf_digest_hex(SSTF_DIGEST_XXH128) */
};

struct dataset {
	char *dir;       /* absolute path of the dataset's temp dir */
	size_t n;
	struct ds_file *files;
};

/* Picks each file's digest kind in ds_batch_new(): NONE, XXH3, XXH128 in turn. */
#define DS_DIGEST_MIXED (-1)

/*
 * Makes a fresh temp dir "$TMPDIR/sstf-TAG-XXXXXX" (TMPDIR defaults to /tmp)
 * and returns its malloc'd absolute path in *out. Returns 0 or -errno.
 */
int ds_mkdtemp(const char *tag, char **out);

/*
 * Creates a dataset of n files in a fresh temp dir. names[i] may be NULL (or
 * names itself NULL) for the default name "%06zu.sst". Subdirectories in
 * names are created. File i gets sizes[i] bytes of xoshiro256** output
 * seeded with seed and i. Returns 0 or -errno; on error nothing is left.
 */
int ds_create(struct dataset *ds, const char *tag, size_t n,
              const char *const *names, const uint64_t *sizes, uint64_t seed);

/* Removes the dataset's tree and frees it. Safe on a zeroed struct. */
void ds_destroy(struct dataset *ds);

/* Fills path (created or truncated, mode 0644) with len PRNG bytes of seed. */
int ds_write_random(const char *path, uint64_t len, uint64_t seed);

/* Writes len bytes of data to path (created or truncated). */
int ds_write_file(const char *path, const void *data, size_t len);

/*
 * A batch's file array in memory owned by the caller: the array and every
 * string are separate heap blocks, as a caller such as Pegasus has them.
 * URLs are base_url + "/" + name (base_url "http://127.0.0.1:P" or
 * "file:///abs/dir"). kind is an sstf_digest_kind or DS_DIGEST_MIXED.
 * Returns NULL when out of memory.
 */
struct sstf_file *ds_batch_new(const struct dataset *ds, const char *base_url,
                               int kind);

/*
 * Frees what ds_batch_new() returned (or a like array whose strings are all
 * heap blocks). With poison set every byte of the strings and the array is
 * overwritten with 0xA5 first, so a reader that kept a pointer reads garbage.
 */
void ds_batch_free(struct sstf_file *files, size_t n, int poison);

/* Replaces a heap string of a batch entry with a strdup of s. */
int ds_set_str(const char **field, const char *s);

/* 1 when both files exist and hold the same bytes, 0 when they differ, or -errno. */
int ds_files_equal(const char *a, const char *b);

/*
 * Compares a destination dir with the dataset entries listed in `which`
 * (indexes into ds->files; NULL with nwhich == ds->n means all): every listed
 * file must exist under dest with identical bytes, and dest must hold no
 * other regular file or symlink (directories leading to listed files are
 * allowed). Returns 0, or -1 with the first difference described in why.
 */
int ds_check_dest(const struct dataset *ds, const char *dest,
                  const size_t *which, size_t nwhich, char *why, size_t whylen);

/*
 * Counts entries anywhere under dir whose base name looks like an engine
 * temporary: it starts with ".sstf" or contains ".sstf-". Returns the count
 * (>= 0) or -errno. The first one found is named in first (if given).
 */
int ds_count_temps(const char *dir, char *first, size_t firstlen);

/* 1 if path exists (lstat), 0 if not. */
int ds_exists(const char *path);

/* Removes a tree (files, symlinks, dirs). Missing path is success. */
int ds_rmtree(const char *path);

/* Removes everything inside dir but keeps dir itself. */
int ds_empty_dir(const char *dir);

/* mkdir -p, mode 0755. */
int ds_mkdirs(const char *path);

/* malloc'd printf. Returns NULL when out of memory. */
char *ds_strfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
