/*
 * report.c - normal, JSON and terse reports. The counting rules are in
 * report.h; this file only prints.
 */
#include "report.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "sstfetch.h"

const double report_pct[REPORT_NPCT] = {
	1, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95, 99, 99.5, 99.9, 99.95, 99.99,
};

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return (x > y) - (x < y);
}

void lat_summarize(uint64_t *samples, size_t n, struct lat_summary *out)
{
	memset(out, 0, sizeof(*out));
	if (!n)
		return;
	qsort(samples, n, sizeof(*samples), cmp_u64);
	out->n = n;
	out->min = samples[0];
	out->max = samples[n - 1];

	/* Welford's running mean and variance: no overflow of a sum of
	 * squared nanoseconds. stddev is the sample one (n - 1), as fio's. */
	double mean = 0, m2 = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)samples[i] - mean;
		mean += d / (double)(i + 1);
		m2 += d * ((double)samples[i] - mean);
	}
	out->mean = mean;
	out->stddev = n > 1 ? sqrt(m2 / (double)(n - 1)) : 0;

	for (int k = 0; k < REPORT_NPCT; k++) {
		/* Nearest rank: ceil(p/100 * n), 1-based. */
		double rank = ceil(report_pct[k] / 100.0 * (double)n);
		size_t idx = rank < 1 ? 0 : (size_t)rank - 1;
		out->pct[k] = samples[idx < n ? idx : n - 1];
	}
}

void report_free(struct job_report *r)
{
	for (size_t i = 0; i < r->nfailures; i++) {
		free(r->failures[i].name);
		free(r->failures[i].detail);
		free(r->failures[i].mirror_bytes);
	}
	r->nfailures = 0;
	free(r->parts);
	r->parts = NULL;
	r->nparts = 0;
}

static double seconds(const struct job_report *r)
{
	return (double)r->runtime_ns / 1e9;
}

static uint64_t bw_bytes(const struct job_report *r)
{
	double s = seconds(r);
	return s > 0 ? (uint64_t)((double)r->io_bytes / s) : 0;
}

static double cpu_pct(double cpu_s, const struct job_report *r)
{
	double s = seconds(r);
	return s > 0 ? 100.0 * cpu_s / s : 0;
}

/* ------------------------------------------------------------------------ */
/* normal                                                                   */

void report_human(double v, int base2, const char *suffix, char *buf,
                  size_t len)
{
	static const char *const u2[] = {"", "Ki", "Mi", "Gi", "Ti", "Pi"};
	static const char *const u10[] = {"", "k", "M", "G", "T", "P"};
	double div = base2 ? 1024 : 1000;
	int i = 0;
	while (v >= 10000 && i < 5) {
		v /= div;
		i++;
	}
	const char *unit = base2 ? u2[i] : u10[i];
	if (i == 0 || v >= 100)
		snprintf(buf, len, "%.0f%s%s", v, unit, suffix);
	else if (v >= 10)
		snprintf(buf, len, "%.1f%s%s", v, unit, suffix);
	else
		snprintf(buf, len, "%.2f%s%s", v, unit, suffix);
}

/* "BYTES (DECIMAL)" pair, as fio prints sizes and rates. */
static void human_pair(double v, const char *suffix, char *buf, size_t len)
{
	char a[32], b[32];
	report_human(v, 1, suffix, a, sizeof(a));
	report_human(v, 0, suffix, b, sizeof(b));
	snprintf(buf, len, "%s (%s)", a, b);
}

/* fio picks the unit from the minimum: nsec below 10 us, usec below 10 ms,
 * else msec. */
static void lat_unit(const struct lat_summary *l, const char **name,
                     double *div)
{
	if (l->min < 10000) {
		*name = "nsec";
		*div = 1;
	} else if (l->min < 10000000) {
		*name = "usec";
		*div = 1e3;
	} else {
		*name = "msec";
		*div = 1e6;
	}
}

static void print_lat(FILE *out, const char *label,
                      const struct lat_summary *l)
{
	const char *unit;
	double div;

	if (!l->n)
		return;
	lat_unit(l, &unit, &div);
	fprintf(out, "    %s (%s): min=%.0f, max=%.0f, avg=%.2f, stdev=%.2f, N=%" PRIu64
	             "\n",
	        label, unit, (double)l->min / div, (double)l->max / div,
	        l->mean / div, l->stddev / div, l->n);
	fprintf(out, "    %s percentiles (%s):\n", label, unit);
	for (int k = 0; k < REPORT_NPCT; k++) {
		if (k % 4 == 0)
			fprintf(out, "     |");
		fprintf(out, " %5.2fth=[%5.0f]%s", report_pct[k],
		        (double)l->pct[k] / div,
		        k == REPORT_NPCT - 1 ? "\n" : k % 4 == 3 ? ",\n" : ",");
	}
}

#define NORMAL_MAX_FAILURES 10

static void print_job_normal(FILE *out, const struct job_report *r)
{
	char when[64], io[96], bw[64], tmp[32];
	time_t now = time(NULL);
	struct tm tm;

	localtime_r(&now, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);
	fprintf(out, "%s: (jobs=1): err=%2d: pid=%ld: %s\n", r->opts->name,
	        -r->error, (long)getpid(), when);
	if (r->error)
		fprintf(out, "  error  : %s%s\n", sstf_strerror(r->error),
		        r->interrupted ? " (interrupted)" : "");
	if (r->s3)
		fprintf(out, "  s3     : %s; region %s, endpoint %s, addressing %s\n",
		        r->s3->credentials, r->s3->region,
		        r->s3->endpoint[0] ? r->s3->endpoint : "AWS", r->s3->addressing);
	fprintf(out,
	        "  files  : ok=%" PRIu64 ", skipped=%" PRIu64 ", failed=%" PRIu64
	        ", unfinished=%" PRIu64 ", total=%" PRIu64 " (loops=%" PRIu64 ")\n",
	        r->files_ok, r->files_skipped, r->files_failed, r->files_unfinished,
	        r->files_total, r->loops_done);
	if (r->files_skipped || r->files_resumed) {
		char pb[32];
		report_human((double)r->present_bytes, 1, "B", pb, sizeof(pb));
		fprintf(out,
		        "  present: %s already on disk, not fetched: %" PRIu64
		        " files skipped as verified, %" PRIu64 " resumed from a "
		        "checkpoint\n",
		        pb, r->files_skipped, r->files_resumed);
	}
	/* --pegasus: one line per partition, counted as the files line. */
	for (size_t k = 0; k < r->nparts; k++) {
		const struct part_report *p = &r->parts[k];
		char sz[32], pio[32];
		report_human((double)p->size, 1, "B", sz, sizeof(sz));
		report_human((double)p->io_bytes, 1, "B", pio, sizeof(pio));
		fprintf(out,
		        "  part %-3u: ok=%" PRIu64 ", skipped=%" PRIu64 ", failed=%" PRIu64
		        ", unfinished=%" PRIu64 ", total=%" PRIu64 "; size=%s, io=%s\n",
		        p->partition, p->files_ok, p->files_skipped, p->files_failed,
		        p->files_unfinished, p->files_total, sz, pio);
	}

	double s = seconds(r);
	report_human((double)bw_bytes(r), 1, "B/s", bw, sizeof(bw));
	report_human((double)bw_bytes(r), 0, "B/s", tmp, sizeof(tmp));
	char io2[32];
	report_human((double)r->io_bytes, 1, "B", io2, sizeof(io2));
	fprintf(out, "  write: files/s=%.1f, BW=%s (%s)(%s/%" PRIu64 "msec)\n",
	        s > 0 ? (double)(r->files_ok) / s : 0.0, bw, tmp, io2,
	        r->runtime_ns / 1000000);
	print_lat(out, "clat", &r->clat);
	print_lat(out, "ttfb", &r->ttfb);
	fprintf(out,
	        "  net    : retries=%" PRIu64 ", stale_completions=%" PRIu64
	        ", cancels=%" PRIu64 "\n",
	        r->retries, r->stale_completions, r->cancels);
	if (r->nmirrors) {
		/* One pair per URL index: "#0=0B, #1=16.0MiB". */
		fprintf(out, "  mirrors:");
		for (size_t k = 0; k < r->nmirrors; k++) {
			report_human((double)r->mirror_bytes[k], 1, "B", tmp, sizeof(tmp));
			fprintf(out, "%s #%zu=%s", k ? "," : "", k, tmp);
		}
		fprintf(out, "\n");
	}
	human_pair((double)r->verify_bytes, "B", io, sizeof(io));
	fprintf(out, "  verify : bytes=%s, errors=%" PRIu64 "%s\n", io,
	        r->verify_errors,
	        !r->verified || strcmp(r->verified, "digest") == 0
	                ? ""
	        : strcmp(r->verified, "length") == 0
	                ? ", length only: files were length-checked, not "
	                  "digest-checked (no digests)"
	                : ", some files length-checked only (no digest)");
	report_human((double)(r->peak_buffers * r->buf_size), 1, "B", io, sizeof(io));
	report_human((double)r->buf_size, 1, "B", tmp, sizeof(tmp));
	fprintf(out,
	        "  memory : peak_buffers=%s (%" PRIu64 " of %" PRIu64 " x %s)\n",
	        io, r->peak_buffers, r->buffers_total, tmp);
	fprintf(out,
	        "  cpu    : usr=%.2f%%, sys=%.2f%%, ctx=%ld, majf=%ld, minf=%ld\n",
	        cpu_pct(r->usr_s, r), cpu_pct(r->sys_s, r), r->ctx, r->majf,
	        r->minf);
	/* A page of failures helps; a thousand bury the summary. The JSON
	 * report lists up to REPORT_MAX_FAILURES. */
	size_t shown = r->nfailures < NORMAL_MAX_FAILURES ? r->nfailures
	                                                  : NORMAL_MAX_FAILURES;
	for (size_t i = 0; i < shown; i++) {
		const struct failure *f = &r->failures[i];
		fprintf(out, "  %s: %s: %s%s%s%s\n",
		        f->unfinished ? "unfinished" : "failed ", f->name,
		        sstf_strerror(f->error), f->detail ? " (" : "",
		        f->detail ? f->detail : "", f->detail ? ")" : "");
	}
	if (r->nfailures - shown + r->failures_unlisted)
		fprintf(out, "  ...    : and %zu more files failed or unfinished\n",
		        r->nfailures - shown + r->failures_unlisted);
}

static void print_run_status(FILE *out, const struct job_report *jobs,
                             size_t n)
{
	uint64_t io = 0, ns = 0, ok = 0, failed = 0, skipped = 0, total = 0, unfinished = 0;
	uint64_t bw_min = UINT64_MAX, bw_max = 0, run_min = UINT64_MAX, run_max = 0;

	for (size_t i = 0; i < n; i++) {
		const struct job_report *r = &jobs[i];
		io += r->io_bytes;
		ns += r->runtime_ns;
		ok += r->files_ok;
		failed += r->files_failed;
		skipped += r->files_skipped;
		unfinished += r->files_unfinished;
		total += r->files_total;
		uint64_t bw = bw_bytes(r), ms = r->runtime_ns / 1000000;
		bw_min = bw < bw_min ? bw : bw_min;
		bw_max = bw > bw_max ? bw : bw_max;
		run_min = ms < run_min ? ms : run_min;
		run_max = ms > run_max ? ms : run_max;
	}
	if (!n)
		bw_min = run_min = 0;
	/* Jobs run one after the other, so the group's rate is all bytes over
	 * the sum of the runtimes (fio's groups run at once and divide by the
	 * longest). */
	double agg = ns ? (double)io / ((double)ns / 1e9) : 0;
	char a[32], b[32], c[32], d[32], e[32], f[32], g[64];
	report_human(agg, 1, "B/s", a, sizeof(a));
	report_human(agg, 0, "B/s", b, sizeof(b));
	report_human((double)bw_min, 1, "B/s", c, sizeof(c));
	report_human((double)bw_max, 1, "B/s", d, sizeof(d));
	report_human((double)bw_min, 0, "B/s", e, sizeof(e));
	report_human((double)bw_max, 0, "B/s", f, sizeof(f));
	char ioa[32], iob[32];
	report_human((double)io, 1, "B", ioa, sizeof(ioa));
	report_human((double)io, 0, "B", iob, sizeof(iob));
	snprintf(g, sizeof(g), "%" PRIu64 "-%" PRIu64 "msec", run_min, run_max);
	fprintf(out, "\nRun status (all jobs, one after the other):\n");
	fprintf(out, "  WRITE: bw=%s (%s), %s-%s (%s-%s), io=%s (%s), run=%s\n", a,
	        b, c, d, e, f, ioa, iob, g);
	fprintf(out,
	        "  FILES: ok=%" PRIu64 ", skipped=%" PRIu64 ", failed=%" PRIu64
	        ", unfinished=%" PRIu64 ", total=%" PRIu64 "\n",
	        ok, skipped, failed, unfinished, total);
}

/* ------------------------------------------------------------------------ */
/* json                                                                     */

static int set(json_t *obj, const char *key, json_t *v)
{
	return v ? json_object_set_new(obj, key, v) : -1;
}

static json_t *jint(uint64_t v)
{
	return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v);
}

/* A JSON array of n byte counts. */
static json_t *u64_array(const uint64_t *v, size_t n)
{
	json_t *a = json_array();
	for (size_t k = 0; a && k < n; k++) {
		if (json_array_append_new(a, jint(v[k]))) {
			json_decref(a);
			return NULL;
		}
	}
	return a;
}

static json_t *lat_json(const struct lat_summary *l)
{
	json_t *o = json_object(), *p = json_object();
	if (!o || !p) {
		json_decref(o);
		json_decref(p);
		return NULL;
	}
	set(o, "min", jint(l->min));
	set(o, "max", jint(l->max));
	set(o, "mean", json_real(l->mean));
	set(o, "stddev", json_real(l->stddev));
	set(o, "N", jint(l->n));
	for (int k = 0; k < REPORT_NPCT && l->n; k++) {
		char key[32];
		snprintf(key, sizeof(key), "%f", report_pct[k]);
		set(p, key, jint(l->pct[k]));
	}
	if (l->n)
		set(o, "percentile", p);
	else
		json_decref(p);
	return o;
}

static json_t *job_json(const struct job_report *r)
{
	json_t *j = json_object();
	json_t *opts = json_object(), *files = json_object(), *w = json_object();
	json_t *net = json_object(), *ver = json_object(), *fails = json_array();
	if (!j || !opts || !files || !w || !net || !ver || !fails) {
		json_decref(j);
		json_decref(opts);
		json_decref(files);
		json_decref(w);
		json_decref(net);
		json_decref(ver);
		json_decref(fails);
		return NULL;
	}
	double s = seconds(r);

	set(j, "jobname", json_string(r->opts->name));
	set(j, "groupid", json_integer(0));
	set(j, "error", json_integer(-r->error));
	set(j, "error_message", json_string(r->error ? sstf_strerror(r->error) : ""));
	set(j, "interrupted", json_boolean(r->interrupted));
	/* fio writes "job options" as strings, the way a job file holds
	 * them; so do we, straight from the option table. */
	for (size_t i = 0; i < opt_count; i++) {
		const struct opt_def *o = &opt_table[i];
		char v[4096];
		if (o->scope != OPT_JOB || o->kind == OPT_UNSUPPORTED ||
		    o->kind == OPT_NAME)
			continue;
		opt_format(o, r->opts, v, sizeof(v));
		set(opts, o->name, json_string(v));
	}
	set(j, "job options", opts);
	set(j, "job_runtime", jint(r->runtime_ns / 1000000));
	set(j, "usr_cpu", json_real(cpu_pct(r->usr_s, r)));
	set(j, "sys_cpu", json_real(cpu_pct(r->sys_s, r)));
	set(j, "ctx", json_integer(r->ctx));
	set(j, "majf", json_integer(r->majf));
	set(j, "minf", json_integer(r->minf));
	set(j, "loops", jint(r->loops_done));

	set(files, "ok", jint(r->files_ok));
	set(files, "failed", jint(r->files_failed));
	set(files, "skipped", jint(r->files_skipped));
	set(files, "unfinished", jint(r->files_unfinished));
	set(files, "resumed", jint(r->files_resumed));
	set(files, "total", jint(r->files_total));
	set(j, "files", files);

	set(w, "io_bytes", jint(r->io_bytes));
	set(w, "io_kbytes", jint(r->io_bytes / 1024));
	set(w, "present_bytes", jint(r->present_bytes));
	set(w, "bw_bytes", jint(bw_bytes(r)));
	set(w, "bw", jint(bw_bytes(r) / 1024));
	set(w, "iops", json_real(s > 0 ? (double)r->files_ok / s : 0));
	set(w, "runtime", jint(r->runtime_ns / 1000000));
	set(w, "total_ios", jint(r->files_ok + r->files_failed));
	set(w, "clat_ns", lat_json(&r->clat));
	set(j, "write", w);

	set(net, "ttfb_ns", lat_json(&r->ttfb));
	set(net, "retries", jint(r->retries));
	set(net, "streams_max", jint(r->streams_max));
	set(net, "files_split", jint(r->files_split));
	set(j, "net", net);
	/* Only when some file had more than one URL: bytes by URL index. */
	if (r->nmirrors)
		set(j, "mirrors", u64_array(r->mirror_bytes, r->nmirrors));

	set(ver, "bytes", jint(r->verify_bytes));
	set(ver, "errors", jint(r->verify_errors));
	set(j, "verify", ver);
	/* "digest", "length" (no digests: sizes only) or "mixed". */
	if (r->verified)
		set(j, "verified", json_string(r->verified));
	if (r->s3) {
		json_t *s3 = json_object();
		if (s3) {
			set(s3, "credentials", json_string(r->s3->credentials));
			set(s3, "signed", json_boolean(r->s3->signed_requests));
			set(s3, "region", json_string(r->s3->region));
			set(s3, "endpoint", json_string(r->s3->endpoint));
			set(s3, "addressing", json_string(r->s3->addressing));
			set(j, "s3", s3);
		}
	}

	set(j, "cancels", jint(r->cancels));
	set(j, "stale_completions", jint(r->stale_completions));
	set(j, "peak_buffer_bytes", jint(r->peak_buffers * r->buf_size));
	set(j, "buffers_total", jint(r->buffers_total));
	set(j, "buf_size", jint(r->buf_size));

	for (size_t i = 0; i < r->nfailures; i++) {
		const struct failure *f = &r->failures[i];
		json_t *e = json_object();
		if (!e)
			break;
		set(e, "name", json_string(f->name));
		set(e, "error", json_integer(-f->error));
		set(e, "message", json_string(sstf_strerror(f->error)));
		set(e, "detail", json_string(f->detail ? f->detail : ""));
		set(e, "unfinished", json_boolean(f->unfinished));
		set(e, "streams", json_integer(f->streams));
		if (f->nmirrors)
			set(e, "mirror_bytes", u64_array(f->mirror_bytes, f->nmirrors));
		json_array_append_new(fails, e);
	}
	set(j, "failures", fails);
	set(j, "failures_unlisted", jint(r->failures_unlisted));

	/* --pegasus: one object per partition, its files counted as the
	 * job's "files" and its bytes as "write"'s. */
	if (r->parts) {
		json_t *parts = json_array();
		for (size_t k = 0; parts && k < r->nparts; k++) {
			const struct part_report *p = &r->parts[k];
			json_t *e = json_object(), *pf = json_object();
			if (!e || !pf) {
				json_decref(e);
				json_decref(pf);
				break;
			}
			set(e, "partition", jint(p->partition));
			set(pf, "ok", jint(p->files_ok));
			set(pf, "failed", jint(p->files_failed));
			set(pf, "skipped", jint(p->files_skipped));
			set(pf, "unfinished", jint(p->files_unfinished));
			set(pf, "total", jint(p->files_total));
			set(e, "files", pf);
			set(e, "size", jint(p->size));
			set(e, "io_bytes", jint(p->io_bytes));
			set(e, "present_bytes", jint(p->present_bytes));
			json_array_append_new(parts, e);
		}
		set(j, "partitions", parts);
	}
	return j;
}

static int write_json(FILE *out, const struct job_report *jobs, size_t n)
{
	json_t *root = json_object(), *arr = json_array();
	if (!root || !arr) {
		json_decref(root);
		json_decref(arr);
		errno = ENOMEM;
		return -1;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	char when[64];
	struct tm tm;
	localtime_r(&ts.tv_sec, &tm);
	strftime(when, sizeof(when), "%a %b %e %H:%M:%S %Y", &tm);

	set(root, "sstfetch version", json_string(PROG "-" SSTF_VERSION_STRING));
	set(root, "libsstfetch version", json_string(SSTF_VERSION_STRING));
	set(root, "timestamp", jint((uint64_t)ts.tv_sec));
	set(root, "timestamp_ms",
	    jint((uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000));
	set(root, "time", json_string(when));
	for (size_t i = 0; i < n; i++) {
		json_t *j = job_json(&jobs[i]);
		if (!j || json_array_append_new(arr, j)) {
			json_decref(root);
			json_decref(arr);
			errno = ENOMEM;
			return -1;
		}
	}
	set(root, "jobs", arr);
	int rc = json_dumpf(root, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
	json_decref(root);
	if (rc == 0)
		fputc('\n', out);
	return rc ? -1 : 0;
}

/* ------------------------------------------------------------------------ */
/* terse                                                                    */

#define TERSE_VERSION 1

enum tf_kind {
	TF_VERSION, TF_TOOL, TF_JOBNAME, TF_ERROR, TF_U64, TF_BW, TF_MS,
	TF_USR, TF_SYS, TF_PEAK, TF_LAT,
};

struct terse_field {
	const char *name;
	enum tf_kind kind;
	size_t offset; /* TF_U64: a uint64_t; TF_LAT: a lat_summary */
	const char *help;
};

#define R(f) offsetof(struct job_report, f)

/* The one list of terse fields: the writer and --help both walk it. */
static const struct terse_field terse_fields[] = {
	{"terse_version", TF_VERSION, 0, "format version, 1"},
	{"sstfetch_version", TF_TOOL, 0, "e.g. sstfetch-0.1.0"},
	{"jobname", TF_JOBNAME, 0, NULL},
	{"error", TF_ERROR, 0, "0, or the first error's code"},
	{"files_ok", TF_U64, R(files_ok), NULL},
	{"files_failed", TF_U64, R(files_failed), NULL},
	{"files_skipped", TF_U64, R(files_skipped), "already in place and verified"},
	{"files_total", TF_U64, R(files_total), NULL},
	{"io_bytes", TF_U64, R(io_bytes), NULL},
	{"bw_bytes", TF_BW, 0, "bytes/s"},
	{"runtime_ms", TF_MS, 0, NULL},
	{"clat", TF_LAT, R(clat), "per-file fetch time, ns"},
	{"ttfb", TF_LAT, R(ttfb), "time to first byte, ns"},
	{"retries", TF_U64, R(retries), NULL},
	{"stale_completions", TF_U64, R(stale_completions), NULL},
	{"cancels", TF_U64, R(cancels), NULL},
	{"peak_buffer_bytes", TF_PEAK, 0, NULL},
	{"usr_cpu", TF_USR, 0, "percent of runtime"},
	{"sys_cpu", TF_SYS, 0, "percent of runtime"},
	{"verify_bytes", TF_U64, R(verify_bytes), NULL},
	{"verify_errors", TF_U64, R(verify_errors), NULL},
	{"loops", TF_U64, R(loops_done), NULL},
	{"files_unfinished", TF_U64, R(files_unfinished), "interrupted before their end"},
	{"files_resumed", TF_U64, R(files_resumed), "ok files continued from a checkpoint"},
	{"present_bytes", TF_U64, R(present_bytes), "already on disk, not fetched"},
};

#undef R

#define NTERSE (sizeof(terse_fields) / sizeof(terse_fields[0]))

/* Prints one item of the terse field list, wrapping between items. */
static void help_item(FILE *out, int *col, const char *item)
{
	if (*col && *col + 2 + (int)strlen(item) > 78) {
		fprintf(out, ";\n");
		*col = 0;
	}
	*col += fprintf(out, "%s%s", *col ? "; " : "  ", item);
}

void report_terse_help(FILE *out)
{
	char buf[256];
	int col = 0;

	fprintf(out, "\nTerse output (--output-format=terse): one line per job, "
	             "fields separated by ';':\n");
	for (size_t i = 0; i < NTERSE; i++) {
		const struct terse_field *t = &terse_fields[i];
		if (t->kind == TF_LAT) {
			static const char *const parts[] = {"min", "max", "mean",
			                                    "stddev", "n"};
			for (size_t k = 0; k < 5; k++) {
				snprintf(buf, sizeof(buf), "%s_%s", t->name, parts[k]);
				help_item(out, &col, buf);
			}
			snprintf(buf, sizeof(buf), "%d x %s_percentile [%s]",
			         REPORT_NPCT, t->name, t->help);
			help_item(out, &col, buf);
			continue;
		}
		if (t->help)
			snprintf(buf, sizeof(buf), "%s [%s]", t->name, t->help);
		else
			snprintf(buf, sizeof(buf), "%s", t->name);
		help_item(out, &col, buf);
	}
	fprintf(out, "\nEach percentile field is 'P%%=VALUE', P in fio's list: "
	             "1 5 10 20 30 40 50 60\n70 80 90 95 99 99.5 99.9 99.95 "
	             "99.99.\n");
}

static void terse_line(FILE *out, const struct job_report *r)
{
	for (size_t i = 0; i < NTERSE; i++) {
		const struct terse_field *t = &terse_fields[i];
		const char *base = (const char *)r;
		if (i)
			fputc(';', out);
		switch (t->kind) {
		case TF_VERSION:
			fprintf(out, "%d", TERSE_VERSION);
			break;
		case TF_TOOL:
			fprintf(out, PROG "-%s", SSTF_VERSION_STRING);
			break;
		case TF_JOBNAME:
			fputs(r->opts->name, out);
			break;
		case TF_ERROR:
			fprintf(out, "%d", -r->error);
			break;
		case TF_U64:
			fprintf(out, "%" PRIu64, *(const uint64_t *)(const void *)(base + t->offset));
			break;
		case TF_BW:
			fprintf(out, "%" PRIu64, bw_bytes(r));
			break;
		case TF_MS:
			fprintf(out, "%" PRIu64, r->runtime_ns / 1000000);
			break;
		case TF_USR:
			fprintf(out, "%f%%", cpu_pct(r->usr_s, r));
			break;
		case TF_SYS:
			fprintf(out, "%f%%", cpu_pct(r->sys_s, r));
			break;
		case TF_PEAK:
			fprintf(out, "%" PRIu64, r->peak_buffers * r->buf_size);
			break;
		case TF_LAT: {
			const struct lat_summary *l =
				(const struct lat_summary *)(const void *)(base + t->offset);
			fprintf(out, "%" PRIu64 ";%" PRIu64 ";%f;%f;%" PRIu64, l->min,
			        l->max, l->mean, l->stddev, l->n);
			for (int k = 0; k < REPORT_NPCT; k++)
				fprintf(out, ";%f%%=%" PRIu64, report_pct[k], l->pct[k]);
			break;
		}
		}
	}
	fputc('\n', out);
}

int report_write(FILE *out, enum output_format format,
                 const struct job_report *jobs, size_t n)
{
	switch (format) {
	case FORMAT_JSON:
		if (write_json(out, jobs, n))
			return -1;
		break;
	case FORMAT_TERSE:
		for (size_t i = 0; i < n; i++)
			terse_line(out, &jobs[i]);
		break;
	case FORMAT_NORMAL:
		for (size_t i = 0; i < n; i++)
			print_job_normal(out, &jobs[i]);
		print_run_status(out, jobs, n);
		break;
	}
	if (fflush(out) || ferror(out))
		return -1;
	return 0;
}
