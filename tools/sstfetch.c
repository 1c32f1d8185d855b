/*
 * sstfetch.c - fetch the files a manifest lists into a directory, verified.
 *
 *   sstfetch --manifest=FILE --source=BASEURL --dest=DIR [--parallel=N]
 *
 * Exit status: 0 when every file was published and verified, 1 when any
 * file failed (or the run could not start, or was interrupted), 2 for usage
 * and manifest errors, which are found before anything is fetched.
 *
 * Options live in one table (opts[] below): the getopt_long array, the
 * --help text, defaults and value checks all come from it, so that adding an
 * option (and later job-file keys) is one row.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "manifest.h"
#include "sstfetch.h"

#define PROG "sstfetch"

enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* some file failed, or the run could not proceed */
	EXIT_USAGE = 2,  /* bad command line or manifest; nothing fetched */
};

/* ------------------------------------------------------------------------ */
/* Options                                                                  */

struct options {
	const char *manifest;
	const char *source;
	const char *dest;
	unsigned long long parallel;
	int help;
	int version;
};

enum opt_kind {
	OPT_STR,  /* any non-empty string */
	OPT_URL,  /* http://, https:// or file:// URL */
	OPT_UINT, /* decimal integer within [min, max] */
	OPT_FLAG, /* no value; sets an int to 1 */
};

struct opt_def {
	const char *name;
	int short_name;      /* 0: long form only */
	const char *metavar; /* value placeholder in --help; NULL for flags */
	enum opt_kind kind;
	size_t offset;       /* of the field in struct options */
	int required;
	const char *def;     /* default, parsed like a command-line value;
	                        NULL when there is none */
	unsigned long long min, max; /* OPT_UINT bounds */
	const char *help;
};

/* The engine keeps two 1 MiB buffers per transfer; the cap keeps that at
 * 2 GiB. */
#define PARALLEL_MAX 1024

static const struct opt_def opts[] = {
	{"manifest", 0, "FILE", OPT_STR, offsetof(struct options, manifest), 1,
	 NULL, 0, 0, "JSON manifest listing the files to fetch"},
	{"source", 0, "BASEURL", OPT_URL, offsetof(struct options, source), 1,
	 NULL, 0, 0,
	 "base URL (http://, https:// or file://); each file is fetched from "
	 "BASEURL/NAME unless its entry has a \"url\""},
	{"dest", 0, "DIR", OPT_STR, offsetof(struct options, dest), 1, NULL, 0, 0,
	 "destination directory, created if missing"},
	{"parallel", 0, "N", OPT_UINT, offsetof(struct options, parallel), 0, "16",
	 1, PARALLEL_MAX, "files transferred at once"},
	{"help", 'h', NULL, OPT_FLAG, offsetof(struct options, help), 0, NULL, 0,
	 0, "print this help and exit"},
	{"version", 'V', NULL, OPT_FLAG, offsetof(struct options, version), 0,
	 NULL, 0, 0, "print the version and exit"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

#define HELP_INDENT 28 /* width of "  -h, --option=VALUE" padded */
#define HELP_WIDTH 79

/* Prints text word-wrapped to `width` columns, each word after a space;
 * the first line continues the current one, which is at column `col`, and
 * continuation lines are indented by `indent`. */
static void print_wrapped(FILE *out, const char *text, int col, int indent,
                          int width)
{
	const char *p = text;

	while (*p) {
		size_t wlen = strcspn(p, " ");
		if (col > indent && col + 1 + (int)wlen > width) {
			fprintf(out, "\n%*s", indent, "");
			col = indent;
		}
		fputc(' ', out);
		col++;
		fwrite(p, 1, wlen, out);
		col += (int)wlen;
		p += wlen;
		while (*p == ' ')
			p++;
	}
	fputc('\n', out);
}

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: " PROG " --manifest=FILE --source=BASEURL --dest=DIR "
	        "[OPTION]...\n"
	        "Fetch the files a manifest lists into DIR. Each file is verified "
	        "with xxHash\nand appears under its name only once verified.\n\n"
	        "Options:\n");
	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *o = &opts[i];
		char lhs[64];
		if (o->metavar)
			snprintf(lhs, sizeof(lhs), "--%s=%s", o->name, o->metavar);
		else
			snprintf(lhs, sizeof(lhs), "--%s", o->name);
		char text[512];
		int n = snprintf(text, sizeof(text), "%s", o->help);
		if (o->kind == OPT_UINT && n >= 0 && (size_t)n < sizeof(text))
			n += snprintf(text + n, sizeof(text) - (size_t)n,
			              ", %llu to %llu", o->min, o->max);
		if (n >= 0 && (size_t)n < sizeof(text)) {
			if (o->required)
				snprintf(text + n, sizeof(text) - (size_t)n,
				         " (required)");
			else if (o->def)
				snprintf(text + n, sizeof(text) - (size_t)n,
				         " (default: %s)", o->def);
		}
		int col;
		if (o->short_name)
			col = fprintf(out, "  -%c, %-22s", o->short_name, lhs);
		else
			col = fprintf(out, "      %-22s", lhs);
		print_wrapped(out, text, col, HELP_INDENT, HELP_WIDTH);
	}
	fprintf(out,
	        "\nExit status: 0 every file published and verified, 1 some "
	        "file failed,\n2 usage or manifest error (nothing fetched).\n");
}

/* Parses a decimal integer that must be all digits (no sign, no spaces) and
 * fit in [min, max]. Returns 0, or -1. */
static int parse_uint(const char *s, unsigned long long min,
                      unsigned long long max, unsigned long long *out)
{
	if (*s < '0' || *s > '9')
		return -1; /* strtoull would accept " 1", "+1" and "-1" */
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int url_scheme_ok(const char *s)
{
	return strncasecmp(s, "http://", 7) == 0 ||
	       strncasecmp(s, "https://", 8) == 0 ||
	       strncasecmp(s, "file://", 7) == 0;
}

/* Stores `value` for option o. On a bad value prints which option and the
 * accepted form, and returns -1. */
static int set_option(struct options *opt, const struct opt_def *o,
                      const char *value)
{
	char *field = (char *)opt + o->offset;

	switch (o->kind) {
	case OPT_FLAG:
		*(int *)(void *)field = 1;
		return 0;
	case OPT_STR:
	case OPT_URL:
		if (!*value) {
			fprintf(stderr, PROG ": --%s: expected a non-empty %s\n",
			        o->name, o->metavar);
			return -1;
		}
		if (o->kind == OPT_URL && !url_scheme_ok(value)) {
			fprintf(stderr,
			        PROG ": --%s=%s: expected a URL starting with http://, "
			             "https:// or file://\n",
			        o->name, value);
			return -1;
		}
		*(const char **)(void *)field = value;
		return 0;
	case OPT_UINT:
		if (parse_uint(value, o->min, o->max,
		               (unsigned long long *)(void *)field)) {
			fprintf(stderr,
			        PROG ": --%s=%s: expected a decimal integer from %llu "
			             "to %llu\n",
			        o->name, value, o->min, o->max);
			return -1;
		}
		return 0;
	}
	return -1;
}

/* Fills *opt from argv. Returns 0, or EXIT_USAGE after printing why. */
static int parse_options(int argc, char **argv, struct options *opt)
{
	struct option longopts[NOPTS + 1];
	char shortopts[2 * NOPTS + 2];
	size_t ns = 0;
	int seen[NOPTS];

	memset(opt, 0, sizeof(*opt));
	memset(longopts, 0, sizeof(longopts));
	memset(seen, 0, sizeof(seen));
	shortopts[ns++] = ':'; /* report a missing value as ':' */

	for (size_t i = 0; i < NOPTS; i++) {
		const struct opt_def *o = &opts[i];
		longopts[i].name = o->name;
		longopts[i].has_arg = o->metavar ? required_argument : no_argument;
		longopts[i].val = 256 + (int)i;
		if (o->short_name) {
			shortopts[ns++] = (char)o->short_name;
			if (o->metavar)
				shortopts[ns++] = ':';
		}
		/* Defaults go through the same parser as the command line. */
		if (o->def && set_option(opt, o, o->def))
			abort(); /* a bad default in the table is a bug */
	}
	shortopts[ns] = '\0';

	opterr = 0;
	for (;;) {
		int c = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (c == -1)
			break;
		const struct opt_def *o = NULL;
		if (c >= 256 && c < 256 + (int)NOPTS) {
			o = &opts[c - 256];
		} else {
			for (size_t i = 0; i < NOPTS; i++) {
				if (opts[i].short_name && opts[i].short_name == c)
					o = &opts[i];
			}
		}
		if (c == ':' || c == '?' || !o) {
			/* optopt holds a short option's letter; for long ones
			 * the word is the argument just consumed. */
			char shortform[3] = {'-', (char)optopt, '\0'};
			const char *arg = (optopt > 0 && optopt < 256)
				? shortform : argv[optind - 1];
			if (c == ':')
				fprintf(stderr, PROG ": %s: missing value\n", arg);
			else
				fprintf(stderr, PROG ": %s: unknown option\n", arg);
			fprintf(stderr, "Try '" PROG " --help'.\n");
			return EXIT_USAGE;
		}
		if (set_option(opt, o, optarg))
			return EXIT_USAGE;
		seen[o - opts] = 1;
	}
	if (opt->help || opt->version)
		return 0;
	if (optind < argc) {
		fprintf(stderr, PROG ": unexpected argument '%s'\nTry '" PROG
		                     " --help'.\n",
		        argv[optind]);
		return EXIT_USAGE;
	}
	int missing = 0;
	for (size_t i = 0; i < NOPTS; i++) {
		if (opts[i].required && !seen[i]) {
			fprintf(stderr, PROG ": missing required option --%s=%s\n",
			        opts[i].name, opts[i].metavar);
			missing = 1;
		}
	}
	if (missing) {
		fprintf(stderr, "Try '" PROG " --help'.\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Destination directory                                                    */

/* mkdir -p: creates dir and its missing parents. Returns 0, or -1 after
 * printing which directory could not be made. */
static int make_dirs(const char *dir)
{
	char path[PATH_MAX];
	size_t len = strlen(dir);
	struct stat st;

	if (len >= sizeof(path)) {
		fprintf(stderr, PROG ": --dest: path longer than PATH_MAX\n");
		return -1;
	}
	memcpy(path, dir, len + 1);

	/* Each prefix ending before a '/', then the whole path. */
	for (size_t i = 1; i <= len; i++) {
		if (i < len && path[i] != '/')
			continue;
		if (i < len && path[i - 1] == '/')
			continue; /* "a//b" */
		char saved = path[i];
		path[i] = '\0';
		if (mkdir(path, 0777) != 0 && errno != EEXIST) {
			fprintf(stderr, PROG ": --dest: cannot create '%s': %s\n",
			        path, strerror(errno));
			return -1;
		}
		path[i] = saved;
	}
	if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
		fprintf(stderr, PROG ": --dest: '%s' is not a directory\n", dir);
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Run state shared with the engine's callbacks                             */

/* One file's end, as on_file_done saw it. */
struct outcome {
	int done;
	int result;
	uint64_t bytes;
	char *detail; /* malloc'd copy, only for failures with a detail */
};

/*
 * The callbacks run on the engine's loop thread and only record into this
 * preallocated array, under `lock`; the main thread reads it under the same
 * lock, after sstf_wait() has returned.
 */
struct run {
	pthread_mutex_t lock;
	struct outcome *files;
	size_t nfiles;
};

static void on_file_done(void *user, uint64_t gen,
                         const struct sstf_file_result *res)
{
	struct run *run = user;
	char *detail = NULL;

	/* Copy outside the lock; malloc does not wait on anything of ours. */
	if (res->result != 0 && res->detail && res->detail[0])
		detail = strdup(res->detail);

	pthread_mutex_lock(&run->lock);
	if (res->index < run->nfiles && !run->files[res->index].done) {
		struct outcome *o = &run->files[res->index];
		o->done = 1;
		o->result = res->result;
		o->bytes = res->bytes;
		o->detail = detail;
		detail = NULL;
	}
	pthread_mutex_unlock(&run->lock);
	free(detail);
}

/* Set by SIGINT/SIGTERM; the main loop then cancels the generation, which
 * removes its temporary files, instead of dying with them on disk. */
static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND; /* a second signal kills at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void print_progress(sstf_engine *engine, uint64_t gen, double elapsed)
{
	struct sstf_progress p;
	if (sstf_progress(engine, gen, &p) != 0)
		return;
	double pct = p.bytes_total
		? 100.0 * (double)p.bytes_done / (double)p.bytes_total
		: 100.0;
	double rate = elapsed > 0 ? (double)p.bytes_done / 1e6 / elapsed : 0;
	/* \033[K clears what a longer previous line left behind. */
	fprintf(stderr,
	        "\r%5.1f%%  %.1f/%.1f MB  %" PRIu64 "/%" PRIu64
	        " files  %" PRIu64 " failed  %.1f MB/s  %.1f s\033[K",
	        pct, (double)p.bytes_done / 1e6, (double)p.bytes_total / 1e6,
	        p.files_done, p.files_total, p.files_failed, rate, elapsed);
	fflush(stderr);
}

/* The engine sizes the per-host cap and buffer memory from max_transfers. */
static struct sstf_config engine_config(unsigned parallel)
{
	struct sstf_config cfg;

	memset(&cfg, 0, sizeof(cfg));
	cfg.max_transfers = parallel;
	return cfg;
}

/* Prints the report; returns the exit status it implies. */
static int report(const struct manifest *m, struct run *run, double seconds,
                  int wait_rc)
{
	size_t ok = 0, failed = 0;
	uint64_t bytes = 0;

	pthread_mutex_lock(&run->lock);
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct outcome *o = &run->files[i];
		bytes += o->bytes;
		if (o->done && o->result == 0)
			ok++;
		else
			failed++;
	}

	printf("files:   %zu ok, %zu failed, %zu total\n", ok, failed, m->nfiles);
	printf("bytes:   %" PRIu64 " received (%.1f MB), %" PRIu64
	       " in the manifest\n",
	       bytes, (double)bytes / 1e6, m->total_size);
	printf("time:    %.3f s\n", seconds);
	printf("rate:    %.1f MB/s\n",
	       seconds > 0 ? (double)bytes / 1e6 / seconds : 0.0);
	if (wait_rc == -ECANCELED)
		printf("status:  cancelled (interrupted)\n");

	for (size_t i = 0; i < m->nfiles; i++) {
		const struct outcome *o = &run->files[i];
		if (o->done && o->result == 0)
			continue;
		if (!o->done) {
			printf("failed:  %s: not finished (%s)\n", m->files[i].name,
			       wait_rc == -ECANCELED ? "cancelled" : "no result");
		} else if (o->detail) {
			printf("failed:  %s: %s (%s)\n", m->files[i].name,
			       sstf_strerror(o->result), o->detail);
		} else {
			printf("failed:  %s: %s\n", m->files[i].name,
			       sstf_strerror(o->result));
		}
	}
	pthread_mutex_unlock(&run->lock);
	fflush(stdout);

	return (failed == 0 && wait_rc == 0) ? EXIT_OK : EXIT_FAILED;
}

/* Submits the manifest as one batch and waits for it. Returns the exit
 * status. */
static int fetch(const struct options *opt, const struct manifest *m)
{
	struct run run = {.nfiles = m->nfiles};
	sstf_engine *engine = NULL;
	char errbuf[512] = "";
	uint64_t gen = 0;
	int status = EXIT_FAILED;
	int rc;

	pthread_mutex_init(&run.lock, NULL);
	run.files = calloc(m->nfiles ? m->nfiles : 1, sizeof(*run.files));
	if (!run.files) {
		fprintf(stderr, PROG ": out of memory\n");
		goto out;
	}

	/* The engine's threads inherit a mask blocking SIGINT and SIGTERM, so
	 * that only this thread sees them and engine syscalls never get EINTR
	 * from us. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	struct sstf_config cfg = engine_config((unsigned)opt->parallel);
	rc = sstf_engine_new(&cfg, &engine);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		fprintf(stderr, PROG ": cannot start the engine: %s\n",
		        sstf_strerror(rc));
		goto out;
	}

	struct sstf_batch batch = {
		.dest_dir = opt->dest,
		.files = m->files,
		.nfiles = m->nfiles,
		.on_file_done = on_file_done,
		.user = &run,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	double start = now_s();
	rc = sstf_submit(engine, &batch, &gen);
	if (rc) {
		/* The engine's own checks back up manifest_load()'s: a
		 * refused entry is a manifest error. */
		fprintf(stderr, PROG ": %s: %s%s%s\n", opt->manifest,
		        sstf_strerror(rc), errbuf[0] ? ": " : "", errbuf);
		status = (rc == -SSTF_EBADENTRY || rc == -SSTF_EBADURL)
			? EXIT_USAGE : EXIT_FAILED;
		goto out;
	}

	int tty = isatty(STDERR_FILENO);
	int cancelled = 0;
	for (;;) {
		rc = sstf_wait(engine, gen, 500);
		if (rc != -ETIMEDOUT)
			break;
		if (interrupted && !cancelled) {
			cancelled = 1;
			if (tty)
				fputc('\n', stderr);
			fprintf(stderr, PROG ": interrupted; cancelling\n");
			sstf_cancel(engine, gen); /* blocks until it is clean */
			continue;
		}
		if (tty && !cancelled)
			print_progress(engine, gen, now_s() - start);
	}
	double seconds = now_s() - start;
	if (tty && !cancelled) {
		print_progress(engine, gen, seconds);
		fputc('\n', stderr);
	}
	if (rc == -SSTF_ENOSUCHGEN || rc == -EDEADLK) {
		fprintf(stderr, PROG ": waiting for the fetch failed: %s\n",
		        sstf_strerror(rc));
	}
	status = report(m, &run, seconds, rc);

out:
	sstf_engine_free(engine);
	for (size_t i = 0; run.files && i < run.nfiles; i++)
		free(run.files[i].detail);
	free(run.files);
	pthread_mutex_destroy(&run.lock);
	return status;
}

int main(int argc, char **argv)
{
	struct options opt;
	int rc = parse_options(argc, argv, &opt);
	if (rc)
		return rc;
	if (opt.help) {
		usage(stdout);
		return EXIT_OK;
	}
	if (opt.version) {
		printf(PROG " %s (libsstfetch %s)\n", SSTF_VERSION_STRING,
		       SSTF_VERSION_STRING);
		return EXIT_OK;
	}

	char err[1024];
	struct manifest *m = NULL;
	if (manifest_load(opt.manifest, opt.source, &m, err, sizeof(err))) {
		fprintf(stderr, PROG ": %s\n", err);
		return EXIT_USAGE;
	}
	if (make_dirs(opt.dest)) {
		manifest_free(m);
		return EXIT_FAILED;
	}

	catch_signals();
	rc = fetch(&opt, m);
	manifest_free(m);
	return rc;
}
