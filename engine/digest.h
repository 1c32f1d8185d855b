/*
 * digest.h - streaming xxHash digests and their canonical hex form.
 *
 * The canonical form is the one xxhsum prints: the big-endian bytes of the
 * hash value, as lowercase hex (XXH3-64: 8 bytes, XXH128: 16 bytes, high
 * half first).
 */
#ifndef SSTF_DIGEST_H
#define SSTF_DIGEST_H

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

/* Streaming state for one file, hashed strictly in file order. */
struct sstf__hasher {
	XXH3_state_t state; /* 64-byte aligned by its own declaration */
	enum sstf_digest_kind kind;
};

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

void sstf__hasher_reset(struct sstf__hasher *h, enum sstf_digest_kind kind);
void sstf__hasher_update(struct sstf__hasher *h, const void *data, size_t len);
void sstf__hasher_final(const struct sstf__hasher *h, struct sstf__digest *out);

/* 1 when both digests have the same kind length and bytes. */
int sstf__digest_equal(const struct sstf__digest *a, const struct sstf__digest *b);

#endif
