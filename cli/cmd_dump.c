/* cmd_dump.c — `trackctl dump [--state-dir DIR] [--run ID] [--history] [--after N]`:
 * every record of the transaction log (after index N) as one JSON line. It reads the log files
 * directly and never modifies them (read-only opens; no recovery, truncation or quarantine: that is
 * the agent's), so it works beside a running agent, with the agent stopped and on a copy of a state
 * dir (the README demo and the end-to-end tests read the log this way). Without --state-dir, the
 * log is that of the agent the other commands use. Only the store's owner and root may: see
 * dump_log. */
#include "cli.h"

#include "errors.h"
#include "json_write.h"
#include "txlog.h"

#include "trackd/v1/trackd.pb-c.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* The state dir of the agent every other command talks to (TRACKD_SOCKET, else
 * the machine's or this user's agent): a guessed path could be another agent's
 * log, or none at all. */
static int agent_state_dir(char *buf, size_t len)
{
	agent_client *agent;
	if (cli_connect(&agent) != 0) {
		fprintf(stderr,
		        "trackctl: dump: give --state-dir DIR to read a stopped agent's log\n");
		return 1;
	}
	Trackd__V1__Reply *reply;
	const Trackd__V1__StatusReply *s;
	struct agent_error err;
	int rv = agent_status(agent, &reply, &s, &err);
	if (rv != 0) {
		agent_print_error(agent_url(agent), rv, &err, NULL);
		agent_close(agent);
		return 1;
	}
	int code = 0;
	if (!s->state_dir || !*s->state_dir || snprintf(buf, len, "%s", s->state_dir) >= (int)len) {
		fprintf(stderr,
		        "trackctl: dump: the agent at %s names no usable state dir; give "
		        "--state-dir DIR\n",
		        agent_url(agent));
		code = 1;
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	agent_close(agent);
	return code;
}

/* Numbers as W&B writes them: bare NaN / Infinity / -Infinity are allowed. */
static void dump_double(double d)
{
	if (isnan(d))
		fputs("NaN", stdout);
	else if (isinf(d))
		fputs(d > 0 ? "Infinity" : "-Infinity", stdout);
	else
		printf("%.17g", d);
}

static void dump_items(Trackd__V1__Item **items, size_t n);

static void dump_value(const Trackd__V1__Value *v)
{
	switch (v ? v->kind_case : TRACKD__V1__VALUE__KIND__NOT_SET) {
	case TRACKD__V1__VALUE__KIND_DOUBLE_VALUE: dump_double(v->double_value); break;
	case TRACKD__V1__VALUE__KIND_INT_VALUE: printf("%" PRId64, v->int_value); break;
	case TRACKD__V1__VALUE__KIND_BOOL_VALUE:
		fputs(v->bool_value ? "true" : "false", stdout);
		break;
	case TRACKD__V1__VALUE__KIND_STRING_VALUE: json_fput_string(stdout, v->string_value); break;
	case TRACKD__V1__VALUE__KIND_MAP_VALUE:
		dump_items(v->map_value->items, v->map_value->n_items);
		break;
	case TRACKD__V1__VALUE__KIND_LIST_VALUE:
		putchar('[');
		for (size_t i = 0; i < v->list_value->n_values; i++) {
			if (i)
				putchar(',');
			dump_value(v->list_value->values[i]);
		}
		putchar(']');
		break;
	default: fputs("null", stdout); break; /* null_value, or none */
	}
}

static void dump_items(Trackd__V1__Item **items, size_t n)
{
	putchar('{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		json_fput_string(stdout, items[i]->key);
		putchar(':');
		dump_value(items[i]->value);
	}
	putchar('}');
}

static const char *const record_types[] = {
    [TRACKD__V1__RECORD__BODY_START] = "start",
    [TRACKD__V1__RECORD__BODY_HISTORY] = "history",
    [TRACKD__V1__RECORD__BODY_SUMMARY] = "summary",
    [TRACKD__V1__RECORD__BODY_CONFIG] = "config",
    [TRACKD__V1__RECORD__BODY_CONSOLE] = "console",
    [TRACKD__V1__RECORD__BODY_EXIT] = "exit",
    [TRACKD__V1__RECORD__BODY_DEFINE_METRIC] = "define_metric",
    [TRACKD__V1__RECORD__BODY_RENAME] = "rename",
    [TRACKD__V1__RECORD__BODY_ENVIRONMENT] = "environment",
    [TRACKD__V1__RECORD__BODY_STATS] = "stats",
    [TRACKD__V1__RECORD__BODY_METADATA] = "metadata",
};

static void dump_record(uint64_t index, const Trackd__V1__LogEntry *e, uint64_t seq,
                        const Trackd__V1__Record *r)
{
	printf("{\"index\":%" PRIu64 ",\"uid\":%u,\"pid\":%d,\"session\":\"", index, e->peer_uid,
	       e->peer_pid);
	for (size_t i = 0; i < e->batch->session_id.len; i++)
		printf("%02x", e->batch->session_id.data[i]);
	printf("\",\"seq\":%" PRIu64 ",\"run_id\":", seq);
	json_fput_string(stdout, r->run_id);
	printf(",\"type\":\"%s\"",
	       (size_t)r->body_case < sizeof record_types / sizeof record_types[0] &&
	               record_types[r->body_case]
	           ? record_types[r->body_case]
	           : "unknown");
	switch (r->body_case) {
	case TRACKD__V1__RECORD__BODY_START: {
		const Trackd__V1__RunStart *s = r->start;
		printf(",\"project\":");
		json_fput_string(stdout, s->project ? s->project : "");
		printf(",\"host\":");
		json_fput_string(stdout, s->host ? s->host : "");
		printf(",\"pid\":%d,\"config\":", s->pid);
		if (s->config)
			dump_items(s->config->items, s->config->n_items);
		else
			fputs("{}", stdout);
		break;
	}
	case TRACKD__V1__RECORD__BODY_HISTORY:
		if (r->history->has_step)
			printf(",\"step\":%" PRId64, r->history->step);
		printf(",\"commit\":%s,\"items\":", r->history->commit ? "true" : "false");
		dump_items(r->history->items, r->history->n_items);
		break;
	case TRACKD__V1__RECORD__BODY_SUMMARY:
		printf(",\"items\":");
		dump_items(r->summary->items, r->summary->n_items);
		break;
	case TRACKD__V1__RECORD__BODY_CONFIG:
		printf(",\"items\":");
		dump_items(r->config->items, r->config->n_items);
		break;
	case TRACKD__V1__RECORD__BODY_CONSOLE:
		printf(",\"stream\":\"%s\",\"text\":",
		       r->console->stream == TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR ? "stderr"
		                                                                        : "stdout");
		json_fput_string(stdout, r->console->text);
		break;
	case TRACKD__V1__RECORD__BODY_EXIT:
		printf(",\"exit_code\":%d,\"reason\":\"%s\"", r->exit->exit_code,
		       r->exit->reason == TRACKD__V1__EXIT_REASON__EXIT_KILLED    ? "killed"
		       : r->exit->reason == TRACKD__V1__EXIT_REASON__EXIT_CRASHED ? "crashed"
		                                                                  : "finished");
		break;
	default: break;
	}
	fputs("}\n", stdout);
}

static int dump_log(const char *state_dir, const char *run_filter, bool history_only,
                    uint64_t after)
{
	char dir[4096];
	if (snprintf(dir, sizeof dir, "%s/log", state_dir) >= (int)sizeof dir) {
		fprintf(stderr, "trackctl: state dir path too long\n");
		return 1;
	}
	/* The store holds every user's runs; the agent's uid check is the only
	 * read path for users. Its files are private to the agent's user anyway
	 * (older stores may not be yet: the agent tightens them at start), so
	 * dump says so plainly instead of reading what a mode still lets through. */
	struct stat st;
	if (stat(state_dir, &st) == 0 && st.st_uid != geteuid() && geteuid() != 0) {
		fprintf(stderr,
		        "trackctl: %s belongs to uid %lu: dump reads a store directly, which only "
		        "its owner (the agent's user) and root may; read your runs through the "
		        "agent (trackctl runs, show, history)\n",
		        state_dir, (unsigned long)st.st_uid);
		return 1;
	}
	txlog_reader *r;
	/* Generous: dump must read whatever the agent's configuration allowed. */
	int rv = txlog_reader_open_dir(dir, 1u << 30, after, &r);
	if (rv != 0) {
		fprintf(stderr, "trackctl: cannot read the log in %s: %s\n", dir,
		        rv == TRACKD_ENOENT  ? "no such directory (is the state dir right?)"
		        : rv == TRACKD_EPERM ? "permission denied (a store is readable by its "
		                               "agent's user and root only; read your runs "
		                               "through the agent: trackctl runs, show, history)"
		                             : trackd_strerror(rv));
		return 1;
	}
	uint64_t index, damaged = 0;
	const void *data;
	size_t len;
	for (;;) {
		rv = txlog_reader_next(r, &index, &data, &len);
		if (rv == TRACKD_ECORRUPT) {
			damaged++;
			continue;
		}
		if (rv != 0)
			break;
		Trackd__V1__LogEntry *e = trackd__v1__log_entry__unpack(NULL, len, data);
		if (!e || !e->batch) {
			fprintf(stderr, "trackctl: record %" PRIu64 " does not decode; skipped\n",
			        index);
			trackd__v1__log_entry__free_unpacked(e, NULL);
			continue;
		}
		for (size_t i = 0; i < e->batch->n_records; i++) {
			const Trackd__V1__Record *rec = e->batch->records[i];
			if (run_filter && strcmp(rec->run_id, run_filter) != 0)
				continue;
			if (history_only && rec->body_case != TRACKD__V1__RECORD__BODY_HISTORY)
				continue;
			dump_record(index, e, e->batch->seq, rec);
		}
		trackd__v1__log_entry__free_unpacked(e, NULL);
	}
	txlog_reader_close(r);
	if (damaged)
		fprintf(stderr, "trackctl: %" PRIu64 " damaged spans skipped\n", damaged);
	return rv == TRACKD_EAGAIN ? 0 : 1; /* EAGAIN: the end of the log */
}

int cmd_dump(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"state-dir", required_argument, NULL, 's'},
	    {"run", required_argument, NULL, 'r'},
	    {"history", no_argument, NULL, 'H'},
	    {"after", required_argument, NULL, 'a'},
	    {0},
	};
	const char *state_dir = NULL, *run = NULL;
	bool history_only = false;
	uint64_t after = 0;
	char *end;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 's': state_dir = optarg; break;
		case 'r': run = optarg; break;
		case 'H': history_only = true; break;
		case 'a':
			errno = 0;
			after = strtoull(optarg, &end, 10);
			if (errno || end == optarg || *end || optarg[0] == '-')
				return cli_usage_error(
				    "dump --after takes a record index (0 or more)");
			break;
		default: return cli_bad_option("dump", argv);
		}
	}
	if (optind != argc)
		return cli_usage_error("dump takes no arguments (use --run ID)");
	char from_agent[4096];
	if (!state_dir) {
		if (agent_state_dir(from_agent, sizeof from_agent) != 0)
			return 1;
		state_dir = from_agent;
	}
	return dump_log(state_dir, run, history_only, after);
}
