/*
 * job.c - run one job on an engine of its own.
 *
 * Threads. The engine's callbacks run on its loop thread; they only record
 * into a struct tracker, under its lock, and signal its condition variable.
 * The main thread waits on that variable (100 ms at most, to notice SIGINT
 * and redraw the status line), and it alone calls sstf_submit() and the
 * blocking sstf_cancel() of an interrupt. It never holds the tracker's lock
 * while calling into the engine: sstf_cancel() waits for on_batch_done,
 * which takes that lock.
 *
 * Parts. A job submits one batch (its manifest) or, with --pegasus, one
 * per partition (pegasus.h), together on its one engine: each a
 * generation of its own, with its struct part as the callbacks' user
 * pointer. A loop ends when every generation of it has.
 *
 * cancel_at is the one cancel started on the loop thread: the callback that
 * first sees the mark crossed calls sstf_cancel(), which there only starts
 * the cancel (-EINPROGRESS). Started from the main thread instead, a cancel
 * could arrive after the generation had already ended.
 */
#include "job.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "aws.h"
#include "pegasus.h"
#include "sstfetch.h"
#include "util.h"

volatile sig_atomic_t job_interrupted;

/* How often the main thread looks at SIGINT, and redraws the status. */
#define WAKE_MS 100
#define STATUS_MS 500
/* Progress callbacks only serve cancel_at; often enough that a small job
 * cannot finish between crossing the mark and the main thread's cancel. */
#define CANCEL_PROGRESS_MS 5

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Status line                                                              */

void status_draw(struct status *st, uint64_t bytes_now, uint64_t open_files)
{
	if (!st->enabled)
		return;
	double t = now_s();
	uint64_t done = st->bytes_done + bytes_now;
	double dt = t - st->last_t;
	double rate = dt > 0 && done >= st->last_bytes
		? (double)(done - st->last_bytes) / dt
		: 0;
	st->last_t = t;
	st->last_bytes = done;

	/* Run-length states, as fio prints them: [_(1),W(1),P(2)]. */
	char states[256];
	size_t n = 0;
	size_t running = 0;
	for (size_t i = 0; i < st->njobs && n + 32 < sizeof(states);) {
		size_t k = i;
		while (k < st->njobs && st->states[k] == st->states[i])
			k++;
		n += (size_t)snprintf(states + n, sizeof(states) - n, "%s%c(%zu)",
		                      n ? "," : "", st->states[i], k - i);
		if (st->states[i] == 'W')
			running += k - i;
		i = k;
	}

	double pct = st->bytes_total
		? 100.0 * (double)done / (double)st->bytes_total
		: 100.0;
	if (pct > 100)
		pct = 100;
	double elapsed = t - st->t0;
	double avg = elapsed > 0 ? (double)done / elapsed : 0;
	uint64_t eta = avg > 0 && st->bytes_total > done
		? (uint64_t)((double)(st->bytes_total - done) / avg + 0.5)
		: 0;
	char r[32];
	report_human(rate, 1, "B/s", r, sizeof(r));
	fprintf(stderr,
	        "%sJobs: %zu (f=%" PRIu64 "): [%s][%.1f%%][w=%s][eta %02" PRIu64
	        "m:%02" PRIu64 "s]%s",
	        st->tty ? "\r" : "", running, open_files, states, pct, r, eta / 60,
	        eta % 60, st->tty ? "\033[K" : "\n");
	fflush(stderr);
	st->drawn = st->tty;
}

void status_clear(struct status *st)
{
	if (st->drawn) {
		fprintf(stderr, "\r\033[K");
		fflush(stderr);
		st->drawn = 0;
	}
}

/* ------------------------------------------------------------------------ */
/* What the callbacks record                                                */

/* What a failed file's report entry says besides its error: one malloc'd
 * block, made only for failures with a detail or more than one URL. */
struct fail_note {
	const char *detail;      /* NULL when none; points into the block */
	size_t nmirrors;         /* 0 unless the file has more than one URL */
	uint64_t mirror_bytes[]; /* nmirrors entries, then detail's bytes */
};

/* One per manifest entry: 24 bytes, for million-entry manifests. */
struct outcome {
	int done;
	int result;
	unsigned streams;       /* sstf_file_result.streams */
	unsigned char skipped;  /* already in place and verified */
	unsigned char resumed;  /* continued a crashed run's partial */
	struct fail_note *note; /* failures only; may be NULL */
};

struct samples {
	uint64_t *v;
	size_t n, cap;
};

struct tracker {
	pthread_mutex_t lock;
	pthread_cond_t cond;

	/* The current generations: every part's files, one part after the
	 * other (struct part's base). */
	struct outcome *files;
	size_t nfiles;
	size_t ended;          /* generations of the loop that have ended */
	uint64_t cancel_bytes; /* nonzero: cancel once this many are written */
	int cancel_due;        /* the cancel was started */
	sstf_engine *engine;

	/* Every generation of the job. */
	struct samples clat, ttfb;
	uint64_t verify_bytes, verify_errors;
	uint64_t streams_max, files_split;
	uint64_t mirror_bytes[SSTF_MAX_MIRRORS];
	size_t nmirrors; /* entries of mirror_bytes in use */
	int oom;
};

/*
 * One batch of the job: a plain job has one (its manifest into --dest,
 * from --source); a --pegasus job one per partition.
 */
struct part {
	struct tracker *tr;
	const struct manifest *m;
	const char *dest;        /* the batch's dest_dir */
	const char *base_url;    /* its base_url */
	long pidx;               /* the partition; -1 for a plain job */
	size_t base;             /* its first file among tr->files */
	struct part_report *rep; /* its entry in the report; NULL for a plain
	                            job */
	uint64_t gen;            /* its generation, when submitted */
	int submitted;           /* gen is the loop's, not yet waited for */
	int rc;                  /* its result in the loop: a submit error,
	                            or its generation's */
};

static int push(struct samples *s, uint64_t v)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? 2 * s->cap : 1024;
		uint64_t *nv = realloc(s->v, cap * sizeof(*nv));
		if (!nv)
			return -1;
		s->v = nv;
		s->cap = cap;
	}
	s->v[s->n++] = v;
	return 0;
}

/* Loop thread: starts the cancel_at cancel when `bytes` crossed the mark. */
static void maybe_cancel(struct tracker *tr, uint64_t gen, uint64_t bytes)
{
	pthread_mutex_lock(&tr->lock);
	int due = tr->cancel_bytes && !tr->cancel_due && bytes >= tr->cancel_bytes;
	if (due)
		tr->cancel_due = 1;
	pthread_mutex_unlock(&tr->lock);
	if (!due)
		return;
	sstf_cancel(tr->engine, gen); /* -EINPROGRESS: batch-done says the rest */
	pthread_mutex_lock(&tr->lock);
	pthread_cond_signal(&tr->cond);
	pthread_mutex_unlock(&tr->lock);
}

/* The failure note of a result, or NULL when it needs none (or on out of
 * memory, which only loses the detail). nm: its URLs, when more than one. */
static struct fail_note *make_note(const struct sstf_file_result *res,
                                   size_t nm)
{
	size_t dlen = res->detail && res->detail[0] ? strlen(res->detail) : 0;
	if (res->result == 0 || (!dlen && !nm))
		return NULL;
	struct fail_note *n = malloc(sizeof(*n) + nm * sizeof(n->mirror_bytes[0]) +
	                             dlen + 1);
	if (!n)
		return NULL;
	n->nmirrors = nm;
	if (nm)
		memcpy(n->mirror_bytes, res->mirror_bytes, nm * sizeof(n->mirror_bytes[0]));
	char *d = (char *)&n->mirror_bytes[nm];
	memcpy(d, dlen ? res->detail : "", dlen + 1);
	n->detail = dlen ? d : NULL;
	return n;
}

static void on_file_done(void *user, uint64_t gen,
                         const struct sstf_file_result *res)
{
	struct part *pt = user;
	struct tracker *tr = pt->tr;
	/* A file with one URL has nothing to split by mirror. The header
	 * bounds nmirrors; the cap keeps a bad count off our arrays. */
	size_t nm = res->nmirrors > 1 && res->mirror_bytes ? res->nmirrors : 0;
	if (nm > SSTF_MAX_MIRRORS)
		nm = SSTF_MAX_MIRRORS;

	/* Copy outside the lock; malloc does not wait on anything of ours. */
	struct fail_note *note = make_note(res, nm);

	pthread_mutex_lock(&tr->lock);
	if (res->index < pt->m->nfiles && !tr->files[pt->base + res->index].done) {
		struct outcome *o = &tr->files[pt->base + res->index];
		o->done = 1;
		o->result = res->result;
		o->streams = res->streams;
		o->skipped = res->skipped != 0;
		o->resumed = res->resumed_from > 0;
		o->note = note;
		note = NULL;
	}
	if (res->streams > tr->streams_max)
		tr->streams_max = res->streams;
	if (res->streams > 1)
		tr->files_split++;
	for (size_t k = 0; k < nm; k++)
		tr->mirror_bytes[k] += res->mirror_bytes[k];
	if (nm > tr->nmirrors)
		tr->nmirrors = nm;
	if (res->result == 0 && !res->skipped) {
		tr->verify_bytes += res->bytes;
		if (push(&tr->clat, res->fetch_ns) || push(&tr->ttfb, res->ttfb_ns))
			tr->oom = 1;
	} else if (res->result == -SSTF_ECHECKSUM || res->result == -SSTF_ESIZE) {
		tr->verify_errors++;
	}
	pthread_mutex_unlock(&tr->lock);
	free(note);
	/* Progress callbacks are rate-limited; a file's end always looks. */
	struct sstf_progress p;
	if (tr->cancel_bytes && sstf_progress(tr->engine, gen, &p) == 0)
		maybe_cancel(tr, gen, p.bytes_done);
}

static void on_progress(void *user, uint64_t gen, const struct sstf_progress *p)
{
	maybe_cancel(((struct part *)user)->tr, gen, p->bytes_done);
}

static void on_batch_done(void *user, uint64_t gen, int result)
{
	struct tracker *tr = ((struct part *)user)->tr;

	pthread_mutex_lock(&tr->lock);
	tr->ended++;
	pthread_cond_signal(&tr->cond);
	pthread_mutex_unlock(&tr->lock);
}

/* Forgets the last generation's outcomes before a new one is submitted:
 * its callbacks may run before sstf_submit() returns. */
static void tracker_reset(struct tracker *tr, uint64_t cancel_bytes)
{
	pthread_mutex_lock(&tr->lock);
	for (size_t i = 0; i < tr->nfiles; i++) {
		free(tr->files[i].note);
		memset(&tr->files[i], 0, sizeof(tr->files[i]));
	}
	tr->ended = 0;
	tr->cancel_due = 0;
	tr->cancel_bytes = cancel_bytes;
	pthread_mutex_unlock(&tr->lock);
}

enum { EV_TIMEOUT = 0, EV_ENDED = 1, EV_CANCEL_DUE = 2 };

/* Waits up to WAKE_MS for `want` generations to end, or one to reach
 * cancel_at. */
static int tracker_wait(struct tracker *tr, size_t want)
{
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_nsec += WAKE_MS * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&tr->lock);
	while (tr->ended < want && !tr->cancel_due && !job_interrupted) {
		if (pthread_cond_timedwait(&tr->cond, &tr->lock, &dl) == ETIMEDOUT)
			break;
	}
	int ev = (tr->ended >= want ? EV_ENDED : 0) |
	         (tr->cancel_due ? EV_CANCEL_DUE : 0);
	pthread_mutex_unlock(&tr->lock);
	return ev;
}

/* ------------------------------------------------------------------------ */
/* Destination                                                              */

/* Creates dest. Returns 0, or a negative errno after printing it. */
static int make_dest(const struct job_opts *o)
{
	char failed[PATH_MAX];
	int rc = mkdir_p(o->dest, failed, sizeof(failed));
	if (rc)
		fprintf(stderr, PROG ": %s: dest: cannot create '%s': %s\n", o->name,
		        failed, strerror(-rc));
	return rc;
}

/* Longest first, so that a directory comes before its parent; equal
 * names end up next to each other. */
static int cmp_len_desc(const void *a, const void *b)
{
	const char *p = *(char *const *)a, *q = *(char *const *)b;
	size_t x = strlen(p), y = strlen(q);
	if (x != y)
		return (x < y) - (x > y);
	return strcmp(p, q);
}

/*
 * A fresh destination for the next loop: removes every file the manifest
 * names, then the directories the names run through, deepest first, where
 * they are empty. Nothing else in dest is touched, so that a mistyped
 * --dest costs a refetch, never someone's data. Returns 0 or a negative
 * errno after printing it.
 */
static int clear_dest(const char *jobname, const struct manifest *m,
                      const char *dest)
{
	int dfd = open(dest, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd < 0) {
		int err = errno;
		fprintf(stderr, PROG ": %s: cannot open dest '%s': %s\n", jobname,
		        dest, strerror(err));
		return -err;
	}
	int rc = 0;
	char **dirs = NULL;
	size_t ndirs = 0;
	for (size_t i = 0; i < m->nfiles && !rc; i++) {
		const char *name = m->files[i].name;
		if (unlinkat(dfd, name, 0) != 0 && errno != ENOENT) {
			rc = -errno;
			fprintf(stderr, PROG ": %s: cannot remove '%s/%s': %s\n",
			        jobname, dest, name, strerror(-rc));
			break;
		}
		/* Every parent of name: "a/b/c" gives "a/b" and "a". */
		for (const char *s = strrchr(name, '/'); s && s > name;) {
			char *d = strndup(name, (size_t)(s - name));
			char **nd = d ? realloc(dirs, (ndirs + 1) * sizeof(*nd)) : NULL;
			if (!nd) {
				free(d);
				rc = -ENOMEM;
				break;
			}
			dirs = nd;
			dirs[ndirs++] = d;
			const char *prev = s;
			s = NULL;
			for (const char *q = name; q < prev; q++) {
				if (*q == '/')
					s = q;
			}
		}
	}
	if (ndirs) {
		qsort(dirs, ndirs, sizeof(*dirs), cmp_len_desc);
		for (size_t i = 0; i < ndirs; i++) {
			/* Failure is fine: not empty (someone else's files
			 * are in it) or already gone. */
			if (!rc && (i == 0 || strcmp(dirs[i], dirs[i - 1]) != 0))
				unlinkat(dfd, dirs[i], AT_REMOVEDIR);
		}
		for (size_t i = 0; i < ndirs; i++)
			free(dirs[i]);
	}
	free(dirs);
	close(dfd);
	if (rc == -ENOMEM)
		fprintf(stderr, PROG ": out of memory\n");
	return rc;
}

/* ------------------------------------------------------------------------ */
/* The job                                                                  */

/* Lists a failed or unfinished file in the report; o is its outcome when
 * it reached an end, else NULL. The report gets copies of every string and
 * array. */
static void add_failure(struct job_report *rep, const char *name, int error,
                        const char *detail, int unfinished,
                        const struct outcome *o)
{
	if (rep->nfailures == REPORT_MAX_FAILURES) {
		rep->failures_unlisted++;
		return;
	}
	const struct fail_note *n = o ? o->note : NULL;
	struct failure *f = &rep->failures[rep->nfailures];
	memset(f, 0, sizeof(*f));
	f->name = strdup(name);
	f->error = error;
	f->detail = detail ? strdup(detail) : NULL;
	f->unfinished = unfinished;
	f->streams = o ? o->streams : 0;
	if (n && n->nmirrors) {
		size_t sz = n->nmirrors * sizeof(*f->mirror_bytes);
		f->mirror_bytes = malloc(sz);
		if (f->mirror_bytes) {
			memcpy(f->mirror_bytes, n->mirror_bytes, sz);
			f->nmirrors = n->nmirrors;
		}
	}
	if (f->name) {
		rep->nfailures++;
	} else {
		free(f->detail);
		free(f->mirror_bytes);
	}
}

/*
 * Counts the last generations' files of one loop into the report, and into
 * each part's entry. A part's result (struct part's rc) that is a submit
 * error (such as -ENOSPC at admission) fails its files rather than leaving
 * them unfinished. A partition's file is named "PIDX/NAME".
 */
static void tally(struct tracker *tr, const struct part *parts, size_t nparts,
                  struct job_report *rep)
{
	char pname[PATH_MAX + 32];
	pthread_mutex_lock(&tr->lock);
	for (size_t k = 0; k < nparts; k++) {
		const struct part *pt = &parts[k];
		const struct manifest *m = pt->m;
		struct part_report dummy, *pr = pt->rep ? pt->rep : &dummy;
		int rc = pt->rc;
		for (size_t i = 0; i < m->nfiles; i++) {
			const struct outcome *o = &tr->files[pt->base + i];
			const char *name = m->files[i].name;
			if (pt->pidx >= 0 && (o->done ? o->result != 0 : 1)) {
				snprintf(pname, sizeof(pname), "%ld/%s", pt->pidx, name);
				name = pname;
			}
			if (o->done && o->result == 0 && o->skipped) {
				rep->files_skipped++;
				pr->files_skipped++;
			} else if (o->done && o->result == 0) {
				rep->files_ok++;
				pr->files_ok++;
				rep->files_resumed += (uint64_t)o->resumed;
			} else if (o->done) {
				rep->files_failed++;
				pr->files_failed++;
				add_failure(rep, name, o->result,
				            o->note ? o->note->detail : NULL, 0, o);
			} else if (rc && rc != -ECANCELED) {
				rep->files_failed++;
				pr->files_failed++;
				add_failure(rep, name, rc,
				            "the job's batch was not started", 0, NULL);
			} else {
				rep->files_unfinished++;
				pr->files_unfinished++;
				add_failure(rep, name, -ECANCELED, "not finished", 1,
				            NULL);
			}
		}
		rep->files_total += m->nfiles;
		pr->files_total += m->nfiles;
	}
	pthread_mutex_unlock(&tr->lock);
}

static double tv_s(struct timeval tv)
{
	return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* Adds the resource use between *a and now to the report. */
static void add_rusage(const struct rusage *a, struct job_report *rep)
{
	struct rusage b;
	getrusage(RUSAGE_SELF, &b);
	rep->usr_s += tv_s(b.ru_utime) - tv_s(a->ru_utime);
	rep->sys_s += tv_s(b.ru_stime) - tv_s(a->ru_stime);
	rep->ctx += (b.ru_nvcsw - a->ru_nvcsw) + (b.ru_nivcsw - a->ru_nivcsw);
	rep->majf += b.ru_majflt - a->ru_majflt;
	rep->minf += b.ru_minflt - a->ru_minflt;
}

bool job_succeeded(const struct job_report *rep)
{
	return !rep->error && rep->files_ok + rep->files_skipped == rep->files_total;
}

struct sstf_config job_engine_config(const struct job_opts *o)
{
	struct sstf_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_transfers = (unsigned)o->parallel;
	cfg.threads = (unsigned)o->threads;
	cfg.ring_depth = (unsigned)o->iodepth;
	cfg.buf_size = (size_t)o->bs;
	cfg.mem_limit = (size_t)o->mem; /* 0: the engine's default */
	cfg.direct_io = (enum sstf_switch)o->direct;
	cfg.fsync = (enum sstf_switch)o->fsync;
	/* The tool's 0 means none; the engine's 0 means its default. */
	cfg.max_retries = o->retries ? (int)o->retries : -1;
	cfg.low_speed_bytes = o->stall_rate > UINT32_MAX ? UINT32_MAX : (unsigned)o->stall_rate;
	cfg.low_speed_time_s = (unsigned)o->stall_time;
	cfg.existing = (enum sstf_existing)o->existing;
	cfg.resume = (enum sstf_switch)o->resume;
	cfg.checkpoint_bytes = o->checkpoint;
	/* The engine's 0 is its default; the tool's 0 keeps nothing spare. */
	cfg.disk_reserve = o->reserve ? o->reserve : 1;
	cfg.split = (unsigned)o->split; /* 1..SSTF_MAX_SPLIT: the table's range */
	cfg.split_min = o->split_min;
	cfg.rate = o->rate; /* 0: none, for the engine as for fio */
	cfg.s3 = o->s3; /* NULL: no s3:// URL; the engine copies it */
	cfg.ca_file = o->cacert; /* NULL: the system store */
	cfg.ca_path = o->capath;
	if (o->cancel_at)
		cfg.progress_interval_ms = CANCEL_PROGRESS_MS;
	return cfg;
}

/* What one loop needs besides the job. */
struct loop_ctx {
	const struct job *job;
	sstf_engine *engine;
	struct tracker *tr;
	struct part *parts;
	size_t nparts;
	struct status *st;
	struct job_report *rep;
};

uint64_t job_total_size(const struct job *job)
{
	return job->peg ? job->peg->total_size : job->m->total_size;
}

/* Bytes part pt's (ended) generation fetched, wrote and hashed; adds them
 * and what it found already on disk to the report, and stores the latter
 * in *present. */
static uint64_t gen_bytes(struct loop_ctx *c, struct part *pt, uint64_t *present)
{
	struct sstf_progress p;
	*present = 0;
	if (sstf_progress(c->engine, pt->gen, &p) != 0)
		return 0;
	c->rep->io_bytes += p.bytes_done;
	c->rep->present_bytes += p.bytes_present;
	if (pt->rep) {
		pt->rep->io_bytes += p.bytes_done;
		pt->rep->present_bytes += p.bytes_present;
	}
	*present = p.bytes_present;
	return p.bytes_done;
}

static int submit_part(struct loop_ctx *c, struct part *pt)
{
	char errbuf[512] = "";
	struct sstf_batch batch = {
		.dest_dir = pt->dest,
		.files = pt->m->files,
		.nfiles = pt->m->nfiles,
		.on_file_done = on_file_done,
		.on_batch_done = on_batch_done,
		.on_progress = c->job->o.cancel_at ? on_progress : NULL,
		.user = pt,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
		/* Entries without their own "url" (url NULL): the engine
		 * joins the source (the partition's URL) and the name. */
		.base_url = pt->base_url,
		.protocols = c->job->o.protocols,
	};
	int rc = sstf_submit(c->engine, &batch, &pt->gen);
	if (rc && pt->pidx >= 0)
		fprintf(stderr, PROG ": %s: partition %ld: submit failed: %s%s%s\n",
		        c->job->o.name, pt->pidx, sstf_strerror(rc),
		        errbuf[0] ? ": " : "", errbuf);
	else if (rc)
		fprintf(stderr, PROG ": %s: submit failed: %s%s%s\n", c->job->o.name,
		        sstf_strerror(rc), errbuf[0] ? ": " : "", errbuf);
	return rc;
}

/*
 * Submits every part's batch, one generation each, so that they run at
 * once. A part that cannot start (a submit error, such as -ENOSPC at
 * admission) keeps the error as its result; the others run regardless, as
 * a node's partitions load independently. Returns how many run.
 */
static size_t submit_all(struct loop_ctx *c, uint64_t cancel_bytes)
{
	size_t running = 0;
	/* Before the first submit: callbacks may run before it returns. */
	tracker_reset(c->tr, cancel_bytes);
	for (size_t k = 0; k < c->nparts; k++) {
		struct part *pt = &c->parts[k];
		pt->rc = submit_part(c, pt);
		pt->submitted = pt->rc == 0;
		running += (size_t)pt->submitted;
	}
	return running;
}

/*
 * Waits for every submitted generation (which has ended or been
 * cancelled), counts its bytes and stores its result in its part. Returns
 * the first part's nonzero result among them, else 0; their bytes, done
 * and already present, in *bytes.
 */
static int end_all(struct loop_ctx *c, uint64_t *bytes)
{
	int rc = 0;
	*bytes = 0;
	for (size_t k = 0; k < c->nparts; k++) {
		struct part *pt = &c->parts[k];
		if (!pt->submitted)
			continue;
		pt->rc = sstf_wait(c->engine, pt->gen, -1);
		pt->submitted = 0;
		uint64_t present;
		*bytes += gen_bytes(c, pt, &present) + present;
		if (pt->rc && !rc)
			rc = pt->rc;
	}
	return rc;
}

/* The loop's result: the first part's nonzero one, else 0. */
static int loop_result(const struct loop_ctx *c)
{
	for (size_t k = 0; k < c->nparts; k++) {
		if (c->parts[k].rc)
			return c->parts[k].rc;
	}
	return 0;
}

/* Redraws the status line from the running generations. */
static void draw(struct loop_ctx *c)
{
	struct sstf_progress p;
	uint64_t open = 0, bytes = 0;
	if (!c->st->enabled)
		return;
	for (size_t k = 0; k < c->nparts; k++) {
		if (!c->parts[k].submitted ||
		    sstf_progress(c->engine, c->parts[k].gen, &p) != 0)
			continue;
		open += p.files_total - p.files_done - p.files_failed;
		/* Bytes already in place (skipped, resumed) are done too. */
		bytes += p.bytes_done + p.bytes_present;
	}
	if (open > c->job->o.parallel)
		open = c->job->o.parallel;
	status_draw(c->st, bytes, open);
}

/*
 * One loop: a generation per part, and with cancel_at (one part only:
 * pegasus_check_opts() refuses it with several) a second one after
 * cancelling the first. Returns the first part's result (0, -ECANCELED
 * when interrupted, the first file error, or a submit error).
 */
static int run_loop(struct loop_ctx *c)
{
	const struct job_opts *o = &c->job->o;
	uint64_t total = job_total_size(c->job);
	/* At least one byte, so that 1% of a tiny set still fires. */
	uint64_t mark = o->cancel_at ? total / 100 * o->cancel_at +
	                                       total % 100 * o->cancel_at / 100
	                             : 0;
	if (o->cancel_at && mark == 0)
		mark = 1;
	size_t running = submit_all(c, o->cancel_at ? mark : 0);

	double next_draw = now_s() + STATUS_MS / 1e3;
	for (;;) {
		if (!running)
			return loop_result(c);
		int ev = tracker_wait(c->tr, running);
		if (job_interrupted) {
			for (size_t k = 0; k < c->nparts; k++) {
				/* Blocks until it is clean. */
				if (c->parts[k].submitted)
					sstf_cancel(c->engine, c->parts[k].gen);
			}
			c->rep->interrupted = 1;
			ev = EV_ENDED;
		}
		/* Before EV_ENDED: the cancelled generation may have ended
		 * already, and it still has to be started over. */
		if (ev & EV_CANCEL_DUE) {
			/* The replica restart: a callback started the cancel;
			 * once nothing of the generation is left, start over
			 * with the whole set. */
			uint64_t b;
			int rc = end_all(c, &b);
			if (rc != -ECANCELED) {
				/* The engine ends a generation cancelled once a
				 * cancel was started; anything else is its own
				 * result, reported as is. */
				c->st->bytes_done += b;
				return rc;
			}
			running = submit_all(c, 0);
			continue;
		}
		if (ev & EV_ENDED) {
			uint64_t b;
			end_all(c, &b);
			c->st->bytes_done += b;
			return loop_result(c);
		}
		if (now_s() >= next_draw) {
			draw(c);
			next_draw = now_s() + STATUS_MS / 1e3;
		}
	}
}

/* What the job's files are checked against (report.h), over its parts. */
static const char *parts_verified(const struct part *parts, size_t n)
{
	const char *v = n ? manifest_verified(parts[0].m) : NULL;
	for (size_t k = 1; k < n; k++) {
		if (strcmp(manifest_verified(parts[k].m), v) != 0)
			return "mixed";
	}
	return v;
}

void job_run(const struct job *job, size_t index, struct status *st,
             struct job_report *rep)
{
	const struct pegasus *peg = job->peg;
	size_t nparts = peg ? peg->nparts : 1;
	struct part *parts = calloc(nparts, sizeof(*parts));
	struct tracker tr;
	pthread_condattr_t ca;
	sstf_engine *engine = NULL;
	size_t nfiles = peg ? peg->nfiles : job->m->nfiles;
	int rc;

	memset(&tr, 0, sizeof(tr));
	rep->opts = &job->o;
	rep->s3 = job->aws ? &job->aws->rep : NULL;
	status_clear(st); /* messages below must not land on the line */
	st->states[index] = 'W';
	pthread_mutex_init(&tr.lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&tr.cond, &ca);
	pthread_condattr_destroy(&ca);
	if (peg)
		rep->parts = calloc(nparts, sizeof(*rep->parts));
	if (!parts || (peg && !rep->parts)) {
		free(parts);
		free(rep->parts);
		rep->parts = NULL;
		fprintf(stderr, PROG ": out of memory\n");
		rep->error = -ENOMEM;
		rep->files_unfinished = rep->files_total = nfiles * job->o.loops;
		goto out_early;
	}
	for (size_t k = 0, base = 0; k < nparts; k++) {
		struct part *pt = &parts[k];
		pt->tr = &tr;
		pt->base = base;
		if (peg) {
			const struct pegasus_part *pp = &peg->parts[k];
			pt->m = pp->m;
			pt->dest = pp->dest;
			pt->base_url = pp->base_url;
			pt->pidx = pp->pidx;
			pt->rep = &rep->parts[k];
			pt->rep->partition = pp->pidx;
			pt->rep->size = pp->m->total_size;
		} else {
			pt->m = job->m;
			pt->dest = job->o.dest;
			pt->base_url = job->o.source;
			pt->pidx = -1;
		}
		base += pt->m->nfiles;
	}
	rep->nparts = peg ? nparts : 0;
	rep->verified = parts_verified(parts, nparts);
	tr.nfiles = nfiles;
	tr.files = calloc(nfiles ? nfiles : 1, sizeof(*tr.files));
	if (!tr.files) {
		rc = -ENOMEM;
		fprintf(stderr, PROG ": out of memory\n");
		goto cannot_start;
	}
	rc = make_dest(&job->o);
	for (size_t k = 0; k < nparts && !rc && peg; k++) {
		char failed[PATH_MAX];
		rc = mkdir_p(parts[k].dest, failed, sizeof(failed));
		if (rc)
			fprintf(stderr, PROG ": %s: dest: cannot create '%s': %s\n",
			        job->o.name, failed, strerror(-rc));
	}
	if (rc)
		goto cannot_start;

	/* The engine's threads inherit a mask blocking SIGINT and SIGTERM, so
	 * that only this thread sees them and engine syscalls never get EINTR
	 * from us. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	struct sstf_config cfg = job_engine_config(&job->o);
	rc = sstf_engine_new(&cfg, &engine);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		fprintf(stderr, PROG ": %s: cannot start the engine: %s\n",
		        job->o.name, sstf_strerror(rc));
		goto cannot_start;
	}
	tr.engine = engine; /* before any callback can run */

	struct loop_ctx c = {
		.job = job,
		.engine = engine,
		.tr = &tr,
		.parts = parts,
		.nparts = nparts,
		.st = st,
		.rep = rep,
	};
	for (uint64_t loop = 0; loop < job->o.loops && !job_interrupted; loop++) {
		for (size_t k = 0; loop > 0 && k < nparts && !rc; k++)
			rc = clear_dest(job->o.name, parts[k].m, parts[k].dest);
		if (rc) {
			rep->error = rc;
			break;
		}
		struct rusage ru;
		getrusage(RUSAGE_SELF, &ru);
		double t0 = now_s();
		rc = run_loop(&c);
		rep->runtime_ns += (uint64_t)((now_s() - t0) * 1e9);
		add_rusage(&ru, rep);
		rep->loops_done++;
		tally(&tr, parts, nparts, rep);
		if (rc && !rep->error)
			rep->error = rc;
		rc = 0;
	}

	struct sstf_stats stats;
	sstf_stats(engine, &stats);
	rep->retries = stats.retries;
	rep->stale_completions = stats.stale_completions;
	rep->cancels = stats.cancels;
	rep->peak_buffers = stats.buffers_peak;
	rep->buffers_total = stats.buffers_total;
	rep->buf_size = stats.buf_size;
	sstf_engine_free(engine);
	goto out;

cannot_start:
	rep->error = rc;
	rep->files_failed = nfiles * job->o.loops;
	rep->files_total = rep->files_failed;
	for (size_t k = 0; k < nparts && rep->parts; k++) {
		rep->parts[k].files_failed = parts[k].m->nfiles * job->o.loops;
		rep->parts[k].files_total = rep->parts[k].files_failed;
	}
out:
	if (job_interrupted && !rep->error)
		rep->error = -ECANCELED;
	/* Loops never run (interrupted, or after an error) leave their files
	 * unfinished. */
	if (rep->files_total < nfiles * job->o.loops) {
		rep->files_unfinished += nfiles * job->o.loops - rep->files_total;
		rep->files_total = nfiles * job->o.loops;
	}
	for (size_t k = 0; k < nparts && rep->parts; k++) {
		struct part_report *pr = &rep->parts[k];
		uint64_t want = parts[k].m->nfiles * job->o.loops;
		if (pr->files_total < want) {
			pr->files_unfinished += want - pr->files_total;
			pr->files_total = want;
		}
	}
	if (tr.oom)
		fprintf(stderr, PROG ": %s: out of memory; latency percentiles "
		                "are incomplete\n",
		        job->o.name);
	lat_summarize(tr.clat.v, tr.clat.n, &rep->clat);
	lat_summarize(tr.ttfb.v, tr.ttfb.n, &rep->ttfb);
	rep->verify_bytes = tr.verify_bytes;
	rep->verify_errors = tr.verify_errors;
	rep->streams_max = tr.streams_max;
	rep->files_split = tr.files_split;
	memcpy(rep->mirror_bytes, tr.mirror_bytes, sizeof(rep->mirror_bytes));
	rep->nmirrors = tr.nmirrors;
	for (size_t i = 0; tr.files && i < tr.nfiles; i++)
		free(tr.files[i].note);
	free(tr.files);
	free(tr.clat.v);
	free(tr.ttfb.v);
	free(parts);
out_early:
	pthread_cond_destroy(&tr.cond);
	pthread_mutex_destroy(&tr.lock);
	st->states[index] = job_succeeded(rep) ? '_' : 'E';
}
