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
 *   sink.c    buffer pool, per-file writes, re-hash of files in place,
 *             checkpoints, verify and publish
 *   http.c    libcurl multi_socket glue: sockets and timer on the ring
 *   filesrc.c file:// source, read through the ring
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
#include "names.h"
#include "sstfetch.h"

/* ------------------------------------------------------------------------ */
/* alloc.c */

void *sstf__alloc(const struct sstf_allocator *a, size_t size); /* zeroed */
void *sstf__alloc_aligned(const struct sstf_allocator *a, size_t align,
                          size_t size); /* zeroed */
void sstf__free(const struct sstf_allocator *a, void *ptr);

uint64_t sstf__now_ns(void); /* CLOCK_MONOTONIC */

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
	SSTF__OP_READ,         /* file:// read, aux = buffer index */
	SSTF__OP_FSYNC,        /* fdatasync of the temporary file */
	SSTF__OP_RENAME,       /* publish */
	SSTF__OP_DIRSYNC,      /* fsync of the parent directory */
	SSTF__OP_CANCEL,       /* async cancel of a slot's operations */
	SSTF__OP_CKPT,         /* fsync of the temporary file for a checkpoint */
	SSTF__OP_CHECK_READ,   /* read of a file in place, to re-hash it */
	SSTF__OP_COUNT
};
_Static_assert(SSTF__OP_COUNT <= 16, "an op must fit a tag's 4 op bits");

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
	SSTF__SLOT_CTL,  /* engine-owned: eventfd read, curl timer */
	SSTF__SLOT_XFER, /* one file transfer */
	SSTF__SLOT_SOCK, /* one curl socket and its poll */
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
struct sstf__xfer;

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
	struct sstf__xfer *xfer; /* XFER slots: their transfer, fixed */
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
                     uint32_t nctl, uint32_t nxfer, uint32_t nsock);
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

/* sstf__file.flags */
#define SSTF__F_ADOPTED 1u /* the staging directory holds a crashed
                              writer's partial of this file, renamed to
                              this generation's temporary name for it */

/*
 * Per-file metadata, in the generation's arena: 48 bytes plus the name
 * (and the URL when the entry has its own), whatever the file's size.
 */
struct sstf__file {
	const char *name;   /* as submitted, relative to dest */
	const char *url;    /* NULL: the generation's base_url joined to name */
	uint64_t size;
	struct sstf__digest digest;
	uint8_t kind;       /* enum sstf_digest_kind */
	uint8_t scheme;     /* one enum sstf__scheme bit */
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
	size_t next_file;      /* first file not started yet */
	uint32_t active;       /* transfers holding a slot */
	uint32_t inflight;     /* SQEs of its slots in flight */
	uint64_t last_progress_ns;
	struct sstf__gen *run_next; /* engine's list of gens with files to start */
	bool on_run_list;
	_Atomic uint64_t bytes_present, files_skipped;

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
	struct sstf__file *files;
	size_t nfiles;
};

/*
 * Validates a batch and copies it into a new generation (state QUEUED) with
 * its own arena. On a bad entry returns -SSTF_EBADENTRY or -SSTF_EBADURL and
 * writes a message naming it into batch->errbuf. Any thread.
 */
int sstf__gen_new(const struct sstf_allocator *a, const struct sstf_batch *b,
                  uint64_t id, struct sstf__gen **out);
/*
 * File f's URL: its own, or base_url joined to its name in g's scratch
 * buffer, valid until the next call for g. Loop thread.
 */
const char *sstf__gen_file_url(struct sstf__gen *g, const struct sstf__file *f);
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
 * Prepares g's destination, in the submitting thread: opens dest_dir,
 * creates the staging directory and g's lock file under a fresh random
 * token, sweeps the writers that are gone (adopting the partial files g can
 * resume, marking them SSTF__F_ADOPTED) and admits the batch against the
 * free space. Returns 0, or a negative error (-ENOSPC when the batch does
 * not fit) with a message naming the path or giving the numbers in errbuf.
 * On error everything it opened is released.
 */
int sstf__dest_prepare(const struct sstf_allocator *a, const struct sstf_config *cfg,
                       struct sstf__gen *g, char *errbuf, size_t errlen);
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
 * Writes the publish record of f onto fd, taking the mtime from fstat(fd).
 * Returns 0 or -errno (-ENOTSUP where the filesystem has no user xattrs:
 * then the next run re-hashes the file instead of trusting it).
 */
int sstf__record_verified_set(int fd, const struct sstf__file *f);
/* True when fd (whose fstat is *st) carries a publish record matching f's
 * name, digest and size and st's mtime. */
bool sstf__record_verified_matches(int fd, const struct stat *st,
                                   const struct sstf__file *f);
/*
 * Reads fd's publish record as a checkpoint at the file's end (offset ==
 * size; no hash state): 0, -ENODATA when there is none, -ESTALE when the
 * file's size or mtime no longer match it.
 */
int sstf__record_verified_get(int fd, struct sstf__partial *out);
/* Writes a checkpoint of f at `offset` with hash state `state` onto fd. */
int sstf__record_partial_set(int fd, const struct sstf__file *f, uint64_t offset,
                             const XXH3_state_t *state);
/*
 * Reads and checks fd's checkpoint: magic, version, this build's xxHash
 * version and state size, and the record's own checksum. Returns 0 and
 * fills *out, or a negative errno (-ENODATA when there is none).
 */
int sstf__record_partial_get(int fd, struct sstf__partial *out);
/* True when checkpoint p belongs to f (name, size, digest) and its offset
 * can be resumed: within the file (its end for a whole verified file), and
 * 4096-aligned when `direct`. */
bool sstf__partial_fits(const struct sstf__partial_key *p, const struct sstf__file *f,
                        uint64_t name_hash, bool direct);

/* ------------------------------------------------------------------------ */
/* sink.c: buffer pool and the life of one file transfer */

struct sstf__pool {
	uint8_t *mem;
	size_t bs;
	uint32_t n;
	uint32_t nfree;
	uint32_t *free_stack;
	uint32_t *len; /* bytes of file data in each buffer */
	uint64_t *off; /* file offset of each buffer's write */
	uint32_t *done; /* bytes of each buffer's write done so far */
	uint32_t used_peak;
	bool fixed;    /* registered with the ring */
};

enum sstf__xfer_phase {
	SSTF__X_IDLE,     /* slot free */
	SSTF__X_CHECK,    /* re-hashing the file already in place */
	SSTF__X_FETCH,    /* source running or writes in flight */
	SSTF__X_SYNC,     /* fdatasync in flight */
	SSTF__X_RENAME,   /* rename in flight */
	SSTF__X_DIRSYNC,  /* directory fsync in flight */
};

struct sstf__xfer {
	struct sstf__hasher hasher; /* first: 64-byte aligned */
	XXH3_state_t ckpt_state;    /* hash state at ckpt_off */
	XXH3_state_t sync_state;    /* hash state at sync_off */
	struct sstf_engine *engine;
	struct sstf__slot *slot;
	CURL *easy;
	char curl_err[CURL_ERROR_SIZE];

	struct sstf__gen *gen;
	size_t file_index;
	const struct sstf__file *file;
	enum sstf__xfer_phase phase;
	int fd;       /* temporary file */
	int pdirfd;   /* the final name's directory */
	int srcfd;    /* file:// source */
	int chkfd;    /* CHECK: the file in place */
	bool direct;
	bool curl_attached;
	bool source_done;
	bool paused;  /* waiting for a free buffer */
	bool reading; /* file:// or CHECK read in flight */
	bool tmp_made; /* our temporary file exists (made or adopted) */
	char tmp[SSTF__TMP_NAME_MAX]; /* its name in the staging directory */
	bool skipped;  /* already in place and verified */
	bool refetched; /* a digest mismatch started it over once */
	bool preverified; /* an adopted whole file its publish record vouches
	                     for: verify checks its length only */
	uint64_t resumed_from;
	uint64_t checked;   /* CHECK: bytes hashed so far */
	uint64_t check_len; /* CHECK: bytes to hash */
	bool check_prefix;  /* CHECK reads an adopted partial's prefix, whose
	                       checkpoint state waits in ckpt_state */
	uint32_t writes;    /* writes in flight */
	uint64_t ckpt_next; /* checkpoint when queued reaches this; 0: never */
	uint64_t ckpt_off;  /* the pending checkpoint's offset; 0: none */
	uint32_t ckpt_wait; /* writes below ckpt_off still in flight */
	uint64_t sync_off;  /* the checkpoint whose fdatasync is in flight */
	bool ckpt_syncing;  /* that fdatasync is in flight */
	bool ckpt_recorded; /* a checkpoint record is on the file */
	int cur_buf;  /* buffer being filled, -1 if none */
	uint32_t cur_len;
	uint64_t received; /* bytes accepted from the source */
	uint64_t queued;   /* bytes handed to writes (file offset) */
	int err;           /* first error, 0 if none */
	int http_status;
	char detail[160];
	uint64_t t_start, t_first;
	bool renamed;      /* the final name now holds the file */
	bool retry_wait;   /* between attempts, until retry_at_ns */
	unsigned retries;  /* attempts made after the first */
	uint64_t retry_at_ns;
	struct sstf__xfer *pause_prev, *pause_next;
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

/* Starts file `index` of `g` on transfer `x` (whose slot is allocated). */
void sstf__xfer_start(struct sstf_engine *e, struct sstf__xfer *x,
                      struct sstf__gen *g, size_t index);
/*
 * Accepts `len` source bytes. Returns 0 when all were taken, 1 when the
 * caller must pause (nothing was taken), -1 when the transfer failed (x->err
 * says why) and the source must stop.
 */
int sstf__xfer_put(struct sstf_engine *e, struct sstf__xfer *x,
                   const void *data, size_t len);
/* Hashes buffer `idx` holding `len` bytes and queues its write at x->queued. */
void sstf__xfer_commit(struct sstf_engine *e, struct sstf__xfer *x, int idx,
                       uint32_t len);
/* The source delivered everything (err == 0) or failed (err < 0). */
void sstf__xfer_source_end(struct sstf_engine *e, struct sstf__xfer *x, int err,
                           const char *detail);
/* Stops the transfer with `err` (-ECANCELED for a cancel). */
void sstf__xfer_abort(struct sstf_engine *e, struct sstf__xfer *x, int err);
/* A sink completion (write, fsync, rename, dirsync) for x. */
void sstf__xfer_on_cqe(struct sstf_engine *e, struct sstf__xfer *x,
                       enum sstf__op op, unsigned aux, int res);
/* Moves x forward after any event; finishes it once nothing is pending. */
void sstf__xfer_step(struct sstf_engine *e, struct sstf__xfer *x);
/* Queues x to be resumed when a buffer frees up. */
void sstf__xfer_wait_buffer(struct sstf_engine *e, struct sstf__xfer *x);
/*
 * Reads one buffer's worth of fd at off into a pool buffer for x, tagged
 * op with the buffer's index, and sets x->reading; when the pool is empty,
 * queues x to be resumed instead.
 */
void sstf__xfer_read(struct sstf_engine *e, struct sstf__xfer *x, int fd, uint64_t off,
                     enum sstf__op op);
/* A buffer is free again: continues x's source or re-hash. */
void sstf__xfer_resume(struct sstf_engine *e, struct sstf__xfer *x);
/* A re-hash read of the file in place completed into buffer `buf`. */
void sstf__xfer_on_check_read(struct sstf_engine *e, struct sstf__xfer *x,
                              unsigned buf, int res);
/* x's source is http(s) (else file://). */
static inline bool sstf__xfer_is_http(const struct sstf__xfer *x)
{
	return x->file->scheme != SSTF__SCHEME_FILE;
}

/* ------------------------------------------------------------------------ */
/* http.c */

int sstf__http_init(struct sstf_engine *e);
void sstf__http_fini(struct sstf_engine *e);
int sstf__http_start(struct sstf_engine *e, struct sstf__xfer *x);
/* Detaches x from curl, or ends its retry wait. */
void sstf__http_stop(struct sstf_engine *e, struct sstf__xfer *x);
void sstf__http_resume(struct sstf_engine *e, struct sstf__xfer *x);
void sstf__http_on_cqe(struct sstf_engine *e, struct sstf__slot *s,
                       enum sstf__op op, int res);
void sstf__http_on_timer(struct sstf_engine *e, int res);
/*
 * Runs curl's timeout and restarts transfers whose retry backoff ended, when
 * due; arms the ring timer for the next of those deadlines.
 */
void sstf__http_tick(struct sstf_engine *e);
/* Hands finished transfers (curl_multi_info_read) to their sinks, and
 * clears curl_ran. */
void sstf__http_collect(struct sstf_engine *e);

/* ------------------------------------------------------------------------ */
/* filesrc.c */

int sstf__filesrc_start(struct sstf_engine *e, struct sstf__xfer *x);
void sstf__filesrc_stop(struct sstf_engine *e, struct sstf__xfer *x);
void sstf__filesrc_resume(struct sstf_engine *e, struct sstf__xfer *x);
void sstf__filesrc_on_read(struct sstf_engine *e, struct sstf__xfer *x,
                           unsigned buf, int res);

/* ------------------------------------------------------------------------ */
/* ring.c */

int sstf__ring_init(struct io_uring *ring, unsigned depth, unsigned *flags);
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
#define SSTF__CTL_TIMER 1
#define SSTF__NCTL 2

struct sstf_engine {
	struct sstf_config cfg;
	struct sstf_allocator alloc;

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
	uint64_t efd_value;
	struct sstf__slots slots;
	struct sstf__xfer *xfers;
	uint32_t nxfers;
	struct sstf__pool pool;
	CURLM *multi;
	uint64_t timer_deadline_ns; /* 0: curl wants no timeout */
	uint64_t timer_armed_ns;    /* deadline of the timer op, 0 if none */
	bool timer_removing;
	struct __kernel_timespec timer_ts;
	struct sstf__gen *run_head, *run_tail;
	struct sstf__xfer *pause_head, *pause_tail;
	unsigned retry_waiting; /* transfers with retry_wait set */
	bool stopping;
	/* Invariant 9: the loop sleeps only when both are false. */
	bool curl_ran;      /* curl ran since the last collect: a transfer may
	                       have ended, its DONE message not yet read */
	bool local_command; /* a callback queued a submit or cancel */

	_Atomic uint64_t cancels;
	_Atomic uint64_t retries;
	_Atomic uint64_t buffers_peak;
};

/* Called by parts when a generation may have finished its last work. */
void sstf__engine_gen_check(struct sstf_engine *e, struct sstf__gen *g);
/* A file of g reached its end; updates counters and calls on_file_done. */
void sstf__engine_file_done(struct sstf_engine *e, struct sstf__xfer *x,
                            int result);
/* Calls g's progress callback when its interval has passed. */
void sstf__engine_progress(struct sstf_engine *e, struct sstf__gen *g);

#endif
