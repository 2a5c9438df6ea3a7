/*
 * wandb_env.h — W&B's environment variables as td_init reads them.
 *
 * A C job launched by a scheduler configured for W&B carries WANDB_PROJECT,
 * WANDB_ENTITY, … in its environment; td_init takes them for what the caller
 * left unset, as the Python package does (client-shim/python/trackd/_env.py),
 * so the run lands in the same project. An explicit option always wins.
 *
 *   WANDB_PROJECT, WANDB_ENTITY, WANDB_NAME, WANDB_NOTES, WANDB_RUN_ID,
 *   WANDB_RUN_GROUP, WANDB_JOB_TYPE   for NULL project, entity, display_name,
 *                                     notes, run_id, group, job_type ("" = unset)
 *   WANDB_TAGS       comma-separated, for n_tags == 0: at most TDI_WANDB_MAX_TAGS
 *                    tags in TDI_WANDB_TAGS_MAX_BYTES - 1 bytes, else td_init
 *                    fails (TD_ERR_INVALID, naming WANDB_TAGS)
 *   WANDB_MODE       offline | dryrun → OFFLINE, disabled → DISABLED;
 *   WANDB_DISABLED   true → DISABLED. Both only when mode is ONLINE (the
 *                    default, which an explicit ONLINE cannot be told from):
 *                    the environment may turn uploading down, never up.
 *   WANDB_RESUME     allow | auto → ALLOW, must → MUST; only when resume is
 *                    NEVER (the default, likewise)
 *   WANDB_SILENT     true → print_footer false
 *   WANDB_CONSOLE    off → capture_console false
 * WANDB_DIR does not apply (the agent stores runs); unknown values are ignored.
 *
 * tdi_wandb_env_apply copies *in to *out and fills it; the strings it adds
 * point into the environment or into *env (tags), which must outlive *out's
 * use. No allocation; fails only on WANDB_TAGS over its bounds (tdi_fail).
 * Not thread-safe against setenv (as getenv).
 */
#ifndef TRACKD_CLIENT_WANDB_ENV_H
#define TRACKD_CLIENT_WANDB_ENV_H

#include "trackd/trackd.h"
#include "trackd/v1/limits.h"

#define TDI_WANDB_MAX_TAGS       TRACKD_MAX_TAGS
#define TDI_WANDB_TAGS_MAX_BYTES 4096

struct tdi_wandb_env {
	char tags_buf[TDI_WANDB_TAGS_MAX_BYTES];
	const char *tags[TDI_WANDB_MAX_TAGS];
};

int tdi_wandb_env_apply(const td_run_options *in, td_run_options *out, struct tdi_wandb_env *env);

#endif
