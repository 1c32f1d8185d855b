/*
 * origin.c - nginx on loopback as the HTTP origin of the tests.
 */
#include "origin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"

#define NGINX_BIN "/usr/sbin/nginx"
#define START_TRIES 8
#define START_WAIT_MS 30000 /* a guard against a hang, not a measurement */
#define STOP_WAIT_MS 20000

/* Origins still running, stopped at exit. Only the main thread touches it. */
#define MAX_LIVE 16
static struct origin *live[MAX_LIVE];
static int atexit_done;

static void stop_all_at_exit(void)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i])
			origin_stop(live[i]);
}

static void track(struct origin *o, int add)
{
	for (int i = 0; i < MAX_LIVE; i++) {
		if (add ? live[i] == NULL : live[i] == o) {
			live[i] = add ? o : NULL;
			return;
		}
	}
}

static void sleep_ms(unsigned ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int free_port(unsigned *port)
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

static int port_accepts(unsigned port)
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

/* Reads a small text file into buf; "" when it cannot. */
static void read_text(const char *path, char *buf, size_t len)
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

/* The pid nginx wrote into its pid file, or 0. */
static pid_t pidfile_pid(const struct origin *o)
{
	char path[PATH_MAX], text[32];
	snprintf(path, sizeof(path), "%s/nginx.pid", o->prefix);
	read_text(path, text, sizeof(text));
	return (pid_t)strtol(text, NULL, 10);
}

static int write_conf(const struct origin *o, const char *conf)
{
	const char *p = o->prefix;
	char *text = ds_strfmt(
		"# written by tests/support/origin.c\n"
		"daemon off;\n"
		"master_process on;\n"
		"worker_processes 2;\n"
		"%s"
		"pid %s/nginx.pid;\n"
		"lock_file %s/nginx.lock;\n"
		"error_log %s/error.log warn;\n"
		"events { worker_connections 1024; }\n"
		"http {\n"
		"  access_log off;\n"
		"  sendfile on;\n"
		"  tcp_nopush on;\n"
		"  keepalive_timeout 60s;\n"
		"  keepalive_requests 100000;\n"
		"  client_body_temp_path %s/client_body;\n"
		"  proxy_temp_path %s/proxy;\n"
		"  fastcgi_temp_path %s/fastcgi;\n"
		"  uwsgi_temp_path %s/uwsgi;\n"
		"  scgi_temp_path %s/scgi;\n"
		"  default_type application/octet-stream;\n"
		"  server {\n"
		"    listen 127.0.0.1:%u;\n"
		"    server_name localhost;\n"
		"    root %s;\n"
		"    location / { }\n"
		"  }\n"
		"}\n",
		/* As root, workers would run as nobody and could not read the
		 * 0700 dirs mkdtemp makes. */
		geteuid() == 0 ? "user root;\n" : "",
		p, p, p, p, p, p, p, p, o->port, o->root);
	if (!text)
		return -ENOMEM;
	int err = ds_write_file(conf, text, strlen(text));
	free(text);
	return err;
}

/* Waits for pid up to ms; returns 1 when reaped (status in *st), else 0. */
static int reap(pid_t pid, unsigned ms, int *st)
{
	for (unsigned waited = 0;; waited += 10) {
		pid_t r = waitpid(pid, st, WNOHANG);
		if (r == pid || (r < 0 && errno == ECHILD))
			return 1;
		if (waited >= ms)
			return 0;
		sleep_ms(10);
	}
}

/*
 * One attempt on o->port. Returns 0 when nginx accepts connections,
 * -EADDRINUSE when it lost the port, another -errno otherwise.
 */
static int try_start(struct origin *o)
{
	char conf[PATH_MAX], elog[PATH_MAX], outlog[PATH_MAX];
	snprintf(conf, sizeof(conf), "%s/nginx.conf", o->prefix);
	snprintf(elog, sizeof(elog), "%s/error.log", o->prefix);
	snprintf(outlog, sizeof(outlog), "%s/stderr.log", o->prefix);
	unlink(elog);
	int err = write_conf(o, conf);
	if (err)
		return err;

	char *argv[] = { (char *)NGINX_BIN, (char *)"-p", o->prefix, (char *)"-e", elog,
	                 (char *)"-c", conf, NULL };
	int out = open(outlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (out < 0 || null < 0) {
		err = -errno;
		if (out >= 0)
			close(out);
		if (null >= 0)
			close(null);
		return err;
	}
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
		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
		close_range(3, ~0u, 0);
		execv(NGINX_BIN, argv);
		_exit(127);
	}
	err = pid < 0 ? -errno : 0;
	close(out);
	close(null);
	if (err)
		return err;
	o->pid = pid;

	for (unsigned waited = 0; waited < START_WAIT_MS; waited += 5) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			o->pid = 0;
			char text[2048];
			read_text(elog, text, sizeof(text));
			if (strstr(text, "Address already in use"))
				return -EADDRINUSE;
			fprintf(stderr, "origin: nginx exited (status 0x%x) at start:\n%s\n",
			        (unsigned)st, text);
			read_text(outlog, text, sizeof(text));
			fprintf(stderr, "%s\n", text);
			return -ECHILD;
		}
		/* nginx writes its pid file after it has bound the port, so the
		 * connection then reaches nginx and not whoever raced us. */
		if (pidfile_pid(o) == pid && port_accepts(o->port))
			return 0;
		sleep_ms(5);
	}
	fprintf(stderr, "origin: nginx did not accept on port %u in %d ms\n", o->port,
	        START_WAIT_MS);
	kill(pid, SIGKILL);
	int st;
	reap(pid, STOP_WAIT_MS, &st);
	o->pid = 0;
	return -ETIMEDOUT;
}

int origin_start(const char *root, struct origin **out)
{
	if (access(NGINX_BIN, X_OK) != 0) {
		fprintf(stderr, "origin: %s not found (install nginx-light)\n", NGINX_BIN);
		return -ENOENT;
	}
	struct origin *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->root = strdup(root);
	int err = o->root ? ds_mkdtemp("nginx", &o->prefix) : -ENOMEM;
	for (int i = 0; !err && i < START_TRIES; i++) {
		err = free_port(&o->port);
		if (!err)
			err = try_start(o);
		if (err != -EADDRINUSE)
			break;
		err = i + 1 < START_TRIES ? 0 : err;
	}
	if (err) {
		if (o->prefix)
			ds_rmtree(o->prefix);
		free(o->prefix);
		free(o->root);
		free(o);
		return err;
	}
	snprintf(o->base_url, sizeof(o->base_url), "http://127.0.0.1:%u", o->port);
	if (!atexit_done) {
		atexit(stop_all_at_exit);
		atexit_done = 1;
	}
	track(o, 1);
	*out = o;
	return 0;
}

void origin_stop(struct origin *o)
{
	if (!o)
		return;
	track(o, 0);
	if (o->pid > 0) {
		int st;
		kill(o->pid, SIGTERM);
		if (!reap(o->pid, STOP_WAIT_MS, &st)) {
			kill(o->pid, SIGKILL);
			reap(o->pid, STOP_WAIT_MS, &st);
		}
	}
	if (o->prefix)
		ds_rmtree(o->prefix);
	free(o->prefix);
	free(o->root);
	free(o);
}
