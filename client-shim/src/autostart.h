/*
 * autostart.h — where a client finds its agent, and starting the user's private
 * agent (`trackd --user`, agent/cmd/user_mode.h) when none answers.
 *
 * Lookup (tdi_agent_locate), first match wins:
 *   1. an explicit address: the caller's (options.socket_url, --socket) or
 *      $TRACKD_SOCKET. Used as given, even if nothing answers there: no other
 *      agent is tried and none is started.
 *   2. the machine's agent, $TRACKD_SYSTEM_SOCKET or ipc:///run/trackd/trackd.sock,
 *      if it answers a ping (members of group trackd reach it; for others the
 *      socket's 0660 refuses the connection at once).
 *   3. the private agent: ipc://$XDG_RUNTIME_DIR/trackd/trackd.sock, or
 *      ipc:///tmp/trackd-<uid>/trackd.sock without XDG_RUNTIME_DIR (the agent's
 *      own default: config.h). If it does not answer, it is started (below)
 *      and waited for, up to TDI_AUTOSTART_WAIT_MS. If it cannot be started the
 *      address is still returned: the client buffers and spools for it, and
 *      delivers when an agent answers there.
 *   The private socket's directory, if it exists, must be a directory of this
 *   uid that no one else may write to; otherwise the lookup fails (whoever owns
 *   it could stand in for the agent and receive the user's runs).
 *
 * Starting (tdi_agent_ensure): unless $TRACKD_NO_AUTOSTART is set (to anything
 * but "" or "0"), runs `<agent> --user --listen <private url>` fully detached:
 * double fork with setsid (not our child, no controlling terminal: survives
 * the training process and its terminal's hangup), stdin /dev/null,
 * stdout/stderr appended to <state dir>/trackd.log (0600; the previous log is
 * kept as trackd.log.1 once it passes 1 MiB), every other descriptor closed
 * (it never holds the training process's pipes or files open), signal mask
 * and handlers reset but SIGHUP ignored, cwd /. <agent> is $TRACKD_AGENT_BIN, else `trackd` on
 * PATH, else next to the code's own file (../bin, ../../bin for a multiarch
 * lib dir, ../libexec/trackd), else /usr/bin/trackd. A failure to execute is
 * reported at once (through a close-on-exec pipe), not by the timeout.
 * Several processes starting agents at once is safe: the agents race for a
 * lock and all but one exit (user_mode.h). Within one process a start is
 * attempted at most every TDI_AUTOSTART_RETRY_MS, and after a failure not again
 * for TDI_AUTOSTART_BACKOFF_MS, so a broken installation costs a training
 * process one wait, not one per call.
 *
 * Self-contained (libc and NNG only), so trackctl compiles it in too.
 * Thread-safe; the messages written into `why` are for people.
 */
#ifndef TRACKD_CLIENT_AUTOSTART_H
#define TRACKD_CLIENT_AUTOSTART_H

#include <stdbool.h>
#include <stddef.h>

#define TDI_SYSTEM_SOCKET_URL    "ipc:///run/trackd/trackd.sock"
#define TDI_AUTOSTART_WAIT_MS    5000
#define TDI_AUTOSTART_RETRY_MS   5000
#define TDI_AUTOSTART_BACKOFF_MS 30000
#define TDI_PROBE_TIMEOUT_MS     1000

enum tdi_agent_kind { TDI_AGENT_EXPLICIT, TDI_AGENT_SYSTEM, TDI_AGENT_PRIVATE };

struct tdi_agent_where {
	enum tdi_agent_kind kind;
	bool answers;      /* an agent answered a ping at the returned address */
	bool started;      /* this call started it */
	bool start_failed; /* a start was due and failed (not: opted out) */
	char why[512];     /* why no agent answers, when it does not */
};

/* Writes the agent's address into url (see the lookup above); 0, or -1 with
 * w->why set (the address does not fit, or the private directory is unsafe).
 * `given` may be NULL or "". With `autostart` false, nothing is started. */
int tdi_agent_locate(const char *given, bool autostart, char *url, size_t len,
                     struct tdi_agent_where *w);

/* Whether an agent answers a ping at url within timeout_ms. */
bool tdi_agent_probe(const char *url, int timeout_ms);

/* Whether no agent can be listening at url now: an ipc:// socket file that does
 * not exist, or refuses a connection (a socket left by a killed agent). One
 * non-blocking connect, no waiting; false when unsure (other transports, a
 * full backlog, anything else). */
bool tdi_agent_absent(const char *url);

/* Whether tdi_agent_ensure could start an agent now: not opted out, and not in
 * the back-off after a failed start. */
bool tdi_agent_can_start(void);

/* Makes sure the private agent at url answers: true at once if it does; else
 * starts it (see above, unless opted out or throttled) and waits up to
 * wait_ms for it (0: does not wait; false is returned then). */
bool tdi_agent_ensure(const char *url, int wait_ms, char *why, size_t why_len);

#endif
