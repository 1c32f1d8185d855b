/*
 * sstfetch.h - the public API of libsstfetch.
 *
 * libsstfetch pulls sets of files (typically RocksDB SST files) from remote
 * storage onto local disk. Every file is verified with xxHash (or MD5) while
 * its bytes stream past, and it appears under its final name only once it is
 * verified.
 *
 * The model, in four sentences:
 *
 *   - An engine (sstf_engine) owns one event-loop thread, one io_uring, one
 *     libcurl multi handle and a fixed pool of I/O buffers (or several such
 *     loops, sstf_config.threads, that share its batches and its totals).
 *   - A batch of files handed to sstf_submit() becomes a generation, named by
 *     a 64-bit id. The engine copies everything it needs out of the batch into
 *     memory owned by that generation.
 *   - sstf_cancel() stops a generation and returns only once nothing of it is
 *     left: no transfer, no I/O in flight, no temporary file, no memory, and
 *     no callback still to come.
 *   - Callbacks run on the engine's loop thread (one of them), one at a time.
 *
 * Errors. Every function that can fail returns 0 (or a non-negative value
 * where stated) on success and a negative error code on failure: either a
 * negative errno value (-ENOMEM, -EINVAL, ...) or one of the negative
 * SSTF_E* codes below. The library never sets errno. sstf_strerror() turns
 * any of these codes into a message.
 *
 * Threads. Unless a function says otherwise it may be called from any thread,
 * including from inside a callback. Functions that block say so, and say what
 * they do when called from a callback.
 *
 * The destination directory. A batch's files land below its dest_dir, and
 * the engine keeps its own working files in one subdirectory of it:
 *
 *   DEST/.sstf/                  the staging directory (mode 0755), created
 *                                on demand, removed when it is left empty
 *   DEST/.sstf/TOKEN.lock        one per running generation, locked
 *                                (flock) for the generation's whole life
 *   DEST/.sstf/TOKEN-INDEX.tmp   the file being fetched; renamed to
 *                                DEST/NAME once verified
 *
 * TOKEN is 16 hex digits drawn from getrandom() for each generation, so a
 * temporary name cannot be guessed from the batch, and no two writers
 * (generations, engines, processes) share one. No path component of an
 * entry's name may start with ".sstf": such a name is refused at submit
 * (-SSTF_EBADENTRY), so no entry can fall into that namespace. The staging
 * directory and every directory a name runs through must be on the same
 * filesystem as DEST (the publish is a rename).
 *
 * Shared destinations. Any number of writers may fetch into one dest_dir at
 * once: several generations of one engine, several engines, several
 * processes. A writer only ever opens, truncates, renames or removes its own
 * TOKEN files, or those of a writer that is gone (below). Two writers that
 * fetch the same NAME each publish a verified copy by rename, so NAME ends
 * up holding one of them whole; which one is not defined.
 *
 * Restart after a crash. When a generation is submitted, the engine sweeps
 * DEST/.sstf/: a TOKEN whose lock file it can lock belongs to a writer that
 * is gone (flock locks die with their process). Its temporary files are
 * removed, except those the new batch can use, which the new generation
 * takes over: a partial file with a checkpoint for the same name, size and
 * digest continues at that checkpoint (see sstf_config.resume), and a whole
 * file that carries its publish record (the writer was killed just before
 * its rename) is published without a fetch. Files of live writers are never
 * touched. The engine's temporaries of a generation that is cancelled, or
 * whose files fail, are removed: only a crash leaves anything to resume.
 *
 * Files already in place. Before fetching NAME the engine looks at what is
 * there (see sstf_config.existing). By default a file of the right size is
 * skipped, as already verified, when it carries the record that the engine
 * wrote when it published it (the extended attribute "user.sstfetch.v1":
 * the name's hash, digest kind, digest, size and modification time, written
 * once the file was verified and, with fsync on, durable); without such a
 * record it is re-hashed, reading it with O_DIRECT through the ring, and
 * skipped when the digest matches (it then gets the record). A write to the
 * file changes its mtime, so the record no longer vouches for it; the
 * strict mode (SSTF_EXISTING_REHASH) trusts no record. Skipped files are
 * reported with result 0 and `skipped` set; no data is written. Where the
 * filesystem has no user extended attributes, nothing is ever trusted on a
 * record and nothing is resumed: files are re-hashed or fetched.
 *
 * Admission. Before a generation writes a byte, sstf_submit() compares the
 * free space of DEST's filesystem (statvfs f_bavail) with what the batch
 * still needs: the sizes of the files not already in place of the right
 * size, less what resumable partial files already hold, plus
 * sstf_config.disk_reserve. When it does not fit, sstf_submit() fails with
 * -ENOSPC and errbuf gives both numbers. A disk that fills up later still
 * fails the files it hits cleanly (-ENOSPC, nothing published).
 *
 * Compatibility of the structs. struct sstf_config, struct sstf_file and
 * struct sstf_batch are passed from the caller to the library, so their size
 * and layout are part of the ABI. Each ends in a `reserved` array, as
 * io_uring_params does: new fields are only ever carved out of it, so the
 * size of these structs never changes within a major version, and a program
 * built against an older header passes zeros where a newer library reads
 * new fields, and zero always means "the default" or "none". The library
 * refuses (-EINVAL, or -SSTF_EBADENTRY for a file) a struct whose reserved
 * words are not zero, so a newer program does not run silently against a
 * library that would ignore what it asked for. Always zero these structs
 * ({0} or memset) before setting fields. Structs the library hands to
 * callbacks (sstf_file_result, sstf_progress, sstf_stats) only grow at
 * their end; read only the fields your header knows.
 *
 * Ranged streams. A file of at least sstf_config.split_min bytes is fetched
 * over up to sstf_config.split streams at once, each a ranged request for
 * one part of the file at a time, with its writes landing at their offsets.
 * The digest is still one in-order pass over the file: parts that arrive
 * ahead of the hashed prefix are written and held in the buffer pool until
 * the prefix reaches them, and streams that run too far ahead pause. An
 * origin that answers a ranged request with the whole body (200, not 206)
 * gets one plain stream for that file. A stream that fails retries only the
 * rest of its own part.
 *
 * Mirrors. A file may list several URLs (sstf_file.urls). An attempt that
 * fails for a transient reason, or with 404 on one mirror, moves to the next
 * one and continues at the same offset, with the same hash state; split
 * streams start on different mirrors to spread the load. The file result
 * says how many bytes each mirror served. Content that differs between
 * mirrors fails the digest like any other corruption.
 */
#ifndef SSTFETCH_H
#define SSTFETCH_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) && !defined(SSTF_STATIC)
#define SSTF_API __attribute__((visibility("default")))
#else
#define SSTF_API
#endif

#define SSTF_VERSION_MAJOR 0
#define SSTF_VERSION_MINOR 1
#define SSTF_VERSION_PATCH 0
#define SSTF_VERSION_STRING "0.1.0"

/*
 * Engine-specific error codes. Functions return them negated, as they
 * return errno values negated; the values lie above every errno value.
 * The X-macro is the single source of the codes and their messages.
 */
#define SSTF_ERRNO_MAP(XX)                                                        \
	XX(ECHECKSUM, 10001, "file content does not match its expected digest")  \
	XX(ESIZE, 10002, "file length does not match its expected size")          \
	XX(EHTTP, 10003, "the origin answered with an HTTP error status")         \
	XX(ETRANSFER, 10004, "the transfer failed (connect, timeout or protocol)") \
	XX(EBADENTRY, 10005, "bad batch entry (name, URL, size or digest)")       \
	XX(EBADURL, 10006, "unsupported URL scheme")                              \
	XX(ENOSUCHGEN, 10007, "no such generation (never submitted, or forgotten)")

enum sstf_errno {
#define SSTF_ERR_ENUM_(name, value, msg) SSTF_##name = (value),
	SSTF_ERRNO_MAP(SSTF_ERR_ENUM_)
#undef SSTF_ERR_ENUM_
};

/*
 * Returns a static, NUL-terminated message for an error code as returned by
 * any sstf_ function (negative) or its absolute value. Never returns NULL;
 * unknown codes get a generic message. Any thread.
 */
SSTF_API const char *sstf_strerror(int err);

/* ------------------------------------------------------------------------ */
/* Configuration                                                            */

/*
 * Allocator hooks. The library never calls malloc() directly for its own
 * memory: when hooks are given, every allocation of the engine goes through
 * them, so a host running tcmalloc or jemalloc keeps its allocator.
 * alloc_aligned must return memory aligned to `align` (a power of two, at
 * most 4096) and is freed with free_fn. All three functions may be called
 * from any thread the engine runs on, concurrently. libcurl's own
 * allocations are not covered; libcurl is process-global in that respect.
 * Nor are OpenSSL's (libcrypto's allocator is process-global too): the
 * MD5 contexts the engine makes once per transfer slot at sstf_engine_new(),
 * and what OpenSSL allocates inside them (OpenSSL 3.0 re-allocates a small
 * context at every MD5 file's start; 3.1 and later do not).
 */
struct sstf_allocator {
	void *(*alloc)(void *ctx, size_t size);
	void *(*alloc_aligned)(void *ctx, size_t align, size_t size);
	void (*free_fn)(void *ctx, void *ptr);
	void *ctx;
};

/* Tri-state switches: 0 always means "the default". */
enum sstf_switch {
	SSTF_DEFAULT = 0,
	SSTF_ON = 1,
	SSTF_OFF = 2,
	SSTF_FSYNC_BATCH = 3, /* sstf_config.fsync only: see there */
};

/* Defaults of the fields left 0, and the limits sstf_config_check() applies. */
#define SSTF_DEFAULT_MAX_TRANSFERS 16
#define SSTF_DEFAULT_BUF_SIZE (1024u * 1024u)
#define SSTF_DEFAULT_MEM_LIMIT ((size_t)64 * 1024 * 1024)
#define SSTF_DEFAULT_RING_DEPTH 256
#define SSTF_DEFAULT_MAX_RETRIES 3
#define SSTF_MAX_TRANSFERS 2047
#define SSTF_MIN_BUF_SIZE (64u * 1024u)
#define SSTF_MAX_BUF_SIZE (64u * 1024u * 1024u)
#define SSTF_MAX_BUFFERS 4095
#define SSTF_DEFAULT_DISK_RESERVE ((uint64_t)64 * 1024 * 1024)
#define SSTF_DEFAULT_CHECKPOINT_BYTES ((uint64_t)8 * 1024 * 1024)
#define SSTF_DEFAULT_SPLIT 16
#define SSTF_MAX_SPLIT 64
#define SSTF_DEFAULT_SPLIT_MIN ((uint64_t)64 * 1024 * 1024)
#define SSTF_MAX_MIRRORS 16
#define SSTF_MAX_THREADS 64

/*
 * S3 and compatible stores. A URL s3://BUCKET/KEY names object KEY of
 * BUCKET; KEY is percent-decoded, then sent percent-encoded the way SigV4
 * wants it (every byte outside A-Z a-z 0-9 - . _ ~ and '/' as %XX), so
 * keys holding spaces, '+', '=' or UTF-8 work whether or not the URL
 * encoded them. A key may not contain '?' or '#' unencoded. Requests are
 * signed with AWS Signature Version 4 (through libcurl's
 * CURLOPT_AWS_SIGV4) when an access key is set, and sent unsigned
 * (anonymous, for public buckets) when it is not. Ranged GETs (split files,
 * retries) are signed like any other. An S3 error answer is read for its
 * <Code> and <Message>, which the file's detail carries ("HTTP 403
 * SignatureDoesNotMatch: The request signature we calculated does not
 * match ..."); 403 and 404 (AccessDenied, SignatureDoesNotMatch,
 * NoSuchKey, NoSuchBucket, ...) are final, 500, 503 and SlowDown are
 * retried like any transient failure. Redirects are not followed (a
 * PermanentRedirect names the right region in its message). No secret
 * is ever written into a detail or an error message.
 */
enum sstf_s3_addressing {
	SSTF_S3_ADDRESSING_AUTO = 0, /* path style when an endpoint is set,
	                                virtual-host style on AWS */
	SSTF_S3_PATH = 1,    /* ENDPOINT/BUCKET/KEY */
	SSTF_S3_VIRTUAL = 2, /* SCHEME://BUCKET.ENDPOINT-HOST/KEY */
};

struct sstf_s3_config {
	/* Base URL of the store, "https://rgw.example.net:7480" (a path is
	 * not allowed); NULL: https://s3.REGION.amazonaws.com. */
	const char *endpoint;
	const char *region;           /* NULL: "us-east-1" */
	enum sstf_s3_addressing addressing;
	const char *access_key_id;    /* NULL: unsigned requests */
	const char *secret_access_key; /* required with access_key_id */
	const char *session_token;    /* temporary credentials; NULL: none */
	uint64_t reserved[4];         /* must be zero (see "Compatibility") */
};

/* What to do with a file already present under its final name. */
enum sstf_existing {
	/* Skip a file of the right size whose publish record (see "Files
	 * already in place" above) matches its digest, size and mtime;
	 * re-hash a file of the right size that has no such record, and skip
	 * it when its digest matches. Anything else is fetched and replaces
	 * it. With SSTF_DIGEST_NONE, the right size is enough. */
	SSTF_EXISTING_TRUST = 0,
	/* Strict: re-hash every file of the right size, record or not
	 * (SSTF_DIGEST_NONE files are fetched). */
	SSTF_EXISTING_REHASH = 1,
	/* Never skip: fetch every file and replace what is there. */
	SSTF_EXISTING_REFETCH = 2,
};

/*
 * Engine configuration. A zeroed struct means the defaults given below; any
 * field left 0 takes its default. sstf_engine_new() copies the struct.
 */
struct sstf_config {
	unsigned max_transfers;       /* concurrent transfers (streams, each
	                                 one request at a time); 16, at most
	                                 SSTF_MAX_TRANSFERS. A file whose
	                                 bytes are all in and match its
	                                 digest gives its stream to the next
	                                 file while its last writes land and
	                                 it is synced, renamed and its
	                                 directory synced: up to 2 x
	                                 max_transfers more files may be in
	                                 those steps. */
	unsigned max_host_conns;      /* connections per origin host;
	                                 max_transfers */
	size_t buf_size;              /* bytes per I/O buffer, a power of two
	                                 from 64 KiB to 64 MiB; 1 MiB */
	size_t mem_limit;             /* total buffer memory; 64 MiB, or two
	                                 buffers per transfer when that is
	                                 more. Must allow two buffers per
	                                 transfer, and at most 4095 buffers. */
	unsigned ring_depth;          /* io_uring submission queue entries,
	                                 8 to 32768; 256 */
	enum sstf_switch direct_io;   /* O_DIRECT writes. DEFAULT: used where
	                                 the destination filesystem accepts it,
	                                 buffered writes elsewhere. ON: fail
	                                 files whose filesystem refuses it. */
	enum sstf_switch fsync;       /* What is durable when a file is
	                                 reported done (on_file_done with
	                                 result 0).
	                                 DEFAULT/ON: each file is fdatasynced
	                                 before its rename, and reported only
	                                 once its directory was fsynced after
	                                 the rename (one directory fsync
	                                 covers every file renamed before it
	                                 started). A crash loses no file
	                                 reported done; a file not reported
	                                 yet is either under its final name
	                                 whole and verified, or in the staging
	                                 directory, and the next generation
	                                 publishes or resumes it.
	                                 SSTF_FSYNC_BATCH: each file is
	                                 fdatasynced and renamed without
	                                 waiting; each directory the batch
	                                 renamed into is fsynced once, when
	                                 the generation has nothing else left,
	                                 and only then are those files
	                                 reported done (all together, just
	                                 before on_batch_done; files_done
	                                 counts them then; with threads > 1,
	                                 each loop's share of the batch is
	                                 synced and reported when that share
	                                 has nothing else left, and
	                                 on_batch_done follows the last
	                                 share). A crash before
	                                 that loses no bytes, only renames:
	                                 as with ON, nothing reported done is
	                                 lost. A directory whose fsync fails
	                                 fails its files, and their names are
	                                 removed.
	                                 OFF: no fdatasync, no directory
	                                 fsync: a crash can lose files
	                                 reported done, or leave bytes under
	                                 their names that never reached the
	                                 disk; after a crash, fetch with
	                                 SSTF_EXISTING_REHASH to check them.
	                                 Checkpoints sync in every mode. */
	unsigned connect_timeout_ms;  /* 10000 */
	unsigned low_speed_bytes;     /* a transfer slower than this many
	                                 bytes/s ... ; 1024 */
	unsigned low_speed_time_s;    /* ... for this many seconds fails; 30 */
	unsigned progress_interval_ms; /* least time between two progress
	                                  callbacks of one generation; 250 */
	int max_retries;              /* retries per stream after a transient
	                                 failure (connection error, timeout,
	                                 HTTP 408/429/5xx); 0: 3, negative:
	                                 none. A retry resumes at the first
	                                 byte not yet received (an HTTP range
	                                 request), keeping the hash state: on
	                                 the next mirror at once when the file
	                                 has several URLs, else after the
	                                 origin's Retry-After (seconds or an
	                                 HTTP-date; more than 60 s fails the
	                                 file at once, saying so), else after a
	                                 backoff drawn uniformly from 0 to
	                                 min(5 s, 100 ms * 2^n) ("full jitter",
	                                 so a fleet does not retry in step). A
	                                 404 is not retried, but moves to the
	                                 next mirror that has not answered 404.
	                                 A file whose digest does not match is
	                                 fetched again from its first byte once,
	                                 counted as a retry (a flipped bit can
	                                 come from a flaky hop); a second
	                                 mismatch fails it. */
	const struct sstf_allocator *allocator; /* NULL: the C library's */
	enum sstf_existing existing;  /* files already under their final
	                                 name; SSTF_EXISTING_TRUST */
	enum sstf_switch admission;   /* DEFAULT/ON: check the free space at
	                                 submit (see "Admission"); OFF: don't */
	uint64_t disk_reserve;        /* admission: bytes the destination's
	                                 filesystem must keep free beyond what
	                                 a batch needs; 0: 64 MiB */
	enum sstf_switch resume;      /* DEFAULT/ON: a file at least twice
	                                 checkpoint_bytes long (and not
	                                 SSTF_DIGEST_MD5) records a
	                                 checkpoint every checkpoint_bytes: its
	                                 temporary file is synced (fdatasync) up
	                                 to an offset, then the offset and the
	                                 hash state there are written to its
	                                 extended attribute
	                                 "user.sstfetch.partial". After a crash
	                                 the next generation that fetches the
	                                 same name, size and digest into the
	                                 same dest_dir continues from the last
	                                 checkpoint; bytes past it are never
	                                 trusted. Bytes below it are trusted as
	                                 any written byte is (the engine never
	                                 reads back what it wrote), except with
	                                 SSTF_EXISTING_REHASH, which re-hashes
	                                 them and resumes only when they match
	                                 the checkpoint. Cancelled or failed
	                                 files keep nothing. Checkpoints sync even
	                                 with fsync OFF. OFF: no checkpoints. */
	uint64_t checkpoint_bytes;    /* bytes between two checkpoints; a
	                                 multiple of buf_size, rounded up;
	                                 0: 8 MiB */
	unsigned split;               /* most streams one file is fetched over
	                                 at once (see "Ranged streams"), 1 to
	                                 SSTF_MAX_SPLIT; 0: 16. Streams count
	                                 against max_transfers like files. */
	uint64_t split_min;           /* files shorter than this take one
	                                 stream; 0: 64 MiB */
	uint64_t rate;                /* engine-wide limit on bytes received
	                                 per second, all generations together;
	                                 0: none. Change it at any time with
	                                 sstf_set_rate(). */
	const struct sstf_s3_config *s3; /* S3 settings for s3:// URLs (see
	                                    "S3 and compatible stores");
	                                    NULL: anonymous requests to AWS
	                                    in us-east-1. Deep-copied. */
	const char *ca_file;          /* PEM file of the CAs that https
	                                 origins may chain to, as curl's
	                                 --cacert; NULL: the system store.
	                                 Must be a readable file when the
	                                 config is checked. Copied. */
	const char *ca_path;          /* directory of hashed CA certificates
	                                 (openssl rehash), as curl's --capath;
	                                 NULL: none beyond ca_file or the
	                                 system store. Must be a directory
	                                 when the config is checked. Copied. */
	unsigned threads;             /* loop threads, 1 to SSTF_MAX_THREADS
	                                 and at most max_transfers; 0: 1.
	                                 Each loop has its own thread, ring,
	                                 curl multi, slot table and buffer
	                                 pool. max_transfers, max_host_conns,
	                                 mem_limit (its buffers) and rate stay
	                                 engine-wide totals: each loop gets
	                                 max_transfers / threads transfers
	                                 (the remainder to the first loops)
	                                 and the others in proportion to its
	                                 transfers (at least one connection
	                                 per loop). An idle loop's share of
	                                 rate is not lent to the others.
	                                 A batch is spread over the loops:
	                                 largest files first, each to the
	                                 loop with the least work per
	                                 transfer (a file's bytes plus a
	                                 fixed cost per file). A file runs on
	                                 one loop, so it is split over at
	                                 most that loop's transfers. See
	                                 "Callbacks" for the threads they run
	                                 on, fsync for BATCH's order.
	                                 ring_depth and split are per loop. */
	unsigned reserved32;          /* must be zero */
	uint64_t reserved[4];         /* must be zero (see "Compatibility") */
};

/*
 * Checks a configuration exactly as sstf_engine_new() does, with the
 * defaults of zeroed fields applied, without creating anything. Returns 0,
 * or -EINVAL with a message naming the field and its accepted range in
 * errbuf (NUL-terminated, truncated to errbuf_len; errbuf may be NULL).
 * `config` may be NULL (all defaults). Any thread.
 */
SSTF_API int sstf_config_check(const struct sstf_config *config, char *errbuf,
                               size_t errbuf_len);

/* ------------------------------------------------------------------------ */
/* Engine                                                                   */

typedef struct sstf_engine sstf_engine;

/*
 * Creates an engine and starts its loop thread. `config` may be NULL for all
 * defaults; it is copied, and so is the allocator struct it points to.
 *
 * Returns 0 and stores the engine in *out, or a negative error: -EINVAL for
 * a bad config value (sstf_config_check() names it), -ENOMEM, or the error io_uring or libcurl setup met.
 * On error *out is left untouched and nothing is left running.
 *
 * Any thread except an engine's loop thread.
 */
SSTF_API int sstf_engine_new(const struct sstf_config *config,
                             sstf_engine **out);

/*
 * Cancels every generation of the engine as sstf_cancel() does, waits until
 * all of them are drained, stops the loop thread and frees the engine.
 * Batch-done callbacks of generations still running are called (with
 * -ECANCELED) before it returns; no callback runs after it returns.
 * NULL is a no-op.
 *
 * Must not be called from a callback (the loop thread would wait for
 * itself): that call aborts the process. Any other thread.
 */
SSTF_API void sstf_engine_free(sstf_engine *engine);

/* ------------------------------------------------------------------------ */
/* Batches and generations                                                  */

enum sstf_digest_kind {
	SSTF_DIGEST_NONE = 0, /* length check only */
	SSTF_DIGEST_XXH3 = 1, /* XXH3-64, 16 hex digits, as `xxhsum -H3` */
	SSTF_DIGEST_XXH128 = 2, /* XXH128, 32 hex digits, as `xxhsum -H2` */
	SSTF_DIGEST_MD5 = 3, /* MD5, 32 hex digits, as `md5sum` (what Pegasus'
	                        bulk_load_metadata carries). Some 30 times
	                        slower per byte than XXH3 (about 0.5 GB/s on
	                        one core: bench-verify), and its state
	                        cannot be saved, so MD5 files take no
	                        checkpoints: a crashed fetch of one starts
	                        over. */
};

/* One file of a batch. */
struct sstf_file {
	/* Path relative to the batch's dest_dir. Must be relative, must not
	 * contain a "." or ".." component, an empty one, or one that starts
	 * with ".sstf" (the engine's own namespace); each component at most
	 * NAME_MAX bytes and the whole at most PATH_MAX - 1. Directories on
	 * the way are created. */
	const char *name;
	/* http://, https://, file:// or s3:// URL of the content (s3: see
	 * "S3 and compatible stores"). NULL: the batch's
	 * base_url, "/", then the name with every byte outside RFC 3986's
	 * unreserved set and '/' percent-encoded. Its scheme must be one the
	 * batch allows (sstf_batch.protocols). */
	const char *url;
	/* Expected length in bytes. */
	uint64_t size;
	enum sstf_digest_kind digest_kind;
	/* Expected digest as hex (either case), in the canonical form that
	 * xxhsum or md5sum prints: 16 digits for XXH3, 32 for XXH128 and
	 * MD5. Ignored for SSTF_DIGEST_NONE. */
	const char *digest_hex;
	/* Mirrors: nurls URLs of the same content, in order of preference
	 * (at most SSTF_MAX_MIRRORS), each under the same rules as url.
	 * When nurls > 0, url must be NULL. See "Mirrors". */
	const char *const *urls;
	size_t nurls;
	uint64_t reserved[4]; /* must be zero (see "Compatibility") */
};

/* What became of one file, as given to the file-done callback. */
struct sstf_file_result {
	size_t index;         /* position in the submitted batch */
	const char *name;     /* the file's name; valid during the callback */
	int result;           /* 0: published and verified; else an error */
	int http_status;      /* last HTTP status, 0 for file:// or none */
	uint64_t bytes;       /* bytes received from the source by this
	                         generation for the copy that stands (a
	                         resumed prefix not counted; after a digest
	                         mismatch, the last fetch only; mirror_bytes
	                         counts every byte each URL served) */
	uint64_t ttfb_ns;     /* start of the transfer to its first byte */
	uint64_t fetch_ns;    /* start of the transfer to publish or failure */
	unsigned retries;     /* retries this file took */
	const char *detail;   /* a human-readable reason when result != 0
	                         (e.g. "HTTP 404", curl's message); valid
	                         during the callback; "" when none */
	int skipped;          /* 1: the file was already in place and
	                         verified (result 0); nothing was fetched */
	uint64_t resumed_from; /* > 0: the fetch continued a crashed
	                          writer's partial file from this offset;
	                          `bytes` counts only what was received */
	unsigned streams;     /* most streams the file ran on at once */
	unsigned nmirrors;    /* entries in mirror_bytes: the file's URLs */
	const uint64_t *mirror_bytes; /* bytes each URL served, in the
	                                 order of sstf_file.urls (or the one
	                                 url); valid during the callback */
};

/* A snapshot of a generation's progress. */
struct sstf_progress {
	uint64_t bytes_done;  /* bytes written and hashed */
	uint64_t bytes_total; /* sum of the files' expected sizes */
	uint64_t files_done;  /* files published, or skipped as already in
	                         place (files_skipped counts those too) */
	uint64_t files_failed;
	uint64_t files_total;
	uint64_t files_skipped; /* already in place and verified */
	uint64_t bytes_present; /* bytes that needed no transfer: skipped
	                           files and resumed prefixes, which
	                           bytes_done does not count */
};

/*
 * Callbacks. All run on the engine's loop thread (with threads > 1, on
 * any of its loop threads), never two at once, and must not block for
 * long: the loop does nothing else meanwhile, and with threads > 1 the
 * other loops' callbacks wait for it. They may call any sstf_ function
 * except sstf_engine_free(), sstf_wait() (which
 * returns -EDEADLK there) and, for their own engine, nothing blocking.
 * Pointers passed to a callback are valid only during the call.
 *
 * on_file_done runs once per file that reaches an end (published or
 * failed) before the generation is cancelled. on_batch_done runs exactly
 * once for every generation that sstf_submit() accepted, last of all its
 * callbacks, with 0 when every file was published, -ECANCELED when the
 * generation was cancelled, or else the error of the first file that
 * failed. on_progress runs at most every progress_interval_ms.
 * Every callback may be NULL.
 */
typedef void (*sstf_file_done_cb)(void *user, uint64_t gen,
                                  const struct sstf_file_result *res);
typedef void (*sstf_batch_done_cb)(void *user, uint64_t gen, int result);
typedef void (*sstf_progress_cb)(void *user, uint64_t gen,
                                 const struct sstf_progress *progress);

struct sstf_batch {
	const char *dest_dir; /* must exist; see "The destination directory" */
	const struct sstf_file *files;
	size_t nfiles;
	sstf_file_done_cb on_file_done;
	sstf_batch_done_cb on_batch_done;
	sstf_progress_cb on_progress;
	void *user; /* passed to every callback, never dereferenced */
	/* Optional. When sstf_submit() fails it writes a NUL-terminated
	 * message here naming the bad entry and what is wrong with it. */
	char *errbuf;
	size_t errbuf_len;
	/* Optional base URL for the files whose url is NULL (see
	 * sstf_file.url); trailing slashes are ignored. */
	const char *base_url;
	/* Which URL schemes the files may name, comma-separated as curl's
	 * CURLOPT_PROTOCOLS_STR ("http,https,file,s3"). NULL: only base_url's
	 * own scheme when base_url is set (so a manifest cannot point one
	 * entry at file:///etc/passwd); every supported scheme when it is
	 * not (then every URL is the caller's own). */
	const char *protocols;
	uint64_t reserved[8]; /* must be zero (see "Compatibility") */
};

/*
 * Starts fetching a batch as a new generation.
 *
 * Every entry is validated first; one bad entry rejects the whole batch with
 * -SSTF_EBADENTRY (or -SSTF_EBADURL for a scheme the batch does not allow),
 * and the message in errbuf names it. Two entries with the same name are a
 * bad entry too.
 *
 * Then, in the calling thread, the destination is prepared: the staging
 * directory and the generation's lock file are created, writers that are
 * gone are swept (see "Restart after a crash"), and the batch is admitted
 * against the free space (see "Admission"; -ENOSPC). Errors opening or
 * creating these are returned as negative errno values with errbuf naming
 * the path. This does blocking file-system calls: a stat of each file only
 * when free space is short, a directory read of DEST/.sstf.
 *
 * Memory: the engine copies the names, URLs, digests and dest_dir into
 * memory owned by the new generation. The caller may free or reuse the batch,
 * its file array and every string as soon as sstf_submit() returns. `user`
 * is kept and passed back to the callbacks, never dereferenced.
 *
 * Returns 0 and stores the generation id (never 0) in *gen, or a negative
 * error. When sstf_submit() returns an error, no callback of the batch is
 * ever called and nothing was written. An empty batch is valid; it
 * completes at once.
 *
 * Files of a generation are written under temporary names in DEST/.sstf/
 * and renamed to NAME once verified. A file that fails or is cancelled
 * leaves nothing under NAME and no temporary file. An existing file named
 * NAME is replaced, atomically, only by a verified one.
 *
 * Files start largest first (equal sizes in the batch's order), so that a
 * mixed batch does not end on one large file started late; the small
 * ones fill the gaps. Callbacks come as files end, in no set order.
 *
 * Any thread, including callbacks.
 */
SSTF_API int sstf_submit(sstf_engine *engine, const struct sstf_batch *batch,
                         uint64_t *gen);

/*
 * Checks a batch exactly as sstf_submit() does, without an engine and
 * without submitting: 0 when sstf_submit() would accept every entry, else
 * the error it would return, with the message naming the bad entry in
 * batch->errbuf. It does not look at the disk or the network (dest_dir need
 * not exist yet). Any thread.
 */
SSTF_API int sstf_check_batch(const struct sstf_batch *batch);

/*
 * Cancels a generation.
 *
 * From any thread other than the engine's loop threads, sstf_cancel()
 * blocks until the generation is finished on every loop, and returns 0.
 * Once it has returned:
 *   - the generation's transfers are stopped and its io_uring operations
 *     are cancelled, and every completion of them has come back;
 *   - its temporary files are removed;
 *   - the memory the generation owned is freed;
 *   - no callback of that generation will run again. Its on_batch_done
 *     runs (with -ECANCELED) on the loop thread before sstf_cancel()
 *     returns, so do not hold a lock that the callbacks take while you call
 *     sstf_cancel().
 * Files the generation already published stay published.
 *
 * From a callback (the loop thread), sstf_cancel() cannot wait for the loop:
 * it starts the cancel and returns -EINPROGRESS at once. No further
 * file-done or progress callback of that generation runs; its on_batch_done
 * reports -ECANCELED later, and only then is its memory freed.
 *
 * A generation that has already ended (every file done or failed) is not
 * changed, and the call returns 0. Returns -SSTF_ENOSUCHGEN for an id that
 * was never submitted or has been forgotten (see sstf_wait()).
 */
SSTF_API int sstf_cancel(sstf_engine *engine, uint64_t gen);

/*
 * Waits until a generation has ended (done, failed or cancelled) and its
 * memory has been reclaimed, or until timeout_ms passes. timeout_ms < 0
 * waits without limit, 0 polls.
 *
 * Returns the generation's result, as given to on_batch_done (0, -ECANCELED
 * or the first file error), -ETIMEDOUT when the time passed first,
 * -SSTF_ENOSUCHGEN for an unknown id, or -EDEADLK when called from a
 * callback. The engine remembers the outcome of the last 1024 ended
 * generations; older ids are forgotten.
 *
 * Any thread except a loop thread.
 */
SSTF_API int sstf_wait(sstf_engine *engine, uint64_t gen, int timeout_ms);

/*
 * Copies a snapshot of a generation's progress into *out. Returns 0, or
 * -SSTF_ENOSUCHGEN. Any thread, including callbacks. Never blocks on I/O.
 */
SSTF_API int sstf_progress(sstf_engine *engine, uint64_t gen,
                           struct sstf_progress *out);

/* Engine-wide counters, for reports and tests. */
struct sstf_stats {
	uint64_t stale_completions; /* completions rejected by their tag */
	uint64_t cancels;           /* generations cancelled */
	uint64_t retries;           /* file retries after transient errors */
	uint64_t buffers_total;     /* size of the buffer pool */
	uint64_t buffers_peak;      /* most buffers in use at once (with
	                               threads > 1, the sum of each loop's
	                               peak, which may come at other times) */
	size_t buf_size;            /* bytes per buffer */
	int fixed_buffers;          /* 1 if buffers are registered */
	int ring_flags;             /* IORING_SETUP_* flags the ring got */
};

/*
 * Copies the engine-wide counters into *out. Returns 0. Any thread.
 */
SSTF_API int sstf_stats(sstf_engine *engine, struct sstf_stats *out);

 /*
 * Sets the engine-wide rate limit (sstf_config.rate) to bytes_per_s bytes
 * received per second, 0 for none. Takes effect within 100 ms: the tokens
 * already saved up are cut to the new burst at once, and the loop is woken.
 * The burst is a tenth of a second at the rate, and at least one buffer
 * (sstf_config.buf_size) and 256 KiB, so that any single delivery fits.
 * Streams waiting for tokens pause, as they do for buffers. Returns 0, or
 * -EINVAL for a NULL engine. With threads > 1 each loop gets its share
 * (see sstf_config.threads). Any thread, including callbacks.
 */
SSTF_API int sstf_set_rate(sstf_engine *engine, uint64_t bytes_per_s);

/* ------------------------------------------------------------------------ */
/* Small objects: manifests, metadata and listings                          */

/*
 * Receives the bytes of sstf_get() in order. Return 0 to go on; any other
 * value stops the fetch, and sstf_get() returns it.
 */
typedef int (*sstf_data_cb)(void *user, const void *data, size_t len);

/*
 * Fetches one small object (a manifest, a Pegasus bulk_load_metadata) into
 * the caller's hands, blocking, with no engine: an http://, https://,
 * file:// or s3:// URL, with `config`'s TLS and S3 settings, connect
 * timeout, stall limit and retries (transient failures are retried after
 * the backoff described at sstf_config.max_retries). `config` may be NULL
 * for the defaults. Bytes of a failed attempt may already have reached
 * on_data: a retry starts over, and on_data gets `data == NULL, len == 0`
 * first to say so (drop what it kept).
 *
 * Returns 0; -EFBIG as soon as the object is longer than max_bytes (so a
 * hostile server cannot exhaust memory); -SSTF_EHTTP, -SSTF_ETRANSFER or
 * -SSTF_EBADURL, with a message in errbuf (e.g. "HTTP 404 NoSuchKey: The
 * specified key does not exist."); or what on_data returned. Any thread,
 * but from a callback it blocks the loop for as long as it runs.
 */
SSTF_API int sstf_get(const struct sstf_config *config, const char *url,
                      uint64_t max_bytes, sstf_data_cb on_data, void *user,
                      char *errbuf, size_t errbuf_len);

/* One object of a listing; valid during the callback. */
struct sstf_object {
	const char *key;  /* the whole key, decoded */
	uint64_t size;
};

/* Return 0 to go on; any other value stops sstf_list(), which returns it. */
typedef int (*sstf_object_cb)(void *user, const struct sstf_object *object);

/*
 * Lists the objects under an s3://BUCKET/PREFIX URL with ListObjectsV2,
 * following continuation tokens page by page (1,000 keys a page), in key
 * order, and calls on_object for each. The prefix is taken literally:
 * "s3://b/logs" lists "logs/x" and "logs2". Blocking, like sstf_get(),
 * with its retries. Returns 0, or an error as sstf_get() does.
 */
SSTF_API int sstf_list(const struct sstf_config *config, const char *url,
                       sstf_object_cb on_object, void *user, char *errbuf,
                       size_t errbuf_len);

/* ------------------------------------------------------------------------ */
/* Digests                                                                  */

/*
 * Hashes `len` bytes with `kind` and writes the canonical hex digest (as
 * xxhsum or md5sum prints it, lowercase) and a NUL into out, which must
 * hold 33 bytes. Returns the number of hex digits written, or -EINVAL for a
 * bad kind; for MD5 also -ENOMEM, or -ENOTSUP when OpenSSL offers no MD5
 * (a FIPS-only configuration), or -EIO when OpenSSL fails. Any thread.
 */
SSTF_API int sstf_digest_hex(enum sstf_digest_kind kind, const void *data,
                             size_t len, char out[33]);

#ifdef __cplusplus
}
#endif

#endif /* SSTFETCH_H */
