/*
 * Description: digests are the ones xxhsum and md5sum print. sstf_digest_hex
 * agrees with the real xxhsum binary (-H3 and -H2) on buffers of edge sizes,
 * and for MD5 with RFC 1321's test suite and the real md5sum binary on
 * random buffers of odd sizes; the streaming hasher fed in odd pieces equals
 * one shot (MD5 included); hex parses back, either case, and a wrong length
 * or a non-hex digit is refused.
 */
#include <criterion/criterion.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef XXH_STATIC_LINKING_ONLY
#define XXH_STATIC_LINKING_ONLY /* digest.h embeds XXH3_state_t */
#endif
#include "digest.h"
#include "sstfetch.h"
#include "support/dataset.h"

#define XXHSUM "/usr/bin/xxhsum"
#define MD5SUM "/usr/bin/md5sum"

/* Sizes around XXH3's internal boundaries (16, 128, 240, stripes, blocks). */
static const size_t sizes[] = {
	0, 1, 3, 4, 8, 9, 15, 16, 17, 127, 128, 129, 239, 240, 241, 1023, 1024,
	1025, 4095, 4096, 65537, 1u << 20, (1u << 20) + 7, 3 * (1u << 20) + 333,
};
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static unsigned char *buf;
static size_t buflen;
static char *tmp;

static void fill(unsigned char *p, size_t n, uint64_t x)
{
	for (size_t i = 0; i < n; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		p[i] = (unsigned char)(x >> 24);
	}
}

static void setup(void)
{
	buflen = sizes[NSIZES - 1];
	buf = malloc(buflen);
	cr_assert_not_null(buf);
	fill(buf, buflen, 0x243f6a8885a308d3ull);
	cr_assert_eq(ds_mkdtemp("digest", &tmp), 0);
}

static void teardown(void)
{
	ds_rmtree(tmp);
	free(tmp);
	free(buf);
}

/* Runs argv, returns its stdout (NUL-terminated) in out; returns exit status. */
static int run_capture(char *const argv[], char *out, size_t outlen)
{
	int pfd[2];
	cr_assert_eq(pipe2(pfd, O_CLOEXEC), 0);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		dup2(pfd[1], 1);
		execv(argv[0], argv);
		_exit(127);
	}
	close(pfd[1]);
	size_t got = 0;
	for (;;) {
		ssize_t n = read(pfd[0], out + got, outlen - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		got += (size_t)n;
		if (got == outlen - 1)
			break;
	}
	out[got] = '\0';
	close(pfd[0]);
	int st = 0;
	cr_assert_eq(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

/*
 * Pulls the hex digest out of one line of xxhsum output, whichever style it
 * is: BSD ("XXH3 (FILE) = hex") or GNU ("hex  FILE", maybe with a leading
 * '\' when the name was escaped). Writes lowercase hex; returns its length.
 */
static size_t parse_xxhsum(const char *line, char *hex, size_t hexlen)
{
	const char *p = strstr(line, ") = ");
	if (p)
		p += 4;
	else
		p = line[0] == '\\' ? line + 1 : line;
	size_t n = 0;
	while (isxdigit((unsigned char)p[n]) && n + 1 < hexlen) {
		hex[n] = (char)tolower((unsigned char)p[n]);
		n++;
	}
	hex[n] = '\0';
	return n;
}

static void xxhsum_of(const char *algo, const char *path, char hex[65])
{
	char out[PATH_MAX + 256];
	char *argv[] = { (char *)XXHSUM, (char *)algo, (char *)path, NULL };
	int st = run_capture(argv, out, sizeof(out));
	cr_assert_eq(st, 0, "xxhsum %s %s exited %d: %s", algo, path, st, out);
	parse_xxhsum(out, hex, 65);
}

Test(digest, xxhsum_binary_is_there)
{
	cr_assert_eq(access(XXHSUM, X_OK), 0, "%s missing: install the xxhash package", XXHSUM);
}

Test(digest, hex_matches_xxhsum_H3_and_H2, .init = setup, .fini = teardown)
{
	for (size_t i = 0; i < NSIZES; i++) {
		size_t n = sizes[i];
		/* Start at an odd offset too, so alignment is not assumed. */
		const unsigned char *data = buf + (i % 2 && n < buflen ? 1 : 0);
		char *path = ds_strfmt("%s/buf-%zu.bin", tmp, n);
		cr_assert_not_null(path);
		cr_assert_eq(ds_write_file(path, data, n), 0);

		char want3[65], want128[65], got[33];
		xxhsum_of("-H3", path, want3);
		xxhsum_of("-H2", path, want128);
		cr_assert_eq(strlen(want3), 16, "cannot parse xxhsum -H3 output for %zu bytes", n);
		cr_assert_eq(strlen(want128), 32, "cannot parse xxhsum -H2 output for %zu bytes", n);

		cr_expect_eq(sstf_digest_hex(SSTF_DIGEST_XXH3, data, n, got), 16);
		cr_expect_str_eq(got, want3, "XXH3 of %zu bytes", n);
		cr_expect_eq(sstf_digest_hex(SSTF_DIGEST_XXH128, data, n, got), 32);
		cr_expect_str_eq(got, want128, "XXH128 of %zu bytes", n);
		free(path);
	}
}

Test(digest, dataset_digests_match_xxhsum, .init = setup, .fini = teardown)
{
	/* The digests the other suites expect come from ds_create(); check them
	 * against the oracle once, files in a subdirectory included. */
	struct dataset ds;
	const char *names[] = { "a.sst", "d/e/f.sst", NULL };
	uint64_t sz[] = { 0, 4097, 1 << 20 };
	cr_assert_eq(ds_create(&ds, "digest-ds", 3, names, sz, 7), 0);
	for (size_t i = 0; i < ds.n; i++) {
		char want[65];
		xxhsum_of("-H3", ds.files[i].path, want);
		cr_expect_str_eq(ds.files[i].xxh3, want, "%s", ds.files[i].name);
		xxhsum_of("-H2", ds.files[i].path, want);
		cr_expect_str_eq(ds.files[i].xxh128, want, "%s", ds.files[i].name);
	}
	ds_destroy(&ds);
}

Test(digest, public_hex_rejects_none_and_unknown_kinds)
{
	char out[33];
	cr_expect_eq(sstf_digest_hex(SSTF_DIGEST_NONE, "x", 1, out), -EINVAL);
	cr_expect_eq(sstf_digest_hex((enum sstf_digest_kind)4, "x", 1, out), -EINVAL);
	cr_expect_eq(sstf_digest_hex((enum sstf_digest_kind)-1, "x", 1, out), -EINVAL);
}

Test(digest, hexlen_per_kind)
{
	cr_expect_eq(sstf__digest_hexlen(SSTF_DIGEST_NONE), 0);
	cr_expect_eq(sstf__digest_hexlen(SSTF_DIGEST_XXH3), 16);
	cr_expect_eq(sstf__digest_hexlen(SSTF_DIGEST_XXH128), 32);
	cr_expect_eq(sstf__digest_hexlen(SSTF_DIGEST_MD5), 32);
	cr_expect_eq(sstf__digest_hexlen((enum sstf_digest_kind)9), -1);
}

static void hash_in_pieces(enum sstf_digest_kind kind, const unsigned char *data,
                           size_t n, const size_t *pieces, size_t npieces,
                           char out[33])
{
	struct sstf__hasher h;
	struct sstf__digest d;
	cr_assert_eq(sstf__hasher_init(&h), 0);
	cr_assert_eq(sstf__hasher_reset(&h, kind), 0);
	size_t off = 0;
	for (size_t k = 0; off < n; k++) {
		size_t step = pieces[k % npieces];
		if (step > n - off)
			step = n - off;
		cr_assert_eq(sstf__hasher_update(&h, data + off, step), 0);
		off += step;
	}
	cr_assert_eq(sstf__hasher_final(&h, &d), 0);
	cr_assert_eq(d.len, kind == SSTF_DIGEST_XXH3 ? 8 : 16);
	sstf__digest_format(&d, out);
	sstf__hasher_fini(&h);
}

Test(digest, hasher_in_odd_pieces_equals_one_shot, .init = setup, .fini = teardown)
{
	static const size_t p1[] = { 1 };
	static const size_t p2[] = { 7, 13, 63, 64, 65, 255, 4097 };
	static const size_t p3[] = { 0, 65536, 3, 1u << 20 };
	static const size_t p4[] = { 240, 241, 1 };
	const struct { const size_t *p; size_t n; } pat[] = {
		{ p1, 1 }, { p2, 7 }, { p3, 4 }, { p4, 3 },
	};
	const enum sstf_digest_kind kinds[] = { SSTF_DIGEST_XXH3, SSTF_DIGEST_XXH128,
	                                        SSTF_DIGEST_MD5 };
	for (size_t i = 0; i < NSIZES; i++) {
		size_t n = sizes[i];
		for (size_t k = 0; k < 3; k++) {
			char whole[33];
			cr_assert_gt(sstf_digest_hex(kinds[k], buf, n, whole), 0);
			for (size_t j = 0; j < sizeof(pat) / sizeof(pat[0]); j++) {
				/* One byte at a time over megabytes is slow under
				 * sanitizers and proves nothing more. */
				if (pat[j].p == p1 && n > 70000)
					continue;
				char got[33];
				hash_in_pieces(kinds[k], buf, n, pat[j].p, pat[j].n, got);
				cr_expect_str_eq(got, whole, "kind %d, %zu bytes, pattern %zu",
				                 (int)kinds[k], n, j);
			}
		}
	}
}

Test(digest, hasher_reset_forgets_previous_data, .init = setup, .fini = teardown)
{
	struct sstf__hasher h;
	struct sstf__digest a, b;
	sstf__hasher_reset(&h, SSTF_DIGEST_XXH128);
	sstf__hasher_update(&h, buf, 1000);
	sstf__hasher_reset(&h, SSTF_DIGEST_XXH3);
	sstf__hasher_update(&h, buf, 77);
	sstf__hasher_final(&h, &a);
	char hex[33], want[33];
	sstf__digest_format(&a, hex);
	sstf_digest_hex(SSTF_DIGEST_XXH3, buf, 77, want);
	cr_expect_str_eq(hex, want);
	/* final does not consume the state */
	sstf__hasher_final(&h, &b);
	cr_expect(sstf__digest_equal(&a, &b));
}

Test(digest, parse_round_trips_and_accepts_uppercase)
{
	const char *h3 = "78af5f94892f3950";
	const char *h128 = "06b05ab6733a618578af5f94892f3950";
	struct sstf__digest d;
	char out[33];

	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, h3, &d), 0);
	cr_expect_eq(d.len, 8);
	cr_expect_eq(d.bytes[0], 0x78, "canonical form is big-endian, first digit first");
	cr_expect_eq(d.bytes[7], 0x50);
	sstf__digest_format(&d, out);
	cr_expect_str_eq(out, h3);

	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH128, h128, &d), 0);
	cr_expect_eq(d.len, 16);
	sstf__digest_format(&d, out);
	cr_expect_str_eq(out, h128);

	struct sstf__digest up;
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH128, "06B05AB6733A618578AF5F94892F3950", &up), 0);
	cr_expect(sstf__digest_equal(&up, &d));
	sstf__digest_format(&up, out);
	cr_expect_str_eq(out, h128, "format is lowercase");

	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, "78aF5f94892F3950", &up), 0);
	sstf__digest_format(&up, out);
	cr_expect_str_eq(out, h3);

	/* The real digest of "abc" parses to the bytes the hasher produces. */
	struct sstf__hasher h;
	struct sstf__digest mine;
	sstf__hasher_reset(&h, SSTF_DIGEST_XXH3);
	sstf__hasher_update(&h, "abc", 3);
	sstf__hasher_final(&h, &mine);
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, h3, &d), 0);
	cr_expect(sstf__digest_equal(&mine, &d), "xxhsum -H3 of 'abc' is %s", h3);
}

Test(digest, parse_refuses_wrong_length_and_non_hex)
{
	static const struct { enum sstf_digest_kind k; const char *hex; } bad[] = {
		{ SSTF_DIGEST_XXH3, "" },
		{ SSTF_DIGEST_XXH3, "78af5f94892f395" },
		{ SSTF_DIGEST_XXH3, "78af5f94892f39500" },
		{ SSTF_DIGEST_XXH3, "06b05ab6733a618578af5f94892f3950" },
		{ SSTF_DIGEST_XXH3, "78af5f94892f395g" },
		{ SSTF_DIGEST_XXH3, "78af5f94 92f3950" },
		{ SSTF_DIGEST_XXH3, "0x8af5f94892f395" },
		{ SSTF_DIGEST_XXH3, "-8af5f94892f3950" },
		{ SSTF_DIGEST_XXH3, "78af5f94892f395\n" },
		{ SSTF_DIGEST_XXH128, "78af5f94892f3950" },
		{ SSTF_DIGEST_XXH128, "06b05ab6733a618578af5f94892f395" },
		{ SSTF_DIGEST_XXH128, "06b05ab6733a618578af5f94892f39500" },
		{ SSTF_DIGEST_XXH128, "06b05ab6733a618578af5f94892f395:" },
		{ (enum sstf_digest_kind)7, "78af5f94892f3950" },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct sstf__digest d;
		int r = sstf__digest_parse(bad[i].k, bad[i].hex, &d);
		cr_expect_eq(r, -SSTF_EBADENTRY, "kind %d '%s' gave %d", (int)bad[i].k,
		             bad[i].hex, r);
	}
	struct sstf__digest d;
	cr_expect_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, NULL, &d), -SSTF_EBADENTRY);
	/* A hex string with an embedded NUL is shorter than it looks. */
	static const char nul[] = "78af5f94\0" "92f3950";
	cr_expect_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, nul, &d), -SSTF_EBADENTRY);
	/* NONE ignores the hex entirely. */
	cr_expect_eq(sstf__digest_parse(SSTF_DIGEST_NONE, "whatever", &d), 0);
	cr_expect_eq(d.len, 0);
}

Test(digest, equal_compares_kind_and_bytes)
{
	struct sstf__digest a, b, c;
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, "0000000000000001", &a), 0);
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH3, "0000000000000002", &b), 0);
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_XXH128, "00000000000000010000000000000000", &c), 0);
	cr_expect(sstf__digest_equal(&a, &a));
	cr_expect(!sstf__digest_equal(&a, &b));
	cr_expect(!sstf__digest_equal(&a, &c), "same leading bytes, other length");
}

/* ------------------------------------------------------------------------ */
/* MD5                                                                      */

Test(digest, md5sum_binary_is_there)
{
	cr_assert_eq(access(MD5SUM, X_OK), 0, "%s missing: install coreutils", MD5SUM);
}

/* RFC 1321, appendix A.5: the MD5 test suite. */
Test(digest, md5_rfc1321_test_suite)
{
	static const struct { const char *msg, *md5; } v[] = {
		{ "", "d41d8cd98f00b204e9800998ecf8427e" },
		{ "a", "0cc175b9c0f1b6a831c399e269772661" },
		{ "abc", "900150983cd24fb0d6963f7d28e17f72" },
		{ "message digest", "f96b697d7cb7938d525a2f31aaf161d0" },
		{ "abcdefghijklmnopqrstuvwxyz", "c3fcd3d76192e4007dfb496cca67e13b" },
		{ "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
		  "d174ab98d277d9f5a5611c2c9f419d9f" },
		{ "1234567890123456789012345678901234567890"
		  "1234567890123456789012345678901234567890",
		  "57edf4a22be3c955ac49da2e2107b67a" },
	};
	for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		char out[33];
		cr_expect_eq(sstf_digest_hex(SSTF_DIGEST_MD5, v[i].msg, strlen(v[i].msg), out), 32,
		             "MD5(\"%s\")", v[i].msg);
		cr_expect_str_eq(out, v[i].md5, "MD5(\"%s\")", v[i].msg);
	}
}

Test(digest, md5_matches_md5sum_on_random_odd_sizes, .init = setup, .fini = teardown)
{
	/* The edge sizes, then random ones (MD5's blocks are 64 bytes, its
	 * padding takes 9: 55, 56, 63, 64, 119 and 120 are its edges). */
	size_t more[] = { 55, 56, 63, 64, 65, 119, 120, 121, 0, 0, 0, 0, 0, 0 };
	size_t nmore = sizeof(more) / sizeof(more[0]);
	uint64_t x = 0x9e3779b97f4a7c15ull;
	for (size_t k = 8; k < nmore; k++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		more[k] = (size_t)(x % buflen) | 1; /* odd */
	}
	for (size_t i = 0; i < NSIZES + nmore; i++) {
		size_t n = i < NSIZES ? sizes[i] : more[i - NSIZES];
		size_t at = (i * 7919) % (buflen - n + 1); /* odd offsets too */
		const unsigned char *data = buf + at;
		char *path = ds_strfmt("%s/md5-%zu.bin", tmp, i);
		cr_assert_not_null(path);
		cr_assert_eq(ds_write_file(path, data, n), 0);
		char out[PATH_MAX + 256], want[65], got[33];
		char *argv[] = { (char *)MD5SUM, path, NULL };
		int st = run_capture(argv, out, sizeof(out));
		cr_assert_eq(st, 0, "md5sum %s exited %d: %s", path, st, out);
		cr_assert_eq(parse_xxhsum(out, want, sizeof(want)), 32,
		             "cannot parse md5sum output: %s", out);
		cr_expect_eq(sstf_digest_hex(SSTF_DIGEST_MD5, data, n, got), 32);
		cr_expect_str_eq(got, want, "MD5 of %zu bytes at offset %zu", n, at);
		free(path);
	}
}

Test(digest, md5_reset_forgets_previous_data_and_final_consumes, .init = setup,
     .fini = teardown)
{
	struct sstf__hasher h;
	struct sstf__digest a;
	char hex[33], want[33];
	cr_assert_eq(sstf__hasher_init(&h), 0);
	/* One context serves file after file: MD5 after XXH128 after MD5. */
	cr_assert_eq(sstf__hasher_reset(&h, SSTF_DIGEST_MD5), 0);
	cr_assert_eq(sstf__hasher_update(&h, buf, 5000), 0);
	cr_assert_eq(sstf__hasher_reset(&h, SSTF_DIGEST_XXH128), 0);
	cr_assert_eq(sstf__hasher_update(&h, buf, 1000), 0);
	for (int round = 0; round < 3; round++) {
		cr_assert_eq(sstf__hasher_reset(&h, SSTF_DIGEST_MD5), 0);
		cr_assert_eq(sstf__hasher_update(&h, buf + round, 77), 0);
		cr_assert_eq(sstf__hasher_final(&h, &a), 0);
		cr_expect_eq(a.len, 16);
		sstf__digest_format(&a, hex);
		sstf_digest_hex(SSTF_DIGEST_MD5, buf + round, 77, want);
		cr_expect_str_eq(hex, want, "round %d", round);
	}
	/* Unlike xxHash, MD5's final consumes the state: a second one, or
	 * more bytes, fail rather than hand back a wrong digest. */
	cr_expect_eq(sstf__hasher_final(&h, &a), -EINVAL);
	cr_expect_eq(a.len, 0);
	cr_expect_eq(sstf__hasher_update(&h, buf, 1), -EINVAL);
	char why[128];
	sstf__digest_error(why, sizeof(why));
	cr_expect_neq(why[0], '\0', "a reason, even with no OpenSSL error");
	/* A reset makes it whole again. */
	cr_assert_eq(sstf__hasher_reset(&h, SSTF_DIGEST_MD5), 0);
	cr_assert_eq(sstf__hasher_final(&h, &a), 0);
	sstf__digest_format(&a, hex);
	cr_expect_str_eq(hex, "d41d8cd98f00b204e9800998ecf8427e");
	sstf__hasher_fini(&h);
	sstf__hasher_fini(&h); /* a second fini is a no-op */
}

Test(digest, md5_without_init_is_refused_not_crashed)
{
	struct sstf__hasher h;
	memset(&h, 0, sizeof(h));
	cr_expect_eq(sstf__hasher_reset(&h, SSTF_DIGEST_MD5), -EINVAL);
	cr_expect_eq(sstf__hasher_update(&h, "x", 1), -EINVAL);
	struct sstf__digest d;
	cr_expect_eq(sstf__hasher_final(&h, &d), -EINVAL);
	cr_expect_eq(d.len, 0);
}

Test(digest, md5_parse_round_trips_either_case)
{
	const char *lower = "900150983cd24fb0d6963f7d28e17f72"; /* MD5("abc") */
	struct sstf__digest d, up, mixed;
	char out[33];
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_MD5, lower, &d), 0);
	cr_expect_eq(d.len, 16);
	cr_expect_eq(d.bytes[0], 0x90, "bytes in md5sum's order, first digit first");
	cr_expect_eq(d.bytes[15], 0x72);
	sstf__digest_format(&d, out);
	cr_expect_str_eq(out, lower);
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_MD5, "900150983CD24FB0D6963F7D28E17F72", &up),
	             0);
	cr_assert_eq(sstf__digest_parse(SSTF_DIGEST_MD5, "900150983cD24Fb0d6963F7d28E17f72",
	                                &mixed), 0);
	cr_expect(sstf__digest_equal(&up, &d));
	cr_expect(sstf__digest_equal(&mixed, &d));
	sstf__digest_format(&up, out);
	cr_expect_str_eq(out, lower, "format is lowercase");

	/* The parsed digest equals what the hasher gives for "abc". */
	struct sstf__hasher h;
	struct sstf__digest mine;
	cr_assert_eq(sstf__hasher_init(&h), 0);
	cr_assert_eq(sstf__hasher_reset(&h, SSTF_DIGEST_MD5), 0);
	cr_assert_eq(sstf__hasher_update(&h, "abc", 3), 0);
	cr_assert_eq(sstf__hasher_final(&h, &mine), 0);
	sstf__hasher_fini(&h);
	cr_expect(sstf__digest_equal(&mine, &d), "md5sum of 'abc' is %s", lower);

	static const char *const bad[] = {
		"", "900150983cd24fb0d6963f7d28e17f7", "900150983cd24fb0d6963f7d28e17f720",
		"900150983cd24fb0", "900150983cd24fb0d6963f7d28e17f7g",
		"900150983cd24fb0d6963f7d28e17f7 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_expect_eq(sstf__digest_parse(SSTF_DIGEST_MD5, bad[i], &d), -SSTF_EBADENTRY,
		             "'%s'", bad[i]);
}
