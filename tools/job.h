/*
 * job.h - running one job: an engine of its own, its loops, the cancel_at
 * restart, the live status line and SIGINT.
 */
#ifndef SSTFETCH_TOOLS_JOB_H
#define SSTFETCH_TOOLS_JOB_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "manifest.h"
#include "sstfetch.h"
#include "options.h"
#include "report.h"

struct aws_s3;
struct pegasus;

/* A job ready to run: its options and its loaded, checked manifest. */
struct job {
	struct job_opts o;
	struct manifest *m;
	struct aws_s3 *aws; /* its S3 settings (aws.h), o.s3 points into
	                       them; NULL when no URL of the job is s3:// */
	/* --pegasus: the partitions (pegasus.h), each a batch of its own,
	 * and m is NULL; NULL for other jobs. */
	struct pegasus *peg;
};

/* The bytes one loop of the job fetches: its manifest's, or its
 * partitions' together. */
uint64_t job_total_size(const struct job *job);

/*
 * fio's status line on stderr, across the jobs of a run:
 *   Jobs: 1 (f=16): [_(1),W(1),P(1)][45.2%][w=1897MiB/s][eta 00m:03s]
 * One character per job: P pending, W running, _ done, E done with errors.
 * Percent and ETA are over every job's bytes times its loops.
 */
struct status {
	int enabled;
	int tty;            /* redraw in place; else one line per update */
	size_t njobs;
	char *states;       /* njobs characters */
	uint64_t bytes_total;
	uint64_t bytes_done; /* by generations that have ended */
	double t0;          /* when the first job started */
	double last_t;      /* last update, for the rate */
	uint64_t last_bytes;
	int drawn;          /* a line is on screen */
};

/* Prints the status line now (when enabled). */
void status_draw(struct status *st, uint64_t bytes_now, uint64_t open_files);

/* Removes the status line from the screen, if one is there. */
void status_clear(struct status *st);

/*
 * Set from the SIGINT/SIGTERM handler. A running job sees it within 100 ms,
 * cancels its generation (which removes its temporary files), finishes its
 * report and returns; no later job starts.
 */
extern volatile sig_atomic_t job_interrupted;

/* Every file of every loop was fetched and verified, or was already in
 * place and verified, and nothing failed. */
bool job_succeeded(const struct job_report *rep);

/* The engine configuration a job's options ask for. */
struct sstf_config job_engine_config(const struct job_opts *o);

/*
 * Runs job `index` of the status line and fills *rep (which the caller has
 * zeroed and will release with report_free()). Always fills the report,
 * also when the job cannot start (rep->error says why, its files count as
 * skipped). Must be called from the main thread, with SIGINT and SIGTERM
 * handled by job_interrupted's handler.
 */
void job_run(const struct job *job, size_t index, struct status *st,
             struct job_report *rep);

#endif
