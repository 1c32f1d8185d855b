/*
 * record.c - what the engine keeps in a file's extended attributes.
 *
 * Two records, both only ever read back by this engine on this machine:
 *
 *   - The publish record (SSTF__XATTR_VERIFIED), set on a temporary file
 *     once it is verified and (with fsync on) its data is durable, just
 *     before it is renamed to its final name: the name's hash, digest kind
 *     and bytes, size, and the file's mtime. A later generation trusts a file in place that carries
 *     a record matching what it wants to fetch and the file's current size
 *     and mtime: a write to the file changes its mtime, so the record no
 *     longer matches and the file is re-hashed instead. A writer killed
 *     between the record and the rename leaves a whole verified temporary:
 *     the sweep adopts it like a partial at its end, and the next run only
 *     publishes it. Nothing protects
 *     against someone who rewrites a file and forges its mtime back; the
 *     strict mode (SSTF_EXISTING_REHASH) is there for that.
 *
 *   - The checkpoint (SSTF__XATTR_PARTIAL), set on a temporary file once
 *     every byte below an offset is durable: the name's hash, size, digest,
 *     that offset, and the XXH3 streaming state after hashing exactly those
 *     bytes (XXH3 and XXH128 files only: MD5's OpenSSL state cannot be
 *     saved, so MD5 files take none, and sstf__partial_fits() refuses an
 *     MD5 partial that some other build may have left). XXH3_state_t is
 *     saved as bytes; its one pointer, extSecret, points at the library's
 *     built-in secret (the engine never uses another), which is only valid
 *     in the process that saved it, so the reader re-points it at its own
 *     (see resume_partial() in sink.c). The
 *     record carries the xxHash version and the state's size, and a
 *     checksum over everything, so that a record from another build, or a
 *     torn one, is refused rather than trusted.
 *
 * Records are in host byte order: they never leave the machine.
 */
#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

#include "internal.h"

#define VERIFIED_MAGIC 0x31565453u /* "STV1" */
#define PARTIAL_MAGIC 0x31505453u  /* "STP1" */

struct verified_rec {
	uint32_t magic;
	uint8_t kind;
	uint8_t digest_len;
	uint8_t pad[2];
	uint64_t name_hash;
	uint64_t size;
	int64_t mtime_sec;
	int64_t mtime_nsec;
	uint8_t digest[SSTF__DIGEST_MAX];
};

struct partial_rec {
	uint32_t magic;
	uint32_t xxh_version; /* XXH_versionNumber() of the writer */
	uint32_t state_size;  /* sizeof(XXH3_state_t) of the writer */
	uint8_t kind;
	uint8_t digest_len;
	uint8_t pad[2];
	uint64_t name_hash;
	uint64_t size;
	uint64_t offset;
	uint8_t digest[SSTF__DIGEST_MAX];
	XXH3_state_t state;
	uint64_t check; /* XXH3-64 of every byte before it */
};

_Static_assert(sizeof(struct verified_rec) <= SSTF__RECORD_MAX &&
	               sizeof(struct partial_rec) <= SSTF__RECORD_MAX,
               "a record must fit struct sstf__record");

uint64_t sstf__name_hash(const char *name)
{
	return XXH3_64bits(name, strlen(name));
}

int sstf__record_verified_make(int fd, const struct sstf__entry *f, struct sstf__record *out)
{
	struct stat st;
	if (fstat(fd, &st) < 0)
		return -errno;
	struct verified_rec r;
	memset(&r, 0, sizeof(r));
	r.magic = VERIFIED_MAGIC;
	r.kind = f->kind;
	r.digest_len = f->digest.len;
	r.name_hash = sstf__name_hash(f->name);
	r.size = f->size;
	r.mtime_sec = (int64_t)st.st_mtim.tv_sec;
	r.mtime_nsec = (int64_t)st.st_mtim.tv_nsec;
	memcpy(r.digest, f->digest.bytes, sizeof(r.digest));
	out->name = SSTF__XATTR_VERIFIED;
	out->len = (uint32_t)sizeof(r);
	memcpy(out->bytes, &r, sizeof(r));
	return 0;
}

int sstf__record_put(int fd, const struct sstf__record *r)
{
	if (fsetxattr(fd, r->name, r->bytes, r->len, 0) < 0)
		return -errno;
	return 0;
}

int sstf__record_verified_set(int fd, const struct sstf__entry *f)
{
	struct sstf__record r;
	int ret = sstf__record_verified_make(fd, f, &r);
	return ret < 0 ? ret : sstf__record_put(fd, &r);
}

bool sstf__record_verified_matches(int fd, const struct stat *st,
                                   const struct sstf__entry *f)
{
	struct verified_rec r;
	ssize_t n = fgetxattr(fd, SSTF__XATTR_VERIFIED, &r, sizeof(r));
	if (n != (ssize_t)sizeof(r) || r.magic != VERIFIED_MAGIC)
		return false;
	return r.kind == f->kind && r.digest_len == f->digest.len &&
	       memcmp(r.digest, f->digest.bytes, f->digest.len) == 0 && r.size == f->size &&
	       r.name_hash == sstf__name_hash(f->name) &&
	       (uint64_t)st->st_size == f->size && r.mtime_sec == (int64_t)st->st_mtim.tv_sec &&
	       r.mtime_nsec == (int64_t)st->st_mtim.tv_nsec;
}

int sstf__record_verified_get(int fd, struct sstf__partial *out)
{
	struct verified_rec r;
	struct stat st;
	ssize_t n = fgetxattr(fd, SSTF__XATTR_VERIFIED, &r, sizeof(r));
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(r) || r.magic != VERIFIED_MAGIC ||
	    r.digest_len > SSTF__DIGEST_MAX)
		return -EBADMSG;
	/* The record vouches for these bytes only as they were. */
	if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != r.size ||
	    r.mtime_sec != (int64_t)st.st_mtim.tv_sec || r.mtime_nsec != (int64_t)st.st_mtim.tv_nsec)
		return -ESTALE;
	memset(out, 0, sizeof(*out));
	out->key.name_hash = r.name_hash;
	out->key.size = r.size;
	out->key.offset = r.size;
	out->key.kind = r.kind;
	out->key.digest.len = r.digest_len;
	memcpy(out->key.digest.bytes, r.digest, sizeof(out->key.digest.bytes));
	return 0;
}

void sstf__record_partial_make(const struct sstf__entry *f, uint64_t offset,
                               const XXH3_state_t *state, struct sstf__record *out)
{
	struct partial_rec r;
	memset(&r, 0, sizeof(r));
	r.magic = PARTIAL_MAGIC;
	r.xxh_version = XXH_versionNumber();
	r.state_size = (uint32_t)sizeof(XXH3_state_t);
	r.kind = f->kind;
	r.digest_len = f->digest.len;
	r.name_hash = sstf__name_hash(f->name);
	r.size = f->size;
	r.offset = offset;
	memcpy(r.digest, f->digest.bytes, sizeof(r.digest));
	memcpy(&r.state, state, sizeof(r.state));
	r.check = XXH3_64bits(&r, offsetof(struct partial_rec, check));
	out->name = SSTF__XATTR_PARTIAL;
	out->len = (uint32_t)sizeof(r);
	memcpy(out->bytes, &r, sizeof(r));
}

int sstf__record_partial_set(int fd, const struct sstf__entry *f, uint64_t offset,
                             const XXH3_state_t *state)
{
	struct sstf__record r;
	sstf__record_partial_make(f, offset, state, &r);
	return sstf__record_put(fd, &r);
}

int sstf__record_partial_get(int fd, struct sstf__partial *out)
{
	struct partial_rec r;
	ssize_t n = fgetxattr(fd, SSTF__XATTR_PARTIAL, &r, sizeof(r));
	if (n < 0)
		return -errno;
	if (n != (ssize_t)sizeof(r) || r.magic != PARTIAL_MAGIC ||
	    r.xxh_version != XXH_versionNumber() || r.state_size != sizeof(XXH3_state_t) ||
	    r.check != XXH3_64bits(&r, offsetof(struct partial_rec, check)) ||
	    r.digest_len > SSTF__DIGEST_MAX || r.offset > r.size)
		return -EBADMSG;
	out->key.name_hash = r.name_hash;
	out->key.size = r.size;
	out->key.offset = r.offset;
	out->key.kind = r.kind;
	out->key.digest.len = r.digest_len;
	memcpy(out->key.digest.bytes, r.digest, sizeof(out->key.digest.bytes));
	memcpy(&out->state, &r.state, sizeof(out->state));
	return 0;
}

bool sstf__partial_fits(const struct sstf__partial_key *p, const struct sstf__entry *f,
                        uint64_t name_hash, bool direct)
{
	if (p->name_hash != name_hash || p->size != f->size || p->kind != f->kind ||
	    p->digest.len != f->digest.len ||
	    memcmp(p->digest.bytes, f->digest.bytes, f->digest.len) != 0)
		return false;
	if (p->offset == 0 || p->offset > f->size)
		return false;
	/* An MD5 file takes no checkpoint (its EVP state cannot be saved), so
	 * a partial record claiming one holds no state we could continue
	 * from: only a whole file's publish record fits. */
	if (f->kind == SSTF_DIGEST_MD5 && p->offset != f->size)
		return false;
	/* A whole file (a publish record) needs no alignment to go on. */
	return !direct || p->offset == f->size || p->offset % 4096 == 0;
}
