/*
 * console.h — capture_console: stdout and stderr of the whole process (file
 * descriptors 1 and 2, so printf, write(2) and child processes alike) tee'd
 * into the run as ConsoleOutput records.
 *
 * td_init points fds 1 and 2 at the write ends of two pipes and keeps the
 * originals; a reader thread copies everything it reads to the original
 * descriptor (the user still sees it) and records each complete line, stderr
 * lines on the stderr stream (the agent marks them `ERROR `, as W&B does).
 * td_finish flushes stdio, puts the originals back, and the reader drains what
 * the pipes still hold before it exits, so no output written before td_finish
 * is lost. A child process that inherited the pipe and outlives td_finish
 * writes into a pipe nobody reads any more (it gets EPIPE).
 *
 * Records are text: bytes that are not UTF-8 (and NULs) become U+FFFD; a line
 * longer than LINE_MAX_BYTES is recorded in pieces.
 *
 * Threading: the reader thread (every signal blocked) records through
 * td_output, so it takes the run's mu per line; fds 1 and 2 belong to one
 * capturing run at a time. Set up in td_init and torn down by one thread.
 */
#ifndef TRACKD_CLIENT_CONSOLE_H
#define TRACKD_CLIENT_CONSOLE_H

struct td_run;
struct tdi_console;

/* Points fds 1 and 2 at pipes and starts the reader thread (every signal
 * blocked). TD_ERR_INVALID if another run captures already, TD_ERR_NOMEM, or
 * TD_ERR_TRANSPORT if the pipes or the thread cannot be set up (detail set;
 * fds 1 and 2 are as they were). */
int tdi_console_start(struct td_run *run);
/* Restores fds 1 and 2, drains what the pipes hold into the run, joins. */
void tdi_console_stop(struct td_run *run);

#endif
