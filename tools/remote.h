/*
 * remote.h - manifests that are not local files: a manifest fetched from a
 * URL (sstf_get()) and the listing of an S3 prefix (sstf_list()), both
 * before any job runs, with the job's engine configuration (its TLS and S3
 * settings, connect timeout, stall limit and retries).
 */
#ifndef SSTFETCH_TOOLS_REMOTE_H
#define SSTFETCH_TOOLS_REMOTE_H

#include <stdbool.h>

#include "manifest.h"
#include "options.h"
#include "sstfetch.h"

/* True when --manifest names a URL (http://, https://, file://, s3://,
 * scheme case-insensitive) rather than a path. */
bool remote_is_url(const char *manifest);

/*
 * Fetches url into memory with sstf_get(), at most max bytes: 0 and a
 * malloc'd *buf of *len bytes (NULL when empty), or sstf_get()'s error
 * with its message in err ("" for -ENOMEM of our own). Any thread but an
 * engine's loop.
 */
int remote_get(const struct sstf_config *cfg, const char *url, uint64_t max, char **buf,
               size_t *len, char *err, size_t errlen);

/*
 * Fetches job o's --manifest URL into memory, at most o->manifest_max
 * bytes, and parses it as a manifest file is (choosing digests as verify
 * says). Returns 0 and the manifest in *out, or EXIT_USAGE after printing
 * why on stderr: sstf_get()'s message (for S3 with its Code and Message),
 * or the cap and the option that raises it. Main thread.
 */
int remote_manifest(const struct job_opts *o, const struct sstf_config *cfg,
                    enum manifest_verify verify, struct manifest **out);

/*
 * The manifest of --list: every object under o->source
 * (s3://BUCKET[/PREFIX], a '/' added to a PREFIX that does not end in one,
 * so that the names are the keys after "PREFIX/", as the engine joins the
 * source and a name), named by its key relative to that prefix, with its
 * size and no digest. Keys ending in '/' (folder markers) are skipped. Names
 * are not judged here (the caller runs sstf_check_batch(), which refuses a
 * key that is no valid file name). An empty listing is a warning on stderr,
 * not an error. Returns 0 and the manifest in *out, or EXIT_USAGE after
 * printing why. Main thread.
 */
int remote_list(const struct job_opts *o, const struct sstf_config *cfg,
                struct manifest **out);

/* The URL remote_list() lists for source (malloc'd), or NULL when out of
 * memory. */
char *remote_list_url(const char *source);

#endif
