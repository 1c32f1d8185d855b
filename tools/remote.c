/*
 * remote.c - a manifest fetched from a URL, and the listing of an S3
 * prefix as a manifest; see remote.h.
 */
#include "remote.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "report.h"

bool remote_is_url(const char *m)
{
	return m && (strncasecmp(m, "http://", 7) == 0 || strncasecmp(m, "https://", 8) == 0 ||
	             strncasecmp(m, "file://", 7) == 0 || strncasecmp(m, "s3://", 5) == 0);
}

/* ------------------------------------------------------------------------ */
/* A manifest from a URL                                                    */

struct membuf {
	char *buf;
	size_t len, cap;
};

static int on_data(void *user, const void *data, size_t len)
{
	struct membuf *b = user;
	if (!data) {
		b->len = 0; /* a retry starts over */
		return 0;
	}
	if (len > b->cap - b->len) {
		size_t cap = b->cap ? b->cap : 64 * 1024;
		while (cap - b->len < len) {
			if (cap > SIZE_MAX / 2)
				return -ENOMEM;
			cap *= 2;
		}
		char *nb = realloc(b->buf, cap);
		if (!nb)
			return -ENOMEM;
		b->buf = nb;
		b->cap = cap;
	}
	memcpy(b->buf + b->len, data, len);
	b->len += len;
	return 0;
}

int remote_get(const struct sstf_config *cfg, const char *url, uint64_t max, char **buf,
               size_t *len, char *err, size_t errlen)
{
	struct membuf b = {0};
	err[0] = '\0';
	int rc = sstf_get(cfg, url, max, on_data, &b, err, errlen);
	if (rc) {
		free(b.buf);
		b.buf = NULL;
		b.len = 0;
	}
	*buf = b.buf;
	*len = b.len;
	return rc;
}

int remote_manifest(const struct job_opts *o, const struct sstf_config *cfg,
                    enum manifest_verify verify, struct manifest **out)
{
	struct membuf b = {0};
	char err[1024] = "";
	int rc = remote_get(cfg, o->manifest, o->manifest_max, &b.buf, &b.len, err, sizeof(err));
	if (rc == -EFBIG) {
		char cap[32];
		report_human((double)o->manifest_max, 1, "B", cap, sizeof(cap));
		fprintf(stderr,
		        PROG ": job '%s': --manifest=%s: longer than the %s (%" PRIu64
		        " bytes) a manifest fetched from a URL may take; raise "
		        "--manifest_max=SIZE (manifest_max= in a job file)\n",
		        o->name, o->manifest, cap, o->manifest_max);
	} else if (rc == -ENOMEM && !err[0]) {
		fprintf(stderr, PROG ": out of memory\n");
	} else if (rc) {
		fprintf(stderr, PROG ": job '%s': cannot fetch the manifest: %s\n", o->name,
		        err[0] ? err : sstf_strerror(rc));
	}
	if (rc) {
		free(b.buf);
		return EXIT_USAGE;
	}
	rc = manifest_parse_mem(b.buf, b.len, o->manifest, verify, out, err, sizeof(err));
	free(b.buf);
	if (rc) {
		fprintf(stderr, PROG ": job '%s': %s\n", o->name, err);
		return EXIT_USAGE;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* The listing of a prefix                                                  */

char *remote_list_url(const char *source)
{
	size_t n = strlen(source);
	const char *path = strchr(source + 5, '/'); /* after "s3://BUCKET" */
	int add = path ? path[1] != '\0' && source[n - 1] != '/' : 1;
	char *u = malloc(n + 2);
	if (u)
		snprintf(u, n + 2, "%s%s", source, add ? "/" : "");
	return u;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9'   ? c - '0'
	       : c >= 'a' && c <= 'f' ? c - 'a' + 10
	       : c >= 'A' && c <= 'F' ? c - 'A' + 10
	                              : -1;
}

struct lister {
	struct manifest *m;
	const char *prefix; /* decoded */
	size_t plen;
	uint64_t markers;
	int err;
};

static int on_object(void *user, const struct sstf_object *obj)
{
	struct lister *l = user;
	size_t klen = strlen(obj->key);
	if (klen < l->plen || memcmp(obj->key, l->prefix, l->plen) != 0)
		return 0; /* not under the prefix: S3 never sends one */
	const char *name = obj->key + l->plen;
	size_t nlen = klen - l->plen;
	if (nlen == 0 || name[nlen - 1] == '/') {
		l->markers++;
		return 0;
	}
	int rc = manifest_add(l->m, name, nlen, obj->size);
	if (rc)
		l->err = rc;
	return rc;
}

int remote_list(const struct job_opts *o, const struct sstf_config *cfg,
                struct manifest **out)
{
	char err[1024] = "";
	struct lister l = {0};
	char *url = remote_list_url(o->source);
	const char *path = url ? strchr(url + 5, '/') : NULL;
	char *prefix = url ? malloc(strlen(url) + 1) : NULL;
	l.m = manifest_new();
	if (!url || !prefix || !l.m) {
		free(url);
		free(prefix);
		manifest_free(l.m);
		fprintf(stderr, PROG ": out of memory\n");
		return EXIT_USAGE;
	}
	/* The prefix as the listing's keys spell it: decoded, as the engine
	 * decodes a key. A bad escape is sstf_list()'s to refuse. */
	size_t n = 0;
	for (const char *p = path ? path + 1 : ""; *p; p++) {
		int hi, lo;
		if (*p == '%' && (hi = hexval(p[1])) >= 0 && (lo = hexval(p[2])) >= 0) {
			prefix[n++] = (char)(hi << 4 | lo);
			p += 2;
		} else {
			prefix[n++] = *p;
		}
	}
	prefix[n] = '\0';
	l.prefix = prefix;
	l.plen = n;

	int rc = sstf_list(cfg, url, on_object, &l, err, sizeof(err));
	if (rc) {
		if (l.err == -ENOMEM)
			fprintf(stderr, PROG ": out of memory\n");
		else if (l.err)
			fprintf(stderr, PROG ": job '%s': --list %s: the objects' sizes add up "
			                "to more than 2^64 - 1 bytes\n", o->name, url);
		else
			fprintf(stderr, PROG ": job '%s': --list: cannot list %s\n", o->name,
			        err[0] ? err : sstf_strerror(rc));
		manifest_free(l.m);
		l.m = NULL;
	} else if (l.m->nfiles == 0) {
		fprintf(stderr, PROG ": job '%s': warning: --list: no objects under %s%s\n",
		        o->name, url, l.markers ? " (only folder markers)" : "");
	}
	free(url);
	free(prefix);
	*out = l.m;
	return rc ? EXIT_USAGE : 0;
}
