/*
 * memsrc.h - a deterministic in-memory source for the engine's tests.
 *
 * The memory source serves URLs "mem://HOST/PATH" from objects held in this
 * process (memsrc_put), through the engine's source interface (struct
 * sstf__source_ops in engine/internal.h), so that the sink and the stream
 * layer can be driven byte by byte without nginx or sockets. HOST selects a
 * behaviour profile (memsrc_host): one test can give two "mirrors" of one
 * object different faults.
 *
 * How it delivers. start() only records the attempt; every byte goes out in
 * ops->run(), which the loop calls on each of its passes, one chunk per
 * sstf__stream_data() call, at most `run_budget` bytes per stream per run().
 * ops->ready() is true while some stream has something to do now (bytes, an
 * end to report, a source pause to count down), so the loop never sleeps
 * with work ready (invariant 9). When sstf__stream_data() returns 1 the
 * stream gets nothing more until ops->resume(), and then the same bytes
 * again; -1 stops it (and ends the attempt when the engine left it open,
 * as http.c does). Every attempt ends with exactly one sstf__stream_end(),
 * always from run(), never from start() or stop().
 *
 * A request is answered as an HTTP origin would: a ranged request for
 * [pos, end) gets those bytes, or the rest of the object when end is the
 * file's size (curl's open "pos-" range); a request without a range gets
 * the whole object from byte 0 (the engine drops what it already has). An
 * open range that starts at or past the object's end is answered "416"; an
 * empty closed range (http.c would send "E-(E-1)", which RFC 9110 calls
 * invalid and servers ignore) gets the whole object, i.e. whole_body; a
 * missing object is "404" (not_found).
 *
 * Threads. The source runs on the engine's loop thread. The test thread
 * configures (memsrc_put, memsrc_host) before it submits, and reads the
 * counters and the attempt log after sstf_wait(); both sides go through one
 * mutex (counters are atomics), so TSan sees every access ordered.
 */
#ifndef SSTF_TEST_MEMSRC_H
#define SSTF_TEST_MEMSRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MEMSRC_MAX_FAILS 4
#define MEMSRC_MAX_HOSTS 16
#define MEMSRC_MAX_LOG   8192

/* An attempt that fails at an absolute object offset. */
struct memsrc_fail {
	bool on;           /* this rule is in force */
	uint64_t at;       /* the attempt fails when its next byte would be
	                      this object offset (so bytes below it were
	                      delivered); an attempt that does not cover it
	                      is not touched */
	bool transient;    /* another attempt may succeed */
	unsigned times;    /* fail the first `times` attempts that reach
	                      `at`; 0: every one */
	bool after_body;   /* fail after the last byte of a body that ends
	                      at `at` (a part's or the file's end), instead
	                      of before the byte at `at` */
	bool while_paused; /* fail instead at the first moment the engine
	                      has paused the stream (sstf__stream_data said
	                      1) at an offset >= at: the attempt ends while
	                      the stream waits for buffers or tokens. It is
	                      reported from the first run() of a loop pass
	                      (the one after ops->ready), so that the engine
	                      looks at its paused streams right after it */
	uint64_t retry_after_ms;
	int err;            /* 0: -SSTF_ETRANSFER */
	int status;         /* protocol status reported, 0: none */
	const char *detail; /* NULL: "memsrc: failure at N"; copied */
};

/* How one HOST behaves. A zeroed profile is a well-behaved origin that
 * delivers 64 KiB chunks. */
struct memsrc_profile {
	size_t chunk;         /* bytes per delivery; 0: 64 KiB */
	size_t run_budget;    /* most bytes one stream gets in one run();
	                         0: 1 MiB */
	unsigned pause_every; /* after every N chunks of an attempt ... */
	unsigned pause_turns; /* ... withhold delivery for K run() calls */
	struct memsrc_fail fail[MEMSRC_MAX_FAILS];
	bool not_found;     /* answer every request "404" */
	bool ignore_ranges; /* answer a ranged request with the whole
	                       object: whole_body at the first bytes, as
	                       http.c reports a 200 to a ranged GET */
	uint64_t overrun;   /* bytes past what was asked: past the range's
	                       end, or past the object's end */
	uint64_t short_by;  /* each body ends this many bytes early, with
	                       no error (a cut body) */
	/* A byte of the body XORed with 0x01 (a flaky hop). */
	bool flip;
	uint64_t flip_at;    /* object offset */
	unsigned flip_times; /* the first N attempts that deliver it; 0: all */
	/* Holds delivery (a source pause with no end) when an attempt's next
	 * byte would be at hold_at (absolute object offset) or, with
	 * hold_relative, after hold_at bytes of the attempt; until
	 * memsrc_release(). ready() is false meanwhile: the loop sleeps. */
	bool hold;
	bool hold_relative;
	uint64_t hold_at;
	/* When sstf__stream_data says -1, only stop, as internal.h words it
	 * ("the attempt is ended for the source, which only has to stop"),
	 * never calling sstf__stream_end; by default the source ends an
	 * attempt the engine left open, as http.c does. */
	bool refuse_just_stops;
	/* Read straight into pool buffers (sstf__stream_buffer/_filled), as
	 * filesrc.c does, instead of sstf__stream_data; a fill holds at most
	 * `chunk` bytes. */
	bool pool_reads;
};

/* How an attempt ended, in the log. */
enum memsrc_outcome {
	MEMSRC_RUNNING = 0,
	MEMSRC_DONE,          /* the body ended: sstf__stream_end with err 0 */
	MEMSRC_FAILED,        /* an injected failure */
	MEMSRC_NOT_FOUND,     /* 404 */
	MEMSRC_UNSATISFIABLE, /* 416: the range starts past the object */
	MEMSRC_WHOLE_BODY,    /* a ranged request answered with all of it */
	MEMSRC_REFUSED,       /* sstf__stream_data said -1 */
	MEMSRC_STOPPED,       /* ops->stop */
};

struct memsrc_attempt {
	char host[32];
	char path[96];
	unsigned stream;   /* the stream's index */
	uint64_t pos, end; /* s->pos and s->end at start */
	uint64_t skip;     /* s->skip at start */
	bool ranged;       /* s->ranged at start */
	uint64_t reached;  /* object offset of the next byte when it ended */
	enum memsrc_outcome outcome;
	bool failed_paused; /* the injected failure came while paused */
};

/* Adds the source to the engine's table (before any engine exists). 0, or
 * -EEXIST when it was already added (not an error for a caller), or the
 * error of sstf__source_add. */
int memsrc_register(void);

/* Drops every object, profile, counter and log entry. Only with no engine
 * running. */
void memsrc_reset(void);

/* Registers (or replaces) the object at PATH ("a/b.sst": the URL's path
 * without its leading '/'), copying len bytes. 0 or -ENOMEM. */
int memsrc_put(const char *path, const void *data, size_t len);

/* Sets HOST's profile (copied); unknown hosts get a zeroed one. 0, or
 * -ENOSPC when MEMSRC_MAX_HOSTS are known. */
int memsrc_host(const char *host, const struct memsrc_profile *p);

/* Lets every hold go (they stay off until memsrc_reset). */
void memsrc_release(void);
/* Waits until at least n streams hold at once; 0, or -ETIMEDOUT. */
int memsrc_wait_held(unsigned n, int timeout_ms);

/* Counters: attempts started, bytes the engine took (sstf__stream_data
 * returned 0, or a filled buffer), the engine's pauses (returns of 1 or
 * -1 from sstf__stream_buffer), the source's own pauses, injected
 * failures; for one host, or all of them with host NULL. */
unsigned memsrc_attempts(const char *host);
uint64_t memsrc_served(const char *host);
unsigned memsrc_engine_pauses(const char *host);
unsigned memsrc_source_pauses(const char *host);
unsigned memsrc_failures(const char *host);
/* Ends of attempts the source reported after sstf__stream_data said -1
 * with the attempt still open: 0 while the stream layer ends the attempt
 * itself when it refuses bytes, as internal.h promises. */
unsigned memsrc_refused_ends(void);

/* The attempt log, in start order. */
size_t memsrc_log_len(void);
/* Copies entry i; false when there is none. */
bool memsrc_log_get(size_t i, struct memsrc_attempt *out);
/* Prints the log on stderr (for a failing test). */
void memsrc_log_dump(const char *why);

#endif
