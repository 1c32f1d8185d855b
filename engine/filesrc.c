/*
 * filesrc.c - the file:// source, read through the ring.
 *
 * A file source reads straight into a pool buffer (no copy), one read in
 * flight per stream, and hands each buffer to the same hash, write and
 * publish path as HTTP. The next read is queued as soon as the previous one
 * is committed, so reading and writing overlap. Each stream opens the
 * source file itself and reads only its own part.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

struct file_stream {
	int fd;
	bool reading;
};

static struct file_stream *fs_of(struct sstf_engine *e, const struct sstf__stream *s)
{
	struct file_stream *v = e->src_state[sstf__source_index(&sstf__file_source)];
	return &v[s->index];
}

static int file_init(struct sstf_engine *e)
{
	struct file_stream *v = sstf__alloc(&e->alloc, e->nstreams * sizeof(*v));
	if (!v)
		return -ENOMEM;
	for (uint32_t i = 0; i < e->nstreams; i++)
		v[i].fd = -1;
	e->src_state[sstf__source_index(&sstf__file_source)] = v;
	return 0;
}

static void file_fini(struct sstf_engine *e)
{
	unsigned i = sstf__source_index(&sstf__file_source);
	struct file_stream *v = e->src_state[i];
	for (uint32_t k = 0; v && k < e->nstreams; k++)
		if (v[k].fd >= 0)
			close(v[k].fd);
	sstf__free(&e->alloc, v);
	e->src_state[i] = NULL;
}

static void file_stop(struct sstf_engine *e, struct sstf__stream *s);

static void issue_read(struct sstf_engine *e, struct sstf__stream *s)
{
	struct file_stream *fs = fs_of(e, s);
	if (fs->reading || !s->attempt)
		return;
	/* A part inside the file ends at its end; the last one reads on to
	 * EOF, so that a source longer than the entry says is caught. Never
	 * reached from inside start(): a part inside the file is not empty. */
	if (s->pos == s->end && s->end != sstf__stream_file_size(s)) {
		struct sstf__src_end end = {0};
		file_stop(e, s);
		sstf__stream_end(e, s, &end);
		return;
	}
	uint32_t len;
	int idx;
	uint8_t *buf = sstf__stream_buffer(e, s, &len, &idx);
	if (!buf)
		return; /* paused: resume() reads on */
	struct io_uring_sqe *sqe = sstf__ring_sqe(&e->ring);
	if (e->pool.fixed)
		io_uring_prep_read_fixed(sqe, fs->fd, buf, len, s->pos, idx);
	else
		io_uring_prep_read(sqe, fs->fd, buf, len, s->pos);
	sstf__ring_tag(sqe, s->slot, SSTF__OP_READ, 0);
	fs->reading = true;
}

static int file_start(struct sstf_engine *e, struct sstf__stream *s, const char *url)
{
	struct file_stream *fs = fs_of(e, s);
	CURLU *u = curl_url();
	char *path = NULL, *host = NULL;
	int ret = 0;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK) {
		sstf__file_fail(s->file, -SSTF_EBADURL, "cannot parse file URL");
		ret = -SSTF_EBADURL;
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host &&
	    strcmp(host, "localhost") != 0) {
		sstf__file_fail(s->file, -SSTF_EBADURL, "file URL names a remote host");
		ret = -SSTF_EBADURL;
		goto out;
	}
	if (fs->fd < 0)
		fs->fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fs->fd < 0) {
		ret = -errno;
		sstf__file_fail(s->file, ret, "cannot open source %.120s", path);
		goto out;
	}
	/* A ranged read is a read at an offset: skip is never needed. */
	issue_read(e, s);
out:
	curl_free(path);
	curl_free(host);
	curl_url_cleanup(u);
	return ret;
}

static void file_stop(struct sstf_engine *e, struct sstf__stream *s)
{
	/* A read in flight drains (on_cqe gives its buffer back); the ring
	 * holds its own reference to the file, so closing now is safe. */
	struct file_stream *fs = fs_of(e, s);
	if (fs->fd >= 0)
		close(fs->fd);
	fs->fd = -1;
}

static void file_resume(struct sstf_engine *e, struct sstf__stream *s)
{
	issue_read(e, s);
}

static void file_on_cqe(struct sstf_engine *e, struct sstf__stream *s, enum sstf__op op,
                        unsigned aux, int res)
{
	struct file_stream *fs = fs_of(e, s);
	fs->reading = false;
	bool live = s->attempt;
	/* First: the lent buffer goes back, or its bytes go on. */
	sstf__stream_filled(e, s, res > 0 ? (uint32_t)res : 0);
	if (!live || !s->attempt)
		return; /* stopped, or the file failed and stopped its streams */
	if (res <= 0) {
		struct sstf__src_end end = {0};
		if (res < 0) {
			end.err = res;
			end.detail = "read from source failed";
		}
		/* res == 0: EOF; a part cut short is the stream's to say. */
		file_stop(e, s);
		sstf__stream_end(e, s, &end);
		return;
	}
	issue_read(e, s);
}

static const char *const file_schemes[] = {"file", NULL};

const struct sstf__source_ops sstf__file_source = {
	.name = "file",
	.schemes = file_schemes,
	.init = file_init,
	.fini = file_fini,
	.start = file_start,
	.stop = file_stop,
	.resume = file_resume,
	.on_cqe = file_on_cqe,
};
