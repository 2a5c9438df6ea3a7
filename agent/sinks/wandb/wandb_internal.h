/* Private to the wandb sink: the structures shared by wandb_sink.c (the sink
 * thread: log, runs, scheduling, checkpoints), transfer.c (libcurl) and query.c
 * (answers on the ingest's query thread, under s->mu). */
#ifndef TRACKD_SINKS_WANDB_INTERNAL_H
#define TRACKD_SINKS_WANDB_INTERNAL_H

#include "file_journal.h"
#include "protocol.h"
#include "sync.h"
#include "run.h"
#include "wandb_sink.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#define WB_NO_HOLD      UINT64_MAX
#define WB_RESPONSE_MAX (1u << 20) /* response bytes kept; the rest is read and dropped */

enum wb_phase {
	WB_ATTACHED, /* records are applied to it and it uploads */
	WB_EVICTED,  /* failing while memory was short: buffers dropped, re-read later */
	WB_PARKED,   /* a permanent error: buffers dropped, re-read on retry or restart */
	WB_OFFLINE,  /* an offline run: never uploaded by this sink */
};

struct wb_transfer;

/* A CreateRunFiles answer's uploadHeaders as curl lines (wb_upload_header_line),
 * shared by the PUTs of its batch (counted: the last one frees it). */
struct wb_upload_headers {
	size_t refs, n;
	char **lines;
};

/* A file with a signed URL, waiting for one of the max_parallel_uploads slots. */
struct wb_put_item {
	struct wb_run *wr;
	size_t file; /* index in wr->files.t.v */
	char *url;
	struct wb_upload_headers *headers;
};

/* A run's files (run_files_up.c): the durable journal (file_journal.h) and what
 * is in flight for them. */
struct wb_run_files {
	bool open; /* the journal is open (lazily, at the first need) */
	struct wb_files t;
	char holder[224];        /* the blob holder name: "wandb-" + the state file name */
	int64_t due_at;          /* a CreateRunFiles batch may go (batch delay); 0 = none due */
	struct wb_transfer *crf; /* the CreateRunFiles in flight, or NULL */
	size_t puts;             /* PUTs of this run in flight or queued */
};

/* The request headers (the API key is not among them: CURLOPT_PASSWORD). curl
 * reads the list of a transfer until it ends, so a reconfiguration cannot free
 * the list it replaces: the sink and each transfer hold a reference (counted
 * under mu). */
struct wb_headers {
	struct curl_slist *list;
	size_t refs;
};
/* Drops one reference; the last one frees the list. */
void wb_headers_release(struct wb_headers *h);

struct wb_run {
	char *id;
	uint32_t uid; /* the run's owner, once known */
	bool uid_known;
	enum wb_phase phase;
	struct run *run;         /* NULL unless attached (and also before its start record) */
	uint64_t applying_entry; /* s->entries_read when it last applied a record */

	/* Upstream identity, known after the first UpsertBucket. */
	bool upserted;
	char *up_entity, *up_project;
	uint64_t h_base, c_base;

	/* Lines produced and not yet acknowledged: [head, len) of each buf. */
	struct buf hist, cons;
	size_t h_head, c_head;
	uint64_t h_done, c_done;       /* lines acknowledged or skipped */
	uint64_t h_skipped, c_skipped; /* of those, skipped */
	/* wandb-events.jsonl (system metrics): the same, with its own offsets. */
	struct buf evts;
	size_t e_head;
	uint64_t e_base, e_done, e_skipped;

	/* What changed since the backend last acknowledged it. */
	uint64_t meta_gen, meta_acked;
	/* The meta_gen of the last update that cleared the tags / the notes
	 * (RunRename with set_tags and none, or notes ""): until the backend
	 * acknowledged it, UpsertBucket sends them empty. Otherwise empty ones are
	 * left out, so that a run without tags never wipes tags set upstream. */
	uint64_t tags_cleared_gen, notes_cleared_gen;
	uint64_t sum_gen, sum_acked;
	uint64_t end_gen, end_acked; /* ends of the run seen / delivered (resumes restart it) */
	bool summary_too_big;        /* warned once */

	struct wb_transfer *xfer; /* the one request in flight, or NULL */
	bool more;                /* the last request was cut by the size limit */
	uint32_t attempts;        /* failed attempts in a row */
	int64_t retry_at;         /* monotonic µs; 0 = no wait */
	int64_t last_upsert_at, last_stream_at, touched_at;
	long last_status; /* HTTP status of the last answer, 0 = none */
	char last_error[320];
	bool stop_requested;
	bool url_logged;

	uint64_t hold;          /* see wandb_sink.h; WB_NO_HOLD when all is durable */
	uint64_t durable_index; /* last_index of the snapshot on disk, 0 if none */

	struct wb_run_files files;

	/* A `trackctl sync` job (sync.h): lines come from the local store's files,
	 * not from the log, and progress goes to sync/<name>.state. NULL otherwise. */
	struct wb_sync *sync;
};

struct wb_transfer {
	CURL *easy;
	struct wb_headers *headers; /* a reference, for as long as curl uses them */
	bool added;                 /* on the multi handle: counted in s->in_flight */
	struct wb_run *wr;
	enum wb_call call;
	struct buf body, response;
	char errbuf[CURL_ERROR_SIZE];
	char retry_after[80];
	bool has_ratelimit_remaining, has_ratelimit_reset;
	uint64_t ratelimit_remaining, ratelimit_reset;
	int64_t started_at;
	/* What the request covers, applied when it is acknowledged. */
	uint64_t meta_gen, sum_gen;
	bool final; /* the run's end (end_gen) goes with it */
	uint64_t end_gen;
	struct wb_stream_out out;
	/* A CreateRunFiles batch: the files asked for (indices in wr->files.t.v)
	 * and their names as sent. */
	size_t crf_files[WB_RUN_FILES_BATCH];
	const char *crf_names[WB_RUN_FILES_BATCH];
	size_t crf_n;
	/* A PUT: the file, the bytes read so far from fd, its own header list. */
	bool is_put;
	size_t put_file;
	uint8_t put_md5[16];
	int put_fd;
	uint64_t put_size, put_off;
	struct curl_slist *put_headers;
	/* A file_stream request's `uploaded` names: indices and the MD5 listed. */
	size_t *listed;
	uint8_t (*listed_md5)[16];
	size_t n_listed;
	/* A snapshot to make durable on acknowledgement (everything was in it). */
	uint8_t *capture;
	size_t capture_len;
	uint64_t capture_index;
};

struct wandb_sink {
	struct wandb_sink_options opts;
	char dir[4096];      /* <state>/sinks/wandb */
	char runs_dir[4200]; /* …/runs */
	char *base_url, *app_url, *entity, *ca_file, *version;
	char *api_key;              /* secret: wiped at free; curl copies it into each request */
	struct wb_headers *headers; /* current; replaced by wandb_sink_reconfigure */
	CURLM *multi;
	bool curl_inited;

	pthread_mutex_t mu; /* guards everything a query may read or change */
	bool closing;
	pthread_t thread;
	bool thread_started;

	/* PUTs waiting for a slot (FIFO) and in flight: at most
	 * WB_PUT_QUEUE_MAX queued, max_parallel_uploads in flight. */
	struct wb_put_item *put_queue;
	size_t put_queued;
	struct wb_transfer **puts;
	size_t puts_in_flight;
	char files_dir[4200]; /* …/files: files the sink makes (config.yaml, …) */

	struct wb_run **runs;
	size_t n_runs, cap_runs;
	size_t next_pick; /* round robin start of the scheduler */
	size_t in_flight;

	txlog_reader *reader;
	uint64_t processed_index, committed_index;
	uint64_t rewind_to;    /* WB_NO_HOLD: none pending */
	uint64_t entries_read; /* counts every entry read, re-reads too: names an entry */
	size_t record_pos;     /* of the record being applied, in its entry's batch */
	uint64_t buffered;     /* bytes of unacknowledged lines, all runs */
	bool paused;           /* reading waits for memory: runs send what they have now */
	int64_t gate_until;    /* monotonic µs: no request starts before (rate limits) */
	uint64_t rng;

	_Atomic uint64_t requests_ok, requests_failed, lines_skipped, bytes_sent;
	_Atomic uint64_t records_orphaned, write_errors, runs_evicted;
	_Atomic uint64_t requests_retried, lines_sent, runs_finished;
	_Atomic uint64_t files_uploaded, files_failed, file_bytes_sent;
};

/* Finds a run by id or "entity/project/id". Caller holds s->mu. */
struct wb_run *wb_find(struct wandb_sink *s, const char *ref);

/* Brings a parked or evicted run back: its state is reloaded from disk and the
 * log is re-read from its hold. Caller holds s->mu. */
void wb_reattach(struct wandb_sink *s, struct wb_run *wr);

/* sync.c's access to the run table. Caller holds s->mu. wb_run_add: a new run
 * `id` in the table (NULL: no memory). wb_run_reset: forgets what was derived
 * (lines, run, upstream identity). wb_park: parks the run (wr->last_error says
 * why). */
struct wb_run *wb_run_add(struct wandb_sink *s, const char *id);
void wb_run_reset(struct wandb_sink *s, struct wb_run *wr);
void wb_park(struct wandb_sink *s, struct wb_run *wr);

/* What libtrackd puts in a run's entity when the user gave none (the owner's
 * login name or uid<N>): meaningless upstream. */
bool wb_is_default_entity(const char *entity, uint32_t uid);

/* Run and project URLs in the W&B UI ("" before the first UpsertBucket). */
void wb_run_url(const struct wandb_sink *s, const struct wb_run *wr, char *out, size_t len);
void wb_project_url(const struct wandb_sink *s, const struct wb_run *wr, char *out, size_t len);

/* Loads the API key (file, else environment). On failure writes why into err
 * (never the key) and returns TRACKD_EPERM (file too open, not regular) or
 * TRACKD_EINVAL (no key, unreadable, malformed). */
int wb_load_api_key(const char *file, const char *env, char **key_out, char *err, size_t errlen);

/* The UI base URL for an API base URL, as the official client derives it:
 * https://api.wandb.ai → https://wandb.ai, https://api.example.com →
 * https://app.example.com (and api.wandb.test → app.wandb.test), any other
 * (http://localhost:8080, a bare host) → itself; no trailing '/'. */
void wb_derive_app_url(const char *base_url, char *out, size_t len);

/* url without the user:password@ of its authority (never shown to anyone). */
void wb_strip_userinfo(const char *url, char *out, size_t len);

/* Removes trailing '/' from url in place. */
void wb_trim_slashes(char *url);

/* run_files_up.c: the run files of wandb_sink.h (caller holds s->mu, on the
 * sink thread).
 *   wb_files_note_record: a record's files are wanted up (blobs held first);
 *   wb_files_note_end: the run ended: config.yaml and wandb-summary.json;
 *   wb_files_note_metadata: a RunMetadata or RunEnvironment was applied:
 *     wandb-metadata.json as run_metadata.h merges them (up at once, as W&B's
 *     client sends it at the start; again only when its content changes);
 *   wb_files_schedule: CreateRunFiles batches and PUTs that may start now;
 *   wb_files_done: a CreateRunFiles or PUT transfer ended (the transfer is
 *     freed by the caller);
 *   wb_files_listing / wb_files_listed: names for a file_stream `uploaded`
 *     list, and its acknowledgement;
 *   wb_files_pending: files still to PUT or list (the run stays in memory);
 *   wb_files_drop: everything in flight for the run goes (durable state stays);
 *   wb_files_forget: the run is done: its journal closes. */
#define WB_PUT_QUEUE_MAX  (4 * WB_RUN_FILES_BATCH)
#define WB_UPLOADED_NAMES 64 /* names in one file_stream `uploaded` list */
/* A record's place in the log for the file journal's WANT index: entries hold
 * batches of records, and two records of one batch may name the same file. */
static inline uint64_t wb_file_position(uint64_t log_index, size_t record_pos)
{
	return log_index << 20 | (record_pos < (1u << 20) - 1 ? record_pos : (1u << 20) - 1);
}
void wb_files_note_record(struct wandb_sink *s, struct wb_run *wr, const Trackd__V1__Record *rec,
                          uint64_t index);
void wb_files_note_end(struct wandb_sink *s, struct wb_run *wr);
void wb_files_note_metadata(struct wandb_sink *s, struct wb_run *wr);
/* A sync job's files: the local run dir's files.jsonl (blobs by digest from the
 * run owner's store), config.yaml and wandb-summary.json of its run, and
 * copies of its output.log (as far as its snapshot counts) and
 * wandb-metadata.json. */
void wb_files_note_local(struct wandb_sink *s, struct wb_run *wr, const char *dir);
void wb_files_note_local_run(struct wandb_sink *s, struct wb_run *wr, const char *dir);
/* Bytes of the run's files up, and of all its files wanted (sync progress). */
void wb_files_bytes(const struct wb_run *wr, uint64_t *up, uint64_t *total);
void wb_files_schedule(struct wandb_sink *s, int64_t now);
void wb_files_done(struct wandb_sink *s, struct wb_transfer *t, CURLcode result, int64_t now);
int wb_files_listing(struct wandb_sink *s, struct wb_run *wr, const char **names, size_t max,
                     struct wb_transfer *t);
void wb_files_listed(struct wandb_sink *s, struct wb_run *wr, const struct wb_transfer *t);
bool wb_files_pending(struct wandb_sink *s, struct wb_run *wr);
bool wb_files_unput(struct wandb_sink *s, struct wb_run *wr); /* some file still to PUT */
void wb_files_drop(struct wandb_sink *s, struct wb_run *wr);
void wb_files_forget(struct wandb_sink *s, struct wb_run *wr);
double wb_uniform(struct wandb_sink *s);

/* transfer.c: starts a request (the body is taken: on success it belongs to
 * the transfer); completes them into wb_transfer_done, called by the sink. */
int wb_transfer_start(struct wandb_sink *s, struct wb_run *wr, enum wb_call call, struct buf *body,
                      struct wb_transfer **out);
void wb_transfer_free(struct wandb_sink *s, struct wb_transfer *t);
/* A PUT of `size` bytes read from fd (taken: closed with the transfer) to a
 * signed URL, with `headers` (taken); no API key: the URL is the credential.
 * Counted in s->puts_in_flight, not in s->in_flight. */
int wb_transfer_start_put(struct wandb_sink *s, struct wb_run *wr, const char *url,
                          struct curl_slist *headers, int fd, uint64_t size,
                          struct wb_transfer **out);

#endif
