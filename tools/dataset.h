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
 *
 * The Pegasus layout (--layout=pegasus, tools/pegasus.h) makes an app
 * directory of Apache Pegasus' bulk load instead: partition_count
 * partitions of nrfiles files each, DIR/PIDX/1.sst, 2.sst, ... (as Pegasus
 * names them), each partition's DIR/PIDX/bulk_load_metadata
 * ({"files":[{"name","size","md5"}, ...],"file_total_size"}, the MD5s
 * hashed while the bytes are written, through OpenSSL as the engine's),
 * and last DIR/bulk_load_info ({"app_id":1,"app_name":DIR's last
 * component,"partition_count"}). Sizes and bytes are drawn as above over
 * the files in order, partition 0's first, so partition 0 holds the bytes
 * of the flat layout's first nrfiles files.
 */
#ifndef SSTFETCH_TOOLS_DATASET_H
#define SSTFETCH_TOOLS_DATASET_H

#include <stdint.h>

/* Most files one dataset may have (--nrfiles's bound; for the Pegasus
 * layout, over every partition). */
#define DATASET_MAX_FILES ((uint64_t)10000000)

/* --layout of --gen-dataset. */
enum dataset_layout {
	DATASET_FLAT,    /* DIR/000001.sst ..., DIR/manifest.json */
	DATASET_PEGASUS, /* DIR/bulk_load_info, DIR/PIDX/{bulk_load_metadata,
	                    1.sst, ...} */
};

struct dataset_params {
	const char *dir;  /* created if missing */
	enum dataset_layout layout;
	uint64_t partition_count; /* DATASET_PEGASUS: partitions */
	uint64_t nrfiles; /* per partition with DATASET_PEGASUS */
	uint64_t min_size, max_size;
	uint64_t seed;
};

/*
 * Writes the dataset with one thread per CPU (at most 8) and prints what it
 * wrote to stdout. Returns 0, or EXIT_FAILED after printing the error.
 */
int dataset_generate(const struct dataset_params *p);

#endif
