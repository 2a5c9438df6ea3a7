#include "paths.h"

#include "errors.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

/* The umask does not apply: a caller asking for 0755 (a socket's directory
 * others must traverse) gets it from an agent whose umask is 077. */
static int mkdir_exact(const char *path, unsigned mode)
{
	if (mkdir(path, mode) != 0)
		return errno == EEXIST ? TRACKD_OK : trackd_err_from_errno(errno);
	if (chmod(path, mode) != 0)
		return trackd_err_from_errno(errno);
	return TRACKD_OK;
}

int mkdir_parents(const char *path, unsigned mode)
{
	char buf[4096];
	size_t n = strlen(path);
	if (n == 0 || n >= sizeof buf) {
		errno = n ? ENAMETOOLONG : EINVAL;
		return TRACKD_EINVAL;
	}
	memcpy(buf, path, n + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		int rv = mkdir_exact(buf, mode);
		if (rv != TRACKD_OK)
			return rv;
		*p = '/';
	}
	return mkdir_exact(buf, mode);
}
