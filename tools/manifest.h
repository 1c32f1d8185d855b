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
 * Digests: "xxh3" (16 hex digits, as `xxhsum -H3` prints) and "xxh128" (32
 * hex digits, as `xxhsum -H2` prints); each one present must be well formed,
 * and which one is checked is the verify mode's choice (enum
 * manifest_verify). An optional "url" replaces BASEURL + "/" + name for that
 * file. "file_total_size", when present, must equal the sum of the sizes.
 * Unknown keys are ignored, so manifests may carry more than we read;
 * duplicate keys within one object are an error, since which one wins would
 * be a guess.
 *
 * The entries' names, URLs and sizes are not judged here: the engine's
 * sstf_check_batch() does that, and the caller runs it on the loaded files
 * (see manifest_load()).
 */
#ifndef SSTFETCH_TOOLS_MANIFEST_H
#define SSTFETCH_TOOLS_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "sstfetch.h"

/* Which digest of each entry the fetch checks. */
enum manifest_verify {
	/* "xxh3" where the entry has it, else "xxh128": XXH3-64 is the
	 * cheaper of the two per byte on every CPU xxHash targets, and the
	 * tool's job is to keep up with the disk. One of them is required. */
	MANIFEST_VERIFY_AUTO,
	MANIFEST_VERIFY_XXH3,   /* every entry must have "xxh3" */
	MANIFEST_VERIFY_XXH128, /* every entry must have "xxh128" */
	MANIFEST_VERIFY_NONE,   /* length check only; digests not needed */
};

/*
 * A loaded manifest. `files` is ready to hand to sstf_submit() as a batch's
 * file array: every string it points to is owned by the manifest and lives
 * until manifest_free().
 */
struct manifest {
	struct sstf_file *files;
	size_t nfiles;
	uint64_t total_size; /* sum of the files' sizes */
	char *strings;       /* one block holding every name, URL and digest */
};

/*
 * Reads the manifest at `path`, building each file's URL from `base_url`
 * unless the entry has its own "url", and choosing each entry's digest as
 * `verify` says (digest_kind SSTF_DIGEST_NONE and digest_hex "" for
 * MANIFEST_VERIFY_NONE).
 *
 * It checks the JSON only (see the top of this file). The caller must run
 * sstf_check_batch() on the files before fetching: that is where a name
 * like "../x" or "/etc/x", a bad URL scheme or a duplicate is refused, with
 * the engine's own rules.
 *
 * Returns 0 and stores a manifest to release with manifest_free() in *out,
 * or -1 with a NUL-terminated message in err (truncated to errlen) that
 * starts with `path` and names the offending entry, e.g.
 *   manifest.json: files[3] ("a"): no "xxh128" digest, which verify=xxh128
 *   needs for every entry
 * Allocation failure is reported the same way. Any thread; no global state.
 */
int manifest_load(const char *path, const char *base_url,
                  enum manifest_verify verify, struct manifest **out, char *err,
                  size_t errlen);

/* Releases a manifest and every string it owns. NULL is a no-op. */
void manifest_free(struct manifest *m);

/*
 * Writes base_url joined to name into out: trailing slashes of base_url are
 * dropped (but not those of "scheme://"), exactly one '/' follows, then name
 * with every byte outside RFC 3986's unreserved set and '/' percent-encoded.
 * Returns the length the URL has (excluding the NUL) whether or not it fit,
 * as snprintf does; out may be NULL when outlen is 0. Exposed for tests.
 */
size_t manifest_join_url(const char *base_url, const char *name, char *out,
                         size_t outlen);

#endif
