/*
 * alloc.c - every allocation of the engine goes through here, so that a
 * host's allocator hooks see all of it and the library imposes none.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

void *sstf__alloc(const struct sstf_allocator *a, size_t size)
{
	void *p = a->alloc ? a->alloc(a->ctx, size) : malloc(size);
	if (p)
		memset(p, 0, size);
	return p;
}

void *sstf__alloc_aligned(const struct sstf_allocator *a, size_t align,
                          size_t size)
{
	void *p = NULL;
	if (a->alloc_aligned)
		p = a->alloc_aligned(a->ctx, align, size);
	else if (posix_memalign(&p, align, size) != 0)
		p = NULL;
	if (p)
		memset(p, 0, size);
	return p;
}

void sstf__free(const struct sstf_allocator *a, void *ptr)
{
	if (!ptr)
		return;
	if (a->free_fn)
		a->free_fn(a->ctx, ptr);
	else
		free(ptr);
}

uint64_t sstf__now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}
