/*
 * sdnotify.h — systemd's service notification protocol, without libsystemd.
 *
 * The protocol is one datagram per message ("READY=1", "WATCHDOG=1",
 * "STOPPING=1", "STATUS=…", newline-separated assignments) sent to the
 * AF_UNIX datagram socket named by $NOTIFY_SOCKET (a path, or "@name" for the
 * abstract namespace). It is small and stable enough that linking libsystemd
 * for it is not worth the dependency (the agent also runs without systemd:
 * `trackd --user`, containers, tests).
 *
 * When NOTIFY_SOCKET is unset every call is a successful no-op. Thread-safe
 * after sdnotify_open (sendto on one socket).
 */
#ifndef TRACKD_CORE_SDNOTIFY_H
#define TRACKD_CORE_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>

struct sdnotify {
	int fd; /* -1 when there is no notify socket */
	char path[108];
	unsigned path_len; /* bytes of sockaddr_un.sun_path used (abstract names count) */
};

/* Reads NOTIFY_SOCKET. Returns 0 (also when unset) or TRACKD_EINVAL for a
 * malformed value. */
int sdnotify_open(struct sdnotify *n);
void sdnotify_close(struct sdnotify *n);

/* Sends one message; 0 or a trackd_err (the failure is not fatal to the caller:
 * systemd just does not hear it). */
int sdnotify_send(struct sdnotify *n, const char *message);

/* The watchdog interval systemd expects pings within (WATCHDOG_USEC, honoured
 * only when WATCHDOG_PID is unset or ours), 0 if none. */
uint64_t sdnotify_watchdog_usec(void);

#endif
