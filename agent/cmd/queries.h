/*
 * queries.h — the agent's one query router: a typed Query (trackd.proto) goes,
 * by its request case, through one table to the handler of the stage that owns
 * the answer (the local run store, the wandb sink, or both in turn).
 *
 * Threading: called on ingest's query thread; the handlers take their stage's
 * own locks (history is read outside the local sink's lock). The stages are
 * borrowed for the call; a NULL stage answers ERROR_UNAVAILABLE for the
 * requests that need it.
 * Errors: 0 with the typed answer in *reply (a QueryReply of the default
 * allocator, malloc'd throughout: see ingest_options.query, which packs and
 * frees it; it may be set on failure too), or a TRACKD__V1__ERROR_CODE__* (> 0)
 * with a message in err; ERROR_TOO_LARGE when the answer would take more than
 * `max_bytes` packed. A Query from a client before typed queries (a string
 * `kind` and no request) gets ERROR_UNSUPPORTED_VERSION.
 */
#ifndef TRACKD_AGENT_QUERIES_H
#define TRACKD_AGENT_QUERIES_H

#include "local_sink.h"
#include "wandb_sink.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct query_stages {
	local_sink *local;    /* NULL while the agent starts */
	wandb_sink *wandb;    /* NULL when sinks.wandb is off */
	artifacts *artifacts; /* the artifact store (NULL while the agent starts) */
	/* Appends an agent-made record through ingest (artifact changes). */
	int (*submit)(void *arg, const Trackd__V1__Record *rec);
	void *submit_arg;
};

int queries_answer(const struct query_stages *st, const uint8_t *query, size_t len, uint32_t uid,
                   bool admin, size_t max_bytes, Trackd__V1__QueryReply **reply, char *err,
                   size_t errlen);

#endif
