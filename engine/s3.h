/*
 * s3.h - what makes an HTTP request of an s3:// URL: the store's address,
 * SigV4 signing through libcurl, and S3's XML answers (errors, listings).
 *
 * The http source (http.c) and the blocking fetches (get.c) both send S3
 * requests: they turn the URL into an endpoint URL with sstf__s3_url(), set
 * up the easy handle with sstf__s3_sign(), and read an error body with
 * sstf__http_error_detail(). Nothing here does I/O.
 *
 * libcurl 7.88 (Debian 12) signs what it is given, as it is given: it adds
 * neither x-amz-content-sha256 nor a canonical path or query. So the path
 * is sent already in SigV4's canonical form (every byte outside A-Z a-z 0-9
 * - . _ ~ and '/' as %XX, upper case), the query with its parameters sorted
 * and encoded the same way, CURLOPT_PATH_AS_IS keeps curl from folding
 * "/../" in a key, and x-amz-content-sha256: UNSIGNED-PAYLOAD is a header
 * of ours, which curl signs with the others.
 */
#ifndef SSTF_S3_H
#define SSTF_S3_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stddef.h>

#include "sstfetch.h"

/* The network settings of an engine or of one sstf_get() call: owned
 * copies of sstf_config's s3, ca_file and ca_path. */
struct sstf__net {
	char *ca_file;  /* NULL: the system store */
	char *ca_path;
	struct sstf__s3 *s3; /* never NULL once made */
};

/*
 * Checks sstf_config's s3, ca_file and ca_path (NULL s3 is fine). Returns 0
 * or -EINVAL with a message naming the field. Any thread.
 */
int sstf__net_check(const struct sstf_config *c, char *errbuf, size_t len);

/* Makes owned copies of c's network settings in *net. 0 or -ENOMEM. */
int sstf__net_init(struct sstf__net *net, const struct sstf_allocator *a,
                   const struct sstf_config *c);
/* Frees them, wiping the secret first. Safe on a zeroed or failed net. */
void sstf__net_fini(struct sstf__net *net, const struct sstf_allocator *a);

/* Settings every easy handle gets for this net: the CAs. */
void sstf__net_easy(const struct sstf__net *net, CURL *easy);

/*
 * Checks an s3:// URL: a bucket and (unless allow_empty_key, for a
 * listing's prefix) a key, valid percent-encoding, no '?' or '#'. Returns 0
 * or -SSTF_EBADURL with the reason in why. Pure; any thread.
 */
int sstf__s3_url_check(const char *url, bool allow_empty_key, char *why, size_t whylen);

/*
 * Writes the endpoint URL of s3://BUCKET/KEY into out, with the key in
 * canonical form and `query` (already canonical: sorted, encoded; NULL for
 * none) after a '?'. Returns the length (without the NUL) whether or not it
 * fit, as snprintf does, or -SSTF_EBADURL for a URL sstf__s3_url_check()
 * refuses.
 */
long sstf__s3_url(const struct sstf__s3 *s3, const char *url, const char *query, char *out,
                  size_t outlen);

/* Sets up easy for a request to the store: SigV4 or anonymous, the
 * x-amz headers, no redirects, the path as is. */
void sstf__s3_sign(const struct sstf__s3 *s3, CURL *easy);
/* Undoes sstf__s3_sign() for a request that is not to the store, so that no
 * credential goes anywhere else. */
void sstf__s3_unsign(CURL *easy);

/* The part of an s3:// URL after the bucket's '/', still encoded, and the
 * bucket's length; for listings. */
const char *sstf__s3_split(const char *url, size_t *bucket_len);

/* Appends SigV4's canonical percent-encoding of `len` bytes of s (slash
 * kept when keep_slash) to out at *n, snprintf-style. */
void sstf__s3_encode(const char *s, size_t len, bool keep_slash, char *out, size_t outlen,
                     size_t *n);

/* Decodes %XX in s[0..len) into out (at least len + 1 bytes). Returns the
 * decoded length, or -1 for a bad escape. */
long sstf__pct_decode(const char *s, size_t len, char *out);

/*
 * The detail of an HTTP error answer: "HTTP 403", followed by
 * " CODE: MESSAGE" when the body is S3's XML error (<Code>, <Message>).
 * Only those two elements are read: S3 bodies also echo the string that
 * was signed, which must not end up in a log. Returns the detail's length.
 */
int sstf__http_error_detail(long status, const char *body, size_t len, char *out,
                            size_t outlen, char *code, size_t codelen);

/*
 * Finds the text of the first <tag>...</tag> at or after *pos in xml[0..len)
 * and decodes XML's five entities and numeric references into out (NUL
 * terminated, cut at outlen). Moves *pos past the closing tag. Returns the
 * decoded length, or -1 when there is no such element.
 */
long sstf__xml_text(const char *xml, size_t len, size_t *pos, const char *tag, char *out,
                    size_t outlen);

#endif
