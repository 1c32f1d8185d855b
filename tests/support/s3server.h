/*
 * s3server.h - a real S3 server on loopback for the tests: the npm package
 * @20minutes/s3rver 4.0.4 (installed by tools/deps.sh outside the repo), run
 * by tools/s3rver.js under node. It verifies SigV4 signatures made with the
 * access key and secret "S3RVER" in region us-east-1 (any region in the
 * credential is accepted), path-style only ("/BUCKET/KEY"); it also serves
 * requests without any Authorization header, as anonymous ones.
 *
 * s3server_start() makes a private temp dir, picks a free port by binding
 * 127.0.0.1:0, runs node as a child and returns once it printed its ready
 * line; when node loses the race for the port another port is tried.
 *
 * Cleanup is the one of origin.h: s3server_stop() ends node and removes the
 * temp dir; servers not stopped are stopped by an atexit handler; and node
 * gets SIGTERM from the kernel (PR_SET_PDEATHSIG) if the thread that started
 * it dies. Call s3server_start() from the test's main thread (Criterion's
 * init or the test body). A struct s3server is not thread-safe: its helpers
 * share one curl handle.
 *
 * Signing with libcurl 7.88, as the helpers do: CURLOPT_AWS_SIGV4
 * "aws:amz:us-east-1:s3", CURLOPT_USERPWD "S3RVER:S3RVER" and the header
 * "x-amz-content-sha256: UNSIGNED-PAYLOAD" (s3rver refuses a signed request
 * without it). libcurl signs the path and the query exactly as they are in
 * the URL, so the URL must already be canonical: the key encoded by
 * s3server_encode() (every byte but A-Za-z0-9-._~ and '/' as %XX, upper
 * case), and query parameters sorted by name, each "name=value" (also with
 * an empty value), values encoded with '/' as %2F.
 */
#ifndef SSTF_TEST_S3SERVER_H
#define SSTF_TEST_S3SERVER_H

#include <stddef.h>
#include <sys/types.h>

#include <curl/curl.h>

#define S3SERVER_ACCESS_KEY "S3RVER"
#define S3SERVER_SECRET_KEY "S3RVER"
#define S3SERVER_REGION "us-east-1"
/* CURLOPT_AWS_SIGV4 for the server. */
#define S3SERVER_SIGV4 "aws:amz:" S3SERVER_REGION ":s3"

struct s3server {
	pid_t pid;                /* node */
	unsigned port;
	char endpoint[64];        /* "http://127.0.0.1:PORT", no trailing slash */
	const char *access_key;   /* S3SERVER_ACCESS_KEY */
	const char *secret_key;   /* S3SERVER_SECRET_KEY */
	const char *region;       /* S3SERVER_REGION */
	char *dir;                /* private temp dir: data/ and node.log */
	char *data;               /* dir/data: s3rver's store */
	int ready_fd;             /* node's stdout, kept open until stop */
	CURL *curl;               /* the helpers' handle: one keep-alive connection */
};

/*
 * Starts s3rver with the buckets named in `buckets` (a NULL-terminated
 * array; at least one). Returns 0 and a heap struct in *out, or a negative
 * errno; on error the reason and node's stderr are printed on stderr and
 * nothing is left running. -ENOENT when node, tools/s3rver.js or the npm
 * module is missing (tools/deps.sh installs them).
 *
 * node is $SSTF_NODE, else the first "node" on PATH; the script is
 * $SSTF_S3RVER_JS, else the source tree's tools/s3rver.js (compiled in).
 */
int s3server_start(const char *const *buckets, struct s3server **out);

/*
 * Stops node (SIGTERM, then SIGKILL if it has not exited after 20 s),
 * reaps it, removes the temp dir and frees s. NULL is a no-op.
 */
void s3server_stop(struct s3server *s);

/*
 * Percent-encodes s for a SigV4 canonical URL: every byte outside
 * A-Za-z0-9-._~ as %XX (upper-case hex); '/' is kept when keep_slash is set
 * (a key in a path) and encoded otherwise (a query value). Returns a malloc'd
 * string, or NULL when out of memory.
 */
char *s3server_encode(const char *s, int keep_slash);

/*
 * The path-style URL of an object: endpoint "/" bucket "/" encoded key.
 * key is raw (decoded), e.g. "dir/a b+c=\xc3\xa9.sst". malloc'd, or NULL.
 */
char *s3server_url(const struct s3server *s, const char *bucket, const char *key);

/*
 * Uploads len bytes as bucket/key (key raw, as in s3server_url()) with a
 * signed PUT on the struct's keep-alive handle. Returns 0, or a negative
 * errno after printing the HTTP status and body (or curl's error) on
 * stderr: -EIO for an HTTP status other than 200, the curl error's errno
 * equivalent (-EIO) for a transport failure.
 */
int s3server_put(struct s3server *s, const char *bucket, const char *key,
                 const void *data, size_t len);

/* Uploads the file at path as bucket/key. Returns as s3server_put(). */
int s3server_put_file(struct s3server *s, const char *bucket, const char *key,
                      const char *path);

/*
 * Uploads every regular file under dir, recursively (symlinks are not
 * followed), as bucket/(prefix + its path relative to dir); prefix may be ""
 * or NULL. Returns the number of files uploaded (>= 0), or a negative errno
 * at the first failure.
 */
int s3server_put_tree(struct s3server *s, const char *bucket, const char *prefix,
                      const char *dir);

/* A response read by s3server_get(). */
struct s3server_response {
	long status;   /* HTTP status */
	char *body;    /* malloc'd, NUL-terminated (the NUL is not counted) */
	size_t len;
};

/*
 * A GET of url (absolute and already canonical: see above) on the struct's
 * handle, signed with the server's keys, or with `secret` instead of the
 * secret key when it is non-NULL, or not signed at all (no Authorization,
 * no x-amz-* header) when secret is ""; range, when non-NULL, goes to
 * CURLOPT_RANGE ("100-199", "100-"). timeout_ms 0 means the 120 s hang
 * guard. Returns 0 with the response in *r (free r->body), or a negative
 * errno for a transport failure (*r then holds what arrived):
 * -ETIMEDOUT for curl's timeout, -EIO otherwise, curl's error printed.
 */
int s3server_get(struct s3server *s, const char *url, const char *range,
                 const char *secret, long timeout_ms, struct s3server_response *r);

#endif
