/*
 * sanitizers.h - what the test binaries tell ASan, UBSan, LSan and TSan.
 *
 * Linked into every test executable (see sanitizers.c for why each piece
 * exists). Nothing here does anything in a build without sanitizers.
 */
#ifndef SSTF_TEST_SANITIZERS_H
#define SSTF_TEST_SANITIZERS_H

/*
 * Runs LeakSanitizer now (ASan builds) and returns the number of leak
 * reports, printed on stderr; 0 without LSan. Call it at the end of a test
 * body, after the engine is freed: Criterion passes a test whose worker
 * process reports leaks only at exit, so a leak must fail an assertion.
 */
int sanitizer_leak_check(void);

#endif
