/* cmd_history.c — the commands that stream a run's history rows:
 *   history RUN [--keys k1,k2] [--format csv|jsonl] [--json]
 *   history RUN --stream events [--format csv|jsonl]   (system.h)
 *   tail RUN [--keys k1,k2] [-n N]
 * Rows are fetched in pages of CLI_HISTORY_PAGE, so memory stays bounded by one
 * page (plus the CSV header's key list) whatever the run's length. */
#include "cli.h"

#include "render.h"
#include "system.h"

#include "hash.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_KEYS     100000           /* CSV columns */
#define TAIL_POLL_NS (200 * 1000000L) /* ~200 ms between polls of a quiet run */
/* Rows per request while tail catches up: small, so that a stop is seen after
 * at most one short request, however far behind a slow reader left it. */
#define TAIL_PAGE_ROWS 256

/* ---- key lists ------------------------------------------------------------- */

/* Keys in first-seen order, with a hash index to keep "seen?" O(1). */
struct keyset {
	char **keys;
	size_t n, cap;
	size_t *slots; /* index + 1; 0 empty */
	size_t n_slots;
};

static void keyset_free(struct keyset *ks)
{
	for (size_t i = 0; i < ks->n; i++)
		free(ks->keys[i]);
	free(ks->keys);
	free(ks->slots);
	memset(ks, 0, sizeof *ks);
}

/* 0 added or present, -1 out of memory, -2 over MAX_KEYS. */
static int keyset_add(struct keyset *ks, const char *key)
{
	if (ks->n_slots && 2 * (ks->n + 1) <= ks->n_slots) {
		for (size_t i = hash_fnv1a64_str(key) & (ks->n_slots - 1);;
		     i = (i + 1) & (ks->n_slots - 1)) {
			if (!ks->slots[i])
				break;
			if (strcmp(ks->keys[ks->slots[i] - 1], key) == 0)
				return 0;
		}
	} else {
		/* Grow the index (load ≤ 1/2), then look again. */
		size_t n_slots = ks->n_slots ? 2 * ks->n_slots : 64;
		size_t *slots = calloc(n_slots, sizeof *slots);
		if (!slots)
			return -1;
		for (size_t k = 0; k < ks->n; k++) {
			size_t i = hash_fnv1a64_str(ks->keys[k]) & (n_slots - 1);
			while (slots[i])
				i = (i + 1) & (n_slots - 1);
			slots[i] = k + 1;
		}
		free(ks->slots);
		ks->slots = slots;
		ks->n_slots = n_slots;
		return keyset_add(ks, key);
	}
	if (ks->n >= MAX_KEYS)
		return -2;
	if (ks->n == ks->cap) {
		size_t cap = ks->cap ? 2 * ks->cap : 32;
		char **keys = realloc(ks->keys, cap * sizeof *keys);
		if (!keys)
			return -1;
		ks->keys = keys;
		ks->cap = cap;
	}
	char *copy = strdup(key);
	if (!copy)
		return -1;
	size_t i = hash_fnv1a64_str(key) & (ks->n_slots - 1);
	while (ks->slots[i])
		i = (i + 1) & (ks->n_slots - 1);
	ks->keys[ks->n++] = copy;
	ks->slots[i] = ks->n;
	return 0;
}

/* "a,b,,c" → a, b, c (empty names skipped; _step is always the first column). */
static int parse_keys(const char *list, struct keyset *ks)
{
	char *copy = strdup(list);
	if (!copy)
		return -1;
	int rv = 0;
	char *save = NULL;
	for (char *k = strtok_r(copy, ",", &save); k && rv == 0; k = strtok_r(NULL, ",", &save))
		if (strcmp(k, "_step") != 0)
			rv = keyset_add(ks, k);
	free(copy);
	return rv;
}

/* ---- history --------------------------------------------------------------- */

enum format { FORMAT_CSV, FORMAT_JSONL, FORMAT_JSON };

/* The CSV header: every top-level key of rows [0, end) in first-seen order. One
 * pass over the history that keeps only the keys, so memory does not grow with
 * the number of rows. *end is where the pass stopped: the second pass stops there
 * too, so rows logged meanwhile cannot bring keys the header lacks. */
static int collect_keys(agent_client *agent, const char *run, struct keyset *ks, uint64_t *end)
{
	struct cli_history h;
	uint64_t from = 0, next, total;
	cli_history_init(&h, agent, run, NULL, 0);
	for (;;) {
		struct cli_reply r;
		int code = cli_history_page(&h, from, UINT64_MAX, &r, &next, &total);
		if (code != 0)
			return code;
		const json_value *rows = cli_history_rows(&r);
		size_t n = rows ? rows->u.arr.n : 0;
		for (size_t i = 0; i < n; i++) {
			const json_value *row = &rows->u.arr.items[i];
			for (size_t m = 0; json_is(row, JSON_OBJECT) && m < row->u.obj.n; m++) {
				const char *key = row->u.obj.members[m].key;
				int rv = strcmp(key, "_step") == 0 ? 0 : keyset_add(ks, key);
				if (rv != 0) {
					fprintf(
					    stderr, "trackctl: %s\n",
					    rv == -2
					        ? "more than 100000 keys: choose some with --keys"
					        : "out of memory");
					cli_reply_free(&r);
					return 1;
				}
			}
		}
		cli_reply_free(&r);
		if (n == 0 || next <= from || next >= total) {
			*end = next > from ? next : from + n;
			return 0;
		}
		from = next;
	}
}

static int print_history(agent_client *agent, const char *run, const struct keyset *filter,
                         const struct keyset *columns, enum format format, uint64_t end)
{
	uint64_t from = 0, next = 0, total = 0;
	bool first = true;
	if (format == FORMAT_CSV) {
		fputs("_step", stdout);
		for (size_t i = 0; i < columns->n; i++) {
			putchar(',');
			render_csv_field(stdout, columns->keys[i], strlen(columns->keys[i]));
		}
		putchar('\n');
	}
	struct cli_history h;
	cli_history_init(&h, agent, run, (const char *const *)filter->keys, filter->n);
	/* end: UINT64_MAX (everything) or where the key pass stopped. */
	while (from < end) {
		struct cli_reply r;
		int code = cli_history_page(&h, from, end - from, &r, &next, &total);
		if (code != 0)
			return code;
		const json_value *rows = cli_history_rows(&r);
		size_t n = rows ? rows->u.arr.n : 0;
		if (format == FORMAT_JSON && first) {
			fputs("{\"run\":", stdout);
			const json_value *path = json_get(r.root, "run");
			if (path)
				json_write_compact(stdout, path);
			else
				json_fput_string(stdout, run);
			fputs(",\"from_line\":0,\"lines\":[", stdout);
		}
		for (size_t i = 0; i < n; i++) {
			const json_value *row = &rows->u.arr.items[i];
			switch (format) {
			case FORMAT_CSV:
				render_csv_row(stdout, row, (const char *const *)columns->keys,
				               columns->n);
				break;
			case FORMAT_JSONL:
				json_write_compact(stdout, row);
				putchar('\n');
				break;
			case FORMAT_JSON:
				if (!first || i)
					putchar(',');
				json_write_compact(stdout, row);
				break;
			}
		}
		first = false;
		cli_reply_free(&r);
		if (n == 0 || next <= from || next >= total)
			break;
		from = next;
	}
	if (format == FORMAT_JSON) {
		if (first) /* not even one reply: cannot happen, a failure returned above */
			fputs("{\"lines\":[", stdout);
		printf("],\"next_line\":%" PRIu64 ",\"total_lines\":%" PRIu64 "}\n", next, total);
	}
	return 0;
}

int cmd_history(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"json", no_argument, NULL, 'j'},
	    {"keys", required_argument, NULL, 'k'},
	    {"format", required_argument, NULL, 'f'},
	    {"stream", required_argument, NULL, 's'},
	    {0},
	};
	bool events = false;
	enum format format = FORMAT_CSV;
	bool json = false;
	const char *keys = NULL;
	int c;
	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (c) {
		case 'j': json = true; break;
		case 'k': keys = optarg; break;
		case 's':
			if (strcmp(optarg, "events") != 0 && strcmp(optarg, "history") != 0)
				return cli_usage_error("history: --stream is history or events");
			events = strcmp(optarg, "events") == 0;
			break;
		case 'f':
			if (strcmp(optarg, "csv") == 0)
				format = FORMAT_CSV;
			else if (strcmp(optarg, "jsonl") == 0)
				format = FORMAT_JSONL;
			else
				return cli_usage_error("history: --format is csv or jsonl");
			break;
		default: return cli_bad_option("history", argv);
		}
	}
	if (json)
		format = FORMAT_JSON;
	if (argc - optind != 1)
		return cli_usage_error("history takes one RUN (an id or entity/project/id)");
	const char *run = argv[optind];
	if (events) {
		if (keys || json)
			return cli_usage_error("history: --stream events takes --format only");
		agent_client *agent;
		if (cli_connect(&agent) != 0)
			return 1;
		int code = cli_print_events(agent, run, format == FORMAT_CSV, stdout);
		agent_close(agent);
		return code;
	}

	struct keyset filter = {0}, found = {0};
	if (keys && parse_keys(keys, &filter) != 0) {
		fprintf(stderr, "trackctl: too many keys in --keys\n");
		return 1;
	}
	if (keys && filter.n == 0) {
		keyset_free(&filter);
		return cli_usage_error("history: --keys names no key");
	}
	agent_client *agent;
	if (cli_connect(&agent) != 0) {
		keyset_free(&filter);
		return 1;
	}
	int code = 0;
	uint64_t end = UINT64_MAX;
	const struct keyset *columns = &filter;
	/* Named keys are the columns, in the order given; otherwise every key seen. */
	if (format == FORMAT_CSV && !keys) {
		code = collect_keys(agent, run, &found, &end);
		columns = &found;
	}
	if (code == 0)
		code = print_history(agent, run, &filter, columns, format, end);
	keyset_free(&filter);
	keyset_free(&found);
	agent_close(agent);
	return code;
}

/* ---- tail ------------------------------------------------------------------ */

/* Set by SIGINT/SIGTERM; the poll loop ends cleanly when it sees it. A signal
 * handler can only reach file-scope data, hence the one static. */
static volatile sig_atomic_t tail_stop;

static void on_stop_signal(int sig)
{
	(void)sig;
	tail_stop = 1;
}

/* The run's state, "" when the reply has none. 0 or an exit code. */
static int run_state(agent_client *agent, const char *run, char *state, size_t cap)
{
	struct cli_query cq;
	char what[512];
	snprintf(what, sizeof what, "run %s", run);
	cli_query_run(&cq, run);
	struct cli_reply r;
	int code = cli_query(agent, &cq.q, what, &r);
	if (code != 0)
		return code;
	snprintf(state, cap, "%s", json_string(json_get(json_get(r.root, "run"), "state"), ""));
	cli_reply_free(&r);
	return 0;
}

/* Prints the rows from *from on, page after page, until the agent has no more
 * or a stop signal came. The stop is tested before every row: a reader slower
 * than the run (or a full pipe, whose write the signal interrupts) must not
 * keep us printing the rest of a page. */
static int tail_drain(struct cli_history *h, uint64_t *from, size_t *printed)
{
	*printed = 0;
	while (!tail_stop) {
		uint64_t next, total;
		struct cli_reply r;
		int code = cli_history_page(h, *from, TAIL_PAGE_ROWS, &r, &next, &total);
		if (code != 0)
			return code;
		const json_value *rows = cli_history_rows(&r);
		size_t n = rows ? rows->u.arr.n : 0, i;
		for (i = 0; i < n && !tail_stop; i++) {
			json_write_compact(stdout, &rows->u.arr.items[i]);
			putchar('\n');
		}
		fflush(stdout);
		cli_reply_free(&r);
		*printed += i;
		if (i < n || n == 0 || next <= *from)
			return 0;
		*from = next;
		if (next >= total)
			return 0;
	}
	return 0;
}

int cmd_tail(int argc, char **argv)
{
	static const struct option opts[] = {
	    {"keys", required_argument, NULL, 'k'},
	    {"lines", required_argument, NULL, 'n'},
	    {"json", no_argument, NULL, 'j'}, /* rows are JSON lines already */
	    {0},
	};
	const char *keys = NULL;
	uint64_t last = 10;
	int c;
	while ((c = getopt_long(argc, argv, "n:", opts, NULL)) != -1) {
		switch (c) {
		case 'k': keys = optarg; break;
		case 'n': {
			char *endp;
			errno = 0;
			unsigned long long v = strtoull(optarg, &endp, 10);
			if (errno || *endp || !*optarg || optarg[0] == '-')
				return cli_usage_error("tail: -n takes a number of rows");
			last = v;
			break;
		}
		case 'j': break;
		default: return cli_bad_option("tail", argv);
		}
	}
	if (argc - optind != 1)
		return cli_usage_error("tail takes one RUN (an id or entity/project/id)");
	const char *run = argv[optind];
	struct keyset filter = {0};
	if (keys && parse_keys(keys, &filter) != 0) {
		fprintf(stderr, "trackctl: too many keys in --keys\n");
		return 1;
	}

	/* No SA_RESTART: the signal must cut the poll's sleep short. A signal the
	 * shell set to be ignored (a background job) stays ignored. */
	static const int stop_signals[] = {SIGINT, SIGTERM};
	for (size_t i = 0; i < sizeof stop_signals / sizeof stop_signals[0]; i++) {
		struct sigaction old, sa = {.sa_handler = on_stop_signal};
		sigemptyset(&sa.sa_mask);
		if (sigaction(stop_signals[i], NULL, &old) == 0 && old.sa_handler != SIG_IGN)
			sigaction(stop_signals[i], &sa, NULL);
	}

	agent_client *agent;
	if (cli_connect(&agent) != 0) {
		keyset_free(&filter);
		return 1;
	}
	char state[64];
	int code = run_state(agent, run, state, sizeof state);
	/* Start with the last `last` rows, as tail(1) does. */
	struct cli_history h;
	uint64_t from = 0, next, total = 0;
	cli_history_init(&h, agent, run, (const char *const *)filter.keys, filter.n);
	if (code == 0) {
		struct cli_reply r;
		code = cli_history_page(&h, 0, 1, &r, &next, &total);
		cli_reply_free(&r);
		from = total > last ? total - last : 0;
	}
	while (code == 0 && !tail_stop) {
		size_t printed;
		code = tail_drain(&h, &from, &printed);
		if (code != 0 || printed)
			continue;
		/* Quiet: has the run ended? Its last rows are in before its state
		 * changes (the agent applies the log in order), so drain once more. */
		code = run_state(agent, run, state, sizeof state);
		if (code == 0 && strcmp(state, "running") != 0) {
			code = tail_drain(&h, &from, &printed);
			break;
		}
		struct timespec ts = {0, TAIL_POLL_NS};
		nanosleep(&ts, NULL); /* EINTR on Ctrl-C: the loop test sees tail_stop */
	}
	keyset_free(&filter);
	agent_close(agent);
	return code;
}
