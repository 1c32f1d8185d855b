/*
 * Description: randomized cancel storms with a hang detector. Each storm is
 * one engine with a random small config against a real nginx serving 32
 * files (0 bytes to 1.5 MiB, odd sizes). For a few hundred ms the main
 * thread submits batches (some with a 404, a refused-connection and a
 * malformed URL among good files, some empty), 2-4 threads cancel random
 * live generations, and callbacks cancel their own generation, submit new
 * batches (an empty batch's on_batch_done always does) or submit one and
 * cancel it at once. Then the engine is freed mid-flight, or everything is
 * waited out and then freed; half of those drains are followed, on the
 * quiet engine, by an empty batch whose on_batch_done submits, or by a
 * batch whose every URL fails, and a second drain.
 *
 * Checked for every storm: every accepted generation gets exactly one
 * on_batch_done, with a result its file reports and cancels explain; no
 * callback of a generation after its on_batch_done, after sstf_cancel() of
 * it returned, or after sstf_engine_free() returned; no two callbacks at
 * once; no temporary file left under the destination; every published file
 * and every file under a final name equals the origin's; no leak.
 *
 * Hang detector: once a storm stops making new work, every generation must
 * end within SSTF_STRESS_HANG_S seconds (default 60). sstf_wait() timeouts
 * and deadline-bounded joins fail the test with the storm's seed, config
 * and the state of every generation still open instead of waiting; a
 * watchdog thread that needs no engine call aborts the test (with the same
 * report) if even those block.
 *
 * SSTF_STRESS_STORMS (default 20), SSTF_STRESS_SEED (default: from the
 * clock; printed in every failure), SSTF_STRESS_STORM=K runs only storm K
 * of that seed, SSTF_STRESS_HANG_S.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "sstfetch.h"
#include "support/threads.h"
#include "support/dataset.h"
#include "support/origin.h"
#include "support/sanitizers.h"

#define KIB 1024ull
#define MIB (1024ull * 1024ull)
#define NDS 32                  /* files in the dataset */
#define MAX_GOOD 16             /* good files in one batch, at most */
#define MAX_FILES (MAX_GOOD + 3) /* plus one entry of each bad kind */
#define MAX_BUDGET 40           /* generations per storm, chains included */
#define EPILOGUE_GENS 4         /* the quiet-engine chain after a drain */
#define MAX_RECS (MAX_BUDGET + EPILOGUE_GENS)
#define DEFAULT_STORMS 20
#define DEFAULT_HANG_S 60
#define WATCHDOG_SLACK_S 30     /* the backstop fires this long after */
#define NOT_REPORTED INT_MIN
#define REPORT_LEN 16384

/* The file a batch entry names: a dataset index, or one of the bad kinds. */
enum {
	BAD_404 = -1,       /* the origin answers 404 */
	BAD_REFUSED = -2,   /* a loopback port bound but not listening */
	BAD_MALFORMED = -3, /* port 99999: curl refuses the URL itself */
};

/* ------------------------------------------------------------------------ */
/* Knobs and randomness                                                     */

static uint64_t env_u64(const char *name, uint64_t dflt, uint64_t max)
{
	const char *s = getenv(name);
	if (!s || !*s)
		return dflt;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 0);
	if (errno || *end != '\0' || v > max)
		cr_assert_fail("%s=%s: not a number up to %llu", name, s,
		               (unsigned long long)max);
	return v;
}

static uint64_t splitmix64(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
	return z ^ (z >> 31);
}

/* One per thread that decides things; never shared between threads. */
struct rng {
	uint64_t s;
};

static unsigned rng_below(struct rng *r, unsigned n)
{
	return n ? (unsigned)(splitmix64(&r->s) % n) : 0;
}

static int rng_chance(struct rng *r, unsigned num, unsigned den)
{
	return rng_below(r, den) < num;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_us(unsigned us)
{
	struct timespec ts = { (time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L };
	nanosleep(&ts, NULL);
}

static struct timespec mono_ts(uint64_t ns)
{
	struct timespec ts = { (time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull) };
	return ts;
}

/* ------------------------------------------------------------------------ */
/* Fixture: the dataset, nginx, a refusing port                             */

static struct dataset ds;
static struct origin *org;
static char *work;               /* holds one dest dir per storm */
static struct sstf_file *master; /* name and URL of every dataset file */
static int refused_fd = -1;
static unsigned refused_port;
static int malformed_ok;         /* sstf_submit takes the port-99999 URL */
static uint64_t base_seed;
static unsigned hang_s;

static void fixture_init(void)
{
	uint64_t dflt = (uint64_t)time(NULL) * 1000003u ^ (uint64_t)getpid() << 32;
	base_seed = env_u64("SSTF_STRESS_SEED", dflt, UINT64_MAX);
	hang_s = (unsigned)env_u64("SSTF_STRESS_HANG_S", DEFAULT_HANG_S, 3600);
	cr_assert_gt(hang_s, 0, "SSTF_STRESS_HANG_S must be at least 1");

	/* Sizes from the seed, so that a replay gets the same files: the
	 * edges first (empty, one byte, a buffer +- 1, the largest), then
	 * random ones, every other one odd. The last four are nested. */
	uint64_t sizes[NDS];
	static const uint64_t edges[] = { 0, 1, 65535, 65537, 3 * MIB / 2, 256 * KIB };
	uint64_t s = base_seed ^ 0xda7a5e7ull;
	for (size_t i = 0; i < NDS; i++) {
		if (i < sizeof(edges) / sizeof(edges[0]))
			sizes[i] = edges[i];
		else
			sizes[i] = (splitmix64(&s) % (3 * MIB / 2 + 1)) | (i & 1);
	}
	const char *names[NDS] = { 0 };
	names[NDS - 4] = "deep/a/b/x.sst";
	names[NDS - 3] = "deep/a/b/y.sst";
	names[NDS - 2] = "deep/a/z.sst";
	names[NDS - 1] = "deep/c/w.sst";
	cr_assert_eq(ds_create(&ds, "stress-origin", NDS, names, sizes, base_seed), 0);
	int err = origin_start(ds.dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	master = ds_batch_new(&ds, org->base_url, SSTF_DIGEST_NONE);
	cr_assert_not_null(master);
	cr_assert_eq(ds_mkdtemp("stress", &work), 0);

	/* A port bound but not listening refuses connections at once, and
	 * stays ours (nobody else can start listening on it) for the test. */
	refused_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(refused_fd, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	cr_assert_eq(bind(refused_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(getsockname(refused_fd, (struct sockaddr *)&sa, &len), 0);
	refused_port = ntohs(sa.sin_port);

	/* Whether a URL curl cannot parse gets past sstf_submit is the
	 * engine's choice; the storms use one only where it does. */
	struct sstf_file f = { .name = "x", .url = "http://127.0.0.1:99999/x", .size = 1 };
	struct sstf_batch b = { .dest_dir = work, .files = &f, .nfiles = 1 };
	malformed_ok = sstf_check_batch(&b) == 0;
}

static void fixture_fini(void)
{
	origin_stop(org);
	org = NULL;
	if (master)
		ds_batch_free(master, NDS, 0);
	master = NULL;
	ds_destroy(&ds);
	if (work)
		ds_rmtree(work);
	free(work);
	work = NULL;
	if (refused_fd >= 0)
		close(refused_fd);
	refused_fd = -1;
}

/* ------------------------------------------------------------------------ */
/* Generations as the test knows them                                       */

enum gen_kind {
	GK_FILES,
	GK_EMPTY,   /* nfiles 0; its on_batch_done always submits another */
	GK_FAILING, /* only entries that fail: 404, refused, malformed */
};

/* What on_batch_done does. */
enum done_action {
	DA_NONE,
	DA_SUBMIT,        /* submit a batch of files */
	DA_SUBMIT_EMPTY,  /* submit an empty batch (which chains again) */
	DA_SUBMIT_CANCEL, /* submit a batch and cancel it at once */
};

static const char *const done_action_names[] = {
	"nothing", "submit", "submit an empty batch", "submit and cancel",
};

/* Who submitted a generation. */
enum via {
	VIA_MAIN,          /* the main thread, during the chaos */
	VIA_EPILOGUE,      /* the main thread, on a quiet engine */
	VIA_BATCH_DONE,    /* on_batch_done of the parent */
	VIA_FILE_DONE,     /* on_file_done of the parent, then cancelled */
};

static const char *const via_names[] = {
	"the main thread", "the main thread on a quiet engine", "on_batch_done of",
	"on_file_done of",
};

struct plan {
	enum gen_kind kind;
	unsigned cancel_at_file; /* 0, or sstf_cancel in the k-th on_file_done */
	unsigned cancel_at_prog; /* 0, or sstf_cancel in the m-th on_progress */
	unsigned spawn_at_file;  /* 0, or the k-th on_file_done submits a
	                            batch and cancels it at once */
	enum done_action on_done;
};

enum rec_state {
	RS_RESERVED,   /* slot taken, not filled in yet */
	RS_SUBMITTING, /* plan and entries set; sstf_submit running */
	RS_ACCEPTED,   /* sstf_submit returned 0; id is set */
	RS_REJECTED,   /* sstf_submit failed: no callback may come */
};

struct storm;

/*
 * One per generation of a storm. Plan, entries and origin are written
 * before state leaves RS_RESERVED and never after; the rest are atomics,
 * written by callbacks (the loop thread) and the test's threads.
 */
struct rec {
	struct storm *st;
	unsigned idx;
	enum via via;
	int parent;                 /* rec index of the submitting callback */
	struct plan plan;
	size_t nfiles;
	int entry[MAX_FILES];       /* dataset index or BAD_* */
	uint64_t bytes_total;
	atomic_int state;           /* enum rec_state */
	atomic_int submit_err;
	_Atomic uint64_t id;
	_Atomic uint64_t seen_gen;  /* gen of the first callback */
	atomic_int res[MAX_FILES];  /* NOT_REPORTED until on_file_done */
	atomic_int reported;
	atomic_int first_err;       /* first failure reported */
	atomic_int nfile_cb;
	atomic_int nprog_cb;
	atomic_int cb_cancelled;    /* sstf_cancel from a callback: -EINPROGRESS */
	atomic_int cancel_asked;    /* a thread is about to call sstf_cancel */
	atomic_int cancel_blocked;  /* threads inside sstf_cancel on it now */
	atomic_int cancel_returned; /* sstf_cancel on another thread returned */
	atomic_int open_at_free;    /* no on_batch_done yet when free began */
	atomic_int batch_done;      /* on_batch_done calls */
	atomic_int batch_result;
	atomic_int waited;          /* sstf_wait returned its result */
};

/*
 * How a storm ends. The two epilogues submit from the main thread once the
 * engine has nothing left to do, so that nothing but the work they make
 * can wake its loop: an empty batch, whose on_batch_done submits the next
 * batch from the loop thread, or a batch whose every entry fails at once.
 */
enum ending {
	END_FREE,          /* sstf_engine_free right after the chaos */
	END_DRAIN,         /* wait everything out, then free */
	END_QUIET_EMPTY,   /* drain, the empty-batch epilogue, drain, free */
	END_QUIET_FAILING, /* drain, the failing-batch epilogue, drain, free */
	END_COUNT
};

static const char *const ending_names[] = {
	"sstf_engine_free mid-flight",
	"drain, then free",
	"drain, an empty batch on the quiet engine whose on_batch_done submits, drain, free",
	"drain, a batch of failing URLs only on the quiet engine, drain, free",
};

struct storm {
	unsigned index;
	uint64_t seed;
	struct sstf_config cfg;
	enum ending ending;
	unsigned budget;
	unsigned ncancellers;
	unsigned chaos_ms;
	sstf_engine *eng;
	char *dest;
	struct rng main_rng;   /* the main thread's */
	struct rng loop_rng;   /* callbacks' (they all run on the loop thread) */
	atomic_uint limit;     /* recs that may be used */
	atomic_uint nrecs;     /* recs reserved */
	atomic_int chaos;      /* threads make new work while set */
	atomic_int freeing;    /* sstf_engine_free has been called */
	atomic_int freed;      /* ... and has returned */
	atomic_int in_cb;      /* callbacks of this storm running now */
	_Atomic uint64_t quiet_ns; /* when the storm stopped making new work */
	/* Counts, for the summary. */
	atomic_uint thread_cancels, thread_cancels_in_flight, cb_cancels;
	atomic_uint cb_submits, cb_submit_cancels, empties;
	atomic_uint files_ok, files_failed;
	struct rec recs[MAX_RECS];
};

/* ------------------------------------------------------------------------ */
/* Violations: counted anywhere, asserted on the main thread                */

static atomic_uint violations;
static pthread_mutex_t vmu = PTHREAD_MUTEX_INITIALIZER;
static char first_violation[512];

__attribute__((format(printf, 1, 2)))
static void violation(const char *fmt, ...)
{
	if (atomic_fetch_add(&violations, 1) != 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	pthread_mutex_lock(&vmu);
	vsnprintf(first_violation, sizeof(first_violation), fmt, ap);
	pthread_mutex_unlock(&vmu);
	va_end(ap);
}

/* ------------------------------------------------------------------------ */
/* Reports                                                                  */

/* Appends to a report buffer; truncates quietly when it is full. */
__attribute__((format(printf, 3, 4)))
static void put(char *buf, size_t len, const char *fmt, ...)
{
	size_t used = strlen(buf);
	if (used + 1 >= len)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + used, len - used, fmt, ap);
	va_end(ap);
}

static void storm_desc(const struct storm *st, char *buf, size_t len)
{
	const struct sstf_config *c = &st->cfg;
	put(buf, len,
	    "storm %u of seed 0x%llx: max_transfers=%u buf_size=%zu KiB mem_limit=%zu "
	    "buffers (%zu per transfer) fsync=%s progress_interval_ms=%u max_retries=%d; "
	    "budget %u generations, %u cancel threads, %u ms of chaos, ending: %s.\n"
	    "replay: SSTF_STRESS_SEED=0x%llx SSTF_STRESS_STORM=%u SSTF_STRESS_HANG_S=%u "
	    "BUILD/tests/test_stress --verbose\n",
	    st->index, (unsigned long long)base_seed, c->max_transfers, c->buf_size / 1024,
	    c->mem_limit / c->buf_size, c->mem_limit / c->buf_size / c->max_transfers,
	    c->fsync == SSTF_ON ? "on" : "off", c->progress_interval_ms, c->max_retries,
	    st->budget, st->ncancellers, st->chaos_ms, ending_names[st->ending],
	    (unsigned long long)base_seed, st->index, hang_s);
}

static const char *entry_kind(int e)
{
	switch (e) {
	case BAD_404:
		return "404";
	case BAD_REFUSED:
		return "refused";
	case BAD_MALFORMED:
		return "malformed";
	default:
		return "good";
	}
}

/* The name of batch entry i of g, into buf. */
static const char *entry_name(const struct rec *g, size_t i, char *buf, size_t len)
{
	int e = g->entry[i];
	if (e >= 0)
		return ds.files[e].name;
	snprintf(buf, len, "zz-bad/%s-%u-%zu", entry_kind(e), g->idx, i);
	return buf;
}

/*
 * One generation's state as the test knows it, from test-side records only,
 * plus the engine's progress snapshot when `eng` is given (callers pass it
 * only when the engine lock was just seen free).
 */
static void rec_desc(const struct rec *g, sstf_engine *eng, char *buf, size_t len)
{
	int state = atomic_load(&g->state);
	put(buf, len, "  #%u", g->idx);
	if (state == RS_RESERVED) {
		put(buf, len, ": reserved, sstf_submit not called yet\n");
		return;
	}
	unsigned nbad[3] = { 0, 0, 0 };
	for (size_t i = 0; i < g->nfiles; i++)
		if (g->entry[i] < 0)
			nbad[-g->entry[i] - 1]++;
	if (state == RS_ACCEPTED)
		put(buf, len, " gen %llu", (unsigned long long)atomic_load(&g->id));
	else if (state == RS_SUBMITTING)
		put(buf, len, " (inside sstf_submit)");
	else
		put(buf, len, " (sstf_submit failed: %d)", atomic_load(&g->submit_err));
	put(buf, len, ": %s%zu files (%zu good, %u 404, %u refused, %u malformed, %llu bytes)",
	    g->plan.kind == GK_EMPTY ? "EMPTY batch, " : "", g->nfiles,
	    g->nfiles - nbad[0] - nbad[1] - nbad[2], nbad[0], nbad[1], nbad[2],
	    (unsigned long long)g->bytes_total);
	put(buf, len, ", submitted by %s", via_names[g->via]);
	if (g->parent >= 0) {
		const struct rec *p = &g->st->recs[g->parent];
		put(buf, len, " #%d (%s", g->parent,
		    p->plan.kind == GK_EMPTY ? "an EMPTY batch" : "a batch of files");
		if (atomic_load(&p->batch_done))
			put(buf, len, " that ended with %d", atomic_load(&p->batch_result));
		put(buf, len, ")");
	}
	if (g->via == VIA_FILE_DONE ||
	    (g->via == VIA_BATCH_DONE && g->st->recs[g->parent].plan.on_done == DA_SUBMIT_CANCEL))
		put(buf, len, ", which cancelled it at once");
	put(buf, len, "\n    plan: cancel in on_file_done #%u, in on_progress #%u, "
	    "submit+cancel in on_file_done #%u (0: never), on_batch_done: %s\n",
	    g->plan.cancel_at_file, g->plan.cancel_at_prog, g->plan.spawn_at_file,
	    done_action_names[g->plan.on_done]);
	put(buf, len, "    seen: %d of %zu files reported, %d on_progress, on_batch_done %d "
	    "time(s)", atomic_load(&g->reported), g->nfiles, atomic_load(&g->nprog_cb),
	    atomic_load(&g->batch_done));
	if (atomic_load(&g->batch_done))
		put(buf, len, " (result %d)", atomic_load(&g->batch_result));
	put(buf, len, "; cancel: %s, %s, %d thread(s) blocked in sstf_cancel\n",
	    atomic_load(&g->cb_cancelled) ? "from a callback" : "none from a callback",
	    atomic_load(&g->cancel_asked) ? "asked by a thread" : "none by a thread",
	    atomic_load(&g->cancel_blocked));
	unsigned shown = 0;
	for (size_t i = 0; i < g->nfiles; i++) {
		if (atomic_load(&g->res[i]) != NOT_REPORTED)
			continue;
		if (shown == 0)
			put(buf, len, "    not reported:");
		shown++;
		if (shown > 8) {
			put(buf, len, " ...");
			break;
		}
		char nb[64];
		put(buf, len, " [%zu] %s (%s)", i, entry_name(g, i, nb, sizeof(nb)),
		    entry_kind(g->entry[i]));
	}
	if (shown)
		put(buf, len, "\n");
	struct sstf_progress p;
	if (eng && state == RS_ACCEPTED && sstf_progress(eng, atomic_load(&g->id), &p) == 0)
		put(buf, len, "    engine progress: %llu of %llu bytes, %llu done, %llu failed "
		    "of %llu files\n", (unsigned long long)p.bytes_done,
		    (unsigned long long)p.bytes_total, (unsigned long long)p.files_done,
		    (unsigned long long)p.files_failed, (unsigned long long)p.files_total);
}

/* Every generation of the storm that has not ended, described. */
static void open_gens_desc(const struct storm *st, sstf_engine *eng, char *buf, size_t len)
{
	unsigned n = atomic_load(&st->nrecs), open = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct rec *g = &st->recs[i];
		int s = atomic_load(&g->state);
		if (s == RS_REJECTED || (s == RS_ACCEPTED && atomic_load(&g->batch_done)))
			continue;
		open++;
		rec_desc(g, eng, buf, len);
	}
	put(buf, len, "(%u of %u generations not ended)\n", open, n);
}

/*
 * A hang, described: what did not finish, how long after the storm went
 * quiet, the storm (seed, config, replay line) and every open generation.
 */
static char *hang_report(struct storm *st, sstf_engine *eng, const char *what)
{
	char *buf = calloc(1, REPORT_LEN);
	if (!buf)
		return NULL;
	put(buf, REPORT_LEN, "HANG: %s, %.1f s after the storm stopped making new work "
	    "(bound %u s).\n", what, (double)(now_ns() - st->quiet_ns) / 1e9, hang_s);
	storm_desc(st, buf, REPORT_LEN);
	open_gens_desc(st, eng, buf, REPORT_LEN);
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Watchdog: the backstop when even a bounded engine call does not return   */

static struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	pthread_t th;
	int stop;
	struct storm *st;   /* armed while set */
	uint64_t deadline;
	const char *phase;
} wd = { .mu = PTHREAD_MUTEX_INITIALIZER };

static void *watchdog_main(void *arg)
{
	pthread_mutex_lock(&wd.mu);
	while (!wd.stop) {
		if (!wd.st) {
			pthread_cond_wait(&wd.cv, &wd.mu);
			continue;
		}
		struct timespec ts = mono_ts(wd.deadline);
		pthread_cond_timedwait(&wd.cv, &wd.mu, &ts);
		if (wd.st && !wd.stop && now_ns() >= wd.deadline) {
			/* No engine call here: the engine may be what is stuck. */
			char what[128];
			snprintf(what, sizeof(what), "the main thread is stuck in %s", wd.phase);
			char *r = hang_report(wd.st, NULL, what);
			fprintf(stderr, "test_stress watchdog: %s", r ? r : what);
			fflush(stderr);
			abort();
		}
	}
	pthread_mutex_unlock(&wd.mu);
	return NULL;
}

static void watchdog_start(void)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&wd.cv, &ca);
	pthread_condattr_destroy(&ca);
	wd.stop = 0;
	wd.st = NULL;
	cr_assert_eq(pthread_create(&wd.th, NULL, watchdog_main, NULL), 0);
}

static void watchdog_stop(void)
{
	pthread_mutex_lock(&wd.mu);
	wd.stop = 1;
	pthread_cond_signal(&wd.cv);
	pthread_mutex_unlock(&wd.mu);
	pthread_join(wd.th, NULL);
	pthread_cond_destroy(&wd.cv);
}

/* Arms (st != NULL) or disarms the watchdog for the main thread's phase. */
static void watchdog_arm(struct storm *st, uint64_t deadline, const char *phase)
{
	pthread_mutex_lock(&wd.mu);
	wd.st = st;
	wd.deadline = deadline;
	wd.phase = phase;
	pthread_cond_signal(&wd.cv);
	pthread_mutex_unlock(&wd.mu);
}

/* ------------------------------------------------------------------------ */
/* Threads joined by a deadline                                             */

struct task {
	pthread_t th;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done;
	void *(*fn)(void *);
	void *arg;
};

static void *task_main(void *arg)
{
	struct task *t = arg;
	t->fn(t->arg);
	pthread_mutex_lock(&t->mu);
	t->done = 1;
	pthread_cond_signal(&t->cv);
	pthread_mutex_unlock(&t->mu);
	return NULL;
}

static void task_start(struct task *t, void *(*fn)(void *), void *arg)
{
	t->done = 0;
	t->fn = fn;
	t->arg = arg;
	pthread_mutex_init(&t->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&t->cv, &ca);
	pthread_condattr_destroy(&ca);
	cr_assert_eq(pthread_create(&t->th, NULL, task_main, t), 0);
}

/*
 * Joins t if it ends by `deadline` (CLOCK_MONOTONIC ns) and returns 0;
 * returns -ETIMEDOUT and leaves it running otherwise (the test then fails
 * and the process exits with it).
 */
static int task_join_by(struct task *t, uint64_t deadline)
{
	struct timespec ts = mono_ts(deadline);
	pthread_mutex_lock(&t->mu);
	while (!t->done && pthread_cond_timedwait(&t->cv, &t->mu, &ts) != ETIMEDOUT)
		;
	int done = t->done;
	pthread_mutex_unlock(&t->mu);
	if (!done)
		return -ETIMEDOUT;
	pthread_join(t->th, NULL);
	pthread_mutex_destroy(&t->mu);
	pthread_cond_destroy(&t->cv);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Submitting                                                               */

static void on_file_done(void *user, uint64_t gen, const struct sstf_file_result *res);
static void on_batch_done(void *user, uint64_t gen, int result);
static void on_progress(void *user, uint64_t gen, const struct sstf_progress *p);

/* Takes the next rec if the storm's budget allows one; NULL when spent. */
static struct rec *rec_reserve(struct storm *st)
{
	unsigned n = atomic_load(&st->nrecs);
	do {
		if (n >= atomic_load(&st->limit))
			return NULL;
	} while (!atomic_compare_exchange_weak(&st->nrecs, &n, n + 1));
	return &st->recs[n];
}

static void random_plan(struct rng *r, struct rec *g, enum gen_kind kind)
{
	struct plan *p = &g->plan;
	memset(p, 0, sizeof(*p));
	p->kind = kind;
	if (kind == GK_EMPTY) {
		/* The point of an empty batch: its on_batch_done submits. */
		static const enum done_action chain[] = { DA_SUBMIT, DA_SUBMIT, DA_SUBMIT_EMPTY,
		                                          DA_SUBMIT_CANCEL };
		p->on_done = chain[rng_below(r, 4)];
		return;
	}
	if (rng_chance(r, 1, 5))
		p->cancel_at_file = 1 + rng_below(r, (unsigned)g->nfiles);
	if (rng_chance(r, 1, 5))
		p->cancel_at_prog = 1 + rng_below(r, 8);
	if (rng_chance(r, 1, 8))
		p->spawn_at_file = 1 + rng_below(r, (unsigned)g->nfiles);
	unsigned d = rng_below(r, 8);
	p->on_done = d < 2 ? DA_SUBMIT : d < 3 ? DA_SUBMIT_EMPTY : d < 4 ? DA_SUBMIT_CANCEL : DA_NONE;
}

/*
 * Random good files (distinct) and maybe one entry of each bad kind; with
 * failing_only, one to three bad entries and nothing else.
 */
static void random_entries(struct rng *r, struct rec *g, int failing_only)
{
	int pool[NDS];
	for (int i = 0; i < NDS; i++)
		pool[i] = i;
	size_t ngood = failing_only ? 0 : 1 + rng_below(r, MAX_GOOD);
	unsigned den = failing_only ? 2 : 4;
	size_t n = 0;
	for (size_t i = 0; i < ngood; i++) {
		size_t j = i + rng_below(r, (unsigned)(NDS - i));
		int t = pool[i];
		pool[i] = pool[j];
		pool[j] = t;
		g->entry[n++] = pool[i];
	}
	if (rng_chance(r, 1, den))
		g->entry[n++] = BAD_404;
	if (rng_chance(r, 1, den))
		g->entry[n++] = BAD_REFUSED;
	if (malformed_ok && rng_chance(r, 1, den + 1))
		g->entry[n++] = BAD_MALFORMED;
	if (n == 0)
		g->entry[n++] = malformed_ok && rng_chance(r, 1, 2) ? BAD_MALFORMED : BAD_REFUSED;
	/* The bad ones anywhere in the batch, not only last. */
	for (size_t i = n; i > 1; i--) {
		size_t j = rng_below(r, (unsigned)i);
		int t = g->entry[i - 1];
		g->entry[i - 1] = g->entry[j];
		g->entry[j] = t;
	}
	g->nfiles = n;
}

/*
 * Fills in g (already reserved) and submits it. Returns the result of
 * sstf_submit. A refusal is a violation unless the engine is being freed
 * (-ESHUTDOWN). From the main thread or a callback.
 */
static int submit_rec(struct storm *st, struct rec *g, struct rng *r, enum gen_kind kind,
                      enum via via, int parent)
{
	g->via = via;
	g->parent = parent;
	g->nfiles = 0;
	if (kind != GK_EMPTY)
		random_entries(r, g, kind == GK_FAILING);
	random_plan(r, g, kind);
	for (size_t i = 0; i < MAX_FILES; i++)
		atomic_store(&g->res[i], NOT_REPORTED);

	struct sstf_file files[MAX_FILES];
	char names[MAX_FILES][64], urls[MAX_FILES][160];
	g->bytes_total = 0;
	for (size_t i = 0; i < g->nfiles; i++) {
		struct sstf_file *f = &files[i];
		int e = g->entry[i];
		memset(f, 0, sizeof(*f));
		f->name = entry_name(g, i, names[i], sizeof(names[i]));
		if (e >= 0) {
			f->url = master[e].url;
			f->size = ds.files[e].size;
			f->digest_kind = (enum sstf_digest_kind)rng_below(r, 3);
			f->digest_hex = f->digest_kind == SSTF_DIGEST_XXH3 ? ds.files[e].xxh3
			                : f->digest_kind == SSTF_DIGEST_XXH128 ? ds.files[e].xxh128
			                : NULL;
		} else {
			if (e == BAD_404)
				snprintf(urls[i], sizeof(urls[i]), "%s/zz-missing/%u-%zu", org->base_url,
				         g->idx, i);
			else if (e == BAD_REFUSED)
				snprintf(urls[i], sizeof(urls[i]), "http://127.0.0.1:%u/%u-%zu",
				         refused_port, g->idx, i);
			else
				snprintf(urls[i], sizeof(urls[i]), "http://127.0.0.1:99999/%u-%zu",
				         g->idx, i);
			f->url = urls[i];
			f->size = 1000 + i;
			f->digest_kind = SSTF_DIGEST_NONE;
		}
		g->bytes_total += f->size;
	}
	if (kind == GK_EMPTY)
		atomic_fetch_add(&st->empties, 1);

	char errbuf[256] = "";
	struct sstf_batch b = {
		.dest_dir = st->dest,
		.files = files,
		.nfiles = g->nfiles,
		.on_file_done = on_file_done,
		.on_batch_done = on_batch_done,
		.on_progress = on_progress,
		.user = g,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	atomic_store(&g->state, RS_SUBMITTING);
	uint64_t id = 0;
	int err = sstf_submit(st->eng, &b, &id);
	if (err != 0) {
		atomic_store(&g->submit_err, err);
		atomic_store(&g->state, RS_REJECTED);
		if (!(err == -ESHUTDOWN && atomic_load(&st->freeing)))
			violation("#%u: sstf_submit from %s: %d (%s) %s", g->idx, via_names[via], err,
			          sstf_strerror(err), errbuf);
		return err;
	}
	if (id == 0)
		violation("#%u: sstf_submit gave generation id 0", g->idx);
	atomic_store(&g->id, id);
	uint64_t seen = atomic_load(&g->seen_gen);
	if (seen != 0 && seen != id)
		violation("#%u: callbacks came with gen %llu, sstf_submit gave %llu", g->idx,
		          (unsigned long long)seen, (unsigned long long)id);
	atomic_store(&g->state, RS_ACCEPTED);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Callbacks (the loop thread)                                              */

static void cb_enter(struct rec *g, uint64_t gen, const char *what)
{
	struct storm *st = g->st;
	if (atomic_load(&st->freed))
		violation("#%u: %s of gen %llu after sstf_engine_free returned", g->idx, what,
		          (unsigned long long)gen);
	if (atomic_fetch_add(&st->in_cb, 1) != 0)
		violation("#%u: %s while another callback runs", g->idx, what);
	uint64_t want = 0;
	if (!atomic_compare_exchange_strong(&g->seen_gen, &want, gen) && want != gen)
		violation("#%u: %s with gen %llu, earlier ones with %llu", g->idx, what,
		          (unsigned long long)gen, (unsigned long long)want);
	uint64_t id = atomic_load(&g->id);
	if (id && id != gen)
		violation("#%u: %s with gen %llu, submitted as %llu", g->idx, what,
		          (unsigned long long)gen, (unsigned long long)id);
	if (atomic_load(&g->cancel_returned))
		violation("#%u: %s of gen %llu after sstf_cancel of it returned", g->idx, what,
		          (unsigned long long)gen);
	if (atomic_load(&g->batch_done))
		violation("#%u: %s of gen %llu after its on_batch_done", g->idx, what,
		          (unsigned long long)gen);
}

static void cb_leave(struct rec *g, const char *what)
{
	atomic_fetch_sub(&g->st->in_cb, 1);
	if (atomic_load(&g->cancel_returned))
		violation("#%u: %s still running when sstf_cancel of its generation returned",
		          g->idx, what);
}

/* sstf_cancel of the callback's own generation: it has not ended. */
static void cancel_own(struct rec *g, uint64_t gen, const char *what)
{
	int r = sstf_cancel(g->st->eng, gen);
	if (r != -EINPROGRESS) {
		violation("#%u: sstf_cancel of its own gen in %s gave %d (%s), not -EINPROGRESS",
		          g->idx, what, r, sstf_strerror(r));
		return;
	}
	atomic_store(&g->cb_cancelled, 1);
	atomic_fetch_add(&g->st->cb_cancels, 1);
}

/* A callback of `parent` submits a batch, and cancels it at once if asked. */
static void spawn(struct rec *parent, enum gen_kind kind, enum via via, int then_cancel)
{
	struct storm *st = parent->st;
	struct rec *c = rec_reserve(st);
	if (!c)
		return; /* the storm's budget is spent */
	if (submit_rec(st, c, &st->loop_rng, kind, via, (int)parent->idx) != 0)
		return;
	atomic_fetch_add(&st->cb_submits, 1);
	if (!then_cancel)
		return;
	/* It cannot have started: this thread is the loop. */
	int r = sstf_cancel(st->eng, atomic_load(&c->id));
	if (r != -EINPROGRESS) {
		violation("#%u: sstf_cancel of #%u, just submitted from a callback, gave %d (%s)",
		          parent->idx, c->idx, r, sstf_strerror(r));
		return;
	}
	atomic_store(&c->cb_cancelled, 1);
	atomic_fetch_add(&st->cb_submit_cancels, 1);
}

static void on_file_done(void *user, uint64_t gen, const struct sstf_file_result *res)
{
	struct rec *g = user;
	struct storm *st = g->st;
	cb_enter(g, gen, "on_file_done");
	if (atomic_load(&g->cb_cancelled))
		violation("#%u: on_file_done after sstf_cancel from a callback", g->idx);
	size_t i = res->index;
	if (i >= g->nfiles) {
		violation("#%u: on_file_done with index %zu of %zu", g->idx, i, g->nfiles);
	} else {
		char nb[64];
		const char *name = entry_name(g, i, nb, sizeof(nb));
		int e = g->entry[i];
		if (atomic_exchange(&g->res[i], res->result) != NOT_REPORTED)
			violation("#%u: file %zu (%s) reported twice", g->idx, i, name);
		else
			atomic_fetch_add(&g->reported, 1);
		if (!res->name || strcmp(res->name, name) != 0)
			violation("#%u: file %zu reported as '%.64s', not '%s'", g->idx, i,
			          res->name ? res->name : "(null)", name);
		if (e >= 0 && res->result != 0)
			violation("#%u: good file %s failed: %d (%s) HTTP %d: %.100s", g->idx, name,
			          res->result, sstf_strerror(res->result), res->http_status,
			          res->detail ? res->detail : "");
		if (e == BAD_404 && (res->result != -SSTF_EHTTP || res->http_status != 404))
			violation("#%u: %s (404) gave %d (%s) HTTP %d", g->idx, name, res->result,
			          sstf_strerror(res->result), res->http_status);
		if (e == BAD_REFUSED && res->result != -SSTF_ETRANSFER)
			violation("#%u: %s (refused) gave %d (%s)", g->idx, name, res->result,
			          sstf_strerror(res->result));
		if (e == BAD_MALFORMED && res->result == 0)
			violation("#%u: %s (port 99999) was published", g->idx, name);
		if (res->result != 0) {
			int zero = 0;
			atomic_compare_exchange_strong(&g->first_err, &zero, res->result);
			atomic_fetch_add(&st->files_failed, 1);
		} else {
			atomic_fetch_add(&st->files_ok, 1);
		}
	}
	unsigned k = (unsigned)atomic_fetch_add(&g->nfile_cb, 1) + 1;
	if (g->plan.cancel_at_file == k)
		cancel_own(g, gen, "on_file_done");
	if (g->plan.spawn_at_file == k)
		spawn(g, GK_FILES, VIA_FILE_DONE, 1);
	cb_leave(g, "on_file_done");
}

static void on_progress(void *user, uint64_t gen, const struct sstf_progress *p)
{
	struct rec *g = user;
	cb_enter(g, gen, "on_progress");
	if (atomic_load(&g->cb_cancelled))
		violation("#%u: on_progress after sstf_cancel from a callback", g->idx);
	if (p->files_total != g->nfiles || p->bytes_total != g->bytes_total ||
	    p->bytes_done > p->bytes_total || p->files_done + p->files_failed > p->files_total)
		violation("#%u: progress %llu of %llu bytes, %llu+%llu of %llu files; the batch "
		          "has %llu bytes in %zu files", g->idx, (unsigned long long)p->bytes_done,
		          (unsigned long long)p->bytes_total, (unsigned long long)p->files_done,
		          (unsigned long long)p->files_failed, (unsigned long long)p->files_total,
		          (unsigned long long)g->bytes_total, g->nfiles);
	unsigned m = (unsigned)atomic_fetch_add(&g->nprog_cb, 1) + 1;
	if (g->plan.cancel_at_prog == m)
		cancel_own(g, gen, "on_progress");
	cb_leave(g, "on_progress");
}

static void on_batch_done(void *user, uint64_t gen, int result)
{
	struct rec *g = user;
	struct storm *st = g->st;
	cb_enter(g, gen, "on_batch_done");
	atomic_store(&g->batch_result, result);
	if (atomic_fetch_add(&g->batch_done, 1) != 0)
		violation("#%u: on_batch_done called twice", g->idx);

	/* The result must be what the reports and the cancels explain. */
	int cancelled = atomic_load(&g->cb_cancelled) || atomic_load(&g->cancel_asked) ||
	                atomic_load(&st->freeing);
	int reported = atomic_load(&g->reported);
	if (atomic_load(&g->cb_cancelled) && result != -ECANCELED)
		violation("#%u: cancelled from a callback, ended with %d (%s)", g->idx, result,
		          sstf_strerror(result));
	if (result == -ECANCELED && !cancelled)
		violation("#%u: ended -ECANCELED, but nothing cancelled it", g->idx);
	if (result != -ECANCELED && reported != (int)g->nfiles)
		violation("#%u: ended with %d (%s) after %d of %zu file reports", g->idx, result,
		          sstf_strerror(result), reported, g->nfiles);
	if (result != -ECANCELED && result != 0 && result != atomic_load(&g->first_err))
		violation("#%u: ended with %d (%s), the first file failure was %d", g->idx, result,
		          sstf_strerror(result), atomic_load(&g->first_err));
	if (result == 0 && atomic_load(&g->first_err) != 0)
		violation("#%u: ended with 0 after a file failed with %d", g->idx,
		          atomic_load(&g->first_err));

	switch (g->plan.on_done) {
	case DA_SUBMIT:
		spawn(g, GK_FILES, VIA_BATCH_DONE, 0);
		break;
	case DA_SUBMIT_EMPTY:
		spawn(g, GK_EMPTY, VIA_BATCH_DONE, 0);
		break;
	case DA_SUBMIT_CANCEL:
		spawn(g, GK_FILES, VIA_BATCH_DONE, 1);
		break;
	case DA_NONE:
		break;
	}
	cb_leave(g, "on_batch_done");
}

/* ------------------------------------------------------------------------ */
/* Cancel threads                                                           */

struct canceller {
	struct storm *st;
	struct rng rng;
	atomic_int cur; /* rec index inside sstf_cancel now, or -1 */
	struct task task;
};

/* Sleeps about `us`, less when the chaos ends meanwhile. */
static void nap(const struct storm *st, unsigned us)
{
	while (us > 0 && atomic_load(&st->chaos)) {
		unsigned step = us < 1000 ? us : 1000;
		sleep_us(step);
		us -= step;
	}
}

static void *canceller_main(void *arg)
{
	struct canceller *c = arg;
	struct storm *st = c->st;
	while (atomic_load(&st->chaos)) {
		/* Every 5-40 ms, a cancel half of the time: enough to meet
		 * generations in every phase, not so many that none is left
		 * running for the callbacks' cancels and for the free. */
		nap(st, 5000 + rng_below(&c->rng, 35000));
		unsigned n = atomic_load(&st->nrecs);
		if (n == 0 || rng_chance(&c->rng, 1, 2))
			continue;
		/* A random live generation: accepted, no on_batch_done yet. */
		struct rec *g = NULL;
		unsigned start = rng_below(&c->rng, n);
		for (unsigned k = 0; k < n && !g; k++) {
			struct rec *t = &st->recs[(start + k) % n];
			if (atomic_load(&t->state) == RS_ACCEPTED && !atomic_load(&t->batch_done))
				g = t;
		}
		if (!g)
			continue;
		atomic_store(&c->cur, (int)g->idx);
		atomic_store(&g->cancel_asked, 1);
		atomic_fetch_add(&g->cancel_blocked, 1);
		int r = sstf_cancel(st->eng, atomic_load(&g->id));
		atomic_fetch_sub(&g->cancel_blocked, 1);
		if (r != 0)
			violation("#%u: sstf_cancel from a thread gave %d (%s)", g->idx, r,
			          sstf_strerror(r));
		if (atomic_load(&g->batch_done) != 1)
			violation("#%u: sstf_cancel returned with %d on_batch_done calls", g->idx,
			          atomic_load(&g->batch_done));
		atomic_store(&g->cancel_returned, 1);
		atomic_fetch_add(&st->thread_cancels, 1);
		if (atomic_load(&g->batch_result) == -ECANCELED)
			atomic_fetch_add(&st->thread_cancels_in_flight, 1);
		atomic_store(&c->cur, -1);
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* What a storm left on disk                                                */

struct scan {
	int temps;
	char first_temp[PATH_MAX];
	int bad;
	char why[PATH_MAX + 128];
	int present[NDS];
};

static int dataset_index(const char *rel)
{
	for (int i = 0; i < NDS; i++)
		if (strcmp(ds.files[i].name, rel) == 0)
			return i;
	return -1;
}

/*
 * Walks dest: a non-directory with a path component starting with ".sstf"
 * (or an old-style ".sstf-" in its name) is a leftover temporary; the empty
 * directory DEST/.sstf is not. Any other file must be a dataset file with
 * the origin's bytes.
 */
static void scan_dir(struct scan *sc, const char *root, const char *rel, int in_sstf)
{
	char *dir = rel[0] ? ds_strfmt("%s/%s", root, rel) : ds_strfmt("%s", root);
	cr_assert_not_null(dir);
	DIR *d = opendir(dir);
	if (!d) {
		sc->bad++;
		snprintf(sc->why, sizeof(sc->why), "cannot open %s: %s", dir, strerror(errno));
		free(dir);
		return;
	}
	for (;;) {
		struct dirent *de = readdir(d);
		if (!de)
			break;
		if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
			continue;
		char *sub = rel[0] ? ds_strfmt("%s/%s", rel, de->d_name) : ds_strfmt("%s", de->d_name);
		char *full = ds_strfmt("%s/%s", root, sub);
		cr_assert(sub && full);
		int sstf = in_sstf || !strncmp(de->d_name, ".sstf", 5);
		struct stat sb;
		if (lstat(full, &sb) != 0) {
			sc->bad++;
			snprintf(sc->why, sizeof(sc->why), "cannot stat %s: %s", full, strerror(errno));
		} else if (S_ISDIR(sb.st_mode)) {
			scan_dir(sc, root, sub, sstf);
		} else if (sstf || strstr(de->d_name, ".sstf-")) {
			if (sc->temps == 0)
				snprintf(sc->first_temp, sizeof(sc->first_temp), "%s", sub);
			sc->temps++;
		} else {
			int i = dataset_index(sub);
			int eq = i >= 0 && S_ISREG(sb.st_mode) ? ds_files_equal(ds.files[i].path, full) : 0;
			if (i >= 0)
				sc->present[i] = 1;
			if (eq != 1 && sc->bad == 0)
				snprintf(sc->why, sizeof(sc->why), "%s: %s", sub,
				         i < 0 ? "not a dataset file"
				         : eq == 0 ? "differs from the origin's" : strerror(-eq));
			if (eq != 1)
				sc->bad++;
		}
		free(sub);
		free(full);
	}
	closedir(d);
	free(dir);
}

/* ------------------------------------------------------------------------ */
/* One storm                                                                */

struct totals {
	unsigned storms[END_COUNT];
	unsigned gens, empties, cb_submits, cb_submit_cancels;
	unsigned thread_cancels, thread_cancels_in_flight, cb_cancels;
	unsigned freed_in_flight, files_ok, files_failed;
};

static void storm_setup(struct storm *st, unsigned index)
{
	st->index = index;
	uint64_t s = base_seed ^ (0x5bd1e995ull * (index + 1));
	st->seed = splitmix64(&s);
	struct rng r = { st->seed };
	struct sstf_config *c = &st->cfg;
	memset(c, 0, sizeof(*c));
	c->max_transfers = 1 + rng_below(&r, 8);
	c->buf_size = (size_t)(64 * KIB) << rng_below(&r, 3);
	c->mem_limit = c->buf_size * c->max_transfers * (2 + rng_below(&r, 3));
	c->fsync = rng_chance(&r, 1, 2) ? SSTF_ON : SSTF_OFF;
	c->progress_interval_ms = 1 + rng_below(&r, 20);
	static const int retries[] = { -1, 1, 2 };
	c->max_retries = retries[rng_below(&r, 3)];
	unsigned e = rng_below(&r, 100);
	st->ending = e < 35 ? END_FREE : e < 60 ? END_DRAIN : e < 80 ? END_QUIET_EMPTY
	             : END_QUIET_FAILING;
	st->budget = 10 + rng_below(&r, MAX_BUDGET - 10 + 1);
	st->ncancellers = 2 + rng_below(&r, 3);
	st->chaos_ms = 50 + rng_below(&r, 351);
	st->main_rng.s = splitmix64(&r.s);
	st->loop_rng.s = splitmix64(&r.s);
	atomic_store(&st->limit, st->budget);
	/* Set before any other thread runs, never changed. */
	for (unsigned i = 0; i < MAX_RECS; i++) {
		st->recs[i].st = st;
		st->recs[i].idx = i;
	}
}

/* Fails the test with a hang report. */
static void fail_hang(struct storm *st, sstf_engine *eng, const char *what)
{
	char *r = hang_report(st, eng, what);
	cr_assert_fail("%s", r ? r : what);
}

/*
 * Waits, bounded by `deadline`, until every generation of the storm has
 * ended, those that callbacks submit meanwhile included; fails the test
 * with a hang report naming the first one that did not.
 */
static void drain(struct storm *st, uint64_t deadline)
{
	for (;;) {
		unsigned n = atomic_load(&st->nrecs);
		struct rec *pending = NULL;
		for (unsigned i = 0; i < n; i++) {
			struct rec *g = &st->recs[i];
			int s = atomic_load(&g->state);
			if (s == RS_RESERVED || s == RS_SUBMITTING) {
				pending = pending ? pending : g;
				continue;
			}
			if (s != RS_ACCEPTED || atomic_load(&g->waited))
				continue;
			uint64_t now = now_ns();
			int ms = now < deadline ? (int)((deadline - now) / 1000000u) : 0;
			int r = sstf_wait(st->eng, atomic_load(&g->id), ms);
			if (r == -ETIMEDOUT) {
				char what[160];
				snprintf(what, sizeof(what), "generation #%u (gen %llu) did not end; "
				         "sstf_wait timed out", g->idx,
				         (unsigned long long)atomic_load(&g->id));
				fail_hang(st, st->eng, what);
			}
			if (atomic_load(&g->batch_done) != 1)
				violation("#%u: sstf_wait returned %d with %d on_batch_done calls", g->idx,
				          r, atomic_load(&g->batch_done));
			else if (r != atomic_load(&g->batch_result))
				violation("#%u: sstf_wait gave %d, on_batch_done %d", g->idx, r,
				          atomic_load(&g->batch_result));
			atomic_store(&g->waited, 1);
		}
		if (!pending && n == atomic_load(&st->nrecs))
			return;
		if (now_ns() >= deadline) {
			char what[96];
			snprintf(what, sizeof(what), "generation #%u is still inside sstf_submit",
			         pending ? pending->idx : n);
			fail_hang(st, st->eng, what);
		}
		sleep_us(1000);
	}
}

static void *free_main(void *arg)
{
	sstf_engine_free(arg);
	return NULL;
}

static void run_storm(unsigned index, struct totals *tot)
{
	struct storm *st = calloc(1, sizeof(*st));
	cr_assert_not_null(st);
	storm_setup(st, index);
	char desc[1024] = "";
	storm_desc(st, desc, sizeof(desc));
	st->dest = ds_strfmt("%s/storm-%u", work, index);
	cr_assert_not_null(st->dest);
	cr_assert_eq(ds_mkdirs(st->dest), 0);
	atomic_store(&violations, 0);
	first_violation[0] = '\0';

	int err = test_engine_new(&st->cfg, &st->eng);
	cr_assert_eq(err, 0, "sstf_engine_new: %d (%s)\n%s", err, sstf_strerror(err), desc);
	const uint64_t hang_ns = (uint64_t)hang_s * 1000000000ull;
	const uint64_t slack_ns = (uint64_t)WATCHDOG_SLACK_S * 1000000000ull;
	uint64_t t0 = now_ns();
	st->quiet_ns = t0 + (uint64_t)st->chaos_ms * 1000000u;
	watchdog_arm(st, st->quiet_ns + hang_ns + slack_ns, "the chaos");

	/* The chaos: the main thread submits while the others cancel. */
	atomic_store(&st->chaos, 1);
	struct canceller cs[4];
	for (unsigned i = 0; i < st->ncancellers; i++) {
		cs[i].st = st;
		cs[i].rng.s = splitmix64(&st->main_rng.s);
		atomic_store(&cs[i].cur, -1);
		task_start(&cs[i].task, canceller_main, &cs[i]);
	}
	while (now_ns() < st->quiet_ns) {
		struct rec *g = rec_reserve(st);
		if (g) {
			enum gen_kind kind = rng_chance(&st->main_rng, 1, 6) ? GK_EMPTY : GK_FILES;
			submit_rec(st, g, &st->main_rng, kind, VIA_MAIN, -1);
		}
		/* Submits spread over the whole chaos, on average. */
		sleep_us(rng_below(&st->main_rng, 2000u * st->chaos_ms / st->budget));
	}
	atomic_store(&st->chaos, 0);
	st->quiet_ns = now_ns();
	uint64_t deadline = st->quiet_ns + hang_ns;
	watchdog_arm(st, deadline + slack_ns, "joining the cancel threads");
	for (unsigned i = 0; i < st->ncancellers; i++) {
		if (task_join_by(&cs[i].task, deadline) != 0) {
			char what[128];
			snprintf(what, sizeof(what), "cancel thread %u is still in sstf_cancel of #%d",
			         i, atomic_load(&cs[i].cur));
			fail_hang(st, st->eng, what);
		}
	}

	if (st->ending != END_FREE) {
		watchdog_arm(st, deadline + slack_ns, "draining");
		drain(st, deadline);
	}
	if (st->ending == END_QUIET_EMPTY || st->ending == END_QUIET_FAILING) {
		atomic_store(&st->limit, atomic_load(&st->nrecs) + EPILOGUE_GENS);
		struct rec *g = rec_reserve(st);
		cr_assert_not_null(g);
		st->quiet_ns = now_ns();
		deadline = st->quiet_ns + hang_ns;
		watchdog_arm(st, deadline + slack_ns, "draining after the epilogue");
		enum gen_kind kind = st->ending == END_QUIET_EMPTY ? GK_EMPTY : GK_FAILING;
		cr_assert_eq(submit_rec(st, g, &st->main_rng, kind, VIA_EPILOGUE, -1), 0,
		             "%s", first_violation);
		drain(st, deadline);
	}

	/* Free: mid-flight (END_FREE) or on an idle engine. */
	unsigned open = 0, n = atomic_load(&st->nrecs);
	for (unsigned i = 0; i < n; i++) {
		struct rec *g = &st->recs[i];
		if (atomic_load(&g->state) == RS_ACCEPTED && !atomic_load(&g->batch_done)) {
			atomic_store(&g->open_at_free, 1);
			open++;
		}
	}
	uint64_t free_start = now_ns();
	if (st->ending == END_FREE)
		st->quiet_ns = free_start;
	deadline = free_start + hang_ns;
	watchdog_arm(st, deadline + slack_ns, "sstf_engine_free");
	atomic_store(&st->freeing, 1);
	struct task ft;
	task_start(&ft, free_main, st->eng);
	if (task_join_by(&ft, deadline) != 0)
		fail_hang(st, NULL, "sstf_engine_free did not return");
	atomic_store(&st->freed, 1);
	watchdog_arm(NULL, 0, NULL);
	cr_assert_eq(sanitizer_leak_check(), 0,
	             "LeakSanitizer: leaks after sstf_engine_free (report above)\n%s", desc);

	/* Every accepted generation ended exactly once, before free returned. */
	n = atomic_load(&st->nrecs);
	unsigned freed_in_flight = 0;
	int published[NDS] = { 0 };
	for (unsigned i = 0; i < n; i++) {
		struct rec *g = &st->recs[i];
		int s = atomic_load(&g->state);
		cr_assert(s == RS_ACCEPTED || s == RS_REJECTED, "#%u left in state %d\n%s", i, s,
		          desc);
		if (s != RS_ACCEPTED)
			continue;
		tot->gens++;
		cr_assert_eq(atomic_load(&g->batch_done), 1,
		             "#%u (gen %llu): on_batch_done ran %d times by the time "
		             "sstf_engine_free returned\n%s", i,
		             (unsigned long long)atomic_load(&g->id), atomic_load(&g->batch_done),
		             desc);
		if (atomic_load(&g->open_at_free) && atomic_load(&g->batch_result) == -ECANCELED)
			freed_in_flight++;
		for (size_t k = 0; k < g->nfiles; k++)
			if (g->entry[k] >= 0 && atomic_load(&g->res[k]) == 0)
				published[g->entry[k]] = 1;
	}
	char vfirst[sizeof(first_violation)];
	pthread_mutex_lock(&vmu);
	memcpy(vfirst, first_violation, sizeof(vfirst));
	pthread_mutex_unlock(&vmu);
	cr_assert_eq(atomic_load(&violations), 0, "%u violation(s); first: %s\n%s",
	             atomic_load(&violations), vfirst, desc);

	/* The disk: no temporary left, every file whole. */
	struct scan *sc = calloc(1, sizeof(*sc));
	cr_assert_not_null(sc);
	scan_dir(sc, st->dest, "", 0);
	cr_assert_eq(sc->temps, 0, "%d temporary file(s) left under %s, e.g. %s\n%s", sc->temps,
	             st->dest, sc->first_temp, desc);
	cr_assert_eq(sc->bad, 0, "%d bad file(s) under %s; first: %s\n%s", sc->bad, st->dest,
	             sc->why, desc);
	for (int i = 0; i < NDS; i++)
		cr_assert(!published[i] || sc->present[i],
		          "%s was reported published but is not in %s\n%s", ds.files[i].name,
		          st->dest, desc);
	free(sc);

	cr_log_info("storm %u: %s, %u gens (%u empty, %u from callbacks, %u of them cancelled "
	            "at once); cancels: %u by threads (%u in flight), %u in callbacks; %u open "
	            "at free, %u cancelled by it; files %u ok, %u failed", index,
	            ending_names[st->ending], n, atomic_load(&st->empties),
	            atomic_load(&st->cb_submits), atomic_load(&st->cb_submit_cancels),
	            atomic_load(&st->thread_cancels), atomic_load(&st->thread_cancels_in_flight),
	            atomic_load(&st->cb_cancels), open, freed_in_flight,
	            atomic_load(&st->files_ok), atomic_load(&st->files_failed));
	tot->storms[st->ending]++;
	tot->empties += atomic_load(&st->empties);
	tot->cb_submits += atomic_load(&st->cb_submits);
	tot->cb_submit_cancels += atomic_load(&st->cb_submit_cancels);
	tot->thread_cancels += atomic_load(&st->thread_cancels);
	tot->thread_cancels_in_flight += atomic_load(&st->thread_cancels_in_flight);
	tot->cb_cancels += atomic_load(&st->cb_cancels);
	tot->freed_in_flight += freed_in_flight;
	tot->files_ok += atomic_load(&st->files_ok);
	tot->files_failed += atomic_load(&st->files_failed);

	cr_assert_eq(ds_rmtree(st->dest), 0);
	free(st->dest);
	free(st);
}

Test(stress, cancel_storms, .init = fixture_init, .fini = fixture_fini)
{
	unsigned storms = (unsigned)env_u64("SSTF_STRESS_STORMS", DEFAULT_STORMS, 1000000);
	unsigned first = 0;
	if (getenv("SSTF_STRESS_STORM")) {
		first = (unsigned)env_u64("SSTF_STRESS_STORM", 0, 1000000);
		storms = 1;
	}
	cr_log_info("seed 0x%llx, storms %u..%u, hang bound %u s%s",
	            (unsigned long long)base_seed, first, first + storms - 1, hang_s,
	            malformed_ok ? "" : ", no malformed URLs (sstf_submit refuses them)");
	struct totals tot;
	memset(&tot, 0, sizeof(tot));
	watchdog_start();
	for (unsigned i = 0; i < storms; i++)
		run_storm(first + i, &tot);
	watchdog_stop();
	cr_log_info("%u storms (%u freed mid-flight, %u drained, %u with an empty and %u with "
	            "a failing batch on a quiet engine): %u gens, "
	            "%u empty, %u submitted from callbacks (%u cancelled at once); cancels: %u "
	            "by threads (%u in flight), %u in callbacks; %u cancelled by "
	            "sstf_engine_free; files %u ok, %u failed", storms, tot.storms[END_FREE],
	            tot.storms[END_DRAIN], tot.storms[END_QUIET_EMPTY],
	            tot.storms[END_QUIET_FAILING], tot.gens, tot.empties,
	            tot.cb_submits, tot.cb_submit_cancels, tot.thread_cancels,
	            tot.thread_cancels_in_flight, tot.cb_cancels, tot.freed_in_flight,
	            tot.files_ok, tot.files_failed);
	/* Storms whose cancels never met a running generation proved little. */
	if (storms >= 10)
		cr_assert_gt(tot.thread_cancels_in_flight, 0,
		             "no cancel from a thread found its generation in flight (seed 0x%llx)",
		             (unsigned long long)base_seed);
}
