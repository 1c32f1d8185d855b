/*
 * manifest.c - stream a JSON manifest into a batch's file array.
 *
 * This file checks what only the JSON can tell: types, a NUL hidden inside
 * a string (invisible once it is a C string), digests of the right length,
 * which digest a verify mode needs, and file_total_size. The rules for the
 * entries themselves (names, URL schemes, sizes, duplicates) belong to the
 * engine alone: the tool runs sstf_check_batch() on the result, the same
 * code sstf_submit() runs, so that the two can never disagree.
 *
 * How it reads. A manifest of a million entries is over 100 MB of JSON; as
 * one jansson document it took 600-800 MB. So the file goes through a
 * window (struct reader) and only the outer structure is scanned here: the
 * top-level { "key": value, ... }, the [ entry, ... ] of "files", their
 * punctuation and whitespace. Every key and every value, each entry of
 * "files" included, is decoded by jansson on its own: json_loadb() with
 * JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK decodes one value at the start
 * of the bytes it is given and stops there, and on success
 * json_error_t.position is the number of bytes it used.
 *
 * A value cut by the window's end shows in one of two ways: a failure
 * within the last CUT_ZONE bytes jansson was given (it ran out of input
 * inside a string, an object, a number, or a UTF-8 sequence, for which it
 * stops before the sequence), or a success that used every byte (a number
 * or a literal that may go on: "12" of "123"). Then, unless the input has
 * ended, the window is refilled and the value decoded again from its start.
 * jansson is never given more than the cap on a value plus
 * MANIFEST_BUF_SLACK bytes, so the outcome depends only on the value's
 * bytes, never on where the window happened to end.
 *
 * What is kept per entry: its struct sstf_file in an array that grows
 * geometrically, and its name, chosen digest and own "url" or "urls" (when
 * it has them: the strings and the array of pointers to them) in an arena
 * of fixed-size chunks, which are never moved once a pointer points into
 * them. An entry without a URL of its own costs its struct, its name and
 * its digest, nothing more.
 */
#include "manifest.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* How much of a name an error message shows; a PATH_MAX name would bury
 * the reason. */
#define QUOTE_MAX 80

/* Flags of every json_loadb(): one value of any type, stop after it.
 * ALLOW_NUL lets a "\u0000" inside a name reach add_entry(), which names
 * the entry, rather than failing as a syntax error. */
#define JFLAGS                                                              \
	(JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | \
	 JSON_ALLOW_NUL)

/* A failure this close to the end of jansson's input may be the cut, not
 * the value: a UTF-8 sequence is at most 4 bytes, and jansson reports a
 * cut one at the position before it. */
#define CUT_ZONE 4

/* Entries the file array starts with. */
#define FILES_MIN 1024

/* One block of the string arena: a whole jemalloc/glibc size class. */
#define CHUNK_BYTES ((size_t)1024 * 1024)

struct manifest_chunk {
	struct manifest_chunk *next;
	size_t used, cap;
	char data[];
};

/* A position in the input, counted as jansson counts: lines from 1,
 * columns in characters (bytes that do not continue a UTF-8 sequence) read
 * on the current line, bytes read. */
struct where {
	uint64_t line, col, off;
};

static void advance(struct where *w, const char *s, size_t n)
{
	for (size_t k = 0; k < n; k++) {
		unsigned char c = (unsigned char)s[k];
		if (c == '\n') {
			w->line++;
			w->col = 0;
		} else if ((c & 0xc0) != 0x80) {
			w->col++;
		}
	}
	w->off += n;
}

/* The window onto the input: buf[start, end) is read and not consumed. */
struct reader {
	FILE *in;
	char *buf;
	size_t size;
	size_t start, end;
	int eof;        /* the input has no more bytes (or failed) */
	int read_errno; /* of a failed read; 0 when none */
	struct where at; /* of buf[start] */
};

static void consume(struct reader *r, size_t n)
{
	advance(&r->at, r->buf + r->start, n);
	r->start += n;
}

/* Moves the unconsumed bytes to the front and reads until the window is
 * full or the input ends. Returns 0, or -1 on a read error. */
static int refill(struct reader *r)
{
	if (r->start > 0) {
		memmove(r->buf, r->buf + r->start, r->end - r->start);
		r->end -= r->start;
		r->start = 0;
	}
	while (r->end < r->size && !r->eof) {
		errno = 0;
		size_t n = fread(r->buf + r->end, 1, r->size - r->end, r->in);
		r->end += n;
		if (n == 0) {
			r->eof = 1;
			if (ferror(r->in)) {
				r->read_errno = errno ? errno : EIO;
				return -1;
			}
		}
	}
	return 0;
}

#define PEEK_EOF (-1)
#define PEEK_ERROR (-2)

/* Skips JSON whitespace and returns the next byte, not consumed;
 * PEEK_EOF at the end of the input, PEEK_ERROR on a read error. */
static int peek(struct reader *r)
{
	for (;;) {
		while (r->start < r->end) {
			unsigned char c = (unsigned char)r->buf[r->start];
			if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
				return c;
			consume(r, 1);
		}
		if (r->eof)
			return PEEK_EOF;
		if (refill(r))
			return PEEK_ERROR;
	}
}

/* Where the byte peek() returned is, once read; at the end of the input,
 * where the input ends. */
static struct where next_where(const struct reader *r)
{
	struct where w = r->at;
	if (r->start < r->end)
		advance(&w, r->buf + r->start, 1);
	return w;
}

enum decoded {
	DEC_OK,
	DEC_SYNTAX,    /* jansson's error in *e, its place in *w */
	DEC_TOO_LARGE, /* longer than the cap; *w is where it starts */
	DEC_READ,      /* read error, r->read_errno */
};

/*
 * Decodes the value that starts at the next byte (peek() has returned it)
 * and consumes it. `cap` is the most bytes it may take.
 */
static enum decoded decode(struct reader *r, size_t cap, json_t **out,
                           json_error_t *e, struct where *w)
{
	for (;;) {
		size_t avail = r->end - r->start;
		size_t window = avail < cap + MANIFEST_BUF_SLACK
			? avail
			: cap + MANIFEST_BUF_SLACK;
		/* Nothing past the window: what jansson sees is all there is. */
		int final = r->eof && window == avail;
		json_t *v = json_loadb(r->buf + r->start, window, JFLAGS, e);
		size_t pos = e->position > 0 ? (size_t)e->position : 0;
		if (pos > window)
			pos = window;
		if (v) {
			if (pos > cap) {
				json_decref(v);
				*w = next_where(r);
				return DEC_TOO_LARGE;
			}
			if (pos < window || final) {
				consume(r, pos);
				*out = v;
				return DEC_OK;
			}
			/* A number or literal that may go on past the window. */
			json_decref(v);
		} else if (final || pos + CUT_ZONE < window) {
			*w = r->at;
			advance(w, r->buf + r->start, pos);
			return DEC_SYNTAX;
		}
		if (window == cap + MANIFEST_BUF_SLACK) {
			*w = next_where(r);
			return DEC_TOO_LARGE;
		}
		/* window == avail < the most decode() ever looks at, and the
		 * input goes on: make the window hold more and try again. */
		if (refill(r))
			return DEC_READ;
	}
}

/* The state of one load. */
struct loader {
	const char *label;
	char *err;
	size_t errlen;
	enum manifest_verify verify;
	struct reader r;
	size_t value_cap, entry_cap;
	struct manifest *m;
	uint64_t sum;          /* of the sizes so far */
	json_t *seen;          /* top-level keys so far, as an object's keys */
	int have_files;
	int have_total;
	uint64_t total;        /* "file_total_size", when have_total */
};

static void fail(struct loader *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct loader *ld, const char *fmt, ...)
{
	if (!ld->err || !ld->errlen)
		return;
	int n = snprintf(ld->err, ld->errlen, "%s: ", ld->label);
	if (n < 0 || (size_t)n >= ld->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

/* fail() with a place in the input; ctx ("files[3]: ", or "") says in
 * what. */
static void fail_at(struct loader *ld, const struct where *w, const char *ctx,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void fail_at(struct loader *ld, const struct where *w, const char *ctx,
                    const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	fail(ld, "line %" PRIu64 ", column %" PRIu64 " (byte %" PRIu64 "): %s%s",
	     w->line, w->col, w->off, ctx, why);
}

/* fail_at() for a punctuation byte that is not what the structure needs:
 * c is what peek() returned. */
static void fail_expected(struct loader *ld, int c, const char *ctx,
                          const char *what)
{
	if (c == PEEK_ERROR) {
		fail(ld, "read error: %s", strerror(ld->r.read_errno));
		return;
	}
	struct where w = next_where(&ld->r);
	if (c == PEEK_EOF)
		fail_at(ld, &w, ctx, "premature end of input, expected %s", what);
	else if (c >= 0x20 && c < 0x7f)
		fail_at(ld, &w, ctx, "expected %s, got '%c'", what, c);
	else
		fail_at(ld, &w, ctx, "expected %s, got byte 0x%02x", what, c);
}

/*
 * Writes a printable form of the len bytes at s into out (always
 * NUL-terminated): '"', '\\' and bytes outside printable ASCII are escaped,
 * and names longer than QUOTE_MAX bytes are cut with "...".
 */
static void quote(const char *s, size_t len, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	size_t shown = len > QUOTE_MAX ? QUOTE_MAX : len;

	for (size_t i = 0; i < shown; i++) {
		unsigned char c = (unsigned char)s[i];
		char tmp[4];
		size_t tn = 0;
		if (c == '"' || c == '\\') {
			tmp[tn++] = '\\';
			tmp[tn++] = (char)c;
		} else if (c < 0x20 || c >= 0x7f) {
			tmp[tn++] = '\\';
			tmp[tn++] = 'x';
			tmp[tn++] = hex[c >> 4];
			tmp[tn++] = hex[c & 15];
		} else {
			tmp[tn++] = (char)c;
		}
		if (o + tn + 4 > outlen)
			break;
		memcpy(out + o, tmp, tn);
		o += tn;
	}
	if (shown < len && o + 4 <= outlen) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
}

/* Reports a failed decode() of the value that ctx names; noun says what
 * `cap` limits ("entry", "value"). */
static void fail_decode(struct loader *ld, enum decoded d, const json_error_t *e,
                        const struct where *w, const char *ctx, size_t cap,
                        const char *noun)
{
	switch (d) {
	case DEC_OK:
		break;
	case DEC_SYNTAX:
		fail_at(ld, w, ctx, "%s", e->text);
		break;
	case DEC_TOO_LARGE:
		fail_at(ld, w, ctx, "larger than %zu bytes, the most one %s may take",
		        cap, noun);
		break;
	case DEC_READ:
		fail(ld, "read error: %s", strerror(ld->r.read_errno));
		break;
	}
}

/* fail() for entry i, whose name (when known) is shown quoted. */
static void fail_entry(struct loader *ld, size_t i, json_t *jname,
                       const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void fail_entry(struct loader *ld, size_t i, json_t *jname,
                       const char *fmt, ...)
{
	char why[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);

	if (json_is_string(jname)) {
		char q[QUOTE_MAX * 4 + 8];
		quote(json_string_value(jname), json_string_length(jname), q,
		      sizeof(q));
		fail(ld, "files[%zu] (\"%s\"): %s", i, q, why);
	} else {
		fail(ld, "files[%zu]: %s", i, why);
	}
}

static int is_hex(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
	       (c >= 'A' && c <= 'F');
}

/* The digests an entry may carry, cheapest per byte first: the order in
 * which verify=auto takes them (manifest.h). */
static const struct {
	const char *key;
	size_t digits;
	enum sstf_digest_kind kind;
	enum manifest_verify verify;
} digest_keys[] = {
	{"xxh3", 16, SSTF_DIGEST_XXH3, MANIFEST_VERIFY_XXH3},
	{"xxh128", 32, SSTF_DIGEST_XXH128, MANIFEST_VERIFY_XXH128},
	{"md5", 32, SSTF_DIGEST_MD5, MANIFEST_VERIFY_MD5},
};
#define NDIGEST_KEYS (sizeof(digest_keys) / sizeof(digest_keys[0]))

/*
 * Checks the optional digest member `key` of entry i: absent is fine
 * (*present stays 0), present must be a string of exactly `digits` hex
 * digits. Returns -1 after fail_entry() when present and malformed.
 */
static int check_digest(struct loader *ld, size_t i, json_t *entry,
                        json_t *jname, const char *key, size_t digits,
                        int *present)
{
	json_t *v = json_object_get(entry, key);
	*present = 0;
	if (!v)
		return 0;
	if (!json_is_string(v)) {
		fail_entry(ld, i, jname, "\"%s\" must be a string of %zu hex digits",
		           key, digits);
		return -1;
	}
	const char *s = json_string_value(v);
	size_t len = json_string_length(v);
	if (len != digits) {
		fail_entry(ld, i, jname,
		           "\"%s\" must be %zu hex digits, got %zu characters", key,
		           digits, len);
		return -1;
	}
	for (size_t k = 0; k < len; k++) {
		if (!is_hex(s[k])) {
			fail_entry(ld, i, jname,
			           "\"%s\" must be %zu hex digits, character %zu is not one",
			           key, digits, k + 1);
			return -1;
		}
	}
	*present = 1;
	return 0;
}

/* The padding that aligns p to `align` (a power of two). */
static size_t pad_to(const char *p, size_t align)
{
	return (size_t)(-(uintptr_t)p & (align - 1));
}

/*
 * size bytes from the arena, at an address aligned to `align` (a power of
 * two, at most malloc's alignment); NULL when out of memory. They stay
 * where they are until manifest_free().
 */
static void *arena_alloc(struct manifest *m, size_t size, size_t align)
{
	struct manifest_chunk *c = m->chunks;
	size_t pad = c ? pad_to(c->data + c->used, align) : 0;
	if (!c || c->cap - c->used < pad || c->cap - c->used - pad < size) {
		size_t data = CHUNK_BYTES - offsetof(struct manifest_chunk, data);
		/* A value longer than a chunk gets one of its own; the
		 * loader's caps keep that rare and bounded. align more
		 * bytes leave room for the padding. */
		if (size + align > data)
			data = size + align;
		c = malloc(offsetof(struct manifest_chunk, data) + data);
		if (!c)
			return NULL;
		c->next = m->chunks;
		c->used = 0;
		c->cap = data;
		m->chunks = c;
		pad = pad_to(c->data, align);
	}
	char *at = c->data + c->used + pad;
	c->used += pad + size;
	return at;
}

/* Copies len bytes and a NUL into the arena; NULL when out of memory. */
static const char *stash(struct manifest *m, const char *s, size_t len)
{
	char *at = arena_alloc(m, len + 1, 1);
	if (!at)
		return NULL;
	memcpy(at, s, len);
	at[len] = '\0';
	return at;
}

/* A string member without a NUL byte hidden inside it, which would cut it
 * short as a C string. */
static int is_c_string(json_t *v)
{
	return json_is_string(v) &&
	       strlen(json_string_value(v)) == json_string_length(v);
}

/*
 * Checks entry i's optional "urls": absent is fine (*out NULL); present, it
 * must be an array of 1 to SSTF_MAX_MIRRORS strings without NUL bytes, and
 * the entry must not have a "url" as well (which of the two would hold is
 * a guess, as for duplicate keys). Returns -1 after fail_entry() otherwise.
 * Whether each string is a URL the batch may use is the engine's check.
 */
static int check_urls(struct loader *ld, size_t i, json_t *entry,
                      json_t *jname, json_t *jurl, json_t **out)
{
	json_t *v = json_object_get(entry, "urls");
	*out = NULL;
	if (!v)
		return 0;
	if (jurl) {
		fail_entry(ld, i, jname,
		           "has both \"url\" and \"urls\"; give one of them");
		return -1;
	}
	if (!json_is_array(v)) {
		fail_entry(ld, i, jname,
		           "\"urls\" must be an array of 1 to %d URL strings",
		           SSTF_MAX_MIRRORS);
		return -1;
	}
	size_t n = json_array_size(v);
	if (n == 0) {
		fail_entry(ld, i, jname,
		           "\"urls\" must be an array of 1 to %d URL strings, not "
		           "an empty one", SSTF_MAX_MIRRORS);
		return -1;
	}
	if (n > SSTF_MAX_MIRRORS) {
		fail_entry(ld, i, jname,
		           "\"urls\" must be an array of 1 to %d URL strings, got %zu",
		           SSTF_MAX_MIRRORS, n);
		return -1;
	}
	for (size_t k = 0; k < n; k++) {
		if (!is_c_string(json_array_get(v, k))) {
			fail_entry(ld, i, jname,
			           "\"urls\"[%zu] must be a string without NUL bytes", k);
			return -1;
		}
	}
	*out = v;
	return 0;
}

/* Copies the strings of a checked "urls" array, and an array of pointers
 * to them, into the arena; NULL when out of memory. */
static const char *const *stash_urls(struct manifest *m, json_t *jurls)
{
	size_t n = json_array_size(jurls);
	const char **v = arena_alloc(m, n * sizeof(*v), _Alignof(const char *));
	if (!v)
		return NULL;
	for (size_t k = 0; k < n; k++) {
		json_t *u = json_array_get(jurls, k);
		v[k] = stash(m, json_string_value(u), json_string_length(u));
		if (!v[k])
			return NULL;
	}
	return v;
}

/* A free slot at the end of m->files; NULL when out of memory. */
static struct sstf_file *new_slot(struct manifest *m)
{
	if (m->nfiles == m->cap) {
		size_t cap = m->cap ? m->cap * 2 : FILES_MIN;
		if (cap < m->cap || cap > SIZE_MAX / sizeof(*m->files))
			return NULL;
		struct sstf_file *f = realloc(m->files, cap * sizeof(*f));
		if (!f)
			return NULL;
		m->files = f;
		m->cap = cap;
	}
	return &m->files[m->nfiles];
}

/* Validates entry i and appends it to the manifest. */
static int add_entry(struct loader *ld, size_t i, json_t *entry)
{
	if (!json_is_object(entry)) {
		fail(ld, "files[%zu]: must be an object", i);
		return -1;
	}

	json_t *jname = json_object_get(entry, "name");
	if (!jname) {
		fail_entry(ld, i, NULL, "missing \"name\"");
		return -1;
	}
	if (!json_is_string(jname)) {
		fail_entry(ld, i, NULL, "\"name\" must be a string");
		return -1;
	}
	/* A "\u0000" would silently cut the name short as a C string. */
	if (strlen(json_string_value(jname)) != json_string_length(jname)) {
		fail_entry(ld, i, jname, "name contains a NUL byte");
		return -1;
	}

	json_t *jsize = json_object_get(entry, "size");
	if (!jsize) {
		fail_entry(ld, i, jname, "missing \"size\"");
		return -1;
	}
	if (!json_is_integer(jsize) || json_integer_value(jsize) < 0) {
		fail_entry(ld, i, jname, "\"size\" must be a non-negative integer");
		return -1;
	}
	uint64_t size = (uint64_t)json_integer_value(jsize);
	if (ld->sum > UINT64_MAX - size) {
		fail_entry(ld, i, jname, "sizes add up to more than 2^64 - 1");
		return -1;
	}
	ld->sum += size;

	int have[NDIGEST_KEYS];
	for (size_t k = 0; k < NDIGEST_KEYS; k++)
		if (check_digest(ld, i, entry, jname, digest_keys[k].key,
		                 digest_keys[k].digits, &have[k]))
			return -1;
	/* The digest checked: auto takes the first the entry has, cheapest
	 * per byte first (see manifest.h); the others, theirs. */
	enum sstf_digest_kind kind = SSTF_DIGEST_NONE;
	const char *key = NULL;
	if (ld->verify != MANIFEST_VERIFY_NONE) {
		const char *wanted = NULL;
		for (size_t k = 0; k < NDIGEST_KEYS && !key; k++) {
			if (ld->verify != MANIFEST_VERIFY_AUTO &&
			    ld->verify != digest_keys[k].verify)
				continue;
			wanted = digest_keys[k].key;
			if (have[k]) {
				key = digest_keys[k].key;
				kind = digest_keys[k].kind;
			}
		}
		if (!key && ld->verify == MANIFEST_VERIFY_AUTO) {
			fail_entry(ld, i, jname,
			           "no digest; give \"xxh3\" (16 hex) or \"xxh128\" "
			           "or \"md5\" (32 hex each), or fetch with "
			           "verify=none");
			return -1;
		}
		if (!key) {
			fail_entry(ld, i, jname,
			           "no \"%s\" digest, which verify=%s needs for every "
			           "entry",
			           wanted, wanted);
			return -1;
		}
	}

	json_t *jurl = json_object_get(entry, "url");
	if (jurl && !is_c_string(jurl)) {
		fail_entry(ld, i, jname, "\"url\" must be a string without NUL bytes");
		return -1;
	}
	json_t *jurls;
	if (check_urls(ld, i, entry, jname, jurl, &jurls))
		return -1;

	struct manifest *m = ld->m;
	struct sstf_file *f = new_slot(m);
	if (!f) {
		fail(ld, "files[%zu]: out of memory", i);
		return -1;
	}
	/* Every field we do not set, the reserved words included, must be
	 * zero: the engine refuses an entry whose reserved words are not. */
	memset(f, 0, sizeof(*f));
	f->name = stash(m, json_string_value(jname), json_string_length(jname));
	/* No "url": NULL, and the batch's base_url supplies it (manifest.h). */
	f->url = jurl ? stash(m, json_string_value(jurl), json_string_length(jurl))
	              : NULL;
	if (jurls) {
		f->urls = stash_urls(m, jurls);
		f->nurls = json_array_size(jurls);
	}
	f->size = size;
	f->digest_kind = kind;
	if (kind == SSTF_DIGEST_NONE) {
		f->digest_hex = "";
	} else {
		json_t *d = json_object_get(entry, key);
		f->digest_hex = stash(m, json_string_value(d), json_string_length(d));
	}
	if (!f->name || (jurl && !f->url) || (jurls && !f->urls) ||
	    !f->digest_hex) {
		fail(ld, "files[%zu]: out of memory", i);
		return -1;
	}
	m->nfiles++;
	return 0;
}

/* "files[i]: ", the context of entry i's messages; formatted only for a
 * message, as a snprintf per entry shows in a million-entry load. */
#define ENTRY_CTX_LEN 48
static const char *entry_ctx(char buf[ENTRY_CTX_LEN], size_t i)
{
	snprintf(buf, ENTRY_CTX_LEN, "files[%zu]: ", i);
	return buf;
}

/* The "files" array, from its '[' (peek() has returned the first byte of
 * the value). */
static int parse_files(struct loader *ld, int c)
{
	struct reader *r = &ld->r;
	if (c != '[') {
		fail(ld, "\"files\" must be an array");
		return -1;
	}
	consume(r, 1);
	c = peek(r);
	if (c == ']') {
		consume(r, 1);
		return 0;
	}
	for (size_t i = 0;; i++) {
		char ctx[ENTRY_CTX_LEN];
		if (c < 0) {
			fail_expected(ld, c, entry_ctx(ctx, i), "an entry");
			return -1;
		}
		json_t *entry = NULL;
		json_error_t e;
		struct where w;
		enum decoded d = decode(r, ld->entry_cap, &entry, &e, &w);
		if (d != DEC_OK) {
			fail_decode(ld, d, &e, &w, entry_ctx(ctx, i), ld->entry_cap,
			            "entry");
			return -1;
		}
		int rc = add_entry(ld, i, entry);
		json_decref(entry);
		if (rc)
			return -1;

		c = peek(r);
		if (c == ']') {
			consume(r, 1);
			return 0;
		}
		if (c != ',') {
			fail_expected(ld, c, entry_ctx(ctx, i),
			              "',' or ']' after the entry");
			return -1;
		}
		consume(r, 1);
		c = peek(r);
	}
}

/* One top-level member, from the '"' of its key. */
static int parse_member(struct loader *ld)
{
	struct reader *r = &ld->r;
	json_t *key = NULL, *value = NULL;
	json_error_t e;
	struct where w, kw = next_where(r);
	int rc = -1;

	enum decoded d = decode(r, ld->value_cap, &key, &e, &w);
	if (d != DEC_OK) {
		fail_decode(ld, d, &e, &w, "key: ", ld->value_cap, "key");
		return -1;
	}
	/* It started with '"', so it is a string; the check keeps that
	 * visible. */
	if (!json_is_string(key)) {
		fail_at(ld, &kw, "", "expected a string key");
		goto out;
	}
	const char *k = json_string_value(key);
	size_t klen = json_string_length(key);
	char q[QUOTE_MAX * 4 + 8];
	quote(k, klen, q, sizeof(q));
	if (json_object_getn(ld->seen, k, klen)) {
		/* Which of the two would win is a guess, as inside entries. */
		fail_at(ld, &kw, "", "duplicate object key \"%s\"", q);
		goto out;
	}
	if (json_object_setn_new(ld->seen, k, klen, json_null())) {
		fail(ld, "out of memory");
		goto out;
	}

	int c = peek(r);
	if (c != ':') {
		fail_expected(ld, c, "", "':' after the key");
		goto out;
	}
	consume(r, 1);
	c = peek(r);
	char ctx[QUOTE_MAX * 4 + 16];
	snprintf(ctx, sizeof(ctx), "\"%s\": ", q);
	if (c < 0) {
		fail_expected(ld, c, ctx, "a value");
		goto out;
	}

	if (klen == 5 && memcmp(k, "files", 5) == 0) {
		ld->have_files = 1;
		rc = parse_files(ld, c);
		goto out;
	}
	d = decode(r, ld->value_cap, &value, &e, &w);
	if (d != DEC_OK) {
		fail_decode(ld, d, &e, &w, ctx, ld->value_cap, "value");
		goto out;
	}
	if (klen == 15 && memcmp(k, "file_total_size", 15) == 0) {
		if (!json_is_integer(value) || json_integer_value(value) < 0) {
			fail(ld, "\"file_total_size\" must be a non-negative integer");
			goto out;
		}
		ld->have_total = 1;
		ld->total = (uint64_t)json_integer_value(value);
	}
	/* Any other key: decoded (so its syntax is checked) and dropped. */
	rc = 0;
out:
	json_decref(value);
	json_decref(key);
	return rc;
}

/* The whole document. */
static int parse_document(struct loader *ld)
{
	struct reader *r = &ld->r;
	int c = peek(r);
	if (c == PEEK_ERROR) {
		fail(ld, "read error: %s", strerror(r->read_errno));
		return -1;
	}
	if (c != '{') {
		fail(ld, "the top level must be an object with a \"files\" array");
		return -1;
	}
	consume(r, 1);
	c = peek(r);
	if (c == '}') {
		consume(r, 1);
	} else {
		const char *want = "a string key or '}'";
		for (;;) {
			if (c != '"') {
				fail_expected(ld, c, "", want);
				return -1;
			}
			if (parse_member(ld))
				return -1;
			c = peek(r);
			if (c == '}') {
				consume(r, 1);
				break;
			}
			if (c != ',') {
				fail_expected(ld, c, "", "',' or '}' after the value");
				return -1;
			}
			consume(r, 1);
			c = peek(r);
			want = "a string key";
		}
	}
	c = peek(r);
	if (c != PEEK_EOF) {
		fail_expected(ld, c, "", "the end of the input after the top-level "
		                         "object");
		return -1;
	}

	if (!ld->have_files) {
		fail(ld, "missing \"files\" array");
		return -1;
	}
	if (ld->have_total && ld->total != ld->sum) {
		fail(ld,
		     "\"file_total_size\" is %" PRIu64
		     " but the %zu files' sizes add up to %" PRIu64,
		     ld->total, ld->m->nfiles, ld->sum);
		return -1;
	}
	return 0;
}

int manifest_parse_window(FILE *in, const char *label,
                          enum manifest_verify verify, size_t buf_size,
                          struct manifest **out, char *err, size_t errlen)
{
	if (buf_size < MANIFEST_BUF_MIN)
		buf_size = MANIFEST_BUF_MIN;
	size_t value_cap = buf_size - MANIFEST_BUF_SLACK;
	struct loader ld = {
		.label = label,
		.err = err,
		.errlen = errlen,
		.verify = verify,
		.r = {.in = in, .size = buf_size, .at = {.line = 1}},
		.value_cap = value_cap,
		.entry_cap = value_cap < MANIFEST_ENTRY_MAX ? value_cap
		                                            : MANIFEST_ENTRY_MAX,
	};
	int rc = -1;

	if (err && errlen)
		err[0] = '\0';
	ld.m = calloc(1, sizeof(*ld.m));
	ld.r.buf = malloc(buf_size);
	ld.seen = json_object();
	if (!ld.m || !ld.r.buf || !ld.seen) {
		fail(&ld, "out of memory");
		goto out;
	}
	if (parse_document(&ld))
		goto out;

	struct manifest *m = ld.m;
	m->total_size = ld.sum;
	/* Give back what the last doubling did not use. A failed shrink
	 * keeps the larger block, which is as good. */
	if (m->nfiles && m->nfiles < m->cap) {
		struct sstf_file *f = realloc(m->files, m->nfiles * sizeof(*f));
		if (f) {
			m->files = f;
			m->cap = m->nfiles;
		}
	}
	*out = m;
	ld.m = NULL;
	rc = 0;
out:
	manifest_free(ld.m);
	json_decref(ld.seen);
	free(ld.r.buf);
	return rc;
}

int manifest_parse(FILE *in, const char *label, enum manifest_verify verify,
                   struct manifest **out, char *err, size_t errlen)
{
	return manifest_parse_window(in, label, verify, MANIFEST_BUF_SIZE, out,
	                             err, errlen);
}

int manifest_load(const char *path, enum manifest_verify verify,
                  struct manifest **out, char *err, size_t errlen)
{
	FILE *in = fopen(path, "rb");
	if (!in) {
		if (err && errlen)
			snprintf(err, errlen, "%s: cannot open: %s", path,
			         strerror(errno));
		return -1;
	}
	int rc = manifest_parse(in, path, verify, out, err, errlen);
	fclose(in);
	return rc;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	struct manifest_chunk *c = m->chunks;
	while (c) {
		struct manifest_chunk *next = c->next;
		free(c);
		c = next;
	}
	free(m->files);
	free(m);
}

/* ------------------------------------------------------------------------ */
/* Manifests made in memory: listings, and manifests fetched from a URL    */

struct manifest *manifest_new(void)
{
	return calloc(1, sizeof(struct manifest));
}

int manifest_add(struct manifest *m, const char *name, size_t name_len,
                 uint64_t size)
{
	if (m->total_size > UINT64_MAX - size)
		return -EOVERFLOW;
	struct sstf_file *f = new_slot(m);
	if (!f)
		return -ENOMEM;
	/* Every field not set here, the reserved words included, is zero. */
	memset(f, 0, sizeof(*f));
	f->name = stash(m, name, name_len);
	if (!f->name)
		return -ENOMEM;
	f->size = size;
	f->digest_kind = SSTF_DIGEST_NONE;
	f->digest_hex = "";
	m->total_size += size;
	m->nfiles++;
	return 0;
}

int manifest_parse_mem(const void *buf, size_t len, const char *label,
                       enum manifest_verify verify, struct manifest **out,
                       char *err, size_t errlen)
{
	/* fmemopen() of zero bytes is refused by some C libraries; one
	 * space parses the same (the document is empty either way). */
	FILE *in = len ? fmemopen((void *)buf, len, "r") : fmemopen(" ", 1, "r");
	if (!in) {
		if (err && errlen)
			snprintf(err, errlen, "%s: %s", label, strerror(errno));
		return -1;
	}
	int rc = manifest_parse(in, label, verify, out, err, errlen);
	fclose(in);
	return rc;
}

const char *manifest_verified(const struct manifest *m)
{
	size_t none = 0;
	for (size_t i = 0; i < m->nfiles; i++)
		none += m->files[i].digest_kind == SSTF_DIGEST_NONE;
	return none == 0 && m->nfiles ? "digest" : none == m->nfiles ? "length" : "mixed";
}
