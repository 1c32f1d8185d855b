/*
 * internal.h - the engine's parts and how they fit.
 *
 * Threads. One loop thread per engine owns every field below that is not
 * marked otherwise: the ring, the slot table, the buffer pool, curl and the
 * per-file state. Other threads touch only what the engine lock guards (the
 * command lists and each generation's state and result) and the atomics.
 * The loop never holds the lock while it calls back into the user.
 *
 * Parts, one file each:
 *   alloc.c   allocator hooks
 *   slots.c   the fixed slot table, tags, stale-completion rejection
 *   gen.c     generations: arena, validation at submit, state changes
 *   names.c   name rules, URL schemes and joining (names.h)
 *   dest.c    the destination: staging namespace, writer locks, sweep of
 *             dead writers, admission
 *   record.c  the records kept in extended attributes: verified files and
 *             resumable checkpoints
 *   ring.c    io_uring setup and SQE helpers
 *   pool.c    the buffer pool
 *   sink.c    the life of one file: re-hash in place, writes, the hash
 *             frontier, checkpoints, verify and publish
 *   dirsync.c destination directories: made once, synced for many files
 *   stream.c  streams: a file's parts, attempts, retries, mirrors, pauses
 *   timers.c  the timer heap (retry backoffs) and the ring timer
 *   rate.c    the engine-wide token bucket
 *   sources.c the table of sources, keyed by URL scheme
 *   http.c    the http(s) source: libcurl multi_socket on the ring
 *   filesrc.c the file:// source, read through the ring
 *   engine.c  the loop, commands, and the public API
 */
#ifndef SSTF_INTERNAL_H
#define SSTF_INTERNAL_H

#include <curl/curl.h>
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "digest.h"
#include "s3.h"
#include "names.h"
#include "sstfetch.h"

/* ------------------------------------------------------------------------ */
/* alloc.c */

void *sstf__alloc(const struct sstf_allocator *a, size_t size); /* zeroed */
void *sstf__alloc_aligned(const struct sstf_allocator *a, size_t align,
                          size_t size); /* zeroed */
void sstf__free(const struct sstf_allocator *a, void *ptr);

uint64_t sstf__now_ns(void); /* CLOCK_MONOTONIC */

/* Retries (stream.c, get.c): after a transient failure, wait a time drawn
 * uniformly from [0, sstf__backoff_cap_ms(n)] before retry n ("full
 * jitter"), or what the origin's Retry-After asks, up to the cap below. */
#define SSTF__RETRY_AFTER_CAP_MS 60000u
static inline uint64_t sstf__backoff_cap_ms(unsigned retries)
{
	uint64_t cap = (uint64_t)100u << (retries < 6 ? retries : 6);
	return cap < 5000u ? cap : 5000u;
}

/* Writes a configuration error (naming the field) into errbuf, which may be
 * NULL, and returns -EINVAL; engine.c and s3.c check their fields with it. */
int sstf__bad_config(char *errbuf, size_t len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* sstf_config with every zeroed field given its default, checked, exactly
 * as sstf_engine_new() takes it (engine.c). 0 or -EINVAL and errbuf. */
int sstf__config_resolve(struct sstf_config *c, char *errbuf, size_t len);

/* http.c, for every easy handle of the library (its loop's and get.c's):
 * curl_global_init once per process (0 or -ENOMEM); the options every
 * handle has; and which failures a retry may cure (s3_code: S3's <Code>,
 * "" when none). */
int sstf__curl_global_init(void);
void sstf__http_easy_defaults(CURL *c, const struct sstf_config *cfg,
                              const struct sstf__net *net);
bool sstf__http_transient(CURLcode rc, long status, const char *s3_code);

/* A syscall's fd result as the engine returns it: the fd, or -errno. */
static inline int sstf__fd_or_errno(int fd)
{
	return fd < 0 ? -errno : fd;
}

/* ------------------------------------------------------------------------ */
/* slots.c: tags and the slot table
 *
 * A tag is the 64-bit io_uring user_data of every SQE and the private
 * pointer of every curl handle:
 *
 *   bits  0..3   op      which operation completed (enum sstf__op)
 *   bits  4..15  aux     op argument (a buffer index for reads and writes)
 *   bits 16..29  slot    index into the slot table
 *   bits 30..43  seq     the slot's incarnation, bumped at each allocation
 *   bits 44..63  gen     low bits of the owning generation id (0: engine)
 *
 * A completion belongs to a slot only if slot, seq and gen all match the
 * slot's current tag. Op and aux are not part of the identity.
 */
enum sstf__op {
	SSTF__OP_NONE = 0,
	SSTF__OP_EVENTFD,      /* command wake-up read */
	SSTF__OP_TIMER,        /* curl's timer */
	SSTF__OP_TIMER_REMOVE,
	SSTF__OP_POLL,         /* a curl socket poll */
	SSTF__OP_POLL_UPDATE,  /* new mask for an armed poll */
	SSTF__OP_POLL_REMOVE,
	SSTF__OP_WRITE,        /* aux = buffer index */
	SSTF__OP_READ,         /* a source's read into a buffer, aux = index */
	SSTF__OP_TMPFILE,      /* an operation on the temporary file other
	                          than a write: aux = enum sstf__tmp_op */
	SSTF__OP_RENAME,       /* publish */
	SSTF__OP_DIRSYNC,      /* fsync of the parent directory (on a FILE
	                          slot, or a DIR slot: dirsync.c) */
	SSTF__OP_CANCEL,       /* async cancel of a slot's operations */
	SSTF__OP_CHECK_READ,   /* read of a file in place, to re-hash it */
	SSTF__OP_SOURCE,       /* a source's own operation; aux is the source's */
	SSTF__OP_OPEN,         /* openat of a file's final name or temporary;
	                          aux = enum sstf__open_kind (sink.c) */
	SSTF__OP_COUNT
};
_Static_assert(SSTF__OP_COUNT <= 16, "an op must fit a tag's 4 op bits");
/* The aux of an SSTF__OP_TMPFILE (sink.c). */
enum sstf__tmp_op {
	SSTF__TMP_SYNC,        /* fdatasync before publishing */
	SSTF__TMP_CKPT_SYNC,   /* fdatasync up to a checkpoint */
	SSTF__TMP_CKPT_RECORD, /* fsetxattr of the checkpoint's record */
	SSTF__TMP_CUT,         /* ftruncate of the O_DIRECT tail */
	SSTF__TMP_VOUCH,       /* fsetxattr of the publish record */
};

#define SSTF__TAG_OP_BITS 4
#define SSTF__TAG_AUX_BITS 12
#define SSTF__TAG_SLOT_BITS 14
#define SSTF__TAG_SEQ_BITS 14
#define SSTF__TAG_GEN_BITS 20
#define SSTF__TAG_AUX_SHIFT SSTF__TAG_OP_BITS
#define SSTF__TAG_SLOT_SHIFT (SSTF__TAG_AUX_SHIFT + SSTF__TAG_AUX_BITS)
#define SSTF__TAG_SEQ_SHIFT (SSTF__TAG_SLOT_SHIFT + SSTF__TAG_SLOT_BITS)
#define SSTF__TAG_GEN_SHIFT (SSTF__TAG_SEQ_SHIFT + SSTF__TAG_SEQ_BITS)
#define SSTF__TAG_ID_MASK (~(uint64_t)0 << SSTF__TAG_SLOT_SHIFT)
#define SSTF__MAX_SLOTS (1u << SSTF__TAG_SLOT_BITS)
#define SSTF__MAX_AUX ((1u << SSTF__TAG_AUX_BITS) - 1)
_Static_assert(SSTF_MAX_BUFFERS <= SSTF__MAX_AUX, "a buffer index must fit a tag's aux");

static inline uint64_t sstf__tag_op(uint64_t tag, enum sstf__op op, unsigned aux)
{
	return (tag & SSTF__TAG_ID_MASK) | (uint64_t)aux << SSTF__TAG_AUX_SHIFT |
	       (uint64_t)op;
}
static inline enum sstf__op sstf__tag_opcode(uint64_t ud)
{
	return (enum sstf__op)(ud & ((1u << SSTF__TAG_OP_BITS) - 1));
}
static inline unsigned sstf__tag_aux(uint64_t ud)
{
	return (unsigned)(ud >> SSTF__TAG_AUX_SHIFT) & SSTF__MAX_AUX;
}
static inline uint32_t sstf__tag_slot(uint64_t ud)
{
	return (uint32_t)(ud >> SSTF__TAG_SLOT_SHIFT) & (SSTF__MAX_SLOTS - 1);
}

/* The table holds each kind in one run, in this order. */
enum sstf__slot_kind {
	SSTF__SLOT_CTL,    /* engine-owned: eventfd read, the ring timer */
	SSTF__SLOT_FILE,   /* one file: its disk operations */
	SSTF__SLOT_STREAM, /* one stream of a file: its source's operations */
	SSTF__SLOT_SOCK,   /* a source's own (curl: one socket and its poll) */
	SSTF__SLOT_DIR,    /* one destination directory: its fsyncs */
	SSTF__SLOT_KINDS
};

/*
 * FREE -> ACTIVE        sstf__slot_alloc()
 * ACTIVE -> DRAINING    its work was stopped; completions still due
 * ACTIVE|DRAINING -> FREE   only when nothing is in flight
 */
enum sstf__slot_state {
	SSTF__SLOT_FREE = 0,
	SSTF__SLOT_ACTIVE,
	SSTF__SLOT_DRAINING,
};

struct sstf__gen;
struct sstf__file;
struct sstf__stream;
struct sstf__source_ops;

struct sstf__sock {
	curl_socket_t fd;
	short want;      /* poll mask curl asked for; 0 after REMOVE */
	short armed;     /* poll mask of the poll in flight, 0 if none */
	bool removing;   /* a poll remove is in flight */
};

struct sstf__slot {
	uint64_t tag; /* identity bits only; op and aux are zero */
	uint32_t index;
	uint32_t seq;
	uint32_t next_free;
	uint32_t inflight; /* SQEs submitted and not yet completed */
	enum sstf__slot_kind kind;
	enum sstf__slot_state state;
	struct sstf__gen *gen;   /* owning generation, NULL for the engine */
	struct sstf__file *file;     /* FILE slots: their file, fixed */
	struct sstf__stream *stream; /* STREAM slots: their stream, fixed */
	struct sstf__dir *dir;       /* DIR slots: their directory, fixed */
	const struct sstf__source_ops *src; /* SOCK slots: their source */
	struct sstf__sock sock;  /* SOCK slots */
};

struct sstf__slots {
	struct sstf__slot *v;
	uint32_t n;
	uint32_t free_head[SSTF__SLOT_KINDS]; /* UINT32_MAX: empty */
	uint32_t used[SSTF__SLOT_KINDS];
	_Atomic uint64_t stale; /* completions rejected by tag */
};

int sstf__slots_init(struct sstf__slots *t, const struct sstf_allocator *a,
                     uint32_t nctl, uint32_t nfile, uint32_t nstream, uint32_t nsock,
                     uint32_t ndir);
void sstf__slots_fini(struct sstf__slots *t, const struct sstf_allocator *a);
/* Takes a free slot of `kind` for generation `gen`; NULL when none is free. */
struct sstf__slot *sstf__slot_alloc(struct sstf__slots *t,
                                    enum sstf__slot_kind kind,
                                    struct sstf__gen *gen, uint64_t gen_id);
/* The one door for slot state changes; aborts on a transition not allowed. */
void sstf__slot_set_state(struct sstf__slots *t, struct sstf__slot *s,
                          enum sstf__slot_state to);
/*
 * Maps a completion's user_data to its slot. Returns NULL, and counts a
 * stale completion, when the slot index is out of the table, the slot is
 * free, or its current tag differs: such a completion is never followed
 * further than this.
 */
struct sstf__slot *sstf__slot_resolve(struct sstf__slots *t, uint64_t ud);
/* In-flight accounting of one SQE, on the slot and on its generation. */
void sstf__slot_op_begin(struct sstf__slot *s);
void sstf__slot_op_end(struct sstf__slot *s);

/* ------------------------------------------------------------------------ */
/* gen.c: generations */

/* sstf__entry.flags */
#define SSTF__F_ADOPTED 1u /* the staging directory holds a crashed
                              writer's partial of this file, renamed to
                              this generation's temporary name for it */

/*
 * Per-file metadata, in the generation's arena: 48 bytes, 8 more for its
 * place in the start order, plus the name (and the URLs when the entry has
 * its own: a pointer and the string each), whatever the file's size.
 */
struct sstf__entry {
	const char *name;   /* as submitted, relative to dest */
	const char *const *urls; /* nurls own URLs (mirrors, in order) */
	uint64_t size;
	struct sstf__digest digest;
	uint8_t kind;       /* enum sstf_digest_kind */
	uint8_t nurls;      /* 0: one URL, the base_url joined to name */
	uint8_t flags;      /* SSTF__F_* */
};

/*
 * QUEUED -> RUNNING            the loop took the submit command
 * RUNNING -> CANCELLING        a cancel started
 * RUNNING|CANCELLING -> ENDED  nothing of it is in flight; batch-done was
 *                              called and the arena freed
 */
enum sstf__gen_state {
	SSTF__GEN_QUEUED,
	SSTF__GEN_RUNNING,
	SSTF__GEN_CANCELLING,
	SSTF__GEN_ENDED,
};

struct sstf__gen {
	uint64_t id;
	/* Guarded by the engine lock. */
	enum sstf__gen_state state;
	int result;
	int waiters;            /* threads in sstf_wait/sstf_cancel */
	bool cancel_queued;     /* on the engine's cancel list */
	struct sstf__gen *next; /* the engine's list of all generations */
	struct sstf__gen *cmd_next;
	struct sstf__gen *cancel_next;
	/* Set by any thread; read by the loop to silence callbacks. */
	_Atomic bool cancel_requested;
	/* Written by the loop, read by anyone. */
	_Atomic uint64_t bytes_done, files_done, files_failed;
	uint64_t bytes_total, files_total;

	/* Loop-owned. */
	sstf_file_done_cb on_file_done;
	sstf_batch_done_cb on_batch_done;
	sstf_progress_cb on_progress;
	void *user;
	int first_error;
	size_t next_file;      /* files started so far; the next is
	                          files[order[next_file]] */
	uint32_t active;       /* transfers holding a slot */
	uint32_t inflight;     /* SQEs of its slots in flight */
	uint64_t last_progress_ns;
	struct sstf__gen *run_next; /* engine's list of gens with files to start */
	bool on_run_list;
	_Atomic uint64_t bytes_present, files_skipped;

	/* fsync=batch (dirsync.c): a published file's result waits here,
	 * indexed like files, until its directory's sync at the end; NULL in
	 * the other modes. Allocated at submit, freed with the arena. */
	struct sstf__deferred *deferred;
	uint64_t *deferred_mirrors; /* mirror_bytes of files with mirrors */
	uint32_t dirs_dirty;  /* its directories holding renames not synced */

	/* The destination (dest.c), opened at submit, released at the end. */
	uint64_t token;  /* the writer's random id in DEST/.sstf/ */
	int dirfd;       /* dest_dir */
	int stagefd;     /* DEST/.sstf */
	int lockfd;      /* DEST/.sstf/TOKEN.lock, flocked */
	size_t adopted;  /* files with SSTF__F_ADOPTED not yet started */

	/* The arena: every byte of metadata, freed in one piece. */
	void *arena;
	const char *dest_dir;
	const char *base_url;  /* NULL when the batch had none */
	unsigned schemes;      /* enum sstf__scheme bits files may use */
	size_t url_max;        /* longest URL of a file, without the NUL */
	char *url_buf;         /* url_max + 1 bytes of scratch (loop) */
	struct sstf__entry *files;
	size_t nfiles;
	size_t *order;         /* indexes into files, the order they start
	                          in: largest first (gen.c) */
};

/*
 * Validates a batch and copies it into a new generation (state QUEUED) with
 * its own arena. On a bad entry returns -SSTF_EBADENTRY or -SSTF_EBADURL and
 * writes a message naming it into batch->errbuf. Any thread.
 */
int sstf__gen_new(const struct sstf_allocator *a, const struct sstf_batch *b,
                  uint64_t id, struct sstf__gen **out);
/* How many URLs entry f has (1 when it uses the base_url). */
static inline unsigned sstf__entry_nurls(const struct sstf__entry *f)
{
	return f->nurls ? f->nurls : 1;
}
/*
 * Entry f's URL number `mirror`: its own, or base_url joined to its name in
 * g's scratch buffer, valid until the next call for g. Loop thread.
 */
const char *sstf__gen_url(struct sstf__gen *g, const struct sstf__entry *f, unsigned mirror);
/* Frees the arena; allowed only once the generation has nothing in flight. */
void sstf__gen_free_arena(const struct sstf_allocator *a, struct sstf__gen *g);
void sstf__gen_free(const struct sstf_allocator *a, struct sstf__gen *g);
/* The one door for generation state changes; caller holds the engine lock. */
void sstf__gen_set_state(struct sstf__gen *g, enum sstf__gen_state to);
const char *sstf__gen_state_name(enum sstf__gen_state s);

/* ------------------------------------------------------------------------ */
/* dest.c: the destination directory (see "The destination directory" in
 * sstfetch.h for the layout and the protocol between writers) */

/* The staging directory, relative to dest_dir. */
#define SSTF__STAGE_DIR ".sstf"
/* Longest temporary or lock name inside it, with the NUL. */
#define SSTF__TMP_NAME_MAX 48

/* "TOKEN-INDEX.tmp": file `index`'s temporary name in the staging dir. */
void sstf__tmp_name(char out[SSTF__TMP_NAME_MAX], uint64_t token, size_t index);

/*
 * The other parts of a batch that an engine with threads > 1 spread over
 * its loops (group.c), as one part's submit must see them: the disk bytes
 * they need, which admission counts with the part's own (`need`, their
 * sizes in 4 KiB blocks; `need_missing`, asked only when that does not fit:
 * the same in blocks of `bsize` without their files already in place under
 * dirfd), and whether a dead writer's partial file belongs to one of their
 * files, which the sweep then leaves for that part's own submit instead of
 * removing it.
 */
struct sstf__partial_key;
struct sstf__siblings {
	uint64_t need;
	uint64_t (*need_missing)(void *ctx, int dirfd, uint64_t bsize);
	bool (*wants)(void *ctx, const struct sstf__partial_key *key);
	void *ctx;
};

/*
 * Prepares g's destination, in the submitting thread: opens dest_dir,
 * creates the staging directory and g's lock file under a fresh random
 * token, sweeps the writers that are gone (adopting the partial files g can
 * resume, marking them SSTF__F_ADOPTED) and admits the batch against the
 * free space. Returns 0, or a negative error (-ENOSPC when the batch does
 * not fit) with a message naming the path or giving the numbers in errbuf.
 * On error everything it opened is released. `sib`: NULL, or the other
 * parts of g's batch (see above).
 */
int sstf__dest_prepare(const struct sstf_allocator *a, const struct sstf_config *cfg,
                       struct sstf__gen *g, const struct sstf__siblings *sib, char *errbuf,
                       size_t errlen);
/*
 * Releases g's destination once nothing of g is in flight: removes the
 * temporaries of adopted files that never started, unlinks g's lock file,
 * removes the staging directory when it is left empty, closes the fds.
 * Idempotent.
 */
void sstf__dest_release(struct sstf__gen *g);

/* ------------------------------------------------------------------------ */
/* record.c: what the engine keeps in a file's extended attributes */

/* The publish record: digest kind, digest, size and mtime of a file the
 * engine verified and published. */
#define SSTF__XATTR_VERIFIED "user.sstfetch.v1"
/* A resumable checkpoint: name hash, size, digest, durable offset and the
 * hash state at that offset. */
#define SSTF__XATTR_PARTIAL "user.sstfetch.partial"

/* What a checkpoint is of, and where: enough to match it to a file. */
struct sstf__partial_key {
	uint64_t name_hash;
	uint64_t size;
	uint64_t offset;
	struct sstf__digest digest;
	uint8_t kind;
};

/* A checkpoint as read back from a partial file. */
struct sstf__partial {
	struct sstf__partial_key key;
	XXH3_state_t state; /* the hash state after key.offset bytes; its
	                       extSecret is the writer's pointer, not ours */
};

/* The 64-bit hash that identifies a name in a checkpoint. */
uint64_t sstf__name_hash(const char *name);
/*
 * A record's bytes and the name of its extended attribute, built apart from
 * setting it so that the loop can hand the set to the ring (an fsetxattr
 * waits for the inode's lock, which a write of the same file can hold for
 * as long as the disk takes): whoever sets it keeps this alive until the
 * set completes.
 */
#define SSTF__RECORD_MAX 768
struct sstf__record {
	const char *name;
	uint32_t len;
	unsigned char bytes[SSTF__RECORD_MAX];
};
/* Sets r on fd now: 0 or -errno. */
int sstf__record_put(int fd, const struct sstf__record *r);
/*
 * Builds the publish record of f for fd, taking the mtime from fstat(fd):
 * so it must come after fd's last write and cut. 0 or -errno.
 */
int sstf__record_verified_make(int fd, const struct sstf__entry *f, struct sstf__record *out);
/*
 * Writes the publish record of f onto fd (make, then put). Returns 0 or
 * -errno (-ENOTSUP where the filesystem has no user xattrs: then the next
 * run re-hashes the file instead of trusting it).
 */
int sstf__record_verified_set(int fd, const struct sstf__entry *f);
/* True when fd (whose fstat is *st) carries a publish record matching f's
 * name, digest and size and st's mtime. */
bool sstf__record_verified_matches(int fd, const struct stat *st,
                                   const struct sstf__entry *f);
/*
 * Reads fd's publish record as a checkpoint at the file's end (offset ==
 * size; no hash state): 0, -ENODATA when there is none, -ESTALE when the
 * file's size or mtime no longer match it.
 */
int sstf__record_verified_get(int fd, struct sstf__partial *out);
/* Builds a checkpoint of f at `offset` with hash state `state`. */
void sstf__record_partial_make(const struct sstf__entry *f, uint64_t offset,
                               const XXH3_state_t *state, struct sstf__record *out);
/* Writes a checkpoint of f at `offset` with hash state `state` onto fd. */
int sstf__record_partial_set(int fd, const struct sstf__entry *f, uint64_t offset,
                             const XXH3_state_t *state);
/*
 * Reads and checks fd's checkpoint: magic, version, this build's xxHash
 * version and state size, and the record's own checksum. Returns 0 and
 * fills *out, or a negative errno (-ENODATA when there is none).
 */
int sstf__record_partial_get(int fd, struct sstf__partial *out);
/* True when checkpoint p belongs to f (name, size, digest) and its offset
 * can be resumed: within the file (its end for a whole verified file, and
 * only that for an MD5 file, which takes no checkpoints), and 4096-aligned
 * when `direct`. */
bool sstf__partial_fits(const struct sstf__partial_key *p, const struct sstf__entry *f,
                        uint64_t name_hash, bool direct);

/* ------------------------------------------------------------------------ */
/* pool.c: the buffer pool */

/* sstf__pool.flags of one buffer */
#define SSTF__BUF_WRITING 1u /* its write is in flight */
#define SSTF__BUF_HELD 2u    /* committed past its file's hash frontier:
                                 on the file's held list until hashed */
#define SSTF__BUF_AHEAD 4u   /* taken by a stream ahead of its file's
                                 frontier; counted in pool.ahead */
#define SSTF__BUF_HASHED 8u  /* its bytes went into the file's hash */

/*
 * Bytes of file writes the engine keeps in the ring at once: a quarter of
 * the pool, at least one buffer, at most SSTF__WRITE_BUDGET; the rest wait
 * in commit order on the pool's write queue. A cancel cannot cut a write
 * io-wq is already running, so this bounds what a cancel waits for
 * (8 MiB is a few ms of disk), whatever the number of io-wq workers; a
 * queued write is dropped at once. Small files' writes are far below it.
 */
#define SSTF__WRITE_BUDGET (8u << 20)

struct sstf__pool {
	uint8_t *mem;
	size_t bs;
	uint32_t n;
	uint32_t nfree;
	uint32_t *free_stack;
	uint32_t *len;  /* bytes of file data in each buffer */
	uint64_t *off;  /* file offset of each buffer's write */
	uint32_t *done; /* bytes of each buffer's write done so far */
	uint32_t *next; /* the held list of its file, by offset */
	/* The engine's queue of writes waiting for the write budget, in
	 * commit order (sink.c): the next buffer on it, and the file each
	 * queued buffer belongs to. */
	uint32_t *wnext;
	struct sstf__file **wfile;
	uint32_t wq_head, wq_tail; /* SSTF__NO_BUF when empty */
	uint64_t wbytes;           /* bytes of the writes in the ring */
	uint64_t wbytes_max;       /* the budget (see SSTF__WRITE_BUDGET) */
	/* Writes that waited on the queue, and that were dropped there:
	 * counted for the tests, which read them from another thread. */
	_Atomic uint64_t wq_waited, wq_dropped;
	uint8_t *flags; /* SSTF__BUF_* */
	uint32_t used_peak;
	/* Buffers ahead of a hash frontier, and their cap: half the pool,
	 * so that the streams at the frontiers, which every other stream
	 * waits for, always find buffers (see stream.c). */
	uint32_t ahead;
	uint32_t ahead_max;
	bool fixed;     /* registered with the ring */
};

int sstf__pool_init(struct sstf__pool *p, const struct sstf_allocator *a,
                    size_t bs, uint32_t n);
void sstf__pool_fini(struct sstf__pool *p, const struct sstf_allocator *a);
int sstf__pool_get(struct sstf__pool *p); /* -1 when empty */
void sstf__pool_put(struct sstf__pool *p, int idx);
static inline uint8_t *sstf__pool_buf(struct sstf__pool *p, int idx)
{
	return p->mem + (size_t)idx * p->bs;
}

/* ------------------------------------------------------------------------ */
/* sink.c: the life of one file
 *
 * A file holds its temporary file, its hasher, its hash frontier and its
 * phase; its streams (stream.c) feed it bytes at their offsets. The phase
 * changes only through sstf__file_set_phase(), which aborts on a
 * transition not in this list:
 *
 *   IDLE -> OPEN | FETCH | CHECK   start (FETCH: failed at once)
 *   OPEN -> CHECK | FETCH | IDLE   the file in place was opened (CHECK), or
 *                                  the temporary file made (FETCH); skipped
 *                                  or failed (IDLE)
 *   CHECK -> OPEN                  the file in place did not verify: its
 *                                  temporary file is made
 *   CHECK -> FETCH                 an adopted prefix was checked
 *   CHECK -> IDLE                  skipped, or failed
 *   FETCH -> CUT | SYNC | VOUCH | RENAME   verified (each step that is
 *                                  not needed, or not in the ring, is
 *                                  passed over)
 *   FETCH -> IDLE                  failed or cancelled
 *   CUT -> SYNC | VOUCH | RENAME   tail cut
 *   SYNC -> VOUCH | RENAME         durable
 *   VOUCH -> RENAME                publish record set (or not: best effort)
 *   RENAME -> DIRSYNC | IDLE       renamed (IDLE with fsync off)
 *   DIRSYNC -> IDLE                published
 *   CUT | SYNC | VOUCH | RENAME | DIRSYNC -> IDLE  failed
 */
enum sstf__file_phase {
	SSTF__X_IDLE,     /* slot free */
	SSTF__X_OPEN,     /* an openat through the ring: the final name, to
	                     look at what is there, or the temporary file */
	SSTF__X_CHECK,    /* re-hashing the file already in place */
	SSTF__X_FETCH,    /* streams running or writes in flight */
	SSTF__X_CUT,      /* ftruncate of the O_DIRECT tail in flight */
	SSTF__X_SYNC,     /* fdatasync in flight */
	SSTF__X_VOUCH,    /* fsetxattr of the publish record in flight */
	SSTF__X_RENAME,   /* rename in flight */
	SSTF__X_DIRSYNC,  /* directory fsync in flight */
};

#define SSTF__NO_BUF UINT32_MAX

struct sstf__file {
	struct sstf__hasher hasher; /* first: 64-byte aligned */
	XXH3_state_t ckpt_state;    /* hash state at ckpt_off */
	XXH3_state_t sync_state;    /* hash state at sync_off */
	struct sstf_engine *engine;
	struct sstf__slot *slot;    /* FILE slot: the disk operations */

	struct sstf__gen *gen;
	size_t index;
	const struct sstf__entry *entry;
	enum sstf__file_phase phase;
	int fd;       /* temporary file */
	struct sstf__dir *dir; /* the final name's directory (dirsync.c),
	                          held from start to finish; NULL: none was
	                          free, and pdirfd is the file's own */
	int pdirfd;   /* without dir: the final name's directory */
	bool dir_wait; /* renamed, waiting on dir's next sync */
	bool deferred; /* fsync=batch: published, reported at the end */
	struct sstf__file *dir_next; /* on dir's covered or queued list */
	int chkfd;    /* CHECK: the file in place */
	bool direct;
	bool checking; /* CHECK read in flight */
	bool tmp_made; /* our temporary file exists (made or adopted) */
	char tmp[SSTF__TMP_NAME_MAX]; /* its name in the staging directory */
	bool skipped;  /* already in place and verified */
	bool refetched; /* a digest mismatch started it over once */
	bool preverified; /* an adopted whole file its publish record vouches
	                     for: verify checks its length only */
	bool renamed;  /* the final name now holds the file */
	int8_t digest; /* the digest of what was received: 0 not computed yet,
	                  1 it matched, -1 it did not (computed once: MD5's
	                  final ends its context) */
	uint64_t resumed_from;
	uint64_t checked;   /* CHECK: bytes hashed so far */
	uint64_t check_len; /* CHECK: bytes to hash */
	bool check_prefix;  /* CHECK reads an adopted partial's prefix, whose
	                       checkpoint state waits in ckpt_state */
	uint32_t writes;    /* writes in flight */
	uint32_t writes_hashed; /* of those, writes of bytes already hashed */
	uint64_t ckpt_next; /* checkpoint when the frontier reaches this */
	uint64_t ckpt_off;  /* the pending checkpoint's offset; 0: none */
	uint32_t ckpt_wait; /* writes below ckpt_off still in flight */
	uint64_t sync_off;  /* the checkpoint whose fdatasync is in flight */
	bool ckpt_syncing;  /* that fdatasync, or then its record's set, is
	                       in flight */
	bool ckpt_recorded; /* a checkpoint record is on the file */
	/* The record whose set is in the ring (a checkpoint's or the publish
	 * record: one at a time, as ckpt_syncing and the phase order them). */
	struct sstf__record rec;

	/* Bytes and streams. Every byte below `frontier` was hashed, in
	 * order; buffers committed past it wait on the held list. */
	uint64_t frontier;
	uint64_t next_part;  /* first byte no stream has been given yet */
	uint64_t received;   /* bytes accepted from sources, this attempt */
	uint32_t held;       /* first held buffer (lowest offset), or NO_BUF */
	uint32_t nheld;
	uint32_t wqueued; /* its writes on the engine's write queue */
	struct sstf__stream *streams; /* attached streams, via file_next */
	unsigned nstreams;
	unsigned streams_peak;
	unsigned want_streams; /* how many it would run (split) */
	bool single;   /* one plain stream from now on: the origin ignored a
	                  Range, or a part was short */
	bool restart;  /* a fall back to one stream waits for writes to drain */
	bool parted;   /* a first part was given out (so an empty file gets
	                  its one request too) */
	bool on_grow;  /* wants more streams (split) */
	bool grow_listed; /* on the engine's grow list; it may stay there past
	                     the file's end, until the list pops it */
	struct sstf__file *grow_next;

	int err;           /* first error, 0 if none */
	int http_status;
	unsigned retries;  /* attempts after the first, all streams */
	char detail[192];
	uint64_t t_start, t_first;
	uint64_t mirror_bytes[SSTF_MAX_MIRRORS];
};

/* Starts file `index` of `g` on file f and its first stream s (both slots
 * allocated). */
void sstf__file_start(struct sstf_engine *e, struct sstf__file *f, struct sstf__stream *s,
                      struct sstf__gen *g, size_t index);
/* The one door for phase changes; aborts on a transition not allowed. */
void sstf__file_set_phase(struct sstf__file *f, enum sstf__file_phase to);
/* Records the file's first error, with a printf-style detail (or none). */
void sstf__file_fail(struct sstf__file *f, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/*
 * Hands a filled buffer `idx` of `len` bytes at file offset `off` to f: it
 * is written at once, and hashed when the frontier reaches it.
 */
void sstf__file_commit(struct sstf_engine *e, struct sstf__file *f, int idx, uint64_t off,
                       uint32_t len);
/* Stops the file with `err` (-ECANCELED for a cancel): its streams stop,
 * its operations are cancelled, and it finishes once they drained. */
void sstf__file_abort(struct sstf_engine *e, struct sstf__file *f, int err);
/* A completion on f's slot. */
void sstf__file_on_cqe(struct sstf_engine *e, struct sstf__file *f, enum sstf__op op,
                       unsigned aux, int res);
/* Moves f forward after any event; finishes it once nothing is pending. */
void sstf__file_step(struct sstf_engine *e, struct sstf__file *f);
/* A buffer may be free again: goes on with a paused CHECK read. */
void sstf__file_resume_check(struct sstf_engine *e, struct sstf__file *f);
/* Drops the buffers held past f's frontier (a fall back to one stream):
 * each goes back to the pool once its write has landed. */
void sstf__file_drop_held(struct sstf_engine *e, struct sstf__file *f);

/* ------------------------------------------------------------------------ */
/* dirsync.c: destination directories
 *
 * A published name is durable once its directory was synced after the
 * rename. One fsync covers every rename that completed before it started,
 * so the files of one directory share its syncs: at most one in flight per
 * directory, and the files renamed while it runs wait for the next one,
 * which starts when it completes. A directory is one DIR slot, keyed by
 * its generation and its path below dest_dir, made (mkdir -p) and opened
 * once, and held by every file that will land in it, from its start to its
 * finish. When no DIR slot is free a file opens and syncs its parent on
 * its own, as a directory of one.
 *
 * fsync=batch: a renamed file does not wait; its result is kept in
 * g->deferred and its directory stays, dirty, until the generation's end,
 * which syncs each dirty directory once and then reports those files.
 */
struct sstf__dir {
	struct sstf__slot *slot;    /* DIR slot, fixed */
	struct sstf__gen *gen;      /* NULL when free */
	const char *path;           /* a name in gen's arena; its first len
	                               bytes are the directory */
	size_t len;                 /* 0: dest_dir itself */
	uint64_t hash;
	int fd;                     /* gen->dirfd when len == 0 (not ours) */
	uint32_t refs;              /* files holding it */
	bool syncing;               /* an fsync is in flight */
	bool dirty;                 /* fsync=batch: renames not synced yet */
	bool kept;                  /* fsync=batch: deferred files read err
	                               at the end; only the end frees it */
	int err;                    /* fsync=batch: a sync that failed */
	struct sstf__file *covered; /* renamed before the fsync in flight
	                               started: done when it completes */
	struct sstf__file *queued;  /* renamed since: the next fsync's */
	struct sstf__dir *hash_next;
};

struct sstf__dirs {
	struct sstf__dir *v;        /* one per DIR slot */
	uint32_t n;
	struct sstf__dir **buckets; /* by (gen, path) */
	uint32_t mask;              /* buckets - 1, a power of two less one */
};

/* fsync=batch: what a published file reports once its directory is synced. */
struct sstf__deferred {
	uint64_t bytes, ttfb_ns, fetch_ns, resumed_from;
	uint64_t served;     /* one URL: the bytes it served */
	uint32_t mirrors_at; /* several URLs: their bytes, g->deferred_mirrors
	                        from here */
	uint32_t retries;
	uint32_t dir;        /* index of its directory in the table */
	uint16_t streams;
	int16_t http_status;
	bool pending;        /* published, not reported yet */
};

/* The table, one directory per DIR slot of e->slots from `first`. */
int sstf__dirs_init(struct sstf_engine *e, uint32_t first, uint32_t n);
void sstf__dirs_fini(struct sstf_engine *e);
/*
 * mkdir -p of name's parent below g's dest_dir, then opens it: an fd, or
 * -errno. For a file that holds no directory.
 */
int sstf__dir_open(struct sstf__gen *g, const char *name);
/*
 * The directory of `name` (a file of g), made and opened when it is new,
 * held until sstf__dir_put(). NULL with *err == 0 when no DIR slot is
 * free (the caller uses sstf__dir_open), or with *err < 0 when the
 * directory cannot be made or opened.
 */
struct sstf__dir *sstf__dir_get(struct sstf_engine *e, struct sstf__gen *g, const char *name,
                                int *err);
void sstf__dir_put(struct sstf_engine *e, struct sstf__dir *d);
/* f was renamed into d (fsync on): it waits, f->dir_wait set, for the
 * next fsync of d to complete, and is stepped then. */
void sstf__dir_wait(struct sstf_engine *e, struct sstf__dir *d, struct sstf__file *f);
/* fsync=batch: a file was renamed into d; the generation's end syncs d. */
void sstf__dir_mark(struct sstf__dir *d);
/* d's fsync completed. */
void sstf__dir_on_cqe(struct sstf_engine *e, struct sstf__dir *d, int res);
/* g has nothing left to run: starts the fsyncs of its dirty directories.
 * True while any of g's directory syncs is in flight. */
bool sstf__dirs_sync_gen(struct sstf_engine *e, struct sstf__gen *g);
/* Frees g's kept directories; nothing of g may be in flight. */
void sstf__dirs_release_gen(struct sstf_engine *e, struct sstf__gen *g);

/*
 * Test builds (-DSSTF_TEST_HOOKS, tests/meson.build) see the order of
 * renames and directory syncs through this hook, called on the loop thread:
 * `path` and `len` name the renamed file, or the synced directory (len 0:
 * dest_dir); `slot` is the index of the slot that carries the sync (a
 * slot has one sync in flight at most, so a DONE belongs to the last START
 * of its slot); `res` is the sync's result. STREAMS_GIVEN names a file
 * whose streams left before its writes landed, `res` its writes then.
 * Set it before any engine exists. Release builds have no hook.
 */
enum sstf__hook_event {
	SSTF__HOOK_RENAMED,
	SSTF__HOOK_DIRSYNC_START,
	SSTF__HOOK_DIRSYNC_DONE,
	SSTF__HOOK_STREAMS_GIVEN,
};
#ifdef SSTF_TEST_HOOKS
extern void (*sstf__test_hook)(enum sstf__hook_event ev, uint64_t gen, const char *path,
                               size_t len, uint32_t slot, int res);
#define SSTF__HOOK(ev, gen, path, len, slot, res)                              \
	do {                                                                   \
		if (sstf__test_hook)                                           \
			sstf__test_hook(ev, gen, path, len, slot, res);        \
	} while (0)
#else
#define SSTF__HOOK(ev, gen, path, len, slot, res) ((void)0)
#endif

/* ------------------------------------------------------------------------ */
/* stream.c: streams
 *
 * A stream is one slot, one source and one byte range at a time: a part of
 * its file, [start, end), of which [start, pos) was accepted. When a part
 * is done the stream takes the file's next one; when none is left it
 * detaches (the file's first stream stays until the file ends, so that a
 * fetch-again or a fall back to one stream always has one). An attempt is
 * one request of the source; a failed attempt is retried on the rest of
 * the part, on the next mirror when the failure allows, after a backoff
 * on the timer heap.
 */
enum sstf__wait {
	SSTF__WAIT_NONE,
	SSTF__WAIT_BUFFER, /* on the engine's pause list: buffers or window */
	SSTF__WAIT_RATE,   /* on the pause list: tokens of the rate limit */
	SSTF__WAIT_TIMER,  /* on the timer heap: a retry's backoff */
	SSTF__WAIT_DRAIN,  /* idle until its file's writes drained */
};

struct sstf__stream {
	struct sstf_engine *engine;
	struct sstf__slot *slot;      /* STREAM slot */
	uint32_t index;               /* fixed; a source keys its own state
	                                 per stream on it */
	struct sstf__file *file;      /* NULL when free */
	struct sstf__stream *file_next;
	const struct sstf__source_ops *src; /* of the current attempt */
	unsigned mirror;              /* index of the URL it fetches from */
	uint32_t missing;             /* mirrors that said "not found" */
	uint64_t start, pos, end;     /* the part, and the next byte due */
	uint64_t skip;                /* body bytes to drop first: a whole
	                                 body sent for a ranged request */
	bool ranged;                  /* the attempt asks for [pos, end) */
	bool attempt;                 /* the source runs an attempt */
	bool lent;                    /* cur_buf is lent to a source's read */
	bool primary;                 /* the file's first stream */
	enum sstf__wait wait;
	uint64_t wake_ns;             /* WAIT_TIMER: when; WAIT_RATE: when the
	                                 tokens will be there */
	uint32_t heap_index;          /* its place on the timer heap */
	size_t need;                  /* SSTF__WAIT_RATE: tokens it needs */
	int cur_buf;                  /* buffer being filled, -1 if none */
	uint32_t cur_len;
	unsigned retries;             /* attempts after the first, this part */
	unsigned tries;               /* attempts after the first, in all */
	struct sstf__stream *pause_prev, *pause_next;
};

/* What the source reports when an attempt ends. */
struct sstf__src_end {
	int err;                 /* 0: the range was delivered in full (or
	                            the body ended: a short one is checked) */
	bool transient;          /* another attempt may well succeed */
	bool not_found;          /* this URL has no such object: another
	                            mirror may */
	bool whole_body;         /* a ranged request was answered with the
	                            whole object: the origin ignores Range */
	uint64_t retry_after_ms; /* the origin asked to wait this long */
	int status;              /* protocol status (HTTP), 0 if none */
	const char *detail;      /* why, for the file result; copied */
};

/*
 * Accepts `len` bytes of a stream's body. Returns 0 when all were taken,
 * 1 when the source must pause (nothing was taken; the same bytes come
 * again after ops->resume), -1 when the stream takes no more (its file
 * failed, or the bytes overran the part): the attempt is over, and the
 * source only has to stop delivering (an sstf__stream_end after it is
 * allowed and ignored; ops->stop follows).
 */
int sstf__stream_data(struct sstf_engine *e, struct sstf__stream *s, const void *data,
                      size_t len);
/*
 * For sources that read straight into the pool: where to read the next
 * bytes of s (at offset s->pos), at most *len of them, into pool buffer
 * *idx (for a fixed-buffer read). NULL when s must wait (it is paused, and
 * ops->resume comes later). The buffer is lent until sstf__stream_filled(),
 * which must follow every non-NULL return, even for a stopped stream.
 */
uint8_t *sstf__stream_buffer(struct sstf_engine *e, struct sstf__stream *s, uint32_t *len,
                             int *idx);
/* `len` bytes were read where sstf__stream_buffer said (0: none, at the
 * end of the source or after a failed read). */
void sstf__stream_filled(struct sstf_engine *e, struct sstf__stream *s, uint32_t len);
/* The attempt ended; never called from inside ops->start or ops->stop. */
void sstf__stream_end(struct sstf_engine *e, struct sstf__stream *s,
                      const struct sstf__src_end *end);
/* The URL of s's current mirror, valid until the next call for its gen. */
const char *sstf__stream_url(const struct sstf__stream *s);
/* s's file's expected size. */
uint64_t sstf__stream_file_size(const struct sstf__stream *s);

/* Attaches free stream s to f: as its primary (first) stream, idle until
 * the file starts fetching (sstf__stream_run); or as one more stream of a
 * split file, which takes the next part and starts at once (or leaves when
 * none is left). */
void sstf__stream_attach(struct sstf_engine *e, struct sstf__stream *s, struct sstf__file *f,
                         bool primary);
/* An idle stream with no part takes its file's next one and starts: the
 * primary stream when its file starts fetching, or fetches again. */
void sstf__stream_run(struct sstf_engine *e, struct sstf__stream *s);
/* Stops s for good (its file ends): the attempt, any wait, its buffer. */
void sstf__stream_stop(struct sstf_engine *e, struct sstf__stream *s);
/* Stops s and takes it off its file's list, then releases it. */
void sstf__stream_detach(struct sstf_engine *e, struct sstf__stream *s);
/* Frees a stopped stream's slot, now or when its operations drained. */
void sstf__stream_release(struct sstf_engine *e, struct sstf__stream *s);
/* A completion on s's slot: its source's. */
void sstf__stream_on_cqe(struct sstf_engine *e, struct sstf__stream *s, enum sstf__op op,
                         unsigned aux, int res);
/* Resumes paused streams that can now go on. */
void sstf__stream_resume_paused(struct sstf_engine *e);
/* The earliest time a stream waiting for tokens can go on, 0 if none. */
uint64_t sstf__stream_tokens_at(struct sstf_engine *e);
/* Starts a fallen-back file's one stream at its frontier, once every
 * write of the file has landed. */
void sstf__stream_restart(struct sstf_engine *e, struct sstf__stream *s);
/* Queues s (idle: a CHECK read of its file) for a free buffer. */
void sstf__stream_wait_buffer(struct sstf_engine *e, struct sstf__stream *s);
/* Seeds the backoff jitter. */
void sstf__stream_seed(struct sstf_engine *e);
/* A stream's backoff ended (timer heap). */
void sstf__stream_on_timer(struct sstf_engine *e, struct sstf__stream *s);
/* True when s's next buffer would be at its file's hash frontier. */
bool sstf__stream_at_frontier(const struct sstf__stream *s);

/* ------------------------------------------------------------------------ */
/* The source interface (sources.c holds the table)
 *
 * One ops table per source, as fio's ioengine_ops and curl's protocol
 * handlers. The engine calls them on the loop thread only. A source
 * delivers bytes with sstf__stream_data() (or sstf__stream_buffer() and
 * sstf__stream_filled() to read straight into the pool) and ends each
 * attempt with exactly one sstf__stream_end(), after start() returned 0.
 * Ring operations it submits for a stream are tagged with the stream's
 * slot (sstf__ring_tag) and come back through on_cqe; a stream whose
 * attempt was stopped keeps its slot until they have.
 */
struct sstf__source_ops {
	const char *name;             /* for messages */
	const char *const *schemes;   /* URL schemes it serves, NULL-ended */
	/* Once per engine, before the loop starts, and after it ended. */
	int (*init)(struct sstf_engine *e);
	void (*fini)(struct sstf_engine *e);
	/* Starts an attempt of stream s: bytes [s->pos, s->end) of the
	 * object at `url`, asking for that range when s->ranged (otherwise
	 * the whole object, of which sstf__stream_data drops s->skip bytes).
	 * Returns 0, or a negative error with why in s->file->detail. */
	int (*start)(struct sstf_engine *e, struct sstf__stream *s, const char *url);
	/* Stops the attempt at once; no sstf__stream_end follows.
	 * Idempotent: it may come for a stream that has no attempt. Ring
	 * operations in flight still complete (on_cqe); a read into a lent
	 * buffer then gives it back with sstf__stream_filled(s, 0). */
	void (*stop)(struct sstf_engine *e, struct sstf__stream *s);
	/* A paused stream may go on. */
	void (*resume)(struct sstf_engine *e, struct sstf__stream *s);
	/* A completion of an operation the source tagged with s's slot. */
	void (*on_cqe)(struct sstf_engine *e, struct sstf__stream *s, enum sstf__op op,
	               unsigned aux, int res);
	/* Optional, for sources with machinery of their own (curl):
	 * completions on SOCK slots they allocated with src set to them; */
	void (*on_slot_cqe)(struct sstf_engine *e, struct sstf__slot *slot, enum sstf__op op,
	                    int res);
	/* run on every pass of the loop (timers due, finished attempts); */
	void (*run)(struct sstf_engine *e, uint64_t now);
	/* true when run() has work now, without waiting for a completion
	 * (invariant 9); */
	bool (*ready)(struct sstf_engine *e);
	/* when run() must be called next at the latest, 0: no deadline. */
	uint64_t (*deadline)(struct sstf_engine *e);
};

#define SSTF__MAX_SOURCES 8

/* The sources, NULL-ended: http, file, and those added for tests. */
extern const struct sstf__source_ops *sstf__sources[SSTF__MAX_SOURCES + 1];
/* The source serving url's scheme, NULL when none does. */
const struct sstf__source_ops *sstf__source_for_url(const char *url);
/*
 * Adds a source (and its schemes to the URL scheme table) for engines made
 * from now on. Not thread-safe: call it before any engine exists. Tests
 * use it for the memory source. Returns 0, -ENOSPC or -EEXIST.
 */
int sstf__source_add(const struct sstf__source_ops *ops);

extern const struct sstf__source_ops sstf__http_source;
extern const struct sstf__source_ops sstf__file_source;

/* ------------------------------------------------------------------------ */
/* timers.c: the timer heap and the ring timer */

struct sstf__timers {
	struct sstf__stream **heap; /* min-heap on wake_ns */
	uint32_t n, cap;
	uint64_t armed_ns;          /* deadline of the ring timeout, 0: none */
	bool removing;              /* a timeout remove is in flight */
	struct __kernel_timespec ts;
};

int sstf__timers_init(struct sstf__timers *t, const struct sstf_allocator *a, uint32_t cap);
void sstf__timers_fini(struct sstf__timers *t, const struct sstf_allocator *a);
/* Puts s on the heap to wake at s->wake_ns (O(log n)). */
void sstf__timer_add(struct sstf__timers *t, struct sstf__stream *s);
/* Takes s off the heap (O(log n)). */
void sstf__timer_remove(struct sstf__timers *t, struct sstf__stream *s);
/* Wakes the streams whose time has come. */
void sstf__timers_run(struct sstf_engine *e, uint64_t now);
/* Arms the ring timeout for the earliest of the heap, the sources'
 * deadlines and `also` (0: none). */
void sstf__timers_arm(struct sstf_engine *e, uint64_t also);
/* The ring timeout completed. */
void sstf__timers_on_cqe(struct sstf_engine *e, enum sstf__op op, int res);

/* ------------------------------------------------------------------------ */
/* rate.c: the engine-wide token bucket */

struct sstf__rate {
	_Atomic uint64_t want;  /* bytes/s asked for, any thread; 0: none */
	_Atomic bool changed;   /* sstf_set_rate() ran since the last look */
	uint64_t rate;          /* bytes/s in force, loop-owned */
	uint64_t burst;
	uint64_t tokens;
	uint64_t last_ns;       /* last refill */
	size_t min_burst;       /* the largest single delivery */
};

void sstf__rate_init(struct sstf__rate *r, uint64_t rate, size_t min_burst);
/* Sets the rate from any thread; the loop applies it on its next look. */
void sstf__rate_set(struct sstf__rate *r, uint64_t rate);
/* Takes n tokens (all or none). Returns 0, or the time at which n tokens
 * will be there (monotonic ns). */
uint64_t sstf__rate_take(struct sstf__rate *r, size_t n, uint64_t now);
/* True when a limit is in force. */
bool sstf__rate_limited(struct sstf__rate *r);

/* ------------------------------------------------------------------------ */
/* ring.c */

int sstf__ring_init(struct io_uring *ring, unsigned depth, unsigned *flags);
/*
 * IORING_OP_FTRUNCATE (Linux 6.9), which liburing 2.3's headers predate:
 * its number in the kernel's enum io_uring_op.
 */
#define SSTF__IORING_OP_FTRUNCATE 55
/* Which of the optional file calls the ring takes: the tail cut
 * (IORING_OP_FTRUNCATE) and the records (IORING_OP_FSETXATTR). */
void sstf__ring_probe(struct io_uring *ring, bool *cut, bool *xattr);
void sstf__ring_prep_ftruncate(struct io_uring_sqe *sqe, int fd, uint64_t len);
#ifdef SSTF_TEST_HOOKS
/* Set before an engine starts: its ring is taken to lack both calls, so
 * that the tests cover the loop's own fallback. */
extern bool sstf__test_ring_calls_off;
#endif
/* A fresh SQE; submits what is queued when the SQ is full. Never NULL. */
struct io_uring_sqe *sstf__ring_sqe(struct io_uring *ring);
/*
 * Gives a prepared SQE its tag (slot s, op, aux) and counts it in flight on s
 * and s's generation. Call after the io_uring_prep_* helper, which may reset
 * user_data, and before the SQE can be submitted.
 */
void sstf__ring_tag(struct io_uring_sqe *sqe, struct sstf__slot *s,
                    enum sstf__op op, unsigned aux);

/* ------------------------------------------------------------------------ */
/* engine.c */

#define SSTF__CTL_EVENTFD 0
#define SSTF__CTL_TIMER 1 /* the ring timer (timers.c) */
#define SSTF__NCTL 2

struct sstf_engine {
	/* threads > 1: this engine is only the handle of a group of
	 * single-loop engines (group.c), and no field below is used. */
	struct sstf__group *group;
	struct sstf_config cfg;   /* its s3, ca_file, ca_path are NULL: see net */
	struct sstf_allocator alloc;
	struct sstf__net net;     /* owned copies of the network settings */

	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;      /* generation state changes, startup */
	int startup_err;          /* guarded by lock */
	bool started;             /* guarded by lock */
	int efd;                  /* eventfd: commands from other threads */

	/* Guarded by lock. */
	struct sstf__gen *gens;   /* every known generation, newest first */
	struct sstf__gen *cmd_head, *cmd_tail; /* submitted, not yet taken */
	struct sstf__gen *cancel_head;          /* cancels not yet taken */
	bool stop_requested;
	uint64_t next_gen_id;
	unsigned ended_count;

	/* Loop-owned. */
	struct io_uring ring;
	unsigned ring_flags;
	/* The ring takes IORING_OP_FTRUNCATE (Linux 6.9) and
	 * IORING_OP_FSETXATTR (5.19): the tail cut and the records go to
	 * io-wq, which may wait on the file's lock; without, the loop makes
	 * those calls itself. */
	bool ring_cut, ring_xattr;
	uint64_t efd_value;
	struct sstf__slots slots;
	struct sstf__file *files;     /* one per FILE slot */
	struct sstf__stream *streams; /* one per STREAM slot */
	uint32_t nfiles, nstreams;
	struct sstf__pool pool;
	struct sstf__timers timers;
	struct sstf__dirs dirs;
	struct sstf__rate rate;
	uint64_t part_size;          /* bytes of one part of a split file */
	struct sstf__gen *run_head, *run_tail;
	struct sstf__stream *pause_head, *pause_tail;
	struct sstf__file *grow_head, *grow_tail; /* files wanting streams */
	bool stopping;
	/* Invariant 9: the loop sleeps only when this is false and no source
	 * is ready. */
	bool local_command; /* a callback queued a submit or cancel */
	void *src_state[SSTF__MAX_SOURCES]; /* each source's own, by table index */
	uint64_t rng;       /* backoff jitter (stream.c) */

	_Atomic uint64_t cancels;
	_Atomic uint64_t retries;
	_Atomic uint64_t buffers_peak;
};

/* The index of ops in sstf__sources, for e->src_state. */
unsigned sstf__source_index(const struct sstf__source_ops *ops);

/* A file of g reached its end; updates counters and calls on_file_done. */
void sstf__engine_file_done(struct sstf_engine *e, struct sstf__file *f, int result);
/* Takes free stream slots for files on the grow list. */
void sstf__engine_want_streams(struct sstf_engine *e, struct sstf__file *f);
/* Called by parts when a generation may have finished its last work. */
void sstf__engine_gen_check(struct sstf_engine *e, struct sstf__gen *g);
/* Calls g's progress callback when its interval has passed. */
void sstf__engine_progress(struct sstf_engine *e, struct sstf__gen *g);
/* True on e's loop thread. */
bool sstf__engine_on_loop(struct sstf_engine *e);
/* Asks e's loop to cancel everything and stop, without waiting (the first
 * half of sstf_engine_free()). */
void sstf__engine_stop(struct sstf_engine *e);

/*
 * sstf_submit() in two steps, so that a group (group.c) can prepare every
 * part of a batch before it starts any: prepare validates the batch and
 * prepares its destination (sstf__dest_prepare, with `sib`) into a
 * generation that no loop knows yet; start hands it to the loop, after
 * which it may end and be forgotten at any time; abandon undoes a prepare
 * that will not be started.
 */
int sstf__submit_prepare(struct sstf_engine *e, const struct sstf_batch *batch,
                         const struct sstf__siblings *sib, struct sstf__gen **out);
void sstf__submit_start(struct sstf_engine *e, struct sstf__gen *g);
void sstf__submit_abandon(struct sstf_engine *e, struct sstf__gen *g);
/* sstf_wait()'s clock: a condition on CLOCK_MONOTONIC, the deadline of
 * timeout_ms (< 0: none, 0: now), and one wait on cond towards it: 0, or
 * ETIMEDOUT once it passed (at once for 0). */
void sstf__cond_init(pthread_cond_t *cond);
void sstf__wait_deadline(struct timespec *deadline, int timeout_ms);
int sstf__wait_step(pthread_cond_t *cond, pthread_mutex_t *lock, int timeout_ms,
                    const struct timespec *deadline);
/* sstf_cancel() of a single-loop engine; !wait: ask, and return
 * -EINPROGRESS (or 0 for an ended generation) without waiting. */
int sstf__cancel(struct sstf_engine *e, uint64_t id, bool wait);

/* ------------------------------------------------------------------------ */
/* group.c: threads > 1, several loops behind one engine handle. Each takes
 * the handle whose `group` is set; sstf_engine_new() and the public
 * functions hand over to them. */

int sstf__group_new(const struct sstf_config *resolved, sstf_engine **out);
void sstf__group_free(struct sstf_engine *e);
int sstf__group_submit(struct sstf_engine *e, const struct sstf_batch *batch, uint64_t *gen);
int sstf__group_cancel(struct sstf_engine *e, uint64_t id);
int sstf__group_wait(struct sstf_engine *e, uint64_t id, int timeout_ms);
int sstf__group_progress(struct sstf_engine *e, uint64_t id, struct sstf_progress *out);
int sstf__group_set_rate(struct sstf_engine *e, uint64_t bytes_per_s);
int sstf__group_stats(struct sstf_engine *e, struct sstf_stats *out);
/* For tests and benches that look inside a loop: how many loops e has,
 * and loop k of them (e itself when it has one). */
unsigned sstf__engine_loops(struct sstf_engine *e);
struct sstf_engine *sstf__engine_loop(struct sstf_engine *e, unsigned k);

#endif
