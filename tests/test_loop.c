/*
 * Description: the loop never sleeps with work it could do (invariant 9).
 * A transfer that curl finishes inside its own timer (a malformed URL, a
 * connect that fails at once in a network namespace without a route) is
 * collected, and its generation ends. A submit or a cancel made from a
 * callback, on the loop thread, is taken without any other thread waking
 * the loop.
 *
 * Every wait here is a hang guard: before the fix these generations never
 * ended, and the guard turns that into a failed test.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/sanitizers.h"

#define WAIT_MS 30000 /* hang guard; a healthy run ends in milliseconds */

static char *dest;

static void fixture_init(void)
{
	cr_assert_eq(ds_mkdtemp("loop-dest", &dest), 0);
}

static void fixture_fini(void)
{
	if (dest)
		ds_rmtree(dest);
	free(dest);
	dest = NULL;
}

static sstf_engine *engine_new(void)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_retries = -1; /* a failure ends the file at once */
	cfg.max_transfers = 4;
	sstf_engine *eng = NULL;
	int err = test_engine_new(&cfg, &eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %s", sstf_strerror(err));
	return eng;
}

static void engine_free_checked(sstf_engine *eng)
{
	sstf_engine_free(eng);
	cr_expect_eq(sanitizer_leak_check(), 0, "LeakSanitizer: leaks (report above)");
}

/* Records the one file result a single-file batch gives. */
struct one {
	atomic_int result;
	atomic_int calls;
	char detail[256];
};

static void one_file_done(void *user, uint64_t gen, const struct sstf_file_result *r)
{
	struct one *o = user;
	snprintf(o->detail, sizeof(o->detail), "%s", r->detail ? r->detail : "");
	atomic_store(&o->result, r->result);
	atomic_fetch_add(&o->calls, 1);
}

/* Submits one file from `url` and returns the generation's result. */
static int fetch_one(sstf_engine *eng, const char *url, struct one *o)
{
	struct sstf_file f = {
		.name = "000001.sst",
		.url = url,
		.size = 4096,
		.digest_kind = SSTF_DIGEST_NONE,
	};
	char errbuf[256] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = &f,
		.nfiles = 1,
		.on_file_done = one_file_done,
		.user = o,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen;
	int err = sstf_submit(eng, &b, &gen);
	cr_assert_eq(err, 0, "sstf_submit: %s (%s)", sstf_strerror(err), errbuf);
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT,
	              "the generation of %s never ended: the loop slept with curl's "
	              "finished transfer uncollected",
	              url);
	return res;
}

/*
 * curl parses the URL when it first runs the transfer, from its timer:
 * the port is out of range, so the transfer is done before the loop could
 * sleep. It must be collected.
 */
Test(loop, transfer_finished_inside_curl_timer_is_collected, .init = fixture_init,
     .fini = fixture_fini)
{
	sstf_engine *eng = engine_new();
	struct one o = {0};
	int res = fetch_one(eng, "http://127.0.0.1:99999/000001.sst", &o);
	cr_expect_eq(res, -SSTF_ETRANSFER, "result %d (%s)", res, sstf_strerror(res));
	cr_expect_eq(atomic_load(&o.calls), 1);
	cr_expect_eq(atomic_load(&o.result), -SSTF_ETRANSFER);
	cr_expect_neq(o.detail[0], '\0', "no detail for the failure");
	engine_free_checked(eng);
}

/*
 * With one transfer, a file that fails inside the sources' last run of a
 * pass frees the only slot after the pass started files: the next file
 * must start before the loop sleeps. The stress test found this one.
 */
Test(loop, file_failing_in_the_last_pass_lets_the_next_one_start, .init = fixture_init,
     .fini = fixture_fini)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_retries = -1;
	cfg.max_transfers = 1;
	sstf_engine *eng = NULL;
	cr_assert_eq(test_engine_new(&cfg, &eng), 0);
	struct sstf_file f[3] = {
		{.name = "a", .url = "http://127.0.0.1:99999/a", .size = 10},
		{.name = "b", .url = "http://127.0.0.1:99999/b", .size = 10},
		{.name = "c", .url = "http://127.0.0.1:99999/c", .size = 10},
	};
	struct one o = {0};
	struct sstf_batch b = {
		.dest_dir = dest, .files = f, .nfiles = 3, .on_file_done = one_file_done, .user = &o,
	};
	uint64_t gen;
	cr_assert_eq(sstf_submit(eng, &b, &gen), 0);
	int res = sstf_wait(eng, gen, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT, "the loop slept with a file waiting for a free slot "
	                               "(%d of 3 files reported)", atomic_load(&o.calls));
	cr_expect_eq(res, -SSTF_ETRANSFER);
	cr_expect_eq(atomic_load(&o.calls), 3);
	engine_free_checked(eng);
}

/*
 * The operator's report: `unshare -n sstfetch ... --retries=0` never
 * returned. In a new network namespace even loopback is down, so connect()
 * fails at once with ENETUNREACH, inside curl's timer. Needs CAP_SYS_ADMIN
 * (CI runs as root); skipped without it.
 */
Test(loop, connect_failing_at_once_without_network_is_collected, .init = fixture_init,
     .fini = fixture_fini)
{
	/* Only this test process's threads move; Criterion runs each test in
	 * a process of its own. The engine's thread inherits it. */
	if (unshare(CLONE_NEWNET) != 0)
		cr_skip_test("unshare(CLONE_NEWNET): %s (needs root)", strerror(errno));
	sstf_engine *eng = engine_new();
	struct one o = {0};
	int res = fetch_one(eng, "http://127.0.0.1:1/000001.sst", &o);
	cr_expect_eq(res, -SSTF_ETRANSFER, "result %d (%s)", res, sstf_strerror(res));
	cr_expect_eq(atomic_load(&o.calls), 1);
	cr_expect(strstr(o.detail, "127.0.0.1") || strstr(o.detail, "onnect") ||
	                  strstr(o.detail, "nreachable"),
	          "the detail does not say what failed: \"%s\"", o.detail);
	engine_free_checked(eng);
}

/*
 * A refused connection is retried after a backoff. The retry is scheduled
 * while collecting; the loop must arm its timer before it sleeps, or the
 * file waits forever.
 */
Test(loop, retry_scheduled_while_collecting_runs, .init = fixture_init, .fini = fixture_fini)
{
	struct sstf_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.max_retries = 2;
	cfg.max_transfers = 1;
	sstf_engine *eng = NULL;
	cr_assert_eq(test_engine_new(&cfg, &eng), 0);
	struct one o = {0};
	/* Port 1 on loopback: refused at once, every time. */
	int res = fetch_one(eng, "http://127.0.0.1:1/000001.sst", &o);
	cr_expect_eq(res, -SSTF_ETRANSFER, "result %d (%s)", res, sstf_strerror(res));
	struct sstf_stats st;
	cr_assert_eq(sstf_stats(eng, &st), 0);
	cr_expect_eq(st.retries, 2, "%llu retries, expected 2",
	             (unsigned long long)st.retries);
	engine_free_checked(eng);
}

/* ------------------------------------------------------------------------ */
/* Commands made on the loop thread                                         */

/*
 * A chain of generations, each submitted by the batch-done callback of the
 * one before. The main thread's submit of the first wakes the loop once;
 * the loop may take that wake-up only after it took the first command, so
 * one more hop (an empty generation in between) uses it up: the last
 * generation is then made, deterministically, with no wake-up pending.
 */
struct chain {
	sstf_engine *eng;
	atomic_int hops;          /* empty generations still to chain */
	int cancel_second;        /* the callback cancels what it submitted */
	int second_nonempty;
	atomic_uint_fast64_t second; /* id the callback got, 0 until then */
	atomic_int submit_err;
	atomic_int cancel_err;
	atomic_int second_done;
	atomic_int second_result;
};

static const struct sstf_file stalled_file = {
	/* Never started: the callback cancels it before the loop takes it. */
	.name = "never.sst",
	.url = "http://127.0.0.1:1/never.sst",
	.size = 1,
	.digest_kind = SSTF_DIGEST_NONE,
};

static void second_done(void *user, uint64_t gen, int result)
{
	struct chain *c = user;
	atomic_store(&c->second_result, result);
	atomic_store(&c->second_done, 1);
}

static void first_done(void *user, uint64_t gen, int result);

/* on_batch_done of the first batch: submits the next from the loop. */
static void first_done(void *user, uint64_t gen, int result)
{
	struct chain *c = user;
	if (atomic_fetch_sub(&c->hops, 1) > 0) {
		struct sstf_batch hop = {
			.dest_dir = dest,
			.on_batch_done = first_done,
			.user = c,
		};
		uint64_t id;
		atomic_store(&c->submit_err, sstf_submit(c->eng, &hop, &id));
		return;
	}
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = c->second_nonempty ? &stalled_file : NULL,
		.nfiles = c->second_nonempty ? 1 : 0,
		.on_batch_done = second_done,
		.user = c,
	};
	uint64_t id = 0;
	int err = sstf_submit(c->eng, &b, &id);
	atomic_store(&c->submit_err, err);
	if (err == 0 && c->cancel_second)
		atomic_store(&c->cancel_err, sstf_cancel(c->eng, id));
	atomic_store(&c->second, id);
}

/* Runs an empty first batch whose batch-done submits the second, then
 * waits for the second to end without touching the engine from here. */
static void run_chain(struct chain *c)
{
	c->eng = engine_new();
	atomic_store(&c->hops, 1);
	struct sstf_batch first = {
		.dest_dir = dest,
		.on_batch_done = first_done,
		.user = c,
	};
	uint64_t g1;
	cr_assert_eq(sstf_submit(c->eng, &first, &g1), 0);
	cr_assert_eq(sstf_wait(c->eng, g1, WAIT_MS), 0);
	/* The hop is g1 + 1 (ids count up), made by g1's batch-done. */
	int hop = sstf_wait(c->eng, g1 + 1, WAIT_MS);
	cr_assert_neq(hop, -ETIMEDOUT,
	              "generation %llu, made from a callback, never ended: the loop "
	              "slept without taking the command",
	              (unsigned long long)(g1 + 1));
	uint64_t g2 = atomic_load(&c->second);
	cr_assert_eq(atomic_load(&c->submit_err), 0, "submit from the callback: %s",
	             sstf_strerror(atomic_load(&c->submit_err)));
	cr_assert_neq(g2, 0);
	/* sstf_wait only sleeps on a condition variable: it does not wake
	 * the loop, so only the loop itself can start g2. */
	int res = sstf_wait(c->eng, g2, WAIT_MS);
	cr_assert_neq(res, -ETIMEDOUT,
	              "generation %llu, made from a callback, never ended: the loop "
	              "slept without taking the command",
	              (unsigned long long)g2);
	cr_expect_eq(atomic_load(&c->second_done), 1);
	cr_expect_eq(atomic_load(&c->second_result), res);
	engine_free_checked(c->eng);
}

Test(loop, batch_submitted_from_batch_done_starts, .init = fixture_init,
     .fini = fixture_fini)
{
	struct chain c = {0};
	run_chain(&c);
	cr_expect_eq(atomic_load(&c.second_result), 0);
}

Test(loop, generation_cancelled_from_callback_before_it_started_ends,
     .init = fixture_init, .fini = fixture_fini)
{
	struct chain c = {.cancel_second = 1, .second_nonempty = 1};
	run_chain(&c);
	cr_expect_eq(atomic_load(&c.cancel_err), -EINPROGRESS);
	cr_expect_eq(atomic_load(&c.second_result), -ECANCELED);
	char first[256];
	int n = ds_count_temps(dest, first, sizeof(first));
	cr_expect_eq(n, 0, "%d temporary file(s) left, e.g. %s", n, first);
}
