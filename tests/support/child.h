/*
 * child.h - the child-process plumbing of the test servers (origin.c runs
 * nginx, s3server.c runs node): a free loopback port, the retry when the
 * child loses the race for it, starting a child that dies with the test
 * worker, stopping and reaping it, the tail of its log, and the registry of
 * servers stopped at exit.
 *
 * Every function returns 0 or a negative errno where it can fail, and never
 * exits the process. Call them from the test's main thread (Criterion's
 * init or the test body): the registry is not locked, and a child started
 * by child_spawn() gets SIGTERM when the thread that started it ends.
 */
#ifndef SSTF_TEST_CHILD_H
#define SSTF_TEST_CHILD_H

#include <stddef.h>
#include <sys/types.h>

/* How long child_stop() waits after SIGTERM, and child_kill() after
 * SIGKILL, for the child to exit: a hang guard, not a measurement. */
#define CHILD_STOP_WAIT_MS 20000

/* How many ports child_on_free_port() tries. */
#define CHILD_PORT_TRIES 8

/* How many servers the at-exit registry holds at once. */
#define CHILD_MAX_LIVE 32

/* Sleeps ms milliseconds, resuming after signals. */
void child_sleep_ms(unsigned ms);

/*
 * A port that is free on 127.0.0.1 now: bound as 127.0.0.1:0, read back and
 * closed. Another process may take it before the caller's child binds it;
 * child_on_free_port() retries then. Returns 0 with *port set, or -errno.
 */
int child_free_port(unsigned *port);

/*
 * Runs attempt(arg) with *port set to child_free_port()'s answer, again on
 * another port while attempt returns -EADDRINUSE (its child lost the race
 * for the port), CHILD_PORT_TRIES times at most. Returns attempt's last
 * result (-EADDRINUSE when every try lost), or child_free_port()'s error.
 * attempt must leave nothing running when it fails.
 */
int child_on_free_port(unsigned *port, int (*attempt)(void *arg), void *arg);

/* 1 when a TCP connection to 127.0.0.1:port is accepted (then closed at
 * once, without a byte sent), else 0. */
int child_port_accepts(unsigned port);

/*
 * Reads the last len - 1 bytes of the file at path (all of it when shorter)
 * into buf, NUL-terminated: the tail of a child's log. buf is "" when the
 * file cannot be read. len must be at least 1.
 */
void child_read_tail(const char *path, char *buf, size_t len);

/*
 * Forks and execs the program at path (no PATH search) with argv, its
 * stdin, stdout and stderr duplicated from in, out and err: descriptors
 * above 2 that the caller still owns and closes (close-on-exec or not).
 * The child has no other descriptor open, no signal blocked, SIGPIPE at its
 * default, and gets SIGTERM from the kernel when the calling thread ends
 * (PR_SET_PDEATHSIG), so a crashed test worker leaks no server; if the
 * caller is already gone when the child starts, or exec fails, the child
 * exits with status 127. Returns the child's pid (> 0), or -errno when fork
 * fails. The caller reaps it: child_stop(), child_kill() or child_reap().
 */
pid_t child_spawn(const char *path, char *const argv[], int in, int out, int err);

/*
 * Waits up to ms for pid to exit, polling every 10 ms. Returns 1 when it
 * has been reaped (its wait status in *st), or when it is no child of ours
 * (ECHILD: already reaped; *st untouched), else 0.
 */
int child_reap(pid_t pid, unsigned ms, int *st);

/* SIGKILL, then reaps pid, waiting CHILD_STOP_WAIT_MS at most. A pid <= 0
 * is a no-op (kill() would take it for a process group). */
void child_kill(pid_t pid);

/*
 * Stops pid: SIGTERM, then SIGKILL if it has not exited after
 * CHILD_STOP_WAIT_MS, and reaps it (waiting as long again at most).
 * A pid <= 0 is a no-op.
 */
void child_stop(pid_t pid);

/*
 * The at-exit registry. child_track() registers a running server: an
 * atexit handler (installed by the first call) calls stop(server) for each
 * one still registered when the process exits, unregistering it first (stop
 * may call child_untrack(), as the servers' own stop functions do). With
 * CHILD_MAX_LIVE servers registered, more are not registered (nor stopped
 * at exit). child_untrack() forgets server; one not registered is ignored.
 */
void child_track(void *server, void (*stop)(void *server));
void child_untrack(const void *server);

#endif
