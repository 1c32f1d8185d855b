/*
 * stream.c - streams: how a file's bytes get from its sources to the sink.
 *
 * A file (sink.c) is fetched over one or more streams. Each stream holds a
 * STREAM slot, runs one attempt of one source at a time, and works on one
 * part of the file: [start, end), accepted up to pos. A file shorter than
 * split_min is one part; a longer one is cut into parts of e->part_size,
 * taken in order by up to `split` streams, so that they all work near the
 * file's hash frontier and the buffers held ahead of it stay few.
 *
 * Buffers and the window. A stream whose next byte is at its file's hash
 * frontier (the frontier stream) may take any free buffer: every other
 * stream of the file waits for it, so it must never wait for them. A
 * stream ahead of the frontier takes buffers only while the pool's
 * buffers ahead of frontiers stay under pool.ahead_max (half the pool); its
 * buffers are written at once and held until the frontier reaches them.
 * Frontier streams (at most one per file, files at most max_transfers, the
 * pool at least two buffers per transfer) thus always find a buffer once
 * the writes in flight complete: no stream waits for ever. A stream whose
 * generation is being cancelled takes no bytes at all (cancel_pending).
 *
 * Retries. An attempt that fails for a transient reason (the source says
 * which) is retried on the rest of its part, keeping every byte accepted:
 * after a backoff drawn with full jitter from [0, min(5 s, 100 ms * 2^n)]
 * so that a fleet does not retry in lockstep, or after the origin's
 * Retry-After, up to SSTF__RETRY_AFTER_CAP_MS. With several URLs the retry
 * goes to the next mirror at once, and so does an attempt that found
 * nothing (404) while some mirror has not said so. Waits sit on the timer
 * heap (timers.c).
 *
 * The rate limit. Bytes are accepted only with tokens from the engine's
 * bucket (rate.c); a stream short of tokens pauses like one short of
 * buffers, and the loop's timer wakes it when they are there.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "internal.h"

const char *sstf__stream_url(const struct sstf__stream *s)
{
	return sstf__gen_url(s->file->gen, s->file->entry, s->mirror);
}

uint64_t sstf__stream_file_size(const struct sstf__stream *s)
{
	return s->file->entry->size;
}

bool sstf__stream_at_frontier(const struct sstf__stream *s)
{
	return s->pos - s->cur_len == s->file->frontier;
}

/* ------------------------------------------------------------------------ */
/* Pauses */

static void pause_push(struct sstf_engine *e, struct sstf__stream *s, enum sstf__wait why)
{
	s->wait = why;
	s->pause_next = NULL;
	s->pause_prev = e->pause_tail;
	if (e->pause_tail)
		e->pause_tail->pause_next = s;
	else
		e->pause_head = s;
	e->pause_tail = s;
}

static void pause_remove(struct sstf_engine *e, struct sstf__stream *s)
{
	if (s->pause_prev)
		s->pause_prev->pause_next = s->pause_next;
	else
		e->pause_head = s->pause_next;
	if (s->pause_next)
		s->pause_next->pause_prev = s->pause_prev;
	else
		e->pause_tail = s->pause_prev;
	s->pause_prev = s->pause_next = NULL;
	s->wait = SSTF__WAIT_NONE;
}

/* Whether s may take `n` more buffers now. */
static bool buffers_for(struct sstf_engine *e, const struct sstf__stream *s, uint32_t n)
{
	if (e->pool.nfree < n)
		return false;
	return sstf__stream_at_frontier(s) || e->pool.ahead + n <= e->pool.ahead_max;
}

/*
 * True, with s paused, when s's generation is being cancelled: sstf_cancel()
 * sets the flag before it queues the command, so the loop takes the cancel
 * at its next pass. Meanwhile s takes no more bytes, so that the loop does
 * not spend the rest of its turn filling (and queueing writes of) buffers
 * the cancel will throw away.
 */
static bool cancel_pending(struct sstf_engine *e, struct sstf__stream *s)
{
	if (!atomic_load_explicit(&s->file->gen->cancel_requested, memory_order_relaxed))
		return false;
	pause_push(e, s, SSTF__WAIT_BUFFER);
	return true;
}

/* Takes n tokens for s, or pauses it for them: true when it may go on. */
static bool tokens_for(struct sstf_engine *e, struct sstf__stream *s, size_t n)
{
	if (!n || !sstf__rate_limited(&e->rate))
		return true;
	if (s->need && s->need >= n) {
		s->need = 0; /* prepaid when it was resumed */
		return true;
	}
	s->need = 0;
	uint64_t at = sstf__rate_take(&e->rate, n, sstf__now_ns());
	if (at == 0)
		return true;
	s->need = n;
	s->wake_ns = at;
	pause_push(e, s, SSTF__WAIT_RATE);
	return false;
}

void sstf__stream_resume_paused(struct sstf_engine *e)
{
	/* Each paused stream gets one look per turn, in order: one that pauses
	 * again goes to the tail, past `last`, and waits for the next turn. */
	struct sstf__stream *s = e->pause_head, *last = e->pause_tail;
	while (s) {
		struct sstf__stream *next = s->pause_next;
		bool is_last = s == last;
		bool go;
		if (s->wait == SSTF__WAIT_RATE) {
			uint64_t at = sstf__rate_take(&e->rate, s->need, sstf__now_ns());
			go = at == 0; /* the tokens are taken: prepaid, in s->need */
			if (!go)
				s->wake_ns = at;
		} else {
			go = buffers_for(e, s, 1);
		}
		if (go) {
			size_t prepaid = s->wait == SSTF__WAIT_RATE ? s->need : 0;
			pause_remove(e, s);
			s->need = prepaid;
			if (s->attempt)
				s->src->resume(e, s);
			else if (s->file && s->file->phase == SSTF__X_CHECK)
				sstf__file_resume_check(e, s->file);
		}
		if (is_last)
			break;
		s = next;
	}
}

uint64_t sstf__stream_tokens_at(struct sstf_engine *e)
{
	uint64_t at = 0;
	for (struct sstf__stream *s = e->pause_head; s; s = s->pause_next)
		if (s->wait == SSTF__WAIT_RATE && (!at || s->wake_ns < at))
			at = s->wake_ns;
	return at;
}

void sstf__stream_wait_buffer(struct sstf_engine *e, struct sstf__stream *s)
{
	if (s->wait == SSTF__WAIT_NONE)
		pause_push(e, s, SSTF__WAIT_BUFFER);
}

/* ------------------------------------------------------------------------ */
/* Bytes */

static void take_buffer(struct sstf_engine *e, struct sstf__stream *s)
{
	bool ahead = !sstf__stream_at_frontier(s);
	s->cur_buf = sstf__pool_get(&e->pool);
	s->cur_len = 0;
	if (ahead) {
		e->pool.flags[s->cur_buf] |= SSTF__BUF_AHEAD;
		e->pool.ahead++;
	}
}

static void commit_cur(struct sstf_engine *e, struct sstf__stream *s)
{
	int idx = s->cur_buf;
	uint32_t len = s->cur_len;
	s->cur_buf = -1;
	s->cur_len = 0;
	sstf__file_commit(e, s->file, idx, s->pos - len, len);
}

static void release_cur(struct sstf_engine *e, struct sstf__stream *s)
{
	if (s->lent)
		return; /* a read fills it: sstf__stream_filled gives it back */
	if (s->cur_buf >= 0)
		sstf__pool_put(&e->pool, s->cur_buf);
	/* Its bytes were never committed: the stream is back before them
	 * (they still count as received, as the origin did send them). */
	s->pos -= s->cur_len;
	s->cur_buf = -1;
	s->cur_len = 0;
}

/* Bytes past the part: the origin sent more than it was asked for. The
 * file fails; the caller's source ends the attempt, and the stream layer
 * stops the rest outside the source's callbacks. */
static int overrun(struct sstf__stream *s)
{
	struct sstf__file *f = s->file;
	if (s->end == f->entry->size)
		sstf__file_fail(f, -SSTF_ESIZE, "origin sent more than the expected %" PRIu64 " bytes",
		                f->entry->size);
	else
		sstf__file_fail(f, -SSTF_ESIZE,
		                "origin sent more than the %" PRIu64 " bytes of range %" PRIu64
		                "-%" PRIu64,
		                s->end - s->start, s->start, s->end - 1);
	return -1;
}

/*
 * The stream takes no more bytes: its attempt is over for the source, which
 * only has to stop (no sstf__stream_end follows, and none is needed). The
 * file steps from the timer heap, at once but outside the source's
 * callback, where stopping other streams is allowed.
 */
static int refuse(struct sstf_engine *e, struct sstf__stream *s)
{
	s->attempt = false;
	if (s->wait == SSTF__WAIT_NONE) {
		s->wake_ns = sstf__now_ns();
		s->wait = SSTF__WAIT_TIMER;
		sstf__timer_add(&e->timers, s);
	}
	return -1;
}

int sstf__stream_data(struct sstf_engine *e, struct sstf__stream *s, const void *data,
                      size_t len)
{
	struct sstf__file *f = s->file;
	if (!s->attempt || !f)
		return -1;
	if (f->err)
		return refuse(e, s);
	if (cancel_pending(e, s))
		return 1;
	/* Body bytes below pos, from an origin that sent the whole object:
	 * dropped, but only once the rest is taken (a pause sends them all
	 * again). */
	const uint8_t *p = data;
	size_t drop = len < s->skip ? len : (size_t)s->skip;
	p += drop;
	len -= drop;
	if (!len) {
		s->skip -= drop;
		return 0;
	}
	if (len > s->end - s->pos) {
		overrun(s);
		return refuse(e, s);
	}
	size_t bs = e->pool.bs;
	size_t space = s->cur_buf >= 0 ? bs - s->cur_len : 0;
	/* All or nothing: a paused source hands the same bytes again. */
	uint32_t need = len > space ? (uint32_t)((len - space + bs - 1) / bs) : 0;
	if (need && !buffers_for(e, s, need)) {
		pause_push(e, s, SSTF__WAIT_BUFFER);
		return 1;
	}
	if (!tokens_for(e, s, len))
		return 1;
	s->skip -= drop;
	if (!f->t_first)
		f->t_first = sstf__now_ns();
	f->received += len;
	f->mirror_bytes[s->mirror] += len;
	while (len) {
		if (s->cur_buf < 0)
			take_buffer(e, s);
		size_t n = bs - s->cur_len;
		if (n > len)
			n = len;
		memcpy(sstf__pool_buf(&e->pool, s->cur_buf) + s->cur_len, p, n);
		s->cur_len += (uint32_t)n;
		s->pos += n;
		p += n;
		len -= n;
		if (s->cur_len == bs)
			commit_cur(e, s);
	}
	return 0;
}

uint8_t *sstf__stream_buffer(struct sstf_engine *e, struct sstf__stream *s, uint32_t *len,
                             int *idx)
{
	size_t bs = e->pool.bs;
	if (cancel_pending(e, s))
		return NULL;
	if (s->cur_buf < 0) {
		if (!buffers_for(e, s, 1)) {
			pause_push(e, s, SSTF__WAIT_BUFFER);
			return NULL;
		}
	}
	/* The last part may read past its end: that is how a source longer
	 * than the entry shows (sstf__stream_filled fails it). */
	uint32_t room = (uint32_t)(bs - (s->cur_buf >= 0 ? s->cur_len : 0));
	uint64_t due = s->end - s->pos;
	uint64_t left = s->end == s->file->entry->size ? room : due;
	uint32_t n = left < room ? (uint32_t)left : room;
	/* Tokens for the bytes due, not for the read past the end. */
	if (!tokens_for(e, s, due < n ? (size_t)due : n))
		return NULL;
	if (s->cur_buf < 0)
		take_buffer(e, s);
	/* Lent: a stop must not give it back while the read fills it. */
	s->lent = true;
	*idx = s->cur_buf;
	*len = n;
	return sstf__pool_buf(&e->pool, s->cur_buf) + s->cur_len;
}

void sstf__stream_filled(struct sstf_engine *e, struct sstf__stream *s, uint32_t len)
{
	struct sstf__file *f = s->file;
	s->lent = false;
	if (!s->attempt || !f || f->err) {
		release_cur(e, s);
		return;
	}
	if (len > s->end - s->pos) {
		overrun(s);
		sstf__file_abort(e, f, f->err);
		return;
	}
	if (!len) {
		/* Nothing read (the probe past a file's end): an empty buffer
		 * is not kept idle through the publish. */
		if (!s->cur_len)
			release_cur(e, s);
		return;
	}
	if (!f->t_first)
		f->t_first = sstf__now_ns();
	f->received += len;
	f->mirror_bytes[s->mirror] += len;
	s->pos += len;
	s->cur_len += len;
	/* A short read leaves the buffer to be filled on: every write but a
	 * file's last stays whole, as O_DIRECT needs. */
	if (s->cur_len == e->pool.bs || s->pos == s->end)
		commit_cur(e, s);
}

/* ------------------------------------------------------------------------ */
/* Attempts */

static void give_up(struct sstf_engine *e, struct sstf__stream *s, int err, const char *detail);

static void start_attempt(struct sstf_engine *e, struct sstf__stream *s)
{
	struct sstf__file *f = s->file;
	const char *url = sstf__stream_url(s);
	const struct sstf__source_ops *src = sstf__source_for_url(url);
	if (!src) {
		give_up(e, s, -SSTF_EBADURL, "no source serves this URL's scheme");
		return;
	}
	/* What to ask for: the rest of the part; the whole object, dropping
	 * what is already here, from an origin that ignores ranges. */
	if (f->single) {
		s->ranged = false;
		s->skip = s->pos;
	} else {
		s->ranged = !(s->pos == 0 && s->end == f->entry->size);
		s->skip = 0;
	}
	s->src = src;
	s->attempt = true;
	int r = src->start(e, s, url);
	if (r < 0) {
		s->attempt = false;
		give_up(e, s, r, f->detail[0] ? NULL : "the source could not start");
	}
}

/* Bytes of the next part for f: the whole rest when it runs one stream. */
static uint64_t part_len(struct sstf_engine *e, const struct sstf__file *f)
{
	uint64_t left = f->entry->size - f->next_part;
	if (f->single || f->want_streams <= 1 || left <= e->part_size)
		return left;
	return e->part_size;
}

void sstf__stream_detach(struct sstf_engine *e, struct sstf__stream *s)
{
	struct sstf__file *f = s->file;
	sstf__stream_stop(e, s);
	for (struct sstf__stream **pp = &f->streams; *pp; pp = &(*pp)->file_next) {
		if (*pp == s) {
			*pp = s->file_next;
			break;
		}
	}
	f->nstreams--;
	sstf__stream_release(e, s);
}

/* s is done with its part: the file's next one, or it is no longer needed. */
static void next_part(struct sstf_engine *e, struct sstf__stream *s)
{
	struct sstf__file *f = s->file;
	uint64_t size = f->entry->size;
	if ((f->next_part < size || !f->parted) && !f->restart && !f->err &&
	    (s->primary || !f->single)) {
		f->parted = true; /* an empty file too gets its one request */
		s->start = s->pos = f->next_part;
		s->end = s->start + part_len(e, f);
		f->next_part = s->end;
		s->retries = 0;
		s->missing = 0;
		start_attempt(e, s);
		return;
	}
	if (!s->primary)
		sstf__stream_detach(e, s);
}

void sstf__stream_attach(struct sstf_engine *e, struct sstf__stream *s, struct sstf__file *f,
                         bool primary)
{
	s->file = f;
	s->primary = primary;
	s->file_next = f->streams;
	f->streams = s;
	f->nstreams++;
	if (f->nstreams > f->streams_peak)
		f->streams_peak = f->nstreams;
	s->mirror = (f->nstreams - 1) % sstf__entry_nurls(f->entry);
	s->missing = 0;
	s->retries = s->tries = 0;
	s->cur_buf = -1;
	s->cur_len = 0;
	s->start = s->pos = s->end = 0;
	s->skip = 0;
	s->need = 0;
	s->attempt = false;
	s->wait = SSTF__WAIT_NONE;
	s->src = NULL;
	f->gen->active++;
	if (!primary)
		next_part(e, s);
}

void sstf__stream_run(struct sstf_engine *e, struct sstf__stream *s)
{
	if (s->attempt || s->wait != SSTF__WAIT_NONE || s->pos < s->end)
		return;
	next_part(e, s);
}

void sstf__stream_stop(struct sstf_engine *e, struct sstf__stream *s)
{
	/* Always: a source whose delivery was refused may still hold its
	 * request; stop() is idempotent. */
	s->attempt = false;
	if (s->src)
		s->src->stop(e, s);
	if (s->wait == SSTF__WAIT_TIMER)
		sstf__timer_remove(&e->timers, s);
	else if (s->wait == SSTF__WAIT_BUFFER || s->wait == SSTF__WAIT_RATE)
		pause_remove(e, s);
	s->wait = SSTF__WAIT_NONE;
	s->need = 0;
	release_cur(e, s);
}

void sstf__stream_release(struct sstf_engine *e, struct sstf__stream *s)
{
	struct sstf__gen *g = s->file->gen;
	s->file = NULL;
	s->file_next = NULL;
	g->active--;
	struct sstf__slot *slot = s->slot;
	if (slot->state == SSTF__SLOT_ACTIVE)
		sstf__slot_set_state(&e->slots, slot, SSTF__SLOT_DRAINING);
	if (slot->inflight == 0)
		sstf__slot_set_state(&e->slots, slot, SSTF__SLOT_FREE);
	sstf__engine_gen_check(e, g);
}

void sstf__stream_on_cqe(struct sstf_engine *e, struct sstf__stream *s, enum sstf__op op,
                         unsigned aux, int res)
{
	if (s->src && s->src->on_cqe)
		s->src->on_cqe(e, s, op, aux, res);
	struct sstf__slot *slot = s->slot;
	if (slot->state == SSTF__SLOT_DRAINING && slot->inflight == 0) {
		struct sstf__gen *g = slot->gen;
		sstf__slot_set_state(&e->slots, slot, SSTF__SLOT_FREE);
		sstf__engine_gen_check(e, g);
	}
}

void sstf__stream_on_timer(struct sstf_engine *e, struct sstf__stream *s)
{
	s->wait = SSTF__WAIT_NONE;
	if (!s->file)
		return;
	if (s->file->err) {
		/* A refused delivery (see refuse()): the file moves on here. */
		sstf__file_step(e, s->file);
		return;
	}
	start_attempt(e, s);
}

/* The stream cannot go on: its file fails with err. */
static void give_up(struct sstf_engine *e, struct sstf__stream *s, int err, const char *detail)
{
	struct sstf__file *f = s->file;
	if (detail)
		sstf__file_fail(f, err, "%s", detail);
	else
		sstf__file_fail(f, err, NULL);
	sstf__file_abort(e, f, f->err);
}

static uint64_t random_u64(struct sstf_engine *e)
{
	/* xorshift64*: jitter needs spread, not secrecy. */
	uint64_t x = e->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	e->rng = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* The next mirror that has not said "not found", after s's. */
static unsigned next_mirror(const struct sstf__stream *s, unsigned nurls)
{
	for (unsigned k = 1; k <= nurls; k++) {
		unsigned m = (s->mirror + k) % nurls;
		if (!(s->missing & (1u << m)))
			return m;
	}
	return s->mirror;
}

/* A failed attempt: another one, later or elsewhere, or the file fails. */
static void retry_or_fail(struct sstf_engine *e, struct sstf__stream *s,
                          const struct sstf__src_end *end)
{
	struct sstf__file *f = s->file;
	unsigned nurls = sstf__entry_nurls(f->entry);
	const char *why = end->detail ? end->detail : "";
	if (end->not_found)
		s->missing |= 1u << s->mirror;
	bool all_missing = s->missing == (nurls >= 32 ? UINT32_MAX : (1u << nurls) - 1);
	bool elsewhere = nurls > 1 && (end->transient || end->not_found) && !all_missing;
	if ((!end->transient && !elsewhere) || atomic_load(&f->gen->cancel_requested)) {
		if (end->not_found && nurls > 1)
			sstf__file_fail(f, end->err, "%s on every one of the %u mirrors", why, nurls);
		give_up(e, s, end->err, why);
		return;
	}
	if (s->tries >= (unsigned)e->cfg.max_retries) {
		sstf__file_fail(f, end->err, "%s (gave up after %u %s)", why, s->tries,
		                s->tries == 1 ? "retry" : "retries");
		give_up(e, s, end->err, NULL);
		return;
	}
	uint64_t delay_ms;
	if (elsewhere) {
		s->mirror = next_mirror(s, nurls);
		delay_ms = 0; /* another origin: the backoff was this one's */
	} else if (end->retry_after_ms) {
		if (end->retry_after_ms > SSTF__RETRY_AFTER_CAP_MS) {
			sstf__file_fail(f, end->err,
			                "%s; the origin asked to retry after %" PRIu64
			                " s (Retry-After), more than the %u s the engine waits",
			                why, end->retry_after_ms / 1000, SSTF__RETRY_AFTER_CAP_MS / 1000);
			give_up(e, s, end->err, NULL);
			return;
		}
		delay_ms = end->retry_after_ms;
	} else {
		delay_ms = random_u64(e) % (sstf__backoff_cap_ms(s->retries) + 1); /* full jitter */
	}
	s->retries++;
	s->tries++;
	f->retries++;
	atomic_fetch_add_explicit(&e->retries, 1, memory_order_relaxed);
	/* Even a retry due now goes through the heap: it starts on the next
	 * pass, never inside the source's own completion. */
	s->wake_ns = sstf__now_ns() + delay_ms * 1000000u;
	s->wait = SSTF__WAIT_TIMER;
	sstf__timer_add(&e->timers, s);
}

/*
 * The origin answered a ranged request with the whole object. With one
 * stream that is only a cost: the stream asks again without a range and
 * drops the bytes it has. With several, the file falls back to one stream:
 * the others stop, what they hold ahead of the frontier is dropped, and
 * once every write has landed (so that no dropped write can land over a
 * new one) the stream starts again at the frontier.
 */
static void fall_back(struct sstf_engine *e, struct sstf__stream *s)
{
	struct sstf__file *f = s->file;
	f->single = true;
	if (f->nstreams == 1 && f->nheld == 0 && sstf__stream_at_frontier(s)) {
		if (s->cur_buf >= 0)
			release_cur(e, s);
		s->end = f->entry->size;
		f->next_part = s->end;
		s->primary = true;
		start_attempt(e, s);
		return;
	}
	for (struct sstf__stream *o = f->streams, *next; o; o = next) {
		next = o->file_next;
		if (o != s)
			sstf__stream_detach(e, o);
	}
	s->primary = true;
	release_cur(e, s);
	sstf__file_drop_held(e, f);
	f->restart = true;
	s->wait = SSTF__WAIT_DRAIN;
	sstf__file_step(e, f);
}

void sstf__stream_restart(struct sstf_engine *e, struct sstf__stream *s)
{
	struct sstf__file *f = s->file;
	f->restart = false;
	s->wait = SSTF__WAIT_NONE;
	f->received = f->frontier;
	f->next_part = f->frontier;
	f->parted = false;
	s->start = s->pos = s->end = f->frontier;
	next_part(e, s);
}

void sstf__stream_end(struct sstf_engine *e, struct sstf__stream *s,
                      const struct sstf__src_end *end)
{
	struct sstf__file *f = s->file;
	s->attempt = false;
	/* An attempt can end while its stream waits for buffers or tokens
	 * (the source failed meanwhile): it waits no more. */
	if (s->wait == SSTF__WAIT_BUFFER || s->wait == SSTF__WAIT_RATE)
		pause_remove(e, s);
	s->need = 0;
	if (!f)
		return;
	if (end->status)
		f->http_status = end->status;
	if (f->err) {
		sstf__file_step(e, f);
		return;
	}
	if (end->whole_body) {
		fall_back(e, s);
		return;
	}
	/* A failure after the last byte of a part (a reset once the body was
	 * in) loses nothing: the part is done. */
	if (end->err && !(s->pos == s->end && s->end > s->start)) {
		retry_or_fail(e, s, end);
		return;
	}
	if (s->pos < s->end) {
		/* The body ended early without an error: the object is not
		 * the size the batch says, or the origin cut the range. */
		if (s->start == 0 && s->end == f->entry->size)
			sstf__file_fail(f, -SSTF_ESIZE, "received %" PRIu64 " bytes, expected %" PRIu64,
			                s->pos, f->entry->size);
		else
			sstf__file_fail(f, -SSTF_ESIZE,
			                "range %" PRIu64 "-%" PRIu64 " ended after %" PRIu64
			                " of its %" PRIu64 " bytes",
			                s->start, s->end - 1, s->pos - s->start, s->end - s->start);
		sstf__file_abort(e, f, f->err);
		return;
	}
	if (s->cur_buf >= 0 && s->cur_len)
		commit_cur(e, s);
	next_part(e, s);
	sstf__file_step(e, f);
}

void sstf__stream_seed(struct sstf_engine *e)
{
	uint64_t seed = 0;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = sstf__now_ns();
	e->rng = seed | 1;
}
