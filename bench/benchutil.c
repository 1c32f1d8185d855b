/*
 * benchutil.c - options, statistics, tables, JSON and process helpers
 * shared by the bench binaries.
 */
#include "benchutil.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <linux/magic.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/vfs.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

/* ------------------------------------------------------------------------ */
/* Options */

static int parse_uint(const char *s, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return -1; /* strtoull would take " 1", "+1" and "-1" */
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno || *end != '\0')
		return -1;
	*out = v;
	return 0;
}

int bu_parse_size(const char *s, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return -1;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return -1;
	unsigned shift = 0;
	switch (*end) {
	case '\0':
		break;
	case 'k':
	case 'K':
		shift = 10;
		break;
	case 'm':
	case 'M':
		shift = 20;
		break;
	case 'g':
	case 'G':
		shift = 30;
		break;
	case 't':
	case 'T':
		shift = 40;
		break;
	default:
		return -1;
	}
	if (shift) {
		end++;
		/* fio also takes "KiB"/"kb"-style tails; accept "iB" and "B" */
		if ((end[0] == 'i' || end[0] == 'I') && (end[1] == 'b' || end[1] == 'B'))
			end += 2;
		else if (end[0] == 'b' || end[0] == 'B')
			end++;
	}
	if (*end != '\0')
		return -1;
	if (shift && v > (UINT64_MAX >> shift))
		return -1;
	*out = (uint64_t)v << shift;
	return 0;
}

void bu_fmt_size(char *out, size_t len, uint64_t bytes)
{
	static const char suffix[] = "KMGT";
	int i = -1;
	uint64_t v = bytes;
	while (v >= 1024 && v % 1024 == 0 && i < 3) {
		v /= 1024;
		i++;
	}
	if (i < 0)
		snprintf(out, len, "%llu", (unsigned long long)v);
	else
		snprintf(out, len, "%llu%c", (unsigned long long)v, suffix[i]);
}

static const char *type_metavar(enum bu_opt_type t)
{
	switch (t) {
	case BU_UINT:
		return "=N";
	case BU_SIZE:
		return "=SIZE";
	case BU_UINT_LIST:
		return "=N[,N...]";
	case BU_SIZE_LIST:
		return "=SIZE[,SIZE...]";
	case BU_STR:
		return "=STR";
	case BU_FLAG:
		return "";
	}
	return "";
}

static void usage(const struct bu_prog *prog, const struct bu_opt *opts, size_t nopts)
{
	printf("Usage: %s [options]\n\n%s\n\nOptions (sizes take k/m/g suffixes, powers of 1024):\n",
	       prog->name, prog->summary);
	for (size_t i = 0; i < nopts; i++) {
		const struct bu_opt *o = &opts[i];
		char lhs[64];
		snprintf(lhs, sizeof(lhs), "--%s%s", o->name, type_metavar(o->type));
		printf(" %-24s %s", lhs, o->help);
		if (o->def)
			printf(", default %s", o->def[0] ? o->def : "\"\"");
		printf("\n");
	}
	printf(" %-24s %s\n", "--help, -h", "print this help and exit");
	if (prog->output)
		printf("\nOutput:\n%s\n", prog->output);
}

static int parse_number(const struct bu_opt *o, enum bu_opt_type t, const char *s,
                        uint64_t *out)
{
	int ret = t == BU_SIZE ? bu_parse_size(s, out) : parse_uint(s, out);
	if (ret < 0)
		return -1;
	if (*out < o->min || (o->max && *out > o->max))
		return -1;
	return 0;
}

static int set_value(const struct bu_opt *o, const char *s)
{
	switch (o->type) {
	case BU_UINT:
	case BU_SIZE:
		return parse_number(o, o->type, s, o->ptr);
	case BU_UINT_LIST:
	case BU_SIZE_LIST: {
		struct bu_list *l = o->ptr;
		enum bu_opt_type et = o->type == BU_SIZE_LIST ? BU_SIZE : BU_UINT;
		char tmp[256];
		if (strlen(s) >= sizeof(tmp))
			return -1;
		memcpy(tmp, s, strlen(s) + 1);
		l->n = 0;
		char *save = NULL;
		for (char *tok = strtok_r(tmp, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
			if (l->n == BU_LIST_MAX)
				return -1;
			if (parse_number(o, et, tok, &l->v[l->n]) < 0)
				return -1;
			l->n++;
		}
		return l->n ? 0 : -1;
	}
	case BU_STR:
		*(const char **)o->ptr = s;
		return 0;
	case BU_FLAG:
		*(bool *)o->ptr = true;
		return 0;
	}
	return -1;
}

static void bad_value(const char *prog, const struct bu_opt *o, const char *v)
{
	fprintf(stderr, "%s: bad value '%s' for --%s: expected %s", prog, v, o->name,
	        type_metavar(o->type) + 1);
	if (o->type != BU_STR && o->type != BU_FLAG) {
		fprintf(stderr, " with each value >= %llu", (unsigned long long)o->min);
		if (o->max)
			fprintf(stderr, " and <= %llu", (unsigned long long)o->max);
	}
	fprintf(stderr, " (try --help)\n");
}

void bu_parse_args(const struct bu_prog *prog, const struct bu_opt *opts, size_t nopts,
                   int argc, char **argv)
{
	for (size_t i = 0; i < nopts; i++) {
		if (opts[i].def && set_value(&opts[i], opts[i].def) < 0) {
			fprintf(stderr, "%s: internal error: bad default for --%s\n", prog->name,
			        opts[i].name);
			exit(2);
		}
	}
	for (int i = 1; i < argc; i++) {
		const char *arg = argv[i];
		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
			usage(prog, opts, nopts);
			exit(0);
		}
		if (strncmp(arg, "--", 2) != 0) {
			fprintf(stderr, "%s: unexpected argument '%s' (try --help)\n", prog->name,
			        arg);
			exit(2);
		}
		const char *name = arg + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
		const struct bu_opt *o = NULL;
		for (size_t j = 0; j < nopts; j++) {
			if (strlen(opts[j].name) == nlen && strncmp(opts[j].name, name, nlen) == 0) {
				o = &opts[j];
				break;
			}
		}
		if (!o) {
			fprintf(stderr, "%s: unknown option '--%.*s' (try --help)\n", prog->name,
			        (int)nlen, name);
			exit(2);
		}
		const char *value;
		if (o->type == BU_FLAG) {
			if (eq) {
				fprintf(stderr, "%s: --%s takes no value\n", prog->name, o->name);
				exit(2);
			}
			value = "";
		} else if (eq) {
			value = eq + 1;
		} else if (i + 1 < argc) {
			value = argv[++i];
		} else {
			fprintf(stderr, "%s: --%s needs a value (try --help)\n", prog->name,
			        o->name);
			exit(2);
		}
		if (set_value(o, value) < 0) {
			bad_value(prog->name, o, value);
			exit(2);
		}
	}
}

/* ------------------------------------------------------------------------ */
/* Time and statistics */

uint64_t bu_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

static double *sorted_copy(const double *v, size_t n)
{
	double *s = malloc(n * sizeof(*s));
	if (!s) {
		fprintf(stderr, "out of memory\n");
		abort();
	}
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	return s;
}

void bu_summarize(const double *v, size_t n, struct bu_summary *out)
{
	memset(out, 0, sizeof(*out));
	if (n == 0)
		return;
	double *s = sorted_copy(v, n);
	double sum = 0;
	for (size_t i = 0; i < n; i++)
		sum += s[i];
	out->n = n;
	out->min = s[0];
	out->max = s[n - 1];
	out->mean = sum / (double)n;
	out->median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	free(s);
}

double bu_percentile(const double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	double *s = sorted_copy(v, n);
	double rank = p / 100.0 * (double)n;
	size_t r = rank <= 0 ? 0 : (size_t)rank;
	if ((double)r < rank)
		r++; /* ceil without libm */
	size_t i = r < 1 ? 0 : r - 1;
	if (i >= n)
		i = n - 1;
	double res = s[i];
	free(s);
	return res;
}

/* ------------------------------------------------------------------------ */
/* Output */

void bu_table_init(struct bu_table *t, unsigned ncols, const char *const *head)
{
	memset(t, 0, sizeof(*t));
	if (ncols > BU_TABLE_MAX_COLS)
		abort();
	t->ncols = ncols;
	for (unsigned i = 0; i < ncols; i++)
		t->head[i] = head[i];
}

void bu_table_cell(struct bu_table *t, const char *fmt, ...)
{
	if (t->ncells == t->cap) {
		size_t cap = t->cap ? 2 * t->cap : 64;
		void *p = realloc(t->cells, cap * sizeof(*t->cells));
		if (!p) {
			fprintf(stderr, "out of memory\n");
			abort();
		}
		t->cells = p;
		t->cap = cap;
	}
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(t->cells[t->ncells++], BU_CELL_LEN, fmt, ap);
	va_end(ap);
}

void bu_table_print(const struct bu_table *t, FILE *out)
{
	int w[BU_TABLE_MAX_COLS];
	for (unsigned c = 0; c < t->ncols; c++)
		w[c] = (int)strlen(t->head[c]);
	for (size_t i = 0; i < t->ncells; i++) {
		int len = (int)strlen(t->cells[i]);
		unsigned c = (unsigned)(i % t->ncols);
		if (len > w[c])
			w[c] = len;
	}
	for (unsigned c = 0; c < t->ncols; c++)
		fprintf(out, c == 0 ? "%-*s" : "  %*s", w[c], t->head[c]);
	fputc('\n', out);
	for (size_t i = 0; i < t->ncells; i++) {
		unsigned c = (unsigned)(i % t->ncols);
		fprintf(out, c == 0 ? "%-*s" : "  %*s", w[c], t->cells[i]);
		if (c == t->ncols - 1 || i == t->ncells - 1)
			fputc('\n', out);
	}
	fflush(out);
}

void bu_table_free(struct bu_table *t)
{
	free(t->cells);
	memset(t, 0, sizeof(*t));
}

json_t *bu_json_summary(const struct bu_summary *s)
{
	return json_pack("{s:f, s:f, s:f, s:f, s:I}", "median", s->median, "min", s->min, "max",
	                 s->max, "mean", s->mean, "n", (json_int_t)s->n);
}

int bu_json_emit(json_t *root, const char *path)
{
	size_t flags = JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6);
	if (strcmp(path, "-") == 0) {
		printf("--- json ---\n");
		if (json_dumpf(root, stdout, flags) < 0)
			return -1;
		printf("\n");
		fflush(stdout);
		return 0;
	}
	if (json_dump_file(root, path, flags) < 0) {
		fprintf(stderr, "cannot write JSON to %s\n", path);
		return -1;
	}
	printf("JSON written to %s\n", path);
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Processes and files */

int bu_run(char *const argv[], char **out)
{
	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
	posix_spawn_file_actions_adddup2(&fa, pfd[1], 1);
	pid_t pid;
	int ret = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(pfd[1]);
	if (ret != 0) {
		close(pfd[0]);
		return -ret;
	}
	char *buf = NULL;
	size_t len = 0, cap = 0;
	for (;;) {
		if (cap - len < 4096) {
			cap = cap ? 2 * cap : 16384;
			char *p = realloc(buf, cap);
			if (!p) {
				fprintf(stderr, "out of memory\n");
				abort();
			}
			buf = p;
		}
		ssize_t n = read(pfd[0], buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(pfd[0]);
	buf[len] = '\0';
	int status;
	while (waitpid(pid, &status, 0) < 0) {
		if (errno != EINTR) {
			free(buf);
			return -errno;
		}
	}
	if (out)
		*out = buf;
	else
		free(buf);
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	return 128 + WTERMSIG(status);
}

int bu_have_program(const char *prog)
{
	if (strchr(prog, '/'))
		return access(prog, X_OK) == 0;
	const char *path = getenv("PATH");
	if (!path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		char full[4096];
		int len = snprintf(full, sizeof(full), "%.*s/%s", (int)n, path, prog);
		if (len > 0 && (size_t)len < sizeof(full) && access(full, X_OK) == 0)
			return 1;
		path += n;
		if (*path == ':')
			path++;
	}
	return 0;
}

static int rm_err;

static int rm_one(const char *path, const struct stat *sb, int type, struct FTW *ftw)
{
	if (remove(path) < 0 && errno != ENOENT && rm_err == 0)
		rm_err = -errno;
	return 0;
}

int bu_rm_rf(const char *path)
{
	rm_err = 0;
	if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
		return -errno;
	return rm_err;
}

void bu_fill_random(void *buf, size_t len, uint64_t seed)
{
	uint64_t x = seed ? seed : 0x9e3779b97f4a7c15ull;
	uint8_t *p = buf;
	size_t i = 0;
	for (; i + 8 <= len; i += 8) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		uint64_t v = x * 0x2545f4914f6cdd1dull;
		memcpy(p + i, &v, 8);
	}
	for (; i < len; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		p[i] = (uint8_t)((x * 0x2545f4914f6cdd1dull) >> 56);
	}
}

const char *bu_fs_name(const char *path)
{
	struct statfs sf;
	if (statfs(path, &sf) < 0)
		return "unknown";
	switch ((unsigned long)sf.f_type) {
	case EXT4_SUPER_MAGIC:
		return "ext4";
	case XFS_SUPER_MAGIC:
		return "xfs";
	case BTRFS_SUPER_MAGIC:
		return "btrfs";
	case TMPFS_MAGIC:
		return "tmpfs";
	case RAMFS_MAGIC:
		return "ramfs";
	case OVERLAYFS_SUPER_MAGIC:
		return "overlay";
	case F2FS_SUPER_MAGIC:
		return "f2fs";
	case NFS_SUPER_MAGIC:
		return "nfs";
	default:
		return "unknown";
	}
}
