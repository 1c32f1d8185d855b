/*
 * origin.h - a real nginx on loopback, serving a directory, for the tests.
 *
 * origin_start() writes a config into a private temp prefix (pid file, error
 * log and every temp path inside it), runs /usr/sbin/nginx in the foreground
 * as a child (daemon off, master process on), and returns once the port
 * accepts connections. The port is a free one found by binding
 * 127.0.0.1:0; when nginx loses the race for it (EADDRINUSE) another port is
 * tried.
 *
 * Cleanup. origin_stop() ends nginx and removes the prefix. Origins not
 * stopped are stopped by an atexit handler; and nginx gets SIGTERM from the
 * kernel (PR_SET_PDEATHSIG) if the thread that started it dies, so a crashed
 * Criterion test worker does not leak it. Call origin_start() from the
 * test's main thread (Criterion's init or the test body).
 *
 * TLS. origin_start_tls() serves the same over https with a certificate of
 * the caller's, at "https://localhost:PORT"; origin_make_certs() makes a
 * private CA and a certificate it signed for that name, with the openssl
 * command (package openssl), as an internal object store has them.
 */
#ifndef SSTF_TEST_ORIGIN_H
#define SSTF_TEST_ORIGIN_H

#include <limits.h>
#include <sys/types.h>

struct origin {
	pid_t pid;            /* nginx master */
	unsigned port;
	char *prefix;         /* private temp dir: conf, logs, temp paths */
	char *root;           /* the directory served at "/" */
	char base_url[64];    /* "http://127.0.0.1:PORT", no trailing slash;
	                         "https://localhost:PORT" for a TLS origin */
	char *cert_pem;       /* TLS origins: the certificate and key files */
	char *key_pem;        /* nginx serves; NULL for plain http */
	int log_base;         /* TLS: failed handshakes logged at start (the
	                         readiness probe's), which origin_log_count()
	                         does not count */
};

/*
 * Starts nginx serving `root` (an absolute path). Returns 0 and a heap
 * struct in *out, or a negative errno; on error the reason and the tail of
 * nginx's error log are printed on stderr and nothing is left running.
 */
int origin_start(const char *root, struct origin **out);

/*
 * Starts nginx serving `root` over https only: TLS 1.2 and 1.3 with the
 * certificate chain in cert_pem and its private key in key_pem (PEM files,
 * absolute paths, read when nginx starts). base_url is
 * "https://localhost:PORT": the certificate must name DNS:localhost (those
 * of origin_make_certs() also name IP:127.0.0.1). nginx logs at level info,
 * so every connection whose handshake failed leaves one line containing
 * ORIGIN_TLS_HANDSHAKE_FAILED in its error log (origin_log_count()).
 * Returns as origin_start() does.
 */
int origin_start_tls(const char *root, const char *cert_pem, const char *key_pem,
                     struct origin **out);

/* What nginx logs (level info) for each connection whose TLS handshake
 * failed: a client refusing the certificate ("alert unknown ca"), or one
 * that closed the connection during the handshake. */
#define ORIGIN_TLS_HANDSHAKE_FAILED "while SSL handshaking"

/*
 * Counts the lines of o's error log that contain `needle`, waiting up to
 * wait_ms for there to be at least `want` (nginx logs a client's
 * disconnection a moment after the client saw it). Returns the count, or a
 * negative errno when the log cannot be read. For ORIGIN_TLS_HANDSHAKE_FAILED
 * the connection origin_start_tls() made to see nginx ready (TCP only, no
 * handshake) is not counted.
 */
int origin_log_count(const struct origin *o, const char *needle, int want,
                     unsigned wait_ms);

/* A private CA and what it signed, made by origin_make_certs(). Paths are
 * absolute and live in `dir`. */
struct origin_certs {
	char *dir;          /* a fresh dir: "PARENT/certs-*", or
	                       "$TMPDIR/sstf-certs-*" */
	char *ca_pem;       /* the CA's certificate: a ca_file, as --cacert */
	char *ca_dir;       /* a directory holding only the CA's certificate,
	                       under its subject hash as c_rehash names it
	                       (HASH.0, `openssl rehash`): a ca_path, as
	                       --capath */
	char *cert_pem;     /* server certificate signed by the CA, for
	                       DNS:localhost and IP:127.0.0.1, serverAuth */
	char *key_pem;      /* its private key (EC P-256) */
	char *other_ca_pem; /* a second CA, which signed nothing here */
};

/*
 * Makes the certs above with the openssl command, valid from now for 7
 * days, in a fresh dir under `parent` (an existing directory; a test's
 * temp dir, so that its teardown removes them too), or in a temp dir of
 * their own when parent is NULL. Returns 0, or a negative errno after
 * printing the failing command and its output on stderr; on error nothing
 * is left. Blocking (well under a second); call it from the test's main
 * thread.
 */
int origin_make_certs(const char *parent, struct origin_certs *out);

/* Removes the certs' dir and frees the paths. Safe on a zeroed struct and
 * twice. */
void origin_free_certs(struct origin_certs *c);

/*
 * Stops nginx (SIGTERM, then SIGKILL if it has not exited after 20 s),
 * reaps it, removes the prefix and frees o. NULL is a no-op.
 */
void origin_stop(struct origin *o);

#endif
