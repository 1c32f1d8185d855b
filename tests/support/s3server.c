/*
 * s3server.c - @20minutes/s3rver on loopback as the S3 server of the tests.
 */
#include "s3server.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "child.h"
#include "dataset.h"

#define START_WAIT_MS 30000 /* a guard against a hang, not a measurement */
#define GUARD_MS 120000     /* hang guard of one request */

/* tools/s3rver.js's exit codes. */
#define EXIT_IN_USE 3
#define EXIT_NO_MODULE 4

/* $SSTF_NODE, else the first executable "node" on PATH; malloc'd or NULL. */
static char *find_node(void)
{
	const char *env = getenv("SSTF_NODE");
	if (env && *env)
		return access(env, X_OK) == 0 ? strdup(env) : NULL;
	const char *path = getenv("PATH");
	if (!path || !*path)
		path = "/usr/local/bin:/usr/bin:/bin";
	while (*path) {
		size_t n = strcspn(path, ":");
		char *cand = ds_strfmt("%.*s/node", (int)n, n ? path : ".");
		if (cand && access(cand, X_OK) == 0)
			return cand;
		free(cand);
		path += n + (path[n] == ':');
	}
	return NULL;
}

static const char *script_path(void)
{
	const char *env = getenv("SSTF_S3RVER_JS");
	if (env && *env)
		return env;
#ifdef SSTF_S3RVER_JS
	return SSTF_S3RVER_JS;
#else
	return "tools/s3rver.js";
#endif
}

static void print_log(const struct s3server *s, const char *what)
{
	char path[PATH_MAX], text[4096];
	snprintf(path, sizeof(path), "%s/node.log", s->dir);
	child_read_tail(path, text, sizeof(text));
	fprintf(stderr, "s3server: %s; node's stderr:\n%s\n", what, text);
}

/* What try_start() needs: the server, node's path and its argv. */
struct start {
	struct s3server *s;
	const char *node;
	char **argv;
};

/*
 * One attempt on s->port. Returns 0 when node printed "ready PORT",
 * -EADDRINUSE when it lost the port, another -errno otherwise.
 */
static int try_start(void *arg)
{
	const struct start *a = arg;
	struct s3server *s = a->s;
	char **argv = a->argv;
	char logpath[PATH_MAX], portstr[16];
	snprintf(logpath, sizeof(logpath), "%s/node.log", s->dir);
	snprintf(portstr, sizeof(portstr), "%u", s->port);
	argv[3] = portstr; /* node SCRIPT --port P ... */

	int pfd[2];
	if (pipe2(pfd, O_CLOEXEC) != 0)
		return -errno;
	int log = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int err = log < 0 || null < 0 ? -errno : 0;
	pid_t pid = err ? -1 : child_spawn(a->node, argv, null, pfd[1], log);
	if (!err && pid < 0)
		err = pid;
	close(pfd[1]);
	if (log >= 0)
		close(log);
	if (null >= 0)
		close(null);
	if (err) {
		close(pfd[0]);
		return err;
	}
	s->pid = pid;

	char line[64];
	size_t got = 0;
	unsigned waited = 0;
	for (;;) {
		struct pollfd p = { .fd = pfd[0], .events = POLLIN };
		int r = poll(&p, 1, 100);
		if (r < 0 && errno != EINTR) {
			err = -errno;
			break;
		}
		if (r > 0) {
			ssize_t n = read(pfd[0], line + got, sizeof(line) - 1 - got);
			if (n > 0) {
				got += (size_t)n;
				line[got] = '\0';
				char *nl = strchr(line, '\n');
				if (nl) {
					unsigned port = 0;
					if (sscanf(line, "ready %u", &port) == 1 && port == s->port) {
						s->ready_fd = pfd[0];
						return 0;
					}
					fprintf(stderr, "s3server: unexpected first line from node: %s",
					        line);
					err = -EPROTO;
					break;
				}
				if (got == sizeof(line) - 1) {
					err = -EPROTO;
					break;
				}
				continue;
			}
			if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) {
				/* node closed its stdout: it is exiting. */
				int st = 0;
				child_reap(pid, CHILD_STOP_WAIT_MS, &st);
				s->pid = 0;
				close(pfd[0]);
				if (WIFEXITED(st) && WEXITSTATUS(st) == EXIT_IN_USE)
					return -EADDRINUSE;
				char what[128];
				snprintf(what, sizeof(what), "node exited (status 0x%x) at start",
				         (unsigned)st);
				print_log(s, what);
				return WIFEXITED(st) && WEXITSTATUS(st) == EXIT_NO_MODULE ? -ENOENT
				                                                          : -ECHILD;
			}
		}
		waited += r > 0 ? 0 : 100;
		if (waited >= START_WAIT_MS) {
			print_log(s, "node did not print its ready line in time");
			err = -ETIMEDOUT;
			break;
		}
	}
	close(pfd[0]);
	child_kill(pid);
	s->pid = 0;
	return err;
}

static void free_server(struct s3server *s)
{
	if (s->curl)
		curl_easy_cleanup(s->curl);
	if (s->dir)
		ds_rmtree(s->dir);
	free(s->dir);
	free(s->data);
	free(s);
}

/* s3server_stop() for the at-exit registry. */
static void stop_tracked(void *s)
{
	s3server_stop(s);
}

int s3server_start(const char *const *buckets, struct s3server **out)
{
	if (!buckets || !buckets[0])
		return -EINVAL;
	char *node = find_node();
	if (!node) {
		fprintf(stderr, "s3server: node not found (SSTF_NODE or PATH); "
		                "run tools/deps.sh\n");
		return -ENOENT;
	}
	const char *script = script_path();
	if (access(script, R_OK) != 0) {
		fprintf(stderr, "s3server: %s: %s (set SSTF_S3RVER_JS)\n", script,
		        strerror(errno));
		free(node);
		return -ENOENT;
	}
	struct s3server *s = calloc(1, sizeof(*s));
	size_t nb = 0;
	while (buckets[nb])
		nb++;
	char **argv = calloc(6 + 2 * nb + 1, sizeof(*argv));
	if (!s || !argv || curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		free(argv);
		free(s);
		free(node);
		return -ENOMEM;
	}
	s->ready_fd = -1;
	s->access_key = S3SERVER_ACCESS_KEY;
	s->secret_key = S3SERVER_SECRET_KEY;
	s->region = S3SERVER_REGION;
	int err = ds_mkdtemp("s3rver", &s->dir);
	if (!err) {
		s->data = ds_strfmt("%s/data", s->dir);
		s->curl = curl_easy_init();
		err = s->data && s->curl ? 0 : -ENOMEM;
	}
	/* node SCRIPT --port P --dir D --bucket B1 --bucket B2 ... NULL;
	 * try_start() puts each try's port in argv[3]. */
	argv[0] = node;
	argv[1] = (char *)script;
	argv[2] = (char *)"--port";
	argv[4] = (char *)"--dir";
	argv[5] = s->data;
	for (size_t i = 0; i < nb; i++) {
		argv[6 + 2 * i] = (char *)"--bucket";
		argv[7 + 2 * i] = (char *)buckets[i];
	}
	struct start a = { s, node, argv };
	if (!err)
		err = child_on_free_port(&s->port, try_start, &a);
	free(argv);
	free(node);
	if (err) {
		curl_global_cleanup();
		free_server(s);
		return err;
	}
	snprintf(s->endpoint, sizeof(s->endpoint), "http://127.0.0.1:%u", s->port);
	child_track(s, stop_tracked);
	*out = s;
	return 0;
}

void s3server_stop(struct s3server *s)
{
	if (!s)
		return;
	child_untrack(s);
	/* The handle's connection first, so node has no client left. */
	if (s->curl) {
		curl_easy_cleanup(s->curl);
		s->curl = NULL;
	}
	child_stop(s->pid);
	if (s->ready_fd >= 0)
		close(s->ready_fd);
	free_server(s);
	curl_global_cleanup();
}

char *s3server_encode(const char *str, int keep_slash)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = strlen(str);
	char *out = malloc(3 * n + 1);
	if (!out)
		return NULL;
	char *o = out;
	for (const unsigned char *p = (const unsigned char *)str; *p; p++) {
		unsigned c = *p;
		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/')) {
			*o++ = (char)c;
		} else {
			*o++ = '%';
			*o++ = hex[c >> 4];
			*o++ = hex[c & 15];
		}
	}
	*o = '\0';
	return out;
}

char *s3server_url(const struct s3server *s, const char *bucket, const char *key)
{
	char *b = s3server_encode(bucket, 0);
	char *k = s3server_encode(key, 1);
	char *url = b && k ? ds_strfmt("%s/%s/%s", s->endpoint, b, k) : NULL;
	free(b);
	free(k);
	return url;
}

/* The response body, grown as it arrives. */
static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct s3server_response *r = arg;
	size_t n = size * nmemb;
	char *grown = realloc(r->body, r->len + n + 1);
	if (!grown)
		return 0;
	memcpy(grown + r->len, data, n);
	r->body = grown;
	r->len += n;
	r->body[r->len] = '\0';
	return n;
}

/*
 * Resets the handle (its connection stays) and sets what every request
 * has: url, the hang guard, the body sink, and the signature with secret
 * ("" for none). *hdrs gets the header list to free after the request.
 */
static int prep(struct s3server *s, const char *url, const char *secret,
                long timeout_ms, struct s3server_response *r, char *errbuf,
                struct curl_slist **hdrs)
{
	CURL *c = s->curl;
	char userpwd[256];
	*hdrs = NULL;
	if (!c)
		return -EINVAL;
	curl_easy_reset(c);
	errbuf[0] = '\0';
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms > 0 ? timeout_ms : (long)GUARD_MS);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
	if (secret && !*secret)
		return 0;
	snprintf(userpwd, sizeof(userpwd), "%s:%s", s->access_key,
	         secret ? secret : s->secret_key);
	/* libcurl 7.88 does not send x-amz-content-sha256 itself, and s3rver
	 * refuses a signed request without it. No header-removal entries
	 * ("Expect:") here: libcurl signs them as empty headers that are never
	 * sent, and the signature no longer matches. */
	*hdrs = curl_slist_append(NULL, "x-amz-content-sha256: UNSIGNED-PAYLOAD");
	if (!*hdrs)
		return -ENOMEM;
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(c, CURLOPT_AWS_SIGV4, S3SERVER_SIGV4);
	curl_easy_setopt(c, CURLOPT_USERPWD, userpwd); /* copied by libcurl */
	return 0;
}

static int run(struct s3server *s, const char *what, char *errbuf,
               struct s3server_response *r)
{
	CURLcode rc = curl_easy_perform(s->curl);
	curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &r->status);
	if (rc != CURLE_OK) {
		fprintf(stderr, "s3server: %s: curl: %s (%s)\n", what, curl_easy_strerror(rc),
		        errbuf);
		return rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : -EIO;
	}
	return 0;
}

/* Where an upload's bytes come from: memory, or a FILE. */
struct upload {
	const char *p;
	size_t left;
};

static size_t on_read(char *buf, size_t size, size_t nmemb, void *arg)
{
	struct upload *u = arg;
	size_t n = size * nmemb < u->left ? size * nmemb : u->left;
	memcpy(buf, u->p, n);
	u->p += n;
	u->left -= n;
	return n;
}

/* One PUT of len bytes: from mem when f is NULL, else read from f. */
static int put(struct s3server *s, const char *bucket, const char *key, const void *mem,
               FILE *f, size_t len)
{
	char errbuf[CURL_ERROR_SIZE];
	struct s3server_response r = { 0 };
	struct curl_slist *hdrs;
	struct upload u = { mem, len };
	char *url = s3server_url(s, bucket, key);
	int err = url ? prep(s, url, NULL, 0, &r, errbuf, &hdrs) : -ENOMEM;
	if (err) {
		free(url);
		return err;
	}
	curl_easy_setopt(s->curl, CURLOPT_UPLOAD, 1L);
	curl_easy_setopt(s->curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t)len);
	if (f) {
		curl_easy_setopt(s->curl, CURLOPT_READDATA, f); /* default: fread */
	} else {
		curl_easy_setopt(s->curl, CURLOPT_READFUNCTION, on_read);
		curl_easy_setopt(s->curl, CURLOPT_READDATA, &u);
	}
	char what[512];
	snprintf(what, sizeof(what), "PUT %s/%s", bucket, key);
	err = run(s, what, errbuf, &r);
	if (!err && r.status != 200) {
		fprintf(stderr, "s3server: %s (%s): HTTP %ld\n%s\n", what, url, r.status,
		        r.body ? r.body : "");
		err = -EIO;
	}
	curl_slist_free_all(hdrs);
	free(r.body);
	free(url);
	return err;
}

int s3server_put(struct s3server *s, const char *bucket, const char *key,
                 const void *data, size_t len)
{
	return put(s, bucket, key, data, NULL, len);
}

int s3server_put_file(struct s3server *s, const char *bucket, const char *key,
                      const char *path)
{
	FILE *f = fopen(path, "rbe");
	if (!f) {
		int err = -errno;
		fprintf(stderr, "s3server: %s: %s\n", path, strerror(errno));
		return err;
	}
	struct stat st;
	int err = fstat(fileno(f), &st) == 0 ? 0 : -errno;
	if (!err)
		err = put(s, bucket, key, NULL, f, (size_t)st.st_size);
	fclose(f);
	return err;
}

/* Uploads dir's tree; rel is the key of dir ("" or ending in '/'). */
static int put_dir(struct s3server *s, const char *bucket, const char *rel,
                   const char *dir)
{
	DIR *d = opendir(dir);
	if (!d) {
		int err = -errno;
		fprintf(stderr, "s3server: %s: %s\n", dir, strerror(errno));
		return err;
	}
	int count = 0, err = 0;
	struct dirent *e;
	while (!err && (e = readdir(d)) != NULL) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *path = ds_strfmt("%s/%s", dir, e->d_name);
		char *key = ds_strfmt("%s%s", rel, e->d_name);
		struct stat st;
		if (!path || !key)
			err = -ENOMEM;
		else if (lstat(path, &st) != 0)
			err = -errno;
		else if (S_ISDIR(st.st_mode)) {
			char *sub = ds_strfmt("%s/", key);
			int n = sub ? put_dir(s, bucket, sub, path) : -ENOMEM;
			free(sub);
			if (n < 0)
				err = n;
			else
				count += n;
		} else if (S_ISREG(st.st_mode)) {
			err = s3server_put_file(s, bucket, key, path);
			count += !err;
		}
		free(path);
		free(key);
	}
	closedir(d);
	return err ? err : count;
}

int s3server_put_tree(struct s3server *s, const char *bucket, const char *prefix,
                      const char *dir)
{
	return put_dir(s, bucket, prefix ? prefix : "", dir);
}

int s3server_get(struct s3server *s, const char *url, const char *range,
                 const char *secret, long timeout_ms, struct s3server_response *r)
{
	char errbuf[CURL_ERROR_SIZE];
	struct curl_slist *hdrs;
	memset(r, 0, sizeof(*r));
	int err = prep(s, url, secret, timeout_ms, r, errbuf, &hdrs);
	if (err)
		return err;
	if (range)
		curl_easy_setopt(s->curl, CURLOPT_RANGE, range);
	char what[512];
	snprintf(what, sizeof(what), "GET %s", url);
	err = run(s, what, errbuf, r);
	curl_slist_free_all(hdrs);
	if (!r->body)
		r->body = calloc(1, 1);
	return err ? err : r->body ? 0 : -ENOMEM;
}
