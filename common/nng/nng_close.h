/*
 * nng_close.h — closing an NNG socket without hanging.
 *
 * NNG 1.5.2 (Debian 12) can hang in nng_close() forever (nanomsg/nng#1543,
 * #1813; fixed upstream later): seen here in the agent under load, about once
 * in forty restarts. The agent, libtrackd (inside training processes, which
 * must not hang in td_finish) and trackctl close every socket with it.
 * nng_close_bounded
 * runs nng_close on a helper thread and waits at most `timeout_ms`: true when
 * the socket is closed, false when nng_close is still stuck (it may still
 * finish later, on its own thread; the caller must then keep alive whatever
 * NNG's callbacks may still touch). Safe to call from any thread; the helper
 * thread blocks every signal.
 */
#ifndef TRACKD_CORE_NNG_CLOSE_H
#define TRACKD_CORE_NNG_CLOSE_H

#include <nng/nng.h>
#include <stdbool.h>

bool nng_close_bounded(nng_socket sock, int timeout_ms);

#endif
