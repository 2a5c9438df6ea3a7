/*
 * media.h — media values and saved files (trackd.h's td_media, td_save_file):
 * the W&B object a row holds for each, and the bytes queued for the agent
 * (blob_queue.h).
 *
 * A td_log whose items hold TD_MEDIA goes through tdi_media_log: each media
 * value becomes W&B's object (a TD_MAP), its file (PNG, JPEG, table JSON) is
 * hashed (SHA-256, libcrypto) and queued, and the rewritten row is logged as
 * any other. The step in a media file's name is the row's: the explicit
 * step, else the run's current step as this process knows it (as W&B's
 * client names its media files).
 *
 * Errors: TD_ERR_INVALID (a bad media value: the detail names it), TD_ERR_FULL
 * (the file queue's bound), TD_ERR_NOMEM. Threading: as td_log.
 */
#ifndef TRACKD_CLIENT_MEDIA_H
#define TRACKD_CLIENT_MEDIA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "trackd/trackd.h"

/* Whether items (top level) hold a TD_MEDIA value. */
bool tdi_has_media(const td_item *items, size_t n);

/* td_log for a row with media values. `log` is td_log's own path for the
 * rewritten row. */
int tdi_media_log(td_run *run, const td_item *items, size_t n, int64_t step, bool commit,
                  int (*log)(td_run *, const td_item *, size_t, int64_t, bool));

#endif
