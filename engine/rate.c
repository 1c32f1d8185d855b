/*
 * rate.c - the engine-wide rate limit: one token bucket in bytes.
 *
 * The bucket holds at most `burst` tokens and fills at `rate` per second,
 * from empty when the engine starts; a delivery of n bytes takes n tokens,
 * all or none, so the bytes accepted by time t never exceed burst + rate *
 * t (and while the engine has been busy from its start, rate * t). The burst is a tenth of a
 * second at the rate, and never less than the largest single delivery
 * (min_burst), or such a delivery could never pass.
 *
 * sstf_set_rate() may run on any thread: it stores the new rate in an
 * atomic and raises `changed`; the loop applies it on its next take. The
 * tokens are then cut to the new burst, so a lowered rate binds at once.
 */
#include "internal.h"

/* 128-bit products: a second at 16 GB/s times 1e9 does not fit 64 bits. */
__extension__ typedef unsigned __int128 u128;

static uint64_t burst_of(uint64_t rate, size_t min_burst)
{
	uint64_t b = rate / 10;
	return b < min_burst ? min_burst : b;
}

static void apply(struct sstf__rate *r, uint64_t now)
{
	r->rate = atomic_load_explicit(&r->want, memory_order_acquire);
	r->burst = burst_of(r->rate, r->min_burst);
	if (r->tokens > r->burst)
		r->tokens = r->burst;
	r->last_ns = now;
}

void sstf__rate_init(struct sstf__rate *r, uint64_t rate, size_t min_burst)
{
	atomic_init(&r->want, rate);
	atomic_init(&r->changed, false);
	r->min_burst = min_burst;
	r->rate = rate;
	r->burst = burst_of(rate, min_burst);
	/* Empty at the start: a run's average stays at the rate, rather than
	 * a burst above it. */
	r->tokens = 0;
	r->last_ns = sstf__now_ns();
}

void sstf__rate_set(struct sstf__rate *r, uint64_t rate)
{
	atomic_store_explicit(&r->want, rate, memory_order_release);
	atomic_store_explicit(&r->changed, true, memory_order_release);
}

bool sstf__rate_limited(struct sstf__rate *r)
{
	if (atomic_load_explicit(&r->changed, memory_order_acquire))
		return true; /* the next take applies it */
	return r->rate != 0;
}

uint64_t sstf__rate_take(struct sstf__rate *r, size_t n, uint64_t now)
{
	if (atomic_exchange_explicit(&r->changed, false, memory_order_acq_rel)) {
		/* Tokens earned so far were earned at the old rate. */
		if (r->rate && now > r->last_ns) {
			uint64_t add = (now - r->last_ns) * r->rate / 1000000000u;
			r->tokens = r->tokens + add > r->burst ? r->burst : r->tokens + add;
		}
		apply(r, now);
	}
	if (!r->rate)
		return 0;
	if (now > r->last_ns) {
		u128 add = (u128)(now - r->last_ns) * r->rate / 1000000000u;
		if (add > 0) {
			uint64_t t = r->tokens + (add > r->burst ? r->burst : (uint64_t)add);
			r->tokens = t > r->burst ? r->burst : t;
			/* Advance by the time those tokens took, not to now:
			 * the fraction of a token left over is kept. */
			r->last_ns += (uint64_t)(add * 1000000000u / r->rate);
			if (r->tokens == r->burst)
				r->last_ns = now;
		}
	}
	/* A delivery larger than the burst (none should be) waits for a full
	 * bucket and takes it, rather than waiting for ever. */
	if (n > r->burst)
		n = r->burst;
	if (r->tokens >= n) {
		r->tokens -= n;
		return 0;
	}
	uint64_t missing = n - r->tokens;
	uint64_t wait = (uint64_t)(((u128)missing * 1000000000u + r->rate - 1) / r->rate);
	return now + (wait ? wait : 1);
}
