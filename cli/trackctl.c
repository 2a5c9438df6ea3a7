/*
 * trackctl — the command line of trackd.
 *
 *   trackctl status [--json]                 ask the running agent for its state
 *   trackctl dump [--state-dir DIR] [--run ID] [--history]
 *                                            print the transaction log as JSON lines
 *
 * `status` talks to the agent over its socket (TRACKD_SOCKET, else the default
 * path). `dump` reads the log files directly and never modifies them, so it works
 * with the agent stopped, and on a copy of a state dir.
 * Exit codes: 0 ok, 1 failure (agent down, unreadable log), 2 usage.
 */
#include "errors.h"
#include "txlog.h"

#include "trackd/v1/limits.h"
#include "trackd/v1/trackd.pb-c.h"

#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *out)
{
	fprintf(out, "Usage:\n"
	             "  trackctl status [--json]\n"
	             "      Ask the running agent for its version, counters and log size.\n"
	             "  trackctl dump [--state-dir DIR] [--run ID] [--history]\n"
	             "      Print every record of the transaction log as one JSON line.\n"
	             "      --history keeps only history rows.\n"
	             "\n"
	             "The agent is found through TRACKD_SOCKET (an NNG URL such as\n"
	             "ipc:///path/trackd.sock), else the default socket path.\n");
}

static void default_socket_url(char *buf, size_t len)
{
	const char *env = getenv("TRACKD_SOCKET");
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (env && *env)
		snprintf(buf, len, "%s", env);
	else if (geteuid() == 0)
		snprintf(buf, len, "ipc:///run/trackd/trackd.sock");
	else if (xdg && *xdg)
		snprintf(buf, len, "ipc://%s/trackd/trackd.sock", xdg);
	else
		snprintf(buf, len, "ipc:///tmp/trackd-%u/trackd.sock", (unsigned)geteuid());
}

static void default_state_dir(char *buf, size_t len)
{
	const char *xdg = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	if (geteuid() == 0)
		snprintf(buf, len, "/var/lib/trackd");
	else if (xdg && *xdg)
		snprintf(buf, len, "%s/trackd", xdg);
	else
		snprintf(buf, len, "%s/.local/state/trackd", home ? home : "");
}

/* ---- status --------------------------------------------------------------- */

static int cmd_status(bool json)
{
	char url[4096];
	default_socket_url(url, sizeof url);
	nng_socket sock;
	int rv;
	nng_msg *msg = NULL;
	if ((rv = nng_req0_open(&sock)) != 0) {
		fprintf(stderr, "trackctl: cannot open a socket: %s\n", nng_strerror(rv));
		return 1;
	}
	nng_socket_set_ms(sock, NNG_OPT_SENDTIMEO, 2000);
	nng_socket_set_ms(sock, NNG_OPT_RECVTIMEO, 2000);
	nng_socket_set_size(sock, NNG_OPT_RECVMAXSZ, 1 << 20);
	if ((rv = nng_dial(sock, url, NULL, 0)) != 0) {
		fprintf(stderr,
		        "trackctl: no agent answers at %s (%s).\n"
		        "Start one with `trackd` (or `systemctl start trackd`), or point\n"
		        "TRACKD_SOCKET at the agent's socket.\n",
		        url, nng_strerror(rv));
		nng_close(sock);
		return 1;
	}
	Trackd__V1__StatusQuery q = TRACKD__V1__STATUS_QUERY__INIT;
	Trackd__V1__Request req = TRACKD__V1__REQUEST__INIT;
	req.has_protocol_version = true;
	req.protocol_version = TRACKD_PROTOCOL_VERSION;
	req.body_case = TRACKD__V1__REQUEST__BODY_STATUS;
	req.status = &q;
	uint8_t buf[32];
	size_t len = trackd__v1__request__pack(&req, buf);
	if ((rv = nng_send(sock, buf, len, 0)) != 0 || (rv = nng_recvmsg(sock, &msg, 0)) != 0) {
		fprintf(stderr, "trackctl: the agent at %s did not answer: %s\n", url,
		        nng_strerror(rv));
		nng_close(sock);
		return 1;
	}
	Trackd__V1__Reply *reply =
		trackd__v1__reply__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
	nng_msg_free(msg);
	nng_close(sock);
	if (!reply || reply->body_case != TRACKD__V1__REPLY__BODY_STATUS) {
		fprintf(stderr, "trackctl: unexpected answer from the agent%s%s\n",
		        reply && reply->body_case == TRACKD__V1__REPLY__BODY_ERROR ? ": " : "",
		        reply && reply->body_case == TRACKD__V1__REPLY__BODY_ERROR
		                ? reply->error->message
		                : "");
		trackd__v1__reply__free_unpacked(reply, NULL);
		return 1;
	}
	const Trackd__V1__StatusReply *s = reply->status;
	if (json) {
		printf("{\"agent\":\"up\",\"socket\":\"%s\",\"version\":\"%s\","
		       "\"records_appended\":%" PRIu64 ",\"batches_acked\":%" PRIu64
		       ",\"batches_duplicate\":%" PRIu64 ",\"requests_rejected\":%" PRIu64
		       ",\"records_quarantined\":%" PRIu64 ",\"log_bytes\":%" PRIu64
		       ",\"last_index\":%" PRIu64 ",\"durable_index\":%" PRIu64 "}\n",
		       url, s->version ? s->version : "", s->records_appended, s->batches_acked,
		       s->batches_duplicate, s->requests_rejected, s->records_quarantined,
		       s->log_bytes, s->last_index, s->durable_index);
	} else {
		printf("agent:               up (trackd %s) at %s\n"
		       "log records:         %" PRIu64 " appended since start, last index %" PRIu64
		       ", durable %" PRIu64 "\n"
		       "log size:            %" PRIu64 " bytes\n"
		       "batches acked:       %" PRIu64 " (%" PRIu64 " duplicates not re-stored)\n"
		       "requests rejected:   %" PRIu64 "\n"
		       "records quarantined: %" PRIu64 "\n",
		       s->version ? s->version : "?", url, s->records_appended, s->last_index,
		       s->durable_index, s->log_bytes, s->batches_acked, s->batches_duplicate,
		       s->requests_rejected, s->records_quarantined);
	}
	trackd__v1__reply__free_unpacked(reply, NULL);
	return 0;
}

/* ---- dump ----------------------------------------------------------------- */

static void json_string(const char *s)
{
	putchar('"');
	for (const unsigned char *p = (const unsigned char *)s; p && *p; p++) {
		switch (*p) {
		case '"': fputs("\\\"", stdout); break;
		case '\\': fputs("\\\\", stdout); break;
		case '\n': fputs("\\n", stdout); break;
		case '\r': fputs("\\r", stdout); break;
		case '\t': fputs("\\t", stdout); break;
		default:
			if (*p < 0x20)
				printf("\\u%04x", *p);
			else
				putchar(*p);
		}
	}
	putchar('"');
}

/* Numbers as W&B writes them: bare NaN / Infinity / -Infinity are allowed. */
static void json_double(double d)
{
	if (isnan(d))
		fputs("NaN", stdout);
	else if (isinf(d))
		fputs(d > 0 ? "Infinity" : "-Infinity", stdout);
	else
		printf("%.17g", d);
}

static void json_items(Trackd__V1__Item **items, size_t n);

static void json_value(const Trackd__V1__Value *v)
{
	switch (v ? v->kind_case : TRACKD__V1__VALUE__KIND__NOT_SET) {
	case TRACKD__V1__VALUE__KIND_DOUBLE_VALUE: json_double(v->double_value); break;
	case TRACKD__V1__VALUE__KIND_INT_VALUE: printf("%" PRId64, v->int_value); break;
	case TRACKD__V1__VALUE__KIND_BOOL_VALUE: fputs(v->bool_value ? "true" : "false", stdout); break;
	case TRACKD__V1__VALUE__KIND_STRING_VALUE: json_string(v->string_value); break;
	case TRACKD__V1__VALUE__KIND_MAP_VALUE:
		json_items(v->map_value->items, v->map_value->n_items);
		break;
	default: fputs("null", stdout); break;
	}
}

static void json_items(Trackd__V1__Item **items, size_t n)
{
	putchar('{');
	for (size_t i = 0; i < n; i++) {
		if (i)
			putchar(',');
		json_string(items[i]->key);
		putchar(':');
		json_value(items[i]->value);
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
};

static void dump_record(uint64_t index, const Trackd__V1__LogEntry *e, uint64_t seq,
                        const Trackd__V1__Record *r)
{
	printf("{\"index\":%" PRIu64 ",\"uid\":%u,\"pid\":%d,\"session\":\"", index, e->peer_uid,
	       e->peer_pid);
	for (size_t i = 0; i < e->batch->session_id.len; i++)
		printf("%02x", e->batch->session_id.data[i]);
	printf("\",\"seq\":%" PRIu64 ",\"run_id\":", seq);
	json_string(r->run_id);
	printf(",\"type\":\"%s\"",
	       r->body_case <= TRACKD__V1__RECORD__BODY_RENAME && record_types[r->body_case]
	               ? record_types[r->body_case]
	               : "unknown");
	switch (r->body_case) {
	case TRACKD__V1__RECORD__BODY_START: {
		const Trackd__V1__RunStart *s = r->start;
		printf(",\"project\":");
		json_string(s->project ? s->project : "");
		printf(",\"host\":");
		json_string(s->host ? s->host : "");
		printf(",\"pid\":%d,\"config\":", s->pid);
		if (s->config)
			json_items(s->config->items, s->config->n_items);
		else
			fputs("{}", stdout);
		break;
	}
	case TRACKD__V1__RECORD__BODY_HISTORY:
		if (r->history->has_step)
			printf(",\"step\":%" PRId64, r->history->step);
		printf(",\"commit\":%s,\"items\":", r->history->commit ? "true" : "false");
		json_items(r->history->items, r->history->n_items);
		break;
	case TRACKD__V1__RECORD__BODY_SUMMARY:
		printf(",\"items\":");
		json_items(r->summary->items, r->summary->n_items);
		break;
	case TRACKD__V1__RECORD__BODY_CONFIG:
		printf(",\"items\":");
		json_items(r->config->items, r->config->n_items);
		break;
	case TRACKD__V1__RECORD__BODY_CONSOLE:
		printf(",\"stream\":\"%s\",\"text\":",
		       r->console->stream == TRACKD__V1__CONSOLE_STREAM__CONSOLE_STDERR ? "stderr"
		                                                                       : "stdout");
		json_string(r->console->text);
		break;
	case TRACKD__V1__RECORD__BODY_EXIT:
		printf(",\"exit_code\":%d,\"reason\":\"%s\"", r->exit->exit_code,
		       r->exit->reason == TRACKD__V1__EXIT_REASON__EXIT_KILLED ? "killed" : "finished");
		break;
	default: break;
	}
	fputs("}\n", stdout);
}

static int cmd_dump(const char *state_dir, const char *run_filter, bool history_only)
{
	char dir[4096];
	if (snprintf(dir, sizeof dir, "%s/log", state_dir) >= (int)sizeof dir) {
		fprintf(stderr, "trackctl: state dir path too long\n");
		return 1;
	}
	txlog_reader *r;
	/* Generous: dump must read whatever the agent's configuration allowed. */
	int rv = txlog_reader_open_dir(dir, 1u << 30, 0, &r);
	if (rv != 0) {
		fprintf(stderr, "trackctl: cannot read the log in %s: %s\n", dir,
		        rv == TRACKD_ENOENT ? "no such directory (is the state dir right?)" : trackd_strerror(rv));
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

int main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "help") == 0) {
		usage(stdout);
		return 0;
	}
	static const struct option longopts[] = {
		{"json", no_argument, NULL, 'j'},
		{"state-dir", required_argument, NULL, 's'},
		{"run", required_argument, NULL, 'r'},
		{"history", no_argument, NULL, 'H'},
		{NULL, 0, NULL, 0},
	};
	bool json = false, history_only = false;
	const char *state_dir = NULL, *run = NULL;
	int c;
	optind = 2;
	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 's': state_dir = optarg; break;
		case 'r': run = optarg; break;
		case 'H': history_only = true; break;
		default: usage(stderr); return 2;
		}
	}
	if (strcmp(cmd, "status") == 0)
		return cmd_status(json);
	if (strcmp(cmd, "dump") == 0) {
		char def[4096];
		if (!state_dir) {
			default_state_dir(def, sizeof def);
			state_dir = def;
		}
		return cmd_dump(state_dir, run, history_only);
	}
	fprintf(stderr, "trackctl: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
