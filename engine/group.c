/*
 * group.c - threads > 1: several loops behind one engine handle.
 *
 * Each loop is a whole single-loop engine (engine.c): its own thread, ring,
 * curl multi, slot table, buffer pool, timers and rate bucket. The group
 * splits the engine-wide totals between them (loop_config) and spreads each
 * batch over them (assign): one generation per loop that gets files, a
 * "part", all under one id of the group's. Nothing on a loop's path per
 * byte or per file is shared with another loop; what is shared is taken
 * once per callback (cb_lock) or per generation (lock).
 *
 * What the API promises, and how it holds across loops:
 *
 *   - Cancel means finished, everywhere (invariant 4). Each part drains on
 *     its own loop as any generation does; the group's generation ends
 *     (on_batch_done, then sstf_wait and sstf_cancel return) only once
 *     every part has ended, and a waiter then also waits for each part's
 *     memory to be reclaimed. `parts_left` is the drain count that spans
 *     the loops.
 *   - Callbacks never run two at once: every forwarded callback holds
 *     cb_lock. Once a cancel is asked for, no part forwards file-done or
 *     progress, even one that was waiting for the lock.
 *   - sstf_submit() is all or nothing: every part is prepared (validated,
 *     its destination locked, swept and admitted) before any starts, and
 *     one that fails abandons the others, so no callback ever runs for a
 *     refused batch.
 *   - Admission counts the whole batch: each part's check adds the bytes
 *     of the other parts. The sweep of dead writers keeps the partials of
 *     other parts' files for their own submit, so a crashed fetch resumes
 *     whichever loop its files land on.
 *
 * Lock order: cb_lock, then the group's lock, then a loop's engine lock.
 * Loops never hold their engine lock while they call a callback.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "internal.h"

#define REMEMBER_ENDED 1024
/* What a file costs beyond its bytes when work is spread over the loops:
 * its request, open, sync and rename are worth about this many bytes of
 * transfer, so a set of many small files spreads by count and a set of
 * large ones by bytes. */
#define FILE_COST ((uint64_t)256 * 1024)

struct ggen;

/* One loop's share of a generation. */
struct part {
	struct ggen *gg;
	struct sstf_engine *loop;
	uint64_t id;          /* the part's generation on its loop */
	size_t *index;        /* the part's batch index -> the caller's */
	uint64_t bytes_total, files_total; /* its size, known at submit */
	struct sstf_progress final; /* at its end; under the group lock */
	bool ended;                 /* under the group lock */
};

/* A generation of the group. */
struct ggen {
	struct ggen *next;
	uint64_t id;
	struct sstf__group *grp;
	sstf_file_done_cb on_file_done;
	sstf_batch_done_cb on_batch_done;
	sstf_progress_cb on_progress;
	void *user;
	_Atomic bool cancel_requested;
	/* Under cb_lock. */
	int first_error;
	bool part_cancelled;
	uint64_t last_progress_ns;
	/* Under the group lock. */
	unsigned parts_left;
	bool ended;
	int result;
	int waiters;
	struct sstf_progress final;
	size_t *index_mem; /* every part's index, freed at the end */
	unsigned nparts;
	struct part part[];
};

struct sstf__group {
	struct sstf_allocator alloc;
	unsigned n;
	unsigned progress_interval_ms;
	unsigned max_transfers;
	pthread_mutex_t cb_lock; /* one caller's callback at a time */
	pthread_mutex_t lock;    /* the fields below, every ggen's state */
	pthread_cond_t cond;     /* a generation ended */
	struct ggen *gens;       /* newest first */
	uint64_t next_id;
	unsigned ended_count;
	bool stopping;
	struct sstf_engine *loops[];
};

/* ------------------------------------------------------------------------ */
/* Configuration */

/*
 * Loop k's share of the resolved config c: max_transfers / n transfers
 * (the remainder to the first loops), and buffers, host connections and
 * rate in proportion to them. Each loop's pool then holds two buffers per
 * transfer whenever the whole does.
 */
static void loop_config(const struct sstf_config *c, unsigned k, struct sstf_config *out)
{
	unsigned n = c->threads;
	*out = *c;
	out->threads = 1;
	unsigned t = c->max_transfers / n + (k < c->max_transfers % n);
	out->max_transfers = t;
	uint64_t nbufs = c->mem_limit / c->buf_size;
	out->mem_limit = (size_t)(nbufs * t / c->max_transfers) * c->buf_size;
	unsigned conns = (unsigned)((uint64_t)c->max_host_conns * t / c->max_transfers);
	out->max_host_conns = conns ? conns : 1;
	out->rate = c->rate ? (c->rate * t / c->max_transfers ? c->rate * t / c->max_transfers : 1)
	                    : 0;
	/* Resolved, 0 means no retries; given to sstf_engine_new(), the
	 * default. */
	if (out->max_retries == 0)
		out->max_retries = -1;
}

static bool on_a_loop(const struct sstf__group *grp)
{
	for (unsigned k = 0; k < grp->n; k++)
		if (grp->loops[k] && sstf__engine_on_loop(grp->loops[k]))
			return true;
	return false;
}

int sstf__group_new(const struct sstf_config *c, sstf_engine **out)
{
	struct sstf_allocator a = {0};
	if (c->allocator)
		a = *c->allocator;
	struct sstf_engine *e = sstf__alloc(&a, sizeof(*e));
	struct sstf__group *grp =
		sstf__alloc(&a, sizeof(*grp) + c->threads * sizeof(grp->loops[0]));
	if (!e || !grp) {
		sstf__free(&a, e);
		sstf__free(&a, grp);
		return -ENOMEM;
	}
	e->group = grp;
	e->alloc = a;
	e->efd = -1;
	grp->alloc = a;
	grp->n = c->threads;
	grp->progress_interval_ms = c->progress_interval_ms;
	grp->max_transfers = c->max_transfers;
	grp->next_id = 1;
	pthread_mutex_init(&grp->cb_lock, NULL);
	pthread_mutex_init(&grp->lock, NULL);
	sstf__cond_init(&grp->cond);
	int ret = 0;
	for (unsigned k = 0; k < grp->n && ret == 0; k++) {
		struct sstf_config lc;
		loop_config(c, k, &lc);
		ret = sstf_engine_new(&lc, &grp->loops[k]);
	}
	if (ret < 0) {
		sstf__group_free(e);
		return ret;
	}
	*out = e;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Generations (caller threads and loops) */

static struct ggen *find(struct sstf__group *grp, uint64_t id)
{
	for (struct ggen *gg = grp->gens; gg; gg = gg->next)
		if (gg->id == id)
			return gg;
	return NULL;
}

/* Drops the oldest ended generations nobody waits for. Caller holds lock. */
static void forget_old(struct sstf__group *grp)
{
	if (grp->ended_count <= REMEMBER_ENDED)
		return;
	unsigned seen = 0;
	for (struct ggen **pp = &grp->gens; *pp;) {
		struct ggen *gg = *pp;
		if (gg->ended && ++seen > REMEMBER_ENDED && gg->waiters == 0) {
			*pp = gg->next;
			grp->ended_count--;
			sstf__free(&grp->alloc, gg);
			continue;
		}
		pp = &gg->next;
	}
}

static void add_progress(struct sstf_progress *sum, const struct sstf_progress *p)
{
	sum->bytes_done += p->bytes_done;
	sum->bytes_total += p->bytes_total;
	sum->files_done += p->files_done;
	sum->files_failed += p->files_failed;
	sum->files_total += p->files_total;
	sum->files_skipped += p->files_skipped;
	sum->bytes_present += p->bytes_present;
}

/* The sum of gg's parts. Caller holds the group lock. */
static void sum_progress(struct ggen *gg, struct sstf_progress *out)
{
	memset(out, 0, sizeof(*out));
	if (gg->ended) {
		*out = gg->final;
		return;
	}
	for (unsigned k = 0; k < gg->nparts; k++) {
		struct part *p = &gg->part[k];
		struct sstf_progress pp;
		/* A part not ended here has not ended on its loop either (its
		 * batch-done below comes first), so its loop still knows it
		 * once it started. */
		if (p->ended)
			pp = p->final;
		else if (sstf_progress(p->loop, p->id, &pp) < 0)
			/* Not started yet: sstf__group_submit starts the
			 * parts one after the other. */
			pp = (struct sstf_progress){.bytes_total = p->bytes_total,
			                            .files_total = p->files_total};
		add_progress(out, &pp);
	}
}

/* The forwarders: every part's callbacks, on the part's loop thread. */

static void part_file_done(void *user, uint64_t id, const struct sstf_file_result *r)
{
	(void)id;
	struct part *p = user;
	struct ggen *gg = p->gg;
	struct sstf_file_result mine = *r;
	mine.index = p->index[r->index];
	pthread_mutex_lock(&gg->grp->cb_lock);
	if (r->result != 0 && r->result != -ECANCELED && gg->first_error == 0)
		gg->first_error = r->result;
	if (!atomic_load(&gg->cancel_requested) && gg->on_file_done)
		gg->on_file_done(gg->user, gg->id, &mine);
	pthread_mutex_unlock(&gg->grp->cb_lock);
}

static void part_progress(void *user, uint64_t id, const struct sstf_progress *unused)
{
	(void)id;
	(void)unused;
	struct part *p = user;
	struct ggen *gg = p->gg;
	struct sstf__group *grp = gg->grp;
	pthread_mutex_lock(&grp->cb_lock);
	uint64_t now = sstf__now_ns();
	if (!atomic_load(&gg->cancel_requested) &&
	    now - gg->last_progress_ns >= (uint64_t)grp->progress_interval_ms * 1000000u) {
		gg->last_progress_ns = now;
		struct sstf_progress sum;
		pthread_mutex_lock(&grp->lock);
		sum_progress(gg, &sum);
		pthread_mutex_unlock(&grp->lock);
		gg->on_progress(gg->user, gg->id, &sum);
	}
	pthread_mutex_unlock(&grp->cb_lock);
}

static void part_batch_done(void *user, uint64_t id, int result)
{
	struct part *p = user;
	struct ggen *gg = p->gg;
	struct sstf__group *grp = gg->grp;
	struct sstf_progress fin;
	if (sstf_progress(p->loop, id, &fin) < 0)
		memset(&fin, 0, sizeof(fin));
	pthread_mutex_lock(&grp->cb_lock);
	if (result == -ECANCELED)
		gg->part_cancelled = true;
	else if (result != 0 && gg->first_error == 0)
		gg->first_error = result;
	pthread_mutex_lock(&grp->lock);
	p->final = fin;
	p->ended = true;
	bool last = --gg->parts_left == 0;
	pthread_mutex_unlock(&grp->lock);
	if (last) {
		bool cancelled = atomic_load(&gg->cancel_requested) || gg->part_cancelled;
		int res = cancelled ? -ECANCELED : gg->first_error;
		if (gg->on_batch_done)
			gg->on_batch_done(gg->user, gg->id, res);
		pthread_mutex_lock(&grp->lock);
		sum_progress(gg, &gg->final);
		gg->result = res;
		gg->ended = true;
		sstf__free(&grp->alloc, gg->index_mem);
		gg->index_mem = NULL;
		for (unsigned k = 0; k < gg->nparts; k++)
			gg->part[k].index = NULL;
		grp->ended_count++;
		forget_old(grp);
		pthread_cond_broadcast(&grp->cond);
		pthread_mutex_unlock(&grp->lock);
	}
	pthread_mutex_unlock(&grp->cb_lock);
}

/* ------------------------------------------------------------------------ */
/* Submit */

struct by_size {
	uint64_t size;
	size_t i;
};

static int cmp_by_size(const void *x, const void *y)
{
	const struct by_size *a = x, *b = y;
	if (a->size != b->size)
		return a->size < b->size ? 1 : -1;
	return (a->i > b->i) - (a->i < b->i);
}

/*
 * Which loop each file goes to (loop_of[i]): largest first, each to the
 * loop with the least work per transfer so far, a file's work being its
 * size plus FILE_COST. Greedy longest-first keeps the loops' ends within
 * one file of each other.
 */
static int assign(struct sstf__group *grp, const struct sstf_batch *b, uint8_t *loop_of)
{
	struct by_size *v = sstf__alloc(&grp->alloc, b->nfiles * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < b->nfiles; i++)
		v[i] = (struct by_size){.size = b->files[i].size, .i = i};
	qsort(v, b->nfiles, sizeof(*v), cmp_by_size);
	uint64_t work[SSTF_MAX_THREADS] = {0};
	unsigned share[SSTF_MAX_THREADS];
	for (unsigned k = 0; k < grp->n; k++)
		share[k] = grp->loops[k]->cfg.max_transfers;
	for (size_t j = 0; j < b->nfiles; j++) {
		unsigned best = 0;
		for (unsigned k = 1; k < grp->n; k++)
			if ((double)work[k] / share[k] < (double)work[best] / share[best])
				best = k;
		uint64_t w = v[j].size + FILE_COST;
		work[best] = work[best] > UINT64_MAX - w ? UINT64_MAX : work[best] + w;
		loop_of[v[j].i] = (uint8_t)best;
	}
	sstf__free(&grp->alloc, v);
	return 0;
}

/* What one part's submit is told of the others (struct sstf__siblings). */
struct siblings_ctx {
	struct sstf__group *grp;
	const struct sstf_batch *batch;
	const uint8_t *loop_of;
	unsigned loop;          /* the part being prepared */
	struct sstf__gen *whole; /* the batch parsed, made at the first ask */
	bool whole_failed;
};

/* The other parts' bytes in blocks of bsize, less their files already in
 * place with the right size, as admit() counts a part's own. */
static uint64_t siblings_need_missing(void *ctx, int dirfd, uint64_t bsize)
{
	struct siblings_ctx *sc = ctx;
	uint64_t need = 0;
	for (size_t i = 0; i < sc->batch->nfiles; i++) {
		const struct sstf_file *f = &sc->batch->files[i];
		struct stat st;
		if (sc->loop_of[i] == sc->loop ||
		    (fstatat(dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode) &&
		     (uint64_t)st.st_size == f->size))
			continue;
		uint64_t r = bsize ? (f->size + bsize - 1) / bsize * bsize : f->size;
		need = need > UINT64_MAX - r ? UINT64_MAX : need + r;
	}
	return need;
}

static bool sibling_wants(void *ctx, const struct sstf__partial_key *key)
{
	struct siblings_ctx *sc = ctx;
	/* Only a sweep that found a dead writer's partial asks: rare enough
	 * to parse the batch again then, and only then. */
	if (!sc->whole && !sc->whole_failed &&
	    sstf__gen_new(&sc->grp->alloc, sc->batch, 0, &sc->whole) < 0)
		sc->whole_failed = true;
	if (!sc->whole)
		return true; /* keep it: a later part may resume it */
	for (size_t i = 0; i < sc->whole->nfiles; i++) {
		const struct sstf__entry *f = &sc->whole->files[i];
		if (sc->loop_of[i] != sc->loop &&
		    sstf__partial_fits(key, f, sstf__name_hash(f->name), false))
			return true;
	}
	return false;
}

int sstf__group_submit(struct sstf_engine *e, const struct sstf_batch *batch, uint64_t *gen)
{
	struct sstf__group *grp = e->group;
	pthread_mutex_lock(&grp->lock);
	bool stopping = grp->stopping;
	pthread_mutex_unlock(&grp->lock);
	if (stopping)
		return -ESHUTDOWN;
	/* Names must be unique across the parts, not only within each. */
	int ret = sstf_check_batch(batch);
	if (ret < 0)
		return ret;

	size_t n = batch->nfiles;
	unsigned nloops = n < grp->n ? (n ? (unsigned)n : 1) : grp->n;
	struct ggen *gg = sstf__alloc(&grp->alloc, sizeof(*gg) + nloops * sizeof(gg->part[0]));
	uint8_t *loop_of = sstf__alloc(&grp->alloc, n ? n : 1);
	size_t *index = sstf__alloc(&grp->alloc, (n ? n : 1) * sizeof(*index));
	struct sstf_file *files = sstf__alloc(&grp->alloc, (n ? n : 1) * sizeof(*files));
	struct siblings_ctx sc = {.grp = grp, .batch = batch, .loop_of = loop_of};
	struct sstf__gen *prepared[SSTF_MAX_THREADS] = {0};
	unsigned loop_part[SSTF_MAX_THREADS];
	ret = gg && loop_of && index && files ? 0 : -ENOMEM;
	if (ret == 0 && n > 0)
		ret = assign(grp, batch, loop_of);
	if (ret < 0)
		goto out;

	/* The parts: the loops with files (loop 0 for an empty batch), each
	 * file in its part in the batch's order, so equal sizes keep it. */
	size_t count[SSTF_MAX_THREADS] = {0};
	uint64_t need[SSTF_MAX_THREADS] = {0}, total = 0;
	for (size_t i = 0; i < n; i++) {
		count[loop_of[i]]++;
		uint64_t r = (batch->files[i].size + 4095) / 4096 * 4096;
		need[loop_of[i]] += r;
		total += r;
	}
	gg->grp = grp;
	gg->on_file_done = batch->on_file_done;
	gg->on_batch_done = batch->on_batch_done;
	gg->on_progress = batch->on_progress;
	gg->user = batch->user;
	gg->index_mem = index;
	size_t at = 0;
	for (unsigned k = 0; k < grp->n; k++) {
		loop_part[k] = UINT32_MAX;
		if (count[k] == 0 && !(n == 0 && k == 0))
			continue;
		struct part *p = &gg->part[gg->nparts];
		loop_part[k] = gg->nparts++;
		p->gg = gg;
		p->loop = grp->loops[k];
		p->index = index + at;
		at += count[k];
	}
	size_t fill[SSTF_MAX_THREADS] = {0};
	for (size_t i = 0; i < n; i++) {
		struct part *p = &gg->part[loop_part[loop_of[i]]];
		p->index[fill[loop_of[i]]++] = i;
	}

	for (unsigned k = 0; k < grp->n && ret == 0; k++) {
		if (loop_part[k] == UINT32_MAX)
			continue;
		struct part *p = &gg->part[loop_part[k]];
		for (size_t j = 0; j < count[k]; j++)
			files[j] = batch->files[p->index[j]];
		struct sstf_batch sub = *batch;
		sub.files = files;
		sub.nfiles = count[k];
		sub.on_file_done = part_file_done;
		sub.on_batch_done = part_batch_done;
		sub.on_progress = batch->on_progress ? part_progress : NULL;
		sub.user = p;
		sc.loop = k;
		struct sstf__siblings sib = {.need = total - need[k],
		                             .need_missing = siblings_need_missing,
		                             .wants = sibling_wants,
		                             .ctx = &sc};
		ret = sstf__submit_prepare(p->loop, &sub, &sib, &prepared[k]);
		if (ret == 0) {
			p->id = prepared[k]->id;
			p->bytes_total = prepared[k]->bytes_total;
			p->files_total = prepared[k]->files_total;
		}
	}
	if (ret < 0) {
		for (unsigned k = 0; k < grp->n; k++)
			if (prepared[k])
				sstf__submit_abandon(grp->loops[k], prepared[k]);
		goto out;
	}

	gg->parts_left = gg->nparts;
	/* Held until every part started, so gg outlives the loop below even
	 * if its parts all end meanwhile. */
	gg->waiters = 1;
	pthread_mutex_lock(&grp->lock);
	stopping = grp->stopping;
	if (!stopping) {
		gg->id = grp->next_id++;
		gg->next = grp->gens;
		grp->gens = gg;
	}
	pthread_mutex_unlock(&grp->lock);
	if (stopping) {
		for (unsigned k = 0; k < grp->n; k++)
			if (prepared[k])
				sstf__submit_abandon(grp->loops[k], prepared[k]);
		ret = -ESHUTDOWN;
		goto out;
	}
	*gen = gg->id;
	/* From here a part may end at once and its callbacks find gg. */
	for (unsigned k = 0; k < grp->n; k++)
		if (prepared[k])
			sstf__submit_start(grp->loops[k], prepared[k]);
	/* A cancel asked meanwhile (a callback of a part already started has
	 * the id) missed the parts not started yet: ask them now. Either
	 * that cancel sees a part started, or this sees its flag. */
	if (atomic_load(&gg->cancel_requested))
		for (unsigned k = 0; k < gg->nparts; k++)
			sstf__cancel(gg->part[k].loop, gg->part[k].id, false);
	pthread_mutex_lock(&grp->lock);
	gg->waiters--;
	pthread_mutex_unlock(&grp->lock);
	gg = NULL;
	index = NULL;
out:
	if (sc.whole)
		sstf__gen_free(&grp->alloc, sc.whole);
	sstf__free(&grp->alloc, files);
	sstf__free(&grp->alloc, index);
	sstf__free(&grp->alloc, loop_of);
	sstf__free(&grp->alloc, gg);
	return ret;
}

/* ------------------------------------------------------------------------ */
/* Cancel, wait, progress */

/* The parts of gg, copied under the lock for use after it. */
struct part_ids {
	unsigned n;
	struct sstf_engine *loop[SSTF_MAX_THREADS];
	uint64_t id[SSTF_MAX_THREADS];
};

static void copy_ids(const struct ggen *gg, struct part_ids *ids)
{
	ids->n = gg->nparts;
	for (unsigned k = 0; k < gg->nparts; k++) {
		ids->loop[k] = gg->part[k].loop;
		ids->id[k] = gg->part[k].id;
	}
}

/* Waits until each part's memory is reclaimed on its loop: the group's
 * generation ends in the last part's batch-done, just before that. */
static void wait_reclaimed(const struct part_ids *ids)
{
	for (unsigned k = 0; k < ids->n; k++)
		sstf_wait(ids->loop[k], ids->id[k], -1);
}

int sstf__group_cancel(struct sstf_engine *e, uint64_t id)
{
	struct sstf__group *grp = e->group;
	bool loop = on_a_loop(grp);
	pthread_mutex_lock(&grp->lock);
	struct ggen *gg = find(grp, id);
	if (!gg || gg->ended) {
		pthread_mutex_unlock(&grp->lock);
		return gg ? 0 : -SSTF_ENOSUCHGEN;
	}
	atomic_store(&gg->cancel_requested, true);
	gg->waiters++;
	struct part_ids ids;
	copy_ids(gg, &ids);
	pthread_mutex_unlock(&grp->lock);
	/* Ask every loop first, so that they drain at once. */
	for (unsigned k = 0; k < ids.n; k++)
		sstf__cancel(ids.loop[k], ids.id[k], false);
	pthread_mutex_lock(&grp->lock);
	while (!loop && !gg->ended)
		pthread_cond_wait(&grp->cond, &grp->lock);
	gg->waiters--;
	pthread_mutex_unlock(&grp->lock);
	if (loop)
		return -EINPROGRESS;
	wait_reclaimed(&ids);
	return 0;
}

int sstf__group_wait(struct sstf_engine *e, uint64_t id, int timeout_ms)
{
	struct sstf__group *grp = e->group;
	if (on_a_loop(grp))
		return -EDEADLK;
	struct timespec deadline;
	sstf__wait_deadline(&deadline, timeout_ms);
	pthread_mutex_lock(&grp->lock);
	struct ggen *gg = find(grp, id);
	if (!gg) {
		pthread_mutex_unlock(&grp->lock);
		return -SSTF_ENOSUCHGEN;
	}
	gg->waiters++;
	int ret = 0;
	while (!gg->ended && ret == 0)
		ret = sstf__wait_step(&grp->cond, &grp->lock, timeout_ms, &deadline);
	bool ended = gg->ended;
	int result = ended ? gg->result : -ETIMEDOUT;
	struct part_ids ids;
	copy_ids(gg, &ids);
	gg->waiters--;
	pthread_mutex_unlock(&grp->lock);
	if (ended)
		wait_reclaimed(&ids);
	return result;
}

int sstf__group_progress(struct sstf_engine *e, uint64_t id, struct sstf_progress *out)
{
	struct sstf__group *grp = e->group;
	pthread_mutex_lock(&grp->lock);
	struct ggen *gg = find(grp, id);
	if (gg)
		sum_progress(gg, out);
	pthread_mutex_unlock(&grp->lock);
	return gg ? 0 : -SSTF_ENOSUCHGEN;
}

int sstf__group_set_rate(struct sstf_engine *e, uint64_t bytes_per_s)
{
	struct sstf__group *grp = e->group;
	for (unsigned k = 0; k < grp->n; k++) {
		uint64_t share = bytes_per_s * grp->loops[k]->cfg.max_transfers / grp->max_transfers;
		sstf_set_rate(grp->loops[k], bytes_per_s && !share ? 1 : share);
	}
	return 0;
}

unsigned sstf__engine_loops(struct sstf_engine *e)
{
	return e->group ? e->group->n : 1;
}

struct sstf_engine *sstf__engine_loop(struct sstf_engine *e, unsigned k)
{
	return e->group ? e->group->loops[k] : e;
}

/* Sums of the loops' counters; buffers_peak is the sum of each loop's
 * peak, which may not all have come at once. */
int sstf__group_stats(struct sstf_engine *e, struct sstf_stats *out)
{
	struct sstf__group *grp = e->group;
	memset(out, 0, sizeof(*out));
	for (unsigned k = 0; k < grp->n; k++) {
		struct sstf_stats s;
		sstf_stats(grp->loops[k], &s);
		out->stale_completions += s.stale_completions;
		out->cancels += s.cancels;
		out->retries += s.retries;
		out->buffers_total += s.buffers_total;
		out->buffers_peak += s.buffers_peak;
		out->buf_size = s.buf_size;
		out->fixed_buffers = k == 0 ? s.fixed_buffers : out->fixed_buffers && s.fixed_buffers;
		if (k == 0)
			out->ring_flags = s.ring_flags;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */

void sstf__group_free(struct sstf_engine *e)
{
	struct sstf__group *grp = e->group;
	if (on_a_loop(grp)) {
		fprintf(stderr, "sstfetch: sstf_engine_free() called from a callback\n");
		abort();
	}
	pthread_mutex_lock(&grp->lock);
	grp->stopping = true;
	for (struct ggen *gg = grp->gens; gg; gg = gg->next)
		atomic_store(&gg->cancel_requested, true);
	pthread_mutex_unlock(&grp->lock);
	/* Each loop cancels and drains its parts; a generation ends with the
	 * last of its parts, on whichever loop that is. Asking every loop
	 * first lets them drain at once. */
	for (unsigned k = 0; k < grp->n; k++)
		if (grp->loops[k])
			sstf__engine_stop(grp->loops[k]);
	for (unsigned k = 0; k < grp->n; k++)
		sstf_engine_free(grp->loops[k]);
	while (grp->gens) {
		struct ggen *gg = grp->gens;
		grp->gens = gg->next;
		sstf__free(&grp->alloc, gg->index_mem);
		sstf__free(&grp->alloc, gg);
	}
	pthread_mutex_destroy(&grp->cb_lock);
	pthread_mutex_destroy(&grp->lock);
	pthread_cond_destroy(&grp->cond);
	struct sstf_allocator a = grp->alloc;
	sstf__free(&a, grp);
	sstf__free(&a, e);
}
