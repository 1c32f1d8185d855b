/*
 * origin.c - nginx on loopback as the HTTP(S) origin of the tests, and the
 * private CA of the https tests.
 */
#include "origin.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <dirent.h>
#include <unistd.h>

#include "child.h"
#include "dataset.h"

#define NGINX_BIN "/usr/sbin/nginx"
#define OPENSSL_BIN "openssl" /* from PATH */
#define START_WAIT_MS 30000 /* a guard against a hang, not a measurement */

/* The pid nginx wrote into its pid file, or 0. */
static pid_t pidfile_pid(const struct origin *o)
{
	char path[PATH_MAX], text[32];
	snprintf(path, sizeof(path), "%s/nginx.pid", o->prefix);
	child_read_tail(path, text, sizeof(text));
	return (pid_t)strtol(text, NULL, 10);
}

static int write_conf(const struct origin *o, const char *conf)
{
	const char *p = o->prefix;
	char *tls = NULL;
	if (o->cert_pem) {
		/* Every failed handshake is logged at info: the tests count
		 * connection attempts by it. */
		tls = ds_strfmt("    ssl_certificate %s;\n"
		                "    ssl_certificate_key %s;\n"
		                "    ssl_protocols TLSv1.2 TLSv1.3;\n",
		                o->cert_pem, o->key_pem);
		if (!tls)
			return -ENOMEM;
	}
	char *text = ds_strfmt(
		"# written by tests/support/origin.c\n"
		"daemon off;\n"
		"master_process on;\n"
		"worker_processes 2;\n"
		"%s"
		"pid %s/nginx.pid;\n"
		"lock_file %s/nginx.lock;\n"
		"error_log %s/error.log %s;\n"
		"events { worker_connections 1024; }\n"
		"http {\n"
		"  access_log off;\n"
		"  sendfile on;\n"
		"  tcp_nopush on;\n"
		"  keepalive_timeout 60s;\n"
		"  keepalive_requests 100000;\n"
		"  client_body_temp_path %s/client_body;\n"
		"  proxy_temp_path %s/proxy;\n"
		"  fastcgi_temp_path %s/fastcgi;\n"
		"  uwsgi_temp_path %s/uwsgi;\n"
		"  scgi_temp_path %s/scgi;\n"
		"  default_type application/octet-stream;\n"
		"  server {\n"
		"    listen 127.0.0.1:%u%s;\n"
		"    server_name localhost;\n"
		"%s"
		"    root %s;\n"
		"    location / { }\n"
		"  }\n"
		"}\n",
		/* As root, workers would run as nobody and could not read the
		 * 0700 dirs mkdtemp makes. */
		geteuid() == 0 ? "user root;\n" : "",
		p, p, p, tls ? "info" : "warn", p, p, p, p, p, o->port, tls ? " ssl" : "",
		tls ? tls : "", o->root);
	free(tls);
	if (!text)
		return -ENOMEM;
	int err = ds_write_file(conf, text, strlen(text));
	free(text);
	return err;
}

/*
 * One attempt on o->port. Returns 0 when nginx accepts connections,
 * -EADDRINUSE when it lost the port, another -errno otherwise.
 */
static int try_start(void *arg)
{
	struct origin *o = arg;
	char conf[PATH_MAX], elog[PATH_MAX], outlog[PATH_MAX];
	snprintf(conf, sizeof(conf), "%s/nginx.conf", o->prefix);
	snprintf(elog, sizeof(elog), "%s/error.log", o->prefix);
	snprintf(outlog, sizeof(outlog), "%s/stderr.log", o->prefix);
	unlink(elog);
	int err = write_conf(o, conf);
	if (err)
		return err;

	char *argv[] = { (char *)NGINX_BIN, (char *)"-p", o->prefix, (char *)"-e", elog,
	                 (char *)"-c", conf, NULL };
	int out = open(outlog, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (out < 0 || null < 0) {
		err = -errno;
		if (out >= 0)
			close(out);
		if (null >= 0)
			close(null);
		return err;
	}
	pid_t pid = child_spawn(NGINX_BIN, argv, null, out, out);
	close(out);
	close(null);
	if (pid < 0)
		return pid;
	o->pid = pid;

	for (unsigned waited = 0; waited < START_WAIT_MS; waited += 5) {
		int st;
		pid_t r = waitpid(pid, &st, WNOHANG);
		if (r == pid) {
			o->pid = 0;
			char text[2048];
			child_read_tail(elog, text, sizeof(text));
			if (strstr(text, "Address already in use"))
				return -EADDRINUSE;
			fprintf(stderr, "origin: nginx exited (status 0x%x) at start:\n%s\n",
			        (unsigned)st, text);
			child_read_tail(outlog, text, sizeof(text));
			fprintf(stderr, "%s\n", text);
			return -ECHILD;
		}
		/* nginx writes its pid file after it has bound the port, so the
		 * connection then reaches nginx and not whoever raced us. */
		if (pidfile_pid(o) == pid && child_port_accepts(o->port))
			return 0;
		child_sleep_ms(5);
	}
	fprintf(stderr, "origin: nginx did not accept on port %u in %d ms\n", o->port,
	        START_WAIT_MS);
	child_kill(pid);
	o->pid = 0;
	return -ETIMEDOUT;
}

static void origin_free(struct origin *o)
{
	free(o->prefix);
	free(o->root);
	free(o->cert_pem);
	free(o->key_pem);
	free(o);
}

/* origin_stop() for the at-exit registry. */
static void stop_tracked(void *o)
{
	origin_stop(o);
}

/* origin_start(), over https when cert_pem is not NULL. */
static int start(const char *root, const char *cert_pem, const char *key_pem,
                 struct origin **out)
{
	if (access(NGINX_BIN, X_OK) != 0) {
		fprintf(stderr, "origin: %s not found (install nginx-light)\n", NGINX_BIN);
		return -ENOENT;
	}
	struct origin *o = calloc(1, sizeof(*o));
	if (!o)
		return -ENOMEM;
	o->root = strdup(root);
	int err = o->root ? 0 : -ENOMEM;
	if (!err && cert_pem) {
		o->cert_pem = strdup(cert_pem);
		o->key_pem = strdup(key_pem);
		if (!o->cert_pem || !o->key_pem)
			err = -ENOMEM;
	}
	if (!err)
		err = ds_mkdtemp("nginx", &o->prefix);
	if (!err)
		err = child_on_free_port(&o->port, try_start, o);
	if (err) {
		if (o->prefix)
			ds_rmtree(o->prefix);
		origin_free(o);
		return err;
	}
	/* localhost, not the address: clients check the name as they would a
	 * store's, against the certificate's DNS:localhost. */
	if (cert_pem)
		snprintf(o->base_url, sizeof(o->base_url), "https://localhost:%u", o->port);
	else
		snprintf(o->base_url, sizeof(o->base_url), "http://127.0.0.1:%u", o->port);
	child_track(o, stop_tracked);
	*out = o;
	return 0;
}

int origin_start(const char *root, struct origin **out)
{
	return start(root, NULL, NULL, out);
}

static int count_lines(const char *path, const char *needle);

int origin_start_tls(const char *root, const char *cert_pem, const char *key_pem,
                     struct origin **out)
{
	if (!cert_pem || !key_pem || cert_pem[0] != '/' || key_pem[0] != '/') {
		fprintf(stderr, "origin: the certificate and key need absolute paths\n");
		return -EINVAL;
	}
	int err = start(root, cert_pem, key_pem, out);
	if (err)
		return err;
	/* The probe of try_start() connected and closed without a
	 * handshake: nginx logs it as a failed one, a moment later. */
	struct origin *o = *out;
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/error.log", o->prefix);
	for (unsigned waited = 0; waited < START_WAIT_MS; waited += 5) {
		o->log_base = count_lines(path, ORIGIN_TLS_HANDSHAKE_FAILED);
		if (o->log_base != 0)
			break;
		child_sleep_ms(5);
	}
	if (o->log_base < 0)
		o->log_base = 0;
	return 0;
}

/* Lines of path containing needle, or -errno. */
static int count_lines(const char *path, const char *needle)
{
	FILE *f = fopen(path, "re");
	if (!f)
		return -errno;
	char *line = NULL;
	size_t cap = 0;
	int n = 0;
	while (getline(&line, &cap, f) >= 0) {
		if (strstr(line, needle))
			n++;
	}
	free(line);
	fclose(f);
	return n;
}

int origin_log_count(const struct origin *o, const char *needle, int want,
                     unsigned wait_ms)
{
	char path[PATH_MAX];
	snprintf(path, sizeof(path), "%s/error.log", o->prefix);
	int base = strcmp(needle, ORIGIN_TLS_HANDSHAKE_FAILED) == 0 ? o->log_base : 0;
	for (unsigned waited = 0;; waited += 10) {
		int n = count_lines(path, needle);
		if (n > 0)
			n -= base;
		if (n < 0 || n >= want || waited >= wait_ms)
			return n;
		child_sleep_ms(10);
	}
}

/* ------------------------------------------------------------------------ */
/* A private CA                                                             */

/* Runs openssl with argv (argv[0] is "openssl"), output appended to log.
 * Returns 0, or -ECHILD after printing the command and the log. */
static int run_openssl(char *const *argv, const char *log)
{
	int out = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	int err = out < 0 || null < 0 ? -errno : 0;
	pid_t pid = err ? -1 : fork();
	if (pid == 0) {
		dup2(null, 0);
		dup2(out, 1);
		dup2(out, 2);
		execvp(OPENSSL_BIN, argv);
		_exit(127);
	}
	if (!err && pid < 0)
		err = -errno;
	if (out >= 0)
		close(out);
	if (null >= 0)
		close(null);
	int st = 0;
	if (!err && waitpid(pid, &st, 0) != pid)
		err = -errno;
	if (!err && WIFEXITED(st) && WEXITSTATUS(st) == 0)
		return 0;
	fprintf(stderr, "origin: certs:");
	for (char *const *a = argv; *a; a++)
		fprintf(stderr, " %s", *a);
	if (err) {
		fprintf(stderr, ": %s\n", strerror(-err));
		return err;
	}
	char text[4096];
	child_read_tail(log, text, sizeof(text));
	fprintf(stderr, ": exit status 0x%x%s\n%s\n", (unsigned)st,
	        WIFEXITED(st) && WEXITSTATUS(st) == 127 ? " (no openssl command? install openssl)"
	                                                : "",
	        text);
	return -ECHILD;
}

/* A self-signed CA certificate and its key in dir: NAME.pem, NAME.key. */
static int make_ca(const char *dir, const char *name, const char *cn, const char *log)
{
	char *pem = ds_strfmt("%s/%s.pem", dir, name);
	char *key = ds_strfmt("%s/%s.key", dir, name);
	char *subj = ds_strfmt("/CN=%s", cn);
	int err = -ENOMEM;
	if (pem && key && subj) {
		char *argv[] = {
			"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
			"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
			pem, "-days", "7", "-subj", subj, "-addext",
			"basicConstraints=critical,CA:TRUE", "-addext",
			"keyUsage=critical,keyCertSign,cRLSign", NULL,
		};
		err = run_openssl(argv, log);
	}
	free(pem);
	free(key);
	free(subj);
	return err;
}

/* 1 when dir holds an entry named as c_rehash names a CA: 8 hex digits,
 * ".0". */
static int has_hash_entry(const char *dir)
{
	DIR *d = opendir(dir);
	if (!d)
		return 0;
	int found = 0;
	struct dirent *e;
	while (!found && (e = readdir(d))) {
		size_t n = strlen(e->d_name);
		found = n == 10 && strcmp(e->d_name + 8, ".0") == 0 &&
		        strspn(e->d_name, "0123456789abcdef") == 8;
	}
	closedir(d);
	return found;
}

int origin_make_certs(const char *parent, struct origin_certs *c)
{
	memset(c, 0, sizeof(*c));
	int err = 0;
	if (!parent) {
		err = ds_mkdtemp("certs", &c->dir);
	} else {
		c->dir = ds_strfmt("%s/certs-XXXXXX", parent);
		if (!c->dir)
			err = -ENOMEM;
		else if (!mkdtemp(c->dir))
			err = -errno;
		if (err) {
			free(c->dir);
			c->dir = NULL;
		}
	}
	if (err)
		return err;
	char *log = ds_strfmt("%s/openssl.log", c->dir);
	char *csr = ds_strfmt("%s/server.csr", c->dir);
	char *ext = ds_strfmt("%s/server.ext", c->dir);
	char *ca_key = ds_strfmt("%s/ca.key", c->dir);
	char *serial = ds_strfmt("%s/ca.srl", c->dir);
	c->ca_pem = ds_strfmt("%s/ca.pem", c->dir);
	c->ca_dir = ds_strfmt("%s/capath", c->dir);
	c->cert_pem = ds_strfmt("%s/server.pem", c->dir);
	c->key_pem = ds_strfmt("%s/server.key", c->dir);
	c->other_ca_pem = ds_strfmt("%s/other-ca.pem", c->dir);
	char *ca_copy = c->ca_dir ? ds_strfmt("%s/ca.pem", c->ca_dir) : NULL;
	if (!log || !csr || !ext || !ca_key || !serial || !c->ca_pem || !c->ca_dir ||
	    !c->cert_pem || !c->key_pem || !c->other_ca_pem || !ca_copy) {
		err = -ENOMEM;
		goto out;
	}
	err = make_ca(c->dir, "ca", "sstfetch test CA", log);
	if (!err)
		err = make_ca(c->dir, "other-ca", "sstfetch other test CA", log);
	if (err)
		goto out;

	/* The server's key and request, then the CA signs it for both names
	 * the tests may use. */
	char *req[] = {
		"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt",
		"ec_paramgen_curve:prime256v1", "-nodes", "-keyout", c->key_pem,
		"-out", csr, "-subj", "/CN=localhost", NULL,
	};
	err = run_openssl(req, log);
	static const char ext_text[] =
		"subjectAltName=DNS:localhost,IP:127.0.0.1\n"
		"basicConstraints=critical,CA:FALSE\n"
		"keyUsage=critical,digitalSignature\n"
		"extendedKeyUsage=serverAuth\n";
	if (!err)
		err = ds_write_file(ext, ext_text, sizeof(ext_text) - 1);
	char *sign[] = {
		"openssl", "x509", "-req", "-in", csr, "-CA", c->ca_pem, "-CAkey",
		ca_key, "-CAserial", serial, "-CAcreateserial", "-out", c->cert_pem,
		"-days", "7", "-extfile", ext, NULL,
	};
	if (!err)
		err = run_openssl(sign, log);
	if (err)
		goto out;

	/* The hashed directory: the CA alone, then `openssl rehash` adds
	 * HASH.0 next to it, as c_rehash does. */
	size_t len = 0;
	char *text = NULL;
	FILE *f = fopen(c->ca_pem, "re");
	if (!f || mkdir(c->ca_dir, 0755) != 0) {
		err = -errno;
	} else {
		text = malloc(65536);
		len = text ? fread(text, 1, 65536, f) : 0;
		err = text && len > 0 ? ds_write_file(ca_copy, text, len) : -EIO;
	}
	if (f)
		fclose(f);
	free(text);
	char *rehash[] = { "openssl", "rehash", c->ca_dir, NULL };
	if (!err)
		err = run_openssl(rehash, log);
	if (!err && !has_hash_entry(c->ca_dir)) {
		fprintf(stderr, "origin: certs: openssl rehash made no HASH.0 in %s\n",
		        c->ca_dir);
		err = -ENOENT;
	}
out:
	free(log);
	free(csr);
	free(ext);
	free(ca_key);
	free(serial);
	free(ca_copy);
	if (err)
		origin_free_certs(c);
	return err;
}

void origin_free_certs(struct origin_certs *c)
{
	if (c->dir)
		ds_rmtree(c->dir);
	free(c->dir);
	free(c->ca_pem);
	free(c->ca_dir);
	free(c->cert_pem);
	free(c->key_pem);
	free(c->other_ca_pem);
	memset(c, 0, sizeof(*c));
}

void origin_stop(struct origin *o)
{
	if (!o)
		return;
	child_untrack(o);
	child_stop(o->pid);
	if (o->prefix)
		ds_rmtree(o->prefix);
	origin_free(o);
}
