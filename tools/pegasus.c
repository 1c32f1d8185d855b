/*
 * pegasus.c - load an Apache Pegasus bulk-load set: bulk_load_info, the
 * partitions asked for, and each one's bulk_load_metadata as a manifest
 * (see pegasus.h). job.c runs the partitions.
 */
#include "pegasus.h"
#include "remote.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ------------------------------------------------------------------------ */
/* --partitions                                                             */

/* Parses all-digit decimal up to PEGASUS_MAX_PARTITIONS - 1 ("+1", " 1",
 * "" refused). Returns the end of the digits, or NULL. */
static const char *parse_index(const char *s, unsigned *out)
{
	unsigned long v = 0;
	const char *p = s;
	while (*p >= '0' && *p <= '9') {
		v = v * 10 + (unsigned long)(*p - '0');
		if (v >= PEGASUS_MAX_PARTITIONS)
			return NULL;
		p++;
	}
	if (p == s)
		return NULL;
	*out = (unsigned)v;
	return p;
}

/*
 * Parses LIST: "all", or comma-separated items, each a partition "N" or a
 * range "N-M" (N <= M, both included); items may overlap. With want
 * non-NULL, marks the partitions it names in want[0..count) and fails on
 * the first one >= count, naming `info` (bulk_load_info's URL) as where
 * count comes from. Returns 0, or -1 with the reason in why.
 */
static int parse_partitions(const char *list, unsigned count, const char *info,
                            unsigned char *want, char *why, size_t whylen)
{
	if (strcmp(list, "all") == 0) {
		if (want)
			memset(want, 1, count);
		return 0;
	}
	const char *p = list;
	for (;;) {
		unsigned lo, hi;
		const char *q = parse_index(p, &lo);
		if (!q) {
			snprintf(why, whylen,
			         "expected \"all\" or comma-separated partitions N or "
			         "ranges N-M (0 to %u), as 0-7 or 0,2,5-6",
			         PEGASUS_MAX_PARTITIONS - 1);
			return -1;
		}
		hi = lo;
		if (*q == '-') {
			q = parse_index(q + 1, &hi);
			if (!q) {
				snprintf(why, whylen, "a range is N-M, as 5-6");
				return -1;
			}
			if (hi < lo) {
				snprintf(why, whylen, "range %u-%u runs backwards", lo, hi);
				return -1;
			}
		}
		if (*q != ',' && *q != '\0') {
			snprintf(why, whylen,
			         "expected ',' or the end after partition %u", hi);
			return -1;
		}
		if (want) {
			if (hi >= count) {
				snprintf(why, whylen,
				         "partition %u does not exist: %s says "
				         "partition_count %u (partitions 0 to %u)",
				         lo < count ? count : lo, info, count, count - 1);
				return -1;
			}
			memset(want + lo, 1, (size_t)(hi - lo) + 1);
		}
		if (*q == '\0')
			return 0;
		p = q + 1;
	}
}

int pegasus_check_opts(const struct job_opts *o)
{
	char why[256];
	int bad = 0;

	if (!o->pegasus) {
		if (o->partitions) {
			fprintf(stderr,
			        PROG ": job '%s': --partitions=%s needs --pegasus=URL\n",
			        o->name, o->partitions);
			return EXIT_USAGE;
		}
		return 0;
	}
	if (o->manifest || o->source || o->list) {
		fprintf(stderr,
		        PROG ": job '%s': --pegasus=%s reads each partition's "
		        "bulk_load_metadata and fetches from URL/PIDX; give --pegasus "
		        "or --manifest/--source/--list, not both\n",
		        o->name, o->pegasus);
		bad = 1;
	}
	if (o->partitions &&
	    parse_partitions(o->partitions, 0, NULL, NULL, why, sizeof(why))) {
		fprintf(stderr, PROG ": job '%s': --partitions=%s: %s\n", o->name,
		        o->partitions, why);
		bad = 1;
	}
	if (o->cancel_at) {
		/* Its mark is a share of one generation's bytes; a Pegasus
		 * job runs one generation per partition. */
		fprintf(stderr,
		        PROG ": job '%s': --cancel_at is not supported with "
		        "--pegasus\n",
		        o->name);
		bad = 1;
	}
	return bad ? EXIT_USAGE : 0;
}

/* ------------------------------------------------------------------------ */
/* Fetching the small documents                                             */

/* A small document fetched whole. */
struct membuf {
	char *buf;
	size_t len;
};

/*
 * Fetches url into b (at most max bytes). Returns 0, or EXIT_USAGE after
 * printing why; `raise` names what lifts the cap, NULL when nothing does.
 */
static int fetch(const struct job_opts *o, const struct sstf_config *cfg,
                 const char *url, uint64_t max, const char *raise,
                 struct membuf *b)
{
	char err[1024] = "";
	int rc = remote_get(cfg, url, max, &b->buf, &b->len, err, sizeof(err));
	if (rc == 0)
		return 0;
	if (rc == -ENOMEM && !err[0])
		fprintf(stderr, PROG ": out of memory\n");
	else if (err[0]) /* sstf_get()'s message names the URL */
		fprintf(stderr, PROG ": job '%s': --pegasus: cannot fetch %s%s\n",
		        o->name, err, rc == -EFBIG && raise ? raise : "");
	else
		fprintf(stderr, PROG ": job '%s': --pegasus: cannot fetch %s: %s\n",
		        o->name, url, sstf_strerror(rc));
	return EXIT_USAGE;
}

/* base "/" suffix, malloc'd; NULL when out of memory. */
static char *join(const char *base, const char *suffix)
{
	size_t n = strlen(base) + 1 + strlen(suffix) + 1;
	char *s = malloc(n);
	if (s)
		snprintf(s, n, "%s/%s", base, suffix);
	return s;
}

/* Reads bulk_load_info. Returns 0, or EXIT_USAGE after printing why. */
static int parse_info(const struct job_opts *o, const char *url,
                      const struct membuf *b, struct pegasus *p)
{
	json_error_t e;
	json_t *root = json_loadb(b->buf ? b->buf : "", b->len, JSON_REJECT_DUPLICATES,
	                          &e);
	const char *why = NULL;
	json_t *id = NULL, *name = NULL, *count = NULL;

	if (!root) {
		fprintf(stderr,
		        PROG ": job '%s': --pegasus: %s: line %d, column %d (byte "
		        "%d): %s\n",
		        o->name, url, e.line, e.column, e.position, e.text);
		return EXIT_USAGE;
	}
	if (!json_is_object(root)) {
		why = "the top level must be an object";
	} else {
		id = json_object_get(root, "app_id");
		name = json_object_get(root, "app_name");
		count = json_object_get(root, "partition_count");
		if (!json_is_integer(id))
			why = "\"app_id\" must be an integer";
		else if (!json_is_string(name) ||
		         strlen(json_string_value(name)) != json_string_length(name))
			why = "\"app_name\" must be a string without NUL bytes";
		else if (!json_is_integer(count) || json_integer_value(count) < 1 ||
		         json_integer_value(count) > PEGASUS_MAX_PARTITIONS)
			why = "\"partition_count\" must be an integer from 1 to 65536";
	}
	if (why) {
		fprintf(stderr, PROG ": job '%s': --pegasus: %s: %s\n", o->name, url,
		        why);
		json_decref(root);
		return EXIT_USAGE;
	}
	p->app_id = (int64_t)json_integer_value(id);
	p->app_name = strdup(json_string_value(name));
	p->partition_count = (unsigned)json_integer_value(count);
	json_decref(root);
	if (!p->app_name) {
		fprintf(stderr, PROG ": out of memory\n");
		return EXIT_USAGE;
	}
	return 0;
}

/* Fetches, parses and checks partition pt's metadata. Returns 0, or
 * EXIT_USAGE after printing why. */
static int load_part(const struct job_opts *o, const struct sstf_config *cfg,
                     struct pegasus_part *pt)
{
	char err[1024] = "";
	struct membuf b = {0};
	char *url = join(pt->base_url, "bulk_load_metadata");
	if (!url) {
		fprintf(stderr, PROG ": out of memory\n");
		return EXIT_USAGE;
	}
	int rc = fetch(o, cfg, url, o->manifest_max,
	               "; raise --manifest_max=SIZE (manifest_max= in a job file)",
	               &b);
	if (rc == 0 && manifest_parse_mem(b.buf, b.len, url,
	                                  (enum manifest_verify)o->verify, &pt->m,
	                                  err, sizeof(err))) {
		fprintf(stderr, PROG ": job '%s': --pegasus: partition %u: %s\n",
		        o->name, pt->pidx, err);
		rc = EXIT_USAGE;
	}
	free(b.buf);
	if (rc == 0) {
		/* The engine's own entry checks, as sstf_submit() runs them. */
		struct sstf_batch batch = {
			.dest_dir = pt->dest,
			.files = pt->m->files,
			.nfiles = pt->m->nfiles,
			.errbuf = err,
			.errbuf_len = sizeof(err),
			.base_url = pt->base_url,
			.protocols = o->protocols,
		};
		err[0] = '\0';
		int crc = sstf_check_batch(&batch);
		if (crc) {
			fprintf(stderr, PROG ": job '%s': --pegasus: partition %u: %s: "
			        "%s%s%s\n",
			        o->name, pt->pidx, url, sstf_strerror(crc),
			        err[0] ? ": " : "", err);
			rc = EXIT_USAGE;
		}
	}
	free(url);
	return rc;
}

int pegasus_load(const struct job_opts *o, const struct sstf_config *cfg,
                 struct pegasus **out)
{
	struct pegasus *p = calloc(1, sizeof(*p));
	struct membuf b = {0};
	unsigned char *want = NULL;
	char *base = strdup(o->pegasus), *info = NULL;
	int rc = EXIT_USAGE;

	if (!p || !base)
		goto oom;
	/* ROOT/CLUSTER/APP/ names the same directory as ROOT/CLUSTER/APP. */
	for (size_t n = strlen(base); n > 0 && base[n - 1] == '/' &&
	     (n < 2 || base[n - 2] != '/'); n--)
		base[n - 1] = '\0';
	info = join(base, "bulk_load_info");
	if (!info)
		goto oom;
	if (fetch(o, cfg, info, PEGASUS_INFO_MAX, NULL, &b) ||
	    parse_info(o, info, &b, p))
		goto out;

	want = calloc(p->partition_count, 1);
	if (!want)
		goto oom;
	char why[256];
	if (parse_partitions(o->partitions ? o->partitions : "all",
	                     p->partition_count, info, want, why, sizeof(why))) {
		fprintf(stderr, PROG ": job '%s': --partitions=%s: %s\n", o->name,
		        o->partitions, why);
		goto out;
	}
	for (unsigned i = 0; i < p->partition_count; i++)
		p->nparts += want[i];
	p->parts = calloc(p->nparts, sizeof(*p->parts));
	if (!p->parts)
		goto oom;
	size_t k = 0;
	for (unsigned i = 0; i < p->partition_count; i++) {
		if (!want[i])
			continue;
		struct pegasus_part *pt = &p->parts[k++];
		char idx[16];
		snprintf(idx, sizeof(idx), "%u", i);
		pt->pidx = i;
		pt->dest = join(o->dest, idx);
		pt->base_url = join(base, idx);
		if (!pt->dest || !pt->base_url)
			goto oom;
		if (load_part(o, cfg, pt))
			goto out;
		p->nfiles += pt->m->nfiles;
		p->total_size += pt->m->total_size;
	}
	*out = p;
	p = NULL;
	rc = 0;
	goto out;
oom:
	fprintf(stderr, PROG ": out of memory\n");
out:
	pegasus_free(p);
	free(want);
	free(b.buf);
	free(info);
	free(base);
	return rc;
}

void pegasus_free(struct pegasus *p)
{
	if (!p)
		return;
	for (size_t i = 0; p->parts && i < p->nparts; i++) {
		manifest_free(p->parts[i].m);
		free(p->parts[i].dest);
		free(p->parts[i].base_url);
	}
	free(p->parts);
	free(p->app_name);
	free(p);
}
