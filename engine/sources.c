/*
 * sources.c - the table of sources.
 *
 * Adding a source is one file with its sstf__source_ops and one entry
 * here; the rest of the engine finds it by the scheme of a URL. Tests add
 * theirs (the memory source) with sstf__source_add().
 */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "internal.h"

const struct sstf__source_ops *sstf__sources[SSTF__MAX_SOURCES + 1] = {
	&sstf__http_source,
	&sstf__file_source,
	NULL,
};

const struct sstf__source_ops *sstf__source_for_url(const char *url)
{
	for (size_t i = 0; sstf__sources[i]; i++) {
		for (const char *const *sc = sstf__sources[i]->schemes; *sc; sc++) {
			size_t n = strlen(*sc);
			if (strncasecmp(url, *sc, n) == 0 && strncmp(url + n, "://", 3) == 0)
				return sstf__sources[i];
		}
	}
	return NULL;
}

unsigned sstf__source_index(const struct sstf__source_ops *ops)
{
	unsigned i = 0;
	while (sstf__sources[i] && sstf__sources[i] != ops)
		i++;
	return i;
}

int sstf__source_add(const struct sstf__source_ops *ops)
{
	size_t n = 0;
	while (sstf__sources[n]) {
		if (sstf__sources[n] == ops)
			return -EEXIST;
		n++;
	}
	if (n == SSTF__MAX_SOURCES)
		return -ENOSPC;
	for (const char *const *sc = ops->schemes; *sc; sc++)
		if (!sstf__scheme_add(*sc))
			return -ENOSPC;
	sstf__sources[n] = ops;
	return 0;
}
