/*
 * names.c - the rules a file name must follow before the engine creates it.
 *
 * These run at submit, in the caller's thread, before anything touches the
 * disk: a name that could escape the destination directory or overflow a
 * path buffer never reaches the loop.
 */
#include "names.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "sstfetch.h"

static int refuse(char *msg, size_t msglen, const char *why)
{
	if (msg && msglen)
		snprintf(msg, msglen, "%s", why);
	return -SSTF_EBADENTRY;
}

int sstf__name_check(const char *name, size_t len, char *msg, size_t msglen)
{
	if (!name)
		return refuse(msg, msglen, "missing name");
	if (strnlen(name, len + 1) != len)
		return refuse(msg, msglen, "name contains a NUL byte");
	if (len == 0)
		return refuse(msg, msglen, "empty name");
	if (len > PATH_MAX - 1)
		return refuse(msg, msglen, "name longer than PATH_MAX - 1 bytes");
	if (name[0] == '/')
		return refuse(msg, msglen,
		              "absolute path; names must be relative to the destination");

	const char *p = name;
	while (*p) {
		const char *slash = strchr(p, '/');
		size_t clen = slash ? (size_t)(slash - p) : strlen(p);
		if (clen == 0)
			return refuse(msg, msglen, "empty path component ('//' or trailing '/')");
		if (clen > NAME_MAX)
			return refuse(msg, msglen, "path component longer than NAME_MAX bytes");
		if (clen == 2 && p[0] == '.' && p[1] == '.')
			return refuse(msg, msglen, "'..' component; names may not leave the destination");
		if (clen == 1 && p[0] == '.')
			return refuse(msg, msglen, "'.' component");
		if (!slash)
			break;
		p = slash + 1;
		if (!*p)
			return refuse(msg, msglen, "empty path component ('//' or trailing '/')");
	}
	return 0;
}
