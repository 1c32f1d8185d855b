/*
 * memsrc.c - the "mem://" source: objects in memory, faults on demand.
 *
 * See memsrc.h for what it models. The engine side follows filesrc.c and
 * http.c: per-engine state in e->src_state (one struct per stream, by
 * s->index), start() that only records the attempt, bytes from run().
 *
 * Re-entrancy. sstf__stream_end() may start the next attempt of the same
 * stream (next part, a fall back) before it returns, and a stream's file
 * may fail inside sstf__stream_filled(), which stops the stream (stop()):
 * the per-stream state is settled before each such call and nothing of
 * the old attempt is touched after it. The global mutex is never held
 * across a call into the engine.
 */
#include "memsrc.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "internal.h"

#define DEFAULT_CHUNK  (64u * 1024u)
#define DEFAULT_BUDGET (1024u * 1024u)
#define HOLD_POLL_NS   1000000u /* a held stream looks for its release */

/* ------------------------------------------------------------------------ */
/* What the tests configure and read (any thread, under mu)                 */

struct mem_obj {
	char *path;
	uint8_t *data;
	size_t len;
	struct mem_obj *next;
};

struct mem_host {
	bool used;
	char name[32];
	struct memsrc_profile prof;
	char detail[MEMSRC_MAX_FAILS][128];
	unsigned fired[MEMSRC_MAX_FAILS]; /* under mu */
	unsigned flips;                   /* under mu */
	_Atomic unsigned attempts, engine_pauses, source_pauses, failures;
	_Atomic uint64_t served;
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t held_cv; /* CLOCK_MONOTONIC, made once */
static pthread_once_t cv_once = PTHREAD_ONCE_INIT;
static struct mem_obj *objs;
static struct mem_host hosts[MEMSRC_MAX_HOSTS];
static unsigned held_now; /* under mu */
static _Atomic bool released;
static _Atomic unsigned refused_ends;
static struct memsrc_attempt log_v[MEMSRC_MAX_LOG]; /* under mu */
static size_t log_n;                                /* under mu */

static void cv_init(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&held_cv, &ca);
	pthread_condattr_destroy(&ca);
}

/* The host named `name` (n bytes), made with a zeroed profile when new;
 * NULL when the table is full. Caller holds mu. */
static struct mem_host *host_get(const char *name, size_t n)
{
	if (n >= sizeof(hosts[0].name))
		n = sizeof(hosts[0].name) - 1;
	for (size_t i = 0; i < MEMSRC_MAX_HOSTS; i++)
		if (hosts[i].used && strlen(hosts[i].name) == n &&
		    strncasecmp(hosts[i].name, name, n) == 0)
			return &hosts[i];
	for (size_t i = 0; i < MEMSRC_MAX_HOSTS; i++) {
		if (hosts[i].used)
			continue;
		struct mem_host *h = &hosts[i];
		memset(h->name, 0, sizeof(h->name));
		memcpy(h->name, name, n);
		memset(&h->prof, 0, sizeof(h->prof));
		memset(h->fired, 0, sizeof(h->fired));
		h->flips = 0;
		atomic_store(&h->attempts, 0);
		atomic_store(&h->engine_pauses, 0);
		atomic_store(&h->source_pauses, 0);
		atomic_store(&h->failures, 0);
		atomic_store(&h->served, 0);
		h->used = true;
		return h;
	}
	return NULL;
}

int memsrc_put(const char *path, const void *data, size_t len)
{
	while (*path == '/')
		path++;
	struct mem_obj *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->path = strdup(path);
	o->data = malloc(len ? len : 1);
	if (!o->path || !o->data) {
		free(o->path);
		free(o->data);
		free(o);
		return -ENOMEM;
	}
	if (len)
		memcpy(o->data, data, len);
	o->len = len;
	pthread_mutex_lock(&mu);
	/* The newest object of a path wins: lookups find it first. */
	o->next = objs;
	objs = o;
	pthread_mutex_unlock(&mu);
	return 0;
}

int memsrc_host(const char *host, const struct memsrc_profile *p)
{
	pthread_mutex_lock(&mu);
	struct mem_host *h = host_get(host, strlen(host));
	if (!h) {
		pthread_mutex_unlock(&mu);
		return -ENOSPC;
	}
	h->prof = *p;
	for (size_t i = 0; i < MEMSRC_MAX_FAILS; i++) {
		const char *d = p->fail[i].detail;
		if (d)
			snprintf(h->detail[i], sizeof(h->detail[i]), "%s", d);
		else
			snprintf(h->detail[i], sizeof(h->detail[i]), "memsrc: failure at %" PRIu64,
			         p->fail[i].at);
		h->prof.fail[i].detail = NULL; /* h->detail[i] is the one used */
	}
	memset(h->fired, 0, sizeof(h->fired));
	h->flips = 0;
	pthread_mutex_unlock(&mu);
	return 0;
}

void memsrc_reset(void)
{
	pthread_mutex_lock(&mu);
	while (objs) {
		struct mem_obj *o = objs;
		objs = o->next;
		free(o->path);
		free(o->data);
		free(o);
	}
	for (size_t i = 0; i < MEMSRC_MAX_HOSTS; i++)
		hosts[i].used = false;
	log_n = 0;
	held_now = 0;
	atomic_store(&released, false);
	atomic_store(&refused_ends, 0);
	pthread_mutex_unlock(&mu);
}

void memsrc_release(void)
{
	atomic_store(&released, true);
}

int memsrc_wait_held(unsigned n, int timeout_ms)
{
	pthread_once(&cv_once, cv_init);
	struct timespec dl;
	clock_gettime(CLOCK_MONOTONIC, &dl);
	dl.tv_sec += timeout_ms / 1000;
	dl.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
	if (dl.tv_nsec >= 1000000000L) {
		dl.tv_sec++;
		dl.tv_nsec -= 1000000000L;
	}
	int ret = 0;
	pthread_mutex_lock(&mu);
	while (held_now < n && ret == 0)
		ret = pthread_cond_timedwait(&held_cv, &mu, &dl);
	bool ok = held_now >= n;
	pthread_mutex_unlock(&mu);
	return ok ? 0 : -ETIMEDOUT;
}

/* Sums a counter over one host or all. */
#define SUM_OVER_HOSTS(field, host, T)                                                             \
	do {                                                                                       \
		T sum = 0;                                                                         \
		pthread_mutex_lock(&mu);                                                           \
		for (size_t i = 0; i < MEMSRC_MAX_HOSTS; i++)                                      \
			if (hosts[i].used && (!(host) || strcasecmp(hosts[i].name, (host)) == 0))  \
				sum += atomic_load(&hosts[i].field);                               \
		pthread_mutex_unlock(&mu);                                                         \
		return sum;                                                                        \
	} while (0)

unsigned memsrc_attempts(const char *host)
{
	SUM_OVER_HOSTS(attempts, host, unsigned);
}

uint64_t memsrc_served(const char *host)
{
	SUM_OVER_HOSTS(served, host, uint64_t);
}

unsigned memsrc_engine_pauses(const char *host)
{
	SUM_OVER_HOSTS(engine_pauses, host, unsigned);
}

unsigned memsrc_source_pauses(const char *host)
{
	SUM_OVER_HOSTS(source_pauses, host, unsigned);
}

unsigned memsrc_failures(const char *host)
{
	SUM_OVER_HOSTS(failures, host, unsigned);
}

unsigned memsrc_refused_ends(void)
{
	return atomic_load(&refused_ends);
}

size_t memsrc_log_len(void)
{
	pthread_mutex_lock(&mu);
	size_t n = log_n;
	pthread_mutex_unlock(&mu);
	return n;
}

bool memsrc_log_get(size_t i, struct memsrc_attempt *out)
{
	pthread_mutex_lock(&mu);
	bool ok = i < log_n;
	if (ok)
		*out = log_v[i];
	pthread_mutex_unlock(&mu);
	return ok;
}

static const char *outcome_name(enum memsrc_outcome o)
{
	static const char *const names[] = {"running", "done",       "failed",  "404",
	                                    "416",     "whole-body", "refused", "stopped"};
	return (unsigned)o < sizeof(names) / sizeof(names[0]) ? names[o] : "?";
}

void memsrc_log_dump(const char *why)
{
	pthread_mutex_lock(&mu);
	fprintf(stderr, "memsrc: attempt log (%s), %zu attempt(s):\n", why, log_n);
	for (size_t i = 0; i < log_n; i++) {
		const struct memsrc_attempt *a = &log_v[i];
		fprintf(stderr,
		        "  #%zu stream %u mem://%s/%s [%" PRIu64 ", %" PRIu64 ") %s skip %" PRIu64
		        " -> %s at %" PRIu64 "%s\n",
		        i, a->stream, a->host, a->path, a->pos, a->end,
		        a->ranged ? "ranged" : "whole", a->skip, outcome_name(a->outcome),
		        a->reached, a->failed_paused ? " (while paused)" : "");
	}
	pthread_mutex_unlock(&mu);
}

/* ------------------------------------------------------------------------ */
/* The source (loop thread)                                                 */

struct mem_stream {
	bool active;                 /* an attempt runs */
	bool paused;                 /* the engine paused it: wait for resume() */
	bool held;                   /* a hold: until memsrc_release() */
	unsigned countdown;          /* run() calls left in a source pause */
	unsigned chunks;             /* chunks delivered this attempt */
	enum memsrc_outcome pending; /* an answer due at the next run() */
	struct mem_host *host;
	struct memsrc_profile prof; /* the host's, at start */
	const uint8_t *data;
	size_t len;              /* the object's length */
	uint64_t first;          /* object offset of the attempt's first byte */
	uint64_t off;            /* next object offset to deliver */
	uint64_t stop;           /* where the body ends */
	unsigned checked;        /* fail rules looked at (bit per rule) */
	unsigned checked_paused; /* while_paused rules looked at */
	bool flip_decided, flip_this;
	size_t log_i; /* SIZE_MAX: not logged */
	uint8_t *tmp; /* scratch for patched bytes */
	size_t tmp_len;
};

struct mem_state {
	struct mem_stream *v;
	uint32_t n;
	bool after_ready; /* ready() ran since the last run(): the next run()
	                     is the first of a loop pass */
};

extern const struct sstf__source_ops memsrc_ops;

static struct mem_state *state_of(struct sstf_engine *e)
{
	return e->src_state[sstf__source_index(&memsrc_ops)];
}

static struct mem_stream *ms_of(struct sstf_engine *e, const struct sstf__stream *s)
{
	return &state_of(e)->v[s->index];
}

static int mem_init(struct sstf_engine *e)
{
	pthread_once(&cv_once, cv_init);
	struct mem_state *st = calloc(1, sizeof(*st));
	if (!st)
		return -ENOMEM;
	st->v = calloc(e->nstreams ? e->nstreams : 1, sizeof(*st->v));
	if (!st->v) {
		free(st);
		return -ENOMEM;
	}
	st->n = e->nstreams;
	for (uint32_t i = 0; i < st->n; i++)
		st->v[i].log_i = SIZE_MAX;
	e->src_state[sstf__source_index(&memsrc_ops)] = st;
	return 0;
}

static void mem_fini(struct sstf_engine *e)
{
	struct mem_state *st = state_of(e);
	if (!st)
		return;
	for (uint32_t i = 0; i < st->n; i++)
		free(st->v[i].tmp);
	free(st->v);
	free(st);
	e->src_state[sstf__source_index(&memsrc_ops)] = NULL;
}

static void log_end(struct mem_stream *ms, enum memsrc_outcome o, bool while_paused)
{
	pthread_mutex_lock(&mu);
	if (ms->log_i < log_n && log_v[ms->log_i].outcome == MEMSRC_RUNNING) {
		log_v[ms->log_i].outcome = o;
		log_v[ms->log_i].reached = ms->off;
		log_v[ms->log_i].failed_paused = while_paused;
	}
	pthread_mutex_unlock(&mu);
}

static void unhold(struct mem_stream *ms)
{
	if (!ms->held)
		return;
	ms->held = false;
	pthread_mutex_lock(&mu);
	held_now--;
	pthread_mutex_unlock(&mu);
}

static int mem_start(struct sstf_engine *e, struct sstf__stream *s, const char *url)
{
	struct mem_stream *ms = ms_of(e, s);
	const char *p = url + strlen("mem://");
	const char *slash = strchr(p, '/');
	size_t hn = slash ? (size_t)(slash - p) : strlen(p);
	const char *path = slash ? slash + 1 : "";

	uint8_t *tmp = ms->tmp;
	size_t tmp_len = ms->tmp_len;
	memset(ms, 0, sizeof(*ms));
	ms->tmp = tmp;
	ms->tmp_len = tmp_len;
	ms->log_i = SIZE_MAX;

	pthread_mutex_lock(&mu);
	struct mem_host *h = host_get(p, hn);
	if (!h) {
		pthread_mutex_unlock(&mu);
		sstf__file_fail(s->file, -ENOSPC, "memsrc: more than %d hosts", MEMSRC_MAX_HOSTS);
		return -ENOSPC;
	}
	ms->host = h;
	ms->prof = h->prof;
	const struct mem_obj *o = objs;
	while (o && strcmp(o->path, path) != 0)
		o = o->next;
	if (o) {
		ms->data = o->data;
		ms->len = o->len;
	}
	atomic_fetch_add(&h->attempts, 1);
	if (log_n < MEMSRC_MAX_LOG) {
		struct memsrc_attempt *a = &log_v[log_n];
		memset(a, 0, sizeof(*a));
		snprintf(a->host, sizeof(a->host), "%s", h->name);
		snprintf(a->path, sizeof(a->path), "%s", path);
		a->stream = s->index;
		a->pos = s->pos;
		a->end = s->end;
		a->skip = s->skip;
		a->ranged = s->ranged;
		a->outcome = MEMSRC_RUNNING;
		ms->log_i = log_n++;
	}
	pthread_mutex_unlock(&mu);

	ms->active = true;
	uint64_t size = sstf__stream_file_size(s);
	if (ms->prof.not_found || !o) {
		ms->pending = MEMSRC_NOT_FOUND;
		return 0;
	}
	if (s->ranged && ms->prof.ignore_ranges && !ms->prof.pool_reads) {
		ms->pending = MEMSRC_WHOLE_BODY;
		return 0;
	}
	if (s->ranged || ms->prof.pool_reads) {
		/* Reads at an offset (pool reads never need s->skip). */
		if (s->ranged && s->end == size && s->pos >= ms->len) {
			ms->pending = MEMSRC_UNSATISFIABLE; /* "pos-" past the end */
			return 0;
		}
		if (s->ranged && s->end != size && s->pos >= s->end && !ms->prof.pool_reads) {
			ms->pending = MEMSRC_WHOLE_BODY; /* "E-(E-1)": ignored, 200 */
			return 0;
		}
		ms->first = s->pos;
		ms->stop = s->end == size ? ms->len : (s->end < ms->len ? s->end : ms->len);
	} else {
		ms->first = 0; /* the whole object; the engine skips s->skip */
		ms->stop = ms->len;
	}
	/* Past what was asked: the range's end, or the object's. */
	ms->stop += ms->prof.overrun;
	if (ms->prof.short_by)
		ms->stop = ms->stop - ms->first > ms->prof.short_by ? ms->stop - ms->prof.short_by
		                                                    : ms->first;
	ms->off = ms->first;
	return 0;
}

static void mem_stop(struct sstf_engine *e, struct sstf__stream *s)
{
	struct mem_stream *ms = ms_of(e, s);
	if (!ms->active)
		return;
	ms->active = false;
	unhold(ms);
	log_end(ms, MEMSRC_STOPPED, false);
}

static void mem_resume(struct sstf_engine *e, struct sstf__stream *s)
{
	ms_of(e, s)->paused = false;
}

/* Ends the attempt with `end`; ms is settled before the engine runs, which
 * may start the stream's next attempt right away. */
static void end_with(struct sstf_engine *e, struct sstf__stream *s, struct mem_stream *ms,
                     enum memsrc_outcome o, bool while_paused, const struct sstf__src_end *end)
{
	log_end(ms, o, while_paused);
	ms->active = false;
	ms->paused = false;
	unhold(ms);
	sstf__stream_end(e, s, end);
}

/* Rule r applies to ms's attempt: before the byte at `at` inside the body,
 * or, with after_body, at the end of a body that ends there. */
static bool rule_covers(const struct mem_stream *ms, const struct memsrc_fail *r)
{
	if (!r->on || r->at < ms->first)
		return false;
	return r->after_body ? r->at == ms->stop : r->at < ms->stop;
}

/* Whether rule i fires for this attempt (counted once per attempt). */
static bool rule_fires(struct mem_stream *ms, size_t i)
{
	const struct memsrc_fail *r = &ms->prof.fail[i];
	pthread_mutex_lock(&mu);
	bool fire = r->times == 0 || ms->host->fired[i] < r->times;
	if (fire)
		ms->host->fired[i]++;
	pthread_mutex_unlock(&mu);
	return fire;
}

static void fail_attempt(struct sstf_engine *e, struct sstf__stream *s, struct mem_stream *ms,
                         size_t i, bool while_paused)
{
	const struct memsrc_fail *r = &ms->prof.fail[i];
	char detail[128];
	pthread_mutex_lock(&mu);
	snprintf(detail, sizeof(detail), "%s", ms->host->detail[i]);
	pthread_mutex_unlock(&mu);
	atomic_fetch_add(&ms->host->failures, 1);
	struct sstf__src_end end = {
	    .err = r->err ? r->err : -SSTF_ETRANSFER,
	    .transient = r->transient,
	    .retry_after_ms = r->retry_after_ms,
	    .status = r->status,
	    .detail = detail,
	};
	end_with(e, s, ms, MEMSRC_FAILED, while_paused, &end);
}

/* A rule due at ms->off: its index, or -1. */
static int rule_due(struct mem_stream *ms)
{
	for (size_t i = 0; i < MEMSRC_MAX_FAILS; i++) {
		const struct memsrc_fail *r = &ms->prof.fail[i];
		if (r->while_paused || !rule_covers(ms, r) || r->at != ms->off ||
		    (ms->checked & (1u << i)))
			continue;
		ms->checked |= 1u << i;
		if (rule_fires(ms, i))
			return (int)i;
	}
	return -1;
}

/* A while_paused rule that applies now to paused ms (looked at or not). */
static int paused_rule(struct mem_stream *ms, bool look)
{
	for (size_t i = 0; i < MEMSRC_MAX_FAILS; i++) {
		const struct memsrc_fail *r = &ms->prof.fail[i];
		if (!r->while_paused || !rule_covers(ms, r) || ms->off < r->at ||
		    (ms->checked_paused & (1u << i)))
			continue;
		if (!look)
			return (int)i;
		ms->checked_paused |= 1u << i;
		if (rule_fires(ms, i))
			return (int)i;
	}
	return -1;
}

/* The object offset where a hold applies to ms, or UINT64_MAX. */
static uint64_t hold_point(const struct mem_stream *ms)
{
	if (!ms->prof.hold)
		return UINT64_MAX;
	return ms->prof.hold_relative ? ms->first + ms->prof.hold_at : ms->prof.hold_at;
}

/* The next chunk's bytes, patched where they pass the object's end or hold
 * the flipped byte. NULL when out of memory. */
static const uint8_t *chunk_bytes(struct mem_stream *ms, size_t n)
{
	uint64_t off = ms->off;
	bool flip = false;
	if (ms->prof.flip && ms->prof.flip_at >= off && ms->prof.flip_at < off + n) {
		if (!ms->flip_decided) {
			ms->flip_decided = true;
			pthread_mutex_lock(&mu);
			ms->flip_this =
			    ms->prof.flip_times == 0 || ms->host->flips < ms->prof.flip_times;
			if (ms->flip_this)
				ms->host->flips++;
			pthread_mutex_unlock(&mu);
		}
		flip = ms->flip_this;
	}
	if (!flip && off + n <= ms->len)
		return ms->data + off;
	if (ms->tmp_len < n) {
		uint8_t *t = realloc(ms->tmp, n);
		if (!t)
			return NULL;
		ms->tmp = t;
		ms->tmp_len = n;
	}
	for (size_t k = 0; k < n; k++) {
		uint64_t o = off + k;
		ms->tmp[k] = o < ms->len ? ms->data[o] : (uint8_t)(0xA5 ^ (o & 0xff));
	}
	if (flip)
		ms->tmp[ms->prof.flip_at - off] ^= 0x01;
	return ms->tmp;
}

/*
 * Hands n bytes at ms->off to the engine. Returns 0 with *taken set, 1 when
 * the engine paused the stream, -1 when it refused them.
 */
static int push(struct sstf_engine *e, struct sstf__stream *s, struct mem_stream *ms, size_t n,
                size_t *taken)
{
	if (!ms->prof.pool_reads) {
		const uint8_t *b = chunk_bytes(ms, n);
		if (!b)
			return -1;
		int r = sstf__stream_data(e, s, b, n);
		*taken = r == 0 ? n : 0;
		return r;
	}
	uint32_t cap = 0;
	int idx;
	uint8_t *dst = sstf__stream_buffer(e, s, &cap, &idx);
	if (!dst)
		return 1;
	if (n > cap)
		n = cap;
	const uint8_t *b = chunk_bytes(ms, n);
	if (!b) {
		sstf__stream_filled(e, s, 0);
		return -1;
	}
	memcpy(dst, b, n);
	sstf__stream_filled(e, s, (uint32_t)n);
	*taken = n;
	return 0;
}

static void deliver(struct sstf_engine *e, struct sstf__stream *s, struct mem_stream *ms,
                    bool first_of_pass)
{
	size_t budget = ms->prof.run_budget ? ms->prof.run_budget : DEFAULT_BUDGET;
	size_t chunk = ms->prof.chunk ? ms->prof.chunk : DEFAULT_CHUNK;
	struct sstf__src_end end = {0};
	while (ms->active) {
		switch (ms->pending) {
		case MEMSRC_NOT_FOUND:
			end.err = -SSTF_EHTTP;
			end.not_found = true;
			end.status = 404;
			end.detail = "HTTP 404";
			end_with(e, s, ms, MEMSRC_NOT_FOUND, false, &end);
			return;
		case MEMSRC_UNSATISFIABLE:
			end.err = -SSTF_EHTTP;
			end.status = 416;
			end.detail = "HTTP 416";
			end_with(e, s, ms, MEMSRC_UNSATISFIABLE, false, &end);
			return;
		case MEMSRC_WHOLE_BODY:
			end.whole_body = true;
			end.status = 200;
			end_with(e, s, ms, MEMSRC_WHOLE_BODY, false, &end);
			return;
		default:
			break;
		}
		if (ms->held) {
			if (!atomic_load(&released))
				return;
			unhold(ms);
		}
		if (ms->paused) {
			/* From the first run() of a pass only: the engine's
			 * look at its paused streams comes next, in the same
			 * pass, every time. */
			int i = first_of_pass ? paused_rule(ms, true) : -1;
			if (i >= 0)
				fail_attempt(e, s, ms, (size_t)i, true);
			return;
		}
		if (ms->countdown) {
			ms->countdown--;
			return;
		}
		int i = rule_due(ms);
		if (i >= 0) {
			fail_attempt(e, s, ms, (size_t)i, false);
			return;
		}
		uint64_t hp = hold_point(ms);
		if (hp == ms->off && !atomic_load(&released)) {
			ms->held = true;
			pthread_mutex_lock(&mu);
			held_now++;
			pthread_cond_broadcast(&held_cv);
			pthread_mutex_unlock(&mu);
			return;
		}
		if (ms->off >= ms->stop) {
			end_with(e, s, ms, MEMSRC_DONE, false, &end);
			return;
		}
		if (!budget)
			return;
		uint64_t n = ms->stop - ms->off;
		if (n > chunk)
			n = chunk;
		if (n > budget)
			n = budget;
		/* Cut where a rule or a hold applies, so that the attempt
		 * stops exactly there. */
		for (size_t k = 0; k < MEMSRC_MAX_FAILS; k++) {
			const struct memsrc_fail *r = &ms->prof.fail[k];
			if (r->on && r->at > ms->off && r->at - ms->off < n)
				n = r->at - ms->off;
		}
		if (hp != UINT64_MAX && hp > ms->off && hp - ms->off < n)
			n = hp - ms->off;
		size_t taken = 0;
		int r = push(e, s, ms, (size_t)n, &taken);
		if (!ms->active)
			return; /* stopped inside the engine (its file failed) */
		if (r == 1) {
			ms->paused = true;
			atomic_fetch_add(&ms->host->engine_pauses, 1);
			return;
		}
		if ((r < 0 || (ms->prof.pool_reads && s->file && s->file->err)) &&
		    ms->prof.refuse_just_stops) {
			if (taken)
				atomic_fetch_add(&ms->host->served, taken);
			ms->active = false;
			log_end(ms, MEMSRC_REFUSED, false);
			return;
		}
		if (r < 0 || (ms->prof.pool_reads && s->file && s->file->err)) {
			/* The engine refused the bytes. When it left the attempt
			 * open, the source ends it (http.c does the same). */
			if (taken)
				atomic_fetch_add(&ms->host->served, taken);
			if (s->attempt) {
				atomic_fetch_add(&refused_ends, 1);
				end.err = -SSTF_ETRANSFER;
				end.detail = "stopped";
				end_with(e, s, ms, MEMSRC_REFUSED, false, &end);
			} else {
				ms->active = false;
				log_end(ms, MEMSRC_REFUSED, false);
			}
			return;
		}
		ms->off += taken;
		budget -= taken;
		atomic_fetch_add(&ms->host->served, taken);
		ms->chunks++;
		if (ms->prof.pause_every && ms->chunks % ms->prof.pause_every == 0 &&
		    ms->prof.pause_turns) {
			ms->countdown = ms->prof.pause_turns;
			atomic_fetch_add(&ms->host->source_pauses, 1);
		}
	}
}

static void mem_run(struct sstf_engine *e, uint64_t now)
{
	struct mem_state *st = state_of(e);
	bool first_of_pass = st->after_ready;
	st->after_ready = false;
	for (uint32_t i = 0; i < st->n; i++) {
		struct mem_stream *ms = &st->v[i];
		if (ms->active)
			deliver(e, &e->streams[i], ms, first_of_pass);
	}
}

static bool mem_ready(struct sstf_engine *e)
{
	struct mem_state *st = state_of(e);
	st->after_ready = true;
	for (uint32_t i = 0; i < st->n; i++) {
		struct mem_stream *ms = &st->v[i];
		if (!ms->active)
			continue;
		if (ms->pending != MEMSRC_RUNNING)
			return true;
		if (ms->held) {
			if (atomic_load(&released))
				return true;
			continue;
		}
		if (ms->paused) {
			if (paused_rule(ms, false) >= 0)
				return true;
			continue;
		}
		return true; /* bytes, an end, or a source pause counting down */
	}
	return false;
}

static uint64_t mem_deadline(struct sstf_engine *e)
{
	struct mem_state *st = state_of(e);
	if (atomic_load(&released))
		return 0;
	for (uint32_t i = 0; i < st->n; i++)
		if (st->v[i].active && st->v[i].held)
			return sstf__now_ns() + HOLD_POLL_NS;
	return 0;
}

static const char *const mem_schemes[] = {"mem", NULL};

const struct sstf__source_ops memsrc_ops = {
    .name = "mem",
    .schemes = mem_schemes,
    .init = mem_init,
    .fini = mem_fini,
    .start = mem_start,
    .stop = mem_stop,
    .resume = mem_resume,
    .run = mem_run,
    .ready = mem_ready,
    .deadline = mem_deadline,
};

int memsrc_register(void)
{
	pthread_once(&cv_once, cv_init);
	return sstf__source_add(&memsrc_ops);
}
