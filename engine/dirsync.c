/*
 * dirsync.c - destination directories: made once, synced for many files.
 *
 * A file is published by a rename, and the rename is durable only once its
 * directory is synced after it (sink.c). A sync per file costs as much as
 * the file's own fdatasync, and on small files it is most of the time spent
 * per file. An fsync of a directory makes durable every entry change that
 * completed before it started, so the files of one directory can share
 * their syncs:
 *
 *   - at most one fsync per directory is in flight; the files renamed
 *     before it started are its `covered` list and are done when it
 *     completes;
 *   - a file renamed while it runs goes on the `queued` list, and the next
 *     fsync, started as soon as the one in flight completes, covers it. A
 *     queued file never waits for more than the sync in flight and its own.
 *
 * A directory is keyed by its generation and its path below dest_dir: two
 * generations never share one, so a generation's directories, like its
 * files, are drained before its arena (which holds the paths) is freed.
 * Each is one DIR slot, tagged with its generation, so its fsyncs count in
 * the generation's drain like any of its operations.
 *
 * fsync=batch keeps a directory that received a rename ("dirty") until the
 * generation has nothing else left to do; then sstf__dirs_sync_gen() syncs
 * each dirty directory once, and engine.c reports the files waiting in
 * g->deferred, failing those whose directory did not sync.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#ifdef SSTF_TEST_HOOKS
void (*sstf__test_hook)(enum sstf__hook_event ev, uint64_t gen, const char *path, size_t len,
                        uint32_t slot, int res);
#endif

int sstf__dirs_init(struct sstf_engine *e, uint32_t first, uint32_t n)
{
	struct sstf__dirs *t = &e->dirs;
	uint32_t nb = 16;
	while (nb < 2 * n)
		nb *= 2;
	t->n = n;
	t->mask = nb - 1;
	t->v = n ? sstf__alloc(&e->alloc, n * sizeof(*t->v)) : NULL;
	t->buckets = sstf__alloc(&e->alloc, nb * sizeof(*t->buckets));
	if ((n && !t->v) || !t->buckets)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct sstf__dir *d = &t->v[i];
		d->slot = &e->slots.v[first + i];
		d->slot->dir = d;
		d->fd = -1;
	}
	return 0;
}

void sstf__dirs_fini(struct sstf_engine *e)
{
	sstf__free(&e->alloc, e->dirs.v);
	sstf__free(&e->alloc, e->dirs.buckets);
	e->dirs.v = NULL;
	e->dirs.buckets = NULL;
}

int sstf__dir_open(struct sstf__gen *g, const char *name)
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

/* FNV-1a of the path, seeded with the generation's id. */
static uint64_t dir_hash(const struct sstf__gen *g, const char *path, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull ^ g->id;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)path[i];
		h *= 0x100000001b3ull;
	}
	return h;
}

static struct sstf__dir **bucket(struct sstf_engine *e, uint64_t hash)
{
	return &e->dirs.buckets[hash & e->dirs.mask];
}

struct sstf__dir *sstf__dir_get(struct sstf_engine *e, struct sstf__gen *g, const char *name,
                                int *err)
{
	const char *slash = strrchr(name, '/');
	size_t len = slash ? (size_t)(slash - name) : 0;
	uint64_t h = dir_hash(g, name, len);
	*err = 0;
	for (struct sstf__dir *d = *bucket(e, h); d; d = d->hash_next) {
		if (d->hash == h && d->gen == g && d->len == len && !memcmp(d->path, name, len)) {
			d->refs++;
			return d;
		}
	}
	struct sstf__slot *slot = sstf__slot_alloc(&e->slots, SSTF__SLOT_DIR, g, g->id);
	if (!slot)
		return NULL;
	int fd = len ? sstf__dir_open(g, name) : g->dirfd;
	if (fd < 0) {
		sstf__slot_set_state(&e->slots, slot, SSTF__SLOT_FREE);
		*err = fd;
		return NULL;
	}
	struct sstf__dir *d = slot->dir;
	d->gen = g;
	d->path = name;
	d->len = len;
	d->hash = h;
	d->fd = fd;
	d->refs = 1;
	d->syncing = d->dirty = d->kept = false;
	d->err = 0;
	d->covered = d->queued = NULL;
	d->hash_next = *bucket(e, h);
	*bucket(e, h) = d;
	return d;
}

static void dir_free(struct sstf_engine *e, struct sstf__dir *d)
{
	for (struct sstf__dir **pp = bucket(e, d->hash); *pp; pp = &(*pp)->hash_next) {
		if (*pp == d) {
			*pp = d->hash_next;
			break;
		}
	}
	if (d->len && d->fd >= 0)
		close(d->fd);
	d->fd = -1;
	d->gen = NULL;
	d->path = NULL;
	sstf__slot_set_state(&e->slots, d->slot, SSTF__SLOT_FREE);
}

void sstf__dir_put(struct sstf_engine *e, struct sstf__dir *d)
{
	if (--d->refs == 0 && !d->syncing && !d->kept)
		dir_free(e, d);
}

static void submit_sync(struct sstf_engine *e, struct sstf__dir *d)
{
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	io_uring_prep_fsync(sqe, d->fd, 0);
	sstf__ring_tag(sqe, d->slot, SSTF__OP_DIRSYNC, 0);
	d->syncing = true;
	SSTF__HOOK(SSTF__HOOK_DIRSYNC_START, d->gen->id, d->path, d->len, d->slot->index, 0);
}

void sstf__dir_wait(struct sstf_engine *e, struct sstf__dir *d, struct sstf__file *f)
{
	f->dir_wait = true;
	if (d->syncing) {
		f->dir_next = d->queued;
		d->queued = f;
		return;
	}
	f->dir_next = NULL;
	d->covered = f;
	submit_sync(e, d);
}

void sstf__dir_mark(struct sstf__dir *d)
{
	d->kept = true;
	if (!d->dirty) {
		d->dirty = true;
		d->gen->dirs_dirty++;
	}
}

/* Ends the wait of every file on list, with err when the sync failed. Each
 * may finish and let go of the directory: the caller no longer touches it. */
static void release_files(struct sstf_engine *e, struct sstf__file *list, int res)
{
	while (list) {
		struct sstf__file *f = list;
		list = f->dir_next;
		f->dir_next = NULL;
		f->dir_wait = false;
		if (res < 0)
			sstf__file_fail(f, res, "fsync of the directory failed");
		sstf__file_step(e, f);
	}
}

void sstf__dir_on_cqe(struct sstf_engine *e, struct sstf__dir *d, int res)
{
	struct sstf__gen *g = d->gen;
	d->syncing = false;
	SSTF__HOOK(SSTF__HOOK_DIRSYNC_DONE, g->id, d->path, d->len, d->slot->index, res);
	if (res < 0 && !d->err)
		d->err = res;
	struct sstf__file *done = d->covered;
	d->covered = NULL;
	/* The queued files need the next sync; one that failed meanwhile (a
	 * cancel) need not, and leaves now. */
	struct sstf__file *leave = NULL;
	for (struct sstf__file *f = d->queued, *next; f; f = next) {
		next = f->dir_next;
		if (f->err) {
			f->dir_next = leave;
			leave = f;
		} else {
			f->dir_next = d->covered;
			d->covered = f;
		}
	}
	d->queued = NULL;
	if (d->covered)
		submit_sync(e, d);
	/* From here d may be freed by the files' finish. */
	bool last = !d->covered && !d->refs;
	if (last && !d->kept)
		dir_free(e, d);
	release_files(e, done, res);
	release_files(e, leave, 0);
	/* A batch's end sync: the generation may end now. */
	if (last)
		sstf__engine_gen_check(e, g);
}

bool sstf__dirs_sync_gen(struct sstf_engine *e, struct sstf__gen *g)
{
	bool busy = false;
	for (uint32_t i = 0; i < e->dirs.n; i++) {
		struct sstf__dir *d = &e->dirs.v[i];
		if (d->gen != g)
			continue;
		if (d->dirty && !d->syncing) {
			d->dirty = false;
			g->dirs_dirty--;
			submit_sync(e, d);
		}
		busy |= d->syncing;
	}
	return busy;
}

void sstf__dirs_release_gen(struct sstf_engine *e, struct sstf__gen *g)
{
	for (uint32_t i = 0; i < e->dirs.n; i++) {
		struct sstf__dir *d = &e->dirs.v[i];
		if (d->gen == g && !d->refs && !d->syncing)
			dir_free(e, d);
	}
	g->dirs_dirty = 0;
}
