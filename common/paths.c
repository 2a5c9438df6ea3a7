#include "paths.h"

#include "errors.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

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
		if (mkdir(buf, mode) != 0 && errno != EEXIST)
			return trackd_err_from_errno(errno);
		*p = '/';
	}
	if (mkdir(buf, mode) != 0 && errno != EEXIST)
		return trackd_err_from_errno(errno);
	return TRACKD_OK;
}
