/*
 * manifest.h - JSON manifests: the list of files a fetch should produce.
 *
 * Format:
 *
 *   {"files": [{"name": "000001.sst", "size": 33554432,
 *               "xxh3": "<16 hex>"}, ...],
 *    "file_total_size": 33554432}
 *
 * Per file: "name" (string) and "size" (non-negative integer) are required.
 * Digests: "xxh3" (16 hex digits, as `xxhsum -H3` prints), "xxh128" (32
 * hex digits, as `xxhsum -H2` prints) and "md5" (32 hex digits, as `md5sum`
 * prints); each one present must be well formed, and which one is checked
 * is the verify mode's choice (enum manifest_verify). An Apache Pegasus
 * bulk_load_metadata is such a manifest as it stands:
 *
 *   {"files": [{"name": "1.sst", "size": 1024, "md5": "<32 hex>"}, ...],
 *    "file_total_size": 1024}
 *
 * is verified by MD5 with the default verify mode, and refused when its
 * file_total_size is not the sum of its sizes. An optional "url" replaces the batch's base URL + "/" +
 * name for that file; or, instead of "url", "urls": an array of 1 to
 * SSTF_MAX_MIRRORS URL strings of the same content, in order of preference
 * (mirrors: see sstf_file.urls). An entry with both is an error, as is an
 * empty "urls", one with more than SSTF_MAX_MIRRORS or one holding
 * anything but strings. "file_total_size", when present, must equal the sum
 * of the sizes; it may come before or after "files". Top-level keys may come
 * in any order. Unknown keys are ignored, so manifests may carry more than
 * we read; duplicate keys within one object are an error, since which one
 * wins would be a guess.
 *
 * The manifest is read as a stream, never as a whole document: the loader
 * keeps a window of the file (MANIFEST_BUF_SIZE) and decodes one top-level
 * value, or one entry of "files", at a time. Hence two limits: one entry of
 * "files" (its JSON text) is at most MANIFEST_ENTRY_MAX bytes, and a key or
 * any other top-level value at most MANIFEST_VALUE_MAX. What a loaded
 * manifest keeps per entry is its struct sstf_file, its name, its chosen
 * digest and its own "url" or "urls" if it has them, nothing else.
 *
 * The entries' names, URLs and sizes are not judged here: the engine's
 * sstf_check_batch() does that, and the caller runs it on the loaded files
 * (see manifest_parse()).
 */
#ifndef SSTFETCH_TOOLS_MANIFEST_H
#define SSTFETCH_TOOLS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "sstfetch.h"

/* The loader's limits; see the top of this file. */
#define MANIFEST_ENTRY_MAX ((size_t)64 * 1024)
#define MANIFEST_VALUE_MAX ((size_t)1024 * 1024)
/* The window: the largest value plus a few bytes, which tell a number
 * that ends at the cap from one that goes on past it. */
#define MANIFEST_BUF_SLACK 16
#define MANIFEST_BUF_SIZE (MANIFEST_VALUE_MAX + MANIFEST_BUF_SLACK)
/* The smallest window manifest_parse_window() takes. */
#define MANIFEST_BUF_MIN (MANIFEST_BUF_SLACK + 16)

/* Which digest of each entry the fetch checks. */
enum manifest_verify {
	/* "xxh3" where the entry has it, else "xxh128", else "md5": the
	 * cheapest per byte first (XXH3-64 on every CPU xxHash targets; MD5
	 * costs some 30 times more), as the tool's job is to keep up with the
	 * disk. One of them is required. */
	MANIFEST_VERIFY_AUTO,
	MANIFEST_VERIFY_XXH3,   /* every entry must have "xxh3" */
	MANIFEST_VERIFY_XXH128, /* every entry must have "xxh128" */
	MANIFEST_VERIFY_NONE,   /* length check only; digests not needed */
	MANIFEST_VERIFY_MD5,    /* every entry must have "md5" */
};

struct manifest_chunk; /* a block of the string arena (manifest.c) */

/*
 * A loaded manifest. `files` is ready to hand to sstf_submit() as a batch's
 * file array, with the batch's base_url set to the source the entries
 * without a "url" of their own come from (their `url` is NULL). Every
 * string it points to is owned by the manifest and lives until
 * manifest_free().
 */
struct manifest {
	struct sstf_file *files;
	size_t nfiles;
	uint64_t total_size; /* sum of the files' sizes */
	/* Private to manifest.c. */
	size_t cap;                    /* entries `files` has room for */
	struct manifest_chunk *chunks; /* names, digests, own URLs and the
	                                  arrays of "urls" */
};

/*
 * Reads a manifest from `in` (read to its end or to the first error, not
 * closed), choosing each entry's digest as `verify` says (digest_kind
 * SSTF_DIGEST_NONE and digest_hex "" for MANIFEST_VERIFY_NONE). An entry's
 * `url` is its own "url", or NULL: then it comes from the batch's base_url
 * (see sstf_file.url). An entry with "urls" has them, in their order, in
 * `urls` and `nurls` (1 to SSTF_MAX_MIRRORS) and `url` NULL; without, `urls`
 * is NULL and `nurls` 0. Every other field of the entries is zero.
 *
 * It checks the JSON only (see the top of this file). The caller must run
 * sstf_check_batch() on the files before fetching: that is where a name
 * like "../x" or "/etc/x", a bad URL scheme or a duplicate is refused, with
 * the engine's own rules.
 *
 * Returns 0 and stores a manifest to release with manifest_free() in *out,
 * or -1 with a NUL-terminated message in err (truncated to errlen) that
 * starts with `label` (the path, for messages) and names the offending
 * entry, e.g.
 *   manifest.json: files[3] ("a"): no "xxh128" digest, which verify=xxh128
 *   needs for every entry
 * or, for a syntax error, where it is (line and column as jansson counts
 * them, column in characters; byte: how many bytes had been read, 1-based
 * index of the offending one):
 *   manifest.json: line 7, column 12 (byte 154): files[1]: ...
 * Allocation and read failures are reported the same way. Any thread; no
 * global state.
 */
int manifest_parse(FILE *in, const char *label, enum manifest_verify verify,
                   struct manifest **out, char *err, size_t errlen);

/*
 * manifest_parse() with a window of buf_size bytes (at least
 * MANIFEST_BUF_MIN) instead of MANIFEST_BUF_SIZE; the limits shrink with
 * it: a value may be at most buf_size - MANIFEST_BUF_SLACK bytes, an entry
 * also at most MANIFEST_ENTRY_MAX. For tests and the fuzz target, which run
 * the refill paths on small inputs this way. A smaller buf_size is taken
 * as MANIFEST_BUF_MIN.
 */
int manifest_parse_window(FILE *in, const char *label,
                          enum manifest_verify verify, size_t buf_size,
                          struct manifest **out, char *err, size_t errlen);

/* Opens `path` and runs manifest_parse() on it, labelled with the path. */
int manifest_load(const char *path, enum manifest_verify verify,
                  struct manifest **out, char *err, size_t errlen);

/*
 * manifest_parse() of the len bytes at buf (a manifest fetched from a URL
 * into memory), which stay the caller's. Returns as manifest_parse().
 */
int manifest_parse_mem(const void *buf, size_t len, const char *label,
                       enum manifest_verify verify, struct manifest **out,
                       char *err, size_t errlen);

/*
 * An empty manifest to fill with manifest_add() (a listing); NULL when out
 * of memory. Release with manifest_free().
 */
struct manifest *manifest_new(void);

/*
 * Appends an entry of name[0..name_len) (copied) and size, with no digest
 * (SSTF_DIGEST_NONE, digest_hex ""), no URL of its own, every other field
 * zero, and adds size to total_size. Returns 0, -ENOMEM, or -EOVERFLOW when
 * the sizes would add up past 2^64 - 1. Names are not judged here: run
 * sstf_check_batch() on the files, as for a parsed manifest.
 */
int manifest_add(struct manifest *m, const char *name, size_t name_len,
                 uint64_t size);

/*
 * What the fetch checks the files against, for the report: "digest" when
 * every entry has a digest, "length" when none has (a listing, or
 * verify=none; also an empty manifest), "mixed" otherwise.
 */
const char *manifest_verified(const struct manifest *m);

/* Releases a manifest and every string it owns. NULL is a no-op. */
void manifest_free(struct manifest *m);

#endif
