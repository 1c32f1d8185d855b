/*
 * s3.c - the store's address, SigV4 through libcurl, and S3's XML answers.
 * See s3.h for why the path and query go out already canonical.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "s3.h"

/* An engine's (or one sstf_get()'s) S3 settings, resolved. */
struct sstf__s3 {
	char *scheme; /* "http" or "https" */
	char *host;   /* host[:port] of the endpoint */
	bool virtual_host;
	char *sigv4;   /* "aws:amz:REGION:s3"; NULL: anonymous */
	char *userpwd; /* "KEY:SECRET"; NULL: anonymous */
	size_t userpwd_len;
	struct curl_slist *headers;
};

#define AWS_DEFAULT_REGION "us-east-1"

/* Length of "http://" or "https://" at the start of url, else 0. */
static size_t web_prefix(const char *url)
{
	if (strncmp(url, "http://", 7) == 0)
		return 7;
	if (strncmp(url, "https://", 8) == 0)
		return 8;
	return 0;
}

int sstf__net_check(const struct sstf_config *c, char *errbuf, size_t len)
{
	/* curl only says "SSL certificate problem" for a CA file or
	 * directory it cannot use, long after: name it here. */
	struct stat st;
	if (c->ca_file) {
		if (!*c->ca_file)
			return sstf__bad_config(errbuf, len,
			                        "ca_file: empty; NULL for the system store");
		if (stat(c->ca_file, &st) < 0 || access(c->ca_file, R_OK) < 0)
			return sstf__bad_config(errbuf, len, "ca_file: '%.200s': %s", c->ca_file,
			                        strerror(errno));
		if (S_ISDIR(st.st_mode))
			return sstf__bad_config(
			    errbuf, len,
			    "ca_file: '%.200s' is a directory (a directory of hashed "
			    "certificates is ca_path)",
			    c->ca_file);
	}
	if (c->ca_path) {
		if (!*c->ca_path)
			return sstf__bad_config(errbuf, len, "ca_path: empty; NULL for none");
		if (stat(c->ca_path, &st) < 0)
			return sstf__bad_config(errbuf, len, "ca_path: '%.200s': %s", c->ca_path,
			                        strerror(errno));
		if (!S_ISDIR(st.st_mode))
			return sstf__bad_config(
			    errbuf, len,
			    "ca_path: '%.200s' is not a directory (a PEM file of CAs is "
			    "ca_file)",
			    c->ca_path);
	}
	const struct sstf_s3_config *s = c->s3;
	if (!s)
		return 0;
	for (size_t k = 0; k < sizeof(s->reserved) / sizeof(s->reserved[0]); k++)
		if (s->reserved[k])
			return sstf__bad_config(
			    errbuf, len,
			    "s3.reserved is not zero: zero the struct (a newer header "
			    "than this library?)");
	if (s->addressing > SSTF_S3_VIRTUAL)
		return sstf__bad_config(errbuf, len,
		                        "s3.addressing: SSTF_S3_ADDRESSING_AUTO, SSTF_S3_PATH or "
		                        "SSTF_S3_VIRTUAL");
	if (s->endpoint) {
		size_t p = web_prefix(s->endpoint);
		const char *host = s->endpoint + p;
		size_t hl = strcspn(host, "/?#@");
		if (!p || hl == 0 || host[hl] == '?' || host[hl] == '#' || host[hl] == '@' ||
		    (host[hl] == '/' && host[hl + 1] != '\0'))
			return sstf__bad_config(
			    errbuf, len,
			    "s3.endpoint \"%.200s\": an http:// or https:// URL of a "
			    "host, with an optional port and no path",
			    s->endpoint);
	}
	if (s->region) {
		if (!*s->region ||
		    strspn(s->region, "abcdefghijklmnopqrstuvwxyz0123456789-") != strlen(s->region))
			return sstf__bad_config(
			    errbuf, len,
			    "s3.region \"%.64s\": lower-case letters, digits and '-' "
			    "(\"us-east-1\")",
			    s->region);
	}
	if (!s->access_key_id) {
		if (s->secret_access_key || s->session_token)
			return sstf__bad_config(
			    errbuf, len,
			    "s3: a secret key or session token without an access key "
			    "id");
		return 0;
	}
	if (!*s->access_key_id || strchr(s->access_key_id, ':') ||
	    strpbrk(s->access_key_id, "\r\n"))
		return sstf__bad_config(errbuf, len,
		                        "s3.access_key_id: not empty, no ':' and no line break");
	/* The secret itself is never printed, not even in part. */
	if (!s->secret_access_key || !*s->secret_access_key)
		return sstf__bad_config(errbuf, len,
		                        "s3.secret_access_key: missing (the access key id is "
		                        "set)");
	if (strpbrk(s->secret_access_key, "\r\n"))
		return sstf__bad_config(errbuf, len, "s3.secret_access_key: holds a line break");
	if (s->session_token && (!*s->session_token || strpbrk(s->session_token, "\r\n")))
		return sstf__bad_config(errbuf, len,
		                        "s3.session_token: empty or holds a line break");
	return 0;
}

static char *dup_n(const struct sstf_allocator *a, const char *s, size_t n)
{
	char *d = sstf__alloc(a, n + 1);
	if (d) {
		memcpy(d, s, n);
		d[n] = '\0';
	}
	return d;
}

static char *dup_s(const struct sstf_allocator *a, const char *s)
{
	return s ? dup_n(a, s, strlen(s)) : NULL;
}

static int s3_init(struct sstf__s3 *s3, const struct sstf_allocator *a,
                   const struct sstf_s3_config *c)
{
	static const struct sstf_s3_config none = {0};
	if (!c)
		c = &none;
	const char *region = c->region ? c->region : AWS_DEFAULT_REGION;
	char buf[256];
	if (c->endpoint) {
		size_t p = web_prefix(c->endpoint);
		s3->scheme = dup_n(a, c->endpoint, p - 3);
		s3->host = dup_n(a, c->endpoint + p, strcspn(c->endpoint + p, "/"));
	} else {
		snprintf(buf, sizeof(buf), "s3.%s.amazonaws.com", region);
		s3->scheme = dup_s(a, "https");
		s3->host = dup_s(a, buf);
	}
	if (!s3->scheme || !s3->host)
		return -ENOMEM;
	s3->virtual_host = c->addressing == SSTF_S3_VIRTUAL ||
	                   (c->addressing == SSTF_S3_ADDRESSING_AUTO && !c->endpoint);
	if (!c->access_key_id)
		return 0;
	snprintf(buf, sizeof(buf), "aws:amz:%s:s3", region);
	s3->sigv4 = dup_s(a, buf);
	size_t kl = strlen(c->access_key_id), sl = strlen(c->secret_access_key);
	s3->userpwd_len = kl + 1 + sl;
	s3->userpwd = sstf__alloc(a, s3->userpwd_len + 1);
	if (!s3->sigv4 || !s3->userpwd)
		return -ENOMEM;
	memcpy(s3->userpwd, c->access_key_id, kl);
	s3->userpwd[kl] = ':';
	memcpy(s3->userpwd + kl + 1, c->secret_access_key, sl + 1);
	/* curl 7.88 does not add it for S3; it signs it with our headers. */
	s3->headers = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (!s3->headers)
		return -ENOMEM;
	if (c->session_token) {
		size_t tl = strlen(c->session_token);
		char *h = sstf__alloc(a, tl + 32);
		if (!h)
			return -ENOMEM;
		snprintf(h, tl + 32, "x-amz-security-token: %s", c->session_token);
		struct curl_slist *l = curl_slist_append(s3->headers, h);
		explicit_bzero(h, tl + 32);
		sstf__free(a, h);
		if (!l)
			return -ENOMEM;
		s3->headers = l;
	}
	return 0;
}

static void s3_fini(struct sstf__s3 *s3, const struct sstf_allocator *a)
{
	sstf__free(a, s3->scheme);
	sstf__free(a, s3->host);
	sstf__free(a, s3->sigv4);
	if (s3->userpwd) {
		explicit_bzero(s3->userpwd, s3->userpwd_len);
		sstf__free(a, s3->userpwd);
	}
	/* The token's header: wiped before curl frees it. */
	for (struct curl_slist *l = s3->headers; l; l = l->next)
		explicit_bzero(l->data, strlen(l->data));
	curl_slist_free_all(s3->headers);
}

int sstf__net_init(struct sstf__net *net, const struct sstf_allocator *a,
                   const struct sstf_config *c)
{
	memset(net, 0, sizeof(*net));
	net->s3 = sstf__alloc(a, sizeof(*net->s3));
	if (!net->s3)
		return -ENOMEM;
	memset(net->s3, 0, sizeof(*net->s3));
	net->ca_file = dup_s(a, c->ca_file);
	net->ca_path = dup_s(a, c->ca_path);
	if ((c->ca_file && !net->ca_file) || (c->ca_path && !net->ca_path) ||
	    s3_init(net->s3, a, c->s3) < 0) {
		sstf__net_fini(net, a);
		return -ENOMEM;
	}
	return 0;
}

void sstf__net_fini(struct sstf__net *net, const struct sstf_allocator *a)
{
	if (net->s3) {
		s3_fini(net->s3, a);
		sstf__free(a, net->s3);
	}
	sstf__free(a, net->ca_file);
	sstf__free(a, net->ca_path);
	memset(net, 0, sizeof(*net));
}

void sstf__net_easy(const struct sstf__net *net, CURL *easy)
{
	if (net->ca_file)
		curl_easy_setopt(easy, CURLOPT_CAINFO, net->ca_file);
	if (net->ca_path)
		curl_easy_setopt(easy, CURLOPT_CAPATH, net->ca_path);
}

void sstf__s3_sign(const struct sstf__s3 *s3, CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
	curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, s3->sigv4);
	curl_easy_setopt(easy, CURLOPT_USERPWD, s3->userpwd);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, s3->headers);
}

void sstf__s3_unsign(CURL *easy)
{
	curl_easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(easy, CURLOPT_PATH_AS_IS, 0L);
	curl_easy_setopt(easy, CURLOPT_AWS_SIGV4, NULL);
	curl_easy_setopt(easy, CURLOPT_USERPWD, NULL);
	curl_easy_setopt(easy, CURLOPT_HTTPHEADER, NULL);
}

long sstf__pct_decode(const char *s, size_t len, char *out)
{
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%') {
			out[n++] = s[i];
			continue;
		}
		if (i + 2 >= len)
			return -1;
		int hi = sstf__hexval(s[i + 1]), lo = sstf__hexval(s[i + 2]);
		if (hi < 0 || lo < 0)
			return -1;
		out[n++] = (char)(hi << 4 | lo);
		i += 2;
	}
	out[n] = '\0';
	return (long)n;
}

static bool unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

void sstf__s3_encode(const char *s, size_t len, bool keep_slash, char *out, size_t outlen,
                     size_t *n)
{
	static const char hex[] = "0123456789ABCDEF";
#define put(ch)                                                                                    \
	do {                                                                                       \
		if (*n + 1 < outlen)                                                               \
			out[*n] = (char)(ch);                                                      \
		(*n)++;                                                                            \
	} while (0)
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (unreserved(c) || (keep_slash && c == '/')) {
			put(c);
		} else {
			put('%');
			put(hex[c >> 4]);
			put(hex[c & 15]);
		}
	}
#undef put
}

const char *sstf__s3_split(const char *url, size_t *bucket_len)
{
	const char *b = url + 5; /* "s3://" */
	size_t bl = strcspn(b, "/");
	*bucket_len = bl;
	return b[bl] == '/' ? b + bl + 1 : b + bl;
}

int sstf__s3_url_check(const char *url, bool allow_empty_key, char *why, size_t whylen)
{
	const char *msg = NULL;
	if (strncasecmp(url, "s3://", 5) != 0) {
		msg = "not an s3:// URL";
	} else {
		size_t bl;
		const char *key = sstf__s3_split(url, &bl);
		const char *b = url + 5;
		if (bl == 0)
			msg = "no bucket: s3://BUCKET/KEY";
		else if (bl > 255 ||
		         strspn(
		             b,
		             "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_") <
		             bl)
			msg = "the bucket name holds a character S3 does not allow";
		else if (!*key && !allow_empty_key)
			msg = "no key: s3://BUCKET/KEY";
		else if (strpbrk(key, "?#"))
			msg = "'?' or '#' in the key: percent-encode it (%3F, %23)";
		else {
			for (const char *p = key; *p; p++)
				if (*p == '%' &&
				    (sstf__hexval(p[1]) < 0 || sstf__hexval(p[2]) < 0)) {
					msg = "bad percent-encoding in the key (a '%' must be "
					      "followed by two hex digits; '%25' is a '%')";
					break;
				}
		}
	}
	if (!msg)
		return 0;
	if (why && whylen)
		snprintf(why, whylen, "%s", msg);
	return -SSTF_EBADURL;
}

long sstf__s3_url(const struct sstf__s3 *s3, const char *url, const char *query, char *out,
                  size_t outlen)
{
	if (sstf__s3_url_check(url, query != NULL, NULL, 0) < 0)
		return -SSTF_EBADURL;
	size_t bl;
	const char *key = sstf__s3_split(url, &bl);
	const char *bucket = url + 5;
	size_t n = 0;
	int w;
	if (s3->virtual_host)
		w = snprintf(out, outlen, "%s://%.*s.%s/", s3->scheme, (int)bl, bucket, s3->host);
	else
		w = snprintf(out, outlen, "%s://%s/%.*s%s", s3->scheme, s3->host, (int)bl, bucket,
		             *key ? "/" : ""); /* a bucket's own URL has no '/' after it */
	n = (size_t)w;
	/* Decode, then encode canonically: "a%20b", "a b" and "a%2Bb" each
	 * name the key they spell. */
	for (const char *p = key; *p;) {
		char c = *p;
		if (c == '%') {
			c = (char)(sstf__hexval(p[1]) << 4 | sstf__hexval(p[2]));
			p += 3;
		} else {
			p++;
		}
		sstf__s3_encode(&c, 1, true, out, outlen, &n);
	}
	if (query) {
		size_t ql = strlen(query);
		if (n + 1 < outlen)
			out[n] = '?';
		n++;
		for (size_t i = 0; i < ql; i++, n++)
			if (n + 1 < outlen)
				out[n] = query[i];
	}
	if (outlen)
		out[n < outlen ? n : outlen - 1] = '\0';
	return (long)n;
}

long sstf__xml_text(const char *xml, size_t len, size_t *pos, const char *tag, char *out,
                    size_t outlen)
{
	char open[64], close[64];
	int ol = snprintf(open, sizeof(open), "<%s>", tag);
	int cl = snprintf(close, sizeof(close), "</%s>", tag);
	const char *end = xml + len;
	const char *s = memmem(xml + *pos, len - *pos, open, (size_t)ol);
	if (!s)
		return -1;
	s += ol;
	const char *e = memmem(s, (size_t)(end - s), close, (size_t)cl);
	if (!e)
		return -1;
	*pos = (size_t)(e - xml) + (size_t)cl;
	size_t n = 0;
	for (const char *p = s; p < e;) {
		unsigned long cp = (unsigned char)*p;
		size_t adv = 1;
		if (*p == '&') {
			const char *semi = memchr(p, ';', (size_t)(e - p));
			size_t el = semi ? (size_t)(semi - p) + 1 : 0;
			if (el == 5 && memcmp(p, "&amp;", 5) == 0)
				cp = '&';
			else if (el == 4 && memcmp(p, "&lt;", 4) == 0)
				cp = '<';
			else if (el == 4 && memcmp(p, "&gt;", 4) == 0)
				cp = '>';
			else if (el == 6 && memcmp(p, "&quot;", 6) == 0)
				cp = '"';
			else if (el == 6 && memcmp(p, "&apos;", 6) == 0)
				cp = '\'';
			else if (el > 3 && p[1] == '#') {
				char *stop;
				cp = p[2] == 'x' ? strtoul(p + 3, &stop, 16)
				                 : strtoul(p + 2, &stop, 10);
				if (stop != semi || cp == 0 || cp > 0x10FFFF)
					cp = '&', el = 1;
			} else {
				el = 1;
			}
			adv = el;
		}
		p += adv;
		/* A numeric reference is a code point: write its UTF-8. */
		unsigned char u[4];
		size_t ul;
		if (cp < 0x80 || adv == 1) {
			u[0] = (unsigned char)cp, ul = 1;
		} else if (cp < 0x800) {
			u[0] = (unsigned char)(0xC0 | cp >> 6),
			u[1] = (unsigned char)(0x80 | (cp & 63));
			ul = 2;
		} else if (cp < 0x10000) {
			u[0] = (unsigned char)(0xE0 | cp >> 12);
			u[1] = (unsigned char)(0x80 | (cp >> 6 & 63));
			u[2] = (unsigned char)(0x80 | (cp & 63));
			ul = 3;
		} else {
			u[0] = (unsigned char)(0xF0 | cp >> 18);
			u[1] = (unsigned char)(0x80 | (cp >> 12 & 63));
			u[2] = (unsigned char)(0x80 | (cp >> 6 & 63));
			u[3] = (unsigned char)(0x80 | (cp & 63));
			ul = 4;
		}
		for (size_t k = 0; k < ul; k++, n++)
			if (n + 1 < outlen)
				out[n] = (char)u[k];
	}
	if (outlen)
		out[n < outlen ? n : outlen - 1] = '\0';
	return (long)n;
}

/* Keeps a message printable on one line. */
static void one_line(char *s)
{
	for (; *s; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			*s = ' ';
}

int sstf__http_error_detail(long status, const char *body, size_t len, char *out, size_t outlen,
                            char *code, size_t codelen)
{
	char c[64] = "", m[256] = "";
	if (body && len && memmem(body, len, "<Error>", 7)) {
		size_t p = 0;
		if (sstf__xml_text(body, len, &p, "Code", c, sizeof(c)) < 0)
			c[0] = '\0';
		p = 0;
		if (sstf__xml_text(body, len, &p, "Message", m, sizeof(m)) < 0)
			m[0] = '\0';
		one_line(c);
		one_line(m);
	}
	if (code && codelen)
		snprintf(code, codelen, "%s", c);
	if (!c[0])
		return snprintf(out, outlen, "HTTP %ld", status);
	return snprintf(out, outlen, "HTTP %ld %s%s%s", status, c, m[0] ? ": " : "", m);
}
