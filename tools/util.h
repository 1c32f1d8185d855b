/*
 * util.h - small helpers the tool's parts share.
 */
#ifndef SSTFETCH_TOOLS_UTIL_H
#define SSTFETCH_TOOLS_UTIL_H

#include <stddef.h>

/*
 * mkdir -p: creates dir and its missing parents (mode 0777 before the
 * umask). Returns 0 when dir is a directory at the end, else a negative
 * errno, with the path that failed copied into failed (NUL-terminated,
 * truncated to len). Any thread.
 */
int mkdir_p(const char *dir, char *failed, size_t len);

#endif
