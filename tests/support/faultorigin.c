/*
 * faultorigin.c - an HTTP/1.1 origin in the test process that injects
 * faults per path (see faultorigin.h for the contract).
 *
 * Every socket is non-blocking and every wait is a poll() that also watches
 * one eventfd, written once by fault_origin_stop() and never read: from then
 * on every poll returns at once, so no handler can sleep through a stop,
 * whatever its client does.
 */
#include "faultorigin.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEAD_MAX 16384          /* a request head larger than this gets 431 */
#define IO_CHUNK (256u * 1024u) /* pread + send unit; also the SLOW chunk cap */
#define LINGER_MS 2000          /* hang guard: a clean close waits this long
                                   per read for the client's FIN */
#define DRAIN_POLL_MS 1         /* FAULT_RESET: how often the send queue is
                                   checked while the client acknowledges */
#define ACCEPT_RETRY_MS 10      /* after EMFILE and the like */

/* One path of the table: its fault, the requests counted since it was set
 * (or first seen) and the log of the first FAULT_LOG_MAX of them. Entries
 * are never removed, so an index into the table stays valid. */
struct entry {
	char *path;
	struct fault f;
	unsigned count;
	unsigned gen;                /* bumped by each set: tells a handler
	                                whether its record is still in log[] */
	struct fault_request *log;
	unsigned nlog, logcap;
};

/* Where a request's record is: log[idx] of entry tab[ei], if the entry's
 * gen is still gen. */
struct ticket {
	int valid;
	size_t ei;
	unsigned gen, idx;
};

struct conn {
	struct fault_origin *o;
	int fd;                 /* -1 once closed */
	pthread_t thr;
	atomic_int done;        /* set by the thread as its last act */
	struct conn *next;      /* the accept thread's list */
	size_t have;            /* bytes of in[] read and not yet consumed */
	char in[HEAD_MAX];      /* the head is parsed (and cut up) in place */
	char *buf;              /* IO_CHUNK bytes: body chunks, discarded input */
};

struct fault_origin {
	int lfd;
	int wakefd;             /* readable once stop has begun */
	int rootfd;             /* O_PATH of root: files are opened relative to it */
	atomic_int stopping;
	atomic_uint nconn;
	atomic_uint nreq;
	_Atomic uint64_t body_bytes;
	pthread_t acceptor;
	char url[64];
	pthread_mutex_t mu;     /* guards tab (its entries' logs too), ntab, cap */
	struct entry *tab;
	size_t ntab, cap;
	struct conn *conns;     /* the accept thread's until it is joined, then stop's */
};

/* What a handled request leaves the connection to do. */
enum next { NEXT_REQUEST, NEXT_CLOSE, NEXT_ABORT };

/* ------------------------------------------------------------------------ */
/* Waiting and sending                                                      */

static int stopping(const struct fault_origin *o)
{
	return atomic_load_explicit(&o->stopping, memory_order_acquire);
}

/*
 * Waits until fd (ignored when < 0) has one of `events` (or an error or
 * hangup), or timeout_ms passes (-1: no limit), or the origin stops.
 * Returns 1, 0 on timeout, -ESHUTDOWN on stop, or -errno of poll.
 */
static int wait_fd(struct fault_origin *o, int fd, short events, int timeout_ms)
{
	struct pollfd p[2] = {
		{ .fd = o->wakefd, .events = POLLIN },
		{ .fd = fd, .events = events },
	};
	for (;;) {
		if (stopping(o))
			return -ESHUTDOWN;
		int n = poll(p, 2, timeout_ms);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		if (p[0].revents || stopping(o))
			return -ESHUTDOWN;
		return n > 0 ? 1 : 0;
	}
}

/* Sends all of p, *len bytes; leaves in *len what was not sent. Returns 0,
 * -ESHUTDOWN, or the -errno of send (the client went away). */
static int send_loop(struct conn *c, const char *p, size_t *len)
{
	while (*len > 0) {
		if (stopping(c->o))
			return -ESHUTDOWN;
		ssize_t n = send(c->fd, p, *len, MSG_NOSIGNAL);
		if (n > 0) {
			p += n;
			*len -= (size_t)n;
			continue;
		}
		if (n == 0)
			return -EIO;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int w = wait_fd(c->o, c->fd, POLLOUT, -1);
		if (w < 0)
			return w;
	}
	return 0;
}

/*
 * Sends all of p. Returns as send_loop(). With `body`, the bytes count in
 * o->body_bytes before they are sent, so that a client never reads bytes
 * not yet counted; what could not be sent is taken back.
 */
static int send_all(struct conn *c, const void *p, size_t len, int body)
{
	if (body)
		atomic_fetch_add_explicit(&c->o->body_bytes, len, memory_order_relaxed);
	int err = send_loop(c, p, &len);
	if (body && len > 0)
		atomic_fetch_sub_explicit(&c->o->body_bytes, len, memory_order_relaxed);
	return err;
}

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* Sleeps until the monotonic clock reaches due_ns. Returns 0 or -ESHUTDOWN. */
static int sleep_until(struct fault_origin *o, uint64_t due_ns)
{
	for (;;) {
		uint64_t now = now_ns();
		if (now >= due_ns)
			return stopping(o) ? -ESHUTDOWN : 0;
		uint64_t ms = (due_ns - now + 999999) / 1000000;
		int w = wait_fd(o, -1, 0, ms > 1000 ? 1000 : (int)ms);
		if (w < 0)
			return w;
	}
}

/*
 * The close a client reads as end of data: FIN first, then read and drop
 * whatever the client still sends until it closes too. Closing with unread
 * input would make the kernel send a reset instead, which the client could
 * see before the last bytes of the response.
 */
static void close_clean(struct conn *c)
{
	shutdown(c->fd, SHUT_WR);
	for (;;) {
		int w = wait_fd(c->o, c->fd, POLLIN | POLLRDHUP, LINGER_MS);
		if (w <= 0)
			break;
		ssize_t n = recv(c->fd, c->buf, IO_CHUNK, MSG_DONTWAIT);
		if (n > 0)
			continue;
		if (n < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK))
			continue;
		break;
	}
	close(c->fd);
	c->fd = -1;
}

/*
 * FAULT_RESET. Waits until the client has acknowledged every byte sent
 * (SIOCOUTQ: bytes not yet acknowledged), so the bytes before the fault
 * are in its receive queue and not discarded with ours; then closes with
 * linger {1, 0}, which sends RST. Stop or a client gone ends the wait early.
 */
static void close_reset(struct conn *c)
{
	for (;;) {
		int outq = 0;
		if (ioctl(c->fd, SIOCOUTQ, &outq) != 0 || outq <= 0)
			break;
		int w = wait_fd(c->o, c->fd, POLLRDHUP, DRAIN_POLL_MS);
		if (w != 0)
			break;
	}
	struct linger lg = { .l_onoff = 1, .l_linger = 0 };
	setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(c->fd);
	c->fd = -1;
}

/* FAULT_STALL: sends nothing until the client closes or the origin stops;
 * anything the client sends meanwhile is dropped. */
static void stall(struct conn *c)
{
	for (;;) {
		int w = wait_fd(c->o, c->fd, POLLIN | POLLRDHUP, -1);
		if (w < 0)
			return;
		ssize_t n = recv(c->fd, c->buf, IO_CHUNK, MSG_DONTWAIT);
		if (n == 0)
			return;
		if (n < 0 && errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK)
			return;
	}
}

/* ------------------------------------------------------------------------ */
/* The fault table                                                          */

/* Caller holds o->mu. Returns the entry of path, or NULL. */
static struct entry *find_locked(struct fault_origin *o, const char *path)
{
	for (size_t i = 0; i < o->ntab; i++)
		if (strcmp(o->tab[i].path, path) == 0)
			return &o->tab[i];
	return NULL;
}

/* Caller holds o->mu. Returns the entry of path, added if new, or NULL
 * when out of memory. */
static struct entry *get_locked(struct fault_origin *o, const char *path)
{
	struct entry *e = find_locked(o, path);
	if (e)
		return e;
	if (o->ntab == o->cap) {
		size_t cap = o->cap ? o->cap * 2 : 64;
		struct entry *tab = realloc(o->tab, cap * sizeof(*tab));
		if (!tab)
			return NULL;
		o->tab = tab;
		o->cap = cap;
	}
	char *copy = strdup(path);
	if (!copy)
		return NULL;
	e = &o->tab[o->ntab++];
	memset(e, 0, sizeof(*e));
	e->path = copy;
	return e;
}

/*
 * Counts one request of path and, among the first FAULT_LOG_MAX, logs rec
 * for it (*t tells where; not valid when unlogged); returns in *f the fault
 * it gets (FAULT_NONE when none applies). Out of memory the request goes
 * uncounted, unfaulted, or only unlogged.
 */
static void count_request(struct fault_origin *o, const char *path,
                          const struct fault_request *rec, struct fault *f,
                          struct ticket *t)
{
	memset(f, 0, sizeof(*f));
	memset(t, 0, sizeof(*t));
	pthread_mutex_lock(&o->mu);
	struct entry *e = get_locked(o, path);
	if (e) {
		e->count++;
		if (e->f.kind != FAULT_NONE && (e->f.first_k == 0 || e->count <= e->f.first_k))
			*f = e->f;
		if (e->count <= FAULT_LOG_MAX && e->nlog == e->logcap) {
			unsigned cap = e->logcap ? e->logcap * 2 : 8;
			if (cap > FAULT_LOG_MAX)
				cap = FAULT_LOG_MAX;
			struct fault_request *log = realloc(e->log, cap * sizeof(*log));
			if (log) {
				e->log = log;
				e->logcap = cap;
			}
		}
		if (e->count <= FAULT_LOG_MAX && e->nlog < e->logcap) {
			*t = (struct ticket){ .valid = 1, .ei = (size_t)(e - o->tab), .gen = e->gen,
			                      .idx = e->nlog };
			e->log[e->nlog++] = *rec;
		}
	}
	pthread_mutex_unlock(&o->mu);
}

/* Fills in the status and, when not 0, t_answered_ns of a logged request. */
static void log_answer(struct fault_origin *o, const struct ticket *t, int status,
                       uint64_t t_answered_ns)
{
	if (!t->valid)
		return;
	pthread_mutex_lock(&o->mu);
	struct entry *e = &o->tab[t->ei];
	if (e->gen == t->gen && t->idx < e->nlog) {
		e->log[t->idx].status = status;
		e->log[t->idx].t_answered_ns = t_answered_ns;
	}
	pthread_mutex_unlock(&o->mu);
}

/* ------------------------------------------------------------------------ */
/* Requests                                                                 */

struct req {
	int head_only;          /* HEAD */
	int close;              /* close after the response */
	char *target;           /* request-target, NUL-terminated in c->in */
	const char *range;      /* Range value, or NULL */
	const char *host;       /* first Host value, or NULL */
	struct ticket log;      /* its record in the path's log, if any */
};

/* Length of the head in in[0..have) up to and including its blank line,
 * or 0 while incomplete. */
static size_t head_len(const char *in, size_t have)
{
	for (size_t i = 0; i < have; i++) {
		if (in[i] != '\n')
			continue;
		if (i + 1 < have && in[i + 1] == '\n')
			return i + 2;
		if (i + 2 < have && in[i + 1] == '\r' && in[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/*
 * Reads until c->in holds a complete head (bytes already there from a
 * previous read count). Returns its length, 0 when the client closed
 * between requests, -E2BIG when it does not fit, -ESHUTDOWN or -errno.
 */
static ssize_t read_head(struct conn *c)
{
	for (;;) {
		/* CRLFs between requests are allowed (RFC 9112 2.2): drop them. */
		size_t skip = 0;
		while (skip < c->have && (c->in[skip] == '\r' || c->in[skip] == '\n'))
			skip++;
		if (skip) {
			memmove(c->in, c->in + skip, c->have - skip);
			c->have -= skip;
		}
		size_t len = head_len(c->in, c->have);
		if (len)
			return (ssize_t)len;
		if (c->have == HEAD_MAX)
			return -E2BIG;
		ssize_t n = recv(c->fd, c->in + c->have, HEAD_MAX - c->have, MSG_DONTWAIT);
		if (n > 0) {
			c->have += (size_t)n;
			continue;
		}
		if (n == 0)
			return c->have ? -EPROTO : 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return -errno;
		int w = wait_fd(c->o, c->fd, POLLIN, -1);
		if (w < 0)
			return w;
	}
}

/* Case-insensitive: does the comma-separated list s hold the token tok? */
static int has_token(const char *s, const char *tok)
{
	size_t tl = strlen(tok);
	while (*s) {
		while (*s == ' ' || *s == '\t' || *s == ',')
			s++;
		size_t n = strcspn(s, ",");
		size_t m = n;
		while (m > 0 && (s[m - 1] == ' ' || s[m - 1] == '\t'))
			m--;
		if (m == tl && strncasecmp(s, tok, tl) == 0)
			return 1;
		s += n;
	}
	return 0;
}

/*
 * Parses the head in c->in[0..len) in place. Returns 0, or the status to
 * answer it with (400, 405, 505), in which case rq->close is set.
 */
static int parse_head(struct conn *c, size_t len, struct req *rq)
{
	memset(rq, 0, sizeof(*rq));
	char *p = c->in;
	char *end = c->in + len;
	end[-1] = '\0';

	/* Request line: METHOD SP TARGET SP HTTP/1.x */
	char *eol = strchr(p, '\n');
	if (!eol) {
		/* Not reached: head_len() found a newline before the last one. */
		rq->close = 1;
		return 400;
	}
	*eol = '\0';
	if (eol > p && eol[-1] == '\r')
		eol[-1] = '\0';
	char *sp1 = strchr(p, ' ');
	char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
	if (!sp1 || !sp2 || sp2 == sp1 + 1) {
		rq->close = 1;
		return 400;
	}
	*sp1 = '\0';
	*sp2 = '\0';
	rq->target = sp1 + 1;
	const char *version = sp2 + 1;
	int http11;
	if (strcmp(version, "HTTP/1.1") == 0) {
		http11 = 1;
	} else if (strcmp(version, "HTTP/1.0") == 0) {
		http11 = 0;
	} else {
		rq->close = 1;
		return strncmp(version, "HTTP/", 5) == 0 ? 505 : 400;
	}
	int method_ok = 1;
	if (strcmp(p, "HEAD") == 0)
		rq->head_only = 1;
	else if (strcmp(p, "GET") != 0)
		method_ok = 0;

	int keep = http11, has_body = 0;
	for (p = eol + 1; p < end && *p; p = eol + 1) {
		eol = strchr(p, '\n');
		if (!eol)
			break;
		*eol = '\0';
		if (eol > p && eol[-1] == '\r')
			eol[-1] = '\0';
		char *colon = strchr(p, ':');
		if (!colon)
			continue;
		*colon = '\0';
		char *v = colon + 1;
		while (*v == ' ' || *v == '\t')
			v++;
		size_t vl = strlen(v);
		while (vl > 0 && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
			v[--vl] = '\0';
		if (strcasecmp(p, "Connection") == 0) {
			if (has_token(v, "close"))
				keep = 0;
			else if (has_token(v, "keep-alive"))
				keep = 1;
		} else if (strcasecmp(p, "Range") == 0) {
			rq->range = v;
		} else if (strcasecmp(p, "Host") == 0) {
			if (!rq->host)
				rq->host = v;
		} else if (strcasecmp(p, "Transfer-Encoding") == 0) {
			has_body = 1;
		} else if (strcasecmp(p, "Content-Length") == 0) {
			has_body |= strcmp(v, "0") != 0;
		}
	}
	/* A request body is never read: close after answering so it is not
	 * taken for the next request. */
	rq->close = !keep || has_body || !method_ok;
	return method_ok ? 0 : 405;
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * Turns the request-target into the decoded URL path, in place: drops an
 * absolute form's scheme and authority and the query, decodes %XX. Returns
 * 0, 400 (not a path, bad escape, NUL) or 403 (a ".." component).
 */
static int decode_path(char *t)
{
	if (strncasecmp(t, "http://", 7) == 0) {
		char *slash = strchr(t + 7, '/');
		if (!slash)
			return 400;
		memmove(t, slash, strlen(slash) + 1);
	}
	if (t[0] != '/')
		return 400;
	t[strcspn(t, "?#")] = '\0';
	char *w = t;
	for (const char *r = t; *r; r++) {
		if (*r != '%') {
			*w++ = *r;
			continue;
		}
		int hi = hexval(r[1]);
		int lo = hi < 0 ? -1 : hexval(r[2]);
		if (lo < 0 || (hi == 0 && lo == 0))
			return 400;
		*w++ = (char)(hi * 16 + lo);
		r += 2;
	}
	*w = '\0';
	for (const char *s = t; *s;) {
		size_t n = strcspn(s, "/");
		if (n == 2 && s[0] == '.' && s[1] == '.')
			return 403;
		s += n;
		while (*s == '/')
			s++;
	}
	return 0;
}

/* Reads an unsigned decimal of at least one digit; 0 on success, -1 on no
 * digit or overflow. */
static int parse_u64(const char **sp, uint64_t *v)
{
	const char *s = *sp;
	uint64_t x = 0;
	if (*s < '0' || *s > '9')
		return -1;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');
		if (x > (UINT64_MAX - d) / 10)
			return -1;
		x = x * 10 + d;
	}
	*sp = s;
	*v = x;
	return 0;
}

/* A Range value read as "bytes=A-B", either number optional. */
struct range_spec {
	int has_a, has_b;
	uint64_t a, b;
};

/*
 * Reads a Range value. Returns 0 with *rs set for one byte range, -1 for a
 * header to ignore: none, other unit, several ranges, bad syntax, B < A.
 */
static int parse_range_spec(const char *v, struct range_spec *rs)
{
	memset(rs, 0, sizeof(*rs));
	if (!v || strncasecmp(v, "bytes=", 6) != 0)
		return -1;
	const char *s = v + 6;
	while (*s == ' ')
		s++;
	if (parse_u64(&s, &rs->a) == 0)
		rs->has_a = 1;
	if (*s != '-')
		return -1;
	s++;
	if (parse_u64(&s, &rs->b) == 0)
		rs->has_b = 1;
	while (*s == ' ')
		s++;
	if (*s != '\0' || (!rs->has_a && !rs->has_b))
		return -1;
	if (rs->has_a && rs->has_b && rs->b < rs->a)
		return -1;
	return 0;
}

static int64_t log_number(int has, uint64_t v)
{
	if (!has)
		return -1;
	return v > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)v;
}

enum range_result { RANGE_NONE, RANGE_OK, RANGE_UNSATISFIABLE };

/*
 * Applies a Range value to a file of `size` bytes. RANGE_OK sets the
 * inclusive [*first, *last]; RANGE_NONE means serve the whole file (no
 * header, or one to ignore: other unit, several ranges, bad syntax, B < A).
 */
static enum range_result parse_range(const char *v, uint64_t size, uint64_t *first,
                                     uint64_t *last)
{
	struct range_spec rs;
	if (parse_range_spec(v, &rs) != 0)
		return RANGE_NONE;
	uint64_t a = rs.a, b = rs.b;
	int has_a = rs.has_a, has_b = rs.has_b;
	if (!has_a) {
		/* Suffix: the last b bytes. */
		if (b == 0 || size == 0)
			return RANGE_UNSATISFIABLE;
		*first = b >= size ? 0 : size - b;
		*last = size - 1;
		return RANGE_OK;
	}
	if (a >= size)
		return RANGE_UNSATISFIABLE;
	*first = a;
	*last = has_b && b < size ? b : size - 1;
	return RANGE_OK;
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 206: return "Partial Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 416: return "Range Not Satisfiable";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/*
 * Sends a response head of len > 0 bytes and logs it: the status first,
 * then the time once all but the last byte is out, before that byte, so a
 * client never reads a whole head whose record is incomplete. Returns as
 * send_all().
 */
static int send_head(struct conn *c, const struct req *rq, int status, const char *head,
                     size_t len)
{
	log_answer(c->o, &rq->log, status, 0);
	int err = send_all(c, head, len - 1, 0);
	if (err)
		return err;
	log_answer(c->o, &rq->log, status, now_ns());
	err = send_all(c, head + len - 1, 1, 0);
	if (err)
		log_answer(c->o, &rq->log, status, 0);
	return err;
}

/*
 * Sends a response with a short text body ("STATUS REASON\n"), no body on a
 * HEAD. extra is more header lines, each ending in CRLF, or "". Returns
 * what the connection does next.
 */
static enum next send_status(struct conn *c, int status, const char *extra,
                             const struct req *rq)
{
	char body[64];
	int blen = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	char head[512];
	int hlen = snprintf(head, sizeof(head),
	                    "HTTP/1.1 %d %s\r\n"
	                    "Server: sstf-faultorigin\r\n"
	                    "Content-Type: text/plain\r\n"
	                    "Content-Length: %d\r\n"
	                    "%s%s\r\n",
	                    status, reason(status), blen, extra,
	                    rq->close ? "Connection: close\r\n" : "");
	if (hlen <= 0 || (size_t)hlen >= sizeof(head))
		return NEXT_ABORT;
	if (send_head(c, rq, status, head, (size_t)hlen) != 0)
		return NEXT_ABORT;
	if (!rq->head_only && send_all(c, body, (size_t)blen, 0) != 0)
		return NEXT_ABORT;
	return rq->close ? NEXT_CLOSE : NEXT_REQUEST;
}

/*
 * Sends len body bytes of fd from file offset off. FAULT_FLIP flips its
 * byte; FAULT_SLOW paces what follows its first `at` bytes. Returns 0,
 * -ESHUTDOWN, -EIO (the file got shorter) or the -errno of send.
 */
static int send_body(struct conn *c, int fd, uint64_t off, uint64_t len,
                     const struct fault *f)
{
	uint64_t fast = f->kind == FAULT_SLOW ? f->at : UINT64_MAX;
	uint64_t chunk_max = IO_CHUNK;
	if (f->kind == FAULT_SLOW) {
		chunk_max = f->rate / 20;
		if (chunk_max < 1)
			chunk_max = 1;
		if (chunk_max > IO_CHUNK)
			chunk_max = IO_CHUNK;
	}
	uint64_t sent = 0, paced = 0, t0 = 0;
	while (sent < len) {
		uint64_t want = len - sent;
		if (sent < fast) {
			uint64_t to_fast = fast - sent;
			want = want < to_fast ? want : to_fast;
			want = want < IO_CHUNK ? want : IO_CHUNK;
		} else {
			if (paced == 0)
				t0 = now_ns();
			/* Byte `paced` is due at t0 + paced / rate seconds. */
			uint64_t due = t0 + (uint64_t)((double)paced * 1e9 / (double)f->rate);
			int err = sleep_until(c->o, due);
			if (err)
				return err;
			want = want < chunk_max ? want : chunk_max;
		}
		ssize_t n = pread(fd, c->buf, (size_t)want, (off_t)(off + sent));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		uint64_t pos = off + sent;
		if (f->kind == FAULT_FLIP && f->at >= pos && f->at - pos < (uint64_t)n)
			c->buf[f->at - pos] ^= 0x01;
		int err = send_all(c, c->buf, (size_t)n, 1);
		if (err)
			return err;
		if (sent >= fast)
			paced += (uint64_t)n;
		sent += (uint64_t)n;
	}
	return 0;
}

/* Answers a GET or HEAD of the file at path (decoded, starts with '/'). */
static enum next serve_file(struct conn *c, const char *path, const struct req *rq,
                            const struct fault *f)
{
	int fd = openat(c->o->rootfd, path + 1,
	                O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	struct stat st;
	if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
		close(fd);
		fd = -1;
	}
	if (fd < 0)
		return send_status(c, 404, "", rq);

	uint64_t size = (uint64_t)st.st_size, first = 0, last = 0;
	int norange = f->kind == FAULT_NORANGE;
	enum range_result rr = norange ? RANGE_NONE : parse_range(rq->range, size, &first, &last);
	if (rr == RANGE_UNSATISFIABLE) {
		close(fd);
		char extra[64];
		snprintf(extra, sizeof(extra), "Content-Range: bytes */%llu\r\n",
		         (unsigned long long)size);
		return send_status(c, 416, extra, rq);
	}
	uint64_t len = rr == RANGE_OK ? last - first + 1 : size;
	char crange[96] = "";
	if (rr == RANGE_OK)
		snprintf(crange, sizeof(crange), "Content-Range: bytes %llu-%llu/%llu\r\n",
		         (unsigned long long)first, (unsigned long long)last,
		         (unsigned long long)size);
	int status = rr == RANGE_OK ? 206 : 200;
	char head[512];
	int hlen = snprintf(head, sizeof(head),
	                    "HTTP/1.1 %d %s\r\n"
	                    "Server: sstf-faultorigin\r\n"
	                    "Content-Type: application/octet-stream\r\n"
	                    "Content-Length: %llu\r\n"
	                    "%s%s%s\r\n",
	                    status, reason(status), (unsigned long long)len,
	                    norange ? "" : "Accept-Ranges: bytes\r\n", crange,
	                    rq->close ? "Connection: close\r\n" : "");
	int err = hlen > 0 && (size_t)hlen < sizeof(head) ? 0 : -EOVERFLOW;
	if (!err)
		err = send_head(c, rq, status, head, (size_t)hlen);

	/* How much of the body goes out before a cutting fault acts. */
	int cuts = f->kind == FAULT_RESET || f->kind == FAULT_CLOSE || f->kind == FAULT_STALL;
	uint64_t body = rq->head_only ? 0 : len;
	if (cuts && f->at < body)
		body = f->at;
	if (!err && body > 0)
		err = send_body(c, fd, rr == RANGE_OK ? first : 0, body, f);
	close(fd);
	if (err)
		return NEXT_ABORT;
	switch (f->kind) {
	case FAULT_RESET:
		close_reset(c);
		return NEXT_ABORT;
	case FAULT_CLOSE:
		return NEXT_CLOSE;
	case FAULT_STALL:
		stall(c);
		return NEXT_ABORT;
	default:
		return rq->close ? NEXT_CLOSE : NEXT_REQUEST;
	}
}

/*
 * Writes into out the Retry-After header line (with its CRLF) that fault f
 * gives, or "" for none.
 */
static void retry_after(const struct fault *f, char *out, size_t outlen)
{
	static const char wday[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
	static const char month[12][4] = { "Jan", "Feb", "Mar", "Apr", "May", "Jun",
	                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };
	out[0] = '\0';
	if (!f->retry_after_date) {
		if (f->retry_after_s)
			snprintf(out, outlen, "Retry-After: %u\r\n", f->retry_after_s);
		return;
	}
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	/* Rounded up: the date is never less than retry_after_s away. */
	time_t when = ts.tv_sec + (time_t)f->retry_after_s + (ts.tv_nsec > 0 ? 1 : 0);
	struct tm tm;
	if (!gmtime_r(&when, &tm))
		return;
	snprintf(out, outlen, "Retry-After: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n",
	         wday[tm.tm_wday], tm.tm_mday, month[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour,
	         tm.tm_min, tm.tm_sec);
}

/* Handles the request whose head is c->in[0..len), read at t_read_ns. */
static enum next handle(struct conn *c, size_t len, uint64_t t_read_ns)
{
	atomic_fetch_add_explicit(&c->o->nreq, 1, memory_order_relaxed);
	struct req rq;
	int status = parse_head(c, len, &rq);
	if (status)
		return send_status(c, status, status == 405 ? "Allow: GET, HEAD\r\n" : "", &rq);
	status = decode_path(rq.target);
	if (status)
		return send_status(c, status, "", &rq);

	struct fault_request rec = { .t_request_ns = t_read_ns, .range_start = -1,
	                             .range_end = -1 };
	struct range_spec rs;
	if (parse_range_spec(rq.range, &rs) == 0) {
		rec.range_start = log_number(rs.has_a, rs.a);
		rec.range_end = log_number(rs.has_b, rs.b);
	}
	if (rq.host)
		snprintf(rec.host, sizeof(rec.host), "%s", rq.host);
	struct fault f;
	count_request(c->o, rq.target, &rec, &f, &rq.log);
	if (f.kind == FAULT_503 || f.kind == FAULT_429) {
		char extra[64];
		retry_after(&f, extra, sizeof(extra));
		return send_status(c, f.kind == FAULT_503 ? 503 : 429, extra, &rq);
	}
	if (f.kind == FAULT_404)
		return send_status(c, 404, "", &rq);
	return serve_file(c, rq.target, &rq, &f);
}

static void *conn_main(void *arg)
{
	struct conn *c = arg;
	enum next next = c->buf ? NEXT_REQUEST : NEXT_ABORT;
	while (next == NEXT_REQUEST) {
		ssize_t len = read_head(c);
		if (len == -E2BIG) {
			struct req rq = { .close = 1 };
			next = send_status(c, 431, "", &rq);
			break;
		}
		if (len <= 0) {
			next = NEXT_ABORT;
			break;
		}
		next = handle(c, (size_t)len, now_ns());
		/* Keep what followed the head (a pipelined request). */
		c->have -= (size_t)len;
		memmove(c->in, c->in + len, c->have);
	}
	if (next == NEXT_CLOSE && c->fd >= 0 && !stopping(c->o))
		close_clean(c);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	/* The thread is joined at the next accept or at stop: give its buffer
	 * back now. */
	free(c->buf);
	c->buf = NULL;
	atomic_store_explicit(&c->done, 1, memory_order_release);
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* Accepting                                                                */

static void conn_free(struct conn *c)
{
	free(c->buf);
	free(c);
}

/* Joins and frees the connections whose thread has ended. */
static void reap(struct fault_origin *o)
{
	struct conn **pp = &o->conns;
	while (*pp) {
		struct conn *c = *pp;
		if (!atomic_load_explicit(&c->done, memory_order_acquire)) {
			pp = &c->next;
			continue;
		}
		pthread_join(c->thr, NULL);
		*pp = c->next;
		conn_free(c);
	}
}

static void *accept_main(void *arg)
{
	struct fault_origin *o = arg;
	for (;;) {
		int w = wait_fd(o, o->lfd, POLLIN, -1);
		if (w < 0)
			break;
		int fd = accept4(o->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			if (errno == EBADF || errno == EINVAL || errno == ENOTSOCK)
				break;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
				wait_fd(o, -1, 0, ACCEPT_RETRY_MS);
			continue;
		}
		atomic_fetch_add_explicit(&o->nconn, 1, memory_order_relaxed);
		reap(o);
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		struct conn *c = calloc(1, sizeof(*c));
		if (c)
			c->buf = malloc(IO_CHUNK);
		if (!c || !c->buf) {
			close(fd);
			if (c)
				conn_free(c);
			continue;
		}
		c->o = o;
		c->fd = fd;
		atomic_init(&c->done, 0);
		if (pthread_create(&c->thr, NULL, conn_main, c) != 0) {
			close(fd);
			conn_free(c);
			continue;
		}
		c->next = o->conns;
		o->conns = c;
	}
	return NULL;
}

/* ------------------------------------------------------------------------ */
/* API                                                                      */

int fault_origin_start(const char *root, struct fault_origin **out)
{
	struct fault_origin *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->lfd = o->wakefd = o->rootfd = -1;
	atomic_init(&o->stopping, 0);
	atomic_init(&o->nconn, 0);
	atomic_init(&o->nreq, 0);
	atomic_init(&o->body_bytes, 0);
	int err = pthread_mutex_init(&o->mu, NULL);
	if (err) {
		free(o);
		return -err;
	}

	struct sockaddr_in sa = { .sin_family = AF_INET };
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	socklen_t salen = sizeof(sa);
	int one = 1;
	o->rootfd = open(root, O_PATH | O_DIRECTORY | O_CLOEXEC);
	if (o->rootfd < 0)
		err = -errno;
	if (!err) {
		o->wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (o->wakefd < 0)
			err = -errno;
	}
	if (!err) {
		o->lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (o->lfd < 0)
			err = -errno;
	}
	if (!err && (setsockopt(o->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	             bind(o->lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	             listen(o->lfd, SOMAXCONN) != 0 ||
	             getsockname(o->lfd, (struct sockaddr *)&sa, &salen) != 0))
		err = -errno;
	if (!err) {
		snprintf(o->url, sizeof(o->url), "http://127.0.0.1:%u",
		         (unsigned)ntohs(sa.sin_port));
		err = -pthread_create(&o->acceptor, NULL, accept_main, o);
	}
	if (err) {
		if (o->lfd >= 0)
			close(o->lfd);
		if (o->wakefd >= 0)
			close(o->wakefd);
		if (o->rootfd >= 0)
			close(o->rootfd);
		pthread_mutex_destroy(&o->mu);
		free(o);
		return err;
	}
	*out = o;
	return 0;
}

const char *fault_origin_url(const struct fault_origin *o)
{
	return o->url;
}

int fault_origin_set(struct fault_origin *o, const char *path, const struct fault *f)
{
	static const struct fault none = { .kind = FAULT_NONE };
	if (!f)
		f = &none;
	if (!path || path[0] != '/' || f->kind < FAULT_NONE || f->kind > FAULT_NORANGE ||
	    (f->kind == FAULT_SLOW && f->rate == 0))
		return -EINVAL;
	pthread_mutex_lock(&o->mu);
	struct entry *e = get_locked(o, path);
	if (e) {
		e->f = *f;
		e->count = 0;
		e->nlog = 0;
		e->gen++;
	}
	pthread_mutex_unlock(&o->mu);
	return e ? 0 : -ENOMEM;
}

void fault_origin_clear(struct fault_origin *o)
{
	pthread_mutex_lock(&o->mu);
	for (size_t i = 0; i < o->ntab; i++)
		o->tab[i].f.kind = FAULT_NONE;
	pthread_mutex_unlock(&o->mu);
}

unsigned fault_origin_requests(struct fault_origin *o, const char *path)
{
	pthread_mutex_lock(&o->mu);
	const struct entry *e = find_locked(o, path);
	unsigned n = e ? e->count : 0;
	pthread_mutex_unlock(&o->mu);
	return n;
}

unsigned fault_origin_total_requests(struct fault_origin *o)
{
	return atomic_load(&o->nreq);
}

unsigned fault_origin_connections(struct fault_origin *o)
{
	return atomic_load(&o->nconn);
}

int fault_origin_log(struct fault_origin *o, const char *path, struct fault_request *out,
                     size_t max)
{
	pthread_mutex_lock(&o->mu);
	const struct entry *e = find_locked(o, path);
	unsigned n = e ? e->nlog : 0;
	for (size_t i = 0; i < n && i < max; i++)
		out[i] = e->log[i];
	pthread_mutex_unlock(&o->mu);
	return (int)n;
}

uint64_t fault_origin_body_bytes(struct fault_origin *o)
{
	return atomic_load(&o->body_bytes);
}

void fault_origin_stop(struct fault_origin *o)
{
	if (!o)
		return;
	atomic_store_explicit(&o->stopping, 1, memory_order_release);
	uint64_t one = 1;
	while (write(o->wakefd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(o->acceptor, NULL);
	/* No new connection from here: refused, not left in the backlog. */
	close(o->lfd);
	while (o->conns) {
		struct conn *c = o->conns;
		o->conns = c->next;
		pthread_join(c->thr, NULL);
		conn_free(c);
	}
	close(o->wakefd);
	close(o->rootfd);
	for (size_t i = 0; i < o->ntab; i++) {
		free(o->tab[i].path);
		free(o->tab[i].log);
	}
	free(o->tab);
	pthread_mutex_destroy(&o->mu);
	free(o);
}
