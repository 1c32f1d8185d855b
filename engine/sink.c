/*
 * sink.c - the buffer pool and the life of one file on disk.
 *
 * Invariant 5 (only verified files are published) and 6 (memory is bounded)
 * live here. Bytes from a source are copied once into a registered buffer;
 * a full buffer is hashed in file order and written at its file offset with
 * a fixed-buffer write. When no buffer is free the source is paused. A file
 * is written under a temporary name and renamed to its final name only once
 * its length and digest match (after fdatasync when fsync is on); the
 * directory is synced after the rename.
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

#define DIRECT_ALIGN 4096u

/* ------------------------------------------------------------------------ */
/* The pool */

int sstf__pool_init(struct sstf__pool *p, const struct sstf_allocator *a,
                    size_t bs, uint32_t n)
{
	memset(p, 0, sizeof(*p));
	p->mem = sstf__alloc_aligned(a, DIRECT_ALIGN, bs * n);
	p->free_stack = sstf__alloc(a, n * sizeof(uint32_t));
	p->len = sstf__alloc(a, n * sizeof(uint32_t));
	if (!p->mem || !p->free_stack || !p->len) {
		sstf__pool_fini(p, a);
		return -ENOMEM;
	}
	p->bs = bs;
	p->n = n;
	for (uint32_t i = 0; i < n; i++)
		p->free_stack[i] = n - 1 - i;
	p->nfree = n;
	return 0;
}

void sstf__pool_fini(struct sstf__pool *p, const struct sstf_allocator *a)
{
	sstf__free(a, p->mem);
	sstf__free(a, p->free_stack);
	sstf__free(a, p->len);
	memset(p, 0, sizeof(*p));
}

int sstf__pool_get(struct sstf__pool *p)
{
	if (p->nfree == 0)
		return -1;
	int idx = (int)p->free_stack[--p->nfree];
	if (p->n - p->nfree > p->used_peak)
		p->used_peak = p->n - p->nfree;
	return idx;
}

void sstf__pool_put(struct sstf__pool *p, int idx)
{
	p->free_stack[p->nfree++] = (uint32_t)idx;
}

/* ------------------------------------------------------------------------ */
/* One file */

static void fail(struct sstf__xfer *x, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void fail(struct sstf__xfer *x, int err, const char *fmt, ...)
{
	if (x->err)
		return; /* the first error is the one worth reporting */
	x->err = err;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(x->detail, sizeof(x->detail), fmt, ap);
		va_end(ap);
	}
}

static uint32_t padded_len(const struct sstf__xfer *x, uint32_t len)
{
	if (!x->direct)
		return len;
	return (len + DIRECT_ALIGN - 1) & ~(DIRECT_ALIGN - 1);
}

/* mkdir -p of the file's parent below the destination, then opens it. */
static int open_parent(struct sstf__gen *g, const struct sstf__file *f)
{
	if (strcmp(f->parent, ".") != 0) {
		char path[PATH_MAX];
		snprintf(path, sizeof(path), "%s", f->parent);
		for (char *p = path;; p++) {
			if (*p == '/' || *p == '\0') {
				char c = *p;
				*p = '\0';
				if (mkdirat(g->dirfd, path, 0755) < 0 && errno != EEXIST)
					return -errno;
				*p = c;
				if (c == '\0')
					break;
			}
		}
	}
	int fd = openat(g->dirfd, f->parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

static int open_tmp(struct sstf_engine *e, struct sstf__xfer *x)
{
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC;
	if (e->cfg.direct_io != SSTF_OFF) {
		int fd = openat(x->pdirfd, x->file->tmp, flags | O_DIRECT, 0644);
		if (fd >= 0) {
			x->direct = true;
			return fd;
		}
		/* EINVAL: the filesystem has no O_DIRECT (tmpfs, some FUSE). */
		if (errno != EINVAL || e->cfg.direct_io == SSTF_ON)
			return -errno;
	}
	x->direct = false;
	int fd = openat(x->pdirfd, x->file->tmp, flags, 0644);
	return fd < 0 ? -errno : fd;
}

void sstf__xfer_start(struct sstf_engine *e, struct sstf__xfer *x,
                      struct sstf__gen *g, size_t index)
{
	x->gen = g;
	x->file_index = index;
	x->file = &g->files[index];
	x->phase = SSTF__X_FETCH;
	x->fd = x->pdirfd = x->srcfd = -1;
	x->direct = x->curl_attached = x->source_done = false;
	x->paused = x->reading = x->renamed = x->retry_wait = false;
	x->retries = 0;
	x->cur_buf = -1;
	x->cur_len = 0;
	x->received = x->queued = 0;
	x->err = 0;
	x->http_status = 0;
	x->detail[0] = '\0';
	x->t_start = sstf__now_ns();
	x->t_first = 0;
	x->pause_prev = x->pause_next = NULL;
	sstf__hasher_reset(&x->hasher, x->file->kind);
	g->active++;

	/* A failure here ends the file at once: no source was started. */
	int ret = open_parent(g, x->file);
	if (ret < 0)
		fail(x, ret, "cannot create or open directory '%s'", x->file->parent);
	else
		x->pdirfd = ret;
	if (!x->err) {
		ret = open_tmp(e, x);
		if (ret < 0)
			fail(x, ret, "cannot create temporary file in '%s'", x->file->parent);
		else
			x->fd = ret;
	}
	if (!x->err) {
		ret = x->file->src == SSTF__SRC_HTTP ? sstf__http_start(e, x)
		                                     : sstf__filesrc_start(e, x);
		if (ret < 0)
			fail(x, ret, NULL);
	}
	if (x->err)
		x->source_done = !x->curl_attached && !x->reading;
	sstf__xfer_step(e, x);
}

void sstf__xfer_commit(struct sstf_engine *e, struct sstf__xfer *x, int idx,
                       uint32_t len)
{
	uint8_t *buf = sstf__pool_buf(&e->pool, idx);
	sstf__hasher_update(&x->hasher, buf, len);
	uint32_t wlen = padded_len(x, len);
	if (wlen > len)
		memset(buf + len, 0, wlen - len); /* O_DIRECT tail, cut later */
	e->pool.len[idx] = len;
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	if (e->pool.fixed)
		io_uring_prep_write_fixed(sqe, x->fd, buf, wlen, x->queued, idx);
	else
		io_uring_prep_write(sqe, x->fd, buf, wlen, x->queued);
	sstf__ring_tag(sqe, x->slot, SSTF__OP_WRITE, (unsigned)idx);
	x->queued += len;
}

int sstf__xfer_put(struct sstf_engine *e, struct sstf__xfer *x,
                   const void *data, size_t len)
{
	if (x->err)
		return -1;
	if (len > x->file->size - x->received) {
		fail(x, -SSTF_ESIZE, "origin sent more than the expected %" PRIu64 " bytes",
		     x->file->size);
		return -1;
	}
	size_t bs = e->pool.bs;
	size_t space = x->cur_buf >= 0 ? bs - x->cur_len : 0;
	/* All or nothing: a paused source hands the same bytes again. */
	if (len > space && e->pool.nfree < (len - space + bs - 1) / bs)
		return 1;
	if (!x->t_first && len)
		x->t_first = sstf__now_ns();
	const uint8_t *p = data;
	while (len) {
		if (x->cur_buf < 0) {
			x->cur_buf = sstf__pool_get(&e->pool);
			x->cur_len = 0;
		}
		size_t n = bs - x->cur_len;
		if (n > len)
			n = len;
		memcpy(sstf__pool_buf(&e->pool, x->cur_buf) + x->cur_len, p, n);
		x->cur_len += (uint32_t)n;
		x->received += n;
		p += n;
		len -= n;
		if (x->cur_len == bs) {
			sstf__xfer_commit(e, x, x->cur_buf, x->cur_len);
			x->cur_buf = -1;
		}
	}
	return 0;
}

static void release_cur(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->cur_buf >= 0) {
		sstf__pool_put(&e->pool, x->cur_buf);
		x->cur_buf = -1;
	}
}

void sstf__xfer_source_end(struct sstf_engine *e, struct sstf__xfer *x, int err,
                           const char *detail)
{
	x->source_done = true;
	if (err)
		fail(x, err, "%s", detail ? detail : "");
	if (!x->err && x->cur_buf >= 0 && x->cur_len > 0) {
		sstf__xfer_commit(e, x, x->cur_buf, x->cur_len);
		x->cur_buf = -1;
	}
	release_cur(e, x);
	sstf__xfer_step(e, x);
}

static void unpause(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (!x->paused)
		return;
	if (x->pause_prev)
		x->pause_prev->pause_next = x->pause_next;
	else
		e->pause_head = x->pause_next;
	if (x->pause_next)
		x->pause_next->pause_prev = x->pause_prev;
	else
		e->pause_tail = x->pause_prev;
	x->pause_prev = x->pause_next = NULL;
	x->paused = false;
}

void sstf__xfer_wait_buffer(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->paused)
		return;
	x->paused = true;
	x->pause_next = NULL;
	x->pause_prev = e->pause_tail;
	if (e->pause_tail)
		e->pause_tail->pause_next = x;
	else
		e->pause_head = x;
	e->pause_tail = x;
}

static void stop_source(struct sstf_engine *e, struct sstf__xfer *x)
{
	unpause(e, x);
	if (x->file->src == SSTF__SRC_HTTP)
		sstf__http_stop(e, x);
	else
		sstf__filesrc_stop(e, x);
	if (!x->reading)
		x->source_done = true;
}

void sstf__xfer_abort(struct sstf_engine *e, struct sstf__xfer *x, int err)
{
	fail(x, err, err == -ECANCELED ? "generation cancelled" : NULL);
	if (x->slot->state == SSTF__SLOT_ACTIVE)
		sstf__slot_set_state(&e->slots, x->slot, SSTF__SLOT_DRAINING);
	stop_source(e, x);
	release_cur(e, x);
	/* Ask the kernel to cut short what it can; the rest drains. */
	int fds[2] = {x->fd, x->srcfd};
	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0 || x->slot->inflight == 0)
			continue;
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_cancel_fd(sqe, fds[i], IORING_ASYNC_CANCEL_ALL);
		sstf__ring_tag(sqe, x->slot, SSTF__OP_CANCEL, 0);
	}
	sstf__xfer_step(e, x);
}

void sstf__xfer_on_cqe(struct sstf_engine *e, struct sstf__xfer *x,
                       enum sstf__op op, unsigned aux, int res)
{
	switch (op) {
	case SSTF__OP_WRITE: {
		uint32_t len = e->pool.len[aux];
		uint32_t want = padded_len(x, len);
		sstf__pool_put(&e->pool, (int)aux);
		if (res < 0)
			fail(x, res, "write to temporary file failed");
		else if ((uint32_t)res != want)
			fail(x, -EIO, "short write (%d of %u bytes)", res, want);
		else {
			atomic_fetch_add_explicit(&x->gen->bytes_done, len,
			                          memory_order_relaxed);
			sstf__engine_progress(e, x->gen);
		}
		break;
	}
	case SSTF__OP_FSYNC:
		if (res < 0)
			fail(x, res, "fdatasync failed");
		break;
	case SSTF__OP_RENAME:
		if (res < 0)
			fail(x, res, "rename to the final name failed");
		else
			x->renamed = true;
		break;
	case SSTF__OP_DIRSYNC:
		if (res < 0)
			fail(x, res, "fsync of the directory failed");
		break;
	default:
		break;
	}
	sstf__xfer_step(e, x);
}

static void finish(struct sstf_engine *e, struct sstf__xfer *x, int result)
{
	struct sstf__gen *g = x->gen;
	unpause(e, x);
	release_cur(e, x);
	if (x->fd >= 0)
		close(x->fd);
	if (x->srcfd >= 0)
		close(x->srcfd);
	if (x->pdirfd >= 0) {
		if (!x->renamed)
			unlinkat(x->pdirfd, x->file->tmp, 0);
		else if (result != 0 && result != -ECANCELED)
			/* Renamed but not durable: it must not stay published. */
			unlinkat(x->pdirfd, x->file->base, 0);
		close(x->pdirfd);
	}
	x->fd = x->srcfd = x->pdirfd = -1;
	x->phase = SSTF__X_IDLE;
	sstf__engine_file_done(e, x, result);
	x->gen = NULL;
	x->file = NULL;
	g->active--;
	sstf__slot_set_state(&e->slots, x->slot, SSTF__SLOT_FREE);
	sstf__engine_gen_check(e, g);
}

/* Length and digest; 0 when the file may be published. */
static int verify(struct sstf__xfer *x)
{
	if (x->received != x->file->size) {
		fail(x, -SSTF_ESIZE, "received %" PRIu64 " bytes, expected %" PRIu64,
		     x->received, x->file->size);
		return x->err;
	}
	if (x->file->kind != SSTF_DIGEST_NONE) {
		struct sstf__digest got;
		sstf__hasher_final(&x->hasher, &got);
		if (!sstf__digest_equal(&got, &x->file->digest)) {
			char want_hex[33], got_hex[33];
			sstf__digest_format(&x->file->digest, want_hex);
			sstf__digest_format(&got, got_hex);
			fail(x, -SSTF_ECHECKSUM, "digest %s, expected %s", got_hex, want_hex);
			return x->err;
		}
	}
	if (x->direct && (x->file->size % DIRECT_ALIGN) && ftruncate(x->fd, (off_t)x->file->size) < 0) {
		fail(x, -errno, "cannot cut the O_DIRECT tail");
		return x->err;
	}
	return 0;
}

static void submit_rename(struct sstf_engine *e, struct sstf__xfer *x)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	io_uring_prep_renameat(sqe, x->pdirfd, x->file->tmp, x->pdirfd, x->file->base, 0);
	sstf__ring_tag(sqe, x->slot, SSTF__OP_RENAME, 0);
	x->phase = SSTF__X_RENAME;
}

void sstf__xfer_step(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->phase == SSTF__X_IDLE)
		return;
	if (x->err && !x->source_done)
		stop_source(e, x);
	/* Nothing moves on while the source runs or an operation is out. */
	if (!x->source_done || x->slot->inflight > 0)
		return;
	if (x->err) {
		finish(e, x, x->err);
		return;
	}
	bool sync = e->cfg.fsync != SSTF_OFF;
	switch (x->phase) {
	case SSTF__X_FETCH:
		if (verify(x) < 0) {
			finish(e, x, x->err);
			return;
		}
		if (sync) {
			struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
			io_uring_prep_fsync(sqe, x->fd, IORING_FSYNC_DATASYNC);
			sstf__ring_tag(sqe, x->slot, SSTF__OP_FSYNC, 0);
			x->phase = SSTF__X_SYNC;
		} else {
			submit_rename(e, x);
		}
		return;
	case SSTF__X_SYNC:
		submit_rename(e, x);
		return;
	case SSTF__X_RENAME:
		if (sync) {
			struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
			io_uring_prep_fsync(sqe, x->pdirfd, 0);
			sstf__ring_tag(sqe, x->slot, SSTF__OP_DIRSYNC, 0);
			x->phase = SSTF__X_DIRSYNC;
		} else {
			finish(e, x, 0);
		}
		return;
	case SSTF__X_DIRSYNC:
		finish(e, x, 0);
		return;
	case SSTF__X_IDLE:
		return;
	}
}
