/*
 * bench-slots.c - what a slot costs, and how long a cancel takes to drain.
 *
 * Part 1, slot and tag churn, on a slot table sized like an engine's
 * (sstf__slots_init with the engine's control, transfer and socket counts):
 *   cycle-1     alloc -> op_begin -> resolve(tag) -> op_end -> free, one slot
 *   cycle-all   the same in waves over every transfer slot of the table
 *   resolve     resolve of a live tag (every completion pays this)
 *   stale       resolve of stale tags: the previous incarnation of each slot
 *               and tags of free slots; each must come back NULL and count
 *               once as stale, which the bench checks
 *
 * Part 2, cancel-to-drained latency, on a real engine against nginx on
 * loopback (tools/origin.sh): a dataset of --files random files is made,
 * then for each --transfers value N in turn (A B A B ...), --iters times:
 * submit the whole dataset to an engine with max_transfers = N, wait until
 * --cancel-at bytes of it are written (or N x --cancel-per-xfer, when that
 * is more: 4 MiB into a generation of 64 transfers, about half of them have
 * not received a byte yet), and time sstf_cancel() from call to return. After
 * each cancel the bench checks that no temporary file is left. The origin
 * and every temporary directory are removed at exit.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "benchutil.h"
#include "internal.h"

#ifndef BENCH_ORIGIN_SH
#define BENCH_ORIGIN_SH "tools/origin.sh"
#endif

static struct {
	uint64_t table_xfers;
	uint64_t churn;
	uint64_t runs;
	struct bu_list transfers;
	uint64_t iters;
	uint64_t files;
	uint64_t filesize;
	uint64_t buf;
	uint64_t cancel_at;
	uint64_t cancel_per_xfer;
	const char *dir;
	const char *origin_sh;
	const char *json;
} opt;

static const struct bu_opt opts[] = {
	{"table-xfers", BU_UINT, &opt.table_xfers, "16", 1, 4096,
	 "part 1: transfer slots of the table (an engine's max_transfers)"},
	{"churn", BU_UINT, &opt.churn, "10000000", 0, 0,
	 "part 1: operations per churn measurement, 0 skips part 1"},
	{"runs", BU_UINT, &opt.runs, "5", 1, 1000, "part 1: runs of each measurement"},
	{"transfers", BU_UINT_LIST, &opt.transfers, "4,16", 1, 1024,
	 "part 2: transfers in flight (max_transfers), alternated"},
	{"iters", BU_UINT, &opt.iters, "100", 0, 100000,
	 "part 2: cancels timed per --transfers value, 0 skips part 2"},
	{"files", BU_UINT, &opt.files, "64", 1, 100000, "part 2: files in the dataset"},
	{"filesize", BU_SIZE, &opt.filesize, "8M", 4096, 1ull << 32,
	 "part 2: bytes per file (random)"},
	{"buf", BU_SIZE, &opt.buf, "1M", 64u << 10, 64u << 20,
	 "part 2: engine buffer size (buf_size)"},
	{"cancel-at", BU_SIZE, &opt.cancel_at, "4M", 1, 0,
	 "part 2: cancel once this many bytes of the generation are written"},
	{"cancel-per-xfer", BU_SIZE, &opt.cancel_per_xfer, "256K", 0, 0,
	 "part 2: cancel no earlier than N x this many bytes written (N: the"
	 " --transfers value), so that many transfers are past their start; 0:"
	 " --cancel-at only"},
	{"dir", BU_STR, &opt.dir, "/var/tmp", 0, 0,
	 "part 2: where the dataset and destination directories are made"},
	{"origin-sh", BU_STR, &opt.origin_sh, BENCH_ORIGIN_SH, 0, 0,
	 "part 2: the script that starts and stops nginx"},
	{"json", BU_STR, &opt.json, "-", 0, 0,
	 "JSON output file; - prints it on stdout after the tables"},
};

static const struct bu_prog prog = {
	"bench-slots",
	"Part 1: slot and tag churn on a slot table sized like an engine's:\n"
	"alloc -> op_begin -> resolve(tag) -> op_end -> free cycles, and resolve of\n"
	"live and of stale tags (checked to be rejected and counted).\n"
	"Part 2: cancel-to-drained latency. Starts nginx on loopback with\n"
	"--origin-sh, makes a dataset of --files random files under --dir, then\n"
	"repeatedly submits it with max_transfers=N, waits until --cancel-at bytes\n"
	"(or N x --cancel-per-xfer, when more) are written and times sstf_cancel()\n"
	"from call to return (p50/p99/max), checking that no temporary file is\n"
	"left behind.",
	" Two tables on stdout. Churn: op, ns/op and Mops/s (median, min, max over\n"
	" --runs). Cancel: transfers, bytes written at the cancel threshold,\n"
	" samples, p50/p99/max/mean in microseconds, median MiB and files done at\n"
	" the cancel, stale completions, temporary files left (must be 0). Then\n"
	" JSON (see --json): {\"bench\", \"version\", \"params\", \"churn\": [{\"op\",\n"
	" \"ns_per_op\": {median,min,max,mean,n}, \"mops\": {...}}], \"cancel\":\n"
	" [{\"transfers\", \"cancel_at\", \"samples\", \"missed\", \"latency_us\":\n"
	" {\"p50\", \"p99\", \"max\", \"min\", \"mean\"}, ...}]}",
};

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* ------------------------------------------------------------------------ */
/* Part 1: churn */

enum churn_op {
	C_CYCLE1,
	C_CYCLE_ALL,
	C_RESOLVE,
	C_STALE,
	C_COUNT
};

static const char *const churn_name[C_COUNT] = {"cycle-1", "cycle-all", "resolve", "stale"};

static void die(const char *what)
{
	fprintf(stderr, "bench-slots: %s\n", what);
	exit(1);
}

/* Runs about `ops` operations of kind op. Returns ns per operation. */
static double churn_once(struct sstf__slots *t, struct sstf__gen *g, enum churn_op op,
                         uint64_t ops, struct sstf__slot **held, uint64_t *tags)
{
	uint32_t nx = (uint32_t)opt.table_xfers;
	uint64_t done = 0;
	uint64_t gen_id = 1;
	uint64_t t0 = 0, t1 = 0;

	switch (op) {
	case C_CYCLE1:
		t0 = bu_now_ns();
		for (; done < ops; done++) {
			struct sstf__slot *s = sstf__slot_alloc(t, SSTF__SLOT_FILE, g, gen_id);
			sstf__slot_op_begin(s);
			uint64_t ud = sstf__tag_op(s->tag, SSTF__OP_WRITE, (unsigned)(done & 7));
			struct sstf__slot *r = sstf__slot_resolve(t, ud);
			if (r != s)
				die("resolve of a live tag failed");
			sstf__slot_op_end(r);
			sstf__slot_set_state(t, r, SSTF__SLOT_FREE);
			if ((done & 1023) == 1023)
				gen_id++;
		}
		t1 = bu_now_ns();
		break;
	case C_CYCLE_ALL:
		t0 = bu_now_ns();
		while (done < ops) {
			for (uint32_t i = 0; i < nx; i++) {
				held[i] = sstf__slot_alloc(t, SSTF__SLOT_FILE, g, gen_id);
				sstf__slot_op_begin(held[i]);
			}
			for (uint32_t i = 0; i < nx; i++) {
				uint64_t ud = sstf__tag_op(held[i]->tag, SSTF__OP_WRITE, i & 7);
				struct sstf__slot *r = sstf__slot_resolve(t, ud);
				if (r != held[i])
					die("resolve of a live tag failed");
				sstf__slot_op_end(r);
			}
			for (uint32_t i = 0; i < nx; i++)
				sstf__slot_set_state(t, held[i], SSTF__SLOT_FREE);
			done += nx;
			gen_id++;
		}
		t1 = bu_now_ns();
		break;
	case C_RESOLVE:
		for (uint32_t i = 0; i < nx; i++) {
			held[i] = sstf__slot_alloc(t, SSTF__SLOT_FILE, g, gen_id);
			tags[i] = sstf__tag_op(held[i]->tag, SSTF__OP_WRITE, 1);
		}
		t0 = bu_now_ns();
		for (; done < ops; done++) {
			if (sstf__slot_resolve(t, tags[done % nx]) == NULL)
				die("resolve of a live tag failed");
		}
		t1 = bu_now_ns();
		for (uint32_t i = 0; i < nx; i++)
			sstf__slot_set_state(t, held[i], SSTF__SLOT_FREE);
		break;
	case C_STALE: {
		/* Half the tags are the previous incarnation of a live slot,
		 * half belong to slots that are free now. */
		uint32_t half = nx / 2 ? nx / 2 : 1;
		for (uint32_t i = 0; i < nx; i++) {
			held[i] = sstf__slot_alloc(t, SSTF__SLOT_FILE, g, gen_id);
			tags[i] = sstf__tag_op(held[i]->tag, SSTF__OP_WRITE, 1);
		}
		for (uint32_t i = 0; i < nx; i++)
			sstf__slot_set_state(t, held[i], SSTF__SLOT_FREE);
		for (uint32_t i = 0; i < half && i < nx; i++)
			held[i] = sstf__slot_alloc(t, SSTF__SLOT_FILE, g, gen_id + 1);
		uint64_t stale0 = atomic_load(&t->stale);
		t0 = bu_now_ns();
		for (; done < ops; done++) {
			if (sstf__slot_resolve(t, tags[done % nx]) != NULL)
				die("a stale tag resolved to a slot");
		}
		t1 = bu_now_ns();
		if (atomic_load(&t->stale) - stale0 != ops)
			die("stale completions were not counted one by one");
		for (uint32_t i = 0; i < half && i < nx; i++)
			sstf__slot_set_state(t, held[i], SSTF__SLOT_FREE);
		break;
	}
	case C_COUNT:
		break;
	}
	if (g->inflight != 0)
		die("generation in-flight count did not return to 0");
	return done ? (double)(t1 - t0) / (double)done : 0;
}

static json_t *run_churn(void)
{
	uint32_t nx = (uint32_t)opt.table_xfers;
	/* The engine's table: control slots, one file and one stream slot per
	 * transfer, and sockets. */
	uint32_t nsock = 4 * nx + 16 + 16;
	struct sstf_allocator alloc = {0};
	struct sstf__slots t;
	memset(&t, 0, sizeof(t));
	if (2 + 2 * nx + nsock > SSTF__MAX_SLOTS)
		die("--table-xfers too large for the tag's slot bits");
	if (sstf__slots_init(&t, &alloc, SSTF__NCTL, nx, nx, nsock, 0) < 0)
		die("sstf__slots_init failed");
	static struct sstf__gen g; /* a stand-in owner: its in-flight count is kept */
	struct sstf__slot **held = calloc(nx, sizeof(*held));
	uint64_t *tags = calloc(nx, sizeof(*tags));
	double *ns = calloc(C_COUNT * opt.runs, sizeof(double));
	if (!held || !tags || !ns)
		die("out of memory");

	fprintf(stderr, "bench-slots: churn on a table of %u slots (%u transfer), %llu ops x %llu runs\n",
	        t.n, nx, (unsigned long long)opt.churn, (unsigned long long)opt.runs);
	churn_once(&t, &g, C_CYCLE1, opt.churn / 10 + 1, held, tags); /* warm-up */
	for (uint64_t r = 0; r < opt.runs && !interrupted; r++)
		for (int op = 0; op < C_COUNT; op++)
			ns[op * opt.runs + r] =
				churn_once(&t, &g, (enum churn_op)op, opt.churn, held, tags);

	static const char *const head[] = {"op",       "ns/op med", "ns/op min", "ns/op max",
	                                   "Mops/s med", "Mops/s min", "Mops/s max"};
	struct bu_table tab;
	bu_table_init(&tab, 7, head);
	json_t *arr = json_array();
	for (int op = 0; op < C_COUNT; op++) {
		struct bu_summary s, m;
		double mops[1000];
		for (uint64_t r = 0; r < opt.runs; r++)
			mops[r] = ns[op * opt.runs + r] > 0 ? 1e3 / ns[op * opt.runs + r] : 0;
		bu_summarize(&ns[op * opt.runs], opt.runs, &s);
		bu_summarize(mops, opt.runs, &m);
		bu_table_cell(&tab, "%s", churn_name[op]);
		bu_table_cell(&tab, "%.1f", s.median);
		bu_table_cell(&tab, "%.1f", s.min);
		bu_table_cell(&tab, "%.1f", s.max);
		bu_table_cell(&tab, "%.1f", m.median);
		bu_table_cell(&tab, "%.1f", m.min);
		bu_table_cell(&tab, "%.1f", m.max);
		json_array_append_new(arr, json_pack("{s:s, s:o, s:o}", "op", churn_name[op],
		                                     "ns_per_op", bu_json_summary(&s), "mops",
		                                     bu_json_summary(&m)));
	}
	printf("slot churn (table: %u slots, %u transfer slots)\n", t.n, nx);
	bu_table_print(&tab, stdout);
	bu_table_free(&tab);
	free(held);
	free(tags);
	free(ns);
	sstf__slots_fini(&t, &alloc);
	return arr;
}

/* ------------------------------------------------------------------------ */
/* Part 2: cancel latency */

static char workdir[4096];        /* mkdtemp'd, removed at exit */
static char origin_state[4096];   /* origin.sh state dir, stopped at exit */
static char origin_url[1024];

static void cleanup(void)
{
	if (origin_state[0]) {
		char *argv[] = {(char *)opt.origin_sh, "stop", origin_state, NULL};
		int ret = bu_run(argv, NULL);
		if (ret != 0)
			fprintf(stderr, "bench-slots: origin.sh stop %s: status %d\n", origin_state,
			        ret);
		origin_state[0] = '\0';
	}
	if (workdir[0]) {
		int ret = bu_rm_rf(workdir);
		if (ret < 0)
			fprintf(stderr, "bench-slots: cannot remove %s: %s\n", workdir,
			        strerror(-ret));
		workdir[0] = '\0';
	}
}

static void path_join(char *out, size_t len, const char *a, const char *b)
{
	int n = snprintf(out, len, "%s/%s", a, b);
	if (n < 0 || (size_t)n >= len)
		die("path too long");
}

struct dataset {
	struct sstf_file *files;
	char (*names)[32];
	char (*urls)[1200];
	char (*digests)[33];
	size_t n;
};

static void make_dataset(const char *datadir, struct dataset *d)
{
	d->n = opt.files;
	d->files = calloc(d->n, sizeof(*d->files));
	d->names = calloc(d->n, sizeof(*d->names));
	d->urls = calloc(d->n, sizeof(*d->urls));
	d->digests = calloc(d->n, sizeof(*d->digests));
	uint8_t *buf = malloc(opt.filesize);
	if (!d->files || !d->names || !d->urls || !d->digests || !buf)
		die("out of memory");
	for (size_t i = 0; i < d->n && !interrupted; i++) {
		snprintf(d->names[i], sizeof(d->names[i]), "%06zu.sst", i);
		char path[4200];
		path_join(path, sizeof(path), datadir, d->names[i]);
		bu_fill_random(buf, opt.filesize, 0x5eed0000u + i);
		int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (fd < 0)
			die("cannot create a dataset file");
		size_t off = 0;
		while (off < opt.filesize) {
			ssize_t n = write(fd, buf + off, opt.filesize - off);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0)
				die("cannot write a dataset file");
			off += (size_t)n;
		}
		close(fd);
		if (sstf_digest_hex(SSTF_DIGEST_XXH3, buf, opt.filesize, d->digests[i]) < 0)
			die("sstf_digest_hex failed");
		snprintf(d->urls[i], sizeof(d->urls[i]), "%s/%s", origin_url, d->names[i]);
		d->files[i] = (struct sstf_file){
			.name = d->names[i],
			.url = d->urls[i],
			.size = opt.filesize,
			.digest_kind = SSTF_DIGEST_XXH3,
			.digest_hex = d->digests[i],
		};
	}
	free(buf);
}

/*
 * Counts what the engine left in dir's staging directory (DEST/.sstf, which
 * a finished generation removes once empty: anything in it, or the
 * directory itself, is a leftover), then empties dir.
 */
static unsigned clean_dest(const char *dir)
{
	unsigned tmp = 0;
	DIR *dp = opendir(dir);
	if (!dp)
		die("cannot open the destination directory");
	struct dirent *de;
	while ((de = readdir(dp)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
			continue;
		if (strcmp(de->d_name, ".sstf") == 0) {
			int sfd = openat(dirfd(dp), de->d_name, O_RDONLY | O_DIRECTORY);
			DIR *sp = sfd >= 0 ? fdopendir(sfd) : NULL;
			tmp++;
			for (;;) {
				struct dirent *se = sp ? readdir(sp) : NULL;
				if (!se)
					break;
				if (strcmp(se->d_name, ".") == 0 || strcmp(se->d_name, "..") == 0)
					continue;
				tmp++;
				unlinkat(dirfd(sp), se->d_name, 0);
			}
			if (sp)
				closedir(sp);
			unlinkat(dirfd(dp), de->d_name, AT_REMOVEDIR);
			continue;
		}
		unlinkat(dirfd(dp), de->d_name, 0);
	}
	closedir(dp);
	return tmp;
}

static void sleep_us(long us)
{
	struct timespec ts = {0, us * 1000L};
	nanosleep(&ts, NULL);
}

struct cancel_result {
	double *lat_us;    /* per timed cancel */
	double *mib_done;  /* at the cancel */
	double *files_done;
	unsigned samples;
	unsigned missed;   /* the generation ended before --cancel-at */
	unsigned leftover; /* temporary files found after a cancel */
	unsigned errors;   /* cancel returned an error or did not cancel */
	uint64_t stale0, stale1;
	uint64_t cancel_at; /* bytes written at which this row cancels */
};

/* One submit + cancel on e. */
static void cancel_once(sstf_engine *e, const struct dataset *d, const char *dest,
                        struct cancel_result *res)
{
	char errbuf[256] = "";
	struct sstf_batch b = {
		.dest_dir = dest,
		.files = d->files,
		.nfiles = d->n,
		.errbuf = errbuf,
		.errbuf_len = sizeof(errbuf),
	};
	uint64_t gen;
	int ret = sstf_submit(e, &b, &gen);
	if (ret < 0) {
		fprintf(stderr, "bench-slots: sstf_submit: %s %s\n", sstf_strerror(ret), errbuf);
		exit(1);
	}
	struct sstf_progress p = {0};
	uint64_t deadline = bu_now_ns() + 30ull * 1000000000u;
	for (;;) {
		if (sstf_progress(e, gen, &p) < 0 || p.bytes_done >= res->cancel_at ||
		    p.files_done + p.files_failed == p.files_total)
			break;
		if (interrupted || bu_now_ns() > deadline)
			break;
		sleep_us(20);
	}
	uint64_t t0 = bu_now_ns();
	ret = sstf_cancel(e, gen);
	uint64_t t1 = bu_now_ns();
	int result = sstf_wait(e, gen, 0);
	if (ret < 0) {
		res->errors++;
		fprintf(stderr, "bench-slots: sstf_cancel: %s\n", sstf_strerror(ret));
	} else if (result != -ECANCELED) {
		if (result == 0) {
			res->missed++; /* it finished first: nothing to time */
		} else {
			res->errors++;
			fprintf(stderr, "bench-slots: generation ended with %s\n",
			        sstf_strerror(result));
		}
	} else {
		res->lat_us[res->samples] = (double)(t1 - t0) / 1e3;
		res->mib_done[res->samples] = (double)p.bytes_done / (1024.0 * 1024.0);
		res->files_done[res->samples] = (double)p.files_done;
		res->samples++;
	}
	res->leftover += clean_dest(dest);
}

static json_t *run_cancel(void)
{
	unsigned nt = opt.transfers.n;
	if (!bu_have_program(opt.origin_sh)) {
		fprintf(stderr, "bench-slots: %s not found or not executable (--origin-sh)\n", opt.origin_sh);
		exit(1);
	}
	const char *fs = bu_fs_name(opt.dir);
	if (strcmp(fs, "tmpfs") == 0 || strcmp(fs, "ramfs") == 0)
		fprintf(stderr, "bench-slots: warning: --dir %s is %s (no O_DIRECT)\n", opt.dir,
		        fs);

	path_join(workdir, sizeof(workdir), opt.dir, "sstf-bench-slots.XXXXXX");
	if (!mkdtemp(workdir)) {
		workdir[0] = '\0';
		fprintf(stderr, "bench-slots: mkdtemp in %s: %s\n", opt.dir, strerror(errno));
		exit(1);
	}
	char datadir[4200], destroot[4200];
	path_join(datadir, sizeof(datadir), workdir, "data");
	path_join(destroot, sizeof(destroot), workdir, "dest");
	if (mkdir(datadir, 0755) < 0 || mkdir(destroot, 0755) < 0)
		die("cannot make the work directories");
	/* nginx workers may run as another user: let them reach the data. */
	chmod(workdir, 0755);

	char *argv[] = {(char *)opt.origin_sh, "start", datadir, NULL};
	char *out = NULL;
	int ret = bu_run(argv, &out);
	char url[1024], state[4096];
	if (ret != 0 || !out || sscanf(out, "%1023s %4095s", url, state) != 2) {
		fprintf(stderr, "bench-slots: %s start failed (status %d)\n", opt.origin_sh, ret);
		free(out);
		exit(1);
	}
	free(out);
	snprintf(origin_state, sizeof(origin_state), "%s", state);
	snprintf(origin_url, sizeof(origin_url), "%s", url);

	char fsz[32];
	bu_fmt_size(fsz, sizeof(fsz), opt.filesize);
	fprintf(stderr, "bench-slots: origin %s, dataset %llu x %s in %s (%s)\n", origin_url,
	        (unsigned long long)opt.files, fsz, workdir, fs);
	struct dataset d;
	make_dataset(datadir, &d);

	sstf_engine **eng = calloc(nt, sizeof(*eng));
	char (*dest)[4300] = calloc(nt, sizeof(*dest));
	struct cancel_result *res = calloc(nt, sizeof(*res));
	if (!eng || !dest || !res)
		die("out of memory");
	for (unsigned i = 0; i < nt; i++) {
		unsigned n = (unsigned)opt.transfers.v[i];
		struct sstf_config cfg = {0};
		cfg.max_transfers = n;
		cfg.max_host_conns = n;
		cfg.buf_size = opt.buf;
		cfg.mem_limit = 64u << 20;
		if (cfg.mem_limit < 4 * (size_t)n * opt.buf)
			cfg.mem_limit = 4 * (size_t)n * opt.buf;
		ret = sstf_engine_new(&cfg, &eng[i]);
		if (ret < 0) {
			fprintf(stderr, "bench-slots: sstf_engine_new(max_transfers=%u): %s\n", n,
			        sstf_strerror(ret));
			exit(1);
		}
		char sub[32];
		snprintf(sub, sizeof(sub), "t%u-%u", n, i);
		path_join(dest[i], sizeof(dest[i]), destroot, sub);
		if (mkdir(dest[i], 0755) < 0)
			die("cannot make a destination directory");
		res[i].lat_us = calloc(opt.iters, sizeof(double));
		res[i].mib_done = calloc(opt.iters, sizeof(double));
		res[i].files_done = calloc(opt.iters, sizeof(double));
		if (!res[i].lat_us || !res[i].mib_done || !res[i].files_done)
			die("out of memory");
		struct sstf_stats st;
		sstf_stats(eng[i], &st);
		res[i].stale0 = st.stale_completions;
		res[i].cancel_at = opt.cancel_at;
		if (opt.cancel_per_xfer && (uint64_t)n * opt.cancel_per_xfer > res[i].cancel_at)
			res[i].cancel_at = (uint64_t)n * opt.cancel_per_xfer;
	}

	fprintf(stderr,
	        "bench-slots: %llu cancels per transfers value, cancel at %llu bytes or N x %llu\n",
	        (unsigned long long)opt.iters, (unsigned long long)opt.cancel_at,
	        (unsigned long long)opt.cancel_per_xfer);
	for (uint64_t it = 0; it < opt.iters && !interrupted; it++)
		for (unsigned i = 0; i < nt && !interrupted; i++)
			cancel_once(eng[i], &d, dest[i], &res[i]);

	static const char *const head[] = {"transfers", "cancel at", "samples", "p50 us",
	                                   "p99 us",    "max us",    "mean us", "MiB done",
	                                   "files done", "missed",   "stale",   "tmp left"};
	struct bu_table tab;
	bu_table_init(&tab, 12, head);
	json_t *arr = json_array();
	for (unsigned i = 0; i < nt; i++) {
		struct sstf_stats st;
		sstf_stats(eng[i], &st);
		res[i].stale1 = st.stale_completions;
		sstf_engine_free(eng[i]);
		struct cancel_result *r = &res[i];
		struct bu_summary s, mib, fd;
		bu_summarize(r->lat_us, r->samples, &s);
		bu_summarize(r->mib_done, r->samples, &mib);
		bu_summarize(r->files_done, r->samples, &fd);
		double p50 = bu_percentile(r->lat_us, r->samples, 50);
		double p99 = bu_percentile(r->lat_us, r->samples, 99);
		unsigned long long stale = (unsigned long long)(r->stale1 - r->stale0);
		bu_table_cell(&tab, "%llu", (unsigned long long)opt.transfers.v[i]);
		bu_table_cell(&tab, "%lluK", (unsigned long long)(r->cancel_at >> 10));
		bu_table_cell(&tab, "%u", r->samples);
		bu_table_cell(&tab, "%.0f", p50);
		bu_table_cell(&tab, "%.0f", p99);
		bu_table_cell(&tab, "%.0f", s.max);
		bu_table_cell(&tab, "%.0f", s.mean);
		bu_table_cell(&tab, "%.1f", mib.median);
		bu_table_cell(&tab, "%.0f", fd.median);
		bu_table_cell(&tab, "%u", r->missed);
		bu_table_cell(&tab, "%llu", stale);
		bu_table_cell(&tab, "%u", r->leftover);
		json_array_append_new(
			arr,
			json_pack("{s:I, s:I, s:I, s:I, s:I, s:{s:f, s:f, s:f, s:f, s:f}, s:f, s:f, "
		                  "s:I, s:I}",
		                  "transfers", (json_int_t)opt.transfers.v[i], "cancel_at",
		                  (json_int_t)r->cancel_at, "samples",
		                  (json_int_t)r->samples, "missed", (json_int_t)r->missed, "errors",
		                  (json_int_t)r->errors, "latency_us", "p50", p50, "p99", p99,
		                  "max", s.max, "min", s.min, "mean", s.mean,
		                  "mib_done_at_cancel_median", mib.median,
		                  "files_done_at_cancel_median", fd.median, "stale_completions",
		                  (json_int_t)stale, "tmp_files_left", (json_int_t)r->leftover));
		free(r->lat_us);
		free(r->mib_done);
		free(r->files_done);
	}
	printf("\ncancel-to-drained (sstf_cancel call to return; %llu x %s files, buf %lluK,"
	       " cancel at the larger of %lluK and N x %lluK written)\n",
	       (unsigned long long)opt.files, fsz, (unsigned long long)(opt.buf >> 10),
	       (unsigned long long)(opt.cancel_at >> 10),
	       (unsigned long long)(opt.cancel_per_xfer >> 10));
	bu_table_print(&tab, stdout);
	bu_table_free(&tab);

	unsigned bad = 0;
	for (unsigned i = 0; i < nt; i++)
		bad += res[i].errors + res[i].leftover;
	free(eng);
	free(dest);
	free(res);
	free(d.files);
	free(d.names);
	free(d.urls);
	free(d.digests);
	if (bad)
		fprintf(stderr, "bench-slots: %u cancel errors or temporary files left\n", bad);
	return arr;
}

int main(int argc, char **argv)
{
	bu_parse_args(&prog, opts, sizeof(opts) / sizeof(opts[0]), argc, argv);
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	atexit(cleanup);

	json_t *churn = opt.churn ? run_churn() : json_array();
	json_t *cancel = opt.iters ? run_cancel() : json_array();
	cleanup();

	json_t *tl = json_array();
	for (unsigned i = 0; i < opt.transfers.n; i++)
		json_array_append_new(tl, json_integer((json_int_t)opt.transfers.v[i]));
	json_t *root = json_pack(
		"{s:s, s:s, s:{s:I, s:I, s:I, s:o, s:I, s:I, s:I, s:I, s:I, s:I, s:s}, s:o, s:o}",
		"bench", "bench-slots", "version", SSTF_VERSION_STRING, "params", "table_xfers",
		(json_int_t)opt.table_xfers, "churn_ops", (json_int_t)opt.churn, "runs",
		(json_int_t)opt.runs, "transfers", tl, "iters", (json_int_t)opt.iters, "files",
		(json_int_t)opt.files, "filesize", (json_int_t)opt.filesize, "buf_size",
		(json_int_t)opt.buf, "cancel_at", (json_int_t)opt.cancel_at, "cancel_per_xfer",
		(json_int_t)opt.cancel_per_xfer, "dir", opt.dir,
		"churn", churn, "cancel", cancel);
	int ret = bu_json_emit(root, opt.json);
	json_decref(root);
	if (interrupted) {
		fprintf(stderr, "bench-slots: interrupted\n");
		return 130;
	}
	return ret < 0 ? 1 : 0;
}
