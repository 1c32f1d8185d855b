/*
 * manifest.c - load a JSON manifest into a batch's file array.
 *
 * This file checks what only the JSON can tell: types, a NUL hidden inside
 * a string (invisible once it is a C string), digests of the right length,
 * which digest a verify mode needs, and file_total_size. The rules for the
 * entries themselves (names, URL schemes, sizes, duplicates) belong to the
 * engine alone: the tool runs sstf_check_batch() on the result, the same
 * code sstf_submit() runs, so that the two can never disagree.
 */
#include "manifest.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* How much of a name an error message shows; a PATH_MAX name would bury
 * the reason. */
#define QUOTE_MAX 80

/* The state of one load, so that error helpers can name the file. */
struct loader {
	const char *path;
	char *err;
	size_t errlen;
};

static void fail(struct loader *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void fail(struct loader *ld, const char *fmt, ...)
{
	if (!ld->err || !ld->errlen)
		return;
	int n = snprintf(ld->err, ld->errlen, "%s: ", ld->path);
	if (n < 0 || (size_t)n >= ld->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(ld->err + n, ld->errlen - (size_t)n, fmt, ap);
	va_end(ap);
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

/*
 * Checks the optional digest member `key` of entry i: absent is fine (*ok
 * stays 0), present must be a string of exactly `digits` hex digits.
 * Returns -1 after fail_entry() when present and malformed.
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

static int unreserved(unsigned char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
	       c == '~';
}

size_t manifest_join_url(const char *base_url, const char *name, char *out,
                         size_t outlen)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t blen = strlen(base_url);
	/* Keep "scheme://" whole: "file:///" joined to "a" is "file:///a". */
	const char *sep = strstr(base_url, "://");
	size_t keep = sep ? (size_t)(sep - base_url) + 3 : 0;
	while (blen > keep && base_url[blen - 1] == '/')
		blen--;

	size_t n = 0;
	/* put() writes what fits and always counts, like snprintf. */
#define put(ch)                                 \
	do {                                    \
		if (n + 1 < outlen)             \
			out[n] = (char)(ch);    \
		n++;                            \
	} while (0)
	for (size_t k = 0; k < blen; k++)
		put(base_url[k]);
	put('/');
	for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
		if (unreserved(*p) || *p == '/') {
			put(*p);
		} else {
			put('%');
			put(hex[*p >> 4]);
			put(hex[*p & 15]);
		}
	}
#undef put
	if (outlen)
		out[n < outlen ? n : outlen - 1] = '\0';
	return n;
}

/* What pass one learns of an entry, for pass two to copy. */
struct entry_plan {
	json_t *name;
	json_t *url;    /* the entry's own "url", or NULL */
	json_t *digest; /* the chosen digest string; NULL for verify=none */
	enum sstf_digest_kind kind;
	size_t url_len; /* excluding the NUL */
};

/* Validates entry i; fills *plan and adds its size to *sum. */
static int check_entry(struct loader *ld, size_t i, json_t *entry,
                       const char *base_url, enum manifest_verify verify,
                       struct entry_plan *plan, uint64_t *sum)
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
	if (*sum > UINT64_MAX - size) {
		fail_entry(ld, i, jname, "sizes add up to more than 2^64 - 1");
		return -1;
	}
	*sum += size;

	int have3, have128;
	if (check_digest(ld, i, entry, jname, "xxh3", 16, &have3) ||
	    check_digest(ld, i, entry, jname, "xxh128", 32, &have128))
		return -1;
	switch (verify) {
	case MANIFEST_VERIFY_AUTO:
		if (!have3 && !have128) {
			fail_entry(ld, i, jname,
			           "no digest; give \"xxh3\" (16 hex) or \"xxh128\" "
			           "(32 hex), or fetch with verify=none");
			return -1;
		}
		/* xxh3 wins when both are there: see manifest.h. */
		plan->kind = have3 ? SSTF_DIGEST_XXH3 : SSTF_DIGEST_XXH128;
		break;
	case MANIFEST_VERIFY_XXH3:
	case MANIFEST_VERIFY_XXH128: {
		int want3 = verify == MANIFEST_VERIFY_XXH3;
		if (want3 ? !have3 : !have128) {
			fail_entry(ld, i, jname,
			           "no \"%s\" digest, which verify=%s needs for every "
			           "entry",
			           want3 ? "xxh3" : "xxh128", want3 ? "xxh3" : "xxh128");
			return -1;
		}
		plan->kind = want3 ? SSTF_DIGEST_XXH3 : SSTF_DIGEST_XXH128;
		break;
	}
	case MANIFEST_VERIFY_NONE:
		plan->kind = SSTF_DIGEST_NONE;
		break;
	}
	plan->digest = plan->kind == SSTF_DIGEST_NONE
		? NULL
		: json_object_get(entry, plan->kind == SSTF_DIGEST_XXH3 ? "xxh3" : "xxh128");
	plan->name = jname;

	json_t *jurl = json_object_get(entry, "url");
	plan->url = NULL;
	if (jurl) {
		if (!json_is_string(jurl) ||
		    strlen(json_string_value(jurl)) != json_string_length(jurl)) {
			fail_entry(ld, i, jname,
			           "\"url\" must be a string without NUL bytes");
			return -1;
		}
		plan->url = jurl;
		plan->url_len = json_string_length(jurl);
	} else {
		plan->url_len =
			manifest_join_url(base_url, json_string_value(jname), NULL, 0);
	}
	return 0;
}

/* Appends len bytes and a NUL at *cursor; returns where they start. */
static char *stash(char **cursor, const char *s, size_t len)
{
	char *at = *cursor;
	memcpy(at, s, len);
	at[len] = '\0';
	*cursor = at + len + 1;
	return at;
}

int manifest_load(const char *path, const char *base_url,
                  enum manifest_verify verify, struct manifest **out, char *err,
                  size_t errlen)
{
	struct loader ld = {.path = path, .err = err, .errlen = errlen};
	struct manifest *m = NULL;
	struct entry_plan *plans = NULL;
	json_error_t jerr;

	if (err && errlen)
		err[0] = '\0';

	/* ALLOW_NUL lets a "\u0000" inside a name reach check_entry(), which
	 * names the entry, rather than failing the whole parse. */
	json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL,
	                              &jerr);
	if (!root) {
		if (jerr.line > 0)
			fail(&ld, "line %d, column %d: %s", jerr.line, jerr.column,
			     jerr.text);
		else
			fail(&ld, "%s", jerr.text);
		return -1;
	}
	if (!json_is_object(root)) {
		fail(&ld, "the top level must be an object with a \"files\" array");
		goto fail;
	}
	json_t *files = json_object_get(root, "files");
	if (!json_is_array(files)) {
		fail(&ld, "%s", files ? "\"files\" must be an array"
		                      : "missing \"files\" array");
		goto fail;
	}

	size_t n = json_array_size(files);
	plans = calloc(n ? n : 1, sizeof(*plans));
	if (!plans) {
		fail(&ld, "out of memory");
		goto fail;
	}

	/* Pass one: validate, and size the string block. */
	uint64_t sum = 0;
	size_t strbytes = 0;
	for (size_t i = 0; i < n; i++) {
		struct entry_plan *p = &plans[i];
		if (check_entry(&ld, i, json_array_get(files, i), base_url, verify, p,
		                &sum))
			goto fail;
		size_t need = json_string_length(p->name) + 1 + p->url_len + 1 +
		              (p->digest ? json_string_length(p->digest) : 0) + 1;
		if (p->url_len > SIZE_MAX / 2 || strbytes > SIZE_MAX - need) {
			fail(&ld, "files[%zu]: manifest too large", i);
			goto fail;
		}
		strbytes += need;
	}

	json_t *jtotal = json_object_get(root, "file_total_size");
	if (jtotal) {
		if (!json_is_integer(jtotal) || json_integer_value(jtotal) < 0) {
			fail(&ld, "\"file_total_size\" must be a non-negative integer");
			goto fail;
		}
		if ((uint64_t)json_integer_value(jtotal) != sum) {
			fail(&ld,
			     "\"file_total_size\" is %" PRIu64
			     " but the %zu files' sizes add up to %" PRIu64,
			     (uint64_t)json_integer_value(jtotal), n, sum);
			goto fail;
		}
	}

	/* Pass two: copy into memory the manifest owns. */
	m = calloc(1, sizeof(*m));
	if (!m || !(m->files = calloc(n ? n : 1, sizeof(*m->files))) ||
	    !(m->strings = malloc(strbytes ? strbytes : 1))) {
		fail(&ld, "out of memory");
		goto fail;
	}
	m->nfiles = n;
	m->total_size = sum;
	char *cursor = m->strings;
	for (size_t i = 0; i < n; i++) {
		struct entry_plan *p = &plans[i];
		struct sstf_file *f = &m->files[i];
		json_t *entry = json_array_get(files, i);

		f->name = stash(&cursor, json_string_value(p->name),
		                json_string_length(p->name));
		if (p->url) {
			f->url = stash(&cursor, json_string_value(p->url), p->url_len);
		} else {
			manifest_join_url(base_url, f->name, cursor, p->url_len + 1);
			f->url = cursor;
			cursor += p->url_len + 1;
		}
		f->size = (uint64_t)json_integer_value(json_object_get(entry, "size"));
		f->digest_kind = p->kind;
		f->digest_hex = p->digest
			? stash(&cursor, json_string_value(p->digest),
			        json_string_length(p->digest))
			: stash(&cursor, "", 0);
	}

	free(plans);
	json_decref(root);
	*out = m;
	return 0;

fail:
	manifest_free(m);
	free(plans);
	json_decref(root);
	return -1;
}

void manifest_free(struct manifest *m)
{
	if (!m)
		return;
	free(m->files);
	free(m->strings);
	free(m);
}
