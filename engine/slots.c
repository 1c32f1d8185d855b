/*
 * slots.c - the fixed table every operation of the engine belongs to.
 *
 * Invariant 1 (every operation has one slot) and 2 (stale completions are
 * dropped) live here. Slots are never allocated or freed at run time: the
 * table is sized at engine creation, each kind has its own free list, and a
 * slot returns to its free list only when nothing of it is in flight, so the
 * memory a completion's tag points at is always the table.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>

#include "internal.h"

#define NONE UINT32_MAX

int sstf__slots_init(struct sstf__slots *t, const struct sstf_allocator *a,
                     uint32_t nctl, uint32_t nfile, uint32_t nstream, uint32_t nsock,
                     uint32_t ndir)
{
	uint32_t counts[SSTF__SLOT_KINDS];
	counts[SSTF__SLOT_CTL] = nctl;
	counts[SSTF__SLOT_FILE] = nfile;
	counts[SSTF__SLOT_STREAM] = nstream;
	counts[SSTF__SLOT_SOCK] = nsock;
	counts[SSTF__SLOT_DIR] = ndir;
	uint64_t n = (uint64_t)nctl + nfile + nstream + nsock + ndir;
	if (n == 0 || n > SSTF__MAX_SLOTS)
		return -EINVAL;
	t->v = sstf__alloc(a, n * sizeof(*t->v));
	if (!t->v)
		return -ENOMEM;
	t->n = (uint32_t)n;
	atomic_init(&t->stale, 0);
	uint32_t i = 0;
	for (int k = 0; k < SSTF__SLOT_KINDS; k++) {
		t->free_head[k] = counts[k] ? i : NONE;
		t->used[k] = 0;
		for (uint32_t j = 0; j < counts[k]; j++, i++) {
			struct sstf__slot *s = &t->v[i];
			s->index = i;
			s->kind = (enum sstf__slot_kind)k;
			s->state = SSTF__SLOT_FREE;
			s->next_free = j + 1 < counts[k] ? i + 1 : NONE;
		}
	}
	return 0;
}

void sstf__slots_fini(struct sstf__slots *t, const struct sstf_allocator *a)
{
	sstf__free(a, t->v);
	t->v = NULL;
	t->n = 0;
}

static uint64_t make_tag(uint32_t index, uint32_t seq, uint64_t gen_id)
{
	uint64_t g = gen_id & ((1u << SSTF__TAG_GEN_BITS) - 1);
	uint64_t q = seq & ((1u << SSTF__TAG_SEQ_BITS) - 1);
	return g << SSTF__TAG_GEN_SHIFT | q << SSTF__TAG_SEQ_SHIFT |
	       (uint64_t)index << SSTF__TAG_SLOT_SHIFT;
}

struct sstf__slot *sstf__slot_alloc(struct sstf__slots *t,
                                    enum sstf__slot_kind kind,
                                    struct sstf__gen *gen, uint64_t gen_id)
{
	uint32_t i = t->free_head[kind];
	if (i == NONE)
		return NULL;
	struct sstf__slot *s = &t->v[i];
	t->free_head[kind] = s->next_free;
	s->next_free = NONE;
	s->seq++;
	s->gen = gen;
	s->tag = make_tag(i, s->seq, gen_id);
	sstf__slot_set_state(t, s, SSTF__SLOT_ACTIVE);
	return s;
}

void sstf__slot_set_state(struct sstf__slots *t, struct sstf__slot *s,
                          enum sstf__slot_state to)
{
	bool ok;
	switch (to) {
	case SSTF__SLOT_ACTIVE:
		ok = s->state == SSTF__SLOT_FREE;
		break;
	case SSTF__SLOT_DRAINING:
		ok = s->state == SSTF__SLOT_ACTIVE;
		break;
	case SSTF__SLOT_FREE:
		ok = s->state != SSTF__SLOT_FREE && s->inflight == 0;
		break;
	default:
		ok = false;
	}
	if (!ok) {
		fprintf(stderr, "sstfetch: slot %u: bad transition %d -> %d (inflight %u)\n",
		        s->index, (int)s->state, (int)to, s->inflight);
		abort();
	}
	if (to == SSTF__SLOT_ACTIVE)
		t->used[s->kind]++;
	if (to == SSTF__SLOT_FREE) {
		t->used[s->kind]--;
		s->gen = NULL;
		s->next_free = t->free_head[s->kind];
		t->free_head[s->kind] = s->index;
	}
	s->state = to;
}

struct sstf__slot *sstf__slot_resolve(struct sstf__slots *t, uint64_t ud)
{
	uint32_t i = sstf__tag_slot(ud);
	if (i < t->n) {
		struct sstf__slot *s = &t->v[i];
		if (s->state != SSTF__SLOT_FREE &&
		    (ud & SSTF__TAG_ID_MASK) == s->tag)
			return s;
	}
	atomic_fetch_add_explicit(&t->stale, 1, memory_order_relaxed);
	return NULL;
}

void sstf__slot_op_begin(struct sstf__slot *s)
{
	s->inflight++;
	if (s->gen)
		s->gen->inflight++;
}

void sstf__slot_op_end(struct sstf__slot *s)
{
	assert(s->inflight > 0);
	s->inflight--;
	if (s->gen) {
		assert(s->gen->inflight > 0);
		s->gen->inflight--;
	}
}
