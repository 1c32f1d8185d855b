/*
 * gen.c - generations: validation at submit, the arena, state changes.
 *
 * Invariant 3 (metadata outlives its work) is built here: everything the
 * loop will ever read about a batch's files is copied into one arena owned
 * by the generation, and sstf__gen_free_arena() refuses to run while any
 * operation of the generation is in flight.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "internal.h"
#include "names.h"

/* A sane upper bound on one file: 16 TiB. Larger is a corrupt entry. */
#define SSTF__MAX_FILE_SIZE ((uint64_t)1 << 44)

static int bad_entry(const struct sstf_batch *b, int err, size_t i,
                     const char *name, const char *why)
{
	if (b->errbuf && b->errbuf_len) {
		if (name)
			snprintf(b->errbuf, b->errbuf_len, "files[%zu] (\"%.200s\"): %s",
			         i, name, why);
		else
			snprintf(b->errbuf, b->errbuf_len, "files[%zu]: %s", i, why);
	}
	return err;
}

static int cmp_names(const void *a, const void *b)
{
	const struct sstf_file *const *x = a, *const *y = b;
	return strcmp((*x)->name, (*y)->name);
}

/* Finds two entries with the same name in O(n log n); -1 when none. */
static int find_duplicate(const struct sstf_allocator *a,
                          const struct sstf_batch *b, size_t *dup)
{
	if (b->nfiles < 2)
		return 0;
	const struct sstf_file **v = sstf__alloc(a, b->nfiles * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (size_t i = 0; i < b->nfiles; i++)
		v[i] = &b->files[i];
	qsort(v, b->nfiles, sizeof(*v), cmp_names);
	int found = 0;
	for (size_t i = 1; i < b->nfiles && !found; i++) {
		if (strcmp(v[i - 1]->name, v[i]->name) == 0) {
			*dup = (size_t)(v[i] - b->files);
			found = 1;
		}
	}
	sstf__free(a, v);
	return found;
}

/* Largest first; equal sizes in the batch's order. */
static int cmp_larger_first(const void *a, const void *b, void *arg)
{
	const struct sstf__entry *files = arg;
	size_t x = *(const size_t *)a, y = *(const size_t *)b;
	if (files[x].size != files[y].size)
		return files[x].size > files[y].size ? -1 : 1;
	return x < y ? -1 : x > y;
}

static char *arena_str(char **cursor, const char *s, size_t len)
{
	char *out = *cursor;
	memcpy(out, s, len);
	out[len] = '\0';
	*cursor += len + 1;
	return out;
}

/* What check_batch learns that gen_new needs. */
struct batch_plan {
	size_t strings;  /* bytes of strings the arena holds */
	size_t url_ptrs; /* own URLs of every entry: one pointer each */
	size_t url_max;  /* longest URL, without the NUL */
	unsigned schemes; /* allowed scheme bits */
};

/* "http, https" for a message, from scheme bits. */
static void scheme_list(unsigned mask, char *out, size_t len)
{
	size_t n = 0;
	out[0] = '\0';
	for (unsigned bit = 1; bit & sstf__scheme_all(); bit <<= 1) {
		if (!(mask & bit) || n >= len)
			continue;
		n += (size_t)snprintf(out + n, len - n, "%s%s", n ? ", " : "",
		                      sstf__scheme_name(bit));
	}
}

/*
 * Validates every entry of a batch, as sstf_submit() and sstf_check_batch()
 * promise, and sizes what the arena will hold.
 */
static int check_batch(const struct sstf_allocator *a, const struct sstf_batch *b,
                       struct batch_plan *plan)
{
	char why[192];
	if (!b || (b->nfiles && !b->files))
		return -EINVAL;
	plan->url_ptrs = 0;
	if (!b->dest_dir || !*b->dest_dir) {
		if (b->errbuf && b->errbuf_len)
			snprintf(b->errbuf, b->errbuf_len, "dest_dir: missing");
		return -EINVAL;
	}
	unsigned base_scheme = 0;
	if (b->base_url) {
		base_scheme = sstf__url_scheme(b->base_url);
		if (!base_scheme) {
			if (b->errbuf && b->errbuf_len)
				snprintf(b->errbuf, b->errbuf_len,
				         "base_url \"%.200s\": the scheme must be http://, "
				         "https://, file:// or s3://",
				         b->base_url);
			return -SSTF_EBADURL;
		}
		if (base_scheme == SSTF__SCHEME_S3 &&
		    sstf__s3_url_check(b->base_url, true, why, sizeof(why)) < 0) {
			if (b->errbuf && b->errbuf_len)
				snprintf(b->errbuf, b->errbuf_len, "base_url \"%.200s\": %s",
				         b->base_url, why);
			return -SSTF_EBADURL;
		}
	}
	/* Only the source's own scheme unless the caller widens it: a
	 * manifest must not be able to point an entry at file:///etc/passwd. */
	unsigned allowed = b->base_url ? base_scheme : sstf__scheme_all();
	for (size_t k = 0; k < sizeof(b->reserved) / sizeof(b->reserved[0]); k++) {
		if (b->reserved[k]) {
			if (b->errbuf && b->errbuf_len)
				snprintf(b->errbuf, b->errbuf_len,
				         "batch: reserved[%zu] is not zero (zero the struct; "
				         "a newer header than this library?)",
				         k);
			return -EINVAL;
		}
	}
	if (b->protocols) {
		int r = sstf__protocols_parse(b->protocols, &allowed, b->errbuf, b->errbuf_len);
		if (r < 0)
			return -EINVAL;
	}
	size_t strings = strlen(b->dest_dir) + 1 + (b->base_url ? strlen(b->base_url) + 1 : 0);
	size_t url_max = 0;
	for (size_t i = 0; i < b->nfiles; i++) {
		const struct sstf_file *f = &b->files[i];
		if (!f->name)
			return bad_entry(b, -SSTF_EBADENTRY, i, NULL, "missing name");
		size_t nlen = strlen(f->name);
		if (sstf__name_check(f->name, nlen, why, sizeof(why)) < 0)
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name, why);
		for (size_t k = 0; k < sizeof(f->reserved) / sizeof(f->reserved[0]); k++)
			if (f->reserved[k])
				return bad_entry(b, -SSTF_EBADENTRY, i, f->name,
				                 "reserved words are not zero (zero the struct)");
		if (f->nurls && f->url)
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name,
			                 "both url and urls are set; give one");
		if (f->nurls > SSTF_MAX_MIRRORS || (f->nurls && !f->urls)) {
			snprintf(why, sizeof(why), "urls: 1 to %d URLs", SSTF_MAX_MIRRORS);
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name, why);
		}
		/* One own URL is the one-entry case of a mirror list. */
		const char *const *own = f->nurls ? f->urls : f->url ? &f->url : NULL;
		size_t nown = f->nurls ? f->nurls : f->url ? 1 : 0;
		if (!nown && !b->base_url)
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name,
			                 "no URL, and the batch has no base_url");
		size_t own_bytes = 0;
		for (size_t k = 0; k < (nown ? nown : 1); k++) {
			const char *url = nown ? own[k] : NULL;
			if (nown && (!url || !*url))
				return bad_entry(b, -SSTF_EBADENTRY, i, f->name, "empty URL");
			unsigned scheme = url ? sstf__url_scheme(url) : base_scheme;
			if (!scheme)
				return bad_entry(b, -SSTF_EBADURL, i, f->name,
				                 "URL scheme must be http://, https://, file:// or "
				                 "s3://");
			if (url && scheme == SSTF__SCHEME_S3 &&
			    sstf__s3_url_check(url, false, why, sizeof(why)) < 0)
				return bad_entry(b, -SSTF_EBADURL, i, f->name, why);
			if (!(scheme & allowed)) {
				char list[64];
				scheme_list(allowed, list, sizeof(list));
				snprintf(why, sizeof(why),
				         "URL scheme %s:// is not allowed in this batch (allowed: "
				         "%s); only the source's own scheme is, unless protocols "
				         "widens it",
				         sstf__scheme_name(scheme), list);
				return bad_entry(b, -SSTF_EBADURL, i, f->name, why);
			}
			size_t ulen = url ? strlen(url) : sstf__url_join(b->base_url, f->name, NULL, 0);
			if (ulen > url_max)
				url_max = ulen;
			if (url)
				own_bytes += ulen + 1;
		}
		strings += own_bytes;
		plan->url_ptrs += nown;
		if (f->size > SSTF__MAX_FILE_SIZE)
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name,
			                 "size larger than 16 TiB; a corrupt entry?");
		struct sstf__digest d;
		if (sstf__digest_hexlen(f->digest_kind) < 0)
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name, "unknown digest kind");
		if (sstf__digest_parse(f->digest_kind, f->digest_hex, &d) < 0) {
			snprintf(why, sizeof(why), "digest must be %d hex digits",
			         sstf__digest_hexlen(f->digest_kind));
			return bad_entry(b, -SSTF_EBADENTRY, i, f->name, why);
		}
		strings += nlen + 1;
	}
	size_t dup;
	int d = find_duplicate(a, b, &dup);
	if (d < 0)
		return d;
	if (d > 0)
		return bad_entry(b, -SSTF_EBADENTRY, dup, b->files[dup].name,
		                 "the same name appears twice in the batch");
	plan->strings = strings;
	plan->url_max = url_max;
	plan->schemes = allowed;
	return 0;
}

int sstf_check_batch(const struct sstf_batch *batch)
{
	static const struct sstf_allocator libc = {0};
	struct batch_plan plan;
	return check_batch(&libc, batch, &plan);
}

int sstf__gen_new(const struct sstf_allocator *a, const struct sstf_batch *b,
                  uint64_t id, struct sstf__gen **out)
{
	struct batch_plan plan;
	int ret = check_batch(a, b, &plan);
	if (ret < 0)
		return ret;

	struct sstf__gen *g = sstf__alloc(a, sizeof(*g));
	if (!g)
		return -ENOMEM;
	size_t files_bytes = b->nfiles * sizeof(struct sstf__entry);
	size_t ptr_bytes = plan.url_ptrs * sizeof(char *);
	size_t order_bytes = b->nfiles * sizeof(size_t);
	/* The arena also holds the loop's scratch for one URL at a time. */
	size_t url_bytes = b->nfiles ? plan.url_max + 1 : 0;
	g->arena = sstf__alloc(a, files_bytes + ptr_bytes + order_bytes + plan.strings + url_bytes);
	if (!g->arena) {
		sstf__free(a, g);
		return -ENOMEM;
	}

	/* Copy everything the loop will read into the arena. */
	g->files = g->arena;
	g->nfiles = b->nfiles;
	const char **ptrs = (const char **)((char *)g->arena + files_bytes);
	g->order = (size_t *)((char *)g->arena + files_bytes + ptr_bytes);
	char *cur = (char *)g->arena + files_bytes + ptr_bytes + order_bytes;
	g->dest_dir = arena_str(&cur, b->dest_dir, strlen(b->dest_dir));
	if (b->base_url)
		g->base_url = arena_str(&cur, b->base_url, strlen(b->base_url));
	for (size_t i = 0; i < b->nfiles; i++) {
		const struct sstf_file *in = &b->files[i];
		struct sstf__entry *f = &g->files[i];
		f->name = arena_str(&cur, in->name, strlen(in->name));
		const char *const *own = in->nurls ? in->urls : in->url ? &in->url : NULL;
		size_t nown = in->nurls ? in->nurls : in->url ? 1 : 0;
		if (nown) {
			f->urls = ptrs;
			for (size_t k = 0; k < nown; k++)
				*ptrs++ = arena_str(&cur, own[k], strlen(own[k]));
		}
		f->nurls = (uint8_t)nown;
		f->size = in->size;
		f->kind = (uint8_t)in->digest_kind;
		sstf__digest_parse(in->digest_kind, in->digest_hex, &f->digest);
		g->bytes_total += in->size;
		g->order[i] = i;
	}
	/* Largest files start first, so that a mixed set does not end on one
	 * large file while the small ones are long done: the small ones fill
	 * the gaps at the end. */
	qsort_r(g->order, b->nfiles, sizeof(*g->order), cmp_larger_first, g->files);
	g->schemes = plan.schemes;
	g->url_max = plan.url_max;
	g->url_buf = b->nfiles ? cur : NULL;
	g->id = id;
	g->state = SSTF__GEN_QUEUED;
	g->files_total = b->nfiles;
	g->on_file_done = b->on_file_done;
	g->on_batch_done = b->on_batch_done;
	g->on_progress = b->on_progress;
	g->user = b->user;
	g->dirfd = g->stagefd = g->lockfd = -1;
	atomic_init(&g->cancel_requested, false);
	atomic_init(&g->bytes_done, 0);
	atomic_init(&g->files_done, 0);
	atomic_init(&g->files_failed, 0);
	atomic_init(&g->bytes_present, 0);
	atomic_init(&g->files_skipped, 0);
	*out = g;
	return 0;
}

const char *sstf__gen_url(struct sstf__gen *g, const struct sstf__entry *f, unsigned mirror)
{
	if (f->nurls)
		return f->urls[mirror < f->nurls ? mirror : 0];
	sstf__url_join(g->base_url, f->name, g->url_buf, g->url_max + 1);
	return g->url_buf;
}

void sstf__gen_free_arena(const struct sstf_allocator *a, struct sstf__gen *g)
{
	if (g->inflight != 0 || g->active != 0) {
		fprintf(stderr, "sstfetch: gen %" PRIu64 ": arena freed with %u ops in flight\n",
		        g->id, g->inflight);
		abort();
	}
	sstf__free(a, g->arena);
	sstf__free(a, g->deferred);
	g->arena = NULL;
	g->order = NULL;
	g->deferred = NULL;
	g->deferred_mirrors = NULL;
	g->files = NULL;
	g->dest_dir = NULL;
}

void sstf__gen_free(const struct sstf_allocator *a, struct sstf__gen *g)
{
	if (g->arena)
		sstf__gen_free_arena(a, g);
	sstf__free(a, g);
}

const char *sstf__gen_state_name(enum sstf__gen_state s)
{
	switch (s) {
	case SSTF__GEN_QUEUED:
		return "queued";
	case SSTF__GEN_RUNNING:
		return "running";
	case SSTF__GEN_CANCELLING:
		return "cancelling";
	case SSTF__GEN_ENDED:
		return "ended";
	}
	return "?";
}

void sstf__gen_set_state(struct sstf__gen *g, enum sstf__gen_state to)
{
	bool ok;
	switch (to) {
	case SSTF__GEN_RUNNING:
		ok = g->state == SSTF__GEN_QUEUED;
		break;
	case SSTF__GEN_CANCELLING:
		ok = g->state == SSTF__GEN_RUNNING;
		break;
	case SSTF__GEN_ENDED:
		ok = (g->state == SSTF__GEN_RUNNING || g->state == SSTF__GEN_CANCELLING) &&
		     g->inflight == 0 && g->active == 0 && g->arena == NULL;
		break;
	default:
		ok = false;
	}
	if (!ok) {
		fprintf(stderr, "sstfetch: gen %" PRIu64 ": bad transition %s -> %s\n", g->id,
		        sstf__gen_state_name(g->state), sstf__gen_state_name(to));
		abort();
	}
	g->state = to;
}
