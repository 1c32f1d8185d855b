/*
 * dataset.h - --gen-dataset: a file set and its manifest, from a seed.
 *
 * Files are named 000001.sst, 000002.sst, ... (%06d, from 1, as RocksDB
 * numbers SSTs). Each size is drawn uniformly from [min, max] by a
 * splitmix64 stream seeded with the seed; each file's bytes are the
 * little-endian words of a xoshiro256** generator seeded from (seed, file
 * number). The same seed, count and sizes give the same bytes on every
 * machine, and nothing in them compresses.
 *
 * DIR/manifest.json lists every file with "name", "size", "xxh3" and
 * "xxh128" (hashed while the bytes are written, never read back), plus
 * "file_total_size" and the parameters under "generator". It is written
 * last, under a temporary name renamed into place, so a manifest never
 * describes files that are not all there.
 */
#ifndef SSTFETCH_TOOLS_DATASET_H
#define SSTFETCH_TOOLS_DATASET_H

#include <stdint.h>

struct dataset_params {
	const char *dir;  /* created if missing */
	uint64_t nrfiles;
	uint64_t min_size, max_size;
	uint64_t seed;
};

/*
 * Writes the dataset with one thread per CPU (at most 8) and prints what it
 * wrote to stdout. Returns 0, or EXIT_FAILED after printing the error.
 */
int dataset_generate(const struct dataset_params *p);

#endif
