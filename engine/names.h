/*
 * names.h - validation of the relative file names a batch may carry.
 */
#ifndef SSTF_NAMES_H
#define SSTF_NAMES_H

#include <stddef.h>

/*
 * Checks that `name` is a safe relative path to create under a destination
 * directory: not empty, not absolute, no "." or ".." component, no empty
 * component ("a//b" or a trailing "/"), no component starting with ".sstf"
 * (SSTF__NAMESPACE: the engine's own working files live there, so no entry
 * can be named like one), each component at most NAME_MAX bytes and the
 * whole at most PATH_MAX - 1 bytes. A NUL cannot hide inside a
 * C string, so `len` is the length the caller believes the name has: when
 * strlen(name) differs, the name carried an embedded NUL and is refused.
 *
 * Returns 0, or -SSTF_EBADENTRY with a reason ("absolute path", ...) in msg
 * (NUL-terminated, truncated to msglen). Pure function, any thread.
 */
int sstf__name_check(const char *name, size_t len, char *msg, size_t msglen);

/* The prefix of every name the engine makes in a destination. */
#define SSTF__NAMESPACE ".sstf"

/* URL schemes, as bits of an allow-list: these four are built in; a
 * source added for tests adds its own with sstf__scheme_add(). */
enum sstf__scheme {
	SSTF__SCHEME_HTTP = 1u << 0,
	SSTF__SCHEME_HTTPS = 1u << 1,
	SSTF__SCHEME_FILE = 1u << 2,
	SSTF__SCHEME_S3 = 1u << 3,
};

/* Every scheme bit known now. */
unsigned sstf__scheme_all(void);
/* Adds a scheme (name must outlive the process); returns its bit, the
 * existing one for a known name, 0 when the table is full. Not thread-safe:
 * before any engine or batch check runs. */
unsigned sstf__scheme_add(const char *name);

/* The scheme bit of url ("http://..."), or 0 for any other scheme. */
unsigned sstf__url_scheme(const char *url);

/* The canonical name of one scheme bit ("https"). */
const char *sstf__scheme_name(unsigned bit);

/*
 * Parses a comma-separated list of scheme names ("http,https,file", case
 * insensitive, as curl's CURLOPT_PROTOCOLS_STR; "all" for every one) into
 * *mask. Returns 0, or -SSTF_EBADENTRY with the unknown word in msg.
 */
int sstf__protocols_parse(const char *list, unsigned *mask, char *msg,
                          size_t msglen);

/*
 * Writes base_url joined to name into out: trailing slashes of base_url
 * are dropped (not those of "scheme://"), exactly one '/' follows, then
 * name with every byte outside RFC 3986's unreserved set and '/'
 * percent-encoded. Returns the length of the URL (without the NUL)
 * whether or not it fit, as snprintf does; out may be NULL when outlen is
 * 0. Pure function, any thread.
 */
size_t sstf__url_join(const char *base_url, const char *name, char *out,
                      size_t outlen);

#endif
