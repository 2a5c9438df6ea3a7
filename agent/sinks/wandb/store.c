#include "store.h"
#include "le.h"

#include "crc32c.h"
#include "errors.h"
#include "fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 02 added the events offsets; 01 files (no events) are still read. */
static const char magic[8] = {'T', 'R', 'K', 'D', 'W', 'B', '0', '2'};
static const char magic_v1[8] = {'T', 'R', 'K', 'D', 'W', 'B', '0', '1'};

void wb_state_file_name(const char *run_id, char *out, size_t len)
{
	bool plain = *run_id != '\0';
	for (const char *p = run_id; *p && plain; p++)
		plain = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		        (*p >= '0' && *p <= '9') || *p == '_' || *p == '-';
	if (plain) {
		snprintf(out, len, "%s.state", run_id);
		return;
	}
	/* Hex keeps "..", spaces and non-ASCII ids out of path syntax; 64-byte ids
	 * (the protocol's limit) give 129-character names. */
	size_t n = 0;
	if (len)
		out[n++] = 'x';
	for (const unsigned char *p = (const unsigned char *)run_id; *p && n + 8 < len; p++)
		n += (size_t)snprintf(out + n, len - n, "%02x", *p);
	snprintf(out + n, len - n, ".state");
}

int wb_state_write(const char *dir, const char *run_id, const struct wb_state *st)
{
	const char *entity = st->entity ? st->entity : "";
	const char *project = st->project ? st->project : "";
	size_t el = strlen(entity), pl = strlen(project);
	if (el > UINT16_MAX || pl > UINT16_MAX || st->snapshot_len > WB_STATE_MAX_BYTES)
		return TRACKD_ETOOBIG;
	size_t len = 8 + 4 + 6 * 8 + 2 + el + 2 + pl + 4 + st->snapshot_len + 4;
	uint8_t *b = malloc(len);
	if (!b)
		return TRACKD_ENOMEM;
	uint8_t *p = b;
	memcpy(p, magic, 8);
	p += 8;
	put_le32(p, st->flags);
	p += 4;
	put_le64(p, st->history_base);
	put_le64(p + 8, st->console_base);
	put_le64(p + 16, st->history_skipped);
	put_le64(p + 24, st->console_skipped);
	put_le64(p + 32, st->events_base);
	put_le64(p + 40, st->events_skipped);
	p += 48;
	p[0] = (uint8_t)el;
	p[1] = (uint8_t)(el >> 8);
	memcpy(p + 2, entity, el);
	p += 2 + el;
	p[0] = (uint8_t)pl;
	p[1] = (uint8_t)(pl >> 8);
	memcpy(p + 2, project, pl);
	p += 2 + pl;
	put_le32(p, (uint32_t)st->snapshot_len);
	p += 4;
	if (st->snapshot_len)
		memcpy(p, st->snapshot, st->snapshot_len);
	p += st->snapshot_len;
	put_le32(p, crc32c_update(0, b, (size_t)(p - b)));

	char name[200], path[4096];
	wb_state_file_name(run_id, name, sizeof name);
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path) {
		free(b);
		return TRACKD_EINVAL;
	}
	int rv = fs_write_atomic(path, b, len, 0600, true);
	free(b);
	return rv;
}

static char *take_string(const uint8_t **p, const uint8_t *end)
{
	if (end - *p < 2)
		return NULL;
	size_t n = (size_t)(*p)[0] | (size_t)(*p)[1] << 8;
	*p += 2;
	if ((size_t)(end - *p) < n || memchr(*p, '\0', n))
		return NULL;
	char *s = malloc(n + 1);
	if (!s)
		return NULL;
	memcpy(s, *p, n);
	s[n] = '\0';
	*p += n;
	return s;
}

int wb_state_read(const char *dir, const char *run_id, struct wb_state *st)
{
	memset(st, 0, sizeof *st);
	char name[200], path[4096];
	wb_state_file_name(run_id, name, sizeof name);
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return TRACKD_EINVAL;
	char *text;
	size_t len;
	int rv = fs_read_file(path, WB_STATE_MAX_BYTES + 4096, &text, &len);
	if (rv)
		return rv;
	uint8_t *b = (uint8_t *)text;
	rv = TRACKD_ECORRUPT;
	bool v1 = len >= 8 && memcmp(b, magic_v1, 8) == 0;
	const size_t fixed = 8 + 4 + (v1 ? 32 : 48);
	if (len < fixed + 2 + 2 + 4 + 4 || (!v1 && memcmp(b, magic, 8) != 0) ||
	    crc32c_update(0, b, len - 4) != get_le32(b + len - 4))
		goto out;
	const uint8_t *p = b + 8, *end = b + len - 4;
	st->flags = get_le32(p);
	st->history_base = get_le64(p + 4);
	st->console_base = get_le64(p + 12);
	st->history_skipped = get_le64(p + 20);
	st->console_skipped = get_le64(p + 28);
	if (!v1) {
		st->events_base = get_le64(p + 36);
		st->events_skipped = get_le64(p + 44);
	}
	p += v1 ? 36 : 52;
	if (!(st->entity = take_string(&p, end)) || !(st->project = take_string(&p, end)))
		goto out;
	if (end - p < 4)
		goto out;
	size_t sl = get_le32(p);
	p += 4;
	if ((size_t)(end - p) != sl)
		goto out;
	if (sl) {
		if (!(st->snapshot = malloc(sl))) {
			rv = TRACKD_ENOMEM;
			goto out;
		}
		memcpy(st->snapshot, p, sl);
		st->snapshot_len = sl;
	}
	rv = TRACKD_OK;
out:
	free(b);
	if (rv)
		wb_state_fini(st);
	return rv;
}

int wb_state_remove(const char *dir, const char *run_id)
{
	char name[200], path[4096];
	wb_state_file_name(run_id, name, sizeof name);
	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		return TRACKD_EINVAL;
	if (unlink(path) != 0 && errno != ENOENT)
		return trackd_err_from_errno(errno);
	return TRACKD_OK;
}

void wb_state_fini(struct wb_state *st)
{
	if (!st)
		return;
	free(st->entity);
	free(st->project);
	free(st->snapshot);
	memset(st, 0, sizeof *st);
}
