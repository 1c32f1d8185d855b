/*
 * get.c - small objects outside the loop: sstf_get() and sstf_list().
 *
 * A manifest, a Pegasus bulk_load_metadata or a page of a listing is read
 * before any batch exists, often before an engine does. These calls block
 * the caller on one easy handle of their own (curl_easy_perform), with the
 * same options, TLS and S3 settings, error details and retry rules as the
 * loop's transfers (http.c, s3.c, stream.c's backoff), and no engine.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "internal.h"

/* Largest page of a listing we take: 1,000 keys of up to 1 KiB each, with
 * their XML, fit many times over. */
#define LIST_PAGE_MAX ((uint64_t)16 * 1024 * 1024)

struct get_call {
	const struct sstf_config *cfg; /* resolved */
	const struct sstf__net *net;
	uint64_t max_bytes;
	sstf_data_cb on_data;
	void *user;
	char *errbuf;
	size_t errbuf_len;

	/* One attempt. */
	CURL *easy;
	bool s3;
	bool checked;
	bool error_status;
	long status;
	uint64_t got;
	int stop;        /* why the write callback stopped curl: -EFBIG or
	                    what on_data returned */
	size_t ebody_len;
	char ebody[2048];
};

static int say(struct get_call *c, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int say(struct get_call *c, int err, const char *fmt, ...)
{
	if (c->errbuf && c->errbuf_len) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->errbuf, c->errbuf_len, fmt, ap);
		va_end(ap);
	}
	return err;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct get_call *c = ud;
	size_t len = size * nmemb;
	if (!c->checked) {
		c->checked = true;
		curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &c->status);
		c->error_status = c->status >= 400 || (c->s3 && c->status >= 300);
	}
	if (c->error_status) {
		size_t k = sizeof(c->ebody) - c->ebody_len;
		k = k < len ? k : len;
		memcpy(c->ebody + c->ebody_len, ptr, k);
		c->ebody_len += k;
		return k == len ? len : 0;
	}
	if (c->got + len > c->max_bytes) {
		c->stop = -EFBIG;
		return 0;
	}
	c->got += len;
	int r = c->on_data(c->user, ptr, len);
	if (r) {
		c->stop = r;
		return 0;
	}
	return len;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

/*
 * One GET of `url` (http(s):// or file://, already made an endpoint URL
 * when s3), retried as the loop retries. Returns 0, a negative error with
 * errbuf set, or what on_data returned.
 */
static int get_url(struct get_call *c, const char *url, bool s3, const char *shown)
{
	char err[CURL_ERROR_SIZE] = "";
	CURL *easy = curl_easy_init();
	if (!easy)
		return say(c, -ENOMEM, "out of memory");
	c->easy = easy;
	c->s3 = s3;
	sstf__http_easy_defaults(easy, c->cfg, c->net);
	curl_easy_setopt(easy, CURLOPT_URL, url);
	curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, err);
	curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_write);
	curl_easy_setopt(easy, CURLOPT_WRITEDATA, c);
	const char *protos = strncmp(url, "file:", 5) == 0    ? "file"
	                     : strncmp(url, "https:", 6) == 0 ? "https"
	                                                      : "http";
	curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, protos);
	/* A redirect may go from http to https, never to file://. */
	curl_easy_setopt(easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
	if (s3)
		sstf__s3_sign(c->net->s3, easy);

	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) != sizeof(seed))
		seed = sstf__now_ns();
	int ret = 0;
	for (unsigned tries = 0;; tries++) {
		c->checked = c->error_status = false;
		c->status = 0;
		c->got = 0;
		c->stop = 0;
		c->ebody_len = 0;
		err[0] = '\0';
		CURLcode rc = curl_easy_perform(easy);
		if (!c->checked)
			curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &c->status);
		bool is_error = c->status >= 400 || (s3 && c->status >= 300);
		char code[64] = "";
		bool again;
		if (c->stop) {
			ret = c->stop == -EFBIG
			              ? say(c, -EFBIG, "%s: longer than %" PRIu64 " bytes", shown,
			                    c->max_bytes)
			              : c->stop;
			break;
		} else if (is_error) {
			char d[512];
			sstf__http_error_detail(c->status, c->ebody, c->ebody_len, d, sizeof(d), code,
			                        sizeof(code));
			ret = say(c, -SSTF_EHTTP, "%s: %s", shown, d);
			again = sstf__http_transient(CURLE_OK, c->status, code);
		} else if (rc != CURLE_OK) {
			ret = say(c, -SSTF_ETRANSFER, "%s: %s", shown,
			          err[0] ? err : curl_easy_strerror(rc));
			again = sstf__http_transient(rc, 0, "");
		} else {
			ret = 0;
			break;
		}
		if (!again || tries >= (unsigned)c->cfg->max_retries)
			break;
		uint64_t delay = 0;
		curl_off_t after = 0;
		if (is_error && curl_easy_getinfo(easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK &&
		    after > 0) {
			if ((uint64_t)after * 1000u > SSTF__RETRY_AFTER_CAP_MS)
				break; /* the origin's error stands */
			delay = (uint64_t)after * 1000u;
		} else {
			seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
			delay = seed % (sstf__backoff_cap_ms(tries) + 1);
		}
		sleep_ms(delay);
		/* What the failed attempt delivered is void. */
		int r = c->got ? c->on_data(c->user, NULL, 0) : 0;
		if (r) {
			ret = r;
			break;
		}
	}
	if (ret == 0 && c->errbuf && c->errbuf_len)
		c->errbuf[0] = '\0';
	curl_easy_cleanup(easy);
	c->easy = NULL;
	return ret;
}

/* Sets up c for a call: the resolved config and the network settings. */
static int call_init(struct get_call *c, struct sstf_config *cfg, struct sstf__net *net,
                     const struct sstf_config *config, char *errbuf, size_t errbuf_len)
{
	static const struct sstf_allocator libc = {0};
	memset(c, 0, sizeof(*c));
	c->errbuf = errbuf;
	c->errbuf_len = errbuf_len;
	if (config)
		*cfg = *config;
	else
		memset(cfg, 0, sizeof(*cfg));
	char why[256];
	if (sstf__config_resolve(cfg, why, sizeof(why)) < 0)
		return say(c, -EINVAL, "bad configuration: %s", why);
	if (sstf__curl_global_init() < 0)
		return say(c, -ENOMEM, "libcurl's global setup failed");
	int r = sstf__net_init(net, cfg->allocator ? cfg->allocator : &libc, cfg);
	if (r < 0)
		return say(c, r, "out of memory");
	c->cfg = cfg;
	c->net = net;
	return 0;
}

static void call_fini(struct sstf__net *net, const struct sstf_config *cfg)
{
	static const struct sstf_allocator libc = {0};
	sstf__net_fini(net, cfg->allocator ? cfg->allocator : &libc);
}

/* The URL curl fetches for `url`, in a malloc'd string; s3:// made the
 * store's, with `query`. */
static char *endpoint_url(const struct sstf__net *net, const char *url, const char *query,
                          bool *s3)
{
	*s3 = sstf__url_scheme(url) == SSTF__SCHEME_S3;
	if (!*s3)
		return strdup(url);
	long n = sstf__s3_url(net->s3, url, query, NULL, 0);
	if (n < 0)
		return NULL;
	char *u = malloc((size_t)n + 1);
	if (u)
		sstf__s3_url(net->s3, url, query, u, (size_t)n + 1);
	return u;
}

static int check_url(struct get_call *c, const char *url, unsigned allow, bool listing)
{
	char why[160];
	unsigned scheme = url ? sstf__url_scheme(url) : 0;
	if (!(scheme & allow))
		return say(c, -SSTF_EBADURL, "\"%.200s\": %s", url ? url : "(null)",
		           listing ? "not an s3://BUCKET/PREFIX URL"
		                   : "the scheme must be http://, https://, file:// or s3://");
	if (scheme == SSTF__SCHEME_S3 && sstf__s3_url_check(url, listing, why, sizeof(why)) < 0)
		return say(c, -SSTF_EBADURL, "\"%.200s\": %s", url, why);
	return 0;
}

int sstf_get(const struct sstf_config *config, const char *url, uint64_t max_bytes,
             sstf_data_cb on_data, void *user, char *errbuf, size_t errbuf_len)
{
	struct get_call c;
	struct sstf_config cfg;
	struct sstf__net net;
	if (!on_data)
		return -EINVAL;
	int r = call_init(&c, &cfg, &net, config, errbuf, errbuf_len);
	if (r < 0)
		return r;
	r = check_url(&c, url,
	              SSTF__SCHEME_HTTP | SSTF__SCHEME_HTTPS | SSTF__SCHEME_FILE | SSTF__SCHEME_S3,
	              false);
	if (r == 0) {
		bool s3;
		char *u = endpoint_url(&net, url, NULL, &s3);
		if (!u) {
			r = say(&c, -ENOMEM, "out of memory");
		} else {
			c.max_bytes = max_bytes;
			c.on_data = on_data;
			c.user = user;
			r = get_url(&c, u, s3, url);
			free(u);
		}
	}
	call_fini(&net, &cfg);
	return r;
}

/* A page of a listing, gathered whole. */
struct page {
	char *buf;
	size_t len, cap;
};

static int page_data(void *user, const void *data, size_t len)
{
	struct page *p = user;
	if (!data) {
		p->len = 0; /* a retry starts over */
		return 0;
	}
	if (p->len + len + 1 > p->cap) {
		size_t cap = p->cap ? p->cap : 64 * 1024;
		while (cap < p->len + len + 1)
			cap *= 2;
		char *b = realloc(p->buf, cap);
		if (!b)
			return -ENOMEM;
		p->buf = b;
		p->cap = cap;
	}
	memcpy(p->buf + p->len, data, len);
	p->len += len;
	return 0;
}

/* Appends "&name=value" to q at *n, the value canonically encoded,
 * snprintf-style. */
static void query_param(char *q, size_t cap, size_t *n, const char *name, const char *value)
{
	for (const char *p = *n ? "&" : ""; *p; p++, (*n)++)
		if (*n + 1 < cap)
			q[*n] = *p;
	sstf__s3_encode(name, strlen(name), false, q, cap, n);
	if (*n + 1 < cap)
		q[*n] = '=';
	(*n)++;
	sstf__s3_encode(value, strlen(value), false, q, cap, n);
	if (cap)
		q[*n < cap ? *n : cap - 1] = '\0';
}

int sstf_list(const struct sstf_config *config, const char *url, sstf_object_cb on_object,
              void *user, char *errbuf, size_t errbuf_len)
{
	struct get_call c;
	struct sstf_config cfg;
	struct sstf__net net;
	if (!on_object)
		return -EINVAL;
	int r = call_init(&c, &cfg, &net, config, errbuf, errbuf_len);
	if (r < 0)
		return r;
	r = check_url(&c, url, SSTF__SCHEME_S3, true);
	size_t bl;
	const char *enc_prefix = r == 0 ? sstf__s3_split(url, &bl) : NULL;
	char *prefix = NULL, *bucket_url = NULL, *token = NULL, *key = NULL;
	struct page page = {0};
	if (r == 0) {
		prefix = malloc(strlen(enc_prefix) + 1);
		bucket_url = malloc(bl + 7);
		token = malloc(4096);
		key = malloc(4096);
		if (!prefix || !bucket_url || !token || !key) {
			r = say(&c, -ENOMEM, "out of memory");
		} else {
			sstf__pct_decode(enc_prefix, strlen(enc_prefix), prefix);
			snprintf(bucket_url, bl + 7, "s3://%.*s", (int)bl, url + 5);
			token[0] = '\0';
		}
	}
	for (unsigned pages = 0; r == 0; pages++) {
		/* Parameters in SigV4's order: sorted by name. */
		size_t cap = 3 * (strlen(prefix) + strlen(token)) + 128, n = 0;
		char *q = malloc(cap);
		if (!q) {
			r = say(&c, -ENOMEM, "out of memory");
			break;
		}
		q[0] = '\0';
		if (token[0])
			query_param(q, cap, &n, "continuation-token", token);
		query_param(q, cap, &n, "list-type", "2");
		query_param(q, cap, &n, "prefix", prefix);
		bool s3;
		char *u = endpoint_url(&net, bucket_url, q, &s3);
		free(q);
		if (!u) {
			r = say(&c, -ENOMEM, "out of memory");
			break;
		}
		page.len = 0;
		c.max_bytes = LIST_PAGE_MAX;
		c.on_data = page_data;
		c.user = &page;
		r = get_url(&c, u, true, url);
		free(u);
		if (r)
			break;
		/* Each <Contents> holds one object's <Key> and <Size>. */
		size_t pos = 0;
		char size_s[32];
		for (;;) {
			size_t at = pos;
			if (sstf__xml_text(page.buf, page.len, &at, "Contents", NULL, 0) < 0)
				break;
			size_t end = at; /* past </Contents> */
			size_t k = pos;
			if (sstf__xml_text(page.buf, end, &k, "Key", key, 4096) < 0 ||
			    sstf__xml_text(page.buf, end, &k, "Size", size_s, sizeof(size_s)) < 0) {
				r = say(&c, -SSTF_ETRANSFER, "%s: a listing entry without Key or Size",
				        url);
				break;
			}
			char *stop;
			errno = 0;
			unsigned long long sz = strtoull(size_s, &stop, 10);
			if (errno || *stop || stop == size_s) {
				r = say(&c, -SSTF_ETRANSFER, "%s: bad Size \"%s\" of \"%s\"", url,
				        size_s, key);
				break;
			}
			struct sstf_object obj = {.key = key, .size = sz};
			r = on_object(user, &obj);
			if (r)
				break;
			pos = end;
		}
		if (r)
			break;
		char trunc[16] = "";
		size_t p0 = 0;
		sstf__xml_text(page.buf, page.len, &p0, "IsTruncated", trunc, sizeof(trunc));
		if (strcmp(trunc, "true") != 0)
			break;
		p0 = 0;
		if (sstf__xml_text(page.buf, page.len, &p0, "NextContinuationToken", token, 4096) <= 0) {
			r = say(&c, -SSTF_ETRANSFER,
			        "%s: a truncated listing without NextContinuationToken", url);
			break;
		}
	}
	free(page.buf);
	free(prefix);
	free(bucket_url);
	free(token);
	free(key);
	call_fini(&net, &cfg);
	return r;
}
