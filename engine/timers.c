/*
 * timers.c - the timer heap and the engine's one ring timer.
 *
 * Streams waiting out a retry's backoff sit on a binary min-heap keyed by
 * their wake time, so that a loop turn costs O(log n) per retry instead of
 * a scan of every stream. The engine keeps one absolute ring timeout
 * (IORING_TIMEOUT_ABS) armed for the earliest of: the heap's top, each
 * source's own deadline (curl's timer), and what the caller adds (the rate
 * limit's next tokens). A sooner deadline removes the armed timeout; its
 * completion re-arms for the new one.
 */
#include <errno.h>

#include "internal.h"

int sstf__timers_init(struct sstf__timers *t, const struct sstf_allocator *a, uint32_t cap)
{
	t->heap = sstf__alloc(a, (cap ? cap : 1) * sizeof(*t->heap));
	if (!t->heap)
		return -ENOMEM;
	t->cap = cap;
	t->n = 0;
	t->armed_ns = 0;
	t->removing = false;
	return 0;
}

void sstf__timers_fini(struct sstf__timers *t, const struct sstf_allocator *a)
{
	sstf__free(a, t->heap);
	t->heap = NULL;
}

static void place(struct sstf__timers *t, uint32_t i, struct sstf__stream *s)
{
	t->heap[i] = s;
	s->heap_index = i;
}

static void sift_up(struct sstf__timers *t, uint32_t i)
{
	struct sstf__stream *s = t->heap[i];
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (t->heap[parent]->wake_ns <= s->wake_ns)
			break;
		place(t, i, t->heap[parent]);
		i = parent;
	}
	place(t, i, s);
}

static void sift_down(struct sstf__timers *t, uint32_t i)
{
	struct sstf__stream *s = t->heap[i];
	for (;;) {
		uint32_t c = 2 * i + 1;
		if (c >= t->n)
			break;
		if (c + 1 < t->n && t->heap[c + 1]->wake_ns < t->heap[c]->wake_ns)
			c++;
		if (t->heap[c]->wake_ns >= s->wake_ns)
			break;
		place(t, i, t->heap[c]);
		i = c;
	}
	place(t, i, s);
}

void sstf__timer_add(struct sstf__timers *t, struct sstf__stream *s)
{
	/* cap is the number of streams: each is on the heap at most once. */
	place(t, t->n++, s);
	sift_up(t, t->n - 1);
}

void sstf__timer_remove(struct sstf__timers *t, struct sstf__stream *s)
{
	uint32_t i = s->heap_index;
	struct sstf__stream *last = t->heap[--t->n];
	if (i == t->n)
		return;
	place(t, i, last);
	sift_up(t, i);
	sift_down(t, last->heap_index);
}

void sstf__timers_run(struct sstf_engine *e, uint64_t now)
{
	struct sstf__timers *t = &e->timers;
	while (t->n && t->heap[0]->wake_ns <= now) {
		struct sstf__stream *s = t->heap[0];
		sstf__timer_remove(t, s);
		sstf__stream_on_timer(e, s);
	}
}

void sstf__timers_arm(struct sstf_engine *e, uint64_t also)
{
	struct sstf__timers *t = &e->timers;
	uint64_t deadline = also;
	if (t->n && (!deadline || t->heap[0]->wake_ns < deadline))
		deadline = t->heap[0]->wake_ns;
	for (size_t i = 0; sstf__sources[i]; i++) {
		if (!sstf__sources[i]->deadline)
			continue;
		uint64_t d = sstf__sources[i]->deadline(e);
		if (d && (!deadline || d < deadline))
			deadline = d;
	}
	if (!deadline)
		return;
	struct sstf__slot *ctl = &e->slots.v[SSTF__CTL_TIMER];
	if (!t->armed_ns) {
		t->ts.tv_sec = (long long)(deadline / 1000000000u);
		t->ts.tv_nsec = (long long)(deadline % 1000000000u);
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_timeout(sqe, &t->ts, 0, IORING_TIMEOUT_ABS);
		sstf__ring_tag(sqe, ctl, SSTF__OP_TIMER, 0);
		t->armed_ns = deadline;
	} else if (t->armed_ns > deadline && !t->removing) {
		/* Something is due sooner than the armed timeout fires. */
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_timeout_remove(sqe, sstf__tag_op(ctl->tag, SSTF__OP_TIMER, 0), 0);
		sstf__ring_tag(sqe, ctl, SSTF__OP_TIMER_REMOVE, 0);
		t->removing = true;
	}
}

void sstf__timers_on_cqe(struct sstf_engine *e, enum sstf__op op, int res)
{
	if (op == SSTF__OP_TIMER)
		e->timers.armed_ns = 0;
	else if (op == SSTF__OP_TIMER_REMOVE)
		e->timers.removing = false;
}
