/*
 * util.c - small helpers the tool's parts share.
 */
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Copies s into out, truncated and NUL-terminated. */
static void copy_str(char *out, size_t len, const char *s)
{
	if (!len)
		return;
	size_t n = strnlen(s, len - 1);
	memcpy(out, s, n);
	out[n] = '\0';
}

int mkdir_p(const char *dir, char *failed, size_t len)
{
	char path[PATH_MAX];
	size_t n = strlen(dir);
	struct stat st;

	copy_str(failed, len, dir);
	if (n >= sizeof(path))
		return -ENAMETOOLONG;
	memcpy(path, dir, n + 1);

	/* Each prefix ending before a '/', then the whole path. */
	for (size_t i = 1; i <= n; i++) {
		if (i < n && path[i] != '/')
			continue;
		if (i < n && path[i - 1] == '/')
			continue; /* "a//b" */
		char saved = path[i];
		path[i] = '\0';
		if (mkdir(path, 0777) != 0 && errno != EEXIST) {
			int err = errno;
			copy_str(failed, len, path);
			return -err;
		}
		path[i] = saved;
	}
	if (stat(dir, &st) != 0)
		return -errno;
	return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}
