/*
 * dest.c - the destination directory: the staging namespace, the writers'
 * locks, the sweep of writers that are gone, and admission.
 *
 * Invariant 8 (a destination can be shared, and a crash can be recovered)
 * lives here. The layout (see sstfetch.h, "The destination directory"):
 *
 *   DEST/.sstf/TOKEN.lock       a writer's lock, flocked while it lives
 *   DEST/.sstf/TOKEN-INDEX.tmp  its temporary files
 *
 * The protocol between writers, each step a reason:
 *
 *   - A writer creates TOKEN.lock with O_EXCL under a fresh random TOKEN,
 *     then flocks it (LOCK_EX|LOCK_NB), and only then creates temporaries.
 *     So a TOKEN file with no lock file belongs to a writer that is gone:
 *     a live one made its lock first and removes it last.
 *   - A sweeper that finds TOKEN files opens TOKEN.lock and tries the same
 *     flock. Busy: the writer lives, its files are not touched. Taken: the
 *     writer is gone (flock locks die with their open file description,
 *     so with the process), and the sweeper, holding the lock, may remove
 *     or adopt its files and then the lock file.
 *   - A sweeper can win that flock in the instant between a new writer's
 *     O_EXCL create and its own flock. The writer's flock then fails (or,
 *     if the sweeper already unlinked the file, the writer finds another
 *     inode at the path) and it starts over with a new TOKEN.
 *   - The staging directory is removed by whoever leaves it empty (rmdir
 *     only removes an empty directory). A writer whose create finds it
 *     gone (ENOENT) makes it again.
 *
 * Only names of the form above are ever touched; anything else a user
 * puts in DEST/.sstf is left alone.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "internal.h"

#define TOKEN_DIGITS 16
/* Attempts at a lock before giving up; each lost race costs one. */
#define LOCK_TRIES 64

void sstf__tmp_name(char out[SSTF__TMP_NAME_MAX], uint64_t token, size_t index)
{
	snprintf(out, SSTF__TMP_NAME_MAX, "%016" PRIx64 "-%zu.tmp", token, index);
}

static void lock_name(char out[SSTF__TMP_NAME_MAX], uint64_t token)
{
	snprintf(out, SSTF__TMP_NAME_MAX, "%016" PRIx64 ".lock", token);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Parses "TOKEN.lock" or "TOKEN-DIGITS.tmp"; false for anything else. */
static bool parse_entry(const char *name, uint64_t *token, bool *is_lock)
{
	uint64_t t = 0;
	for (int i = 0; i < TOKEN_DIGITS; i++) {
		int v = hexval(name[i]);
		if (v < 0)
			return false;
		t = t << 4 | (uint64_t)v;
	}
	const char *p = name + TOKEN_DIGITS;
	if (strcmp(p, ".lock") == 0) {
		*is_lock = true;
	} else {
		if (*p++ != '-' || *p < '0' || *p > '9')
			return false;
		while (*p >= '0' && *p <= '9')
			p++;
		if (strcmp(p, ".tmp") != 0)
			return false;
		*is_lock = false;
	}
	*token = t;
	return true;
}

static int say(char *errbuf, size_t errlen, int err, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int say(char *errbuf, size_t errlen, int err, const char *fmt, ...)
{
	if (errbuf && errlen) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(errbuf, errlen, fmt, ap);
		va_end(ap);
	}
	return err;
}

/* Same file: the path still names the inode the fd holds. */
static bool same_inode(int dirfd, const char *name, int fd)
{
	struct stat a, b;
	return fstatat(dirfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 && fstat(fd, &b) == 0 &&
	       a.st_ino == b.st_ino && a.st_dev == b.st_dev;
}

/* Makes DEST/.sstf and g's lock file in it, under a fresh token. */
static int take_lock(struct sstf__gen *g, char *errbuf, size_t errlen)
{
	for (int tries = 0; tries < LOCK_TRIES; tries++) {
		if (g->stagefd < 0) {
			if (mkdirat(g->dirfd, SSTF__STAGE_DIR, 0755) < 0 && errno != EEXIST)
				return say(errbuf, errlen, -errno, "dest_dir '%s': cannot create %s/: %s",
				           g->dest_dir, SSTF__STAGE_DIR, strerror(errno));
			g->stagefd = openat(g->dirfd, SSTF__STAGE_DIR,
			                    O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
			if (g->stagefd < 0) {
				if (errno == ENOENT)
					continue; /* removed as we made it: again */
				return say(errbuf, errlen, -errno, "dest_dir '%s': cannot open %s/: %s",
				           g->dest_dir, SSTF__STAGE_DIR, strerror(errno));
			}
		}
		uint64_t token;
		if (getrandom(&token, sizeof(token), 0) != (ssize_t)sizeof(token))
			return say(errbuf, errlen, -EIO, "getrandom failed");
		char name[SSTF__TMP_NAME_MAX];
		lock_name(name, token);
		int fd = openat(g->stagefd, name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
		                0644);
		if (fd < 0) {
			int err = errno;
			if (err == EEXIST)
				continue;
			if (err == ENOENT) {
				/* Our staging dir was removed, empty, under us. */
				close(g->stagefd);
				g->stagefd = -1;
				continue;
			}
			return say(errbuf, errlen, -err, "dest_dir '%s': cannot create a lock in %s/: %s",
			           g->dest_dir, SSTF__STAGE_DIR, strerror(err));
		}
		/* Losing either check means a sweeper took our fresh file for
		 * a dead writer's: it removes it; we start over. */
		if (flock(fd, LOCK_EX | LOCK_NB) < 0 || !same_inode(g->stagefd, name, fd)) {
			close(fd);
			continue;
		}
		g->token = token;
		g->lockfd = fd;
		return 0;
	}
	return say(errbuf, errlen, -EAGAIN, "dest_dir '%s': could not take a writer lock in %s/",
	           g->dest_dir, SSTF__STAGE_DIR);
}

/* ------------------------------------------------------------------------ */
/* Sweep */

struct entry {
	uint64_t token;
	bool is_lock;
	char name[SSTF__TMP_NAME_MAX];
};

/* A dead writer's partial file that the batch may resume. */
struct cand {
	char name[SSTF__TMP_NAME_MAX];
	struct sstf__partial_key key;
	size_t match; /* batch index, or SIZE_MAX */
};

struct sweep {
	const struct sstf_allocator *a;
	struct entry *v;
	size_t n, cap;
	struct cand *c;
	size_t nc;
	struct dead {
		uint64_t token;
		int lockfd; /* its lock, which we hold */
	} *dead;
	size_t ndead;
};

static int grow(const struct sstf_allocator *a, void **p, size_t *cap, size_t n, size_t elem)
{
	if (n < *cap)
		return 0;
	size_t ncap = *cap ? 2 * *cap : 16;
	void *np = sstf__alloc(a, ncap * elem);
	if (!np)
		return -ENOMEM;
	if (*p)
		memcpy(np, *p, *cap * elem);
	sstf__free(a, *p);
	*p = np;
	*cap = ncap;
	return 0;
}

static int cmp_entry(const void *x, const void *y)
{
	const struct entry *a = x, *b = y;
	return (a->token > b->token) - (a->token < b->token);
}

/* Lists the staging dir's writer files, other than g's own. */
static int list_stage(struct sweep *sw, struct sstf__gen *g)
{
	int fd = dup(g->stagefd);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		int err = -errno;
		close(fd);
		return err;
	}
	rewinddir(d);
	int ret = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		struct entry e;
		if (strlen(de->d_name) >= sizeof(e.name) ||
		    !parse_entry(de->d_name, &e.token, &e.is_lock) || e.token == g->token)
			continue;
		ret = grow(sw->a, (void **)&sw->v, &sw->cap, sw->n, sizeof(*sw->v));
		if (ret < 0)
			break;
		snprintf(e.name, sizeof(e.name), "%s", de->d_name);
		sw->v[sw->n++] = e;
	}
	closedir(d);
	if (sw->n > 1)
		qsort(sw->v, sw->n, sizeof(*sw->v), cmp_entry);
	return ret;
}

/*
 * Is token's writer gone? 1: gone (and *lockfd holds its lock, or -1 when
 * it has no lock file left), 0: alive or unknown, leave it.
 */
static int writer_gone(struct sstf__gen *g, uint64_t token, int *lockfd)
{
	char name[SSTF__TMP_NAME_MAX];
	lock_name(name, token);
	*lockfd = -1;
	int fd = openat(g->stagefd, name, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return errno == ENOENT ? 1 : 0;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		close(fd);
		return 0;
	}
	*lockfd = fd;
	return 1;
}

/*
 * Reads a dead writer's temporary file's checkpoint into a candidate: a
 * partial's, or (trusting records) a whole verified file's publish record,
 * left by a writer killed just before its rename.
 */
static bool read_cand(struct sstf__gen *g, const char *name, bool trust, struct cand *c)
{
	int fd = openat(g->stagefd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
	if (fd < 0)
		return false;
	struct sstf__partial p;
	struct stat st;
	bool ok = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) &&
	          ((sstf__record_partial_get(fd, &p) == 0 && (uint64_t)st.st_size >= p.key.offset) ||
	           (trust && sstf__record_verified_get(fd, &p) == 0));
	close(fd);
	if (!ok)
		return false;
	snprintf(c->name, sizeof(c->name), "%s", name);
	c->key = p.key;
	c->match = SIZE_MAX;
	return true;
}

/* Pairs candidates with the batch's files by name hash, size and digest. */
static void match_cands(struct sweep *sw, struct sstf__gen *g)
{
	size_t left = sw->nc;
	for (size_t i = 0; i < g->nfiles && left; i++) {
		struct sstf__entry *f = &g->files[i];
		uint64_t h = sstf__name_hash(f->name);
		for (size_t k = 0; k < sw->nc; k++) {
			struct cand *c = &sw->c[k];
			if (c->match == SIZE_MAX && sstf__partial_fits(&c->key, f, h, false)) {
				c->match = i;
				left--;
				break;
			}
		}
	}
}

/*
 * Finds the writers that are gone, removes their temporary files except
 * the candidates the batch may resume, and holds their locks (released by
 * sweep_finish).
 */
static int sweep_scan(struct sweep *sw, struct sstf__gen *g, bool resume, bool trust,
                      const struct sstf__siblings *sib)
{
	int ret = list_stage(sw, g);
	if (ret < 0)
		return ret;
	size_t ncap_c = 0, cap_dead = 0;
	for (size_t i = 0; i < sw->n;) {
		uint64_t token = sw->v[i].token;
		size_t j = i;
		while (j < sw->n && sw->v[j].token == token)
			j++;
		int lockfd;
		if (writer_gone(g, token, &lockfd)) {
			if (lockfd >= 0) {
				if (grow(sw->a, (void **)&sw->dead, &cap_dead, sw->ndead,
				         sizeof(*sw->dead)) < 0) {
					close(lockfd);
					return -ENOMEM;
				}
				sw->dead[sw->ndead].token = token;
				sw->dead[sw->ndead++].lockfd = lockfd;
			}
			for (size_t k = i; k < j; k++) {
				if (sw->v[k].is_lock)
					continue;
				if (resume && g->nfiles &&
				    grow(sw->a, (void **)&sw->c, &ncap_c, sw->nc, sizeof(*sw->c)) == 0 &&
				    read_cand(g, sw->v[k].name, trust, &sw->c[sw->nc])) {
					sw->nc++;
					continue;
				}
				unlinkat(g->stagefd, sw->v[k].name, 0);
			}
		}
		i = j;
	}
	if (sw->nc)
		match_cands(sw, g);
	/* Another part of the batch resumes it: its submit comes next and
	 * finds the writer still gone (a token with no lock file is gone). */
	for (size_t k = 0; k < sw->nc; k++)
		if (sw->c[k].match == SIZE_MAX && !(sib && sib->wants(sib->ctx, &sw->c[k].key)))
			unlinkat(g->stagefd, sw->c[k].name, 0);
	return 0;
}

/*
 * Admitted: the matched candidates become g's own temporaries, and the
 * dead writers' lock files go. Not admitted: the candidates and the lock
 * files stay for a later run. Either way the locks are let go.
 */
static void sweep_finish(struct sweep *sw, struct sstf__gen *g, bool admitted)
{
	for (size_t k = 0; k < sw->nc && admitted; k++) {
		struct cand *c = &sw->c[k];
		if (c->match == SIZE_MAX)
			continue;
		char mine[SSTF__TMP_NAME_MAX];
		sstf__tmp_name(mine, g->token, c->match);
		if (renameat(g->stagefd, c->name, g->stagefd, mine) == 0) {
			g->files[c->match].flags |= SSTF__F_ADOPTED;
			g->adopted++;
		} else {
			unlinkat(g->stagefd, c->name, 0);
		}
	}
	for (size_t k = 0; k < sw->ndead; k++) {
		if (admitted) {
			char name[SSTF__TMP_NAME_MAX];
			lock_name(name, sw->dead[k].token);
			unlinkat(g->stagefd, name, 0);
		}
		close(sw->dead[k].lockfd);
	}
	sstf__free(sw->a, sw->v);
	sstf__free(sw->a, sw->c);
	sstf__free(sw->a, sw->dead);
}

/* ------------------------------------------------------------------------ */
/* Admission */

static void human(uint64_t v, char *out, size_t len)
{
	static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
	double d = (double)v;
	int u = 0;
	while (d >= 1024 && u < 5) {
		d /= 1024;
		u++;
	}
	if (u == 0)
		snprintf(out, len, "%" PRIu64 " B", v);
	else
		snprintf(out, len, "%.1f %s", d, unit[u]);
}

static uint64_t round_up(uint64_t v, uint64_t to)
{
	return to ? (v + to - 1) / to * to : v;
}

/*
 * Does the batch fit? It needs each file rounded up to the filesystem's
 * block, less what adopted partials already hold; files already in place
 * with the right size need nothing (they are checked, and most likely
 * skipped), but they are only looked at when the quick sum does not fit.
 */
static int admit(struct sstf__gen *g, const struct sweep *sw, const struct sstf_config *cfg,
                 const struct sstf__siblings *sib, char *errbuf, size_t errlen)
{
	struct statvfs vfs;
	if (fstatvfs(g->dirfd, &vfs) < 0)
		return say(errbuf, errlen, -errno, "dest_dir '%s': statvfs: %s", g->dest_dir,
		           strerror(errno));
	uint64_t bsize = vfs.f_frsize ? vfs.f_frsize : vfs.f_bsize;
	uint64_t avail = (uint64_t)vfs.f_bavail * bsize;
	uint64_t need = 0, held = 0;
	for (size_t i = 0; i < g->nfiles; i++) {
		/* Saturates: a million 16 TiB entries would wrap around. */
		uint64_t r = round_up(g->files[i].size, bsize);
		need = need > UINT64_MAX - r ? UINT64_MAX : need + r;
	}
	for (size_t k = 0; k < sw->nc; k++)
		if (sw->c[k].match != SIZE_MAX)
			held += sw->c[k].key.offset / bsize * bsize;
	need -= held < need ? held : need;
	uint64_t sib_need = sib ? sib->need : 0;
	need = need > UINT64_MAX - sib_need ? UINT64_MAX : need + sib_need;
	uint64_t reserve = cfg->disk_reserve;
	if (avail >= need && avail - need >= reserve)
		return 0;
	if (cfg->existing != SSTF_EXISTING_REFETCH) {
		for (size_t i = 0; i < g->nfiles && need; i++) {
			const struct sstf__entry *f = &g->files[i];
			struct stat st;
			if (fstatat(g->dirfd, f->name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
			    S_ISREG(st.st_mode) && (uint64_t)st.st_size == f->size) {
				uint64_t r = round_up(f->size, bsize);
				need -= r < need ? r : need;
			}
		}
		if (sib) {
			uint64_t missing = sib->need_missing(sib->ctx, g->dirfd, bsize);
			need -= sib_need < need ? sib_need : need;
			need = need > UINT64_MAX - missing ? UINT64_MAX : need + missing;
		}
		if (avail >= need && avail - need >= reserve)
			return 0;
	}
	char h_avail[32], h_need[32], h_res[32];
	human(avail, h_avail, sizeof(h_avail));
	human(need, h_need, sizeof(h_need));
	human(reserve, h_res, sizeof(h_res));
	return say(errbuf, errlen, -ENOSPC,
	           "dest_dir '%s': %s (%" PRIu64 " bytes) free, but the batch needs %s "
	           "(%" PRIu64 " bytes) plus a reserve of %s (%" PRIu64 " bytes); free "
	           "space, fetch fewer files, or lower disk_reserve",
	           g->dest_dir, h_avail, avail, h_need, need, h_res, reserve);
}

/* ------------------------------------------------------------------------ */

int sstf__dest_prepare(const struct sstf_allocator *a, const struct sstf_config *cfg,
                       struct sstf__gen *g, const struct sstf__siblings *sib, char *errbuf,
                       size_t errlen)
{
	g->dirfd = open(g->dest_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (g->dirfd < 0)
		return say(errbuf, errlen, -errno, "dest_dir '%s': %s", g->dest_dir,
		           strerror(errno));
	int ret = take_lock(g, errbuf, errlen);
	if (ret < 0) {
		sstf__dest_release(g);
		return ret;
	}
	struct sweep sw = {.a = a};
	ret = sweep_scan(&sw, g, cfg->resume != SSTF_OFF, cfg->existing == SSTF_EXISTING_TRUST, sib);
	if (ret < 0)
		say(errbuf, errlen, ret, "dest_dir '%s': sweeping %s/: %s", g->dest_dir,
		    SSTF__STAGE_DIR, strerror(-ret));
	else if (cfg->admission != SSTF_OFF)
		ret = admit(g, &sw, cfg, sib, errbuf, errlen);
	sweep_finish(&sw, g, ret == 0);
	if (ret < 0)
		sstf__dest_release(g);
	return ret;
}

void sstf__dest_release(struct sstf__gen *g)
{
	if (g->stagefd >= 0 && g->adopted) {
		for (size_t i = 0; i < g->nfiles; i++) {
			if (!(g->files[i].flags & SSTF__F_ADOPTED))
				continue;
			char tmp[SSTF__TMP_NAME_MAX];
			sstf__tmp_name(tmp, g->token, i);
			unlinkat(g->stagefd, tmp, 0);
			g->files[i].flags &= (uint8_t)~SSTF__F_ADOPTED;
		}
		g->adopted = 0;
	}
	if (g->lockfd >= 0) {
		char name[SSTF__TMP_NAME_MAX];
		lock_name(name, g->token);
		unlinkat(g->stagefd, name, 0);
		close(g->lockfd);
		g->lockfd = -1;
	}
	if (g->stagefd >= 0) {
		close(g->stagefd);
		g->stagefd = -1;
		/* Only an empty one goes; another writer's files keep it. */
		unlinkat(g->dirfd, SSTF__STAGE_DIR, AT_REMOVEDIR);
	}
	if (g->dirfd >= 0) {
		close(g->dirfd);
		g->dirfd = -1;
	}
}
