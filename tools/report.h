/*
 * report.h - what a job did, and the three ways to print it (normal, json,
 * terse), shaped like fio's reports so that its readers and scripts carry
 * over.
 *
 * Counting rules (the same in all three formats):
 *   - files: one count per file per loop, from the last generation of that
 *     loop: ok = fetched, published and verified; skipped = already in
 *     place and verified, nothing fetched (sstf_file_result.skipped);
 *     failed = ended with an error; unfinished = never reached an end (the
 *     run was interrupted). total = ok + skipped + failed + unfinished =
 *     manifest files x loops run. resumed counts the ok files that
 *     continued a crashed run's partial file.
 *   - io_bytes: bytes fetched, written and hashed (sstf_progress.bytes_done)
 *     by every generation, a cancelled one included: what went over the
 *     network; bw_bytes = io_bytes / runtime. present_bytes: bytes that
 *     needed no transfer (skipped files, resumed prefixes).
 *   - runtime: from each loop's first submit to its last generation's end,
 *     summed over loops (removing the destination between loops is not
 *     counted). CPU is measured over the same windows.
 *   - clat (per-file fetch time, sstf_file_result.fetch_ns) and ttfb
 *     (ttfb_ns): over every published file of every generation.
 *   - verify: bytes of published files, and files that failed their digest
 *     or length check.
 *   - retries, stale_completions, cancels, peak buffers: the job engine's
 *     sstf_stats at the end of the job.
 *   - streams_max, files_split (sstf_file_result.streams): the most streams
 *     one file ran on at once, and the files that ran on more than one,
 *     over the file results of every generation (a file fetched again by
 *     a later loop or after cancel_at counts again).
 *   - mirrors: bytes each URL index served (sstf_file_result.mirror_bytes),
 *     summed over the file results of every generation whose file has more
 *     than one URL ("urls" in the manifest); none when no file has. Bytes
 *     of files that never reached an end (cancelled) are not in it, so it
 *     may add up to less than io_bytes.
 *   - partitions (--pegasus jobs only): per partition, its files counted
 *     as the job's are, the bytes its metadata lists, and io_bytes and
 *     present_bytes of its generations; they add up to the job's counts
 *     and bytes. A failed file is named "PIDX/NAME".
 *   - failures: the first REPORT_MAX_FAILURES failed or unfinished files,
 *     each with its error, detail, streams and, when it has more than one
 *     URL, the bytes each served. There is no list of the files that did
 *     not fail: a million-entry job would print a million entries.
 *
 * The JSON keys follow fio's where the meaning is the same (jobname, error,
 * job_runtime, usr_cpu, sys_cpu, write.io_bytes/bw_bytes/runtime/clat_ns
 * with its "percentile" object keyed "50.000000"); the rest are ours
 * (files, net.ttfb_ns, verify, cancels, ...). Keep them stable: scripts
 * read them. Terse fields are listed once, in terse_fields[] in report.c,
 * which both writes the line and prints the list for --help (version 1:
 * terse_version; sstfetch_version; jobname; error; files_ok; files_failed;
 * files_skipped; files_total; io_bytes; bw_bytes; runtime_ms; clat min,
 * max, mean, stddev, n and 17 "P%=ns" percentiles; the same for ttfb;
 * retries; stale_completions; cancels; peak_buffer_bytes; usr_cpu;
 * sys_cpu; verify_bytes; verify_errors; loops; files_unfinished;
 * files_resumed; present_bytes: fields are only ever added at the end).
 */
#ifndef SSTFETCH_TOOLS_REPORT_H
#define SSTFETCH_TOOLS_REPORT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "options.h"
#include "sstfetch.h"

/* fio's default clat percentile list. */
#define REPORT_NPCT 17
extern const double report_pct[REPORT_NPCT];

struct lat_summary {
	uint64_t n, min, max; /* nanoseconds */
	double mean, stddev;
	uint64_t pct[REPORT_NPCT];
};

/*
 * Sorts samples[0..n) in place and summarises them. Percentiles are
 * nearest-rank: the smallest sample with at least p% of samples at or
 * below it, so they are ordered and each is a real sample.
 */
void lat_summarize(uint64_t *samples, size_t n, struct lat_summary *out);

/* One failed (or unfinished) file, for the report. */
struct failure {
	char *name;
	int error;      /* negative sstf code; -ECANCELED when unfinished */
	char *detail;   /* may be NULL */
	int unfinished; /* never reached an end (interrupted) */
	unsigned streams; /* sstf_file_result.streams; 0 when it never
	                     reached an end */
	size_t nmirrors;  /* entries of mirror_bytes: 0 unless the file has
	                     more than one URL */
	uint64_t *mirror_bytes; /* bytes each URL served, in the manifest's
	                           order; NULL when nmirrors is 0 */
};

/* How a job talks to S3, for the report: where its settings came from,
 * never a secret (aws.h fills it). */
struct report_s3 {
	const char *credentials; /* "from the environment (...)", or
	                            "anonymous (no credentials found ...)" */
	int signed_requests;     /* 0: anonymous requests */
	const char *region;
	const char *endpoint;    /* "": AWS's own */
	const char *addressing;  /* "path" or "virtual", with why when
	                            --s3_addressing=auto chose it */
};

/* One partition of a --pegasus job (pegasus.h), counted as the job is. */
struct part_report {
	unsigned partition;
	uint64_t files_ok, files_failed, files_skipped, files_total;
	uint64_t files_unfinished;
	uint64_t size;      /* bytes its bulk_load_metadata lists */
	uint64_t io_bytes, present_bytes;
};

/* Failures past this many are counted, not listed. */
#define REPORT_MAX_FAILURES 100

struct job_report {
	const struct job_opts *opts;
	int error;       /* 0, or the first error of the job (negative) */
	int interrupted; /* SIGINT/SIGTERM cut the job short */
	uint64_t loops_done;
	uint64_t files_ok, files_failed, files_skipped, files_total;
	uint64_t files_unfinished, files_resumed;
	uint64_t io_bytes, present_bytes;
	uint64_t runtime_ns;
	uint64_t verify_bytes, verify_errors;
	uint64_t retries, stale_completions, cancels;
	uint64_t peak_buffers, buffers_total, buf_size;
	uint64_t streams_max, files_split;
	uint64_t mirror_bytes[SSTF_MAX_MIRRORS]; /* by URL index */
	size_t nmirrors; /* entries of mirror_bytes in use; 0: no file had
	                    more than one URL */
	double usr_s, sys_s; /* CPU seconds over the runtime windows */
	long ctx, majf, minf;
	struct lat_summary clat, ttfb;
	struct failure failures[REPORT_MAX_FAILURES];
	size_t nfailures, failures_unlisted;
	/* What the files were checked against: "digest" (every file had a
	 * digest), "length" (none had: a --list of S3, or verify=none), or
	 * "mixed". NULL: not known (the job could not start). */
	const char *verified;
	const struct report_s3 *s3; /* NULL: no URL of the job is s3:// */
	/* --pegasus: one per partition fetched, ascending (malloc'd, freed
	 * by report_free()); NULL and 0 for other jobs. */
	struct part_report *parts;
	size_t nparts;
};

/*
 * fio's num2str: scales by 1024 (base2) or 1000 while the value has more
 * than four digits, and prints three or four significant digits with the
 * unit and then `suffix`: "7111MiB/s", "64.0MiB", "67.1MB".
 */
void report_human(double v, int base2, const char *suffix, char *buf,
                  size_t len);

/* Writes the report of n jobs in `format`. Returns 0, or -1 on a write
 * error (errno set). */
int report_write(FILE *out, enum output_format format,
                 const struct job_report *jobs, size_t n);

/* Documents the terse fields, from the same table that writes them. */
void report_terse_help(FILE *out);

/* Frees what a report owns (the failures' strings and arrays). */
void report_free(struct job_report *r);

#endif
