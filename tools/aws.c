/*
 * aws.c - S3 settings and credentials from options, the environment and
 * the AWS profile files; see aws.h for the order.
 *
 * The profile files are INI files read by inih through its stream
 * interface, with two additions made in the reader, never by parsing the
 * values ourselves:
 *   - inih's line buffer is 200 bytes (Debian's build) and it cuts longer
 *     lines without a word, but a session token is often 800 bytes and
 *     more. The reader reads whole lines; a longer "key = value" line goes
 *     to inih as "key = \x01N", and the handler takes the value from slot
 *     N, trimmed and with an inline " ;" comment cut as inih does.
 *   - Debian's libinih never calls the handler for a section without keys;
 *     the reader notes the section headers it sees, so that an empty
 *     [profile x] still counts as there.
 * The nested block of the config file ("s3 =" followed by indented
 * "key = value" lines) comes from inih's multi-line values: each indented
 * line reaches the handler as another value of "s3".
 */
#include "aws.h"

#include <ctype.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <ini.h>

/* What one profile holds, from the files. */
struct profile_vals {
	char *id, *secret, *token;   /* from one file, as a set */
	char *region;
	char *endpoint;              /* endpoint_url */
	char *s3_endpoint;           /* s3 = / endpoint_url */
	char *s3_addressing;         /* s3 = / addressing_style */
	const char *unsupported;     /* a key naming a way we do not run */
};

/* One file's read. */
struct ini_read {
	const char *path;
	FILE *f;
	char *line;
	size_t cap;
	char **longs; /* values of lines too long for inih */
	size_t nlongs;
	int failed;   /* 1: a line we cannot hand over (said so); 2: out of
	                 memory */
	unsigned lineno;
	/* The sections of the profile in this file. */
	const char *want1, *want2; /* want2 may be NULL */
	int found;
	struct profile_vals *v;
};

static void wipe_free(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

static void vals_free(struct profile_vals *v)
{
	wipe_free(v->id);
	wipe_free(v->secret);
	wipe_free(v->token);
	free(v->region);
	free(v->endpoint);
	free(v->s3_endpoint);
	free(v->s3_addressing);
	memset(v, 0, sizeof(*v));
}

/* Replaces *slot with a copy of s[0..n) (wiping what it held). */
static int set_val(char **slot, const char *s, size_t n)
{
	char *c = strndup(s, n);
	if (!c)
		return -1;
	wipe_free(*slot);
	*slot = c;
	return 0;
}

static int is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

/* The section name of a header line "[ name ]", trimmed as inih trims it,
 * into out; 0 when the line is a header. */
static int header_name(const char *line, char *out, size_t outlen)
{
	while (is_space(*line))
		line++;
	if (*line != '[')
		return -1;
	line++;
	const char *end = strchr(line, ']');
	if (!end)
		return -1;
	while (line < end && is_space(*line))
		line++;
	while (end > line && is_space(end[-1]))
		end--;
	size_t n = (size_t)(end - line);
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, line, n);
	out[n] = '\0';
	return 0;
}

/* fgets for inih, with the additions described at the top. */
static char *reader(char *str, int num, void *stream)
{
	struct ini_read *r = stream;
	if (r->failed)
		return NULL;
	ssize_t n = getline(&r->line, &r->cap, r->f);
	if (n < 0)
		return NULL;
	r->lineno++;
	char name[256];
	if (header_name(r->line, name, sizeof(name)) == 0 &&
	    (strcmp(name, r->want1) == 0 || (r->want2 && strcmp(name, r->want2) == 0)))
		r->found = 1;
	if (n < num) {
		memcpy(str, r->line, (size_t)n + 1);
		return str;
	}
	/* Too long for inih: hand it the key and the value by reference. */
	size_t klen = strcspn(r->line, "=:");
	if (is_space(r->line[0]) || r->line[klen] == '\0' || klen + 24 > (size_t)num) {
		fprintf(stderr, PROG ": %s:%u: line longer than %d bytes that is not "
		                "\"key = value\"\n", r->path, r->lineno, num - 1);
		r->failed = 1;
		return NULL;
	}
	char **nl = realloc(r->longs, (r->nlongs + 1) * sizeof(*nl));
	if (!nl) {
		r->failed = 2;
		return NULL;
	}
	r->longs = nl;
	r->longs[r->nlongs] = strdup(r->line + klen + 1);
	if (!r->longs[r->nlongs]) {
		r->failed = 2;
		return NULL;
	}
	snprintf(str, (size_t)num, "%.*s=\x01%zu\n", (int)klen, r->line, r->nlongs);
	r->nlongs++;
	return str;
}

/* A value as the handler got it: by reference for long lines, trimmed
 * and cut at an inline " ;" comment as inih does with the others. */
static const char *value_of(struct ini_read *r, const char *value, size_t *len)
{
	if (value[0] == '\x01') {
		size_t k = strtoul(value + 1, NULL, 10);
		const char *s = k < r->nlongs ? r->longs[k] : "";
		while (is_space(*s))
			s++;
		size_t n = 0;
		while (s[n] && !(s[n] == ';' && n > 0 && is_space(s[n - 1])))
			n++;
		while (n > 0 && is_space(s[n - 1]))
			n--;
		*len = n;
		return s;
	}
	*len = strlen(value);
	return value;
}

/* One "key = value" line of the nested s3 block. */
static int nested_s3(struct profile_vals *v, const char *s, size_t len)
{
	const char *eq = memchr(s, '=', len);
	if (!eq)
		return 0;
	const char *k = s, *ke = eq, *val = eq + 1, *ve = s + len;
	while (ke > k && is_space(ke[-1]))
		ke--;
	while (val < ve && is_space(*val))
		val++;
	while (ve > val && is_space(ve[-1]))
		ve--;
	size_t kl = (size_t)(ke - k);
	if (kl == 12 && strncasecmp(k, "endpoint_url", 12) == 0)
		return set_val(&v->s3_endpoint, val, (size_t)(ve - val));
	if (kl == 16 && strncasecmp(k, "addressing_style", 16) == 0)
		return set_val(&v->s3_addressing, val, (size_t)(ve - val));
	return 0;
}

static int on_key(void *user, const char *section, const char *name, const char *value)
{
	struct ini_read *r = user;
	struct profile_vals *v = r->v;
	if (r->failed)
		return 1;
	if (strcmp(section, r->want1) != 0 && !(r->want2 && strcmp(section, r->want2) == 0))
		return 1;
	r->found = 1;
	size_t len;
	const char *s = value_of(r, value, &len);
	int rc = 0;
	if (strcasecmp(name, "aws_access_key_id") == 0)
		rc = set_val(&v->id, s, len);
	else if (strcasecmp(name, "aws_secret_access_key") == 0)
		rc = set_val(&v->secret, s, len);
	else if (strcasecmp(name, "aws_session_token") == 0)
		rc = set_val(&v->token, s, len);
	else if (strcasecmp(name, "region") == 0)
		rc = set_val(&v->region, s, len);
	else if (strcasecmp(name, "endpoint_url") == 0)
		rc = set_val(&v->endpoint, s, len);
	else if (strcasecmp(name, "s3") == 0)
		rc = nested_s3(v, s, len);
	else if (strcasecmp(name, "credential_process") == 0)
		v->unsupported = "credential_process";
	else if (strcasecmp(name, "role_arn") == 0)
		v->unsupported = "role_arn";
	else if (strcasecmp(name, "sso_session") == 0 || strcasecmp(name, "sso_start_url") == 0)
		v->unsupported = "sso";
	else if (strcasecmp(name, "web_identity_token_file") == 0)
		v->unsupported = "web_identity_token_file";
	if (rc)
		r->failed = 2;
	return 1;
}

/*
 * Reads the profile's sections of one file into *v. Returns 1 when the
 * file has the profile, 0 when it does not or does not exist, -1 after
 * printing why (unreadable, syntax error, out of memory).
 */
static int read_file(const char *job, const char *path, const char *want1,
                     const char *want2, struct profile_vals *v)
{
	struct ini_read r = {.path = path, .want1 = want1, .want2 = want2, .v = v};
	r.f = fopen(path, "r");
	if (!r.f) {
		if (errno == ENOENT || errno == ENOTDIR)
			return 0;
		fprintf(stderr, PROG ": job '%s': cannot read the AWS profile file %s: %s\n",
		        job, path, strerror(errno));
		return -1;
	}
	int rc = ini_parse_stream(reader, &r, on_key, &r);
	int err = ferror(r.f);
	fclose(r.f);
	if (r.line) {
		explicit_bzero(r.line, r.cap);
		free(r.line);
	}
	for (size_t k = 0; k < r.nlongs; k++)
		wipe_free(r.longs[k]);
	free(r.longs);
	if (r.failed == 1)
		return -1; /* the reader said why */
	if (r.failed || rc == -2 || rc < 0 || err) {
		fprintf(stderr, PROG ": job '%s': cannot read the AWS profile file %s: %s\n",
		        job, path, err || rc == -1 ? "I/O error" : "out of memory");
		return -1;
	}
	if (rc > 0) {
		fprintf(stderr, PROG ": job '%s': %s:%d: syntax error (expected [section], "
		                "key = value or a comment)\n", job, path, rc);
		return -1;
	}
	return r.found;
}

bool aws_is_s3(const char *url)
{
	return url && strncasecmp(url, "s3://", 5) == 0;
}

/* The environment variable, or NULL when unset or empty. */
static const char *env(const char *name)
{
	const char *v = getenv(name);
	return v && *v ? v : NULL;
}

/* Keeps a copy of s (NULL: NULL) in a; *ok cleared when out of memory. */
static const char *own(struct aws_s3 *a, const char *s, int *ok)
{
	if (!s)
		return NULL;
	char *c = a->nstrings < AWS_MAX_STRINGS ? strdup(s) : NULL;
	if (!c) {
		*ok = 0;
		return NULL;
	}
	a->strings[a->nstrings++] = c;
	return c;
}

/* The home directory, or NULL. */
static const char *home_dir(void)
{
	const char *h = env("HOME");
	if (h)
		return h;
	struct passwd *pw = getpwuid(getuid());
	return pw && pw->pw_dir && *pw->pw_dir ? pw->pw_dir : NULL;
}

void aws_free(struct aws_s3 *a)
{
	if (!a)
		return;
	for (unsigned k = 0; k < a->nstrings; k++)
		wipe_free(a->strings[k]);
	explicit_bzero(a, sizeof(*a));
	free(a);
}

static int oom(void)
{
	fprintf(stderr, PROG ": out of memory\n");
	return EXIT_USAGE;
}

int aws_resolve(const struct job_opts *o, struct aws_s3 **out)
{
	const char *job = o->name;
	struct profile_vals cred = {0}, conf = {0};
	char cred_path[4096], conf_path[4096], words[512];
	int ok = 1, rc = EXIT_USAGE;
	struct aws_s3 *a = calloc(1, sizeof(*a));
	if (!a)
		return oom();

	/* The profile and its files. */
	const char *profile = o->profile ? o->profile : env("AWS_PROFILE");
	const char *profile_from = o->profile ? "--profile" : profile ? "AWS_PROFILE" : NULL;
	if (!profile)
		profile = "default";
	const char *home = home_dir();
	const char *cp = env("AWS_SHARED_CREDENTIALS_FILE"), *fp = env("AWS_CONFIG_FILE");
	snprintf(cred_path, sizeof(cred_path), "%s%s", cp ? cp : home ? home : "",
	         cp ? "" : "/.aws/credentials");
	snprintf(conf_path, sizeof(conf_path), "%s%s", fp ? fp : home ? home : "",
	         fp ? "" : "/.aws/config");
	char sect[300];
	snprintf(sect, sizeof(sect), "profile %s", profile);
	int in_cred = 0, in_conf = 0;
	if (cp || home) {
		in_cred = read_file(job, cred_path, profile, NULL, &cred);
		if (in_cred < 0)
			goto out;
	}
	if (fp || home) {
		in_conf = read_file(job, conf_path, sect,
		                    strcmp(profile, "default") == 0 ? "default" : NULL, &conf);
		if (in_conf < 0)
			goto out;
	}
	if (profile_from && !in_cred && !in_conf) {
		fprintf(stderr,
		        PROG ": job '%s': the AWS profile '%s' (from %s) is in neither %s "
		        "(section [%s]; AWS_SHARED_CREDENTIALS_FILE) nor %s (section "
		        "[profile %s]; AWS_CONFIG_FILE)\n",
		        job, profile, profile_from, (cp || home) ? cred_path : "~/.aws/credentials",
		        profile, (fp || home) ? conf_path : "~/.aws/config", profile);
		goto out;
	}

	/* Credentials: a set from one place. */
	const char *id = NULL, *secret = NULL, *token = NULL, *from = NULL;
	if (o->access_key_id || o->secret_access_key || o->session_token) {
		if (!o->access_key_id || !o->secret_access_key) {
			fprintf(stderr,
			        PROG ": job '%s': --%s needs --%s as well (or give neither "
			        "and use the environment or a profile)\n",
			        job, o->access_key_id ? "access_key_id" : o->secret_access_key
			                                                   ? "secret_access_key"
			                                                   : "session_token",
			        o->access_key_id ? "secret_access_key" : "access_key_id");
			goto out;
		}
		id = o->access_key_id;
		secret = o->secret_access_key;
		token = o->session_token;
		from = "options (--access_key_id, --secret_access_key)";
	} else if (!o->profile && (env("AWS_ACCESS_KEY_ID") || env("AWS_SECRET_ACCESS_KEY"))) {
		/* --profile skips the environment's keys, as in the AWS CLI;
		 * AWS_PROFILE does not. */
		if (!env("AWS_ACCESS_KEY_ID") || !env("AWS_SECRET_ACCESS_KEY")) {
			fprintf(stderr, PROG ": job '%s': %s is set but %s is not; set both, "
			                "or neither to use a profile\n", job,
			        env("AWS_ACCESS_KEY_ID") ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY",
			        env("AWS_ACCESS_KEY_ID") ? "AWS_SECRET_ACCESS_KEY" : "AWS_ACCESS_KEY_ID");
			goto out;
		}
		id = env("AWS_ACCESS_KEY_ID");
		secret = env("AWS_SECRET_ACCESS_KEY");
		token = env("AWS_SESSION_TOKEN");
		from = "the environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)";
	} else {
		const struct profile_vals *v[2] = {&cred, &conf};
		const char *paths[2] = {cred_path, conf_path};
		for (int k = 0; k < 2 && !id; k++) {
			if (!v[k]->id && !v[k]->secret)
				continue;
			if (!v[k]->id || !v[k]->secret) {
				fprintf(stderr, PROG ": job '%s': the AWS profile '%s' in %s has %s "
				                "but no %s\n", job, profile, paths[k],
				        v[k]->id ? "aws_access_key_id" : "aws_secret_access_key",
				        v[k]->id ? "aws_secret_access_key" : "aws_access_key_id");
				goto out;
			}
			id = v[k]->id;
			secret = v[k]->secret;
			token = v[k]->token;
			snprintf(words, sizeof(words), "the profile '%s' in %s", profile, paths[k]);
			from = words;
		}
		const char *unsup = cred.unsupported ? cred.unsupported : conf.unsupported;
		if (!id && unsup)
			fprintf(stderr,
			        PROG ": job '%s': warning: the AWS profile '%s' gets its "
			        "credentials through %s, which " PROG " does not run; export "
			        "them (aws configure export-credentials --profile %s --format "
			        "env) or give keys. Going on without credentials.\n",
			        job, profile, unsup, profile);
	}

	/* Region, endpoint and addressing. */
	const char *region = o->region, *region_from = "--region";
	if (!region && (region = env("AWS_REGION")))
		region_from = "AWS_REGION";
	if (!region && (region = env("AWS_DEFAULT_REGION")))
		region_from = "AWS_DEFAULT_REGION";
	char pw[300];
	snprintf(pw, sizeof(pw), "the profile '%s'", profile);
	if (!region && (region = conf.region ? conf.region : cred.region))
		region_from = pw;
	const char *ign = env("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS");
	int ignore = ign && strcasecmp(ign, "true") == 0;
	const char *endpoint = o->s3_endpoint, *endpoint_from = "--s3_endpoint";
	if (!endpoint && !ignore && (endpoint = env("AWS_ENDPOINT_URL_S3")))
		endpoint_from = "AWS_ENDPOINT_URL_S3";
	if (!endpoint && !ignore && (endpoint = env("AWS_ENDPOINT_URL")))
		endpoint_from = "AWS_ENDPOINT_URL";
	if (!endpoint && !ignore) {
		endpoint = conf.s3_endpoint    ? conf.s3_endpoint
		           : conf.endpoint     ? conf.endpoint
		           : cred.s3_endpoint  ? cred.s3_endpoint
		                               : cred.endpoint;
		endpoint_from = pw;
	}
	enum sstf_s3_addressing addressing = SSTF_S3_ADDRESSING_AUTO;
	const char *style = conf.s3_addressing ? conf.s3_addressing : cred.s3_addressing;
	switch (o->s3_addressing) {
	case S3_ADDRESSING_PATH:
		addressing = SSTF_S3_PATH;
		break;
	case S3_ADDRESSING_VIRTUAL:
		addressing = SSTF_S3_VIRTUAL;
		break;
	case S3_ADDRESSING_AUTO:
		break;
	default:
		if (!style || strcasecmp(style, "auto") == 0)
			break;
		if (strcasecmp(style, "path") == 0) {
			addressing = SSTF_S3_PATH;
		} else if (strcasecmp(style, "virtual") == 0) {
			addressing = SSTF_S3_VIRTUAL;
		} else {
			fprintf(stderr, PROG ": job '%s': the AWS profile '%s': s3 "
			                "addressing_style = %s: expected auto, path or virtual\n",
			        job, profile, style);
			goto out;
		}
	}

	a->cfg.endpoint = own(a, endpoint, &ok);
	a->cfg.region = own(a, region, &ok);
	a->cfg.addressing = addressing;
	a->cfg.access_key_id = own(a, id, &ok);
	a->cfg.secret_access_key = own(a, secret, &ok);
	a->cfg.session_token = own(a, token, &ok);
	if (!ok) {
		rc = oom();
		goto out;
	}

	/* The engine's checks; its messages never hold a secret. */
	struct sstf_config check;
	char why[512];
	memset(&check, 0, sizeof(check));
	check.s3 = &a->cfg;
	if (sstf_config_check(&check, why, sizeof(why)) < 0) {
		char srcs[600] = "";
		int n = 0;
		if (endpoint)
			n += snprintf(srcs + n, sizeof(srcs) - (size_t)n, "; the endpoint is from %s",
			              endpoint_from);
		if (region && n >= 0 && (size_t)n < sizeof(srcs))
			n += snprintf(srcs + n, sizeof(srcs) - (size_t)n, "; the region is from %s",
			              region_from);
		if (id && n >= 0 && (size_t)n < sizeof(srcs))
			snprintf(srcs + n, sizeof(srcs) - (size_t)n, "; the credentials are from %s",
			         from);
		fprintf(stderr, PROG ": job '%s': bad S3 settings: %s%s\n", job, why, srcs);
		goto out;
	}

	/* For the report. */
	char cw[700];
	if (id)
		snprintf(cw, sizeof(cw), "from %s%s", from, token ? ", with a session token" : "");
	else
		snprintf(cw, sizeof(cw), "anonymous (no credentials found in options, "
		                         "environment or profile)");
	a->rep.credentials = own(a, cw, &ok);
	a->rep.signed_requests = id != NULL;
	a->rep.region = region ? a->cfg.region : "us-east-1";
	a->rep.endpoint = endpoint ? a->cfg.endpoint : "";
	/* What auto comes to, as the engine decides it (sstfetch.h). */
	a->rep.addressing = addressing == SSTF_S3_PATH      ? "path"
	                    : addressing == SSTF_S3_VIRTUAL ? "virtual"
	                    : endpoint                      ? "path (auto: an endpoint is set)"
	                                                    : "virtual (auto: AWS)";
	if (!ok) {
		rc = oom();
		goto out;
	}
	*out = a;
	a = NULL;
	rc = 0;
out:
	vals_free(&cred);
	vals_free(&conf);
	aws_free(a);
	return rc;
}
