/*
 * jobfile.h - the jobs of a run, and fio-style job files (INI, read with
 * inih) that add to them.
 *
 * A job file:
 *
 *   ; comment            # comment
 *   [global]             defaults for the job sections after it
 *   source=http://127.0.0.1:8080
 *   bs=1m
 *   [job1]               a job named "job1": the [global] keys so far,
 *   dest=/data/a         then its own
 *   [job2]
 *   dest=/data/b
 *
 * Keys are the option names of options.h without the dashes; only job
 * options are allowed. A section header starts a new job even when it has
 * no keys, and two sections with one name make two jobs, as in fio. Lines
 * are at most 199 bytes and section names at most 49 (inih's limits); a
 * longer line is an error, never silently cut.
 */
#ifndef SSTFETCH_TOOLS_JOBFILE_H
#define SSTFETCH_TOOLS_JOBFILE_H

#include <stddef.h>

#include "options.h"

struct jobset {
	struct job_opts *jobs;
	size_t njobs;
	char **strings; /* copies of job-file values the jobs point to */
	size_t nstrings;
};

/* Appends a copy of *job. Returns 0, or -1 when out of memory. */
int jobset_add(struct jobset *set, const struct job_opts *job);

/*
 * Reads the job file at `path` and appends its jobs, each starting from the
 * table's defaults. Returns 0, or EXIT_USAGE after printing
 * "sstfetch: PATH:LINE: ..." for the first problem (no job is appended
 * then). Option values are checked with opt_set().
 */
int jobfile_load(struct jobset *set, const char *path);

/* Frees the jobs and every string the set owns. */
void jobset_free(struct jobset *set);

#endif
