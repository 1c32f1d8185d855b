/*
 * names.h - validation of the relative file names a batch may carry.
 */
#ifndef SSTF_NAMES_H
#define SSTF_NAMES_H

#include <stddef.h>

/*
 * Checks that `name` is a safe relative path to create under a destination
 * directory: not empty, not absolute, no "." or ".." component, no empty
 * component ("a//b" or a trailing "/"), each component at most NAME_MAX
 * bytes and the whole at most PATH_MAX - 1 bytes. A NUL cannot hide inside a
 * C string, so `len` is the length the caller believes the name has: when
 * strlen(name) differs, the name carried an embedded NUL and is refused.
 *
 * Returns 0, or -SSTF_EBADENTRY with a reason ("absolute path", ...) in msg
 * (NUL-terminated, truncated to msglen). Pure function, any thread.
 */
int sstf__name_check(const char *name, size_t len, char *msg, size_t msglen);

#endif
