/*
 * http.c - the http(s) source: libcurl's multi_socket API, driven by the
 * ring.
 *
 * curl tells us which sockets to watch (socket callback) and when to call it
 * back (timer callback); we turn both into ring operations: one poll per
 * socket at a time, re-armed after each completion, and the engine's ring
 * timer for curl's (timers.c asks deadline()). curl_multi_perform is never
 * used.
 *
 * Each socket gets a SOCK slot for as long as curl watches it; its tag is
 * the socketp given to curl_multi_assign. Each stream has one easy handle
 * for the engine's life; CURLOPT_PRIVATE carries the stream slot's current
 * tag, so a finished transfer of a slot since reused is stale.
 *
 * Status and ranges. CURLOPT_FAILONERROR is not used: the first body bytes
 * of a response are checked here. An error status ends the attempt (its
 * body is not the file's: its first ERROR_BODY_MAX bytes are kept, so that
 * S3's <Code> and <Message> reach the detail); a ranged request answered
 * 200 is a whole body, which the stream layer handles (it falls back to one
 * stream). An error status with an empty body is caught when the transfer
 * is collected.
 *
 * s3:// URLs go through the same handles: the URL becomes the store's (s3.c
 * signs it); redirects are not followed, so a 3xx is an error there. A
 * handle that served S3 is unsigned before it serves anything else.
 *
 * Rule: nothing here calls curl_multi_remove_handle or ends an attempt from
 * inside a curl callback; curl forbids the first, and the second would run
 * user callbacks inside curl.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CURL_RECV_BUFFER (256 * 1024)
/* Enough for any S3 error document; a longer error body is cut off. */
#define ERROR_BODY_MAX 2048

/* One stream's curl state. */
struct http_stream {
	CURL *easy;
	bool attached;   /* in the multi handle */
	bool checked;    /* the status of this response was looked at */
	bool refused;    /* the write callback stopped the transfer */
	bool whole_body; /* a ranged request got 200 */
	bool error_status; /* the response is an error; its body is kept */
	bool s3;         /* the attempt goes to an S3 store */
	long status;
	size_t ebody_len;
	char ebody[ERROR_BODY_MAX];
	char err[CURL_ERROR_SIZE];
};

struct http_state {
	CURLM *multi;
	struct http_stream *v; /* by stream index */
	uint64_t timer_deadline_ns; /* 0: curl wants no timeout */
	char *url;       /* an s3:// URL made an endpoint URL, for curl to copy */
	size_t url_cap;
	bool curl_ran;   /* curl ran since the last collect: a transfer may
	                    have ended, its DONE message not yet read
	                    (invariant 9) */
};

static struct http_state *state_of(struct sstf_engine *e)
{
	return e->src_state[sstf__source_index(&sstf__http_source)];
}

static struct http_stream *hs_of(struct sstf_engine *e, const struct sstf__stream *s)
{
	return &state_of(e)->v[s->index];
}

/* The status of a response, looked at with its first body bytes. Returns
 * false when the body must not be delivered. */
static bool status_ok(struct http_stream *h, const struct sstf__stream *s)
{
	if (h->checked)
		return !h->refused;
	h->checked = true;
	curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
	if (h->status >= 400 || (h->s3 && h->status >= 300))
		h->refused = h->error_status = true;
	else if (s->ranged && h->status == 200)
		h->refused = h->whole_body = true;
	return !h->refused;
}

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct sstf__stream *s = ud;
	struct sstf_engine *e = s->engine;
	struct http_stream *h = hs_of(e, s);
	size_t len = size * nmemb;
	if (!status_ok(h, s)) {
		if (h->error_status && h->ebody_len < sizeof(h->ebody)) {
			size_t k = sizeof(h->ebody) - h->ebody_len;
			k = k < len ? k : len;
			memcpy(h->ebody + h->ebody_len, ptr, k);
			h->ebody_len += k;
			if (k == len)
				return len;
		}
		return 0; /* CURLE_WRITE_ERROR; collect reports why */
	}
	int r = sstf__stream_data(e, s, ptr, len);
	if (r == 0)
		return len;
	if (r == 1)
		return CURL_WRITEFUNC_PAUSE;
	h->refused = true;
	return 0;
}

/*
 * Makes the ring's poll for s match what curl wants: a poll add when none is
 * armed, a poll update when curl changes the mask of an armed one, a poll
 * remove when curl drops the socket. An update that finds the poll already
 * completed fails with -ENOENT; the poll's own completion then re-arms it
 * with the new mask, so that failure needs no handling.
 */
static void sock_sync(struct sstf_engine *e, struct sstf__slot *s)
{
	struct sstf__sock *k = &s->sock;
	uint64_t poll_ud = sstf__tag_op(s->tag, SSTF__OP_POLL, 0);
	if (k->armed) {
		if (k->armed == k->want || k->removing)
			return;
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		if (k->want == 0) {
			io_uring_prep_poll_remove(sqe, poll_ud);
			sstf__ring_tag(sqe, s, SSTF__OP_POLL_REMOVE, 0);
			k->removing = true;
		} else {
			io_uring_prep_poll_update(sqe, poll_ud, poll_ud, (unsigned)k->want,
			                          IORING_POLL_UPDATE_EVENTS);
			sstf__ring_tag(sqe, s, SSTF__OP_POLL_UPDATE, 0);
			k->armed = k->want;
		}
		return;
	}
	if (k->want && s->state == SSTF__SLOT_ACTIVE) {
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_poll_add(sqe, k->fd, (unsigned)k->want);
		sstf__ring_tag(sqe, s, SSTF__OP_POLL, 0);
		k->armed = k->want;
	}
}

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
                     void *socketp)
{
	struct sstf_engine *e = userp;
	struct sstf__slot *s = NULL;
	if (socketp)
		s = sstf__slot_resolve(&e->slots, (uint64_t)(uintptr_t)socketp);
	if (what == CURL_POLL_REMOVE) {
		if (!s)
			return 0;
		s->sock.want = 0;
		if (s->state == SSTF__SLOT_ACTIVE)
			sstf__slot_set_state(&e->slots, s, SSTF__SLOT_DRAINING);
		sock_sync(e, s);
		if (s->inflight == 0)
			sstf__slot_set_state(&e->slots, s, SSTF__SLOT_FREE);
		return 0;
	}
	if (!s) {
		s = sstf__slot_alloc(&e->slots, SSTF__SLOT_SOCK, NULL, 0);
		if (!s)
			return -1; /* curl fails the transfers on this socket */
		s->src = &sstf__http_source;
		s->sock.fd = fd;
		s->sock.want = s->sock.armed = 0;
		s->sock.removing = false;
		curl_multi_assign(state_of(e)->multi, fd, (void *)(uintptr_t)s->tag);
	}
	short want = 0;
	if (what & CURL_POLL_IN)
		want |= POLLIN;
	if (what & CURL_POLL_OUT)
		want |= POLLOUT;
	s->sock.want = want;
	sock_sync(e, s);
	return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *userp)
{
	struct sstf_engine *e = userp;
	struct http_state *st = state_of(e);
	if (timeout_ms < 0)
		st->timer_deadline_ns = 0;
	else
		st->timer_deadline_ns = sstf__now_ns() + (uint64_t)timeout_ms * 1000000u;
	return 0;
}

static void http_fini(struct sstf_engine *e);

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_result;

static void curl_global(void)
{
	curl_init_result = curl_global_init(CURL_GLOBAL_DEFAULT);
}

int sstf__curl_global_init(void)
{
	/* libcurl's global setup, once per process, not thread-safe itself. */
	pthread_once(&curl_once, curl_global);
	return curl_init_result == CURLE_OK ? 0 : -ENOMEM;
}

void sstf__http_easy_defaults(CURL *c, const struct sstf_config *cfg,
                              const struct sstf__net *net)
{
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(c, CURLOPT_MAXREDIRS, 5L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)cfg->connect_timeout_ms);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, (long)cfg->low_speed_bytes);
	curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, (long)cfg->low_speed_time_s);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	sstf__net_easy(net, c);
}

static int http_init(struct sstf_engine *e)
{
	if (sstf__curl_global_init() < 0)
		return -ENOMEM;
	struct http_state *st = sstf__alloc(&e->alloc, sizeof(*st));
	if (!st)
		return -ENOMEM;
	e->src_state[sstf__source_index(&sstf__http_source)] = st;
	st->v = sstf__alloc(&e->alloc, e->nstreams * sizeof(*st->v));
	st->multi = curl_multi_init();
	if (!st->v || !st->multi) {
		http_fini(e);
		return -ENOMEM;
	}
	CURLM *m = st->multi;
	curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(m, CURLMOPT_SOCKETDATA, e);
	curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(m, CURLMOPT_TIMERDATA, e);
	curl_multi_setopt(m, CURLMOPT_MAX_HOST_CONNECTIONS, (long)e->cfg.max_host_conns);
	/* curl sizes its cache of idle connections by the handles it holds
	 * (4 each); a stream's handle leaves the multi handle while its file
	 * syncs and renames, so the cache shrank under small files and closed
	 * connections the next file wanted. One per transfer and per host
	 * connection stays within the SOCK slots (engine.c). */
	curl_multi_setopt(m, CURLMOPT_MAXCONNECTS,
	                  (long)(e->cfg.max_transfers + e->cfg.max_host_conns));
	for (uint32_t i = 0; i < e->nstreams; i++) {
		struct http_stream *h = &st->v[i];
		CURL *c = curl_easy_init();
		if (!c) {
			http_fini(e);
			return -ENOMEM;
		}
		h->easy = c;
		curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(c, CURLOPT_WRITEDATA, &e->streams[i]);
		curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->err);
		curl_easy_setopt(c, CURLOPT_BUFFERSIZE, (long)CURL_RECV_BUFFER);
		sstf__http_easy_defaults(c, &e->cfg, &e->net);
	}
	return 0;
}

static void http_fini(struct sstf_engine *e)
{
	struct http_state *st = state_of(e);
	if (!st)
		return;
	/* The loop is gone: curl must not call back into the ring now. */
	if (st->multi) {
		curl_multi_setopt(st->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_setopt(st->multi, CURLMOPT_TIMERFUNCTION, NULL);
	}
	for (uint32_t i = 0; st->v && i < e->nstreams; i++) {
		if (st->v[i].easy && st->v[i].attached)
			curl_multi_remove_handle(st->multi, st->v[i].easy);
	}
	if (st->multi)
		curl_multi_cleanup(st->multi);
	for (uint32_t i = 0; st->v && i < e->nstreams; i++)
		if (st->v[i].easy)
			curl_easy_cleanup(st->v[i].easy);
	sstf__free(&e->alloc, st->v);
	sstf__free(&e->alloc, st->url);
	sstf__free(&e->alloc, st);
	e->src_state[sstf__source_index(&sstf__http_source)] = NULL;
}

static int http_start(struct sstf_engine *e, struct sstf__stream *s, const char *url)
{
	struct http_state *st = state_of(e);
	struct http_stream *h = hs_of(e, s);
	struct sstf__gen *g = s->file->gen;
	h->err[0] = '\0';
	h->checked = h->refused = h->whole_body = h->error_status = false;
	h->status = 0;
	h->ebody_len = 0;
	bool s3 = sstf__url_scheme(url) == SSTF__SCHEME_S3;
	if (s3) {
		long n = sstf__s3_url(e->net.s3, url, NULL, st->url, st->url_cap);
		if (n >= 0 && (size_t)n >= st->url_cap) {
			char *u = sstf__alloc(&e->alloc, (size_t)n + 1);
			if (!u) {
				sstf__file_fail(s->file, -ENOMEM, "out of memory for a URL");
				return -ENOMEM;
			}
			sstf__free(&e->alloc, st->url);
			st->url = u;
			st->url_cap = (size_t)n + 1;
			n = sstf__s3_url(e->net.s3, url, NULL, st->url, st->url_cap);
		}
		if (n < 0) {
			/* Checked at submit; only a bug gets here. */
			sstf__file_fail(s->file, -SSTF_EBADURL, "bad s3:// URL");
			return -SSTF_EBADURL;
		}
		url = st->url;
		sstf__s3_sign(e->net.s3, h->easy);
	} else if (h->s3) {
		sstf__s3_unsign(h->easy);
	}
	h->s3 = s3;
	/* curl copies the URL and the range: the scratch is free after. */
	curl_easy_setopt(h->easy, CURLOPT_URL, url);
	/* Redirects may only go where the batch allows; an S3 request goes
	 * to the store's scheme and is never redirected. */
	unsigned web = g->schemes & (SSTF__SCHEME_HTTP | SSTF__SCHEME_HTTPS);
	const char *protos = s3 ? (strncmp(url, "https:", 6) == 0 ? "https" : "http")
	                     : web == SSTF__SCHEME_HTTP  ? "http"
	                     : web == SSTF__SCHEME_HTTPS ? "https"
	                                                 : "http,https";
	curl_easy_setopt(h->easy, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(h->easy, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	char range[48];
	if (s->ranged) {
		if (s->end == sstf__stream_file_size(s))
			snprintf(range, sizeof(range), "%" PRIu64 "-", s->pos);
		else
			snprintf(range, sizeof(range), "%" PRIu64 "-%" PRIu64, s->pos, s->end - 1);
		curl_easy_setopt(h->easy, CURLOPT_RANGE, range);
	} else {
		curl_easy_setopt(h->easy, CURLOPT_RANGE, NULL);
	}
	curl_easy_setopt(h->easy, CURLOPT_PRIVATE, (void *)(uintptr_t)s->slot->tag);
	CURLMcode mc = curl_multi_add_handle(st->multi, h->easy);
	st->curl_ran = true;
	if (mc != CURLM_OK) {
		sstf__file_fail(s->file, -SSTF_ETRANSFER, "%s", curl_multi_strerror(mc));
		return -SSTF_ETRANSFER;
	}
	h->attached = true;
	return 0;
}

static void http_stop(struct sstf_engine *e, struct sstf__stream *s)
{
	struct http_stream *h = hs_of(e, s);
	if (!h->attached)
		return;
	curl_multi_remove_handle(state_of(e)->multi, h->easy);
	h->attached = false;
}

static void http_resume(struct sstf_engine *e, struct sstf__stream *s)
{
	struct http_stream *h = hs_of(e, s);
	if (h->attached) {
		/* Unpausing delivers buffered bytes at once, and may end the
		 * transfer right here. */
		curl_easy_pause(h->easy, CURLPAUSE_CONT);
		state_of(e)->curl_ran = true;
	}
}

/*
 * Transient failures: the same request may well succeed a moment later.
 * A wrong digest or a 404 will not, and a local error is not the origin's.
 */
bool sstf__http_transient(CURLcode rc, long status, const char *s3_code)
{
	if (status == 408 || status == 429 || status >= 500)
		return true;
	/* S3's 400 for a request it timed out on, and its throttle by name. */
	if (strcmp(s3_code, "RequestTimeout") == 0 || strcmp(s3_code, "SlowDown") == 0)
		return true;
	switch (rc) {
	case CURLE_COULDNT_CONNECT:
	case CURLE_OPERATION_TIMEDOUT:
	case CURLE_PARTIAL_FILE:
	case CURLE_RECV_ERROR:
	case CURLE_SEND_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_HTTP2:
	case CURLE_HTTP2_STREAM:
	case CURLE_SSL_CONNECT_ERROR:
		return true;
	default:
		return false;
	}
}

/* How the attempt of stream s on handle h ended, for the stream layer. */
static void end_attempt(struct sstf_engine *e, struct sstf__stream *s, struct http_stream *h,
                        CURLcode rc)
{
	struct sstf__src_end end = {0};
	char d[CURL_ERROR_SIZE + 320], code_s3[64];
	if (!h->checked)
		curl_easy_getinfo(h->easy, CURLINFO_RESPONSE_CODE, &h->status);
	long code = h->status;
	end.status = (int)code;
	if (h->whole_body) {
		end.whole_body = true;
	} else if (code >= 400 || (h->s3 && code >= 300)) {
		/* An error status, whether or not it came with a body. */
		sstf__http_error_detail(code, h->ebody, h->ebody_len, d, sizeof(d), code_s3,
		                        sizeof(code_s3));
		end.err = -SSTF_EHTTP;
		end.transient = sstf__http_transient(CURLE_OK, code, code_s3);
		end.not_found = code == 404 || code == 410;
		curl_off_t after = 0;
		if (curl_easy_getinfo(h->easy, CURLINFO_RETRY_AFTER, &after) == CURLE_OK && after > 0)
			end.retry_after_ms = (uint64_t)after * 1000u;
		end.detail = d;
	} else if (rc != CURLE_OK && !h->refused) {
		/* curl says "Couldn't connect"; the errno says why
		 * (ENETUNREACH with no network, ECONNREFUSED, ...). */
		long os = 0;
		curl_easy_getinfo(h->easy, CURLINFO_OS_ERRNO, &os);
		snprintf(d, sizeof(d), "%s%s%s", h->err[0] ? h->err : curl_easy_strerror(rc),
		         os ? ": " : "", os ? strerror((int)os) : "");
		end.err = -SSTF_ETRANSFER;
		end.transient = sstf__http_transient(rc, 0, "");
		end.detail = d;
	} else if (rc != CURLE_OK) {
		/* The stream refused the bytes (its file failed): said there. */
		end.err = -SSTF_ETRANSFER;
		end.detail = "stopped";
	}
	sstf__stream_end(e, s, &end);
}

/* Hands finished transfers (curl_multi_info_read) to their streams, and
 * clears curl_ran. */
static void collect(struct sstf_engine *e)
{
	struct http_state *st = state_of(e);
	CURLMsg *m;
	int left;
	st->curl_ran = false;
	while ((m = curl_multi_info_read(st->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *c = m->easy_handle;
		CURLcode rc = m->data.result;
		char *priv = NULL;
		curl_easy_getinfo(c, CURLINFO_PRIVATE, &priv);
		struct sstf__slot *slot = sstf__slot_resolve(&e->slots, (uint64_t)(uintptr_t)priv);
		if (!slot || slot->kind != SSTF__SLOT_STREAM)
			continue; /* counted as stale by resolve */
		struct sstf__stream *s = slot->stream;
		struct http_stream *h = hs_of(e, s);
		if (h->easy != c || !h->attached)
			continue;
		curl_multi_remove_handle(st->multi, c);
		h->attached = false;
		if (s->attempt)
			end_attempt(e, s, h, rc);
	}
}

/* Every call into curl that can end a transfer marks curl_ran, so that the
 * loop collects before it sleeps (invariant 9). */
static void socket_action(struct sstf_engine *e, curl_socket_t fd, int ev)
{
	struct http_state *st = state_of(e);
	int running;
	curl_multi_socket_action(st->multi, fd, ev, &running);
	st->curl_ran = true;
}

static void http_on_slot_cqe(struct sstf_engine *e, struct sstf__slot *s, enum sstf__op op,
                             int res)
{
	if (op == SSTF__OP_POLL_UPDATE)
		return;
	if (op == SSTF__OP_POLL_REMOVE) {
		s->sock.removing = false;
		return;
	}
	s->sock.armed = 0;
	if (s->state == SSTF__SLOT_ACTIVE && res != -ECANCELED) {
		int ev = 0;
		if (res < 0)
			ev = CURL_CSELECT_ERR;
		else {
			if (res & (POLLIN | POLLHUP | POLLERR))
				ev |= CURL_CSELECT_IN;
			if (res & POLLOUT)
				ev |= CURL_CSELECT_OUT;
			if (res & POLLERR)
				ev |= CURL_CSELECT_ERR;
		}
		uint64_t tag = s->tag;
		socket_action(e, s->sock.fd, ev);
		/* curl may have dropped this socket, and the slot may even
		 * serve a new one now: then it is no longer ours to touch. */
		if (s->tag != tag || s->state != SSTF__SLOT_ACTIVE)
			return;
	}
	sock_sync(e, s);
}

static void http_run(struct sstf_engine *e, uint64_t now)
{
	struct http_state *st = state_of(e);
	if (st->timer_deadline_ns && now >= st->timer_deadline_ns) {
		st->timer_deadline_ns = 0;
		socket_action(e, CURL_SOCKET_TIMEOUT, 0);
	}
	if (st->curl_ran)
		collect(e);
}

static bool http_ready(struct sstf_engine *e)
{
	struct http_state *st = state_of(e);
	if (st->curl_ran)
		return true;
	return st->timer_deadline_ns && st->timer_deadline_ns <= sstf__now_ns();
}

static uint64_t http_deadline(struct sstf_engine *e)
{
	return state_of(e)->timer_deadline_ns;
}

static const char *const http_schemes[] = {"http", "https", "s3", NULL};

const struct sstf__source_ops sstf__http_source = {
	.name = "http",
	.schemes = http_schemes,
	.init = http_init,
	.fini = http_fini,
	.start = http_start,
	.stop = http_stop,
	.resume = http_resume,
	.on_slot_cqe = http_on_slot_cqe,
	.run = http_run,
	.ready = http_ready,
	.deadline = http_deadline,
};
