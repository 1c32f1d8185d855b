/*
 * faultorigin.h - an HTTP/1.1 origin inside the test process, serving a
 * directory, that injects faults per path.
 *
 * What it serves. GET and HEAD of regular files under `root`, with
 * Content-Length on every response. "Range: bytes=N-", "bytes=N-M" and
 * "bytes=-S" get 206 and Content-Range; a range that starts at or past the
 * end of the file (or any range of an empty file) gets 416 with the
 * unsatisfied-range Content-Range that gives the size; a Range header in
 * another unit, with several ranges, with bad syntax or "bytes=N-M" with
 * M < N is ignored (200, as RFC 9110 allows). Connections are kept alive (HTTP/1.1
 * default, HTTP/1.0 with "Connection: keep-alive") and serve any number of
 * requests; "Connection: close" gets its response, then a clean close.
 * The URL path (query dropped, %XX decoded) names a file relative to root;
 * a path with a ".." component gets 403, a missing file or a non-regular
 * one 404, a bad request 400, a method other than GET and HEAD 405.
 *
 * Faults. Each path (the decoded URL path, e.g. "/000003.sst") has at most
 * one fault. Every request of a path is counted; a fault applies to the
 * path's requests 1..first_k counted since it was set (first_k == 0: every
 * request), and HEAD requests count like GETs. `at` counts bytes of the
 * response body (from the range start on a 206), except for FAULT_FLIP,
 * where it is an absolute file offset; `at` past the body's end means the
 * whole body.
 *
 *   FAULT_RESET  headers and `at` body bytes, then a TCP reset: the handler
 *                waits until the client has acknowledged those bytes, then
 *                closes with SO_LINGER {1, 0}. The client reads the `at`
 *                bytes, then ECONNRESET (curl: CURLE_RECV_ERROR).
 *   FAULT_CLOSE  headers and `at` body bytes, then a clean close (FIN): the
 *                body is short of Content-Length (curl: CURLE_PARTIAL_FILE).
 *   FAULT_FLIP   the whole body, with the byte at file offset `at` XORed
 *                with 0x01 when that offset lies in the requested range.
 *   FAULT_503    "503 Service Unavailable" and a short text body, with a
 *                Retry-After header as below.
 *   FAULT_429    "429 Too Many Requests", otherwise as FAULT_503.
 *   FAULT_STALL  headers and `at` body bytes, then nothing, until the client
 *                closes the connection or the origin stops (then a close).
 *   FAULT_404    "404 Not Found" although the file exists.
 *   FAULT_SLOW   the first `at` body bytes at full speed, the rest at about
 *                `rate` bytes per second (rate must not be 0): chunks of
 *                rate/20 bytes (1 to 256 KiB) on a schedule of the monotonic
 *                clock.
 *   FAULT_NORANGE  the Range header is ignored, as by an origin that does
 *                not support ranges: "200 OK" with the whole file (also for
 *                a range past its end, which would get 416), and no
 *                Accept-Ranges header. A missing file still gets 404.
 * Retry-After of FAULT_503 and FAULT_429: with retry_after_date false,
 * "Retry-After: S" (delay-seconds) when S = retry_after_s is not 0, no
 * header when it is 0. With retry_after_date true, always a header holding
 * the IMF-fixdate (RFC 9110 5.6.7, e.g. "Sun, 06 Nov 1994 08:49:37 GMT") of
 * the wall clock (CLOCK_REALTIME) when the response is made plus S seconds,
 * rounded up to a whole second: never less than S seconds after the origin
 * answered (S = 0: the current time if it is a whole second, else the next
 * second).
 * On a HEAD there is no body: 503, 429 and 404 apply as on a GET, RESET,
 * CLOSE and STALL act right after the headers, FLIP and SLOW change
 * nothing, NORANGE answers 200 with the whole file's length.
 *
 * Request log. The first FAULT_LOG_MAX requests of each path counted since
 * its fault was last set (or since start) are kept, in the order they were
 * counted, as struct fault_request; fault_origin_log() copies them. A
 * record is made when the request is counted, with status 0 and
 * t_answered_ns 0. status is filled in when the origin starts to send the
 * response head, t_answered_ns just before the last byte of that head is
 * handed to the kernel: a client that has read a whole response head finds
 * its record complete. A head that could not be sent whole (the client went
 * away, the origin stopped) leaves t_answered_ns 0.
 *
 * Served bytes. fault_origin_body_bytes() counts the file bytes sent as
 * bodies of 200 and 206 responses on every path (a FLIPped byte counts;
 * the short text bodies of other statuses do not). Bytes are counted just
 * before they are handed to the kernel, so a client never reads a byte not
 * yet counted, and taken back if the kernel does not take them: once the
 * handlers are idle the count is exact. A client cut off (stop, RESET) may
 * not have read all of them.
 *
 * Threads. One accept thread and one thread per connection, all started by
 * fault_origin_start() and joined by fault_origin_stop(). The other calls
 * may be made from any thread at any time while the origin runs; the fault
 * table, counters and logs are behind a mutex or atomic. A request is
 * counted (and its record made) when its head has been read, before any
 * byte of its response is sent: a client that got a response (or part of
 * one) sees it counted. Another process (the sstfetch tool) may connect to
 * fault_origin_url() as well.
 *
 * Cleanup. fault_origin_stop() wakes every handler wherever it blocks (a
 * stalled response, a slow body, an idle keep-alive connection, a client
 * that does not read), closes the listening socket and every connection,
 * joins every thread and frees everything: nothing is left for LSan. It
 * never waits for a client to read, write or close. Origins not stopped die
 * with the process: there is nothing outside it to leak.
 */
#ifndef SSTF_TEST_FAULTORIGIN_H
#define SSTF_TEST_FAULTORIGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum fault_kind {
	FAULT_NONE,
	FAULT_RESET,
	FAULT_CLOSE,
	FAULT_FLIP,
	FAULT_503,
	FAULT_STALL,
	FAULT_404,
	FAULT_SLOW,
	FAULT_429,
	FAULT_NORANGE,
};

struct fault {
	enum fault_kind kind;
	uint64_t at;            /* body bytes before the fault; FLIP: file offset */
	unsigned first_k;       /* applies to requests 1..first_k; 0: all */
	unsigned retry_after_s; /* FAULT_503, FAULT_429: Retry-After seconds,
	                           0 for no header (unless retry_after_date) */
	uint64_t rate;          /* FAULT_SLOW: bytes per second, > 0 */
	bool retry_after_date;  /* FAULT_503, FAULT_429: Retry-After is the
	                           HTTP-date of now + retry_after_s, rounded up */
};

/* Records kept per path (the first ones since its fault was set). */
#define FAULT_LOG_MAX 256

/* One request of a path, as the origin saw and answered it. */
struct fault_request {
	uint64_t t_request_ns;  /* CLOCK_MONOTONIC when the request's head had
	                           been read (a pipelined request: when its
	                           handler came to it) */
	uint64_t t_answered_ns; /* CLOCK_MONOTONIC when the response head was
	                           sent: taken once all of it but its last byte
	                           is handed to the kernel, before that byte;
	                           0 until then, and if it could not be sent */
	int status;             /* status of the response; 0 until the origin
	                           starts to send its head */
	int64_t range_start;    /* the Range header as asked, "bytes=A-B": A */
	int64_t range_end;      /* and B, each -1 when absent ("bytes=A-": A, -1;
	                           "bytes=-S": -1, S). Both -1 when there is no
	                           Range header or the origin ignores it (see
	                           above). Numbers above INT64_MAX read as
	                           INT64_MAX. Recorded on FAULT_NORANGE paths
	                           too, where the header is not honoured. */
	char host[64];          /* the first Host header's value without the
	                           blanks around it, cut to 63 bytes; "" when
	                           there is none */
};

struct fault_origin;

/*
 * Starts serving the directory `root` on 127.0.0.1 at a port the kernel
 * picks (bind to port 0, SO_REUSEADDR). Returns 0 and the origin in *out,
 * or a negative errno (-ENOTDIR when root is not a directory) with nothing
 * left running. The origin accepts connections when this returns.
 */
int fault_origin_start(const char *root, struct fault_origin **out);

/* "http://127.0.0.1:PORT", no trailing slash; valid until stop. */
const char *fault_origin_url(const struct fault_origin *o);

/*
 * Sets the fault of `path` (a decoded URL path starting with '/'),
 * replacing any it had, and resets the path's request count to 0 and
 * empties its request log. f NULL or FAULT_NONE removes the fault. Returns
 * 0, -EINVAL (path not starting with '/', unknown kind, FAULT_SLOW with
 * rate 0) or -ENOMEM.
 */
int fault_origin_set(struct fault_origin *o, const char *path, const struct fault *f);

/* Turns every fault off. Request counts and logs are kept. */
void fault_origin_clear(struct fault_origin *o);

/*
 * Requests of `path` counted since the origin started or since its fault was
 * last set, whatever their outcome (a 404 for a missing file counts too).
 */
unsigned fault_origin_requests(struct fault_origin *o, const char *path);

/* Every request head read, on any path, including refused ones. */
unsigned fault_origin_total_requests(struct fault_origin *o);

/* Connections accepted since start. */
unsigned fault_origin_connections(struct fault_origin *o);

/*
 * The request log of `path`: copies its first min(n, max) records into
 * out[] (out may be NULL when max is 0) and returns n, the number of
 * records it holds: min(fault_origin_requests(), FAULT_LOG_MAX), fewer
 * only when memory ran out. Requests refused before their path was known
 * (400, 405, 431, 505) and ".." paths (403) are in no log.
 */
int fault_origin_log(struct fault_origin *o, const char *path, struct fault_request *out,
                     size_t max);

/* File bytes sent as response bodies since start, on every path (see
 * "Served bytes" above). */
uint64_t fault_origin_body_bytes(struct fault_origin *o);

/*
 * Stops: wakes every handler, closes the listening socket and every
 * connection, joins every thread, frees o. Clients mid-response see the
 * connection closed (a short body). Call it once, from any thread; no other
 * call on o may run or follow. NULL is a no-op.
 */
void fault_origin_stop(struct fault_origin *o);

#endif
