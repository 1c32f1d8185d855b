/*
 * names.c - the rules a file name must follow before the engine creates it.
 *
 * These run at submit, in the caller's thread, before anything touches the
 * disk: a name that could escape the destination directory or overflow a
 * path buffer never reaches the loop.
 */
#include "names.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "sstfetch.h"

static int refuse(char *msg, size_t msglen, const char *why)
{
	if (msg && msglen)
		snprintf(msg, msglen, "%s", why);
	return -SSTF_EBADENTRY;
}

int sstf__name_check(const char *name, size_t len, char *msg, size_t msglen)
{
	if (!name)
		return refuse(msg, msglen, "missing name");
	if (strnlen(name, len + 1) != len)
		return refuse(msg, msglen, "name contains a NUL byte");
	if (len == 0)
		return refuse(msg, msglen, "empty name");
	if (len > PATH_MAX - 1)
		return refuse(msg, msglen, "name longer than PATH_MAX - 1 bytes");
	if (name[0] == '/')
		return refuse(msg, msglen,
		              "absolute path; names must be relative to the destination");

	const char *p = name;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0)
			return refuse(msg, msglen, "empty path component ('//' or trailing '/')");
		if (clen > NAME_MAX)
			return refuse(msg, msglen, "path component longer than NAME_MAX bytes");
		if (clen == 2 && p[0] == '.' && p[1] == '.')
			return refuse(msg, msglen, "'..' component; names may not leave the destination");
		if (clen == 1 && p[0] == '.')
			return refuse(msg, msglen, "'.' component");
		if (clen >= sizeof(SSTF__NAMESPACE) - 1 &&
		    memcmp(p, SSTF__NAMESPACE, sizeof(SSTF__NAMESPACE) - 1) == 0)
			return refuse(msg, msglen,
			              "a component starts with \"" SSTF__NAMESPACE
			              "\", the engine's own namespace for its "
			              "temporary files");
		if (!slash)
			break;
		p = slash + 1;
		if (!*p)
			return refuse(msg, msglen, "empty path component ('//' or trailing '/')");
	}
	return 0;
}

/* The URL schemes some source serves: the built-in ones, then those of
 * sources added with sstf__source_add() (tests), each one bit. */
#define MAX_SCHEMES 16
static struct {
	const char *name; /* as written before "://" */
	unsigned bit;
} schemes[MAX_SCHEMES] = {
	{"http", SSTF__SCHEME_HTTP},
	{"https", SSTF__SCHEME_HTTPS},
	{"file", SSTF__SCHEME_FILE},
	{"s3", SSTF__SCHEME_S3},
};
static size_t nschemes = 4;

unsigned sstf__scheme_add(const char *name)
{
	for (size_t i = 0; i < nschemes; i++)
		if (strcasecmp(schemes[i].name, name) == 0)
			return schemes[i].bit;
	if (nschemes == MAX_SCHEMES)
		return 0;
	schemes[nschemes].name = name;
	schemes[nschemes].bit = 1u << nschemes;
	return schemes[nschemes++].bit;
}

unsigned sstf__scheme_all(void)
{
	return (1u << nschemes) - 1;
}

unsigned sstf__url_scheme(const char *url)
{
	for (size_t i = 0; i < nschemes; i++) {
		size_t n = strlen(schemes[i].name);
		if (strncasecmp(url, schemes[i].name, n) == 0 && strncmp(url + n, "://", 3) == 0)
			return schemes[i].bit;
	}
	return 0;
}

const char *sstf__scheme_name(unsigned bit)
{
	for (size_t i = 0; i < nschemes; i++)
		if (schemes[i].bit == bit)
			return schemes[i].name;
	return "?";
}

int sstf__protocols_parse(const char *list, unsigned *mask, char *msg,
                          size_t msglen)
{
	unsigned m = 0;
	const char *p = list;
	for (;;) {
		size_t n = strcspn(p, ",");
		/* Spaces around a word are allowed, as curl allows them. */
		const char *w = p;
		size_t wn = n;
		while (wn && (*w == ' ' || *w == '\t')) {
			w++;
			wn--;
		}
		while (wn && (w[wn - 1] == ' ' || w[wn - 1] == '\t'))
			wn--;
		unsigned bit = 0;
		if (wn == 3 && strncasecmp(w, "all", 3) == 0)
			bit = sstf__scheme_all();
		for (size_t i = 0; i < nschemes && !bit; i++)
			if (strlen(schemes[i].name) == wn && strncasecmp(w, schemes[i].name, wn) == 0)
				bit = schemes[i].bit;
		if (!bit) {
			if (msg && msglen)
				snprintf(msg, msglen,
				         "protocols: unknown scheme \"%.*s\" (http, https, file, "
				         "s3 or all, comma-separated)",
				         (int)(wn > 32 ? 32 : wn), w);
			return -SSTF_EBADENTRY;
		}
		m |= bit;
		if (p[n] == '\0')
			break;
		p += n + 1;
	}
	*mask = m;
	return 0;
}

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' || c == '~';
}

size_t sstf__url_join(const char *base_url, const char *name, char *out,
                      size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t blen = strlen(base_url);
	/* Keep "scheme://" whole: "file:///" joined to "a" is "file:///a". */
	const char *sep = strstr(base_url, "://");
	size_t keep = sep ? (size_t)(sep - base_url) + 3 : 0;
	while (blen > keep && base_url[blen - 1] == '/')
		blen--;

	size_t n = 0;
	/* put() writes what fits and always counts, like snprintf. */
#define put(ch)                                 \
	do {                                    \
		if (n + 1 < outlen)             \
			out[n] = (char)(ch);    \
		n++;                            \
	} while (0)
	for (size_t k = 0; k < blen; k++)
		put(base_url[k]);
	put('/');
	for (const unsigned char *q = (const unsigned char *)name; *q; q++) {
		if (unreserved(*q) || *q == '/') {
			put(*q);
		} else {
			put('%');
			put(hex[*q >> 4]);
			put(hex[*q & 15]);
		}
	}
#undef put
	if (outlen)
		out[n < outlen ? n : outlen - 1] = '\0';
	return n;
}
