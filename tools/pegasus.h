/*
 * pegasus.h - Apache Pegasus bulk-load sets: --pegasus=URL fetches one
 * app's partitions, each into a directory of its own, all on the job's
 * engine at once, as a replica server's partitions load them.
 *
 * The layout (Pegasus 2.4's bulk load, on remote storage), URL being
 * ROOT/CLUSTER/APP:
 *
 *   URL/bulk_load_info           {"app_id":N,"app_name":"x",
 *                                 "partition_count":N}
 *   URL/PIDX/bulk_load_metadata  {"files":[{"name":"1.sst","size":N,
 *                                 "md5":"<32 hex>"}, ...],
 *                                 "file_total_size":N}
 *   URL/PIDX/NAME                the files the metadata lists
 *
 * PIDX runs from 0 to partition_count - 1, in decimal. URL may be
 * http(s)://, file:// or s3:// (with the job's S3 settings).
 *
 * Loading (pegasus_load(), before any job runs): bulk_load_info is fetched
 * with sstf_get() (at most PEGASUS_INFO_MAX bytes) and checked; the
 * partitions --partitions asks for must exist; then each one's
 * bulk_load_metadata is fetched (at most --manifest_max bytes) and read by
 * the manifest loader, as a manifest file is: its "md5" digests are what
 * verify=auto checks, and a "file_total_size" that is not the sum of the
 * sizes is refused, as Pegasus refuses it. The engine's own entry checks
 * (sstf_check_batch()) run on each partition's batch. Any of these failing
 * stops the run with exit 2 before a byte of any file is fetched.
 *
 * Fetching (job.c): partition PIDX is one batch, into DEST/PIDX/ with base
 * URL URL/PIDX, submitted as a generation of its own; a job submits every
 * chosen partition's batch on its one engine, and they run at once. The
 * report counts files and bytes per partition as well as for the job, and
 * names a failed file "PIDX/NAME".
 */
#ifndef SSTFETCH_TOOLS_PEGASUS_H
#define SSTFETCH_TOOLS_PEGASUS_H

#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "options.h"
#include "sstfetch.h"

/* Largest bulk_load_info taken: a few dozen bytes in Pegasus. */
#define PEGASUS_INFO_MAX ((uint64_t)1 << 20)
/* Most partitions an app may have; Pegasus apps have at most thousands. */
#define PEGASUS_MAX_PARTITIONS 65536u

/* One partition chosen for the fetch. */
struct pegasus_part {
	unsigned pidx;
	struct manifest *m; /* its bulk_load_metadata; names relative to dest */
	char *dest;         /* DEST/PIDX, the batch's dest_dir */
	char *base_url;     /* URL/PIDX, the batch's base_url */
};

/* A loaded set: what bulk_load_info says, and the chosen partitions. */
struct pegasus {
	int64_t app_id;
	char *app_name;
	unsigned partition_count;
	struct pegasus_part *parts; /* ascending by pidx */
	size_t nparts;
	size_t nfiles;       /* over the chosen partitions */
	uint64_t total_size; /* over the chosen partitions */
};

/*
 * The checks of a --pegasus job's options that need no network (its
 * URL's scheme is the option table's, OPT_URL): no --manifest, --source
 * or --list beside it, --partitions well formed (and not without
 * --pegasus), no cancel_at.
 * Returns 0, or EXIT_USAGE after printing why on stderr, naming the job.
 */
int pegasus_check_opts(const struct job_opts *o);

/*
 * Loads job o's set (see the top of this file) with the engine
 * configuration cfg (its TLS and S3 settings, timeouts and retries).
 * Returns 0 and a set to release with pegasus_free() in *out, or
 * EXIT_USAGE after printing why on stderr: the URL that could not be
 * fetched and sstf_get()'s message (an S3 error's Code and Message), the
 * document and what is wrong with it, or the partition that does not
 * exist with the partition_count. Main thread.
 */
int pegasus_load(const struct job_opts *o, const struct sstf_config *cfg,
                 struct pegasus **out);

/* Releases a set. NULL is a no-op. */
void pegasus_free(struct pegasus *p);

#endif
