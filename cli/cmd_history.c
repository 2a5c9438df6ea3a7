/* cmd_history.c — the commands that stream a run's history rows:
 *   history RUN [--keys k1,k2] [--format csv|jsonl] [--json]
 *   history RUN --stream events [--format csv|jsonl]   (system.h)
 *   tail RUN [--keys k1,k2] [-n N]
 * Rows are fetched in pages of CLI_HISTORY_PAGE, so memory stays bounded by one
 * page (plus the CSV header's key list) whatever the run's length. A row is JSON
 * text as the store holds it: jsonl, --json and tail pass it through as it
 * came; only CSV reads its values (json-c, one tokener for every row, each row
 * parsed once: see "CSV of every key" for the spool that takes). */
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
#include <unistd.h>

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

/* One CSV line: a row's text (at most an agent reply) and a comma per column. */
#define CSV_LINE_MAX ((size_t)1 << 30)

static int out_of_memory(void)
{
	fprintf(stderr, "trackctl: out of memory\n");
	return 1;
}

/* "_step,k1,k2,…" and a newline. */
static int print_header(const struct keyset *columns, struct buf *line)
{
	buf_reset(line);
	int rv = buf_puts(line, "_step");
	for (size_t i = 0; i < columns->n && !rv; i++) {
		rv = buf_putc(line, ',');
		if (!rv)
			rv = render_csv_field(line, columns->keys[i], strlen(columns->keys[i]));
	}
	if (!rv)
		rv = buf_putc(line, '\n');
	if (rv)
		return out_of_memory();
	fwrite(line->data, 1, line->len, stdout);
	return 0;
}

/* ---- CSV of every key --------------------------------------------------------
 *
 * The header names every top-level key of the run in first-seen order, so it is
 * known only once the last row is read. Each row is read (parsed with json-c)
 * once: its cells for the columns known by then go to a spool file, with that
 * number of columns; after the last row come the header, then the spool, each
 * row padded with an empty cell for every column found after it. Reading the
 * rows twice (keys first, then cells) would parse each twice, which is most of
 * the command's time. Memory stays one page plus the key list, whatever the
 * run's length; the spool, about the size of the CSV, is in $TMPDIR (else
 * /tmp), unlinked at once, so it goes however trackctl ends. The rows are those
 * of the one pass: rows logged meanwhile cannot bring keys the header lacks. */

struct spool_rec {
	uint64_t columns; /* the columns the row's cells are for */
	uint64_t len;     /* bytes of its cells, which follow */
};

static FILE *spool_open(void)
{
	const char *dir = getenv("TMPDIR");
	char path[4096];
	snprintf(path, sizeof path, "%s/trackctl-csv-XXXXXX", dir && *dir ? dir : "/tmp");
	int fd = mkstemp(path);
	if (fd < 0) {
		fprintf(stderr, "trackctl: cannot make a spool file for the CSV (%s): %s\n", path,
		        strerror(errno));
		return NULL;
	}
	unlink(path);
	FILE *f = fdopen(fd, "w+");
	if (!f) {
		close(fd);
		out_of_memory();
	}
	return f;
}

/* The row's new keys (not _step) join the columns. */
static int add_keys(struct keyset *ks, json_object *row)
{
	if (!json_object_is_type(row, json_type_object))
		return 0;
	json_object_object_foreach(row, key, value)
	{
		(void)value;
		int rv = strcmp(key, "_step") == 0 ? 0 : keyset_add(ks, key);
		if (rv != 0) {
			fprintf(stderr, "trackctl: %s\n",
			        rv == -2 ? "more than 100000 keys: choose some with --keys"
			                 : "out of memory");
			return 1;
		}
	}
	return 0;
}

/* Header, then every spooled row with its missing trailing cells. */
static int spool_print(FILE *spool, const struct keyset *columns, struct buf *line)
{
	if (fflush(spool) != 0 || fseek(spool, 0, SEEK_SET) != 0) {
		fprintf(stderr, "trackctl: cannot write the CSV's spool file: %s\n",
		        strerror(errno));
		return 1;
	}
	int code = print_header(columns, line);
	static const char commas[] = ",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,";
	char chunk[65536];
	struct spool_rec rec;
	while (code == 0 && fread(&rec, sizeof rec, 1, spool) == 1) {
		for (uint64_t left = rec.len; left > 0 && code == 0;) {
			size_t want = left < sizeof chunk ? (size_t)left : sizeof chunk;
			if (fread(chunk, 1, want, spool) != want)
				code = 1;
			fwrite(chunk, 1, want, stdout);
			left -= want;
		}
		for (uint64_t pad = columns->n - rec.columns; pad > 0 && code == 0;) {
			size_t k = pad < sizeof commas - 1 ? (size_t)pad : sizeof commas - 1;
			fwrite(commas, 1, k, stdout);
			pad -= k;
		}
		putchar('\n');
	}
	if (code != 0 || ferror(spool)) {
		fprintf(stderr, "trackctl: cannot read back the CSV's spool file\n");
		return 1;
	}
	return 0;
}

static int print_csv_all(agent_client *agent, const char *run)
{
	struct keyset ks = {0};
	struct buf line;
	buf_init(&line, CSV_LINE_MAX);
	struct json_tokener *tok = json_tokener_new_ex(RENDER_ROW_MAX_DEPTH);
	FILE *spool = NULL;
	int code = !tok ? out_of_memory() : !(spool = spool_open()) ? 1 : 0;
	struct cli_history h;
	uint64_t from = 0, next, total;
	cli_history_init(&h, agent, run, NULL, 0);
	while (code == 0) {
		struct cli_reply r;
		const Trackd__V1__HistoryPage *page;
		code = cli_history_page(&h, from, UINT64_MAX, &r, &page, &next, &total);
		if (code != 0)
			break;
		size_t n = page->n_lines;
		for (size_t i = 0; i < n && code == 0; i++) {
			json_object *row;
			code = cli_row(tok, &h, &page->lines[i], from + i, &row);
			if (code == 0)
				code = add_keys(&ks, row);
			buf_reset(&line);
			if (code == 0 &&
			    render_csv_row(&line, row, (const char *const *)ks.keys, ks.n) != 0)
				code = out_of_memory();
			struct spool_rec rec = {ks.n, line.len};
			if (code == 0 &&
			    (fwrite(&rec, sizeof rec, 1, spool) != 1 ||
			     (line.len && fwrite(line.data, 1, line.len, spool) != line.len))) {
				fprintf(stderr, "trackctl: cannot write the CSV's spool file: %s\n",
				        strerror(errno));
				code = 1;
			}
			json_object_put(row);
		}
		cli_reply_free(&r);
		if (n == 0 || next <= from || next >= total)
			break;
		from = next;
	}
	cli_history_fini(&h);
	if (code == 0)
		code = spool_print(spool, &ks, &line);
	if (spool)
		fclose(spool);
	if (tok)
		json_tokener_free(tok);
	buf_fini(&line);
	keyset_free(&ks);
	return code;
}

/* ---- the other formats: rows printed as they come -------------------------------- */

/* CSV of the --keys columns, jsonl, or the one JSON object of --json. */
static int print_history(agent_client *agent, const char *run, const struct keyset *filter,
                         enum format format)
{
	uint64_t from = 0, next = 0, total = 0;
	bool first = true;
	struct json_tokener *tok = NULL;
	struct buf line;
	buf_init(&line, CSV_LINE_MAX);
	int code = 0;
	if (format == FORMAT_CSV) {
		tok = json_tokener_new_ex(RENDER_ROW_MAX_DEPTH);
		code = tok ? print_header(filter, &line) : out_of_memory();
	}
	struct cli_history h;
	cli_history_init(&h, agent, run, (const char *const *)filter->keys, filter->n);
	while (code == 0) {
		struct cli_reply r;
		const Trackd__V1__HistoryPage *page;
		code = cli_history_page(&h, from, UINT64_MAX, &r, &page, &next, &total);
		if (code != 0)
			break;
		size_t n = page->n_lines;
		if (format == FORMAT_JSON && first) {
			/* The shape of one HistoryPage as --json renders it, for every page. */
			fputs("{\"run\":", stdout);
			if (page->run)
				json_fput_string(stdout, page->run);
			else
				fputs("null", stdout);
			fputs(",\"from_line\":0,\"lines\":[", stdout);
		}
		for (size_t i = 0; i < n && code == 0; i++) {
			const ProtobufCBinaryData *text = &page->lines[i];
			switch (format) {
			case FORMAT_CSV: {
				json_object *row;
				code = cli_row(tok, &h, text, from + i, &row);
				buf_reset(&line);
				if (code == 0 &&
				    (render_csv_row(&line, row, (const char *const *)filter->keys,
				                    filter->n) != 0 ||
				     buf_putc(&line, '\n') != 0))
					code = out_of_memory();
				if (code == 0)
					fwrite(line.data, 1, line.len, stdout);
				json_object_put(row);
				break;
			}
			case FORMAT_JSONL:
				cli_put_row(stdout, text);
				putchar('\n');
				break;
			case FORMAT_JSON:
				if (!first || i)
					putchar(',');
				cli_put_row(stdout, text);
				break;
			}
		}
		first = false;
		cli_reply_free(&r);
		if (n == 0 || next <= from || next >= total)
			break;
		from = next;
	}
	cli_history_fini(&h);
	if (tok)
		json_tokener_free(tok);
	buf_fini(&line);
	if (code != 0)
		return code;
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

	struct keyset filter = {0};
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
	/* Named keys are the columns, in the order given; otherwise every key seen. */
	int code = format == FORMAT_CSV && !keys ? print_csv_all(agent, run)
	                                         : print_history(agent, run, &filter, format);
	keyset_free(&filter);
	agent_close(agent);
	return code;
}

/* ---- tail ------------------------------------------------------------------ */

/* Set by SIGINT/SIGTERM; the poll loop ends cleanly when it sees it. A signal
 * handler can only reach file-scope data, hence the statics. */
static volatile sig_atomic_t tail_stop;
/* Set while tail waits for the agent, with everything printed so far flushed:
 * a stop then ends the process at once. The wait itself cannot be cut short
 * (NNG's receive does not return on a signal) and may last as long as the
 * agent's answer takes — seconds when a checkpoint holds its store's lock on a
 * slow disk — and nothing is left to write. */
static volatile sig_atomic_t tail_waiting;

static void on_stop_signal(int sig)
{
	(void)sig;
	tail_stop = 1;
	if (tail_waiting)
		_exit(0);
}

/* Marks the agent call that follows as one a stop may end the process in. */
static void tail_wait_begin(void)
{
	fflush(stdout);
	tail_waiting = 1;
	if (tail_stop) /* came before the flag was up */
		_exit(0);
}

static void tail_wait_end(void)
{
	tail_waiting = 0;
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
	const Trackd__V1__RunInfo *info = r.q->run->run;
	snprintf(state, cap, "%s", info && info->state ? info->state : "");
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
		const Trackd__V1__HistoryPage *page;
		tail_wait_begin();
		int code = cli_history_page(h, *from, TAIL_PAGE_ROWS, &r, &page, &next, &total);
		tail_wait_end();
		if (code != 0)
			return code;
		size_t n = page->n_lines, i;
		for (i = 0; i < n && !tail_stop; i++) {
			cli_put_row(stdout, &page->lines[i]);
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
	tail_wait_begin();
	int code = run_state(agent, run, state, sizeof state);
	tail_wait_end();
	/* Start with the last `last` rows, as tail(1) does. */
	struct cli_history h;
	uint64_t from = 0, next, total = 0;
	cli_history_init(&h, agent, run, (const char *const *)filter.keys, filter.n);
	if (code == 0) {
		struct cli_reply r;
		const Trackd__V1__HistoryPage *page;
		tail_wait_begin();
		code = cli_history_page(&h, 0, 1, &r, &page, &next, &total);
		tail_wait_end();
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
		tail_wait_begin();
		code = run_state(agent, run, state, sizeof state);
		tail_wait_end();
		if (code == 0 && strcmp(state, "running") != 0) {
			code = tail_drain(&h, &from, &printed);
			break;
		}
		struct timespec ts = {0, TAIL_POLL_NS};
		nanosleep(&ts, NULL); /* EINTR on Ctrl-C: the loop test sees tail_stop */
	}
	cli_history_fini(&h);
	keyset_free(&filter);
	agent_close(agent);
	return code;
}
