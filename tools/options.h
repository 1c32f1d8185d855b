/*
 * options.h - the one option table of sstfetch.
 *
 * Every option is one row of opt_table[] (options.c). That row is the single
 * source for:
 *   - the getopt_long() array and the command-line parser;
 *   - the job-file keys: a key is the option's name without the leading
 *     "--" (`bs=1m` in a job file is `--bs=1m` on the command line);
 *   - --help, which prints every row with its accepted form and default;
 *   - the value checks and their messages, which name the option and the
 *     accepted form;
 *   - the "job options" block of the JSON report.
 *
 * Job options (scope OPT_JOB) may appear on the command line, in a job
 * file's [global] section or in a job section. Command-line options (scope
 * OPT_CMDLINE: output-format, output, gen-dataset, ...) are refused in job
 * files, as fio refuses them.
 */
#ifndef SSTFETCH_TOOLS_OPTIONS_H
#define SSTFETCH_TOOLS_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define PROG "sstfetch"

/* The tool's exit status. */
enum {
	EXIT_OK = 0,
	EXIT_FAILED = 1, /* some file failed, or the run could not proceed or
	                    was interrupted */
	EXIT_USAGE = 2,  /* bad command line, job file or manifest: found
	                    before any job runs, nothing fetched */
};

enum output_format {
	FORMAT_NORMAL,
	FORMAT_JSON,
	FORMAT_TERSE,
};

enum eta_mode {
	ETA_AUTO,   /* live status when stderr is a terminal */
	ETA_ALWAYS, /* live status even when it is not */
	ETA_NEVER,
};

struct sstf_s3_config;

/*
 * One job's settings. Strings point into argv or into a job set's string
 * store (jobfile.h) and are never freed through this struct.
 */
struct job_opts {
	const char *name;
	const char *manifest;
	const char *source;
	const char *dest;
	const char *pegasus;    /* URL of a Pegasus bulk-load app (pegasus.h),
	                           instead of manifest and source */
	const char *partitions; /* its partitions to fetch; NULL: all */
	uint64_t parallel;  /* -> sstf_config.max_transfers */
	uint64_t threads;   /* -> threads */
	uint64_t iodepth;   /* -> ring_depth */
	uint64_t bs;        /* -> buf_size */
	uint64_t mem;       /* -> mem_limit; 0: the engine's default */
	int direct;         /* enum sstf_switch */
	int fsync;          /* enum sstf_switch */
	int verify;         /* enum manifest_verify */
	uint64_t retries;   /* 0: none (max_retries -1) */
	uint64_t loops;
	uint64_t cancel_at; /* percent; 0: off */
	uint64_t stall_rate; /* -> low_speed_bytes */
	uint64_t stall_time; /* seconds -> low_speed_time_s */
	const char *protocols; /* -> sstf_batch.protocols; NULL: the source's */
	/* S3 (aws.h says where each comes from when unset). Not read unless
	 * some URL of the job is s3://. */
	int list;                /* the manifest is the listing of source */
	uint64_t manifest_max;   /* largest manifest fetched from a URL */
	const char *s3_endpoint; /* NULL: the environment, the profile, AWS */
	const char *region;
	int s3_addressing;       /* enum s3_addressing_opt */
	const char *profile;     /* NULL: AWS_PROFILE, else "default" */
	const char *access_key_id;
	const char *secret_access_key; /* OPT_SECRET: never printed */
	const char *session_token;     /* OPT_SECRET */
	/* Not an option: aws_resolve()'s settings, which job_engine_config()
	 * hands the engine; NULL when no URL of the job is s3://. */
	const struct sstf_s3_config *s3;
	int existing;       /* enum sstf_existing */
	int resume;         /* enum sstf_switch */
	uint64_t checkpoint; /* -> checkpoint_bytes */
	uint64_t reserve;   /* -> disk_reserve; 0 keeps no reserve */
	uint64_t mem_max;   /* largest buffer pool a job may ask for; 0: half
	                       of physical memory */
	uint64_t split;     /* -> sstf_config.split */
	uint64_t split_min; /* -> split_min */
	uint64_t rate;      /* bytes/s -> rate; 0: none */
	const char *cacert; /* -> sstf_config.ca_file; NULL: the system store */
	const char *capath; /* -> ca_path; NULL: none */
};

/* --s3_addressing; UNSET: the profile's addressing_style, else auto. */
enum s3_addressing_opt {
	S3_ADDRESSING_UNSET,
	S3_ADDRESSING_AUTO,
	S3_ADDRESSING_PATH,
	S3_ADDRESSING_VIRTUAL,
};

/* A lower and upper bound, as --filesize=MIN:MAX gives them. */
struct size_range {
	uint64_t min, max;
};

/* Options that only the command line sets; they apply to the whole run. */
struct cli_opts {
	int format;          /* enum output_format */
	const char *output;  /* report file; NULL: stdout */
	int eta;             /* enum eta_mode */
	const char *gen_dataset;
	uint64_t nrfiles;
	struct size_range filesize;
	uint64_t seed;
	int layout;          /* enum dataset_layout */
	uint64_t partition_count; /* partitions of --layout=pegasus */
	int help;
	int version;
};

enum opt_kind {
	OPT_NAME,        /* --name: starts a job */
	OPT_STR,         /* a non-empty string */
	OPT_URL,         /* http://, https://, file:// or s3:// */
	OPT_SECRET,      /* OPT_STR never printed back: opt_format() gives
	                    "(set)", messages never show it */
	OPT_UINT,        /* a decimal integer in [min, max] */
	OPT_SIZE,        /* an integer with an optional fio size suffix */
	OPT_SIZE_POW2,   /* OPT_SIZE that must be a power of two */
	OPT_SIZE_RANGE,  /* SIZE or MIN:MAX */
	OPT_PERCENT,     /* an integer in [min, max], with an optional '%' */
	OPT_TIME,        /* seconds in [min, max], with an optional s, m or h */
	OPT_CHOICE,      /* one of `choices` */
	OPT_FLAG,        /* no value: sets an int to 1; in a job file
	                    key=1 or key=0 */
	OPT_FILE,        /* OPT_STR naming a readable file that is not a
	                    directory, checked when parsed */
	OPT_DIR,         /* OPT_STR naming a readable directory, checked
	                    when parsed */
	OPT_UNSUPPORTED, /* refused with "not supported yet" */
};

enum opt_scope {
	OPT_JOB,     /* field of struct job_opts; allowed in job files */
	OPT_CMDLINE, /* field of struct cli_opts; command line only */
};

struct opt_choice {
	const char *text;
	int value;
};

struct opt_def {
	const char *name;
	int short_name;      /* 0: long form only */
	const char *metavar; /* value placeholder in --help; NULL for flags */
	enum opt_kind kind;
	enum opt_scope scope;
	size_t offset;       /* of the field in job_opts or cli_opts */
	const char *def;     /* default, parsed like a value; NULL: none */
	const char *def_text; /* default as --help shows it when def is NULL
	                         or needs words; NULL: def */
	uint64_t min, max;   /* bounds of the numeric kinds */
	const struct opt_choice *choices; /* OPT_CHOICE; ends with text NULL */
	const char *help;
};

extern const struct opt_def opt_table[];
extern const size_t opt_count;

/* The row for `name` (exact match), or NULL. */
const struct opt_def *opt_find(const char *name);

/*
 * Parses `value` for option o and stores it in job (OPT_JOB) or cli
 * (OPT_CMDLINE); either may be NULL when o's scope does not use it, or to
 * check a value without storing it. `where` is how the user wrote the
 * option, for messages: "--bs" or "jobs.fio:7: bs". On a bad value it
 * prints "sstfetch: WHERE=VALUE: expected FORM" to stderr and returns -1;
 * else 0.
 */
int opt_set(const struct opt_def *o, const char *value, struct job_opts *job,
            struct cli_opts *cli, const char *where);

/* Fills job and cli (either may be NULL) with the table's defaults. */
void opt_defaults(struct job_opts *job, struct cli_opts *cli);

/*
 * Writes the value of job option o held in *job as text a job file would
 * accept ("1m" is written "1048576"; unset strings as ""). Returns the
 * snprintf-style length.
 */
int opt_format(const struct opt_def *o, const struct job_opts *job, char *buf,
               size_t len);

/* One option=value as the command line gave it, kept to be replayed. */
struct opt_assign {
	const struct opt_def *opt;
	const char *value; /* points into argv; NULL for flags */
};

/* The options after one --name=X. */
struct cli_job {
	const char *name;
	struct opt_assign *v;
	size_t n;
};

/*
 * The command line, split the way fio splits it: job options before the
 * first --name are global; each --name=X starts a job that owns the job
 * options after it; command-line options apply to the run wherever they
 * are; the remaining arguments are job files.
 */
struct cmdline {
	struct cli_opts cli;
	struct opt_assign *globals;
	size_t nglobals;
	struct cli_job *jobs;
	size_t njobs;
	char **jobfiles; /* point into argv */
	size_t njobfiles;
	unsigned char *seen; /* opt_count flags: given on the command line */
};

/*
 * Parses argv. Every value is checked here, so that a bad one is reported
 * before anything runs. Returns 0, or EXIT_USAGE after printing why to
 * stderr. Free with cmdline_free() either way.
 */
int opt_parse_argv(int argc, char **argv, struct cmdline *out);

void cmdline_free(struct cmdline *c);

/* Prints --help: every option with its accepted form and default. */
void opt_usage(FILE *out);

#endif
