/*
 * tool.c - running the sstfetch tool from the CLI suites; see tool.h.
 *
 * Every spawned tool is a heap struct tool_proc in a table here, so that
 * tool_teardown() can kill and reap what a failed test left running (the
 * test's own stack is gone by then). Waiting polls the pipes of every live
 * tool, so two tools started together never block on a full pipe while
 * the test waits for the other one.
 */
#include "tool.h"

#include <criterion/criterion.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "dataset.h"
#include "threads.h"

/* How long one round of waiting sleeps in poll() at most: the latency of
 * noticing an exit that printed nothing. */
#define PUMP_MS 20
/* Hang guard of reaping a tool that got SIGKILL. */
#define KILL_GUARD_S 60

static char *work;
static char **strs;
static size_t nstrs, capstrs;
static json_t **jsons;
static size_t njsons, capjsons;
static struct tool_proc **procs; /* every tool spawned by this test */
static size_t nprocs, capprocs;
static struct pollfd *pfds;       /* pump()'s, room for 2 per tool */

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ------------------------------------------------------------------------ */
/* Fixture and strings                                                      */

char *tool_setup(const char *tag)
{
	cr_assert_null(work, "tool_setup() called twice");
	int err = ds_mkdtemp(tag, &work);
	cr_assert_eq(err, 0, "mkdtemp: %s", strerror(-err));
	return work;
}

const char *tool_workdir(void)
{
	return work;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

void tool_teardown(void)
{
	for (size_t i = 0; i < nprocs; i++) {
		struct tool_proc *p = procs[i];
		if (!p->reaped && p->pid > 0) {
			kill(p->pid, SIGKILL);
			while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
				;
		}
		close_fd(&p->out_fd);
		close_fd(&p->err_fd);
		free(p->out);
		free(p->err);
		free(p);
	}
	free(procs);
	free(pfds);
	procs = NULL;
	pfds = NULL;
	nprocs = capprocs = 0;
	for (size_t i = 0; i < njsons; i++)
		json_decref(jsons[i]);
	free(jsons);
	jsons = NULL;
	njsons = capjsons = 0;
	if (work)
		ds_rmtree(work);
	free(work);
	work = NULL;
	/* Last: the strings may name paths under work. */
	for (size_t i = 0; i < nstrs; i++)
		free(strs[i]);
	free(strs);
	strs = NULL;
	nstrs = capstrs = 0;
}

char *keep(char *s)
{
	cr_assert_not_null(s, "out of memory");
	if (nstrs == capstrs) {
		size_t cap = capstrs ? 2 * capstrs : 256;
		char **ns = realloc(strs, cap * sizeof(*ns));
		if (!ns) {
			free(s);
			cr_assert_fail("out of memory");
		}
		strs = ns;
		capstrs = cap;
	}
	strs[nstrs++] = s;
	return s;
}

char *fmt(const char *f, ...)
{
	va_list ap;
	char *s = NULL;
	va_start(ap, f);
	int n = vasprintf(&s, f, ap);
	va_end(ap);
	return keep(n < 0 ? NULL : s);
}

char *slurp(const char *path, size_t *lenp)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? 2 * cap : 8192;
			char *nb = realloc(buf, cap);
			if (!nb) {
				free(buf);
				fclose(f);
				cr_assert_fail("out of memory");
			}
			buf = nb;
		}
		size_t n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0)
			break;
	}
	int err = ferror(f);
	fclose(f);
	buf[len] = '\0';
	keep(buf);
	cr_assert_eq(err, 0, "%s: read error", path);
	if (lenp)
		*lenp = len;
	return buf;
}

/* ------------------------------------------------------------------------ */
/* Pipes                                                                    */

/* Appends what fd has now to *buf (kept NUL-terminated); closes fd at end
 * of file. Never blocks: the read ends are O_NONBLOCK. */
static void drain(int *fd, char **buf, size_t *len, size_t *cap)
{
	while (*fd >= 0) {
		if (*cap - *len < 4096) {
			size_t ncap = *cap ? 2 * *cap : 8192;
			char *nb = realloc(*buf, ncap);
			cr_assert_not_null(nb, "out of memory");
			*buf = nb;
			*cap = ncap;
		}
		ssize_t n = read(*fd, *buf + *len, *cap - *len - 1);
		if (n > 0) {
			*len += (size_t)n;
			(*buf)[*len] = '\0';
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN)
			break;
		/* End of file, or an error a pipe does not give: either way
		 * nothing more will come. */
		close_fd(fd);
	}
}

static void drain_proc(struct tool_proc *p)
{
	drain(&p->out_fd, &p->out, &p->out_len, &p->out_cap);
	drain(&p->err_fd, &p->err, &p->err_len, &p->err_cap);
}

/*
 * One round: sleeps in poll() up to timeout_ms until a pipe of any spawned
 * tool has something, and reads every pipe that has.
 */
static void pump(int timeout_ms)
{
	nfds_t n = 0;
	for (size_t i = 0; i < nprocs; i++) {
		if (procs[i]->out_fd >= 0)
			pfds[n++] = (struct pollfd){.fd = procs[i]->out_fd, .events = POLLIN};
		if (procs[i]->err_fd >= 0)
			pfds[n++] = (struct pollfd){.fd = procs[i]->err_fd, .events = POLLIN};
	}
	int rc = poll(pfds, n, timeout_ms);
	cr_assert(rc >= 0 || errno == EINTR, "poll: %s", strerror(errno));
	if (rc <= 0)
		return;
	for (size_t i = 0; i < nprocs; i++)
		drain_proc(procs[i]);
}

/* ------------------------------------------------------------------------ */
/* Spawning and reaping                                                     */

static void check_sanitizer(const struct run *r)
{
	cr_assert(!strstr(r->err, "Sanitizer") && !strstr(r->err, "runtime error:"),
	          "%s: sanitizer report:\n%s", r->cmd, r->err);
}

/* Fills *r from a reaped tool; its pipes are read to the end and closed. */
static void fill_run(struct tool_proc *p, struct run *r)
{
	drain_proc(p);
	/* Whatever a pipe still holds came from a process that inherited
	 * it; the tool itself is gone. */
	close_fd(&p->out_fd);
	close_fd(&p->err_fd);
	int st = p->status;
	r->code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	r->out = p->out;
	r->err = p->err;
	r->cmd = p->cmd;
	r->ru = p->ru;
}

/* Reaps p if it has exited. Returns 1 when it is reaped. */
static int try_reap(struct tool_proc *p)
{
	if (p->reaped)
		return 1;
	int st = 0;
	struct rusage ru;
	memset(&ru, 0, sizeof(ru));
	pid_t w = wait4(p->pid, &st, WNOHANG, &ru);
	if (w == p->pid) {
		p->reaped = 1;
		p->status = st;
		p->ru = ru;
		return 1;
	}
	cr_assert(w == 0 || errno == EINTR, "%s: wait4: %s", p->cmd,
	          strerror(errno));
	return 0;
}

/* A pipe whose read end is non-blocking and both ends close-on-exec, so
 * that a tool spawned later does not hold another tool's pipe open. */
static void make_pipe(int fds[2])
{
	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0, "pipe2: %s", strerror(errno));
	int fl = fcntl(fds[0], F_GETFL);
	cr_assert(fl >= 0 && fcntl(fds[0], F_SETFL, fl | O_NONBLOCK) == 0,
	          "fcntl: %s", strerror(errno));
}

struct tool_proc *tool_spawn(const char *const *wrapper, const char *const *args)
{
	const char *tool = getenv("SSTFETCH");
	cr_assert(tool && *tool, "SSTFETCH is not set; run the test through "
	                         "meson test, or set it to build/tools/sstfetch");
	if (nprocs == capprocs) {
		/* Both arrays grow together: pump() needs two slots a tool. */
		size_t cap = capprocs ? 2 * capprocs : 16;
		struct tool_proc **np = realloc(procs, cap * sizeof(*np));
		cr_assert_not_null(np, "out of memory");
		procs = np;
		struct pollfd *nf = realloc(pfds, 2 * cap * sizeof(*nf));
		cr_assert_not_null(nf, "out of memory");
		pfds = nf;
		capprocs = cap;
	}

	/* argv and the command line for messages, all before fork. */
	char *argv[TOOL_MAX_ARGS + 2];
	size_t argc = 0;
	for (const char *const *a = wrapper; a && *a; a++) {
		cr_assert_lt(argc, TOOL_MAX_ARGS);
		argv[argc++] = (char *)*a;
	}
	size_t tool_at = argc;
	argv[argc++] = (char *)tool;
	/* The suite's loop threads (threads.h) for a run that fetches (one
	 * with --dest or --pegasus: --gen-dataset and the like refuse job
	 * options), before the test's own options, so that a test may still
	 * set --threads itself. */
	bool fetches = false;
	for (const char *const *a = args; *a; a++)
		if (!strncmp(*a, "--dest", 6) || !strncmp(*a, "--pegasus", 9))
			fetches = true;
	char threads_opt[32];
	if (fetches && test_threads()) {
		snprintf(threads_opt, sizeof(threads_opt), "--threads=%u", test_threads());
		argv[argc++] = threads_opt;
	}
	for (const char *const *a = args; *a; a++) {
		cr_assert_lt(argc, TOOL_MAX_ARGS + 1);
		argv[argc++] = (char *)*a;
	}
	argv[argc] = NULL;
	char *cmd = NULL;
	size_t cmdlen = 0;
	FILE *cf = open_memstream(&cmd, &cmdlen);
	cr_assert_not_null(cf, "open_memstream: %s", strerror(errno));
	for (size_t i = 0; i < argc; i++) {
		/* The tool by its name: its build path says nothing. */
		fprintf(cf, "%s%s", i ? " " : "", i == tool_at ? "sstfetch" : argv[i]);
	}
	cr_assert_eq(fclose(cf), 0, "out of memory");
	keep(cmd);

	struct tool_proc *p = calloc(1, sizeof(*p));
	cr_assert_not_null(p, "out of memory");
	p->out_fd = p->err_fd = -1;
	p->cmd = cmd;
	p->out = calloc(1, 1);
	p->err = calloc(1, 1);
	p->out_cap = p->err_cap = 1;
	procs[nprocs++] = p; /* from here on, teardown frees it */
	cr_assert(p->out && p->err, "out of memory");

	int ofd[2], efd[2];
	make_pipe(ofd);
	make_pipe(efd);
	int nfd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert_geq(nfd, 0, "/dev/null: %s", strerror(errno));

	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid == 0) {
		/* Only async-signal-safe calls until exec. The tool dies with
		 * the test worker, so a crashed test leaks no process. dup2
		 * clears close-on-exec on 0, 1 and 2. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		if (dup2(nfd, 0) < 0 || dup2(ofd[1], 1) < 0 || dup2(efd[1], 2) < 0)
			_exit(127);
		execv(argv[0], argv);
		_exit(127);
	}
	int fork_err = errno;
	close(ofd[1]);
	close(efd[1]);
	close(nfd);
	if (pid < 0) {
		close(ofd[0]);
		close(efd[0]);
	}
	cr_assert_gt(pid, 0, "fork: %s", strerror(fork_err));
	p->pid = pid;
	p->out_fd = ofd[0];
	p->err_fd = efd[0];
	return p;
}

int tool_wait_for(struct tool_proc *p, struct run *r, int timeout_s)
{
	double deadline = now_s() + timeout_s;
	for (;;) {
		if (try_reap(p)) {
			fill_run(p, r);
			check_sanitizer(r);
			return 0;
		}
		if (now_s() >= deadline)
			return -ETIMEDOUT;
		pump(PUMP_MS);
	}
}

/* SIGKILL unless reaped, then reap; fails the test if it will not die. */
static void kill_reap(struct tool_proc *p)
{
	if (p->reaped)
		return;
	kill(p->pid, SIGKILL);
	double deadline = now_s() + KILL_GUARD_S;
	while (!try_reap(p)) {
		cr_assert_lt(now_s(), deadline, "%s: still there %d s after SIGKILL",
		             p->cmd, KILL_GUARD_S);
		pump(PUMP_MS);
	}
}

void tool_wait(struct tool_proc *p, struct run *r)
{
	if (tool_wait_for(p, r, TOOL_GUARD_S) == 0)
		return;
	kill_reap(p);
	fill_run(p, r);
	cr_assert_fail("%s: still running after %d s, killed; stderr:\n%s",
	               r->cmd, TOOL_GUARD_S, r->err);
}

void tool_kill(struct tool_proc *p, struct run *r)
{
	struct run tmp;
	if (!r)
		r = &tmp;
	kill_reap(p);
	fill_run(p, r);
	check_sanitizer(r);
}

void tool_run_wrapped(struct run *r, const char *const *wrapper,
                      const char *const *args)
{
	tool_wait(tool_spawn(wrapper, args), r);
}

void tool_run(struct run *r, const char *const *args)
{
	tool_run_wrapped(r, NULL, args);
}

void expect_exit(const struct run *r, int code)
{
	cr_assert_eq(r->code, code, "%s: exit %d, expected %d; stderr:\n%s\nstdout:\n%s",
	             r->cmd, r->code, code, r->err, r->out);
}

const char *tool_read_line(struct tool_proc *p, int timeout_ms)
{
	double deadline = now_s() + timeout_ms / 1e3;
	for (;;) {
		drain_proc(p);
		const char *at = p->err + p->line_at;
		const char *nl = strchr(at, '\n');
		if (nl) {
			size_t n = (size_t)(nl - at);
			p->line_at += n + 1;
			return keep(strndup(at, n));
		}
		if (p->err_fd < 0) {
			/* End of file: a last line without its newline. */
			size_t n = strlen(at);
			if (n == 0)
				return NULL;
			p->line_at += n;
			return keep(strndup(at, n));
		}
		double left_ms = (deadline - now_s()) * 1e3;
		if (left_ms <= 0)
			return NULL;
		pump(left_ms < PUMP_MS ? (int)left_ms + 1 : PUMP_MS);
	}
}

int tool_status_pct(const char *line, double *pct)
{
	if (strncmp(line, "Jobs: ", 6) != 0)
		return -1;
	const char *end = strstr(line, "%]");
	if (!end)
		return -1;
	const char *open = end;
	while (open > line && open[-1] != '[')
		open--;
	if (open == line)
		return -1;
	char *stop;
	errno = 0;
	double v = strtod(open, &stop);
	if (stop != end || errno != 0 || v < 0 || v > 100)
		return -1;
	*pct = v;
	return 0;
}

/* ------------------------------------------------------------------------ */
/* JSON                                                                     */

json_t *parse_json(const char *text, const char *what)
{
	json_error_t e;
	json_t *root = json_loads(text, 0, &e);
	cr_assert_not_null(root, "%s: not JSON (line %d: %s):\n%s", what, e.line,
	                   e.text, text);
	if (njsons == capjsons) {
		size_t cap = capjsons ? 2 * capjsons : 16;
		json_t **nj = realloc(jsons, cap * sizeof(*nj));
		if (!nj) {
			json_decref(root);
			cr_assert_fail("out of memory");
		}
		jsons = nj;
		capjsons = cap;
	}
	jsons[njsons++] = root;
	cr_assert(json_is_object(root), "%s: not a JSON object", what);
	return root;
}

json_t *jget(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	cr_assert_not_null(v, "JSON: no \"%s\"", key);
	return v;
}

json_t *jobj(json_t *o, const char *key)
{
	json_t *v = jget(o, key);
	cr_assert(json_is_object(v), "JSON: \"%s\" is not an object", key);
	return v;
}

json_int_t jint(json_t *o, const char *key)
{
	json_t *v = jget(o, key);
	cr_assert(json_is_integer(v), "JSON: \"%s\" is not an integer", key);
	return json_integer_value(v);
}

double jnum(json_t *o, const char *key)
{
	json_t *v = jget(o, key);
	cr_assert(json_is_number(v), "JSON: \"%s\" is not a number", key);
	return json_number_value(v);
}

const char *jstr(json_t *o, const char *key)
{
	json_t *v = jget(o, key);
	cr_assert(json_is_string(v), "JSON: \"%s\" is not a string", key);
	return json_string_value(v);
}

json_t *report_jobs(json_t *root, size_t n)
{
	json_t *jobs = jget(root, "jobs");
	cr_assert(json_is_array(jobs), "JSON: \"jobs\" is not an array");
	cr_assert_eq(json_array_size(jobs), n, "JSON: %zu jobs, expected %zu",
	             json_array_size(jobs), n);
	return jobs;
}

json_t *report_job(const char *text)
{
	return json_array_get(report_jobs(parse_json(text, "report"), 1), 0);
}

/* ------------------------------------------------------------------------ */
/* Datasets                                                                 */

char *set_file(const char *dir, size_t i)
{
	return fmt("%s/%06zu.sst", dir, i);
}

uint64_t gen_dataset(const char *dir, size_t n, const char *filesize,
                     unsigned long long seed)
{
	struct run r;
	RUN(&r, fmt("--gen-dataset=%s", dir), fmt("--nrfiles=%zu", n),
	    fmt("--filesize=%s", filesize), fmt("--seed=%llu", seed));
	expect_exit(&r, 0);

	uint64_t total = 0;
	for (size_t i = 1; i <= n; i++) {
		struct stat sb;
		const char *p = set_file(dir, i);
		cr_assert_eq(stat(p, &sb), 0, "%s: %s", p, strerror(errno));
		total += (uint64_t)sb.st_size;
	}
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", dir), NULL),
	                       "manifest.json");
	json_t *files = jget(m, "files");
	cr_assert(json_is_array(files));
	cr_assert_eq(json_array_size(files), n);
	cr_assert_eq((uint64_t)jint(m, "file_total_size"), total,
	             "manifest total %" JSON_INTEGER_FORMAT ", files hold %" PRIu64,
	             jint(m, "file_total_size"), total);
	return total;
}

void expect_dest(const char *set, const char *dest, size_t n, size_t missing)
{
	for (size_t i = 1; i <= n; i++) {
		const char *want = set_file(set, i), *got = set_file(dest, i);
		if (i == missing) {
			cr_assert(!ds_exists(got), "%s exists, but it should not",
			          got);
			continue;
		}
		int eq = ds_files_equal(want, got);
		cr_assert_eq(eq, 1, "%s: %s", got,
		             eq == 0 ? "differs from the origin's file"
		                     : strerror(-eq));
	}
	size_t count = dir_count(dest);
	size_t want = n - (missing ? 1 : 0);
	cr_assert_eq(count, want, "%s holds %zu entries, expected %zu", dest,
	             count, want);
	char first[256] = "";
	cr_assert_eq(ds_count_temps(dest, first, sizeof(first)), 0,
	             "temporary left in %s: %s", dest, first);
}

size_t dir_count(const char *path)
{
	DIR *d = opendir(path);
	cr_assert_not_null(d, "%s: %s", path, strerror(errno));
	size_t count = 0;
	for (;;) {
		errno = 0;
		struct dirent *e = readdir(d);
		if (!e)
			break;
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			count++;
	}
	int err = errno;
	closedir(d);
	cr_assert_eq(err, 0, "%s: readdir: %s", path, strerror(err));
	return count;
}

int dir_empty(const char *path)
{
	return dir_count(path) == 0;
}
