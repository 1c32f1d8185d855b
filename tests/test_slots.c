/*
 * Description: the slot table gives every operation one slot and one tag;
 * a completion whose tag does not match its slot's current tag (an old
 * incarnation, another generation, a free slot, an index past the table) is
 * rejected and counted, never followed; slots only return to their free list
 * once nothing of them is in flight, and each kind has its own run.
 */
#include <criterion/criterion.h>

#include <signal.h>
#include <stdint.h>

#include "internal.h"

static const struct sstf_allocator libc_alloc = {0};
static struct sstf__slots t;

static void setup(void)
{
	cr_assert_eq(sstf__slots_init(&t, &libc_alloc, 2, 4, 4, 8, 4), 0);
}

static void teardown(void)
{
	sstf__slots_fini(&t, &libc_alloc);
}

TestSuite(slots, .init = setup, .fini = teardown);

static uint64_t stale(void)
{
	return atomic_load(&t.stale);
}

Test(slots, kinds_have_their_own_runs_and_run_out)
{
	struct sstf__slot *x[4];
	for (int i = 0; i < 4; i++) {
		x[i] = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 7);
		cr_assert_not_null(x[i]);
		cr_assert_eq(x[i]->kind, SSTF__SLOT_FILE);
		cr_assert_eq(x[i]->state, SSTF__SLOT_ACTIVE);
	}
	cr_assert_null(sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 7),
	               "a fifth transfer slot out of four");
	/* Other kinds are not eaten by the transfers. */
	cr_assert_not_null(sstf__slot_alloc(&t, SSTF__SLOT_SOCK, NULL, 0));
	cr_assert_not_null(sstf__slot_alloc(&t, SSTF__SLOT_CTL, NULL, 0));
	sstf__slot_set_state(&t, x[2], SSTF__SLOT_FREE);
	struct sstf__slot *again = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 8);
	cr_assert_eq(again, x[2], "the freed slot is reused");
}

Test(slots, current_tag_resolves_with_any_op_and_aux)
{
	struct sstf__slot *s = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 42);
	uint64_t ud = sstf__tag_op(s->tag, SSTF__OP_WRITE, 17);
	cr_assert_eq(sstf__slot_resolve(&t, ud), s);
	cr_assert_eq(sstf__tag_opcode(ud), SSTF__OP_WRITE);
	cr_assert_eq(sstf__tag_aux(ud), 17u);
	cr_assert_eq(sstf__tag_slot(ud), s->index);
	cr_assert_eq(stale(), 0);
}

Test(slots, completion_of_an_old_incarnation_is_stale)
{
	struct sstf__slot *s = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 5);
	uint64_t old = sstf__tag_op(s->tag, SSTF__OP_WRITE, 3);
	sstf__slot_set_state(&t, s, SSTF__SLOT_FREE);
	/* While the slot is free, its old tag resolves to nothing. */
	cr_assert_null(sstf__slot_resolve(&t, old));
	cr_assert_eq(stale(), 1);
	/* Reused by the same generation id: the sequence still tells. */
	struct sstf__slot *s2 = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 5);
	cr_assert_eq(s2, s);
	cr_assert_neq(s2->tag, old & SSTF__TAG_ID_MASK);
	cr_assert_null(sstf__slot_resolve(&t, old));
	cr_assert_eq(stale(), 2);
	cr_assert_eq(sstf__slot_resolve(&t, sstf__tag_op(s2->tag, SSTF__OP_WRITE, 3)), s2);
}

Test(slots, completion_of_another_generation_is_stale)
{
	struct sstf__slot *s = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 9);
	uint64_t forged = s->tag ^ ((uint64_t)1 << SSTF__TAG_GEN_SHIFT);
	cr_assert_null(sstf__slot_resolve(&t, forged));
	cr_assert_eq(stale(), 1);
}

Test(slots, index_past_the_table_is_stale_not_followed)
{
	/* Slot index 16383 is far past a 14-slot table: resolve must not read
	 * it (ASan would catch the read), only count it. */
	uint64_t ud = (uint64_t)(SSTF__MAX_SLOTS - 1) << SSTF__TAG_SLOT_SHIFT;
	cr_assert_null(sstf__slot_resolve(&t, ud | SSTF__OP_WRITE));
	cr_assert_null(sstf__slot_resolve(&t, ~(uint64_t)0));
	cr_assert_eq(stale(), 2);
}

Test(slots, inflight_counts_on_slot_and_generation)
{
	struct sstf__gen g = {0};
	struct sstf__slot *s = sstf__slot_alloc(&t, SSTF__SLOT_FILE, &g, 1);
	sstf__slot_op_begin(s);
	sstf__slot_op_begin(s);
	cr_assert_eq(s->inflight, 2);
	cr_assert_eq(g.inflight, 2);
	sstf__slot_op_end(s);
	cr_assert_eq(s->inflight, 1);
	cr_assert_eq(g.inflight, 1);
	sstf__slot_set_state(&t, s, SSTF__SLOT_DRAINING);
	sstf__slot_op_end(s);
	sstf__slot_set_state(&t, s, SSTF__SLOT_FREE);
	cr_assert_eq(g.inflight, 0);
	cr_assert_null(s->gen, "a free slot keeps no generation pointer");
}

/* The one door refuses to free a slot with work in flight. */
Test(slots, freeing_with_work_in_flight_aborts, .signal = SIGABRT)
{
	struct sstf__slot *s = sstf__slot_alloc(&t, SSTF__SLOT_FILE, NULL, 1);
	sstf__slot_op_begin(s);
	sstf__slot_set_state(&t, s, SSTF__SLOT_FREE);
}

Test(slots, draining_a_free_slot_aborts, .signal = SIGABRT)
{
	sstf__slot_set_state(&t, &t.v[0], SSTF__SLOT_DRAINING);
}

/* Generations have a door of their own with the same rule. */
Test(slots, generation_cannot_end_with_work_in_flight, .signal = SIGABRT)
{
	struct sstf__gen g = {0};
	g.state = SSTF__GEN_RUNNING;
	g.inflight = 1;
	sstf__gen_set_state(&g, SSTF__GEN_ENDED);
}

Test(slots, generation_cannot_restart_after_ending, .signal = SIGABRT)
{
	struct sstf__gen g = {0};
	g.state = SSTF__GEN_ENDED;
	sstf__gen_set_state(&g, SSTF__GEN_RUNNING);
}
