/* sdnotify_test — messages reach a real datagram socket named by NOTIFY_SOCKET,
 * by path and in the abstract namespace; an unset variable is a no-op; the
 * watchdog interval honours WATCHDOG_PID. */
#include "sdnotify.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "check.h"

static int listen_dgram(const char *name, bool abstract)
{
	int fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t len = strlen(name);
	memcpy(sa.sun_path + (abstract ? 1 : 0), name, len);
	socklen_t salen =
	    (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + (abstract ? 1 : 0));
	if (bind(fd, (struct sockaddr *)&sa, salen) != 0) {
		perror("bind");
		exit(1);
	}
	struct timeval tv = {.tv_sec = 2};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
	return fd;
}

static void expect_message(int fd, const char *want)
{
	char buf[256];
	ssize_t n = recv(fd, buf, sizeof buf - 1, 0);
	buf[n > 0 ? n : 0] = '\0';
	CHECK(n > 0 && strcmp(buf, want) == 0, "got '%s' want '%s'", buf, want);
}

int main(void)
{
	struct sdnotify n;
	unsetenv("NOTIFY_SOCKET");
	CHECK(sdnotify_open(&n) == 0 && n.fd == -1, "unset: no socket");
	CHECK(sdnotify_send(&n, "READY=1") == 0, "unset: send is a no-op");

	char path[] = "/tmp/sdnotify_test.XXXXXX";
	CHECK(mkdtemp(path) != NULL, "mkdtemp");
	char sock[256];
	snprintf(sock, sizeof sock, "%s/notify", path);
	int fd = listen_dgram(sock, false);
	setenv("NOTIFY_SOCKET", sock, 1);
	CHECK(sdnotify_open(&n) == 0 && n.fd >= 0, "path socket opened");
	sdnotify_send(&n, "READY=1");
	expect_message(fd, "READY=1");
	sdnotify_send(&n, "STATUS=ingesting\nWATCHDOG=1");
	expect_message(fd, "STATUS=ingesting\nWATCHDOG=1");
	sdnotify_close(&n);
	close(fd);
	unlink(sock);
	rmdir(path);

	char abstract[64];
	snprintf(abstract, sizeof abstract, "trackd-sdnotify-test-%d", (int)getpid());
	fd = listen_dgram(abstract, true);
	char env[80];
	snprintf(env, sizeof env, "@%s", abstract);
	setenv("NOTIFY_SOCKET", env, 1);
	CHECK(sdnotify_open(&n) == 0, "abstract socket opened");
	sdnotify_send(&n, "STOPPING=1");
	expect_message(fd, "STOPPING=1");
	sdnotify_close(&n);
	close(fd);

	setenv("NOTIFY_SOCKET", "relative/path", 1);
	CHECK(sdnotify_open(&n) != 0, "a relative path is refused");

	setenv("WATCHDOG_USEC", "5000000", 1);
	unsetenv("WATCHDOG_PID");
	CHECK(sdnotify_watchdog_usec() == 5000000, "watchdog interval");
	setenv("WATCHDOG_PID", "1", 1);
	CHECK(sdnotify_watchdog_usec() == 0, "another process's watchdog is not ours");
	char pid[32];
	snprintf(pid, sizeof pid, "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	CHECK(sdnotify_watchdog_usec() == 5000000, "our pid");
	return CHECK_SUMMARY("sdnotify_test");
}
