/*
 * child.c - the child-process plumbing of the test servers; see child.h.
 */
#include "child.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* Servers still running, stopped at exit. Only the main thread touches it. */
static struct {
	void *server;
	void (*stop)(void *server);
} live[CHILD_MAX_LIVE];
static int atexit_done;

static void stop_all_at_exit(void)
{
	for (int i = 0; i < CHILD_MAX_LIVE; i++) {
		void *server = live[i].server;
		void (*stop)(void *) = live[i].stop;
		if (!server)
			continue;
		live[i].server = NULL;
		live[i].stop = NULL;
		stop(server);
	}
}

void child_track(void *server, void (*stop)(void *server))
{
	if (!atexit_done) {
		atexit(stop_all_at_exit);
		atexit_done = 1;
	}
	for (int i = 0; i < CHILD_MAX_LIVE; i++) {
		if (live[i].server == NULL) {
			live[i].server = server;
			live[i].stop = stop;
			return;
		}
	}
}

void child_untrack(const void *server)
{
	for (int i = 0; i < CHILD_MAX_LIVE; i++) {
		if (server && live[i].server == server) {
			live[i].server = NULL;
			live[i].stop = NULL;
			return;
		}
	}
}

void child_sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

int child_free_port(unsigned *port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t len = sizeof(sa);
	int err = 0;
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
		err = -errno;
	else
		*port = ntohs(sa.sin_port);
	close(fd);
	return err;
}

int child_on_free_port(unsigned *port, int (*attempt)(void *arg), void *arg)
{
	int err = 0;
	for (int i = 0; !err && i < CHILD_PORT_TRIES; i++) {
		err = child_free_port(port);
		if (!err)
			err = attempt(arg);
		if (err != -EADDRINUSE)
			break;
		err = i + 1 < CHILD_PORT_TRIES ? 0 : err;
	}
	return err;
}

int child_port_accepts(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int ok = connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	close(fd);
	return ok;
}

void child_read_tail(const char *path, char *buf, size_t len)
{
	buf[0] = '\0';
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	off_t size = lseek(fd, 0, SEEK_END);
	off_t from = size > (off_t)len - 1 ? size - (off_t)len + 1 : 0;
	ssize_t n = pread(fd, buf, len - 1, from);
	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

pid_t child_spawn(const char *path, char *const argv[], int in, int out, int err)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls from here to exec. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (getppid() != parent)
			_exit(127);
		sigset_t all;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		signal(SIGPIPE, SIG_DFL);
		dup2(in, 0);
		dup2(out, 1);
		dup2(err, 2);
		close_range(3, ~0u, 0);
		execv(path, argv);
		_exit(127);
	}
	return pid < 0 ? -errno : pid;
}

int child_reap(pid_t pid, unsigned ms, int *st)
{
	for (unsigned waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return 1;
		if (waited >= ms)
			return 0;
		child_sleep_ms(10);
	}
}

void child_kill(pid_t pid)
{
	if (pid <= 0)
		return;
	int st;
	kill(pid, SIGKILL);
	child_reap(pid, CHILD_STOP_WAIT_MS, &st);
}

void child_stop(pid_t pid)
{
	if (pid <= 0)
		return;
	int st;
	kill(pid, SIGTERM);
	if (!child_reap(pid, CHILD_STOP_WAIT_MS, &st))
		child_kill(pid);
}
