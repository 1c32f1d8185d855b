/*
 * digest.h - streaming digests (xxHash, MD5) and their canonical hex form.
 *
 * The canonical form is the one xxhsum and md5sum print: the big-endian
 * bytes of the hash value, as lowercase hex (XXH3-64: 8 bytes, XXH128: 16
 * bytes, high half first; MD5: its 16 bytes in order).
 */
#ifndef SSTF_DIGEST_H
#define SSTF_DIGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#define XXH_STATIC_LINKING_ONLY /* XXH3_state_t is embedded, not heap-allocated */
#include <xxhash.h>

#include "sstfetch.h"

#define SSTF__DIGEST_MAX 16

/* Canonical digest bytes; `len` is 0 (none), 8 or 16. */
struct sstf__digest {
	uint8_t bytes[SSTF__DIGEST_MAX];
	uint8_t len;
};

struct evp_md_ctx_st; /* OpenSSL's EVP_MD_CTX */

/*
 * Streaming state for one file, hashed strictly in file order. XXH3 and
 * XXH128 live in `state`, which can be copied and saved (checkpoints). MD5
 * lives in an OpenSSL EVP_MD_CTX, whose state cannot be saved or copied
 * without an allocation: sstf__hasher_init() makes it once (the engine does
 * so per FILE slot at its start), every reset re-initialises it in place,
 * sstf__hasher_fini() frees it. A hasher used only for xxHash kinds needs
 * neither init nor fini.
 */
struct sstf__hasher {
	XXH3_state_t state; /* 64-byte aligned by its own declaration */
	enum sstf_digest_kind kind;
	struct evp_md_ctx_st *md5; /* NULL until sstf__hasher_init() */
	bool md5_ended; /* MD5's final consumed the state; reset before use */
};

/* The value of one hex digit, either case; -1 for anything else. */
static inline int sstf__hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Number of hex digits of a kind's digest, 0 for NONE, -1 for unknown. */
int sstf__digest_hexlen(enum sstf_digest_kind kind);

/*
 * Parses hex (either case, exactly the kind's length) into canonical bytes.
 * Returns 0 or -SSTF_EBADENTRY. Any thread.
 */
int sstf__digest_parse(enum sstf_digest_kind kind, const char *hex,
                       struct sstf__digest *out);

/* Writes the digest as lowercase hex plus NUL; out holds 33 bytes. */
void sstf__digest_format(const struct sstf__digest *d, char out[33]);

/*
 * Makes h ready for every kind: allocates its MD5 context (OpenSSL's
 * allocator, not the engine's hooks). Returns 0 or -ENOMEM.
 */
int sstf__hasher_init(struct sstf__hasher *h);
/* Frees what sstf__hasher_init() made. A zeroed or fini'd h is a no-op. */
void sstf__hasher_fini(struct sstf__hasher *h);

/*
 * Starts a digest of `kind` over, forgetting what h held. For MD5, h must
 * have been through sstf__hasher_init(). Returns 0; for MD5 only, -EINVAL
 * without init, -ENOTSUP when OpenSSL has no MD5 (e.g. a FIPS-only
 * configuration), -EIO when OpenSSL fails; sstf__digest_error() then says
 * why. xxHash kinds never fail.
 */
int sstf__hasher_reset(struct sstf__hasher *h, enum sstf_digest_kind kind);
/* Adds bytes. Returns 0, or (MD5 only) -EIO when OpenSSL fails, -EINVAL
 * after a final without a reset. */
int sstf__hasher_update(struct sstf__hasher *h, const void *data, size_t len);
/*
 * The digest of every byte given since the reset. xxHash kinds: the state
 * is left as it was, so hashing may go on. MD5: the state is consumed, and
 * until the next reset update and final fail with -EINVAL (OpenSSL 3.0
 * would hand back a digest of garbage). Returns 0, or (MD5 only) -EIO when
 * OpenSSL fails or -EINVAL; *out is then empty, equal to no digest.
 */
int sstf__hasher_final(struct sstf__hasher *h, struct sstf__digest *out);

/*
 * Writes why the last OpenSSL call of this thread failed (NUL-terminated,
 * truncated to len) and empties this thread's OpenSSL error queue.
 */
void sstf__digest_error(char *buf, size_t len);

/* 1 when both digests have the same kind length and bytes. */
int sstf__digest_equal(const struct sstf__digest *a, const struct sstf__digest *b);

#endif
