/*
 * sink.c - the buffer pool and the life of one file on disk.
 *
 * Invariant 5 (only verified files are published) and 6 (memory is bounded)
 * live here. Bytes from a source are copied once into a registered buffer;
 * a full buffer is hashed in file order and written at its file offset with
 * a fixed-buffer write. When no buffer is free the source is paused. A file
 * is written under a temporary name in the staging directory (dest.c) and
 * renamed to its final name only once its length and digest match (after
 * fdatasync when fsync is on); the directory is synced after the rename.
 *
 * The life of one file, by phase:
 *
 *   start   a file already in place of the right size is skipped when its
 *           publish record vouches for it (record.c), or goes to CHECK
 *   CHECK   the file in place is read through the ring and re-hashed; a
 *           match is skipped, anything else goes to FETCH. In strict mode
 *           an adopted partial's prefix is re-hashed here too, and resumed
 *           only when it hashes to its checkpoint's state.
 *   FETCH   the source runs; a crashed writer's partial that the sweep
 *           adopted is resumed at its checkpoint, with its hash state.
 *           Large files take checkpoints as they go: once every write
 *           below an offset has completed, an fsync, then the offset and
 *           the hash state there go into an extended attribute. A digest
 *           mismatch starts the file over once.
 *   SYNC, RENAME, DIRSYNC   publish
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
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
	p->off = sstf__alloc(a, n * sizeof(uint64_t));
	p->done = sstf__alloc(a, n * sizeof(uint32_t));
	if (!p->mem || !p->free_stack || !p->len || !p->off || !p->done) {
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
	sstf__free(a, p->off);
	sstf__free(a, p->done);
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

/* mkdir -p of the name's parent below the destination, then opens it. */
static int open_parent(struct sstf__gen *g, const char *name)
{
	const char *slash = strrchr(name, '/');
	if (!slash)
		return sstf__fd_or_errno(openat(g->dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
	char path[PATH_MAX];
	size_t n = (size_t)(slash - name);
	memcpy(path, name, n);
	path[n] = '\0';
	/* Most files land in a directory an earlier file made: try it first. */
	int fd = openat(g->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd >= 0 || errno != ENOENT)
		return sstf__fd_or_errno(fd);
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
	return sstf__fd_or_errno(openat(g->dirfd, path, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
}

/* Opens x's temporary file in the staging directory, with O_DIRECT where
 * the filesystem takes it. `create`: a new file (O_EXCL), else the one the
 * sweep adopted. */
static int open_tmp(struct sstf_engine *e, struct sstf__xfer *x, bool create)
{
	int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | (create ? O_CREAT | O_EXCL : 0);
	int stagefd = x->gen->stagefd;
	if (e->cfg.direct_io != SSTF_OFF) {
		int fd = openat(stagefd, x->tmp, flags | O_DIRECT, 0644);
		if (fd >= 0) {
			x->direct = true;
			return fd;
		}
		/* EINVAL: the filesystem has no O_DIRECT (tmpfs, some FUSE). */
		if (errno != EINVAL || e->cfg.direct_io == SSTF_ON)
			return -errno;
	}
	x->direct = false;
	return sstf__fd_or_errno(openat(stagefd, x->tmp, flags, 0644));
}

static void finish(struct sstf_engine *e, struct sstf__xfer *x, int result);
static void begin_fetch(struct sstf_engine *e, struct sstf__xfer *x);
static void start_fetch(struct sstf_engine *e, struct sstf__xfer *x);
static void resume_at(struct sstf__xfer *x, uint64_t offset);
static void discard_partial(struct sstf__xfer *x);
static void issue_check_read(struct sstf_engine *e, struct sstf__xfer *x);

static void skip(struct sstf_engine *e, struct sstf__xfer *x)
{
	x->skipped = true;
	x->source_done = true;
	atomic_fetch_add_explicit(&x->gen->bytes_present, x->file->size, memory_order_relaxed);
	atomic_fetch_add_explicit(&x->gen->files_skipped, 1, memory_order_relaxed);
	finish(e, x, 0);
}

/*
 * Looks at what is already under the final name. Returns true when that
 * settled x: skipped, or handed to CHECK to be re-hashed.
 */
static bool look_in_place(struct sstf_engine *e, struct sstf__xfer *x)
{
	const struct sstf__file *f = x->file;
	/* O_NONBLOCK: a FIFO planted under the name must not block the loop. */
	int fd = openat(x->gen->dirfd, f->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
	if (fd < 0)
		return false;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != f->size) {
		close(fd);
		return false;
	}
	if (e->cfg.existing == SSTF_EXISTING_TRUST && sstf__record_verified_matches(fd, &st, f)) {
		close(fd);
		skip(e, x);
		return true;
	}
	/* Without a digest a re-hash proves nothing, and a size alone is the
	 * trap that made Pegasus trust half-written files: fetch it. */
	if (f->kind == SSTF_DIGEST_NONE) {
		close(fd);
		return false;
	}
	/* Re-hash it, with O_DIRECT where allowed so that a large set
	 * checked in place does not flush the page cache. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && e->cfg.direct_io != SSTF_OFF && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
		x->direct = true;
	x->chkfd = fd;
	x->phase = SSTF__X_CHECK;
	x->source_done = true; /* no source runs while checking */
	x->checked = 0;
	x->check_len = f->size;
	issue_check_read(e, x);
	return true;
}

void sstf__xfer_read(struct sstf_engine *e, struct sstf__xfer *x, int fd, uint64_t off,
                     enum sstf__op op)
{
	int idx = sstf__pool_get(&e->pool);
	if (idx < 0) {
		sstf__xfer_wait_buffer(e, x);
		return;
	}
	uint8_t *buf = sstf__pool_buf(&e->pool, idx);
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	if (e->pool.fixed)
		io_uring_prep_read_fixed(sqe, fd, buf, (unsigned)e->pool.bs, off, idx);
	else
		io_uring_prep_read(sqe, fd, buf, (unsigned)e->pool.bs, off);
	sstf__ring_tag(sqe, x->slot, op, (unsigned)idx);
	x->reading = true;
}

static void issue_check_read(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->reading || x->err)
		return;
	sstf__xfer_read(e, x, x->chkfd, x->checked, SSTF__OP_CHECK_READ);
}

/* The file in place did not verify (or could not be read): fetch anew. */
static void check_failed(struct sstf_engine *e, struct sstf__xfer *x)
{
	close(x->chkfd);
	x->chkfd = -1;
	x->direct = false;
	x->checked = 0;
	sstf__hasher_reset(&x->hasher, x->file->kind);
	begin_fetch(e, x);
}

/* The prefix re-hash of an adopted partial ended: resume or start over. */
static void prefix_checked(struct sstf_engine *e, struct sstf__xfer *x)
{
	close(x->chkfd);
	x->chkfd = -1;
	x->check_prefix = false;
	struct sstf__hasher saved = {.kind = x->hasher.kind};
	memcpy(&saved.state, &x->ckpt_state, sizeof(saved.state));
	struct sstf__digest got, want;
	sstf__hasher_final(&x->hasher, &got);
	sstf__hasher_final(&saved, &want);
	if (x->checked == x->check_len && sstf__digest_equal(&got, &want)) {
		resume_at(x, x->check_len); /* the hasher holds that state */
	} else {
		sstf__hasher_reset(&x->hasher, x->file->kind);
		discard_partial(x);
	}
	x->checked = 0;
	start_fetch(e, x);
}

void sstf__xfer_on_check_read(struct sstf_engine *e, struct sstf__xfer *x,
                              unsigned buf, int res)
{
	const struct sstf__file *f = x->file;
	x->reading = false;
	if (x->err) {
		/* Cancelled while reading: the read is over, so is the file. */
		sstf__pool_put(&e->pool, (int)buf);
		sstf__xfer_step(e, x);
		return;
	}
	/* A failed read, or more bytes than expected (it grew): not ours. */
	if (res < 0 || (uint64_t)res > x->check_len - x->checked) {
		sstf__pool_put(&e->pool, (int)buf);
		x->checked = UINT64_MAX; /* never equal to check_len */
		if (x->check_prefix)
			prefix_checked(e, x);
		else
			check_failed(e, x);
		return;
	}
	sstf__hasher_update(&x->hasher, sstf__pool_buf(&e->pool, (int)buf), (size_t)res);
	x->checked += (uint64_t)res;
	sstf__pool_put(&e->pool, (int)buf);
	if (res > 0 && x->checked < x->check_len) {
		issue_check_read(e, x);
		return;
	}
	if (x->check_prefix) {
		prefix_checked(e, x);
		return;
	}
	/* All of it was read (an O_DIRECT read past an unaligned end would
	 * fail, so stop at the size), or it ended early. */
	struct stat st;
	struct sstf__digest got;
	sstf__hasher_final(&x->hasher, &got);
	if (x->checked == f->size && fstat(x->chkfd, &st) == 0 && (uint64_t)st.st_size == f->size &&
	    sstf__digest_equal(&got, &f->digest)) {
		/* Vouch for it from now on; a filesystem without xattrs just
		 * means the next run re-hashes it again. */
		(void)sstf__record_verified_set(x->chkfd, f);
		close(x->chkfd);
		x->chkfd = -1;
		skip(e, x);
		return;
	}
	check_failed(e, x);
}

void sstf__xfer_start(struct sstf_engine *e, struct sstf__xfer *x,
                      struct sstf__gen *g, size_t index)
{
	struct sstf__file *f = &g->files[index];
	x->gen = g;
	x->file_index = index;
	x->file = f;
	x->phase = SSTF__X_FETCH;
	x->fd = x->pdirfd = x->srcfd = x->chkfd = -1;
	x->direct = x->curl_attached = x->source_done = false;
	x->paused = x->reading = x->renamed = x->retry_wait = false;
	x->skipped = x->refetched = x->preverified = false;
	x->retries = 0;
	x->cur_buf = -1;
	x->cur_len = 0;
	x->received = x->queued = x->checked = x->check_len = x->resumed_from = 0;
	x->check_prefix = false;
	x->writes = 0;
	x->ckpt_next = x->ckpt_off = 0;
	x->ckpt_wait = 0;
	x->ckpt_syncing = x->ckpt_recorded = false;
	x->err = 0;
	x->http_status = 0;
	x->detail[0] = '\0';
	x->t_start = sstf__now_ns();
	x->t_first = 0;
	x->pause_prev = x->pause_next = NULL;
	sstf__tmp_name(x->tmp, g->token, index);
	/* An adopted partial is ours now: finish() removes it if unused. */
	x->tmp_made = f->flags & SSTF__F_ADOPTED;
	if (x->tmp_made) {
		f->flags &= (uint8_t)~SSTF__F_ADOPTED;
		g->adopted--;
	}
	sstf__hasher_reset(&x->hasher, f->kind);
	g->active++;

	int ret = open_parent(g, f->name);
	if (ret < 0) {
		fail(x, ret, "cannot create or open the directory of '%s'", f->name);
		x->source_done = true;
		sstf__xfer_step(e, x);
		return;
	}
	x->pdirfd = ret;
	if (e->cfg.existing != SSTF_EXISTING_REFETCH && look_in_place(e, x))
		return;
	begin_fetch(e, x);
}

/* Takes the hash state from a checkpoint, with the extSecret of `ours`, a
 * freshly reset state: the saved one pointed into the dead writer's copy
 * of xxHash. */
static void restore_state(XXH3_state_t *dst, const XXH3_state_t *saved,
                          const XXH3_state_t *ours)
{
	const unsigned char *secret = ours->extSecret;
	memcpy(dst, saved, sizeof(*dst));
	dst->extSecret = secret;
}

/* The partial holds `offset` trusted bytes: continue after them. */
static void resume_at(struct sstf__xfer *x, uint64_t offset)
{
	x->received = x->queued = x->resumed_from = offset;
	x->ckpt_recorded = true;
	atomic_fetch_add_explicit(&x->gen->bytes_present, offset, memory_order_relaxed);
}

/* Empties an adopted partial that cannot be resumed. */
static void discard_partial(struct sstf__xfer *x)
{
	if (ftruncate(x->fd, 0) < 0)
		fail(x, -errno, "cannot truncate an adopted partial file");
	(void)fremovexattr(x->fd, SSTF__XATTR_PARTIAL);
}

/*
 * Continues the adopted partial at its checkpoint, with its hash state.
 * The bytes below a durable checkpoint are trusted as the bytes of any
 * write are: the engine never reads back what it wrote. In strict mode
 * (SSTF_EXISTING_REHASH) they are re-hashed first: CHECK reads them, and
 * only a hash equal to the checkpoint's resumes. Returns true when CHECK
 * took over. Anything that does not fit starts the file from byte 0.
 */
static bool resume_partial(struct sstf_engine *e, struct sstf__xfer *x)
{
	const struct sstf__file *f = x->file;
	uint64_t name_hash = sstf__name_hash(f->name);
	struct sstf__partial p;
	/* A whole verified file, killed before its rename: publish it. */
	if (e->cfg.existing == SSTF_EXISTING_TRUST && sstf__record_verified_get(x->fd, &p) == 0 &&
	    sstf__partial_fits(&p.key, f, name_hash, x->direct) && p.key.offset == f->size) {
		x->preverified = true;
		resume_at(x, f->size);
		return false;
	}
	if (sstf__record_partial_get(x->fd, &p) != 0 ||
	    !sstf__partial_fits(&p.key, f, name_hash, x->direct) || p.key.offset == f->size ||
	    ftruncate(x->fd, (off_t)p.key.offset) != 0) {
		discard_partial(x);
		return false;
	}
	if (e->cfg.existing != SSTF_EXISTING_REHASH) {
		restore_state(&x->hasher.state, &p.state, &x->hasher.state);
		resume_at(x, p.key.offset);
		return false;
	}
	int fd = openat(x->gen->stagefd, x->tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		discard_partial(x);
		return false;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && x->direct)
		(void)fcntl(fd, F_SETFL, fl | O_DIRECT);
	restore_state(&x->ckpt_state, &p.state, &x->hasher.state);
	x->chkfd = fd;
	x->check_len = p.key.offset;
	x->check_prefix = true;
	x->phase = SSTF__X_CHECK;
	x->source_done = true;
	x->checked = 0;
	issue_check_read(e, x);
	return true;
}

/* The first checkpoint's offset, or 0 when the file takes none. */
static uint64_t first_checkpoint(struct sstf_engine *e, const struct sstf__xfer *x)
{
	uint64_t every = e->cfg.checkpoint_bytes;
	if (e->cfg.resume == SSTF_OFF || x->file->size < 2 * every)
		return 0;
	return x->received + every;
}

static int start_source(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (sstf__xfer_is_http(x))
		return sstf__http_start(e, x);
	if (x->srcfd >= 0) {
		/* Again from byte 0, after a digest mismatch. */
		sstf__filesrc_resume(e, x);
		return 0;
	}
	return sstf__filesrc_start(e, x);
}

/* Starts the source at x->received, with checkpoints from there. */
static void start_fetch(struct sstf_engine *e, struct sstf__xfer *x)
{
	x->phase = SSTF__X_FETCH;
	x->source_done = x->preverified; /* nothing left to fetch */
	x->ckpt_next = first_checkpoint(e, x);
	if (!x->err && !x->preverified) {
		int ret = start_source(e, x);
		if (ret < 0)
			fail(x, ret, NULL);
	}
	if (x->err)
		x->source_done = !x->curl_attached && !x->reading;
	sstf__xfer_step(e, x);
}

static void begin_fetch(struct sstf_engine *e, struct sstf__xfer *x)
{
	x->phase = SSTF__X_FETCH;
	bool adopted = x->tmp_made;
	int fd = -ENOENT;
	if (adopted) {
		fd = open_tmp(e, x, false);
		if (fd < 0)
			x->tmp_made = adopted = false; /* gone: make a new one */
	}
	if (!x->tmp_made) {
		fd = open_tmp(e, x, true);
		if (fd >= 0)
			x->tmp_made = true;
	}
	if (fd < 0) {
		fail(x, fd, "cannot create a temporary file in '%s/%s'", x->gen->dest_dir,
		     SSTF__STAGE_DIR);
	} else {
		x->fd = fd;
		if (adopted && resume_partial(e, x))
			return; /* CHECK re-hashes the prefix first */
	}
	start_fetch(e, x);
}

/* Queues the part of buffer idx's write not done yet. */
static void submit_write(struct sstf_engine *e, struct sstf__xfer *x, int idx)
{
	struct sstf__pool *p = &e->pool;
	uint32_t done = p->done[idx];
	uint8_t *buf = sstf__pool_buf(p, idx) + done;
	uint32_t wlen = padded_len(x, p->len[idx]) - done;
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	if (p->fixed)
		io_uring_prep_write_fixed(sqe, x->fd, buf, wlen, p->off[idx] + done, idx);
	else
		io_uring_prep_write(sqe, x->fd, buf, wlen, p->off[idx] + done);
	sstf__ring_tag(sqe, x->slot, SSTF__OP_WRITE, (unsigned)idx);
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
	e->pool.off[idx] = x->queued;
	e->pool.done[idx] = 0;
	submit_write(e, x, idx);
	x->queued += len;
	x->writes++;
	/* A checkpoint is the hash state here; it is recorded once every
	 * write below here (this one included) is durable. The last bytes
	 * need none: publishing syncs them. */
	if (x->ckpt_next && !x->ckpt_off && x->queued >= x->ckpt_next &&
	    x->queued < x->file->size) {
		x->ckpt_off = x->queued;
		XXH3_copyState(&x->ckpt_state, &x->hasher.state);
		x->ckpt_wait = x->writes;
		/* The next one may be taken while this one syncs: a sync
		 * slower than writing checkpoint_bytes does not stretch the
		 * distance between two. */
		x->ckpt_next = x->queued + e->cfg.checkpoint_bytes;
	}
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

void sstf__xfer_resume(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->phase == SSTF__X_CHECK)
		issue_check_read(e, x);
	else if (sstf__xfer_is_http(x))
		sstf__http_resume(e, x);
	else
		sstf__filesrc_resume(e, x);
}

static void stop_source(struct sstf_engine *e, struct sstf__xfer *x)
{
	unpause(e, x);
	if (x->phase == SSTF__X_CHECK)
		return; /* no source; a read in flight drains */
	if (sstf__xfer_is_http(x))
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
	int fds[3] = {x->fd, x->srcfd, x->chkfd};
	for (int i = 0; i < 3; i++) {
		if (fds[i] < 0 || x->slot->inflight == 0)
			continue;
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_cancel_fd(sqe, fds[i], IORING_ASYNC_CANCEL_ALL);
		sstf__ring_tag(sqe, x->slot, SSTF__OP_CANCEL, 0);
	}
	sstf__xfer_step(e, x);
}

/*
 * Moves the pending checkpoint on once every write below it has completed:
 * its bytes are made durable (one sync in flight per file), and the next
 * checkpoint may be taken meanwhile.
 */
static void checkpoint_sync(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (!x->ckpt_off || x->ckpt_wait || x->ckpt_syncing)
		return;
	if (x->err) {
		x->ckpt_off = 0;
		return;
	}
	x->sync_off = x->ckpt_off;
	XXH3_copyState(&x->sync_state, &x->ckpt_state);
	x->ckpt_off = 0;
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	/* fdatasync: the record must follow its bytes, not be durable
	 * itself. One lost in a crash leaves an older one, just as true. */
	io_uring_prep_fsync(sqe, x->fd, IORING_FSYNC_DATASYNC);
	sstf__ring_tag(sqe, x->slot, SSTF__OP_CKPT, 0);
	x->ckpt_syncing = true;
}

static void on_checkpoint_synced(struct sstf_engine *e, struct sstf__xfer *x, int res)
{
	x->ckpt_syncing = false;
	if (res < 0) {
		fail(x, res, "fdatasync of a checkpoint failed");
	} else if (!x->err) {
		/* The bytes below sync_off are durable: only now may a record
		 * claim them. */
		int r = sstf__record_partial_set(x->fd, x->file, x->sync_off, &x->sync_state);
		if (r == 0) {
			x->ckpt_recorded = true;
		} else {
			/* No user xattrs here: no resume, no more syncs. */
			x->ckpt_next = x->ckpt_off = 0;
		}
	}
	checkpoint_sync(e, x);
}

void sstf__xfer_on_cqe(struct sstf_engine *e, struct sstf__xfer *x,
                       enum sstf__op op, unsigned aux, int res)
{
	switch (op) {
	case SSTF__OP_WRITE: {
		uint32_t len = e->pool.len[aux];
		uint32_t want = padded_len(x, len);
		uint64_t off = e->pool.off[aux];
		/* A short write made progress: the rest goes again, so that a
		 * full disk says -ENOSPC rather than a short count. */
		if (res > 0 && !x->err && e->pool.done[aux] + (uint32_t)res < want) {
			e->pool.done[aux] += (uint32_t)res;
			submit_write(e, x, (int)aux);
			break;
		}
		sstf__pool_put(&e->pool, (int)aux);
		x->writes--;
		if (res < 0)
			fail(x, res, "write to the temporary file failed");
		else if (e->pool.done[aux] + (uint32_t)res != want)
			fail(x, -EIO, "short write (%u of %u bytes)", e->pool.done[aux] + (uint32_t)res,
			     want);
		else {
			atomic_fetch_add_explicit(&x->gen->bytes_done, len,
			                          memory_order_relaxed);
			sstf__engine_progress(e, x->gen);
		}
		if (x->ckpt_off && off < x->ckpt_off) {
			x->ckpt_wait--;
			checkpoint_sync(e, x);
		}
		break;
	}
	case SSTF__OP_CKPT:
		on_checkpoint_synced(e, x, res);
		break;
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
	int *fds[3] = {&x->fd, &x->srcfd, &x->chkfd};
	for (int i = 0; i < 3; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	if (x->tmp_made && !x->renamed)
		unlinkat(g->stagefd, x->tmp, 0);
	else if (x->renamed && result != 0 && result != -ECANCELED)
		/* Renamed but not durable: it must not stay published. */
		unlinkat(g->dirfd, x->file->name, 0);
	x->tmp_made = false;
	if (x->pdirfd >= 0)
		close(x->pdirfd);
	x->pdirfd = -1;
	x->phase = SSTF__X_IDLE;
	sstf__engine_file_done(e, x, result);
	x->gen = NULL;
	x->file = NULL;
	g->active--;
	sstf__slot_set_state(&e->slots, x->slot, SSTF__SLOT_FREE);
	sstf__engine_gen_check(e, g);
}

/* Length and digest. 0: x may be published; else the error, with x->err
 * left unset for a digest mismatch, which the caller may retry. */
static int verify(struct sstf__xfer *x)
{
	if (x->received != x->file->size) {
		fail(x, -SSTF_ESIZE, "received %" PRIu64 " bytes, expected %" PRIu64,
		     x->received, x->file->size);
		return x->err;
	}
	if (x->file->kind != SSTF_DIGEST_NONE && !x->preverified) {
		struct sstf__digest got;
		sstf__hasher_final(&x->hasher, &got);
		if (!sstf__digest_equal(&got, &x->file->digest)) {
			char want_hex[33], got_hex[33];
			sstf__digest_format(&x->file->digest, want_hex);
			sstf__digest_format(&got, got_hex);
			snprintf(x->detail, sizeof(x->detail), "digest %s, expected %s%s", got_hex,
			         want_hex, x->refetched ? ", twice (fetched again once)" : "");
			return -SSTF_ECHECKSUM;
		}
	}
	if (x->direct && (x->file->size % DIRECT_ALIGN) && ftruncate(x->fd, (off_t)x->file->size) < 0) {
		fail(x, -errno, "cannot cut the O_DIRECT tail");
		return x->err;
	}
	return 0;
}

/*
 * A digest mismatch: a flipped bit can come from a flaky hop, so the file
 * starts over from byte 0, once, counted as a retry.
 */
static bool refetch(struct sstf_engine *e, struct sstf__xfer *x)
{
	struct sstf__gen *g = x->gen;
	if (x->refetched || x->retries >= (unsigned)e->cfg.max_retries ||
	    atomic_load(&g->cancel_requested))
		return false;
	if (ftruncate(x->fd, 0) < 0)
		return false;
	if (x->ckpt_recorded)
		(void)fremovexattr(x->fd, SSTF__XATTR_PARTIAL);
	x->refetched = true;
	x->retries++;
	atomic_fetch_add_explicit(&e->retries, 1, memory_order_relaxed);
	/* Progress counts the bytes of the attempt that stands. */
	atomic_fetch_sub_explicit(&g->bytes_done, x->queued - x->resumed_from,
	                          memory_order_relaxed);
	atomic_fetch_sub_explicit(&g->bytes_present, x->resumed_from, memory_order_relaxed);
	x->received = x->queued = x->resumed_from = 0;
	x->ckpt_recorded = false;
	x->ckpt_next = first_checkpoint(e, x);
	x->detail[0] = '\0';
	x->http_status = 0;
	sstf__hasher_reset(&x->hasher, x->file->kind);
	x->source_done = false;
	int ret = start_source(e, x);
	if (ret < 0) {
		fail(x, ret, NULL);
		x->source_done = !x->curl_attached && !x->reading;
	}
	return true;
}

/*
 * The publish record, once the bytes are verified and (fsync on) durable,
 * so that it never vouches for bytes a crash could lose; the file must no
 * longer look partial. Best effort: without xattrs the next run re-hashes.
 */
static void vouch(struct sstf__xfer *x)
{
	if (x->ckpt_recorded)
		(void)fremovexattr(x->fd, SSTF__XATTR_PARTIAL);
	(void)sstf__record_verified_set(x->fd, x->file);
}

static void submit_rename(struct sstf_engine *e, struct sstf__xfer *x)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	/* x->tmp and the arena's name outlive the submit, which copies them. */
	io_uring_prep_renameat(sqe, x->gen->stagefd, x->tmp, x->gen->dirfd, x->file->name, 0);
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
	case SSTF__X_CHECK:
		return; /* its reads drive it */
	case SSTF__X_FETCH: {
		int v = verify(x);
		if (v == -SSTF_ECHECKSUM && refetch(e, x))
			return;
		if (v < 0) {
			fail(x, v, NULL);
			finish(e, x, x->err);
			return;
		}
		if (sync) {
			struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
			io_uring_prep_fsync(sqe, x->fd, IORING_FSYNC_DATASYNC);
			sstf__ring_tag(sqe, x->slot, SSTF__OP_FSYNC, 0);
			x->phase = SSTF__X_SYNC;
		} else {
			vouch(x);
			submit_rename(e, x);
		}
		return;
	}
	case SSTF__X_SYNC:
		vouch(x);
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
