/*
 * signals.h — handle_signals: SIGTERM and SIGINT end the run as killed, then
 * the process dies of the signal as it would have without us.
 *
 * The handler only writes the signal number to a pipe (async-signal-safe);
 * the signal thread reads it and does the work: it claims the end of the run
 * (unless the application's td_finish already did), ends it with reason
 * KILLED and exit code 128 + signal (waiting a bounded time for the agent; the
 * rest goes to the spool), restores the signal's default action and raises it
 * again. The run is not freed on that path: the process is about to die, and
 * the application may still hold the pointer (its calls get TD_ERR_CLOSED; a
 * td_finish of its own waits for the end).
 *
 * If td_finish claimed the run first, a signal arriving meanwhile is kept and
 * raised (default action) once td_finish is done. A signal that was ignored
 * when td_init ran (nohup, background jobs) stays ignored.
 *
 * Process-wide state: the handler has no argument, so the pipe's write end is
 * file-scope; hence at most one run at a time may handle signals.
 */
#ifndef TRACKD_CLIENT_SIGNALS_H
#define TRACKD_CLIENT_SIGNALS_H

struct td_run;
struct tdi_signals;

/* How long the signal thread waits for the agent before spooling the rest. */
#define TDI_SIGNAL_FINISH_TIMEOUT_MS 5000

/* Installs the handlers and starts the signal thread (every signal blocked).
 * TD_ERR_INVALID if another run handles signals already, TD_ERR_NOMEM, or
 * TD_ERR_TRANSPORT if the pipe or the thread cannot be set up (detail set). */
int tdi_signals_install(struct td_run *run);
/* Restores the previous handlers and joins the signal thread. Not from the
 * signal thread. */
void tdi_signals_uninstall(struct td_run *run);

#endif
