/*
 * mirror.h — what this process logged, kept small, for the footer printed at
 * td_finish (and by td_footer): a bounded sample of every top-level numeric
 * history key and a mirror of the run summary, following the agent's summary
 * rules (agent/runs/run.h) so the footer shows what the agent stores
 * (mirror.c tells how).
 *
 * Fed by the recording calls after a record was buffered; rendered through the
 * footer renderer (client-shim/footer). Threading: everything runs with the
 * run's mu held. Memory: bounded (MIRROR_MAX_KEYS keys, a sample per numeric
 * key); string values are copied, items are not kept. Errors: tdi_mirror_new
 * and tdi_mirror_render_locked return TD_ERR_NOMEM (detail set); the feeding
 * functions cannot fail (what does not fit is counted and ignored).
 */
#ifndef TRACKD_CLIENT_MIRROR_H
#define TRACKD_CLIENT_MIRROR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trackd/trackd.h"

struct tdi_mirror;

int tdi_mirror_new(struct td_run *run);
void tdi_mirror_free(struct tdi_mirror *m);
/* One accepted history row at `step` (before td_log moves the step). Uses the
 * key lengths tdi_items_record_measure left in run->scratch for this row. */
void tdi_mirror_row_locked(struct td_run *run, const td_item *items, size_t n, int64_t step,
                           bool commit);
void tdi_mirror_summary_locked(struct td_run *run, const td_item *items, size_t n);
void tdi_mirror_define_locked(struct td_run *run, const char *name, td_metric_summary summary);
/* The pending row counts as committed (finish, or a larger step). */
void tdi_mirror_commit_locked(struct td_run *run, int64_t step);
/* Renders history and summary plus trailer lines into *out (malloc'd). */
int tdi_mirror_render_locked(struct td_run *run, const char *const *trailer, size_t n_trailer,
                             char **out, size_t *out_len);

#endif
