/*
 * http.c - libcurl's multi_socket API, driven by the ring.
 *
 * curl tells us which sockets to watch (socket callback) and when to call it
 * back (timer callback); we turn both into ring operations: one poll per
 * socket at a time, re-armed after each completion, and one absolute ring
 * timeout for curl's timer. curl_multi_perform is never used.
 *
 * Each socket gets a SOCK slot for as long as curl watches it; its tag is
 * the socketp given to curl_multi_assign. Each transfer's easy handle is
 * owned by its XFER slot for the engine's life; CURLOPT_PRIVATE carries the
 * slot's current tag.
 *
 * Rule: nothing here calls curl_multi_remove_handle or finishes a transfer
 * from inside a curl callback; curl forbids the first, and the second would
 * run user callbacks inside curl.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#define CURL_RECV_BUFFER (256 * 1024)

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *ud)
{
	struct sstf__xfer *x = ud;
	size_t len = size * nmemb;
	int r = sstf__xfer_put(x->engine, x, ptr, len);
	if (r == 0)
		return len;
	if (r == 1) {
		sstf__xfer_wait_buffer(x->engine, x);
		return CURL_WRITEFUNC_PAUSE;
	}
	return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
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
		s->sock.fd = fd;
		s->sock.want = s->sock.armed = 0;
		s->sock.removing = false;
		curl_multi_assign(e->multi, fd, (void *)(uintptr_t)s->tag);
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
	if (timeout_ms < 0)
		e->timer_deadline_ns = 0;
	else
		e->timer_deadline_ns = sstf__now_ns() + (uint64_t)timeout_ms * 1000000u;
	return 0;
}

int sstf__http_init(struct sstf_engine *e)
{
	e->multi = curl_multi_init();
	if (!e->multi)
		return -ENOMEM;
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(e->multi, CURLMOPT_SOCKETDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(e->multi, CURLMOPT_TIMERDATA, e);
	curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)e->cfg.max_host_conns);
	for (uint32_t i = 0; i < e->nxfers; i++) {
		struct sstf__xfer *x = &e->xfers[i];
		CURL *h = curl_easy_init();
		if (!h)
			return -ENOMEM;
		x->easy = h;
		curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(h, CURLOPT_WRITEDATA, x);
		curl_easy_setopt(h, CURLOPT_ERRORBUFFER, x->curl_err);
		curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(h, CURLOPT_FAILONERROR, 1L);
		curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 1L);
		curl_easy_setopt(h, CURLOPT_MAXREDIRS, 5L);
		curl_easy_setopt(h, CURLOPT_BUFFERSIZE, (long)CURL_RECV_BUFFER);
		curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, (long)e->cfg.connect_timeout_ms);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, (long)e->cfg.low_speed_bytes);
		curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, (long)e->cfg.low_speed_time_s);
		curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
	}
	return 0;
}

void sstf__http_fini(struct sstf_engine *e)
{
	/* The loop is gone: curl must not call back into the ring now. */
	if (e->multi) {
		curl_multi_setopt(e->multi, CURLMOPT_SOCKETFUNCTION, NULL);
		curl_multi_setopt(e->multi, CURLMOPT_TIMERFUNCTION, NULL);
	}
	for (uint32_t i = 0; i < e->nxfers; i++) {
		struct sstf__xfer *x = &e->xfers[i];
		if (x->easy && x->curl_attached)
			curl_multi_remove_handle(e->multi, x->easy);
	}
	if (e->multi)
		curl_multi_cleanup(e->multi);
	e->multi = NULL;
	for (uint32_t i = 0; i < e->nxfers; i++) {
		if (e->xfers[i].easy)
			curl_easy_cleanup(e->xfers[i].easy);
		e->xfers[i].easy = NULL;
	}
}

/* Starts (or, after a retry wait, resumes) x's request at x->received. */
static int attach(struct sstf_engine *e, struct sstf__xfer *x)
{
	x->curl_err[0] = '\0';
	/* curl copies the URL: the scratch buffer is free again after. */
	curl_easy_setopt(x->easy, CURLOPT_URL, sstf__gen_file_url(x->gen, x->file));
	/* Redirects may only go where the batch allows. */
	unsigned web = x->gen->schemes & (SSTF__SCHEME_HTTP | SSTF__SCHEME_HTTPS);
	const char *protos = web == SSTF__SCHEME_HTTP    ? "http"
	                     : web == SSTF__SCHEME_HTTPS ? "https"
	                                                 : "http,https";
	curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR, protos);
	curl_easy_setopt(x->easy, CURLOPT_REDIR_PROTOCOLS_STR, protos);
	curl_easy_setopt(x->easy, CURLOPT_RESUME_FROM_LARGE, (curl_off_t)x->received);
	curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (void *)(uintptr_t)x->slot->tag);
	CURLMcode mc = curl_multi_add_handle(e->multi, x->easy);
	e->curl_ran = true;
	if (mc != CURLM_OK) {
		snprintf(x->detail, sizeof(x->detail), "%s", curl_multi_strerror(mc));
		return -SSTF_ETRANSFER;
	}
	x->curl_attached = true;
	return 0;
}

int sstf__http_start(struct sstf_engine *e, struct sstf__xfer *x)
{
	return attach(e, x);
}

void sstf__http_stop(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->retry_wait) {
		x->retry_wait = false;
		e->retry_waiting--;
	}
	if (!x->curl_attached)
		return;
	curl_multi_remove_handle(e->multi, x->easy);
	x->curl_attached = false;
}

/*
 * Transient failures: the same request may well succeed a moment later.
 * A wrong digest or a 404 will not, and a local error is not the origin's.
 */
static bool transient(CURLcode rc, long status)
{
	switch (rc) {
	case CURLE_HTTP_RETURNED_ERROR:
		return status == 408 || status == 429 || status >= 500;
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

/* Schedules another attempt of x after a backoff; false when none is left. */
static bool schedule_retry(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->err || x->retries >= (unsigned)e->cfg.max_retries ||
	    atomic_load(&x->gen->cancel_requested))
		return false;
	uint64_t backoff_ms = 100u << (x->retries < 6 ? x->retries : 6);
	if (backoff_ms > 5000)
		backoff_ms = 5000;
	x->retries++;
	atomic_fetch_add_explicit(&e->retries, 1, memory_order_relaxed);
	x->retry_wait = true;
	x->retry_at_ns = sstf__now_ns() + backoff_ms * 1000000u;
	e->retry_waiting++;
	return true;
}

void sstf__http_resume(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->curl_attached) {
		/* Unpausing delivers buffered bytes at once, and may end the
		 * transfer right here. */
		curl_easy_pause(x->easy, CURLPAUSE_CONT);
		e->curl_ran = true;
	}
}

void sstf__http_collect(struct sstf_engine *e)
{
	CURLMsg *m;
	int left;
	e->curl_ran = false;
	while ((m = curl_multi_info_read(e->multi, &left))) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *h = m->easy_handle;
		CURLcode rc = m->data.result;
		char *priv = NULL;
		curl_easy_getinfo(h, CURLINFO_PRIVATE, &priv);
		struct sstf__slot *s = sstf__slot_resolve(&e->slots, (uint64_t)(uintptr_t)priv);
		if (!s || s->kind != SSTF__SLOT_XFER || s->xfer->easy != h)
			continue; /* counted as stale by resolve */
		struct sstf__xfer *x = s->xfer;
		long code = 0;
		curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &code);
		x->http_status = (int)code;
		curl_multi_remove_handle(e->multi, h);
		x->curl_attached = false;
		if (rc != CURLE_OK && transient(rc, code) && schedule_retry(e, x))
			continue;
		if (rc == CURLE_OK) {
			sstf__xfer_source_end(e, x, 0, NULL);
		} else if (rc == CURLE_HTTP_RETURNED_ERROR) {
			char d[32];
			snprintf(d, sizeof(d), "HTTP %ld", code);
			sstf__xfer_source_end(e, x, -SSTF_EHTTP, d);
		} else {
			/* curl says "Couldn't connect"; the errno says why
			 * (ENETUNREACH with no network, ECONNREFUSED, ...). */
			char d[CURL_ERROR_SIZE + 64];
			long os = 0;
			curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &os);
			snprintf(d, sizeof(d), "%s%s%s",
			         x->curl_err[0] ? x->curl_err : curl_easy_strerror(rc),
			         os ? ": " : "", os ? strerror((int)os) : "");
			sstf__xfer_source_end(e, x, -SSTF_ETRANSFER, d);
		}
	}
}

/* Every call into curl that can end a transfer marks curl_ran, so that the
 * loop collects before it sleeps (invariant 9). */
static void socket_action(struct sstf_engine *e, curl_socket_t fd, int ev)
{
	int running;
	curl_multi_socket_action(e->multi, fd, ev, &running);
	e->curl_ran = true;
}

void sstf__http_on_cqe(struct sstf_engine *e, struct sstf__slot *s,
                       enum sstf__op op, int res)
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

void sstf__http_on_timer(struct sstf_engine *e, int res)
{
	e->timer_armed_ns = 0;
}

/* Resumes transfers whose backoff ended; returns the next retry time or 0. */
static uint64_t run_retries(struct sstf_engine *e, uint64_t now)
{
	uint64_t next = 0;
	for (uint32_t i = 0; i < e->nxfers && e->retry_waiting; i++) {
		struct sstf__xfer *x = &e->xfers[i];
		if (!x->retry_wait)
			continue;
		if (x->retry_at_ns > now) {
			if (!next || x->retry_at_ns < next)
				next = x->retry_at_ns;
			continue;
		}
		x->retry_wait = false;
		e->retry_waiting--;
		int ret = attach(e, x);
		if (ret < 0) {
			char why[sizeof(x->detail)];
			snprintf(why, sizeof(why), "%s", x->detail);
			sstf__xfer_source_end(e, x, ret, why);
		}
	}
	return next;
}

void sstf__http_tick(struct sstf_engine *e)
{
	if (e->timer_deadline_ns && sstf__now_ns() >= e->timer_deadline_ns) {
		e->timer_deadline_ns = 0;
		socket_action(e, CURL_SOCKET_TIMEOUT, 0);
	}
	uint64_t deadline = e->timer_deadline_ns;
	if (e->retry_waiting) {
		uint64_t next = run_retries(e, sstf__now_ns());
		if (next && (!deadline || next < deadline))
			deadline = next;
	}
	if (!deadline)
		return;
	struct sstf__slot *t = &e->slots.v[SSTF__CTL_TIMER];
	if (!e->timer_armed_ns) {
		e->timer_ts.tv_sec = (long long)(deadline / 1000000000u);
		e->timer_ts.tv_nsec = (long long)(deadline % 1000000000u);
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_timeout(sqe, &e->timer_ts, 0, IORING_TIMEOUT_ABS);
		sstf__ring_tag(sqe, t, SSTF__OP_TIMER, 0);
		e->timer_armed_ns = deadline;
	} else if (e->timer_armed_ns > deadline && !e->timer_removing) {
		/* Something is due sooner than the armed timeout fires. */
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_timeout_remove(sqe, sstf__tag_op(t->tag, SSTF__OP_TIMER, 0), 0);
		sstf__ring_tag(sqe, t, SSTF__OP_TIMER_REMOVE, 0);
		e->timer_removing = true;
	}
}
