/* fuzz_wandb_import — trackctl import's reader of W&B transaction files and
 * its conversion into trackd records, on arbitrary files (R21, R11).
 *
 * The input is read twice: as it is (mostly refused for its header) and behind
 * a valid 7-byte file header, so that the chunk and record code sees it. Each
 * time with the default record limit and with a tiny one. Rules:
 *   - the reader ends (a bounded number of calls), never returns an error for
 *     bytes it read from memory, and its records come at increasing offsets
 *     inside the file, each no longer than the limit;
 *   - damage reports lie inside the file and are not empty;
 *   - every record goes through the converter; every trackd record it emits
 *     packs and unpacks with protobuf-c to a record with a run id and a body.
 * A broken rule aborts with a message naming it. */
#include "errors.h"
#include "import/wandb_convert.h"
#include "import/wandb_txlog.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define TINY_LIMIT 64u
#define MAX_CALLS  1000000u

static const uint8_t file_header[WTX_HEADER_BYTES] = {':', 'W', '&', 'B', 0xE1, 0xBE, 0};

__attribute__((noreturn, format(printf, 1, 2))) static void bug(const char *fmt, ...)
{
	va_list ap;
	fputs("contract broken: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

struct ctx {
	size_t size;
};

static void on_damage(void *arg, const struct wtx_damage *d)
{
	const struct ctx *c = arg;
	if (d->offset >= c->size || d->skipped == 0 || d->offset + d->skipped > c->size)
		bug("damage at %llu (%llu bytes) in a file of %zu bytes",
		    (unsigned long long)d->offset, (unsigned long long)d->skipped, c->size);
	if (!d->what || !*d->what)
		bug("damage without a reason");
}

static int on_begin(void *arg, const char *run_id, const char *entity, const char *project)
{
	(void)arg;
	if (!run_id || !*run_id || !entity || !project)
		bug("begin without a run id");
	return 0;
}

static int on_emit(void *arg, const Trackd__V1__Record *rec, uint64_t offset)
{
	(void)arg;
	(void)offset;
	size_t n = trackd__v1__record__get_packed_size(rec);
	uint8_t *b = malloc(n ? n : 1);
	if (!b)
		return TRACKD_ENOMEM;
	trackd__v1__record__pack(rec, b);
	Trackd__V1__Record *back = trackd__v1__record__unpack(NULL, n, b);
	free(b);
	if (!back)
		bug("an emitted record does not unpack");
	if (!back->run_id || !*back->run_id || back->body_case == TRACKD__V1__RECORD__BODY__NOT_SET)
		bug("an emitted record without run id or body");
	trackd__v1__record__free_unpacked(back, NULL);
	return 0;
}

static void read_file(const uint8_t *data, size_t size, size_t limit)
{
	if (size == 0)
		return;
	struct ctx c = {.size = size};
	FILE *f = fmemopen((void *)data, size, "rb");
	if (!f)
		return;
	wtx_reader *r;
	char why[200];
	if (wtx_open(f, limit, on_damage, &c, &r, why, sizeof why) != 0)
		return;
	struct wbc_options o = {
	    .file_id = "fuzzrun1", .pid = 1, .begin = on_begin, .emit = on_emit, .arg = NULL};
	wbc *conv;
	if (wbc_new(&o, &conv) != 0)
		bug("wbc_new failed");
	const uint8_t *rec;
	size_t len;
	uint64_t off, last = 0;
	bool any = false;
	int rv;
	unsigned calls = 0;
	while ((rv = wtx_next(r, &rec, &len, &off)) == 1) {
		if (++calls > MAX_CALLS)
			bug("the reader does not end");
		if (off < WTX_HEADER_BYTES || off >= size || (any && off <= last))
			bug("record at offset %llu after %llu (file of %zu)",
			    (unsigned long long)off, (unsigned long long)last, size);
		if (len > (limit ? limit : WTX_DEFAULT_MAX_REC))
			bug("record of %zu bytes over the limit", len);
		last = off;
		any = true;
		int crv = wbc_record(conv, rec, len, off);
		if (crv != 0 && crv != TRACKD_EINVAL)
			bug("wbc_record: %d", crv);
	}
	if (rv != 0)
		bug("wtx_next failed on memory: %d", rv);
	if (wtx_position(r) > size)
		bug("position past the end");
	int frv = wbc_finish(conv);
	if (frv != 0)
		bug("wbc_finish: %d", frv);
	wbc_free(conv);
	wtx_close(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	read_file(data, size, 0);
	uint8_t *with_header = malloc(size + WTX_HEADER_BYTES);
	if (!with_header)
		return 0;
	memcpy(with_header, file_header, WTX_HEADER_BYTES);
	if (size)
		memcpy(with_header + WTX_HEADER_BYTES, data, size);
	read_file(with_header, size + WTX_HEADER_BYTES, 0);
	read_file(with_header, size + WTX_HEADER_BYTES, TINY_LIMIT);
	free(with_header);
	return 0;
}
