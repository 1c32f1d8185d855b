/*
 * digest.c - XXH3-64 / XXH128 / MD5 streaming and canonical hex.
 *
 * The loop thread feeds each file's bytes in file order, one full buffer at
 * a time, so a file's digest is known the moment its last write is queued.
 *
 * MD5 goes through OpenSSL's EVP API. Its implementation is fetched once
 * per process (EVP_MD_fetch; EVP_md5() would fetch it again at every
 * init), and each hasher keeps one EVP_MD_CTX for its whole life, so a
 * file costs the engine no allocation. OpenSSL 3.0 itself still frees and
 * re-allocates the provider's small context inside every EVP_DigestInit_ex2
 * (3.1 and later reuse it); that memory is OpenSSL's, outside the engine's
 * allocator hooks, like libcurl's.
 */
#include "digest.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <pthread.h>

#if defined(__x86_64__) || defined(__i386__)
/* Routes the update calls to the variants that pick AVX2/SSE2 at run time. */
#include <xxh_x86dispatch.h>
#endif

#include <errno.h>
#include <stdio.h>
#include <string.h>

int sstf__digest_hexlen(enum sstf_digest_kind kind)
{
	switch (kind) {
	case SSTF_DIGEST_NONE:
		return 0;
	case SSTF_DIGEST_XXH3:
		return 16;
	case SSTF_DIGEST_XXH128:
	case SSTF_DIGEST_MD5:
		return 32;
	}
	return -1;
}

int sstf__digest_parse(enum sstf_digest_kind kind, const char *hex,
                       struct sstf__digest *out)
{
	int n = sstf__digest_hexlen(kind);
	memset(out, 0, sizeof(*out));
	if (n < 0)
		return -SSTF_EBADENTRY;
	if (n == 0)
		return 0;
	if (!hex || strlen(hex) != (size_t)n)
		return -SSTF_EBADENTRY;
	for (int i = 0; i < n / 2; i++) {
		int hi = sstf__hexval(hex[2 * i]), lo = sstf__hexval(hex[2 * i + 1]);
		if (hi < 0 || lo < 0)
			return -SSTF_EBADENTRY;
		out->bytes[i] = (uint8_t)(hi << 4 | lo);
	}
	out->len = (uint8_t)(n / 2);
	return 0;
}

void sstf__digest_format(const struct sstf__digest *d, char out[33])
{
	static const char digits[] = "0123456789abcdef";
	for (unsigned i = 0; i < d->len; i++) {
		out[2 * i] = digits[d->bytes[i] >> 4];
		out[2 * i + 1] = digits[d->bytes[i] & 15];
	}
	out[2 * d->len] = '\0';
}

static pthread_once_t md5_once = PTHREAD_ONCE_INIT;
static EVP_MD *md5_md; /* NULL when OpenSSL offers no MD5; never freed */

static void md5_fetch(void)
{
	md5_md = EVP_MD_fetch(NULL, "MD5", NULL);
}

int sstf__hasher_init(struct sstf__hasher *h)
{
	h->kind = SSTF_DIGEST_NONE;
	h->md5_ended = false;
	h->md5 = EVP_MD_CTX_new();
	return h->md5 ? 0 : -ENOMEM;
}

void sstf__hasher_fini(struct sstf__hasher *h)
{
	EVP_MD_CTX_free(h->md5);
	h->md5 = NULL;
}

void sstf__digest_error(char *buf, size_t len)
{
	unsigned long code = ERR_get_error();
	if (len == 0)
		return;
	if (code)
		ERR_error_string_n(code, buf, len);
	else
		snprintf(buf, len, "no OpenSSL error recorded");
	ERR_clear_error();
}

int sstf__hasher_reset(struct sstf__hasher *h, enum sstf_digest_kind kind)
{
	h->kind = kind;
	h->md5_ended = false;
	if (kind == SSTF_DIGEST_MD5) {
		if (!h->md5)
			return -EINVAL;
		pthread_once(&md5_once, md5_fetch);
		if (!md5_md)
			return -ENOTSUP;
		return EVP_DigestInit_ex2(h->md5, md5_md, NULL) == 1 ? 0 : -EIO;
	}
	/* XXH3 and XXH128 share one state type and one reset. */
	if (kind == SSTF_DIGEST_XXH128)
		XXH3_128bits_reset(&h->state);
	else
		XXH3_64bits_reset(&h->state);
	return 0;
}

int sstf__hasher_update(struct sstf__hasher *h, const void *data, size_t len)
{
	if (h->kind == SSTF_DIGEST_XXH128)
		XXH3_128bits_update(&h->state, data, len);
	else if (h->kind == SSTF_DIGEST_XXH3)
		XXH3_64bits_update(&h->state, data, len);
	else if (h->kind == SSTF_DIGEST_MD5) {
		if (!h->md5 || h->md5_ended)
			return -EINVAL;
		return EVP_DigestUpdate(h->md5, data, len) == 1 ? 0 : -EIO;
	}
	return 0;
}

int sstf__hasher_final(struct sstf__hasher *h, struct sstf__digest *out)
{
	memset(out, 0, sizeof(*out));
	if (h->kind == SSTF_DIGEST_MD5) {
		unsigned int n = 0;
		if (!h->md5 || h->md5_ended)
			return -EINVAL;
		h->md5_ended = true;
		if (EVP_DigestFinal_ex(h->md5, out->bytes, &n) != 1 || n != 16) {
			memset(out, 0, sizeof(*out));
			return -EIO;
		}
		out->len = 16;
	} else if (h->kind == SSTF_DIGEST_XXH128) {
		XXH128_canonical_t c;
		XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&h->state));
		memcpy(out->bytes, c.digest, 16);
		out->len = 16;
	} else if (h->kind == SSTF_DIGEST_XXH3) {
		XXH64_canonical_t c;
		XXH64_canonicalFromHash(&c, XXH3_64bits_digest(&h->state));
		memcpy(out->bytes, c.digest, 8);
		out->len = 8;
	}
	return 0;
}

int sstf__digest_equal(const struct sstf__digest *a, const struct sstf__digest *b)
{
	return a->len == b->len && memcmp(a->bytes, b->bytes, a->len) == 0;
}

int sstf_digest_hex(enum sstf_digest_kind kind, const void *data, size_t len,
                    char out[33])
{
	if (sstf__digest_hexlen(kind) <= 0)
		return -EINVAL;
	struct sstf__hasher h;
	struct sstf__digest d;
	h.md5 = NULL;
	int ret = kind == SSTF_DIGEST_MD5 ? sstf__hasher_init(&h) : 0;
	if (ret == 0)
		ret = sstf__hasher_reset(&h, kind);
	if (ret == 0)
		ret = sstf__hasher_update(&h, data, len);
	if (ret == 0)
		ret = sstf__hasher_final(&h, &d);
	sstf__hasher_fini(&h);
	if (ret < 0) {
		ERR_clear_error(); /* the caller's thread keeps no error of ours */
		out[0] = '\0';
		return ret;
	}
	sstf__digest_format(&d, out);
	return (int)d.len * 2;
}
