/*
 * sink.c - the life of one file on disk.
 *
 * Invariant 5 (only verified files are published) lives here. A file's
 * streams (stream.c) copy bytes into pool buffers and commit each buffer at
 * its file offset: it is written at once (O_DIRECT where the filesystem
 * takes it, a fixed-buffer write), and hashed when the hash frontier
 * reaches it. The frontier is one in-order pass over the file: a buffer
 * committed at the frontier is hashed on the spot, and so are the held
 * buffers it reaches; one committed past it waits on the file's held list,
 * sorted by offset, and goes back to the pool once both hashed and
 * written. A file is written under a temporary name in the staging
 * directory (dest.c) and renamed to its final name only once its length
 * and digest match (after fdatasync when fsync is on); the directory is
 * synced after the rename.
 *
 * The life of one file, by phase (see sstf__file_set_phase):
 *
 *   OPEN    through the ring: the final name is opened; a file already
 *           in place of the right size is skipped when its publish record
 *           vouches for it (record.c), or goes to CHECK; else the
 *           temporary file is created
 *   CHECK   the file in place is read through the ring and re-hashed; a
 *           match is skipped, anything else goes to FETCH. In strict mode
 *           an adopted partial's prefix is re-hashed here too, and resumed
 *           only when it hashes to its checkpoint's state.
 *   FETCH   the streams run; a crashed writer's partial that the sweep
 *           adopted is resumed at its checkpoint, with its hash state.
 *           Large files take checkpoints as the frontier moves: once every
 *           write below an offset has completed, an fsync, then the offset
 *           and the hash state there go into an extended attribute. A
 *           digest mismatch starts the file over once.
 *   SYNC, RENAME, DIRSYNC   publish
 */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include "internal.h"

#define DIRECT_ALIGN 4096u

/* ------------------------------------------------------------------------ */
/* One file */

void sstf__file_fail(struct sstf__file *f, int err, const char *fmt, ...)
{
	if (f->err)
		return; /* the first error is the one worth reporting */
	f->err = err;
	if (fmt) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(f->detail, sizeof(f->detail), fmt, ap);
		va_end(ap);
	}
}

/*
 * A hasher call failed: only MD5's can (OpenSSL). f fails with the error
 * and OpenSSL's reason; the file is never published on a digest not taken.
 */
static void hash_failed(struct sstf__file *f, int err)
{
	char why[128];
	sstf__digest_error(why, sizeof(why));
	sstf__file_fail(f, err, "cannot compute the MD5 digest with OpenSSL: %s", why);
}

/* Starts f's digest over; false (and f failed) when OpenSSL cannot. */
static bool hash_reset(struct sstf__file *f)
{
	int r = sstf__hasher_reset(&f->hasher, f->entry->kind);
	if (r < 0)
		hash_failed(f, r);
	return r == 0;
}

/* The transitions the header of internal.h lists, and no other. */
static bool phase_allowed(enum sstf__file_phase from, enum sstf__file_phase to)
{
	switch (from) {
	case SSTF__X_IDLE:
		return to == SSTF__X_OPEN || to == SSTF__X_FETCH || to == SSTF__X_CHECK;
	case SSTF__X_OPEN:
		return to == SSTF__X_CHECK || to == SSTF__X_FETCH || to == SSTF__X_IDLE;
	case SSTF__X_CHECK:
		return to == SSTF__X_OPEN || to == SSTF__X_FETCH || to == SSTF__X_IDLE;
	case SSTF__X_FETCH:
		return to == SSTF__X_CUT || to == SSTF__X_SYNC || to == SSTF__X_VOUCH ||
		       to == SSTF__X_RENAME || to == SSTF__X_IDLE;
	case SSTF__X_CUT:
		return to == SSTF__X_SYNC || to == SSTF__X_VOUCH || to == SSTF__X_RENAME ||
		       to == SSTF__X_IDLE;
	case SSTF__X_SYNC:
		return to == SSTF__X_VOUCH || to == SSTF__X_RENAME || to == SSTF__X_IDLE;
	case SSTF__X_VOUCH:
		return to == SSTF__X_RENAME || to == SSTF__X_IDLE;
	case SSTF__X_RENAME:
		return to == SSTF__X_DIRSYNC || to == SSTF__X_IDLE;
	case SSTF__X_DIRSYNC:
		return to == SSTF__X_IDLE;
	}
	return false;
}

void sstf__file_set_phase(struct sstf__file *f, enum sstf__file_phase to)
{
	if (f->phase == to)
		return;
	if (!phase_allowed(f->phase, to)) {
		fprintf(stderr, "sstfetch: file phase %d -> %d is not allowed\n", (int)f->phase,
		        (int)to);
		abort();
	}
	f->phase = to;
}

static uint32_t padded_len(const struct sstf__file *f, uint32_t len)
{
	if (!f->direct)
		return len;
	return (len + DIRECT_ALIGN - 1) & ~(DIRECT_ALIGN - 1);
}

#ifdef SSTF_TEST_HOOKS
/* The length of name's directory part (0: dest_dir), for the test hook. */
static size_t parent_len(const char *name)
{
	const char *slash = strrchr(name, '/');
	return slash ? (size_t)(slash - name) : 0;
}
#endif

/* Opens the temporary file the sweep adopted for f, with O_DIRECT where
 * the filesystem takes it. Blocking, on the loop: adopted files are few
 * (new ones are made through the ring, create_tmp). */
static int open_adopted(struct sstf_engine *e, struct sstf__file *f)
{
	int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW;
	int stagefd = f->gen->stagefd;
	if (e->cfg.direct_io != SSTF_OFF) {
		int fd = openat(stagefd, f->tmp, flags | O_DIRECT);
		if (fd >= 0) {
			f->direct = true;
			return fd;
		}
		/* EINVAL: the filesystem has no O_DIRECT (tmpfs, some FUSE). */
		if (errno != EINVAL || e->cfg.direct_io == SSTF_ON)
			return -errno;
	}
	f->direct = false;
	return sstf__fd_or_errno(openat(stagefd, f->tmp, flags));
}

/*
 * What an SSTF__OP_OPEN completion was for (its tag's aux). Creating and
 * looking up names are the slowest calls of a small file (ext4 takes the
 * directory's lock, which renames into and out of it hold too): they go
 * through the ring, to io-wq, so that the loop never waits on them.
 */
enum sstf__open_kind {
	OPEN_IN_PLACE,   /* the final name, to look at what is there */
	OPEN_TMP_DIRECT, /* a new temporary file, with O_DIRECT */
	OPEN_TMP,        /* a new temporary file, buffered */
};

static void submit_open(struct sstf_engine *e, struct sstf__file *f, int dirfd, const char *path,
                        int flags, enum sstf__open_kind kind)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	/* path (the arena's name, or f->tmp) outlives the submit. */
	io_uring_prep_openat(sqe, dirfd, path, flags, 0644);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_OPEN, kind);
	sstf__file_set_phase(f, SSTF__X_OPEN);
}

/* Makes f's temporary file in the staging directory: O_EXCL, since the
 * name is this generation's own. */
static void create_tmp(struct sstf_engine *e, struct sstf__file *f, bool direct)
{
	int flags = O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_CREAT | O_EXCL;
	submit_open(e, f, f->gen->stagefd, f->tmp, direct ? flags | O_DIRECT : flags,
	            direct ? OPEN_TMP_DIRECT : OPEN_TMP);
}

static void finish(struct sstf_engine *e, struct sstf__file *f, int result);
static void begin_fetch(struct sstf_engine *e, struct sstf__file *f);
static void stop_streams(struct sstf_engine *e, struct sstf__file *f);
static void start_fetch(struct sstf_engine *e, struct sstf__file *f);
static unsigned streams_wanted(struct sstf_engine *e, const struct sstf__file *f);
static void drop_queued_writes(struct sstf_engine *e, struct sstf__file *f);
static void resume_at(struct sstf__file *f, uint64_t offset);
static void discard_partial(struct sstf__file *f);
static void issue_check_read(struct sstf_engine *e, struct sstf__file *f);

static void skip(struct sstf_engine *e, struct sstf__file *f)
{
	f->skipped = true;
	atomic_fetch_add_explicit(&f->gen->bytes_present, f->entry->size, memory_order_relaxed);
	atomic_fetch_add_explicit(&f->gen->files_skipped, 1, memory_order_relaxed);
	finish(e, f, 0);
}

/*
 * Looks at what is already under the final name, open as fd. Returns true
 * when that settled f: skipped, or handed to CHECK to be re-hashed; false
 * (fd closed) when it is to be fetched.
 */
static bool look_in_place(struct sstf_engine *e, struct sstf__file *f, int fd)
{
	const struct sstf__entry *ent = f->entry;
	struct stat st;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != ent->size) {
		close(fd);
		return false;
	}
	if (e->cfg.existing == SSTF_EXISTING_TRUST && sstf__record_verified_matches(fd, &st, ent)) {
		close(fd);
		skip(e, f);
		return true;
	}
	/* Without a digest a re-hash proves nothing, and a size alone is the
	 * trap that made Pegasus trust half-written files: fetch it. */
	if (ent->kind == SSTF_DIGEST_NONE) {
		close(fd);
		return false;
	}
	/* Re-hash it, with O_DIRECT where allowed so that a large set
	 * checked in place does not flush the page cache. */
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && e->cfg.direct_io != SSTF_OFF && fcntl(fd, F_SETFL, fl | O_DIRECT) == 0)
		f->direct = true;
	f->chkfd = fd;
	sstf__file_set_phase(f, SSTF__X_CHECK);
	f->checked = 0;
	f->check_len = ent->size;
	issue_check_read(e, f);
	return true;
}

/* f's first stream: it waits for buffers on the file's behalf in CHECK. */
static struct sstf__stream *primary_stream(struct sstf__file *f)
{
	for (struct sstf__stream *s = f->streams; s; s = s->file_next)
		if (s->primary)
			return s;
	return NULL;
}

static void issue_check_read(struct sstf_engine *e, struct sstf__file *f)
{
	if (f->checking || f->err)
		return;
	int idx = sstf__pool_get(&e->pool);
	if (idx < 0) {
		sstf__stream_wait_buffer(e, primary_stream(f));
		return;
	}
	uint8_t *buf = sstf__pool_buf(&e->pool, idx);
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	if (e->pool.fixed)
		io_uring_prep_read_fixed(sqe, f->chkfd, buf, (unsigned)e->pool.bs, f->checked, idx);
	else
		io_uring_prep_read(sqe, f->chkfd, buf, (unsigned)e->pool.bs, f->checked);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_CHECK_READ, (unsigned)idx);
	f->checking = true;
}

void sstf__file_resume_check(struct sstf_engine *e, struct sstf__file *f)
{
	issue_check_read(e, f);
}

/* The file in place did not verify (or could not be read): fetch anew. */
static void check_failed(struct sstf_engine *e, struct sstf__file *f)
{
	close(f->chkfd);
	f->chkfd = -1;
	f->direct = false;
	f->checked = 0;
	(void)hash_reset(f); /* a failure ends f once begin_fetch steps it */
	begin_fetch(e, f);
}

/* The prefix re-hash of an adopted partial ended: resume or start over. */
static void prefix_checked(struct sstf_engine *e, struct sstf__file *f)
{
	close(f->chkfd);
	f->chkfd = -1;
	f->check_prefix = false;
	struct sstf__hasher saved = {.kind = f->hasher.kind};
	memcpy(&saved.state, &f->ckpt_state, sizeof(saved.state));
	struct sstf__digest got, want;
	sstf__hasher_final(&f->hasher, &got);
	sstf__hasher_final(&saved, &want);
	if (f->checked == f->check_len && sstf__digest_equal(&got, &want)) {
		resume_at(f, f->check_len); /* the hasher holds that state */
	} else {
		(void)hash_reset(f);
		discard_partial(f);
	}
	f->checked = 0;
	start_fetch(e, f);
}

static void on_check_read(struct sstf_engine *e, struct sstf__file *f, unsigned buf, int res)
{
	const struct sstf__entry *ent = f->entry;
	f->checking = false;
	if (f->err) {
		/* Cancelled while reading: the read is over, so is the file. */
		sstf__pool_put(&e->pool, (int)buf);
		sstf__file_step(e, f);
		return;
	}
	/* A failed read, or more bytes than expected (it grew): not ours. */
	if (res < 0 || (uint64_t)res > f->check_len - f->checked) {
		sstf__pool_put(&e->pool, (int)buf);
		f->checked = UINT64_MAX; /* never equal to check_len */
		if (f->check_prefix)
			prefix_checked(e, f);
		else
			check_failed(e, f);
		return;
	}
	int hr = sstf__hasher_update(&f->hasher, sstf__pool_buf(&e->pool, (int)buf), (size_t)res);
	f->checked += (uint64_t)res;
	sstf__pool_put(&e->pool, (int)buf);
	if (hr < 0) {
		hash_failed(f, hr);
		sstf__file_step(e, f); /* nothing in flight: it ends here */
		return;
	}
	if (res > 0 && f->checked < f->check_len) {
		issue_check_read(e, f);
		return;
	}
	if (f->check_prefix) {
		prefix_checked(e, f);
		return;
	}
	/* All of it was read (an O_DIRECT read past an unaligned end would
	 * fail, so stop at the size), or it ended early. */
	struct stat st;
	struct sstf__digest got;
	hr = sstf__hasher_final(&f->hasher, &got);
	if (hr < 0) {
		hash_failed(f, hr);
		sstf__file_step(e, f);
		return;
	}
	if (f->checked == ent->size && fstat(f->chkfd, &st) == 0 && (uint64_t)st.st_size == ent->size &&
	    sstf__digest_equal(&got, &ent->digest)) {
		/* Vouch for it from now on; a filesystem without xattrs just
		 * means the next run re-hashes it again. */
		(void)sstf__record_verified_set(f->chkfd, ent);
		close(f->chkfd);
		f->chkfd = -1;
		skip(e, f);
		return;
	}
	check_failed(e, f);
}

void sstf__file_start(struct sstf_engine *e, struct sstf__file *f, struct sstf__stream *s,
                      struct sstf__gen *g, size_t index)
{
	struct sstf__entry *ent = &g->files[index];
	f->gen = g;
	f->index = index;
	f->entry = ent;
	f->phase = SSTF__X_IDLE;
	f->fd = f->pdirfd = f->chkfd = -1;
	f->dir = NULL;
	f->dir_next = NULL;
	f->dir_wait = f->deferred = false;
	f->direct = f->checking = f->renamed = false;
	f->skipped = f->refetched = f->preverified = false;
	f->digest = 0;
	f->retries = 0;
	f->received = f->checked = f->check_len = f->resumed_from = 0;
	f->frontier = f->next_part = 0;
	f->held = SSTF__NO_BUF;
	f->nheld = f->wqueued = 0;
	f->streams = NULL;
	f->nstreams = f->streams_peak = f->want_streams = 0;
	/* grow_listed and grow_next belong to the list, which may still hold
	 * this struct from the file it served before. */
	f->single = f->restart = f->on_grow = f->parted = false;
	f->check_prefix = false;
	f->writes = f->writes_hashed = 0;
	f->ckpt_next = f->ckpt_off = 0;
	f->ckpt_wait = 0;
	f->ckpt_syncing = f->ckpt_recorded = false;
	f->err = 0;
	f->http_status = 0;
	f->detail[0] = '\0';
	memset(f->mirror_bytes, 0, sizeof(f->mirror_bytes));
	f->t_start = sstf__now_ns();
	f->t_first = 0;
	sstf__tmp_name(f->tmp, g->token, index);
	/* An adopted partial is ours now: finish() removes it if unused. */
	f->tmp_made = ent->flags & SSTF__F_ADOPTED;
	if (f->tmp_made) {
		ent->flags &= (uint8_t)~SSTF__F_ADOPTED;
		g->adopted--;
	}
	bool hashing = hash_reset(f);
	g->active++;
	sstf__stream_attach(e, s, f, true);

	int ret = 0;
	if (hashing) {
		f->dir = sstf__dir_get(e, g, ent->name, &ret);
		if (!f->dir && ret == 0) {
			/* No DIR slot free: a directory of its own. */
			ret = sstf__dir_open(g, ent->name);
			if (ret >= 0) {
				f->pdirfd = ret;
				ret = 0;
			}
		}
	}
	if (!hashing || ret < 0) {
		sstf__file_set_phase(f, SSTF__X_FETCH);
		if (ret < 0)
			sstf__file_fail(f, ret, "cannot create or open the directory of '%s'",
			                ent->name);
		sstf__file_step(e, f);
		return;
	}
	if (e->cfg.existing != SSTF_EXISTING_REFETCH)
		/* O_NONBLOCK: a FIFO planted under the name must not block. */
		submit_open(e, f, g->dirfd, ent->name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK,
		            OPEN_IN_PLACE);
	else
		begin_fetch(e, f);
	/* A split file keeps the free stream slots while it opens (see
	 * grow_streams); start_fetch asks for them again. */
	unsigned want = f->phase == SSTF__X_OPEN ? streams_wanted(e, f) : 1;
	if (want > 1) {
		f->want_streams = want;
		sstf__engine_want_streams(e, f);
	}
}

/* An SSTF__OP_OPEN completed: res is the fd, or -errno. */
static void on_open(struct sstf_engine *e, struct sstf__file *f, unsigned kind, int res)
{
	if (kind == OPEN_IN_PLACE) {
		if (f->err) {
			if (res >= 0)
				close(res);
			sstf__file_step(e, f);
		} else if (res < 0 || !look_in_place(e, f, res)) {
			begin_fetch(e, f);
		}
		return;
	}
	/* An O_DIRECT create refused with EINVAL may have made the file
	 * already (the kernel checks O_DIRECT after creating it). */
	bool refused = res == -EINVAL && kind == OPEN_TMP_DIRECT;
	if (res >= 0 || refused)
		f->tmp_made = true; /* finish() removes it */
	if (res >= 0) {
		f->fd = res;
		f->direct = kind == OPEN_TMP_DIRECT;
	}
	if (f->err) {
		sstf__file_step(e, f);
		return;
	}
	if (refused && e->cfg.direct_io != SSTF_ON) {
		/* The filesystem has no O_DIRECT (tmpfs, some FUSE): the same
		 * name, buffered. No O_EXCL: the refused create may have made
		 * it, and the name is this generation's own. */
		submit_open(e, f, f->gen->stagefd, f->tmp,
		            O_WRONLY | O_CLOEXEC | O_NOFOLLOW | O_CREAT | O_TRUNC, OPEN_TMP);
		return;
	}
	if (res < 0) {
		sstf__file_fail(f, res, "cannot create a temporary file in '%s/%s'", f->gen->dest_dir,
		                SSTF__STAGE_DIR);
		sstf__file_step(e, f);
		return;
	}
	start_fetch(e, f);
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
static void resume_at(struct sstf__file *f, uint64_t offset)
{
	f->received = f->frontier = f->next_part = f->resumed_from = offset;
	f->ckpt_recorded = true;
	atomic_fetch_add_explicit(&f->gen->bytes_present, offset, memory_order_relaxed);
}

/* Empties an adopted partial that cannot be resumed. */
static void discard_partial(struct sstf__file *f)
{
	if (ftruncate(f->fd, 0) < 0)
		sstf__file_fail(f, -errno, "cannot truncate an adopted partial file");
	(void)fremovexattr(f->fd, SSTF__XATTR_PARTIAL);
}

/*
 * Continues the adopted partial at its checkpoint, with its hash state.
 * The bytes below a durable checkpoint are trusted as the bytes of any
 * write are: the engine never reads back what it wrote. In strict mode
 * (SSTF_EXISTING_REHASH) they are re-hashed first: CHECK reads them, and
 * only a hash equal to the checkpoint's resumes. Returns true when CHECK
 * took over. Anything that does not fit starts the file from byte 0.
 */
static bool resume_partial(struct sstf_engine *e, struct sstf__file *f)
{
	const struct sstf__entry *ent = f->entry;
	uint64_t name_hash = sstf__name_hash(ent->name);
	struct sstf__partial p;
	/* A whole verified file, killed before its rename: publish it. */
	if (e->cfg.existing == SSTF_EXISTING_TRUST && sstf__record_verified_get(f->fd, &p) == 0 &&
	    sstf__partial_fits(&p.key, ent, name_hash, f->direct) && p.key.offset == ent->size) {
		f->preverified = true;
		resume_at(f, ent->size);
		return false;
	}
	if (sstf__record_partial_get(f->fd, &p) != 0 ||
	    !sstf__partial_fits(&p.key, ent, name_hash, f->direct) || p.key.offset == ent->size ||
	    ftruncate(f->fd, (off_t)p.key.offset) != 0) {
		discard_partial(f);
		return false;
	}
	if (e->cfg.existing != SSTF_EXISTING_REHASH) {
		restore_state(&f->hasher.state, &p.state, &f->hasher.state);
		resume_at(f, p.key.offset);
		return false;
	}
	int fd = openat(f->gen->stagefd, f->tmp, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0) {
		discard_partial(f);
		return false;
	}
	int fl = fcntl(fd, F_GETFL);
	if (fl >= 0 && f->direct)
		(void)fcntl(fd, F_SETFL, fl | O_DIRECT);
	restore_state(&f->ckpt_state, &p.state, &f->hasher.state);
	f->chkfd = fd;
	f->check_len = p.key.offset;
	f->check_prefix = true;
	sstf__file_set_phase(f, SSTF__X_CHECK);
	f->checked = 0;
	issue_check_read(e, f);
	return true;
}

/* The first checkpoint's offset, or 0 when the file takes none. MD5
 * files take none: a checkpoint is a saved hash state, and an EVP_MD_CTX
 * cannot be saved (sstf__partial_fits refuses one too). */
static uint64_t first_checkpoint(struct sstf_engine *e, const struct sstf__file *f)
{
	uint64_t every = e->cfg.checkpoint_bytes;
	if (e->cfg.resume == SSTF_OFF || f->entry->size < 2 * every ||
	    f->entry->kind == SSTF_DIGEST_MD5)
		return 0;
	return f->frontier + every;
}

/* How many streams f should run: split files take up to `split`, and no
 * more than they have parts left. */
static unsigned streams_wanted(struct sstf_engine *e, const struct sstf__file *f)
{
	uint64_t left = f->entry->size - f->frontier;
	if (f->single || e->cfg.split <= 1 || f->entry->size < e->cfg.split_min)
		return 1;
	uint64_t parts = (left + e->part_size - 1) / e->part_size;
	return parts < e->cfg.split ? (unsigned)parts : e->cfg.split;
}

/* Starts the streams at the frontier, with checkpoints from there. */
static void start_fetch(struct sstf_engine *e, struct sstf__file *f)
{
	sstf__file_set_phase(f, SSTF__X_FETCH);
	f->ckpt_next = first_checkpoint(e, f);
	if (!f->err && !f->preverified) {
		f->want_streams = streams_wanted(e, f);
		sstf__stream_run(e, primary_stream(f));
		if (f->want_streams > f->nstreams)
			sstf__engine_want_streams(e, f);
	}
	sstf__file_step(e, f);
}

/* Opens f's temporary file, the adopted one or a new one, then fetches. */
static void begin_fetch(struct sstf_engine *e, struct sstf__file *f)
{
	if (f->err) {
		start_fetch(e, f); /* which ends it */
		return;
	}
	if (f->tmp_made) {
		int fd = open_adopted(e, f);
		if (fd >= 0) {
			f->fd = fd;
			if (!resume_partial(e, f))
				start_fetch(e, f);
			return; /* or CHECK re-hashes the prefix first */
		}
		f->tmp_made = false; /* gone: make a new one */
	}
	create_tmp(e, f, e->cfg.direct_io != SSTF_OFF);
}

/* Queues the part of buffer idx's write not done yet. */
static void submit_write(struct sstf_engine *e, struct sstf__file *f, int idx)
{
	struct sstf__pool *p = &e->pool;
	uint32_t done = p->done[idx];
	uint8_t *buf = sstf__pool_buf(p, idx) + done;
	uint32_t wlen = padded_len(f, p->len[idx]) - done;
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	if (p->fixed)
		io_uring_prep_write_fixed(sqe, f->fd, buf, wlen, p->off[idx] + done, idx);
	else
		io_uring_prep_write(sqe, f->fd, buf, wlen, p->off[idx] + done);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_WRITE, (unsigned)idx);
}

/* Back to the pool once both hashed (or dropped) and written. */
static void buffer_maybe_free(struct sstf_engine *e, int idx)
{
	if (!(e->pool.flags[idx] & (SSTF__BUF_WRITING | SSTF__BUF_HELD)))
		sstf__pool_put(&e->pool, idx);
}

/* Puts buffer idx's first write in the ring, within the write budget. */
static void start_write(struct sstf_engine *e, struct sstf__file *f, int idx)
{
	e->pool.wbytes += padded_len(f, e->pool.len[idx]);
	submit_write(e, f, idx);
}

/* Whether a write of len bytes fits the budget now; with nothing in the
 * ring any write does, whatever its size. */
static bool budget_has_room(const struct sstf__pool *p, uint32_t len)
{
	return !p->wbytes || p->wbytes + len <= p->wbytes_max;
}

/* Starts queued writes, oldest first, while the budget has room. */
static void pump_writes(struct sstf_engine *e)
{
	struct sstf__pool *p = &e->pool;
	while (p->wq_head != SSTF__NO_BUF) {
		uint32_t idx = p->wq_head;
		struct sstf__file *f = p->wfile[idx];
		if (!budget_has_room(p, padded_len(f, p->len[idx])))
			return;
		p->wq_head = p->wnext[idx];
		if (p->wq_head == SSTF__NO_BUF)
			p->wq_tail = SSTF__NO_BUF;
		p->wfile[idx] = NULL;
		f->wqueued--;
		start_write(e, f, (int)idx);
	}
}

/* Writes buffer idx: at once within the budget, else on the queue. */
static void queue_write(struct sstf_engine *e, struct sstf__file *f, int idx)
{
	struct sstf__pool *p = &e->pool;
	if (p->wq_head == SSTF__NO_BUF && budget_has_room(p, padded_len(f, p->len[idx]))) {
		start_write(e, f, idx);
		return;
	}
	p->wfile[idx] = f;
	p->wnext[idx] = SSTF__NO_BUF;
	if (p->wq_tail != SSTF__NO_BUF)
		p->wnext[p->wq_tail] = (uint32_t)idx;
	else
		p->wq_head = (uint32_t)idx;
	p->wq_tail = (uint32_t)idx;
	f->wqueued++;
	atomic_fetch_add_explicit(&p->wq_waited, 1, memory_order_relaxed);
}

/*
 * Hashes buffer idx, which starts at the frontier, and moves the frontier
 * past it. A checkpoint is the hash state at a frontier; it is recorded
 * once every write below it (this one included) is durable. The last
 * bytes need none: publishing syncs them.
 */
static void hash_buffer(struct sstf_engine *e, struct sstf__file *f, int idx)
{
	struct sstf__pool *p = &e->pool;
	int hr = sstf__hasher_update(&f->hasher, sstf__pool_buf(p, idx), p->len[idx]);
	if (hr < 0)
		hash_failed(f, hr); /* the write in flight steps f to its end */
	f->frontier += p->len[idx];
	if (p->flags[idx] & SSTF__BUF_AHEAD) {
		p->flags[idx] &= (uint8_t)~SSTF__BUF_AHEAD;
		p->ahead--;
	}
	p->flags[idx] |= SSTF__BUF_HASHED;
	if (p->flags[idx] & SSTF__BUF_WRITING)
		f->writes_hashed++;
	if (f->ckpt_next && !f->ckpt_off && f->frontier >= f->ckpt_next &&
	    f->frontier < f->entry->size) {
		f->ckpt_off = f->frontier;
		XXH3_copyState(&f->ckpt_state, &f->hasher.state);
		f->ckpt_wait = f->writes_hashed;
		/* The next one may be taken while this one syncs: a sync
		 * slower than writing checkpoint_bytes does not stretch the
		 * distance between two. */
		f->ckpt_next = f->frontier + e->cfg.checkpoint_bytes;
	}
}

/* Hashes the held buffers the frontier has reached. */
static void drain_held(struct sstf_engine *e, struct sstf__file *f)
{
	struct sstf__pool *p = &e->pool;
	while (f->held != SSTF__NO_BUF && p->off[f->held] == f->frontier) {
		int idx = (int)f->held;
		f->held = p->next[idx];
		f->nheld--;
		p->flags[idx] &= (uint8_t)~SSTF__BUF_HELD;
		hash_buffer(e, f, idx);
		buffer_maybe_free(e, idx);
	}
}

void sstf__file_commit(struct sstf_engine *e, struct sstf__file *f, int idx, uint64_t off,
                       uint32_t len)
{
	struct sstf__pool *p = &e->pool;
	uint8_t *buf = sstf__pool_buf(p, idx);
	uint32_t wlen = padded_len(f, len);
	if (wlen > len)
		memset(buf + len, 0, wlen - len); /* O_DIRECT tail, cut later */
	p->len[idx] = len;
	p->off[idx] = off;
	p->done[idx] = 0;
	p->flags[idx] |= SSTF__BUF_WRITING;
	f->writes++;
	queue_write(e, f, idx);
	if (off == f->frontier) {
		hash_buffer(e, f, idx);
		drain_held(e, f);
		return;
	}
	/* Past the frontier: held, in offset order, until it gets there. */
	p->flags[idx] |= SSTF__BUF_HELD;
	uint32_t *pp = &f->held;
	while (*pp != SSTF__NO_BUF && p->off[*pp] < off)
		pp = &p->next[*pp];
	p->next[idx] = *pp;
	*pp = (uint32_t)idx;
	f->nheld++;
}

void sstf__file_drop_held(struct sstf_engine *e, struct sstf__file *f)
{
	struct sstf__pool *p = &e->pool;
	while (f->held != SSTF__NO_BUF) {
		int idx = (int)f->held;
		f->held = p->next[idx];
		p->flags[idx] &= (uint8_t)~SSTF__BUF_HELD;
		buffer_maybe_free(e, idx);
	}
	f->nheld = 0;
}

/* Stops every stream of f: the first one stays attached, idle; the
 * others leave. */
static void stop_streams(struct sstf_engine *e, struct sstf__file *f)
{
	for (struct sstf__stream *s = f->streams, *next; s; s = next) {
		next = s->file_next;
		if (s->primary)
			sstf__stream_stop(e, s);
		else
			sstf__stream_detach(e, s);
	}
}

void sstf__file_abort(struct sstf_engine *e, struct sstf__file *f, int err)
{
	sstf__file_fail(f, err, err == -ECANCELED ? "generation cancelled" : NULL);
	if (f->slot->state == SSTF__SLOT_ACTIVE)
		sstf__slot_set_state(&e->slots, f->slot, SSTF__SLOT_DRAINING);
	stop_streams(e, f);
	drop_queued_writes(e, f);
	/* Ask the kernel to cut short what it can; the rest drains. */
	int fds[2] = {f->fd, f->chkfd};
	for (int i = 0; i < 2; i++) {
		if (fds[i] < 0 || f->slot->inflight == 0)
			continue;
		struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
		io_uring_prep_cancel_fd(sqe, fds[i], IORING_ASYNC_CANCEL_ALL);
		sstf__ring_tag(sqe, f->slot, SSTF__OP_CANCEL, 0);
	}
	sstf__file_step(e, f);
}

/*
 * Moves the pending checkpoint on once every write below it has completed:
 * its bytes are made durable (one sync in flight per file), and the next
 * checkpoint may be taken meanwhile.
 */
static void checkpoint_sync(struct sstf_engine *e, struct sstf__file *f)
{
	if (!f->ckpt_off || f->ckpt_wait || f->ckpt_syncing)
		return;
	if (f->err) {
		f->ckpt_off = 0;
		return;
	}
	f->sync_off = f->ckpt_off;
	XXH3_copyState(&f->sync_state, &f->ckpt_state);
	f->ckpt_off = 0;
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	/* fdatasync: the record must follow its bytes, not be durable
	 * itself. One lost in a crash leaves an older one, just as true. */
	io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_TMPFILE, SSTF__TMP_CKPT_SYNC);
	f->ckpt_syncing = true;
}

/* Hands the set of f->rec to the ring (e->ring_xattr); its completion,
 * tagged aux, carries f on. */
static void submit_record(struct sstf_engine *e, struct sstf__file *f, enum sstf__tmp_op aux)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	io_uring_prep_fsetxattr(sqe, f->fd, f->rec.name, (const char *)f->rec.bytes, 0, f->rec.len);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_TMPFILE, aux);
}

/* A checkpoint's record was set (res 0), or could not be. */
static void on_checkpoint_recorded(struct sstf_engine *e, struct sstf__file *f, int res)
{
	f->ckpt_syncing = false;
	if (res == 0)
		f->ckpt_recorded = true;
	else if (!f->err)
		/* No user xattrs here: no resume, no more syncs. */
		f->ckpt_next = f->ckpt_off = 0;
	checkpoint_sync(e, f);
}

static void on_checkpoint_synced(struct sstf_engine *e, struct sstf__file *f, int res)
{
	if (res < 0) {
		f->ckpt_syncing = false;
		sstf__file_fail(f, res, "fdatasync of a checkpoint failed");
		checkpoint_sync(e, f);
		return;
	}
	if (f->err) {
		on_checkpoint_recorded(e, f, -ECANCELED);
		return;
	}
	/* The bytes below sync_off are durable: only now may a record claim
	 * them. The next checkpoint waits for this one's record (ckpt_syncing
	 * stays set), so records land in order. */
	sstf__record_partial_make(f->entry, f->sync_off, &f->sync_state, &f->rec);
	if (e->ring_xattr)
		submit_record(e, f, SSTF__TMP_CKPT_RECORD);
	else
		on_checkpoint_recorded(e, f, sstf__record_put(f->fd, &f->rec));
}

/* Buffer idx's write is over: res is what its last part returned, or
 * -ECANCELED for a queued write dropped before it started. */
static void write_ended(struct sstf_engine *e, struct sstf__file *f, unsigned idx, int res)
{
	struct sstf__pool *p = &e->pool;
	uint32_t len = p->len[idx];
	uint32_t want = padded_len(f, len);
	uint64_t off = p->off[idx];
	f->writes--;
	bool hashed = p->flags[idx] & SSTF__BUF_HASHED;
	if (hashed)
		f->writes_hashed--;
	p->flags[idx] &= (uint8_t)~SSTF__BUF_WRITING;
	if (res < 0)
		sstf__file_fail(f, res, "write to the temporary file failed");
	else if (p->done[idx] + (uint32_t)res != want)
		sstf__file_fail(f, -EIO, "short write (%u of %u bytes)", p->done[idx] + (uint32_t)res,
		                want);
	else {
		atomic_fetch_add_explicit(&f->gen->bytes_done, len, memory_order_relaxed);
		sstf__engine_progress(e, f->gen);
	}
	buffer_maybe_free(e, (int)idx);
	if (hashed && f->ckpt_off && off < f->ckpt_off) {
		f->ckpt_wait--;
		checkpoint_sync(e, f);
	}
}

static void on_write(struct sstf_engine *e, struct sstf__file *f, unsigned idx, int res)
{
	struct sstf__pool *p = &e->pool;
	uint32_t want = padded_len(f, p->len[idx]);
	/* A short write made progress: the rest goes again, so that a full
	 * disk says -ENOSPC rather than a short count. */
	if (res > 0 && !f->err && p->done[idx] + (uint32_t)res < want) {
		p->done[idx] += (uint32_t)res;
		submit_write(e, f, (int)idx);
		return;
	}
	p->wbytes -= want;
	write_ended(e, f, idx, res);
	pump_writes(e);
}

/* Drops f's writes still on the queue (f failed or is cancelled): they
 * never reached the ring. O(queue), which the pool bounds. */
static void drop_queued_writes(struct sstf_engine *e, struct sstf__file *f)
{
	struct sstf__pool *p = &e->pool;
	uint32_t *pp = &p->wq_head, prev = SSTF__NO_BUF;
	while (f->wqueued && *pp != SSTF__NO_BUF) {
		uint32_t idx = *pp;
		if (p->wfile[idx] != f) {
			prev = idx;
			pp = &p->wnext[idx];
			continue;
		}
		*pp = p->wnext[idx];
		if (p->wq_tail == idx)
			p->wq_tail = prev;
		p->wfile[idx] = NULL;
		f->wqueued--;
		atomic_fetch_add_explicit(&p->wq_dropped, 1, memory_order_relaxed);
		write_ended(e, f, idx, -ECANCELED);
	}
}

void sstf__file_on_cqe(struct sstf_engine *e, struct sstf__file *f, enum sstf__op op,
                       unsigned aux, int res)
{
	switch (op) {
	case SSTF__OP_WRITE:
		on_write(e, f, aux, res);
		break;
	case SSTF__OP_CHECK_READ:
		on_check_read(e, f, aux, res);
		return; /* it steps f itself */
	case SSTF__OP_OPEN:
		on_open(e, f, aux, res);
		return; /* so does this */
	case SSTF__OP_TMPFILE:
		if (aux == SSTF__TMP_CKPT_SYNC)
			on_checkpoint_synced(e, f, res);
		else if (aux == SSTF__TMP_CKPT_RECORD)
			on_checkpoint_recorded(e, f, res);
		else if (aux == SSTF__TMP_SYNC && res < 0)
			sstf__file_fail(f, res, "fdatasync failed");
		else if (aux == SSTF__TMP_CUT && res < 0)
			sstf__file_fail(f, res, "cannot cut the O_DIRECT tail");
		/* SSTF__TMP_VOUCH: best effort, as vouch() says. */
		break;
	case SSTF__OP_RENAME:
		if (res < 0)
			sstf__file_fail(f, res, "rename to the final name failed");
		else
			f->renamed = true;
		break;
	case SSTF__OP_DIRSYNC:
		SSTF__HOOK(SSTF__HOOK_DIRSYNC_DONE, f->gen->id, f->entry->name,
		           parent_len(f->entry->name), f->slot->index, res);
		if (res < 0)
			sstf__file_fail(f, res, "fsync of the directory failed");
		break;
	default:
		break;
	}
	sstf__file_step(e, f);
}

static void finish(struct sstf_engine *e, struct sstf__file *f, int result)
{
	struct sstf__gen *g = f->gen;
	f->on_grow = false; /* the grow list drops it when it comes to it */
	sstf__file_drop_held(e, f);
	int *fds[2] = {&f->fd, &f->chkfd};
	for (int i = 0; i < 2; i++) {
		if (*fds[i] >= 0)
			close(*fds[i]);
		*fds[i] = -1;
	}
	if (f->tmp_made && !f->renamed)
		unlinkat(g->stagefd, f->tmp, 0);
	else if (f->renamed && result != 0 && result != -ECANCELED)
		/* Renamed but not durable: it must not stay published. */
		unlinkat(g->dirfd, f->entry->name, 0);
	f->tmp_made = false;
	if (f->pdirfd >= 0)
		close(f->pdirfd);
	f->pdirfd = -1;
	sstf__file_set_phase(f, SSTF__X_IDLE);
	sstf__engine_file_done(e, f, result);
	/* After the result, which notes a deferred file's directory. */
	if (f->dir)
		sstf__dir_put(e, f->dir);
	f->dir = NULL;
	/* Its streams leave last: the result above reads their counts. */
	while (f->streams)
		sstf__stream_detach(e, f->streams);
	f->gen = NULL;
	f->entry = NULL;
	g->active--;
	sstf__slot_set_state(&e->slots, f->slot, SSTF__SLOT_FREE);
	sstf__engine_gen_check(e, g);
}

/* Length and digest of what was hashed. 0: they match; else the error,
 * with f->err left unset for a digest mismatch, which the caller may
 * retry. The digest is computed once per attempt (f->digest). */
static int check_digest(struct sstf__file *f)
{
	const struct sstf__entry *ent = f->entry;
	if (f->frontier != ent->size) {
		sstf__file_fail(f, -SSTF_ESIZE, "received %" PRIu64 " bytes, expected %" PRIu64,
		                f->frontier, ent->size);
		return f->err;
	}
	if (ent->kind == SSTF_DIGEST_NONE || f->preverified || f->digest > 0)
		return 0;
	if (f->digest < 0)
		return -SSTF_ECHECKSUM; /* the detail is set */
	struct sstf__digest got;
	int hr = sstf__hasher_final(&f->hasher, &got);
	if (hr < 0) {
		hash_failed(f, hr);
		return f->err;
	}
	if (!sstf__digest_equal(&got, &ent->digest)) {
		char want_hex[33], got_hex[33];
		sstf__digest_format(&ent->digest, want_hex);
		sstf__digest_format(&got, got_hex);
		snprintf(f->detail, sizeof(f->detail), "digest %s, expected %s%s", got_hex, want_hex,
		         f->refetched ? ", twice (fetched again once)" : "");
		f->digest = -1;
		return -SSTF_ECHECKSUM;
	}
	f->digest = 1;
	return 0;
}

/* An O_DIRECT file's last write was padded to the block: the padding is
 * cut once every write landed. */
static bool needs_cut(const struct sstf__file *f)
{
	return f->direct && (f->entry->size % DIRECT_ALIGN);
}

/*
 * A digest mismatch: a flipped bit can come from a flaky hop (or a mirror
 * that differs), so the file starts over from byte 0, once, counted as a
 * retry.
 */
static bool refetch(struct sstf_engine *e, struct sstf__file *f)
{
	struct sstf__gen *g = f->gen;
	if (f->refetched || f->retries >= (unsigned)e->cfg.max_retries ||
	    atomic_load(&g->cancel_requested))
		return false;
	if (ftruncate(f->fd, 0) < 0)
		return false;
	if (f->ckpt_recorded)
		(void)fremovexattr(f->fd, SSTF__XATTR_PARTIAL);
	f->refetched = true;
	f->retries++;
	atomic_fetch_add_explicit(&e->retries, 1, memory_order_relaxed);
	/* Progress counts the bytes of the attempt that stands. */
	atomic_fetch_sub_explicit(&g->bytes_done, f->frontier - f->resumed_from,
	                          memory_order_relaxed);
	atomic_fetch_sub_explicit(&g->bytes_present, f->resumed_from, memory_order_relaxed);
	f->received = f->frontier = f->next_part = f->resumed_from = 0;
	f->parted = false;
	f->ckpt_recorded = false;
	f->digest = 0;
	f->detail[0] = '\0';
	f->http_status = 0;
	(void)hash_reset(f); /* a failure ends f in start_fetch's step */
	start_fetch(e, f);
	return true;
}

static void submit_rename(struct sstf_engine *e, struct sstf__file *f)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	/* f->tmp and the arena's name outlive the submit, which copies them. */
	io_uring_prep_renameat(sqe, f->gen->stagefd, f->tmp, f->gen->dirfd, f->entry->name, 0);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_RENAME, 0);
	sstf__file_set_phase(f, SSTF__X_RENAME);
}

/*
 * The publish record, once the bytes are verified, cut and (fsync on)
 * durable, so that it never vouches for bytes a crash could lose; the file
 * must no longer look partial. Then the rename. Best effort: without
 * xattrs the next run re-hashes.
 */
static void vouch(struct sstf_engine *e, struct sstf__file *f)
{
	if (f->ckpt_recorded)
		(void)fremovexattr(f->fd, SSTF__XATTR_PARTIAL);
	if (sstf__record_verified_make(f->fd, f->entry, &f->rec) == 0) {
		if (e->ring_xattr) {
			submit_record(e, f, SSTF__TMP_VOUCH);
			sstf__file_set_phase(f, SSTF__X_VOUCH);
			return; /* its completion renames */
		}
		(void)sstf__record_put(f->fd, &f->rec);
	}
	submit_rename(e, f);
}

/* The bytes are verified and cut: durable next (fsync on), then vouched. */
static void make_durable(struct sstf_engine *e, struct sstf__file *f)
{
	if (e->cfg.fsync == SSTF_OFF) {
		vouch(e, f);
		return;
	}
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	io_uring_prep_fsync(sqe, f->fd, IORING_FSYNC_DATASYNC);
	sstf__ring_tag(sqe, f->slot, SSTF__OP_TMPFILE, SSTF__TMP_SYNC);
	sstf__file_set_phase(f, SSTF__X_SYNC);
}

/* True while a stream of f has an attempt, a wait or a part to finish. */
static bool streams_busy(const struct sstf__file *f)
{
	for (const struct sstf__stream *s = f->streams; s; s = s->file_next)
		if (s->attempt || (s->wait != SSTF__WAIT_NONE && s->wait != SSTF__WAIT_DRAIN))
			return true;
	return false;
}

/*
 * Every byte of f was received and hashed, and the digest matched, while
 * its last writes are still in flight: no stream has anything left to do
 * for it, so they leave now and the next file takes their slots and
 * connections. The file keeps its FILE slot until it is published; the
 * buffers of its writes come back as the writes land. A mismatch keeps
 * the streams: the refetch starts on the first one once the writes land.
 */
static void release_streams_early(struct sstf_engine *e, struct sstf__file *f)
{
	if (f->phase != SSTF__X_FETCH || !f->streams || f->err || f->restart || f->preverified ||
	    !f->parted || f->next_part < f->entry->size || f->frontier != f->entry->size ||
	    check_digest(f) != 0)
		return;
	SSTF__HOOK(SSTF__HOOK_STREAMS_GIVEN, f->gen->id, f->entry->name, strlen(f->entry->name),
	           f->slot->index, (int)f->writes);
	while (f->streams)
		sstf__stream_detach(e, f->streams);
}

void sstf__file_step(struct sstf_engine *e, struct sstf__file *f)
{
	if (f->phase == SSTF__X_IDLE)
		return;
	if (f->err) {
		stop_streams(e, f);
		drop_queued_writes(e, f);
	}
	if (f->restart) {
		/* A fall back to one stream starts once no dropped write can
		 * land over the new ones. */
		if (f->err || f->writes > 0)
			goto wait;
		sstf__stream_restart(e, primary_stream(f));
	}
wait:
	/* Nothing moves on while a stream runs, an operation is out or the
	 * file waits for its directory's sync. */
	if (streams_busy(f) || f->dir_wait || (f->restart && !f->err))
		return;
	if (f->slot->inflight > 0 || f->wqueued > 0) {
		release_streams_early(e, f);
		return;
	}
	if (f->err) {
		finish(e, f, f->err);
		return;
	}
	bool sync = e->cfg.fsync != SSTF_OFF;
	switch (f->phase) {
	case SSTF__X_OPEN:
	case SSTF__X_CHECK:
		return; /* its open, or its reads, drive it */
	case SSTF__X_FETCH: {
		if ((f->next_part < f->entry->size || !f->parted) && !f->preverified) {
			/* Parts left and no stream on them: the first one
			 * takes the next (it was waiting for a part). */
			sstf__stream_run(e, primary_stream(f));
			if (streams_busy(f) || f->err)
				return;
		}
		int v = check_digest(f);
		if (v == -SSTF_ECHECKSUM && refetch(e, f))
			return;
		if (v < 0) {
			sstf__file_fail(f, v, NULL);
			finish(e, f, f->err);
			return;
		}
		/* Verified: no stream has anything left to do for it. Their
		 * slots and connections go to the next files while this one
		 * is made durable. */
		while (f->streams)
			sstf__stream_detach(e, f->streams);
		if (!needs_cut(f)) {
			make_durable(e, f);
		} else if (e->ring_cut) {
			struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
			sstf__ring_prep_ftruncate(sqe, f->fd, f->entry->size);
			sstf__ring_tag(sqe, f->slot, SSTF__OP_TMPFILE, SSTF__TMP_CUT);
			sstf__file_set_phase(f, SSTF__X_CUT);
		} else if (ftruncate(f->fd, (off_t)f->entry->size) == 0) {
			make_durable(e, f);
		} else {
			sstf__file_fail(f, -errno, "cannot cut the O_DIRECT tail");
			finish(e, f, f->err);
		}
		return;
	}
	case SSTF__X_CUT:
		make_durable(e, f);
		return;
	case SSTF__X_SYNC:
		vouch(e, f);
		return;
	case SSTF__X_VOUCH:
		submit_rename(e, f);
		return;
	case SSTF__X_RENAME:
		SSTF__HOOK(SSTF__HOOK_RENAMED, f->gen->id, f->entry->name, strlen(f->entry->name),
		           f->slot->index, 0);
		if (!sync) {
			finish(e, f, 0);
		} else if (f->dir && e->cfg.fsync == SSTF_FSYNC_BATCH) {
			/* Reported once the generation's end synced the
			 * directory (engine.c). */
			sstf__dir_mark(f->dir);
			f->deferred = true;
			finish(e, f, 0);
		} else if (f->dir) {
			sstf__file_set_phase(f, SSTF__X_DIRSYNC);
			sstf__dir_wait(e, f->dir, f);
		} else {
			struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
			io_uring_prep_fsync(sqe, f->pdirfd, 0);
			sstf__ring_tag(sqe, f->slot, SSTF__OP_DIRSYNC, 0);
			sstf__file_set_phase(f, SSTF__X_DIRSYNC);
			SSTF__HOOK(SSTF__HOOK_DIRSYNC_START, f->gen->id, f->entry->name,
			           parent_len(f->entry->name), f->slot->index, 0);
		}
		return;
	case SSTF__X_DIRSYNC:
		finish(e, f, 0);
		return;
	case SSTF__X_IDLE:
		return;
	}
}
