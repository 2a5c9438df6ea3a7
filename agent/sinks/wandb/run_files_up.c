/*
 * run_files_up.c — the wandb sink's run files (W&B's Files tab): media and
 * saved files named by records, and config.yaml / wandb-summary.json made at
 * the run's end, uploaded as W&B's client does (WANDB-FEATURES.md §2.1):
 * CreateRunFiles for a batch of names → a signed URL per file → PUT with the
 * batch's uploadHeaders → the name in a later file_stream `uploaded` list.
 *
 * Durability: each run's journal (file_journal.h, runs/<name>.files). A file
 * is WANTed (journal, fdatasync) while its record is applied, after its blob
 * is held for the sink (blobs.h: blobs/<uid>/held/wandb-<run>/), so the blob
 * can neither be swept nor leave the disk budget before it is up. A 2xx PUT
 * is journalled (PUT) before anything else happens, then the hold is dropped;
 * an acknowledged file_stream listing is journalled (LISTED). After kill -9
 * the journal says what is left: nothing PUT is PUT again (except the one
 * whose 2xx came just before the kill), nothing WANTed is missed.
 *
 * Retries (the sink's rules, never given up for time): a PUT with no answer,
 * 408, 429 or 5xx but 501 waits its backoff and asks CreateRunFiles again (a
 * URL may have expired meanwhile); a 403 means the signed URL expired: a new
 * one at once. A CreateRunFiles failure backs off the whole batch. A 429's or
 * 503's Retry-After (PUT or CreateRunFiles) wins over the backoff, within
 * retry_after_max. A
 * permanent answer (or a blob the store lost) gives the content up: DROPPED,
 * logged and counted in files_failed, as W&B's client gives up a file.
 *
 * Bounds: WB_RUN_FILES_BATCH names per CreateRunFiles and one in flight per
 * run; WB_PUT_QUEUE_MAX files with URLs waiting; max_parallel_uploads PUTs in
 * flight; files are read in curl's pieces (never whole in memory); the MD5
 * of a file is computed once, when it is wanted, in 64 KiB reads.
 */
#include "wandb_internal.h"

#include "blobs.h"
#include "clock.h"
#include "errors.h"
#include "fs.h"
#include "local_store.h"
#include "log.h"
#include "paths.h"
#include "run_files.h"
#include "run_metadata.h"
#include "store.h"
#include "store_layout.h"

#include <json.h>
#include <openssl/evp.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MD5_READ_BYTES ((size_t)1 << 16)

static void count(_Atomic uint64_t *c, uint64_t n)
{
	atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- the journal, opened at the first need ---------------------------------------------- */

/* The run's journal; NULL if it cannot be opened, or when !create and the
 * run has none (a run without files never gets one). */
static struct wb_files *journal_open(struct wandb_sink *s, struct wb_run *wr, bool create)
{
	struct wb_run_files *rf = &wr->files;
	if (rf->open)
		return &rf->t;
	if (!create && !wb_files_exists(s->runs_dir, wr->id))
		return NULL;
	char name[200];
	wb_state_file_name(wr->id, name, sizeof name);
	size_t n = strlen(name);
	if (n > 6)
		name[n - 6] = '\0'; /* no ".state" */
	snprintf(rf->holder, sizeof rf->holder, "wandb-%s", name);
	int rv = wb_files_open(&rf->t, s->runs_dir, wr->id);
	if (rv) {
		count(&s->write_errors, 1);
		log_error("wandb: run %s: cannot open its file journal: %s", wr->id,
		          trackd_strerror(rv));
		return NULL;
	}
	rf->open = true;
	/* Work left from before a restart goes at once (after the UpsertBucket). */
	for (size_t i = 0; i < rf->t.n && !rf->due_at; i++)
		if (wb_file_needs_put(&rf->t.v[i]))
			rf->due_at = clock_mono_us();
	return &rf->t;
}

static struct wb_files *journal(struct wandb_sink *s, struct wb_run *wr)
{
	return journal_open(s, wr, true);
}

static int md5_of_fd(int fd, uint8_t md5[16])
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *b = malloc(MD5_READ_BYTES);
	int rv = ctx && b && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) ? TRACKD_OK : TRACKD_ENOMEM;
	uint64_t off = 0;
	while (!rv) {
		ssize_t n = pread(fd, b, MD5_READ_BYTES, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			rv = TRACKD_EIO;
		else if (n == 0)
			break;
		else {
			EVP_DigestUpdate(ctx, b, (size_t)n);
			off += (uint64_t)n;
		}
	}
	unsigned int len = 16;
	if (!rv)
		EVP_DigestFinal_ex(ctx, md5, &len);
	EVP_MD_CTX_free(ctx);
	free(b);
	return rv;
}

/* Makes `want` durable (the journal), with the sink's error handling. */
static void record(struct wandb_sink *s, struct wb_run *wr, const struct wb_file_event *ev)
{
	struct wb_files *t = journal(s, wr);
	int rv = t ? wb_files_record(t, ev) : TRACKD_EIO;
	if (rv) {
		count(&s->write_errors, 1);
		log_error("wandb: run %s: file %.200s: cannot journal its upload state: %s", wr->id,
		          ev->name, trackd_strerror(rv));
	}
}

/* The run's next batch is due at `at` at the latest. */
static void wake(struct wb_run *wr, int64_t at)
{
	if (!wr->files.due_at || at < wr->files.due_at)
		wr->files.due_at = at;
}

/* ---- files wanted ------------------------------------------------------------------------ */

struct note_ctx {
	struct wandb_sink *s;
	struct wb_run *wr;
	uint64_t index;
};

/* Drops the run's hold of a blob no file of the run still needs to PUT (one
 * content may be wanted under several names). O(files of the run). */
static void release_unwanted(struct wandb_sink *s, struct wb_run *wr, const uint8_t sha256[32])
{
	for (size_t i = 0; i < wr->files.t.n; i++) {
		const struct wb_file *g = &wr->files.t.v[i];
		if (g->source == WB_FILE_BLOB && wb_file_needs_put(g) &&
		    memcmp(g->sha256, sha256, 32) == 0)
			return;
	}
	blobs_release(s->opts.blobs, wr->uid, sha256, wr->files.holder);
}

static void note_file(void *arg, const char *name, const uint8_t *digest, const char *kind)
{
	(void)kind;
	struct note_ctx *c = arg;
	struct wandb_sink *s = c->s;
	struct wb_run *wr = c->wr;
	if (!digest)
		return; /* the local sink reports it; nothing to upload */
	struct wb_files *t = journal(s, wr);
	if (!t)
		return;
	const struct wb_file *f = wb_files_find(t, name);
	/* A replayed record (after a restart): nothing to hold or hash again. */
	if (f && f->want_index >= c->index)
		return;
	uint64_t size = 0;
	/* Held before it is wanted: the blob cannot be swept in between, and it
	 * stays in the disk budget until it is up (blobs.h). */
	int rv = blobs_hold(s->opts.blobs, wr->uid, digest, wr->files.holder, &size);
	int fd = -1;
	if (!rv)
		rv = blobs_open_held(s->opts.blobs, wr->uid, digest, wr->files.holder, &fd, &size);
	struct wb_file_event ev = {.op = WB_FILE_WANT,
	                           .source = WB_FILE_BLOB,
	                           .name = name,
	                           .size = size,
	                           .index = c->index};
	memcpy(ev.sha256, digest, 32);
	if (!rv)
		rv = md5_of_fd(fd, ev.md5);
	if (fd >= 0)
		close(fd);
	if (rv) {
		count(&s->files_failed, 1);
		log_warn("wandb: run %s: file %.200s not uploaded: %s", wr->id, name,
		         rv == TRACKD_ENOENT ? "not in the blob store" : trackd_strerror(rv));
		return;
	}
	/* A content this one replaces before it went up is not needed any more. */
	uint8_t replaced[32];
	bool replaces = f && f->source == WB_FILE_BLOB && wb_file_needs_put(f) &&
	                memcmp(f->sha256, digest, 32) != 0;
	if (replaces)
		memcpy(replaced, f->sha256, 32);
	bool was_due = wr->files.due_at != 0;
	record(s, wr, &ev);
	f = wb_files_find(t, name);
	if (f && wb_file_needs_put(f) && !was_due)
		wr->files.due_at = clock_mono_us() + (int64_t)s->opts.files_batch_delay_ms * 1000;
	/* Content already up (an unchanged file): the hold is not needed. */
	if (f && !wb_file_needs_put(f))
		release_unwanted(s, wr, digest);
	if (replaces && f && memcmp(f->sha256, replaced, 32) != 0)
		release_unwanted(s, wr, replaced);
}

void wb_files_note_record(struct wandb_sink *s, struct wb_run *wr, const Trackd__V1__Record *rec,
                          uint64_t index)
{
	if (!s->opts.blobs || wr->sync || !wr->uid_known)
		return;
	if (rec->body_case != TRACKD__V1__RECORD__BODY_HISTORY &&
	    rec->body_case != TRACKD__V1__RECORD__BODY_FILE)
		return;
	struct note_ctx c = {.s = s, .wr = wr, .index = index};
	run_record_files(rec, note_file, &c);
}

/* A file the sink makes: written to files/<holder>/<md5 hex> (atomically,
 * durably) before it is wanted, read from there by its PUT. */
static void spool(struct wandb_sink *s, struct wb_run *wr, const char *name, const struct buf *b)
{
	struct wb_files *t = journal(s, wr);
	if (!t)
		return;
	struct wb_file_event ev = {.op = WB_FILE_WANT,
	                           .source = WB_FILE_SPOOLED,
	                           .name = name,
	                           .size = b->len,
	                           .index = 0};
	unsigned int len = 16;
	EVP_Digest(b->data ? b->data : "", b->len, ev.md5, &len, EVP_md5(), NULL);
	const struct wb_file *f = wb_files_find(t, name);
	if (f && memcmp(f->md5, ev.md5, 16) == 0)
		return; /* unchanged: not written, not uploaded again */
	char dir[4500], path[4700], hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", ev.md5[i]);
	snprintf(dir, sizeof dir, "%s/%s", s->files_dir, wr->files.holder);
	snprintf(path, sizeof path, "%s/%s", dir, hex);
	int rv = mkdir_parents(dir, 0700);
	if (!rv)
		rv = fs_write_atomic(path, b->data ? b->data : "", b->len, 0600, true);
	if (rv) {
		count(&s->write_errors, 1);
		log_error("wandb: run %s: cannot write %s for upload: %s", wr->id, name,
		          trackd_strerror(rv));
		return;
	}
	bool was_due = wr->files.due_at != 0;
	record(s, wr, &ev);
	if (!was_due)
		wr->files.due_at = clock_mono_us();
}

/* The spool file of content md5 of the run. */
static void spool_path(struct wandb_sink *s, struct wb_run *wr, const uint8_t md5[16], char *out,
                       size_t len)
{
	char hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", md5[i]);
	snprintf(out, len, "%s/%s/%s", s->files_dir, wr->files.holder, hex);
}

/* Like spool, from the first `size` bytes of a local store file (a sync job's
 * output.log, as its snapshot counts it; wandb-metadata.json): copied in
 * pieces, never whole in memory, MD5 on the way. */
static void spool_copy(struct wandb_sink *s, struct wb_run *wr, const char *name, int src,
                       uint64_t size)
{
	struct wb_files *t = journal(s, wr);
	if (!t)
		return;
	char dir[4500], tmp[4700], path[4700];
	snprintf(dir, sizeof dir, "%s/%s", s->files_dir, wr->files.holder);
	snprintf(tmp, sizeof tmp, "%s/copy.tmp", dir);
	int rv = mkdir_parents(dir, 0700);
	int fd = rv ? -1 : open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	uint8_t *b = malloc(MD5_READ_BYTES);
	if (fd < 0 || !ctx || !b || !EVP_DigestInit_ex(ctx, EVP_md5(), NULL))
		rv = rv ? rv : TRACKD_EIO;
	uint64_t off = 0;
	while (!rv && off < size) {
		size_t want = size - off < MD5_READ_BYTES ? (size_t)(size - off) : MD5_READ_BYTES;
		ssize_t n = pread(src, b, want, (off_t)off);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0 || fs_write_all(fd, b, (size_t)n) != 0)
			rv = TRACKD_EIO; /* shorter than its snapshot says, or a write failed */
		else {
			EVP_DigestUpdate(ctx, b, (size_t)n);
			off += (uint64_t)n;
		}
	}
	struct wb_file_event ev = {
	    .op = WB_FILE_WANT, .source = WB_FILE_SPOOLED, .name = name, .size = size};
	unsigned int len = 16;
	if (!rv && (!EVP_DigestFinal_ex(ctx, ev.md5, &len) || fdatasync(fd) != 0))
		rv = TRACKD_EIO;
	EVP_MD_CTX_free(ctx);
	free(b);
	if (fd >= 0)
		close(fd);
	const struct wb_file *f = rv ? NULL : wb_files_find(t, name);
	if (!rv && f && memcmp(f->md5, ev.md5, 16) == 0) {
		unlink(tmp); /* unchanged */
		return;
	}
	if (!rv) {
		spool_path(s, wr, ev.md5, path, sizeof path);
		if (rename(tmp, path) != 0)
			rv = TRACKD_EIO;
	}
	if (rv) {
		unlink(tmp);
		count(&s->write_errors, 1);
		log_error("wandb: run %s: cannot copy %s for upload: %s", wr->id, name,
		          trackd_strerror(rv));
		return;
	}
	record(s, wr, &ev);
	wake(wr, clock_mono_us());
}

void wb_files_note_end(struct wandb_sink *s, struct wb_run *wr)
{
	if (!wr->run || !s->opts.blobs)
		return;
	struct buf b;
	buf_init(&b, s->opts.max_buffer_bytes + (64u << 20));
	if (wb_build_config_yaml(&wr->run->config, s->version, &b) == 0)
		spool(s, wr, WB_CONFIG_FILE, &b);
	buf_reset(&b);
	if (vmap_to_json(&wr->run->summary, &b) == 0)
		spool(s, wr, WB_SUMMARY_FILE, &b);
	buf_fini(&b);
}

void wb_files_note_metadata(struct wandb_sink *s, struct wb_run *wr)
{
	if (!wr->run || !s->opts.blobs)
		return;
	struct buf b;
	buf_init(&b, 2 * (size_t)RUN_METADATA_MAX_BYTES + 64);
	if (run_metadata_merge(wr->run->agent_metadata, wr->run->client_environment, &b) == 0)
		spool(s, wr, WB_METADATA_FILE, &b);
	buf_fini(&b);
}

/* A line of files.jsonl longer than this is not the local sink's. */
#define MANIFEST_LINE_MAX (TRACKD_MAX_FILE_NAME_BYTES * 6 + 512)

void wb_files_note_local(struct wandb_sink *s, struct wb_run *wr, const char *dir)
{
	if (!s->opts.blobs || !wr->uid_known)
		return;
	char path[4400];
	snprintf(path, sizeof path, "%s/%s", dir, RUN_FILES_MANIFEST);
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
	if (!f) {
		if (fd >= 0)
			close(fd);
		return; /* a run without files */
	}
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	uint64_t number = 0;
	struct note_ctx c = {.s = s, .wr = wr};
	while ((n = getline(&line, &cap, f)) > 0) {
		number++;
		if ((size_t)n > MANIFEST_LINE_MAX)
			continue;
		struct json_object *root = NULL, *name, *sha;
		char err[128];
		if (wb_json_parse(line, (size_t)n, &root, err, sizeof err) != 0)
			continue;
		uint8_t digest[32];
		if (json_object_object_get_ex(root, "name", &name) &&
		    json_object_object_get_ex(root, "sha256", &sha) &&
		    json_object_is_type(name, json_type_string) &&
		    json_object_is_type(sha, json_type_string) &&
		    files_name_valid(json_object_get_string(name),
		                     (size_t)json_object_get_string_len(name)) &&
		    files_parse_digest(json_object_get_string(sha),
		                       (size_t)json_object_get_string_len(sha), digest)) {
			/* The line number places it: files.jsonl is only appended to,
			 * and its last line of a name wins, as in `trackctl files`. */
			c.index = number;
			note_file(&c, json_object_get_string(name), digest, "file");
		}
		json_object_put(root);
	}
	free(line);
	fclose(f);
}

void wb_files_note_local_run(struct wandb_sink *s, struct wb_run *wr, const char *dir)
{
	if (!s->opts.blobs || !wr->uid_known || !wr->run)
		return;
	wb_files_note_local(s, wr, dir);
	wb_files_note_end(s, wr);
	/* output.log as far as the local snapshot counts it (the file may be
	 * longer while the local sink runs), and the run's environment. */
	int fd;
	if (local_store_open(dir, LOCAL_STORE_CONSOLE, &fd) == 0) {
		spool_copy(s, wr, WB_CONSOLE_FILE, fd, wr->run->console_bytes);
		close(fd);
	}
	char path[4400];
	snprintf(path, sizeof path, "%s/%s", dir, ENVIRONMENT_FILE);
	fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (fd >= 0 && fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
		spool_copy(s, wr, WB_METADATA_FILE, fd, (uint64_t)st.st_size);
	if (fd >= 0)
		close(fd);
}

/* ---- what is left ----------------------------------------------------------------------- */

bool wb_files_pending(struct wandb_sink *s, struct wb_run *wr)
{
	if (!s->opts.blobs)
		return false;
	struct wb_files *t = journal_open(s, wr, false);
	if (!t)
		return false;
	for (size_t i = 0; i < t->n; i++)
		if (wb_file_needs_put(&t->v[i]) || wb_file_needs_listing(&t->v[i]))
			return true;
	return false;
}

bool wb_files_unput(struct wandb_sink *s, struct wb_run *wr)
{
	if (!s->opts.blobs || !wr->files.open)
		return false;
	for (size_t i = 0; i < wr->files.t.n; i++)
		if (wb_file_needs_put(&wr->files.t.v[i]))
			return true;
	return false;
}

int wb_files_listing(struct wandb_sink *s, struct wb_run *wr, const char **names, size_t max,
                     struct wb_transfer *t)
{
	if (!s->opts.blobs || !wr->files.open)
		return 0;
	struct wb_files *j = &wr->files.t;
	size_t n = 0;
	if (!names) {
		for (size_t i = 0; i < j->n; i++)
			if (wb_file_needs_listing(&j->v[i]))
				return 1;
		return 0;
	}
	t->listed = malloc(max * sizeof *t->listed);
	t->listed_md5 = malloc(max * sizeof *t->listed_md5);
	if (!t->listed || !t->listed_md5) {
		free(t->listed);
		free(t->listed_md5);
		t->listed = NULL;
		t->listed_md5 = NULL;
		return TRACKD_ENOMEM;
	}
	for (size_t i = 0; i < j->n && n < max; i++)
		if (wb_file_needs_listing(&j->v[i])) {
			names[n] = j->v[i].name;
			t->listed[n] = i;
			memcpy(t->listed_md5[n], j->v[i].put_md5, 16);
			n++;
		}
	t->n_listed = n;
	return (int)n;
}

void wb_files_listed(struct wandb_sink *s, struct wb_run *wr, const struct wb_transfer *t)
{
	if (!t->n_listed || !wr->files.open)
		return;
	struct wb_files *j = &wr->files.t;
	for (size_t k = 0; k < t->n_listed; k++) {
		if (t->listed[k] >= j->n)
			continue;
		struct wb_file *f = &j->v[t->listed[k]];
		/* Listed as it was then: a newer PUT is listed by a later request. */
		struct wb_file_event ev = {.op = WB_FILE_LISTED, .name = f->name};
		memcpy(ev.md5, t->listed_md5[k], 16);
		if (f->has_put && memcmp(f->put_md5, ev.md5, 16) == 0)
			record(s, wr, &ev);
	}
}

/* ---- dropping what is in flight --------------------------------------------------------- */

static void headers_release(struct wb_upload_headers *h)
{
	if (!h || --h->refs)
		return;
	for (size_t i = 0; i < h->n; i++)
		free(h->lines[i]);
	free(h->lines);
	free(h);
}

static void put_item_free(struct wb_put_item *it)
{
	free(it->url);
	headers_release(it->headers);
	memset(it, 0, sizeof *it);
}

void wb_files_drop(struct wandb_sink *s, struct wb_run *wr)
{
	struct wb_run_files *rf = &wr->files;
	if (rf->crf) {
		wb_transfer_free(s, rf->crf);
		rf->crf = NULL;
	}
	size_t kept = 0;
	for (size_t i = 0; s->put_queue && i < s->put_queued; i++) {
		if (s->put_queue[i].wr == wr)
			put_item_free(&s->put_queue[i]);
		else
			s->put_queue[kept++] = s->put_queue[i];
	}
	s->put_queued = kept;
	for (size_t i = 0; s->puts && i < s->opts.max_parallel_uploads; i++)
		if (s->puts[i] && s->puts[i]->wr == wr) {
			wb_transfer_free(s, s->puts[i]);
			s->puts[i] = NULL;
			s->puts_in_flight--;
		}
	rf->puts = 0;
	rf->due_at = rf->open ? clock_mono_us() : 0;
	for (size_t i = 0; rf->open && i < rf->t.n; i++) {
		rf->t.v[i].busy = false;
		rf->t.v[i].retry_at = 0;
	}
}

void wb_files_forget(struct wandb_sink *s, struct wb_run *wr)
{
	wb_files_drop(s, wr);
	if (wr->files.open && s->opts.blobs)
		blobs_release_all(s->opts.blobs, wr->uid, wr->files.holder);
	if (wr->files.open) {
		/* Copies left by a crash between writing one and journalling it. */
		char dir[4500];
		snprintf(dir, sizeof dir, "%s/%s", s->files_dir, wr->files.holder);
		DIR *d = opendir(dir);
		struct dirent *e;
		while (d && (e = readdir(d)))
			if (e->d_name[0] != '.')
				unlinkat(dirfd(d), e->d_name, 0);
		if (d) {
			closedir(d);
			rmdir(dir);
		}
	}
	wb_files_fini(&wr->files.t);
	wr->files.open = false;
}

/* ---- CreateRunFiles --------------------------------------------------------------------- */

/* f waits its backoff, or the answer's Retry-After (a 429 or 503: t's, when
 * t is given and has one) within retry_after_max, which wins. */
static void backoff(struct wandb_sink *s, struct wb_run *wr, struct wb_file *f, int64_t now,
                    const struct wb_transfer *t)
{
	uint64_t delay =
	    wb_backoff_ms(f->attempts, s->opts.retry_min_ms, s->opts.retry_max_ms, wb_uniform(s));
	uint64_t ra;
	if (t && t->retry_after[0] &&
	    wb_parse_retry_after(t->retry_after, clock_wall_us() / 1000000, &ra) == 0)
		delay = ra < s->opts.retry_after_max_ms ? ra : s->opts.retry_after_max_ms;
	if (f->attempts < UINT32_MAX)
		f->attempts++;
	f->retry_at = now + (int64_t)delay * 1000;
	wake(wr, f->retry_at);
}

static void start_batch(struct wandb_sink *s, struct wb_run *wr, int64_t now)
{
	struct wb_run_files *rf = &wr->files;
	struct wb_files *j = &rf->t;
	struct wb_transfer probe = {0};
	size_t n = 0;
	int64_t next = 0;
	for (size_t i = 0; i < j->n && n < WB_RUN_FILES_BATCH; i++) {
		struct wb_file *f = &j->v[i];
		if (f->busy || !wb_file_needs_put(f))
			continue;
		if (f->retry_at > now) {
			if (!next || f->retry_at < next)
				next = f->retry_at;
			continue;
		}
		probe.crf_files[n] = i;
		probe.crf_names[n] = f->name;
		n++;
	}
	if (n == 0) {
		rf->due_at = next; /* the earliest retry, or nothing due */
		return;
	}
	struct buf body;
	buf_init(&body, (size_t)WB_RUN_FILES_BATCH * WB_RUN_FILE_NAME_MAX * 2 + 4096);
	int rv = wb_build_create_run_files(wr->up_entity, wr->up_project, wr->id, probe.crf_names,
	                                   n, &body);
	struct wb_transfer *t = NULL;
	if (!rv)
		rv = wb_transfer_start(s, wr, WB_CALL_UPSERT, &body, &t);
	buf_fini(&body);
	if (rv) {
		log_warn("wandb: run %s: cannot ask for upload URLs: %s", wr->id,
		         trackd_strerror(rv));
		rf->due_at = now + (int64_t)s->opts.retry_min_ms * 1000;
		return;
	}
	memcpy(t->crf_files, probe.crf_files, sizeof t->crf_files);
	t->crf_n = n;
	for (size_t k = 0; k < n; k++) {
		j->v[probe.crf_files[k]].busy = true;
		t->crf_names[k] = j->v[probe.crf_files[k]].name;
	}
	rf->crf = t;
	/* More waiting: the next batch goes as soon as this one is answered. */
	rf->due_at = now;
}

static struct wb_upload_headers *headers_of(const struct wb_run_files_result *res)
{
	struct wb_put_headers ph;
	if (wb_put_headers(res, 0, &ph) != 0)
		return NULL;
	struct wb_upload_headers *h = calloc(1, sizeof *h);
	size_t n = ph.n - 2; /* without Content-Length and Expect: set per PUT */
	if (!h || !(h->lines = calloc(n ? n : 1, sizeof *h->lines))) {
		free(h);
		return NULL;
	}
	h->refs = 1;
	for (; h->n < n; h->n++)
		if (!(h->lines[h->n] = strdup(ph.lines[h->n]))) {
			headers_release(h);
			return NULL;
		}
	return h;
}

static void batch_done(struct wandb_sink *s, struct wb_run *wr, struct wb_transfer *t,
                       CURLcode result, int64_t now)
{
	struct wb_files *j = &wr->files.t;
	long status = 0;
	if (result == CURLE_OK)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	struct wb_run_files_result *res = calloc(1, sizeof *res);
	enum wb_verdict v = WB_RETRY;
	if (!res)
		v = WB_RETRY;
	else if (result != CURLE_OK)
		snprintf(res->error, sizeof res->error, "%.250s",
		         t->errbuf[0] ? t->errbuf : curl_easy_strerror(result));
	else if ((v = wb_classify_status(WB_CALL_UPSERT, status)) == WB_OK)
		v = wb_parse_create_run_files(t->response.data, t->response.len, t->crf_names,
		                              t->crf_n, res);
	else
		snprintf(res->error, sizeof res->error, "HTTP %ld", status);
	struct wb_upload_headers *h = v == WB_OK ? headers_of(res) : NULL;
	if (v == WB_OK && !h)
		v = WB_RETRY;
	for (size_t k = 0; k < t->crf_n; k++) {
		struct wb_file *f = &j->v[t->crf_files[k]];
		f->busy = false;
		if (v == WB_PERMANENT) {
			struct wb_file_event ev = {.op = WB_FILE_DROPPED, .name = f->name};
			memcpy(ev.md5, f->md5, 16);
			record(s, wr, &ev);
			count(&s->files_failed, 1);
			log_error("wandb: run %s: file %.200s given up: CreateRunFiles: %.200s",
			          wr->id, f->name, res ? res->error : "");
			continue;
		}
		if (v != WB_OK || !res->files[k].has_url || s->put_queued >= WB_PUT_QUEUE_MAX) {
			/* A 429/503's Retry-After holds the whole batch. */
			backoff(s, wr, f, now, v != WB_OK ? t : NULL);
			continue;
		}
		struct wb_put_item *it = &s->put_queue[s->put_queued];
		if (!(it->url = strdup(res->files[k].upload_url))) {
			backoff(s, wr, f, now, NULL);
			continue;
		}
		it->wr = wr;
		it->file = t->crf_files[k];
		it->headers = h;
		h->refs++;
		s->put_queued++;
		wr->files.puts++;
		f->busy = true;
	}
	if (v != WB_OK)
		log_warn("wandb: run %s: CreateRunFiles for %zu file(s): %.200s", wr->id, t->crf_n,
		         res ? res->error : "no memory");
	headers_release(h);
	free(res);
	wr->files.due_at = now;
}

/* ---- PUTs ---------------------------------------------------------------------------------- */

static int open_source(struct wandb_sink *s, struct wb_run *wr, const struct wb_file *f, int *fd,
                       uint64_t *size)
{
	if (f->source == WB_FILE_BLOB)
		return blobs_open_held(s->opts.blobs, wr->uid, f->sha256, wr->files.holder, fd,
		                       size);
	char path[4700], hex[33];
	for (int i = 0; i < 16; i++)
		snprintf(hex + 2 * i, 3, "%02x", f->md5[i]);
	snprintf(path, sizeof path, "%s/%s/%s", s->files_dir, wr->files.holder, hex);
	*fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
	struct stat st;
	if (*fd < 0)
		return errno == ENOENT ? TRACKD_ENOENT : trackd_err_from_errno(errno);
	if (fstat(*fd, &st) != 0) {
		close(*fd);
		return TRACKD_EIO;
	}
	*size = (uint64_t)st.st_size;
	return TRACKD_OK;
}

static void give_up(struct wandb_sink *s, struct wb_run *wr, struct wb_file *f, const char *why)
{
	struct wb_file_event ev = {.op = WB_FILE_DROPPED, .name = f->name};
	memcpy(ev.md5, f->md5, 16);
	record(s, wr, &ev);
	count(&s->files_failed, 1);
	log_error("wandb: run %s: file %.200s given up: %s", wr->id, f->name, why);
	if (f->source == WB_FILE_BLOB)
		release_unwanted(s, wr, f->sha256);
}

static void start_put(struct wandb_sink *s, struct wb_put_item *it, size_t slot)
{
	struct wb_run *wr = it->wr;
	struct wb_file *f = &wr->files.t.v[it->file];
	int fd = -1;
	uint64_t size = 0;
	int rv = open_source(s, wr, f, &fd, &size);
	if (rv) {
		f->busy = false;
		wr->files.puts--;
		give_up(s, wr, f,
		        rv == TRACKD_ENOENT ? "its content is gone" : trackd_strerror(rv));
		return;
	}
	struct curl_slist *list = NULL, *next;
	char line[64];
	for (size_t i = 0; i < it->headers->n && rv == 0; i++)
		if (!(next = curl_slist_append(list, it->headers->lines[i])))
			rv = TRACKD_ENOMEM;
		else
			list = next;
	snprintf(line, sizeof line, "Content-Length: %" PRIu64, size);
	if (!rv && (next = curl_slist_append(list, line)))
		list = next;
	else
		rv = TRACKD_ENOMEM;
	if (!rv && (next = curl_slist_append(list, "Expect:")))
		list = next;
	else
		rv = TRACKD_ENOMEM;
	struct wb_transfer *t = NULL;
	if (!rv)
		rv = wb_transfer_start_put(s, wr, it->url, list, fd, size, &t);
	if (rv) {
		curl_slist_free_all(list);
		close(fd);
		f->busy = false;
		wr->files.puts--;
		backoff(s, wr, f, clock_mono_us(), NULL);
		return;
	}
	t->put_file = it->file;
	memcpy(t->put_md5, f->md5, 16);
	s->puts[slot] = t;
	s->puts_in_flight++;
}

static void put_done(struct wandb_sink *s, struct wb_transfer *t, CURLcode result, int64_t now)
{
	struct wb_run *wr = t->wr;
	wr->files.puts--;
	struct wb_file *f = &wr->files.t.v[t->put_file];
	f->busy = false;
	long status = 0;
	if (result == CURLE_OK)
		curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
	/* The file changed while it was going up: this PUT is of an older content
	 * (W&B schedules one more upload): the new content goes by itself. */
	if (memcmp(f->md5, t->put_md5, 16) != 0) {
		wake(wr, now);
		return;
	}
	switch (wb_classify_put(status)) {
	case WB_PUT_OK: {
		struct wb_file_event ev = {.op = WB_FILE_PUT, .name = f->name};
		memcpy(ev.md5, f->md5, 16);
		record(s, wr, &ev);
		count(&s->files_uploaded, 1);
		count(&s->file_bytes_sent, t->put_size);
		f->attempts = 0;
		if (f->source == WB_FILE_SPOOLED) {
			/* Up: the copy is not needed any more (a restart finds the PUT). */
			char path[4700];
			spool_path(s, wr, f->md5, path, sizeof path);
			unlink(path);
		}
		if (f->source == WB_FILE_BLOB)
			release_unwanted(s, wr, f->sha256);
		wr->touched_at = now;
		return;
	}
	case WB_PUT_RENEW_URL:
		/* The signed URL expired: a new one at once. */
		f->retry_at = 0;
		wake(wr, now);
		log_info("wandb: run %s: upload URL of %.200s expired; asking again", wr->id,
		         f->name);
		return;
	case WB_PUT_RETRY: {
		backoff(s, wr, f, now, t); /* storage's Retry-After wins */
		if (f->attempts == 1 || f->attempts % 10 == 0)
			log_warn(
			    "wandb: run %s: upload of %.200s failed (%s%ld) (attempt %u); retrying",
			    wr->id, f->name,
			    status ? "HTTP " : "no answer: ", status ? status : (long)result,
			    f->attempts);
		return;
	}
	case WB_PUT_PERMANENT: {
		char why[64];
		snprintf(why, sizeof why, "HTTP %ld", status);
		give_up(s, wr, f, why);
		return;
	}
	}
}

void wb_files_done(struct wandb_sink *s, struct wb_transfer *t, CURLcode result, int64_t now)
{
	struct wb_run *wr = t->wr;
	if (t->is_put) {
		for (size_t i = 0; i < s->opts.max_parallel_uploads; i++)
			if (s->puts[i] == t) {
				s->puts[i] = NULL;
				s->puts_in_flight--;
			}
		put_done(s, t, result, now);
	} else {
		wr->files.crf = NULL;
		batch_done(s, wr, t, result, now);
	}
}

void wb_files_schedule(struct wandb_sink *s, int64_t now)
{
	if (!s->opts.blobs || now < s->gate_until)
		return;
	for (size_t i = 0; i < s->n_runs; i++) {
		struct wb_run *wr = s->runs[i];
		struct wb_run_files *rf = &wr->files;
		if (!rf->open || rf->crf || !rf->due_at || wr->phase != WB_ATTACHED ||
		    !wr->upserted || s->put_queued + WB_RUN_FILES_BATCH > WB_PUT_QUEUE_MAX)
			continue;
		/* An ended run's files go at once: nothing more will join them. */
		if (now >= rf->due_at || (wr->run && wr->run->state != RUN_RUNNING))
			start_batch(s, wr, now);
	}
	for (size_t slot = 0; slot < s->opts.max_parallel_uploads && s->put_queued; slot++) {
		if (s->puts[slot])
			continue;
		struct wb_put_item it = s->put_queue[0];
		memmove(s->put_queue, s->put_queue + 1, (s->put_queued - 1) * sizeof *s->put_queue);
		s->put_queued--;
		memset(&s->put_queue[s->put_queued], 0, sizeof *s->put_queue);
		start_put(s, &it, slot);
		put_item_free(&it);
	}
}

void wb_files_bytes(const struct wb_run *wr, uint64_t *up, uint64_t *total)
{
	*up = *total = 0;
	for (size_t i = 0; wr->files.open && i < wr->files.t.n; i++) {
		const struct wb_file *f = &wr->files.t.v[i];
		*total += f->size;
		if (!wb_file_needs_put(f))
			*up += f->size;
	}
}
