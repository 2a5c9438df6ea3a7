/* cmd_status.c — `trackctl status [--json]`: the agent's version, counters, state
 * dir, clients, active runs, the local sink's backlog and, when the wandb sink
 * is on, its counters (StatusReply) and its runs that are parked or failing
 * (the "wandb" query, a typed WandbStatusReply). The API key is in neither
 * answer. Also, agent or not: the records of the calling user that wait in
 * their spool for this agent (td_spool_pending), with what delivers them. */
#include "cli.h"

#include <trackd/trackd.h>

#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

/* What waits in the caller's spool for the agent at url. */
struct spool_info {
	bool known;
	uint64_t records, bytes;
	char dir[640];
};

static void spool_look(const char *url, struct spool_info *sp)
{
	memset(sp, 0, sizeof *sp);
	sp->known =
	    td_spool_pending(url, NULL, &sp->records, &sp->bytes, sp->dir, sizeof sp->dir) == TD_OK;
}

static void print_spool_json(const struct spool_info *sp)
{
	if (!sp->known) {
		printf(",\"spool\":null");
		return;
	}
	printf(",\"spool\":{\"dir\":");
	json_fput_string(stdout, sp->dir);
	printf(",\"records\":%" PRIu64 ",\"bytes\":%" PRIu64 "}", sp->records, sp->bytes);
}

static void print_spool_text(FILE *f, const struct spool_info *sp)
{
	if (!sp->known || sp->records == 0)
		return;
	fprintf(f,
	        "spool:               %" PRIu64 " records (%" PRIu64
	        " bytes) of yours are waiting in spool %s: run `trackctl spool flush`\n",
	        sp->records, sp->bytes, sp->dir);
}

/* A counter of the wandb answer as this command has always printed it: 0 when
 * unset (or past int64). */
static int64_t num(protobuf_c_boolean has, uint64_t v)
{
	return has && v <= (uint64_t)INT64_MAX ? (int64_t)v : 0;
}

static const char *str(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

/* The runs of the "wandb" answer that need attention: parked, retrying, evicted. */
static bool troubled(const Trackd__V1__WandbStatusReply__Run *run)
{
	const char *st = str(run->state, "");
	return strcmp(st, "parked") == 0 || strcmp(st, "retrying") == 0 ||
	       strcmp(st, "evicted") == 0;
}

/* The counters the StatusReply lacks; all 0 without an answer. */
struct wandb_counters {
	int64_t runs_finished, requests_retried, lines_sent;
};

static struct wandb_counters counters_of(const Trackd__V1__WandbStatusReply *w)
{
	struct wandb_counters k = {0};
	const Trackd__V1__WandbStatusReply__Counters *c = w ? w->counters : NULL;
	if (c) {
		k.runs_finished = num(c->has_runs_finished, c->runs_finished);
		k.requests_retried = num(c->has_requests_retried, c->requests_retried);
		k.lines_sent = num(c->has_lines_sent, c->lines_sent);
	}
	return k;
}

static void print_wandb_json(const Trackd__V1__StatusReply *s,
                             const Trackd__V1__WandbStatusReply *w)
{
	struct wandb_counters k = counters_of(w);
	printf(",\"wandb\":{\"enabled\":true,\"base_url\":");
	json_fput_string(stdout, w ? str(w->base_url, "") : "");
	printf(",\"runs_uploading\":%" PRIu64 ",\"runs_retrying\":%" PRIu64
	       ",\"runs_parked\":%" PRIu64 ",\"runs_finished\":%" PRId64 ",\"requests_ok\":%" PRIu64
	       ",\"requests_failed\":%" PRIu64 ",\"requests_retried\":%" PRId64
	       ",\"lines_sent\":%" PRId64 ",\"lines_skipped\":%" PRIu64 ",\"bytes_sent\":%" PRIu64
	       ",\"backlog\":%" PRIu64 ",\"runs\":[",
	       s->wandb_runs_uploading, s->wandb_runs_retrying, s->wandb_runs_parked,
	       k.runs_finished, s->wandb_requests_ok, s->wandb_requests_failed, k.requests_retried,
	       k.lines_sent, s->wandb_lines_skipped, s->wandb_bytes_sent, s->wandb_backlog);
	for (size_t i = 0; w && i < w->n_runs; i++) {
		const Trackd__V1__WandbStatusReply__Run *r = w->runs[i];
		printf("%s{\"id\":", i ? "," : "");
		json_fput_string(stdout, str(r->id, ""));
		printf(",\"state\":");
		json_fput_string(stdout, str(r->state, ""));
		printf(",\"last_status\":%" PRId64 ",\"attempts\":%" PRId64 ",\"last_error\":",
		       r->has_last_status ? r->last_status : 0,
		       r->has_attempts ? (int64_t)r->attempts : 0);
		json_fput_string(stdout, str(r->last_error, ""));
		printf(",\"run_url\":");
		json_fput_string(stdout, str(r->run_url, ""));
		printf("}");
	}
	printf("]}");
}

static void print_wandb_text(const Trackd__V1__StatusReply *s,
                             const Trackd__V1__WandbStatusReply *w)
{
	struct wandb_counters k = counters_of(w);
	printf("wandb sink:          uploading to %s\n"
	       "  runs:              %" PRIu64 " uploading, %" PRIu64 " retrying, %" PRIu64
	       " parked, %" PRId64 " finished upstream\n"
	       "  requests:          %" PRIu64 " ok, %" PRIu64 " failed (%" PRId64
	       " of them retried)\n"
	       "  lines sent:        %" PRId64 " (%" PRIu64
	       " skipped over the line limit), %" PRIu64 " bytes\n"
	       "  backlog:           %" PRIu64 " log records not yet read\n",
	       w ? str(w->base_url, "?") : "?", s->wandb_runs_uploading, s->wandb_runs_retrying,
	       s->wandb_runs_parked, k.runs_finished, s->wandb_requests_ok,
	       s->wandb_requests_failed, k.requests_retried, k.lines_sent, s->wandb_lines_skipped,
	       s->wandb_bytes_sent, s->wandb_backlog);
	for (size_t i = 0; w && i < w->n_runs; i++) {
		const Trackd__V1__WandbStatusReply__Run *r = w->runs[i];
		if (!troubled(r))
			continue;
		const char *st = str(r->state, "");
		const char *err = str(r->last_error, "");
		printf("  %-8s %s: ", st, str(r->id, "?"));
		/* Errors quote the backend: no control characters to the terminal. */
		for (const char *p = *err ? err : "(no error recorded)"; *p; p++)
			putchar((unsigned char)*p < 0x20 || *p == 0x7f ? '?' : *p);
		if (strcmp(st, "parked") == 0)
			printf(" (trackctl retry %s)", str(r->id, ""));
		putchar('\n');
	}
}

static void print_json(const char *url, const Trackd__V1__StatusReply *s,
                       const Trackd__V1__WandbStatusReply *w, const struct spool_info *sp)
{
	printf("{\"agent\":\"up\",\"socket\":");
	json_fput_string(stdout, url);
	printf(",\"version\":");
	json_fput_string(stdout, s->version ? s->version : "");
	printf(",\"state_dir\":");
	json_fput_string(stdout, s->state_dir ? s->state_dir : "");
	printf(",\"records_appended\":%" PRIu64 ",\"batches_acked\":%" PRIu64
	       ",\"batches_duplicate\":%" PRIu64 ",\"requests_rejected\":%" PRIu64
	       ",\"records_quarantined\":%" PRIu64 ",\"log_bytes\":%" PRIu64
	       ",\"last_index\":%" PRIu64 ",\"durable_index\":%" PRIu64
	       ",\"clients_connected\":%" PRIu64 ",\"runs_active\":%" PRIu64
	       ",\"local_sink_backlog\":%" PRIu64 ",\"budget_refusals\":%" PRIu64
	       ",\"log_max_bytes\":%" PRIu64,
	       s->records_appended, s->batches_acked, s->batches_duplicate, s->requests_rejected,
	       s->records_quarantined, s->log_bytes, s->last_index, s->durable_index,
	       s->clients_connected, s->runs_active, s->local_sink_backlog, s->budget_refusals,
	       s->log_max_bytes);
	if (s->has_wandb_enabled && s->wandb_enabled)
		print_wandb_json(s, w);
	else
		printf(",\"wandb\":{\"enabled\":false}");
	print_spool_json(sp);
	printf("}\n");
}

/* --json keeps its promise when no agent answers: a script reads "down" and
 * why (and what waits in its spool), instead of finding prose on stderr only. */
static void print_down_json(const char *url, const struct agent_error *err,
                            const struct spool_info *sp)
{
	printf("{\"agent\":\"down\",\"socket\":");
	json_fput_string(stdout, url);
	printf(",\"error\":");
	json_fput_string(stdout, err->message);
	print_spool_json(sp);
	printf("}\n");
}

static void print_text(const char *url, const Trackd__V1__StatusReply *s,
                       const Trackd__V1__WandbStatusReply *w, const struct spool_info *sp)
{
	printf("agent:               up (trackd %s) at %s\n", s->version ? s->version : "?", url);
	if (s->state_dir && *s->state_dir)
		printf("state dir:           %s\n", s->state_dir);
	printf("clients connected:   %" PRIu64 "\n"
	       "runs active:         %" PRIu64 "\n"
	       "log records:         %" PRIu64 " appended since start, last index %" PRIu64
	       ", durable %" PRIu64 "\n"
	       "log size:            %" PRIu64 " bytes (budget: %" PRIu64 ", 0 = none; %" PRIu64
	       " appends refused by it)\n"
	       "batches acked:       %" PRIu64 " (%" PRIu64 " duplicates not re-stored)\n"
	       "requests rejected:   %" PRIu64 "\n"
	       "records quarantined: %" PRIu64 "\n"
	       "local sink backlog:  %" PRIu64 " records not yet in the run dirs\n",
	       s->clients_connected, s->runs_active, s->records_appended, s->last_index,
	       s->durable_index, s->log_bytes, s->log_max_bytes, s->budget_refusals,
	       s->batches_acked, s->batches_duplicate, s->requests_rejected, s->records_quarantined,
	       s->local_sink_backlog);
	if (s->has_wandb_enabled && s->wandb_enabled)
		print_wandb_text(s, w);
	else
		printf("wandb sink:          off (sinks.wandb.enabled: false)\n");
	print_spool_text(stdout, sp);
}

int cmd_status(int argc, char **argv)
{
	static const struct option opts[] = {{"json", no_argument, NULL, 'j'}, {0}};
	bool json = false;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c != 'j')
			return cli_bad_option("status", argv);
		json = true;
	}
	if (optind != argc)
		return cli_usage_error("status takes no arguments");
	char url[4096];
	if (agent_default_url(url, sizeof url) != 0)
		return 1;
	/* Looked at first: it matters most when no agent answers. */
	struct spool_info sp;
	spool_look(url, &sp);
	agent_client *agent = NULL;
	Trackd__V1__Reply *reply = NULL;
	const Trackd__V1__StatusReply *s = NULL;
	struct agent_error err;
	int rv = agent_open(url, &agent, &err);
	if (rv == 0)
		rv = agent_status(agent, &reply, &s, &err);
	if (rv != 0) {
		agent_print_error(url, rv, &err, NULL);
		if (json) {
			print_down_json(url, &err, &sp);
		} else {
			print_spool_text(stderr, &sp);
		}
		agent_close(agent);
		return 1;
	}
	/* The wandb sink's runs: asked separately (a refusal leaves them out). */
	struct cli_reply w = {0};
	if (s->has_wandb_enabled && s->wandb_enabled) {
		struct cli_query cq;
		cli_query_wandb(&cq);
		if (cli_query(agent, &cq.q, "the wandb sink", &w) != 0)
			cli_reply_free(&w);
	}
	const Trackd__V1__WandbStatusReply *wr = w.q ? w.q->wandb : NULL;
	if (json)
		print_json(agent_url(agent), s, wr, &sp);
	else
		print_text(agent_url(agent), s, wr, &sp);
	cli_reply_free(&w);
	trackd__v1__reply__free_unpacked(reply, NULL);
	agent_close(agent);
	return 0;
}
