/*
 * options.c - the option table, its value parsers, the command-line
 * parser and --help. See options.h for what the table drives.
 */
#include "options.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dataset.h"
#include "manifest.h"
#include "sstfetch.h"

#define KiB ((uint64_t)1 << 10)
#define MiB ((uint64_t)1 << 20)
#define GiB ((uint64_t)1 << 30)
#define TiB ((uint64_t)1 << 40)

/* The engine keeps at least two buffers per transfer and at most
 * SSTF_MAX_BUFFERS; 1024 transfers leave room for that at every bs. */
#define PARALLEL_MAX 1024

/* The table's defaults are the engine's: fail the build if they part. */
_Static_assert(SSTF_DEFAULT_MAX_TRANSFERS == 16, "--parallel's default in opts[]");
_Static_assert(SSTF_DEFAULT_RING_DEPTH == 256, "--iodepth's default in opts[]");
_Static_assert(SSTF_DEFAULT_BUF_SIZE == 1 * MiB, "--bs's default in opts[]");
_Static_assert(SSTF_DEFAULT_MEM_LIMIT == 64 * MiB, "--mem's default in opts[]");
_Static_assert(SSTF_DEFAULT_MAX_RETRIES == 3, "--retries's default in opts[]");
_Static_assert(SSTF_DEFAULT_SPLIT == 16, "--split's default in opts[]");
_Static_assert(SSTF_DEFAULT_SPLIT_MIN == 64 * MiB, "--split_min's default in opts[]");

static const struct opt_choice verify_choices[] = {
	{"auto", MANIFEST_VERIFY_AUTO},
	{"xxh3", MANIFEST_VERIFY_XXH3},
	{"xxh128", MANIFEST_VERIFY_XXH128},
	{"md5", MANIFEST_VERIFY_MD5},
	{"none", MANIFEST_VERIFY_NONE},
	{NULL, 0},
};

/* "auto" is the engine's SSTF_DEFAULT: O_DIRECT where the filesystem
 * takes it. 1 makes files fail where it does not. */
static const struct opt_choice direct_choices[] = {
	{"auto", SSTF_DEFAULT},
	{"1", SSTF_ON},
	{"0", SSTF_OFF},
	{NULL, 0},
};

static const struct opt_choice bool_switch_choices[] = {
	{"1", SSTF_ON},
	{"0", SSTF_OFF},
	{NULL, 0},
};

static const struct opt_choice fsync_choices[] = {
	{"1", SSTF_ON},
	{"batch", SSTF_FSYNC_BATCH},
	{"0", SSTF_OFF},
	{NULL, 0},
};

static const struct opt_choice existing_choices[] = {
	{"trust", SSTF_EXISTING_TRUST},
	{"rehash", SSTF_EXISTING_REHASH},
	{"refetch", SSTF_EXISTING_REFETCH},
	{NULL, 0},
};

static const struct opt_choice s3_addressing_choices[] = {
	{"auto", S3_ADDRESSING_AUTO},
	{"path", S3_ADDRESSING_PATH},
	{"virtual", S3_ADDRESSING_VIRTUAL},
	{NULL, 0},
};

static const struct opt_choice layout_choices[] = {
	{"flat", DATASET_FLAT},
	{"pegasus", DATASET_PEGASUS},
	{NULL, 0},
};

static const struct opt_choice format_choices[] = {
	{"normal", FORMAT_NORMAL},
	{"json", FORMAT_JSON},
	{"terse", FORMAT_TERSE},
	{NULL, 0},
};

static const struct opt_choice eta_choices[] = {
	{"auto", ETA_AUTO},
	{"always", ETA_ALWAYS},
	{"never", ETA_NEVER},
	{NULL, 0},
};

#define J(field) OPT_JOB, offsetof(struct job_opts, field)
#define C(field) OPT_CMDLINE, offsetof(struct cli_opts, field)
/* Refused options store nothing. */
#define NOFIELD OPT_JOB, 0

/* Rows in the order --help prints them. */
const struct opt_def opt_table[] = {
	{"name", 0, "NAME", OPT_NAME, J(name), NULL,
	 "a job file's section name; \"" PROG "\" for the one job of a command "
	 "line without --name",
	 0, 0, NULL,
	 "start a job; the job options after it belong to it, those before the "
	 "first --name are global. A name that a job file also has changes "
	 "that job instead"},
	{"manifest", 0, "FILE|URL", OPT_STR, J(manifest), NULL,
	 "none, required unless --list or --pegasus",
	 0, 0, NULL,
	 "JSON manifest listing the files to fetch: a path, or an http://, "
	 "https://, file:// or s3:// URL fetched first (with the job's TLS and "
	 "S3 settings, at most manifest_max bytes)"},
	{"manifest_max", 0, "SIZE", OPT_SIZE, J(manifest_max), "256m", NULL,
	 1 * KiB, 16 * GiB, NULL,
	 "largest manifest fetched from a URL; a longer one stops the run "
	 "with exit 2"},
	{"list", 0, NULL, OPT_FLAG, J(list), NULL, "off", 0, 0, NULL,
	 "no manifest: fetch every object under --source=s3://BUCKET/PREFIX/, "
	 "named by its key after PREFIX/ (keys ending in '/', folder markers, "
	 "are skipped; a key that is no valid file name stops the run with "
	 "exit 2). A listing has sizes only: files are length-checked, not "
	 "digest-checked, and the report says so. In a job file list=1"},
	{"source", 0, "BASEURL", OPT_URL, J(source), NULL,
	 "none, required unless --pegasus", 0,
	 0, NULL,
	 "base URL; each file is fetched from BASEURL/NAME unless its entry has "
	 "a \"url\" or \"urls\". s3://BUCKET/PREFIX names objects PREFIX/NAME "
	 "(see the S3 options)"},
	{"dest", 0, "DIR", OPT_STR, J(dest), NULL, "none, required", 0, 0, NULL,
	 "destination directory, created if missing"},
	{"pegasus", 0, "URL", OPT_URL, J(pegasus), NULL, "none", 0, 0, NULL,
	 "instead of manifest and source: an Apache Pegasus bulk-load app at "
	 "URL (ROOT/CLUSTER/APP). Reads URL/bulk_load_info and each "
	 "partition's URL/PIDX/bulk_load_metadata (at most manifest_max bytes; "
	 "its md5 digests are what verify=auto checks), then fetches each "
	 "partition into DEST/PIDX as a generation of its own, all of them at "
	 "once on the job's engine"},
	{"partitions", 0, "LIST", OPT_STR, J(partitions), NULL, "all", 0, 0,
	 NULL,
	 "with --pegasus: the partitions to fetch, as 0-7 or 0,2,5-6; one "
	 "past bulk_load_info's partition_count stops the run with exit 2"},
	{"parallel", 0, "N", OPT_UINT, J(parallel), "16", NULL, 1, PARALLEL_MAX,
	 NULL, "transfers at once: files, and the streams of split files"},
	/* Not fio's `thread` (threads instead of processes): loops= keeps
	 * fio's meaning, and this is the engine's sstf_config.threads. */
	{"threads", 0, "N", OPT_UINT, J(threads), "1", NULL, 1, SSTF_MAX_THREADS,
	 NULL,
	 "engine loop threads, each with its own io_uring, curl multi and "
	 "share of parallel, mem and rate (which stay the job's totals); a "
	 "file runs on one of them; at most parallel"},
	{"iodepth", 0, "N", OPT_UINT, J(iodepth), "256", NULL, 8, 32768, NULL,
	 "io_uring submission queue entries, per loop thread"},
	{"bs", 0, "SIZE", OPT_SIZE_POW2, J(bs), "1m", NULL, 64 * KiB, 64 * MiB,
	 NULL, "bytes per I/O buffer: the unit of writes and hashing"},
	{"mem", 0, "SIZE", OPT_SIZE, J(mem), NULL,
	 "64m, or 2 x parallel x bs when that is more", 128 * KiB, 256 * GiB,
	 NULL,
	 "buffer memory cap; must hold 2 buffers per transfer and at most "
	 "4095 buffers"},
	{"direct", 0, "0|1|auto", OPT_CHOICE, J(direct), "auto", NULL, 0, 0,
	 direct_choices,
	 "O_DIRECT writes; auto uses them where the filesystem accepts them, 1 "
	 "fails files where it does not"},
	{"fsync", 0, "1|batch|0", OPT_CHOICE, J(fsync), "1", NULL, 0, 0,
	 fsync_choices,
	 "what is durable when a file is reported done. 1: the file is "
	 "fdatasynced, renamed, and reported once its directory was fsynced "
	 "(one directory fsync covers every file renamed before it); a crash "
	 "loses no file reported done. batch: files are fdatasynced and "
	 "renamed, each directory is fsynced once at the end of the job, and "
	 "the files are reported after it; a crash before then can lose "
	 "renames, never bytes, and nothing reported done. 0: no syncs; a "
	 "crash can lose or corrupt files reported done (check them again "
	 "with --existing=rehash)"},
	{"verify", 0, "KIND", OPT_CHOICE, J(verify), "auto", NULL, 0, 0,
	 verify_choices,
	 "digest to check: auto takes each entry's xxh3, else its xxh128, "
	 "else its md5 (so a Pegasus bulk_load_metadata verifies by MD5); "
	 "xxh3, xxh128 or md5 require that digest in every entry; none checks "
	 "lengths only"},
	{"retries", 0, "N", OPT_UINT, J(retries), "3", NULL, 0, 1000, NULL,
	 "retries per file after a transient failure (connection, timeout, "
	 "HTTP 408/429/5xx), resuming where the transfer stopped; 0: none"},
	{"stall_rate", 0, "SIZE", OPT_SIZE, J(stall_rate), "1k", NULL, 1, 16 * GiB, NULL,
	 "a transfer slower than SIZE bytes/s for stall_time is stalled: it "
	 "fails and, as a transient failure, is retried"},
	{"stall_time", 0, "TIME", OPT_TIME, J(stall_time), "30s", NULL, 1, 86400, NULL,
	 "how long a transfer may stay below stall_rate"},
	{"protocols", 0, "LIST", OPT_STR, J(protocols), NULL,
	 "the source's own scheme", 0, 0, NULL,
	 "URL schemes an entry's own \"url\" or \"urls\" may use, "
	 "comma-separated from http, https, file, s3, or all (as curl's --proto); "
	 "an entry naming another is refused with exit 2"},
	/* As curl's --cacert and --capath; libcurl does not read
	 * CURL_CA_BUNDLE, so only these reach a private CA. */
	{"cacert", 0, "FILE", OPT_FILE, J(cacert), NULL, "system CA store", 0, 0,
	 NULL,
	 "PEM file of the CAs an https origin's certificate may chain to, as "
	 "curl's --cacert: for a store with a private CA (CURL_CA_BUNDLE is "
	 "not read)"},
	{"capath", 0, "DIR", OPT_DIR, J(capath), NULL, "system CA store", 0, 0,
	 NULL,
	 "directory of CA certificates named by their subject hash (openssl "
	 "rehash, c_rehash), as curl's --capath"},
	{"existing", 0, "MODE", OPT_CHOICE, J(existing), "trust", NULL, 0, 0,
	 existing_choices,
	 "a file already in dest: trust skips it when the record sstfetch "
	 "wrote at publish (xattr user.sstfetch.v1) matches its digest, size "
	 "and mtime, and re-hashes one of the right size without it; rehash "
	 "always re-hashes (strict, also a resumed partial's prefix); refetch "
	 "never skips"},
	{"resume", 0, "0|1", OPT_CHOICE, J(resume), "1", NULL, 0, 0,
	 bool_switch_choices,
	 "checkpoint files of at least twice checkpoint bytes, so that a run "
	 "killed mid-file continues there when run again"},
	{"checkpoint", 0, "SIZE", OPT_SIZE, J(checkpoint), "8m", NULL, 64 * KiB, TiB, NULL,
	 "bytes between two checkpoints of a file (each one is an fsync)"},
	{"reserve", 0, "SIZE", OPT_SIZE, J(reserve), "64m", NULL, 0, 16 * TiB, NULL,
	 "free space dest's filesystem must keep beyond what a job needs; a "
	 "job that does not fit fails before it writes a byte"},
	{"mem_max", 0, "SIZE", OPT_SIZE, J(mem_max), NULL,
	 "half of physical memory", 128 * KiB, 16 * TiB, NULL,
	 "largest buffer memory (mem, or 2 x parallel x bs) a job may ask "
	 "for; raise it to allow more"},
	/* As fio's rate=: bytes per second, with the size suffixes (1m is
	 * 1 MiB/s). 0 is accepted as fio takes it: no cap. */
	{"rate", 0, "BYTES", OPT_SIZE, J(rate), NULL, "none", 0, TiB, NULL,
	 "cap on the bytes per second the job receives, all its transfers "
	 "together; 0: none"},
	{"split", 0, "N", OPT_UINT, J(split), "16", NULL, 1, SSTF_MAX_SPLIT, NULL,
	 "most ranged streams one file of at least split_min bytes is fetched "
	 "over at once, each counted against parallel; 1: one stream per file"},
	/* No lower bound of our own beyond 1 (0 would be the engine's
	 * default, silently): sstf_config_check() refuses what the engine
	 * cannot take, naming the field. */
	{"split_min", 0, "SIZE", OPT_SIZE, J(split_min), "64m", NULL, 1,
	 16 * TiB, NULL, "files shorter than this are fetched over one stream"},
	/* S3: the AWS CLI's order, option > environment > profile (aws.h). */
	{"s3_endpoint", 0, "URL", OPT_STR, J(s3_endpoint), NULL,
	 "AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL, else the profile's "
	 "endpoint_url, else AWS (https://s3.REGION.amazonaws.com)", 0, 0, NULL,
	 "base URL of an S3-compatible store (MinIO, Ceph RGW, ...): "
	 "http://HOST[:PORT] or https://HOST[:PORT], no path (with --cacert "
	 "for a private CA)"},
	{"region", 0, "REGION", OPT_STR, J(region), NULL,
	 "AWS_REGION, else AWS_DEFAULT_REGION, else the profile's region, "
	 "else us-east-1", 0, 0, NULL, "region requests are signed for"},
	{"s3_addressing", 0, "STYLE", OPT_CHOICE, J(s3_addressing),
	 NULL, "the profile's s3 addressing_style, else auto", 0, 0,
	 s3_addressing_choices,
	 "path: ENDPOINT/BUCKET/KEY; virtual: BUCKET.HOST/KEY; auto: path with "
	 "an endpoint, virtual on AWS"},
	{"profile", 0, "NAME", OPT_STR, J(profile), NULL,
	 "AWS_PROFILE, else default", 0, 0, NULL,
	 "AWS profile of ~/.aws/credentials ([NAME]) and ~/.aws/config "
	 "([profile NAME]), or of AWS_SHARED_CREDENTIALS_FILE and "
	 "AWS_CONFIG_FILE; named here, its credentials win over the "
	 "environment's, as in the AWS CLI"},
	{"access_key_id", 0, "ID", OPT_STR, J(access_key_id), NULL,
	 "AWS_ACCESS_KEY_ID, else the profile's; none at all: anonymous "
	 "(unsigned) requests, which public buckets answer", 0, 0, NULL,
	 "access key id requests are signed with; needs secret_access_key"},
	{"secret_access_key", 0, "KEY", OPT_SECRET, J(secret_access_key), NULL,
	 "AWS_SECRET_ACCESS_KEY, else the profile's", 0, 0, NULL,
	 "secret key of access_key_id. Visible to every user in ps on the "
	 "command line: prefer AWS_SECRET_ACCESS_KEY, a profile, or a job "
	 "file only you can read. Never printed"},
	{"session_token", 0, "TOKEN", OPT_SECRET, J(session_token), NULL,
	 "AWS_SESSION_TOKEN, else the profile's; none", 0, 0, NULL,
	 "session token of temporary credentials; never printed"},
	{"loops", 0, "N", OPT_UINT, J(loops), "1", NULL, 1, 1000000, NULL,
	 "run the job N times; before each run after the first, the files the "
	 "manifest names are removed from the destination"},
	{"cancel_at", 0, "PCT", OPT_PERCENT, J(cancel_at), "0", NULL, 0, 99,
	 NULL,
	 "when PCT% of a run's bytes are written, cancel its generation and "
	 "submit the whole set again as a new one, as a replica restart does; "
	 "0: off"},
	{"output-format", 0, "FORMAT", OPT_CHOICE, C(format), "normal", NULL, 0,
	 0, format_choices, "report format"},
	{"output", 0, "FILE", OPT_STR, C(output), NULL, "stdout", 0, 0, NULL,
	 "write the report to FILE"},
	{"eta", 0, "WHEN", OPT_CHOICE, C(eta), "auto", NULL, 0, 0, eta_choices,
	 "live status line on stderr; auto: when stderr is a terminal"},
	{"gen-dataset", 0, "DIR", OPT_STR, C(gen_dataset), NULL, "none", 0, 0,
	 NULL,
	 "write --nrfiles files of pseudo-random bytes, named 000001.sst on, and "
	 "DIR/manifest.json with both digests, then exit; runs no job"},
	{"nrfiles", 0, "N", OPT_UINT, C(nrfiles), NULL, "none", 1, 10000000,
	 NULL, "with --gen-dataset: number of files"},
	{"filesize", 0, "SIZE|MIN:MAX", OPT_SIZE_RANGE, C(filesize), NULL,
	 "none", 0, 16 * TiB, NULL,
	 "with --gen-dataset: size of each file, or a range each size is drawn "
	 "from"},
	{"seed", 0, "S", OPT_UINT, C(seed), "0", NULL, 0, UINT64_MAX, NULL,
	 "with --gen-dataset: the same seed gives the same sizes and bytes"},
	{"layout", 0, "LAYOUT", OPT_CHOICE, C(layout), "flat", NULL, 0, 0,
	 layout_choices,
	 "with --gen-dataset: flat writes the files and DIR/manifest.json; "
	 "pegasus writes an Apache Pegasus bulk-load app instead: "
	 "partition_count directories DIR/PIDX of nrfiles files each, named "
	 "1.sst on, each with its bulk_load_metadata (md5 digests), and "
	 "DIR/bulk_load_info (app_id 1, app_name DIR's last component)"},
	{"partition_count", 0, "N", OPT_UINT, C(partition_count), "4", NULL, 1,
	 65536, NULL, "with --layout=pegasus: number of partitions"},
	{"help", 'h', NULL, OPT_FLAG, C(help), NULL, NULL, 0, 0, NULL,
	 "print this help and exit"},
	{"version", 'V', NULL, OPT_FLAG, C(version), NULL, NULL, 0, 0, NULL,
	 "print the version and exit"},
};

const size_t opt_count = sizeof(opt_table) / sizeof(opt_table[0]);

#undef J
#undef C
#undef NOFIELD

const struct opt_def *opt_find(const char *name)
{
	for (size_t i = 0; i < opt_count; i++) {
		if (strcmp(opt_table[i].name, name) == 0)
			return &opt_table[i];
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */

/* Parses all-digit decimal (strtoull alone would take " 1", "+1", "-1").
 * Returns the end of the digits, or NULL on no digits or overflow. */
static const char *parse_digits(const char *s, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return NULL;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno)
		return NULL;
	*out = v;
	return end;
}

/*
 * fio's sizes: digits, then optionally k, m, g or t (either case), which
 * may be followed by "b" or "ib" ("1m", "1M", "1MiB", "1mb" are all 2^20:
 * powers of 1024 as fio counts by default). Parses the whole of s;
 * returns 0 or -1.
 */
static int parse_size(const char *s, uint64_t *out)
{
	uint64_t v;
	const char *p = parse_digits(s, &v);
	if (!p)
		return -1;
	unsigned shift = 0;
	switch (*p) {
	case 'k': case 'K': shift = 10; break;
	case 'm': case 'M': shift = 20; break;
	case 'g': case 'G': shift = 30; break;
	case 't': case 'T': shift = 40; break;
	case '\0': break;
	default: return -1;
	}
	if (shift) {
		p++;
		if (*p == 'i' || *p == 'I')
			p++;
		if (*p == 'b' || *p == 'B')
			p++;
		else if (p[-1] == 'i' || p[-1] == 'I')
			return -1; /* "1Ki" */
	}
	if (*p != '\0' || (shift && v > (UINT64_MAX >> shift)))
		return -1;
	*out = v << shift;
	return 0;
}

/* Writes a size the shortest exact way: 65536 -> "64k". */
static void format_size(uint64_t v, char *buf, size_t len)
{
	static const char suffix[] = "kmgt";
	int i = -1;
	while (i < 3 && v && (v & 1023) == 0) {
		v >>= 10;
		i++;
	}
	if (i < 0)
		snprintf(buf, len, "%" PRIu64, v);
	else
		snprintf(buf, len, "%" PRIu64 "%c", v, suffix[i]);
}

/* The accepted form of o's value, as messages and --help state it. */
static void describe(const struct opt_def *o, char *buf, size_t len)
{
	char lo[32], hi[32];
	int n;

	switch (o->kind) {
	case OPT_NAME:
	case OPT_STR:
		snprintf(buf, len, "a non-empty %s", o->metavar);
		return;
	case OPT_URL:
		snprintf(buf, len,
		         "a URL starting with http://, https://, file:// or s3://");
		return;
	case OPT_SECRET:
		snprintf(buf, len, "a non-empty %s", o->metavar);
		return;
	case OPT_UINT:
		snprintf(buf, len, "a decimal integer from %" PRIu64 " to %" PRIu64,
		         o->min, o->max);
		return;
	case OPT_PERCENT:
		snprintf(buf, len, "a whole percentage from %" PRIu64 " to %" PRIu64,
		         o->min, o->max);
		return;
	case OPT_TIME:
		snprintf(buf, len,
		         "a number of seconds from %" PRIu64 " to %" PRIu64 ", with an optional s, m "
		         "or h suffix",
		         o->min, o->max);
		return;
	case OPT_SIZE:
	case OPT_SIZE_POW2:
	case OPT_SIZE_RANGE:
		format_size(o->min, lo, sizeof(lo));
		format_size(o->max, hi, sizeof(hi));
		snprintf(buf, len, "%s from %s to %s, with an optional k/m/g/t suffix "
		                   "(powers of 1024)",
		         o->kind == OPT_SIZE_RANGE ? "SIZE or MIN:MAX, sizes"
		         : o->kind == OPT_SIZE_POW2 ? "a power of two"
		                                    : "a size",
		         lo, hi);
		return;
	case OPT_CHOICE:
		n = snprintf(buf, len, "one of");
		for (const struct opt_choice *c = o->choices; c->text && n >= 0 &&
		     (size_t)n < len; c++)
			n += snprintf(buf + n, len - (size_t)n, "%s %s",
			              c == o->choices ? "" : ",", c->text);
		return;
	case OPT_FLAG:
		snprintf(buf, len, "no value (1 or 0 in a job file)");
		return;
	case OPT_FILE:
		snprintf(buf, len, "an existing, readable file");
		return;
	case OPT_DIR:
		snprintf(buf, len, "an existing, readable directory");
		return;
	case OPT_UNSUPPORTED:
		snprintf(buf, len, "nothing: not supported yet");
		return;
	}
	snprintf(buf, len, "?");
}

static int bad_value(const struct opt_def *o, const char *value,
                     const char *where)
{
	char form[256];
	describe(o, form, sizeof(form));
	/* A secret is never printed, not even a wrong one. */
	fprintf(stderr, PROG ": %s=%s: expected %s\n", where,
	        o->kind == OPT_SECRET && *value ? "(hidden)" : value, form);
	return -1;
}

int opt_set(const struct opt_def *o, const char *value, struct job_opts *job,
            struct cli_opts *cli, const char *where)
{
	char *base = o->scope == OPT_JOB ? (char *)job : (char *)cli;
	void *field = base ? base + o->offset : NULL;
	uint64_t v, v2;

	if (o->kind == OPT_UNSUPPORTED) {
		/* Never ignored silently: a run without the cap it asked for
		 * would measure something else than the user meant. */
		fprintf(stderr, PROG ": %s: not supported yet; remove it\n", where);
		return -1;
	}
	if (o->kind == OPT_FLAG) {
		/* The command line gives no value; a job file key=1 or key=0. */
		int on = 1;
		if (value && strcmp(value, "0") == 0)
			on = 0;
		else if (value && strcmp(value, "1") != 0)
			return bad_value(o, value, where);
		if (field)
			*(int *)field = on;
		return 0;
	}
	if (!value) {
		char form[256];
		describe(o, form, sizeof(form));
		fprintf(stderr, PROG ": %s: missing value; expected %s\n", where, form);
		return -1;
	}

	switch (o->kind) {
	case OPT_FILE:
	case OPT_DIR: {
		/* Checked here, so that a mistyped path stops the run with
		 * exit 2 naming the option, before any job starts. */
		struct stat st;
		const char *why = NULL;
		if (!*value)
			return bad_value(o, value, where);
		if (stat(value, &st) != 0)
			why = strerror(errno);
		else if (o->kind == OPT_FILE && S_ISDIR(st.st_mode))
			why = "is a directory";
		else if (o->kind == OPT_DIR && !S_ISDIR(st.st_mode))
			why = "not a directory";
		else if (access(value, o->kind == OPT_DIR ? R_OK | X_OK : R_OK) != 0)
			why = strerror(errno);
		if (why) {
			char form[256];
			describe(o, form, sizeof(form));
			fprintf(stderr, PROG ": %s=%s: %s; expected %s\n", where, value,
			        why, form);
			return -1;
		}
		if (field)
			*(const char **)field = value;
		return 0;
	}
	case OPT_NAME:
	case OPT_STR:
	case OPT_URL:
	case OPT_SECRET:
		if (!*value)
			return bad_value(o, value, where);
		if (o->kind == OPT_URL && strncasecmp(value, "http://", 7) != 0 &&
		    strncasecmp(value, "https://", 8) != 0 &&
		    strncasecmp(value, "file://", 7) != 0 &&
		    strncasecmp(value, "s3://", 5) != 0)
			return bad_value(o, value, where);
		if (field)
			*(const char **)field = value;
		return 0;
	case OPT_UINT:
	case OPT_PERCENT: {
		const char *end = parse_digits(value, &v);
		if (end && o->kind == OPT_PERCENT && *end == '%')
			end++;
		if (!end || *end || v < o->min || v > o->max)
			return bad_value(o, value, where);
		if (field)
			*(uint64_t *)field = v;
		return 0;
	}
	case OPT_TIME: {
		const char *end = parse_digits(value, &v);
		uint64_t mult = 1;
		if (end && *end) {
			mult = *end == 's' ? 1 : *end == 'm' ? 60 : *end == 'h' ? 3600 : 0;
			end = mult && end[1] == '\0' ? end + 1 : NULL;
		}
		if (!end || *end || v > o->max / mult || v * mult < o->min)
			return bad_value(o, value, where);
		if (field)
			*(uint64_t *)field = v * mult;
		return 0;
	}
	case OPT_SIZE:
	case OPT_SIZE_POW2:
		if (parse_size(value, &v) || v < o->min || v > o->max ||
		    (o->kind == OPT_SIZE_POW2 && (v & (v - 1))))
			return bad_value(o, value, where);
		if (field)
			*(uint64_t *)field = v;
		return 0;
	case OPT_SIZE_RANGE: {
		const char *colon = strchr(value, ':');
		char lo[64];
		if (colon) {
			size_t n = (size_t)(colon - value);
			if (n >= sizeof(lo))
				return bad_value(o, value, where);
			memcpy(lo, value, n);
			lo[n] = '\0';
			if (parse_size(lo, &v) || parse_size(colon + 1, &v2) || v > v2)
				return bad_value(o, value, where);
		} else if (parse_size(value, &v)) {
			return bad_value(o, value, where);
		} else {
			v2 = v;
		}
		if (v < o->min || v2 > o->max)
			return bad_value(o, value, where);
		if (field) {
			((struct size_range *)field)->min = v;
			((struct size_range *)field)->max = v2;
		}
		return 0;
	}
	case OPT_CHOICE:
		for (const struct opt_choice *c = o->choices; c->text; c++) {
			if (strcmp(c->text, value) == 0) {
				if (field)
					*(int *)field = c->value;
				return 0;
			}
		}
		return bad_value(o, value, where);
	case OPT_FLAG:
	case OPT_UNSUPPORTED:
		break;
	}
	return -1;
}

void opt_defaults(struct job_opts *job, struct cli_opts *cli)
{
	if (job)
		memset(job, 0, sizeof(*job));
	if (cli)
		memset(cli, 0, sizeof(*cli));
	for (size_t i = 0; i < opt_count; i++) {
		const struct opt_def *o = &opt_table[i];
		/* Defaults go through the parser, so they obey the table. */
		if (o->def && opt_set(o, o->def, job, cli, o->name))
			abort(); /* a bad default in the table is a bug */
	}
}

int opt_format(const struct opt_def *o, const struct job_opts *job, char *buf,
               size_t len)
{
	const void *field = (const char *)job + o->offset;

	switch (o->kind) {
	case OPT_NAME:
	case OPT_STR:
	case OPT_URL:
	case OPT_FILE:
	case OPT_DIR: {
		const char *s = *(const char *const *)field;
		return snprintf(buf, len, "%s", s ? s : "");
	}
	case OPT_SECRET:
		/* Whether it is set, never what it is. */
		return snprintf(buf, len, "%s",
		                *(const char *const *)field ? "(set)" : "");
	case OPT_FLAG:
		return snprintf(buf, len, "%d", *(const int *)field);
	case OPT_UINT:
	case OPT_PERCENT:
	case OPT_TIME:
	case OPT_SIZE:
	case OPT_SIZE_POW2:
		return snprintf(buf, len, "%" PRIu64, *(const uint64_t *)field);
	case OPT_CHOICE:
		for (const struct opt_choice *c = o->choices; c->text; c++) {
			if (c->value == *(const int *)field)
				return snprintf(buf, len, "%s", c->text);
		}
		/* Unset (--s3_addressing: the profile's, else auto), as an
		 * unset string prints. */
		return snprintf(buf, len, "%s", "");
	case OPT_SIZE_RANGE:
	case OPT_UNSUPPORTED:
		break;
	}
	return snprintf(buf, len, "%s", "");
}

/* ------------------------------------------------------------------------ */
/* Command line                                                             */

static int push_assign(struct opt_assign **v, size_t *n,
                       const struct opt_def *o, const char *value)
{
	struct opt_assign *nv = realloc(*v, (*n + 1) * sizeof(**v));
	if (!nv)
		return -1;
	nv[*n].opt = o;
	nv[*n].value = value;
	*v = nv;
	(*n)++;
	return 0;
}

static int oom(void)
{
	fprintf(stderr, PROG ": out of memory\n");
	return EXIT_USAGE;
}

int opt_parse_argv(int argc, char **argv, struct cmdline *out)
{
	struct option *longopts = calloc(opt_count + 1, sizeof(*longopts));
	char shortopts[64];
	size_t ns = 0;
	struct job_opts scratch;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	opt_defaults(&scratch, &out->cli);
	out->seen = calloc(opt_count, 1);
	if (!longopts || !out->seen) {
		free(longopts);
		return oom();
	}
	shortopts[ns++] = ':'; /* report a missing value as ':' */
	for (size_t i = 0; i < opt_count; i++) {
		const struct opt_def *o = &opt_table[i];
		longopts[i].name = o->name;
		longopts[i].has_arg = o->kind == OPT_UNSUPPORTED ? optional_argument
		                      : o->metavar            ? required_argument
		                                              : no_argument;
		longopts[i].val = 256 + (int)i;
		if (o->short_name && ns + 3 < sizeof(shortopts)) {
			shortopts[ns++] = (char)o->short_name;
			if (o->metavar)
				shortopts[ns++] = ':';
		}
	}
	shortopts[ns] = '\0';

	opterr = 0;
	optind = 1;
	for (;;) {
		int c = getopt_long(argc, argv, shortopts, longopts, NULL);
		if (c == -1)
			break;
		const struct opt_def *o = NULL;
		if (c >= 256 && c < 256 + (int)opt_count) {
			o = &opt_table[c - 256];
		} else {
			for (size_t i = 0; i < opt_count; i++) {
				if (opt_table[i].short_name && opt_table[i].short_name == c)
					o = &opt_table[i];
			}
		}
		if (c == ':' || c == '?' || !o) {
			/* optopt holds a short option's letter; for long ones
			 * the word is the argument just consumed. */
			char shortform[3] = {'-', (char)optopt, '\0'};
			const char *arg = (optopt > 0 && optopt < 256) ? shortform
			                                               : argv[optind - 1];
			const struct opt_def *known =
				optopt >= 256 ? &opt_table[optopt - 256] : NULL;
			if (c == ':' && known) {
				char where[64];
				snprintf(where, sizeof(where), "--%s", known->name);
				opt_set(known, NULL, NULL, NULL, where);
			} else if (c == ':') {
				fprintf(stderr, PROG ": %s: missing value\n", arg);
			} else if (known) {
				/* A flag given a value: "--help=1". */
				fprintf(stderr, PROG ": %s: --%s takes no value\n", arg,
				        known->name);
			} else {
				fprintf(stderr, PROG ": %s: unknown option\n", arg);
			}
			fprintf(stderr, "Try '" PROG " --help'.\n");
			rc = EXIT_USAGE;
			break;
		}

		char where[64];
		snprintf(where, sizeof(where), "--%s", o->name);
		if (opt_set(o, optarg, o->scope == OPT_JOB ? &scratch : NULL,
		            &out->cli, where)) {
			rc = EXIT_USAGE;
			break;
		}
		out->seen[o - opt_table] = 1;
		if (o->kind == OPT_NAME) {
			struct cli_job *nj = realloc(out->jobs,
			                             (out->njobs + 1) * sizeof(*nj));
			if (!nj) {
				rc = oom();
				break;
			}
			out->jobs = nj;
			memset(&nj[out->njobs], 0, sizeof(*nj));
			nj[out->njobs++].name = optarg;
		} else if (o->scope == OPT_JOB) {
			struct cli_job *j = out->njobs ? &out->jobs[out->njobs - 1] : NULL;
			int bad = j ? push_assign(&j->v, &j->n, o, optarg)
			            : push_assign(&out->globals, &out->nglobals, o, optarg);
			if (bad) {
				rc = oom();
				break;
			}
		}
	}
	free(longopts);
	if (rc == 0 && optind < argc) {
		out->jobfiles = &argv[optind];
		out->njobfiles = (size_t)(argc - optind);
	}
	return rc;
}

void cmdline_free(struct cmdline *c)
{
	for (size_t i = 0; i < c->njobs; i++)
		free(c->jobs[i].v);
	free(c->jobs);
	free(c->globals);
	free(c->seen);
	memset(c, 0, sizeof(*c));
}

/* ------------------------------------------------------------------------ */
/* --help                                                                   */

#define HELP_INDENT 30 /* width of "      --option=VALUE" padded */
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

static void usage_row(FILE *out, const struct opt_def *o)
{
	char lhs[64], form[256], text[1024];
	if (o->metavar)
		snprintf(lhs, sizeof(lhs), "--%s=%s", o->name, o->metavar);
	else
		snprintf(lhs, sizeof(lhs), "--%s", o->name);

	int n = snprintf(text, sizeof(text), "%s.", o->help);
	/* The metavar says enough for strings and choices. */
	if (o->kind != OPT_FLAG && o->kind != OPT_UNSUPPORTED &&
	    o->kind != OPT_CHOICE && o->kind != OPT_STR && o->kind != OPT_NAME &&
	    o->kind != OPT_SECRET &&
	    o->kind != OPT_FILE && o->kind != OPT_DIR && n >= 0 && (size_t)n < sizeof(text)) {
		describe(o, form, sizeof(form));
		form[0] = (char)(form[0] == 'a' ? 'A' : form[0]);
		n += snprintf(text + n, sizeof(text) - (size_t)n, " %s.", form);
	}
	const char *def = o->def_text ? o->def_text : o->def;
	if (def && n >= 0 && (size_t)n < sizeof(text))
		snprintf(text + n, sizeof(text) - (size_t)n, " (default: %s)", def);

	int col;
	if (o->short_name)
		col = fprintf(out, "  -%c, %-23s", o->short_name, lhs);
	else
		col = fprintf(out, "      %-23s", lhs);
	print_wrapped(out, text, col, HELP_INDENT, HELP_WIDTH);
}

void opt_usage(FILE *out)
{
	fprintf(out,
	        "Usage: " PROG " [OPTION]... [JOBFILE]...\n"
	        "       " PROG " --manifest=FILE --source=BASEURL --dest=DIR "
	        "[OPTION]...\n"
	        "       " PROG " --list --source=s3://BUCKET/PREFIX/ --dest=DIR "
	        "[OPTION]...\n"
	        "       " PROG " --pegasus=URL [--partitions=LIST] --dest=DIR "
	        "[OPTION]...\n"
	        "       " PROG " --gen-dataset=DIR --nrfiles=N "
	        "--filesize=SIZE|MIN:MAX [--seed=S]\n"
	        "                [--layout=pegasus --partition_count=N]\n\n"
	        "Fetch the files manifests list, as jobs, the way fio runs I/O "
	        "jobs. Each file is\nverified with xxHash while it streams and "
	        "appears under its name only once\nverified. Jobs run one after "
	        "the other.\n\n"
	        "Job options (also job-file keys, without the dashes):\n");
	for (size_t i = 0; i < opt_count; i++) {
		if (opt_table[i].scope == OPT_JOB)
			usage_row(out, &opt_table[i]);
	}
	fprintf(out, "\nRun options (command line only):\n");
	for (size_t i = 0; i < opt_count; i++) {
		if (opt_table[i].scope == OPT_CMDLINE)
			usage_row(out, &opt_table[i]);
	}
	fprintf(out,
	        "\nJob files are INI files: [global] holds defaults for the jobs "
	        "after it, every\nother [section] is a job named after it, "
	        "lines starting with ';' or '#' are\ncomments (and ' ;' starts "
	        "one after a value), and lines are at most 199\nbytes. Options "
	        "on the command line override the files: job options before "
	        "the\nfirst --name apply to every job, those after --name=X to "
	        "the jobs named X.\nWithout a job file or --name, the options "
	        "make one job named \"" PROG "\".\n\n"
	        "Exit status: 0 every file of every job published and verified, "
	        "1 some file\nfailed (or the run was interrupted), 2 usage, job "
	        "file or manifest error\n(nothing fetched).\n");
}
