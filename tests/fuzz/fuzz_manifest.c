/*
 * fuzz_manifest.c - libFuzzer target: the tool's manifest loader
 * (tools/manifest.c) and the engine's sstf_check_batch() on what it loads.
 *
 * Input: one mode byte, then the manifest text.
 *   bits 0-2  the verify mode: 0 auto, 1 xxh3, 2 xxh128, 3 none, 4 md5;
 *             5-7 are auto too
 *   bits 3-7  the loader's window: 0-15 (bytes below 0x80) give
 *             MANIFEST_BUF_MIN + 16 * n bytes, 16-31 (0x80 and up) the
 *             default MANIFEST_BUF_SIZE. Small windows run the refill
 *             and cut-value paths on small inputs.
 * The seeds in corpus/manifest/ start with a printable mode byte: ' '
 * (auto, 96-byte window), '"' (xxh128), '#' (none), '!' (xxh3), '$' (md5).
 *
 * When the manifest loads, its files go to sstf_check_batch() as the tool
 * submits them: dest_dir "/tmp/x" (never touched: the check looks at no
 * disk), base_url "http://127.0.0.1:1", protocols NULL. Everything is
 * freed before returning, so LeakSanitizer sees any leak of either.
 *
 * Build and run: tools/check.sh fuzz, or see tests/README.md.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "manifest.h"
#include "sstfetch.h"

/* Declared for -Wmissing-prototypes; libFuzzer and UBSan look them up. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__ubsan_default_options(void);

/* UBSan recovers by default, and a report that does not stop the process
 * is no crash to libFuzzer. */
const char *__ubsan_default_options(void)
{
	return "halt_on_error=1:print_stacktrace=1";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	unsigned mode = data[0];
	static const enum manifest_verify modes[8] = {
		MANIFEST_VERIFY_AUTO, MANIFEST_VERIFY_XXH3, MANIFEST_VERIFY_XXH128,
		MANIFEST_VERIFY_NONE, MANIFEST_VERIFY_MD5,  MANIFEST_VERIFY_AUTO,
		MANIFEST_VERIFY_AUTO, MANIFEST_VERIFY_AUTO,
	};
	enum manifest_verify verify = modes[mode & 7];
	unsigned sel = mode >> 3;
	size_t window = sel < 16 ? MANIFEST_BUF_MIN + 16 * (size_t)sel
	                         : MANIFEST_BUF_SIZE;

	/* fmemopen() refuses a zero size on some C libraries; an empty
	 * manifest is a read of /dev/null, which proves nothing more. */
	if (size == 1)
		return 0;
	/* Mode "r" never writes through the pointer. */
	FILE *in = fmemopen((void *)(uintptr_t)(data + 1), size - 1, "r");
	if (!in)
		return 0;

	struct manifest *m = NULL;
	char err[1024];
	int rc = manifest_parse_window(in, "fuzz", verify, window, &m, err,
	                               sizeof(err));
	fclose(in);
	if (rc) {
		/* A failed load names itself: never an empty message. */
		if (err[0] == '\0')
			__builtin_trap();
		return 0;
	}

	/* What manifest.h promises of a loaded manifest. */
	uint64_t sum = 0;
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct sstf_file *f = &m->files[i];
		size_t want = f->digest_kind == SSTF_DIGEST_XXH3     ? 16
		              : f->digest_kind == SSTF_DIGEST_XXH128 ? 32
		              : f->digest_kind == SSTF_DIGEST_MD5    ? 32
		                                                     : 0;
		if (!f->name || !f->digest_hex || strlen(f->digest_hex) != want ||
		    (verify == MANIFEST_VERIFY_NONE) != (want == 0))
			__builtin_trap();
		sum += f->size;
	}
	if (sum != m->total_size)
		__builtin_trap();

	char errbuf[512];
	struct sstf_batch batch = {
		.dest_dir = "/tmp/x",
		.files = m->files,
		.nfiles = m->nfiles,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
		.base_url = "http://127.0.0.1:1",
		.protocols = NULL,
	};
	errbuf[0] = '\0';
	(void)sstf_check_batch(&batch);
	manifest_free(m);
	return 0;
}
