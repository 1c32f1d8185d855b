/*
 * ring.c - io_uring setup and SQE helpers.
 *
 * The ring is created on the loop thread, the only thread that ever submits
 * to it, which is what IORING_SETUP_SINGLE_ISSUER promises the kernel.
 */
#include <errno.h>
#include <string.h>

#include "internal.h"

int sstf__ring_init(struct io_uring *ring, unsigned depth, unsigned *flags)
{
	/* Newest first; each step drops flags an older kernel refuses. */
	static const unsigned tries[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN |
			IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int ret = -EINVAL;
	for (size_t i = 0; i < sizeof(tries) / sizeof(tries[0]); i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = tries[i];
		ret = io_uring_queue_init_params(depth, ring, &p);
		if (ret == 0) {
			*flags = tries[i];
			return 0;
		}
		if (ret != -EINVAL)
			return ret;
	}
	return ret;
}

#ifdef SSTF_TEST_HOOKS
bool sstf__test_ring_calls_off;
#endif

void sstf__ring_probe(struct io_uring *ring, bool *cut, bool *xattr)
{
	*cut = *xattr = false;
#ifdef SSTF_TEST_HOOKS
	if (sstf__test_ring_calls_off)
		return;
#endif
	struct io_uring_probe *p = io_uring_get_probe_ring(ring);
	if (!p)
		return;
	*cut = io_uring_opcode_supported(p, SSTF__IORING_OP_FTRUNCATE);
	*xattr = io_uring_opcode_supported(p, IORING_OP_FSETXATTR);
	io_uring_free_probe(p);
}

void sstf__ring_prep_ftruncate(struct io_uring_sqe *sqe, int fd, uint64_t len)
{
	/* The kernel refuses any other field set (io_ftruncate_prep). */
	io_uring_prep_rw(SSTF__IORING_OP_FTRUNCATE, sqe, fd, NULL, 0, len);
}

struct io_uring_sqe *sstf__ring_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe;
	while (!(sqe = io_uring_get_sqe(ring)))
		io_uring_submit(ring);
	return sqe;
}

void sstf__ring_tag(struct io_uring_sqe *sqe, struct sstf__slot *s,
                   enum sstf__op op, unsigned aux)
{
	sstf__slot_op_begin(s);
	io_uring_sqe_set_data64(sqe, sstf__tag_op(s->tag, op, aux));
}
