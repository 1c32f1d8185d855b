/*
 * filesrc.c - file:// sources, read through the ring.
 *
 * A file source reads straight into a pool buffer (no copy), one read in
 * flight per file, and hands each buffer to the same hash, write and publish
 * path as HTTP. The next read is queued as soon as the previous one is
 * committed, so reading and writing overlap.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static void issue_read(struct sstf_engine *e, struct sstf__xfer *x)
{
	if (x->reading || x->source_done || x->err)
		return;
	sstf__xfer_read(e, x, x->srcfd, x->received, SSTF__OP_READ);
}

int sstf__filesrc_start(struct sstf_engine *e, struct sstf__xfer *x)
{
	CURLU *u = curl_url();
	char *path = NULL, *host = NULL;
	int ret = 0;
	if (!u)
		return -ENOMEM;
	if (curl_url_set(u, CURLUPART_URL, sstf__gen_file_url(x->gen, x->file), 0) != CURLUE_OK ||
	    curl_url_get(u, CURLUPART_PATH, &path, CURLU_URLDECODE) != CURLUE_OK) {
		snprintf(x->detail, sizeof(x->detail), "cannot parse file URL");
		ret = -SSTF_EBADURL;
		goto out;
	}
	if (curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK && host && *host &&
	    strcmp(host, "localhost") != 0) {
		snprintf(x->detail, sizeof(x->detail), "file URL names a remote host");
		ret = -SSTF_EBADURL;
		goto out;
	}
	x->srcfd = open(path, O_RDONLY | O_CLOEXEC);
	if (x->srcfd < 0) {
		ret = -errno;
		snprintf(x->detail, sizeof(x->detail), "cannot open source %.120s", path);
		goto out;
	}
	issue_read(e, x);
out:
	curl_free(path);
	curl_free(host);
	curl_url_cleanup(u);
	return ret;
}

void sstf__filesrc_stop(struct sstf_engine *e, struct sstf__xfer *x)
{
	/* A read in flight drains; on_read sees x->err and ends the source. */
}

void sstf__filesrc_resume(struct sstf_engine *e, struct sstf__xfer *x)
{
	issue_read(e, x);
}

void sstf__filesrc_on_read(struct sstf_engine *e, struct sstf__xfer *x,
                           unsigned buf, int res)
{
	x->reading = false;
	if (x->err || res <= 0) {
		sstf__pool_put(&e->pool, (int)buf);
		if (res < 0)
			sstf__xfer_source_end(e, x, res, "read from source failed");
		else if (x->err)
			sstf__xfer_source_end(e, x, x->err, NULL);
		else
			sstf__xfer_source_end(e, x, 0, NULL); /* EOF */
		return;
	}
	if (!x->t_first)
		x->t_first = sstf__now_ns();
	if ((uint64_t)res > x->file->size - x->received) {
		sstf__pool_put(&e->pool, (int)buf);
		char d[64];
		snprintf(d, sizeof(d), "source is longer than the expected size");
		sstf__xfer_source_end(e, x, -SSTF_ESIZE, d);
		return;
	}
	x->received += (uint64_t)res;
	sstf__xfer_commit(e, x, (int)buf, (uint32_t)res);
	issue_read(e, x);
}
