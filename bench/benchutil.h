/*
 * benchutil.h - what the bench binaries share: one option table per binary
 * (parser and --help come from it), run statistics, an aligned text table,
 * JSON output through jansson, and a few process and file helpers.
 *
 * Everything here is for the bench binaries' main threads; none of it is
 * thread-safe and none of it is part of libsstfetch.
 */
#ifndef SSTF_BENCHUTIL_H
#define SSTF_BENCHUTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* Options */

#define BU_LIST_MAX 16

/* A comma-separated list of numbers, e.g. --bs=64K,1M,4M. */
struct bu_list {
	uint64_t v[BU_LIST_MAX];
	unsigned n;
};

enum bu_opt_type {
	BU_UINT,      /* uint64_t *: decimal integer */
	BU_SIZE,      /* uint64_t *: integer with k/m/g/t suffix, powers of 1024 */
	BU_UINT_LIST, /* struct bu_list * of BU_UINT */
	BU_SIZE_LIST, /* struct bu_list * of BU_SIZE */
	BU_STR,       /* const char **: any string (may be empty) */
	BU_FLAG,      /* bool *: no value, sets true */
};

/*
 * One row of a binary's option table. `def` is parsed like a command-line
 * value before argv is, so the default shown by --help is the one used.
 * min and max bound every number (each element of a list); max 0 means no
 * upper bound.
 */
struct bu_opt {
	const char *name;
	enum bu_opt_type type;
	void *ptr;
	const char *def; /* NULL: no default (flags, optional strings) */
	uint64_t min, max;
	const char *help;
};

/* What a binary says about itself in --help, besides its options. */
struct bu_prog {
	const char *name;
	const char *summary; /* one paragraph, printed after the usage line */
	const char *output;  /* what the table and the JSON hold */
};

/*
 * Applies the defaults, then parses argv: --name=value or --name value,
 * flags as --name. --help and -h print the usage to stdout and exit 0. An
 * unknown option or a bad value prints a message naming it to stderr and
 * exits 2. Positional arguments are refused.
 */
void bu_parse_args(const struct bu_prog *prog, const struct bu_opt *opts, size_t nopts,
                   int argc, char **argv);

/* Parses "64K", "1m", "4096". Returns 0, or -1 on a bad string or overflow. */
int bu_parse_size(const char *s, uint64_t *out);

/* Formats bytes the way the options take them: "64K", "1M", "1536K", "100". */
void bu_fmt_size(char *out, size_t len, uint64_t bytes);

/* ------------------------------------------------------------------------ */
/* Time and statistics */

uint64_t bu_now_ns(void); /* CLOCK_MONOTONIC */

struct bu_summary {
	double median, min, max, mean;
	size_t n;
};

/* Summarizes v[0..n) (left unchanged). n == 0 gives all zeros. */
void bu_summarize(const double *v, size_t n, struct bu_summary *out);

/*
 * The p-th percentile (0..100) of v[0..n) (left unchanged), nearest rank as
 * fio reports its clat percentiles: the smallest value with at least p% of
 * the samples at or below it. n == 0 gives 0.
 */
double bu_percentile(const double *v, size_t n, double p);

/* ------------------------------------------------------------------------ */
/* Output */

#define BU_TABLE_MAX_COLS 12
#define BU_CELL_LEN 40

/* Rows of text cells, printed with every column right-aligned to its
 * widest cell, except the first, which is left-aligned. */
struct bu_table {
	unsigned ncols;
	const char *head[BU_TABLE_MAX_COLS];
	char (*cells)[BU_CELL_LEN];
	size_t ncells, cap;
};

void bu_table_init(struct bu_table *t, unsigned ncols, const char *const *head);
/* Appends the next cell, row by row. Aborts when out of memory. */
void bu_table_cell(struct bu_table *t, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void bu_table_print(const struct bu_table *t, FILE *out);
void bu_table_free(struct bu_table *t);

/* {"median", "min", "max", "mean", "n"} */
json_t *bu_json_summary(const struct bu_summary *s);

/*
 * Writes `root` (not consumed) to `path`: "-" is stdout, where it follows a
 * line "--- json ---" so that a reader can split it from the table. Returns
 * 0, or -1 with a message on stderr.
 */
int bu_json_emit(json_t *root, const char *path);

/* ------------------------------------------------------------------------ */
/* Processes and files */

/*
 * Runs argv[0] (searched in PATH) with argv, stdin from /dev/null, stderr
 * inherited, and its stdout collected into *out (NUL-terminated, malloc'd,
 * the caller frees; may be NULL to discard). Returns the exit status
 * (0..255), 128+signal when killed, or -errno when it could not run.
 */
int bu_run(char *const argv[], char **out);

/* 1 when `prog` is an executable in PATH (or a path to one). */
int bu_have_program(const char *prog);

/* Removes path and everything below it. Returns 0 or -errno. */
int bu_rm_rf(const char *path);

/* Fills buf with pseudo-random bytes from seed (xorshift64*). */
void bu_fill_random(void *buf, size_t len, uint64_t seed);

/* The filesystem name of path's filesystem ("ext4", "tmpfs", ... or
 * "unknown"), for the report and the not-tmpfs check. */
const char *bu_fs_name(const char *path);

#endif
