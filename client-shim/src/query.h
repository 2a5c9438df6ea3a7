/*
 * query.h — the cold paths that talk to the agent synchronously: where the
 * agent is (tdi_resolve_url, over autostart.h), queries of the run store
 * (td_query_agent, the resume check in td_init, the run's directory, its W&B
 * upload), and the agent's status. The library reads typed replies only: the
 * JSON of td_query_agent and td_status_agent is written for its callers, never
 * parsed.
 *
 * Each call makes one request on a fresh connection (tdi_agent_call,
 * transport.h) within the caller's timeout. Nothing here touches a run's
 * batches, so none of it runs with a run's lock held (the functions that take
 * a run lock its mu only to read or cache what the agent said). Any thread.
 * Errors: TD_ERR_TRANSPORT when no agent answers, TD_ERR_NOT_FOUND and
 * TD_ERR_REJECTED from the agent's Error replies, with the detail set.
 */
#ifndef TRACKD_CLIENT_QUERY_H
#define TRACKD_CLIENT_QUERY_H

#include <stdbool.h>
#include <stddef.h>

#include "trackd/trackd.h"

#define TDI_DEFAULT_QUERY_TIMEOUT_MS 10000
/* td_init's resume check and the state-dir lookup must not hold up a
 * training script for long when the agent is wedged. */
#define TDI_INIT_QUERY_TIMEOUT_MS 2000
#define TDI_DIR_QUERY_TIMEOUT_MS  1000

/* options.socket_url / given, else $TRACKD_SOCKET, else the agent's default. */
int tdi_resolve_url(const char *given, char *url, size_t len);
/* The same, and whether the address is the private agent's (autostart.h). */
int tdi_resolve_url_kind(const char *given, char *url, size_t len, bool *private_agent);
/* td_query_agent with a resolved url. */
int tdi_agent_query(const char *url, const td_query *q, int timeout_ms, char **json_out);
/* td_init's resume rules (see trackd.h); may set run->known_dir. */
int tdi_check_resume(struct td_run *run, bool explicit_id);
/* What the agent says of the run's upload to W&B (one run query: the typed
 * UploadInfo of its RunReply, from agent/cmd/queries.c). Every field is malloc'd, or NULL
 * when absent: run_url and project_url are NULL until the backend answered. */
struct tdi_upload {
	char *state; /* "disabled", "pending", "uploading", "parked", "done", … */
	char *run_url, *project_url, *last_error;
	char *display_name; /* the run's, as the agent knows it */
};
int tdi_upload_info(struct td_run *run, int timeout_ms, struct tdi_upload *out);
void tdi_upload_fini(struct tdi_upload *u);
/* Whether the run's agent has an upload sink (its status says wandb_enabled);
 * false when it does not answer. */
bool tdi_agent_uploads(struct td_run *run, int timeout_ms);

#endif
