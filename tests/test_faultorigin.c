/*
 * Description: the fault-injecting origin (support/faultorigin.c) does what
 * its header says, seen from libcurl's easy API and from raw sockets: plain
 * and ranged GETs are byte-identical slices with the right status and
 * headers; HEAD, keep-alive, pipelining and "Connection: close" behave;
 * missing files and ".." paths are refused; each fault gives the client
 * what a real broken origin would (a reset, a short body, one flipped byte,
 * 503 or 429 with Retry-After in seconds or as an HTTP-date, 404, a stall, a
 * slow body, ranges ignored) for the first K requests only; counts are
 * exact, also under concurrent clients; the request log has each request's
 * range, Host, status and times, complete once the client has the head;
 * the served-bytes counter counts file bytes sent, per origin; stop ends
 * stalled, slow, idle and non-reading connections and leaves no leak.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "support/child.h"
#include "support/dataset.h"
#include "support/faultorigin.h"
#include "support/sanitizers.h"

#define GUARD_S 120       /* hang guard of every transfer; nothing is measured */
#define GUARD_MS 60000    /* hang guard of the waits for another thread */
#define KIB 1024ull
#define MIB (1024ull * 1024ull)

/* The fixture's files, by index. */
enum { F_EMPTY, F_ONE, F_SMALL, F_MID, F_BIG, F_SPACE, F_NESTED, NFILES };

static const char *const names[NFILES] = {
	"000000.sst", "000001.sst", "000002.sst", "000003.sst", "000004.sst",
	"a b.sst", "d/e/f.sst",
};
/* URL paths of the files: "a b.sst" is asked for percent-encoded. */
static const char *const url_paths[NFILES] = {
	"/000000.sst", "/000001.sst", "/000002.sst", "/000003.sst", "/000004.sst",
	"/a%20b.sst", "/d/e/f.sst",
};
/* The decoded paths the origin counts and matches faults on. */
static const char *const paths[NFILES] = {
	"/000000.sst", "/000001.sst", "/000002.sst", "/000003.sst", "/000004.sst",
	"/a b.sst", "/d/e/f.sst",
};
static const uint64_t sizes[NFILES] = {
	0, 1, 4097, MIB + 3, 3 * MIB + 5, 70000, 12345,
};

static struct dataset ds;
static struct fault_origin *fo;
static unsigned char *content[NFILES]; /* each file's bytes, read back */

static unsigned char *slurp(const char *path, uint64_t size)
{
	unsigned char *buf = malloc(size ? size : 1);
	cr_assert_not_null(buf);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	cr_assert_geq(fd, 0, "open %s: %s", path, strerror(errno));
	uint64_t got = 0;
	while (got < size) {
		ssize_t n = pread(fd, buf + got, size - got, (off_t)got);
		cr_assert_gt(n, 0, "read %s", path);
		got += (uint64_t)n;
	}
	close(fd);
	return buf;
}

static void setup(void)
{
	cr_assert_eq(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
	cr_assert_eq(ds_create(&ds, "faultorigin", NFILES, names, sizes, 0xfa17), 0);
	for (size_t i = 0; i < NFILES; i++)
		content[i] = slurp(ds.files[i].path, sizes[i]);
	int err = fault_origin_start(ds.dir, &fo);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
}

static void teardown(void)
{
	fault_origin_stop(fo);
	fo = NULL;
	for (size_t i = 0; i < NFILES; i++) {
		free(content[i]);
		content[i] = NULL;
	}
	ds_destroy(&ds);
	curl_global_cleanup();
}

TestSuite(faultorigin, .init = setup, .fini = teardown, .timeout = 600);

/* Stops the origin inside the test and fails it if that leaked. */
static void stop_checked(void)
{
	fault_origin_stop(fo);
	fo = NULL;
	cr_expect_eq(sanitizer_leak_check(), 0,
	             "LeakSanitizer: leaks after fault_origin_stop (report above)");
}

/* ------------------------------------------------------------------------ */
/* A transfer with libcurl's easy API                                       */

struct opts {
	curl_off_t resume;   /* CURLOPT_RESUME_FROM_LARGE ("Range: bytes=N-") */
	const char *range;   /* CURLOPT_RANGE, e.g. "100-199" */
	int nobody;          /* HEAD */
	int failonerror;
	long low_speed;      /* CURLOPT_LOW_SPEED_LIMIT over 1 s; 0: off */
	int conn_close;      /* send "Connection: close" */
	int as_is;           /* CURLOPT_PATH_AS_IS: keep ".." in the URL */
	long timeout_s;      /* hang guard; 0: GUARD_S */
	struct fault_origin *origin; /* NULL: fo */
};

struct xfer {
	CURLcode rc;
	long status;
	long new_conns;          /* CURLINFO_NUM_CONNECTS */
	curl_off_t clen;         /* Content-Length, -1 when none */
	curl_off_t retry_after;  /* CURLINFO_RETRY_AFTER */
	unsigned char *body;
	size_t len, cap;
	atomic_size_t seen;      /* body bytes so far, for other threads */
	char hdr[8192];          /* every header line received, concatenated */
	size_t hlen;
};

/* Field by field: another thread may be reading x->seen already. */
static void xfer_init(struct xfer *x)
{
	x->rc = CURLE_OK;
	x->status = x->new_conns = 0;
	x->clen = x->retry_after = 0;
	x->body = NULL;
	x->len = x->cap = x->hlen = 0;
	x->hdr[0] = '\0';
	atomic_store(&x->seen, 0);
}

static void xfer_free(struct xfer *x)
{
	free(x->body);
	x->body = NULL;
}

static size_t on_body(char *p, size_t sz, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = sz * n;
	if (x->len + len > x->cap) {
		size_t cap = x->cap ? x->cap : 65536;
		while (cap < x->len + len)
			cap *= 2;
		unsigned char *b = realloc(x->body, cap);
		if (!b)
			return 0;
		x->body = b;
		x->cap = cap;
	}
	memcpy(x->body + x->len, p, len);
	x->len += len;
	atomic_store(&x->seen, x->len);
	return len;
}

static size_t on_header(char *p, size_t sz, size_t n, void *arg)
{
	struct xfer *x = arg;
	size_t len = sz * n;
	size_t room = sizeof(x->hdr) - 1 - x->hlen;
	size_t take = len < room ? len : room;
	memcpy(x->hdr + x->hlen, p, take);
	x->hlen += take;
	x->hdr[x->hlen] = '\0';
	return len;
}

/* Copies the value of header `name` of the last response into out; 1 if
 * found, 0 if not. */
static int header(const struct xfer *x, const char *name, char *out, size_t outlen)
{
	int found = 0;
	size_t nl = strlen(name);
	for (const char *line = x->hdr; *line;) {
		size_t ll = strcspn(line, "\r\n");
		if (ll >= 4 && strncmp(line, "HTTP/", 5) == 0)
			found = 0; /* a new response starts */
		if (ll > nl && strncasecmp(line, name, nl) == 0 && line[nl] == ':') {
			const char *v = line + nl + 1;
			while (*v == ' ')
				v++;
			size_t vl = (size_t)(line + ll - v);
			if (vl >= outlen)
				vl = outlen - 1;
			memcpy(out, v, vl);
			out[vl] = '\0';
			found = 1;
		}
		line += ll;
		while (*line == '\r' || *line == '\n')
			line++;
	}
	return found;
}

/* One request for url_path on handle h (a fresh handle when NULL). */
static void fetch_on(CURL *h, const char *url_path, const struct opts *op, struct xfer *x)
{
	static const struct opts none;
	if (!op)
		op = &none;
	int own = h == NULL;
	if (own)
		h = curl_easy_init();
	cr_assert_not_null(h);
	curl_easy_reset(h);
	char *url = ds_strfmt("%s%s", fault_origin_url(op->origin ? op->origin : fo), url_path);
	cr_assert_not_null(url);
	struct curl_slist *hdrs = NULL;
	if (op->conn_close) {
		hdrs = curl_slist_append(NULL, "Connection: close");
		cr_assert_not_null(hdrs);
	}
	xfer_init(x);
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(h, CURLOPT_HEADERDATA, x);
	curl_easy_setopt(h, CURLOPT_TIMEOUT, op->timeout_s ? op->timeout_s : (long)GUARD_S);
	curl_easy_setopt(h, CURLOPT_FAILONERROR, (long)op->failonerror);
	curl_easy_setopt(h, CURLOPT_NOBODY, (long)op->nobody);
	curl_easy_setopt(h, CURLOPT_PATH_AS_IS, (long)op->as_is);
	if (op->resume)
		curl_easy_setopt(h, CURLOPT_RESUME_FROM_LARGE, op->resume);
	if (op->range)
		curl_easy_setopt(h, CURLOPT_RANGE, op->range);
	if (op->low_speed) {
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, op->low_speed);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, 1L);
	}
	if (hdrs)
		curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
	x->rc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &x->status);
	curl_easy_getinfo(h, CURLINFO_NUM_CONNECTS, &x->new_conns);
	curl_easy_getinfo(h, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &x->clen);
	curl_easy_getinfo(h, CURLINFO_RETRY_AFTER, &x->retry_after);
	curl_slist_free_all(hdrs);
	free(url);
	if (own)
		curl_easy_cleanup(h);
}

static void fetch(const char *url_path, const struct opts *op, struct xfer *x)
{
	fetch_on(NULL, url_path, op, x);
}

/* Asserts that x got exactly bytes [off, off + len) of file i. */
static void expect_slice(const struct xfer *x, size_t i, uint64_t off, uint64_t len)
{
	cr_assert_eq(x->len, len, "%s: got %zu body bytes, want %llu", names[i], x->len,
	             (unsigned long long)len);
	cr_assert(len == 0 || memcmp(x->body, content[i] + off, len) == 0,
	          "%s: body differs from file bytes [%llu, %llu)", names[i],
	          (unsigned long long)off, (unsigned long long)(off + len));
}

/* Asserts that x is a clean 200 with the whole of file i. */
static void expect_whole(const struct xfer *x, size_t i)
{
	cr_assert_eq(x->rc, CURLE_OK, "%s: %s", names[i], curl_easy_strerror(x->rc));
	cr_assert_eq(x->status, 200, "%s: status %ld", names[i], x->status);
	cr_assert_eq(x->clen, (curl_off_t)sizes[i]);
	expect_slice(x, i, 0, sizes[i]);
}

/* ------------------------------------------------------------------------ */
/* Raw sockets, where curl would hide what the server does                  */

static int raw_connect(void)
{
	const char *port = strrchr(fault_origin_url(fo), ':');
	cr_assert_not_null(port);
	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_port = htons((uint16_t)strtoul(port + 1, NULL, 10));
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
	             strerror(errno));
	/* Hang guards: a server that never answers or never closes fails the
	 * read with EAGAIN instead of blocking the test. */
	struct timeval tv = { .tv_sec = GUARD_MS / 1000 };
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	return fd;
}

static void raw_send(int fd, const char *s)
{
	size_t len = strlen(s);
	while (len > 0) {
		ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
		cr_assert_gt(n, 0, "send: %s", strerror(errno));
		s += n;
		len -= (size_t)n;
	}
}

/*
 * Reads until the server closes. Returns the bytes (NUL-terminated, *len
 * without the NUL); fails the test when the hang guard expires, i.e. when
 * the server kept the connection open.
 */
static char *raw_read_to_eof(int fd, size_t *len)
{
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap);
	cr_assert_not_null(buf);
	for (;;) {
		if (n + 1 == cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			cr_assert_not_null(buf);
		}
		ssize_t r = recv(fd, buf + n, cap - 1 - n, 0);
		cr_assert(r >= 0, "recv: %s (the server did not close the connection)",
		          strerror(errno));
		if (r == 0)
			break;
		n += (size_t)r;
	}
	buf[n] = '\0';
	*len = n;
	return buf;
}

/* Number of times needle occurs in hay. */
static unsigned count_of(const char *hay, const char *needle)
{
	unsigned k = 0;
	for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
		k++;
	return k;
}

/* ------------------------------------------------------------------------ */
/* A transfer on its own thread, for faults that stop() must end            */

struct bg {
	pthread_t thr;
	const char *url_path;
	struct opts op;
	struct xfer x;
	atomic_int finished;
};

static void *bg_main(void *arg)
{
	struct bg *b = arg;
	fetch(b->url_path, &b->op, &b->x);
	atomic_store(&b->finished, 1);
	return NULL;
}

static void bg_start(struct bg *b, const char *url_path)
{
	b->url_path = url_path;
	xfer_init(&b->x);
	atomic_init(&b->finished, 0);
	cr_assert_eq(pthread_create(&b->thr, NULL, bg_main, b), 0);
}

/* Waits (hang guard only) until b has seen more than `bytes` body bytes. */
static void bg_wait_seen(struct bg *b, size_t bytes)
{
	for (unsigned ms = 0; atomic_load(&b->x.seen) <= bytes; ms++) {
		cr_assert(!atomic_load(&b->finished),
		          "transfer ended after %zu bytes (%s), before %zu",
		          atomic_load(&b->x.seen), curl_easy_strerror(b->x.rc), bytes);
		cr_assert_lt(ms, GUARD_MS, "hang guard: transfer stuck at %zu bytes",
		             atomic_load(&b->x.seen));
		child_sleep_ms(1);
	}
}

/* ------------------------------------------------------------------------ */
/* Serving                                                                  */

Test(faultorigin, get_is_byte_identical)
{
	for (size_t i = 0; i < NFILES; i++) {
		struct xfer x;
		fetch(url_paths[i], NULL, &x);
		expect_whole(&x, i);
		char v[64];
		cr_assert(header(&x, "Accept-Ranges", v, sizeof(v)) && strcmp(v, "bytes") == 0);
		cr_assert_eq(fault_origin_requests(fo, paths[i]), 1, "%s", paths[i]);
		xfer_free(&x);
	}
	cr_assert_eq(fault_origin_total_requests(fo), NFILES);
	cr_assert_eq(fault_origin_connections(fo), NFILES); /* one handle each */
	stop_checked();
}

Test(faultorigin, resume_from_is_open_range_206)
{
	const uint64_t size = sizes[F_MID];
	const uint64_t offs[] = { 1, 12345, MIB, size - 1 };
	for (size_t k = 0; k < sizeof(offs) / sizeof(offs[0]); k++) {
		struct xfer x;
		struct opts op = { .resume = (curl_off_t)offs[k], .failonerror = 1 };
		fetch(url_paths[F_MID], &op, &x);
		cr_assert_eq(x.rc, CURLE_OK, "resume %llu: %s", (unsigned long long)offs[k],
		             curl_easy_strerror(x.rc));
		cr_assert_eq(x.status, 206);
		expect_slice(&x, F_MID, offs[k], size - offs[k]);
		char v[96], want[96];
		snprintf(want, sizeof(want), "bytes %llu-%llu/%llu", (unsigned long long)offs[k],
		         (unsigned long long)(size - 1), (unsigned long long)size);
		cr_assert(header(&x, "Content-Range", v, sizeof(v)));
		cr_assert_str_eq(v, want);
		xfer_free(&x);
	}
	stop_checked();
}

Test(faultorigin, closed_and_suffix_ranges_206_out_of_range_416)
{
	struct {
		size_t file;
		const char *range;
		long status;
		uint64_t off, len;      /* the slice of a 206 */
		const char *crange;     /* Content-Range wanted */
	} cases[] = {
		{ F_SMALL, "100-199", 206, 100, 100, "bytes 100-199/4097" },
		{ F_SMALL, "0-0", 206, 0, 1, "bytes 0-0/4097" },
		{ F_SMALL, "4000-99999", 206, 4000, 97, "bytes 4000-4096/4097" },
		{ F_SMALL, "-10", 206, 4087, 10, "bytes 4087-4096/4097" },
		{ F_SMALL, "-99999", 206, 0, 4097, "bytes 0-4096/4097" },
		{ F_MID, "1048576-1048578", 206, MIB, 3, "bytes 1048576-1048578/1048579" },
		{ F_SMALL, "4097-", 416, 0, 0, "bytes */4097" },
		{ F_SMALL, "5000-6000", 416, 0, 0, "bytes */4097" },
		{ F_EMPTY, "0-", 416, 0, 0, "bytes */0" },
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct xfer x;
		struct opts op = { .range = cases[k].range };
		fetch(url_paths[cases[k].file], &op, &x);
		cr_assert_eq(x.rc, CURLE_OK, "%s: %s", cases[k].range, curl_easy_strerror(x.rc));
		cr_assert_eq(x.status, cases[k].status, "%s: status %ld", cases[k].range, x.status);
		if (cases[k].status == 206)
			expect_slice(&x, cases[k].file, cases[k].off, cases[k].len);
		char v[96];
		cr_assert(header(&x, "Content-Range", v, sizeof(v)), "%s: no Content-Range",
		          cases[k].range);
		cr_assert_str_eq(v, cases[k].crange, "%s", cases[k].range);
		xfer_free(&x);
	}
	/* A range that is not one of bytes=N-, N-M, -S is ignored: 200. */
	struct xfer x;
	struct opts op = { .range = "0-1,5-6" };
	fetch(url_paths[F_SMALL], &op, &x);
	expect_whole(&x, F_SMALL);
	xfer_free(&x);
	stop_checked();
}

Test(faultorigin, head_has_length_and_no_body_and_keeps_connection)
{
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	struct xfer x;
	struct opts head = { .nobody = 1 };
	fetch_on(h, url_paths[F_MID], &head, &x);
	cr_assert_eq(x.rc, CURLE_OK, "%s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 200);
	cr_assert_eq(x.clen, (curl_off_t)sizes[F_MID]);
	cr_assert_eq(x.len, 0);
	xfer_free(&x);
	/* A body sent after the HEAD's headers would be read as the next
	 * response on the same connection. */
	fetch_on(h, url_paths[F_SMALL], NULL, &x);
	expect_whole(&x, F_SMALL);
	cr_assert_eq(x.new_conns, 0, "the GET after the HEAD did not reuse the connection");
	xfer_free(&x);
	struct opts head404 = { .nobody = 1 };
	fetch_on(h, "/missing.sst", &head404, &x);
	cr_assert_eq(x.status, 404);
	cr_assert_eq(x.len, 0);
	xfer_free(&x);
	curl_easy_cleanup(h);
	cr_assert_eq(fault_origin_connections(fo), 1);
	cr_assert_eq(fault_origin_total_requests(fo), 3);
	stop_checked();
}

Test(faultorigin, keepalive_reuses_and_connection_close_closes)
{
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	for (size_t i = F_ONE; i <= F_BIG; i++) {
		struct xfer x;
		fetch_on(h, url_paths[i], NULL, &x);
		expect_whole(&x, i);
		cr_assert_eq(x.new_conns, i == F_ONE ? 1 : 0, "request %zu", i);
		xfer_free(&x);
	}
	cr_assert_eq(fault_origin_connections(fo), 1);
	cr_assert_eq(fault_origin_total_requests(fo), 4);
	curl_easy_cleanup(h);

	/* Raw: two pipelined requests, then one with "Connection: close". The
	 * server must answer all three in order on one connection and then
	 * close it; the read fails on the hang guard if it does not close. */
	int fd = raw_connect();
	raw_send(fd, "GET /000001.sst HTTP/1.1\r\nHost: x\r\n\r\n"
	             "HEAD /000002.sst HTTP/1.1\r\nHost: x\r\n\r\n");
	raw_send(fd, "GET /000001.sst HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	size_t len;
	char *resp = raw_read_to_eof(fd, &len);
	close(fd);
	cr_assert_eq(count_of(resp, "HTTP/1.1 200 OK\r\n"), 3, "%s", resp);
	cr_assert_eq(count_of(resp, "Content-Length: 4097\r\n"), 1, "%s", resp);
	cr_assert_eq(count_of(resp, "Connection: close\r\n"), 1, "%s", resp);
	/* The last response ends with the one byte of /000001.sst. */
	const char *last = strstr(resp, "Connection: close\r\n\r\n");
	cr_assert_not_null(last);
	cr_assert_eq(len - (size_t)(last - resp), strlen("Connection: close\r\n\r\n") + 1);
	cr_assert_eq((unsigned char)resp[len - 1], content[F_ONE][0]);
	free(resp);

	/* HTTP/1.0 without keep-alive: closed after one response. */
	fd = raw_connect();
	raw_send(fd, "GET /000002.sst HTTP/1.0\r\n\r\n");
	resp = raw_read_to_eof(fd, &len);
	close(fd);
	cr_assert_eq(count_of(resp, "HTTP/1.1 200 OK\r\n"), 1, "%s", resp);
	const char *body = strstr(resp, "\r\n\r\n");
	cr_assert_not_null(body);
	body += 4;
	cr_assert_eq(len - (size_t)(body - resp), sizes[F_SMALL]);
	cr_assert_eq(memcmp(body, content[F_SMALL], sizes[F_SMALL]), 0);
	free(resp);

	/* curl with "Connection: close": each request on a new connection. */
	h = curl_easy_init();
	cr_assert_not_null(h);
	for (int k = 0; k < 2; k++) {
		struct xfer x;
		struct opts op = { .conn_close = 1 };
		fetch_on(h, url_paths[F_SMALL], &op, &x);
		expect_whole(&x, F_SMALL);
		cr_assert_eq(x.new_conns, 1);
		xfer_free(&x);
	}
	curl_easy_cleanup(h);
	cr_assert_eq(fault_origin_connections(fo), 1 + 2 + 2);
	cr_assert_eq(fault_origin_requests(fo, "/000001.sst"), 3);
	cr_assert_eq(fault_origin_requests(fo, "/000002.sst"), 1 + 1 + 1 + 2);
	stop_checked();
}

Test(faultorigin, missing_traversal_and_bad_requests_are_refused)
{
	struct {
		const char *url_path;
		long status;
	} cases[] = {
		{ "/nope.sst", 404 },
		{ "/d", 404 },                 /* a directory */
		{ "/d/e", 404 },
		{ "/", 404 },
		{ "/../etc/passwd", 403 },
		{ "/%2e%2e/etc/passwd", 403 },
		{ "/d/../000001.sst", 403 },
		{ "/d/e/%2E%2E/%2e%2E/000001.sst", 403 },
		{ "/bad%zzescape", 400 },
		{ "/nul%00.sst", 400 },
		{ "/000001.sst?x=1", 200 },    /* the query is not part of the path */
		{ "/d%2Fe/f.sst", 200 },       /* %2F decodes to a slash */
	};
	for (size_t k = 0; k < sizeof(cases) / sizeof(cases[0]); k++) {
		struct xfer x;
		struct opts op = { .as_is = 1 };
		fetch(cases[k].url_path, &op, &x);
		cr_assert_eq(x.rc, CURLE_OK, "%s: %s", cases[k].url_path, curl_easy_strerror(x.rc));
		cr_assert_eq(x.status, cases[k].status, "%s: status %ld", cases[k].url_path, x.status);
		if (x.status != 200)
			cr_assert(x.clen >= 0 && (size_t)x.clen == x.len,
			          "%s: error body of %zu bytes, Content-Length %lld", cases[k].url_path,
			          x.len, (long long)x.clen);
		xfer_free(&x);
	}
	cr_assert_eq(fault_origin_requests(fo, "/nope.sst"), 1);
	cr_assert_eq(fault_origin_requests(fo, "/000001.sst"), 1);
	cr_assert_eq(fault_origin_requests(fo, "/d/e/f.sst"), 1);
	cr_assert_eq(fault_origin_requests(fo, "/etc/passwd"), 0);
	cr_assert_eq(fault_origin_requests(fo, "/../etc/passwd"), 0);

	/* With FAILONERROR, curl's view of a 404. */
	struct xfer x;
	struct opts fail = { .failonerror = 1 };
	fetch("/nope.sst", &fail, &x);
	cr_assert_eq(x.rc, CURLE_HTTP_RETURNED_ERROR);
	cr_assert_eq(x.status, 404);
	xfer_free(&x);

	/* Not HTTP, and not GET or HEAD: answered, then closed. */
	int fd = raw_connect();
	raw_send(fd, "garbage\r\n\r\n");
	size_t len;
	char *resp = raw_read_to_eof(fd, &len);
	close(fd);
	cr_assert(strncmp(resp, "HTTP/1.1 400 ", 13) == 0, "%s", resp);
	free(resp);
	fd = raw_connect();
	raw_send(fd, "DELETE /000001.sst HTTP/1.1\r\nHost: x\r\n\r\n");
	resp = raw_read_to_eof(fd, &len);
	close(fd);
	cr_assert(strncmp(resp, "HTTP/1.1 405 ", 13) == 0, "%s", resp);
	cr_assert(ds_exists(ds.files[F_ONE].path));
	free(resp);
	cr_assert_eq(fault_origin_total_requests(fo), 12 + 1 + 2);
	stop_checked();
}

/* ------------------------------------------------------------------------ */
/* Faults                                                                   */

Test(faultorigin, reset_cuts_after_at_bytes_with_econnreset)
{
	struct fault f = { .kind = FAULT_RESET, .at = 100000, .first_k = 1 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	struct xfer x;
	fetch(url_paths[F_MID], NULL, &x);
	cr_assert_eq(x.rc, CURLE_RECV_ERROR, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 200);
	cr_assert_eq(x.clen, (curl_off_t)sizes[F_MID]);
	expect_slice(&x, F_MID, 0, 100000);
	xfer_free(&x);

	/* first_k = 1: the second request is whole. */
	fetch(url_paths[F_MID], NULL, &x);
	expect_whole(&x, F_MID);
	xfer_free(&x);

	/* at = 0: headers only; on a resumed request `at` counts from the
	 * range start. */
	f = (struct fault){ .kind = FAULT_RESET, .at = 0 };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	fetch(url_paths[F_SMALL], NULL, &x);
	cr_assert_eq(x.rc, CURLE_RECV_ERROR, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.len, 0);
	xfer_free(&x);
	f.at = 10;
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	struct opts op = { .resume = 1000 };
	fetch(url_paths[F_SMALL], &op, &x);
	cr_assert_eq(x.rc, CURLE_RECV_ERROR, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 206);
	expect_slice(&x, F_SMALL, 1000, 10);
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), 2);
	cr_assert_eq(fault_origin_requests(fo, paths[F_SMALL]), 1);
	stop_checked();
}

Test(faultorigin, close_gives_partial_file)
{
	struct fault f = { .kind = FAULT_CLOSE, .at = 4096 };
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG], &f), 0);
	for (int k = 0; k < 2; k++) { /* first_k = 0: every request */
		struct xfer x;
		fetch(url_paths[F_BIG], NULL, &x);
		cr_assert_eq(x.rc, CURLE_PARTIAL_FILE, "got %s", curl_easy_strerror(x.rc));
		cr_assert_eq(x.status, 200);
		cr_assert_eq(x.clen, (curl_off_t)sizes[F_BIG]);
		expect_slice(&x, F_BIG, 0, 4096);
		xfer_free(&x);
	}
	struct xfer x;
	struct opts op = { .resume = (curl_off_t)(2 * MIB) };
	fetch(url_paths[F_BIG], &op, &x);
	cr_assert_eq(x.rc, CURLE_PARTIAL_FILE, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 206);
	expect_slice(&x, F_BIG, 2 * MIB, 4096);
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_BIG]), 3);
	stop_checked();
}

/* Index of the only byte where x differs from file i from off on, with the
 * difference checked to be 0x01; fails unless exactly one byte differs. */
static size_t one_flip(const struct xfer *x, size_t i, uint64_t off)
{
	size_t where = SIZE_MAX, ndiff = 0;
	for (size_t k = 0; k < x->len; k++) {
		if (x->body[k] == content[i][off + k])
			continue;
		ndiff++;
		where = k;
		cr_assert_eq(x->body[k] ^ content[i][off + k], 0x01, "byte %zu", k);
	}
	cr_assert_eq(ndiff, 1, "%zu bytes differ", ndiff);
	return where;
}

Test(faultorigin, flip_changes_exactly_one_byte)
{
	const uint64_t at = 777777;
	struct fault f = { .kind = FAULT_FLIP, .at = at };
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG], &f), 0);
	struct xfer x;
	fetch(url_paths[F_BIG], NULL, &x);
	cr_assert_eq(x.rc, CURLE_OK);
	cr_assert_eq(x.len, sizes[F_BIG]);
	cr_assert_eq(one_flip(&x, F_BIG, 0), at);
	xfer_free(&x);

	/* `at` is a file offset: in a range that starts before it, it moves. */
	struct opts before = { .resume = 777000 };
	fetch(url_paths[F_BIG], &before, &x);
	cr_assert_eq(x.status, 206);
	cr_assert_eq(x.len, sizes[F_BIG] - 777000);
	cr_assert_eq(one_flip(&x, F_BIG, 777000), at - 777000);
	xfer_free(&x);

	/* A range past it is untouched; so is one that ends before it. */
	struct opts after = { .resume = (curl_off_t)at + 1 };
	fetch(url_paths[F_BIG], &after, &x);
	cr_assert_eq(x.status, 206);
	expect_slice(&x, F_BIG, at + 1, sizes[F_BIG] - at - 1);
	xfer_free(&x);
	struct opts below = { .range = "0-777776" };
	fetch(url_paths[F_BIG], &below, &x);
	expect_slice(&x, F_BIG, 0, at);
	xfer_free(&x);

	/* The last byte of a file. */
	f.at = sizes[F_SMALL] - 1;
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	fetch(url_paths[F_SMALL], NULL, &x);
	cr_assert_eq(one_flip(&x, F_SMALL, 0), sizes[F_SMALL] - 1);
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_BIG]), 4);
	stop_checked();
}

Test(faultorigin, e503_with_retry_after_for_first_k_then_200)
{
	struct fault f = { .kind = FAULT_503, .first_k = 2, .retry_after_s = 7 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	struct xfer x;
	struct opts op = { .failonerror = 1 };
	char v[32];
	for (int k = 0; k < 2; k++) {
		fetch_on(h, url_paths[F_MID], &op, &x);
		cr_assert_eq(x.rc, CURLE_HTTP_RETURNED_ERROR, "got %s", curl_easy_strerror(x.rc));
		cr_assert_eq(x.status, 503);
		cr_assert_eq(x.retry_after, 7);
		cr_assert(header(&x, "Retry-After", v, sizeof(v)));
		cr_assert_str_eq(v, "7");
		xfer_free(&x);
	}
	fetch_on(h, url_paths[F_MID], &op, &x);
	expect_whole(&x, F_MID);
	cr_assert(!header(&x, "Retry-After", v, sizeof(v)));
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), 3);

	/* retry_after_s = 0: no header; set() restarts the count. */
	f = (struct fault){ .kind = FAULT_503, .first_k = 1 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), 0);
	struct opts plain = { 0 };
	fetch_on(h, url_paths[F_MID], &plain, &x);
	cr_assert_eq(x.rc, CURLE_OK);
	cr_assert_eq(x.status, 503);
	cr_assert(!header(&x, "Retry-After", v, sizeof(v)), "Retry-After: %s", v);
	cr_assert(x.len > 0 && (curl_off_t)x.len == x.clen);
	xfer_free(&x);
	fetch_on(h, url_paths[F_MID], &plain, &x);
	expect_whole(&x, F_MID);
	xfer_free(&x);
	curl_easy_cleanup(h);
	stop_checked();
}

Test(faultorigin, e404_on_an_existing_file_for_first_k)
{
	cr_assert(ds_exists(ds.files[F_SMALL].path));
	struct fault f = { .kind = FAULT_404, .first_k = 1 };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	struct xfer x;
	struct opts op = { .failonerror = 1 };
	fetch(url_paths[F_SMALL], &op, &x);
	cr_assert_eq(x.rc, CURLE_HTTP_RETURNED_ERROR, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 404);
	xfer_free(&x);
	fetch(url_paths[F_SMALL], &op, &x);
	expect_whole(&x, F_SMALL);
	xfer_free(&x);
	/* Other paths are not affected. */
	fetch(url_paths[F_ONE], &op, &x);
	expect_whole(&x, F_ONE);
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_SMALL]), 2);
	stop_checked();
}

Test(faultorigin, stall_trips_curls_low_speed_limit)
{
	struct fault f = { .kind = FAULT_STALL, .at = 5000 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	struct xfer x;
	/* Any limit does: after the 5000 bytes nothing comes. */
	struct opts op = { .low_speed = 64 * KIB };
	fetch(url_paths[F_MID], &op, &x);
	cr_assert_eq(x.rc, CURLE_OPERATION_TIMEDOUT, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 200);
	expect_slice(&x, F_MID, 0, 5000);
	xfer_free(&x);
	/* curl closed the stalled connection; the handler saw it go. */
	stop_checked();
}

Test(faultorigin, stop_ends_stalled_idle_and_unread_connections)
{
	/* A stalled response. */
	struct fault f = { .kind = FAULT_STALL, .at = 5000 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	static struct bg stalled;
	bg_start(&stalled, url_paths[F_MID]);
	bg_wait_seen(&stalled, 4999);

	/* An idle keep-alive connection, and one whose client asked for 3 MiB
	 * three times and reads nothing, so its handler waits to send. */
	int idle = raw_connect();
	int deaf = raw_connect();
	raw_send(deaf, "GET /000004.sst HTTP/1.1\r\n\r\nGET /000004.sst HTTP/1.1\r\n\r\n"
	               "GET /000004.sst HTTP/1.1\r\n\r\n");
	for (unsigned ms = 0; fault_origin_requests(fo, paths[F_BIG]) == 0; ms++) {
		cr_assert_lt(ms, GUARD_MS, "hang guard: the request was not read");
		child_sleep_ms(1);
	}
	for (unsigned ms = 0; fault_origin_connections(fo) < 3; ms++) {
		cr_assert_lt(ms, GUARD_MS, "hang guard: the idle connection was not accepted");
		child_sleep_ms(1);
	}

	/* The hang guard is the suite's timeout: stop must not wait for any of
	 * the three clients. */
	stop_checked();

	pthread_join(stalled.thr, NULL);
	cr_assert_eq(stalled.x.rc, CURLE_PARTIAL_FILE, "got %s (not ended by stop)",
	             curl_easy_strerror(stalled.x.rc));
	expect_slice(&stalled.x, F_MID, 0, 5000);
	xfer_free(&stalled.x);
	char c;
	cr_assert_eq(recv(idle, &c, 1, 0), 0, "the idle connection was not closed");
	close(idle);
	close(deaf);
}

Test(faultorigin, slow_body_is_whole_and_paced)
{
	/* Paced, and still byte-identical. */
	struct fault f = { .kind = FAULT_SLOW, .rate = 64 * KIB };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	struct xfer x;
	fetch(url_paths[F_SMALL], NULL, &x);
	expect_whole(&x, F_SMALL);
	xfer_free(&x);

	/* 16 KiB/s after a fast 64 KiB: far below curl's 256 KiB/s limit, so
	 * curl gives up with part of the body. Unpaced, 3 MiB on loopback
	 * would pass any such limit. */
	f = (struct fault){ .kind = FAULT_SLOW, .at = 64 * KIB, .rate = 16 * KIB };
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG], &f), 0);
	struct opts op = { .low_speed = 256 * KIB };
	fetch(url_paths[F_BIG], &op, &x);
	cr_assert_eq(x.rc, CURLE_OPERATION_TIMEDOUT, "got %s", curl_easy_strerror(x.rc));
	cr_assert_geq(x.len, 64 * KIB);
	cr_assert_lt(x.len, sizes[F_BIG]);
	expect_slice(&x, F_BIG, 0, x.len);
	xfer_free(&x);

	/* The same limit with the fault gone: the whole file. */
	fault_origin_clear(fo);
	fetch(url_paths[F_BIG], &op, &x);
	expect_whole(&x, F_BIG);
	xfer_free(&x);

	/* rate 0 is refused. */
	f.rate = 0;
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG], &f), -EINVAL);
	stop_checked();
}

Test(faultorigin, stop_interrupts_a_slow_body_mid_way)
{
	struct fault f = { .kind = FAULT_SLOW, .at = 64 * KIB, .rate = 16 * KIB };
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG], &f), 0);
	static struct bg slow;
	bg_start(&slow, url_paths[F_BIG]);
	bg_wait_seen(&slow, 64 * KIB); /* into the paced part */
	stop_checked();
	pthread_join(slow.thr, NULL);
	cr_assert_eq(slow.x.rc, CURLE_PARTIAL_FILE, "got %s", curl_easy_strerror(slow.x.rc));
	cr_assert_gt(slow.x.len, 64 * KIB);
	cr_assert_lt(slow.x.len, sizes[F_BIG]);
	expect_slice(&slow.x, F_BIG, 0, slow.x.len);
	xfer_free(&slow.x);
}

Test(faultorigin, first_k_counts_set_and_clear)
{
	cr_assert_eq(fault_origin_set(fo, "000001.sst", NULL), -EINVAL);
	cr_assert_eq(fault_origin_set(fo, "/x", &(struct fault){ .kind = (enum fault_kind)99 }),
	             -EINVAL);

	struct fault f = { .kind = FAULT_CLOSE, .at = 1, .first_k = 2 };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	struct xfer x;
	for (int k = 1; k <= 4; k++) {
		fetch(url_paths[F_SMALL], NULL, &x);
		if (k <= 2) {
			cr_assert_eq(x.rc, CURLE_PARTIAL_FILE, "request %d: %s", k,
			             curl_easy_strerror(x.rc));
			expect_slice(&x, F_SMALL, 0, 1);
		} else {
			expect_whole(&x, F_SMALL);
		}
		cr_assert_eq(fault_origin_requests(fo, paths[F_SMALL]), (unsigned)k);
		xfer_free(&x);
	}
	/* set() again: the count restarts, so the fault applies again. */
	f.first_k = 1;
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	cr_assert_eq(fault_origin_requests(fo, paths[F_SMALL]), 0);
	fetch(url_paths[F_SMALL], NULL, &x);
	cr_assert_eq(x.rc, CURLE_PARTIAL_FILE);
	xfer_free(&x);

	/* clear(): every fault off, counts kept. */
	f = (struct fault){ .kind = FAULT_CLOSE, .at = 1 };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &(struct fault){ .kind = FAULT_404 }), 0);
	fetch(url_paths[F_MID], NULL, &x);
	cr_assert_eq(x.status, 404);
	xfer_free(&x);
	fault_origin_clear(fo);
	fetch(url_paths[F_SMALL], NULL, &x);
	expect_whole(&x, F_SMALL);
	xfer_free(&x);
	fetch(url_paths[F_MID], NULL, &x);
	expect_whole(&x, F_MID);
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_SMALL]), 1);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), 2);

	/* NULL removes a fault. */
	cr_assert_eq(fault_origin_set(fo, paths[F_ONE], &(struct fault){ .kind = FAULT_404 }), 0);
	cr_assert_eq(fault_origin_set(fo, paths[F_ONE], NULL), 0);
	fetch(url_paths[F_ONE], NULL, &x);
	expect_whole(&x, F_ONE);
	xfer_free(&x);

	cr_assert_eq(fault_origin_requests(fo, "/never-asked"), 0);
	cr_assert_eq(fault_origin_total_requests(fo), 4 + 1 + 1 + 2 + 1);
	cr_assert_eq(fault_origin_connections(fo), 4 + 1 + 1 + 2 + 1);
	stop_checked();
}

/* ------------------------------------------------------------------------ */
/* Concurrent clients                                                       */

#define NTHREADS 8
#define ROUNDS 4
#define FIRST_K_503 5

struct worker {
	pthread_t thr;
	unsigned n503;      /* 503s this worker got */
	unsigned bad;       /* responses that were neither right nor the fault */
	char why[160];
};

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	CURL *h = curl_easy_init();
	if (!h) {
		w->bad++;
		return NULL;
	}
	for (int r = 0; r < ROUNDS; r++) {
		for (size_t i = F_ONE; i < NFILES; i++) {
			struct xfer x;
			/* cr_assert is not for other threads: record instead. */
			fetch_on(h, url_paths[i], NULL, &x);
			int ok;
			if (i == F_MID && x.status == 503) {
				w->n503++;
				ok = 1;
			} else if (i == F_BIG) {
				size_t diff = 0, where = 0;
				for (size_t k = 0; k < x.len && x.len == sizes[i]; k++) {
					if (x.body[k] != content[i][k]) {
						diff++;
						where = k;
					}
				}
				ok = x.rc == CURLE_OK && x.len == sizes[i] && diff == 1 && where == 12345;
			} else {
				ok = x.rc == CURLE_OK && x.status == 200 && x.len == sizes[i] &&
				     memcmp(x.body, content[i], sizes[i]) == 0;
			}
			if (!ok && !w->bad)
				snprintf(w->why, sizeof(w->why), "%s: %s, status %ld, %zu bytes",
				         names[i], curl_easy_strerror(x.rc), x.status, x.len);
			w->bad += !ok;
			xfer_free(&x);
		}
	}
	curl_easy_cleanup(h);
	return NULL;
}

Test(faultorigin, concurrent_clients_count_exactly)
{
	cr_assert_eq(fault_origin_set(fo, paths[F_MID],
	                              &(struct fault){ .kind = FAULT_503, .first_k = FIRST_K_503 }),
	             0);
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG],
	                              &(struct fault){ .kind = FAULT_FLIP, .at = 12345 }),
	             0);
	static struct worker w[NTHREADS];
	for (int t = 0; t < NTHREADS; t++)
		cr_assert_eq(pthread_create(&w[t].thr, NULL, worker_main, &w[t]), 0);
	unsigned n503 = 0;
	for (int t = 0; t < NTHREADS; t++) {
		pthread_join(w[t].thr, NULL);
		cr_expect_eq(w[t].bad, 0, "worker %d: %u bad responses, first %s", t, w[t].bad,
		             w[t].why);
		n503 += w[t].n503;
	}
	cr_assert_eq(n503, FIRST_K_503, "%u requests got the 503 of the first %d", n503,
	             FIRST_K_503);
	for (size_t i = F_ONE; i < NFILES; i++)
		cr_assert_eq(fault_origin_requests(fo, paths[i]), NTHREADS * ROUNDS, "%s", paths[i]);
	cr_assert_eq(fault_origin_total_requests(fo), NTHREADS * ROUNDS * (NFILES - 1));
	cr_assert_geq(fault_origin_connections(fo), NTHREADS);
	stop_checked();
}

/* ------------------------------------------------------------------------ */
/* Retry-After as an HTTP-date, 429, ranges ignored                         */

/* The IMF-fixdate of t, made here with strftime in the C locale: another
 * implementation than the origin's. */
static void imf_fixdate(time_t t, char *out, size_t outlen)
{
	struct tm tm;
	cr_assert_not_null(gmtime_r(&t, &tm));
	cr_assert_gt(strftime(out, outlen, "%a, %d %b %Y %H:%M:%S GMT", &tm), 0);
}

static struct timespec wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return ts;
}

/* A wall-clock instant rounded up to a whole second. */
static time_t ceil_s(struct timespec ts)
{
	return ts.tv_sec + (ts.tv_nsec > 0 ? 1 : 0);
}

/*
 * One request of url_path, which must answer `status` with a Retry-After
 * HTTP-date of the origin's now + s, rounded up: between the wall clock
 * before the request plus s (rounded up: a date rounded down would be
 * earlier) and the wall clock after it plus s (rounded up). Returns the
 * date; libcurl's own reading of it is checked too.
 */
static time_t expect_retry_date(CURL *h, const char *url_path, const struct opts *op,
                                long status, unsigned s)
{
	struct xfer x;
	struct timespec before = wall_now();
	fetch_on(h, url_path, op, &x);
	struct timespec after = wall_now();
	cr_assert_eq(x.rc, CURLE_OK, "%s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, status);
	char v[64];
	cr_assert(header(&x, "Retry-After", v, sizeof(v)), "no Retry-After");
	time_t date = curl_getdate(v, NULL);
	cr_assert_neq(date, (time_t)-1, "Retry-After: %s is no date curl reads", v);
	char want[64];
	imf_fixdate(date, want, sizeof(want));
	cr_assert_str_eq(v, want, "not an IMF-fixdate");
	cr_assert_geq(date, ceil_s(before) + (time_t)s,
	              "Retry-After: %s is less than %u s after the request was sent", v, s);
	cr_assert_leq(date, ceil_s(after) + (time_t)s,
	              "Retry-After: %s is more than %u s after the response came", v, s);
	/* curl turns the date into seconds from its own clock at the header. */
	cr_assert_geq(x.retry_after, (curl_off_t)s - 1, "CURLINFO_RETRY_AFTER %lld",
	              (long long)x.retry_after);
	cr_assert_leq(x.retry_after, (curl_off_t)s + 1, "CURLINFO_RETRY_AFTER %lld",
	              (long long)x.retry_after);
	if (op && op->nobody)
		cr_assert_eq(x.len, 0);
	else
		cr_assert(x.len > 0 && (curl_off_t)x.len == x.clen);
	xfer_free(&x);
	return date;
}

Test(faultorigin, retry_after_http_date_is_now_plus_s_rounded_up)
{
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	struct fault f = { .kind = FAULT_503, .first_k = 2, .retry_after_s = 5,
	                   .retry_after_date = true };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	expect_retry_date(h, url_paths[F_MID], NULL, 503, 5);
	struct opts head = { .nobody = 1 };
	expect_retry_date(h, url_paths[F_MID], &head, 503, 5);
	struct xfer x;
	fetch_on(h, url_paths[F_MID], NULL, &x);
	expect_whole(&x, F_MID);
	xfer_free(&x);

	/* 429 the same way; a delay far off (months and a leap day away); and
	 * a date with s = 0 (now, rounded up), which still has the header. */
	f = (struct fault){ .kind = FAULT_429, .first_k = 1, .retry_after_s = 400 * 86400 + 3,
	                    .retry_after_date = true };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	expect_retry_date(h, url_paths[F_SMALL], NULL, 429, f.retry_after_s);
	fetch_on(h, url_paths[F_SMALL], NULL, &x);
	expect_whole(&x, F_SMALL);
	xfer_free(&x);
	f = (struct fault){ .kind = FAULT_429, .retry_after_date = true };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	for (int k = 0; k < 3; k++)
		expect_retry_date(h, url_paths[F_SMALL], NULL, 429, 0);
	curl_easy_cleanup(h);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), 3);
	cr_assert_eq(fault_origin_requests(fo, paths[F_SMALL]), 3);
	stop_checked();
}

Test(faultorigin, e429_with_seconds_or_none_for_first_k)
{
	struct fault f = { .kind = FAULT_429, .first_k = 1, .retry_after_s = 3 };
	cr_assert_eq(fault_origin_set(fo, paths[F_ONE], &f), 0);
	struct xfer x;
	struct opts op = { .failonerror = 1 };
	fetch(url_paths[F_ONE], &op, &x);
	cr_assert_eq(x.rc, CURLE_HTTP_RETURNED_ERROR, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 429);
	cr_assert_eq(x.retry_after, 3);
	char v[64];
	cr_assert(header(&x, "Retry-After", v, sizeof(v)));
	cr_assert_str_eq(v, "3");
	xfer_free(&x);
	fetch(url_paths[F_ONE], &op, &x);
	expect_whole(&x, F_ONE);
	xfer_free(&x);

	/* No Retry-After without seconds or date; the status line and body. */
	cr_assert_eq(fault_origin_set(fo, paths[F_ONE], &(struct fault){ .kind = FAULT_429 }), 0);
	int fd = raw_connect();
	raw_send(fd, "GET /000001.sst HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
	size_t len;
	char *resp = raw_read_to_eof(fd, &len);
	close(fd);
	cr_assert(strncmp(resp, "HTTP/1.1 429 Too Many Requests\r\n", 32) == 0, "%s", resp);
	cr_assert_null(strstr(resp, "Retry-After"), "%s", resp);
	const char *body = strstr(resp, "\r\n\r\n");
	cr_assert_not_null(body);
	cr_assert_str_eq(body + 4, "429 Too Many Requests\n");
	free(resp);
	stop_checked();
}

Test(faultorigin, norange_answers_200_with_the_whole_file_for_first_k)
{
	struct fault f = { .kind = FAULT_NORANGE, .first_k = 4 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	struct xfer x;
	char v[96];

	/* 1: a closed range. */
	struct opts ranged = { .range = "100-199" };
	fetch_on(h, url_paths[F_MID], &ranged, &x);
	expect_whole(&x, F_MID);
	cr_assert(!header(&x, "Content-Range", v, sizeof(v)), "Content-Range: %s", v);
	cr_assert(!header(&x, "Accept-Ranges", v, sizeof(v)), "Accept-Ranges: %s", v);
	xfer_free(&x);

	/* 2: a resume: the 200 tells curl the origin cannot resume. */
	struct opts resume = { .resume = 12345 };
	fetch_on(h, url_paths[F_MID], &resume, &x);
	cr_assert_eq(x.rc, CURLE_RANGE_ERROR, "got %s", curl_easy_strerror(x.rc));
	cr_assert_eq(x.status, 200);
	cr_assert_eq(x.clen, (curl_off_t)sizes[F_MID]);
	xfer_free(&x);

	/* 3: past the end, which gets 416 elsewhere; 4: a HEAD with a range. */
	int fd = raw_connect();
	raw_send(fd, "GET /000003.sst HTTP/1.1\r\nHost: x\r\nRange: bytes=5000000-\r\n"
	             "Connection: close\r\n\r\n");
	size_t len;
	char *resp = raw_read_to_eof(fd, &len);
	close(fd);
	cr_assert(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0, "%.200s", resp);
	const char *body = strstr(resp, "\r\n\r\n");
	cr_assert_not_null(body);
	body += 4;
	cr_assert_eq(len - (size_t)(body - resp), sizes[F_MID]);
	cr_assert_eq(memcmp(body, content[F_MID], sizes[F_MID]), 0);
	free(resp);
	struct opts head = { .nobody = 1, .range = "0-9" };
	fetch_on(h, url_paths[F_MID], &head, &x);
	cr_assert_eq(x.status, 200);
	cr_assert_eq(x.clen, (curl_off_t)sizes[F_MID]);
	cr_assert_eq(x.len, 0);
	xfer_free(&x);

	/* 5: past first_k, ranges are served again. */
	fetch_on(h, url_paths[F_MID], &ranged, &x);
	cr_assert_eq(x.status, 206);
	expect_slice(&x, F_MID, 100, 100);
	xfer_free(&x);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), 5);

	/* first_k = 0: every request; a missing file is still 404. */
	cr_assert_eq(fault_origin_set(fo, "/nope.sst", &(struct fault){ .kind = FAULT_NORANGE }),
	             0);
	fetch_on(h, "/nope.sst", &ranged, &x);
	cr_assert_eq(x.status, 404);
	xfer_free(&x);
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &(struct fault){ .kind = FAULT_NORANGE }),
	             0);
	for (int k = 0; k < 3; k++) {
		fetch_on(h, url_paths[F_SMALL], &resume, &x);
		cr_assert_eq(x.rc, CURLE_RANGE_ERROR, "got %s", curl_easy_strerror(x.rc));
		xfer_free(&x);
	}
	curl_easy_cleanup(h);
	stop_checked();
}

/* ------------------------------------------------------------------------ */
/* The request log and the served-bytes counter                             */

static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sends req on a new connection and reads the response to the close. */
static char *raw_exchange(const char *req)
{
	int fd = raw_connect();
	raw_send(fd, req);
	size_t len;
	char *resp = raw_read_to_eof(fd, &len);
	close(fd);
	return resp;
}

Test(faultorigin, log_has_ranges_hosts_statuses_and_ordered_times)
{
	const char *host = fault_origin_url(fo) + strlen("http://");
	char longhost[128];
	memset(longhost, 'h', sizeof(longhost) - 1);
	longhost[sizeof(longhost) - 1] = '\0';
	char *long_req = ds_strfmt("GET /000003.sst HTTP/1.1\r\nHost: %s\r\n"
	                           "Connection: close\r\n\r\n", longhost);
	cr_assert_not_null(long_req);
	struct {
		const char *range;     /* CURLOPT_RANGE, for curl */
		curl_off_t resume;
		const char *raw;       /* or this request on a raw socket */
		int status;
		int64_t start, end;
		const char *host;      /* NULL: the URL's */
	} cases[] = {
		{ NULL, 0, NULL, 200, -1, -1, NULL },
		{ NULL, 1000, NULL, 206, 1000, -1, NULL },
		{ "100-199", 0, NULL, 206, 100, 199, NULL },
		{ "-10", 0, NULL, 206, -1, 10, NULL },
		{ "5000000-", 0, NULL, 416, 5000000, -1, NULL },
		{ NULL, 0,
		  "GET /000003.sst HTTP/1.1\r\nHost: mirror-b.example\r\nRange: bytes=0-1,5-6\r\n"
		  "Host: second\r\nConnection: close\r\n\r\n",
		  200, -1, -1, "mirror-b.example" },
		{ NULL, 0,
		  "GET /000003.sst HTTP/1.1\r\nhost:  mirror-c.example  \r\n"
		  "Range: bytes=9-3\r\nConnection: close\r\n\r\n",
		  200, -1, -1, "mirror-c.example" },
		{ NULL, 0,
		  "GET /000003.sst HTTP/1.1\r\nRange: bytes=99999999999999999999999-\r\n"
		  "Connection: close\r\n\r\n",
		  200, -1, -1, "" }, /* a number too big to read: ignored */
		{ NULL, 0,
		  "HEAD /000003.sst HTTP/1.0\r\nRange: bytes=18446744073709551615-\r\n\r\n",
		  416, INT64_MAX, -1, "" },
		{ NULL, 0, long_req, 200, -1, -1, "" /* checked below */ },
	};
	const size_t n = sizeof(cases) / sizeof(cases[0]);
	uint64_t before[16], after[16];
	cr_assert_leq(n, 16);
	for (size_t k = 0; k < n; k++) {
		before[k] = mono_ns();
		if (cases[k].raw) {
			char *resp = raw_exchange(cases[k].raw);
			char want[32];
			snprintf(want, sizeof(want), "HTTP/1.1 %d ", cases[k].status);
			cr_assert(strncmp(resp, want, strlen(want)) == 0, "case %zu: %.200s", k, resp);
			free(resp);
		} else {
			struct xfer x;
			struct opts op = { .range = cases[k].range, .resume = cases[k].resume };
			fetch(url_paths[F_MID], &op, &x);
			cr_assert_eq(x.status, cases[k].status, "case %zu", k);
			xfer_free(&x);
		}
		after[k] = mono_ns();
	}
	free(long_req);

	struct fault_request log[16];
	memset(log, 0xa5, sizeof(log));
	cr_assert_eq(fault_origin_log(fo, paths[F_MID], log, 16), (int)n);
	cr_assert_eq(fault_origin_requests(fo, paths[F_MID]), n);
	for (size_t k = 0; k < n; k++) {
		const struct fault_request *r = &log[k];
		cr_assert_eq(r->status, cases[k].status, "record %zu: status %d", k, r->status);
		cr_assert_eq(r->range_start, cases[k].start, "record %zu: range_start %lld", k,
		             (long long)r->range_start);
		cr_assert_eq(r->range_end, cases[k].end, "record %zu: range_end %lld", k,
		             (long long)r->range_end);
		if (k == n - 1) {
			cr_assert_eq(strlen(r->host), sizeof(r->host) - 1);
			cr_assert_eq(strncmp(r->host, longhost, sizeof(r->host) - 1), 0);
		} else {
			cr_assert_str_eq(r->host, cases[k].host ? cases[k].host : host, "record %zu", k);
		}
		/* Inside the client's own window, request before answer. */
		cr_assert_leq(before[k], r->t_request_ns, "record %zu", k);
		cr_assert_leq(r->t_request_ns, r->t_answered_ns, "record %zu", k);
		cr_assert_leq(r->t_answered_ns, after[k], "record %zu", k);
	}
	/* Entries past max are not written; n is returned all the same. */
	cr_assert_eq(log[n].status, (int)0xa5a5a5a5);
	struct fault_request two[3];
	memset(two, 0, sizeof(two));
	cr_assert_eq(fault_origin_log(fo, paths[F_MID], two, 2), (int)n);
	cr_assert_eq(memcmp(two, log, 2 * sizeof(two[0])), 0);
	cr_assert_eq(two[2].t_request_ns, 0);
	cr_assert_eq(fault_origin_log(fo, paths[F_MID], NULL, 0), (int)n);
	cr_assert_eq(fault_origin_log(fo, "/never-asked", NULL, 0), 0);

	/* clear() keeps the log; set() empties it, with the count. */
	fault_origin_clear(fo);
	cr_assert_eq(fault_origin_log(fo, paths[F_MID], NULL, 0), (int)n);
	struct fault f = { .kind = FAULT_503, .first_k = 1, .retry_after_s = 1 };
	cr_assert_eq(fault_origin_set(fo, paths[F_MID], &f), 0);
	cr_assert_eq(fault_origin_log(fo, paths[F_MID], NULL, 0), 0);
	struct xfer x;
	fetch(url_paths[F_MID], NULL, &x);
	cr_assert_eq(x.status, 503);
	xfer_free(&x);
	cr_assert_eq(fault_origin_log(fo, paths[F_MID], log, 16), 1);
	cr_assert_eq(log[0].status, 503);
	cr_assert_eq(log[0].range_start, -1);
	cr_assert_neq(log[0].t_answered_ns, 0);
	stop_checked();
}

/*
 * Responses without a body, one after the other on one connection: each
 * record must be complete the moment curl returns, with no waiting. Past
 * FAULT_LOG_MAX, requests are counted but not logged: the log keeps the
 * first ones (told apart by their range start), in order.
 */
Test(faultorigin, log_is_complete_when_the_head_is_read_and_keeps_the_first)
{
	const unsigned total = FAULT_LOG_MAX + 44;
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	static struct fault_request log[FAULT_LOG_MAX + 1];
	uint64_t prev_answered = 0;
	for (unsigned k = 0; k < total; k++) {
		struct xfer x;
		char range[32];
		snprintf(range, sizeof(range), "%u-", k);
		struct opts op = { .nobody = 1, .range = range };
		fetch_on(h, url_paths[F_BIG], &op, &x);
		cr_assert_eq(x.rc, CURLE_OK, "request %u: %s", k, curl_easy_strerror(x.rc));
		cr_assert_eq(x.status, 206);
		xfer_free(&x);
		int n = fault_origin_log(fo, paths[F_BIG], log, FAULT_LOG_MAX + 1);
		cr_assert_eq(n, (int)(k + 1 < FAULT_LOG_MAX ? k + 1 : FAULT_LOG_MAX));
		if (k >= FAULT_LOG_MAX)
			continue;
		cr_assert_eq(log[k].status, 206, "request %u: record not complete", k);
		cr_assert_neq(log[k].t_answered_ns, 0, "request %u: record not complete", k);
		cr_assert_geq(log[k].t_request_ns, prev_answered, "request %u", k);
		prev_answered = log[k].t_answered_ns;
	}
	curl_easy_cleanup(h);
	cr_assert_eq(fault_origin_requests(fo, paths[F_BIG]), total);
	for (unsigned k = 0; k < FAULT_LOG_MAX; k++)
		cr_assert_eq(log[k].range_start, (int64_t)k, "record %u", k);
	stop_checked();
}

/* A retry that honours Retry-After shows in the log as a gap of at least
 * that long between the 503 answered and the next request, also on one
 * kept-alive connection (t_request_ns is the head's, not the connection's). */
Test(faultorigin, log_times_show_the_wait_between_a_503_and_its_retry)
{
	struct fault f = { .kind = FAULT_503, .first_k = 1, .retry_after_s = 1 };
	cr_assert_eq(fault_origin_set(fo, paths[F_SMALL], &f), 0);
	CURL *h = curl_easy_init();
	cr_assert_not_null(h);
	struct xfer x;
	fetch_on(h, url_paths[F_SMALL], NULL, &x);
	cr_assert_eq(x.status, 503);
	cr_assert_eq(x.retry_after, 1);
	xfer_free(&x);
	child_sleep_ms(1000);
	fetch_on(h, url_paths[F_SMALL], NULL, &x);
	expect_whole(&x, F_SMALL);
	cr_assert_eq(x.new_conns, 0, "the retry did not reuse the connection");
	xfer_free(&x);
	curl_easy_cleanup(h);
	struct fault_request log[2];
	cr_assert_eq(fault_origin_log(fo, paths[F_SMALL], log, 2), 2);
	cr_assert_eq(log[0].status, 503);
	cr_assert_eq(log[1].status, 200);
	cr_assert_geq(log[1].t_request_ns - log[0].t_answered_ns, 1000000000ull,
	              "%llu ns between the 503 and the retry",
	              (unsigned long long)(log[1].t_request_ns - log[0].t_answered_ns));
	stop_checked();
}

Test(faultorigin, body_bytes_counts_file_bytes_sent_per_origin)
{
	cr_assert_eq(fault_origin_body_bytes(fo), 0);
	struct xfer x;
	uint64_t want = 0;

	fetch(url_paths[F_SMALL], NULL, &x);
	expect_whole(&x, F_SMALL);
	xfer_free(&x);
	want += sizes[F_SMALL];
	cr_assert_eq(fault_origin_body_bytes(fo), want);

	struct opts ranged = { .range = "100-199" };
	fetch(url_paths[F_MID], &ranged, &x);
	cr_assert_eq(x.status, 206);
	xfer_free(&x);
	want += 100;
	cr_assert_eq(fault_origin_body_bytes(fo), want);

	/* No file bytes: a HEAD, a 404, a 416, a 503, a 429 (their text bodies
	 * do not count). */
	struct opts head = { .nobody = 1 };
	fetch(url_paths[F_MID], &head, &x);
	xfer_free(&x);
	fetch("/nope.sst", NULL, &x);
	cr_assert_eq(x.status, 404);
	xfer_free(&x);
	struct opts past = { .range = "5000-" };
	fetch(url_paths[F_SMALL], &past, &x);
	cr_assert_eq(x.status, 416);
	xfer_free(&x);
	cr_assert_eq(fault_origin_set(fo, paths[F_ONE], &(struct fault){ .kind = FAULT_503 }), 0);
	fetch(url_paths[F_ONE], NULL, &x);
	cr_assert_eq(x.status, 503);
	xfer_free(&x);
	cr_assert_eq(fault_origin_set(fo, paths[F_ONE], &(struct fault){ .kind = FAULT_429 }), 0);
	fetch(url_paths[F_ONE], NULL, &x);
	cr_assert_eq(x.status, 429);
	xfer_free(&x);
	cr_assert_eq(fault_origin_body_bytes(fo), want);

	/* A cut body counts what was sent; a flipped and a no-range body whole. */
	cr_assert_eq(fault_origin_set(fo, paths[F_BIG],
	                              &(struct fault){ .kind = FAULT_CLOSE, .at = 4096 }),
	             0);
	fetch(url_paths[F_BIG], NULL, &x);
	cr_assert_eq(x.rc, CURLE_PARTIAL_FILE);
	xfer_free(&x);
	cr_assert_eq(fault_origin_set(fo, paths[F_MID],
	                              &(struct fault){ .kind = FAULT_RESET, .at = 100000 }),
	             0);
	fetch(url_paths[F_MID], NULL, &x);
	cr_assert_eq(x.rc, CURLE_RECV_ERROR);
	xfer_free(&x);
	cr_assert_eq(fault_origin_set(fo, paths[F_SPACE],
	                              &(struct fault){ .kind = FAULT_FLIP, .at = 5 }),
	             0);
	fetch(url_paths[F_SPACE], NULL, &x);
	cr_assert_eq(x.len, sizes[F_SPACE]);
	xfer_free(&x);
	cr_assert_eq(fault_origin_set(fo, paths[F_NESTED],
	                              &(struct fault){ .kind = FAULT_NORANGE }),
	             0);
	fetch(url_paths[F_NESTED], &ranged, &x);
	cr_assert_eq(x.status, 200);
	xfer_free(&x);
	want += 4096 + 100000 + sizes[F_SPACE] + sizes[F_NESTED];
	cr_assert_eq(fault_origin_body_bytes(fo), want);

	/* A second origin on the same files counts its own bytes only. */
	struct fault_origin *fo2 = NULL;
	int err = fault_origin_start(ds.dir, &fo2);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
	struct opts other = { .origin = fo2 };
	fetch(url_paths[F_MID], &other, &x);
	expect_whole(&x, F_MID);
	xfer_free(&x);
	struct opts other_ranged = { .origin = fo2, .range = "-7" };
	fetch(url_paths[F_MID], &other_ranged, &x);
	cr_assert_eq(x.status, 206);
	xfer_free(&x);
	cr_assert_eq(fault_origin_body_bytes(fo2), sizes[F_MID] + 7);
	cr_assert_eq(fault_origin_body_bytes(fo), want);
	struct fault_request r;
	cr_assert_eq(fault_origin_log(fo2, paths[F_MID], &r, 1), 2);
	cr_assert_str_eq(r.host, fault_origin_url(fo2) + strlen("http://"));
	cr_assert_str_neq(r.host, fault_origin_url(fo) + strlen("http://"));
	fault_origin_stop(fo2);
	stop_checked();
}
