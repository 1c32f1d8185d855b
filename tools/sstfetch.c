/*
 * sstfetch.c - a fio-like tool that fetches the files manifests list,
 * verified, as jobs.
 *
 *   sstfetch [OPTION]... [JOBFILE]...
 *   sstfetch --manifest=FILE --source=BASEURL --dest=DIR [OPTION]...
 *   sstfetch --gen-dataset=DIR --nrfiles=N --filesize=SIZE|MIN:MAX [--seed=S]
 *
 * The parts: options.c holds the one option table (command line, job-file
 * keys, --help); jobfile.c reads job files with inih; job.c runs a job on
 * an engine of its own; report.c prints normal, JSON and terse reports;
 * dataset.c writes seeded datasets. This file puts jobs together from the
 * command line and the job files, checks all of them, runs them one after
 * the other and reports.
 *
 * Exit status: 0 when every file of every job was published and verified,
 * 1 when any failed (or the run was interrupted), 2 for usage, job-file and
 * manifest errors, all of which are found before any job runs.
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "aws.h"
#include "dataset.h"
#include "job.h"
#include "jobfile.h"
#include "manifest.h"
#include "options.h"
#include "pegasus.h"
#include "remote.h"
#include "report.h"
#include "sstfetch.h"

/* The job that the options make when there is no job file and no --name,
 * so that `sstfetch --manifest=... --source=... --dest=...` just works. */
#define IMPLICIT_JOB PROG

static void on_signal(int sig)
{
	(void)sig;
	job_interrupted = 1;
}

static void catch_signals(void)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sa.sa_flags = SA_RESETHAND; /* a second signal kills at once */
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* Replays command-line job options onto a job. Values were checked when
 * the command line was parsed; only a check that looks at the filesystem
 * (--cacert, --capath) can change its mind since, and then opt_set() has
 * said why. Returns 0 or EXIT_USAGE. */
static int replay(struct job_opts *job, const struct opt_assign *v, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		char where[64];
		snprintf(where, sizeof(where), "--%s", v[i].opt->name);
		if (opt_set(v[i].opt, v[i].value, job, NULL, where))
			return EXIT_USAGE;
	}
	return 0;
}

/*
 * Puts the jobs together. Layers, later ones winning:
 *   file jobs:    defaults, the file's [global] sections before the job,
 *                 its section, then the command line's global job options,
 *                 then the options after a --name with the same name;
 *   other --name: defaults, the command line's global job options, its
 *                 own options.
 * Without a job file and without --name, the global options make one job.
 */
static int build_jobs(const struct cmdline *cl, struct jobset *set)
{
	for (size_t i = 0; i < cl->njobfiles; i++) {
		int rc = jobfile_load(set, cl->jobfiles[i]);
		if (rc)
			return rc;
	}
	size_t nfile = set->njobs;
	for (size_t i = 0; i < nfile; i++)
		if (replay(&set->jobs[i], cl->globals, cl->nglobals))
			return EXIT_USAGE;

	for (size_t k = 0; k < cl->njobs; k++) {
		const struct cli_job *cj = &cl->jobs[k];
		int matched = 0;
		for (size_t i = 0; i < nfile; i++) {
			if (strcmp(set->jobs[i].name, cj->name) == 0) {
				if (replay(&set->jobs[i], cj->v, cj->n))
					return EXIT_USAGE;
				matched = 1;
			}
		}
		if (matched)
			continue;
		struct job_opts job;
		opt_defaults(&job, NULL);
		if (replay(&job, cl->globals, cl->nglobals) || replay(&job, cj->v, cj->n))
			return EXIT_USAGE;
		job.name = cj->name;
		if (jobset_add(set, &job)) {
			fprintf(stderr, PROG ": out of memory\n");
			return EXIT_USAGE;
		}
	}

	if (set->njobs == 0 && cl->njobfiles == 0) {
		struct job_opts job;
		opt_defaults(&job, NULL);
		if (replay(&job, cl->globals, cl->nglobals))
			return EXIT_USAGE;
		job.name = IMPLICIT_JOB;
		if (jobset_add(set, &job)) {
			fprintf(stderr, PROG ": out of memory\n");
			return EXIT_USAGE;
		}
	}
	return 0;
}

/* Job-level checks that involve more than one option. */
static int check_job_opts(const struct job_opts *o)
{
	static const struct {
		const char *name;
		size_t offset;
	} required[] = {
		{"manifest", offsetof(struct job_opts, manifest)},
		{"source", offsetof(struct job_opts, source)},
		{"dest", offsetof(struct job_opts, dest)},
	};
	int bad = 0;

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		const char *v = *(const char *const *)(const void *)
			((const char *)o + required[i].offset);
		/* --list makes the manifest from the source; --pegasus
		 * both from its partitions' metadata. */
		if (!v && !(o->list && i == 0) && !(o->pegasus && i < 2)) {
			const struct opt_def *d = opt_find(required[i].name);
			fprintf(stderr,
			        PROG ": job '%s': missing --%s=%s (%s= in a job file)\n",
			        o->name, d->name, d->metavar, d->name);
			bad = 1;
		}
	}
	if (pegasus_check_opts(o))
		bad = 1;
	if (o->list && o->manifest) {
		fprintf(stderr, PROG ": job '%s': --list makes the manifest from the "
		        "source's listing; give --list or --manifest, not both\n", o->name);
		bad = 1;
	}
	if (o->list && o->source && !aws_is_s3(o->source)) {
		fprintf(stderr, PROG ": job '%s': --list needs an S3 source "
		        "(--source=s3://BUCKET/PREFIX/), not %s\n", o->name, o->source);
		bad = 1;
	}
	if (o->list && o->verify != MANIFEST_VERIFY_AUTO && o->verify != MANIFEST_VERIFY_NONE) {
		const struct opt_def *d = opt_find("verify");
		char v[32];
		opt_format(d, o, v, sizeof(v));
		fprintf(stderr, PROG ": job '%s': --verify=%s: an S3 listing has sizes "
		        "only, no digests; with --list give verify=auto or none (files "
		        "are length-checked)\n", o->name, v);
		bad = 1;
	}
	struct stat st;
	if (o->dest && stat(o->dest, &st) == 0 && !S_ISDIR(st.st_mode)) {
		fprintf(stderr,
		        PROG ": job '%s': --dest=%s exists and is not a directory; name a "
		        "directory (it is created if missing)\n",
		        o->name, o->dest);
		bad = 1;
	}
	/* A buffer pool past what the machine has ends in the OOM killer:
	 * refuse it here, where the options that make it can be named. */
	struct sstf_config cfg = job_engine_config(o);
	uint64_t pool = o->mem;
	if (!pool) {
		pool = SSTF_DEFAULT_MEM_LIMIT;
		if (pool < 2 * o->parallel * o->bs)
			pool = 2 * o->parallel * o->bs;
	}
	long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
	uint64_t phys = pages > 0 && psize > 0 ? (uint64_t)pages * (uint64_t)psize : 0;
	uint64_t cap = o->mem_max ? o->mem_max : phys / 2;
	if (cap && pool > cap) {
		char hp[32], hc[32], hm[32];
		report_human((double)pool, 1, "B", hp, sizeof(hp));
		report_human((double)cap, 1, "B", hc, sizeof(hc));
		report_human((double)phys, 1, "B", hm, sizeof(hm));
		fprintf(stderr,
		        PROG ": job '%s': the buffer pool would take %s (%s), more than "
		        "the %s a job may use (%s; this machine has %s); lower --parallel, "
		        "--bs or --mem, or raise --mem_max\n",
		        o->name, hp,
		        o->mem ? "--mem" : "--mem default: 2 x --parallel x --bs",
		        hc, o->mem_max ? "--mem_max" : "--mem_max default: half of memory",
		        hm);
		bad = 1;
	} else {
		/* The engine's own checks, so the tool never restates its
		 * limits. */
		char why[256];
		if (sstf_config_check(&cfg, why, sizeof(why)) < 0) {
			fprintf(stderr, PROG ": job '%s': bad engine configuration: %s "
			        "(options parallel, threads, iodepth, bs, mem, "
			        "checkpoint, split, split_min, rate)\n", o->name, why);
			bad = 1;
		}
	}
	return bad ? EXIT_USAGE : 0;
}

/* The job's S3 settings (aws.h), made once; 0 or EXIT_USAGE. */
static int resolve_s3(struct job *j)
{
	if (j->aws)
		return 0;
	if (aws_resolve(&j->o, &j->aws))
		return EXIT_USAGE;
	j->o.s3 = &j->aws->cfg;
	return 0;
}

/* Whether an entry of m names an s3:// URL of its own. */
static int entries_use_s3(const struct manifest *m)
{
	for (size_t i = 0; i < m->nfiles; i++) {
		const struct sstf_file *f = &m->files[i];
		if (aws_is_s3(f->url))
			return 1;
		for (size_t k = 0; k < f->nurls; k++) {
			if (aws_is_s3(f->urls[k]))
				return 1;
		}
	}
	return 0;
}

/*
 * Loads a job's manifest and runs the engine's own entry checks on it
 * (sstf_check_batch(), the code sstf_submit() runs), so that "../x" or
 * "/etc/x" stops the run with exit 2 before any job starts. The manifest
 * is a file, a URL fetched first, or the listing of an S3 source
 * (--list); S3 settings are resolved once some URL of the job is s3://.
 */
static int load_job(struct job *j)
{
	char err[1024];
	if (j->o.pegasus) {
		/* Each partition's batch is checked there too. */
		if (aws_is_s3(j->o.pegasus) && resolve_s3(j))
			return EXIT_USAGE;
		struct sstf_config pcfg = job_engine_config(&j->o);
		return pegasus_load(&j->o, &pcfg, &j->peg) ? EXIT_USAGE : 0;
	}
	/* Credentials are looked for only when an S3 URL needs them: the
	 * source's, the manifest's, or (below) an entry's. */
	if ((aws_is_s3(j->o.source) || aws_is_s3(j->o.manifest)) && resolve_s3(j))
		return EXIT_USAGE;
	struct sstf_config cfg = job_engine_config(&j->o);
	if (j->o.list) {
		if (remote_list(&j->o, &cfg, &j->m))
			return EXIT_USAGE;
	} else if (remote_is_url(j->o.manifest)) {
		if (remote_manifest(&j->o, &cfg, (enum manifest_verify)j->o.verify, &j->m))
			return EXIT_USAGE;
	} else if (manifest_load(j->o.manifest, (enum manifest_verify)j->o.verify,
	                         &j->m, err, sizeof(err))) {
		fprintf(stderr, PROG ": job '%s': %s\n", j->o.name, err);
		return EXIT_USAGE;
	}
	if (!j->aws && entries_use_s3(j->m) && resolve_s3(j))
		return EXIT_USAGE;
	struct sstf_batch batch = {
		.dest_dir = j->o.dest,
		.files = j->m->files,
		.nfiles = j->m->nfiles,
		.errbuf = err,
		.errbuf_len = sizeof(err),
		/* Entries without their own "url" come from the source; as
		 * job.c submits them. */
		.base_url = j->o.source,
		.protocols = j->o.protocols,
	};
	err[0] = '\0';
	int rc = sstf_check_batch(&batch);
	if (rc) {
		char listed[600];
		if (j->o.list) {
			char *u = remote_list_url(j->o.source);
			snprintf(listed, sizeof(listed), "--list %s", u ? u : j->o.source);
			free(u);
		}
		fprintf(stderr, PROG ": job '%s': %s: %s%s%s%s\n", j->o.name,
		        j->o.protocols && rc == -EINVAL ? "--protocols"
		        : j->o.list                     ? listed
		                                        : j->o.manifest,
		        sstf_strerror(rc), err[0] ? ": " : "", err,
		        rc == -SSTF_EBADURL ? " (--protocols allows more schemes)"
		        : j->o.list ? " (each key under the prefix becomes a file name: "
		                      "rename or move that object, or list a narrower "
		                      "prefix)"
		                    : "");
		return EXIT_USAGE;
	}
	return 0;
}

/* --gen-dataset and its companions, which only make sense together. */
static int gen_dataset(const struct cmdline *cl)
{
	const struct cli_opts *c = &cl->cli;
	int bad = 0;
	if (!cl->seen[opt_find("nrfiles") - opt_table]) {
		fprintf(stderr, PROG ": --gen-dataset needs --nrfiles=N\n");
		bad = 1;
	}
	if (!cl->seen[opt_find("filesize") - opt_table]) {
		fprintf(stderr, PROG ": --gen-dataset needs --filesize=SIZE|MIN:MAX\n");
		bad = 1;
	}
	if (cl->seen[opt_find("partition_count") - opt_table] &&
	    c->layout != DATASET_PEGASUS) {
		fprintf(stderr, PROG ": --partition_count: only with --layout=pegasus\n");
		bad = 1;
	}
	if (cl->nglobals || cl->njobs || cl->njobfiles) {
		fprintf(stderr, PROG ": --gen-dataset runs no job; give job options "
		                "and job files in another run\n");
		bad = 1;
	}
	if (bad)
		return EXIT_USAGE;
	struct dataset_params p = {
		.dir = c->gen_dataset,
		.nrfiles = c->nrfiles,
		.min_size = c->filesize.min,
		.max_size = c->filesize.max,
		.seed = c->seed,
		.layout = (enum dataset_layout)c->layout,
		.partition_count = c->partition_count,
	};
	return dataset_generate(&p);
}

int main(int argc, char **argv)
{
	struct cmdline cl;
	struct jobset set = {0};
	struct job *jobs = NULL;
	struct job_report *reps = NULL;
	struct status st = {0};
	FILE *out = stdout;
	size_t ran = 0;
	int status = EXIT_USAGE;

	catch_signals();
	if (opt_parse_argv(argc, argv, &cl))
		goto done;
	if (cl.cli.help) {
		opt_usage(stdout);
		report_terse_help(stdout);
		status = EXIT_OK;
		goto done;
	}
	if (cl.cli.version) {
		printf(PROG "-%s (libsstfetch %s)\n", SSTF_VERSION_STRING,
		       SSTF_VERSION_STRING);
		status = EXIT_OK;
		goto done;
	}
	if (cl.cli.gen_dataset) {
		status = gen_dataset(&cl);
		goto done;
	}
	static const char *const dataset_only[] = {"nrfiles", "filesize", "seed",
	                                           "layout", "partition_count"};
	for (size_t i = 0; i < sizeof(dataset_only) / sizeof(dataset_only[0]); i++) {
		if (cl.seen[opt_find(dataset_only[i]) - opt_table]) {
			fprintf(stderr, PROG ": --%s: only with --gen-dataset=DIR\n",
			        dataset_only[i]);
			goto done;
		}
	}
	if (argc < 2) {
		fprintf(stderr, PROG ": no job: give --manifest, --source and --dest, "
		                "or a job file\nTry '" PROG " --help'.\n");
		goto done;
	}

	/* Everything is checked before the first job runs. */
	if (build_jobs(&cl, &set))
		goto done;
	jobs = calloc(set.njobs, sizeof(*jobs));
	reps = calloc(set.njobs, sizeof(*reps));
	st.states = malloc(set.njobs);
	if (!jobs || !reps || !st.states) {
		fprintf(stderr, PROG ": out of memory\n");
		goto done;
	}
	int bad = 0;
	for (size_t i = 0; i < set.njobs; i++) {
		jobs[i].o = set.jobs[i];
		if (check_job_opts(&jobs[i].o) || load_job(&jobs[i]))
			bad = 1;
	}
	if (bad)
		goto done;
	if (cl.cli.output && !(out = fopen(cl.cli.output, "w"))) {
		fprintf(stderr, PROG ": --output=%s: %s\n", cl.cli.output,
		        strerror(errno));
		out = stdout;
		goto done;
	}

	int tty = isatty(STDERR_FILENO);
	st.enabled = cl.cli.eta == ETA_ALWAYS || (cl.cli.eta == ETA_AUTO && tty);
	st.tty = tty;
	st.njobs = set.njobs;
	for (size_t i = 0; i < set.njobs; i++) {
		st.states[i] = 'P';
		st.bytes_total += job_total_size(&jobs[i]) * jobs[i].o.loops;
	}
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	st.t0 = st.last_t = (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;

	status = EXIT_OK;
	for (; ran < set.njobs && !job_interrupted; ran++) {
		job_run(&jobs[ran], ran, &st, &reps[ran]);
		if (!job_succeeded(&reps[ran]))
			status = EXIT_FAILED;
	}
	status_clear(&st);
	if (job_interrupted) {
		fprintf(stderr, PROG ": interrupted; cancelled%s\n",
		        ran < set.njobs ? ", later jobs not run" : "");
		status = EXIT_FAILED;
	}
	if (report_write(out, (enum output_format)cl.cli.format, reps, ran)) {
		fprintf(stderr, PROG ": writing the report: %s\n", strerror(errno));
		status = EXIT_FAILED;
	}

done:
	if (out != stdout && fclose(out) != 0) {
		fprintf(stderr, PROG ": --output=%s: %s\n", cl.cli.output,
		        strerror(errno));
		status = EXIT_FAILED;
	}
	for (size_t i = 0; reps && i < set.njobs; i++)
		report_free(&reps[i]);
	for (size_t i = 0; jobs && i < set.njobs; i++) {
		manifest_free(jobs[i].m);
		pegasus_free(jobs[i].peg);
		aws_free(jobs[i].aws);
	}
	free(reps);
	free(jobs);
	free(st.states);
	jobset_free(&set);
	cmdline_free(&cl);
	return status;
}
