/*
 * errors.c - one map from error codes to messages (see SSTF_ERRNO_MAP).
 */
#include <limits.h>
#include <string.h>

#include "sstfetch.h"

const char *sstf_strerror(int err)
{
	if (err == INT_MIN)
		return "unknown error";
	if (err < 0)
		err = -err;
	switch (err) {
#define SSTF_ERR_MSG_(name, value, msg)                                         \
	case SSTF_##name:                                                      \
		return msg;
		SSTF_ERRNO_MAP(SSTF_ERR_MSG_)
#undef SSTF_ERR_MSG_
	case 0:
		return "success";
	default:
		break;
	}
	if (err < 4096)
		return strerrordesc_np(err) ? strerrordesc_np(err) : "unknown error";
	return "unknown error";
}
