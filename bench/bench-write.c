/*
 * bench-write.c - the sink path alone: registered buffers written through
 * io_uring, O_DIRECT against buffered, for several buffer sizes, against
 * fio's io_uring engine writing the same bytes to the same filesystem.
 *
 * Each measurement writes --size bytes to a new file in --dir, sequentially,
 * with --iodepth writes in flight from an engine buffer pool
 * (sstf__pool_init, buffers registered with io_uring_register_buffers and
 * written with write_fixed, on a ring set up by sstf__ring_init as the
 * engine's is), then an fdatasync through the ring. The clock runs from the
 * open (O_CREAT|O_TRUNC; the engine creates its temporary with O_EXCL) to the
 * fdatasync's completion. The file is then closed and removed.
 *
 * fio runs in the same run, as a child process:
 *   fio --ioengine=io_uring --rw=write --bs=1M --iodepth=16 --direct=1
 *       --end_fsync=1 --size=SIZE --filename=FILE --output-format=json
 * and its write bw_bytes is taken from the JSON. Every run measures every
 * row once (A B C ... A B C ...); the table shows the median of --runs with
 * min and max, and each row's ratio to fio is taken within each run.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "benchutil.h"
#include "internal.h"

static struct {
	const char *dir;
	uint64_t size;
	struct bu_list bs;
	uint64_t iodepth;
	uint64_t runs;
	const char *fio;
	uint64_t fio_bs;
	uint64_t falloc;
	const char *json;
} opt;

static const struct bu_opt opts[] = {
	{"dir", BU_STR, &opt.dir, "/var/tmp", 0, 0,
	 "directory the files are written in (a disk, not tmpfs)"},
	{"size", BU_SIZE, &opt.size, "1G", 4096, 0, "bytes per file, a multiple of 4K"},
	{"bs", BU_SIZE_LIST, &opt.bs, "64K,1M,4M", 4096, 64u << 20,
	 "buffer (write) sizes, multiples of 4K"},
	{"iodepth", BU_UINT, &opt.iodepth, "16", 1, 1024, "writes in flight"},
	{"runs", BU_UINT, &opt.runs, "3", 1, 100, "runs of every row (median, min, max)"},
	{"fio", BU_STR, &opt.fio, "fio", 0, 0,
	 "fio binary for the reference row; \"\" or not found skips it"},
	{"fio-bs", BU_SIZE, &opt.fio_bs, "1M", 4096, 64u << 20, "fio's --bs"},
	{"falloc", BU_UINT, &opt.falloc, "1", 0, 1,
	 "1 adds a direct+falloc row per bs: fallocate the whole file first, as fio does"},
	{"json", BU_STR, &opt.json, "-", 0, 0,
	 "JSON output file; - prints it on stdout after the table"},
};

static const struct bu_prog prog = {
	"bench-write",
	"The sink path alone: --size bytes written through io_uring from registered\n"
	"buffers (write_fixed) at --iodepth, O_DIRECT and buffered, for each --bs,\n"
	"each file ended by fdatasync, against fio's io_uring engine (O_DIRECT,\n"
	"end_fsync) writing the same bytes in the same run. Rows alternate within\n"
	"every run. The engine does not preallocate; fio fallocates its file by\n"
	"default, and on ext4 an O_DIRECT write past the end of the file waits for\n"
	"its completion, so the direct+falloc row shows what preallocation buys.",
	" A table on stdout: bs, mode (direct, direct+falloc, buffered, fio), fixed\n"
	" (registered buffers used)"
	", GB/s (10^9 bytes/s, open to fdatasync done; fio: its\n"
	" write bw_bytes) as median, min and max over --runs, seconds (median),\n"
	" and the ratio to fio, each run's ratio taken within the run.\n"
	" Then JSON (see --json): {\"bench\", \"version\", \"params\", \"fs\",\n"
	" \"fio\": {\"found\", \"version\", \"cmd\"}, \"results\": [{\"bs\", \"mode\",\n"
	" \"fixed\", \"gbps\": {median,min,max,mean,n}, \"seconds\": {...},\n"
	" \"ratio_vs_fio\": {...} or null, \"runs_gbps\": [...]}]}",
};

static volatile sig_atomic_t interrupted;
static char cur_file[4200]; /* removed at exit if a run was cut short */

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static void cleanup(void)
{
	if (cur_file[0]) {
		unlink(cur_file);
		cur_file[0] = '\0';
	}
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench-write: %s%s%s\n", what, err ? ": " : "",
	        err ? strerror(err < 0 ? -err : err) : "");
	exit(1);
}

/* One buffer size: its pool, registered with its own ring. */
struct sink {
	struct io_uring ring;
	unsigned ring_flags;
	struct sstf__pool pool;
	uint64_t *off; /* file offset of the write in each buffer */
	bool fixed;
};

static void sink_init(struct sink *s, uint64_t bs, unsigned depth)
{
	struct sstf_allocator alloc = {0};
	int ret = sstf__ring_init(&s->ring, 2 * depth, &s->ring_flags);
	if (ret < 0)
		die("io_uring setup", ret);
	ret = sstf__pool_init(&s->pool, &alloc, bs, depth);
	if (ret < 0)
		die("buffer pool", ret);
	s->off = calloc(depth, sizeof(*s->off));
	struct iovec *iov = calloc(depth, sizeof(*iov));
	if (!s->off || !iov)
		die("out of memory", 0);
	for (unsigned i = 0; i < depth; i++) {
		iov[i].iov_base = sstf__pool_buf(&s->pool, (int)i);
		iov[i].iov_len = bs;
	}
	bu_fill_random(s->pool.mem, bs * depth, 0xb0b0 + bs);
	/* As in the engine: without registration (memlock) plain writes do. */
	s->fixed = io_uring_register_buffers(&s->ring, iov, depth) == 0;
	free(iov);
}

static void sink_fini(struct sink *s)
{
	struct sstf_allocator alloc = {0};
	if (s->fixed)
		io_uring_unregister_buffers(&s->ring);
	io_uring_queue_exit(&s->ring);
	sstf__pool_fini(&s->pool, &alloc);
	free(s->off);
}

static void queue_write(struct sink *s, int fd, int idx, uint32_t skip)
{
	uint8_t *buf = sstf__pool_buf(&s->pool, idx) + skip;
	uint32_t len = s->pool.len[idx] - skip;
	struct io_uring_sqe *sqe = sstf__ring_sqe(&s->ring);
	if (s->fixed)
		io_uring_prep_write_fixed(sqe, fd, buf, len, s->off[idx] + skip, idx);
	else
		io_uring_prep_write(sqe, fd, buf, len, s->off[idx] + skip);
	/* user_data: buffer index, and how much of it is already written */
	io_uring_sqe_set_data64(sqe, (uint64_t)idx | (uint64_t)skip << 32);
}

enum mode {
	M_DIRECT,
	M_DIRECT_FALLOC,
	M_BUFFERED,
	M_COUNT
};

static const char *const mode_name[M_COUNT] = {"direct", "direct+falloc", "buffered"};

/* Writes opt.size bytes to path and fdatasyncs it. Returns seconds. */
static double write_once(struct sink *s, const char *path, enum mode mode)
{
	bool direct = mode != M_BUFFERED;
	int flags = O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | (direct ? O_DIRECT : 0);
	uint64_t t0 = bu_now_ns();
	snprintf(cur_file, sizeof(cur_file), "%s", path);
	int fd = open(path, flags, 0644);
	if (fd < 0)
		die(direct ? "open O_DIRECT" : "open", errno);
	if (mode == M_DIRECT_FALLOC && fallocate(fd, 0, 0, (off_t)opt.size) < 0)
		die("fallocate", errno);
	uint64_t next = 0;
	unsigned inflight = 0;
	uint64_t bs = s->pool.bs;

	while ((next < opt.size || inflight) && !interrupted) {
		while (next < opt.size && s->pool.nfree > 0) {
			int idx = sstf__pool_get(&s->pool);
			uint64_t len = opt.size - next < bs ? opt.size - next : bs;
			s->pool.len[idx] = (uint32_t)len;
			s->off[idx] = next;
			queue_write(s, fd, idx, 0);
			next += len;
			inflight++;
		}
		int ret = io_uring_submit_and_wait(&s->ring, 1);
		if (ret < 0 && ret != -EINTR)
			die("io_uring_submit_and_wait", ret);
		struct io_uring_cqe *cqe;
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&s->ring, head, cqe)
		{
			int i = (int)(cqe->user_data & 0xffffffffu);
			uint32_t skip = (uint32_t)(cqe->user_data >> 32);
			seen++;
			if (cqe->res < 0)
				die("write", cqe->res);
			uint32_t done = skip + (uint32_t)cqe->res;
			if (cqe->res == 0)
				die("write returned 0", 0);
			if (done < s->pool.len[i]) {
				queue_write(s, fd, i, done); /* short write: the rest */
				continue;
			}
			sstf__pool_put(&s->pool, i);
			inflight--;
		}
		io_uring_cq_advance(&s->ring, seen);
	}
	if (interrupted) {
		close(fd);
		unlink(path);
		cur_file[0] = '\0';
		return 1;
	}

	struct io_uring_sqe *sqe = sstf__ring_sqe(&s->ring);
	io_uring_prep_fsync(sqe, fd, IORING_FSYNC_DATASYNC);
	io_uring_sqe_set_data64(sqe, UINT64_MAX);
	int ret = io_uring_submit_and_wait(&s->ring, 1);
	if (ret < 0)
		die("fdatasync submit", ret);
	struct io_uring_cqe *cqe = NULL;
	ret = io_uring_wait_cqe(&s->ring, &cqe);
	if (ret < 0)
		die("fdatasync wait", ret);
	if (cqe->res < 0)
		die("fdatasync", cqe->res);
	io_uring_cqe_seen(&s->ring, cqe);
	uint64_t t1 = bu_now_ns();
	close(fd);
	unlink(path);
	cur_file[0] = '\0';
	return (double)(t1 - t0) / 1e9;
}

/* Runs fio once; returns its write bw in GB/s, or -1 with a message. */
static double fio_once(const char *path, double *secs)
{
	char size[64], bs[64], file[4300], depth[64];
	snprintf(size, sizeof(size), "--size=%llu", (unsigned long long)opt.size);
	snprintf(bs, sizeof(bs), "--bs=%llu", (unsigned long long)opt.fio_bs);
	snprintf(depth, sizeof(depth), "--iodepth=%llu", (unsigned long long)opt.iodepth);
	snprintf(file, sizeof(file), "--filename=%s", path);
	char *argv[] = {(char *)opt.fio,      "--name=bench-write", "--ioengine=io_uring",
	                "--rw=write",         bs,                   depth,
	                "--direct=1",         "--end_fsync=1",      size,
	                file,                 "--output-format=json", NULL};
	char *out = NULL;
	snprintf(cur_file, sizeof(cur_file), "%s", path);
	uint64_t t0 = bu_now_ns();
	int ret = bu_run(argv, &out);
	*secs = (double)(bu_now_ns() - t0) / 1e9;
	unlink(path);
	cur_file[0] = '\0';
	if (ret != 0) {
		fprintf(stderr, "bench-write: fio exited with status %d\n", ret);
		free(out);
		return -1;
	}
	/* fio may print notes before the JSON object. */
	const char *js = out ? strchr(out, '{') : NULL;
	json_error_t err;
	json_t *root = js ? json_loads(js, JSON_DISABLE_EOF_CHECK, &err) : NULL;
	json_int_t bw = 0;
	if (root)
		json_unpack(json_array_get(json_object_get(root, "jobs"), 0), "{s:{s:I}}", "write",
		            "bw_bytes", &bw);
	json_decref(root);
	free(out);
	if (bw <= 0) {
		fprintf(stderr, "bench-write: no write bw_bytes in fio's JSON\n");
		return -1;
	}
	return (double)bw / 1e9;
}

static bool mode_on(enum mode m, bool direct)
{
	if (m == M_BUFFERED)
		return true;
	return direct && (m == M_DIRECT || opt.falloc);
}

int main(int argc, char **argv)
{
	bu_parse_args(&prog, opts, sizeof(opts) / sizeof(opts[0]), argc, argv);
	if (opt.size % 4096) {
		fprintf(stderr, "bench-write: --size must be a multiple of 4K\n");
		return 2;
	}
	for (unsigned b = 0; b < opt.bs.n; b++) {
		if (opt.bs.v[b] % 4096) {
			fprintf(stderr, "bench-write: --bs values must be multiples of 4K\n");
			return 2;
		}
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	atexit(cleanup);

	const char *fs = bu_fs_name(opt.dir);
	if (strcmp(fs, "tmpfs") == 0 || strcmp(fs, "ramfs") == 0)
		fprintf(stderr, "bench-write: warning: --dir %s is %s: no O_DIRECT, no disk\n",
		        opt.dir, fs);
	char path[4200];
	snprintf(path, sizeof(path), "%s/sstf-bench-write.%d", opt.dir, (int)getpid());

	bool have_fio = opt.fio[0] && bu_have_program(opt.fio);
	char fio_version[64] = "";
	if (have_fio) {
		char *vargv[] = {(char *)opt.fio, "--version", NULL};
		char *vout = NULL;
		if (bu_run(vargv, &vout) == 0 && vout)
			snprintf(fio_version, sizeof(fio_version), "%.*s",
			         (int)strcspn(vout, "\n"), vout);
		free(vout);
	} else {
		fprintf(stderr, "bench-write: fio %s: fio row skipped\n",
		        opt.fio[0] ? "not found" : "disabled");
	}

	unsigned nbs = opt.bs.n;
	unsigned depth = (unsigned)opt.iodepth;
	struct sink *sinks = calloc(nbs, sizeof(*sinks));
	size_t nrows = (size_t)nbs * M_COUNT + 1; /* + fio */
	double *gbps = calloc(nrows * opt.runs, sizeof(double));
	double *secs = calloc(nrows * opt.runs, sizeof(double));
	if (!sinks || !gbps || !secs)
		die("out of memory", 0);
	for (unsigned b = 0; b < nbs; b++)
		sink_init(&sinks[b], opt.bs.v[b], depth);

	/* Probe O_DIRECT once: a filesystem without it gets no direct rows. */
	int pfd = open(opt.dir, O_TMPFILE | O_WRONLY | O_DIRECT | O_CLOEXEC, 0600);
	bool direct = pfd >= 0 || errno != EINVAL;
	if (pfd >= 0)
		close(pfd);
	if (!direct)
		fprintf(stderr, "bench-write: %s refuses O_DIRECT: direct rows skipped\n",
		        opt.dir);

	char tot[32];
	bu_fmt_size(tot, sizeof(tot), opt.size);
	fprintf(stderr, "bench-write: %s per file in %s (%s), %llu runs, iodepth %u, fixed %s\n",
	        tot, opt.dir, fs, (unsigned long long)opt.runs, depth,
	        nbs && sinks[0].fixed ? "yes" : "no");

	for (uint64_t r = 0; r < opt.runs && !interrupted; r++) {
		for (unsigned b = 0; b < nbs && !interrupted; b++) {
			for (int m = 0; m < M_COUNT && !interrupted; m++) {
				if (!mode_on((enum mode)m, direct))
					continue;
				size_t row = (size_t)b * M_COUNT + (size_t)m;
				double s = write_once(&sinks[b], path, (enum mode)m);
				secs[row * opt.runs + r] = s;
				gbps[row * opt.runs + r] = (double)opt.size / s / 1e9;
			}
		}
		if (have_fio && !interrupted) {
			size_t row = nrows - 1;
			double s = 0;
			double g = fio_once(path, &s);
			if (g < 0) {
				have_fio = false;
				fprintf(stderr, "bench-write: fio row skipped\n");
			} else {
				gbps[row * opt.runs + r] = g;
				secs[row * opt.runs + r] = s;
			}
		}
		fprintf(stderr, "bench-write: run %llu/%llu done\n", (unsigned long long)r + 1,
		        (unsigned long long)opt.runs);
	}
	if (interrupted) {
		fprintf(stderr, "bench-write: interrupted\n");
		return 130;
	}

	static const char *const head[] = {"bs",       "mode",     "fixed",  "GB/s med",
	                                   "GB/s min", "GB/s max", "s med", "vs fio"};
	struct bu_table t;
	bu_table_init(&t, 8, head);
	json_t *results = json_array();
	double *ratio = calloc(opt.runs, sizeof(double));
	if (!ratio)
		die("out of memory", 0);
	for (size_t row = 0; row < nrows; row++) {
		bool is_fio = row == nrows - 1;
		if (is_fio && !have_fio)
			continue;
		if (!is_fio && !mode_on((enum mode)(row % M_COUNT), direct))
			continue;
		const double *g = &gbps[row * opt.runs];
		struct bu_summary gs, ss, rs;
		bu_summarize(g, opt.runs, &gs);
		bu_summarize(&secs[row * opt.runs], opt.runs, &ss);
		json_t *jratio = json_null();
		if (have_fio) {
			for (uint64_t r = 0; r < opt.runs; r++)
				ratio[r] = g[r] / gbps[(nrows - 1) * opt.runs + r];
			bu_summarize(ratio, opt.runs, &rs);
			jratio = bu_json_summary(&rs);
		}
		char bs[32];
		uint64_t bsv = is_fio ? opt.fio_bs : opt.bs.v[row / M_COUNT];
		bu_fmt_size(bs, sizeof(bs), bsv);
		const char *mode = is_fio ? "fio" : mode_name[row % M_COUNT];
		bool fixed = is_fio ? false : sinks[row / M_COUNT].fixed;
		bu_table_cell(&t, "%s", bs);
		bu_table_cell(&t, "%s", mode);
		bu_table_cell(&t, "%s", is_fio ? "-" : fixed ? "yes" : "no");
		bu_table_cell(&t, "%.2f", gs.median);
		bu_table_cell(&t, "%.2f", gs.min);
		bu_table_cell(&t, "%.2f", gs.max);
		bu_table_cell(&t, "%.2f", ss.median);
		if (have_fio)
			bu_table_cell(&t, "%.2f", rs.median);
		else
			bu_table_cell(&t, "-");
		json_t *runs = json_array();
		for (uint64_t r = 0; r < opt.runs; r++)
			json_array_append_new(runs, json_real(g[r]));
		json_array_append_new(
			results, json_pack("{s:I, s:s, s:b, s:o, s:o, s:o, s:o}", "bs",
		                           (json_int_t)bsv, "mode", mode, "fixed", fixed, "gbps",
		                           bu_json_summary(&gs), "seconds", bu_json_summary(&ss),
		                           "ratio_vs_fio", jratio, "runs_gbps", runs));
	}
	printf("sink writes: %s per file to %s (%s), iodepth %u, fdatasync at the end; "
	       "GB/s = 10^9 bytes/s\n",
	       tot, opt.dir, fs, depth);
	bu_table_print(&t, stdout);
	if (!have_fio)
		printf("fio: %s, no fio row\n", opt.fio[0] ? "not found or failed" : "disabled");
	bu_table_free(&t);

	json_t *bsl = json_array();
	for (unsigned b = 0; b < nbs; b++)
		json_array_append_new(bsl, json_integer((json_int_t)opt.bs.v[b]));
	char cmd[512];
	snprintf(cmd, sizeof(cmd),
	         "%s --ioengine=io_uring --rw=write --bs=%llu --iodepth=%u --direct=1 "
	         "--end_fsync=1 --size=%llu --filename=FILE --output-format=json",
	         opt.fio, (unsigned long long)opt.fio_bs, depth, (unsigned long long)opt.size);
	json_t *root = json_pack(
		"{s:s, s:s, s:{s:s, s:I, s:o, s:I, s:I, s:I, s:b}, s:s, s:b, s:{s:b, s:s, s:s}, s:o}",
		"bench", "bench-write", "version", SSTF_VERSION_STRING, "params", "dir", opt.dir,
		"size", (json_int_t)opt.size, "bs", bsl, "iodepth", (json_int_t)depth, "runs",
		(json_int_t)opt.runs, "fio_bs", (json_int_t)opt.fio_bs, "falloc", opt.falloc != 0, "fs", fs, "direct", direct,
		"fio", "found", have_fio, "version", fio_version, "cmd", cmd, "results", results);
	int ret = bu_json_emit(root, opt.json);
	json_decref(root);

	for (unsigned b = 0; b < nbs; b++)
		sink_fini(&sinks[b]);
	free(sinks);
	free(gbps);
	free(secs);
	free(ratio);
	return ret < 0 ? 1 : 0;
}
