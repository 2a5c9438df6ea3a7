/* cmd_status.c — `trackctl status [--json]`: the agent's version, counters, state
 * dir, clients, active runs and the local sink's backlog. */
#include "cli.h"

#include <getopt.h>
#include <inttypes.h>

static void print_json(const char *url, const Trackd__V1__StatusReply *s)
{
	printf("{\"agent\":\"up\",\"socket\":");
	cli_json_string(stdout, url);
	printf(",\"version\":");
	cli_json_string(stdout, s->version ? s->version : "");
	printf(",\"state_dir\":");
	cli_json_string(stdout, s->state_dir ? s->state_dir : "");
	printf(",\"records_appended\":%" PRIu64 ",\"batches_acked\":%" PRIu64
	       ",\"batches_duplicate\":%" PRIu64 ",\"requests_rejected\":%" PRIu64
	       ",\"records_quarantined\":%" PRIu64 ",\"log_bytes\":%" PRIu64
	       ",\"last_index\":%" PRIu64 ",\"durable_index\":%" PRIu64
	       ",\"clients_connected\":%" PRIu64 ",\"runs_active\":%" PRIu64
	       ",\"local_sink_backlog\":%" PRIu64 "}\n",
	       s->records_appended, s->batches_acked, s->batches_duplicate, s->requests_rejected,
	       s->records_quarantined, s->log_bytes, s->last_index, s->durable_index,
	       s->clients_connected, s->runs_active, s->local_sink_backlog);
}

static void print_text(const char *url, const Trackd__V1__StatusReply *s)
{
	printf("agent:               up (trackd %s) at %s\n", s->version ? s->version : "?", url);
	if (s->state_dir && *s->state_dir)
		printf("state dir:           %s\n", s->state_dir);
	printf("clients connected:   %" PRIu64 "\n"
	       "runs active:         %" PRIu64 "\n"
	       "log records:         %" PRIu64 " appended since start, last index %" PRIu64
	       ", durable %" PRIu64 "\n"
	       "log size:            %" PRIu64 " bytes\n"
	       "batches acked:       %" PRIu64 " (%" PRIu64 " duplicates not re-stored)\n"
	       "requests rejected:   %" PRIu64 "\n"
	       "records quarantined: %" PRIu64 "\n"
	       "local sink backlog:  %" PRIu64 " records not yet in the run dirs\n",
	       s->clients_connected, s->runs_active, s->records_appended, s->last_index,
	       s->durable_index, s->log_bytes, s->batches_acked, s->batches_duplicate,
	       s->requests_rejected, s->records_quarantined, s->local_sink_backlog);
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
	agent_client *agent;
	if (cli_connect(&agent) != 0)
		return 1;
	Trackd__V1__Reply *reply;
	const Trackd__V1__StatusReply *s;
	struct agent_error err;
	int rv = agent_status(agent, &reply, &s, &err);
	if (rv != 0) {
		agent_print_error(agent_url(agent), rv, &err, NULL);
		agent_close(agent);
		return 1;
	}
	if (json)
		print_json(agent_url(agent), s);
	else
		print_text(agent_url(agent), s);
	trackd__v1__reply__free_unpacked(reply, NULL);
	agent_close(agent);
	return 0;
}
