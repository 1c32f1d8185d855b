/*
 * pegasus-replica - an example storage node: the download phase of Apache
 * Pegasus 2.4's bulk load (src/replica/bulk_load/replica_bulk_loader.cpp),
 * with libsstfetch as its fetch backend. It is the integration guide in
 * code; each part says which Pegasus call it replaces.
 *
 *   pegasus-replica --remote=s3://BUCKET/ROOT/CLUSTER/APP --local=DIR
 *                   [--partitions=N] [--max-downloading=5] [--rate-mb=0]
 *                   [--restart-iterations=K] [--seed=S] ...
 *
 * The remote layout is Pegasus' own:
 *   APP/bulk_load_info           {"app_id", "app_name", "partition_count"}
 *   APP/PIDX/bulk_load_metadata  {"files": [{"name", "size", "md5"}],
 *                                 "file_total_size"}
 *   APP/PIDX/NAME.sst            the files
 * Replica PIDX of app APP_ID lands in DIR/APP_ID.PIDX.pegasus/.bulk_load/,
 * as in a Pegasus data directory.
 *
 * The crash this ends. In Pegasus 2.4 a replica restart (a ballot change)
 * calls clear_bulk_load_states(), which clears _metadata.files while the
 * download_sst_file tasks of that replica still run; they then read the
 * cleared vector by index (garbage names and sizes) and the node, then the
 * cluster, went down. Here a replica's metadata lives in its
 * DownloadContext, which every callback of its generation reads, and a
 * restart frees it only after sstf_cancel() has returned: by then no
 * callback of that generation runs or will run. With --restart-iterations
 * the example does K such restarts at random moments from a thread of its
 * own, poisoning the metadata before freeing it, so that any late reader
 * would read garbage (and ASan would name it).
 *
 * S3 settings come from the environment: AWS_ACCESS_KEY_ID,
 * AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION (or
 * AWS_DEFAULT_REGION) and AWS_ENDPOINT_URL (then path-style requests).
 *
 * Output: a progress line per --report-ms on stderr (what the primary
 * reports to the meta server), then a summary on stdout whose last line is
 * "summary: key=value ...". Exit 0 only when every replica downloaded and
 * verified its files; 1 otherwise; 2 for a bad command line.
 */
#include <sstfetch.h>

#include <jansson.h>

#include <sys/stat.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <climits>
#include <exception>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

namespace
{

/* ------------------------------------------------------------------------ */
/* Options: the flags of Pegasus' [replication] section that matter here.  */

struct Options {
	std::string remote;  /* ROOT/CLUSTER/APP, e.g. s3://bucket/root/cluster/app */
	std::string local;   /* the node's data directory */
	long partitions = 0; /* replicas this node hosts: 0..N-1; 0: all */
	/* max_concurrent_bulk_load_downloading_count (default 5) */
	long max_downloading = 5;
	/* hdfs_read_limit_rate_mb_per_sec (Pegasus: 200; here 0, none) */
	long rate_mb = 0;
	long restart_iterations = 0;
	long restart_max_delay_ms = 50;
	long report_ms = 1000;
	long seed = 1;
};

struct OptionDef {
	const char *name;
	const char *help;
	std::string *str; /* exactly one of str, num */
	long *num;
};

void usage(const std::vector<OptionDef> &defs, FILE *to)
{
	std::fprintf(to, "usage: pegasus-replica --remote=URL --local=DIR [options]\n");
	for (const auto &d : defs) {
		if (d.num)
			std::fprintf(to, "  --%-22s %s (default %ld)\n", d.name, d.help, *d.num);
		else
			std::fprintf(to, "  --%-22s %s\n", d.name, d.help);
	}
}

/* Returns 0, 1 for --help, or 2 after printing what is wrong. */
int parse_options(int argc, char **argv, Options &o)
{
	const std::vector<OptionDef> defs = {
	    {"remote", "ROOT/CLUSTER/APP (s3://, http(s)://, file://)", &o.remote, nullptr},
	    {"local", "the node's data directory (created)", &o.local, nullptr},
	    {"partitions", "host partitions 0..N-1; 0: all of bulk_load_info", nullptr,
	     &o.partitions},
	    {"max-downloading", "max_concurrent_bulk_load_downloading_count", nullptr,
	     &o.max_downloading},
	    {"rate-mb", "hdfs_read_limit_rate_mb_per_sec; 0: none", nullptr, &o.rate_mb},
	    {"restart-iterations", "random replica restarts while downloading", nullptr,
	     &o.restart_iterations},
	    {"restart-max-delay-ms", "most time between two restarts", nullptr,
	     &o.restart_max_delay_ms},
	    {"report-ms", "progress report interval; 0: none", nullptr, &o.report_ms},
	    {"seed", "seed of the restarts' randomness", nullptr, &o.seed},
	};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (!std::strcmp(a, "--help") || !std::strcmp(a, "-h")) {
			usage(defs, stdout);
			return 1;
		}
		const char *eq = std::strchr(a, '=');
		const OptionDef *d = nullptr;
		if (!std::strncmp(a, "--", 2) && eq) {
			for (const auto &x : defs) {
				if (std::strlen(x.name) == size_t(eq - a - 2) &&
				    !std::strncmp(a + 2, x.name, size_t(eq - a - 2)))
					d = &x;
			}
		}
		if (!d) {
			std::fprintf(stderr, "pegasus-replica: unknown argument '%s'\n", a);
			usage(defs, stderr);
			return 2;
		}
		if (d->str) {
			*d->str = eq + 1;
			continue;
		}
		char *end;
		errno = 0;
		long v = std::strtol(eq + 1, &end, 10);
		if (errno || end == eq + 1 || *end || v < 0) {
			std::fprintf(stderr,
			             "pegasus-replica: --%s needs a number >= 0, not '%s'\n",
			             d->name, eq + 1);
			return 2;
		}
		*d->num = v;
	}
	while (!o.remote.empty() && o.remote.back() == '/')
		o.remote.pop_back();
	if (o.remote.empty() || o.local.empty() || o.max_downloading < 1) {
		std::fprintf(stderr, "pegasus-replica: --remote and --local are required, "
		                     "--max-downloading must be at least 1\n");
		return 2;
	}
	return 0;
}

/* ------------------------------------------------------------------------ */
/* Small objects. Replaces block_service_manager::download_file() of       */
/* bulk_load_info and bulk_load_metadata (to a local file, then read back) */
/* with one blocking sstf_get() into memory, with sstfetch's retries.      */

int fetch_object(const sstf_config &cfg, const std::string &url, std::string &out, std::string &err)
{
	/* The C library calls this: nothing may throw through it. */
	auto on_data = [](void *user, const void *data, size_t len) noexcept -> int {
		auto *s = static_cast<std::string *>(user);
		try {
			if (!data)
				s->clear(); /* a retry starts over */
			else
				s->append(static_cast<const char *>(data), len);
		} catch (...) {
			return -ENOMEM;
		}
		return 0;
	};
	char ebuf[512] = "";
	out.clear();
	int rc = sstf_get(&cfg, url.c_str(), 64u << 20, on_data, &out, ebuf, sizeof(ebuf));
	if (rc < 0)
		err = url + ": " + (*ebuf ? ebuf : sstf_strerror(rc));
	return rc;
}

/* RAII for jansson documents. */
struct JsonFree {
	void operator()(json_t *j) const
	{
		json_decref(j);
	}
};
using Json = std::unique_ptr<json_t, JsonFree>;

Json parse_json(const std::string &text, const std::string &what, std::string &err)
{
	json_error_t je;
	Json j(json_loadb(text.data(), text.size(), 0, &je));
	if (!j || !json_is_object(j.get())) {
		err = what + ": " + (j ? "not a JSON object" : je.text);
		return nullptr;
	}
	return j;
}

/* A non-negative integer member, or -1. */
long long json_count(json_t *o, const char *key)
{
	json_t *v = json_object_get(o, key);
	return json_is_integer(v) && json_integer_value(v) >= 0 ? json_integer_value(v) : -1;
}

/* ------------------------------------------------------------------------ */
/* bulk_load_metadata: Pegasus' thrift struct of the same name, with its   */
/* file_meta entries. Plain data, so that it can be poisoned with memset.  */

struct FileMeta {
	char name[NAME_MAX + 1];
	uint64_t size;
	char md5[33]; /* "" when the metadata has none: size check only */
};
static_assert(std::is_trivially_copyable<FileMeta>::value, "memset-able");

struct BulkLoadMetadata {
	std::vector<FileMeta> files;
	uint64_t file_total_size = 0;
};

/*
 * Replaces parse_bulk_load_metadata(). As Pegasus, refuses a
 * file_total_size that is not positive; and one that is not the sum of the
 * files' sizes, which Pegasus would only notice as a progress that never
 * reaches 100%. Names, sizes and digests are checked again by
 * sstf_submit(), which names a bad entry.
 */
bool parse_bulk_load_metadata(const std::string &text, const std::string &what, BulkLoadMetadata &m,
                              std::string &err)
{
	Json root = parse_json(text, what, err);
	if (!root)
		return false;
	json_t *files = json_object_get(root.get(), "files");
	long long total = json_count(root.get(), "file_total_size");
	if (!json_is_array(files) || total <= 0) {
		err = what + ": needs \"files\" and a positive \"file_total_size\"";
		return false;
	}
	uint64_t sum = 0;
	size_t i;
	json_t *f;
	json_array_foreach(files, i, f) {
		FileMeta fm{};
		json_t *name = json_object_get(f, "name");
		json_t *md5 = json_object_get(f, "md5");
		long long size = json_count(f, "size");
		const char *md5s = json_is_string(md5) ? json_string_value(md5) : "";
		if (!json_is_string(name) || std::strlen(json_string_value(name)) > NAME_MAX ||
		    size < 0 || std::strlen(md5s) > 32) {
			err = what + ": files[" + std::to_string(i) +
			      "] needs a name, a size "
			      "and an md5 of 32 hex digits";
			return false;
		}
		/* Lengths checked above; the struct was zeroed. */
		std::memcpy(fm.name, json_string_value(name), std::strlen(json_string_value(name)));
		std::memcpy(fm.md5, md5s, std::strlen(md5s));
		fm.size = uint64_t(size);
		sum += fm.size;
		m.files.push_back(fm);
	}
	if (sum != uint64_t(total)) {
		err = what + ": file_total_size " + std::to_string(total) +
		      " is not the sum of the files' sizes " + std::to_string(sum);
		return false;
	}
	m.file_total_size = uint64_t(total);
	return true;
}

/* ------------------------------------------------------------------------ */
/* The node (replica_stub) and its replicas (replica_bulk_loader).          */

struct Node;
struct Replica;

/*
 * Everything one download generation of one replica reads: Pegasus keeps
 * it in replica_bulk_loader (_metadata, _cur_downloaded_size,
 * _download_progress, _download_status). Its callbacks get it as `user`.
 * It is freed only once its generation can run no callback: after
 * sstf_cancel() returned, or after on_batch_done.
 */
struct DownloadContext {
	Node *node;
	Replica *replica;
	BulkLoadMetadata meta;
	std::atomic<int> download_progress{0}; /* percent, as reported to meta */
	char failure[512] = "";                /* the first file that failed */

	/* Poisons the metadata before it goes (0xA5: names of garbage, sizes
	 * of 12 EB), as clear_bulk_load_states() left it for the tasks that
	 * still ran in 2.4. A callback reading it afterwards would misbehave
	 * at once, and ASan reports the read of freed memory. */
	~DownloadContext()
	{
		if (!meta.files.empty())
			std::memset(static_cast<void *>(meta.files.data()), 0xA5,
			            meta.files.size() * sizeof(FileMeta));
		std::memset(&meta.file_total_size, 0xA5, sizeof(meta.file_total_size));
	}
};

/* Pegasus' bulk_load_status, the part the download phase moves through. */
enum class Status {
	Invalid,     /* BLS_INVALID: to be started (again) */
	Downloading, /* BLS_DOWNLOADING: counted against the node's cap */
	Clearing,    /* clear_bulk_load_states() is cancelling it */
	Downloaded,  /* BLS_DOWNLOADED */
	Failed,      /* _download_status != ERR_OK: the meta fails the load */
};

struct Replica {
	int pidx = 0;
	std::string remote_dir; /* ROOT/CLUSTER/APP/PIDX */
	std::string local_dir;  /* DIR/APP_ID.PIDX.pegasus/.bulk_load */
	/* Guarded by Node::mu. */
	Status status = Status::Invalid;
	uint64_t gen = 0; /* 0 while the metadata is fetched: not cancellable yet */
	std::unique_ptr<DownloadContext> ctx;
	unsigned restarts = 0;
	char error[512] = "";
};

struct EngineFree {
	void operator()(sstf_engine *e) const
	{
		sstf_engine_free(e);
	}
};

struct Node {
	Options opt;
	sstf_s3_config s3{};
	sstf_config cfg{};
	std::string app_name;
	long long app_id = 0;

	std::mutex mu; /* never held across sstf_cancel(): on_batch_done takes it */
	std::condition_variable cv;
	/* Declared before the engine, so destroyed after it: no callback can
	 * run once the contexts go. */
	std::vector<Replica> replicas;
	std::deque<Replica *> waiting; /* Invalid replicas, in the order they came */
	long downloading = 0;          /* stub's _bulk_load_downloading_count */
	long peak_downloading = 0;
	bool restarts_over = false;
	std::atomic<bool> stop{false}; /* the node is going down: no more restarts */
	unsigned restarts_mid_download = 0;
	unsigned restarts_total = 0;

	std::unique_ptr<sstf_engine, EngineFree> engine;
};

void set_error(char (&buf)[512], const char *a, const char *b = "")
{
	std::snprintf(buf, sizeof(buf), "%s%s", a, b);
}

/* --- callbacks: on the engine's loop thread, short, never throwing ------ */

/*
 * Replaces the end of download_sst_file(): there the task compared the MD5
 * and the size; here the engine did both before it published the file, and
 * a file that failed them is not under its name. What is left is to note
 * the first failure, for _download_status. It reads the metadata by index,
 * as the 2.4 tasks did, which is safe here: see DownloadContext.
 */
void on_file_done(void *user, uint64_t, const sstf_file_result *res) noexcept
{
	auto *ctx = static_cast<DownloadContext *>(user);
	const FileMeta &f = ctx->meta.files[res->index];
	if (res->result != 0 && !ctx->failure[0])
		std::snprintf(ctx->failure, sizeof(ctx->failure), "%s: %s%s%s", f.name,
		              sstf_strerror(res->result), *res->detail ? ": " : "", res->detail);
}

/*
 * Replaces update_bulk_load_download_progress(): the percent that the
 * primary reports to the meta server, against the metadata's
 * file_total_size. Files found in place and verified (skipped) count as
 * done, as Pegasus counts files it finds in place. Finer than Pegasus'
 * (which moves once per file): sstfetch reports bytes as they are written.
 * A pull alternative is sstf_progress(), from any thread.
 * "struct": in C++ the function sstf_progress() hides the type's name.
 */
void on_progress(void *user, uint64_t, const struct sstf_progress *p) noexcept
{
	auto *ctx = static_cast<DownloadContext *>(user);
	uint64_t done = p->bytes_done + p->bytes_present;
	int pct = int(std::min<uint64_t>(99, done * 100 / ctx->meta.file_total_size));
	ctx->download_progress = pct; /* 100 only once every file is in place */
}

/* Replaces check_download_finish() and, on failure, the
 * try_decrease_bulk_load_download_count() of download_sst_file(). */
void on_batch_done(void *user, uint64_t, int result) noexcept
{
	auto *ctx = static_cast<DownloadContext *>(user);
	Node &node = *ctx->node;
	Replica &r = *ctx->replica;
	std::lock_guard<std::mutex> lk(node.mu);
	if (r.ctx.get() != ctx)
		return; /* a restart holds this context and frees it after sstf_cancel() */
	if (result == 0) {
		ctx->download_progress = 100; /* PROGRESS_FINISHED */
		r.status = Status::Downloaded;
	} else {
		r.status = Status::Failed;
		set_error(r.error, ctx->failure[0] ? ctx->failure : sstf_strerror(result));
	}
	node.downloading--;
	node.cv.notify_all();
}

/* --- the replica's download ------------------------------------------- */

void fail_start(Node &node, Replica &r, const std::string &why)
{
	std::lock_guard<std::mutex> lk(node.mu);
	r.status = Status::Failed;
	set_error(r.error, why.c_str());
	r.ctx.reset();
	node.downloading--;
	node.cv.notify_all();
}

/*
 * Replaces download_files() and the chain of download_sst_file() tasks:
 * the metadata with sstf_get(), then every file of the replica as one
 * generation. The engine copies the batch, so the sstf_file array and its
 * strings could go at once; the context stays because the callbacks read
 * it. Called without the lock, on the node's thread, once start_downloads()
 * counted the replica as downloading.
 */
void download_files(Node &node, Replica &r)
{
	auto ctx = std::make_unique<DownloadContext>();
	ctx->node = &node;
	ctx->replica = &r;
	std::string text, err;
	const std::string url = r.remote_dir + "/bulk_load_metadata";
	if (fetch_object(node.cfg, url, text, err) < 0 ||
	    !parse_bulk_load_metadata(text, url, ctx->meta, err))
		return fail_start(node, r, err);

	std::vector<sstf_file> files(ctx->meta.files.size());
	for (size_t i = 0; i < files.size(); i++) {
		const FileMeta &f = ctx->meta.files[i];
		files[i].name = f.name; /* fetched from base_url + "/" + name */
		files[i].size = f.size;
		files[i].digest_kind = f.md5[0] ? SSTF_DIGEST_MD5 : SSTF_DIGEST_NONE;
		files[i].digest_hex = f.md5;
	}
	char ebuf[512] = "";
	sstf_batch b{};
	b.dest_dir = r.local_dir.c_str();
	b.files = files.data();
	b.nfiles = files.size();
	b.on_file_done = on_file_done;
	b.on_batch_done = on_batch_done;
	b.on_progress = on_progress;
	b.user = ctx.get();
	b.errbuf = ebuf;
	b.errbuf_len = sizeof(ebuf);
	b.base_url = r.remote_dir.c_str();

	/* The replica owns the context before any callback can run. */
	{
		std::lock_guard<std::mutex> lk(node.mu);
		r.ctx = std::move(ctx);
	}
	uint64_t gen = 0;
	int rc = sstf_submit(node.engine.get(), &b, &gen);
	if (rc < 0) /* no callback of it will ever run */
		return fail_start(node, r,
		                  r.remote_dir + ": " + (*ebuf ? ebuf : sstf_strerror(rc)));
	std::lock_guard<std::mutex> lk(node.mu);
	r.gen = gen; /* may already be Downloaded: on_batch_done can come first */
}

/*
 * Replaces start_download(): Pegasus answers ERR_BUSY when
 * max_concurrent_bulk_load_downloading_count replicas download, and the
 * meta server asks again next round; here the replica waits for a slot,
 * first come first served.
 */
void start_downloads(Node &node)
{
	std::vector<Replica *> start;
	{
		std::lock_guard<std::mutex> lk(node.mu);
		while (!node.waiting.empty() && node.downloading < node.opt.max_downloading) {
			Replica *r = node.waiting.front();
			node.waiting.pop_front();
			r->status = Status::Downloading;
			r->gen = 0;
			node.downloading++;
			node.peak_downloading = std::max(node.peak_downloading, node.downloading);
			start.push_back(r);
		}
	}
	for (Replica *r : start)
		download_files(node, *r);
}

/*
 * Replaces clear_bulk_load_states() on a replica restart. In 2.4 it cleared
 * _metadata.files under _lock while download_sst_file tasks kept running.
 * Here: take the context out, cancel the generation (outside the lock: its
 * on_batch_done takes it), and only then free the context. From any thread
 * but the engine's loop.
 *
 * Returns 1 after a restart, 0 when no replica can be restarted just now
 * (all queued or fetching their metadata), -1 when none ever can (all
 * failed).
 */
int clear_bulk_load_states(Node &node, std::mt19937_64 &rng)
{
	Replica *r = nullptr;
	uint64_t gen;
	bool was_downloading;
	std::unique_ptr<DownloadContext> ctx;
	{
		std::lock_guard<std::mutex> lk(node.mu);
		/* A replica downloading, else (no replica will download again) one
		 * already downloaded: a ballot change clears those too. */
		std::vector<Replica *> busy, done;
		bool pending = false;
		for (auto &x : node.replicas) {
			if (x.status == Status::Downloading && x.gen)
				busy.push_back(&x);
			else if (x.status == Status::Downloaded && x.gen)
				done.push_back(&x);
			else if (x.status != Status::Failed)
				pending = true;
		}
		if (busy.empty() && pending)
			return 0; /* one will download soon: restart that one */
		std::vector<Replica *> &pick = busy.empty() ? done : busy;
		if (pick.empty())
			return -1; /* every replica failed */
		r = pick[rng() % pick.size()];
		gen = r->gen;
		was_downloading = r->status == Status::Downloading;
		ctx = std::move(r->ctx);
		r->status = Status::Clearing;
	}

	/* Returns once nothing of the generation is left: no transfer, no I/O,
	 * no temporary file, and no callback still to come. */
	sstf_cancel(node.engine.get(), gen);
	/* -ECANCELED: it was cut mid-download; 0: it had just finished. */
	bool mid = sstf_wait(node.engine.get(), gen, 0) == -ECANCELED;
	ctx.reset(); /* poisoned, then freed: nothing can read it any more */

	std::lock_guard<std::mutex> lk(node.mu);
	if (was_downloading)
		node.downloading--;  /* try_decrease_bulk_load_download_count() */
	r->status = Status::Invalid; /* the node starts it again */
	node.waiting.push_back(r);
	r->gen = 0;
	r->restarts++;
	node.restarts_total++;
	node.restarts_mid_download += mid;
	node.cv.notify_all();
	return 1;
}

/* K restarts at random moments, from a thread that is not the loop. */
void restart_thread(Node &node)
{
	std::mt19937_64 rng(uint64_t(node.opt.seed));
	std::uniform_int_distribution<long> delay(0, node.opt.restart_max_delay_ms);
	for (long i = 0; i < node.opt.restart_iterations && !node.stop;) {
		std::this_thread::sleep_for(std::chrono::milliseconds(delay(rng)));
		int rc;
		while ((rc = clear_bulk_load_states(node, rng)) == 0 && !node.stop)
			std::this_thread::sleep_for(std::chrono::milliseconds(1));
		if (rc < 0)
			break;
		i++;
	}
	std::lock_guard<std::mutex> lk(node.mu);
	node.restarts_over = true;
	node.cv.notify_all();
}

/* Joins a thread however the scope is left, telling it to stop first. */
struct Joiner {
	Node &node;
	std::thread t;
	~Joiner()
	{
		if (!t.joinable())
			return;
		if (std::uncaught_exceptions())
			node.stop = true;
		t.join();
	}
};

/* Replaces report_group_download_progress(): each replica's percent and
 * the average, as the meta server sees them. Called with the lock held. */
void report_progress(Node &node)
{
	std::string line = "progress:";
	int total = 0;
	for (auto &r : node.replicas) {
		int pct = r.status == Status::Downloaded ? 100
		          : r.ctx                        ? r.ctx->download_progress.load()
		                                         : 0;
		total += pct;
		line += " " + std::to_string(node.app_id) + "." + std::to_string(r.pidx) + "=" +
		        std::to_string(pct) + "%";
	}
	std::fprintf(stderr, "%s total=%d%% downloading=%ld\n", line.c_str(),
	             total / int(node.replicas.size()), node.downloading);
}

/* The node's replication thread: starts downloads as slots free up,
 * reports progress, and returns once every replica has finished and the
 * restarts are over. */
void run(Node &node)
{
	auto next_report = std::chrono::steady_clock::now();
	for (;;) {
		start_downloads(node);
		std::unique_lock<std::mutex> lk(node.mu);
		bool all_end = std::all_of(node.replicas.begin(), node.replicas.end(), [](auto &r) {
			return r.status == Status::Downloaded || r.status == Status::Failed;
		});
		if (all_end && node.restarts_over)
			return;
		auto now = std::chrono::steady_clock::now();
		if (node.opt.report_ms && now >= next_report) {
			report_progress(node);
			next_report = now + std::chrono::milliseconds(node.opt.report_ms);
		}
		node.cv.wait_for(lk, std::chrono::milliseconds(50));
	}
}

/* After the download: what ingestion would open. The engine verified each
 * file's length and MD5 before publishing it; this checks that each is in
 * place with its size and that no temporary is left. */
bool verify(Node &node, Replica &r, uint64_t &files, uint64_t &bytes)
{
	/* The generation ended; sstf_wait() returns once its memory is gone. */
	int rc = sstf_wait(node.engine.get(), r.gen, -1);
	if (rc != 0) {
		std::snprintf(r.error, sizeof(r.error), "generation: %s", sstf_strerror(rc));
		return false;
	}
	struct stat st;
	for (const FileMeta &f : r.ctx->meta.files) {
		std::string path = r.local_dir + "/" + f.name;
		if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode) ||
		    uint64_t(st.st_size) != f.size) {
			set_error(r.error, "not in place with its size: ", path.c_str());
			return false;
		}
		files++;
		bytes += f.size;
	}
	if (stat((r.local_dir + "/.sstf").c_str(), &st) == 0) {
		set_error(r.error, "temporaries left in ", r.local_dir.c_str());
		return false;
	}
	return true;
}

int mkdirs(const std::string &path)
{
	for (size_t at = 1; at <= path.size(); at++) {
		if (at < path.size() && path[at] != '/')
			continue;
		if (mkdir(path.substr(0, at).c_str(), 0755) != 0 && errno != EEXIST)
			return -errno;
	}
	return 0;
}

const char *env(const char *name)
{
	const char *v = std::getenv(name);
	return v && *v ? v : nullptr;
}

int run_node(Node &node)
{
	const Options &o = node.opt;
	/* S3 settings from the environment, as the AWS tools take them. */
	node.s3.access_key_id = env("AWS_ACCESS_KEY_ID");
	node.s3.secret_access_key = env("AWS_SECRET_ACCESS_KEY");
	node.s3.session_token = env("AWS_SESSION_TOKEN");
	node.s3.region = env("AWS_REGION") ? env("AWS_REGION") : env("AWS_DEFAULT_REGION");
	node.s3.endpoint = env("AWS_ENDPOINT_URL");
	node.cfg.s3 = &node.s3;
	node.cfg.progress_interval_ms = 100;

	/* The meta server reads bulk_load_info; a node would get the
	 * partition count with its replicas. Here the node reads it too. */
	std::string text, err;
	Json info;
	if (fetch_object(node.cfg, o.remote + "/bulk_load_info", text, err) < 0 ||
	    !(info = parse_json(text, o.remote + "/bulk_load_info", err))) {
		std::fprintf(stderr, "pegasus-replica: %s\n", err.c_str());
		return 1;
	}
	json_t *name = json_object_get(info.get(), "app_name");
	long long count = json_count(info.get(), "partition_count");
	node.app_id = json_count(info.get(), "app_id");
	if (!json_is_string(name) || count <= 0 || node.app_id < 0 || o.partitions > count) {
		std::fprintf(stderr,
		             "pegasus-replica: %s/bulk_load_info: needs app_id, app_name "
		             "and a partition_count of at least --partitions (%ld)\n",
		             o.remote.c_str(), o.partitions);
		return 1;
	}
	node.app_name = json_string_value(name);

	node.replicas.resize(size_t(o.partitions ? o.partitions : count));
	for (size_t i = 0; i < node.replicas.size(); i++) {
		Replica &r = node.replicas[i];
		r.pidx = int(i);
		r.remote_dir = o.remote + "/" + std::to_string(i);
		r.local_dir = o.local + "/" + std::to_string(node.app_id) + "." +
		              std::to_string(i) + ".pegasus/.bulk_load";
		if (int rc = mkdirs(r.local_dir); rc < 0) {
			std::fprintf(stderr, "pegasus-replica: %s: %s\n", r.local_dir.c_str(),
			             std::strerror(-rc));
			return 1;
		}
		node.waiting.push_back(&r);
	}

	/* One engine for every replica of the node. */
	sstf_engine *e = nullptr;
	char ebuf[256] = "";
	int rc = sstf_engine_new(&node.cfg, &e);
	if (rc < 0) {
		sstf_config_check(&node.cfg, ebuf, sizeof(ebuf));
		std::fprintf(stderr, "pegasus-replica: engine: %s %s\n", sstf_strerror(rc), ebuf);
		return 1;
	}
	node.engine.reset(e);
	/* hdfs_read_limit_rate_mb_per_sec is a mutable flag: its update hook
	 * would call sstf_set_rate() again, at any time. */
	sstf_set_rate(e, uint64_t(o.rate_mb) << 20);

	auto t0 = std::chrono::steady_clock::now();
	node.restarts_over = o.restart_iterations == 0;
	{
		Joiner restarts{node, {}};
		if (o.restart_iterations)
			restarts.t = std::thread(restart_thread, std::ref(node));
		run(node);
	}
	double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();

	unsigned downloaded = 0, failed = 0;
	uint64_t files = 0, bytes = 0;
	for (auto &r : node.replicas) {
		bool ok = r.status == Status::Downloaded && verify(node, r, files, bytes);
		ok ? downloaded++ : failed++;
		std::printf("replica %lld.%d: %s, %u restarts%s%s\n", node.app_id, r.pidx,
		            ok ? "downloaded and verified" : "FAILED", r.restarts,
		            r.error[0] ? ": " : "", r.error);
	}
	std::printf("summary: app=%s app_id=%lld partitions=%zu downloaded=%u failed=%u "
	            "files=%" PRIu64 " bytes=%" PRIu64 " restarts=%u restarts_mid_download=%u "
	            "max_downloading=%ld peak_downloading=%ld seconds=%.1f\n",
	            node.app_name.c_str(), node.app_id, node.replicas.size(), downloaded, failed,
	            files, bytes, node.restarts_total, node.restarts_mid_download,
	            o.max_downloading, node.peak_downloading, secs);
	return failed ? 1 : 0;
}

} // namespace

int main(int argc, char **argv)
{
	Node node;
	if (int rc = parse_options(argc, argv, node.opt); rc)
		return rc == 1 ? 0 : rc;
	int rc = 1;
	try {
		rc = run_node(node);
	} catch (const std::exception &ex) {
		std::fprintf(stderr, "pegasus-replica: %s\n", ex.what());
	}
	std::fflush(stdout);
	return rc;
}
