/*
 * Description: the operator trial: what an operator does to the sstfetch
 * tool, done through the real binary ($SSTFETCH) as they would do it, each
 * test named for what it proves. Two processes fetching into one --dest at
 * once, with the same names and with different ones, twenty rounds each;
 * no network at all (a network namespace of its own); a --dest that is a
 * file; a buffer pool larger than the machine; manifest entries in the
 * engine's .sstf namespace; an entry URL of another scheme than the
 * source's; a flipped byte, a 404 and a stall from the fault origin; a
 * file missing (404) on the first of two mirrors and served by the second; a
 * second run over a complete destination, and a file corrupted under it;
 * a job larger than its disk (a small tmpfs); a manifest of a million
 * entries and the tool's peak memory loading it; the live status line of
 * --eta=always, read while the tool runs, and SIGKILL.
 *
 * Origins are nginx (support/origin.h) or the fault origin in threads of
 * this process (support/faultorigin.h), on free loopback ports; datasets
 * come from the tool's own --gen-dataset. Timeouts are hang guards only;
 * the one number measured is the million-entry run's peak RSS, a size,
 * not a time.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <jansson.h>

#include "support/dataset.h"
#include "support/faultorigin.h"
#include "support/origin.h"
#include "support/tool.h"

#define KIB 1024ull
#define MIB (1024ull * 1024)
/* Rounds of the two-process tests. */
#define ROUNDS 20
/* Hang guard of the run without a network. */
#define NO_NET_GUARD_S 60

static char *work;               /* this test's temp dir */
static struct origin *org;       /* nginx, when started */
static struct fault_origin *fo;  /* the fault origin, when started */
static char *mounted;            /* a tmpfs this test mounted, if any */

static void fixture_init(void)
{
	work = tool_setup("operator");
}

static void fixture_fini(void)
{
	/* Unmounted first, so that the temp dir can be removed; the mount
	 * namespace itself dies with the test's process. */
	if (mounted)
		umount2(mounted, MNT_DETACH);
	free(mounted);
	mounted = NULL;
	tool_teardown();
	work = NULL;
	fault_origin_stop(fo);
	fo = NULL;
	origin_stop(org);
	org = NULL;
}

TestSuite(operator, .init = fixture_init, .fini = fixture_fini);

/* Criterion runs no .fini after cr_skip_test(): tidy up first (the fini
 * may run twice). */
#define SKIP(...)                            \
	do {                                     \
		fixture_fini();                      \
		cr_skip_test(__VA_ARGS__);           \
	} while (0)

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* nginx serving dir; returns its base URL. */
static const char *serve(const char *dir)
{
	int err = origin_start(dir, &org);
	cr_assert_eq(err, 0, "nginx did not start: %s", strerror(-err));
	return org->base_url;
}

/* The fault origin serving dir; returns its base URL. */
static const char *serve_faults(const char *dir)
{
	int err = fault_origin_start(dir, &fo);
	cr_assert_eq(err, 0, "fault_origin_start: %s", strerror(-err));
	return fault_origin_url(fo);
}

/* Gives the fault origin's "/NAME" of dataset file i the fault f. */
static void set_fault(size_t i, struct fault f)
{
	const char *path = fmt("/%06zu.sst", i);
	int err = fault_origin_set(fo, path, &f);
	cr_assert_eq(err, 0, "fault_origin_set %s: %s", path, strerror(-err));
}

static unsigned requests(size_t i)
{
	return fault_origin_requests(fo, fmt("/%06zu.sst", i));
}

/* 1 when needle occurs in s as a whole number: no digit on either side. */
static int has_number(const char *s, const char *needle)
{
	size_t n = strlen(needle);
	for (const char *at = strstr(s, needle); at; at = strstr(at + 1, needle)) {
		int before = at > s && at[-1] >= '0' && at[-1] <= '9';
		int after = at[n] >= '0' && at[n] <= '9';
		if (!before && !after)
			return 1;
	}
	return 0;
}

/* Fails unless the run's stderr contains every one of the NULL-terminated
 * needles. */
static void expect_err_says(const struct run *r, const char *const *needles)
{
	for (const char *const *n = needles; *n; n++)
		cr_assert(strstr(r->err, *n), "%s: stderr does not say \"%s\":\n%s",
		          r->cmd, *n, r->err);
}

#define EXPECT_ERR_SAYS(r, ...)                                      \
	do {                                                             \
		const char *const says_[] = {__VA_ARGS__, NULL};             \
		expect_err_says((r), says_);                                 \
	} while (0)

/* files.<key> of a job of a JSON report. */
static json_int_t files_count(json_t *job, const char *key)
{
	return jint(jobj(job, "files"), key);
}

/* ------------------------------------------------------------------------ */
/* 1. Two processes, one destination                                        */

/*
 * Runs `rounds` rounds of two tools started together into one dest, with
 * manifests ma and mb from `source`, --existing=refetch so that both write
 * every file every round; after each, `check` looks at dest, which is then
 * emptied. Both must exit 0 having fetched every file of their manifest
 * (ok == na / nb: nothing skipped, nothing failed).
 */
static void two_processes(const char *source, const char *ma, size_t na,
                          const char *mb, size_t nb,
                          void (*check)(const char *dest, unsigned round))
{
	const char *dest = fmt("%s/dest", work);
	cr_assert_eq(ds_mkdirs(dest), 0);
	for (unsigned round = 0; round < ROUNDS; round++) {
		struct tool_proc *a = SPAWN(fmt("--manifest=%s", ma),
		                            fmt("--source=%s", source),
		                            fmt("--dest=%s", dest), "--existing=refetch",
		                            "--parallel=8", "--output-format=json",
		                            "--name=a");
		struct tool_proc *b = SPAWN(fmt("--manifest=%s", mb),
		                            fmt("--source=%s", source),
		                            fmt("--dest=%s", dest), "--existing=refetch",
		                            "--parallel=8", "--output-format=json",
		                            "--name=b");
		struct run ra, rb;
		tool_wait(a, &ra);
		tool_wait(b, &rb);
		expect_exit(&ra, 0);
		expect_exit(&rb, 0);
		json_t *ja = report_job(ra.out), *jb = report_job(rb.out);
		cr_assert_eq(files_count(ja, "ok"), (json_int_t)na,
		             "round %u: a fetched %" JSON_INTEGER_FORMAT " of %zu", round,
		             files_count(ja, "ok"), na);
		cr_assert_eq(files_count(jb, "ok"), (json_int_t)nb,
		             "round %u: b fetched %" JSON_INTEGER_FORMAT " of %zu", round,
		             files_count(jb, "ok"), nb);
		check(dest, round);
		cr_assert_eq(ds_empty_dir(dest), 0);
	}
}

static const char *same_set;
static size_t same_n;

static void check_same(const char *dest, unsigned round)
{
	(void)round;
	/* Every file byte for byte, nothing else: DEST/.sstf is gone too. */
	expect_dest(same_set, dest, same_n, 0);
}

Test(operator, two_processes_one_dest_same_names_20_runs)
{
	same_n = 32;
	same_set = fmt("%s/set", work);
	gen_dataset(same_set, same_n, "64k:512k", 101);
	const char *url = serve(same_set);
	const char *m = fmt("%s/manifest.json", same_set);
	two_processes(url, m, same_n, m, same_n, check_same);
}

static const char *diff_root;
static size_t diff_n;

/* dest holds A's "%06zu.sst" and B's "b-%06zu.sst", each equal to its
 * origin file in diff_root, and nothing else. */
static void check_different(const char *dest, unsigned round)
{
	for (size_t i = 1; i <= diff_n; i++) {
		static const char *const prefix[2] = {"", "b-"};
		for (size_t k = 0; k < 2; k++) {
			const char *name = fmt("%s%06zu.sst", prefix[k], i);
			int eq = ds_files_equal(fmt("%s/%s", diff_root, name),
			                        fmt("%s/%s", dest, name));
			cr_assert_eq(eq, 1, "round %u: %s/%s: %s", round, dest, name,
			             eq == 0 ? "differs from the origin's file"
			                     : strerror(-eq));
		}
	}
	/* 2n files, the served manifest not among them, and no .sstf*. */
	size_t count = dir_count(dest);
	cr_assert_eq(count, 2 * diff_n, "round %u: %s holds %zu entries, "
	             "expected %zu", round, dest, count, 2 * diff_n);
	char first[256] = "";
	cr_assert_eq(ds_count_temps(dest, first, sizeof(first)), 0,
	             "round %u: temporary left in %s: %s", round, dest, first);
}

Test(operator, two_processes_one_dest_different_names_20_runs)
{
	/* A: "000001.sst" on, in root. B: another seed, moved into root
	 * as "b-000001.sst" on, with its manifest's names rewritten. One
	 * nginx serves both. */
	diff_n = 24;
	diff_root = fmt("%s/root", work);
	const char *bdir = fmt("%s/b", work);
	gen_dataset(diff_root, diff_n, "64k:512k", 201);
	gen_dataset(bdir, diff_n, "64k:512k", 202);
	for (size_t i = 1; i <= diff_n; i++) {
		const char *to = fmt("%s/b-%06zu.sst", diff_root, i);
		cr_assert_eq(rename(set_file(bdir, i), to), 0, "%s: %s", to,
		             strerror(errno));
		cr_assert_eq(ds_files_equal(set_file(diff_root, i), to), 0,
		             "the two datasets share bytes");
	}
	json_t *mb = parse_json(slurp(fmt("%s/manifest.json", bdir), NULL), "b");
	size_t i;
	json_t *entry;
	json_array_foreach(jget(mb, "files"), i, entry) {
		const char *name = fmt("b-%s", jstr(entry, "name"));
		cr_assert_eq(json_object_set_new(entry, "name", json_string(name)), 0);
	}
	const char *mb_path = fmt("%s/b.json", work);
	cr_assert_eq(json_dump_file(mb, mb_path, JSON_INDENT(1)), 0);

	const char *url = serve(diff_root);
	two_processes(url, fmt("%s/manifest.json", diff_root), diff_n, mb_path,
	              diff_n, check_different);
}

/* ------------------------------------------------------------------------ */
/* 2. No network                                                            */

/* 1 when this process may make a network namespace (tried in a child). */
static int can_unshare_net(void)
{
	pid_t pid = fork();
	cr_assert_geq(pid, 0, "fork: %s", strerror(errno));
	if (pid == 0)
		_exit(unshare(CLONE_NEWNET) == 0 ? 0 : 1);
	int st;
	while (waitpid(pid, &st, 0) < 0)
		cr_assert_eq(errno, EINTR, "waitpid: %s", strerror(errno));
	return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

Test(operator, no_network_fails_promptly_with_a_clear_message)
{
	if (!can_unshare_net())
		SKIP("no privilege for a network namespace (unshare -n)");
	const char *set = fmt("%s/set", work);
	gen_dataset(set, 4, "16k", 301);
	const char *dest = fmt("%s/dest", work);

	/* In a namespace of its own the tool has no interface up, not even
	 * loopback: every connect fails with ENETUNREACH at once. */
	static const char *const wrapper[] = {"/usr/bin/unshare", "-n", NULL};
	const char *const args[] = {
		fmt("--manifest=%s/manifest.json", set), "--source=http://127.0.0.1:1",
		fmt("--dest=%s", dest), "--retries=0", "--output-format=json", NULL,
	};
	struct tool_proc *p = tool_spawn(wrapper, args);
	struct run r;
	if (tool_wait_for(p, &r, NO_NET_GUARD_S) != 0) {
		tool_kill(p, &r);
		cr_assert_fail("%s: still running after %d s without a network, "
		               "killed; stderr:\n%s", r.cmd, NO_NET_GUARD_S, r.err);
	}
	cr_assert(!strstr(r.err, "unshare failed"), "unshare: %s", r.err);
	expect_exit(&r, 1);

	json_t *job = report_job(r.out);
	cr_assert_eq(files_count(job, "failed"), 4);
	cr_assert_eq(files_count(job, "ok"), 0);
	json_t *fails = jget(job, "failures");
	cr_assert(json_is_array(fails) && json_array_size(fails) == 4,
	          "failures: expected 4 entries:\n%s", r.out);
	size_t i;
	json_t *f;
	json_array_foreach(fails, i, f) {
		const char *detail = jstr(f, "detail");
		cr_assert(strstr(detail, "connect"), "%s: detail does not name the "
		          "failed connect: \"%s\"", jstr(f, "name"), detail);
		cr_assert(strstr(detail, "Network is unreachable"), "%s: detail "
		          "does not say \"Network is unreachable\": \"%s\"",
		          jstr(f, "name"), detail);
	}
	cr_assert_eq(ds_count_temps(dest, NULL, 0), 0);
	cr_assert(dir_empty(dest), "%s is not empty", dest);
}

/* ------------------------------------------------------------------------ */
/* 3. A --dest that is a file                                               */

Test(operator, dest_that_is_a_file_exits_2)
{
	const char *set = fmt("%s/set", work);
	gen_dataset(set, 2, "4k", 401);
	const char *dest = fmt("%s/not-a-dir", work);
	static const char text[] = "an operator's notes, not a directory\n";
	cr_assert_eq(ds_write_file(dest, text, sizeof(text) - 1), 0);
	struct stat before, after;
	cr_assert_eq(stat(dest, &before), 0);

	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set),
	    fmt("--source=file://%s", set), fmt("--dest=%s", dest));
	expect_exit(&r, 2);
	EXPECT_ERR_SAYS(&r, fmt("--dest=%s", dest), "not a directory");

	cr_assert_eq(stat(dest, &after), 0);
	cr_assert(S_ISREG(after.st_mode), "%s is no longer a file", dest);
	cr_assert_eq(after.st_size, before.st_size);
	cr_assert(after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	          after.st_mtim.tv_nsec == before.st_mtim.tv_nsec,
	          "%s was written to", dest);
	cr_assert_str_eq(slurp(dest, NULL), text);
	cr_assert(!ds_exists(fmt("%s/.sstf", dest)));
}

/* ------------------------------------------------------------------------ */
/* 4. A buffer pool past memory                                             */

Test(operator, buffer_pool_past_memory_exits_2_naming_the_options)
{
	/* 2 x 1024 x 64 MiB = 128 GiB; the default cap is half of memory. */
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	cr_assert(pages > 0 && psize > 0);
	if ((uint64_t)pages * (uint64_t)psize / 2 >= 128 * 1024 * MIB)
		SKIP("this machine has 256 GiB or more: a 128 GiB pool fits");

	const char *set = fmt("%s/set", work);
	gen_dataset(set, 4, "16k", 501);
	const char *manifest = fmt("--manifest=%s/manifest.json", set);
	const char *source = fmt("--source=file://%s", set);
	const char *dest = fmt("%s/dest", work);
	const char *dest_arg = fmt("--dest=%s", dest);

	struct run r;
	RUN(&r, manifest, source, dest_arg, "--parallel=1024", "--bs=64m");
	expect_exit(&r, 2);
	EXPECT_ERR_SAYS(&r, "--parallel", "--bs", "--mem", "--mem_max",
	                "half of memory");
	cr_assert(!ds_exists(dest), "%s: created %s", r.cmd, dest);

	/* --mem_max moves the cap both ways. Below an explicit --mem: */
	RUN(&r, manifest, source, dest_arg, "--mem=256m", "--mem_max=128m");
	expect_exit(&r, 2);
	EXPECT_ERR_SAYS(&r, "--mem", "--mem_max", "256MiB", "128MiB");
	cr_assert(!ds_exists(dest), "%s: created %s", r.cmd, dest);

	/* Above it, the job runs. */
	RUN(&r, manifest, source, dest_arg, "--mem=256m", "--mem_max=512m");
	expect_exit(&r, 0);
	expect_dest(set, dest, 4, 0);
}

/* ------------------------------------------------------------------------ */
/* 5. Entries in the engine's namespace                                     */

Test(operator, entry_named_like_a_temporary_exits_2)
{
	/* The files exist at the source: only the names can be refused. */
	const char *src = fmt("%s/src", work);
	static const char *const bad[] = {".sstf-1-0.tmp", "a/.sstf/x"};
	cr_assert_eq(ds_mkdirs(fmt("%s/a/.sstf", src)), 0);
	cr_assert_eq(ds_write_random(fmt("%s/ok.sst", src), 4096, 1), 0);
	for (size_t k = 0; k < 2; k++)
		cr_assert_eq(ds_write_random(fmt("%s/%s", src, bad[k]), 4096, 2), 0);

	const char *dest = fmt("%s/dest", work);
	for (size_t k = 0; k < 2; k++) {
		const char *path = fmt("%s/m%zu.json", work, k);
		const char *text = fmt("{\"files\": [{\"name\": \"ok.sst\", \"size\": 4096},"
		                       " {\"name\": \"%s\", \"size\": 4096}]}", bad[k]);
		cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
		struct run r;
		RUN(&r, fmt("--manifest=%s", path), fmt("--source=file://%s", src),
		    fmt("--dest=%s", dest), "--verify=none");
		expect_exit(&r, 2);
		EXPECT_ERR_SAYS(&r, fmt("\"%s\"", bad[k]), ".sstf");
		cr_assert(!ds_exists(dest), "%s: created %s", r.cmd, dest);
	}
}

/* ------------------------------------------------------------------------ */
/* 6. An entry URL of another scheme                                        */

Test(operator, entry_url_with_another_scheme_is_refused_unless_allowed)
{
	struct stat pw;
	if (stat("/etc/passwd", &pw) != 0 || pw.st_size < 2)
		SKIP("no /etc/passwd to point at");
	const char *pw_size = fmt("%jd", (intmax_t)pw.st_size);

	const char *src = fmt("%s/src", work);
	cr_assert_eq(ds_mkdirs(src), 0);
	cr_assert_eq(ds_write_random(fmt("%s/ok.sst", src), 4096, 1), 0);
	const char *url = serve(src);
	/* A size that is not the file's: the tool must not find out. */
	const char *path = fmt("%s/m.json", work);
	const char *text = "{\"files\": [{\"name\": \"ok.sst\", \"size\": 4096},"
	                   " {\"name\": \"passwd.sst\", \"size\": 1,"
	                   " \"url\": \"file:///etc/passwd\"}]}";
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, fmt("--manifest=%s", path), fmt("--source=%s", url),
	    fmt("--dest=%s", dest), "--verify=none");
	expect_exit(&r, 2);
	EXPECT_ERR_SAYS(&r, "passwd.sst", "file://", "--protocols");
	cr_assert(!has_number(r.err, pw_size), "%s: stderr holds /etc/passwd's "
	          "size (%s):\n%s", r.cmd, pw_size, r.err);
	cr_assert(!has_number(r.out, pw_size), "%s: stdout holds /etc/passwd's "
	          "size (%s):\n%s", r.cmd, pw_size, r.out);
	cr_assert(!ds_exists(dest), "%s: created %s", r.cmd, dest);

	/* Allowed, it passes the checks and gets as far as the fetch, where
	 * the length (1) does not match: that entry fails, the other not. */
	RUN(&r, fmt("--manifest=%s", path), fmt("--source=%s", url),
	    fmt("--dest=%s", dest), "--verify=none", "--protocols=http,file",
	    "--output-format=json");
	cr_assert_neq(r.code, 2, "%s: refused with --protocols=http,file:\n%s",
	              r.cmd, r.err);
	expect_exit(&r, 1);
	json_t *job = report_job(r.out);
	cr_assert_eq(files_count(job, "ok"), 1);
	cr_assert_eq(files_count(job, "failed"), 1);
	cr_assert_str_eq(jstr(json_array_get(jget(job, "failures"), 0), "name"),
	                 "passwd.sst");
	cr_assert(!ds_exists(fmt("%s/passwd.sst", dest)), "a file of the wrong "
	          "length was published");
	cr_assert_eq(ds_files_equal(fmt("%s/ok.sst", src), fmt("%s/ok.sst", dest)), 1);
}

/* ------------------------------------------------------------------------ */
/* 7-9. Faults of the origin                                                */

#define FAULT_NFILES 8

/* work/set of FAULT_NFILES files of `size` behind the fault origin;
 * returns its URL. */
static const char *fault_set(const char *size, unsigned long long seed)
{
	const char *set = fmt("%s/set", work);
	gen_dataset(set, FAULT_NFILES, size, seed);
	return serve_faults(set);
}

Test(operator, file_flipped_once_is_refetched_and_verified)
{
	const char *url = fault_set("256k", 701);
	set_fault(3, (struct fault){.kind = FAULT_FLIP, .at = 100 * KIB + 7,
	                            .first_k = 1});
	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/set/manifest.json", work),
	    fmt("--source=%s", url), fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_geq(jint(jobj(job, "net"), "retries"), 1,
	              "net.retries %" JSON_INTEGER_FORMAT " after a flipped byte",
	              jint(jobj(job, "net"), "retries"));
	cr_assert_eq(files_count(job, "ok"), FAULT_NFILES);
	cr_assert_geq(requests(3), 2, "the flipped file was fetched once only");
	expect_dest(fmt("%s/set", work), dest, FAULT_NFILES, 0);
}

Test(operator, missing_file_fails_alone_exit_1)
{
	const char *url = fault_set("256k", 801);
	set_fault(5, (struct fault){.kind = FAULT_404});
	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/set/manifest.json", work),
	    fmt("--source=%s", url), fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 1);
	json_t *job = report_job(r.out);
	cr_assert_eq(files_count(job, "ok"), FAULT_NFILES - 1);
	cr_assert_eq(files_count(job, "failed"), 1);
	json_t *fails = jget(job, "failures");
	cr_assert(json_is_array(fails) && json_array_size(fails) == 1,
	          "failures: expected one entry:\n%s", r.out);
	json_t *f = json_array_get(fails, 0);
	cr_assert_str_eq(jstr(f, "name"), "000005.sst");
	cr_assert(strstr(jstr(f, "detail"), "HTTP 404"), "detail \"%s\"",
	          jstr(f, "detail"));
	expect_dest(fmt("%s/set", work), dest, FAULT_NFILES, 5);
}

/*
 * Writes work/NAME: set's manifest with "urls" in every entry, base + "/" +
 * the entry's name for each of the n bases, in order. Returns its path.
 */
static const char *mirrored_manifest(const char *set, const char *name,
                                     const char *const *bases, size_t n)
{
	json_t *m = parse_json(slurp(fmt("%s/manifest.json", set), NULL),
	                       "manifest.json");
	size_t i;
	json_t *e;
	json_array_foreach(jget(m, "files"), i, e) {
		json_t *urls = json_array();
		cr_assert_not_null(urls);
		for (size_t k = 0; k < n; k++)
			cr_assert_eq(json_array_append_new(urls, json_string(fmt("%s/%s",
			             bases[k], jstr(e, "name")))), 0);
		cr_assert_eq(json_object_set_new(e, "urls", urls), 0);
	}
	const char *path = fmt("%s/%s", work, name);
	char *text = keep(json_dumps(m, JSON_INDENT(1) | JSON_PRESERVE_ORDER));
	cr_assert_eq(ds_write_file(path, text, strlen(text)), 0);
	return path;
}

/* Needs the engine's mirrors (sstf_file.urls, sstf_file_result.mirror_bytes). */
Test(operator, file_missing_on_the_first_mirror_comes_from_the_second)
{
	/* Mirror 0 is the fault origin, which answers 404 for file 5 on
	 * every request; mirror 1 is nginx on the same files. */
	const char *faulty = fault_set("256k", 811);
	const char *set = fmt("%s/set", work);
	set_fault(5, (struct fault){.kind = FAULT_404});
	const char *const bases[] = {faulty, serve(set)};
	const char *path = mirrored_manifest(set, "mirrored.json", bases, 2);
	const char *dest = fmt("%s/dest", work);

	struct run r;
	RUN(&r, fmt("--manifest=%s", path), fmt("--source=%s", faulty),
	    fmt("--dest=%s", dest), "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_eq(files_count(job, "ok"), FAULT_NFILES);
	cr_assert_geq(requests(5), 1, "file 5 was never asked of mirror 0");
	/* Every file but 5 from mirror 0, which answers; file 5 from 1. */
	json_t *mir = jget(job, "mirrors");
	cr_assert(json_is_array(mir) && json_array_size(mir) == 2,
	          "\"mirrors\" is not an array of 2:\n%s", r.out);
	json_int_t m0 = json_integer_value(json_array_get(mir, 0));
	json_int_t m1 = json_integer_value(json_array_get(mir, 1));
	cr_assert_eq(m0, (json_int_t)((FAULT_NFILES - 1) * 256 * KIB),
	             "mirror 0 served %" JSON_INTEGER_FORMAT, m0);
	cr_assert_eq(m1, (json_int_t)(256 * KIB), "mirror 1 served %"
	             JSON_INTEGER_FORMAT, m1);
	expect_dest(set, dest, FAULT_NFILES, 0);
}

Test(operator, stall_options_fail_a_stalled_transfer_and_retry)
{
	const char *url = fault_set("256k", 901);
	set_fault(2, (struct fault){.kind = FAULT_STALL, .at = 64 * KIB,
	                            .first_k = 1});
	const char *dest = fmt("%s/dest", work);
	struct run r;
	RUN(&r, fmt("--manifest=%s/set/manifest.json", work),
	    fmt("--source=%s", url), fmt("--dest=%s", dest), "--stall_rate=1m",
	    "--stall_time=1", "--output-format=json");
	expect_exit(&r, 0);
	json_t *job = report_job(r.out);
	cr_assert_geq(jint(jobj(job, "net"), "retries"), 1,
	              "net.retries %" JSON_INTEGER_FORMAT " after a stall",
	              jint(jobj(job, "net"), "retries"));
	cr_assert_geq(requests(2), 2, "the stalled file was requested once only");
	expect_dest(fmt("%s/set", work), dest, FAULT_NFILES, 0);
}

/* ------------------------------------------------------------------------ */
/* 10. A second run over a complete destination                             */

/* One run into dest with --existing=existing; returns its job. */
static json_t *run_existing(const char *set, const char *url, const char *dest,
                            const char *existing)
{
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", set), fmt("--source=%s", url),
	    fmt("--dest=%s", dest), fmt("--existing=%s", existing),
	    "--output-format=json");
	expect_exit(&r, 0);
	return report_job(r.out);
}

/* files ok and skipped, write.io_bytes and write.present_bytes of a job. */
static void expect_counts(json_t *job, const char *what, json_int_t ok,
                          json_int_t skipped, uint64_t io, uint64_t present)
{
	json_t *w = jobj(job, "write");
	cr_assert(files_count(job, "ok") == ok && files_count(job, "skipped") == skipped,
	          "%s: ok %" JSON_INTEGER_FORMAT ", skipped %" JSON_INTEGER_FORMAT
	          "; expected %" JSON_INTEGER_FORMAT ", %" JSON_INTEGER_FORMAT, what,
	          files_count(job, "ok"), files_count(job, "skipped"), ok, skipped);
	cr_assert_eq(files_count(job, "failed"), 0, "%s: failed files", what);
	cr_assert_eq((uint64_t)jint(w, "io_bytes"), io, "%s: io_bytes %"
	             JSON_INTEGER_FORMAT ", expected %" PRIu64, what,
	             jint(w, "io_bytes"), io);
	cr_assert_eq((uint64_t)jint(w, "present_bytes"), present, "%s: present_bytes %"
	             JSON_INTEGER_FORMAT ", expected %" PRIu64, what,
	             jint(w, "present_bytes"), present);
}

Test(operator, second_run_skips_every_verified_file)
{
	enum { N = 16, VICTIM = 7 };
	const char *set = fmt("%s/set", work);
	uint64_t total = gen_dataset(set, N, "1:256k", 1001);
	const char *url = serve(set);
	const char *dest = fmt("%s/dest", work);

	expect_counts(run_existing(set, url, dest, "trust"), "first run", N, 0,
	              total, 0);
	expect_counts(run_existing(set, url, dest, "trust"), "second run", 0, N,
	              0, total);
	expect_counts(run_existing(set, url, dest, "rehash"), "rehash run", 0, N,
	              0, total);
	expect_dest(set, dest, N, 0);

	/* Corrupt one published file: same size, one byte changed, its
	 * mtime put back to the nanosecond. */
	const char *victim = set_file(dest, VICTIM);
	struct stat before, after;
	cr_assert_eq(stat(victim, &before), 0);
	uint64_t vsize = (uint64_t)before.st_size;
	int fd = open(victim, O_RDWR | O_CLOEXEC);
	cr_assert_geq(fd, 0, "%s: %s", victim, strerror(errno));
	unsigned char c;
	off_t at = (off_t)(vsize / 2);
	cr_assert_eq(pread(fd, &c, 1, at), 1);
	c ^= 0x40;
	cr_assert_eq(pwrite(fd, &c, 1, at), 1);
	close(fd);
	struct timespec times[2] = {before.st_atim, before.st_mtim};
	cr_assert_eq(utimensat(AT_FDCWD, victim, times, 0), 0, "utimensat: %s",
	             strerror(errno));
	cr_assert_eq(stat(victim, &after), 0);
	cr_assert(after.st_size == before.st_size &&
	          after.st_mtim.tv_sec == before.st_mtim.tv_sec &&
	          after.st_mtim.tv_nsec == before.st_mtim.tv_nsec,
	          "the corrupted file's size or mtime changed");
	cr_assert_eq(ds_files_equal(set_file(set, VICTIM), victim), 0);

	/* Trust: the record matches size and mtime, so the file is skipped
	 * unread, as documented, and stays corrupt. */
	expect_counts(run_existing(set, url, dest, "trust"), "trust after the "
	              "corruption", 0, N, 0, total);
	cr_assert_eq(ds_files_equal(set_file(set, VICTIM), victim), 0,
	             "trust mode read the file after all");

	/* Rehash reads it, finds the digest wrong and fetches it again. */
	expect_counts(run_existing(set, url, dest, "rehash"), "rehash after the "
	              "corruption", 1, N - 1, vsize, total - vsize);
	expect_dest(set, dest, N, 0);
	expect_counts(run_existing(set, url, dest, "trust"), "trust after the "
	              "repair", 0, N, 0, total);
}

/* ------------------------------------------------------------------------ */
/* 11. A job larger than its disk                                           */

Test(operator, admission_refuses_a_job_larger_than_the_disk)
{
	/* A tmpfs of 4 MiB on dest, in a mount namespace of this test
	 * process, which the tool inherits. */
	const char *skip = NULL;
	int err = 0;
	if (unshare(CLONE_NEWNS) != 0) {
		err = errno;
		skip = "unshare(CLONE_NEWNS)";
	} else if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0) {
		err = errno;
		skip = "making / private";
	}
	const char *dest = fmt("%s/dest", work);
	cr_assert_eq(ds_mkdirs(dest), 0);
	if (!skip && mount("sstf-test", dest, "tmpfs", 0, "size=4m,mode=0755") != 0) {
		err = errno;
		skip = "mount tmpfs";
	}
	if (skip) {
		/* The message on the stack: the fini of SKIP() frees what
		 * fmt() made. */
		char why[128];
		snprintf(why, sizeof(why), "%s: %s", skip, strerror(err));
		SKIP("%s", why);
	}
	mounted = strdup(dest);
	cr_assert_not_null(mounted);

	const char *big = fmt("%s/big", work), *small = fmt("%s/small", work);
	uint64_t need = gen_dataset(big, 8, "1m", 1101);
	gen_dataset(small, 2, "1m", 1102);
	struct statvfs vfs;
	cr_assert_eq(statvfs(dest, &vfs), 0);
	uint64_t avail = (uint64_t)vfs.f_bavail * vfs.f_frsize;
	cr_assert_lt(avail, need, "the tmpfs has %" PRIu64 " bytes free", avail);

	/* --reserve=0: the files alone do not fit. */
	struct run r;
	RUN(&r, fmt("--manifest=%s/manifest.json", big),
	    fmt("--source=file://%s", big), fmt("--dest=%s", dest), "--reserve=0");
	expect_exit(&r, 1);
	EXPECT_ERR_SAYS(&r, fmt("(%" PRIu64 " bytes) free", avail),
	                fmt("needs 8.0 MiB (%" PRIu64 " bytes)", need));
	cr_assert(dir_empty(dest), "%s: the refused job left something in %s",
	          r.cmd, dest);

	/* The same tmpfs takes a job that fits: the refusal was the size. */
	RUN(&r, fmt("--manifest=%s/manifest.json", small),
	    fmt("--source=file://%s", small), fmt("--dest=%s", dest),
	    "--reserve=0");
	expect_exit(&r, 0);
	expect_dest(small, dest, 2, 0);

	cr_assert_eq(umount2(dest, MNT_DETACH), 0, "umount: %s", strerror(errno));
	free(mounted);
	mounted = NULL;
}

/* ------------------------------------------------------------------------ */
/* 12. A million entries                                                    */

#define MILLION 1000000
/* The bound on the tool's peak RSS loading them, in KiB. */
#define MILLION_RSS_KIB (300 * 1024)

Test(operator, million_entry_manifest_loads_under_300_mb)
{
	if (TOOL_SANITIZED)
		SKIP("sanitizer build: peak RSS means nothing here");
	const char *path = fmt("%s/million.json", work);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f, "%s: %s", path, strerror(errno));
	fputs("{\"files\": [\n", f);
	for (unsigned i = 0; i < MILLION; i++)
		fprintf(f, "%s{\"name\": \"d%03u/%07u.sst\", \"size\": 0}\n",
		        i ? "," : "", i / 1000, i);
	fputs("], \"file_total_size\": 0}\n", f);
	cr_assert_eq(fclose(f), 0, "%s: %s", path, strerror(errno));

	/* --reserve=16t cannot be met: the job fails at admission, right
	 * after the manifest was loaded, checked and copied into the
	 * engine, before anything is fetched. */
	const char *src = fmt("%s/src", work);
	cr_assert_eq(ds_mkdirs(src), 0);
	struct run r;
	RUN(&r, fmt("--manifest=%s", path), fmt("--source=file://%s", src),
	    fmt("--dest=%s/dest", work), "--verify=none", "--reserve=16t",
	    "--output-format=json");
	expect_exit(&r, 1);
	EXPECT_ERR_SAYS(&r, "free, but the batch needs");
	json_t *job = report_job(r.out);
	cr_assert_eq(files_count(job, "total"), MILLION);
	cr_assert_eq(files_count(job, "failed"), MILLION);
	cr_assert_lt(r.ru.ru_maxrss, MILLION_RSS_KIB, "peak RSS %ld KiB loading "
	             "%d entries, more than %d KiB", r.ru.ru_maxrss, MILLION,
	             MILLION_RSS_KIB);
}

/* ------------------------------------------------------------------------ */
/* 13. Watching a run, and killing it                                       */

Test(operator, eta_always_status_line_is_live_and_sigkill_stops_the_run)
{
	/* File 1 crawls at 128 KiB/s: 1 MiB takes 8 s, so the run is still
	 * going when its first status line (every 500 ms) comes. */
	const char *url = fault_set("1m", 1301);
	const char *set = fmt("%s/set", work);
	set_fault(1, (struct fault){.kind = FAULT_SLOW, .rate = 128 * KIB});
	const char *dest = fmt("%s/dest", work);
	struct tool_proc *p = SPAWN(fmt("--manifest=%s/manifest.json", set),
	                            fmt("--source=%s", url),
	                            fmt("--dest=%s", dest), "--eta=always");
	cr_assert_gt(p->pid, 0);

	/* Lines until the first status line; 60 s is the hang guard. */
	double pct = -1;
	for (int k = 0; k < 1000 && pct < 0; k++) {
		const char *line = tool_read_line(p, 60 * 1000);
		cr_assert_not_null(line, "%s: no status line; stderr:\n%s", p->cmd,
		                   p->err);
		if (tool_status_pct(line, &pct) != 0)
			pct = -1;
	}
	cr_assert(pct >= 0 && pct < 100, "status at %.1f%% while file 1 "
	          "crawls", pct);
	cr_assert(!ds_exists(set_file(dest, 1)), "the slow file is already in");

	struct run r;
	tool_kill(p, &r);
	cr_assert_eq(r.code, 128 + SIGKILL, "%s: exit %d after SIGKILL", r.cmd,
	             r.code);
	cr_assert(strstr(r.err, "Jobs: "), "the run's stderr lacks the status "
	          "line it showed:\n%s", r.err);
	cr_assert_str_empty(r.out, "a report after SIGKILL:\n%s", r.out);
	/* Waiting again on a reaped tool gives the same run. */
	struct run again;
	cr_assert_eq(tool_wait_for(p, &again, 0), 0);
	cr_assert_eq(again.code, r.code);
}
