/*
 * validate.h — checks records and options against the limits in force before
 * anything is buffered, so a record the agent would refuse never takes a batch
 * of good ones down with it, and counts what encoding will need
 * (struct tdi_item_count, encode.h).
 *
 * The limits: limits.h's defaults until an ack tells the agent's own
 * (trackd.proto, Limits), then the smaller of each pair. They live in the run
 * as atomics (struct td_run.limits): learnt by whichever thread got the ack
 * (the sender, a spool replay) and loaded by the recording calls, which
 * validate without the run's lock. Items are borrowed, never kept.
 *
 * Errors: TD_ERR_INVALID with the detail (tdi_fail) naming what broke the rule,
 * prefixed with the caller's `what`.
 */
#ifndef TRACKD_CLIENT_VALIDATE_H
#define TRACKD_CLIENT_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "encode.h" /* struct tdi_item_count, TDI_ENVELOPE_MAX */

struct td_run;

/* The limits records are checked against: limits.h's defaults until an ack
 * tells the agent's own (trackd.proto, Limits), then the smaller of each pair —
 * so a record the agent would refuse is refused by td_log with a clear error,
 * instead of taking its whole batch down with it at the agent. Batches sealed
 * before the first ack assume the defaults. */
struct tdi_limits {
	uint64_t message_bytes, records_per_batch, items_per_record, key_bytes, string_bytes,
	    nesting_depth, list_length;
};
#define TDI_N_LIMITS 7
extern const struct tdi_limits tdi_default_limits;
/* The batch bytes (records, without the envelope) one request may carry. */
static inline size_t tdi_limits_batch_bytes(const struct tdi_limits *l)
{
	return (size_t)l->message_bytes - TDI_ENVELOPE_MAX;
}

/* Checks items against lim; on failure sets the detail (prefixed with `what`)
 * and returns TD_ERR_INVALID. On success *count tells what encoding needs. */
int tdi_check_items(const struct tdi_limits *lim, const char *what, const td_item *items, size_t n,
                    struct tdi_item_count *count);
/* The limits in force for run (see struct tdi_limits). Any thread. */
void tdi_limits_load(struct td_run *run, struct tdi_limits *out);
/* Takes the agent's limits from an ack: the smaller of each and the default;
 * absent or zero fields leave the default. Any thread. */
void tdi_limits_learn(struct td_run *run, const Trackd__V1__Limits *agent);
/* tdi_limits_learn as transport.h's tdi_limits_fn (arg: the run), for
 * tdi_exchange. */
void tdi_limits_learn_hook(void *run, const Trackd__V1__Limits *agent);
/* Checks an optional string option: NULL passes; otherwise valid UTF-8 of at
 * most max bytes (and non-empty if required). */
int tdi_check_text(const char *what, const char *s, size_t max, bool non_empty);

#endif
