#include "sdnotify.h"

#include "errors.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int sdnotify_open(struct sdnotify *n)
{
	n->fd = -1;
	n->path_len = 0;
	const char *e = getenv("NOTIFY_SOCKET");
	if (!e || !*e)
		return TRACKD_OK;
	size_t len = strlen(e);
	if ((e[0] != '/' && e[0] != '@') || len >= sizeof n->path)
		return TRACKD_EINVAL;
	memcpy(n->path, e, len);
	if (e[0] == '@')
		n->path[0] = '\0'; /* abstract namespace: leading NUL, length is explicit */
	n->path_len = (unsigned)len;
	n->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	return n->fd < 0 ? trackd_err_from_errno(errno) : TRACKD_OK;
}

void sdnotify_close(struct sdnotify *n)
{
	if (n->fd >= 0)
		close(n->fd);
	n->fd = -1;
}

int sdnotify_send(struct sdnotify *n, const char *message)
{
	if (n->fd < 0)
		return TRACKD_OK;
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	memcpy(sa.sun_path, n->path, n->path_len);
	socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n->path_len);
	ssize_t rv =
	    sendto(n->fd, message, strlen(message), MSG_NOSIGNAL, (struct sockaddr *)&sa, salen);
	return rv < 0 ? trackd_err_from_errno(errno) : TRACKD_OK;
}

uint64_t sdnotify_watchdog_usec(void)
{
	const char *usec = getenv("WATCHDOG_USEC");
	if (!usec || !*usec)
		return 0;
	const char *pid = getenv("WATCHDOG_PID");
	if (pid && *pid && strtol(pid, NULL, 10) != (long)getpid())
		return 0;
	char *end;
	unsigned long long v = strtoull(usec, &end, 10);
	return *end ? 0 : (uint64_t)v;
}
