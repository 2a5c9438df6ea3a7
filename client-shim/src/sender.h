/*
 * sender.h — the thread that ships a run's batches to the agent.
 *
 * One request is in flight at a time, always the oldest unacknowledged batch:
 * spooled frames first (spool_file.h: they are older), then the sealed batches
 * in memory (buffer.h), so the agent sees seqs in order. It seals the open
 * batch every flush_interval_ms, when woken because it reached batch_bytes, or
 * at once while the run is finishing. A failed attempt is retried with the
 * same seq (the agent acknowledges a duplicate without storing it again) after
 * a capped backoff; the exchange itself is transport.h's.
 *
 * Threading: the sender takes the run's mu for bookkeeping and never holds it
 * across I/O, so recording calls never wait on the agent. It owns run->sock and
 * run->dialer. Started with every signal blocked. Errors: tdi_sender_start
 * returns TD_ERR_TRANSPORT (detail set) if the socket or the thread cannot be
 * set up; afterwards failures are kept in run->transport_error and
 * run->agent_error for td_finish's report.
 */
#ifndef TRACKD_CLIENT_SENDER_H
#define TRACKD_CLIENT_SENDER_H

struct td_run;

/* A sent batch that got no reply in time is sent again (same seq: the agent
 * acknowledges the duplicate without storing it). An agent that is merely slow
 * would get every batch twice and fall further behind, so each reply timeout
 * doubles the next attempt's wait up to this; any answer resets it. */
#define TDI_REPLY_TIMEOUT_MAX_MS 16000

/* Opens the socket, starts the dialer (never waiting for the agent) and the
 * thread. */
int tdi_sender_start(struct td_run *run);
/* Asks the sender to exit, unblocks its I/O by closing the socket, joins it. */
void tdi_sender_stop(struct td_run *run);

#endif
