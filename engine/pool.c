/*
 * pool.c - the buffer pool: mem_limit bytes in buffers of buf_size,
 * allocated once and registered with the ring (invariant 6).
 *
 * A buffer is taken by a stream (or a re-hash read) and goes back once its
 * bytes were both hashed and written. The per-buffer arrays say where its
 * bytes go and how far its write got; `next` and the flags keep the
 * buffers that arrived ahead of their file's hash frontier (sink.c).
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

#define DIRECT_ALIGN 4096u

int sstf__pool_init(struct sstf__pool *p, const struct sstf_allocator *a,
                    size_t bs, uint32_t n)
{
	memset(p, 0, sizeof(*p));
	p->mem = sstf__alloc_aligned(a, DIRECT_ALIGN, bs * n);
	p->free_stack = sstf__alloc(a, n * sizeof(uint32_t));
	p->len = sstf__alloc(a, n * sizeof(uint32_t));
	p->off = sstf__alloc(a, n * sizeof(uint64_t));
	p->done = sstf__alloc(a, n * sizeof(uint32_t));
	p->next = sstf__alloc(a, n * sizeof(uint32_t));
	p->wnext = sstf__alloc(a, n * sizeof(uint32_t));
	p->wfile = sstf__alloc(a, n * sizeof(*p->wfile));
	p->flags = sstf__alloc(a, n);
	if (!p->mem || !p->free_stack || !p->len || !p->off || !p->done || !p->next ||
	    !p->wnext || !p->wfile || !p->flags) {
		sstf__pool_fini(p, a);
		return -ENOMEM;
	}
	p->bs = bs;
	p->n = n;
	for (uint32_t i = 0; i < n; i++)
		p->free_stack[i] = n - 1 - i;
	p->nfree = n;
	p->ahead_max = n / 2;
	p->wq_head = p->wq_tail = SSTF__NO_BUF;
	/* See SSTF__WRITE_BUDGET: at least one buffer's write, whatever the
	 * buffer size. */
	p->wbytes_max = (uint64_t)bs * n / 4;
	if (p->wbytes_max > SSTF__WRITE_BUDGET)
		p->wbytes_max = SSTF__WRITE_BUDGET;
	if (p->wbytes_max < bs)
		p->wbytes_max = bs;
	return 0;
}

void sstf__pool_fini(struct sstf__pool *p, const struct sstf_allocator *a)
{
	sstf__free(a, p->mem);
	sstf__free(a, p->free_stack);
	sstf__free(a, p->len);
	sstf__free(a, p->off);
	sstf__free(a, p->done);
	sstf__free(a, p->next);
	sstf__free(a, p->wnext);
	sstf__free(a, p->wfile);
	sstf__free(a, p->flags);
	memset(p, 0, sizeof(*p));
}

int sstf__pool_get(struct sstf__pool *p)
{
	if (p->nfree == 0)
		return -1;
	int idx = (int)p->free_stack[--p->nfree];
	if (p->n - p->nfree > p->used_peak)
		p->used_peak = p->n - p->nfree;
	p->flags[idx] = 0;
	return idx;
}

void sstf__pool_put(struct sstf__pool *p, int idx)
{
	if (p->flags[idx] & SSTF__BUF_AHEAD)
		p->ahead--;
	p->flags[idx] = 0;
	p->free_stack[p->nfree++] = (uint32_t)idx;
}
