/*
 * tool.h - running the sstfetch tool from a Criterion test, as a user runs
 * it, and reading what it printed. Shared by the CLI suites (test_cli.c,
 * test_operator.c, ...), which link jansson and get the tool's path in
 * $SSTFETCH from tests/meson.build.
 *
 * The tool is the real binary, forked and exec'd with an argument vector
 * (no shell), stdin from /dev/null, stdout and stderr on pipes that this
 * module reads. It runs either to the end (RUN(), tool_run()) or in the
 * background (SPAWN(), tool_spawn()): then the test may read its stderr
 * line by line while it runs (the live status line of --eta=always comes
 * one line per redraw, since stderr is not a terminal), wait for it, or
 * kill it with SIGKILL.
 *
 * Failing the test. Every function here fails the test (cr_assert) on what
 * the test cannot go on from: fork, pipe or memory errors, a JSON key
 * missing, a hang. A sanitizer report in the tool's stderr ("Sanitizer" or
 * "runtime error:"; the tool is built with the test binaries' sanitizer)
 * fails the test whatever the exit status, for runs that end, are waited
 * for or are killed alike. Nothing here measures time: the only clocks are
 * hang guards.
 *
 * Lifetime. Call tool_setup() from the suite's .init and tool_teardown()
 * from its .fini (Criterion runs .fini after a failed assertion too, but
 * not after cr_skip_test(): call tool_teardown(), or the whole .fini, right
 * before skipping, or the temp dir stays behind; it may run twice).
 * Strings handed out (fmt(), keep(), slurp(), a run's out/err/cmd, lines)
 * and parsed JSON live until tool_teardown(); so do spawned tools, which it
 * kills (SIGKILL) and reaps if the test left them running. A spawned tool
 * also gets SIGKILL from the kernel when the thread that spawned it dies
 * (PR_SET_PDEATHSIG), so a crashed test worker leaks no process: spawn
 * from the test's main thread (the body, or .init).
 *
 * Threads. Single-threaded: call everything from the test's main thread.
 * Other threads of the test (a fault origin's) may run meanwhile; between
 * fork and exec the child makes only async-signal-safe calls.
 *
 * Names are short on purpose (fmt, RUN, jint, ...): tests use them on
 * nearly every line.
 */
#ifndef SSTF_TEST_TOOL_H
#define SSTF_TEST_TOOL_H

#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <jansson.h>

/* Hang guard of RUN(), tool_run() and tool_wait(), in seconds. */
#define TOOL_GUARD_S 600

/* Most arguments one run may take (wrapper and tool arguments together). */
#define TOOL_MAX_ARGS 64

/*
 * TOOL_SANITIZED is 1 when the test binary (and so the tool: meson builds
 * both with the same -Db_sanitize) runs under ASan or TSan, 0 otherwise.
 * Use it to skip what sanitizers make meaningless, such as peak RSS.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define TOOL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define TOOL_SANITIZED 1
#endif
#endif
#ifndef TOOL_SANITIZED
#define TOOL_SANITIZED 0
#endif

/* ------------------------------------------------------------------------ */
/* Fixture and strings                                                      */

/*
 * Makes the test's temp dir "$TMPDIR/sstf-TAG-XXXXXX" and returns its
 * absolute path (valid until tool_teardown(), which removes the tree).
 * Call once per test, from .init.
 */
char *tool_setup(const char *tag);

/*
 * Ends the test's tools: SIGKILLs and reaps every spawned tool still
 * running, closes their pipes, frees every string and JSON document handed
 * out, and removes the temp dir. Safe after a failed assertion and when
 * tool_setup() never ran. Call it before stopping an origin that the tools
 * may still be talking to (the order does not matter otherwise).
 */
void tool_teardown(void);

/* The temp dir of tool_setup(), or NULL. */
const char *tool_workdir(void);

/* Keeps a heap string until tool_teardown() and returns it; fails the test
 * when s is NULL (out of memory). */
char *keep(char *s);

/* A printf'd string that lives until tool_teardown(). */
char *fmt(const char *f, ...) __attribute__((format(printf, 1, 2)));

/* The whole file, NUL-terminated, living until tool_teardown(); its length
 * in *lenp when lenp is not NULL. Fails the test when it cannot be read. */
char *slurp(const char *path, size_t *lenp);

/* ------------------------------------------------------------------------ */
/* Running the tool to its end                                              */

/* What one run of the tool did. */
struct run {
	int code;          /* exit status, or 128 + signal number */
	char *out;         /* stdout, NUL-terminated (writable) */
	char *err;         /* stderr, NUL-terminated (writable) */
	const char *cmd;   /* the arguments, space-joined, for messages only */
	struct rusage ru;  /* the process's own resource use, from wait4():
	                      ru_maxrss is its peak RSS in KiB */
};

/*
 * Runs $SSTFETCH with args (NULL-terminated, without argv[0]) and waits
 * for it. Fails the test when $SSTFETCH is unset, when the tool is still
 * running after TOOL_GUARD_S (it is killed then), or on a sanitizer report.
 * Any exit status is a result, not a failure: check it with expect_exit().
 */
void tool_run(struct run *r, const char *const *args);

/*
 * tool_run() through a wrapper: execs wrapper[0] with the arguments
 * wrapper[1..], then $SSTFETCH, then args; e.g. wrapper
 * {"/usr/bin/unshare", "-n", NULL} runs the tool in a network namespace of
 * its own. The wrapper should exec the tool (not fork it): r->ru and the
 * signals of tool_kill() reach the wrapper's process. wrapper NULL: none.
 */
void tool_run_wrapped(struct run *r, const char *const *wrapper,
                      const char *const *args);

/* RUN(&r, "--opt=1", fmt("--dest=%s", d)): tool_run() on a literal list. */
#define RUN(r, ...)                                          \
	do {                                                     \
		const char *const args_[] = {__VA_ARGS__, NULL};     \
		tool_run((r), args_);                                \
	} while (0)

/* Fails the test, with the command, stderr and stdout, unless the run
 * exited with `code`. */
void expect_exit(const struct run *r, int code);

/* ------------------------------------------------------------------------ */
/* Running the tool in the background                                       */

/*
 * A tool running in the background. Owned by this module: valid until
 * tool_teardown(); the test reads the public fields and never frees it.
 */
struct tool_proc {
	pid_t pid;       /* the tool (or its wrapper, which execs it) */
	/* Read ends (O_NONBLOCK, O_CLOEXEC) of pipes on its stdout and stderr;
	 * -1 once closed (end of file seen, or the tool reaped). A test may
	 * poll() them to sleep until the tool writes, but should read through
	 * tool_read_line(): bytes read directly are missing from `out`/`err`
	 * and from the run that tool_wait() fills. */
	int out_fd;
	int err_fd;
	const char *cmd; /* the arguments, space-joined, for messages */
	/* Everything read from stdout and stderr so far, NUL-terminated. Any
	 * call of this module may read more (they read every spawned tool's
	 * pipes, so that no tool blocks on a full pipe while the test waits
	 * for another) and move these buffers. */
	char *out, *err;
	size_t out_len, err_len;
	/* Private to tool.c. */
	size_t out_cap, err_cap;
	size_t line_at;  /* where tool_read_line() goes on in err */
	int reaped;      /* wait4() collected it; status and ru are valid */
	int status;
	struct rusage ru;
};

/*
 * Starts $SSTFETCH with args (NULL-terminated, without argv[0]), through
 * `wrapper` as tool_run_wrapped() does when it is not NULL, and returns at
 * once, the tool running. Fails the test when it cannot start it.
 * Several may run at once: spawn each, then wait for each.
 */
struct tool_proc *tool_spawn(const char *const *wrapper,
                             const char *const *args);

/* SPAWN("--opt=1", ...): tool_spawn() without a wrapper on a literal list. */
#define SPAWN(...)                                                  \
	__extension__({                                                 \
		const char *const sargs_[] = {__VA_ARGS__, NULL};           \
		tool_spawn(NULL, sargs_);                                   \
	})

/*
 * Waits up to timeout_s seconds for a spawned tool to exit, reading the
 * pipes of every spawned tool meanwhile. Returns 0 with *r filled once it
 * has exited (then reaped, its pipes read to their end and closed; a
 * sanitizer report fails the test), or -ETIMEDOUT with the tool still
 * running and *r untouched: the caller kills it or waits again. May be
 * called again after it returned 0: it fills *r the same way.
 */
int tool_wait_for(struct tool_proc *p, struct run *r, int timeout_s);

/* tool_wait_for() with TOOL_GUARD_S; a tool still running then is killed
 * and the test fails, naming it, with what it printed. */
void tool_wait(struct tool_proc *p, struct run *r);

/*
 * Sends SIGKILL to a spawned tool, reaps it, reads what is left in its
 * pipes and fills *r (r may be NULL): r->code is 128 + SIGKILL, or the
 * tool's own status when it had exited before the signal landed. The
 * sanitizer check applies to what it printed before. A tool already
 * reaped is not signalled again.
 */
void tool_kill(struct tool_proc *p, struct run *r);

/*
 * The next whole line of a spawned tool's stderr that no call has returned
 * yet, without its '\n' (a copy living until tool_teardown()). Waits up to
 * timeout_ms for one (0: only what is already there). Returns NULL on
 * timeout, or at end of file with nothing left (a last line without '\n'
 * is returned at end of file). Every line counts, the status line and
 * error messages alike; they stay in p->err and in the run as well.
 */
const char *tool_read_line(struct tool_proc *p, int timeout_ms);

/*
 * The percentage of the bytes done in a status line of --eta=always:
 * "Jobs: 1 (f=4): [W(1)][42.5%][w=10.0MiB/s][eta 00m:01s]". Returns 0 and
 * the number in *pct (0 to 100), or -1 when the line is not a status line.
 */
int tool_status_pct(const char *line, double *pct);

/* ------------------------------------------------------------------------ */
/* JSON (reports and manifests)                                             */

/* Parses text as a JSON object, kept until tool_teardown(); fails the test,
 * naming `what`, when it is not one. */
json_t *parse_json(const char *text, const char *what);

/* o[key], failing the test when it is missing or of another type. */
json_t *jget(json_t *o, const char *key);
json_t *jobj(json_t *o, const char *key);
json_int_t jint(json_t *o, const char *key);
double jnum(json_t *o, const char *key);
const char *jstr(json_t *o, const char *key);

/* The "jobs" array of a report, which must hold n jobs. */
json_t *report_jobs(json_t *root, size_t n);

/* The one job of a JSON report (--output-format=json) in text. */
json_t *report_job(const char *text);

/* ------------------------------------------------------------------------ */
/* Datasets                                                                 */

/* Path of dataset file number i (1-based, as --gen-dataset names them:
 * DIR/000001.sst on). */
char *set_file(const char *dir, size_t i);

/*
 * Makes a dataset with the tool itself (--gen-dataset=dir --nrfiles=n
 * --filesize=filesize --seed=seed) and returns its byte count, summed from
 * the files; fails the test unless the manifest lists n entries and the
 * same total.
 */
uint64_t gen_dataset(const char *dir, size_t n, const char *filesize,
                     unsigned long long seed);

/*
 * dest must hold set's files 1..n byte for byte, except number `missing`
 * (1-based; 0: none), which must be absent, and nothing else: no other
 * entry, no engine temporary or staging directory (.sstf*) anywhere.
 */
void expect_dest(const char *set, const char *dest, size_t n, size_t missing);

/* Entries of a directory, "." and ".." not counted; fails the test when
 * it cannot be read. */
size_t dir_count(const char *path);

/* 1 when the directory is empty, 0 when it holds something; fails the
 * test when it cannot be read. */
int dir_empty(const char *path);

#endif
