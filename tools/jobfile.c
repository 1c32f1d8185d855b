/*
 * jobfile.c - job files, parsed by inih.
 *
 * inih does the parsing. Two things it does not do are added around it
 * through its stream interface (ini_parse_stream), never by parsing INI
 * ourselves:
 *   - Debian's libinih is built without INI_CALL_HANDLER_ON_NEW_SECTION, so
 *     a section without keys would never reach the handler, and a job
 *     section fio users write as "[job1]" alone under a full [global] would
 *     vanish. The reader notices a line that starts with '[' and feeds inih
 *     one extra line, SECTION_MARK "=", right after it; inih hands that key
 *     to the handler with the section's name, which opens the job.
 *   - inih cuts lines longer than its buffer without a word, which could
 *     shorten a path. The reader sees the cut (a full buffer without a
 *     newline) and stops with an error instead.
 */
#include "jobfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ini.h>

/* Not a valid option name, so no job file can collide with it. */
#define SECTION_MARK "@section"

/* inih's MAX_SECTION: longer section names are cut by it. */
#define SECTION_NAME_MAX 49

struct loader {
	struct jobset *set;
	const char *path;
	FILE *f;
	unsigned line;     /* of the last line read from the file */
	unsigned ini_line; /* lines handed to inih, markers included */
	unsigned *marks;   /* ini_line of each marker, to map inih's error
	                      line back to the file's */
	size_t nmarks;
	int mark_pending;  /* a section header was just read */
	int failed;        /* a message was printed; ignore the rest */
	size_t first_job;  /* set->njobs when the load began */
	int section;       /* 0 none yet, 1 [global], 2 a job */
	struct job_opts global;
};

static char *stash(struct jobset *set, const char *s)
{
	char **nv = realloc(set->strings, (set->nstrings + 1) * sizeof(*nv));
	if (!nv)
		return NULL;
	set->strings = nv;
	char *copy = strdup(s);
	if (copy)
		set->strings[set->nstrings++] = copy;
	return copy;
}

int jobset_add(struct jobset *set, const struct job_opts *job)
{
	struct job_opts *nj = realloc(set->jobs, (set->njobs + 1) * sizeof(*nj));
	if (!nj)
		return -1;
	set->jobs = nj;
	nj[set->njobs++] = *job;
	return 0;
}

void jobset_free(struct jobset *set)
{
	for (size_t i = 0; i < set->nstrings; i++)
		free(set->strings[i]);
	free(set->strings);
	free(set->jobs);
	memset(set, 0, sizeof(*set));
}

static int complain(struct loader *ld, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int complain(struct loader *ld, const char *fmt, ...)
{
	va_list ap;
	fprintf(stderr, PROG ": %s:%u: ", ld->path, ld->line);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	ld->failed = 1;
	return 1; /* to inih: go on; ld->failed makes the rest a no-op */
}

/* fgets for inih, with the two additions described at the top. */
static char *reader(char *str, int num, void *stream)
{
	struct loader *ld = stream;

	if (ld->failed)
		return NULL;
	if (ld->mark_pending) {
		unsigned *nm = realloc(ld->marks, (ld->nmarks + 1) * sizeof(*nm));
		if (!nm) {
			complain(ld, "out of memory");
			return NULL;
		}
		ld->marks = nm;
		ld->marks[ld->nmarks++] = ++ld->ini_line;
		ld->mark_pending = 0;
		snprintf(str, (size_t)num, "%s=\n", SECTION_MARK);
		return str;
	}
	if (!fgets(str, num, ld->f))
		return NULL;
	ld->line++;
	ld->ini_line++;
	size_t len = strlen(str);
	if (len + 1 == (size_t)num && str[len - 1] != '\n' && !feof(ld->f)) {
		complain(ld, "line longer than %d bytes", num - 1);
		return NULL;
	}
	const char *p = str;
	if (ld->line == 1 && strncmp(p, "\xEF\xBB\xBF", 3) == 0)
		p += 3; /* a UTF-8 byte order mark, which inih skips too */
	if (*p == '[') {
		const char *close = strchr(p, ']');
		if (close && close - p - 1 > SECTION_NAME_MAX) {
			complain(ld, "section name longer than %d bytes",
			         SECTION_NAME_MAX);
			return NULL;
		}
		ld->mark_pending = 1;
	}
	return str;
}

static int open_section(struct loader *ld, const char *section)
{
	if (strcmp(section, "global") == 0) {
		ld->section = 1;
		return 1;
	}
	if (!*section)
		return complain(ld, "empty section name");
	struct job_opts job = ld->global;
	job.name = stash(ld->set, section);
	if (!job.name || jobset_add(ld->set, &job))
		return complain(ld, "out of memory");
	ld->section = 2;
	return 1;
}

static int on_key(void *user, const char *section, const char *key,
                  const char *value)
{
	struct loader *ld = user;

	if (ld->failed)
		return 1;
	if (strcmp(key, SECTION_MARK) == 0)
		return open_section(ld, section);
	if (ld->section == 0)
		return complain(ld, "%s: outside any section; put it under [global] "
		                    "or a [job]",
		                key);

	const struct opt_def *o = opt_find(key);
	if (!o)
		return complain(ld, "%s: unknown key (keys are the job options of "
		                    "'" PROG " --help' without the dashes)",
		                key);
	if (o->scope != OPT_JOB)
		return complain(ld, "%s: a command-line option, not a job-file key",
		                key);
	if (o->kind == OPT_NAME && ld->section == 1)
		return complain(ld, "name: only in a job section (the section "
		                    "header names the job)");

	char where[128];
	snprintf(where, sizeof(where), "%s:%u: %s", ld->path, ld->line, key);
	const char *copy = stash(ld->set, value);
	if (!copy)
		return complain(ld, "out of memory");
	struct job_opts *target = ld->section == 1
		? &ld->global
		: &ld->set->jobs[ld->set->njobs - 1];
	if (opt_set(o, copy, target, NULL, where))
		ld->failed = 1; /* opt_set printed the message */
	return 1;
}

int jobfile_load(struct jobset *set, const char *path)
{
	struct loader ld = {.set = set, .path = path, .first_job = set->njobs};

	opt_defaults(&ld.global, NULL);
	ld.f = fopen(path, "r");
	if (!ld.f) {
		fprintf(stderr, PROG ": %s: cannot open job file: %s\n", path,
		        strerror(errno));
		return EXIT_USAGE;
	}
	int rc = ini_parse_stream(reader, &ld, on_key, &ld);
	fclose(ld.f);
	if (!ld.failed && rc > 0) {
		/* inih counts the marker lines too. */
		unsigned line = (unsigned)rc;
		for (size_t i = 0; i < ld.nmarks; i++) {
			if (ld.marks[i] < (unsigned)rc)
				line--;
		}
		fprintf(stderr,
		        PROG ": %s:%u: syntax error (expected [section], key=value "
		             "or a comment)\n",
		        path, line);
		ld.failed = 1;
	} else if (!ld.failed && rc < 0) {
		fprintf(stderr, PROG ": %s: cannot read job file: %s\n", path,
		        rc == -2 ? "out of memory" : "I/O error");
		ld.failed = 1;
	}
	free(ld.marks);
	if (ld.failed) {
		set->njobs = ld.first_job;
		return EXIT_USAGE;
	}
	if (set->njobs == ld.first_job) {
		fprintf(stderr, PROG ": %s: no job section\n", path);
		return EXIT_USAGE;
	}
	return 0;
}
