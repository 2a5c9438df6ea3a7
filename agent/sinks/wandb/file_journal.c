#include "file_journal.h"
#include "le.h"
#include "store.h"

#include "buf.h"
#include "crc32c.h"
#include "errors.h"
#include "fs.h"
#include "hash.h"
#include "run_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char magic[8] = {'T', 'R', 'K', 'D', 'W', 'F', '0', '1'};

/* The journal of a table that needs this few events is never compacted. */
#define COMPACT_MIN_EVENTS 1024u

void wb_files_init(struct wb_files *t)
{
	memset(t, 0, sizeof *t);
	t->fd = -1;
}

void wb_files_fini(struct wb_files *t)
{
	if (!t)
		return;
	for (size_t i = 0; i < t->n; i++)
		free(t->v[i].name);
	free(t->v);
	free(t->index);
	free(t->path);
	if (t->fd >= 0)
		close(t->fd);
	wb_files_init(t);
}

static size_t slot_of(const struct wb_files *t, const char *name)
{
	size_t mask = t->index_cap - 1;
	size_t i = (size_t)hash_fnv1a64_str(name) & mask;
	while (t->index[i] && strcmp(t->v[t->index[i] - 1].name, name) != 0)
		i = (i + 1) & mask;
	return i;
}

struct wb_file *wb_files_find(const struct wb_files *t, const char *name)
{
	if (!t->index_cap)
		return NULL;
	size_t i = slot_of(t, name);
	return t->index[i] ? &t->v[t->index[i] - 1] : NULL;
}

bool wb_file_needs_put(const struct wb_file *f)
{
	return !f->dropped && !(f->has_put && memcmp(f->put_md5, f->md5, 16) == 0);
}

bool wb_file_needs_listing(const struct wb_file *f)
{
	return f->has_put && !f->listed;
}

/* Room for one more file: v and the index (kept at most half full). */
static int grow(struct wb_files *t)
{
	if (t->n == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 16;
		struct wb_file *v = realloc(t->v, cap * sizeof *v);
		if (!v)
			return TRACKD_ENOMEM;
		t->v = v;
		t->cap = cap;
	}
	if ((t->n + 1) * 2 > t->index_cap) {
		size_t cap = t->index_cap ? t->index_cap * 2 : 32;
		size_t *index = calloc(cap, sizeof *index);
		if (!index)
			return TRACKD_ENOMEM;
		free(t->index);
		t->index = index;
		t->index_cap = cap;
		for (size_t k = 0; k < t->n; k++)
			t->index[slot_of(t, t->v[k].name)] = k + 1;
	}
	return TRACKD_OK;
}

/* Whether ev would change t (0, *changed) or is refused. */
static int check(const struct wb_files *t, const struct wb_file_event *ev, struct wb_file **f,
                 bool *changed)
{
	*changed = false;
	if (!ev->name || !files_name_valid(ev->name, strlen(ev->name)))
		return TRACKD_EINVAL;
	*f = wb_files_find(t, ev->name);
	struct wb_file *e = *f;
	switch (ev->op) {
	case WB_FILE_WANT:
		if (ev->source != WB_FILE_BLOB && ev->source != WB_FILE_SPOOLED)
			return TRACKD_EINVAL;
		if (!e) {
			if (t->n >= WB_FILES_MAX)
				return TRACKD_ETOOBIG;
			*changed = true;
			return TRACKD_OK;
		}
		/* A replayed record, or the content wanted already: nothing to do
		 * (a content given up is wanted again only when it changes). */
		*changed =
		    !(ev->index && ev->index <= e->want_index) && memcmp(e->md5, ev->md5, 16) != 0;
		return TRACKD_OK;
	case WB_FILE_PUT:
	case WB_FILE_DROPPED:
		if (!e || memcmp(e->md5, ev->md5, 16) != 0)
			return TRACKD_EINVAL;
		*changed = ev->op == WB_FILE_PUT ? wb_file_needs_put(e) : !e->dropped;
		return TRACKD_OK;
	case WB_FILE_LISTED:
		if (!e || !e->has_put || memcmp(e->put_md5, ev->md5, 16) != 0)
			return TRACKD_EINVAL;
		*changed = !e->listed;
		return TRACKD_OK;
	default: return TRACKD_EINVAL;
	}
}

static int apply_checked(struct wb_files *t, const struct wb_file_event *ev, struct wb_file *e)
{
	switch (ev->op) {
	case WB_FILE_WANT:
		if (!e) {
			int rv = grow(t);
			if (rv)
				return rv;
			char *name = strdup(ev->name);
			if (!name)
				return TRACKD_ENOMEM;
			e = &t->v[t->n];
			memset(e, 0, sizeof *e);
			e->name = name;
			t->index[slot_of(t, name)] = ++t->n;
		}
		e->source = ev->source;
		e->size = ev->size;
		if (ev->index > e->want_index)
			e->want_index = ev->index;
		memcpy(e->sha256, ev->sha256, 32);
		memcpy(e->md5, ev->md5, 16);
		e->dropped = false;
		e->attempts = 0;
		e->retry_at = 0;
		break;
	case WB_FILE_PUT:
		e->has_put = true;
		memcpy(e->put_md5, ev->md5, 16);
		e->listed = false;
		break;
	case WB_FILE_LISTED: e->listed = true; break;
	case WB_FILE_DROPPED: e->dropped = true; break;
	}
	return TRACKD_OK;
}

int wb_files_apply(struct wb_files *t, const struct wb_file_event *ev, bool *changed)
{
	struct wb_file *e = NULL;
	int rv = check(t, ev, &e, changed);
	if (rv || !*changed)
		return rv;
	return apply_checked(t, ev, e);
}

int wb_file_event_encode(const struct wb_file_event *ev, uint8_t *out, size_t cap, size_t *len)
{
	size_t nl = ev->name ? strlen(ev->name) : 0;
	size_t pl = WB_FILE_EVENT_FIXED + nl;
	if (nl == 0 || nl > TRACKD_MAX_FILE_NAME_BYTES)
		return TRACKD_EINVAL;
	if (8 + pl > cap)
		return TRACKD_ETOOBIG;
	uint8_t *p = out + 8;
	p[0] = ev->op;
	p[1] = ev->source;
	p[2] = (uint8_t)nl;
	p[3] = (uint8_t)(nl >> 8);
	memcpy(p + 4, ev->name, nl);
	p += 4 + nl;
	put_le64(p, ev->size);
	put_le64(p + 8, ev->index);
	memcpy(p + 16, ev->sha256, 32);
	memcpy(p + 48, ev->md5, 16);
	put_le32(out, (uint32_t)pl);
	put_le32(out + 4, crc32c_update(0, out + 8, pl));
	*len = 8 + pl;
	return TRACKD_OK;
}

int wb_files_replay(struct wb_files *t, const uint8_t *data, size_t len, size_t *valid)
{
	size_t off = 0;
	char name[TRACKD_MAX_FILE_NAME_BYTES + 1];
	while (len - off >= 8) {
		size_t pl = get_le32(data + off);
		if (pl < WB_FILE_EVENT_FIXED ||
		    pl > WB_FILE_EVENT_FIXED + TRACKD_MAX_FILE_NAME_BYTES || len - off - 8 < pl ||
		    crc32c_update(0, data + off + 8, pl) != get_le32(data + off + 4))
			break;
		const uint8_t *p = data + off + 8;
		size_t nl = (size_t)p[2] | (size_t)p[3] << 8;
		if (nl != pl - WB_FILE_EVENT_FIXED)
			break;
		memcpy(name, p + 4, nl);
		name[nl] = '\0';
		struct wb_file_event ev = {.op = p[0], .source = p[1], .name = name};
		p += 4 + nl;
		ev.size = get_le64(p);
		ev.index = get_le64(p + 8);
		memcpy(ev.sha256, p + 16, 32);
		memcpy(ev.md5, p + 48, 16);
		bool changed;
		int rv = wb_files_apply(t, &ev, &changed);
		/* An event the table refuses was never written by this code (only
		 * changing, accepted events are): the file is not ours to trust past it. */
		if (rv == TRACKD_ENOMEM)
			return rv;
		if (rv)
			break;
		t->events++;
		off += 8 + pl;
	}
	*valid = off;
	return TRACKD_OK;
}

static void journal_path(const char *dir, const char *run_id, char *out, size_t len)
{
	char name[200];
	wb_state_file_name(run_id, name, sizeof name);
	size_t n = strlen(name);
	if (n > 6) /* ".state" → ".files" */
		name[n - 6] = '\0';
	snprintf(out, len, "%s/%s.files", dir, name);
}

/* The fewest events that give t again. */
static size_t events_needed(const struct wb_files *t)
{
	size_t n = 0;
	for (size_t i = 0; i < t->n; i++) {
		const struct wb_file *f = &t->v[i];
		bool up_is_wanted = f->has_put && memcmp(f->put_md5, f->md5, 16) == 0;
		/* WANT [+PUT [+LISTED]] [+DROPPED]; an older content up but not the
		 * wanted one is rebuilt as WANT(old) PUT [LISTED] WANT(new). */
		n += 1 + (f->has_put ? 1 + f->listed + !up_is_wanted : 0) + f->dropped;
	}
	return n;
}

static int append(struct buf *b, const struct wb_file_event *ev)
{
	uint8_t frame[WB_FILE_EVENT_MAX];
	size_t n;
	int rv = wb_file_event_encode(ev, frame, sizeof frame, &n);
	return rv ? rv : buf_append(b, frame, n);
}

/* Rewrites the journal with the events t needs (atomically). */
static int compact(const struct wb_files *t, const char *path)
{
	struct buf b;
	/* Bounded by the table: WB_FILES_MAX files, four events each at most. */
	buf_init(&b, 8 + (size_t)WB_FILES_MAX * 4 * WB_FILE_EVENT_MAX);
	int rv = buf_append(&b, magic, 8);
	for (size_t i = 0; i < t->n && !rv; i++) {
		const struct wb_file *f = &t->v[i];
		struct wb_file_event ev = {.op = WB_FILE_WANT,
		                           .source = f->source,
		                           .name = f->name,
		                           .size = f->size,
		                           .index = f->want_index};
		memcpy(ev.sha256, f->sha256, 32);
		bool up_is_wanted = f->has_put && memcmp(f->put_md5, f->md5, 16) == 0;
		if (f->has_put) {
			/* The content up first (its size and digest are not kept: only
			 * its MD5 matters once it is up). */
			memcpy(ev.md5, f->put_md5, 16);
			rv = append(&b, &ev);
			ev.op = WB_FILE_PUT;
			rv = rv ? rv : append(&b, &ev);
			ev.op = WB_FILE_LISTED;
			if (!rv && f->listed)
				rv = append(&b, &ev);
			ev.op = WB_FILE_WANT;
		}
		memcpy(ev.md5, f->md5, 16);
		if (!rv && !up_is_wanted)
			rv = append(&b, &ev);
		ev.op = WB_FILE_DROPPED;
		if (!rv && f->dropped)
			rv = append(&b, &ev);
	}
	if (!rv)
		rv = fs_write_atomic(path, b.data, b.len, 0600, true);
	buf_fini(&b);
	return rv;
}

int wb_files_open(struct wb_files *t, const char *dir, const char *run_id)
{
	wb_files_init(t);
	char path[4400];
	journal_path(dir, run_id, path, sizeof path);
	int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return trackd_err_from_errno(errno);
	char *text = NULL;
	size_t len = 0;
	int rv = fs_read_fd(fd, 8 + (size_t)WB_FILES_MAX * 8 * WB_FILE_EVENT_MAX, &text, &len);
	if (rv)
		goto fail;
	const uint8_t *d = (const uint8_t *)text;
	size_t valid = 0;
	if (len >= 8 && memcmp(d, magic, 8) == 0) {
		rv = wb_files_replay(t, d + 8, len - 8, &valid);
		if (rv)
			goto fail;
		valid += 8;
	}
	/* A new journal, a torn tail or a file that is not a journal: what is
	 * valid stays, the rest goes (an empty one gets its magic). */
	if (valid == 0) {
		if (ftruncate(fd, 0) != 0 || pwrite(fd, magic, 8, 0) != 8 || fdatasync(fd) != 0) {
			rv = TRACKD_EIO;
			goto fail;
		}
	} else if (valid < len && (ftruncate(fd, (off_t)valid) != 0 || fdatasync(fd) != 0)) {
		rv = TRACKD_EIO;
		goto fail;
	}
	free(text);
	text = NULL;
	size_t need = events_needed(t);
	if (t->events > COMPACT_MIN_EVENTS && t->events > 2 * need) {
		close(fd);
		fd = -1;
		if ((rv = compact(t, path)) != 0)
			goto fail;
		fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
		if (fd < 0) {
			rv = trackd_err_from_errno(errno);
			goto fail;
		}
		t->events = need;
	}
	if (lseek(fd, 0, SEEK_END) < 0) {
		rv = TRACKD_EIO;
		goto fail;
	}
	if (!(t->path = strdup(path))) {
		rv = TRACKD_ENOMEM;
		goto fail;
	}
	t->fd = fd;
	return TRACKD_OK;
fail:
	free(text);
	if (fd >= 0)
		close(fd);
	wb_files_fini(t);
	return rv;
}

int wb_files_record(struct wb_files *t, const struct wb_file_event *ev)
{
	struct wb_file *e = NULL;
	bool changed;
	int rv = check(t, ev, &e, &changed);
	if (rv || !changed)
		return rv;
	if (t->fd < 0)
		return TRACKD_EINVAL;
	uint8_t frame[WB_FILE_EVENT_MAX];
	size_t n;
	if ((rv = wb_file_event_encode(ev, frame, sizeof frame, &n)) != 0)
		return rv;
	off_t at = lseek(t->fd, 0, SEEK_END);
	if (at < 0 || fs_write_all(t->fd, frame, n) != 0 || fdatasync(t->fd) != 0) {
		/* Whatever part reached the file is a torn tail: cut it now, so the
		 * next event is not appended after garbage. */
		if (at >= 0 && ftruncate(t->fd, at) != 0)
			return TRACKD_EIO;
		return TRACKD_EIO;
	}
	t->events++;
	if ((rv = apply_checked(t, ev, e)) != 0)
		return rv;
	/* A file that keeps changing (policy "live") would grow the journal
	 * without bound: past four events a file it is rewritten with what the
	 * table needs (the event above is durable already; a failed rewrite
	 * leaves the journal as it was, valid). */
	if (t->events > COMPACT_MIN_EVENTS && t->events > 4 * (uint64_t)t->n && t->path) {
		size_t need = events_needed(t);
		if (t->events > 2 * need && compact(t, t->path) == 0) {
			int fd = open(t->path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
			if (fd >= 0 && lseek(fd, 0, SEEK_END) >= 0) {
				close(t->fd);
				t->fd = fd;
				t->events = need;
			} else if (fd >= 0) {
				close(fd);
			}
		}
	}
	return TRACKD_OK;
}

bool wb_files_exists(const char *dir, const char *run_id)
{
	char path[4400];
	journal_path(dir, run_id, path, sizeof path);
	return access(path, F_OK) == 0;
}

int wb_files_remove(const char *dir, const char *run_id)
{
	char path[4400];
	journal_path(dir, run_id, path, sizeof path);
	if (unlink(path) != 0 && errno != ENOENT)
		return trackd_err_from_errno(errno);
	return TRACKD_OK;
}
