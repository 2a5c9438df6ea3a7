/*
 * errors.h — the one error convention of the agent.
 *
 * Every fallible function returns `int`: 0 on success, a negative `trackd_err`
 * otherwise. Library codes (errno, NNG, curl, libyaml) are translated at the
 * module boundary; the original code is logged there, not carried upward.
 * `trackd_strerror()` returns a constant string and never fails.
 */
#ifndef TRACKD_CORE_ERRORS_H
#define TRACKD_CORE_ERRORS_H

typedef enum trackd_err {
	TRACKD_OK = 0,
	TRACKD_ENOMEM = -1,     /* allocation failed */
	TRACKD_EINVAL = -2,     /* bad argument or input breaking a rule */
	TRACKD_EIO = -3,        /* read/write/fsync failed */
	TRACKD_ENOSPC = -4,     /* disk full or disk budget reached */
	TRACKD_ETOOBIG = -5,    /* over a configured limit */
	TRACKD_ECORRUPT = -6,   /* data failed a checksum or framing check */
	TRACKD_ENOENT = -7,     /* no such file, record, or run */
	TRACKD_EEXIST = -8,     /* already exists */
	TRACKD_ECLOSED = -9,    /* object closed or shutting down */
	TRACKD_ETIMEDOUT = -10, /* deadline passed */
	TRACKD_EPERM = -11,     /* not allowed for this peer */
	TRACKD_ESYS = -12,      /* another system or library failure (logged) */
	TRACKD_EAGAIN = -13,    /* nothing available now; try later */
} trackd_err;

const char *trackd_strerror(int err);

/* Translates an errno value to a trackd_err. */
int trackd_err_from_errno(int errnum);

#endif
