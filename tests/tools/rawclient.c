/*
 * rawclient — sends arbitrary bytes to the agent as one request and prints the
 * reply as one JSON line. Tests use it to act as a rogue or hand-crafted client.
 *
 *   rawclient [--as UID:GID] URL FILE [FILE…]
 *       each FILE's bytes are one request, in order, over one connection;
 *       --as acts as another user (setresuid; the tests run as root)
 * Output per request: {"ack":{"seq":N,"duplicate":B}} | {"error":{"code":N,
 * "retryable":B,"message":"…"}} | {"status":{…}} | {"query":<the agent's JSON>}
 * | {"no_reply":"reason"}
 */
#include "trackd/v1/pb_json.h"
#include "trackd/v1/trackd.pb-c.h"

#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <grp.h>
#include <unistd.h>

static unsigned char *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return NULL;
	fseek(f, 0, SEEK_END);
	long n = ftell(f);
	fseek(f, 0, SEEK_SET);
	unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
	*len = fread(buf, 1, (size_t)n, f);
	fclose(f);
	return buf;
}

int main(int argc, char **argv)
{
	/* --as UID:GID: act as another user (the suite runs as root). The files are
	 * read first, while still root, from wherever the test wrote them. */
	const char *as = NULL;
	if (argc > 2 && strcmp(argv[1], "--as") == 0) {
		as = argv[2];
		argv += 2;
		argc -= 2;
	}
	if (argc < 3) {
		fprintf(stderr, "usage: rawclient [--as UID:GID] URL FILE [FILE...]\n");
		return 2;
	}
	int n = argc - 2;
	unsigned char **payloads = calloc((size_t)n, sizeof *payloads);
	size_t *lens = calloc((size_t)n, sizeof *lens);
	for (int i = 0; i < n; i++) {
		payloads[i] = read_file(argv[i + 2], &lens[i]);
		if (!payloads[i]) {
			fprintf(stderr, "rawclient: cannot read %s\n", argv[i + 2]);
			return 1;
		}
	}
	if (as) {
		unsigned uid, gid;
		if (sscanf(as, "%u:%u", &uid, &gid) != 2 || setgroups(0, NULL) != 0 ||
		    setresgid(gid, gid, gid) != 0 || setresuid(uid, uid, uid) != 0) {
			perror("rawclient: --as");
			return 2;
		}
	}
	nng_socket s;
	if (nng_req0_open(&s) != 0)
		return 1;
	nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
	nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 5000);
	nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, NNG_DURATION_INFINITE); /* no timed resends */
	nng_socket_set_size(s, NNG_OPT_RECVMAXSZ, 64 << 20);
	int rv = nng_dial(s, argv[1], NULL, 0);
	if (rv != 0) {
		fprintf(stderr, "rawclient: dial %s: %s\n", argv[1], nng_strerror(rv));
		return 1;
	}
	for (int i = 0; i < n; i++) {
		size_t len = lens[i];
		unsigned char *buf = payloads[i];
		nng_msg *reply;
		if ((rv = nng_send(s, buf, len, 0)) != 0 || (rv = nng_recvmsg(s, &reply, 0)) != 0) {
			printf("{\"no_reply\":\"%s\"}\n", nng_strerror(rv));
			free(buf);
			fflush(stdout);
			continue;
		}
		free(buf);
		Trackd__V1__Reply *r =
		    trackd__v1__reply__unpack(NULL, nng_msg_len(reply), nng_msg_body(reply));
		nng_msg_free(reply);
		if (!r) {
			printf("{\"no_reply\":\"undecodable reply\"}\n");
		} else if (r->body_case == TRACKD__V1__REPLY__BODY_ACK) {
			printf("{\"ack\":{\"seq\":%llu,\"duplicate\":%s}}\n",
			       (unsigned long long)r->ack->seq,
			       r->ack->duplicate ? "true" : "false");
		} else if (r->body_case == TRACKD__V1__REPLY__BODY_ERROR) {
			printf("{\"error\":{\"code\":%d,\"retryable\":%s,\"message\":\"",
			       r->error->code, r->error->retryable ? "true" : "false");
			for (const char *p = r->error->message; p && *p; p++) {
				if (*p == '"' || *p == '\\')
					putchar('\\');
				putchar((unsigned char)*p < 0x20 ? '?' : *p);
			}
			printf("\"}}\n");
		} else if (r->body_case == TRACKD__V1__REPLY__BODY_QUERY) {
			struct buf json;
			buf_init(&json, (size_t)1 << 30);
			if (pb_json_query_reply(r->query, &json) == 0 && json.data)
				printf("{\"query\":%s}\n", json.data);
			else
				printf("{\"query\":null}\n");
			buf_fini(&json);
		} else if (r->body_case == TRACKD__V1__REPLY__BODY_BLOB) {
			const Trackd__V1__BlobReply *b = r->blob;
			printf("{\"blob\":{\"missing\":%zu,\"have\":%llu,\"complete\":%s}}\n",
			       b->n_missing, (unsigned long long)b->have,
			       b->complete ? "true" : "false");
		} else if (r->body_case == TRACKD__V1__REPLY__BODY_STATUS) {
			const Trackd__V1__StatusReply *st = r->status;
			printf(
			    "{\"status\":{\"batches_acked\":%llu,\"batches_duplicate\":%llu,"
			    "\"requests_rejected\":%llu,\"last_index\":%llu,\"durable_index\":%llu,"
			    "\"budget_refusals\":%llu,\"log_bytes\":%llu,\"log_max_bytes\":%llu}}"
			    "\n",
			    (unsigned long long)st->batches_acked,
			    (unsigned long long)st->batches_duplicate,
			    (unsigned long long)st->requests_rejected,
			    (unsigned long long)st->last_index,
			    (unsigned long long)st->durable_index,
			    (unsigned long long)st->budget_refusals,
			    (unsigned long long)st->log_bytes,
			    (unsigned long long)st->log_max_bytes);
		}
		trackd__v1__reply__free_unpacked(r, NULL);
		fflush(stdout);
	}
	nng_close(s);
	free(payloads);
	free(lens);
	return 0;
}
