#include "errors.h"

#include <errno.h>

const char *trackd_strerror(int err)
{
	switch (err) {
	case TRACKD_OK: return "success";
	case TRACKD_ENOMEM: return "out of memory";
	case TRACKD_EINVAL: return "invalid argument or input";
	case TRACKD_EIO: return "input/output error";
	case TRACKD_ENOSPC: return "no space left (disk full or disk budget reached)";
	case TRACKD_ETOOBIG: return "over a configured limit";
	case TRACKD_ECORRUPT: return "data corrupt (checksum or framing)";
	case TRACKD_ENOENT: return "not found";
	case TRACKD_EEXIST: return "already exists";
	case TRACKD_ECLOSED: return "closed";
	case TRACKD_ETIMEDOUT: return "timed out";
	case TRACKD_EPERM: return "permission denied";
	case TRACKD_ESYS: return "system error";
	case TRACKD_EAGAIN: return "try again";
	}
	return "unknown error";
}

int trackd_err_from_errno(int errnum)
{
	switch (errnum) {
	case 0: return TRACKD_OK;
	case ENOMEM: return TRACKD_ENOMEM;
	case EINVAL: return TRACKD_EINVAL;
	case ENOSPC:
	case EDQUOT: return TRACKD_ENOSPC;
	case EFBIG: return TRACKD_ETOOBIG;
	case ENOENT: return TRACKD_ENOENT;
	case EEXIST: return TRACKD_EEXIST;
	case EACCES:
	case EPERM: return TRACKD_EPERM;
	case ETIMEDOUT: return TRACKD_ETIMEDOUT;
	case EAGAIN: return TRACKD_EAGAIN;
	case EIO: return TRACKD_EIO;
	}
	return TRACKD_ESYS;
}
