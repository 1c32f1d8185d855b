/*
 * engine.c - the loop thread, the commands it takes, and the public API.
 *
 * Other threads never touch loop-owned state. They hand work to the loop
 * through three lists under the engine lock (submitted generations, cancel
 * requests, the stop flag) and wake it through an eventfd that the ring
 * reads. The loop takes those lists at the top of every turn, so a request
 * made from a callback (on the loop thread itself) is seen on the next turn
 * without a wake-up.
 *
 * Waiting (sstf_cancel, sstf_wait, sstf_engine_free) is a condition variable
 * on generation state: the loop sets ENDED only after the generation's
 * batch-done callback ran and its arena was freed, which is what makes
 * "cancel means finished" (invariant 4) hold when the wait returns.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#include <fcntl.h>

#include "internal.h"

#define REMEMBER_ENDED 1024

static bool on_loop_thread(struct sstf_engine *e)
{
	return pthread_equal(pthread_self(), e->thread);
}

bool sstf__engine_on_loop(struct sstf_engine *e)
{
	return on_loop_thread(e);
}

static void wake(struct sstf_engine *e)
{
	uint64_t one = 1;
	ssize_t n = write(e->efd, &one, sizeof(one));
	(void)n; /* EAGAIN: the counter is saturated, the loop wakes anyway */
}

/* ------------------------------------------------------------------------ */
/* Generation bookkeeping (loop thread) */

static void run_list_push(struct sstf_engine *e, struct sstf__gen *g)
{
	g->run_next = NULL;
	g->on_run_list = true;
	if (e->run_tail)
		e->run_tail->run_next = g;
	else
		e->run_head = g;
	e->run_tail = g;
}

static void run_list_remove(struct sstf_engine *e, struct sstf__gen *g)
{
	if (!g->on_run_list)
		return;
	struct sstf__gen **pp = &e->run_head, *prev = NULL;
	while (*pp && *pp != g) {
		prev = *pp;
		pp = &(*pp)->run_next;
	}
	if (*pp)
		*pp = g->run_next;
	if (e->run_tail == g)
		e->run_tail = prev;
	g->run_next = NULL;
	g->on_run_list = false;
}

static void set_state(struct sstf_engine *e, struct sstf__gen *g,
                      enum sstf__gen_state to)
{
	pthread_mutex_lock(&e->lock);
	sstf__gen_set_state(g, to);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Drops the oldest ended generations nobody waits for. Caller holds lock. */
static void forget_old(struct sstf_engine *e)
{
	if (e->ended_count <= REMEMBER_ENDED)
		return;
	/* The list is newest first: walk to the end, dropping ended ones. */
	unsigned seen = 0;
	for (struct sstf__gen **pp = &e->gens; *pp;) {
		struct sstf__gen *g = *pp;
		if (g->state == SSTF__GEN_ENDED && ++seen > REMEMBER_ENDED && g->waiters == 0 &&
		    !g->cancel_queued) {
			*pp = g->next;
			e->ended_count--;
			sstf__gen_free(&e->alloc, g);
			continue;
		}
		pp = &g->next;
	}
}

static void end_gen(struct sstf_engine *e, struct sstf__gen *g)
{
	/* A cancel asked for before the end counts, even one the loop had not
	 * taken yet: sstf_cancel() promised -ECANCELED to its caller. */
	bool cancelled = g->state == SSTF__GEN_CANCELLING ||
	                 atomic_load(&g->cancel_requested);
	int result = cancelled ? -ECANCELED : g->first_error;
	/* Before the callback: a batch it submits into the same directory
	 * then finds no lock and no temporary of ours. */
	sstf__dest_release(g);
	if (g->on_batch_done)
		g->on_batch_done(g->user, g->id, result);
	sstf__gen_free_arena(&e->alloc, g);
	if (cancelled)
		atomic_fetch_add_explicit(&e->cancels, 1, memory_order_relaxed);
	pthread_mutex_lock(&e->lock);
	g->result = result;
	sstf__gen_set_state(g, SSTF__GEN_ENDED);
	e->ended_count++;
	forget_old(e);
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
}

/* Counts a file's result and tells the caller, unless g is cancelled. */
static void file_result(struct sstf__gen *g, const struct sstf_file_result *r)
{
	if (r->result == 0)
		atomic_fetch_add_explicit(&g->files_done, 1, memory_order_relaxed);
	else
		atomic_fetch_add_explicit(&g->files_failed, 1, memory_order_relaxed);
	if (r->result != 0 && r->result != -ECANCELED && g->first_error == 0)
		g->first_error = r->result;
	/* A generation being cancelled says nothing more but its batch-done. */
	if (atomic_load(&g->cancel_requested) || !g->on_file_done)
		return;
	g->on_file_done(g->user, g->id, r);
}

/* fsync=batch: the files published by g, now that their directories were
 * synced (or failed to be), in the order of the batch. */
static void report_deferred(struct sstf_engine *e, struct sstf__gen *g)
{
	for (size_t i = 0; i < g->nfiles; i++) {
		struct sstf__deferred *d = &g->deferred[i];
		if (!d->pending)
			continue;
		d->pending = false;
		const struct sstf__entry *ent = &g->files[i];
		int err = e->dirs.v[d->dir].err;
		/* Renamed but not durable: it must not stay published. */
		if (err)
			unlinkat(g->dirfd, ent->name, 0);
		unsigned nurls = sstf__entry_nurls(ent);
		struct sstf_file_result r = {
			.index = i,
			.name = ent->name,
			.result = err,
			.http_status = d->http_status,
			.bytes = d->bytes,
			.ttfb_ns = d->ttfb_ns,
			.fetch_ns = d->fetch_ns,
			.retries = d->retries,
			.detail = err ? "fsync of the directory failed" : "",
			.resumed_from = d->resumed_from,
			.streams = d->streams,
			.nmirrors = nurls,
			.mirror_bytes = nurls > 1 ? g->deferred_mirrors + d->mirrors_at : &d->served,
		};
		file_result(g, &r);
	}
}

void sstf__engine_gen_check(struct sstf_engine *e, struct sstf__gen *g)
{
	if (g->state != SSTF__GEN_RUNNING && g->state != SSTF__GEN_CANCELLING)
		return;
	if (g->active || g->inflight)
		return;
	if (g->state == SSTF__GEN_RUNNING && g->next_file < g->nfiles)
		return;
	/* fsync=batch: every directory the batch renamed into is synced
	 * once, now, and only then are its files reported. */
	bool cancelled = g->state == SSTF__GEN_CANCELLING || atomic_load(&g->cancel_requested);
	if (g->dirs_dirty && !cancelled && sstf__dirs_sync_gen(e, g))
		return;
	if (g->deferred && !cancelled)
		report_deferred(e, g);
	sstf__dirs_release_gen(e, g);
	end_gen(e, g);
}

void sstf__engine_file_done(struct sstf_engine *e, struct sstf__file *f, int result)
{
	struct sstf__gen *g = f->gen;
	uint64_t now = sstf__now_ns();
	unsigned nurls = sstf__entry_nurls(f->entry);
	uint64_t ttfb = f->t_first ? f->t_first - f->t_start : 0;
	if (f->deferred) {
		/* fsync=batch: reported at the end (report_deferred). */
		struct sstf__deferred *d = &g->deferred[f->index];
		d->pending = true;
		d->bytes = f->received - f->resumed_from;
		d->ttfb_ns = ttfb;
		d->fetch_ns = now - f->t_start;
		d->resumed_from = f->resumed_from;
		d->retries = f->retries;
		d->streams = (uint16_t)f->streams_peak;
		d->http_status = (int16_t)f->http_status;
		d->dir = (uint32_t)(f->dir - e->dirs.v);
		if (nurls > 1)
			memcpy(g->deferred_mirrors + d->mirrors_at, f->mirror_bytes,
			       nurls * sizeof(f->mirror_bytes[0]));
		else
			d->served = f->mirror_bytes[0];
		return;
	}
	struct sstf_file_result r = {
		.index = f->index,
		.name = f->entry->name,
		.result = result,
		.http_status = f->http_status,
		.bytes = f->received - f->resumed_from,
		.ttfb_ns = ttfb,
		.fetch_ns = now - f->t_start,
		.retries = f->retries,
		.detail = result ? f->detail : "",
		.skipped = f->skipped,
		.resumed_from = f->resumed_from,
		.streams = f->streams_peak,
		.nmirrors = nurls,
		.mirror_bytes = f->mirror_bytes,
	};
	file_result(g, &r);
}

/* fsync=batch: room for every file's deferred result, one allocation per
 * generation (sstf__gen_free_arena frees it). */
static int alloc_deferred(struct sstf_engine *e, struct sstf__gen *g)
{
	size_t nmirrors = 0;
	for (size_t i = 0; i < g->nfiles; i++)
		if (g->files[i].nurls > 1)
			nmirrors += g->files[i].nurls;
	size_t size = g->nfiles * sizeof(*g->deferred) + nmirrors * sizeof(uint64_t);
	void *mem = sstf__alloc(&e->alloc, size ? size : 1);
	if (!mem)
		return -ENOMEM;
	g->deferred = mem;
	g->deferred_mirrors = (uint64_t *)(g->deferred + g->nfiles);
	uint32_t at = 0;
	for (size_t i = 0; i < g->nfiles; i++) {
		if (g->files[i].nurls > 1) {
			g->deferred[i].mirrors_at = at;
			at += g->files[i].nurls;
		}
	}
	return 0;
}

/* A snapshot of g's counters; any thread holding a reference to g. */
static void gen_progress(struct sstf__gen *g, struct sstf_progress *p)
{
	p->bytes_done = atomic_load_explicit(&g->bytes_done, memory_order_relaxed);
	p->bytes_total = g->bytes_total;
	p->files_done = atomic_load_explicit(&g->files_done, memory_order_relaxed);
	p->files_failed = atomic_load_explicit(&g->files_failed, memory_order_relaxed);
	p->files_total = g->files_total;
	p->files_skipped = atomic_load_explicit(&g->files_skipped, memory_order_relaxed);
	p->bytes_present = atomic_load_explicit(&g->bytes_present, memory_order_relaxed);
}

void sstf__engine_progress(struct sstf_engine *e, struct sstf__gen *g)
{
	if (!g->on_progress || atomic_load(&g->cancel_requested))
		return;
	uint64_t now = sstf__now_ns();
	if (now - g->last_progress_ns < (uint64_t)e->cfg.progress_interval_ms * 1000000u)
		return;
	g->last_progress_ns = now;
	struct sstf_progress p;
	gen_progress(g, &p);
	g->on_progress(g->user, g->id, &p);
}


/* ------------------------------------------------------------------------ */
/* Commands (loop thread) */

static void start_gen(struct sstf_engine *e, struct sstf__gen *g)
{
	set_state(e, g, SSTF__GEN_RUNNING);
	if (g->next_file < g->nfiles)
		run_list_push(e, g);
	sstf__engine_gen_check(e, g);
}

static void cancel_gen(struct sstf_engine *e, struct sstf__gen *g)
{
	if (g->state != SSTF__GEN_RUNNING)
		return; /* already cancelling or ended */
	set_state(e, g, SSTF__GEN_CANCELLING);
	run_list_remove(e, g);
	for (uint32_t i = 0; i < e->nfiles; i++) {
		struct sstf__file *f = &e->files[i];
		if (f->gen == g && f->phase != SSTF__X_IDLE)
			sstf__file_abort(e, f, -ECANCELED);
	}
	sstf__engine_gen_check(e, g);
}

/* Takes what other threads (or callbacks) asked for since the last turn. */
static void take_commands(struct sstf_engine *e)
{
	e->local_command = false;
	pthread_mutex_lock(&e->lock);
	struct sstf__gen *submits = e->cmd_head, *cancels = e->cancel_head;
	e->cmd_head = e->cmd_tail = NULL;
	e->cancel_head = NULL;
	if (e->stop_requested && !e->stopping) {
		e->stopping = true;
		/* Cancel everything not ended, the queued ones included. */
		for (struct sstf__gen *g = e->gens; g; g = g->next)
			atomic_store(&g->cancel_requested, true);
	}
	bool stopping = e->stopping;
	pthread_mutex_unlock(&e->lock);

	/* Submits first: a cancel may name a generation submitted just now. */
	while (submits) {
		struct sstf__gen *g = submits;
		submits = g->cmd_next;
		g->cmd_next = NULL;
		start_gen(e, g);
	}
	/* A generation stays marked queued until its cancel ran, so that no
	 * other generation's end forgets it while it waits here. */
	while (cancels) {
		struct sstf__gen *g = cancels;
		cancels = g->cancel_next;
		cancel_gen(e, g);
		pthread_mutex_lock(&e->lock);
		g->cancel_next = NULL;
		g->cancel_queued = false;
		pthread_mutex_unlock(&e->lock);
	}
	if (stopping) {
		/* Gens only leave the list under the lock, from this thread. */
		for (struct sstf__gen *g = e->gens; g; g = g->next)
			if (g->state == SSTF__GEN_RUNNING)
				cancel_gen(e, g);
	}
}

static bool all_ended(struct sstf_engine *e)
{
	bool ended = true;
	pthread_mutex_lock(&e->lock);
	for (struct sstf__gen *g = e->gens; g; g = g->next)
		if (g->state != SSTF__GEN_ENDED)
			ended = false;
	pthread_mutex_unlock(&e->lock);
	return ended;
}

/* ------------------------------------------------------------------------ */
/* The loop */

static void arm_eventfd(struct sstf_engine *e)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	io_uring_prep_read(sqe, e->efd, &e->efd_value, sizeof(e->efd_value), 0);
	sstf__ring_tag(sqe, &e->slots.v[SSTF__CTL_EVENTFD], SSTF__OP_EVENTFD, 0);
}

static void grow_streams(struct sstf_engine *e);

void sstf__engine_want_streams(struct sstf_engine *e, struct sstf__file *f)
{
	f->on_grow = true;
	if (!f->grow_listed) {
		f->grow_listed = true;
		f->grow_next = NULL;
		if (e->grow_tail)
			e->grow_tail->grow_next = f;
		else
			e->grow_head = f;
		e->grow_tail = f;
	}
	/* At once, with the slots free now: a file starts fetching when its
	 * temporary file's open completes, and by the next run phase its
	 * first stream may well have taken every part already. */
	grow_streams(e);
}

/* Gives free stream slots to files that want more streams, in order. A
 * file that no longer wants any (ended, failed, fell back to one stream,
 * no parts left) leaves the list. A split file whose temporary is still
 * being opened holds the list, and start_pending starts no other file
 * meanwhile: the slots free now are its, or the files started behind it
 * (largest first, the small ones behind) would take them all, and its one
 * stream would fetch every part alone. */
static void grow_streams(struct sstf_engine *e)
{
	while (e->grow_head) {
		struct sstf__file *f = e->grow_head;
		if (f->on_grow && !f->err && f->phase == SSTF__X_OPEN)
			return;
		bool wants = f->on_grow && f->phase == SSTF__X_FETCH && !f->err && !f->single &&
		             !f->restart && f->nstreams < f->want_streams &&
		             f->next_part < f->entry->size;
		if (wants) {
			struct sstf__slot *s =
				sstf__slot_alloc(&e->slots, SSTF__SLOT_STREAM, f->gen, f->gen->id);
			if (!s)
				return;
			sstf__stream_attach(e, s->stream, f, false);
			if (f->nstreams < f->want_streams && f->next_part < f->entry->size)
				continue;
		}
		e->grow_head = f->grow_next;
		if (!e->grow_head)
			e->grow_tail = NULL;
		f->grow_next = NULL;
		f->grow_listed = false;
		f->on_grow = false;
	}
}

static void start_pending(struct sstf_engine *e)
{
	grow_streams(e);
	while (e->run_head) {
		struct sstf__gen *g = e->run_head;
		/* A file needs its slot and its first stream's. */
		if (e->slots.used[SSTF__SLOT_FILE] == e->nfiles ||
		    e->slots.used[SSTF__SLOT_STREAM] == e->nstreams || e->grow_head)
			return;
		struct sstf__slot *fs = sstf__slot_alloc(&e->slots, SSTF__SLOT_FILE, g, g->id);
		struct sstf__slot *ss = sstf__slot_alloc(&e->slots, SSTF__SLOT_STREAM, g, g->id);
		size_t index = g->order[g->next_file++];
		if (g->next_file == g->nfiles)
			run_list_remove(e, g);
		sstf__file_start(e, fs->file, ss->stream, g, index);
		grow_streams(e);
	}
}

/* Every source's run(): timers due, finished attempts. */
static void run_sources(struct sstf_engine *e)
{
	uint64_t now = sstf__now_ns();
	for (size_t i = 0; sstf__sources[i]; i++)
		if (sstf__sources[i]->run)
			sstf__sources[i]->run(e, now);
}

static void dispatch(struct sstf_engine *e, uint64_t ud, int res)
{
	struct sstf__slot *s = sstf__slot_resolve(&e->slots, ud);
	if (!s)
		return; /* stale: counted, never followed */
	enum sstf__op op = sstf__tag_opcode(ud);
	sstf__slot_op_end(s);
	switch (s->kind) {
	case SSTF__SLOT_CTL:
		if (op == SSTF__OP_EVENTFD)
			arm_eventfd(e); /* the read is pending until ring exit */
		else
			sstf__timers_on_cqe(e, op, res);
		break;
	case SSTF__SLOT_SOCK:
		s->src->on_slot_cqe(e, s, op, res);
		if (s->state == SSTF__SLOT_DRAINING && s->inflight == 0)
			sstf__slot_set_state(&e->slots, s, SSTF__SLOT_FREE);
		break;
	case SSTF__SLOT_FILE:
		/* A generation can only end with its last file or stream,
		 * whose release checks it: nothing to check here. */
		sstf__file_on_cqe(e, s->file, op, sstf__tag_aux(ud), res);
		break;
	case SSTF__SLOT_STREAM:
		sstf__stream_on_cqe(e, s->stream, op, sstf__tag_aux(ud), res);
		break;
	case SSTF__SLOT_DIR:
		sstf__dir_on_cqe(e, s->dir, res);
		break;
	case SSTF__SLOT_KINDS:
		break;
	}
}

/*
 * True when the loop has work it can do now, without a completion: a
 * callback queued a command, a file waits for a slot that is free, a
 * source has work (its ready(): one that ran may hold a finished attempt,
 * or its timer is due), or a retry's backoff ended.
 */
static bool work_ready(struct sstf_engine *e)
{
	if (e->local_command)
		return true;
	/* A file or stream that ended in the last run of the sources left a
	 * slot that a waiting file can take now. */
	bool stream_free = e->slots.used[SSTF__SLOT_STREAM] < e->nstreams;
	if (e->run_head && stream_free && e->slots.used[SSTF__SLOT_FILE] < e->nfiles)
		return true;
	if (e->grow_head && stream_free)
		return true;
	for (size_t i = 0; sstf__sources[i]; i++)
		if (sstf__sources[i]->ready && sstf__sources[i]->ready(e))
			return true;
	struct sstf__timers *t = &e->timers;
	return t->n && t->heap[0]->wake_ns <= sstf__now_ns();
}

/* Most io-wq workers an engine asks for: each is a kernel thread. */
#define SSTF__IOWQ_MAX_WORKERS 512u

/* Passes of the loop's run phase before completions get their turn. */
#define MAX_PASSES 8

static void *loop_main(void *arg)
{
	struct sstf_engine *e = arg;
	int ret = sstf__ring_init(&e->ring, e->cfg.ring_depth, &e->ring_flags);
	if (ret == 0) {
		sstf__ring_probe(&e->ring, &e->ring_cut, &e->ring_xattr);
		struct iovec *iov = sstf__alloc(&e->alloc, e->pool.n * sizeof(*iov));
		if (iov) {
			for (uint32_t i = 0; i < e->pool.n; i++) {
				iov[i].iov_base = sstf__pool_buf(&e->pool, (int)i);
				iov[i].iov_len = e->pool.bs;
			}
			/* Without registration (memlock limits) plain writes do. */
			e->pool.fixed = io_uring_register_buffers(&e->ring, iov, e->pool.n) == 0;
			sstf__free(&e->alloc, iov);
		}
		/* The opens, writes and syncs that cannot complete inline run
		 * on io-wq's bounded workers, 4 per CPU by default. On small
		 * files each file needs a create, a write, an fdatasync, a
		 * rename and a share of a directory fsync there, and 8 workers
		 * serialised them: let every file and directory slot have one
		 * in flight, so the filesystem can gather their journal
		 * commits. The write budget (sink.c) keeps what a cancel must
		 * wait for as small as with 8. Older kernels refuse the call
		 * and keep their default. */
		unsigned workers[2] = {e->nfiles + e->dirs.n, 0};
		if (workers[0] > SSTF__IOWQ_MAX_WORKERS)
			workers[0] = SSTF__IOWQ_MAX_WORKERS;
		(void)io_uring_register_iowq_max_workers(&e->ring, workers);
		(void)sstf__slot_alloc(&e->slots, SSTF__SLOT_CTL, NULL, 0); /* eventfd */
		(void)sstf__slot_alloc(&e->slots, SSTF__SLOT_CTL, NULL, 0); /* timer */
		arm_eventfd(e);
	}
	pthread_mutex_lock(&e->lock);
	e->startup_err = ret;
	e->started = true;
	pthread_cond_broadcast(&e->cond);
	pthread_mutex_unlock(&e->lock);
	if (ret < 0)
		return NULL;

	for (;;) {
		/*
		 * Invariant 9: run everything that can make progress until
		 * nothing is left that could run without waiting, and only
		 * then sleep. Each pass may create work for the next (a
		 * collected transfer frees a slot and runs callbacks that
		 * submit; starting an attempt may arm a source's timer at 0), so
		 * passes repeat; a cap keeps completions from starving.
		 */
		int pass = 0;
		bool more;
		do {
			take_commands(e);
			if (e->stopping && all_ended(e))
				return NULL;
			sstf__timers_run(e, sstf__now_ns());
			run_sources(e);
			sstf__stream_resume_paused(e);
			start_pending(e);
			run_sources(e);
			more = work_ready(e);
		} while (more && ++pass < MAX_PASSES);
		/* For what this turn scheduled: backoffs, the sources' timers, the
		 * rate limit's next tokens. */
		sstf__timers_arm(e, sstf__stream_tokens_at(e));

		if (more)
			io_uring_submit_and_get_events(&e->ring);
		else
			io_uring_submit_and_wait(&e->ring, 1);

		struct io_uring_cqe *cqe;
		while (io_uring_peek_cqe(&e->ring, &cqe) == 0) {
			uint64_t ud = cqe->user_data;
			int res = cqe->res;
			io_uring_cqe_seen(&e->ring, cqe);
			dispatch(e, ud, res);
		}
		atomic_store_explicit(&e->buffers_peak, e->pool.used_peak,
		                      memory_order_relaxed);
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Public API */

static bool is_pow2(size_t v)
{
	return v && !(v & (v - 1));
}

int sstf__bad_config(char *errbuf, size_t len, const char *fmt, ...)
{
	if (errbuf && len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, len, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

/* Bytes of physical memory, 0 when unknown. */
static uint64_t physical_memory(void)
{
	long pages = sysconf(_SC_PHYS_PAGES), size = sysconf(_SC_PAGESIZE);
	return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

/* Fills in the defaults of a zeroed field and checks every field. */
static int resolve_config(struct sstf_config *c, char *errbuf, size_t len)
{
	if (!c->max_transfers)
		c->max_transfers = SSTF_DEFAULT_MAX_TRANSFERS;
	if (!c->max_host_conns)
		c->max_host_conns = c->max_transfers;
	if (!c->buf_size)
		c->buf_size = SSTF_DEFAULT_BUF_SIZE;
	if (!c->mem_limit) {
		c->mem_limit = SSTF_DEFAULT_MEM_LIMIT;
		if (c->mem_limit < 2 * c->max_transfers * c->buf_size)
			c->mem_limit = 2 * c->max_transfers * c->buf_size;
	}
	if (!c->ring_depth)
		c->ring_depth = SSTF_DEFAULT_RING_DEPTH;
	if (!c->connect_timeout_ms)
		c->connect_timeout_ms = 10000;
	if (!c->low_speed_bytes)
		c->low_speed_bytes = 1024;
	if (!c->low_speed_time_s)
		c->low_speed_time_s = 30;
	if (!c->progress_interval_ms)
		c->progress_interval_ms = 250;
	if (c->max_retries == 0)
		c->max_retries = SSTF_DEFAULT_MAX_RETRIES;
	else if (c->max_retries < 0)
		c->max_retries = 0;
	if (!c->disk_reserve)
		c->disk_reserve = SSTF_DEFAULT_DISK_RESERVE;
	if (!c->checkpoint_bytes)
		c->checkpoint_bytes = SSTF_DEFAULT_CHECKPOINT_BYTES;
	if (!c->split)
		c->split = SSTF_DEFAULT_SPLIT;
	if (!c->split_min)
		c->split_min = SSTF_DEFAULT_SPLIT_MIN;
	if (!c->threads)
		c->threads = 1;

	for (size_t k = 0; k < sizeof(c->reserved) / sizeof(c->reserved[0]); k++)
		if (c->reserved[k])
			return sstf__bad_config(errbuf, len,
			                  "reserved[%zu] is not zero: zero the struct (a newer "
			                  "header than this library?)",
			                  k);
	if (c->reserved32)
		return sstf__bad_config(errbuf, len,
		                  "reserved32 is not zero: zero the struct (a newer header "
		                  "than this library?)");
	if (c->threads > SSTF_MAX_THREADS || c->threads > c->max_transfers)
		return sstf__bad_config(errbuf, len,
		                  "threads=%u: from 1 to %u, and at most max_transfers (%u): "
		                  "each loop needs a transfer of its own",
		                  c->threads, SSTF_MAX_THREADS, c->max_transfers);
	if (c->split > SSTF_MAX_SPLIT)
		return sstf__bad_config(errbuf, len, "split=%u: from 1 to %u", c->split, SSTF_MAX_SPLIT);

	if (c->max_transfers > SSTF_MAX_TRANSFERS)
		return sstf__bad_config(errbuf, len, "max_transfers=%u: at most %u", c->max_transfers,
		                  SSTF_MAX_TRANSFERS);
	if (c->max_host_conns > 2 * SSTF_MAX_TRANSFERS)
		return sstf__bad_config(errbuf, len, "max_host_conns=%u: at most %u", c->max_host_conns,
		                  2 * SSTF_MAX_TRANSFERS);
	if (c->max_retries > 1000)
		return sstf__bad_config(errbuf, len, "max_retries=%d: at most 1000", c->max_retries);
	if (!is_pow2(c->buf_size) || c->buf_size < SSTF_MIN_BUF_SIZE ||
	    c->buf_size > SSTF_MAX_BUF_SIZE)
		return sstf__bad_config(errbuf, len,
		                  "buf_size=%zu: a power of two from %u to %u bytes", c->buf_size,
		                  SSTF_MIN_BUF_SIZE, SSTF_MAX_BUF_SIZE);
	size_t nbufs = c->mem_limit / c->buf_size;
	/* Two buffers per transfer: one filling while one is being written. */
	if (nbufs < 2u * c->max_transfers || nbufs > SSTF_MAX_BUFFERS)
		return sstf__bad_config(errbuf, len,
		                  "mem_limit=%zu holds %zu buffers of %zu bytes; it must hold "
		                  "2 per transfer (%u) and at most %u",
		                  c->mem_limit, nbufs, c->buf_size, 2 * c->max_transfers,
		                  SSTF_MAX_BUFFERS);
	/* Buffers are allocated and touched at once: a pool larger than the
	 * machine's memory can only end in the OOM killer. */
	uint64_t phys = physical_memory();
	if (phys && c->mem_limit > phys)
		return sstf__bad_config(errbuf, len,
		                  "mem_limit=%zu is more than this machine's %" PRIu64
		                  " bytes of memory",
		                  c->mem_limit, phys);
	if (c->checkpoint_bytes > ((uint64_t)1 << 40))
		return sstf__bad_config(errbuf, len, "checkpoint_bytes=%" PRIu64 ": at most 1 TiB",
		                  c->checkpoint_bytes);
	/* A checkpoint falls where a buffer ends. */
	c->checkpoint_bytes = (c->checkpoint_bytes + c->buf_size - 1) / c->buf_size * c->buf_size;
	if (c->existing > SSTF_EXISTING_REFETCH)
		return sstf__bad_config(errbuf, len,
		                  "existing=%d: SSTF_EXISTING_TRUST, _REHASH or _REFETCH",
		                  (int)c->existing);
	if (c->admission > SSTF_OFF)
		return sstf__bad_config(errbuf, len, "admission=%d: SSTF_DEFAULT, SSTF_ON or SSTF_OFF",
		                  (int)c->admission);
	if (c->resume > SSTF_OFF)
		return sstf__bad_config(errbuf, len, "resume=%d: SSTF_DEFAULT, SSTF_ON or SSTF_OFF",
		                  (int)c->resume);
	if (c->ring_depth < 8 || c->ring_depth > 32768)
		return sstf__bad_config(errbuf, len, "ring_depth=%u: from 8 to 32768", c->ring_depth);
	if (c->direct_io > SSTF_OFF)
		return sstf__bad_config(errbuf, len, "direct_io=%d: SSTF_DEFAULT, SSTF_ON or SSTF_OFF",
		                  (int)c->direct_io);
	if (c->fsync > SSTF_FSYNC_BATCH)
		return sstf__bad_config(errbuf, len,
		                  "fsync=%d: SSTF_DEFAULT, SSTF_ON, SSTF_OFF or SSTF_FSYNC_BATCH",
		                  (int)c->fsync);
	const struct sstf_allocator *a = c->allocator;
	if (a && (!a->alloc || !a->alloc_aligned || !a->free_fn))
		return sstf__bad_config(errbuf, len, "allocator: alloc, alloc_aligned and free_fn "
		                               "must all be set");
	return sstf__net_check(c, errbuf, len);
}

int sstf__config_resolve(struct sstf_config *c, char *errbuf, size_t len)
{
	return resolve_config(c, errbuf, len);
}

int sstf_config_check(const struct sstf_config *config, char *errbuf, size_t errbuf_len)
{
	struct sstf_config c;
	if (config)
		c = *config;
	else
		memset(&c, 0, sizeof(c));
	return resolve_config(&c, errbuf, errbuf_len);
}

static void engine_destroy(struct sstf_engine *e)
{
	for (size_t i = 0; sstf__sources[i]; i++)
		if (sstf__sources[i]->fini && e->src_state[i])
			sstf__sources[i]->fini(e);
	for (uint32_t i = 0; e->files && i < e->nfiles; i++)
		sstf__hasher_fini(&e->files[i].hasher);
	sstf__free(&e->alloc, e->files);
	sstf__free(&e->alloc, e->streams);
	sstf__timers_fini(&e->timers, &e->alloc);
	sstf__dirs_fini(e);
	sstf__pool_fini(&e->pool, &e->alloc);
	sstf__slots_fini(&e->slots, &e->alloc);
	if (e->efd >= 0)
		close(e->efd);
	while (e->gens) {
		struct sstf__gen *g = e->gens;
		e->gens = g->next;
		sstf__gen_free(&e->alloc, g);
	}
	sstf__net_fini(&e->net, &e->alloc);
	pthread_mutex_destroy(&e->lock);
	pthread_cond_destroy(&e->cond);
	struct sstf_allocator a = e->alloc;
	sstf__free(&a, e);
}

int sstf_engine_new(const struct sstf_config *config, sstf_engine **out)
{
	struct sstf_config cfg;
	if (config)
		cfg = *config;
	else
		memset(&cfg, 0, sizeof(cfg));
	int ret = resolve_config(&cfg, NULL, 0);
	if (ret < 0)
		return ret;
	if (cfg.threads > 1)
		return sstf__group_new(&cfg, out);
	struct sstf_allocator a = {0};
	if (cfg.allocator)
		a = *cfg.allocator;
	cfg.allocator = NULL;

	struct sstf_engine *e = sstf__alloc(&a, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->cfg = cfg;
	e->alloc = a;
	e->efd = -1;
	/* The caller's strings may go as soon as we return. */
	e->cfg.s3 = NULL;
	e->cfg.ca_file = e->cfg.ca_path = NULL;
	e->next_gen_id = 1;
	atomic_init(&e->cancels, 0);
	atomic_init(&e->retries, 0);
	atomic_init(&e->buffers_peak, 0);
	pthread_mutex_init(&e->lock, NULL);
	sstf__cond_init(&e->cond);

	ret = sstf__net_init(&e->net, &a, &cfg);
	if (ret < 0)
		goto fail;

	/* Streams count against max_transfers: a file takes one stream to
	 * start, a split file more while they are free. A file whose bytes
	 * are in and verified gives its stream back and keeps only its file
	 * slot while its writes land and it is synced and renamed (on small
	 * files that takes longer than the fetch), so there are up to three
	 * file slots per stream, and a directory slot per file slot
	 * (dirsync.c), as the tag's slot bits allow. */
	e->nstreams = cfg.max_transfers;
	/* A stream's source may hold a few sockets (happy eyeballs, a
	 * redirect, idle connections kept for reuse): size the SOCK slots
	 * for it. */
	uint32_t nsock = 4 * cfg.max_transfers + cfg.max_host_conns + 16;
	uint32_t fixed = SSTF__NCTL + e->nstreams + nsock;
	uint32_t room = fixed < SSTF__MAX_SLOTS ? SSTF__MAX_SLOTS - fixed : 0;
	e->nfiles = 3 * cfg.max_transfers;
	if (e->nfiles > room / 2)
		e->nfiles = room / 2 > cfg.max_transfers ? room / 2 : cfg.max_transfers;
	uint32_t ndirs = room > e->nfiles ? room - e->nfiles : 0;
	if (ndirs > e->nfiles)
		ndirs = e->nfiles;
	ret = sstf__slots_init(&e->slots, &a, SSTF__NCTL, e->nfiles, e->nstreams, nsock, ndirs);
	if (ret < 0)
		goto fail;
	ret = sstf__dirs_init(e, fixed + e->nfiles, ndirs);
	if (ret < 0)
		goto fail;
	e->files = sstf__alloc_aligned(&a, 64, e->nfiles * sizeof(*e->files));
	e->streams = sstf__alloc(&a, e->nstreams * sizeof(*e->streams));
	if (!e->files || !e->streams) {
		ret = -ENOMEM;
		goto fail;
	}
	for (uint32_t i = 0; i < e->nfiles; i++) {
		struct sstf__file *f = &e->files[i];
		struct sstf__slot *s = &e->slots.v[SSTF__NCTL + i];
		f->engine = e;
		f->slot = s;
		f->fd = f->pdirfd = f->chkfd = -1;
		s->file = f;
		/* MD5's context, made once per slot: no file allocates. */
		ret = sstf__hasher_init(&f->hasher);
		if (ret < 0)
			goto fail;
	}
	for (uint32_t i = 0; i < e->nstreams; i++) {
		struct sstf__stream *st = &e->streams[i];
		struct sstf__slot *s = &e->slots.v[SSTF__NCTL + e->nfiles + i];
		st->engine = e;
		st->slot = s;
		st->index = i;
		st->cur_buf = -1;
		s->stream = st;
	}
	ret = sstf__pool_init(&e->pool, &a, cfg.buf_size, (uint32_t)(cfg.mem_limit / cfg.buf_size));
	if (ret < 0)
		goto fail;
	/* Parts small enough that the streams of one split file, all but the
	 * one at the frontier, hold a part each within the pool's half that
	 * may run ahead; no more than 16 MiB, so requests stay few. */
	e->part_size = (uint64_t)e->pool.ahead_max * cfg.buf_size / cfg.split;
	if (e->part_size > ((uint64_t)16 << 20))
		e->part_size = (uint64_t)16 << 20;
	e->part_size -= e->part_size % cfg.buf_size;
	if (e->part_size < cfg.buf_size)
		e->part_size = cfg.buf_size;
	ret = sstf__timers_init(&e->timers, &a, e->nstreams);
	if (ret < 0)
		goto fail;
	sstf__rate_init(&e->rate, cfg.rate,
	                cfg.buf_size > 256 * 1024 ? cfg.buf_size : 256 * 1024);
	sstf__stream_seed(e);
	for (size_t i = 0; sstf__sources[i]; i++) {
		if (!sstf__sources[i]->init)
			continue;
		ret = sstf__sources[i]->init(e);
		if (ret < 0)
			goto fail;
	}
	e->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (e->efd < 0) {
		ret = -errno;
		goto fail;
	}
	ret = -pthread_create(&e->thread, NULL, loop_main, e);
	if (ret < 0)
		goto fail;
	pthread_mutex_lock(&e->lock);
	while (!e->started)
		pthread_cond_wait(&e->cond, &e->lock);
	ret = e->startup_err;
	pthread_mutex_unlock(&e->lock);
	if (ret < 0) {
		pthread_join(e->thread, NULL);
		goto fail;
	}
	*out = e;
	return 0;
fail:
	engine_destroy(e);
	return ret;
}

void sstf__engine_stop(struct sstf_engine *e)
{
	pthread_mutex_lock(&e->lock);
	e->stop_requested = true;
	pthread_mutex_unlock(&e->lock);
	wake(e);
}

void sstf_engine_free(sstf_engine *e)
{
	if (!e)
		return;
	if (e->group) {
		sstf__group_free(e);
		return;
	}
	if (on_loop_thread(e)) {
		fprintf(stderr, "sstfetch: sstf_engine_free() called from a callback\n");
		abort();
	}
	sstf__engine_stop(e);
	pthread_join(e->thread, NULL);
	io_uring_queue_exit(&e->ring);
	engine_destroy(e);
}

int sstf__submit_prepare(struct sstf_engine *e, const struct sstf_batch *batch,
                         const struct sstf__siblings *sib, struct sstf__gen **out)
{
	pthread_mutex_lock(&e->lock);
	uint64_t id = e->next_gen_id++;
	bool stopping = e->stop_requested;
	pthread_mutex_unlock(&e->lock);
	if (stopping)
		return -ESHUTDOWN;
	struct sstf__gen *g;
	int ret = sstf__gen_new(&e->alloc, batch, id, &g);
	if (ret < 0)
		return ret;
	if (e->cfg.fsync == SSTF_FSYNC_BATCH && (ret = alloc_deferred(e, g)) < 0) {
		sstf__gen_free(&e->alloc, g);
		return ret;
	}
	ret = sstf__dest_prepare(&e->alloc, &e->cfg, g, sib, batch->errbuf, batch->errbuf_len);
	if (ret < 0) {
		sstf__gen_free(&e->alloc, g);
		return ret;
	}
	*out = g;
	return 0;
}

void sstf__submit_abandon(struct sstf_engine *e, struct sstf__gen *g)
{
	sstf__dest_release(g);
	sstf__gen_free(&e->alloc, g);
}

void sstf__submit_start(struct sstf_engine *e, struct sstf__gen *g)
{
	pthread_mutex_lock(&e->lock);
	g->next = e->gens;
	e->gens = g;
	if (e->cmd_tail)
		e->cmd_tail->cmd_next = g;
	else
		e->cmd_head = g;
	e->cmd_tail = g;
	pthread_mutex_unlock(&e->lock);
	/* From a callback the loop is running: it takes the command before
	 * it sleeps again, because of the flag. */
	if (on_loop_thread(e))
		e->local_command = true;
	else
		wake(e);
}

int sstf_submit(sstf_engine *e, const struct sstf_batch *batch, uint64_t *gen)
{
	if (!e || !batch || !gen)
		return -EINVAL;
	if (e->group)
		return sstf__group_submit(e, batch, gen);
	struct sstf__gen *g;
	int ret = sstf__submit_prepare(e, batch, NULL, &g);
	if (ret < 0)
		return ret;
	/* Read before the start: from then on the loop may end and forget g. */
	*gen = g->id;
	sstf__submit_start(e, g);
	return 0;
}

static struct sstf__gen *find_gen(struct sstf_engine *e, uint64_t id)
{
	for (struct sstf__gen *g = e->gens; g; g = g->next)
		if (g->id == id)
			return g;
	return NULL;
}

int sstf__cancel(struct sstf_engine *e, uint64_t id, bool wait)
{
	bool loop = on_loop_thread(e);
	pthread_mutex_lock(&e->lock);
	struct sstf__gen *g = find_gen(e, id);
	if (!g) {
		pthread_mutex_unlock(&e->lock);
		return -SSTF_ENOSUCHGEN;
	}
	if (g->state == SSTF__GEN_ENDED) {
		pthread_mutex_unlock(&e->lock);
		return 0;
	}
	atomic_store(&g->cancel_requested, true);
	if (!g->cancel_queued) {
		g->cancel_queued = true;
		g->cancel_next = e->cancel_head;
		e->cancel_head = g;
	}
	if (loop) {
		pthread_mutex_unlock(&e->lock);
		e->local_command = true; /* taken before the loop sleeps */
		return -EINPROGRESS;
	}
	if (!wait) {
		pthread_mutex_unlock(&e->lock);
		wake(e);
		return -EINPROGRESS;
	}
	g->waiters++;
	wake(e);
	while (g->state != SSTF__GEN_ENDED)
		pthread_cond_wait(&e->cond, &e->lock);
	g->waiters--;
	pthread_mutex_unlock(&e->lock);
	return 0;
}

int sstf_cancel(sstf_engine *e, uint64_t id)
{
	if (!e)
		return -EINVAL;
	if (e->group)
		return sstf__group_cancel(e, id);
	return sstf__cancel(e, id, true);
}

void sstf__cond_init(pthread_cond_t *cond)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cond, &ca);
	pthread_condattr_destroy(&ca);
}

void sstf__wait_deadline(struct timespec *deadline, int timeout_ms)
{
	clock_gettime(CLOCK_MONOTONIC, deadline);
	if (timeout_ms > 0) {
		deadline->tv_sec += timeout_ms / 1000;
		deadline->tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
		if (deadline->tv_nsec >= 1000000000L) {
			deadline->tv_sec++;
			deadline->tv_nsec -= 1000000000L;
		}
	}
}

int sstf__wait_step(pthread_cond_t *cond, pthread_mutex_t *lock, int timeout_ms,
                    const struct timespec *deadline)
{
	if (timeout_ms < 0)
		return pthread_cond_wait(cond, lock);
	if (timeout_ms == 0)
		return ETIMEDOUT;
	return pthread_cond_timedwait(cond, lock, deadline);
}

int sstf_wait(sstf_engine *e, uint64_t id, int timeout_ms)
{
	if (!e)
		return -EINVAL;
	if (e->group)
		return sstf__group_wait(e, id, timeout_ms);
	if (on_loop_thread(e))
		return -EDEADLK;
	struct timespec deadline;
	sstf__wait_deadline(&deadline, timeout_ms);
	pthread_mutex_lock(&e->lock);
	struct sstf__gen *g = find_gen(e, id);
	if (!g) {
		pthread_mutex_unlock(&e->lock);
		return -SSTF_ENOSUCHGEN;
	}
	g->waiters++;
	int ret = 0;
	while (g->state != SSTF__GEN_ENDED && ret == 0)
		ret = sstf__wait_step(&e->cond, &e->lock, timeout_ms, &deadline);
	int result = g->state == SSTF__GEN_ENDED ? g->result : -ETIMEDOUT;
	g->waiters--;
	pthread_mutex_unlock(&e->lock);
	return result;
}

int sstf_progress(sstf_engine *e, uint64_t id, struct sstf_progress *out)
{
	if (!e || !out)
		return -EINVAL;
	if (e->group)
		return sstf__group_progress(e, id, out);
	pthread_mutex_lock(&e->lock);
	struct sstf__gen *g = find_gen(e, id);
	if (g)
		gen_progress(g, out);
	pthread_mutex_unlock(&e->lock);
	return g ? 0 : -SSTF_ENOSUCHGEN;
}

int sstf_set_rate(sstf_engine *e, uint64_t bytes_per_s)
{
	if (!e)
		return -EINVAL;
	if (e->group)
		return sstf__group_set_rate(e, bytes_per_s);
	sstf__rate_set(&e->rate, bytes_per_s);
	if (on_loop_thread(e))
		e->local_command = true; /* looked at before the loop sleeps */
	else
		wake(e);
	return 0;
}

int sstf_stats(sstf_engine *e, struct sstf_stats *out)
{
	if (!e || !out)
		return -EINVAL;
	if (e->group)
		return sstf__group_stats(e, out);
	memset(out, 0, sizeof(*out));
	out->stale_completions = atomic_load(&e->slots.stale);
	out->cancels = atomic_load(&e->cancels);
	out->retries = atomic_load(&e->retries);
	out->buffers_total = e->pool.n;
	out->buffers_peak = atomic_load(&e->buffers_peak);
	out->buf_size = e->pool.bs;
	out->fixed_buffers = e->pool.fixed;
	out->ring_flags = (int)e->ring_flags;
	return 0;
}
