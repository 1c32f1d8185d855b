/*
 * origin.h - a real nginx on loopback, serving a directory, for the tests.
 *
 * origin_start() writes a config into a private temp prefix (pid file, error
 * log and every temp path inside it), runs /usr/sbin/nginx in the foreground
 * as a child (daemon off, master process on), and returns once the port
 * accepts connections. The port is a free one found by binding
 * 127.0.0.1:0; when nginx loses the race for it (EADDRINUSE) another port is
 * tried.
 *
 * Cleanup. origin_stop() ends nginx and removes the prefix. Origins not
 * stopped are stopped by an atexit handler; and nginx gets SIGTERM from the
 * kernel (PR_SET_PDEATHSIG) if the thread that started it dies, so a crashed
 * Criterion test worker does not leak it. Call origin_start() from the
 * test's main thread (Criterion's init or the test body).
 */
#ifndef SSTF_TEST_ORIGIN_H
#define SSTF_TEST_ORIGIN_H

#include <limits.h>
#include <sys/types.h>

struct origin {
	pid_t pid;            /* nginx master */
	unsigned port;
	char *prefix;         /* private temp dir: conf, logs, temp paths */
	char *root;           /* the directory served at "/" */
	char base_url[64];    /* "http://127.0.0.1:PORT", no trailing slash */
};

/*
 * Starts nginx serving `root` (an absolute path). Returns 0 and a heap
 * struct in *out, or a negative errno; on error the reason and the tail of
 * nginx's error log are printed on stderr and nothing is left running.
 */
int origin_start(const char *root, struct origin **out);

/*
 * Stops nginx (SIGTERM, then SIGKILL if it has not exited after 20 s),
 * reaps it, removes the prefix and frees o. NULL is a no-op.
 */
void origin_stop(struct origin *o);

#endif
