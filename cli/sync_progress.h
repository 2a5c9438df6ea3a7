/*
 * sync_progress.h — the arithmetic and text of `trackctl sync`'s progress: the
 * single updating line drawn on a terminal, the byte sizes and the rate/ETA
 * estimate. Pure functions of their arguments (unit-tested in
 * sync_progress_test.c); the command (cmd_sync.c) asks the agent and draws.
 */
#ifndef TRACKD_CLI_SYNC_PROGRESS_H
#define TRACKD_CLI_SYNC_PROGRESS_H

#include <stddef.h>
#include <stdint.h>

struct sync_totals {
	size_t runs_done, runs_total;
	uint64_t rows, rows_total;
	uint64_t bytes, bytes_total;
	double rate; /* bytes per second, smoothed; <= 0: not known yet */
};

/* "1023 B", "1.5 KiB", "12.0 MiB", "3.25 GiB" (at most 10 characters). */
void sync_format_bytes(uint64_t n, char *out, size_t len);

/* Seconds left for `remaining` bytes at `rate` bytes/s; < 0 when unknown. */
double sync_eta(uint64_t remaining, double rate);

/* A rate smoothed over about `tau` seconds: `delta` bytes in `dt` seconds move
 * `prev` towards delta/dt (the first sample, prev <= 0, is taken as it is). */
double sync_rate_update(double prev, uint64_t delta, double dt, double tau);

/* The progress line, at most `width` columns (and len - 1 bytes): a bar, then
 * "R/T runs  r/t rows  b/t MiB  X/s  ETA …" — the parts that do not fit are left
 * out from the right, the bar shrinks first (and goes under 10 columns). */
void sync_progress_line(const struct sync_totals *t, int width, char *out, size_t len);

#endif
